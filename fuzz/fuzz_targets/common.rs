//! What the targets share: a core's state outside the server, made once
//! per process, with a connected consumer so events are admitted.

#![allow(dead_code)]

use std::cell::RefCell;
use std::sync::Arc;

use hookwire::config::Settings;
use hookwire::conn::{Conn, Step};
use hookwire::shard::Shard;

/// `--max-body` of the targets' core: small, so its limit is reached.
pub const MAX_BODY: &str = "65536";

thread_local! {
    static CORE: RefCell<Option<(Arc<Settings>, Shard)>> = const { RefCell::new(None) };
}

/// Runs `f` with the process's settings and core 0's shard.
pub fn with_core<R>(f: impl FnOnce(&Arc<Settings>, &mut Shard) -> R) -> R {
    with_core_using(&[], f)
}

/// [`with_core`] for a core made with `extra` options too (those of the
/// first call: the core is made once per process).
pub fn with_core_using<R>(extra: &[&str], f: impl FnOnce(&Arc<Settings>, &mut Shard) -> R) -> R {
    CORE.with(|core| {
        let mut core = core.borrow_mut();
        let (settings, shard) = core.get_or_insert_with(|| {
            // A PULL socket the shard's PUSH connects to; what it pushes is
            // dropped in the outbox, never sent.
            let context = zmq::Context::new();
            let pull = context.socket(zmq::PULL).unwrap();
            pull.bind("tcp://127.0.0.1:*").unwrap();
            let endpoint = pull.get_last_endpoint().unwrap().unwrap();
            std::mem::forget(pull);
            std::mem::forget(context);
            let mut args = vec!["--sndhwm", "100000", "--max-body", MAX_BODY];
            args.extend_from_slice(extra);
            let settings = Arc::new(hookwire::testing::settings_with(&endpoint, &args));
            let shard = hookwire::testing::shard(settings.clone()).unwrap();
            (settings, shard)
        });
        f(settings, shard)
    })
}

/// Feeds `bytes` to `conn` in reads of `piece` bytes (all at once for 0),
/// as its I/O loop does, and processes each. Checks that every pass
/// answers in HTTP and that a connection asked to read has room to.
/// Returns the last step, or `None` once a read would wait for the body
/// budget or the bytes ran out. Events stay in the outbox.
pub fn drive(conn: &mut Conn, shard: &mut Shard, bytes: &[u8], piece: usize) -> Option<Step> {
    let mut rest = bytes;
    let mut step = None;
    while !rest.is_empty() {
        if conn.room().is_err() {
            return None;
        }
        let spare = conn.spare();
        // A read into no room returns 0, which the I/O loop takes for the
        // peer's close: the sender would get no answer.
        assert!(!spare.is_empty(), "a connection asked to read has no room");
        let mut n = spare.len().min(rest.len());
        if piece > 0 {
            n = n.min(piece);
        }
        spare[..n].copy_from_slice(&rest[..n]);
        conn.filled(n);
        rest = &rest[n..];
        let before = conn.out.len();
        let s = conn.process(shard);
        let said = &conn.out[before..];
        if !said.is_empty() {
            assert!(
                said.starts_with(b"HTTP/1.1 "),
                "not an HTTP response: {:?}",
                String::from_utf8_lossy(&said[..said.len().min(64)])
            );
        }
        conn.waits.clear();
        step = Some(s);
        match s {
            Step::More { .. } => {}
            Step::Done { completed } | Step::Close { completed } => {
                assert!(completed > 0, "{s:?} with nothing answered");
                assert!(!conn.out.is_empty(), "{s:?} closes without an answer");
                return step;
            }
        }
    }
    step
}
