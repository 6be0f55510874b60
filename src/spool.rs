//! The on-disk spool: one FIFO log per core and route, for events ZeroMQ
//! cannot take (and, in `--ack durable`, a journal of every event).
//!
//! Records are `[len u32 LE][crc32c u32 LE][payload]`, the CRC covering the
//! length bytes and the payload; the payload is `[key_len u16 LE][key][envelope]`.
//! Files (`seg-<seq>.log`) rotate at [`SEGMENT_BYTES`] (journal files also at
//! half the replay window's age); a zero length marks the
//! end of the data in a file (DMA writes pad the last block with zeros).
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

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::Waker;
use std::time::{Duration, Instant};

use glommio::io::{DmaFile, ReadResult};

/// Segment files rotate past this size.
pub const SEGMENT_BYTES: u64 = 16 << 20;
const HEADER: usize = 8;
/// O_DIRECT block size the writer aligns to (a multiple of every
/// device's logical block size).
const ALIGN: u64 = 4096;
/// Bytes read from a segment at a time.
const READ_CHUNK: usize = 256 << 10;

/// One spool file.
#[derive(Debug)]
struct Segment {
    path: PathBuf,
    /// Logical offset of the file's first byte in the route's log.
    start: u64,
    /// Bytes of valid data on disk.
    written: u64,
    file: Option<Rc<DmaFile>>,
    /// No more appends (rotated, or adopted from an earlier run).
    sealed: bool,
    /// The written bytes of the file's last partial block, rewritten with
    /// the next append (O_DIRECT writes whole blocks).
    tail: Vec<u8>,
    /// When the file was opened (durable mode rotates by age too).
    opened: Instant,
}

impl Segment {
    fn end(&self) -> u64 {
        self.start + self.written
    }
}

/// One route's log on one core.
#[derive(Debug)]
pub struct RouteSpool {
    dir: PathBuf,
    next_seq: u64,
    segments: VecDeque<Segment>,
    /// Logical offset of the first record not yet handed to ZeroMQ.
    head: u64,
    /// Appended, not yet written: belongs at the end of the last segment.
    pending: Vec<u8>,
    /// A chunk read from disk: (logical offset, bytes).
    chunk: Option<(u64, ReadResult)>,
    /// A write of this route is in flight, of this many appended bytes.
    writing: bool,
    in_flight: u64,
    /// Delivered segments kept for the replay window (durable mode), with
    /// when they were delivered.
    retired: VecDeque<(Segment, Instant)>,
    /// Looking for the next good record after damage that began at this
    /// logical offset (of the front segment).
    resync: Option<u64>,
}

impl RouteSpool {
    fn new(dir: PathBuf) -> Self {
        Self {
            dir,
            next_seq: 0,
            segments: VecDeque::new(),
            head: 0,
            pending: Vec::new(),
            chunk: None,
            writing: false,
            in_flight: 0,
            retired: VecDeque::new(),
            resync: None,
        }
    }

    fn written_end(&self) -> u64 {
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
        let payload_len = 2 + key.len() + envelope.len();
        let start = self.pending.len();
        self.pending
            .extend_from_slice(&(payload_len as u32).to_le_bytes());
        self.pending.extend_from_slice(&[0; 4]);
        self.pending
            .extend_from_slice(&(key.len() as u16).to_le_bytes());
        self.pending.extend_from_slice(key);
        self.pending.extend_from_slice(envelope);
        let crc = crc32c::crc32c_append(
            crc32c::crc32c(&self.pending[start..start + 4]),
            &self.pending[start + HEADER..],
        );
        self.pending[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
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
        while let Some((seg, _)) = self.retired.pop_back() {
            self.segments.push_front(seg);
        }
        self.resync = None;
        let start = self.segments.front().map_or(self.head, |s| s.start);
        let replay = self.head - start;
        self.head = start;
        self.chunk = None;
        replay
    }

    fn open_segment(&mut self) {
        let start = self.written_end();
        let path = self.dir.join(format!("seg-{:016}.log", self.next_seq));
        self.next_seq += 1;
        self.segments.push_back(Segment {
            path,
            start,
            written: 0,
            file: None,
            sealed: false,
            tail: Vec::new(),
            opened: Instant::now(),
        });
    }

    /// The next complete record at `head` in the chunk read from disk,
    /// with `remaining` bytes of the file's data from `head` on: see
    /// [`parse_record`].
    fn record_at_head(&self, remaining: u64) -> Parsed<'_> {
        let Some((at, bytes)) = &self.chunk else {
            return Ok(None);
        };
        let Some(off) = self.head.checked_sub(*at).map(|o| o as usize) else {
            return Ok(None);
        };
        let b = &bytes[off.min(bytes.len())..];
        if self.resync.is_some() {
            // Looking for the next record among damaged bytes: every key
            // starts `in.gen.`, so most offsets are passed over without
            // reading a length's worth of bytes or computing a CRC.
            const PREFIX: &[u8] = b"in.gen.";
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
        parse_record(b, remaining)
    }
}

/// What is wrong at an offset that holds no good record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Damage {
    /// Zeros: the padding after the file's last record (nothing follows
    /// in its last block), so the end of its data.
    End,
    /// The length runs past the end of the file: a torn last write, or a
    /// damaged length.
    Truncated,
    /// A length no record has (0 before the last block, 1, over 1 GiB).
    Length,
    /// The length fits but the CRC (or the key length) does not.
    Crc,
}

