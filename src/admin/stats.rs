//! `/stats`: every core's metrics and routes as JSON, one object per core
//! and one merged; the merging of snapshots lives here.

use serde::{Serialize, Serializer};

use crate::conn::budget::Figures;
use crate::fanout::RouteStatus;
use crate::metrics::{Counters, Hist, Metrics, STATUSES};
use crate::runtime::snapshot::{CoreSnapshot, DiskState};

/// The `/stats` document.
#[derive(Serialize)]
pub(super) struct Stats {
    uptime_seconds: f64,
    cores_answering: usize,
    cores_total: usize,
    merged: MetricsStats,
    cores: Vec<CoreStats>,
    spool: SpoolStats,
}

/// The spool across the cores that answered, and its filesystem.
#[derive(Serialize)]
struct SpoolStats {
    stored_bytes: u64,
    max_bytes: u64,
    /// `statvfs`, the least any core saw; `null` if unknown.
    disk_free_bytes: Option<u64>,
    disk_size_bytes: Option<u64>,
    min_free_bytes: u64,
    /// Writes fail for want of space.
    disk_full: bool,
}

/// One core's metrics, with its number first.
#[derive(Serialize)]
struct CoreStats {
    core: usize,
    #[serde(flatten)]
    metrics: MetricsStats,
}

/// Latency percentiles, counters and routes of one core or of all.
#[derive(Serialize)]
struct MetricsStats {
    /// `request_us`, `decode_us`, `handoff_us`.
    #[serde(flatten)]
    latencies: Members<String, Latency>,
    /// Responses by status code, the codes seen only.
    requests: Members<u16, u64>,
    /// Refusals by error code, the codes seen only.
    refusals: Members<&'static str, u64>,
    events: Events,
    handoffs: u64,
    bytes: Bytes,
    connections: Connections,
    inflight_body: InflightBody,
    routes: Vec<RouteStats>,
    /// Per `[[source]]`, then `-` for services none matches; absent
    /// without sources.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    sources: Vec<SourceStats>,
}

/// One source's events.
#[derive(Serialize)]
struct SourceStats {
    source: String,
    accepted: u64,
    refused: u64,
    /// Refusals by error code, the codes seen only.
    refusals: Members<&'static str, u64>,
    challenges: u64,
}

/// Request bodies in memory (`--max-inflight-body`); merged: summed.
#[derive(Serialize)]
struct InflightBody {
    bytes: u64,
    /// The most held at once (merged: the sum of the cores' peaks).
    max: u64,
    limit: u64,
    /// Times a connection waited for bytes to read its body.
    waits: u64,
}

/// Percentiles of a latency histogram, in microseconds to one decimal.
#[derive(Serialize)]
struct Latency {
    count: u64,
    mean: f64,
    p50: f64,
    p90: f64,
    p99: f64,
    #[serde(rename = "p99.9")]
    p99_9: f64,
    #[serde(rename = "p99.99")]
    p99_99: f64,
    max: f64,
}

#[derive(Serialize)]
struct Events {
    accepted: u64,
    refused: u64,
}

#[derive(Serialize)]
struct Bytes {
    r#in: u64,
    out: u64,
}

#[derive(Serialize)]
struct Connections {
    accepted: u64,
    closed: u64,
    /// Answered 503 overloaded as they were accepted, and closed.
    refused: u64,
    open: usize,
}

#[derive(Serialize)]
struct RouteStats {
    route: String,
    connected: usize,
    delivered: u64,
    resent: u64,
    /// Accepted mode: events not re-sent after a disconnect because they
    /// were first sent more than `--resend-window` ago.
    resend_skipped: u64,
    /// Acknowledged routes: sent, not acknowledged yet; the oldest's age.
    #[serde(skip_serializing_if = "Option::is_none")]
    acks: Option<AckStats>,
    waiting: u64,
    depth: Depth,
}

/// An acknowledged route's acks.
#[derive(Serialize)]
struct AckStats {
    unacked: u64,
    oldest_unacked_ms: u64,
    /// Acks of ids not held (acknowledged twice, or unknown).
    unknown: u64,
    /// Tokens that were no id.
    bad: u64,
    /// Acks dropped: the core's channel was full (their events come again).
    dropped: u64,
}

/// Spool depth in bytes.
#[derive(Serialize)]
struct Depth {
    p50: u64,
    p99: u64,
    max: u64,
}

/// A JSON object whose members are written in this order.
struct Members<K, V>(Vec<(K, V)>);

impl<K: Serialize, V: Serialize> Serialize for Members<K, V> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.0.iter().map(|(k, v)| (k, v)))
    }
}

