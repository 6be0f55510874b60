//! The load test's consumer: binds a ZeroMQ PULL socket, receives every
//! envelope hookwire pushes, and checks each one — valid UTF-8 JSON, an
//! object with a string `key` and a decimal `id` — and that no id arrives
//! twice. On SIGTERM/SIGINT it keeps receiving until the socket has been
//! quiet for `--quiet-ms`, then prints one JSON line on stdout:
//!
//! ```json
//! {"received":N,"unique":U,"invalid":I,"duplicates":D,"keys":{"in.gen.…":N},"first_invalid":[…],"seconds":S}
//! ```
//!
//! It also stops by itself after `--idle-exit` seconds without a message
//! (0: never) and, whatever happens, after `--max-seconds`. With `--ids
//! FILE` it also writes the distinct ids there, sorted, as little-endian
//! u64s, so runs with several consumers can count the union.
//!
//! `cargo run --release --example sink -- --bind tcp://127.0.0.1:5555`

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use simd_json::value::tape::Tape;
use simd_json::Node;

/// The load test's ZeroMQ consumer (see the top of loadtest/sink.rs).
#[derive(clap::Parser)]
struct Args {
    /// ZeroMQ endpoint to bind the PULL socket on.
    #[arg(long, default_value = "tcp://127.0.0.1:5555")]
    bind: String,
    /// Stop after this many seconds without a message (0: never).
    #[arg(long, default_value_t = 0.0, value_name = "SECONDS")]
    idle_exit: f64,
    /// Stop after this many seconds whatever happens.
    #[arg(long, default_value_t = 3600.0, value_name = "SECONDS")]
    max_seconds: f64,
    /// After SIGTERM/SIGINT, stop once the socket is quiet this long.
    #[arg(long, default_value_t = 300, value_name = "MS")]
    quiet_ms: u64,
    /// Also write the distinct ids here, sorted, as little-endian u64s.
    #[arg(long, value_name = "FILE")]
    ids: Option<String>,
}

struct Tally {
    received: u64,
    invalid: u64,
    /// Every valid id received, in arrival order; duplicates are counted
    /// by sorting once the load is over ([`Tally::finish`]), so the sink
    /// spends its time during the run appending to memory it just touched
    /// instead of probing a hash set of millions (a cache miss per event).
    ids: Vec<u64>,
    unique: usize,
    duplicates: u64,
    /// Events per key; a run carries a handful of keys.
    keys: Vec<(String, u64)>,
    first_invalid: Vec<String>,
    /// simd-json parses in place: each frame is copied here first.
    scratch: Vec<u8>,
    buffers: simd_json::Buffers,
    tape: Option<Tape<'static>>,
}

impl Default for Tally {
    fn default() -> Self {
        Self {
            received: 0,
            invalid: 0,
            ids: Vec::with_capacity(1 << 20),
            unique: 0,
            duplicates: 0,
            keys: Vec::new(),
            first_invalid: Vec::new(),
            scratch: Vec::with_capacity(8192),
            buffers: simd_json::Buffers::new(8192),
            tape: None,
        }
    }
}

/// The top-level `key` and `id` strings of a parsed envelope.
fn key_and_id<'t>(tape: &[Node<'t>]) -> Result<(&'t str, &'t str), String> {
    let Some(&Node::Object { len, .. }) = tape.first() else {
        return Err("not a JSON object".into());
    };
    let (mut key, mut id) = (None, None);
    let mut at = 1;
    for _ in 0..len {
        let (Node::String(name), value) = (tape[at], tape[at + 1]) else {
            unreachable!("object keys are strings")
        };
        let slot = match name {
            "key" => &mut key,
            "id" => &mut id,
            _ => &mut None,
        };
        match value {
            _ if !matches!(name, "key" | "id") => {}
            _ if slot.is_some() => return Err(format!("{name} given twice")),
            Node::String(s) => *slot = Some(s),
            _ => return Err(format!("{name} is not a string")),
        }
        at += 1 + match value {
            Node::Object { count, .. } | Node::Array { count, .. } => count + 1,
            _ => 1,
        };
    }
    Ok((key.ok_or("no key")?, id.ok_or("no id")?))
}

impl Tally {
    fn check(&mut self, frame: &[u8]) {
        self.received += 1;
        self.scratch.clear();
        self.scratch.extend_from_slice(frame);
        let mut tape = self
            .tape
            .take()
            .unwrap_or_else(|| Tape(Vec::with_capacity(512)))
            .reset();
        let parsed = simd_json::fill_tape(&mut self.scratch, &mut self.buffers, &mut tape)
            .map_err(|e| e.to_string())
            .and_then(|()| key_and_id(&tape.0))
            .and_then(|(key, id)| match id.parse::<u64>() {
                Ok(n) if !id.starts_with('0') => Ok((key, n)),
                _ => Err(format!("id {id:?} is not a decimal u64")),
            });
        match parsed {
            Ok((key, id)) => {
                self.ids.push(id);
                match self.keys.iter_mut().find(|(k, _)| k == key) {
                    Some((_, n)) => *n += 1,
                    None => self.keys.push((key.to_owned(), 1)),
                }
            }
            Err(why) => {
                self.invalid += 1;
                if self.first_invalid.len() < 3 {
                    let shown = String::from_utf8_lossy(&frame[..frame.len().min(300)]);
                    self.first_invalid.push(format!("{why}: {shown}"));
                }
            }
        }
        self.tape = Some(tape.reset());
    }