/// A parsed record (key, envelope, bytes on disk), `None` when more bytes
/// are needed, or what is wrong at this offset.
type Parsed<'a> = Result<Option<(&'a [u8], &'a [u8], u64)>, Damage>;

/// Parses one record at the start of `b`, the file holding `remaining`
/// bytes of data from there on. Nothing past `remaining` is asked for, so
/// a damaged length never makes the reader wait for bytes that will not
/// come; the caller looks for the next good record byte by byte after a
/// damaged one (a CRC32C match by chance: 1 in 2^32 per offset).
fn parse_record(b: &[u8], remaining: u64) -> Parsed<'_> {
    if remaining < HEADER as u64 {
        // A few bytes of a header: a torn write, or padding.
        return match b.iter().take(remaining as usize).all(|&x| x == 0) {
            true if b.len() as u64 >= remaining => Err(Damage::End),
            true => Ok(None),
            false => Err(Damage::Truncated),
        };
    }
    if b.len() < HEADER {
        return Ok(None);
    }
    let len = u32::from_le_bytes(b[0..4].try_into().unwrap()) as usize;
    if len == 0 {
        // The writer pads only the file's last block.
        return Err(if remaining < ALIGN {
            Damage::End
        } else {
            Damage::Length
        });
    }
    if !(2..=(1 << 30)).contains(&len) {
        return Err(Damage::Length);
    }
    if (HEADER + len) as u64 > remaining {
        return Err(Damage::Truncated);
    }
    if b.len() < HEADER + len {
        return Ok(None);
    }
    let crc = u32::from_le_bytes(b[4..8].try_into().unwrap());
    let payload = &b[HEADER..HEADER + len];
    if crc32c::crc32c_append(crc32c::crc32c(&b[0..4]), payload) != crc {
        return Err(Damage::Crc);
    }
    let key_len = u16::from_le_bytes([payload[0], payload[1]]) as usize;
    if 2 + key_len > len {
        return Err(Damage::Crc);
    }
    Ok(Some((
        &payload[2..2 + key_len],
        &payload[2 + key_len..],
        (HEADER + len) as u64,
    )))
}

/// The outcome of a ticket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flushed {
    Pending,
    Stored,
    Failed,
}

/// Per core: flush tickets, their waiters, and the flusher's wake-up.
#[derive(Debug)]
pub struct Tickets {
    /// The ticket the next flush completes.
    next: Cell<u64>,
    /// Every ticket up to here is decided.
    done: Cell<u64>,
    /// Decided tickets that failed, as inclusive ranges (recent ones).
    failed: RefCell<VecDeque<(u64, u64)>>,
    waiters: RefCell<Vec<Waker>>,
    kicked: Cell<bool>,
    flusher: RefCell<Option<Waker>>,
}

impl Default for Tickets {
    fn default() -> Self {
        Self {
            next: Cell::new(1),
            done: Cell::new(0),
            failed: RefCell::new(VecDeque::new()),
            waiters: RefCell::new(Vec::new()),
            kicked: Cell::new(false),
            flusher: RefCell::new(None),
        }
    }
}

impl Tickets {
    /// The ticket of what is appended now; wakes the flusher.
    pub fn take(&self) -> u64 {
        self.kicked.set(true);
        if let Some(w) = self.flusher.borrow_mut().take() {
            w.wake();
        }
        self.next.get()
    }

    pub fn state(&self, ticket: u64) -> Flushed {
        if ticket > self.done.get() {
            Flushed::Pending
        } else if self
            .failed
            .borrow()
            .iter()
            .any(|&(a, b)| (a..=b).contains(&ticket))
        {
            Flushed::Failed
        } else {
            Flushed::Stored
        }
    }

