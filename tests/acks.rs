//! Acknowledged delivery (`--ack-endpoint`), with the Python consumer of
//! `clients/python/` as the real consumer process: events are kept until
//! acked, re-sent after a consumer is killed, across a hookwire restart,
//! and bad acks are counted, not fatal.

mod common;

use std::collections::HashSet;
use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;

/// A consumer process: appends each new id to a file, then acks the batch.
const CONSUMER: &str = r#"
import sys
sys.path.insert(0, sys.argv[1])
from hookwire_consumer import Consumer
consumer = Consumer(sys.argv[2], ack=sys.argv[3])
with open(sys.argv[4], "a") as out:
    print("ready", flush=True)
    for batch in consumer.batches():
        out.write("".join(e["id"] + "\n" for e in batch))
        out.flush()
"#;

fn clients_dir() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("clients/python")
        .to_str()
        .unwrap()
        .to_owned()
}

/// Starts the consumer and waits until it has bound.
fn consumer(endpoint: &str, ack: &str, out: &Path) -> Guard {
    let mut child = Command::new(python())
        .arg("-c")
        .arg(CONSUMER)
        .args([&clients_dir(), endpoint, ack, out.to_str().unwrap()])
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the Python consumer");
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    assert_eq!(line.trim(), "ready");
    Guard::new(child)
}

fn kill9(child: Guard) {
    let mut child: Child = child.take();
    child.kill().unwrap();
    child.wait().unwrap();
}

/// The ids the consumer wrote, every line (repeats included).
fn written(out: &Path) -> Vec<u64> {
    std::fs::read_to_string(out)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.parse().ok())
        .collect()
}

fn route(server: &Server) -> serde_json::Value {
    stats(server)["merged"]["routes"][0].clone()
}

/// Four pipelining clients against whichever server `addr` names now;
/// a connection that fails (a restart) is opened again. Returns the ids
/// that got a 200.
fn load(
    addr: Arc<Mutex<SocketAddr>>,
    stop: Arc<AtomicBool>,
) -> Vec<std::thread::JoinHandle<Vec<u64>>> {
    (0..4)
        .map(|_| {
            let (addr, stop) = (addr.clone(), stop.clone());
            std::thread::spawn(move || {
                let batch = b"GET /s/n?x=1 HTTP/1.1\r\nHost: t\r\n\r\n".repeat(8);
                let mut ids = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let Ok(conn) = TcpStream::connect(*addr.lock().unwrap()) else {
                        std::thread::sleep(Duration::from_millis(20));
                        continue;
                    };
                    conn.set_read_timeout(Some(Duration::from_secs(10)))
                        .unwrap();
                    let mut writer = conn.try_clone().unwrap();
                    let mut reader = ResponseReader::new(conn);
                    'conn: while !stop.load(Ordering::Relaxed) {
                        if writer.write_all(&batch).is_err() {
                            break;
                        }
                        for _ in 0..8 {
                            match reader.next() {
                                Some(r) if r.status == 200 => {
                                    ids.push(r.assert_accepted("in.gen.s.n"))
                                }
                                Some(r) => panic!("status {}", r.status),
                                None => break 'conn,
                            }
                        }
                    }
                }
                ids
            })
        })
        .collect()
}

/// Waits until every core's socket has no consumer, so hookwire holds
/// still what it sent: the unacknowledged count is what the next consumer
/// gets again.
fn unacked_once_gone(server: &Server) -> u64 {
    eventually(Duration::from_secs(10), "the consumer to be gone", || {
        route(server)["connected"] == 0
    });
    std::thread::sleep(Duration::from_millis(50));
    route(server)["acks"]["unacked"].as_u64().unwrap()
}

