//! `/health` and `/ready`: whether every core answers and accepts, every
//! route has a consumer on every core, and the spool can take events.

use serde::Serialize;

use crate::runtime::snapshot::{CoreSnapshot, DiskState};

/// The `/health` document: the process answers.
#[derive(Serialize)]
pub(super) struct Health {
    status: &'static str,
}

pub(super) const HEALTHY: Health = Health { status: "ok" };

/// The `/ready` document; answered 200 when `ready`, else 503.
#[derive(Serialize)]
pub(super) struct Readiness {
    pub ready: bool,
    routes: Vec<RouteReadiness>,
    spool: SpoolReadiness,
    /// Why not ready: the cores' problems first, then the routes'.
    problems: Vec<Problem>,
}

/// The spool's filesystem, across the cores that answered.
#[derive(Serialize)]
struct SpoolReadiness {
    /// Bytes the spool holds, all cores.
    stored_bytes: u64,
    /// Free bytes on its filesystem (`statvfs`, what an unprivileged
    /// writer may use), the least any core saw; `null` if unknown.
    free_bytes: Option<u64>,
    size_bytes: Option<u64>,
    /// `--spool-min-free`, in bytes.
    min_free_bytes: u64,
}

/// A route across the cores that answered.
#[derive(Serialize, Clone)]
struct RouteReadiness {
    route: String,
    /// The route's endpoints, comma-separated.
    endpoints: String,
    ready: bool,
    /// Bytes waiting in the spools of all cores.
    waiting: u64,
    /// Acknowledged routes: events sent and not acknowledged yet, and how
    /// long ago the oldest was first sent.
    #[serde(skip_serializing_if = "Option::is_none")]
    unacked: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    oldest_unacked_ms: Option<u64>,
    /// Why not ready: `no_consumer`, and in words.
    #[serde(skip_serializing_if = "Option::is_none")]
    code: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
}

#[derive(Serialize)]
#[serde(untagged)]
enum Problem {
    /// `core` is the core's position in the snapshots.
    Core {
        core: usize,
        code: &'static str,
        reason: String,
    },
    Route(RouteReadiness),
    /// The HTTPS certificate is within 7 days of its expiry.
    Tls {
        code: &'static str,
        reason: String,
    },
}

/// `/ready`: every core answers and accepts, every route has a consumer
/// connected on every core, and every core's spool can take events (not
/// full, its last write did not fail).
pub(super) fn readiness(snaps: &[Option<CoreSnapshot>]) -> Readiness {
    let answered: Vec<&CoreSnapshot> = snaps.iter().flatten().collect();
    let routes = route_readiness(&answered);
    let disk = DiskState::merged(answered.iter().copied());
    let spool = SpoolReadiness {
        stored_bytes: answered.iter().map(|s| s.spool_stored).sum(),
        free_bytes: disk.free,
        size_bytes: disk.size,
        min_free_bytes: disk.min_free,
    };
    let mut problems = core_problems(snaps);
    if let Some((path, not_after)) = answered.first().and_then(|s| s.tls_cert.clone()) {
        let left = not_after - crate::tls::certs::now_secs();
        if left < crate::tls::EXPIRY_WARNING_SECS {
            problems.push(Problem::Tls {
                code: "tls_cert_expiring",
                reason: format!(
                    "the TLS certificate {path} expires {} ({:.1} days left): renew it; hookwire reloads it on SIGHUP or when the file changes",
                    crate::tls::certs::date(not_after),
                    left as f64 / 86_400.0
                ),
            });
        }
    }
    problems.extend(
        routes
            .iter()
            .filter(|r| !r.ready)
            .cloned()
            .map(Problem::Route),
    );
    Readiness {
        ready: problems.is_empty(),
        routes,
        spool,
        problems,
    }
}

/// Cores that did not answer or do not accept, and spools that cannot take
/// events, in the cores' order.
fn core_problems(snaps: &[Option<CoreSnapshot>]) -> Vec<Problem> {
    let held: u64 = snaps.iter().flatten().map(|s| s.spool_stored).sum();
    let size = |n: u64| bytesize::ByteSize(n).to_string_as(true);
    let mut problems = Vec::new();
    for (core, s) in snaps.iter().enumerate() {
        let mut problem =
            |code, reason: String| problems.push(Problem::Core { core, code, reason });
        let Some(s) = s else {
            problem("not_answering", "the core did not answer within 1 s".into());
            continue;
        };
        if !s.accepting {
            problem(
                "draining",
                "the core is not accepting connections (draining)".into(),
            );
        }
        if s.spool_full {
            problem("spool_full", format!(
                "the spool is full ({} of --spool-max-bytes {}): events that need it get 503 spool_full; start consumers or raise --spool-max-bytes",
                size(held),
                size(s.spool_max)
            ));
        }
        let free = s.disk.free.map_or("unknown".into(), size);
        if s.disk.no_space {
            problem("spool_disk_full", format!(
                "the spool's filesystem is full (writes fail with no space left; {free} free): events that need the spool get 503 until space frees; consumers taking spooled events free it, or free space on the filesystem"
            ));
        } else if s.disk.low() {
            problem("spool_full", format!(
                "the spool's filesystem has {free} free, less than --spool-min-free {}: events that need the spool get 503 spool_full until space frees; consumers taking spooled events free it, or free space on the filesystem",
                size(s.disk.min_free)
            ));
        }
        if let Some(e) = &s.spool_error {
            problem("spool_error", format!(
                "the spool's last write failed ({e}): events ZeroMQ cannot take now get 503 spool_error until a write succeeds"
            ));
        }
    }
    problems
}

/// Each route (the same on every core): ready when every core that
/// answered has a consumer connected to it.
fn route_readiness(answered: &[&CoreSnapshot]) -> Vec<RouteReadiness> {
    let Some(first) = answered.first() else {
        return Vec::new();
    };
    let mut routes = Vec::new();
    for (r, spec) in first.routes.iter().enumerate() {
        let missing: Vec<usize> = answered
            .iter()
            .filter(|s| s.routes[r].connected == 0)
            .map(|s| s.core)
            .collect();
        let reason = (!missing.is_empty()).then(|| {
            format!(
                "no consumer is connected to {} (from core(s) {missing:?}); start a consumer that binds PULL there",
                spec.endpoints.join(" or "),
            )
        });
        routes.push(RouteReadiness {
            route: spec.pattern.clone(),
            endpoints: spec.endpoints.join(","),
            ready: reason.is_none(),
            waiting: answered.iter().map(|s| s.routes[r].waiting).sum(),
            unacked: spec
                .acked
                .then(|| answered.iter().map(|s| s.routes[r].unacked).sum()),
            oldest_unacked_ms: spec.acked.then(|| {
                answered
                    .iter()
                    .map(|s| s.routes[r].oldest_unacked_ms)
                    .max()
                    .unwrap_or(0)
            }),
            code: reason.is_some().then_some("no_consumer"),
            reason,
        });
    }
    routes
}
