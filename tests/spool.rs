//! The on-disk spool under faults: kill -9 in durable mode, damaged files,
//! adoption across a change of --cores, drain into the spool, a spool that
//! cannot be used. Real binary, real files, real ZeroMQ consumers.

mod common;

use std::collections::HashSet;
use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;

/// The spool directory of route `*` for `core`, as hookwire names it.
fn route_dir(spool: &Path, core: usize) -> std::path::PathBuf {
    let name = format!("_-{:08x}", crc32c::crc32c(b"*"));
    spool.join(name).join(format!("core-{core}"))
}

/// One spool record, as hookwire writes it.
fn record(key: &[u8], envelope: &[u8]) -> Vec<u8> {
    let mut payload = (key.len() as u16).to_le_bytes().to_vec();
    payload.extend_from_slice(key);
    payload.extend_from_slice(envelope);
    let len = (payload.len() as u32).to_le_bytes();
    let crc = crc32c::crc32c_append(crc32c::crc32c(&len), &payload);
    let mut out = len.to_vec();
    out.extend_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(&payload);
    out
}

fn envelope(id: u64) -> Vec<u8> {
    format!(
        r#"{{"key":"in.gen.s.n","channel":"http","service":"s","name":"n","projectId":0,"uid":"{id}","td":{{}},"data":{{}},"id":"{id}","time":{}}}"#,
        id >> 22
    )
    .into_bytes()
}

/// No consumer while the load runs, so what got a 200 is only in the
/// journal when the process is killed: the restart must deliver all of it.
#[test]
fn kill_9_in_durable_mode_loses_nothing_that_got_a_200() {
    let spool = temp_dir("durable");
    let endpoint = free_endpoint();
    let mut server = spool_server(&spool, &endpoint, &["--ack", "durable"]);
    let addr: SocketAddr = server.addr;

    // Load from four connections until the process dies.
    let answered = Arc::new(Mutex::new(Vec::new()));
    let clients: Vec<_> = (0..4)
        .map(|_| {
            let answered = answered.clone();
            std::thread::spawn(move || {
                let Ok(conn) = TcpStream::connect(addr) else {
                    return;
                };
                conn.set_read_timeout(Some(Duration::from_secs(10)))
                    .unwrap();
                let mut writer = conn.try_clone().unwrap();
                let mut reader = ResponseReader::new(conn);
                let batch = b"GET /s/n?x=1 HTTP/1.1\r\nHost: t\r\n\r\n".repeat(8);
                loop {
                    if writer.write_all(&batch).is_err() {
                        return;
                    }
                    for _ in 0..8 {
                        match reader.next() {
                            Some(r) => answered
                                .lock()
                                .unwrap()
                                .push(r.assert_accepted("in.gen.s.n")),
                            None => return,
                        }
                    }
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(800));
    server.child.kill().unwrap(); // SIGKILL: no drain, no flush
    server.child.wait().unwrap();
    for c in clients {
        c.join().unwrap();
    }
    let answered: Vec<u64> = answered.lock().unwrap().clone();
    assert!(answered.len() > 500, "the load ran: {}", answered.len());

    // Restart on the same spool, now with a consumer: the journal is
    // replayed.
    let consumer = collector(endpoint.clone());
    let server = spool_server(&spool, &endpoint, &["--ack", "durable"]);
    let want: HashSet<u64> = answered.iter().copied().collect();
    let arrived = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        consumer.wait_for(&want, Duration::from_secs(30))
    }));
    let got: Vec<u64> = consumer.finish();
    let got_set: HashSet<u64> = got.iter().copied().collect();
    let missing: Vec<&u64> = want.difference(&got_set).collect();
    eprintln!(
        "durable kill -9: {} answered 200, {} distinct delivered after the restart, {} repeats, {} missing",
        want.len(),
        got_set.len(),
        got.len() - got_set.len(),
        missing.len()
    );
    assert!(
        arrived.is_ok() && missing.is_empty(),
        "{} ids that got a 200 never arrived",
        missing.len()
    );
    drop(server);
    let _ = std::fs::remove_dir_all(&spool);
}

/// At a low event rate a durable journal file rotates by age (half the
/// replay window), so a restart replays about one window of events, not
/// everything the 16 MiB file could hold; and every id that got a 200
/// inside the window is replayed.
#[test]
fn durable_replay_after_a_crash_covers_the_window_not_the_whole_file() {
    const EVENTS: usize = 40;
    let spool = temp_dir("durable-window");
    let endpoint = free_endpoint();
    let args = [
        "--ack",
        "durable",
        "--replay-window",
        "400ms",
        "--cores",
        "1",
    ];
    let first = collector(endpoint.clone());
    let mut server = spool_server(&spool, &endpoint, &args);
    eventually(Duration::from_secs(10), "the consumer to connect", || {
        stats(&server)["merged"]["routes"][0]["connected"] == 1
    });
    let mut answered = Vec::new();
    for _ in 0..EVENTS {
        let id = server.get("/s/n?x=1").assert_accepted("in.gen.s.n");
        answered.push((id, Instant::now()));
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(100));
    let killed_at = Instant::now();
    server.child.kill().unwrap(); // SIGKILL
    server.child.wait().unwrap();
    let before: HashSet<u64> = first.finish().into_iter().collect();
    assert_eq!(before.len(), EVENTS, "the first consumer got every event");

    // What got its 200 less than 300 ms before the kill was handed to
    // ZeroMQ inside the 400 ms window (measured, not counted: on a loaded
    // machine the 50 ms pauses stretch).
    let recent: HashSet<u64> = answered
        .iter()
        .filter(|(_, at)| killed_at - *at < Duration::from_millis(300))
        .map(|(id, _)| *id)
        .collect();
    assert!(
        recent.len() >= 2,
        "the loop ran too slowly to test the window"
    );
    let second = collector(endpoint.clone());
    let server = spool_server(&spool, &endpoint, &args);
    let arrived = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        second.wait_for(&recent, Duration::from_secs(20))
    }));
    let replayed: HashSet<u64> = second.finish().into_iter().collect();
    eprintln!(
        "durable replay after kill -9 at 20 events/s, 400 ms window: {} of {EVENTS} replayed",
        replayed.len()
    );
    assert!(
        arrived.is_ok(),
        "not every event inside the window was replayed"
    );
    for id in &recent {
        assert!(
            replayed.contains(id),
            "{id} (inside the window) was not replayed"
        );
    }
    // Kept: the window plus at most half a window of file age, plus slack.
    assert!(
        replayed.len() < EVENTS / 2,
        "{} of {EVENTS} replayed: the journal kept far more than the window",
        replayed.len()
    );
    drop(server);
    let _ = std::fs::remove_dir_all(&spool);
}

