//! The reader: hands a route's records to ZeroMQ oldest first, asks for
//! the disk reads and opens it needs, skips damage, and deletes (or, in
//! durable mode, retires) delivered files.

use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::{Duration, Instant};

use glommio::io::{DmaFile, ReadResult};

use super::record::{self, Damage, Parsed, Record, HEADER};
use super::segment::{Chunk, Retired, RouteSpool, Segment};
use crate::event::KEY_PREFIX;

/// Bytes read from a segment at a time.
const READ_CHUNK: usize = 256 << 10;

/// What the retry task should do for a route after trying its records.
pub enum Next {
    /// Nothing waits, or ZeroMQ is not taking more now.
    Idle,
    /// Read `len` bytes of `file` at (file) `offset` for `route`, then
    /// hand them to [`store_chunk`].
    Read {
        route: usize,
        file: Rc<DmaFile>,
        offset: u64,
        len: usize,
    },
    /// Open the route's front file (closed while it waited its turn), then
    /// hand the result to [`opened`].
    Open { route: usize, path: PathBuf },
}

/// Whether a spooled record was handed to a consumer before.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sent {
    /// Not yet: this is its first send.
    Never,
    /// Accepted mode: a re-send after a disconnect, first sent then (Unix ms).
    At(u64),
    /// Durable mode: the journal replayed after a disconnect.
    Replay,
}

/// Hands records at the head of `route` to `send` until it refuses or the
/// chunk in memory runs out. Deletes delivered files.
pub fn deliver(
    spool: &mut RouteSpool,
    route: usize,
    durable: bool,
    window: Duration,
    mut send: impl FnMut(&[u8], &[u8], Sent) -> bool,
) -> Next {
    let now = Instant::now();
    forget_retired(spool, window, now);
    loop {
        drop_delivered(spool, durable, now);
        let Some(seg) = spool.segments.front() else {
            return Next::Idle;
        };
        if spool.head < seg.start {
            spool.head = seg.start;
        }
        if spool.head >= seg.end() {
            return Next::Idle; // waiting for the flusher
        }
        let remaining = seg.end() - spool.head;
        match record_at_head(spool, remaining) {
            Ok(Some(Record {
                key,
                envelope,
                first_sent,
                len,
            })) => {
                if let Some(from) = spool.resync {
                    let path = seg.path.display();
                    let at = spool.head - seg.start;
                    tracing::warn!(
                        "spool: {path}: {} damaged bytes from offset {} skipped; records resume at offset {at}",
                        spool.head - from,
                        from - seg.start
                    );
                }
                let sent = match first_sent {
                    Some(ms) => Sent::At(ms),
                    None if spool.head < spool.replayed_to => Sent::Replay,
                    None => Sent::Never,
                };
                if !send(key, envelope, sent) {
                    return Next::Idle;
                }
                spool.resync = None;
                spool.head += len;
            }
            Ok(None) => {
                if let Some(next) = read_more(spool, route) {
                    return next;
                }
            }
            Err(_) if !seg.sealed => {
                // The file still being appended to was written by this run:
                // a record that does not parse means the chunk in memory is
                // stale. Read again.
                spool.chunk = None;
                return Next::Idle;
            }
            Err(damage) => skip_damage(spool, damage),
        }
    }
}

/// Deletes the retired files whose replay window has passed.
fn forget_retired(spool: &mut RouteSpool, window: Duration, now: Instant) {
    while let Some(retired) = spool.retired.front() {
        if now.duration_since(retired.since) < window {
            break;
        }
        let _ = std::fs::remove_file(&retired.segment.path);
        spool.retired.pop_front();
    }
}

/// Drops delivered files from the front (and finished adopted/sealed
/// ones): deleted, or in durable mode retired for the replay window.
fn drop_delivered(spool: &mut RouteSpool, durable: bool, now: Instant) {
    while let Some(seg) = spool.segments.front() {
        // The active file is dropped when drained only in accepted mode
        // (a journal keeps appending to it until it rotates).
        let drained_active = !durable && spool.pending.is_empty() && !spool.writing;
        if spool.head < seg.end() || !(seg.sealed || drained_active) {
            break;
        }
        let mut seg = spool.segments.pop_front().expect("front");
        if let Some(from) = spool.resync.take() {
            say_no_good_record(&seg, from);
        }
        if spool.segments.is_empty() {
            spool.head = seg.end();
        }
        if durable {
            // Kept closed: read again only if a consumer disconnects
            // ([`RouteSpool::rewind`]). A replayed file keeps its first
            // delivery's time: replays do not extend its window.
            seg.file = None;
            let since = *seg.delivered.get_or_insert(now);
            spool.retired.push_back(Retired {
                segment: seg,
                since,
            });
        } else {
            let _ = std::fs::remove_file(&seg.path);
        }
        spool.chunk = None;
    }
}

