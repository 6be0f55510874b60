//! The DMA writer: every route's appended bytes written with O_DIRECT
//! (whole blocks, the last partial one kept in memory and rewritten),
//! synced in durable mode, and the flush's ticket decided.

use std::cell::{Cell, RefCell};
use std::path::Path;
use std::rc::Rc;

use glommio::io::DmaFile;

use super::record::ALIGN;
use super::segment::{RouteSpool, SEGMENT_BYTES};
use super::spools::CoreSpool;
use super::tickets::Tickets;

/// A write job: one route's pending bytes, aligned. Its buffer is the
/// route's, lent for the write and given back after it, and the list of
/// jobs ([`JOBS`]) is the core's: a flush allocates nothing of its own
/// once warm.
struct Job {
    route: usize,
    path: Rc<Path>,
    file: Option<Rc<DmaFile>>,
    /// The file is new: created by the write.
    create: bool,
    block_start: u64,
    /// `data` from `block_start`: the file's last partial block as written
    /// (`kept` bytes), then the appended bytes.
    data: Vec<u8>,
    kept: usize,
    new_written: u64,
    seal_after: bool,
    /// How the write went, once it is done.
    outcome: Option<std::io::Result<Rc<DmaFile>>>,
}

thread_local! {
    /// The core's list of write jobs, reused by each flush (a core is a
    /// thread, and it flushes one batch at a time).
    static JOBS: Cell<Vec<Job>> = const { Cell::new(Vec::new()) };
}

/// Writes every route's pending bytes, syncs in durable mode, decides the
/// ticket. Returns false when nothing was pending.
pub async fn flush(core: &RefCell<CoreSpool>) -> bool {
    let Some(mut batch) = take_batch(core) else {
        return false;
    };
    write_jobs(core, &mut batch.jobs, batch.durable).await;
    let ok = batch
        .jobs
        .iter()
        .all(|j| j.outcome.as_ref().is_some_and(|o| o.is_ok()));
    let mut c = core.borrow_mut();
    for job in &mut batch.jobs {
        settle(&mut c.routes[job.route], job);
    }
    batch.jobs.clear();
    JOBS.set(batch.jobs);
    if !ok {
        let upto = fail_appended(&mut c, batch.durable, batch.ticket);
        batch.tickets.decide(upto, Some(batch.ticket));
        return true;
    }
    drop(c);
    batch.tickets.decide(batch.ticket, None);
    true
}

/// What one flush writes, and the ticket its outcome decides.
struct Batch {
    jobs: Vec<Job>,
    ticket: u64,
    durable: bool,
    tickets: Rc<Tickets>,
}

/// Takes every route's pending bytes and closes the ticket their write
/// decides; `None` while another flush writes, or when nothing is pending.
fn take_batch(core: &RefCell<CoreSpool>) -> Option<Batch> {
    let mut c = core.borrow_mut();
    if c.writing() {
        // One flush at a time (the drain path calls this beside the
        // flusher task): the one in flight decides its own ticket, and
        // what was appended meanwhile waits for the next call.
        return None;
    }
    if !c.has_pending() {
        // Nothing to write (and, from the check above, nothing being
        // written): the tickets taken so far — events ZeroMQ took — are
        // decided at once.
        if c.tickets.undecided() {
            let next = c.tickets.close();
            let tickets = c.tickets.clone();
            drop(c);
            tickets.decide(next, None);
        }
        return None;
    }
    let ticket = c.tickets.close();
    let mut jobs = JOBS.take();
    take_jobs(&mut c, &mut jobs);
    Some(Batch {
        jobs,
        ticket,
        durable: c.durable,
        tickets: c.tickets.clone(),
    })
}

/// The most of a route's pending buffer, and of its write buffer, kept
/// between flushes (a burst's is freed after its write).
const PENDING_KEPT: usize = 1 << 20;

