//! One core's budget for request bodies in memory (`--max-inflight-body`,
//! split over the cores): the bytes its connections' read buffers have
//! grown past their resting size. A body that needs more waits until
//! another connection gives some back, so memory follows the bound rather
//! than what senders announce.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

/// A core's body budget; single-threaded, shared by its connections.
#[derive(Debug)]
pub struct Budget {
    limit: usize,
    used: Cell<usize>,
    peak: Cell<usize>,
    waits: Cell<u64>,
    next: Cell<u64>,
    /// Connections waiting for bytes, oldest first.
    waiters: RefCell<VecDeque<Waiter>>,
}

#[derive(Debug)]
struct Waiter {
    id: u64,
    need: usize,
    /// `None` once woken: the bytes freed for it are kept for it until it
    /// has looked.
    waker: Option<Waker>,
}

/// A budget's figures, for the admin.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Figures {
    /// Bytes held now.
    pub used: u64,
    /// The most held at once.
    pub peak: u64,
    pub limit: u64,
    /// Times a connection had to wait for bytes.
    pub waits: u64,
}

impl Budget {
    pub fn new(limit: usize) -> Self {
        Self {
            limit,
            used: Cell::new(0),
            peak: Cell::new(0),
            waits: Cell::new(0),
            next: Cell::new(0),
            waiters: RefCell::new(VecDeque::new()),
        }
    }

    /// Takes `n` bytes if they are left; `false` (nothing taken) if not.
    pub fn reserve(&self, n: usize) -> bool {
        if n > self.available() {
            return false;
        }
        self.force(n);
        true
    }

    /// Takes `n` bytes even past the limit (a request's head is never
    /// held up).
    pub fn force(&self, n: usize) {
        let used = self.used.get() + n;
        self.used.set(used);
        self.peak.set(self.peak.get().max(used));
    }

    /// Gives back `n` bytes and wakes the waiters they are enough for.
    pub fn release(&self, n: usize) {
        self.used.set(self.used.get() - n);
        if n > 0 {
            self.wake();
        }
    }

    /// Bytes left under the limit.
    pub fn available(&self) -> usize {
        self.limit.saturating_sub(self.used.get())
    }

    /// Resolves once `need` bytes are left (it does not take them: the
    /// caller reserves them at once); counted as one wait.
    pub fn wait(&self, need: usize) -> Wait<'_> {
        self.waits.set(self.waits.get() + 1);
        let id = self.next.get();
        self.next.set(id + 1);
        Wait {
            budget: self,
            id,
            need,
        }
    }

    pub fn figures(&self) -> Figures {
        Figures {
            used: self.used.get() as u64,
            peak: self.peak.get() as u64,
            limit: self.limit as u64,
            waits: self.waits.get(),
        }
    }

    /// Wakes the waiters, oldest first, whose need fits in what is left
    /// after the needs of those already woken; one that does not fit is
    /// passed over, so a small need is not held up behind a large one.
    fn wake(&self) {
        if self.waiters.borrow().is_empty() {
            return;
        }
        let mut left = self.available();
        let mut wake = Vec::new();
        for w in self.waiters.borrow_mut().iter_mut() {
            match &w.waker {
                None => left = left.saturating_sub(w.need),
                Some(_) if w.need <= left => {
                    left -= w.need;
                    wake.extend(w.waker.take());
                }
                Some(_) => {}
            }
        }
        // Outside the borrow: a waker may run code that touches the list.
        for w in wake {
            w.wake();
        }
    }

    /// Takes waiter `id` off the list; whether it had been woken.
    fn dequeue(&self, id: u64) -> bool {
        let mut waiters = self.waiters.borrow_mut();
        match waiters.iter().position(|w| w.id == id) {
            Some(at) => waiters.remove(at).is_some_and(|w| w.waker.is_none()),
            None => false,
        }
    }
}

/// [`Budget::wait`]'s future.
#[derive(Debug)]
pub struct Wait<'a> {
    budget: &'a Budget,
    id: u64,
    need: usize,
}

impl Future for Wait<'_> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let budget = self.budget;
        if budget.available() >= self.need {
            budget.dequeue(self.id);
            return Poll::Ready(());
        }
        let mut waiters = budget.waiters.borrow_mut();
        match waiters.iter_mut().find(|w| w.id == self.id) {
            Some(w) => w.waker = Some(cx.waker().clone()),
            None => waiters.push_back(Waiter {
                id: self.id,
                need: self.need,
                waker: Some(cx.waker().clone()),
            }),
        }
        Poll::Pending
    }
}

impl Drop for Wait<'_> {
    /// A waiter that gives up (its deadline passed) after it was woken
    /// passes the bytes kept for it on.
    fn drop(&mut self) {
        if self.budget.dequeue(self.id) {
            self.budget.wake();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::task::Wake;

    use super::*;

    struct Count(AtomicUsize);

    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn poll(wait: &mut Wait<'_>, count: &Arc<Count>) -> Poll<()> {
        let waker = Waker::from(count.clone());
        Pin::new(wait).poll(&mut Context::from_waker(&waker))
    }

    #[test]
    fn reserves_within_the_limit_and_counts_forced_bytes() {
        let b = Budget::new(100);
        assert!(b.reserve(60));
        assert!(!b.reserve(41));
        assert!(b.reserve(40));
        b.force(10);
        assert_eq!(b.figures().used, 110);
        b.release(110);
        assert_eq!(
            b.figures(),
            Figures {
                used: 0,
                peak: 110,
                limit: 100,
                waits: 0
            }
        );
    }

    #[test]
    fn release_wakes_the_waiters_it_is_enough_for() {
        let b = Budget::new(100);
        assert!(b.reserve(100));
        let (big, small) = (Arc::new(Count(0.into())), Arc::new(Count(0.into())));
        let mut first = b.wait(80);
        let mut second = b.wait(20);
        assert!(poll(&mut first, &big).is_pending());
        assert!(poll(&mut second, &small).is_pending());
        // 30 bytes: the large need is passed over, the small one woken.
        b.release(30);
        assert_eq!(big.0.load(Ordering::Relaxed), 0);
        assert_eq!(small.0.load(Ordering::Relaxed), 1);
        assert!(poll(&mut second, &small).is_ready());
        assert!(b.reserve(20));
        // The large one is woken once enough is back.
        b.release(70);
        assert_eq!(big.0.load(Ordering::Relaxed), 1);
        assert!(poll(&mut first, &big).is_ready());
        assert_eq!(b.figures().waits, 2);
        assert!(b.waiters.borrow().is_empty());
    }

    #[test]
    fn a_woken_waiter_that_gives_up_passes_its_bytes_on() {
        let b = Budget::new(100);
        assert!(b.reserve(100));
        let (one, two) = (Arc::new(Count(0.into())), Arc::new(Count(0.into())));
        let mut first = b.wait(50);
        let mut second = b.wait(50);
        assert!(poll(&mut first, &one).is_pending());
        assert!(poll(&mut second, &two).is_pending());
        b.release(50);
        assert_eq!(one.0.load(Ordering::Relaxed), 1);
        assert_eq!(
            two.0.load(Ordering::Relaxed),
            0,
            "50 bytes are kept for the first"
        );
        drop(first);
        assert_eq!(two.0.load(Ordering::Relaxed), 1);
        assert!(poll(&mut second, &two).is_ready());
    }
}
