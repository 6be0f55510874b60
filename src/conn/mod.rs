//! One connection, sans-IO: a reused read buffer, pipelining, keep-alive
//! and write batching.
//!
//! [`Conn::process`] answers every complete request in the buffer (in
//! order, responses appended to one output buffer) and says whether to read
//! more or close. [`io::serve`] drives it: read → process → one write of
//! all responses → read again.
//!
//! The read buffer rests at [`INITIAL`] bytes and grows, doubling, only as
//! a request's bytes arrive; what a body grows it by is taken from the
//! core's [`Budget`], and given back when the buffer empties or the
//! connection ends. A connection's buffers come from the core's [`pool`]
//! and go back to it when the connection ends.

pub mod budget;
pub mod io;
pub mod pool;
pub mod registry;
pub mod ring;
pub mod ring_io;
pub mod tls;

use std::net::IpAddr;
use std::ops::Range;
use std::rc::Rc;

use budget::Budget;

use crate::config::Settings;
use crate::http::coding::{self, Bad, Coding};
use crate::http::request::{self, Framing, Method, Request};
use crate::http::response::{self, Persist};
use crate::http::{chunked, Error};
use crate::reject::Refusal;
use crate::shard::Shard;
use crate::spool::{Flushed, Tickets};

/// Starting (and resting) size of a connection's read buffer.
pub const INITIAL: usize = 16 * 1024;
/// Responses one pass holds before they are written: a sender that
/// pipelines many requests and reads slowly holds at most this much
/// besides its read buffer; the rest of its requests wait in that buffer.
pub const MAX_OUT: usize = 64 * 1024;
const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// What the connection should do next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Read more; `completed` requests were answered in this pass.
    More { completed: usize },
    /// Write what is in `out`, then close: `completed` requests were
    /// answered, the last one asked to close the connection.
    Done { completed: usize },
    /// Write what is in `out`, then close: `completed` requests were
    /// answered, the last with an error after which the stream cannot be
    /// read on.
    Close { completed: usize },
}

/// How far the request at the buffer's start has arrived.
enum Framed {
    /// Head and body are here: the body's range and the request's length.
    Complete {
        body: Range<usize>,
        total: usize,
    },
    /// More is needed: `want` bytes in all, when known (else 0).
    Partial {
        want: usize,
    },
    Bad(Error),
}

/// What the response says about the connection.
fn persist(head: &request::Head, framing: Framing, last_while_draining: bool) -> Persist {
    match (head.keep_alive, head.minor) {
        (false, _) => Persist::Close,
        _ if last_while_draining => Persist::Close,
        // HTTP/1.0 has no chunked framing (RFC 9112 §6.1): the body is
        // read, then the connection closes, keep-alive or not.
        (true, 0) if framing == Framing::Chunked => Persist::Close,
        (true, 0) => Persist::KeepAlive,
        (true, _) => Persist::Default,
    }
}

/// A 200 in a connection's output that waits for its event's spool write.
#[derive(Debug, Clone, Copy)]
pub struct Wait {
    /// Where the response is in `Conn::out`.
    pub start: usize,
    pub end: usize,
    pub ticket: u64,
    pub persist: Persist,
}

/// A connection's buffers and per-request state.
#[derive(Debug)]
pub struct Conn {
    buf: Vec<u8>,
    start: usize,
    end: usize,
    /// Responses waiting to be written, in request order.
    pub out: Vec<u8>,
    /// 200s in `out` that may only be written once their spool ticket is
    /// stored.
    pub waits: Vec<Wait>,
    /// Bytes the request at `start` needs in all, when known.
    want: usize,
    /// The head of the request at `start`, while its body is arriving.
    head: Option<request::Head>,
    /// How far its chunked body has been walked.
    chunks: chunked::Progress,
    continued: bool,
    /// The last pass stopped at [`MAX_OUT`] with requests left in the
    /// buffer: they are answered once `out` is written, before reading.
    held_back: bool,
    peer: IpAddr,
    /// What the client's certificate proves (HTTPS), for the sources.
    pub client_cert: crate::tls::ClientCert,
    /// The core is draining: the last request in the buffer is answered
    /// with `Connection: close`, and the connection ends after it.
    pub closing: bool,
    max_header: usize,
    max_body: usize,
    max_wire: usize,
    /// The core's budget, and what of it `buf` holds (its length past
    /// [`INITIAL`]).
    budget: Rc<Budget>,
    held: usize,
}

