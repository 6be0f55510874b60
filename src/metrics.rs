//! Per-core latency histograms (hdrhistogram) and counters, recorded on the
//! hot path without locks, allocation or cross-core traffic, and merged only
//! when the admin endpoint asks (see [`crate::admin`]).

use std::time::Duration;

use hdrhistogram::Histogram;

use crate::http::Status;
use crate::reject::Code;
use crate::tls::TlsCounts;

/// Statuses in the order of [`Counters::requests`].
pub const STATUSES: [Status; 13] = [
    Status::Ok,
    Status::NoContent,
    Status::BadRequest,
    Status::NotFound,
    Status::MethodNotAllowed,
    Status::RequestTimeout,
    Status::PayloadTooLarge,
    Status::UnsupportedMediaType,
    Status::HeadersTooLarge,
    Status::ServiceUnavailable,
    Status::Unauthorized,
    Status::Forbidden,
    Status::Found,
];

/// Upper bounds of the Prometheus histogram buckets, 10 µs to 10 s.
pub const BUCKETS: [Duration; 19] = [
    Duration::from_micros(10),
    Duration::from_micros(25),
    Duration::from_micros(50),
    Duration::from_micros(100),
    Duration::from_micros(250),
    Duration::from_micros(500),
    Duration::from_millis(1),
    Duration::from_micros(2500),
    Duration::from_millis(5),
    Duration::from_millis(10),
    Duration::from_millis(25),
    Duration::from_millis(50),
    Duration::from_millis(100),
    Duration::from_millis(250),
    Duration::from_millis(500),
    Duration::from_secs(1),
    Duration::from_micros(2_500_000),
    Duration::from_secs(5),
    Duration::from_secs(10),
];

/// A latency histogram in nanoseconds with its exact sum.
#[derive(Debug, Clone)]
pub struct Hist {
    pub h: Histogram<u64>,
    pub sum_ns: u64,
}

impl Default for Hist {
    fn default() -> Self {
        Self {
            // 1 ns .. 60 s at 2 significant digits (1% resolution).
            h: Histogram::new_with_bounds(1, 60_000_000_000, 2).expect("valid bounds"),
            sum_ns: 0,
        }
    }
}

impl Hist {
    #[inline]
    pub fn record(&mut self, d: Duration) {
        let ns = d.as_nanos().min(u128::from(u64::MAX)) as u64;
        self.h.saturating_record(ns.max(1));
        self.sum_ns = self.sum_ns.saturating_add(ns);
    }

    /// Records `n` samples of `d` at once.
    pub fn record_n(&mut self, d: Duration, n: u64) {
        let ns = d.as_nanos().min(u128::from(u64::MAX)) as u64;
        self.h.saturating_record_n(ns.max(1), n);
        self.sum_ns = self.sum_ns.saturating_add(ns.saturating_mul(n));
    }

    /// Records the time between two raw readings of `clock` (the TSC:
    /// half the cost of `Instant::now` on the machines measured).
    #[inline]
    pub fn record_raw(&mut self, clock: &quanta::Clock, start: u64, end: u64) {
        let ns = clock.delta_as_nanos(start, end);
        self.h.saturating_record(ns.max(1));
        self.sum_ns = self.sum_ns.saturating_add(ns);
    }

    pub fn merge(&mut self, other: &Hist) {
        // Same bounds on every core: adding cannot fail.
        let _ = self.h.add(&other.h);
        self.sum_ns = self.sum_ns.saturating_add(other.sum_ns);
    }

    /// Samples at or below `d`.
    pub fn count_le(&self, d: Duration) -> u64 {
        let ns = d.as_nanos() as u64;
        self.h
            .iter_recorded()
            .take_while(|v| v.value_iterated_to() <= ns)
            .map(|v| v.count_since_last_iteration())
            .sum()
    }
}

/// Per-core counters. Gauges are filled in when a snapshot is taken.
#[derive(Debug, Clone)]
pub struct Counters {
    /// Responses by status, indexed like [`STATUSES`].
    pub requests: [u64; STATUSES.len()],
    /// Refusals by code, indexed like [`Code::ALL`].
    pub refusals: [u64; Code::ALL.len()],
    pub events_accepted: u64,
    pub events_refused: u64,
    /// Accepted mode: times the core handed its outbox (one or more
    /// events) to ZeroMQ; events accepted ÷ hand-offs is the batch size.
    pub handoffs: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub connections_accepted: u64,
    pub connections_closed: u64,
    /// Connections answered 503 overloaded and closed as they were
    /// accepted (not counted in `connections_accepted`).
    pub connections_refused: u64,
    /// Per `[[source]]` (in the config's order), then one for services no
    /// source matches; empty when no source is configured.
    pub sources: Vec<SourceCounts>,
    /// HTTPS: handshakes, their failures, kernel vs user-space TLS.
    pub tls: TlsCounts,
}

// By hand: arrays longer than 32 have no derived `Default`.
impl Default for Counters {
    fn default() -> Self {
        Self {
            requests: [0; STATUSES.len()],
            refusals: [0; Code::ALL.len()],
            events_accepted: 0,
            events_refused: 0,
            handoffs: 0,
            bytes_in: 0,
            bytes_out: 0,
            connections_accepted: 0,
            connections_closed: 0,
            connections_refused: 0,
            sources: Vec::new(),
            tls: TlsCounts::default(),
        }
    }
}

