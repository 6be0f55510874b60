//! `/metrics`: the Prometheus text exposition, per core (`core="N"`) and
//! merged (`core="all"`).

// Written by hand: the histograms are hdrhistogram copies merged on
// demand, which a registry crate would need re-recorded into its own.

use std::fmt::{Display, Write as _};

use super::stats::merged;
use crate::fanout::RouteStatus;
use crate::metrics::{Counters, Metrics, BUCKETS, STATUSES};
use crate::runtime::snapshot::{CoreSnapshot, DiskState};
use crate::tls::Failure;

/// A latency histogram of [`Metrics::histograms`], in the same order.
struct Histogram {
    name: &'static str,
    help: &'static str,
}

const HISTOGRAMS: [Histogram; 3] = [
    Histogram {
        name: "hookwire_request_duration_seconds",
        help: "Time spent first byte of a request read to last byte of its response written.",
    },
    Histogram {
        name: "hookwire_decode_duration_seconds",
        help: "Time spent decoding a request's query and body.",
    },
    Histogram {
        name: "hookwire_handoff_duration_seconds",
        help: "Time spent handing one event to ZeroMQ or the spool (accepted mode: its share of the batch).",
    },
];

/// A counter of [`Counters`] with one series per core and the sum.
struct Counter {
    name: &'static str,
    help: &'static str,
    value: fn(&Counters) -> u64,
}

const COUNTERS: [Counter; 8] = [
    Counter {
        name: "hookwire_events_accepted_total",
        help: "Events answered with 200.",
        value: |c| c.events_accepted,
    },
    Counter {
        name: "hookwire_events_refused_total",
        help: "Events refused with 503 (not stored).",
        value: |c| c.events_refused,
    },
    Counter {
        name: "hookwire_handoffs_total",
        help: "Accepted mode: hand-offs of a core's batch of events to ZeroMQ (or the spool).",
        value: |c| c.handoffs,
    },
    Counter {
        name: "hookwire_bytes_in_total",
        help: "Bytes read from senders.",
        value: |c| c.bytes_in,
    },
    Counter {
        name: "hookwire_bytes_out_total",
        help: "Bytes written to senders.",
        value: |c| c.bytes_out,
    },
    Counter {
        name: "hookwire_connections_accepted_total",
        help: "Connections accepted.",
        value: |c| c.connections_accepted,
    },
    Counter {
        name: "hookwire_connections_closed_total",
        help: "Connections closed.",
        value: |c| c.connections_closed,
    },
    Counter {
        name: "hookwire_connections_refused_total",
        help: "Connections answered 503 overloaded and closed as they were accepted (--max-connections reached, or out of descriptors).",
        value: |c| c.connections_refused,
    },
];

/// A figure from a core's snapshot rather than its metrics: per core
/// and summed.
struct CoreFamily {
    name: &'static str,
    kind: &'static str,
    help: &'static str,
    value: fn(&CoreSnapshot) -> u64,
}

const CORE_FAMILIES: [CoreFamily; 6] = [
    CoreFamily {
        name: "hookwire_connections_open",
        kind: "gauge",
        help: "Connections open now.",
        value: |s| s.open_connections as u64,
    },
    CoreFamily {
        name: "hookwire_inflight_body_bytes",
        kind: "gauge",
        help: "Bytes of request bodies held in memory now (read buffers grown past their resting size).",
        value: |s| s.inflight_body.used,
    },
    CoreFamily {
        name: "hookwire_inflight_body_bytes_max",
        kind: "gauge",
        help: "Most bytes of request bodies held at once (core=\"all\": the sum of the cores' peaks).",
        value: |s| s.inflight_body.peak,
    },
    CoreFamily {
        name: "hookwire_inflight_body_bytes_limit",
        kind: "gauge",
        help: "The core's share of --max-inflight-body (core=\"all\": the process's).",
        value: |s| s.inflight_body.limit,
    },
    CoreFamily {
        name: "hookwire_core_allocations_total",
        kind: "counter",
        help: "Heap allocations made on the core's thread (hookwire's and glommio's Rust code; not libzmq's, not the admin's): flat while the core serves a steady load.",
        value: |s| s.allocations,
    },
    CoreFamily {
        name: "hookwire_inflight_body_waits_total",
        kind: "counter",
        help: "Times a connection waited to read its body because the bytes in flight were at the limit.",
        value: |s| s.inflight_body.waits,
    },
];

/// A per-route value of [`RouteStatus`]; `merge` folds the cores' values
/// into `core="all"` (a sum, or as `/stats` merges consumers and depth).
struct RouteFamily {
    name: &'static str,
    kind: &'static str,
    help: &'static str,
    value: fn(&RouteStatus) -> u64,
    merge: fn(u64, u64) -> u64,
}

