//! A request split in two at every byte boundary, fed to the server's real
//! connection handler ([`hookwire::testing::feed`] / [`Conn::process`] →
//! [`Shard::handle`]) in two parts, with a real ZeroMQ consumer: the first
//! part never completes a request, and after the second the envelope is
//! the one the whole request gives. In process, so every split really is
//! two reads (`tests/http.rs` does the same over TCP, where the kernel may
//! join the parts).

mod common;

use common::{chunked_request, in_process, post_request, InProcess};
use hookwire::conn::Step;

/// An envelope without what differs from one request to the next (`id`,
/// `time`, and `uid`, which is generated from the id when none is sent).
fn stable(raw: &[u8]) -> serde_json::Value {
    let mut v: serde_json::Value = serde_json::from_slice(raw).expect("envelope is JSON");
    let o = v.as_object_mut().unwrap();
    for k in ["id", "time", "uid"] {
        assert!(o.remove(k).is_some(), "envelope has {k}");
    }
    v
}

#[test]
fn every_split_into_two_reads_gives_the_whole_request_s_envelope() {
    let InProcess {
        pull,
        settings,
        mut shard,
        context: _context,
    } = in_process();

    let json = br#"{"order":"A-17","amount":12.5,"tags":["x","y"],"ok":true}"#;
    let requests = [
        post_request(
            "/split/json/42?src=q",
            "User-Agent: split-test/1.0\r\nContent-Type: application/json\r\n",
            json,
        ),
        post_request(
            "/split/form/42",
            "Content-Type: application/x-www-form-urlencoded\r\n",
            b"a=1&b=%D0%BF&c[d]=2&c[e]=3",
        ),
        chunked_request(
            "/split/chunked/42?src=q",
            "Content-Type: application/json\r\n",
            "15;ext=1\r\n{\"order\":\"A-17\",\"amou\r\n1a\r\nnt\":12.5,\"tags\":[\"x\",\"y\"]}\r\n0\r\nX-Trailer: yes\r\n\r\n".as_bytes(),
        ),
        b"GET /split/get/7?clickid=abc&payout=1.50&sub=%D0%BF+x HTTP/1.1\r\nHost: test\r\n\r\n"
            .to_vec(),
    ];

    // One request on a fresh connection: its response and envelope.
    let mut run = |parts: &[&[u8]]| -> (Vec<Step>, Vec<u8>, serde_json::Value) {
        let mut conn = hookwire::testing::conn(&settings);
        let steps = parts
            .iter()
            .map(|part| {
                hookwire::testing::feed(&mut conn, part);
                conn.process(&mut shard)
            })
            .collect();
        shard.flush_outbox();
        conn.waits.clear();
        assert!(
            conn.out.starts_with(b"HTTP/1.1 200 OK\r\n"),
            "{parts:?}: {}",
            String::from_utf8_lossy(&conn.out)
        );
        let envelope = pull.recv_bytes(0).expect("an envelope");
        (steps, std::mem::take(&mut conn.out), stable(&envelope))
    };

    for raw in &requests {
        let (steps, out, whole) = run(&[raw]);
        assert_eq!(steps, [Step::More { completed: 1 }]);
        assert!(
            out.starts_with(b"HTTP/1.1 200 OK\r\n"),
            "{}",
            String::from_utf8_lossy(&out)
        );
        for k in 1..raw.len() {
            let (steps, out, envelope) = run(&[&raw[..k], &raw[k..]]);
            assert_eq!(
                steps,
                [Step::More { completed: 0 }, Step::More { completed: 1 }],
                "split at {k} of {}",
                String::from_utf8_lossy(raw)
            );
            assert!(out.starts_with(b"HTTP/1.1 200 OK\r\n"), "split at {k}");
            assert_eq!(envelope, whole, "split at {k}");
        }
    }
    assert_eq!(shard.fanout.waiting(), 0, "every event went to ZeroMQ");
}