/// The issue's load check: 4 pipelining clients; the consumer killed with
/// SIGKILL twice mid-load, and hookwire stopped (SIGTERM) and started again
/// on its spool halfway. Every id that got a 200 is written by the
/// consumer; repeats are at most what was unacknowledged when each
/// consumer died plus what a drain kept.
#[test]
fn acked_delivery_loses_nothing_through_consumer_kills_and_a_restart() {
    kills_and_a_restart(false);
}

/// The same in `--ack durable` mode, hookwire killed with SIGKILL halfway:
/// the journal's replay brings back what was not acknowledged.
#[test]
fn acked_delivery_in_durable_mode_loses_nothing_through_a_hookwire_kill_9() {
    kills_and_a_restart(true);
}

fn kills_and_a_restart(durable: bool) {
    let spool = temp_dir("acks-load");
    let out: PathBuf = spool.join("consumed.txt");
    let (endpoint, ack) = (free_endpoint(), free_endpoint());
    let ack_arg = format!("*={ack}");
    let mut args = vec![
        "--cores",
        "2",
        "--ack-endpoint",
        &ack_arg,
        "--drain-timeout",
        "5s",
    ];
    if durable {
        args.extend(["--ack", "durable"]);
    }
    let mut server = spool_server(&spool, &endpoint, &args);
    let mut taker = Some(consumer(&endpoint, &ack, &out));
    let addr = Arc::new(Mutex::new(server.addr));
    let stop = Arc::new(AtomicBool::new(false));
    let clients = load(addr.clone(), stop.clone());

    let mut in_flight = Vec::new();
    for step in 0..3 {
        std::thread::sleep(Duration::from_millis(1_500));
        if step == 1 {
            // SIGTERM (durable: SIGKILL) halfway, the consumer still
            // running; a new process on the same spool.
            let signal = if durable {
                libc::SIGKILL
            } else {
                libc::SIGTERM
            };
            // SAFETY: kill(2) of our own child.
            unsafe { libc::kill(server.child.id() as i32, signal) };
            let status = server.child.wait().unwrap();
            assert!(durable || status.success());
            drop(server);
            server = spool_server(&spool, &endpoint, &args);
            *addr.lock().unwrap() = server.addr;
            continue;
        }
        kill9(taker.take().unwrap());
        in_flight.push(unacked_once_gone(&server));
        taker = Some(consumer(&endpoint, &ack, &out));
    }
    std::thread::sleep(Duration::from_millis(1_000));
    stop.store(true, Ordering::Relaxed);
    let answered: Vec<u64> = clients
        .into_iter()
        .flat_map(|c| c.join().unwrap())
        .collect();

    let want: HashSet<u64> = answered.iter().copied().collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let got: HashSet<u64> = written(&out).into_iter().collect();
        if want.is_subset(&got) || Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    eventually(Duration::from_secs(60), "every ack to arrive", || {
        route(&server)["acks"]["unacked"] == 0
    });
    let lines = written(&out);
    let got: HashSet<u64> = lines.iter().copied().collect();
    let missing = want.difference(&got).count();
    let repeats = lines.len() - got.len();
    eprintln!("route at the end: {}", route(&server));
    eprintln!(
        "acked load ({}): {} answered 200, {} received, {missing} missing, {repeats} repeats; unacknowledged at the two consumer kills: {in_flight:?}",
        if durable { "durable, kill -9" } else { "accepted, SIGTERM" },
        answered.len(),
        got.len(),
    );
    assert!(answered.len() > 2_000, "the load ran: {}", answered.len());
    assert_eq!(missing, 0, "every id that got a 200 arrives");
    // A kill -9 can cut off the 200 of an event already journaled (and
    // delivered): the sender retries it; only a drain answers them all.
    let unanswered = got.difference(&want).count();
    assert!(
        durable || unanswered == 0,
        "{unanswered} unanswered ids arrived"
    );
    // A drain keeps what was unacknowledged when it ended; a kill -9 in
    // durable mode replays the journal's window (all of this short run).
    let restart_share = if durable {
        answered.len() as u64
    } else {
        2 * 1_000
    };
    let bound: u64 = in_flight.iter().sum::<u64>() + restart_share;
    assert!(
        (repeats as u64) <= bound,
        "{repeats} repeats, more than in flight at the kills ({in_flight:?}) and a drain's share"
    );
    let r = route(&server);
    assert_eq!(r["acks"]["bad"], 0);
    let _ = std::fs::remove_dir_all(&spool);
}

