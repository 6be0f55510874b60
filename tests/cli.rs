//! The command line: options, environment, config file, start-up lines,
//! refusal of bad options, and `hookwire tap`.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// Runs `hookwire <args>` expecting it to refuse to start.
fn refused(args: &[&str], env: &[(&str, &str)]) -> String {
    let spool = temp_dir("cli-spool");
    let mut cmd = Command::new(BIN);
    cmd.args(args);
    // Options that pass validation would otherwise create ./spool.
    cmd.arg("--spool-dir").arg(&spool);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
        .wait_with_output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{args:?} should be refused");
    String::from_utf8(out.stderr).unwrap()
}

#[test]
fn bad_options_are_refused_naming_the_option() {
    let cases: &[(&[&str], &str)] = &[
        (&["--push", "localhost:5555"], "--push"),
        (&["--push", "inproc://consumer"], "--push"),
        (&["--route", "in.gen.*"], "--route"),
        (&["--route", "in.gen.*=tcp://127.0.0.1:0"], "--route"),
        (&["--frames", "xml"], "--frames"),
        (&["--cores", "0"], "--cores"),
        (&["--cores", "65"], "--cores"),
        (&["--node-id", "99"], "--node-id"),
        (&["--trusted-proxy", "not-a-net"], "--trusted-proxy"),
        (&["--max-body", "huge"], "--max-body"),
        (&["--listen", "not an address"], "--listen"),
        (&["--config", "/nonexistent/hookwire.toml"], "--config"),
        (&["--request-timeout", "soon"], "--request-timeout"),
        (&["--flush-interval", "soon"], "--flush-interval"),
        (&["--flush-interval", "20ms"], "--flush-interval"),
        (&["--zmq-sched", "fifo"], "--zmq-sched"),
    ];
    for (args, option) in cases {
        let stderr = refused(args, &[]);
        assert!(stderr.contains(option), "{args:?}: {stderr}");
    }
    // clap's own refusals (a non-number) name the option too.
    let stderr = Command::new(BIN)
        .args(["--cores", "many"])
        .output()
        .unwrap();
    assert!(!stderr.status.success());
    assert!(String::from_utf8_lossy(&stderr.stderr).contains("--cores"));
}

/// A refused value is named by where it was set, so the operator knows
/// what to fix: the flag, its environment variable, or its key in the file.
#[test]
fn a_refused_value_names_where_it_was_set() {
    let flag = refused(&["--max-body", "lots"], &[]);
    assert!(flag.starts_with("hookwire: --max-body: 'lots'"), "{flag}");

    let env = refused(&[], &[("HOOKWIRE_MAX_BODY", "lots")]);
    assert!(
        env.starts_with("hookwire: --max-body (set by HOOKWIRE_MAX_BODY): 'lots'"),
        "{env}"
    );
    // The flag wins over the variable, so the flag is what is named.
    let both = refused(&["--max-body", "heaps"], &[("HOOKWIRE_MAX_BODY", "1MiB")]);
    assert!(both.starts_with("hookwire: --max-body: 'heaps'"), "{both}");

    let dir = temp_dir("cli-origin");
    let file = dir.join("hookwire.toml");
    std::fs::write(&file, "max_body = \"lots\"\n").unwrap();
    let file = file.to_str().unwrap();
    let from_file = refused(&["--config", file], &[]);
    assert!(
        from_file.starts_with(&format!(
            "hookwire: --max-body (set by max_body in {file}): 'lots'"
        )),
        "{from_file}"
    );
    // The variable wins over the file.
    let over_file = refused(&["--config", file], &[("HOOKWIRE_MAX_BODY", "lots2")]);
    assert!(
        over_file.starts_with("hookwire: --max-body (set by HOOKWIRE_MAX_BODY): 'lots2'"),
        "{over_file}"
    );

    // Values clap itself refuses (not a number) say the variable too.
    let typed = refused(&[], &[("HOOKWIRE_CORES", "many")]);
    assert!(
        typed.contains("'--cores <CORES>' (set by HOOKWIRE_CORES)"),
        "{typed}"
    );
    let typed_flag = refused(&["--cores", "several"], &[("HOOKWIRE_CORES", "many")]);
    assert!(
        typed_flag.contains("'several'") && !typed_flag.contains("HOOKWIRE_CORES"),
        "{typed_flag}"
    );
}

