//! `hookwire tap`: a consumer that binds PULL and prints every envelope as
//! one JSON line — the `kcat` of hookwire, for users and tests.

use std::io::Write;

use crate::config::TapArgs;

pub fn run(args: &TapArgs) -> Result<(), Box<dyn std::error::Error>> {
    let context = zmq::Context::new();
    let socket = context.socket(zmq::PULL)?;
    socket
        .bind(&args.bind)
        .map_err(|e| format!("--bind {}: {e}", args.bind))?;
    eprintln!(
        "tap bound {}",
        socket.get_last_endpoint()?.unwrap_or_default()
    );
    let stdout = std::io::stdout();
    let mut received = 0u64;
    while args.count.is_none_or(|n| received < n) {
        // In key+json mode the envelope is the last frame.
        let frames = socket.recv_multipart(0)?;
        let envelope = frames.last().map(Vec::as_slice).unwrap_or(b"");
        let mut out = stdout.lock();
        out.write_all(envelope)?;
        out.write_all(b"\n")?;
        out.flush()?;
        received += 1;
    }
    Ok(())
}
