//! The ack listener: for each acknowledged route one PULL socket, bound
//! for the whole process on its own thread (a consumer acks to one
//! endpoint, whichever core sent the event). Each id goes to the core that
//! holds its event, read from the id's worker bits, over that core's
//! channel.

use std::sync::{mpsc, Weak};

use crate::config::Settings;
use crate::event::id::CORE_BITS;

/// Acknowledged ids of one route for one core, tokens that were no id at
/// all, and ids dropped before it because the core's channel was full
/// (counted by the core that gets them).
#[derive(Debug)]
pub struct AckBatch {
    pub route: usize,
    pub ids: Vec<u64>,
    pub bad: u64,
    pub dropped: u64,
}

/// The largest ack message taken (`ZMQ_MAXMSGSIZE`): a peer that sends a
/// larger one is disconnected. 64 KiB holds some 3 000 ids.
const MAX_MESSAGE: i64 = 64 << 10;
/// Ack messages queued by libzmq per consumer before it stops reading
/// from that consumer (`ZMQ_RCVHWM`).
const RCVHWM: i32 = 1_000;
/// Batches queued for one core: the listener drops more (an ack dropped
/// only makes its event come again) rather than let memory grow.
pub const CHANNEL: usize = 1_024;

/// Binds every acknowledged route's endpoint and starts the listener
/// thread, which hands ids to `cores` (one bounded sender per core, of
/// [`CHANNEL`] batches). The thread ends once `alive` has no owner left
/// (every core has ended).
pub fn start(
    settings: &Settings,
    cores: Vec<mpsc::SyncSender<AckBatch>>,
    alive: Weak<()>,
) -> Result<(), String> {
    let context = zmq::Context::new();
    let mut sockets = Vec::new();
    for (route, spec) in settings.routes.iter().enumerate() {
        let Some(endpoint) = &spec.ack else {
            continue;
        };
        let bind = || -> Result<zmq::Socket, zmq::Error> {
            let socket = context.socket(zmq::PULL)?;
            socket.set_linger(0)?;
            socket.set_maxmsgsize(MAX_MESSAGE)?;
            socket.set_rcvhwm(RCVHWM)?;
            if crate::config::needs_ipv6(endpoint) {
                socket.set_ipv6(true)?;
            }
            socket.bind(endpoint)?;
            Ok(socket)
        };
        let socket = bind().map_err(|e| format!("--ack-endpoint {endpoint}: {e}"))?;
        sockets.push((route, socket));
    }
    if sockets.is_empty() {
        return Ok(());
    }
    std::thread::Builder::new()
        .name("hookwire-acks".into())
        .spawn(move || listen(&context, &sockets, &cores, &alive))
        .map_err(|e| format!("cannot start the ack listener: {e}"))?;
    Ok(())
}

/// Reads acks until every core is gone (checked at least every 100 ms).
fn listen(
    _context: &zmq::Context,
    sockets: &[(usize, zmq::Socket)],
    cores: &[mpsc::SyncSender<AckBatch>],
    alive: &Weak<()>,
) {
    let mut bad_seen = 0u64;
    let mut dropped_seen = 0u64;
    // Per core and route: ids dropped and not yet told to the core.
    let mut untold = vec![vec![0u64; sockets.len()]; cores.len()];
    let mut poll_failed = false;
    while alive.strong_count() > 0 {
        let mut items: Vec<zmq::PollItem<'_>> = sockets
            .iter()
            .map(|(_, s)| s.as_poll_item(zmq::POLLIN))
            .collect();
        if let Err(e) = zmq::poll(&mut items, 100) {
            // Not a spin: wait as a poll that timed out would.
            if !std::mem::replace(&mut poll_failed, true) {
                tracing::warn!(
                    "--ack-endpoint: polling the ack sockets failed: {e}; retrying every 100 ms"
                );
            }
            drop(items);
            std::thread::sleep(std::time::Duration::from_millis(100));
            continue;
        }
        poll_failed = false;
        let readable: Vec<bool> = items.iter().map(zmq::PollItem::is_readable).collect();
        drop(items);
        let readable = sockets.iter().enumerate().zip(readable).filter(|(_, r)| *r);
        for ((slot, (route, socket)), _) in readable {
            let mut per_core: Vec<Vec<u64>> = vec![Vec::new(); cores.len()];
            let mut bad = 0u64;
            // At most a thousand messages at a time, so no route starves.
            for _ in 0..1000 {
                let Ok(frames) = socket.recv_multipart(zmq::DONTWAIT) else {
                    break;
                };
                for frame in &frames {
                    bad += parse(frame, |id| {
                        per_core[core_of(id, cores.len())].push(id);
                        true
                    });
                }
            }
            if bad > 0 {
                if bad_seen == 0 || (bad_seen + bad) / 1000 > bad_seen / 1000 {
                    tracing::warn!(
                        "--ack-endpoint: {bad} token(s) that are no id (ids are decimal, separated by spaces, commas or newlines); {} so far, counted in /stats",
                        bad_seen + bad
                    );
                }
                bad_seen += bad;
            }
            let mut gone = 0;
            let mut dropped = 0u64;
            for (core, ids) in per_core.into_iter().enumerate() {
                let bad = if core == 0 { bad } else { 0 };
                let told = &mut untold[core][slot];
                if ids.is_empty() && bad == 0 && *told == 0 {
                    continue;
                }
                let n = ids.len() as u64;
                let batch = AckBatch {
                    route: *route,
                    ids,
                    bad,
                    dropped: *told,
                };
                match cores[core].try_send(batch) {
                    Ok(()) => *told = 0,
                    Err(mpsc::TrySendError::Full(_)) => {
                        *told += n;
                        dropped += n;
                    }
                    Err(mpsc::TrySendError::Disconnected(_)) => gone += 1,
                }
            }
            if gone == cores.len() {
                return;
            }
            if dropped > 0 {
                if dropped_seen == 0 || (dropped_seen + dropped) / 1000 > dropped_seen / 1000 {
                    tracing::warn!(
                        "--ack-endpoint: {dropped} ack(s) dropped: a core is not keeping up with its acks (their events are sent again); {} so far, counted in /stats",
                        dropped_seen + dropped
                    );
                }
                dropped_seen += dropped;
            }
        }
    }
}

