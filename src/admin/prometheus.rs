//! `/metrics`: the Prometheus text exposition, per core (`core="N"`) and
//! merged (`core="all"`).

use std::fmt::Write as _;

use super::stats::merged;
use crate::fanout::RouteStatus;
use crate::metrics::{Counters, Metrics, BUCKETS, STATUSES};
use crate::runtime::snapshot::CoreSnapshot;

const HISTOGRAM_HELP: [(&str, &str); 3] = [
    (
        "request",
        "first byte of a request read to last byte of its response written",
    ),
    ("decode", "decoding a request's query and body"),
    (
        "handoff",
        "handing one event to ZeroMQ or the spool (accepted mode: its share of the batch)",
    ),
];

/// Prometheus text exposition: per core (`core="N"`) and merged (`core="all"`).
pub(super) fn prometheus(snaps: &[Option<CoreSnapshot>]) -> String {
    let answered: Vec<CoreSnapshot> = snaps.iter().flatten().cloned().collect();
    let all = merged(&answered);
    let mut sets: Vec<(String, &Metrics)> = answered
        .iter()
        .map(|s| (s.core.to_string(), &s.metrics))
        .collect();
    sets.push(("all".into(), &all));
    let mut out = String::new();

    for (i, (name, help)) in HISTOGRAM_HELP.iter().enumerate() {
        let metric = format!("hookwire_{name}_duration_seconds");
        let _ = writeln!(
            out,
            "# HELP {metric} Time spent {help}.\n# TYPE {metric} histogram"
        );
        for (core, m) in &sets {
            let h = m.histograms()[i].1;
            for le in BUCKETS {
                let _ = writeln!(
                    out,
                    r#"{metric}_bucket{{core="{core}",le="{}"}} {}"#,
                    le.as_secs_f64(),
                    h.count_le(le)
                );
            }
            let _ = writeln!(
                out,
                r#"{metric}_bucket{{core="{core}",le="+Inf"}} {}"#,
                h.h.len()
            );
            let _ = writeln!(
                out,
                r#"{metric}_sum{{core="{core}"}} {}"#,
                h.sum_ns as f64 / 1e9
            );
            let _ = writeln!(out, r#"{metric}_count{{core="{core}"}} {}"#, h.h.len());
        }
    }

    let counter = |out: &mut String, name: &str, help: &str, f: &dyn Fn(&Counters) -> u64| {
        let _ = writeln!(
            out,
            "# HELP hookwire_{name} {help}\n# TYPE hookwire_{name} counter"
        );
        for (core, m) in &sets {
            let _ = writeln!(
                out,
                r#"hookwire_{name}{{core="{core}"}} {}"#,
                f(&m.counters)
            );
        }
    };
    let _ = writeln!(out, "# HELP hookwire_requests_total Responses sent, by status.\n# TYPE hookwire_requests_total counter");
    for (core, m) in &sets {
        for (status, n) in STATUSES.iter().zip(m.counters.requests) {
            let _ = writeln!(
                out,
                r#"hookwire_requests_total{{core="{core}",status="{}"}} {n}"#,
                status.code()
            );
        }
    }
    let _ = writeln!(out, "# HELP hookwire_refusals_total Requests refused, by error code.\n# TYPE hookwire_refusals_total counter");
    for (core, m) in &sets {
        for (code, n) in Counters::refusal_codes().zip(m.counters.refusals) {
            let _ = writeln!(
                out,
                r#"hookwire_refusals_total{{core="{core}",code="{code}"}} {n}"#
            );
        }
    }
    counter(
        &mut out,
        "events_accepted_total",
        "Events answered with 200.",
        &|c| c.events_accepted,
    );
    counter(
        &mut out,
        "events_refused_total",
        "Events refused with 503 (not stored).",
        &|c| c.events_refused,
    );
    counter(
        &mut out,
        "handoffs_total",
        "Accepted mode: hand-offs of a core's batch of events to ZeroMQ (or the spool).",
        &|c| c.handoffs,
    );
    counter(
        &mut out,
        "bytes_in_total",
        "Bytes read from senders.",
        &|c| c.bytes_in,
    );
    counter(
        &mut out,
        "bytes_out_total",
        "Bytes written to senders.",
        &|c| c.bytes_out,
    );
    counter(
        &mut out,
        "connections_accepted_total",
        "Connections accepted.",
        &|c| c.connections_accepted,
    );
    counter(
        &mut out,
        "connections_closed_total",
        "Connections closed.",
        &|c| c.connections_closed,
    );

    let _ = writeln!(out, "# HELP hookwire_connections_open Connections open now.\n# TYPE hookwire_connections_open gauge");
    let open: usize = answered.iter().map(|s| s.open_connections).sum();
    for s in &answered {
        let _ = writeln!(
            out,
            r#"hookwire_connections_open{{core="{}"}} {}"#,
            s.core, s.open_connections
        );
    }
    let _ = writeln!(out, r#"hookwire_connections_open{{core="all"}} {open}"#);

    // `merge`: how a route's per-core values make `core="all"` (summed,
    // or as `/stats` merges consumers and the largest depth).
    let route_metric = |out: &mut String,
                        name: &str,
                        kind: &str,
                        help: &str,
                        f: &dyn Fn(&RouteStatus) -> u64,
                        merge: fn(u64, u64) -> u64| {
        let _ = writeln!(
            out,
            "# HELP hookwire_{name} {help}\n# TYPE hookwire_{name} {kind}"
        );
        let routes = answered.first().map_or(0, |s| s.routes.len());
        for r in 0..routes {
            let label = escape_label(&answered[0].routes[r].pattern);
            let mut total = None;
            for s in &answered {
                let v = f(&s.routes[r]);
                total = Some(total.map_or(v, |t| merge(t, v)));
                let _ = writeln!(
                    out,
                    r#"hookwire_{name}{{core="{}",route="{label}"}} {v}"#,
                    s.core
                );
            }
            let _ = writeln!(
                out,
                r#"hookwire_{name}{{core="all",route="{label}"}} {}"#,
                total.unwrap_or(0)
            );
        }
    };
    route_metric(
        &mut out,
        "events_delivered_total",
        "counter",
        "Events handed to ZeroMQ, by route.",
        &|r| r.delivered,
        |a, b| a + b,
    );
    route_metric(
        &mut out,
        "spool_bytes",
        "gauge",
        "Bytes of events waiting in the spool for ZeroMQ, by route.",
        &|r| r.waiting,
        |a, b| a + b,
    );
    route_metric(
        &mut out,
        "spool_bytes_max",
        "gauge",
        "Largest spool depth seen in bytes, by route (core=\"all\": the largest of the cores').",
        &|r| r.depth.max(),
        u64::max,
    );
    // Every core connects its own socket to each consumer, so one consumer
    // shows on every core; core="all" counts the consumers every core has.
    route_metric(
        &mut out,
        "consumers_connected",
        "gauge",
        "Consumers connected, by route (each core connects to each consumer; core=\"all\": connected to every core).",
        &|r| r.connected as u64,
        u64::min,
    );
    let uptime = answered.iter().map(|s| s.uptime).max().unwrap_or_default();
    let _ = writeln!(
        out,
        "# HELP hookwire_uptime_seconds Seconds since the cores started.\n# TYPE hookwire_uptime_seconds gauge\nhookwire_uptime_seconds {}",
        uptime.as_secs_f64()
    );
    out
}

fn escape_label(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}