/// `/stats`: per core and merged; `snaps` holds `None` for a core that
/// did not answer.
pub(super) fn stats(snaps: &[Option<CoreSnapshot>]) -> Stats {
    let answered: Vec<&CoreSnapshot> = snaps.iter().flatten().collect();
    let uptime = answered.iter().map(|s| s.uptime).max().unwrap_or_default();
    let open = answered.iter().map(|s| s.open_connections).sum();
    let merged_routes = merged_routes(answered.iter().copied());
    let body = answered.iter().fold(Figures::default(), |a, s| Figures {
        used: a.used + s.inflight_body.used,
        peak: a.peak + s.inflight_body.peak,
        limit: a.limit + s.inflight_body.limit,
        waits: a.waits + s.inflight_body.waits,
    });
    let disk = DiskState::merged(answered.iter().copied());
    let labels = answered.first().map_or(&[][..], |s| &s.source_labels[..]);
    Stats {
        uptime_seconds: rounded(uptime.as_secs_f64(), 3),
        cores_answering: answered.len(),
        cores_total: snaps.len(),
        merged: metrics_stats(
            &merged(answered.iter().copied()),
            &merged_routes,
            open,
            body,
            labels,
        ),
        cores: answered
            .iter()
            .map(|s| CoreStats {
                core: s.core,
                metrics: metrics_stats(
                    &s.metrics,
                    &s.routes,
                    s.open_connections,
                    s.inflight_body,
                    labels,
                ),
            })
            .collect(),
        spool: SpoolStats {
            stored_bytes: answered.iter().map(|s| s.spool_stored).sum(),
            max_bytes: answered.first().map_or(0, |s| s.spool_max),
            disk_free_bytes: disk.free,
            disk_size_bytes: disk.size,
            min_free_bytes: disk.min_free,
            disk_full: disk.no_space,
        },
    }
}

fn metrics_stats(
    m: &Metrics,
    routes: &[RouteStatus],
    open: usize,
    body: Figures,
    labels: &[String],
) -> MetricsStats {
    let c = &m.counters;
    MetricsStats {
        latencies: Members(
            m.histograms()
                .iter()
                .map(|(name, h)| (format!("{name}_us"), Latency::of(h)))
                .collect(),
        ),
        requests: seen(STATUSES.iter().map(|s| s.code()).zip(c.requests)),
        refusals: seen(Counters::refusal_codes().zip(c.refusals)),
        events: Events {
            accepted: c.events_accepted,
            refused: c.events_refused,
        },
        handoffs: c.handoffs,
        bytes: Bytes {
            r#in: c.bytes_in,
            out: c.bytes_out,
        },
        connections: Connections {
            accepted: c.connections_accepted,
            closed: c.connections_closed,
            refused: c.connections_refused,
            open,
        },
        inflight_body: InflightBody {
            bytes: body.used,
            max: body.peak,
            limit: body.limit,
            waits: body.waits,
        },
        routes: routes.iter().map(RouteStats::of).collect(),
        sources: labels
            .iter()
            .zip(&c.sources)
            .map(|(label, s)| SourceStats {
                source: label.clone(),
                accepted: s.accepted,
                refused: s.refused(),
                refusals: seen(Counters::refusal_codes().zip(s.refusals)),
                challenges: s.challenges,
            })
            .collect(),
    }
}

/// The counts above zero, as an object.
fn seen<K>(counts: impl Iterator<Item = (K, u64)>) -> Members<K, u64> {
    Members(counts.filter(|(_, n)| *n > 0).collect())
}

impl Latency {
    fn of(h: &Hist) -> Self {
        let us = |ns: u64| rounded(ns as f64 / 1000.0, 1);
        let q = |p: f64| us(h.h.value_at_quantile(p));
        Self {
            count: h.h.len(),
            mean: rounded(h.h.mean() / 1000.0, 1),
            p50: q(0.5),
            p90: q(0.9),
            p99: q(0.99),
            p99_9: q(0.999),
            p99_99: q(0.9999),
            max: us(h.h.max()),
        }
    }
}

impl RouteStats {
    fn of(r: &RouteStatus) -> Self {
        Self {
            route: r.pattern.clone(),
            connected: r.connected,
            delivered: r.delivered,
            resent: r.resent,
            resend_skipped: r.resend_skipped,
            acks: r.acked.then_some(AckStats {
                unacked: r.unacked,
                oldest_unacked_ms: r.oldest_unacked_ms,
                unknown: r.acks_unknown,
                bad: r.acks_bad,
                dropped: r.acks_dropped,
            }),
            waiting: r.waiting,
            depth: Depth {
                p50: r.depth.value_at_quantile(0.5),
                p99: r.depth.value_at_quantile(0.99),
                max: r.depth.max(),
            },
        }
    }
}

/// `x` rounded to `places` decimals exactly as `{:.places$}` rounds it
/// (`f64::round` differs on ties, such as 0.15 to one place).
fn rounded(x: f64, places: usize) -> f64 {
    format!("{x:.places$}").parse().unwrap_or(x)
}

/// Every core's metrics merged.
pub(super) fn merged<'a>(snaps: impl IntoIterator<Item = &'a CoreSnapshot>) -> Metrics {
    let mut all = Metrics::default();
    for s in snaps {
        all.merge(&s.metrics);
    }
    all
}

/// Merges per-route states across cores (same routes on every core): a
/// route's consumers are those every core has, the rest is summed.
pub(super) fn merged_routes<'a>(
    snaps: impl IntoIterator<Item = &'a CoreSnapshot>,
) -> Vec<RouteStatus> {
    let mut snaps = snaps.into_iter();
    let Some(first) = snaps.next() else {
        return Vec::new();
    };
    let mut routes = first.routes.clone();
    for s in snaps {
        for (a, b) in routes.iter_mut().zip(&s.routes) {
            a.connected = a.connected.min(b.connected);
            a.delivered += b.delivered;
            a.resent += b.resent;
            a.resend_skipped += b.resend_skipped;
            a.unacked += b.unacked;
            a.oldest_unacked_ms = a.oldest_unacked_ms.max(b.oldest_unacked_ms);
            a.acks_unknown += b.acks_unknown;
            a.acks_bad += b.acks_bad;
            a.acks_dropped += b.acks_dropped;
            a.waiting += b.waiting;
            let _ = a.depth.add(&b.depth);
        }
    }
    routes
}