    /// Decides every ticket up to `upto`: stored, or failed from `from` on.
    fn decide(&self, upto: u64, failed_from: Option<u64>) {
        if let Some(from) = failed_from {
            let mut failed = self.failed.borrow_mut();
            failed.push_back((from, upto));
            if failed.len() > 1024 {
                failed.pop_front();
            }
        }
        self.done.set(self.done.get().max(upto));
        for w in self.waiters.borrow_mut().drain(..) {
            w.wake();
        }
    }

    /// Waits until `ticket` is decided.
    pub async fn wait(&self, ticket: u64) -> Flushed {
        std::future::poll_fn(|cx| match self.state(ticket) {
            Flushed::Pending => {
                self.waiters.borrow_mut().push(cx.waker().clone());
                std::task::Poll::Pending
            }
            done => std::task::Poll::Ready(done),
        })
        .await
    }

    /// Waits until something is appended (or returns at once if it was).
    pub async fn appended(&self) {
        std::future::poll_fn(|cx| {
            if self.kicked.replace(false) {
                std::task::Poll::Ready(())
            } else {
                *self.flusher.borrow_mut() = Some(cx.waker().clone());
                std::task::Poll::Pending
            }
        })
        .await
    }
}

/// A write job: one route's pending bytes, aligned.
struct Job {
    route: usize,
    path: PathBuf,
    file: Option<Rc<DmaFile>>,
    create: Option<PathBuf>,
    block_start: u64,
    data: Vec<u8>,
    new_written: u64,
    seal_after: bool,
}

/// The spools of one core, one per route (index = route index).
#[derive(Debug)]
pub struct CoreSpool {
    pub routes: Vec<RouteSpool>,
    pub tickets: Rc<Tickets>,
    pub durable: bool,
    /// `--spool-max-bytes`, for the whole process.
    pub max_bytes: u64,
    usage: Arc<SpoolUsage>,
    core: usize,
    /// What the other cores' spools held when last looked at.
    others: u64,
    /// The last write failed (and none has succeeded since): why.
    pub write_error: Option<String>,
    pub sync_interval: Duration,
    pub replay_window: Duration,
}

/// Spool settings for one core.
#[derive(Debug, Clone)]
pub struct SpoolConfig {
    pub dir: PathBuf,
    pub route_dirs: Vec<String>,
    pub core: usize,
    pub cores: usize,
    pub durable: bool,
    /// `--spool-max-bytes`: for the whole process.
    pub max_bytes: u64,
    /// What every core's spool holds.
    pub usage: Arc<SpoolUsage>,
    pub sync_interval: Duration,
    pub replay_window: Duration,
}

/// Bytes each core's spool holds, published for the others about every
/// tick of its control loop, so `--spool-max-bytes` limits the whole
/// process without a shared counter on the request path.
#[derive(Debug)]
pub struct SpoolUsage {
    cores: Box<[Slot]>,
}

/// One core's figure, on its own cache line.
#[derive(Debug, Default)]
#[repr(align(64))]
struct Slot(AtomicU64);

impl SpoolUsage {
    pub fn new(cores: usize) -> Arc<Self> {
        Arc::new(Self {
            cores: (0..cores).map(|_| Slot::default()).collect(),
        })
    }

    fn publish(&self, core: usize, bytes: u64) {
        if let Some(slot) = self.cores.get(core) {
            slot.0.store(bytes, Ordering::Relaxed);
        }
    }

    /// What the cores other than `core` last published.
    fn others(&self, core: usize) -> u64 {
        let all = self.cores.iter().enumerate();
        all.filter(|&(i, _)| i != core)
            .map(|(_, slot)| slot.0.load(Ordering::Relaxed))
            .sum()
    }
}

impl SpoolConfig {
    /// The spool settings of one core; `usage` is the process's, shared
    /// by its cores.
    pub fn for_core(
        settings: &crate::config::Settings,
        core: usize,
        usage: Arc<SpoolUsage>,
    ) -> Self {
        Self {
            dir: settings.spool_dir.clone(),
            route_dirs: route_dirs(settings),
            core,
            cores: settings.cores,
            durable: settings.durable,
            max_bytes: settings.spool_max_bytes,
            usage,
            sync_interval: settings.sync_interval,
            replay_window: settings.replay_window,
        }
    }
}

/// The spool directory name of each configured route, in route order.
pub fn route_dirs(settings: &crate::config::Settings) -> Vec<String> {
    settings
        .routes
        .iter()
        .map(|r| route_dir(&r.pattern))
        .collect()
}

