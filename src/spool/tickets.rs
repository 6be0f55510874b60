//! Flush tickets: a connection takes one with each event it spools and
//! waits for the flush that decides it (stored or failed).

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::task::Waker;

/// The outcome of a ticket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flushed {
    Pending,
    Stored,
    Failed,
}

/// Per core: flush tickets, their waiters, and the flusher's wake-up.
#[derive(Debug)]
pub struct Tickets {
    /// The ticket the next flush completes.
    next: Cell<u64>,
    /// Every ticket up to here is decided.
    done: Cell<u64>,
    /// Decided tickets that failed, as inclusive ranges (recent ones).
    failed: RefCell<VecDeque<(u64, u64)>>,
    waiters: RefCell<Vec<Waker>>,
    kicked: Cell<bool>,
    flusher: RefCell<Option<Waker>>,
}

impl Default for Tickets {
    fn default() -> Self {
        Self {
            next: Cell::new(1),
            done: Cell::new(0),
            failed: RefCell::new(VecDeque::new()),
            waiters: RefCell::new(Vec::new()),
            kicked: Cell::new(false),
            flusher: RefCell::new(None),
        }
    }
}

impl Tickets {
    /// The ticket of what is appended now; wakes the flusher.
    pub fn take(&self) -> u64 {
        self.kicked.set(true);
        if let Some(w) = self.flusher.borrow_mut().take() {
            w.wake();
        }
        self.next.get()
    }

    pub fn state(&self, ticket: u64) -> Flushed {
        if ticket > self.done.get() {
            Flushed::Pending
        } else if self
            .failed
            .borrow()
            .iter()
            .any(|&(a, b)| (a..=b).contains(&ticket))
        {
            Flushed::Failed
        } else {
            Flushed::Stored
        }
    }

    /// Some ticket taken so far is not decided yet.
    pub(super) fn undecided(&self) -> bool {
        self.next.get() > self.done.get()
    }

    /// Closes the ticket of what is appended now and returns it: what is
    /// appended from now on takes the next one.
    pub(super) fn close(&self) -> u64 {
        let ticket = self.next.get();
        self.next.set(ticket + 1);
        ticket
    }

    /// Decides every ticket up to `upto`: stored, or failed from `from` on.
    pub(super) fn decide(&self, upto: u64, failed_from: Option<u64>) {
        if let Some(from) = failed_from {
            let mut failed = self.failed.borrow_mut();
            failed.push_back((from, upto));
            if failed.len() > 1024 {
                failed.pop_front();
            }
        }
        self.done.set(self.done.get().max(upto));
        for w in self.waiters.borrow_mut().drain(..) {
            w.wake();
        }
    }

    /// Waits until `ticket` is decided.
    pub async fn wait(&self, ticket: u64) -> Flushed {
        std::future::poll_fn(|cx| match self.state(ticket) {
            Flushed::Pending => {
                self.waiters.borrow_mut().push(cx.waker().clone());
                std::task::Poll::Pending
            }
            done => std::task::Poll::Ready(done),
        })
        .await
    }

    /// Waits until something is appended (or returns at once if it was).
    pub async fn appended(&self) {
        std::future::poll_fn(|cx| {
            if self.kicked.replace(false) {
                std::task::Poll::Ready(())
            } else {
                *self.flusher.borrow_mut() = Some(cx.waker().clone());
                std::task::Poll::Pending
            }
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tickets_decide_in_order() {
        let t = Tickets::default();
        assert_eq!(t.take(), 1);
        assert_eq!(t.state(1), Flushed::Pending);
        t.decide(1, None);
        assert_eq!(t.state(1), Flushed::Stored);
        t.decide(3, Some(2));
        assert_eq!(t.state(2), Flushed::Failed);
        assert_eq!(t.state(3), Flushed::Failed);
        assert_eq!(t.state(1), Flushed::Stored);
        t.decide(4, None);
        assert_eq!(t.state(4), Flushed::Stored);
        assert_eq!(t.state(5), Flushed::Pending);
        // A flush that finishes after a later one does not undo it.
        t.decide(6, None);
        t.decide(5, None);
        assert_eq!(t.state(6), Flushed::Stored);
    }
}
