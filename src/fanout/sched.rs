//! The scheduling policy of libzmq's threads (`--zmq-sched`): set on the
//! calling thread while they start, so they inherit it.

use crate::config::Sched;

/// Runs `f` with the calling thread's scheduling policy set to `sched`,
/// then restores the thread's own: threads started meanwhile (libzmq's I/O
/// and reaper threads) keep `sched`.
///
/// With `batch`, a core's I/O thread, woken by the core's hand-off, does
/// not preempt the core's executor (it shares its CPU); it sends when the
/// executor waits for the network, with more envelopes per wake-up. When
/// the policy cannot be set, the threads start with the caller's and
/// hookwire says so.
pub(super) fn with_sched<T>(core: usize, sched: Sched, f: impl FnOnce() -> T) -> T {
    let want = match sched {
        Sched::Batch => libc::SCHED_BATCH,
        Sched::Normal => libc::SCHED_OTHER,
    };
    let mut own = libc::sched_param { sched_priority: 0 };
    // SAFETY (this and the calls below): pid 0 is the calling thread; the
    // sched_params are valid, `own` is written by the kernel and passed back
    // unchanged.
    let policy = unsafe { libc::sched_getscheduler(0) };
    // The reset-on-fork flag comes with the policy; it is kept as it is.
    let flags = policy & libc::SCHED_RESET_ON_FORK;
    let saved = policy >= 0 && unsafe { libc::sched_getparam(0, &mut own) } == 0;
    let differs = policy < 0 || policy & !libc::SCHED_RESET_ON_FORK != want;
    let zero = libc::sched_param { sched_priority: 0 };
    let changed =
        saved && differs && unsafe { libc::sched_setscheduler(0, want | flags, &zero) } == 0;
    if differs && !changed {
        tracing::warn!(
            "core {core}: --zmq-sched: cannot set the ZeroMQ threads' scheduling policy: {}",
            std::io::Error::last_os_error()
        );
    }
    let out = f();
    if changed && unsafe { libc::sched_setscheduler(0, policy, &own) } != 0 {
        tracing::warn!(
            "core {core}: --zmq-sched: cannot restore the executor's scheduling policy ({policy}): {}",
            std::io::Error::last_os_error()
        );
    }
    out
}