/// Takes every route's pending bytes, aligned, as one job per route, into
/// `jobs` (empty).
fn take_jobs(core: &mut CoreSpool, jobs: &mut Vec<Job>) {
    // A journal file also rotates once it is half a replay window old,
    // so that its delivered events leave the journal about one window
    // later: at a low event rate a 16 MiB file would otherwise hold
    // hours of events, all replayed after a crash or a disconnect.
    let max_age = core.durable.then_some(core.replay_window / 2);
    for (i, r) in core.routes.iter_mut().enumerate() {
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
        let mut data = std::mem::take(&mut r.staging);
        data.clear();
        data.extend_from_slice(&seg.tail);
        let kept = data.len();
        debug_assert_eq!(kept as u64, seg.written - block_start);
        data.extend_from_slice(&r.pending);
        let new_written = seg.written + r.pending.len() as u64;
        r.in_flight = r.pending.len() as u64;
        r.pending.clear();
        if r.pending.capacity() > PENDING_KEPT {
            // A burst (a consumer's re-sends) grew it: give the memory
            // back rather than hold the burst's size for good.
            r.pending = Vec::new();
        }
        jobs.push(Job {
            route: i,
            path: seg.path.clone(),
            file: seg.file.clone(),
            create: seg.file.is_none(),
            block_start,
            data,
            kept,
            new_written,
            seal_after: new_written >= SEGMENT_BYTES
                || max_age.is_some_and(|age| seg.opened.elapsed() >= age),
            outcome: None,
        });
        r.writing = true;
    }
}

/// Writes the jobs in turn, each one's outcome kept in it, and keeps the
/// core's `write_error`, or its disk's `no_space` when a write ran out of
/// space (each kind of failure is said once).
async fn write_jobs(core: &RefCell<CoreSpool>, jobs: &mut [Job], durable: bool) {
    let unprobed = {
        let c = core.borrow();
        (!c.probed && jobs.iter().any(|j| j.create)).then(|| (c.disk.dir().to_path_buf(), c.core()))
    };
    // The start found the filesystem full: the device is probed before the
    // first file this run creates (see `dir::probe_device`).
    let mut probe_failed = None;
    if let Some((dir, id)) = unprobed {
        match super::dir::probe_device(&dir, id, None).await {
            Ok(()) => core.borrow_mut().probed = true,
            Err(e) => probe_failed = Some(e),
        }
    }
    let mut error = None;
    let mut no_space = false;
    let mut bytes = 0;
    for job in jobs.iter_mut() {
        let outcome = match &probe_failed {
            Some(e) if job.create => Err(std::io::Error::new(e.kind(), e.to_string())),
            _ => write_job(job, durable).await,
        };
        match &outcome {
            // New bytes only: the rewritten last block was counted before.
            Ok(_) => bytes += (job.data.len() - job.kept) as u64,
            Err(e) => {
                let why = match super::disk::no_space(e) {
                    true => "no space left on the filesystem".to_string(),
                    false => e.to_string(),
                };
                let what = format!("cannot write {}: {why}", job.path.display());
                let c = core.borrow();
                // Said once per kind of failure, not once per flush: a disk
                // that keeps failing must not flood the log.
                if super::disk::no_space(e) {
                    if !c.disk.no_space() && !no_space {
                        tracing::warn!(
                            "spool: {what}: events that need the spool get 503 until space frees"
                        );
                    }
                    no_space = true;
                } else {
                    if c.write_error.as_deref() != Some(&what) && error.as_ref() != Some(&what) {
                        tracing::warn!("spool: {what}");
                    }
                    error = Some(what);
                }
            }
        }
        job.outcome = Some(outcome);
    }
    let mut c = core.borrow_mut();
    c.wrote(bytes);
    let failed = error.is_some() || no_space;
    let was_failing = c.write_error.is_some() || c.disk.no_space();
    c.write_error = error;
    c.disk.set_no_space(no_space);
    if was_failing && !failed {
        tracing::info!("spool: writing again");
    }
}

