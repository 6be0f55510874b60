//! The summary printed to stderr after a drain: the merged counters,
//! latency percentiles and what each route delivered or left spooled.

use std::fmt::Write as _;

use super::stats::{merged, merged_routes};
use crate::runtime::snapshot::CoreSnapshot;

/// The cores' final snapshots in a few lines: totals, one line per latency
/// histogram, one per route.
pub fn summary(snaps: &[CoreSnapshot]) -> String {
    let m = merged(snaps);
    let mut out = String::new();
    let c = &m.counters;
    let _ = writeln!(
        out,
        "summary: {} requests, {} events accepted, {} refused with 503, {} connections, {} bytes in, {} bytes out",
        c.requests.iter().sum::<u64>(),
        c.events_accepted,
        c.events_refused,
        c.connections_accepted,
        c.bytes_in,
        c.bytes_out
    );
    for (name, h) in m.histograms() {
        let us = |p: f64| h.h.value_at_quantile(p) as f64 / 1000.0;
        let _ = writeln!(
            out,
            "summary: {name} latency µs: n={} p50={:.1} p99={:.1} p99.9={:.1} max={:.1}",
            h.h.len(),
            us(0.5),
            us(0.99),
            us(0.999),
            h.h.max() as f64 / 1000.0
        );
    }
    for r in merged_routes(snaps) {
        let _ = writeln!(
            out,
            "summary: route {} delivered {} events, {} bytes of events left in the spool",
            r.pattern, r.delivered, r.waiting
        );
    }
    out
}