impl Conn {
    pub fn new(peer: IpAddr, settings: &Settings, budget: Rc<Budget>) -> Self {
        Self::new_with(peer, settings, budget, pool::read_buffer())
    }

    fn new_with(peer: IpAddr, settings: &Settings, budget: Rc<Budget>, buf: Vec<u8>) -> Self {
        Self {
            buf,
            start: 0,
            end: 0,
            out: pool::out_buffer(),
            waits: pool::waits(),
            want: 0,
            head: None,
            chunks: chunked::Progress::default(),
            continued: false,
            held_back: false,
            peer,
            client_cert: crate::tls::ClientCert::NONE,
            closing: false,
            max_header: settings.max_header,
            max_body: settings.max_body,
            // A chunked body carries size lines on top of its data: room
            // for a full body in chunks of 8 bytes or more, or a third of
            // one in 1-byte chunks (5 bytes of framing each).
            max_wire: settings.max_header + settings.max_body * 2 + 4096,
            budget,
            held: 0,
        }
    }

    /// A connection of the ring path: no read buffer of its own until a
    /// request spans receives.
    pub fn lazy(peer: IpAddr, settings: &Settings, budget: Rc<Budget>) -> Self {
        Self::new_with(peer, settings, budget, Vec::new())
    }

    /// Appends received bytes (from the core's ring) to the partial
    /// request in the connection's own buffer.
    pub fn append(&mut self, data: &[u8]) {
        if self.buf.len() - self.end < data.len() && self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        if self.buf.len() - self.end < data.len() {
            self.own(self.end + data.len());
        }
        self.buf[self.end..self.end + data.len()].copy_from_slice(data);
        self.end += data.len();
    }

    /// Whether part of a request is waiting for more bytes.
    pub fn pending(&self) -> bool {
        self.start < self.end
    }

