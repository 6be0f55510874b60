//! The spool on a small real filesystem that fills up: a restart on a full
//! disk, the delivery that frees it, another process filling it, in
//! accepted and durable mode, on tmpfs and on ext4 (a loop device, so the
//! O_DIRECT path and its device probe are the real ones).
//!
//! The tests mount their own filesystems, which needs root. Where mounting
//! is refused they print why and stop; `HOOKWIRE_REQUIRE_MOUNT=1` (set by
//! `.ci/run`) makes that a failure instead.

mod common;

use std::io::Write;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use common::*;

/// A small filesystem mounted by the test, unmounted when dropped.
struct SmallFs {
    dir: PathBuf,
    image: Option<PathBuf>,
}

#[derive(Clone, Copy, Debug)]
enum Fs {
    Tmpfs,
    Ext4,
}

impl SmallFs {
    /// Mounts a filesystem of `mib` MiB, or says why it cannot and returns
    /// `None` (a failure when `HOOKWIRE_REQUIRE_MOUNT` is set).
    fn mount(fs: Fs, mib: u64) -> Option<SmallFs> {
        let base = temp_dir("smallfs");
        let dir = base.join("mnt");
        std::fs::create_dir_all(&dir).unwrap();
        let run = |cmd: &mut Command| -> Result<(), String> {
            let out = cmd.output().map_err(|e| format!("{cmd:?}: {e}"))?;
            match out.status.success() {
                true => Ok(()),
                false => Err(format!(
                    "{cmd:?}: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                )),
            }
        };
        let (mounted, image) = match fs {
            Fs::Tmpfs => {
                let size = format!("size={mib}m");
                let mounted = run(Command::new("mount")
                    .args(["-t", "tmpfs", "-o", &size, "tmpfs"])
                    .arg(&dir));
                (mounted, None)
            }
            Fs::Ext4 => {
                let image = base.join("fs.img");
                let file = std::fs::File::create(&image).unwrap();
                file.set_len(mib << 20).unwrap();
                // No blocks reserved for root: hookwire runs as root here,
                // and the test wants the disk full when statvfs says so.
                let mounted = run(Command::new("mkfs.ext4")
                    .args(["-q", "-m", "0"])
                    .arg(&image))
                .and_then(|_| {
                    run(Command::new("mount")
                        .args(["-o", "loop"])
                        .arg(&image)
                        .arg(&dir))
                });
                (mounted, Some(image))
            }
        };
        match mounted {
            Ok(()) => Some(SmallFs { dir, image }),
            Err(why) => {
                let _ = std::fs::remove_dir_all(&base);
                assert!(
                    std::env::var_os("HOOKWIRE_REQUIRE_MOUNT").is_none(),
                    "HOOKWIRE_REQUIRE_MOUNT is set but a {fs:?} cannot be mounted: {why}"
                );
                eprintln!("skipped: cannot mount a {fs:?} (needs root): {why}");
                None
            }
        }
    }

    fn spool(&self) -> PathBuf {
        self.dir.join("spool")
    }

    /// Fills what is left with a file of zeros; returns its path.
    fn fill(&self) -> PathBuf {
        let path = self.dir.join("filler");
        let mut file = std::fs::File::create(&path).unwrap();
        let block = vec![0u8; 64 << 10];
        while file.write_all(&block).is_ok() {}
        let _ = file.sync_all();
        path
    }
}

impl Drop for SmallFs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
        if let Some(base) = self.dir.parent() {
            let _ = std::fs::remove_dir_all(base);
        }
        let _ = self.image.take();
    }
}

/// What a batch of postbacks got.
#[derive(Default)]
struct Outcome {
    /// The ids of the events that got a 200.
    accepted: Vec<u64>,
    /// The error codes of the 503s.
    refused: Vec<String>,
}

