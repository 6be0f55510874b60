//! One core's state and the request handler: everything a request touches
//! after it has been read, owned by one executor and reused across requests.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;

use crate::config::Settings;
use crate::envelope::{self, Uid};
use crate::fanout::{Fanout, Refused};
use crate::http::request::Method;
use crate::http::response::{self, DateCache, Persist};
use crate::http::Status;
use crate::id::{self, IdGen, MsText, WallClock};
use crate::ingest::route::{self, Path};
use crate::ingest::{self, Ingest, Refusal, Request};
use crate::metrics::Metrics;
use crate::spool::CoreSpool;

const NO_ROUTE: Refusal = Refusal {
    status: Status::ServiceUnavailable,
    code: "no_route",
    message: "no route matches this event's key; add --push or a --route whose glob matches it",
    at: None,
};
pub const SPOOL_FULL: Refusal = Refusal {
    status: Status::ServiceUnavailable,
    code: "spool_full",
    message: "the event could not be stored: consumers are not taking events and the spool is full (--spool-max-bytes); retry later",
    at: None,
};
pub const SPOOL_ERROR: Refusal = Refusal {
    status: Status::ServiceUnavailable,
    code: "spool_error",
    message: "the event could not be stored: writing the spool failed (disk full or failing; see hookwire's log); retry later",
    at: None,
};
const METHOD_NOT_ALLOWED: Refusal = Refusal {
    status: Status::MethodNotAllowed,
    code: "method_not_allowed",
    message: "use GET or POST for events (HEAD and OPTIONS are answered too)",
    at: None,
};

/// 503s tell the sender when to retry.
pub fn retry_after(refusal: &Refusal) -> &'static [u8] {
    if refusal.status == Status::ServiceUnavailable {
        b"Retry-After: 1\r\n"
    } else {
        b""
    }
}

const PROBE_BODY: &[u8] = b"{\"status\":\"ok\",\"service\":\"hookwire\"}";
const ALLOW: &[u8] = b"Allow: GET, POST, HEAD, OPTIONS\r\n";

/// One core's reused state.
pub struct Shard {
    pub core: usize,
    settings: Arc<Settings>,
    ids: IdGen,
    wall: WallClock,
    time_text: MsText,
    date: DateCache,
    ingest: Ingest,
    key: Vec<u8>,
    body: Vec<u8>,
    headers: Vec<u8>,
    pub fanout: Fanout,
    pub metrics: Metrics,
    clock: quanta::Clock,
}

impl std::fmt::Debug for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shard").field("core", &self.core).finish()
    }
}

impl Shard {
    pub fn new(
        core: usize,
        settings: Arc<Settings>,
        spool: Rc<RefCell<CoreSpool>>,
    ) -> Result<Self, zmq::Error> {
        Ok(Self {
            core,
            ids: IdGen::new(id::worker_id(settings.node_id, core)),
            wall: WallClock::default(),
            time_text: MsText::default(),
            date: DateCache::default(),
            ingest: Ingest::default(),
            key: Vec::with_capacity(160),
            body: Vec::with_capacity(256),
            headers: Vec::with_capacity(256),
            fanout: Fanout::new(core, &settings, spool)?,
            metrics: Metrics::default(),
            clock: quanta::Clock::new(),
            settings,
        })
    }

    /// Core 0's state outside the server, for benchmarks and tests that
    /// drive [`crate::conn::Conn::process`] directly: its spool is
    /// recovered on a short-lived executor (the retry and flush tasks do
    /// not run, so events must go straight to ZeroMQ).
    pub fn standalone(settings: Arc<Settings>) -> Result<Self, Box<dyn std::error::Error>> {
        let usage = crate::spool::SpoolUsage::new(1);
        let config = crate::spool::SpoolConfig::for_core(&settings, 0, usage);
        let spool = glommio::LocalExecutor::default().run(CoreSpool::recover(&config))?;
        let mut shard = Self::new(0, settings, Rc::new(RefCell::new(spool)))?;
        // Wait for the consumers, so the first events do not spool.
        let start = std::time::Instant::now();
        while shard.fanout.status().iter().any(|r| r.connected == 0)
            && start.elapsed() < std::time::Duration::from_secs(10)
        {
            std::thread::sleep(std::time::Duration::from_millis(5));
            shard.fanout.tick();
        }
        Ok(shard)
    }

