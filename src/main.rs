//! The `hookwire` binary: the command line, the open-files limit, the
//! start of the cores and the admin listener, and the signals that drain
//! them.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use hookwire::config::{Cli, Command, ServeArgs, Settings};
use hookwire::spool::Stranded;
use signal_hook::consts::{SIGINT, SIGTERM};

/// Counts the cores' allocations for `/metrics`.
#[global_allocator]
static ALLOCATOR: hookwire::allocs::Counting = hookwire::allocs::Counting;

fn main() {
    fixed_mmap_threshold();
    let cli = Cli::parse_with_sources();
    hookwire::log::init();
    let result = match cli.command {
        Some(Command::Tap(args)) => hookwire::tap::run(&args),
        Some(Command::Serve(args)) => serve(*args),
        None => serve(cli.serve),
    };
    if let Err(e) = result {
        eprintln!("hookwire: {e}");
        std::process::exit(2);
    }
}

/// Writes a line scripts read to stderr. Unlike `eprintln!`, a stderr
/// whose reader has gone (a supervisor's pipe closed) is not a panic,
/// which would abort the process.
fn say(line: std::fmt::Arguments) {
    use std::io::Write;
    let _ = std::io::stderr().write_fmt(line);
}

/// glibc raises its mmap threshold to the largest block freed (up to 32
/// MiB), after which a burst's large buffers come from the heap and stay
/// in RSS once freed. A fixed threshold hands every block of 1 MiB or more
/// back to the kernel when it is freed.
fn fixed_mmap_threshold() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets an allocator parameter; called before any
    // other thread starts.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
    }
}

/// Raises the soft limit on open descriptors to the hard limit: one per
/// connection, so a burst of senders is not refused at the usual soft
/// limit of 1024. The hard limit is the operator's (`ulimit -Hn`,
/// systemd's `LimitNOFILE`).
fn raise_open_files_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a valid pointer to a local struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && limit.rlim_cur < limit.rlim_max
        {
            let raised = libc::rlimit {
                rlim_cur: limit.rlim_max,
                rlim_max: limit.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) != 0 {
                tracing::warn!(
                    "could not raise the open-files limit from {} to {}: {}",
                    limit.rlim_cur,
                    limit.rlim_max,
                    std::io::Error::last_os_error()
                );
            }
        }
    }
}

/// Says how full the spool's filesystem is, and what a full one means for
/// new events.
fn say_disk_space(settings: &Settings) {
    let dir = settings.spool_dir.display();
    let size = |n: u64| bytesize::ByteSize(n).to_string_as(true);
    match hookwire::spool::disk::space(&settings.spool_dir) {
        Ok(space) => {
            let min_free = settings.spool_min_free.bytes(space.size);
            let used = 100.0 - space.free as f64 * 100.0 / space.size.max(1) as f64;
            tracing::info!(
                "spool {dir}: {} free of {} ({used:.0}% used); --spool-min-free keeps {}",
                size(space.free),
                size(space.size),
                size(min_free)
            );
            if space.free < min_free {
                tracing::warn!(
                    "spool {dir}: the filesystem has less free than --spool-min-free: events that need the spool get 503 spool_full until space frees (consumers taking the spooled events free it)"
                );
            }
        }
        Err(e) => tracing::warn!("spool {dir}: cannot tell the filesystem's free space: {e}"),
    }
}

fn serve(args: ServeArgs) -> Result<(), Box<dyn std::error::Error>> {
    let settings = Arc::new(Settings::from_args(args)?);
    hookwire::spool::check_dir(&settings.spool_dir)
        .map_err(|e| format!("--spool-dir {}: {e}", settings.spool_dir.display()))?;
    // Held until the process exits.
    let _spool_lock = hookwire::spool::lock_dir(&settings.spool_dir)
        .map_err(|e| format!("--spool-dir {}: {e}", settings.spool_dir.display()))?;
    let route_dirs = hookwire::spool::route_dirs(&settings);
    for Stranded { dir, bytes, key } in hookwire::spool::stranded(&settings.spool_dir, &route_dirs)
    {
        let like = key.map_or(String::new(), |k| format!(", keys like {k}"));
        tracing::warn!(
            "{} holds {} of spool files (undelivered events, and in durable mode the replay window's) for a route no longer configured{like}: no route delivers them; start hookwire with that route again (its glob is the directory's name before the hash) to deliver them",
            dir.display(),
            bytesize::ByteSize(bytes).to_string_as(true)
        );
    }
    // Signals are caught before any core starts, so none is missed.
    let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT])?;
    // A spool write past the file-size limit must fail (EFBIG, answered
    // with 503 spool_error), not kill the process.
    // SAFETY: setting a signal's disposition to "ignore" is async-signal-safe
    // and done before any other thread starts.
    unsafe { libc::signal(libc::SIGXFSZ, libc::SIG_IGN) };
    raise_open_files_limit();
    if let Some(tls) = &settings.tls {
        // SIGHUP is caught from here on (before, it would end the process).
        hookwire::tls::watch::spawn(tls.clone())
            .map_err(|e| format!("cannot start the certificate watcher: {e}"))?;
    }
    let running = hookwire::runtime::start(settings.clone())?;
    let admin = match settings.admin {
        Some(addr) => Some(
            hookwire::admin::spawn(addr, running.cores.clone())
                .map_err(|e| format!("--admin {addr}: {e}"))?,
        ),
        None => None,
    };
    // The start-up lines scripts wait for: printed as they are, whatever
    // RUST_LOG filters.
    say(format_args!(
        "listen {}://{} cores={} io={}\n",
        if settings.tls.is_some() {
            "https"
        } else {
            "http"
        },
        running.addr,
        settings.cores,
        match settings.io {
            hookwire::config::Io::Uring => "uring",
            hookwire::config::Io::Poll => "poll",
        }
    ));
    if let Some(addr) = running.plain {
        say(format_args!("listen-plain http://{addr}\n"));
    }
    if let Some(tls) = &settings.tls {
        let not_after = hookwire::tls::certs::date(tls.not_after());
        say(format_args!(
            "tls {} valid until {not_after}\n",
            tls.cert_path.display()
        ));
    }
    if let Some(addr) = admin {
        say(format_args!("admin http://{addr}\n"));
    }
    for route in &settings.routes {
        say(format_args!(
            "route {} -> {}\n",
            route.pattern,
            route.endpoints.join(",")
        ));
    }
    for source in &settings.sources.list {
        say(format_args!("{}\n", source.describe()));
    }
    if settings.sources.strict {
        say(format_args!(
            "strict: services without a [[source]] get 404 unknown_service\n"
        ));
    }
    say(format_args!("ready\n"));
    say_disk_space(&settings);

    let drain = running.drain.clone();
    let drain_timeout = settings.drain_timeout;
    std::thread::spawn(move || {
        let mut forever = signals.forever();
        if forever.next().is_some() {
            tracing::info!(
                "draining: no new connections; finishing requests and deliveries (up to {drain_timeout:?}); signal again to exit at once"
            );
            drain.store(true, Ordering::Relaxed);
        }
        if forever.next().is_some() {
            tracing::info!("second signal: exiting now");
            std::process::exit(130);
        }
    });

    let finals: Vec<_> = running
        .handles
        .into_iter()
        .filter_map(|h| h.join().ok())
        .collect();
    say(format_args!(
        "{}stopped\n",
        hookwire::admin::summary(&finals)
    ));
    Ok(())
}
