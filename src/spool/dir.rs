//! The spool directory: one directory per route (and in it one per
//! core), its lock, the checks made before a start, and the routes'
//! directories no configured route uses any more.

use std::path::{Path, PathBuf};

use glommio::io::DmaFile;

use super::record::parse_record;

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

/// The directories under a route's `base` that core `core` of `cores`
/// adopts: its own and those of cores `k` with `k % cores == core` from
/// runs with more cores, in core order.
pub(super) fn core_dirs(base: &Path, core: usize, cores: usize) -> std::io::Result<Vec<PathBuf>> {
    let mut dirs: Vec<(usize, PathBuf)> = std::fs::read_dir(base)?
        .flatten()
        .filter_map(|e| {
            let k: usize = e
                .file_name()
                .to_str()?
                .strip_prefix("core-")?
                .parse()
                .ok()?;
            (k % cores == core).then(|| (k, e.path()))
        })
        .collect();
    dirs.sort();
    Ok(dirs.into_iter().map(|(_, dir)| dir).collect())
}

/// A segment file found in a core's directory.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct SegmentFile {
    /// The `<seq>` of its name, `seg-<seq>.log`.
    pub seq: u64,
    pub path: PathBuf,
}

/// The path of segment `seq` in `dir`.
pub(super) fn segment_path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!("seg-{seq:016}.log"))
}

/// The segment files in `dir`, oldest first.
pub(super) fn segment_files(dir: &Path) -> std::io::Result<Vec<SegmentFile>> {
    let mut files: Vec<SegmentFile> = std::fs::read_dir(dir)?
        .flatten()
        .filter_map(|e| {
            let n = e.file_name();
            let seq = n
                .to_str()?
                .strip_prefix("seg-")?
                .strip_suffix(".log")?
                .parse()
                .ok()?;
            Some(SegmentFile {
                seq,
                path: e.path(),
            })
        })
        .collect();
    files.sort();
    Ok(files)
}

/// A route directory that no configured route uses and that still holds
/// events.
#[derive(Debug)]
pub struct Stranded {
    pub dir: PathBuf,
    /// Bytes of its segment files.
    pub bytes: u64,
    /// The key of its oldest file's first record, if it can be read.
    pub key: Option<String>,
}

/// Spool directories under `dir` that no configured route uses (their
/// route's glob was changed or removed) and still hold events, by path.
/// Nothing delivers them until a route with the old glob returns.
pub fn stranded(dir: &Path, route_dirs: &[String]) -> Vec<Stranded> {
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
                Ok(Some(record)) => Some(String::from_utf8_lossy(record.key).into_owned()),
                _ => None,
            }
        });
        out.push(Stranded {
            dir: entry.path(),
            bytes,
            key,
        });
    }
    out.sort_by(|a, b| a.dir.cmp(&b.dir));
    out
}

/// glommio decides once per block device whether it supports polled
/// (IOPOLL) I/O, by reading from the first DMA file opened on it; reading
/// a new, empty file succeeds without reaching the device, so the answer
/// would be a wrong "yes" and every later read would fail with ENOTSUP.
/// Opening a file that holds data first gets the right answer cached:
/// `existing` (a spool file of an earlier run, which needs no new space),
/// else a 4 KiB probe file. On a full filesystem that write fails with
/// ENOSPC ([`super::disk::no_space`]): the caller probes again before it
/// creates a file.
pub(super) async fn probe_device(
    dir: &Path,
    core: usize,
    existing: Option<&Path>,
) -> std::io::Result<()> {
    if let Some(path) = existing {
        if let Ok(file) = DmaFile::open(path).await {
            return file.close().await.map_err(std::io::Error::from);
        }
    }
    let probe = dir.join(format!(".probe-core-{core}"));
    let written = std::fs::write(&probe, [0u8; 4096]);
    if written.is_err() {
        let _ = std::fs::remove_file(&probe);
    }
    written?;
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
/// The check creates an empty file, which needs no data blocks, and a
/// full filesystem passes it: the spool starts, so that consumers can
/// take what it holds.
pub fn check_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let probe = dir.join(format!(".hookwire-probe-{}", std::process::id()));
    let created = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&probe);
    match created {
        Ok(_) => std::fs::remove_file(probe),
        Err(e) if super::disk::no_space(&e) => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn route_dirs_are_safe_and_distinct() {
        assert!(route_dir("in.gen.calltrack.*").starts_with("in.gen.calltrack._-"));
        assert_ne!(route_dir("a*"), route_dir("a?"));
        assert!(!route_dir("../x").contains('/'));
    }
}
