//! A core's spare connection buffers: a closed connection's read buffer,
//! output buffer and list of waits go back here, and the next connection
//! takes them, so a new connection allocates nothing once the core has
//! served a few. Kept per thread (a core is one thread, and tests that
//! drive a connection keep theirs apart), at most [`SPARE`] of each kind.

use std::cell::RefCell;

use super::{Wait, INITIAL};

/// Spare buffers of each kind a core keeps: enough for a burst of new
/// connections without holding the memory of every connection it ever had.
pub const SPARE: usize = 128;
/// An output buffer larger than this (a long pipelined run's responses) is
/// freed rather than kept.
const KEEP_OUT: usize = 16 * 1024;
/// A list of waits longer than this is freed rather than kept.
const KEEP_WAITS: usize = 256;

#[derive(Default)]
struct Spares {
    reads: Vec<Vec<u8>>,
    outs: Vec<Vec<u8>>,
    waits: Vec<Vec<Wait>>,
}

thread_local! {
    static SPARES: RefCell<Spares> = RefCell::new(Spares::default());
}

/// A read buffer of [`INITIAL`] bytes (their contents are whatever its
/// last connection left: a connection reads only what it was given).
pub fn read_buffer() -> Vec<u8> {
    SPARES
        .with_borrow_mut(|s| s.reads.pop())
        .unwrap_or_else(|| vec![0; INITIAL])
}

/// An empty output buffer, with the capacity its last connection grew.
pub fn out_buffer() -> Vec<u8> {
    SPARES.with_borrow_mut(|s| s.outs.pop()).unwrap_or_default()
}

/// An empty list of waits.
pub fn waits() -> Vec<Wait> {
    SPARES
        .with_borrow_mut(|s| s.waits.pop())
        .unwrap_or_default()
}

/// Takes back a closed connection's buffers: a read buffer at its resting
/// size, and output buffers and lists that have grown (an empty one costs
/// nothing to make again) but not past their keeping size.
pub fn give_back(read: Vec<u8>, mut out: Vec<u8>, mut waits: Vec<Wait>) {
    // Not from a thread that is ending (its spares are gone).
    let _ = SPARES.try_with(|s| {
        let mut s = s.borrow_mut();
        if read.len() == INITIAL && read.capacity() == INITIAL {
            keep(&mut s.reads, read);
        }
        if out.capacity() > 0 && out.capacity() <= KEEP_OUT {
            out.clear();
            keep(&mut s.outs, out);
        }
        if waits.capacity() > 0 && waits.capacity() <= KEEP_WAITS {
            waits.clear();
            keep(&mut s.waits, waits);
        }
    });
}

fn keep<T>(spares: &mut Vec<T>, v: T) {
    if spares.capacity() == 0 {
        // Made at its full size once, by the first buffer given back.
        spares.reserve_exact(SPARE);
    }
    if spares.len() < SPARE {
        spares.push(v);
    }
}
