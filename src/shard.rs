//! One core's state and the request handler: everything a request touches
//! after it has been read, owned by one executor and reused across requests.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;

use crate::config::Settings;
use crate::event::envelope::{self, Transport, Uid};
use crate::event::id::{self, IdGen, MsText, WallClock};
use crate::event::RoutingKey;
use crate::fanout::{Fanout, Refused};
use crate::http::coding::Decoder;
use crate::http::request::{Method, Request};
use crate::http::response::{self, DateCache, Persist};
use crate::http::{client_ip, Status};
use crate::ingest::route::{self, Path};
use crate::ingest::Ingest;
use crate::metrics::Metrics;
use crate::reject::{Refusal, ALLOW};
use crate::spool::{CoreSpool, Tickets};

const PROBE_BODY: &[u8] = b"{\"status\":\"ok\",\"service\":\"hookwire\"}";

/// One core's reused state.
pub struct Shard {
    pub core: usize,
    settings: Arc<Settings>,
    ids: IdGen,
    wall: WallClock,
    time_text: MsText,
    date: DateCache,
    ingest: Ingest,
    /// Decodes compressed bodies before [`Shard::handle`] sees them (the
    /// connection takes it for the call).
    pub decoder: Decoder,
    key: RoutingKey,
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
            decoder: Decoder::default(),
            key: RoutingKey::with_capacity(160),
            body: Vec::with_capacity(256),
            headers: Vec::with_capacity(256),
            fanout: Fanout::new(core, &settings, spool)?,
            metrics: Metrics::default(),
            clock: quanta::Clock::new(),
            settings,
        })
    }

    /// Accepted mode: hands the events of this executor cycle to ZeroMQ
    /// (or the spool); the hand-off histogram gets each event's share of
    /// the batch's time. Run by the core's flusher task, and by benchmarks
    /// and tests that drive a connection directly ([`crate::testing`]).
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

    /// The spool's tickets, which 200s that wait for a spool write wait on.
    pub fn tickets(&self) -> Rc<Tickets> {
        self.fanout.spool.borrow().tickets.clone()
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
                self.refuse(Refusal::MethodNotAllowed, persist, true, out);
                return None;
            }
            _ => route::parse(req.buf, &req.head.path),
        };
        let target = match target {
            Err(refusal) => {
                self.refuse(refusal, persist, method != Method::Head, out);
                return None;
            }
            Ok(Path::Root) if method == Method::Post => {
                self.refuse(Refusal::MissingService, persist, true, out);
                return None;
            }
            Ok(Path::Event(target)) if method == Method::Head => {
                // Checked as its GET would be (name, projectId, uid…), so
                // a HEAD that GET would refuse gets the same status; no
                // event either way.
                match self.ingest.prepare(req, target).map(|_| ()) {
                    Ok(()) => self.probe(persist, false, out),
                    Err(refusal) => self.refuse(refusal, persist, false, out),
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
                self.refuse(refusal, persist, true, out);
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

        // The key holds the service and name the envelope borrows; both
        // validated to [A-Za-z0-9_-] by `prepare`.
        let service = self.ingest.bytes(req, &fields.service);
        let name = self.ingest.bytes(req, &fields.name);
        self.key.set(service, name);
        let mut uid_digits = [0u8; 22];
        let uid_len = match &fields.uid {
            Some(t) => {
                let given = self.ingest.bytes(req, t);
                uid_digits[..given.len()].copy_from_slice(given);
                given.len()
            }
            None => 0,
        };

        let routes = self.fanout.admit(self.key.as_str()).map_err(|r| match r {
            Refused::NoRoute => Refusal::NoRoute,
            Refused::SpoolFull => Refusal::SpoolFull,
        })?;

        let uid = match uid_len {
            0 => Uid::Generated(self.ids.next(now)),
            n => Uid::Given(std::str::from_utf8(&uid_digits[..n]).expect("digits")),
        };
        let id = self.ids.next(now);
        let mut id_text = itoa::Buffer::new();
        let id_text = id_text.format(id);
        let head = envelope::Head {
            key: &self.key,
            project_id: fields.project_id,
            uid,
            id: id_text,
            time: self.time_text.get(id::time_of(id)),
        };
        let client = client_ip::resolve(req, &self.settings.trusted_proxies);
        let td = Transport::of(req, client);
        let ingest = &mut self.ingest;
        let staging = self.fanout.staging();
        let start = staging.len();
        envelope::encode(staging, &head, &td, |o| ingest.write_data(o, req, &fields));
        let handoff = self.clock.raw();
        let ticket = Some(self.fanout.send(&routes, self.key.as_bytes(), start));
        if self.settings.durable {
            // Accepted mode records it in `flush_outbox`.
            self.metrics
                .handoff
                .record_raw(&self.clock, handoff, self.clock.raw());
        }
        self.metrics.counters.events_accepted += 1;

        self.body.clear();
        response::accepted_body(&mut self.body, self.key.as_bytes(), id_text);
        self.metrics.counters.response(Status::Ok);
        response::write(out, &self.date, Status::Ok, persist, b"", &self.body, true);
        Ok(ticket)
    }

    /// Writes a JSON error response (without its body for a HEAD request).
    pub fn refuse(
        &mut self,
        refusal: Refusal,
        persist: Persist,
        send_body: bool,
        out: &mut Vec<u8>,
    ) {
        self.stamp_now();
        let status = refusal.status();
        self.metrics.counters.response(status);
        self.metrics.counters.refusal(refusal.code());
        if status == Status::ServiceUnavailable {
            self.metrics.counters.events_refused += 1;
        }
        self.body.clear();
        let code = refusal.code().as_str();
        response::error_body(&mut self.body, code, refusal.message(), refusal.at());
        let extra = refusal.headers();
        response::write(
            out, &self.date, status, persist, extra, &self.body, send_body,
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