/// The ids of the records in a spool file's bytes (up to the zero length
/// that ends its data).
fn ids_in(bytes: &[u8]) -> HashSet<u64> {
    let mut ids = HashSet::new();
    let mut at = 0;
    while at + 8 <= bytes.len() {
        let len = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
        if len == 0 {
            break;
        }
        let payload = &bytes[at + 8..at + 8 + len];
        let key_len = u16::from_le_bytes([payload[0], payload[1]]) as usize;
        ids.insert(id_of(&payload[2 + key_len..]));
        at += 8 + len;
    }
    ids
}

/// Spool files (`seg-*.log`) the process `pid` holds open.
fn open_spool_files(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .flatten()
        .filter_map(|e| std::fs::read_link(e.path()).ok())
        .filter(|target| {
            let name = target.file_name().and_then(|n| n.to_str()).unwrap_or("");
            name.starts_with("seg-") && name.ends_with(".log")
        })
        .count()
}

/// A spool of many files (here: a journal rotating every 100 ms with no
/// consumer) holds a descriptor for the file being read and the file being
/// written, not one per file, both while it grows and after a restart;
/// the files it closed are opened again in turn and every event arrives.
#[test]
fn a_spool_of_many_files_keeps_two_of_them_open() {
    let spool = temp_dir("many-files");
    let endpoint = free_endpoint();
    let args = [
        "--ack",
        "durable",
        "--replay-window",
        "200ms",
        "--cores",
        "1",
    ];
    let mut server = spool_server(&spool, &endpoint, &args);
    let mut answered = HashSet::new();
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(3) {
        answered.insert(server.get("/s/n?x=1").assert_accepted("in.gen.s.n"));
        std::thread::sleep(Duration::from_millis(20));
    }
    let files = std::fs::read_dir(route_dir(&spool, 0)).unwrap().count();
    let open = open_spool_files(server.child.id());
    eprintln!(
        "{} events in {files} spool files, {open} of them open",
        answered.len()
    );
    assert!(files >= 10, "the journal rotated only into {files} files");
    assert!(open <= 2, "{open} of {files} spool files are open");

    server.child.kill().unwrap(); // SIGKILL
    server.child.wait().unwrap();
    let server = spool_server(&spool, &endpoint, &args);
    // The retry task has opened the front file to try its first record.
    std::thread::sleep(Duration::from_millis(500));
    let open = open_spool_files(server.child.id());
    assert!(open <= 2, "{open} of {files} adopted spool files are open");

    // A file deleted by hand while it waits (closed) is skipped when its
    // turn comes, and delivery goes on with the next one.
    let mut names: Vec<_> = std::fs::read_dir(route_dir(&spool, 0))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    names.sort();
    let deleted = &names[names.len() / 2];
    let lost = ids_in(&std::fs::read(deleted).unwrap());
    assert!(!lost.is_empty(), "{} holds no records", deleted.display());
    std::fs::remove_file(deleted).unwrap();
    let want: HashSet<u64> = answered.difference(&lost).copied().collect();

    let consumer = collector(endpoint.clone());
    let arrived = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        consumer.wait_for(&want, Duration::from_secs(30))
    }));
    let got: HashSet<u64> = consumer.finish().into_iter().collect();
    assert!(
        arrived.is_ok(),
        "{} of {} ids in the files left never arrived",
        want.difference(&got).count(),
        want.len()
    );
    assert!(
        got.is_disjoint(&lost),
        "ids of the deleted file arrived: they came from somewhere else"
    );
    drop(server);
    let _ = std::fs::remove_dir_all(&spool);
}