/// A directory name for a route: its glob made filesystem-safe, plus a
/// hash so distinct globs never share a directory.
pub fn route_dir(pattern: &str) -> String {
    let safe: String = pattern
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .take(64)
        .collect();
    format!("{safe}-{:08x}", crc32c::crc32c(pattern.as_bytes()))
}

/// Spool directories under `dir` that no configured route uses (their
/// route's glob was changed or removed) and still hold events: each with
/// its bytes and, from its oldest file's first record, a key of its
/// events. Nothing delivers them until a route with the old glob returns.
pub fn stranded(dir: &Path, route_dirs: &[String]) -> Vec<(PathBuf, u64, Option<String>)> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name();
        let known = name
            .to_str()
            .is_some_and(|n| route_dirs.iter().any(|r| r == n));
        if known || !entry.path().is_dir() {
            continue;
        }
        let mut files: Vec<PathBuf> = std::fs::read_dir(entry.path())
            .into_iter()
            .flatten()
            .flatten()
            .filter(|core| {
                core.file_name()
                    .to_str()
                    .is_some_and(|n| n.starts_with("core-"))
            })
            .flat_map(|core| {
                std::fs::read_dir(core.path())
                    .into_iter()
                    .flatten()
                    .flatten()
            })
            .map(|f| f.path())
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("seg-") && n.ends_with(".log"))
            })
            .collect();
        files.sort();
        let bytes: u64 = files
            .iter()
            .filter_map(|f| std::fs::metadata(f).ok())
            .map(|m| m.len())
            .sum();
        if bytes == 0 {
            continue;
        }
        let key = files.first().and_then(|f| {
            let mut head = vec![0u8; 64 << 10];
            let n = std::io::Read::read(&mut std::fs::File::open(f).ok()?, &mut head).ok()?;
            match parse_record(&head[..n], n as u64) {
                Ok(Some((key, _, _))) => Some(String::from_utf8_lossy(key).into_owned()),
                _ => None,
            }
        });
        out.push((entry.path(), bytes, key));
    }
    out.sort();
    out
}

impl CoreSpool {
    /// Finds the segments this core owns (its own directory and those of
    /// cores `k` with `k % cores == core` from runs with more cores) and
    /// queues them for delivery before anything new.
    pub async fn recover(cfg: &SpoolConfig) -> std::io::Result<Self> {
        std::fs::create_dir_all(&cfg.dir)?;
        probe_device(&cfg.dir, cfg.core).await?;
        let mut routes = Vec::new();
        for name in &cfg.route_dirs {
            let base = cfg.dir.join(name);
            let own = base.join(format!("core-{}", cfg.core));
            std::fs::create_dir_all(&own)?;
            let mut spool = RouteSpool::new(own.clone());
            let mut dirs: Vec<(usize, PathBuf)> = std::fs::read_dir(&base)?
                .flatten()
                .filter_map(|e| {
                    let k: usize = e
                        .file_name()
                        .to_str()?
                        .strip_prefix("core-")?
                        .parse()
                        .ok()?;
                    (k % cfg.cores == cfg.core).then(|| (k, e.path()))
                })
                .collect();
            dirs.sort();
            let mut offset = 0u64;
            for (_, dir) in dirs {
                let mut files: Vec<(u64, PathBuf)> = std::fs::read_dir(&dir)?
                    .flatten()
                    .filter_map(|e| {
                        let n = e.file_name();
                        let seq = n
                            .to_str()?
                            .strip_prefix("seg-")?
                            .strip_suffix(".log")?
                            .parse()
                            .ok()?;
                        Some((seq, e.path()))
                    })
                    .collect();
                files.sort();
                for (seq, path) in files {
                    if dir == own {
                        spool.next_seq = spool.next_seq.max(seq + 1);
                    }
                    let size = std::fs::metadata(&path)?.len();
                    if size == 0 {
                        let _ = std::fs::remove_file(&path);
                        continue;
                    }
                    // Opened for reading when its turn comes ([`Next::Open`]):
                    // a spool of thousands of files holds two descriptors
                    // per route, not one per file. One that cannot be
                    // opened stops the start now, with its name, rather
                    // than its route's delivery later.
                    std::fs::File::open(&path).map_err(|e| {
                        std::io::Error::new(e.kind(), format!("{}: {e}", path.display()))
                    })?;
                    spool.segments.push_back(Segment {
                        path,
                        start: offset,
                        written: size,
                        file: None,
                        sealed: true,
                        tail: Vec::new(),
                        opened: Instant::now(),
                    });
                    offset += size;
                }
            }
            spool.head = spool.segments.front().map_or(0, |s| s.start);
            routes.push(spool);
        }
        Ok(Self {
            routes,
            tickets: Rc::new(Tickets::default()),
            durable: cfg.durable,
            max_bytes: cfg.max_bytes,
            usage: cfg.usage.clone(),
            core: cfg.core,
            others: 0,
            write_error: None,
            sync_interval: cfg.sync_interval,
            replay_window: cfg.replay_window,
        })
    }

