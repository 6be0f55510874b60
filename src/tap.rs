//! `hookwire tap`: a consumer that binds PULL and prints every envelope as
//! one JSON line — the `kcat` of hookwire, for users and tests. With
//! `--ack` it acknowledges each envelope once printed, and prints a repeat
//! only once.

use std::io::Write;

use crate::config::TapArgs;
use crate::consumer::{AckTo, Consumer};

/// Ids remembered to drop repeats with `--ack`.
const WINDOW: usize = 100_000;

pub fn run(args: &TapArgs) -> Result<(), Box<dyn std::error::Error>> {
    let ack = args.ack.clone().map_or(AckTo::None, AckTo::One);
    // Without acks every message is printed, repeats too, as sent.
    let window = if args.ack.is_some() { WINDOW } else { 0 };
    let mut consumer = Consumer::new(&[args.bind.as_str()], true, &ack, window)
        .map_err(|e| format!("--bind {}: {e}", args.bind))?;
    eprintln!("tap bound {}", consumer.endpoint().unwrap_or_default());
    let stdout = std::io::stdout();
    let mut received = 0u64;
    while args.count.is_none_or(|n| received < n) {
        let Some(event) = consumer.recv(-1)? else {
            continue;
        };
        let mut out = stdout.lock();
        out.write_all(&event.envelope)?;
        out.write_all(b"\n")?;
        out.flush()?;
        consumer.ack()?;
        received += 1;
    }
    Ok(())
}