/// A consumer that never acks gets the events again after `--ack-timeout`,
/// not lost; bad ack frames and unknown ids are counted and nothing
/// breaks; `/ready` and `/metrics` show the unacknowledged events.
#[test]
fn unacked_events_come_again_after_the_timeout_and_bad_acks_are_counted() {
    let (endpoint, ack) = (free_endpoint(), free_endpoint());
    let ack_arg = format!("*={ack}");
    let server = Server::start(&[
        "--cores",
        "1",
        "--push",
        &endpoint,
        "--ack-endpoint",
        &ack_arg,
        "--ack-timeout",
        "1s",
    ]);
    let sink = Sink::bind_at(&endpoint);
    eventually(Duration::from_secs(10), "the consumer to connect", || {
        route(&server)["connected"] == 1
    });
    let id = server.get("/s/n?a=1").assert_accepted("in.gen.s.n");
    assert_eq!(sink.recv()["id"], id.to_string());
    let r = route(&server);
    assert_eq!(
        (r["delivered"].as_u64(), r["acks"]["unacked"].as_u64()),
        (Some(0), Some(1))
    );
    let (_, ready) = admin_get(server.admin.unwrap(), "/ready");
    let ready: serde_json::Value = serde_json::from_str(&ready).unwrap();
    assert_eq!(ready["routes"][0]["unacked"], 1, "{ready}");
    // Not acked: sent again after the timeout.
    let again = sink.recv_frames(Duration::from_secs(5)).expect("a re-send");
    assert_eq!(id_of(&again[0]), id);
    assert_eq!(route(&server)["resent"], 1);

    let context = zmq::Context::new();
    let push = context.socket(zmq::PUSH).unwrap();
    push.connect(&ack).unwrap();
    push.send("not-an-id, 12x", 0).unwrap();
    push.send_multipart(["", "\u{ff}"], 0).unwrap();
    push.send("42", 0).unwrap(); // an id this core never sent
    push.send(format!("[\"{id}\"]").as_str(), 0).unwrap();
    push.send(id.to_string().as_str(), 0).unwrap(); // twice
    eventually(Duration::from_secs(10), "the acks to count", || {
        route(&server)["delivered"] == 1
    });
    eventually(Duration::from_secs(10), "the bad ones to count", || {
        let r = route(&server);
        r["acks"]["bad"] == 3 && r["acks"]["unknown"] == 2
    });
    let r = route(&server);
    assert_eq!(r["acks"]["unacked"], 0);
    let (_, metrics) = admin_get(server.admin.unwrap(), "/metrics");
    let all = |name: &str| -> String {
        metrics
            .lines()
            .find(|l| l.starts_with(name) && l.contains("core=\"all\""))
            .unwrap_or_else(|| panic!("no {name} in {metrics}"))
            .rsplit(' ')
            .next()
            .unwrap()
            .to_owned()
    };
    assert_eq!(all("hookwire_events_unacked{"), "0");
    assert_eq!(all("hookwire_acks_bad_total{"), "3");
    assert_eq!(all("hookwire_events_delivered_total{"), "1");
    sink.assert_quiet(Duration::from_millis(1_500));
}