/// The core of this run that holds the event of `id`: the core part of
/// its worker bits, modulo `cores`. A core adopts the spool directories of
/// the cores `k` with `k % cores == core` of a run with more cores (see
/// `spool::dir::core_dirs`), and re-sends their events under their old
/// ids, so an id of a core `k >= cores` is held by core `k % cores`. The
/// node part is not looked at: the spool's events keep the ids of the run
/// that accepted them, which may have had another `--node-id`; a core that
/// holds no such event counts the id unknown.
fn core_of(id: u64, cores: usize) -> usize {
    let core = ((id >> 12) & ((1 << CORE_BITS) - 1)) as usize;
    core % cores.max(1)
}

/// Reads one ack frame, ids in decimal separated by spaces, commas or
/// newlines (a JSON array of ids, strings or numbers, reads the same), and
/// hands each to `take`, which says whether it took it; returns the
/// tokens that were no id or not taken.
fn parse(frame: &[u8], mut take: impl FnMut(u64) -> bool) -> u64 {
    let separator = |b: &u8| matches!(b, b' ' | b'\t' | b'\r' | b'\n' | b',' | b'[' | b']' | b'"');
    let mut bad = 0;
    for token in frame.split(separator).filter(|t| !t.is_empty()) {
        let id = std::str::from_utf8(token)
            .ok()
            .filter(|t| t.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|t| t.parse::<u64>().ok());
        if !id.is_some_and(&mut take) {
            bad += 1;
        }
    }
    bad
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ack_frames_read_as_text_or_json_and_bad_tokens_are_counted() {
        let mut ids = Vec::new();
        let bad = parse(b"1 2,3\n4", |id| {
            ids.push(id);
            true
        });
        assert_eq!((ids.as_slice(), bad), (&[1, 2, 3, 4][..], 0));
        ids.clear();
        let bad = parse(br#"["5", 6, "x7", -8, 99999999999999999999]"#, |id| {
            ids.push(id);
            true
        });
        assert_eq!((ids.as_slice(), bad), (&[5, 6][..], 3));
        assert_eq!(parse(b"", |_| true), 0);
        assert_eq!(parse(b"\xff\xfe", |_| true), 1, "not UTF-8");
    }

    #[test]
    fn the_listener_ends_with_the_last_core() {
        use std::sync::Arc;
        use std::time::{Duration, Instant};
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let endpoint = format!("tcp://127.0.0.1:{port}");
        let route = format!("*={endpoint}");
        let settings =
            crate::testing::settings_with("tcp://127.0.0.1:1", &["--ack-endpoint", &route]);
        let alive = Arc::new(());
        let (core, _inbox) = mpsc::sync_channel(1);
        start(&settings, vec![core], Arc::downgrade(&alive)).unwrap();
        let context = zmq::Context::new();
        let probe = context.socket(zmq::PULL).unwrap();
        assert!(probe.bind(&endpoint).is_err(), "the listener holds it");
        drop(alive);
        // No ack arrives; the listener still lets the endpoint go.
        let since = Instant::now();
        while probe.bind(&endpoint).is_err() {
            assert!(
                since.elapsed() < Duration::from_secs(5),
                "the listener outlived every core"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    #[test]
    fn an_id_goes_to_the_core_that_holds_its_event() {
        let id = |node: u64, core: u64| (1u64 << 40) | (((node << 6) | core) << 12) | 7;
        assert_eq!(core_of(id(3, 5), 8), 5);
        // A restart with fewer cores: core 9 of a run with 12 cores is
        // adopted by core 9 % 8 = 1 (`k % cores == core`, spool::dir).
        assert_eq!(core_of(id(3, 9), 8), 1);
        assert_eq!(core_of(id(3, 63), 2), 1);
        assert_eq!(core_of(id(3, 6), 3), 0);
        assert_eq!(core_of(id(3, 5), 1), 0);
        // Another --node-id before the restart: the same rule.
        assert_eq!(core_of(id(2, 5), 8), 5);
        assert_eq!(core_of(id(15, 9), 8), 1);
    }
}