#[test]
fn damaged_spool_files_deliver_the_good_records_and_report_the_bad() {
    let spool = temp_dir("damaged");
    let dir = route_dir(&spool, 0);
    std::fs::create_dir_all(&dir).unwrap();
    let base = 7_000_000_000u64 << 22;

    // File 1: three good records, then a truncated fourth.
    let mut one = Vec::new();
    for i in 0..3 {
        one.extend(record(b"in.gen.s.n", &envelope(base + i)));
    }
    let fourth = record(b"in.gen.s.n", &envelope(base + 3));
    one.extend_from_slice(&fourth[..fourth.len() / 2]);
    std::fs::write(dir.join("seg-0000000000000000.log"), &one).unwrap();

    // File 2: three records, the middle one with a flipped payload byte.
    let mut two = Vec::new();
    let mut bad_at = 0;
    for i in 10..13 {
        let mut r = record(b"in.gen.s.n", &envelope(base + i));
        if i == 11 {
            bad_at = two.len();
            let last = r.len() - 3;
            r[last] ^= 0x20;
        }
        two.extend(r);
    }
    std::fs::write(dir.join("seg-0000000000000001.log"), &two).unwrap();

    // File 3: seven records, the second with a flipped bit in its length:
    // the records after it are found again (not the rest of the file lost).
    let mut three = Vec::new();
    for i in 20..27 {
        let mut r = record(b"in.gen.s.n", &envelope(base + i));
        if i == 21 {
            r[0] ^= 0x01;
        }
        three.extend(r);
    }
    std::fs::write(dir.join("seg-0000000000000002.log"), &three).unwrap();

    // File 4: two records, a 4 KiB run of zeros (not padding: records
    // follow), two more.
    let mut four = Vec::new();
    for i in 30..32 {
        four.extend(record(b"in.gen.s.n", &envelope(base + i)));
    }
    let zeros_at = four.len();
    four.extend([0u8; 4096]);
    for i in 32..34 {
        four.extend(record(b"in.gen.s.n", &envelope(base + i)));
    }
    std::fs::write(dir.join("seg-0000000000000003.log"), &four).unwrap();
    let want: Vec<u64> = [0, 1, 2, 10, 12, 20, 22, 23, 24, 25, 26, 30, 31, 32, 33]
        .iter()
        .map(|i| base + i)
        .collect();

    let sink = Sink::bind();
    let server = spool_server(&spool, &sink.endpoint, &["--cores", "1"]);
    let got: Vec<u64> = sink
        .recv_raw(want.len(), Duration::from_secs(10))
        .iter()
        .map(|e| id_of(e))
        .collect();
    assert_eq!(got, want, "good records, in order");
    sink.assert_quiet(Duration::from_millis(300));
    // New events follow the replayed ones.
    let id = server.get("/s/n").assert_accepted("in.gen.s.n");
    assert_eq!(id_of(&sink.recv_raw(1, Duration::from_secs(10))[0]), id);

    drop(server);
    // The warnings name the file and offset (the harness echoes stderr, so
    // run again to capture it directly).
    std::fs::write(dir.join("seg-0000000000000000.log"), &one).unwrap();
    std::fs::write(dir.join("seg-0000000000000001.log"), &two).unwrap();
    std::fs::write(dir.join("seg-0000000000000002.log"), &three).unwrap();
    std::fs::write(dir.join("seg-0000000000000003.log"), &four).unwrap();
    let out = std::process::Command::new(BIN)
        .args([
            "--listen",
            "127.0.0.1:0",
            "--admin",
            "off",
            "--cores",
            "1",
            "--push",
            &sink.endpoint,
        ])
        .arg("--spool-dir")
        .arg(&spool)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let out = Guard::new(out);
    let pid = out.id();
    let _ = sink.recv_raw(want.len(), Duration::from_secs(10));
    // SAFETY: kill(2) of our own child.
    unsafe { libc::kill(pid as i32, libc::SIGTERM) };
    let out = out.take().wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("seg-0000000000000000.log: truncated record at offset"),
        "{stderr}"
    );
    let second = record(b"in.gen.s.n", &envelope(base + 20)).len();
    let third = second + record(b"in.gen.s.n", &envelope(base + 21)).len();
    for line in [
        format!("seg-0000000000000002.log: record at offset {second} fails its CRC"),
        format!("seg-0000000000000002.log: {} damaged bytes from offset {second} skipped; records resume at offset {third}", third - second),
        format!("seg-0000000000000003.log: damaged record length at offset {zeros_at}"),
        format!("seg-0000000000000003.log: 4096 damaged bytes from offset {zeros_at} skipped; records resume at offset {}", zeros_at + 4096),
    ] {
        assert!(stderr.contains(&line), "{line}\n{stderr}");
    }
    assert!(
        stderr.contains(&format!(
            "seg-0000000000000001.log: record at offset {bad_at} fails its CRC"
        )),
        "{stderr}"
    );
    let _ = std::fs::remove_dir_all(&spool);
}

