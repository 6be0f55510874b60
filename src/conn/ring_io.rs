//! A connection's I/O loop on the core's io_uring data path ([`Ring`]):
//! receive → [`Conn::feed`] (parsed in the ring's buffer) or
//! [`Conn::process`] (a request that spans receives, in the connection's
//! own buffer) → wait for spool tickets → queue the responses' send →
//! receive again. As [`super::io`] does, with the registry keeping the
//! timeouts; the send is waited for only before the next one, or before
//! the connection closes.

use std::cell::RefCell;
use std::mem::ManuallyDrop;
use std::os::fd::{FromRawFd, RawFd};
use std::rc::Rc;
use std::time::Instant;

use super::budget::Budget;
use super::registry::Registry;
use super::ring::{Ring, Rx};
use super::{Conn, Step};
use crate::config::Settings;
use crate::http::Error;
use crate::shard::Shard;
use crate::spool::Tickets;

/// Serves one accepted connection until it closes; `fd` is the
/// connection's, closed through the ring once it is done.
pub async fn serve(
    fd: RawFd,
    ring: Rc<Ring>,
    shard: Rc<RefCell<Shard>>,
    registry: Rc<Registry>,
    budget: Rc<Budget>,
    settings: std::sync::Arc<Settings>,
) {
    let key = ring.open(fd);
    // SAFETY: `fd` is a connected socket, owned by the ring's slot; the
    // std stream is only borrowed to read the peer's address.
    let peer = ManuallyDrop::new(unsafe { std::net::TcpStream::from_raw_fd(fd) }).peer_addr();
    let Ok(peer) = peer else {
        // Reset by the peer before it was served: closed all the same, so
        // that accepted = open + closed.
        shard.borrow_mut().metrics.counters.connections_closed += 1;
        ring.close(key);
        return;
    };
    let tickets = shard.borrow().tickets();
    let mut session = Session {
        registered: Registered {
            key: registry.register(fd),
            registry,
            shard: shard.clone(),
        },
        conn: Conn::lazy(peer.ip(), &settings, budget.clone()),
        ring,
        key,
        budget,
        tickets,
        shard,
        first_byte: None,
        last_active: Instant::now(),
    };
    session.run(&settings).await;
}

/// One connection being served.
struct Session {
    /// First, so the registry entry goes before the descriptor closes.
    registered: Registered,
    ring: Rc<Ring>,
    /// The connection's slot in the ring.
    key: usize,
    conn: Conn,
    budget: Rc<Budget>,
    shard: Rc<RefCell<Shard>>,
    tickets: Rc<Tickets>,
    /// When the first byte of the request now at the head of the buffer
    /// was read: starts its timeout and its latency measurement.
    first_byte: Option<Instant>,
    /// The last read or write: the idle timeout runs from it.
    last_active: Instant,
}

/// What a receive brought.
struct Read {
    rx: Rx,
    at: Instant,
    /// The connection timed out as these bytes came: they are served, then
    /// the connection closes.
    last: bool,
}

impl Session {
    async fn run(&mut self, settings: &Settings) {
        loop {
            let Some(read) = self.read(settings).await else {
                self.flush(settings).await;
                return;
            };
            let last = read.last;
            let at = read.at;
            let Some(step) = self.answer(read, settings).await else {
                return;
            };
            if last {
                if self.conn.pending() && matches!(step, Step::More { .. }) {
                    // The rest of a request that can no longer be read.
                    self.time_out(settings).await;
                }
                self.flush(settings).await;
                return;
            }
            match step {
                Step::Close { .. } | Step::Done { .. } => {
                    self.flush(settings).await;
                    return;
                }
                Step::More { completed } => {
                    if !self.conn.pending() {
                        self.first_byte = None;
                    } else if completed > 0 {
                        self.first_byte = Some(at);
                    }
                }
            }
        }
    }

