//! One core's state and the request handler: everything a request touches
//! after it has been read, owned by one executor and reused across requests.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;

use crate::config::Settings;
use crate::event::envelope::{self, Channel, Copied, Transport, Uid};
use crate::event::id::{self, IdGen, MsText, WallClock};
use crate::event::RoutingKey;
use crate::fanout::{Fanout, Refused};
use crate::http::coding::Decoder;
use crate::http::request::{at, header, Method, Request};
use crate::http::response::{self, Common, DateCache, Persist, ANY_ORIGIN};
use crate::http::{client_ip, Status};
use crate::ingest::route::{self, Path};
use crate::ingest::Ingest;
use crate::metrics::{Metrics, SourceCounts};
use crate::reject::{Refusal, ALLOW};
use crate::source::browser::{self, Cookie, Macros};
use crate::source::challenge::{self, Answer};
use crate::source::{verify, Reply, Source, TokenAt, Verify};
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
    /// A challenge's answer, a decoded query token.
    scratch: Vec<u8>,
    /// This request's CORS headers: `*` unless its source lists origins.
    cors: Vec<u8>,
    /// This request is an image pixel: its refusals get the GIF too.
    pixel: bool,
    /// A click's target, its macros filled in.
    location: Vec<u8>,
    /// The uid cookie of services without a source.
    cookie: Cookie,
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
        let mut metrics = Metrics::default();
        let slots = settings.sources.labels().len();
        metrics.counters.sources = vec![SourceCounts::default(); slots];
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
            scratch: Vec::new(),
            cors: ANY_ORIGIN.to_vec(),
            pixel: false,
            location: Vec::new(),
            cookie: Cookie::default(),
            fanout: Fanout::new(core, &settings, spool)?,
            metrics,
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

    /// The Date and CORS headers of this request's responses.
    fn common(&self) -> Common<'_> {
        Common {
            date: &self.date,
            cors: &self.cors,
        }
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
        let ticket = self.respond(req, persist, out);
        if self.pixel || self.cors[..] != *ANY_ORIGIN {
            self.browser_done();
        }
        ticket
    }

    /// Back to a request that is no pixel and has `*` CORS: what answers
    /// outside [`Self::handle`] (framing errors, spool failures) assume.
    #[cold]
    fn browser_done(&mut self) {
        self.pixel = false;
        self.cors.clear();
        self.cors.extend_from_slice(ANY_ORIGIN);
    }

    fn respond(&mut self, req: &Request<'_>, persist: Persist, out: &mut Vec<u8>) -> Option<u64> {
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
            _ => {
                let (path, pixel) = route::strip_gif(req.buf, &req.head.path);
                self.pixel = pixel && method != Method::Post;
                route::parse(req.buf, &path)
            }
        };
        let target = match target {
            Err(refusal) => {
                self.refuse(refusal, persist, method != Method::Head, out);
                return None;
            }
            Ok(Path::Root) if method == Method::Post || self.pixel => {
                self.refuse(
                    Refusal::MissingService,
                    persist,
                    method != Method::Head,
                    out,
                );
                return None;
            }
            Ok(Path::Root) => {
                self.probe(persist, method != Method::Head, out);
                return None;
            }
            Ok(Path::Event(target)) => target,
        };
        // The source's slot in the per-source counters, with sources.
        let slot = match self.settings.sources.is_empty() {
            true => None,
            false => Some(self.gate(req, &target, persist, out)?),
        };
        if method == Method::Head {
            // Checked as its GET would be (name, projectId, uid…), so a
            // HEAD that GET would refuse gets the same status; no event
            // either way.
            match self.ingest.prepare(req, target).map(|_| ()) {
                Ok(()) if self.pixel => {
                    self.metrics.counters.response(Status::Ok);
                    response::gif(out, self.common(), persist, b"", false);
                }
                Ok(()) => self.probe(persist, false, out),
                Err(refusal) => self.refuse(refusal, persist, false, out),
            }
            return None;
        }
        let accepted = match slot {
            None => self.accept(req, target, None, out, persist),
            Some(slot) => self.accept_from(req, target, slot, out, persist),
        };
        match accepted {
            Ok(ticket) => ticket,
            Err(refusal) => {
                self.refuse_in(slot, refusal, persist, true, out);
                None
            }
        }
    }

    /// The checks of the service's `[[source]]`: strict mode, allowed
    /// addresses, a subscription challenge, the signature. Returns the
    /// source's slot (the last for a service no source matches), or `None`
    /// when the request has been answered (refused, or a challenge).
    #[inline(never)]
    fn gate(
        &mut self,
        req: &Request<'_>,
        target: &route::Target,
        persist: Persist,
        out: &mut Vec<u8>,
    ) -> Option<usize> {
        let settings = self.settings.clone();
        let sources = &settings.sources;
        let send_body = req.head.method() != Method::Head;
        let Some(slot) = sources.find(at(req.buf, &target.service)) else {
            let unmatched = Some(sources.list.len());
            if sources.strict {
                self.refuse_in(unmatched, Refusal::UnknownService, persist, send_body, out);
                return None;
            }
            return unmatched;
        };
        let source = &sources.list[slot];
        if source.client_ca.is_some() && !req.client_cert.trusted_by(slot) {
            let refusal = match req.client_cert.presented {
                true => Refusal::UntrustedClientCert,
                false => Refusal::MissingClientCert,
            };
            self.refuse_in(Some(slot), refusal, persist, send_body, out);
            return None;
        }
        self.browser_of(req, source);
        if !source.allow.is_empty() {
            let ip = client_ip::resolve(req, &settings.trusted_proxies, settings.client_ip).ip;
            if !source.allow.iter().any(|net| net.contains(&ip)) {
                let refusal = Refusal::ForbiddenAddress;
                self.refuse_in(Some(slot), refusal, persist, send_body, out);
                return None;
            }
        }
        if let Some(answer) = challenge::unsigned(source, req, &mut self.scratch) {
            self.answer(slot, answer, persist, out);
            return None;
        }
        let query = req.head.query.as_ref();
        if source.verify.signs_body() && query.is_some_and(|q| !q.is_empty()) {
            self.refuse_in(Some(slot), Refusal::UnsignedQuery, persist, send_body, out);
            return None;
        }
        let now = self.stamp(self.clock.raw()) / 1000;
        if let Err(refusal) = verify::check(source, req, now, &mut self.scratch) {
            self.refuse_in(Some(slot), refusal, persist, send_body, out);
            return None;
        }
        if let Some(answer) = challenge::signed(source, req, &mut self.scratch) {
            self.answer(slot, answer, persist, out);
            return None;
        }
        Some(slot)
    }

    /// What a source says of a browser's request: a `reply = "gif"`
    /// source answers GETs as a pixel; one with `cors-origins` echoes a
    /// listed origin with credentials, and no other.
    fn browser_of(&mut self, req: &Request<'_>, source: &Source) {
        let method = req.head.method();
        if source.reply == Reply::Gif && matches!(method, Method::Get | Method::Head) {
            self.pixel = true;
        }
        if !source.cors_origins.is_empty() {
            self.cors.clear();
            let origin = req.head.origin.as_ref().map(|o| at(req.buf, o));
            browser::cors(origin, &source.cors_origins, &mut self.cors);
        }
    }

    /// [`Self::accept`] for a request whose service has a source: a
    /// token in the query is blanked out of a copy of the head first (to
    /// `&`s, which decode to nothing), so it never reaches `data`.
    #[inline(never)]
    fn accept_from(
        &mut self,
        req: &Request<'_>,
        target: route::Target,
        slot: usize,
        out: &mut Vec<u8>,
        persist: Persist,
    ) -> Result<Option<u64>, Refusal> {
        let settings = self.settings.clone();
        let token = match &settings.sources.list.get(slot).map(|s| &s.verify) {
            Some(Verify::Token(TokenAt::Param(name))) => name.as_bytes(),
            _ => return self.accept(req, target, Some(slot), out, persist),
        };
        let (Some(query), mut head) = (&req.head.query, std::mem::take(&mut self.scratch)) else {
            return self.accept(req, target, Some(slot), out, persist);
        };
        head.clear();
        head.extend_from_slice(req.buf);
        blank(&mut head[query.start as usize..query.end as usize], token);
        let masked = Request { buf: &head, ..*req };
        let accepted = self.accept(&masked, target, Some(slot), out, persist);
        self.scratch = head;
        accepted
    }

    /// Writes the `text:` reply of the source in `slot` if it has one
    /// (`true`).
    #[inline(never)]
    fn text_reply(&mut self, slot: usize, persist: Persist, out: &mut Vec<u8>) -> bool {
        let Some(Reply::Text(text)) = self.settings.sources.list.get(slot).map(|s| &s.reply) else {
            return false;
        };
        let body = text.as_bytes();
        let common = self.common();
        response::write_as(
            out,
            common,
            Status::Ok,
            persist,
            response::TEXT,
            &self.headers,
            body,
        );
        true
    }

    /// Answers a subscription challenge with what it wrote to `scratch`.
    #[inline(never)]
    fn answer(
        &mut self,
        slot: usize,
        answer: Result<Answer, Refusal>,
        persist: Persist,
        out: &mut Vec<u8>,
    ) {
        let content_type = match answer {
            Ok(Answer::Text) => response::TEXT,
            Ok(Answer::Json) => &b"application/json"[..],
            Err(refusal) => return self.refuse_in(Some(slot), refusal, persist, true, out),
        };
        self.stamp_now();
        self.metrics.counters.response(Status::Ok);
        self.metrics.counters.sources[slot].challenges += 1;
        response::write_as(
            out,
            self.common(),
            Status::Ok,
            persist,
            content_type,
            b"",
            &self.scratch,
        );
    }

    /// [`Self::refuse`], counted for the source in `slot` too.
    #[inline(never)]
    fn refuse_in(
        &mut self,
        slot: Option<usize>,
        refusal: Refusal,
        persist: Persist,
        send_body: bool,
        out: &mut Vec<u8>,
    ) {
        if let Some(slot) = slot {
            self.metrics.counters.sources[slot].refusals[refusal.code().index()] += 1;
        }
        self.refuse(refusal, persist, send_body, out);
    }

    /// Decodes, encodes and hands over one event, then writes the 200 (a
    /// pixel's GIF, a click's 302).
    fn accept(
        &mut self,
        req: &Request<'_>,
        target: route::Target,
        slot: Option<usize>,
        out: &mut Vec<u8>,
        persist: Persist,
    ) -> Result<Option<u64>, Refusal> {
        // The last slot is the services no source matches.
        let settings = slot.map(|_| self.settings.clone());
        let source = settings
            .as_ref()
            .zip(slot)
            .and_then(|(s, i)| s.sources.list.get(i));
        let cookie_name = source.map_or("uid", |s| &s.cookie.name);
        let decode = self.clock.raw();
        let fields = self
            .ingest
            .prepare_with(req, target, cookie_name.as_bytes());
        let decoded = self.clock.raw();
        self.metrics.decode.record_raw(&self.clock, decode, decoded);
        let fields = fields?;
        // The event's time (and the Date header's) from the reading taken
        // before decoding: the request is complete by then.
        let now = self.stamp(decode);

        let channel = match source {
            _ if self.pixel => Channel::Pixel,
            Some(s) if !s.redirect_allow.is_empty() && req.head.method() == Method::Get => {
                match self.ingest.param(&fields, "to") {
                    Some(to) => {
                        browser::check_target(to, &s.redirect_allow)
                            .map_err(|why| Refusal::RedirectNotAllowed { why })?;
                        Channel::Redirect
                    }
                    None => Channel::Http,
                }
            }
            _ => Channel::Http,
        };

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

        let mut uid_text = itoa::Buffer::new();
        let uid = match uid_len {
            0 => Uid::Generated(self.ids.next(now)),
            n => Uid::Given(std::str::from_utf8(&uid_digits[..n]).expect("digits")),
        };
        let uid_str = match uid {
            Uid::Given(digits) => digits,
            Uid::Generated(id) => uid_text.format(id),
        };
        let id = self.ids.next(now);
        let mut id_text = itoa::Buffer::new();
        let id_text = id_text.format(id);
        let head = envelope::Head {
            key: &self.key,
            channel,
            project_id: fields.project_id,
            uid,
            id: id_text,
            time: self.time_text.get(id::time_of(id)),
        };
        let client =
            client_ip::resolve(req, &self.settings.trusted_proxies, self.settings.client_ip);
        let mut td = Transport::of(req, client);
        if let Some(source) = source {
            from_source(&mut td, req, source);
        }
        // A browser's request without a uid is given one to keep.
        self.headers.clear();
        if matches!(uid, Uid::Generated(_))
            && (channel != Channel::Http || req.head.origin.is_some())
        {
            let cookie = source.map_or(&self.cookie, |s| &s.cookie);
            cookie.write(uid_str.as_bytes(), &mut self.headers);
        }
        if channel == Channel::Redirect {
            let ingest = &self.ingest;
            let macros = Macros {
                id: id_text,
                uid: uid_str,
                param: |name: &str| ingest.param(&fields, name),
            };
            let to = ingest.param(&fields, "to").unwrap_or_default();
            self.location.clear();
            browser::fill(to, &macros, &mut self.location);
            self.headers.extend_from_slice(b"Location: ");
            self.headers.extend_from_slice(&self.location);
            self.headers.extend_from_slice(b"\r\n");
        }
        let ingest = &mut self.ingest;
        let staging = self.fanout.staging();
        let start = staging.len();
        envelope::encode(staging, &head, &td, |o| ingest.write_data(o, req, &fields));
        let handoff = self.clock.raw();
        let ticket = Some(
            self.fanout
                .send(&routes, self.key.as_bytes(), start, id::time_of(id)),
        );
        if self.settings.durable {
            // Accepted mode records it in `flush_outbox`.
            self.metrics
                .handoff
                .record_raw(&self.clock, handoff, self.clock.raw());
        }
        self.metrics.counters.events_accepted += 1;
        if let Some(slot) = slot {
            self.metrics.counters.sources[slot].accepted += 1;
        }
        match channel {
            Channel::Pixel => {
                self.metrics.counters.response(Status::Ok);
                response::gif(out, self.common(), persist, &self.headers, true);
            }
            Channel::Redirect => {
                self.metrics.counters.response(Status::Found);
                response::redirect(out, self.common(), persist, &self.headers);
            }
            Channel::Http => {
                self.metrics.counters.response(Status::Ok);
                if slot.is_some_and(|slot| self.text_reply(slot, persist, out)) {
                    return Ok(ticket);
                }
                self.body.clear();
                response::accepted_body(&mut self.body, self.key.as_bytes(), id_text);
                let common = self.common();
                let extra = &self.headers;
                response::write(out, common, Status::Ok, persist, extra, &self.body, true);
            }
        }
        Ok(ticket)
    }

    /// Writes a JSON error response (without its body for a HEAD request);
    /// a pixel's refusal is the GIF, its code in `X-Hookwire-Error`.
    pub fn refuse(
        &mut self,
        refusal: Refusal,
        persist: Persist,
        send_body: bool,
        out: &mut Vec<u8>,
    ) {
        self.stamp_now();
        let status = refusal.status();
        self.metrics.counters.refusal(refusal.code());
        if status == Status::ServiceUnavailable {
            self.metrics.counters.events_refused += 1;
        }
        let code = refusal.code().as_str();
        if self.pixel {
            self.metrics.counters.response(Status::Ok);
            self.headers.clear();
            self.headers.extend_from_slice(b"X-Hookwire-Error: ");
            self.headers.extend_from_slice(code.as_bytes());
            self.headers.extend_from_slice(b"\r\n");
            response::gif(out, self.common(), persist, &self.headers, send_body);
            return;
        }
        self.metrics.counters.response(status);
        self.body.clear();
        response::error_body(&mut self.body, code, refusal.message(), refusal.at());
        let extra = refusal.headers();
        response::write(
            out,
            self.common(),
            status,
            persist,
            extra,
            &self.body,
            send_body,
        );
    }

    /// [`Self::refuse`] of a request answered earlier: a pixel's (`gif`)
    /// is refused with the GIF.
    pub fn refuse_later(
        &mut self,
        refusal: Refusal,
        persist: Persist,
        gif: bool,
        out: &mut Vec<u8>,
    ) {
        self.pixel = gif;
        self.refuse(refusal, persist, true, out);
        self.pixel = false;
    }

    fn probe(&mut self, persist: Persist, send_body: bool, out: &mut Vec<u8>) {
        self.stamp_now();
        self.metrics.counters.response(Status::Ok);
        response::write(
            out,
            self.common(),
            Status::Ok,
            persist,
            b"",
            PROBE_BODY,
            send_body,
        );
    }

    /// CORS preflight: any origin may send events, unless the path's
    /// source lists origins (then only those, with credentials).
    fn preflight(&mut self, req: &Request<'_>, persist: Persist, out: &mut Vec<u8>) {
        self.stamp_now();
        self.metrics.counters.response(Status::NoContent);
        let allowed = self.preflight_cors(req);
        self.headers.clear();
        if allowed {
            self.headers.extend_from_slice(
                b"Access-Control-Allow-Methods: GET, POST, HEAD, OPTIONS\r\nAccess-Control-Max-Age: 86400\r\nAccess-Control-Allow-Headers: ",
            );
            match &req.head.request_headers {
                Some(span) => self.headers.extend_from_slice(at(req.buf, span)),
                None => self.headers.extend_from_slice(b"Content-Type"),
            }
            self.headers.extend_from_slice(b"\r\n");
        }
        self.headers.extend_from_slice(ALLOW);
        response::write(
            out,
            self.common(),
            Status::NoContent,
            persist,
            &self.headers,
            b"",
            false,
        );
    }

    /// The CORS headers of a preflight to the path's source; `false` when
    /// the source lists origins and this one is not among them.
    fn preflight_cors(&mut self, req: &Request<'_>) -> bool {
        if self.settings.sources.is_empty() {
            return true;
        }
        let settings = self.settings.clone();
        let (path, _) = route::strip_gif(req.buf, &req.head.path);
        let Ok(Path::Event(target)) = route::parse(req.buf, &path) else {
            return true;
        };
        let Some(slot) = settings.sources.find(at(req.buf, &target.service)) else {
            return true;
        };
        let source = &settings.sources.list[slot];
        if source.cors_origins.is_empty() {
            return true;
        }
        self.cors.clear();
        let origin = req.head.origin.as_ref().map(|o| at(req.buf, o));
        browser::cors(origin, &source.cors_origins, &mut self.cors)
    }
}