/// Sends `n` GET postbacks of about 250 bytes, pipelined on one
/// connection, and sorts the answers; anything but a 200 or a 503 with a
/// spool code fails the test.
fn send(server: &Server, n: usize) -> Outcome {
    let pad = "p".repeat(160);
    let mut raw = Vec::new();
    for i in 0..n {
        write!(
            raw,
            "GET /affise/conversion/7?clickid={i:08}&payout=1.5&sub1={pad} HTTP/1.1\r\nHost: t\r\n\r\n"
        )
        .unwrap();
    }
    let mut out = Outcome::default();
    for r in server.exchange(&raw, n) {
        if r.status == 200 {
            out.accepted
                .push(r.assert_accepted("in.gen.affise.conversion"));
            continue;
        }
        assert_eq!(r.status, 503, "a 200 or a 503, got {}", r.status);
        assert_eq!(r.header("Retry-After"), Some("1"));
        let code = r.json()["error"].as_str().unwrap().to_owned();
        assert!(
            code == "spool_full" || code == "spool_error",
            "a spool refusal, got {code}"
        );
        out.refused.push(code);
    }
    out
}

/// Sends until `/ready` says the spool is full and a batch was refused;
/// returns every id that got a 200.
fn fill_spool(server: &Server) -> Vec<u64> {
    let mut accepted = Vec::new();
    for _ in 0..200 {
        let batch = send(server, 500);
        accepted.extend(batch.accepted);
        if !batch.refused.is_empty() && spool_problem(&problems(server)) {
            return accepted;
        }
    }
    panic!("the spool never filled: {} events accepted", accepted.len());
}

