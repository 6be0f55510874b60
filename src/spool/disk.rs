//! The spool's filesystem: its free space (`statvfs`), the headroom
//! `--spool-min-free` keeps, and whether writes fail for want of space.

use std::ffi::{CStr, CString};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::config::Headroom;

/// How often a core looks at the filesystem's free space; between looks
/// it subtracts what it wrote itself.
const LOOK_EVERY: Duration = Duration::from_millis(50);

/// Free space that ends a disk-full state (on top of the headroom): room
/// for a few writes, so one freed block does not flap it.
const ROOM: u64 = 256 << 10;

/// A filesystem's size and the space an unprivileged writer has left.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Space {
    pub free: u64,
    pub size: u64,
}

/// `statvfs(2)` of the filesystem holding `dir`.
pub fn space(dir: &Path) -> std::io::Result<Space> {
    space_at(&c_path(dir)?)
}

fn c_path(dir: &Path) -> std::io::Result<CString> {
    use std::os::unix::ffi::OsStrExt;
    Ok(CString::new(dir.as_os_str().as_bytes())?)
}

/// [`space`] of a path already in C's form (a core looks without
/// allocating).
fn space_at(path: &CStr) -> std::io::Result<Space> {
    // SAFETY: statvfs with a NUL-terminated path and a zeroed struct it fills.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(path.as_ptr(), &mut st) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let unit = st.f_frsize as u64;
    Ok(Space {
        free: st.f_bavail as u64 * unit,
        size: st.f_blocks as u64 * unit,
    })
}

/// A write failed because the filesystem (or the user's quota) is full.
pub fn no_space(e: &std::io::Error) -> bool {
    use std::io::ErrorKind;
    matches!(e.kind(), ErrorKind::StorageFull | ErrorKind::QuotaExceeded)
}

/// One core's view of the spool's filesystem.
#[derive(Debug)]
pub struct Disk {
    dir: PathBuf,
    /// `dir` as statvfs takes it (`None` if it holds a NUL: never looked at).
    dir_c: Option<CString>,
    headroom: Headroom,
    /// `--spool-min-free` in bytes, on this filesystem.
    pub min_free: u64,
    space: Option<Space>,
    looked: Option<Instant>,
    /// Bytes this core wrote since the last look.
    spent: u64,
    /// What the other cores had written at the last look, and now (as of
    /// this core's last tick).
    others_then: u64,
    others_now: u64,
    /// A write failed for want of space, and the filesystem has not been
    /// seen with room since.
    no_space: bool,
    /// [`Disk::low`], kept current by whatever changes it (looks, ticks,
    /// writes), so the request path reads one flag.
    low: bool,
}

impl Disk {
    pub fn new(dir: PathBuf, headroom: Headroom) -> Self {
        let mut disk = Self {
            dir_c: c_path(&dir).ok(),
            dir,
            headroom,
            min_free: 0,
            space: None,
            looked: None,
            spent: 0,
            others_then: 0,
            others_now: 0,
            no_space: false,
            low: false,
        };
        disk.look(Instant::now());
        disk.judge();
        disk
    }

    /// The spool directory it looks at.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Takes what the other cores have written so far, and looks at the
    /// filesystem again if the last look is old. Returns true when this
    /// ended a disk-full state.
    pub fn refresh(&mut self, now: Instant, others: u64) -> bool {
        self.others_now = others;
        let mut ended = false;
        if self
            .looked
            .is_none_or(|t| now.duration_since(t) >= LOOK_EVERY)
        {
            self.look(now);
            self.others_then = others;
            let roomy = self
                .space
                .is_some_and(|s| s.free >= self.min_free.saturating_add(ROOM));
            ended = self.no_space && roomy;
            if ended {
                self.no_space = false;
            }
        }
        self.judge();
        ended
    }

    /// Whether writes fail for want of space, and no room has been seen
    /// since.
    pub fn no_space(&self) -> bool {
        self.no_space
    }

    /// After a spool write: whether it ran out of space.
    pub fn set_no_space(&mut self, no_space: bool) {
        self.no_space = no_space;
        self.judge();
    }

    fn judge(&mut self) {
        self.low = self.no_space || self.expected().is_some_and(|free| free < self.min_free);
    }

    fn look(&mut self, now: Instant) {
        self.looked = Some(now);
        // A filesystem that cannot be looked at keeps its last figures:
        // writes still say whether it has room.
        if let Some(Ok(space)) = self.dir_c.as_deref().map(space_at) {
            self.space = Some(space);
            self.min_free = self.headroom.bytes(space.size);
            self.spent = 0;
        }
    }

    /// Bytes this core wrote to the filesystem.
    pub fn spend(&mut self, bytes: u64) {
        self.spent += bytes;
        self.judge();
    }

    /// Free bytes: as of the last look, less what this core wrote since.
    pub fn free(&self) -> Option<u64> {
        self.space.map(|s| s.free.saturating_sub(self.spent))
    }

    pub fn size(&self) -> Option<u64> {
        self.space.map(|s| s.size)
    }

    /// Free bytes as this core counts on them: as of the last look, less
    /// its own writes since and the other cores'.
    fn expected(&self) -> Option<u64> {
        let others = self.others_now.saturating_sub(self.others_then);
        self.free().map(|free| free.saturating_sub(others))
    }

    /// Bytes that can be written before the filesystem is below
    /// `--spool-min-free` (unbounded when it cannot be looked at).
    pub fn room(&self) -> u64 {
        match (self.no_space, self.expected()) {
            (true, _) => 0,
            (false, Some(free)) => free.saturating_sub(self.min_free),
            (false, None) => u64::MAX,
        }
    }

    /// Below `--spool-min-free`, or writes fail for want of space: no new
    /// event should need the spool.
    #[inline]
    pub fn low(&self) -> bool {
        self.low
    }
}