const ROUTE_FAMILIES: [RouteFamily; 11] = [
    RouteFamily {
        name: "hookwire_events_delivered_total",
        kind: "counter",
        help: "Events handed to ZeroMQ for the first time, by route.",
        value: |r| r.delivered,
        merge: |a, b| a + b,
    },
    RouteFamily {
        name: "hookwire_events_resent_total",
        kind: "counter",
        help: "Events handed to ZeroMQ again after a consumer disconnected, by route.",
        value: |r| r.resent,
        merge: |a, b| a + b,
    },
    RouteFamily {
        name: "hookwire_events_resend_skipped_total",
        kind: "counter",
        help: "Events not re-sent after a consumer disconnected because they were first sent more than --resend-window ago, by route.",
        value: |r| r.resend_skipped,
        merge: |a, b| a + b,
    },
    RouteFamily {
        name: "hookwire_events_unacked",
        kind: "gauge",
        help: "Acknowledged routes: events sent and not acknowledged yet, by route.",
        value: |r| r.unacked,
        merge: |a, b| a + b,
    },
    RouteFamily {
        name: "hookwire_unacked_oldest_age_milliseconds",
        kind: "gauge",
        help: "Acknowledged routes: how long ago the oldest unacknowledged event was first sent, by route (core=\"all\": the oldest).",
        value: |r| r.oldest_unacked_ms,
        merge: u64::max,
    },
    RouteFamily {
        name: "hookwire_acks_unknown_total",
        kind: "counter",
        help: "Acknowledged routes: acks of ids not held (acknowledged twice, or never sent), by route.",
        value: |r| r.acks_unknown,
        merge: |a, b| a + b,
    },
    RouteFamily {
        name: "hookwire_acks_bad_total",
        kind: "counter",
        help: "Acknowledged routes: ack tokens that were no id, by route.",
        value: |r| r.acks_bad,
        merge: |a, b| a + b,
    },
    RouteFamily {
        name: "hookwire_acks_dropped_total",
        kind: "counter",
        help: "Acknowledged routes: acks dropped because the core's channel was full (their events are sent again), by route.",
        value: |r| r.acks_dropped,
        merge: |a, b| a + b,
    },
    RouteFamily {
        name: "hookwire_spool_bytes",
        kind: "gauge",
        help: "Bytes of events waiting in the spool for ZeroMQ, by route.",
        value: |r| r.waiting,
        merge: |a, b| a + b,
    },
    RouteFamily {
        name: "hookwire_spool_bytes_max",
        kind: "gauge",
        help: "Largest spool depth seen in bytes, by route (core=\"all\": the largest of the cores').",
        value: |r| r.depth.max(),
        merge: u64::max,
    },
    // Every core connects its own socket to each consumer, so one consumer
    // shows on every core; core="all" counts the consumers every core has.
    RouteFamily {
        name: "hookwire_consumers_connected",
        kind: "gauge",
        help: "Consumers connected, by route (each core connects to each consumer; core=\"all\": connected to every core).",
        value: |r| r.connected as u64,
        merge: u64::min,
    },
];

/// One `core` label's metrics: a core's, or the merge (`all`).
struct Labelled<'a> {
    core: String,
    metrics: &'a Metrics,
}

/// The exposition of every family, per core and merged; `snaps` holds
/// `None` for a core that did not answer (it has no series).
pub(super) fn prometheus(snaps: &[Option<CoreSnapshot>]) -> String {
    let answered: Vec<&CoreSnapshot> = snaps.iter().flatten().collect();
    let all = merged(answered.iter().copied());
    let mut sets: Vec<Labelled> = answered
        .iter()
        .map(|s| Labelled {
            core: s.core.to_string(),
            metrics: &s.metrics,
        })
        .collect();
    sets.push(Labelled {
        core: "all".into(),
        metrics: &all,
    });
    let mut text = Text::default();
    for (i, family) in HISTOGRAMS.iter().enumerate() {
        histogram(&mut text, family, &sets, i);
    }
    requests_by_status(&mut text, &sets);
    refusals_by_code(&mut text, &sets);
    for family in &COUNTERS {
        counter(&mut text, family, &sets);
    }
    let labels = answered.first().map_or(&[][..], |s| &s.source_labels[..]);
    if !labels.is_empty() {
        by_source(&mut text, &sets, labels);
    }
    for family in &CORE_FAMILIES {
        core_family(&mut text, family, &answered);
    }
    spool_disk(&mut text, &answered);
    for family in &ROUTE_FAMILIES {
        route_family(&mut text, family, &answered);
    }
    if let Some(first) = answered.first().filter(|s| s.tls_cert.is_some()) {
        tls(&mut text, &sets, first);
    }
    let uptime = answered.iter().map(|s| s.uptime).max().unwrap_or_default();
    text.family(
        "hookwire_uptime_seconds",
        "gauge",
        "Seconds since the cores started.",
    );
    text.sample("hookwire_uptime_seconds", &[], uptime.as_secs_f64());
    text.out
}