#[test]
fn fewer_cores_adopt_the_spool_of_the_missing_ones() {
    let spool = temp_dir("adopt");
    let base = 7_100_000_000u64 << 22;
    for core in 0..3 {
        let dir = route_dir(&spool, core);
        std::fs::create_dir_all(&dir).unwrap();
        let mut f = Vec::new();
        for i in 0..2 {
            f.extend(record(
                b"in.gen.s.n",
                &envelope(base + core as u64 * 10 + i),
            ));
        }
        std::fs::write(dir.join("seg-0000000000000000.log"), f).unwrap();
    }
    let sink = Sink::bind();
    let _server = spool_server(&spool, &sink.endpoint, &["--cores", "1"]);
    let mut got: Vec<u64> = sink
        .recv_raw(6, Duration::from_secs(10))
        .iter()
        .map(|e| id_of(e))
        .collect();
    got.sort();
    let want: Vec<u64> = (0..3)
        .flat_map(|c| [base + c * 10, base + c * 10 + 1])
        .collect();
    assert_eq!(
        got, want,
        "core 0 of a 1-core run adopted core-1 and core-2"
    );
    // Each once: an adopted file is not also replayed by anyone else.
    sink.assert_quiet(Duration::from_millis(500));
    let _ = std::fs::remove_dir_all(&spool);
}

#[test]
fn a_drain_without_consumers_keeps_events_for_the_next_start() {
    let spool = temp_dir("keep");
    let endpoint = free_endpoint();
    let mut server = spool_server(&spool, &endpoint, &["--drain-timeout", "1s"]);
    let ids: Vec<u64> = (0..50)
        .map(|i| {
            server
                .get(&format!("/s/n?i={i}"))
                .assert_accepted("in.gen.s.n")
        })
        .collect();
    // SAFETY: kill(2) of our own child.
    unsafe { libc::kill(server.child.id() as i32, libc::SIGTERM) };
    assert!(server.child.wait().unwrap().success());
    drop(server);

    let sink = Sink::bind_at(&endpoint);
    let _server = spool_server(&spool, &endpoint, &[]);
    let mut got: Vec<u64> = sink
        .recv_raw(50, Duration::from_secs(10))
        .iter()
        .map(|e| id_of(e))
        .collect();
    sink.assert_quiet(Duration::from_millis(500));
    got.sort_unstable();
    let mut want = ids;
    want.sort_unstable();
    assert_eq!(got, want, "every event kept, each delivered once");
    let _ = std::fs::remove_dir_all(&spool);
}

