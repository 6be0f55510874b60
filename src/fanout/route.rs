//! One route on one core: its glob, its PUSH socket, its consumers and
//! its counters; connecting it, and the non-blocking send.

use wildmatch::WildMatch;

use super::acked::Unacked;
use super::peers::Peers;
use super::resend::{Bound, Recent};
use crate::config::{Frames, RouteSpec};

/// One route of one core.
pub(super) struct Route {
    /// `None`: the catch-all `*`, which needs no matching.
    pub pattern: Option<WildMatch>,
    pub socket: zmq::Socket,
    /// Accepted mode: the latest events handed to ZeroMQ.
    pub recent: Recent,
    /// A route with acknowledgements: what its consumers have not acked.
    pub acks: Option<Unacked>,
    /// The socket's connections, and which completed the handshake.
    pub peers: Peers,
    /// SNDHWM: messages libzmq may queue per consumer (0: no limit).
    pub sndhwm: i32,
    /// Events handed to ZeroMQ for the first time (with acks: acknowledged).
    pub delivered: u64,
    /// Events handed to ZeroMQ again after a consumer disconnected (with
    /// acks: or when their ack was overdue).
    pub resent: u64,
    /// Accepted mode: events not re-sent after a disconnect because they
    /// were first sent more than `--resend-window` ago.
    pub resend_skipped: u64,
    /// Acks of ids this core does not hold (acked twice, or unknown).
    pub acks_unknown: u64,
    /// Ack tokens that were no id.
    pub acks_bad: u64,
    /// Acks dropped by the listener: this core's channel was full.
    pub acks_dropped: u64,
    pub depth: hdrhistogram::Histogram<u64>,
}

impl Route {
    /// Route `index` of core `core`: its socket, monitored, connected to
    /// the route's endpoints; a resend ring of `resend` bytes.
    pub fn connect(
        context: &zmq::Context,
        core: usize,
        index: usize,
        spec: &RouteSpec,
        sndhwm: i32,
        resend: u64,
        acks: Option<Unacked>,
    ) -> Result<Self, zmq::Error> {
        let socket = context.socket(zmq::PUSH)?;
        socket.set_immediate(true)?;
        if spec.endpoints.iter().any(|e| crate::config::needs_ipv6(e)) {
            socket.set_ipv6(true)?;
        }
        socket.set_sndhwm(sndhwm)?;
        socket.set_linger(5_000)?;
        let peers = Peers::watch(context, &socket, core, index)?;
        for endpoint in &spec.endpoints {
            socket.connect(endpoint)?;
        }
        Ok(Self {
            pattern: (!spec.pattern.bytes().all(|b| b == b'*'))
                .then(|| WildMatch::new(&spec.pattern)),
            socket,
            // Acks replace the resend ring.
            recent: Recent::new(if acks.is_some() { 0 } else { resend }),
            acks,
            peers,
            sndhwm,
            delivered: 0,
            resent: 0,
            resend_skipped: 0,
            acks_unknown: 0,
            acks_bad: 0,
            acks_dropped: 0,
            depth: hdrhistogram::Histogram::new_with_bounds(1, 1 << 40, 2).expect("valid bounds"),
        })
    }
}

/// One non-blocking send; false when ZeroMQ cannot take the event now.
#[inline]
pub(super) fn try_send(socket: &zmq::Socket, frames: Frames, key: &[u8], envelope: &[u8]) -> bool {
    send_once(socket, frames, key, envelope) || {
        // A refusal may be stale: libzmq learns what its I/O thread has read
        // from the pipe only when it processes commands, which a send does
        // at most once a millisecond. Reading ZMQ_EVENTS processes them now,
        // so a fast sender is not sent to the backlog by a queue with room.
        socket.get_events().is_ok() && send_once(socket, frames, key, envelope)
    }
}

#[inline]
fn send_once(socket: &zmq::Socket, frames: Frames, key: &[u8], envelope: &[u8]) -> bool {
    match frames {
        Frames::Json => socket.send(envelope, zmq::DONTWAIT).is_ok(),
        Frames::KeyJson => {
            if socket.send(key, zmq::DONTWAIT | zmq::SNDMORE).is_err() {
                return false;
            }
            // libzmq admits a multipart message as a whole: once its first
            // frame is queued the rest is accepted without a high-water
            // check. If the peer's pipe closes in between, libzmq drops the
            // partial message and refuses this frame: the event is then not
            // sent, and is kept and retried whole.
            socket.send(envelope, zmq::DONTWAIT).is_ok()
        }
    }
}

/// Messages a consumer's PULL socket may hold (libzmq's default RCVHWM).
const CONSUMER_RCVHWM: u64 = 1_000;

impl Route {
    /// What `consumers` that disconnected, whose kernel queues could hold
    /// `queues` bytes, may not have processed ([`bound`]).
    pub fn bound(&self, consumers: u64, queues: u64, now_ms: u64, window_ms: u64) -> Bound {
        bound(self.sndhwm, consumers, queues, now_ms, window_ms)
    }
}

/// What `consumers` that disconnected, whose kernel queues could hold
/// `queues` bytes, may not have processed: libzmq's messages on both
/// sides (with SNDHWM 0, no limit, the window alone bounds them), then
/// the queues' bytes.
pub(super) fn bound(
    sndhwm: i32,
    consumers: u64,
    queues: u64,
    now_ms: u64,
    window_ms: u64,
) -> Bound {
    let messages = match sndhwm {
        0 => u64::MAX,
        n => consumers * (n as u64 + CONSUMER_RCVHWM),
    };
    Bound {
        now_ms,
        window_ms,
        messages,
        bytes: queues,
    }
}

/// The id of an envelope (its `"id"` member, the last but one: `data`
/// comes before it, so the last match is the envelope's own).
pub(super) fn envelope_id(envelope: &[u8]) -> Option<u64> {
    const TAG: &[u8] = b"\"id\":\"";
    let at = envelope.windows(TAG.len()).rposition(|w| w == TAG)? + TAG.len();
    let digits = &envelope[at..];
    let end = digits.iter().position(|&b| b == b'"')?;
    std::str::from_utf8(&digits[..end]).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_envelope_id_is_the_last_id_member() {
        let e = br#"{"key":"in.gen.a.b","data":{"id":"1"},"id":"7532420803820785665","time":1}"#;
        assert_eq!(super::envelope_id(e), Some(7532420803820785665));
        assert_eq!(super::envelope_id(b"{}"), None);
    }
}
