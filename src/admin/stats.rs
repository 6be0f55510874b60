//! `/stats`: every core's metrics and routes as JSON, one object per core
//! and one merged; the merging of snapshots lives here.

use hdrhistogram::Histogram;

use crate::fanout::RouteStatus;
use crate::metrics::{Counters, Hist, Metrics, STATUSES};
use crate::runtime::snapshot::CoreSnapshot;

/// Every core's metrics merged.
pub(super) fn merged(snaps: &[CoreSnapshot]) -> Metrics {
    let mut all = Metrics::default();
    for s in snaps {
        all.merge(&s.metrics);
    }
    all
}

/// Percentiles of a latency histogram, in microseconds.
fn percentiles_us(h: &Hist) -> String {
    let us = |ns: u64| ns as f64 / 1000.0;
    let q = |p: f64| us(h.h.value_at_quantile(p));
    format!(
        r#"{{"count":{},"mean":{:.1},"p50":{:.1},"p90":{:.1},"p99":{:.1},"p99.9":{:.1},"p99.99":{:.1},"max":{:.1}}}"#,
        h.h.len(),
        h.h.mean() / 1000.0,
        q(0.5),
        q(0.9),
        q(0.99),
        q(0.999),
        q(0.9999),
        us(h.h.max())
    )
}

fn depth(h: &Histogram<u64>) -> String {
    format!(
        r#"{{"p50":{},"p99":{},"max":{}}}"#,
        h.value_at_quantile(0.5),
        h.value_at_quantile(0.99),
        h.max()
    )
}

fn metrics_json(m: &Metrics, routes: &[RouteStatus], open: usize) -> String {
    let hists: Vec<String> = m
        .histograms()
        .iter()
        .map(|(name, h)| format!(r#""{name}_us":{}"#, percentiles_us(h)))
        .collect();
    let c = &m.counters;
    let statuses: Vec<String> = STATUSES
        .iter()
        .zip(c.requests)
        .filter(|(_, n)| *n > 0)
        .map(|(s, n)| format!(r#""{}":{n}"#, s.code()))
        .collect();
    let refusals: Vec<String> = Counters::refusal_codes()
        .zip(c.refusals)
        .filter(|(_, n)| *n > 0)
        .map(|(code, n)| format!(r#""{code}":{n}"#))
        .collect();
    let routes: Vec<String> = routes
        .iter()
        .map(|r| {
            format!(
                r#"{{"route":{},"connected":{},"delivered":{},"waiting":{},"depth":{}}}"#,
                json_str(&r.pattern),
                r.connected,
                r.delivered,
                r.waiting,
                depth(&r.depth)
            )
        })
        .collect();
    format!(
        r#"{{{},"requests":{{{}}},"refusals":{{{}}},"events":{{"accepted":{},"refused":{}}},"handoffs":{},"bytes":{{"in":{},"out":{}}},"connections":{{"accepted":{},"closed":{},"open":{open}}},"routes":[{}]}}"#,
        hists.join(","),
        statuses.join(","),
        refusals.join(","),
        c.events_accepted,
        c.events_refused,
        c.handoffs,
        c.bytes_in,
        c.bytes_out,
        c.connections_accepted,
        c.connections_closed,
        routes.join(",")
    )
}

/// Merges per-route states across cores (same routes on every core).
pub(super) fn merged_routes(snaps: &[CoreSnapshot]) -> Vec<RouteStatus> {
    let Some(first) = snaps.first() else {
        return Vec::new();
    };
    let mut routes = first.routes.clone();
    for s in &snaps[1..] {
        for (a, b) in routes.iter_mut().zip(&s.routes) {
            a.connected = a.connected.min(b.connected);
            a.delivered += b.delivered;
            a.waiting += b.waiting;
            let _ = a.depth.add(&b.depth);
        }
    }
    routes
}

/// `/stats`: per core and merged.
pub(super) fn stats(snaps: &[Option<CoreSnapshot>]) -> String {
    let answered: Vec<CoreSnapshot> = snaps.iter().flatten().cloned().collect();
    let uptime = answered.iter().map(|s| s.uptime).max().unwrap_or_default();
    let open: usize = answered.iter().map(|s| s.open_connections).sum();
    let cores: Vec<String> = answered
        .iter()
        .map(|s| {
            let body = metrics_json(&s.metrics, &s.routes, s.open_connections);
            format!(r#"{{"core":{},{}"#, s.core, &body[1..])
        })
        .collect();
    format!(
        r#"{{"uptime_seconds":{:.3},"cores_answering":{},"cores_total":{},"merged":{},"cores":[{}]}}"#,
        uptime.as_secs_f64(),
        answered.len(),
        snaps.len(),
        metrics_json(&merged(&answered), &merged_routes(&answered), open),
        cores.join(",")
    )
}

pub(super) fn json_str(s: &str) -> String {
    let mut out = Vec::new();
    crate::jsonw::write_str(&mut out, s);
    String::from_utf8(out).expect("JSON of a str is UTF-8")
}