/// Events spooled for a route whose glob was then changed: no route
/// delivers them, so the start says where they are and what they are
/// rather than leaving them silently; the old route brings them back.
#[test]
fn a_route_no_longer_configured_is_named_at_start_with_its_spooled_events() {
    let spool = temp_dir("stranded");
    let endpoint = free_endpoint();
    let mut server = spool_server(
        &spool,
        &endpoint,
        &["--cores", "1", "--drain-timeout", "1s"],
    );
    let ids: Vec<u64> = (0..5)
        .map(|i| {
            server
                .get(&format!("/s/n?i={i}"))
                .assert_accepted("in.gen.s.n")
        })
        .collect();
    // SAFETY: kill(2) of our own child.
    unsafe { libc::kill(server.child.id() as i32, libc::SIGTERM) };
    assert!(server.child.wait().unwrap().success());
    drop(server);

    let route = format!("in.gen.*={endpoint}");
    let dir = spool.to_str().unwrap();
    let server = Server::start(&["--route", &route, "--spool-dir", dir, "--cores", "1"]);
    let warning = server
        .banner
        .iter()
        .find(|l| l.starts_with("warning:") && l.contains("no route delivers them"))
        .unwrap_or_else(|| panic!("no warning at start: {:?}", server.banner));
    assert!(warning.contains("keys like in.gen.s.n"), "{warning}");
    drop(server);

    // The old route again: everything arrives.
    let sink = Sink::bind_at(&endpoint);
    let server = spool_server(&spool, &endpoint, &["--cores", "1"]);
    assert!(
        !server.banner.iter().any(|l| l.starts_with("warning:")),
        "{:?}",
        server.banner
    );
    let got: Vec<u64> = sink
        .recv_raw(5, Duration::from_secs(10))
        .iter()
        .map(|e| id_of(e))
        .collect();
    assert_eq!(got, ids);
    let _ = std::fs::remove_dir_all(&spool);
}

