//! The outbox: accepted mode's events of one executor cycle, waiting for
//! the flusher to hand them to ZeroMQ together, their texts in one reused
//! arena.

/// A text in the outbox's arena.
#[derive(Debug, Clone, Copy)]
pub(super) struct Span {
    start: u32,
    len: u32,
}

/// One event for one of its routes.
#[derive(Debug, Clone, Copy)]
pub(super) struct Entry {
    pub route: u16,
    pub key: Span,
    pub envelope: Span,
}

/// Events waiting for the flusher.
#[derive(Default)]
pub(super) struct Outbox {
    /// The envelopes (the encoder writes each in place) and the keys.
    pub arena: Vec<u8>,
    pub entries: Vec<Entry>,
    /// Events (each has one entry per route).
    pub events: usize,
}

impl Outbox {
    /// The event whose envelope was written to the arena from `start` on:
    /// its key is appended, and it gets one entry per route.
    #[inline]
    pub fn push(&mut self, routes: &[u16], key: &[u8], start: usize) {
        let envelope = Span {
            start: start as u32,
            len: (self.arena.len() - start) as u32,
        };
        let key_span = Span {
            start: self.arena.len() as u32,
            len: key.len() as u32,
        };
        self.arena.extend_from_slice(key);
        self.entries.extend(routes.iter().map(|&route| Entry {
            route,
            key: key_span,
            envelope,
        }));
        self.events += 1;
    }

    #[inline]
    pub fn text(&self, Span { start, len }: Span) -> &[u8] {
        &self.arena[start as usize..(start + len) as usize]
    }

    #[inline]
    pub fn clear(&mut self) {
        self.arena.clear();
        self.entries.clear();
        self.events = 0;
    }
}