    /// Bytes held for delivery on this core.
    pub fn stored(&self) -> u64 {
        self.routes.iter().map(RouteSpool::stored).sum()
    }

    /// The process's spool holds `--spool-max-bytes` or more: this core's
    /// bytes now, the others' as of the last [`Self::share_usage`].
    pub fn full(&self) -> bool {
        self.stored() + self.others >= self.max_bytes
    }

    /// Publishes this core's bytes and reads the other cores' (each core
    /// calls it every tick of its control loop).
    pub fn share_usage(&mut self) {
        self.usage.publish(self.core, self.stored());
        self.others = self.usage.others(self.core);
    }

    /// A write is in flight.
    pub fn writing(&self) -> bool {
        self.routes.iter().any(|r| r.writing)
    }

    pub fn has_pending(&self) -> bool {
        self.routes.iter().any(|r| !r.pending.is_empty())
    }

    fn take_jobs(&mut self) -> Vec<Job> {
        // A journal file also rotates once it is half a replay window old,
        // so that its delivered events leave the journal about one window
        // later: at a low event rate a 16 MiB file would otherwise hold
        // hours of events, all replayed after a crash or a disconnect.
        let max_age = self.durable.then_some(self.replay_window / 2);
        let mut jobs = Vec::new();
        for (i, r) in self.routes.iter_mut().enumerate() {
            if r.pending.is_empty() || r.writing {
                continue;
            }
            if r.segments.back().is_none_or(|s| s.sealed) {
                // The last file was sealed (rotated) while these bytes were
                // appended: they start the next file.
                r.open_segment();
            }
            let seg = r.segments.back_mut().expect("just ensured");
            let block_start = seg.written / ALIGN * ALIGN;
            let mut data = std::mem::take(&mut seg.tail);
            debug_assert_eq!(data.len() as u64, seg.written - block_start);
            data.extend_from_slice(&r.pending);
            let new_written = seg.written + r.pending.len() as u64;
            r.in_flight = r.pending.len() as u64;
            r.pending.clear();
            let create = seg.file.is_none().then(|| seg.path.clone());
            jobs.push(Job {
                route: i,
                path: seg.path.clone(),
                file: seg.file.clone(),
                create,
                block_start,
                data,
                new_written,
                seal_after: new_written >= SEGMENT_BYTES
                    || max_age.is_some_and(|age| seg.opened.elapsed() >= age),
            });
            r.writing = true;
        }
        jobs
    }
}