/// `hookwire tap --ack` acknowledges what it prints, two-frame messages
/// too: the route's events count as delivered and none stays unacked.
#[test]
fn tap_with_ack_acknowledges_what_it_prints() {
    let (endpoint, ack) = (free_endpoint(), free_endpoint());
    let ack_arg = format!("*={ack}");
    let tap = Command::new(BIN)
        .args(["tap", "--bind", &endpoint, "--ack", &ack, "--count", "3"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let tap = Guard::new(tap);
    let server = Server::start(&[
        "--cores",
        "2",
        "--push",
        &endpoint,
        "--ack-endpoint",
        &ack_arg,
        "--frames",
        "key+json",
    ]);
    eventually(Duration::from_secs(10), "tap to connect", || {
        route(&server)["connected"] == 1
    });
    let mut sent: Vec<u64> = (0..3)
        .map(|i| {
            server
                .get(&format!("/s/n?i={i}"))
                .assert_accepted("in.gen.s.n")
        })
        .collect();
    sent.sort_unstable();
    let out = tap.take().wait_with_output().unwrap();
    let printed: Vec<u64> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| id_of(l.as_bytes()))
        .collect();
    let mut sorted = printed.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, sent, "the envelopes, not the keys");
    eventually(Duration::from_secs(10), "the acks", || {
        let r = route(&server);
        r["delivered"] == 3 && r["acks"]["unacked"] == 0
    });
}

/// After a restart with fewer `--cores`, a core re-sends the events it
/// adopted from a core that is gone under their old ids; their acks go to
/// it (`core % cores`), so they count as delivered, not bad, and nothing
/// stays unacked.
#[test]
fn acks_after_a_restart_with_fewer_cores_reach_the_adopting_core() {
    let spool = temp_dir("acks-fewer-cores");
    let (endpoint, ack) = (free_endpoint(), free_endpoint());
    let ack_arg = format!("*={ack}");
    let args = |cores: &'static str| {
        vec![
            "--cores",
            cores,
            "--ack-endpoint",
            &ack_arg,
            "--drain-timeout",
            "2s",
        ]
    };
    let sink = Sink::bind_at(&endpoint);
    let mut server = spool_server(&spool, &endpoint, &args("4"));
    eventually(Duration::from_secs(10), "the consumer to connect", || {
        route(&server)["connected"].as_u64() >= Some(1)
    });
    // Not acked, so the drain keeps them for the next run.
    let mut ids = HashSet::new();
    for i in 0..40 {
        ids.insert(
            server
                .get(&format!("/s/n?i={i}"))
                .assert_accepted("in.gen.s.n"),
        );
    }
    let core = |id: &u64| (id >> 12) & 0x3f;
    assert!(ids.iter().any(|id| core(id) >= 2), "some went to cores 2-3");
    let got: HashSet<u64> = sink
        .recv_raw(ids.len(), Duration::from_secs(10))
        .iter()
        .map(|raw| id_of(raw))
        .collect();
    assert_eq!(got, ids);
    // SAFETY: kill(2) of our own child.
    unsafe { libc::kill(server.child.id() as i32, libc::SIGTERM) };
    assert!(server.child.wait().unwrap().success());
    drop(server);

    server = spool_server(&spool, &endpoint, &args("2"));
    let mut again = HashSet::new();
    while again.len() < ids.len() {
        let frames = sink
            .recv_frames(Duration::from_secs(10))
            .expect("the kept events again");
        again.insert(id_of(frames.last().unwrap()));
    }
    assert_eq!(again, ids);
    let context = zmq::Context::new();
    let push = context.socket(zmq::PUSH).unwrap();
    push.connect(&ack).unwrap();
    let text: Vec<String> = ids.iter().map(u64::to_string).collect();
    push.send(text.join(" ").as_str(), 0).unwrap();
    eventually(Duration::from_secs(10), "every ack to count", || {
        route(&server)["delivered"] == ids.len() as u64
    });
    let r = route(&server);
    assert_eq!(
        (r["acks"]["unacked"].as_u64(), r["acks"]["bad"].as_u64()),
        (Some(0), Some(0)),
        "{r}"
    );
    let _ = std::fs::remove_dir_all(&spool);
}