/// One source's events: accepted, refused by code, challenges answered.
#[derive(Debug, Clone, Copy)]
pub struct SourceCounts {
    pub accepted: u64,
    pub refusals: [u64; Code::ALL.len()],
    pub challenges: u64,
}

impl Default for SourceCounts {
    fn default() -> Self {
        Self {
            accepted: 0,
            refusals: [0; Code::ALL.len()],
            challenges: 0,
        }
    }
}

impl SourceCounts {
    /// Events refused, whatever the code.
    pub fn refused(&self) -> u64 {
        self.refusals.iter().sum()
    }
}

impl Counters {
    #[inline]
    pub fn response(&mut self, status: Status) {
        self.requests[status.index()] += 1;
    }

    #[inline]
    pub fn refusal(&mut self, code: Code) {
        self.refusals[code.index()] += 1;
    }

    /// The refusal codes' names, in the order of [`Counters::refusals`].
    pub fn refusal_codes() -> impl Iterator<Item = &'static str> {
        Code::ALL.iter().map(|c| c.as_str())
    }

    pub fn merge(&mut self, o: &Counters) {
        for (a, b) in self.requests.iter_mut().zip(o.requests) {
            *a += b;
        }
        for (a, b) in self.refusals.iter_mut().zip(o.refusals) {
            *a += b;
        }
        self.events_accepted += o.events_accepted;
        self.events_refused += o.events_refused;
        self.handoffs += o.handoffs;
        self.bytes_in += o.bytes_in;
        self.bytes_out += o.bytes_out;
        self.connections_accepted += o.connections_accepted;
        self.connections_closed += o.connections_closed;
        self.connections_refused += o.connections_refused;
        if self.sources.len() < o.sources.len() {
            self.sources
                .resize(o.sources.len(), SourceCounts::default());
        }
        self.tls.handshakes += o.tls.handshakes;
        self.tls.ktls += o.tls.ktls;
        self.tls.user_space += o.tls.user_space;
        for (a, b) in self.tls.failures.iter_mut().zip(o.tls.failures) {
            *a += b;
        }
        for (a, b) in self.sources.iter_mut().zip(&o.sources) {
            a.accepted += b.accepted;
            a.challenges += b.challenges;
            for (x, y) in a.refusals.iter_mut().zip(b.refusals) {
                *x += y;
            }
        }
    }
}

/// One core's recordings.
#[derive(Debug, Clone, Default)]
pub struct Metrics {
    /// First byte of a request read → last byte of its response written.
    pub request: Hist,
    /// Decoding a request's body (query + body → parameters).
    pub decode: Hist,
    /// Handing one event to ZeroMQ (or the spool).
    pub handoff: Hist,
    pub counters: Counters,
}

impl Metrics {
    /// The latency of `completed` requests answered by one write at
    /// `written`: the first from `first` (its first byte), the others from
    /// the read that completed them, at `read`.
    pub fn record_answered(
        &mut self,
        written: std::time::Instant,
        first: std::time::Instant,
        read: std::time::Instant,
        completed: usize,
    ) {
        if completed > 0 {
            self.request.record(written - first);
            if completed > 1 {
                self.request.record_n(written - read, completed as u64 - 1);
            }
        }
    }

    pub fn merge(&mut self, o: &Metrics) {
        self.request.merge(&o.request);
        self.decode.merge(&o.decode);
        self.handoff.merge(&o.handoff);
        self.counters.merge(&o.counters);
    }

    pub fn histograms(&self) -> [(&'static str, &Hist); 3] {
        [
            ("request", &self.request),
            ("decode", &self.decode),
            ("handoff", &self.handoff),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hist_counts_and_merges() {
        let mut a = Hist::default();
        for us in [5, 20, 20, 700, 3000] {
            a.record(Duration::from_micros(us));
        }
        assert_eq!(a.count_le(Duration::from_micros(10)), 1);
        assert_eq!(a.count_le(Duration::from_micros(25)), 3);
        assert_eq!(a.count_le(Duration::from_millis(1)), 4);
        assert_eq!(a.count_le(Duration::from_secs(10)), 5);
        let mut b = Hist::default();
        b.record(Duration::from_secs(2));
        b.merge(&a);
        assert_eq!(b.h.len(), 6);
        assert_eq!(b.sum_ns, 2_000_000_000 + 3_745_000);
    }

    #[test]
    fn status_index_matches_the_table() {
        for (i, s) in STATUSES.iter().enumerate() {
            assert_eq!(s.index(), i);
        }
    }

    #[test]
    fn counters_by_status_and_code() {
        let mut c = Counters::default();
        c.response(Status::Ok);
        c.response(Status::ServiceUnavailable);
        c.refusal(Code::InvalidJson);
        c.refusal(Code::NoRoute);
        assert_eq!(c.requests[0], 1);
        assert_eq!(c.requests[9], 1);
        let codes: Vec<_> = Counters::refusal_codes().collect();
        assert_eq!(
            c.refusals[codes.iter().position(|x| *x == "invalid_json").unwrap()],
            1
        );
        assert_eq!(
            c.refusals[codes.iter().position(|x| *x == "no_route").unwrap()],
            1
        );
    }
}