/// Writes every route's pending bytes, syncs in durable mode, decides the
/// ticket. Returns false when nothing was pending.
pub async fn flush(core: &RefCell<CoreSpool>) -> bool {
    let (jobs, ticket, durable, tickets) = {
        let mut c = core.borrow_mut();
        if c.writing() {
            // One flush at a time (the drain path calls this beside the
            // flusher task): the one in flight decides its own ticket, and
            // what was appended meanwhile waits for the next call.
            return false;
        }
        if !c.has_pending() {
            // Nothing to write (and, from the check above, nothing being
            // written): the tickets taken so far — events ZeroMQ took — are
            // decided at once.
            let next = c.tickets.next.get();
            if next > c.tickets.done.get() {
                c.tickets.next.set(next + 1);
                let tickets = c.tickets.clone();
                drop(c);
                tickets.decide(next, None);
            }
            return false;
        }
        let ticket = c.tickets.next.get();
        c.tickets.next.set(ticket + 1);
        (c.take_jobs(), ticket, c.durable, c.tickets.clone())
    };
    let mut ok = true;
    let mut error = None;
    let mut results = Vec::with_capacity(jobs.len());
    for job in jobs {
        let outcome = write_job(&job, durable).await;
        ok &= outcome.is_ok();
        if let Err(e) = &outcome {
            let what = format!("cannot write {}: {e}", job.path.display());
            // Said once per kind of failure, not once per flush: a disk
            // that keeps failing must not flood the log.
            if core.borrow().write_error.as_deref() != Some(&what) && error.as_ref() != Some(&what)
            {
                eprintln!("spool: {what}");
            }
            error = Some(what);
        }
        results.push((job, outcome));
    }
    {
        let mut c = core.borrow_mut();
        if let Some(e) = error.take() {
            c.write_error = Some(e);
        } else if c.write_error.take().is_some() {
            eprintln!("spool: writing again");
        }
        for (job, outcome) in results {
            let r = &mut c.routes[job.route];
            r.writing = false;
            r.in_flight = 0;
            let Some(at) = r.segments.iter().rposition(|s| s.path == job.path) else {
                continue;
            };
            let seg = &mut r.segments[at];
            match outcome {
                Ok(file) => {
                    let keep_from = (job.new_written / ALIGN * ALIGN - job.block_start) as usize;
                    seg.written = job.new_written;
                    seg.tail = job.data[keep_from..].to_vec();
                    // A sealed file queued behind another is closed until
                    // its turn to be read comes.
                    seg.file = (!job.seal_after || at == 0).then_some(file);
                    if job.seal_after {
                        seg.sealed = true;
                        seg.tail = Vec::new();
                    }
                }
                Err(_) => {
                    // Not stored: drop what was taken, and what was appended
                    // since (its tickets fail below too).
                    r.pending.clear();
                    seg.tail = job.data[..(seg.written - job.block_start) as usize].to_vec();
                    r.head = r.head.min(seg.end());
                }
            }
        }
        if !ok {
            // What was appended since the jobs were taken is dropped too.
            // In durable mode those are events whose senders wait on the
            // next ticket: it fails as well (they get 503s). In accepted
            // mode they may be events ZeroMQ refused while this write was
            // in flight (the drain hands the outbox over beside the
            // flusher), waiting on the next ticket too: it fails as well
            // (events of that ticket ZeroMQ did take then get a 503 they
            // did not need; the sender's retry is a repeat, never a loss).
            // With nothing appended, the next ticket belongs to events
            // still in the outbox, which the next flush hands over.
            let appended = c.routes.iter().any(|r| !r.pending.is_empty());
            for r in &mut c.routes {
                r.pending.clear();
                r.head = r.head.min(r.written_end());
            }
            let upto = if durable || appended {
                let upto = c.tickets.next.get();
                c.tickets.next.set(upto + 1);
                upto
            } else {
                ticket
            };
            tickets.decide(upto, Some(ticket));
            return true;
        }
    }
    tickets.decide(ticket, None);
    true
}

async fn write_job(job: &Job, durable: bool) -> std::io::Result<Rc<DmaFile>> {
    let file = match (&job.file, &job.create) {
        (Some(f), _) => f.clone(),
        (None, Some(path)) => Rc::new(
            glommio::io::OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(true)
                .dma_open(path)
                .await
                .map_err(std::io::Error::from)?,
        ),
        (None, None) => unreachable!("a job has a file or a path"),
    };
    let len = file.align_up(job.data.len() as u64) as usize;
    let mut buf = file.alloc_dma_buffer(len);
    let bytes = buf.as_bytes_mut();
    bytes[..job.data.len()].copy_from_slice(&job.data);
    bytes[job.data.len()..].fill(0);
    let n = file
        .write_at(buf, job.block_start)
        .await
        .map_err(std::io::Error::from)?;
    if n < job.data.len() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::WriteZero,
            "short write",
        ));
    }
    if durable {
        file.fdatasync().await.map_err(std::io::Error::from)?;
        if let Some(dir) = job.create.as_deref().and_then(Path::parent) {
            // A new journal file's name must survive a power loss too.
            let dir = glommio::io::Directory::open(dir)
                .await
                .map_err(std::io::Error::from)?;
            dir.sync().await.map_err(std::io::Error::from)?;
        }
    }
    Ok(file)
}

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