/// The binary starts with each (the values themselves: config's unit test
/// `flush_interval_units`).
#[test]
fn a_zero_flush_interval_in_any_unit_is_accepted_at_start() {
    for zero in ["0", "0ms", "0s"] {
        let server = Server::start(&["--flush-interval", zero]);
        server.get("/s/n?x=1").assert_accepted("in.gen.s.n");
    }
}

/// A core's share of --max-inflight-body must hold one request of
/// --max-body: below that the start is refused, naming both and the least.
#[test]
fn a_body_bound_too_small_for_max_body_is_refused_at_start() {
    let args = [
        "--max-inflight-body",
        "1MiB",
        "--max-body",
        "1MiB",
        "--cores",
        "2",
    ];
    let stderr = refused(&args, &[]);
    assert!(
        stderr.starts_with("hookwire: --max-inflight-body: 1MiB over 2 core(s) is 512KiB per core")
            && stderr.contains("--max-body 1MiB")
            && stderr.contains("set at least 2MiB"),
        "{stderr}"
    );
    let env = refused(
        &["--max-body", "1MiB", "--cores", "1"],
        &[("HOOKWIRE_MAX_INFLIGHT_BODY", "512KiB")],
    );
    assert!(
        env.starts_with("hookwire: --max-inflight-body (set by HOOKWIRE_MAX_INFLIGHT_BODY)")
            && env.contains("set at least 1MiB"),
        "{env}"
    );
    // At the least it starts.
    let server = Server::start(&["--max-inflight-body", "2MiB", "--max-body", "1MiB"]);
    server.get("/s/n?x=1").assert_accepted("in.gen.s.n");
}

#[test]
fn a_busy_port_is_refused_at_start() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let stderr = refused(&["--listen", &addr, "--cores", "1"], &[]);
    assert!(
        stderr.contains("--listen") && stderr.contains(&addr),
        "{stderr}"
    );
}