/// Writes one job's blocks, creating its file if it is new; in durable
/// mode syncs the file, and a new file's directory. A failed write is
/// undone on disk ([`undo`]).
async fn write_job(job: &Job, durable: bool) -> std::io::Result<Rc<DmaFile>> {
    let file = match &job.file {
        Some(f) => f.clone(),
        None => Rc::new(create(&job.path).await?),
    };
    match write_blocks(&file, job, durable).await {
        Ok(()) => Ok(file),
        Err(e) => {
            undo(&file, job).await;
            Err(e)
        }
    }
}

async fn write_blocks(file: &DmaFile, job: &Job, durable: bool) -> std::io::Result<()> {
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
        // The filesystem took part of the blocks: it is full, or the file
        // reached a size limit (RLIMIT_FSIZE) with room left.
        let full = super::disk::space(&job.path).is_ok_and(|s| s.free < len as u64);
        return Err(match full {
            true => std::io::Error::new(
                std::io::ErrorKind::StorageFull,
                "short write: no space left on the filesystem",
            ),
            false => std::io::Error::new(std::io::ErrorKind::WriteZero, "short write"),
        });
    }
    if durable {
        file.fdatasync().await.map_err(std::io::Error::from)?;
        if let Some(dir) = job.path.parent().filter(|_| job.create) {
            // A new journal file's name must survive a power loss too.
            let dir = glommio::io::Directory::open(dir)
                .await
                .map_err(std::io::Error::from)?;
            dir.sync().await.map_err(std::io::Error::from)?;
        }
    }
    Ok(())
}

/// Puts a file back as it was before a failed write: a short write (the
/// filesystem filled) leaves part of the new records on disk, which a
/// restart would read as a damaged tail. Cuts the file back to its last
/// good block and rewrites that block as it was (overwriting a block the
/// file has needs no new space); a new file with nothing good is removed.
/// Best effort: what is left is skipped as a torn write at the next start.
async fn undo(file: &DmaFile, job: &Job) {
    let good = job.block_start + job.kept as u64;
    if good == 0 {
        let _ = std::fs::remove_file(&job.path);
        return;
    }
    let _ = file.truncate(file.align_up(good)).await;
    if job.kept > 0 {
        let len = file.align_up(job.kept as u64) as usize;
        let mut buf = file.alloc_dma_buffer(len);
        let bytes = buf.as_bytes_mut();
        bytes[..job.kept].copy_from_slice(&job.data[..job.kept]);
        bytes[job.kept..].fill(0);
        let _ = file.write_at(buf, job.block_start).await;
    }
}

/// Creates a segment file, and its core directory if the start could not
/// (the filesystem was full then).
async fn create(path: &Path) -> std::io::Result<DmaFile> {
    let mut options = glommio::io::OpenOptions::new();
    options.read(true).write(true).create(true).truncate(true);
    match options.dma_open(path).await.map_err(std::io::Error::from) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            options.dma_open(path).await.map_err(std::io::Error::from)
        }
        opened => opened,
    }
}

/// Takes a job's outcome into its route's log: the file's new length and
/// last partial block, or, when the write failed, drops what it held. The
/// job's buffer goes back to its route.
fn settle(r: &mut RouteSpool, job: &mut Job) {
    r.writing = false;
    r.in_flight = 0;
    let data = std::mem::take(&mut job.data);
    let outcome = job.outcome.take().expect("settled after its write");
    if let Some(at) = r.segments.iter().rposition(|s| s.path == job.path) {
        let seg = &mut r.segments[at];
        seg.tail.clear();
        match outcome {
            Ok(file) => {
                let keep_from = (job.new_written / ALIGN * ALIGN - job.block_start) as usize;
                seg.written = job.new_written;
                seg.tail.extend_from_slice(&data[keep_from..]);
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
                seg.tail.extend_from_slice(&data[..job.kept]);
                r.head = r.head.min(seg.end());
            }
        }
    }
    if data.capacity() <= PENDING_KEPT {
        r.staging = data;
    }
}

/// After a failed write: drops what was appended since the jobs were
/// taken, and returns the last ticket that fails.
fn fail_appended(c: &mut CoreSpool, durable: bool, ticket: u64) -> u64 {
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
    if durable || appended {
        c.tickets.close()
    } else {
        ticket
    }
}
