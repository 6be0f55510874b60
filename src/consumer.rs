//! A consumer of hookwire's envelopes, for Rust services: binds (so that
//! several hookwire nodes connect to it) or connects a PULL socket, reads
//! one- or two-frame messages, drops repeats by id within a bounded window,
//! and acknowledges what the caller has processed on routes with
//! `--ack-endpoint`. `hookwire tap` is built on it.

use std::collections::{HashMap, HashSet, VecDeque};

/// One envelope received.
#[derive(Debug, Clone)]
pub struct Received {
    /// The envelope's id (decimal, as it is written in the envelope).
    pub id: String,
    /// The envelope, the JSON bytes as sent.
    pub envelope: Vec<u8>,
}

/// A PULL socket with its repeat filter and its ack sockets.
pub struct Consumer {
    pull: zmq::Socket,
    /// By the `--node-id` of the node that issued an id; `None`: one for all.
    acks: HashMap<Option<u16>, zmq::Socket>,
    seen: HashSet<u64>,
    order: VecDeque<u64>,
    window: usize,
    pending: Vec<u64>,
    /// Repeats dropped, and messages that were no envelope.
    pub repeats: u64,
    pub bad: u64,
    _context: zmq::Context,
}

/// Where a consumer acks: nowhere, one endpoint, or one per node.
#[derive(Debug, Clone, Default)]
pub enum AckTo {
    #[default]
    None,
    One(String),
    PerNode(Vec<(u16, String)>),
}

/// The `--node-id` of the node that issued `id`.
pub fn node_of(id: u64) -> u16 {
    ((id >> 18) & 0xf) as u16
}

impl Consumer {
    /// Binds (`bind`) or connects `endpoints`, and connects the ack
    /// sockets; `window` ids are remembered to drop repeats (0: none).
    pub fn new(
        endpoints: &[&str],
        bind: bool,
        ack: &AckTo,
        window: usize,
    ) -> Result<Self, zmq::Error> {
        let context = zmq::Context::new();
        let pull = context.socket(zmq::PULL)?;
        pull.set_linger(0)?;
        for endpoint in endpoints {
            match bind {
                true => pull.bind(endpoint)?,
                false => pull.connect(endpoint)?,
            }
        }
        let targets: Vec<(Option<u16>, &str)> = match ack {
            AckTo::None => Vec::new(),
            AckTo::One(ep) => vec![(None, ep.as_str())],
            AckTo::PerNode(list) => list.iter().map(|(n, ep)| (Some(*n), ep.as_str())).collect(),
        };
        let mut acks = HashMap::new();
        for (node, endpoint) in targets {
            let push = context.socket(zmq::PUSH)?;
            push.set_linger(5_000)?;
            push.connect(endpoint)?;
            acks.insert(node, push);
        }
        Ok(Self {
            pull,
            acks,
            seen: HashSet::new(),
            order: VecDeque::new(),
            window,
            pending: Vec::new(),
            repeats: 0,
            bad: 0,
            _context: context,
        })
    }

    /// The endpoint the PULL socket bound last (a `*` port resolved).
    pub fn endpoint(&self) -> Option<String> {
        self.pull.get_last_endpoint().ok()?.ok()
    }

    /// The next new envelope, waiting at most `timeout_ms` (`-1`: for
    /// ever); `None` when none came. Its id is acked by the next
    /// [`Self::ack`], and so are the repeats dropped meanwhile.
    pub fn recv(&mut self, timeout_ms: i64) -> Result<Option<Received>, zmq::Error> {
        loop {
            if self.pull.poll(zmq::POLLIN, timeout_ms)? == 0 {
                return Ok(None);
            }
            // Two frames (`--frames key+json`): the envelope is the last.
            let mut frames = self.pull.recv_multipart(0)?;
            let envelope = frames.pop().unwrap_or_default();
            let Some(id) = envelope_id(&envelope) else {
                self.bad += 1;
                continue;
            };
            self.pending.push(id);
            if !self.first_time(id) {
                self.repeats += 1;
                continue;
            }
            return Ok(Some(Received {
                id: id.to_string(),
                envelope,
            }));
        }
    }

    fn first_time(&mut self, id: u64) -> bool {
        if self.window == 0 {
            return true;
        }
        if !self.seen.insert(id) {
            return false;
        }
        self.order.push_back(id);
        if self.order.len() > self.window {
            if let Some(old) = self.order.pop_front() {
                self.seen.remove(&old);
            }
        }
        true
    }

    /// Acknowledges every id received so far, one message per node.
    pub fn ack(&mut self) -> Result<(), zmq::Error> {
        if self.acks.is_empty() {
            self.pending.clear();
            return Ok(());
        }
        let mut by_node: HashMap<Option<u16>, String> = HashMap::new();
        for id in self.pending.drain(..) {
            let node = (!self.acks.contains_key(&None)).then(|| node_of(id));
            let text = by_node.entry(node).or_default();
            if !text.is_empty() {
                text.push(' ');
            }
            text.push_str(&id.to_string());
        }
        for (node, text) in by_node {
            if let Some(push) = self.acks.get(&node) {
                push.send(text.as_bytes(), 0)?;
            }
        }
        Ok(())
    }
}

/// The id of an envelope: its top-level `"id"` member.
fn envelope_id(envelope: &[u8]) -> Option<u64> {
    let value: serde_json::Value = serde_json::from_slice(envelope).ok()?;
    value.get("id")?.as_str()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeats_are_dropped_within_the_window_and_acked() {
        let mut c = Consumer::new(&["inproc://c"], true, &AckTo::None, 2).unwrap();
        assert!(c.first_time(1));
        assert!(!c.first_time(1));
        assert!(c.first_time(2));
        assert!(c.first_time(3), "1 leaves the window");
        assert!(c.first_time(1));
        assert_eq!(node_of((5 << 18) | (3 << 12)), 5);
        assert_eq!(envelope_id(br#"{"id":"42","data":{}}"#), Some(42));
        assert_eq!(envelope_id(b"nope"), None);
    }
}