/// Hands records at the head of `route` to `send` until it refuses or the
/// chunk in memory runs out. Deletes delivered files.
pub fn deliver(
    spool: &mut RouteSpool,
    route: usize,
    durable: bool,
    window: Duration,
    mut send: impl FnMut(&[u8], &[u8]) -> bool,
) -> Next {
    let now = Instant::now();
    while let Some((seg, at)) = spool.retired.front() {
        if now.duration_since(*at) < window {
            break;
        }
        let _ = std::fs::remove_file(&seg.path);
        spool.retired.pop_front();
    }
    loop {
        // Drop delivered files (and finished adopted/sealed ones).
        while let Some(seg) = spool.segments.front() {
            // The active file is dropped when drained only in accepted mode
            // (a journal keeps appending to it until it rotates).
            let drained_active = !durable && spool.pending.is_empty() && !spool.writing;
            if spool.head < seg.end() || !(seg.sealed || drained_active) {
                break;
            }
            let seg = spool.segments.pop_front().expect("front");
            if let Some(from) = spool.resync.take() {
                eprintln!(
                    "spool: {}: no good record after the damage at offset {}; skipped the rest of the file",
                    seg.path.display(),
                    from - seg.start
                );
            }
            if spool.segments.is_empty() {
                spool.head = seg.end();
            }
            if durable {
                // Kept closed: read again only if a consumer disconnects
                // ([`RouteSpool::rewind`]).
                let mut seg = seg;
                seg.file = None;
                spool.retired.push_back((seg, now));
            } else {
                let _ = std::fs::remove_file(&seg.path);
            }
            spool.chunk = None;
        }
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
        match spool.record_at_head(remaining) {
            Ok(Some((key, envelope, len))) => {
                if let Some(from) = spool.resync {
                    let path = seg.path.display();
                    let at = spool.head - seg.start;
                    eprintln!(
                        "spool: {path}: {} damaged bytes from offset {} skipped; records resume at offset {at}",
                        spool.head - from,
                        from - seg.start
                    );
                }
                if !send(key, envelope) {
                    return Next::Idle;
                }
                spool.resync = None;
                spool.head += len;
            }
            Ok(None) => {
                // Data is on disk (head < end), so the file exists: one
                // without a handle was closed while it waited its turn.
                let Some(file) = seg.file.clone() else {
                    return Next::Open {
                        route,
                        path: seg.path.clone(),
                    };
                };
                let chunk_end = spool
                    .chunk
                    .as_ref()
                    .map_or(0, |(at, b)| at + b.len() as u64);
                let covers = spool
                    .chunk
                    .as_ref()
                    .is_some_and(|(at, _)| *at <= spool.head);
                if covers && chunk_end >= seg.end() {
                    // The file ends inside this record: a torn last write.
                    let at = spool.head - seg.start;
                    eprintln!(
                        "spool: {}: truncated record at offset {at}; skipped",
                        seg.path.display()
                    );
                    spool.resync = None;
                    spool.head = seg.end();
                    continue;
                }
                let off = spool.head - seg.start;
                let want = READ_CHUNK.max(needed(&spool.chunk, spool.head));
                let len = want.min((seg.written - off) as usize);
                return Next::Read {
                    route,
                    file,
                    offset: off,
                    len,
                };
            }
            Err(_) if !seg.sealed => {
                // The file still being appended to was written by this run:
                // a record that does not parse means the chunk in memory is
                // stale. Read again.
                spool.chunk = None;
                return Next::Idle;
            }
            Err(damage) => {
                let at = spool.head - seg.start;
                let path = seg.path.display();
                match (damage, spool.resync) {
                    (Damage::End, None) => spool.head = seg.end(),
                    (Damage::End, Some(from)) => {
                        eprintln!(
                            "spool: {path}: no good record after the damage at offset {}; skipped the rest of the file",
                            from - seg.start
                        );
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
                        eprintln!(
                            "spool: {path}: {what}; skipped, looking for the next good record"
                        );
                        spool.resync = Some(spool.head);
                        spool.head += 1;
                    }
                }
            }
        }
    }
}

