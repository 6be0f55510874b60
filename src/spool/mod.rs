//! The on-disk spool: one FIFO log per core and route, for events ZeroMQ
//! cannot take (and, in `--ack durable`, a journal of every event).
//!
//! Files (`seg-<seq>.log`) hold records (`record.rs`) and rotate at
//! `SEGMENT_BYTES` (journal files also at half the replay window's age);
//! a zero length marks the end of the data in a file (DMA writes pad the
//! last block with zeros).
//!
//! The request path only appends to a route's in-memory `pending` bytes and
//! takes a *ticket*; the core's flusher task writes every route's pending
//! bytes with O_DIRECT (aligned; the last partial block is kept in memory and
//! rewritten by the next flush), `fdatasync`s in durable mode, and completes
//! the ticket. A connection whose responses depend on a ticket waits for it
//! before writing them; if the write failed, those responses become 503s.
//! The core's retry task reads records back (only what is written) and hands
//! them to ZeroMQ oldest first, deleting a file once it is delivered (in
//! durable mode, once it is also older than the replay window).
//!
//! # Layout
//!
//! Imports point one way: `record`, `tickets`, `usage` and `disk` use none
//! of the others; `dir` uses `record` and `disk`, `segment` those three;
//! `spools` ([`CoreSpool`]) holds a core's segment logs, tickets, usage and
//! disk; `writer` and `reader` act on them. This file only declares and re-exports.
//!
//! - `spools`: [`CoreSpool`], a core's spools, and their recovery at start.
//! - `record`: the record codec and damage detection.
//! - `segment`: [`RouteSpool`], one route's log of segment files.
//! - `tickets`: [`Tickets`], what a connection waits on for its 200s.
//! - `usage`: [`SpoolUsage`], every core's bytes for `--spool-max-bytes`.
//! - `writer`: [`flush`], the DMA writer.
//! - `reader`: [`deliver`] and its disk reads.
//! - `dir`: directory names, the lock, the start's checks, [`stranded`].
//! - `disk`: the filesystem's free space and `--spool-min-free`.

mod dir;
pub mod disk;
mod reader;
mod record;
mod segment;
mod spools;
mod tickets;
mod usage;
mod writer;

pub use dir::{check_dir, lock_dir, route_dirs, stranded, Stranded};
pub use reader::{deliver, opened, read, store_chunk, Next, Sent};
pub use record::OVERHEAD as RECORD_OVERHEAD;
pub use segment::RouteSpool;
pub use spools::{CoreSpool, SpoolConfig};
pub use tickets::{Flushed, Tickets};
pub use usage::SpoolUsage;
pub use writer::flush;