/// A second hookwire on the address of a running one: SO_REUSEPORT would
/// let it share the port (and take part of the senders' connections), so
/// it must refuse to start, within a bound, and the first keeps serving.
#[test]
fn a_port_a_running_hookwire_listens_on_is_refused() {
    let first = Server::start(&[]);
    let addr = first.addr.to_string();
    let spool = temp_dir("second-spool");
    let mut second = Guard::new(
        Command::new(BIN)
            .args(["--listen", &addr, "--admin", "off", "--cores", "1"])
            .arg("--spool-dir")
            .arg(&spool)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let started = Instant::now();
    let status = loop {
        if let Some(status) = second.try_wait().unwrap() {
            break Some(status);
        }
        if started.elapsed() > Duration::from_secs(15) {
            second.kill().unwrap();
            second.wait().unwrap();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut stderr = String::new();
    second
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert_eq!(
        status.and_then(|s| s.code()),
        Some(2),
        "a second hookwire on {addr} started: {stderr}"
    );
    assert!(
        stderr.contains("--listen") && stderr.contains("already running"),
        "{stderr}"
    );
    first.get("/s/n?x=1").assert_accepted("in.gen.s.n");

    // Asked to (`--share-port`, for a restart without a gap), it joins:
    // new connections are split between the two processes.
    let mut joined = Guard::new(
        Command::new(BIN)
            .args(["--listen", &addr, "--admin", "127.0.0.1:0", "--cores", "1"])
            .arg("--spool-dir")
            .arg(&spool)
            .env("HOOKWIRE_SHARE_PORT", "true")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut admin = None;
    for line in BufReader::new(joined.stderr.take().unwrap()).lines() {
        let line = line.unwrap();
        if let Some(rest) = line.strip_prefix("admin http://") {
            admin = Some(rest.trim().parse().unwrap());
        }
        if line == "ready" {
            break;
        }
    }
    let admin = admin.expect("the joining hookwire started");
    for _ in 0..40 {
        first.get("/s/n?x=1").assert_accepted("in.gen.s.n"); // a new connection each
    }
    let (status, body) = admin_get(admin, "/stats");
    assert_eq!(status, 200);
    let stats: serde_json::Value = serde_json::from_str(&body).unwrap();
    let served = stats["merged"]["connections"]["accepted"].as_u64().unwrap();
    assert!(
        served > 0,
        "the joining hookwire got none of 40 connections"
    );
}

/// Two processes on one spool directory would adopt and delete each
/// other's live files: the second is refused, naming the directory, while
/// the first runs; once it has exited the directory is free again.
#[test]
fn a_spool_dir_in_use_by_a_running_hookwire_is_refused() {
    let spool = temp_dir("shared-spool");
    let dir = spool.to_str().unwrap();
    let first = Server::start(&["--spool-dir", dir]);
    let second = || {
        Guard::new(
            Command::new(BIN)
                .args(["--listen", "127.0.0.1:0", "--admin", "off", "--cores", "1"])
                .args(["--spool-dir", dir])
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap(),
        )
    };
    let out = second().take().wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!("--spool-dir {dir}")) && stderr.contains("another hookwire"),
        "{stderr}"
    );
    first.get("/s/n?x=1").assert_accepted("in.gen.s.n");
    drop(first);
    let mut again = second();
    let mut lines = BufReader::new(again.stderr.take().unwrap()).lines();
    assert!(
        lines.any(|l| l.unwrap() == "ready"),
        "not started once the first had exited"
    );
    drop(again);
    let _ = std::fs::remove_dir_all(&spool);
}

#[test]
fn start_up_prints_listener_routes_then_ready() {
    let (server, sink) = server_and_sink(&["--route", "in.gen.x.*=tcp://127.0.0.1:5999"]);
    let banner = &server.banner;
    assert!(
        banner[0].starts_with("listen http://127.0.0.1:"),
        "{banner:?}"
    );
    assert!(
        banner.contains(&format!("route * -> {}", sink.endpoint)),
        "{banner:?}"
    );
    assert!(
        banner.contains(&"route in.gen.x.* -> tcp://127.0.0.1:5999".to_string()),
        "{banner:?}"
    );
    assert_eq!(banner.last().unwrap(), "ready");
    // `serve` is also the default with no subcommand.
    let spool = temp_dir("cli-spool");
    let mut cmd = Guard::new(
        Command::new(BIN)
            .arg("--spool-dir")
            .arg(&spool)
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
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut lines = BufReader::new(cmd.stderr.take().unwrap()).lines();
    assert!(lines.any(|l| l.unwrap() == "ready"));
}

#[test]
fn env_is_under_flags_and_file_under_env() {
    let sink = Sink::bind();
    // Environment alone: two frames.
    let server = Server::start_with_env(
        &[],
        &[
            ("HOOKWIRE_PUSH", &sink.endpoint),
            ("HOOKWIRE_FRAMES", "key+json"),
        ],
    );
    server.get("/s/n").assert_accepted("in.gen.s.n");
    assert_eq!(sink.recv_frames(Duration::from_secs(10)).unwrap().len(), 2);
    drop(server);

    // A flag wins over the environment.
    let server = Server::start_with_env(
        &["--frames", "json"],
        &[
            ("HOOKWIRE_PUSH", &sink.endpoint),
            ("HOOKWIRE_FRAMES", "key+json"),
        ],
    );
    server.get("/s/n").assert_accepted("in.gen.s.n");
    assert_eq!(sink.recv_frames(Duration::from_secs(10)).unwrap().len(), 1);
    drop(server);

    // The file is under the environment.
    let dir = std::env::temp_dir().join(format!("hookwire-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("hookwire.toml");
    std::fs::write(
        &file,
        format!(
            "push = [\"{}\"]\nframes = \"key+json\"\nmax-body = \"1KiB\"\n",
            sink.endpoint
        ),
    )
    .unwrap();
    let config = file.to_str().unwrap();
    let server = Server::start(&["--config", config]);
    server.get("/s/n").assert_accepted("in.gen.s.n");
    assert_eq!(sink.recv_frames(Duration::from_secs(10)).unwrap().len(), 2);
    server
        .post("/s/n", Some("application/json"), &vec![b' '; 2000])
        .assert_error(413, "body_too_large");
    drop(server);

    let server = Server::start_with_env(&["--config", config], &[("HOOKWIRE_FRAMES", "json")]);
    server.get("/s/n").assert_accepted("in.gen.s.n");
    assert_eq!(sink.recv_frames(Duration::from_secs(10)).unwrap().len(), 1);
    drop(server);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn tap_prints_one_json_line_per_envelope_and_stops_after_count() {
    let endpoint = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("tcp://{}", l.local_addr().unwrap())
    };
    let mut tap = Guard::new(
        Command::new(BIN)
            .args(["tap", "--bind", &endpoint, "--count", "3"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut err = BufReader::new(tap.stderr.take().unwrap()).lines();
    assert!(err
        .next()
        .unwrap()
        .unwrap()
        .starts_with("tap bound tcp://127.0.0.1:"));

    let server = Server::start(&["--push", &endpoint, "--frames", "key+json"]);
    let mut ids = Vec::new();
    for i in 0..3 {
        let r = server.post(
            "/crm/lead",
            Some("application/json"),
            format!(r#"{{"n":{i},"s":"a\nb"}}"#).as_bytes(),
        );
        ids.push(r.assert_accepted("in.gen.crm.lead").to_string());
    }
    // It exits by itself after the third; a missing event must fail the
    // test, not hang it.
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = tap.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = tap.kill();
            let _ = tap.wait();
            panic!("tap --count 3 did not exit within 20 s of the third event");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status:?}");
    let mut stdout = String::new();
    tap.stdout
        .take()
        .unwrap()
        .read_to_string(&mut stdout)
        .unwrap();
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{lines:?}");
    let mut got: Vec<String> = lines
        .iter()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            assert_eq!(v["data"]["s"], "a\nb");
            v["id"].as_str().unwrap().to_owned()
        })
        .collect();
    got.sort();
    ids.sort();
    assert_eq!(got, ids);
}

/// A tap endpoint without its scheme is refused naming the forms that
/// work, as --push does (libzmq itself says only "Invalid argument").
#[test]
fn tap_refuses_a_bind_without_a_scheme_naming_the_form() {
    let out = Command::new(BIN)
        .args(["tap", "--bind", "127.0.0.1:5555"])
        .stdout(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.starts_with("hookwire: --bind: '127.0.0.1:5555'")
            && stderr.contains("tcp://host:port or ipc://path"),
        "{stderr}"
    );
}

/// `tap --ack` connects and `--ack-endpoint` binds: a bad value of each is
/// refused naming the form of its own kind.
#[test]
fn ack_endpoints_are_checked_as_connect_and_bind_endpoints() {
    // Port 0 is "any" only to bind on.
    let out = Command::new(BIN)
        .args(["tap", "--ack", "tcp://127.0.0.1:0"])
        .stdout(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("--ack")
            && stderr.contains("'tcp://127.0.0.1:0' is not a ZeroMQ endpoint to connect to")
            && stderr.contains("tcp://host:port or ipc://path"),
        "{stderr}"
    );
    let stderr = refused(&["--ack-endpoint", "*=127.0.0.1:5557"], &[]);
    assert!(
        stderr.contains("--ack-endpoint")
            && stderr.contains("'127.0.0.1:5557' is not a ZeroMQ endpoint to bind on")
            && stderr.contains("host * and port 0 or * mean any"),
        "{stderr}"
    );
}

#[test]
fn libzmq_is_bundled_not_a_system_library() {
    // zmq-sys builds libzmq from source and links it statically, so the
    // binary runs on a machine without libzmq.
    let out = Command::new("ldd")
        .arg(BIN)
        .output()
        .expect("ldd (libc-bin) is present");
    let libs = String::from_utf8_lossy(&out.stdout);
    assert!(
        libs.contains("libc.so"),
        "ldd lists the dynamic libraries: {libs}"
    );
    assert!(
        !libs.contains("libzmq"),
        "hookwire must not need a system libzmq: {libs}"
    );
}

/// Each thread of `pid`: its name and scheduling policy (`/proc`'s stat
/// field 41: 0 is SCHED_OTHER, 3 SCHED_BATCH).
fn thread_policies(pid: u32) -> Vec<(String, u32)> {
    let mut out = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let stat = std::fs::read_to_string(task.unwrap().path().join("stat")).unwrap();
        let (head, rest) = stat.rsplit_once(')').unwrap();
        let name = head.split_once('(').unwrap().1.to_string();
        // Fields 3 onwards follow the name; the policy is field 41.
        let policy = rest.split_whitespace().nth(38).unwrap().parse().unwrap();
        out.push((name, policy));
    }
    out
}

#[test]
fn zmq_threads_run_sched_batch_unless_told_otherwise() {
    // Threads inherit the policy of the process that starts them, so the
    // runner's own (this test's) is what hookwire's other threads keep.
    let runner = thread_policies(std::process::id())[0].1;
    // Each core's context has one I/O thread and one reaper: with two
    // cores, exactly four threads take --zmq-sched's policy when it is not
    // the runner's; every other thread (the executors included, whose
    // policy is restored) keeps the runner's.
    for (args, policy) in [
        (&["--cores", "2"][..], 3),
        (&["--cores", "2", "--zmq-sched", "normal"], 0),
    ] {
        let server = Server::start(args);
        let threads = thread_policies(server.child.id());
        let odd: Vec<_> = threads.iter().filter(|t| t.1 != runner).collect();
        let expected = if policy == runner { 0 } else { 4 };
        assert_eq!(
            odd.len(),
            expected,
            "{args:?}, runner {runner}: {threads:?}"
        );
        assert!(odd.iter().all(|t| t.1 == policy), "{args:?}: {threads:?}");
        server.get("/s/n?x=1").assert_accepted("in.gen.s.n");
    }
}

/// Spool files each hold a descriptor while they wait: at start hookwire
/// raises its soft open-files limit to the hard one.
#[test]
fn the_open_files_limit_is_raised_to_the_hard_limit() {
    use std::os::unix::process::CommandExt;
    let mut hard = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit with a valid pointer to a local struct.
    assert_eq!(
        unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut hard) },
        0
    );
    assert!(
        hard.rlim_max > 256,
        "hard limit {} leaves nothing to raise",
        hard.rlim_max
    );
    let max = hard.rlim_max;
    let mut cmd = Command::new(BIN);
    cmd.args(["--listen", "127.0.0.1:0", "--admin", "off", "--cores", "1"])
        .arg("--spool-dir")
        .arg(temp_dir("nofile"))
        .stderr(Stdio::piped());
    // SAFETY: setrlimit(2) between fork and exec touches only this child.
    unsafe {
        cmd.pre_exec(move || {
            let low = libc::rlimit {
                rlim_cur: 256,
                rlim_max: max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &low) == 0 {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        })
    };
    let mut child = Guard::new(cmd.spawn().unwrap());
    let mut err = BufReader::new(child.stderr.take().unwrap()).lines();
    assert!(
        err.by_ref().map_while(Result::ok).any(|l| l == "ready"),
        "hookwire did not start"
    );
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", child.id())).unwrap();
    // SAFETY: kill(2) of our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
    let _ = child.wait();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .expect("a Max open files line");
    let fields: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(fields[3], fields[4], "soft = hard: {line}");
    assert_eq!(fields[4], max.to_string(), "{line}");
}

/// A supervisor may close the pipe it reads hookwire's stderr from: the
/// log lines after that are lost, but the process goes on serving, and a
/// SIGTERM still drains it to a clean exit (the drain logs a line, which
/// used to abort the process).
#[test]
fn a_closed_stderr_costs_the_log_not_the_process() {
    let spool = temp_dir("closed-stderr");
    let mut child = Guard::new(
        Command::new(BIN)
            .args(["--listen", "127.0.0.1:0", "--admin", "off", "--cores", "1"])
            .arg("--spool-dir")
            .arg(&spool)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut addr = None;
    for line in BufReader::new(child.stderr.take().unwrap()).lines() {
        let line = line.unwrap();
        if let Some(rest) = line.strip_prefix("listen http://") {
            addr = Some(rest.split_whitespace().next().unwrap().to_owned());
        }
        if line == "ready" {
            break;
        }
    }
    // The reader is dropped here: stderr's pipe has no reader any more.
    let addr: std::net::SocketAddr = addr.expect("started").parse().unwrap();
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"GET /s/n?x=1 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    // SAFETY: kill(2) on the child this test started.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = child.take().wait().unwrap();
    assert!(status.success(), "drained to a clean exit: {status}");
    let _ = std::fs::remove_dir_all(&spool);
}