/// Buckets (cumulative, [`BUCKETS`] then `+Inf`), sum and count of the
/// `i`th histogram of each set.
fn histogram(text: &mut Text, family: &Histogram, sets: &[Labelled], i: usize) {
    let name = family.name;
    text.family(name, "histogram", family.help);
    let (bucket, sum, count) = (
        format!("{name}_bucket"),
        format!("{name}_sum"),
        format!("{name}_count"),
    );
    for set in sets {
        let h = set.metrics.histograms()[i].1;
        let core = set.core.as_str();
        for le in BUCKETS {
            let bound = le.as_secs_f64().to_string();
            text.sample(&bucket, &[("core", core), ("le", &bound)], h.count_le(le));
        }
        text.sample(&bucket, &[("core", core), ("le", "+Inf")], h.h.len());
        text.sample(&sum, &[("core", core)], h.sum_ns as f64 / 1e9);
        text.sample(&count, &[("core", core)], h.h.len());
    }
}

fn requests_by_status(text: &mut Text, sets: &[Labelled]) {
    let name = "hookwire_requests_total";
    text.family(name, "counter", "Responses sent, by status.");
    for set in sets {
        for (status, n) in STATUSES.iter().zip(set.metrics.counters.requests) {
            let status = status.code().to_string();
            text.sample(name, &[("core", &set.core), ("status", &status)], n);
        }
    }
}

fn refusals_by_code(text: &mut Text, sets: &[Labelled]) {
    let name = "hookwire_refusals_total";
    text.family(name, "counter", "Requests refused, by error code.");
    for set in sets {
        for (code, n) in Counters::refusal_codes().zip(set.metrics.counters.refusals) {
            text.sample(name, &[("core", &set.core), ("code", code)], n);
        }
    }
}

/// Per `[[source]]` (and `-`): events accepted, refusals by code (the
/// codes any core has counted for some source), challenges answered.
fn by_source(text: &mut Text, sets: &[Labelled], labels: &[String]) {
    let all = &sets
        .last()
        .expect("the merged set")
        .metrics
        .counters
        .sources;
    let codes: Vec<(usize, &str)> = Counters::refusal_codes()
        .enumerate()
        .filter(|(i, _)| all.iter().any(|s| s.refusals[*i] > 0))
        .collect();
    let families: [(&str, &str); 3] = [
        (
            "hookwire_source_accepted_total",
            "Events accepted, by [[source]] (\"-\": services no source matches).",
        ),
        (
            "hookwire_source_refusals_total",
            "Requests refused, by [[source]] and error code.",
        ),
        (
            "hookwire_source_challenges_total",
            "Subscription challenges answered, by [[source]].",
        ),
    ];
    for (f, (name, help)) in families.iter().enumerate() {
        text.family(name, "counter", help);
        for set in sets {
            for (label, counts) in labels.iter().zip(&set.metrics.counters.sources) {
                let base = [("core", set.core.as_str()), ("source", label.as_str())];
                match f {
                    0 => text.sample(name, &base, counts.accepted),
                    1 => {
                        for &(i, code) in &codes {
                            let labels = [base[0], base[1], ("code", code)];
                            text.sample(name, &labels, counts.refusals[i]);
                        }
                    }
                    _ => text.sample(name, &base, counts.challenges),
                }
            }
        }
    }
}