/// Bytes needed to hold the whole record at `head`, if its header is known.
fn needed(chunk: &Option<(u64, ReadResult)>, head: u64) -> usize {
    chunk
        .as_ref()
        .and_then(|(at, b)| {
            let off = head.checked_sub(*at)? as usize;
            let h = b.get(off..off + 4)?;
            Some(HEADER + u32::from_le_bytes(h.try_into().ok()?) as usize)
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
    let Some(seg) = spool.segments.front_mut().filter(|s| s.path == path) else {
        return Ok(()); // no longer the front file: nothing to do
    };
    match outcome {
        Ok(file) => {
            seg.file = Some(Rc::new(file));
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && seg.sealed => {
            eprintln!(
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
        spool.chunk = Some((seg.start + file_offset, bytes));
    }
}

/// glommio decides once per block device whether it supports polled
/// (IOPOLL) I/O, by reading from the first DMA file opened on it; reading
/// a new, empty file succeeds without reaching the device, so the answer
/// would be a wrong "yes" and every later read would fail with ENOTSUP.
/// Opening a file that holds data first gets the right answer cached.
async fn probe_device(dir: &Path, core: usize) -> std::io::Result<()> {
    let probe = dir.join(format!(".probe-core-{core}"));
    std::fs::write(&probe, [0u8; 4096])?;
    let opened = DmaFile::open(&probe).await;
    let _ = std::fs::remove_file(&probe);
    opened
        .map_err(std::io::Error::from)?
        .close()
        .await
        .map_err(std::io::Error::from)
}

/// Takes the spool directory for this process: an exclusive `flock` on
/// `dir/.lock`, held until the returned file is dropped (the process
/// exits). Two processes on one spool would adopt, deliver and delete each
/// other's live files and number new ones alike, so a second one is
/// refused (`WouldBlock`) while the first runs.
pub fn lock_dir(dir: &Path) -> std::io::Result<std::fs::File> {
    use std::os::fd::AsRawFd;
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join(".lock"))?;
    // SAFETY: flock(2) on a descriptor this function owns.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        let e = std::io::Error::last_os_error();
        return Err(if e.kind() == std::io::ErrorKind::WouldBlock {
            std::io::Error::new(
                e.kind(),
                "another hookwire uses this spool directory; each running process needs its own \
                 (with --share-port, start the new one with another --spool-dir)",
            )
        } else {
            e
        });
    }
    Ok(file)
}

/// Whether `dir` can hold the spool: created if missing, and writable.
pub fn check_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let probe = dir.join(format!(".hookwire-probe-{}", std::process::id()));
    std::fs::write(&probe, b"probe")?;
    std::fs::remove_file(probe)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_detect_damage() {
        let mut r = RouteSpool::new(PathBuf::from("/nonexistent"));
        r.append(b"in.gen.a.b", b"{\"x\":1}");
        r.append(b"k", b"{}");
        let bytes = r.pending.clone();
        let all = bytes.len() as u64;
        let (key, env, len) = parse_record(&bytes, all).unwrap().unwrap();
        assert_eq!((key, env), (&b"in.gen.a.b"[..], &b"{\"x\":1}"[..]));
        let (key, env, _) = parse_record(&bytes[len as usize..], all - len)
            .unwrap()
            .unwrap();
        assert_eq!((key, env), (&b"k"[..], &b"{}"[..]));
        assert_eq!(
            parse_record(&bytes[..len as usize - 1], all),
            Ok(None),
            "not all read yet: need more"
        );
        assert_eq!(
            parse_record(&bytes[..len as usize - 1], len - 1),
            Err(Damage::Truncated),
            "the file ends inside the record"
        );

        let mut flipped = bytes.clone();
        flipped[12] ^= 0x40;
        assert_eq!(
            parse_record(&flipped, all),
            Err(Damage::Crc),
            "a flipped payload byte fails the CRC"
        );
        let mut bad_len = bytes.clone();
        bad_len[0] ^= 0x01;
        assert!(
            parse_record(&bad_len, all).is_err(),
            "a flipped length byte fails too"
        );
        assert_eq!(
            parse_record(&[0u8; 16], 16),
            Err(Damage::End),
            "zeros end the data"
        );
        assert_eq!(
            parse_record(&[0u8; 16], ALIGN + 16),
            Err(Damage::Length),
            "zeros before the last block are damage, not padding"
        );
        assert_eq!(
            parse_record(&[0u8; 5], 5),
            Err(Damage::End),
            "padding shorter than a header"
        );
        assert_eq!(parse_record(&[1, 0, 0], 3), Err(Damage::Truncated));
    }

    #[test]
    fn tickets_decide_in_order() {
        let t = Tickets::default();
        assert_eq!(t.take(), 1);
        assert_eq!(t.state(1), Flushed::Pending);
        t.decide(1, None);
        assert_eq!(t.state(1), Flushed::Stored);
        t.decide(3, Some(2));
        assert_eq!(t.state(2), Flushed::Failed);
        assert_eq!(t.state(3), Flushed::Failed);
        assert_eq!(t.state(1), Flushed::Stored);
        t.decide(4, None);
        assert_eq!(t.state(4), Flushed::Stored);
        assert_eq!(t.state(5), Flushed::Pending);
        // A flush that finishes after a later one does not undo it.
        t.decide(6, None);
        t.decide(5, None);
        assert_eq!(t.state(6), Flushed::Stored);
    }

    #[test]
    fn route_dirs_are_safe_and_distinct() {
        assert!(route_dir("in.gen.calltrack.*").starts_with("in.gen.calltrack._-"));
        assert_ne!(route_dir("a*"), route_dir("a?"));
        assert!(!route_dir("../x").contains('/'));
    }
}