    /// Waits for the next receive until the connection's deadline (the
    /// core's sweep ends the wait of a connection past it). `None`: the
    /// connection ends (closed, failed, drained, or timed out; a late
    /// request got its 408).
    async fn read(&mut self, settings: &Settings) -> Option<Read> {
        let idle = !self.conn.pending();
        let registry = &self.registered.registry;
        if idle && registry.draining.get() {
            return None;
        }
        let deadline = match self.first_byte {
            Some(t) => t + settings.request_timeout,
            None => self.last_active + settings.idle_timeout,
        };
        let mut own = false;
        let rx = loop {
            // The connection's own buffer takes the bytes of a request that
            // spans receives, or of a receive that found the ring dry.
            if own || self.conn.pending() {
                // Room for a receive that has come already, as for one
                // still to come: appended, it is held to the budget too.
                let need = self.ring.queued(self.key).unwrap_or(1);
                while let Err(need) = self.conn.room_for(need) {
                    if !self.wait_for_budget(need, deadline).await {
                        self.time_out(settings).await;
                        return None;
                    }
                }
            }
            let (at, len) = match own || self.conn.pending() {
                true => {
                    let spare = self.conn.spare();
                    (spare.as_mut_ptr(), spare.len())
                }
                false => (std::ptr::null_mut(), 0),
            };
            let registry = &self.registered.registry;
            registry.waiting(self.registered.key, idle, deadline);
            // SAFETY: `at..at + len` is the connection's spare buffer, not
            // touched until the receive completes; if this future is
            // dropped first, Drop leaks the buffer.
            match unsafe { self.ring.recv(self.key, self.conn.pending(), at, len) }.await {
                Rx::Dry => own = true,
                rx => break rx,
            }
        };
        // Once the sweep has timed the connection out its reads are shut:
        // what this receive brought is the last it gets.
        let mut last = false;
        let data = matches!(rx, Rx::Buf { .. } | Rx::Own(_));
        if self.registered.registry.busy(self.registered.key) {
            if data && idle {
                // The next request arrived as the idle time ran out: it is
                // served, then the connection closes.
                last = true;
            } else {
                // A request that was late gets a 408; a connection that
                // sent nothing closes quietly.
                if let Rx::Buf { bid, .. } = rx {
                    self.ring.recycle(bid);
                }
                if self.conn.pending() || data {
                    self.time_out(settings).await;
                }
                return None;
            }
        }
        let at = Instant::now();
        self.last_active = at;
        match rx {
            Rx::End(_) | Rx::Dry => None,
            rx => Some(Read { rx, at, last }),
        }
    }

    /// Answers the complete requests received, waits for the spool writes
    /// their 200s depend on, and queues every response in one send.
    /// `None`: a send failed.
    async fn answer(&mut self, read: Read, settings: &Settings) -> Option<Step> {
        self.conn.closing = self.registered.registry.draining.get();
        let first = *self.first_byte.get_or_insert(read.at);
        let mut step = self.take(read.rx);
        // What else has arrived is answered with it, as one read of all of
        // it would: one wait for tickets, one send.
        while let (Step::More { completed }, false) = (step, read.last) {
            // A request spanning receives goes on through `read`, which
            // holds its bytes to the budget; answers past MAX_OUT wait.
            if self.conn.pending() || self.conn.held_back() {
                break;
            }
            let Some(rx) = self.ring.next_buffer(self.key) else {
                break;
            };
            step = match self.take(rx) {
                Step::More { completed: c } => Step::More {
                    completed: completed + c,
                },
                Step::Done { completed: c } => Step::Done {
                    completed: completed + c,
                },
                Step::Close { completed: c } => Step::Close {
                    completed: completed + c,
                },
            };
        }
        let mut first = Some(first);
        loop {
            self.conn.settled(&self.shard, &self.tickets).await;
            if self.conn.out.is_empty() {
                return Some(step);
            }
            if !self.send(settings).await {
                return None;
            }
            let written = Instant::now();
            self.last_active = written;
            let mut shard = self.shard.borrow_mut();
            let (Step::More { completed } | Step::Done { completed } | Step::Close { completed }) =
                step;
            if completed > 0 {
                let first = first.take().unwrap_or(read.at);
                shard
                    .metrics
                    .record_answered(written, first, read.at, completed);
            }
            if !(self.conn.held_back() && matches!(step, Step::More { .. })) {
                return Some(step);
            }
            // Requests of this read left for want of room in `out`, now
            // that it is on its way.
            step = self.conn.process(&mut shard);
        }
    }

