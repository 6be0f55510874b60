//! For benchmarks and tests that drive a connection without the server:
//! settings, a core's state outside its executor, and bytes fed as if read.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;

use crate::config::{Cli, Settings};
use crate::conn::budget::Budget;
use crate::conn::Conn;
use crate::shard::Shard;
use crate::spool::{CoreSpool, SpoolConfig, SpoolUsage};

/// One core pushing to `endpoint` with a send queue deep enough that
/// ZeroMQ takes every event directly, and a spool in the temp dir.
pub fn settings(endpoint: &str) -> Settings {
    settings_with(endpoint, &["--sndhwm", "100000"])
}

/// One core pushing to `endpoint`, a new spool in the temp dir, and `extra`
/// options; every other setting is the default.
pub fn settings_with(endpoint: &str, extra: &[&str]) -> Settings {
    // A spool of its own for each call: tests in one process must not
    // recover each other's events.
    static CALLS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let spool =
        std::env::temp_dir().join(format!("hookwire-standalone-{}-{n}", std::process::id()));
    let spool = spool.to_str().expect("temp dir is UTF-8");
    let mut args = vec![
        "hookwire",
        "--push",
        endpoint,
        "--cores",
        "1",
        "--spool-dir",
        spool,
    ];
    args.extend_from_slice(extra);
    let cli = Cli::try_parse_from(args).expect("valid arguments");
    Settings::from_args(cli.serve).expect("valid settings")
}

/// Core 0's state outside the server: its spool is recovered on a
/// short-lived executor (the retry and flush tasks do not run, so events
/// must go straight to ZeroMQ), and its consumers are waited for, so the
/// first events do not spool.
pub fn shard(settings: Arc<Settings>) -> Result<Shard, Box<dyn std::error::Error>> {
    let config = SpoolConfig::for_core(&settings, 0, SpoolUsage::new(1));
    let spool = glommio::LocalExecutor::default().run(CoreSpool::recover(&config))?;
    let mut shard = Shard::new(0, settings, Rc::new(RefCell::new(spool)))?;
    let start = Instant::now();
    while shard.fanout.status().iter().any(|r| r.connected == 0)
        && start.elapsed() < Duration::from_secs(10)
    {
        std::thread::sleep(Duration::from_millis(5));
        shard.fanout.tick();
    }
    Ok(shard)
}

/// A connection from loopback with a core's share of the body budget
/// to itself.
pub fn conn(settings: &Settings) -> Conn {
    let budget = Rc::new(Budget::new(settings.inflight_body_per_core()));
    Conn::new(std::net::Ipv4Addr::LOCALHOST.into(), settings, budget)
}

/// Appends bytes to a connection's buffer as if they had been read.
///
/// # Panics
/// When they do not fit under the connection's buffer limit, or need more
/// of the body budget than is left.
pub fn feed(conn: &mut Conn, bytes: &[u8]) {
    let mut rest = bytes;
    while !rest.is_empty() {
        conn.room().expect("within the body budget");
        let spare = conn.spare();
        let n = spare.len().min(rest.len());
        assert!(n > 0, "feed beyond the connection's buffer limit");
        spare[..n].copy_from_slice(&rest[..n]);
        conn.filled(n);
        rest = &rest[n..];
    }
}

/// Reads core 0's spool as its delivery does after a restart: the segment
/// files are recovered, then every route's records are read with the
/// spool's reader (opens and reads on a short-lived executor) and handed
/// to `send`, which takes each one. Stops once every route is idle, or
/// after `max_steps` opens and reads, so damage can never make it spin.
pub fn read_spool(
    settings: &Settings,
    max_steps: usize,
    mut send: impl FnMut(&[u8], &[u8]),
) -> std::io::Result<usize> {
    use crate::spool::{self, Next};
    let config = SpoolConfig::for_core(settings, 0, SpoolUsage::new(1));
    let durable = settings.durable;
    let window = settings.replay_window;
    glommio::LocalExecutor::default().run(async move {
        let mut spool = CoreSpool::recover(&config).await?;
        let mut steps = 0;
        for route in 0..spool.routes.len() {
            while steps < max_steps {
                let r = &mut spool.routes[route];
                let next = spool::deliver(r, route, durable, window, |key, envelope, _| {
                    send(key, envelope);
                    true
                });
                steps += 1;
                match next {
                    Next::Idle => break,
                    Next::Read {
                        file, offset, len, ..
                    } => {
                        let bytes = spool::read(file, offset, len).await?;
                        spool::store_chunk(&mut spool.routes[route], offset, bytes);
                    }
                    Next::Open { path, .. } => {
                        let file = glommio::io::DmaFile::open(&path)
                            .await
                            .map_err(std::io::Error::from);
                        spool::opened(&mut spool.routes[route], &path, file)?;
                    }
                }
            }
        }
        Ok(steps)
    })
}