    /// Makes room to read into, before [`Conn::spare`]: moves a partial
    /// request to the buffer's start, and grows a full buffer while the
    /// request needs more. `Err(n)`: its body needs `n` more bytes than
    /// the core's budget has left; read nothing until they are.
    pub fn room(&mut self) -> Result<(), usize> {
        if self.buf.capacity() == 0 {
            self.buf = pool::read_buffer();
        }
        if self.buf.len() < INITIAL {
            self.buf.resize(INITIAL, 0);
        }
        if self.held > 0 && self.end - self.start < INITIAL && self.want <= INITIAL {
            // What is left of a large read fits the resting size.
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
            self.rest();
        }
        if self.start > 0 && (self.end == self.buf.len() || self.want > self.buf.len() - self.start)
        {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        if self.end < self.buf.len() {
            return Ok(());
        }
        self.grow()
    }

    /// [`Conn::room`] for `n` bytes at once: a receive already in the
    /// core's ring, appended whole. At the request's limit it stops
    /// growing (what is appended past it is refused with the request).
    pub fn room_for(&mut self, n: usize) -> Result<(), usize> {
        loop {
            self.room()?;
            let len = self.buf.len();
            if len - self.end >= n {
                return Ok(());
            }
            self.grow()?;
            if self.buf.len() == len {
                return Ok(());
            }
        }
    }

    /// Doubles the full buffer, up to what the request needs when its
    /// length is known (else up to the limit), so memory follows the bytes
    /// that arrived rather than those announced. A head's growth is
    /// counted but never refused.
    #[cold]
    fn grow(&mut self) -> Result<(), usize> {
        let len = self.buf.len();
        let target = if self.want > len {
            self.want
        } else {
            self.max_wire
        };
        let grown = (len * 2).min(target).min(self.max_wire);
        if grown <= len {
            return Ok(());
        }
        let n = grown - len;
        if self.head.is_none() {
            self.budget.force(n);
        } else if !self.budget.reserve(n) {
            return Err(n);
        }
        self.held += n;
        self.buf.reserve_exact(n);
        self.buf.resize(grown, 0);
        Ok(())
    }

    /// Back to the resting size, the growth given back to the budget.
    #[cold]
    #[inline(never)]
    fn rest(&mut self) {
        self.buf.truncate(INITIAL);
        self.buf.shrink_to_fit();
        self.budget.release(std::mem::take(&mut self.held));
    }

    /// The free space to read into, after [`Conn::room`].
    pub fn spare(&mut self) -> &mut [u8] {
        &mut self.buf[self.end..]
    }

    /// Records `n` bytes read into [`Conn::spare`].
    pub fn filled(&mut self, n: usize) {
        self.end += n;
    }

    /// Whether the last [`Conn::process`] left complete requests in the
    /// buffer because `out` reached [`MAX_OUT`]: write `out`, then process
    /// again without reading.
    pub fn held_back(&self) -> bool {
        self.held_back
    }

    /// Answers every complete request in the buffer, or as many as fit
    /// [`MAX_OUT`] of responses.
    pub fn process(&mut self, shard: &mut Shard) -> Step {
        let mut buf = std::mem::take(&mut self.buf);
        let step = self.run(shard, &mut buf);
        self.buf = buf;
        // An empty connection holds none of the budget.
        if self.start == self.end && self.held > 0 {
            self.rest();
        }
        step
    }

    /// Answers every complete request in `data`, received into a buffer
    /// that is not the connection's (the core's ring), parsed in place.
    /// The connection holds no partial request. What is left of an
    /// incomplete one is copied into the connection's own buffer.
    pub fn feed(&mut self, shard: &mut Shard, data: &mut [u8]) -> Step {
        debug_assert!(!self.pending());
        self.start = 0;
        self.end = data.len();
        let step = self.run(shard, data);
        let left = self.end - self.start;
        if left > 0 {
            if self.buf.len() < left {
                self.own(left);
            }
            self.buf[..left].copy_from_slice(&data[self.start..self.end]);
        }
        self.start = 0;
        self.end = left;
        step
    }

    /// Gives the connection its own buffer, for a request that spans
    /// receives (idle connections of the ring path hold none).
    #[cold]
    #[inline(never)]
    fn own(&mut self, at_least: usize) {
        if self.buf.capacity() == 0 {
            self.buf = pool::read_buffer();
        }
        let mut len = self.buf.len().max(INITIAL);
        while len < at_least {
            len *= 2;
        }
        if len > INITIAL {
            // Held past the resting size like a grown buffer: counted, as
            // the bytes are here already.
            let n = len - INITIAL.max(self.buf.len());
            self.budget.force(n);
            self.held += n;
        }
        self.buf.resize(len, 0);
    }

    /// [`Conn::process`] over `buf`, the buffer `start..end` index.
    fn run(&mut self, shard: &mut Shard, buf: &mut [u8]) -> Step {
        let mut completed = 0;
        self.held_back = false;
        loop {
            if self.head.is_none() {
                // Empty lines before a request line are ignored (RFC 9112
                // §2.2; some senders end a body with an extra CRLF): they
                // neither start a request nor its timeout.
                let blank = buf[self.start..self.end]
                    .iter()
                    .take_while(|&&b| b == b'\r' || b == b'\n')
                    .count();
                self.start += blank;
            }
            if self.start == self.end {
                self.start = 0;
                self.end = 0;
                return Step::More { completed };
            }
            let pending = &buf[self.start..self.end];
            // Spans are relative to the request's start, so a head parsed
            // on an earlier read stays valid after the buffer is compacted.
            let head = match self.head.take() {
                Some(head) => head,
                None => match request::parse(pending, self.max_header) {
                    Ok(Some(head)) => head,
                    Ok(None) => {
                        self.want = 0;
                        return Step::More { completed };
                    }
                    Err(e) => return self.fail(shard, e, completed),
                },
            };
            let framing = head.framing();
            let (body, total) = match self.framed(buf, &head, framing) {
                Framed::Complete { body, total } => (body, total),
                Framed::Partial { want } => {
                    self.want = want;
                    self.expect_continue(&head);
                    self.head = Some(head);
                    return Step::More { completed };
                }
                Framed::Bad(e) => return self.fail(shard, e, completed),
            };
            let pending = &buf[self.start..self.end];
            // While draining, requests pipelined behind this one are
            // still answered; the last one read says the connection closes.
            let last_while_draining = self.closing && total == pending.len();
            let persist = persist(&head, framing, last_while_draining);
            let req = Request {
                buf: &pending[..head.len],
                head: &head,
                body: &pending[body],
                peer: self.peer,
                client_cert: self.client_cert,
            };
            let at = self.out.len();
            let handled = match coding_of(&req).transpose() {
                None => Ok(shard.handle(&req, persist, &mut self.out)),
                Some(coding) => {
                    decode_and_handle(shard, &req, coding, self.max_body, persist, &mut self.out)
                }
            };
            let Ok(handled) = handled else {
                return self.close_with(shard, Refusal::Encoding(Bad::TooLarge), completed);
            };
            if let Some(ticket) = handled {
                self.waits.push(Wait {
                    start: at,
                    end: self.out.len(),
                    ticket,
                    persist,
                });
            }
            completed += 1;
            self.start += total;
            self.want = 0;
            self.chunks = chunked::Progress::default();
            self.continued = false;
            if persist == Persist::Close {
                return Step::Done { completed };
            }
            if self.out.len() >= MAX_OUT && self.start < self.end {
                self.held_back = true;
                return Step::More { completed };
            }
        }
    }

    /// Where the body of the request at `start` ends, once it is all
    /// here; a chunked body is decoded in place.
    #[inline(always)]
    fn framed(&mut self, buf: &mut [u8], head: &request::Head, framing: Framing) -> Framed {
        let pending = &mut buf[self.start..self.end];
        match framing {
            Framing::None => Framed::Complete {
                body: head.len..head.len,
                total: head.len,
            },
            Framing::Length(n) if n > self.max_body as u64 => Framed::Bad(Error::BodyTooLarge),
            Framing::Length(n) => {
                let total = head.len + n as usize;
                if pending.len() < total {
                    return Framed::Partial { want: total };
                }
                Framed::Complete {
                    body: head.len..total,
                    total,
                }
            }
            Framing::Chunked => {
                let body = &pending[head.len..];
                match chunked::measure(body, &mut self.chunks, self.max_body, self.max_header) {
                    Err(e) => Framed::Bad(e),
                    // The data so far is within --max-body (measure checks
                    // it); what outgrew the buffer is framing.
                    Ok(None) if pending.len() >= self.max_wire => {
                        Framed::Bad(Error::ChunksTooSmall)
                    }
                    Ok(None) => Framed::Partial { want: 0 },
                    Ok(Some(m)) => {
                        chunked::decode_in_place(&mut pending[head.len..], m);
                        Framed::Complete {
                            body: head.len..head.len + m.body,
                            total: head.len + m.wire,
                        }
                    }
                }
            }
        }
    }

    /// Waits until the spool has decided the tickets the responses in `out`
    /// depend on (if any), then [`Conn::settle`]s them.
    pub async fn settled(&mut self, shard: &std::cell::RefCell<Shard>, tickets: &Tickets) {
        if let Some(last) = self.waits.iter().map(|w| w.ticket).max() {
            tickets.wait(last).await;
            self.settle(&mut shard.borrow_mut(), tickets);
        }
    }

    /// After the spool decided every ticket in `waits`: a 200 whose event
    /// could not be written becomes a 503, so no sender is told "stored"
    /// for an event that is not.
    pub fn settle(&mut self, shard: &mut Shard, tickets: &Tickets) {
        if self
            .waits
            .iter()
            .all(|w| tickets.state(w.ticket) == Flushed::Stored)
        {
            self.waits.clear();
            return;
        }
        let old = std::mem::take(&mut self.out);
        let mut at = 0;
        for w in &self.waits {
            if tickets.state(w.ticket) == Flushed::Stored {
                continue;
            }
            self.out.extend_from_slice(&old[at..w.start]);
            let gif = response::is_gif(&old[w.start..w.end]);
            shard.refuse_later(Refusal::SpoolError, w.persist, gif, &mut self.out);
            at = w.end;
        }
        self.out.extend_from_slice(&old[at..]);
        self.waits.clear();
    }

    /// Tells a client that waits for `100 Continue` to send its body.
    fn expect_continue(&mut self, head: &request::Head) {
        if head.expect_continue && head.minor >= 1 && !self.continued {
            self.out.extend_from_slice(CONTINUE);
            self.continued = true;
        }
    }

    /// Answers a request that cannot be read and closes: after a framing
    /// error the rest of the stream cannot be trusted. `completed`: the
    /// requests answered before it in this pass.
    pub fn fail(&mut self, shard: &mut Shard, error: Error, completed: usize) -> Step {
        self.close_with(shard, Refusal::Http(error), completed)
    }

    /// Answers the request at `start` with `refusal`, and closes.
    fn close_with(&mut self, shard: &mut Shard, refusal: Refusal, completed: usize) -> Step {
        shard.refuse(refusal, Persist::Close, true, &mut self.out);
        self.start = self.end;
        self.head = None;
        Step::Close {
            completed: completed + 1,
        }
    }
}

/// The coding of a request's body, when it has one to decode (an empty
/// body has nothing to decode, whatever its header says).
#[inline(always)]
fn coding_of(req: &Request<'_>) -> Result<Option<Coding>, Bad> {
    match &req.head.content_encoding {
        None => Ok(None),
        Some(_) if req.body.is_empty() => Ok(None),
        Some(_) if req.head.content_encodings_repeated => Err(Bad::Stacked),
        Some(enc) => coding::parse(request::at(req.buf, enc)),
    }
}

/// Hands a request with a compressed body to the shard, its body decoded
/// into the core's reused buffer (used before this returns, so it is not
/// counted in the body budget), or refuses it. `Err`: the decoded body
/// passed `--max-body`; the connection closes, as for a body sent too
/// large.
#[cold]
#[inline(never)]
fn decode_and_handle(
    shard: &mut Shard,
    req: &Request<'_>,
    coding: Result<Coding, Bad>,
    max_body: usize,
    persist: Persist,
    out: &mut Vec<u8>,
) -> Result<Option<u64>, ()> {
    let send_body = req.head.method() != Method::Head;
    let coding = match coding {
        Ok(coding) => coding,
        Err(bad) => {
            shard.refuse(Refusal::Encoding(bad), persist, send_body, out);
            return Ok(None);
        }
    };
    let mut decoder = std::mem::take(&mut shard.decoder);
    let handled = match decoder.decode(coding, req.body, max_body) {
        Ok(body) => Ok(shard.handle(&Request { body, ..*req }, persist, out)),
        Err(Bad::TooLarge) => Err(()),
        Err(bad) => {
            shard.refuse(Refusal::Encoding(bad), persist, send_body, out);
            Ok(None)
        }
    };
    decoder.settle();
    shard.decoder = decoder;
    handled
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.budget.release(self.held);
        pool::give_back(
            std::mem::take(&mut self.buf),
            std::mem::take(&mut self.out),
            std::mem::take(&mut self.waits),
        );
    }
}

/// `f`'s output, or `None` if `deadline` comes first.
pub async fn before<T>(
    deadline: std::time::Instant,
    f: impl std::future::Future<Output = T>,
) -> Option<T> {
    let left = deadline.saturating_duration_since(std::time::Instant::now());
    let late = async {
        glommio::timer::sleep(left).await;
        None
    };
    futures_lite::future::or(async { Some(f.await) }, late).await
}
