//! One route's log on one core: its segment files in order, the logical
//! offsets of what is delivered, written and appended, and the journal's
//! replay window.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::Instant;

use glommio::io::{DmaFile, ReadResult};

use super::dir::{self, SegmentFile};
use super::record;

/// Segment files rotate past this size.
pub const SEGMENT_BYTES: u64 = 16 << 20;

/// One spool file.
#[derive(Debug)]
pub(super) struct Segment {
    /// Shared with the write jobs (a flush copies no path).
    pub path: Rc<Path>,
    /// Logical offset of the file's first byte in the route's log.
    pub start: u64,
    /// Bytes of valid data on disk.
    pub written: u64,
    pub file: Option<Rc<DmaFile>>,
    /// No more appends (rotated, or adopted from an earlier run).
    pub sealed: bool,
    /// The written bytes of the file's last partial block, rewritten with
    /// the next append (O_DIRECT writes whole blocks).
    pub tail: Vec<u8>,
    /// When the file was opened (durable mode rotates by age too).
    pub opened: Instant,
    /// Durable mode: when it was first delivered, kept through replays so
    /// that its replay window does not start again.
    pub delivered: Option<Instant>,
}

impl Segment {
    /// A file of an earlier run, `size` bytes, adopted at `start`.
    pub fn adopted(path: PathBuf, start: u64, size: u64) -> Self {
        Self {
            path: path.into(),
            start,
            written: size,
            file: None,
            sealed: true,
            tail: Vec::new(),
            opened: Instant::now(),
            delivered: None,
        }
    }

    pub fn end(&self) -> u64 {
        self.start + self.written
    }
}

/// A delivered segment kept for the replay window (durable mode).
#[derive(Debug)]
pub(super) struct Retired {
    pub segment: Segment,
    /// When it was delivered.
    pub since: Instant,
}

/// A chunk of the front segment read from disk.
#[derive(Debug)]
pub(super) struct Chunk {
    /// Logical offset of its first byte.
    pub at: u64,
    pub bytes: ReadResult,
}

impl Chunk {
    /// Logical offset just past its last byte.
    pub fn end(&self) -> u64 {
        self.at + self.bytes.len() as u64
    }
}

/// One route's log on one core.
#[derive(Debug)]
pub struct RouteSpool {
    pub(super) dir: PathBuf,
    pub(super) next_seq: u64,
    pub(super) segments: VecDeque<Segment>,
    /// Logical offset of the first record not yet handed to ZeroMQ.
    pub(super) head: u64,
    /// Appended, not yet written: belongs at the end of the last segment.
    pub(super) pending: Vec<u8>,
    /// The write buffer a flush lends to this route's job (the last
    /// partial block, then `pending`), kept between flushes.
    pub(super) staging: Vec<u8>,
    pub(super) chunk: Option<Chunk>,
    /// A write of this route is in flight, of this many appended bytes.
    pub(super) writing: bool,
    pub(super) in_flight: u64,
    /// Delivered segments kept for the replay window (durable mode).
    pub(super) retired: VecDeque<Retired>,
    /// Looking for the next good record after damage that began at this
    /// logical offset (of the front segment).
    pub(super) resync: Option<u64>,
    /// Durable mode: records before this offset were handed to ZeroMQ
    /// before; a replay sends them again.
    pub(super) replayed_to: u64,
}

impl RouteSpool {
    pub(super) fn new(dir: PathBuf) -> Self {
        Self {
            dir,
            next_seq: 0,
            segments: VecDeque::new(),
            head: 0,
            pending: Vec::new(),
            staging: Vec::new(),
            chunk: None,
            writing: false,
            in_flight: 0,
            retired: VecDeque::new(),
            resync: None,
            replayed_to: 0,
        }
    }