/// A source's additions to `td`: the sender's delivery id and the headers
/// it copies.
#[inline(never)]
fn from_source<'a>(td: &mut Transport<'a>, req: &Request<'a>, source: &'a Source) {
    td.delivery = (source.delivery.iter()).find_map(|h| header(req.buf, h.as_bytes()));
    td.copied = Copied {
        head: req.buf,
        names: &source.headers,
    };
}

/// Overwrites with `&` every `name=…` (and `name[…]=…`) pair of a query
/// string: empty pairs, which the query decoder skips.
fn blank(query: &mut [u8], name: &[u8]) {
    let mut start = 0;
    while start < query.len() {
        let end = memchr::memchr(b'&', &query[start..]).map_or(query.len(), |p| start + p);
        let pair = &query[start..end];
        let key = &pair[..memchr::memchr(b'=', pair).unwrap_or(pair.len())];
        let top = &key[..memchr::memchr(b'[', key).unwrap_or(key.len())];
        if top == name {
            query[start..end].fill(b'&');
        }
        start = end + 1;
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn blanking_leaves_empty_pairs() {
        let mut q = b"a=1&secure=t0k&secure[]=x&secured=2&b".to_vec();
        super::blank(&mut q, b"secure");
        let mut want = b"a=1".to_vec();
        want.resize(3 + 23, b'&');
        want.extend_from_slice(b"secured=2&b");
        assert_eq!(q, want);
    }
}