#[test]
fn an_unusable_spool_dir_is_refused_at_start() {
    let out = std::process::Command::new(BIN)
        .args([
            "--listen",
            "127.0.0.1:0",
            "--admin",
            "off",
            "--spool-dir",
            "/dev/null/spool",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--spool-dir /dev/null/spool"), "{stderr}");
}

/// Runs a pipelining sender against a hookwire started with `args` while
/// the consumer at `endpoint` goes away and comes back `restarts` times
/// (each time dropped with whatever it had buffered); then a last consumer
/// takes everything left. Returns the ids that got a 200 and the ids
/// received, in order, and prints the loss and duplicate rates.
/// With `lead`, the load waits after each batch until at most `lead` of
/// the events that got a 200 are neither taken by the consumer nor written
/// off: when a consumer goes, what was in flight is written off (some of
/// it may still arrive, from the spool, at the next consumer).
fn consumer_restarts(
    args: &[&str],
    endpoint: &str,
    restarts: usize,
    lead: Option<usize>,
) -> (Vec<u64>, Vec<u64>) {
    let server = Server::start(args);
    let addr = server.addr;
    let stop = Arc::new(AtomicBool::new(false));
    // Events that got a 200, and those taken or written off.
    let (answered_n, settled) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let load = {
        let stop = stop.clone();
        let (answered_n, settled) = (answered_n.clone(), settled.clone());
        std::thread::spawn(move || {
            let conn = TcpStream::connect(addr).unwrap();
            conn.set_read_timeout(Some(Duration::from_secs(10)))
                .unwrap();
            let mut writer = conn.try_clone().unwrap();
            let mut reader = ResponseReader::new(conn);
            let batch = b"GET /s/n?x=1 HTTP/1.1\r\nHost: t\r\n\r\n".repeat(8);
            let mut ids = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                writer.write_all(&batch).unwrap();
                for _ in 0..8 {
                    ids.push(reader.next().unwrap().assert_accepted("in.gen.s.n"));
                }
                answered_n.store(ids.len(), Ordering::Relaxed);
                if let Some(lead) = lead {
                    while ids.len() > settled.load(Ordering::Relaxed) + lead
                        && !stop.load(Ordering::Relaxed)
                    {
                        std::thread::sleep(Duration::from_micros(200));
                    }
                }
            }
            ids
        })
    };
    let mut got = Vec::new();
    let mut written_off = 0;
    for _ in 0..restarts {
        let sink = Sink::bind_at(endpoint);
        let until = std::time::Instant::now() + Duration::from_millis(500);
        while std::time::Instant::now() < until {
            if let Some(mut f) = sink.recv_frames(Duration::from_millis(50)) {
                got.push(id_of(&f.pop().unwrap()));
                settled.store(got.len() + written_off, Ordering::Relaxed);
            }
        }
        drop(sink); // with whatever it had buffered
        written_off = answered_n.load(Ordering::Relaxed).saturating_sub(got.len());
        settled.store(got.len() + written_off, Ordering::Relaxed);
        std::thread::sleep(Duration::from_millis(200));
    }
    stop.store(true, Ordering::Relaxed);
    let answered = load.join().unwrap();
    let sink = Sink::bind_at(endpoint);
    while let Some(mut f) = sink.recv_frames(Duration::from_millis(1500)) {
        got.push(id_of(&f.pop().unwrap()));
    }
    let got_set: HashSet<u64> = got.iter().copied().collect();
    let missing = answered.iter().filter(|id| !got_set.contains(id)).count();
    eprintln!(
        "consumer restarts ({}): {} answered 200, {} delivered, {missing} lost in libzmq queues and consumer buffers ({:.2}%), {} duplicates ({:.2}%)",
        args.join(" "),
        answered.len(),
        got_set.len(),
        100.0 * missing as f64 / answered.len() as f64,
        got.len() - got_set.len(),
        100.0 * (got.len() - got_set.len()) as f64 / got_set.len().max(1) as f64,
    );
    assert!(answered.len() > 1000, "the load ran");
    let answered_set: HashSet<u64> = answered.iter().copied().collect();
    assert!(
        got_set.is_subset(&answered_set),
        "nothing unanswered was delivered"
    );
    (answered, got)
}

fn missing(answered: &[u64], got: &[u64]) -> Vec<u64> {
    let got: HashSet<u64> = got.iter().copied().collect();
    answered
        .iter()
        .copied()
        .filter(|id| !got.contains(id))
        .collect()
}

fn assert_none_missing(answered: &[u64], got: &[u64]) {
    let missing = missing(answered, got);
    assert!(
        missing.is_empty(),
        "{} of {} ids that got a 200 never arrived, e.g. {:?}",
        missing.len(),
        answered.len(),
        &missing[..missing.len().min(5)]
    );
}

/// The consumer goes away and comes back several times under load, in
/// the default `--ack accepted` mode: a disconnect re-sends the route's
/// resend buffer (the latest events handed to ZeroMQ), which covers what
/// libzmq had queued for the consumer that left and what that consumer had
/// taken into its own buffers, so every id that got a 200 arrives; the
/// duplicate rate is reported.
#[test]
fn consumer_restarts_under_load_lose_nothing_that_got_a_200() {
    let endpoint = free_endpoint();
    let args = ["--push", &endpoint, "--sndhwm", "100", "--cores", "2"];
    let (answered, got) = consumer_restarts(&args, &endpoint, 3, None);
    assert_none_missing(&answered, &got);
}

/// Without the resend buffer (`--resend-buffer 0`) the same restarts lose
/// what libzmq had queued for the consumer that left and what that
/// consumer had already taken into its own buffers (PUSH/PULL has no
/// acknowledgements), and nothing else. The load is paced: each consumer's
/// life adds at most `LEAD` events (plus a batch) to those not delivered,
/// and a restart loses at most those not delivered less those already
/// lost, so `RESTARTS` restarts lose at most `RESTARTS` leads in all.
#[test]
fn without_a_resend_buffer_restarts_lose_at_most_the_queued_events() {
    const RESTARTS: usize = 3;
    // Above both cores' send queues (SNDHWM 100 each), so they fill.
    const LEAD: usize = 300;
    let endpoint = free_endpoint();
    let args = [
        "--push",
        &endpoint,
        "--sndhwm",
        "100",
        "--cores",
        "2",
        "--resend-buffer",
        "0",
    ];
    let (answered, got) = consumer_restarts(&args, &endpoint, RESTARTS, Some(LEAD));
    let sent = answered.len();
    let missing = missing(&answered, &got).len();
    let bound = RESTARTS * (LEAD + 8);
    // Only a load several times the bound makes it a check: with fewer
    // events sent, losing most of them would stay within it.
    assert!(
        sent >= 5 * bound,
        "only {sent} events got a 200: too few for the loss bound ({bound}) to mean anything"
    );
    assert!(
        missing <= bound,
        "{missing} of {sent} lost, more than the bound {bound}"
    );
}

/// The same in `--ack durable` mode: a consumer's disconnect replays the
/// journal's replay window, so every id that got a 200 arrives, including
/// what libzmq had queued for the consumer that left and what it had
/// taken into its own buffers.
#[test]
fn consumer_restarts_in_durable_mode_lose_nothing_that_got_a_200() {
    let endpoint = free_endpoint();
    let args = [
        "--push", &endpoint, "--sndhwm", "100", "--cores", "2", "--ack", "durable",
    ];
    let (answered, got) = consumer_restarts(&args, &endpoint, 3, None);
    assert_none_missing(&answered, &got);
}

/// A disk that refuses writes (here: the file-size limit, EFBIG — the
/// same path as ENOSPC or EIO): events that cannot be stored get 503
/// `spool_error`, the process keeps running, and every event that got a
/// 200 is delivered once a consumer comes.
#[test]
fn a_failing_disk_gives_503_never_a_200_for_an_unstored_event() {
    use std::os::unix::process::CommandExt;
    let spool = temp_dir("efbig");
    let endpoint = free_endpoint();
    let mut cmd = std::process::Command::new(BIN);
    cmd.args([
        "--listen",
        "127.0.0.1:0",
        "--admin",
        "off",
        "--cores",
        "1",
        "--push",
        &endpoint,
    ])
    .arg("--spool-dir")
    .arg(&spool)
    .stderr(std::process::Stdio::piped());
    // SAFETY: setrlimit(2) between fork and exec touches only this child.
    unsafe {
        cmd.pre_exec(|| {
            let limit = libc::rlimit {
                rlim_cur: 64 << 10,
                rlim_max: 64 << 10,
            };
            if libc::setrlimit(libc::RLIMIT_FSIZE, &limit) == 0 {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        })
    };
    let mut child = Guard::new(cmd.spawn().unwrap());
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(child.stderr.take().unwrap()));
    let mut addr = None;
    for line in lines.by_ref() {
        let line = line.unwrap();
        if let Some(a) = line.strip_prefix("listen http://") {
            addr = Some(a.split_whitespace().next().unwrap().to_owned());
        }
        if line == "ready" {
            break;
        }
    }
    let addr: SocketAddr = addr.expect("started").parse().unwrap();
    let errors = std::thread::spawn(move || lines.map_while(Result::ok).collect::<Vec<_>>());

    let body = format!(r#"{{"pad":"{}"}}"#, "x".repeat(2000));
    let post = |body: &str| {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        write!(
            s,
            "POST /crm/lead HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        ResponseReader::new(s).next().expect("a response")
    };
    let mut accepted = Vec::new();
    let refused = loop {
        let r = post(&body);
        if r.status != 200 {
            break r;
        }
        accepted.push(r.assert_accepted("in.gen.crm.lead"));
        assert!(
            accepted.len() < 200,
            "64 KiB of file cannot hold 200 events of 2 KiB"
        );
    };
    refused.assert_error(503, "spool_error");
    assert_eq!(refused.header("Retry-After"), Some("1"));
    assert!(!accepted.is_empty(), "the first events fitted");
    // Still refusing, still alive.
    post(&body).assert_error(503, "spool_error");
    assert!(
        child.try_wait().unwrap().is_none(),
        "the process keeps running"
    );

    let sink = Sink::bind_at(&endpoint);
    let got: Vec<u64> = sink
        .recv_raw(accepted.len(), Duration::from_secs(10))
        .iter()
        .map(|e| id_of(e))
        .collect();
    assert_eq!(got, accepted, "every 200 arrives, in order");
    sink.assert_quiet(Duration::from_millis(300));
    // With the consumer back, new events go straight to it.
    let id = post(&body).assert_accepted("in.gen.crm.lead");
    assert_eq!(id_of(&sink.recv_raw(1, Duration::from_secs(10))[0]), id);

    child.kill().unwrap();
    child.wait().unwrap();
    let stderr = errors.join().unwrap().join("\n");
    assert!(
        stderr.contains("spool: cannot write"),
        "the failure is logged: {stderr}"
    );
    let _ = std::fs::remove_dir_all(&spool);
}

/// Accepted mode: consumers that are connected but stalled when hookwire
/// drains. libzmq still queues up to SNDHWM events for each of them and
/// drops them when it closes; since not every consumer got everything,
/// the drain keeps the resend buffer in the spool, so the next start sends
/// them again: every event that got a 200 arrives (some twice).
///
/// A drain with `stalled` consumers that read nothing (and, with
/// `reading`, one more that reads all along) on one route, with
/// `--sndhwm sndhwm`: every event that got a 200 arrives, at them before
/// the restart or from the spool after it.
fn drain_with(stalled: usize, reading: bool, sndhwm: &str) {
    let spool = temp_dir("stalled");
    let context = zmq::Context::new();
    let stalled: Vec<zmq::Socket> = (0..stalled)
        .map(|_| {
            let socket = context.socket(zmq::PULL).unwrap();
            // Read nothing, buffer little: hookwire's queue for it fills.
            socket.set_rcvhwm(1).unwrap();
            socket.set_rcvbuf(64 << 10).unwrap();
            socket.set_linger(0).unwrap();
            socket.bind("tcp://127.0.0.1:*").unwrap();
            socket
        })
        .collect();
    let mut endpoints: Vec<String> = stalled
        .iter()
        .map(|s| s.get_last_endpoint().unwrap().unwrap())
        .collect();
    let reader = reading.then(|| {
        let at = free_endpoint();
        endpoints.push(at.clone());
        collector(at)
    });
    let consumers = endpoints.len();
    let mut args = vec!["--cores", "1", "--sndhwm", sndhwm, "--drain-timeout", "1s"];
    for endpoint in &endpoints[1..] {
        args.extend(["--push", endpoint]);
    }
    let mut server = spool_server(&spool, &endpoints[0], &args);
    eventually(Duration::from_secs(10), "the consumers to connect", || {
        stats(&server)["merged"]["routes"][0]["connected"] == consumers
    });
    let body = format!("pad={}", "x".repeat(10_000));
    let answered: Vec<u64> = (0..1500)
        .map(|_| {
            server
                .post(
                    "/s/n",
                    Some("application/x-www-form-urlencoded"),
                    body.as_bytes(),
                )
                .assert_accepted("in.gen.s.n")
        })
        .collect();
    // SAFETY: kill(2) of our own child.
    unsafe { libc::kill(server.child.id() as i32, libc::SIGTERM) };
    assert!(server.child.wait().unwrap().success());
    drop(server);

    // The stalled consumers read what reached them; then a restart on the
    // same spool sends the rest.
    let mut got = HashSet::new();
    let drain = |got: &mut HashSet<u64>, timeout: i32| {
        for socket in &stalled {
            socket.set_rcvtimeo(timeout).unwrap();
            while let Ok(frame) = socket.recv_bytes(0) {
                got.insert(id_of(&frame));
            }
        }
    };
    drain(&mut got, 500);
    let before_restart = got.len();
    let _server = spool_server(&spool, &endpoints[0], &args);
    drain(&mut got, 2_000);
    if let Some(reader) = reader {
        got.extend(reader.finish());
    }
    let missing: Vec<&u64> = answered.iter().filter(|id| !got.contains(id)).collect();
    eprintln!(
        "{} stalled consumer(s){} at drain: {} answered 200, {before_restart} received before the restart, {} after it in all, {} missing",
        stalled.len(),
        if reading { " and a reading one" } else { "" },
        answered.len(),
        got.len(),
        missing.len()
    );
    assert!(
        missing.is_empty(),
        "{} ids that got a 200 never arrived: {missing:?}",
        missing.len()
    );
    let _ = std::fs::remove_dir_all(&spool);
}

#[test]
fn a_drain_with_a_stalled_consumer_loses_nothing_that_got_a_200() {
    drain_with(1, false, "100");
}

/// libzmq's queue is per consumer: a route with two stalled consumers can
/// lose twice SNDHWM events on closing.
#[test]
fn a_drain_with_two_stalled_consumers_on_a_route_loses_nothing_that_got_a_200() {
    drain_with(2, false, "100");
}

/// A route with a stalled consumer and one that reads: PUSH gives the
/// newest events to the one that reads, so what libzmq drops for the
/// stalled one at a drain is older than the route's latest events; the
/// drain keeps the whole resend buffer then, and nothing is lost.
#[test]
fn a_drain_with_a_stalled_and_a_reading_consumer_loses_nothing_that_got_a_200() {
    drain_with(1, true, "20");
}

/// A consumer that keeps up: libzmq sends everything before its socket is
/// gone and the consumer's kernel acknowledges every byte, so a drain
/// keeps nothing for the next start, and restarts with no new traffic do
/// not send the same events again and again.
#[test]
fn a_drain_with_a_consumer_that_keeps_up_keeps_nothing_for_the_next_start() {
    let spool = temp_dir("clean-drain");
    let sink = Sink::bind();
    let endpoint = sink.endpoint.clone();
    let args = ["--cores", "1", "--sndhwm", "1000", "--drain-timeout", "5s"];
    let mut server = spool_server(&spool, &endpoint, &args);
    eventually(Duration::from_secs(10), "the consumer to connect", || {
        stats(&server)["merged"]["routes"][0]["connected"] == 1
    });
    let answered: Vec<u64> = (0..300)
        .map(|i| {
            server
                .get(&format!("/s/n?i={i}"))
                .assert_accepted("in.gen.s.n")
        })
        .collect();
    let envelopes = sink.recv_raw(300, Duration::from_secs(10));
    let got: Vec<u64> = envelopes.iter().map(|e| id_of(e)).collect();
    assert_eq!(got, answered, "every event, in order");
    // SAFETY: kill(2) of our own child.
    unsafe { libc::kill(server.child.id() as i32, libc::SIGTERM) };
    assert!(server.child.wait().unwrap().success());
    drop(server);

    for restart in 1..=2 {
        let mut server = spool_server(&spool, &endpoint, &args);
        let again = sink.recv_frames(Duration::from_millis(1_000));
        assert!(
            again.is_none(),
            "restart {restart}: an event was sent again although the consumer had them all"
        );
        // SAFETY: kill(2) of our own child.
        unsafe { libc::kill(server.child.id() as i32, libc::SIGTERM) };
        assert!(server.child.wait().unwrap().success());
    }
    let _ = std::fs::remove_dir_all(&spool);
}