    /// Accepted mode: hands the events of this executor cycle to ZeroMQ
    /// (or the spool); the hand-off histogram gets each event's share of
    /// the batch's time. Run by the core's flusher task, and by benchmarks
    /// and tests that drive [`crate::conn::Conn::process`] directly.
    pub fn flush_outbox(&mut self) {
        let start = self.clock.raw();
        let n = self.fanout.flush_outbox();
        if n > 0 {
            let each = self.clock.delta(start, self.clock.raw()) / n as u32;
            self.metrics.handoff.record_n(each, n as u64);
            self.metrics.counters.handoffs += 1;
        }
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Unix milliseconds at the TSC reading `raw`, with the Date header's
    /// cache brought up to them.
    fn stamp(&mut self, raw: u64) -> u64 {
        let now = self.wall.ms(&self.clock, raw);
        self.date.update(now);
        now
    }

    /// [`Self::stamp`] at a fresh reading: for responses written without
    /// decoding an event.
    fn stamp_now(&mut self) {
        self.stamp(self.clock.raw());
    }

    /// Answers one complete request, appending the response to `out`.
    /// Returns the spool ticket its 200 depends on, if any: the response
    /// may only be written once the ticket is stored.
    pub fn handle(
        &mut self,
        req: &Request<'_>,
        persist: Persist,
        out: &mut Vec<u8>,
    ) -> Option<u64> {
        let method = req.head.method();
        let target = match method {
            Method::Options => {
                self.preflight(req, persist, out);
                return None;
            }
            Method::Other => {
                self.refuse(&METHOD_NOT_ALLOWED, ALLOW, persist, true, out);
                return None;
            }
            _ => route::parse(req.buf, &req.head.path),
        };
        let target = match target {
            Err(refusal) => {
                self.refuse(&refusal, b"", persist, method != Method::Head, out);
                return None;
            }
            Ok(Path::Root) if method == Method::Post => {
                self.refuse(&ingest::MISSING_SERVICE, b"", persist, true, out);
                return None;
            }
            Ok(Path::Event(target)) if method == Method::Head => {
                // Checked as its GET would be (name, projectId, uid…), so
                // a HEAD that GET would refuse gets the same status; no
                // event either way.
                match self.ingest.prepare(req, target).map(|_| ()) {
                    Ok(()) => self.probe(persist, false, out),
                    Err(refusal) => self.refuse(&refusal, b"", persist, false, out),
                }
                return None;
            }
            Ok(Path::Root) => {
                self.probe(persist, method != Method::Head, out);
                return None;
            }
            Ok(Path::Event(target)) => target,
        };
        match self.accept(req, target, out, persist) {
            Ok(ticket) => ticket,
            Err(refusal) => {
                self.refuse(&refusal, retry_after(&refusal), persist, true, out);
                None
            }
        }
    }

    /// Decodes, encodes and hands over one event, then writes the 200.
    fn accept(
        &mut self,
        req: &Request<'_>,
        target: route::Target,
        out: &mut Vec<u8>,
        persist: Persist,
    ) -> Result<Option<u64>, Refusal> {
        let decode = self.clock.raw();
        let fields = self.ingest.prepare(req, target);
        let decoded = self.clock.raw();
        self.metrics.decode.record_raw(&self.clock, decode, decoded);
        let fields = fields?;
        // The event's time (and the Date header's) from the reading taken
        // before decoding: the request is complete by then.
        let now = self.stamp(decode);

        // The key holds the service and name the envelope borrows.
        self.key.clear();
        // Both validated to [A-Za-z0-9_-] by `prepare`.
        let service = self.ingest.bytes(req, &fields.service);
        let name = self.ingest.bytes(req, &fields.name);
        let (service_len, name_len) = (service.len(), name.len());
        envelope::write_key(&mut self.key, service, name);
        let mut uid_digits = [0u8; 22];
        let uid_len = match &fields.uid {
            Some(t) => {
                let given = self.ingest.bytes(req, t);
                uid_digits[..given.len()].copy_from_slice(given);
                given.len()
            }
            None => 0,
        };

        debug_assert!(self.key.is_ascii());
        // SAFETY: `in.gen.`, `.` and a service and name that `prepare`
        // validated to [A-Za-z0-9_-]: ASCII.
        let key = unsafe { std::str::from_utf8_unchecked(&self.key) };
        let routes = self.fanout.admit(key).map_err(|r| match r {
            Refused::NoRoute => NO_ROUTE,
            Refused::SpoolFull => SPOOL_FULL,
        })?;

        let uid = match uid_len {
            0 => Uid::Generated(self.ids.next(now)),
            n => Uid::Given(std::str::from_utf8(&uid_digits[..n]).expect("digits")),
        };
        let id = self.ids.next(now);
        let mut id_text = itoa::Buffer::new();
        let id_text = id_text.format(id);
        let head = envelope::Head {
            service: &key[7..7 + service_len],
            name: &key[8 + service_len..8 + service_len + name_len],
            project_id: fields.project_id,
            uid,
            id: id_text,
            time: self.time_text.get(id::time_of(id)),
        };
        let td = ingest::transport(req, &self.settings.trusted_proxies);
        let ingest = &mut self.ingest;
        let staging = self.fanout.staging();
        let start = staging.len();
        envelope::encode(staging, &head, &td, |o| ingest.write_data(o, req, &fields));
        let handoff = self.clock.raw();
        let ticket = Some(self.fanout.send(&routes, &self.key, start));
        if self.settings.durable {
            // Accepted mode records it in `flush_outbox`.
            self.metrics
                .handoff
                .record_raw(&self.clock, handoff, self.clock.raw());
        }
        self.metrics.counters.events_accepted += 1;

        self.body.clear();
        response::accepted_body(&mut self.body, &self.key, id_text);
        self.metrics.counters.response(Status::Ok);
        response::write(out, &self.date, Status::Ok, persist, b"", &self.body, true);
        Ok(ticket)
    }

    /// Writes a JSON error response (without its body for a HEAD request).
    pub fn refuse(
        &mut self,
        refusal: &Refusal,
        extra: &[u8],
        persist: Persist,
        send_body: bool,
        out: &mut Vec<u8>,
    ) {
        self.stamp_now();
        self.metrics.counters.response(refusal.status);
        self.metrics.counters.refusal(refusal.code);
        if refusal.status == Status::ServiceUnavailable {
            self.metrics.counters.events_refused += 1;
        }
        self.body.clear();
        response::error_body(&mut self.body, refusal.code, refusal.message, refusal.at);
        response::write(
            out,
            &self.date,
            refusal.status,
            persist,
            extra,
            &self.body,
            send_body,
        );
    }

    fn probe(&mut self, persist: Persist, send_body: bool, out: &mut Vec<u8>) {
        self.stamp_now();
        self.metrics.counters.response(Status::Ok);
        response::write(
            out,
            &self.date,
            Status::Ok,
            persist,
            b"",
            PROBE_BODY,
            send_body,
        );
    }

    /// CORS preflight: any origin may POST events.
    fn preflight(&mut self, req: &Request<'_>, persist: Persist, out: &mut Vec<u8>) {
        self.stamp_now();
        self.metrics.counters.response(Status::NoContent);
        self.headers.clear();
        self.headers.extend_from_slice(
            b"Access-Control-Allow-Methods: GET, POST, HEAD, OPTIONS\r\nAccess-Control-Max-Age: 86400\r\nAccess-Control-Allow-Headers: ",
        );
        match &req.head.request_headers {
            Some(span) => self
                .headers
                .extend_from_slice(crate::http::request::at(req.buf, span)),
            None => self.headers.extend_from_slice(b"Content-Type"),
        }
        self.headers.extend_from_slice(b"\r\n");
        self.headers.extend_from_slice(ALLOW);
        response::write(
            out,
            &self.date,
            Status::NoContent,
            persist,
            &self.headers,
            b"",
            false,
        );
    }
}
