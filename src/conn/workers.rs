//! The ring path's connection tasks, kept for reuse: a task that has
//! served a connection waits for the next one, so that a new connection
//! costs no task (glommio allocates one per spawn). New tasks start only
//! while more connections are open at once than ever before.

use std::cell::{Cell, RefCell};
use std::os::fd::RawFd;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Poll, Waker};

use super::budget::Budget;
use super::registry::Registry;
use super::ring::Ring;
use crate::config::Settings;
use crate::shard::Shard;

/// Idle tasks kept; past it a task that finishes its connection ends.
const MAX_IDLE: usize = 1024;

/// Where an idle task is handed its next connection.
#[derive(Default)]
struct Handoff {
    fd: Cell<Option<RawFd>>,
    /// It is in the idle list.
    listed: Cell<bool>,
    waker: Cell<Option<Waker>>,
}

/// One core's connection tasks.
pub struct Workers {
    idle: RefCell<Vec<Rc<Handoff>>>,
    ring: Rc<Ring>,
    shard: Rc<RefCell<Shard>>,
    registry: Rc<Registry>,
    budget: Rc<Budget>,
    settings: Arc<Settings>,
}

impl Workers {
    pub fn new(
        ring: Rc<Ring>,
        shard: Rc<RefCell<Shard>>,
        registry: Rc<Registry>,
        budget: Rc<Budget>,
        settings: Arc<Settings>,
    ) -> Rc<Self> {
        Rc::new(Self {
            idle: RefCell::new(Vec::with_capacity(MAX_IDLE)),
            ring,
            shard,
            registry,
            budget,
            settings,
        })
    }

    /// Serves `fd` (an accepted connection) on an idle task, or a new one.
    pub fn dispatch(self: &Rc<Self>, fd: RawFd) {
        let idle = self.idle.borrow_mut().pop();
        match idle {
            Some(handoff) => {
                handoff.listed.set(false);
                handoff.fd.set(Some(fd));
                if let Some(waker) = handoff.waker.take() {
                    waker.wake();
                }
            }
            None => {
                let handoff = Rc::new(Handoff::default());
                handoff.fd.set(Some(fd));
                glommio::spawn_local(self.clone().run(handoff)).detach();
            }
        }
    }

    /// A task: serves the connections it is handed until too many wait.
    async fn run(self: Rc<Self>, handoff: Rc<Handoff>) {
        while let Some(fd) = self.next(&handoff).await {
            super::ring_io::serve(
                fd,
                self.ring.clone(),
                self.shard.clone(),
                self.registry.clone(),
                self.budget.clone(),
                self.settings.clone(),
            )
            .await;
        }
    }

    /// The next connection handed to this task; `None`: enough tasks wait
    /// already, this one ends.
    async fn next(&self, handoff: &Rc<Handoff>) -> Option<RawFd> {
        std::future::poll_fn(|cx| {
            if let Some(fd) = handoff.fd.take() {
                return Poll::Ready(Some(fd));
            }
            if !handoff.listed.get() {
                let mut idle = self.idle.borrow_mut();
                if idle.len() >= MAX_IDLE {
                    return Poll::Ready(None);
                }
                idle.push(handoff.clone());
                handoff.listed.set(true);
            }
            handoff.waker.set(Some(cx.waker().clone()));
            Poll::Pending
        })
        .await
    }
}
