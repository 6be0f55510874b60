//! One connection: a reused read buffer, pipelining, keep-alive, timeouts
//! and write batching.
//!
//! [`Conn::process`] is sans-IO: it answers every complete request in the
//! buffer (in order, responses appended to one output buffer) and says
//! whether to read more or close. [`serve`] drives it: read → process →
//! one write of all responses → read again.

use std::cell::RefCell;
use std::net::IpAddr;
use std::os::fd::AsRawFd;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::TcpStream;

use crate::config::Settings;
use crate::http::request::{self, Framing};
use crate::http::response::Persist;
use crate::http::{chunked, Error};
use crate::ingest::{Refusal, Request};
use crate::server::CoreState;
use crate::shard::Shard;
use crate::spool::{Flushed, Tickets};

/// Starting (and resting) size of a connection's read buffer.
const INITIAL: usize = 16 * 1024;
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

/// A connection's buffers and per-request state.
#[derive(Debug)]
pub struct Conn {
    buf: Vec<u8>,
    start: usize,
    end: usize,
    /// Responses waiting to be written, in request order.
    pub out: Vec<u8>,
    /// 200s in `out` that may only be written once their spool ticket is
    /// stored: (start, end, ticket, persist).
    pub waits: Vec<(usize, usize, u64, Persist)>,
    /// Bytes the request at `start` needs in all, when known.
    want: usize,
    /// The head of the request at `start`, while its body is arriving.
    head: Option<request::Head>,
    /// How far its chunked body has been walked.
    chunks: chunked::Progress,
    continued: bool,
    peer: IpAddr,
    /// The core is draining: the last request in the buffer is answered
    /// with `Connection: close`, and the connection ends after it.
    pub closing: bool,
    max_header: usize,
    max_body: usize,
    max_wire: usize,
}

impl Conn {
    pub fn new(peer: IpAddr, settings: &Settings) -> Self {
        Self {
            buf: vec![0; INITIAL],
            start: 0,
            end: 0,
            out: Vec::with_capacity(4096),
            waits: Vec::new(),
            want: 0,
            head: None,
            chunks: chunked::Progress::default(),
            continued: false,
            peer,
            closing: false,
            max_header: settings.max_header,
            max_body: settings.max_body,
            // A chunked body carries size lines on top of its data: room
            // for a full body in chunks of 8 bytes or more, or a third of
            // one in 1-byte chunks (5 bytes of framing each).
            max_wire: settings.max_header + settings.max_body * 2 + 4096,
        }
    }

    /// Whether part of a request is waiting for more bytes.
    pub fn pending(&self) -> bool {
        self.start < self.end
    }

