//! The ClickHouse writer (`clients/python/clickhouse_writer.py`) into chDB
//! on an acknowledged route, killed with SIGKILL once mid-way while it
//! holds 1 000 events it never inserted: hookwire sends them again, and
//! every event that got a 200 is in the table once after `OPTIMIZE …
//! FINAL`. The 100 000-event run is `loadtest/clickhouse.sh`.

mod common;

use std::io::BufRead;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;

/// The writer; `wait` is how long it waits for more events before
/// inserting a batch smaller than 200.
fn writer(python: &Path, pull: &str, ack: &str, store: &Path, wait: &str) -> Guard {
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/clients/python/clickhouse_writer.py"
    );
    let mut child = Command::new(python)
        .args([script, "--pull", pull, "--ack", ack, "--batch", "2000"])
        .args(["--wait", wait])
        .arg("--path")
        .arg(store)
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the writer");
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next().expect("a line").unwrap();
    assert_eq!(first.trim(), "ready");
    // It reports each insert: read on, so its prints never fail.
    std::thread::spawn(move || lines.map_while(Result::ok).for_each(drop));
    Guard::new(child)
}

#[test]
fn the_clickhouse_writer_keeps_every_event_once_through_a_kill() {
    let python = python_with("requirements-chdb.txt");
    let dir = temp_dir("chdb");
    let store = dir.join("store");
    let (pull, ack) = (free_endpoint(), free_endpoint());
    let ack_arg = format!("*={ack}");
    let server = Server::start(&["--cores", "2", "--push", &pull, "--ack-endpoint", &ack_arg]);
    // The first writer waits ten minutes for a full batch: it takes the
    // first 1 000 events and never inserts (nor acks) them.
    let mut w = writer(&python, &pull, &ack, &store, "600");
    let mut answered = 0;
    for round in 0..2 {
        for i in 0..1_000 {
            server
                .get(&format!("/shop/order/{round}?i={i}"))
                .assert_accepted("in.gen.shop.order");
            answered += 1;
        }
        if round == 0 {
            eventually(
                Duration::from_secs(30),
                "1 000 events sent, none acked",
                || {
                    let r = &stats(&server)["merged"]["routes"][0];
                    r["acks"]["unacked"] == 1_000 && r["delivered"] == 0
                },
            );
            let mut child = w.take();
            child.kill().unwrap();
            child.wait().unwrap();
            w = writer(&python, &pull, &ack, &store, "0.2");
        }
    }
    eventually(Duration::from_secs(60), "every event acked", || {
        let r = &stats(&server)["merged"]["routes"][0];
        r["delivered"] == answered && r["acks"]["unacked"] == 0
    });
    let resent = stats(&server)["merged"]["routes"][0]["resent"]
        .as_u64()
        .unwrap();
    assert!(
        resent >= 1_000,
        "the killed writer's 1 000 events went again: resent {resent}"
    );
    let mut child = w.take();
    child.kill().unwrap();
    child.wait().unwrap();
    let out = Command::new(&python)
        .arg("-c")
        .arg(
            "import sys\nfrom chdb import session\ns = session.Session(sys.argv[1])\n\
             q = lambda sql: str(s.query(sql, 'CSV')).strip()\n\
             print(q('SELECT count(DISTINCT id) FROM hookwire.events'))\n\
             q('OPTIMIZE TABLE hookwire.events FINAL')\n\
             print(q('SELECT count() FROM hookwire.events'))\n\
             print(q('SELECT projectId, count() FROM hookwire.events GROUP BY projectId ORDER BY projectId'))",
        )
        .arg(&store)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines, ["2000", "2000", "0,1000", "1,1000"], "{text}");
    let _ = std::fs::remove_dir_all(&dir);
}