/// `/ready`'s problem codes.
fn problems(server: &Server) -> Vec<String> {
    let (_, body) = admin_get(server.admin.unwrap(), "/ready");
    let ready: serde_json::Value = serde_json::from_str(&body).unwrap();
    ready["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["code"].as_str().unwrap().to_owned())
        .collect()
}

fn spool_problem(codes: &[String]) -> bool {
    codes
        .iter()
        .any(|c| c == "spool_full" || c == "spool_disk_full" || c == "spool_error")
}

/// Drains the server with SIGTERM and waits for it to exit.
fn stop(mut server: Server) {
    // SAFETY: kill(2) on the child this test started.
    unsafe { libc::kill(server.child.id() as i32, libc::SIGTERM) };
    let status = server.child.wait().unwrap();
    assert!(status.success(), "drained and exited: {status}");
}

/// The whole cycle: fill the disk with no consumer, restart on it, let a
/// consumer take everything that got a 200, then spool again.
fn full_disk_cycle(fs: Fs, mib: u64, extra: &[&str]) {
    let Some(small) = SmallFs::mount(fs, mib) else {
        return;
    };
    let spool = small.spool();
    let endpoint = free_endpoint();
    let server = spool_server(&spool, &endpoint, extra);
    let accepted = fill_spool(&server);
    assert!(accepted.len() > 1000, "{} accepted", accepted.len());
    stop(server);

    // The restart must succeed on the full disk, and say how full it is.
    let server = spool_server(&spool, &endpoint, extra);
    let fullness = format!("spool {}: ", spool.display());
    eventually(Duration::from_secs(2), "the start to say how full", || {
        server.said(&fullness)
    });
    // Still full, no consumer: new events are refused at once, in JSON
    // (with no headroom, the blocks left after ENOSPC may take a few).
    let refused = send(&server, 500);
    assert!(
        refused.refused.len() > 400,
        "the full disk refuses: {} of 500 accepted",
        refused.accepted.len()
    );

    let consumer = collector(endpoint.clone());
    let mut every = accepted.clone();
    every.extend(&refused.accepted);
    consumer.wait_for(&every.iter().copied().collect(), Duration::from_secs(60));
    // Delivered files were deleted: /ready clears by itself, and with the
    // consumer gone again new events are spooled, without a restart.
    consumer.finish();
    eventually(Duration::from_secs(5), "the spool problem to clear", || {
        !spool_problem(&problems(&server))
    });
    let again = send(&server, 300);
    assert_eq!(
        again.accepted.len(),
        300,
        "spooled again once space freed: {:?}",
        &again.refused[..again.refused.len().min(3)]
    );
    let consumer = collector(endpoint.clone());
    consumer.wait_for(
        &again.accepted.iter().copied().collect(),
        Duration::from_secs(30),
    );
    consumer.finish();
    stop(server);
}

// Accepted mode without a resend buffer: a consumer that leaves would
// otherwise have its last events re-sent through the spool, filling the
// room the test then expects for new events.
#[test]
fn a_full_tmpfs_restarts_and_delivers_every_200() {
    full_disk_cycle(Fs::Tmpfs, 4, &["--resend-buffer", "0"]);
}

#[test]
fn a_full_tmpfs_in_durable_mode_restarts_and_delivers_every_200() {
    full_disk_cycle(Fs::Tmpfs, 4, &["--ack", "durable", "--spool-min-free", "0"]);
}

#[test]
fn a_full_ext4_restarts_and_delivers_every_200() {
    full_disk_cycle(
        Fs::Ext4,
        8,
        &["--spool-min-free", "0", "--resend-buffer", "0"],
    );
}

#[test]
fn a_full_ext4_in_durable_mode_restarts_and_delivers_every_200() {
    full_disk_cycle(Fs::Ext4, 8, &["--ack", "durable"]);
}

/// Another process fills the disk while hookwire spools: the events that
/// no longer fit get 503 (the write that meets ENOSPC: `spool_error`;
/// after it, `spool_full`), never a 200; `/ready` says `spool_disk_full`
/// and clears by itself when the file goes; every 200 arrives.
fn another_file_fills_the_disk(fs: Fs, mib: u64, extra: &[&str]) {
    let Some(small) = SmallFs::mount(fs, mib) else {
        return;
    };
    let endpoint = free_endpoint();
    let mut args = vec!["--spool-min-free", "0"];
    args.extend_from_slice(extra);
    let server = spool_server(&small.spool(), &endpoint, &args);
    let before = send(&server, 200);
    assert_eq!(before.accepted.len(), 200, "room at first");

    let filler = small.fill();
    let mut accepted = before.accepted;
    let during = send(&server, 300);
    assert!(
        during.refused.len() >= 290,
        "a full disk refuses: {} of 300 accepted",
        during.accepted.len()
    );
    assert!(
        during.refused.iter().any(|c| c == "spool_error"),
        "the write that met ENOSPC is a spool_error"
    );
    accepted.extend(during.accepted);
    eventually(
        Duration::from_secs(2),
        "/ready to say spool_disk_full",
        || problems(&server).iter().any(|c| c == "spool_disk_full"),
    );
    let (_, metrics) = admin_get(server.admin.unwrap(), "/metrics");
    assert!(
        metrics.contains("\nhookwire_spool_disk_full 1\n"),
        "metrics say the disk is full"
    );

    std::fs::remove_file(filler).unwrap();
    eventually(Duration::from_secs(5), "spool_disk_full to clear", || {
        !problems(&server).iter().any(|c| c == "spool_disk_full")
    });
    let after = send(&server, 200);
    assert_eq!(after.accepted.len(), 200, "room again, without a restart");
    accepted.extend(after.accepted);

    let consumer = collector(endpoint.clone());
    consumer.wait_for(&accepted.iter().copied().collect(), Duration::from_secs(30));
    consumer.finish();
    stop(server);
}

#[test]
fn another_file_filling_the_disk_gives_503_never_an_unstored_200() {
    another_file_fills_the_disk(Fs::Tmpfs, 4, &[]);
}

#[test]
fn another_file_filling_the_disk_in_durable_mode_gives_503() {
    another_file_fills_the_disk(Fs::Tmpfs, 4, &["--ack", "durable"]);
}

/// Someone else filled the disk before hookwire started, so no spool file
/// exists to probe the device with: the start succeeds all the same, the
/// device is probed once there is room, and the spool then works (on ext4
/// a wrong probe would fail every read of the spool with ENOTSUP).
#[test]
fn a_disk_filled_before_the_start_is_probed_once_it_has_room() {
    let Some(small) = SmallFs::mount(Fs::Ext4, 8) else {
        return;
    };
    let filler = small.fill();
    let endpoint = free_endpoint();
    let server = spool_server(&small.spool(), &endpoint, &[]);
    let full = send(&server, 50);
    assert_eq!(full.refused.len(), 50, "nothing fits");
    std::fs::remove_file(filler).unwrap();
    eventually(Duration::from_secs(5), "the spool problem to clear", || {
        !spool_problem(&problems(&server))
    });
    let later = send(&server, 200);
    assert_eq!(later.accepted.len(), 200, "room again");
    let consumer = collector(endpoint.clone());
    consumer.wait_for(
        &later.accepted.iter().copied().collect(),
        Duration::from_secs(30),
    );
    consumer.finish();
    stop(server);
}