    /// The log of the route directory `base` on core `core` of `cores`:
    /// the segment files of the core directories it adopts
    /// ([`dir::core_dirs`]), oldest first, queued for delivery before
    /// anything new.
    pub(super) fn adopt(base: &Path, core: usize, cores: usize) -> std::io::Result<Self> {
        let own = base.join(format!("core-{core}"));
        // On a full filesystem the directory is made with the first file
        // written to it instead (`writer::create`).
        match std::fs::create_dir_all(&own) {
            Err(e) if !super::disk::no_space(&e) => return Err(e),
            _ => {}
        }
        let mut spool = RouteSpool::new(own.clone());
        let mut offset = 0u64;
        let dirs = match dir::core_dirs(base, core, cores) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            dirs => dirs?,
        };
        for dir in dirs {
            for SegmentFile { seq, path } in dir::segment_files(&dir)? {
                if dir == own {
                    spool.next_seq = spool.next_seq.max(seq + 1);
                }
                let size = std::fs::metadata(&path)?.len();
                if size == 0 {
                    let _ = std::fs::remove_file(&path);
                    continue;
                }
                // Opened for reading when its turn comes (`Next::Open`):
                // a spool of thousands of files holds two descriptors
                // per route, not one per file. One that cannot be
                // opened stops the start now, with its name, rather
                // than its route's delivery later.
                std::fs::File::open(&path).map_err(|e| {
                    std::io::Error::new(e.kind(), format!("{}: {e}", path.display()))
                })?;
                spool
                    .segments
                    .push_back(Segment::adopted(path, offset, size));
                offset += size;
            }
        }
        spool.head = spool.segments.front().map_or(0, |s| s.start);
        Ok(spool)
    }

    pub(super) fn written_end(&self) -> u64 {
        self.segments.back().map_or(self.head, Segment::end)
    }

    /// Logical end of everything appended (written, being written, pending).
    pub fn tail(&self) -> u64 {
        self.written_end() + self.in_flight + self.pending.len() as u64
    }

    /// Records wait here: new events must queue behind them.
    pub fn active(&self) -> bool {
        self.head < self.tail()
    }

    /// Bytes held for delivery.
    pub fn stored(&self) -> u64 {
        self.tail() - self.head
    }

    /// Appends one record to `pending`.
    pub fn append(&mut self, key: &[u8], envelope: &[u8]) {
        if self.segments.back().is_none_or(|s| s.sealed) {
            self.open_segment();
        }
        record::encode(&mut self.pending, key, envelope, None);
    }

    /// Appends a re-send of an event first handed to ZeroMQ at
    /// `first_sent` (Unix ms).
    pub fn append_repeat(&mut self, key: &[u8], envelope: &[u8], first_sent: u64) {
        if self.segments.back().is_none_or(|s| s.sealed) {
            self.open_segment();
        }
        record::encode(&mut self.pending, key, envelope, Some(first_sent));
    }

    /// Marks everything appended so far as delivered (durable mode: the
    /// event just journaled went straight to ZeroMQ).
    pub fn delivered_through_tail(&mut self) {
        self.head = self.tail();
    }

    /// Durable mode, when a consumer of this route has disconnected: what
    /// it had received but not processed died with it, and libzmq dropped
    /// what it had queued for it, so everything the journal still keeps —
    /// the files of the replay window and the active file — is handed to
    /// ZeroMQ again, oldest first, ahead of newer events. Consumers drop
    /// the repeats by `id`. Returns the bytes to replay.
    pub fn rewind(&mut self) -> u64 {
        while let Some(retired) = self.retired.pop_back() {
            self.segments.push_front(retired.segment);
        }
        self.resync = None;
        let start = self.segments.front().map_or(self.head, |s| s.start);
        let replay = self.head - start;
        self.replayed_to = self.replayed_to.max(self.head);
        self.head = start;
        self.chunk = None;
        replay
    }

    pub(super) fn open_segment(&mut self) {
        let start = self.written_end();
        let path = dir::segment_path(&self.dir, self.next_seq);
        self.next_seq += 1;
        self.segments.push_back(Segment {
            path: path.into(),
            start,
            written: 0,
            file: None,
            sealed: false,
            tail: Vec::new(),
            opened: Instant::now(),
            delivered: None,
        });
    }
}