    /// The free space to read into, made room for first.
    pub fn spare(&mut self) -> &mut [u8] {
        if self.start > 0 && (self.end == self.buf.len() || self.want > self.buf.len() - self.start)
        {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        let need = self.want.max(self.end + 1).min(self.max_wire);
        if need > self.buf.len() {
            let grown = (self.buf.len() * 2).max(need).min(self.max_wire);
            self.buf.resize(grown, 0);
        }
        &mut self.buf[self.end..]
    }

    /// Records `n` bytes read into [`Conn::spare`].
    pub fn filled(&mut self, n: usize) {
        self.end += n;
    }

    /// Appends bytes as if they had been read (tests and benches).
    pub fn feed(&mut self, bytes: &[u8]) {
        let mut rest = bytes;
        while !rest.is_empty() {
            let spare = self.spare();
            let n = spare.len().min(rest.len());
            assert!(n > 0, "feed beyond the connection's buffer limit");
            spare[..n].copy_from_slice(&rest[..n]);
            self.filled(n);
            rest = &rest[n..];
        }
    }

    /// Answers every complete request in the buffer.
    pub fn process(&mut self, shard: &mut Shard) -> Step {
        let mut completed = 0;
        loop {
            if self.head.is_none() {
                // Empty lines before a request line are ignored (RFC 9112
                // §2.2; some senders end a body with an extra CRLF): they
                // neither start a request nor its timeout.
                let blank = self.buf[self.start..self.end]
                    .iter()
                    .take_while(|&&b| b == b'\r' || b == b'\n')
                    .count();
                self.start += blank;
            }
            if self.start == self.end {
                self.start = 0;
                self.end = 0;
                if self.buf.len() > 4 * INITIAL {
                    self.buf.truncate(INITIAL);
                    self.buf.shrink_to_fit();
                }
                return Step::More { completed };
            }
            let pending = &mut self.buf[self.start..self.end];
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
            let (body, total) = match framing {
                Framing::None => (head.len..head.len, head.len),
                Framing::Length(n) => {
                    if n > self.max_body as u64 {
                        return self.fail(shard, Error::BodyTooLarge, completed);
                    }
                    let total = head.len + n as usize;
                    if pending.len() < total {
                        self.want = total;
                        self.expect_continue(&head);
                        self.head = Some(head);
                        return Step::More { completed };
                    }
                    (head.len..total, total)
                }
                Framing::Chunked => {
                    let body = &pending[head.len..];
                    match chunked::measure(body, &mut self.chunks, self.max_body, self.max_header) {
                        Err(e) => return self.fail(shard, e, completed),
                        Ok(None) => {
                            // The data so far is within --max-body (measure
                            // checks it); what outgrew the buffer is framing.
                            if pending.len() >= self.max_wire {
                                return self.fail(shard, Error::ChunksTooSmall, completed);
                            }
                            self.want = 0;
                            self.expect_continue(&head);
                            self.head = Some(head);
                            return Step::More { completed };
                        }
                        Ok(Some(m)) => {
                            chunked::decode_in_place(&mut pending[head.len..], m);
                            (head.len..head.len + m.body, head.len + m.wire)
                        }
                    }
                }
            };
            // While draining, requests pipelined behind this one are
            // still answered; the last one read says the connection closes.
            let last_while_draining = self.closing && total == pending.len();
            let persist = match (head.keep_alive, head.minor) {
                (false, _) => Persist::Close,
                _ if last_while_draining => Persist::Close,
                // HTTP/1.0 has no chunked framing (RFC 9112 §6.1): the
                // body is read, then the connection closes, keep-alive
                // or not.
                (true, 0) if framing == Framing::Chunked => Persist::Close,
                (true, 0) => Persist::KeepAlive,
                (true, _) => Persist::Default,
            };
            let req = Request {
                buf: &pending[..head.len],
                head: &head,
                body: &pending[body],
                peer: self.peer,
            };
            let at = self.out.len();
            if let Some(ticket) = shard.handle(&req, persist, &mut self.out) {
                self.waits.push((at, self.out.len(), ticket, persist));
            }
            completed += 1;
            self.start += total;
            self.want = 0;
            self.chunks = chunked::Progress::default();
            self.continued = false;
            if persist == Persist::Close {
                return Step::Done { completed };
            }
        }
    }

    /// After the spool decided every ticket in `waits`: a 200 whose event
    /// could not be written becomes a 503, so no sender is told "stored"
    /// for an event that is not.
    pub fn settle(&mut self, shard: &mut Shard, tickets: &Tickets) {
        if self
            .waits
            .iter()
            .all(|w| tickets.state(w.2) == Flushed::Stored)
        {
            self.waits.clear();
            return;
        }
        let old = std::mem::take(&mut self.out);
        let mut at = 0;
        for &(start, end, ticket, persist) in &self.waits {
            if tickets.state(ticket) == Flushed::Stored {
                continue;
            }
            self.out.extend_from_slice(&old[at..start]);
            let refusal = crate::shard::SPOOL_ERROR;
            shard.refuse(
                &refusal,
                crate::shard::retry_after(&refusal),
                persist,
                true,
                &mut self.out,
            );
            at = end;
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
        let (status, code, message) = error.describe();
        let refusal = Refusal {
            status,
            code,
            message,
            at: None,
        };
        shard.refuse(&refusal, b"", Persist::Close, true, &mut self.out);
        self.start = self.end;
        self.head = None;
        Step::Close {
            completed: completed + 1,
        }
    }
}

/// Serves one accepted connection until it closes.
pub async fn serve(
    stream: TcpStream,
    shard: Rc<RefCell<Shard>>,
    core: Rc<CoreState>,
    settings: Arc<Settings>,
) {
    let _ = stream.set_nodelay(true);
    let _ = stream.set_write_timeout(Some(settings.idle_timeout));
    let Ok(peer) = stream.peer_addr() else {
        // Reset by the peer before it was served: closed all the same, so
        // that accepted = open + closed.
        shard.borrow_mut().metrics.counters.connections_closed += 1;
        return;
    };
    let registered = Registered {
        key: core.register(stream.as_raw_fd()),
        core,
        shard: shard.clone(),
    };
    let mut stream = stream;
    let mut conn = Conn::new(peer.ip(), &settings);
    let tickets = shard.borrow().fanout.spool.borrow().tickets.clone();
    // When the first byte of the request now at the head of the buffer
    // was read: starts its timeout and its latency measurement.
    let mut first_byte: Option<Instant> = None;
    // The last read or write: the idle timeout runs from it.
    let mut last_active = Instant::now();
    loop {
        let idle = !conn.pending();
        if idle && registered.core.draining.get() {
            return;
        }
        // The core's sweep ends the read of a connection past its deadline.
        let deadline = match first_byte {
            Some(t) => t + settings.request_timeout,
            None => last_active + settings.idle_timeout,
        };
        registered.core.waiting(registered.key, idle, deadline);
        let read = stream.read(conn.spare()).await;
        // Once the sweep has timed the connection out its reads are shut:
        // what this read brought is the last it gets.
        let mut last_round = false;
        if registered.core.busy(registered.key) {
            match read {
                // The next request arrived as the idle time ran out: it is
                // served, then the connection closes.
                Ok(n) if n > 0 && idle => last_round = true,
                // A request that was late gets a 408; a connection that
                // sent nothing closes quietly.
                _ => {
                    if conn.pending() || matches!(read, Ok(n) if n > 0) {
                        time_out(&mut stream, &mut conn, &shard, first_byte).await;
                    }
                    return;
                }
            }
        }
        let read_at = Instant::now();
        last_active = read_at;
        let n = match read {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        conn.filled(n);
        conn.closing = registered.core.draining.get();
        let first = *first_byte.get_or_insert(read_at);
        let step = {
            let mut shard = shard.borrow_mut();
            shard.metrics.counters.bytes_in += n as u64;
            conn.process(&mut shard)
        };
        if let Some(last) = conn.waits.iter().map(|w| w.2).max() {
            tickets.wait(last).await;
            conn.settle(&mut shard.borrow_mut(), &tickets);
        }
        if !conn.out.is_empty() {
            if stream.write_all(&conn.out).await.is_err() {
                return;
            }
            let written = Instant::now();
            last_active = written;
            let mut shard = shard.borrow_mut();
            let metrics = &mut shard.metrics;
            metrics.counters.bytes_out += conn.out.len() as u64;
            let (Step::More { completed } | Step::Done { completed } | Step::Close { completed }) =
                step;
            if completed > 0 {
                metrics.request.record(written - first);
                for _ in 1..completed {
                    metrics.request.record(written - read_at);
                }
            }
            conn.out.clear();
        }
        if last_round {
            if conn.pending() && matches!(step, Step::More { .. }) {
                // The rest of a request that can no longer be read.
                time_out(&mut stream, &mut conn, &shard, first_byte).await;
            }
            let _ = stream.close().await;
            return;
        }
        match step {
            Step::Close { .. } | Step::Done { .. } => {
                let _ = stream.close().await;
                return;
            }
            Step::More { completed } => {
                if !conn.pending() {
                    first_byte = None;
                } else if completed > 0 {
                    first_byte = Some(read_at);
                }
            }
        }
    }
}

/// Answers a request that did not arrive in time with its 408; it counts
/// as answered (latency from its first byte, bytes out).
async fn time_out(
    stream: &mut TcpStream,
    conn: &mut Conn,
    shard: &RefCell<Shard>,
    first_byte: Option<Instant>,
) {
    conn.fail(&mut shard.borrow_mut(), Error::Timeout, 0);
    let written = stream.write_all(&conn.out).await.is_ok();
    let now = Instant::now();
    let mut shard = shard.borrow_mut();
    if written {
        shard.metrics.counters.bytes_out += conn.out.len() as u64;
    }
    shard
        .metrics
        .request
        .record(now - first_byte.unwrap_or(now));
    conn.out.clear();
}

/// A connection's entry in its core's registry, removed when it ends.
struct Registered {
    key: usize,
    core: Rc<CoreState>,
    shard: Rc<RefCell<Shard>>,
}

impl Drop for Registered {
    fn drop(&mut self) {
        self.core.unregister(self.key);
        self.shard.borrow_mut().metrics.counters.connections_closed += 1;
    }
}