    /// Counts the distinct ids and the repeats among them.
    fn finish(&mut self) {
        self.ids.sort_unstable();
        self.ids.dedup();
        self.unique = self.ids.len();
        self.duplicates = self.received - self.invalid - self.unique as u64;
    }

    fn json(&self, seconds: f64) -> String {
        let keys: serde_json::Map<String, serde_json::Value> = self
            .keys
            .iter()
            .map(|(k, n)| (k.clone(), (*n).into()))
            .collect();
        serde_json::json!({
            "received": self.received,
            "unique": self.unique,
            "invalid": self.invalid,
            "duplicates": self.duplicates,
            "keys": keys,
            "first_invalid": self.first_invalid,
            "seconds": (seconds * 1000.0).round() / 1000.0,
        })
        .to_string()
    }
}

fn main() {
    let args = <Args as clap::Parser>::parse();
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(signal, stop.clone()).expect("signal handler");
    }
    let context = zmq::Context::new();
    let socket = context.socket(zmq::PULL).expect("PULL socket");
    socket.set_rcvhwm(0).expect("rcvhwm");
    socket
        .bind(&args.bind)
        .unwrap_or_else(|e| panic!("bind {}: {e}", args.bind));
    eprintln!("sink bound {}", args.bind);

    let started = Instant::now();
    let mut last = Instant::now();
    let mut tally = Tally::default();
    let mut msg = zmq::Message::new();
    let mut stopping_since: Option<Instant> = None;
    loop {
        // Take everything that is ready, then wait up to 50 ms for more.
        let mut got = false;
        loop {
            match socket.recv(&mut msg, zmq::DONTWAIT) {
                Ok(()) => {
                    // In key+json mode the envelope is the last frame.
                    while msg.get_more() {
                        socket.recv(&mut msg, 0).expect("next frame");
                    }
                    tally.check(&msg);
                    got = true;
                }
                Err(zmq::Error::EAGAIN) => break,
                Err(zmq::Error::EINTR) => break,
                Err(e) => panic!("recv: {e}"),
            }
        }
        let now = Instant::now();
        if got {
            last = now;
        }
        if stop.load(Ordering::Relaxed) && stopping_since.is_none() {
            stopping_since = Some(now);
        }
        let quiet = now - last >= Duration::from_millis(args.quiet_ms);
        let done = (stopping_since.is_some() && quiet)
            // A bound even while messages keep coming after the signal.
            || stopping_since.is_some_and(|t| now - t > Duration::from_secs(10))
            || (args.idle_exit > 0.0 && (now - last).as_secs_f64() >= args.idle_exit)
            || started.elapsed().as_secs_f64() >= args.max_seconds;
        if done {
            break;
        }
        if !got {
            let _ = socket.poll(zmq::POLLIN, 50);
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    tally.finish();
    if let Some(path) = &args.ids {
        let bytes: Vec<u8> = tally.ids.iter().flat_map(|id| id.to_le_bytes()).collect();
        std::fs::write(path, bytes).unwrap_or_else(|e| panic!("write {path}: {e}"));
    }
    println!("{}", tally.json(seconds));
}

#[cfg(test)]
mod tests {
    use super::Tally;

    #[test]
    fn counts_invalid_and_duplicates() {
        let mut t = Tally::default();
        t.check(br#"{"key":"in.gen.a.b","data":{"x":[1,{"y":"\u00e9"}]},"id":"7532420803820785665","time":1}"#);
        t.check(br#"{"key":"in.gen.a.b","id":"7532420803820785666"}"#);
        t.check(br#"{"key":"in.gen.a.b","id":"7532420803820785665"}"#); // duplicate
        t.check(br#"{"key":"in.gen.a.b","id":"7532420803820785667""#); // truncated
        t.check(br#"{"key":"in.gen.a.b","id":"0123"}"#); // not a canonical decimal
        t.check(br#"{"key":"in.gen.a.b","id":7532420803820785668}"#); // id not a string
        t.check(b"{\"key\":\"in.gen.a.b\",\"id\":\"1\",\"ua\":\"\xff\"}"); // not UTF-8
        t.check(br#"{"key":"in.gen.a.b","id":"2"} trailing"#);
        t.check(br#"{"key":"in.gen.a.b","id":"3","data":{},"id":"4"}"#); // id twice
        t.finish();
        assert_eq!(t.received, 9);
        assert_eq!(t.unique, 2);
        assert_eq!(t.duplicates, 1);
        assert_eq!(t.invalid, 6);
        assert_eq!(t.keys, [("in.gen.a.b".to_owned(), 3)]);
        assert_eq!(t.first_invalid.len(), 3);
    }
}