    /// Answers the requests completed by what `rx` brought.
    fn take(&mut self, rx: Rx) -> Step {
        let mut shard = self.shard.borrow_mut();
        match rx {
            Rx::Buf { bid, len } => {
                shard.metrics.counters.bytes_in += len as u64;
                // SAFETY: the buffer is this receive's, recycled below
                // once its requests are answered.
                let data = unsafe { self.ring.buffer(bid, len) };
                let step = if self.conn.pending() {
                    self.conn.append(data);
                    self.conn.process(&mut shard)
                } else {
                    self.conn.feed(&mut shard, data)
                };
                self.ring.recycle(bid);
                step
            }
            Rx::Own(n) => {
                shard.metrics.counters.bytes_in += n as u64;
                self.conn.filled(n);
                self.conn.process(&mut shard)
            }
            Rx::End(_) | Rx::Dry => unreachable!("no bytes to answer"),
        }
    }

    /// Queues `out` to be sent, after the previous send is done (a
    /// connection's response buffer is the kernel's until its completion);
    /// `false` if that one failed.
    async fn send(&mut self, settings: &Settings) -> bool {
        if !self.sent(settings).await {
            return false;
        }
        self.shard.borrow_mut().metrics.counters.bytes_out += self.conn.out.len() as u64;
        self.ring.send(self.key, &mut self.conn.out);
        true
    }

    /// Waits for the send in flight, if any, within the idle timeout (the
    /// sweep shuts a connection whose peer does not read).
    async fn sent(&mut self, settings: &Settings) -> bool {
        if !self.ring.sending(self.key) {
            return self.ring.sent(self.key).await;
        }
        let registry = &self.registered.registry;
        registry.writing(self.registered.key, Instant::now() + settings.idle_timeout);
        let ok = self.ring.sent(self.key).await;
        self.registered.registry.busy(self.registered.key);
        ok
    }

    /// Before the connection closes: its last response is sent.
    async fn flush(&mut self, settings: &Settings) {
        self.sent(settings).await;
    }

    /// Waits until the budget has `need` bytes left: `false` if the
    /// deadline comes first.
    async fn wait_for_budget(&self, need: usize, deadline: Instant) -> bool {
        super::before(deadline, self.budget.wait(need))
            .await
            .is_some()
    }

    /// Answers a request that did not arrive in time with its 408; it
    /// counts as answered (latency from its first byte).
    async fn time_out(&mut self, settings: &Settings) {
        self.conn
            .fail(&mut self.shard.borrow_mut(), Error::Timeout, 0);
        self.send(settings).await;
        let now = Instant::now();
        self.shard
            .borrow_mut()
            .metrics
            .request
            .record(now - self.first_byte.unwrap_or(now));
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        if self.ring.receiving_own(self.key) {
            // Dropped mid-receive (the executor ends): the kernel may still
            // write into the buffer, so it is never freed.
            std::mem::forget(std::mem::take(&mut self.conn.buf));
        }
        self.ring.close(self.key);
    }
}

/// A connection's entry in its core's registry, removed when it ends.
struct Registered {
    key: usize,
    registry: Rc<Registry>,
    shard: Rc<RefCell<Shard>>,
}

impl Drop for Registered {
    fn drop(&mut self) {
        self.registry.unregister(self.key);
        self.shard.borrow_mut().metrics.counters.connections_closed += 1;
    }
}