/// HTTPS: handshakes, their failures by reason, connections by TLS path,
/// and the certificate's days to expiry.
fn tls(text: &mut Text, sets: &[Labelled], first: &CoreSnapshot) {
    let name = "hookwire_tls_handshakes_total";
    text.family(name, "counter", "TLS handshakes completed.");
    for set in sets {
        text.sample(
            name,
            &[("core", &set.core)],
            set.metrics.counters.tls.handshakes,
        );
    }
    let name = "hookwire_tls_handshake_failures_total";
    text.family(name, "counter", "TLS handshakes failed, by reason (plain_http: plain HTTP sent to the HTTPS port; timeout: not done within --request-timeout).");
    for set in sets {
        for (reason, n) in Failure::ALL.iter().zip(set.metrics.counters.tls.failures) {
            text.sample(name, &[("core", &set.core), ("reason", reason.as_str())], n);
        }
    }
    let name = "hookwire_tls_connections_total";
    text.family(name, "counter", "HTTPS connections after their handshake, by where the records are encrypted: ktls (the kernel) or user_space (rustls, where the kernel lacks TLS).");
    for set in sets {
        let tls = &set.metrics.counters.tls;
        for (path, n) in [("ktls", tls.ktls), ("user_space", tls.user_space)] {
            text.sample(name, &[("core", &set.core), ("path", path)], n);
        }
    }
    let name = "hookwire_tls_cert_expiry_days";
    text.family(
        name,
        "gauge",
        "Days until the served certificate (--tls-cert) expires; /ready is 503 below 7.",
    );
    if let Some((path, not_after)) = &first.tls_cert {
        let days = (not_after - crate::tls::certs::now_secs()) as f64 / 86_400.0;
        text.sample(name, &[("cert", path)], format!("{days:.3}"));
    }
}

fn counter(text: &mut Text, family: &Counter, sets: &[Labelled]) {
    text.family(family.name, "counter", family.help);
    for set in sets {
        let value = (family.value)(&set.metrics.counters);
        text.sample(family.name, &[("core", &set.core)], value);
    }
}

/// The spool's filesystem: one series each, the same for every core.
fn spool_disk(text: &mut Text, answered: &[&CoreSnapshot]) {
    let disk = DiskState::merged(answered.iter().copied());
    let families: [(&str, &str, Option<u64>); 4] = [
        (
            "hookwire_spool_disk_free_bytes",
            "Free bytes on the spool's filesystem (statvfs, as an unprivileged writer sees it).",
            disk.free,
        ),
        (
            "hookwire_spool_disk_size_bytes",
            "Size of the spool's filesystem in bytes.",
            disk.size,
        ),
        (
            "hookwire_spool_min_free_bytes",
            "--spool-min-free in bytes: below it, events that need the spool get 503 spool_full.",
            (!answered.is_empty()).then_some(disk.min_free),
        ),
        (
            "hookwire_spool_disk_full",
            "1 while spool writes fail for want of space (ENOSPC), until the filesystem has room again.",
            Some(u64::from(disk.no_space)),
        ),
    ];
    for (name, help, value) in families {
        text.family(name, "gauge", help);
        if let Some(value) = value {
            text.sample(name, &[], value);
        }
    }
}

fn core_family(text: &mut Text, family: &CoreFamily, answered: &[&CoreSnapshot]) {
    let name = family.name;
    text.family(name, family.kind, family.help);
    for s in answered {
        let core = s.core.to_string();
        text.sample(name, &[("core", &core)], (family.value)(s));
    }
    let all: u64 = answered.iter().map(|s| (family.value)(s)).sum();
    text.sample(name, &[("core", "all")], all);
}

/// Each route (the same on every core): per core, then merged.
fn route_family(text: &mut Text, family: &RouteFamily, answered: &[&CoreSnapshot]) {
    let name = family.name;
    text.family(name, family.kind, family.help);
    let Some(first) = answered.first() else {
        return;
    };
    for (r, spec) in first.routes.iter().enumerate() {
        let route = spec.pattern.as_str();
        let mut total = None;
        for s in answered {
            let v = (family.value)(&s.routes[r]);
            total = Some(total.map_or(v, |t| (family.merge)(t, v)));
            let core = s.core.to_string();
            text.sample(name, &[("core", &core), ("route", route)], v);
        }
        let total = total.unwrap_or(0);
        text.sample(name, &[("core", "all"), ("route", route)], total);
    }
}

/// The exposition being written.
#[derive(Default)]
struct Text {
    out: String,
}

impl Text {
    /// A family's `# HELP` and `# TYPE` lines, before its samples.
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }

    /// One sample line: `name{label="value",…} value`, label values escaped.
    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl Display) {
        self.out.push_str(name);
        for (i, (label, v)) in labels.iter().enumerate() {
            self.out.push(if i == 0 { '{' } else { ',' });
            self.out.push_str(label);
            self.out.push_str("=\"");
            for c in v.chars() {
                match c {
                    '\\' => self.out.push_str("\\\\"),
                    '"' => self.out.push_str("\\\""),
                    '\n' => self.out.push_str("\\n"),
                    c => self.out.push(c),
                }
            }
            self.out.push('"');
        }
        if !labels.is_empty() {
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {value}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_families_follow_the_metrics_order() {
        let metrics = Metrics::default();
        for (family, (name, _)) in HISTOGRAMS.iter().zip(metrics.histograms()) {
            assert_eq!(family.name, format!("hookwire_{name}_duration_seconds"));
        }
    }
}