/// The record at `head` of the front file is not all in memory: the open
/// or the read that brings it, or `None` (go on) when the file ends inside
/// it, a torn last write, which is skipped.
fn read_more(spool: &mut RouteSpool, route: usize) -> Option<Next> {
    let seg = spool.segments.front().expect("deliver found it");
    // Data is on disk (head < end), so the file exists: one
    // without a handle was closed while it waited its turn.
    let Some(file) = seg.file.clone() else {
        return Some(Next::Open {
            route,
            path: seg.path.to_path_buf(),
        });
    };
    let chunk_end = spool.chunk.as_ref().map_or(0, Chunk::end);
    let covers = spool.chunk.as_ref().is_some_and(|c| c.at <= spool.head);
    if covers && chunk_end >= seg.end() {
        // The file ends inside this record: a torn last write.
        let at = spool.head - seg.start;
        tracing::warn!(
            "spool: {}: truncated record at offset {at}; skipped",
            seg.path.display()
        );
        spool.resync = None;
        spool.head = seg.end();
        return None;
    }
    let off = spool.head - seg.start;
    let want = READ_CHUNK.max(needed(spool.chunk.as_ref(), spool.head));
    let len = want.min((seg.written - off) as usize);
    Some(Next::Read {
        route,
        file,
        offset: off,
        len,
    })
}

/// Steps past damage at `head` of the front file (a sealed one): to the
/// end of its data, or one byte on, looking for the next good record.
fn skip_damage(spool: &mut RouteSpool, damage: Damage) {
    let seg = spool.segments.front().expect("deliver found it");
    let at = spool.head - seg.start;
    let path = seg.path.display();
    match (damage, spool.resync) {
        (Damage::End, None) => spool.head = seg.end(),
        (Damage::End, Some(from)) => {
            say_no_good_record(seg, from);
            spool.resync = None;
            spool.head = seg.end();
        }
        // Still looking: one byte on.
        (_, Some(_)) => spool.head += 1,
        (damage, None) => {
            let what = match damage {
                Damage::Crc => format!("record at offset {at} fails its CRC"),
                Damage::Truncated => format!("truncated record at offset {at}"),
                _ => format!("damaged record length at offset {at}"),
            };
            tracing::warn!("spool: {path}: {what}; skipped, looking for the next good record");
            spool.resync = Some(spool.head);
            spool.head += 1;
        }
    }
}

/// The search for a good record after the damage at logical offset `from`
/// reached the end of `seg`'s data.
fn say_no_good_record(seg: &Segment, from: u64) {
    tracing::warn!(
        "spool: {}: no good record after the damage at offset {}; skipped the rest of the file",
        seg.path.display(),
        from - seg.start
    );
}

/// Bytes needed to hold the whole record at `head`, if its header is known.
fn needed(chunk: Option<&Chunk>, head: u64) -> usize {
    chunk
        .and_then(|c| {
            let off = head.checked_sub(c.at)? as usize;
            record::needed(c.bytes.get(off..)?)
        })
        .unwrap_or(0)
}

/// Reads a chunk for a route that asked for one.
pub async fn read(file: Rc<DmaFile>, offset: u64, len: usize) -> std::io::Result<ReadResult> {
    file.read_at(offset, len)
        .await
        .map_err(std::io::Error::from)
}

/// Takes the outcome of a [`Next::Open`] of `path`. A file that is gone
/// (deleted by hand) cannot be read again: its records are skipped with a
/// warning that says how many bytes were lost, and delivery goes on with
/// the next file. Any other error is returned, to be retried.
pub fn opened(
    spool: &mut RouteSpool,
    path: &Path,
    outcome: std::io::Result<DmaFile>,
) -> std::io::Result<()> {
    let Some(seg) = spool.segments.front_mut().filter(|s| *s.path == *path) else {
        return Ok(()); // no longer the front file: nothing to do
    };
    match outcome {
        Ok(file) => {
            seg.file = Some(Rc::new(file));
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && seg.sealed => {
            tracing::warn!(
                "spool: {} is gone: {} bytes of records in it skipped",
                path.display(),
                seg.end() - spool.head.max(seg.start)
            );
            spool.head = seg.end();
            spool.resync = None;
            spool.chunk = None;
            Ok(())
        }
        Err(e) => Err(e),
    }
}

/// Stores a chunk read at `file_offset` of the route's first segment.
pub fn store_chunk(spool: &mut RouteSpool, file_offset: u64, bytes: ReadResult) {
    if let Some(seg) = spool.segments.front() {
        spool.chunk = Some(Chunk {
            at: seg.start + file_offset,
            bytes,
        });
    }
}

/// The next complete record at `head` in the chunk read from disk, with
/// `remaining` bytes of the file's data from `head` on: see
/// [`record::parse_record`].
fn record_at_head(spool: &RouteSpool, remaining: u64) -> Parsed<'_> {
    let Some(Chunk { at, bytes }) = &spool.chunk else {
        return Ok(None);
    };
    let Some(off) = spool.head.checked_sub(*at).map(|o| o as usize) else {
        return Ok(None);
    };
    let b = &bytes[off.min(bytes.len())..];
    if spool.resync.is_some() {
        // Looking for the next record among damaged bytes: every key
        // starts with the routing key's prefix, so most offsets are passed
        // over without reading a length's worth of bytes or computing a CRC.
        const PREFIX: &[u8] = KEY_PREFIX.as_bytes();
        let probe = HEADER + 2 + PREFIX.len();
        if remaining >= probe as u64 {
            if b.len() < probe {
                return Ok(None);
            }
            if &b[HEADER + 2..probe] != PREFIX {
                return Err(Damage::Length);
            }
        }
    }
    record::parse_record(b, remaining)
}
