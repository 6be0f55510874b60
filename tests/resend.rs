//! The bounded re-send of routes without acknowledgements: after a
//! consumer disconnects, only events first sent within `--resend-window`
//! go out again, however often consumers restart, and a drain does not
//! keep older ones for the next start.

mod common;

use std::time::{Duration, Instant};

use common::*;

/// The window these tests run with: long enough that a consumer restarted
/// at once is well inside it on a loaded machine, short for the test.
const WINDOW: Duration = Duration::from_secs(4);

fn ids(sink: &Sink, wait: Duration) -> Vec<u64> {
    let mut out = Vec::new();
    while let Some(mut frames) = sink.recv_frames(wait) {
        out.push(id_of(&frames.pop().unwrap()));
    }
    out
}

fn route_stats(server: &Server) -> (u64, u64) {
    let s = stats(server);
    let route = &s["merged"]["routes"][0];
    (
        route["delivered"].as_u64().unwrap(),
        route["resent"].as_u64().unwrap(),
    )
}

/// Consumer disconnects hookwire has logged so far.
fn disconnects(server: &Server) -> usize {
    let log = server.log.lock().unwrap();
    log.iter()
        .filter(|l| l.contains("a consumer disconnected"))
        .count()
}

fn sigterm(server: &mut Server) {
    // SAFETY: kill(2) of our own child.
    unsafe { libc::kill(server.child.id() as i32, libc::SIGTERM) };
    assert!(server.child.wait().unwrap().success());
}

/// The trial: three GETs, then the consumer restarted three times
/// a few seconds apart. The first restart, inside the window, gets the
/// three again; the second and third, past it, get nothing; a drain and a
/// restart of hookwire with the consumer gone do not bring them back.
/// `/stats` counts three delivered and three re-sent.
#[test]
fn consumer_restarts_past_the_window_receive_nothing_again() {
    let spool = temp_dir("resend-window");
    let endpoint = free_endpoint();
    let window = format!("{}s", WINDOW.as_secs());
    let args = ["--cores", "1", "--resend-window", &window];
    let mut server = spool_server(&spool, &endpoint, &args);
    let sink = Sink::bind_at(&endpoint);
    eventually(Duration::from_secs(10), "the consumer to connect", || {
        stats(&server)["merged"]["routes"][0]["connected"] == 1
    });
    let sent: Vec<u64> = (0..3)
        .map(|i| {
            server
                .get(&format!("/s/n?i={i}"))
                .assert_accepted("in.gen.s.n")
        })
        .collect();
    // Every event left before its 200: none is older than this.
    let answered = Instant::now();
    assert_eq!(ids(&sink, Duration::from_millis(500)), sent);

    // Restart 1, at once: inside the window, the three come again.
    drop(sink);
    let sink = Sink::bind_at(&endpoint);
    let again = ids(&sink, Duration::from_millis(1_000));
    assert!(
        answered.elapsed() < WINDOW,
        "the machine stalled past the window; the first restart proves nothing"
    );
    assert_eq!(again, sent, "a restart inside the window gets them again");
    assert_eq!(route_stats(&server), (3, 3), "delivered, resent");

    // Restarts 2 and 3, a few seconds apart, past the window: nothing.
    let mut sink = sink;
    for restart in 2..=3 {
        let past = (answered + WINDOW + Duration::from_millis(500))
            .saturating_duration_since(Instant::now());
        std::thread::sleep(past.max(Duration::from_secs(2)));
        let seen = disconnects(&server);
        drop(sink);
        sink = Sink::bind_at(&endpoint);
        eventually(Duration::from_secs(10), "the disconnect to be seen", || {
            disconnects(&server) > seen
        });
        let got = ids(&sink, Duration::from_millis(1_500));
        assert!(got.is_empty(), "restart {restart} got {got:?} again");
    }
    assert_eq!(route_stats(&server), (3, 3), "nothing more went out");
    // Restart 2 found the three kept but too old: counted and logged, not
    // dropped silently (restart 3 found none kept).
    let s = stats(&server);
    assert_eq!(s["merged"]["routes"][0]["resend_skipped"], 3, "{s}");
    let warned = server
        .log
        .lock()
        .unwrap()
        .iter()
        .filter(|l| l.contains("3 events not re-sent: first sent more than --resend-window"))
        .count();
    assert_eq!(warned, 1, "one warning, at restart 2");

    // The consumer gone when hookwire drains: the old events are not kept
    // for the next start.
    drop(sink);
    std::thread::sleep(Duration::from_millis(100));
    sigterm(&mut server);
    drop(server);
    let sink = Sink::bind_at(&endpoint);
    let server = spool_server(&spool, &endpoint, &args);
    eventually(Duration::from_secs(10), "the consumer to connect", || {
        stats(&server)["merged"]["routes"][0]["connected"] == 1
    });
    let got = ids(&sink, Duration::from_millis(1_500));
    assert!(got.is_empty(), "the next start sent {got:?} again");
    assert_eq!(route_stats(&server), (0, 0));
    let _ = std::fs::remove_dir_all(&spool);
}
