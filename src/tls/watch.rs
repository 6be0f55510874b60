//! Certificate reload: on SIGHUP, and when the certificate or key file
//! changes (a new modification time, size or inode, checked twice a
//! second: two `stat`s, and a file replaced by a rename is seen too).

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use signal_hook::consts::SIGHUP;
use signal_hook::iterator::Signals;

use super::certs;
use super::Tls;

const POLL: Duration = Duration::from_millis(500);

/// What identifies a file's version: inode, size, modification time.
type Stamp = Option<(u64, u64, i64, i64)>;

fn stamp(path: &Path) -> Stamp {
    let m = std::fs::metadata(path).ok()?;
    Some((m.ino(), m.size(), m.mtime(), m.mtime_nsec()))
}

/// Catches SIGHUP (from now on) and starts the watcher thread.
pub fn spawn(tls: Arc<Tls>) -> std::io::Result<()> {
    let mut signals = Signals::new([SIGHUP])?;
    let mut seen = (stamp(&tls.cert_path), stamp(&tls.key_path));
    std::thread::Builder::new()
        .name("hookwire-tls-watch".into())
        .spawn(move || loop {
            let hup = signals.pending().count() > 0;
            let now = (stamp(&tls.cert_path), stamp(&tls.key_path));
            let changed = now != seen;
            seen = now;
            if hup || changed {
                reload(&tls, if hup { "SIGHUP" } else { "the files changed" });
            }
            std::thread::sleep(POLL);
        })?;
    Ok(())
}

fn reload(tls: &Tls, why: &str) {
    let cert = tls.cert_path.display();
    match tls.reload() {
        Ok(loaded) => tracing::info!(
            "--tls-cert {cert}: reloaded ({why}): {} valid until {}; new connections get it",
            loaded.subject,
            certs::date(loaded.not_after)
        ),
        Err(e) => tracing::warn!(
            "--tls-cert {cert}: not reloaded ({why}): {e}; the certificate loaded before stays"
        ),
    }
}
