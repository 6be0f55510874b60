//! One core's registry of its connections: their read deadlines, swept
//! by the core for timeouts, and the reads the drain ends.

use std::cell::{Cell, RefCell};
use std::os::fd::RawFd;
use std::time::Instant;

use slab::Slab;

/// One core's connections, for the drain and the timeouts.
#[derive(Debug, Default)]
pub struct Registry {
    /// Set when the drain starts: connections close after their current
    /// request instead of waiting for another.
    pub draining: Cell<bool>,
    conns: RefCell<Slab<ConnEntry>>,
}

#[derive(Debug)]
struct ConnEntry {
    fd: RawFd,
    /// Waiting for a new request with nothing half-read.
    idle: bool,
    /// While the connection waits for bytes: when it times out.
    deadline: Option<Instant>,
    /// The sweep found it past its deadline and ended its read.
    timed_out: bool,
    /// Waiting for a send to finish (the ring path): the sweep shuts both
    /// ways, which ends the send.
    writing: bool,
}

impl Registry {
    /// A registry with room for `n` connections before its slab grows
    /// (a freed entry is reused: no allocation per connection).
    pub fn with_capacity(n: usize) -> Self {
        Self {
            draining: Cell::new(false),
            conns: RefCell::new(Slab::with_capacity(n)),
        }
    }

    pub fn register(&self, fd: RawFd) -> usize {
        self.conns.borrow_mut().insert(ConnEntry {
            fd,
            idle: false,
            deadline: None,
            timed_out: false,
            writing: false,
        })
    }

    /// Before a read: the connection waits for bytes until `deadline`
    /// (`idle`: for a new request, with nothing half-read).
    pub fn waiting(&self, key: usize, idle: bool, deadline: Instant) {
        if let Some(e) = self.conns.borrow_mut().get_mut(key) {
            e.idle = idle;
            e.deadline = Some(deadline);
        }
    }

    /// Before waiting for a send: the peer must take it by `deadline`.
    pub fn writing(&self, key: usize, deadline: Instant) {
        if let Some(e) = self.conns.borrow_mut().get_mut(key) {
            e.idle = false;
            e.writing = true;
            e.deadline = Some(deadline);
        }
    }

    /// After a read: the connection is busy, its timeout does not run.
    /// Returns whether the read was ended by the timeout sweep.
    pub fn busy(&self, key: usize) -> bool {
        match self.conns.borrow_mut().get_mut(key) {
            Some(e) => {
                e.idle = false;
                e.writing = false;
                e.deadline = None;
                e.timed_out
            }
            None => false,
        }
    }

    pub fn unregister(&self, key: usize) {
        self.conns.borrow_mut().try_remove(key);
    }

    pub fn open(&self) -> usize {
        self.conns.borrow().len()
    }

    /// Ends the read of every connection waiting past its deadline: the
    /// read returns end-of-file and [`Registry::busy`] says why. One sweep
    /// per core instead of a timer per read (glommio's read timeouts insert
    /// and remove a B-tree entry, with a clock read, for every read).
    pub fn expire(&self, now: Instant) {
        for (_, e) in self.conns.borrow_mut().iter_mut() {
            if !e.timed_out && e.deadline.is_some_and(|d| now >= d) {
                e.timed_out = true;
                let how = if e.writing {
                    libc::SHUT_RDWR
                } else {
                    libc::SHUT_RD
                };
                // SAFETY: the fd belongs to a live connection of this core
                // (entries are removed before their stream is dropped).
                unsafe { libc::shutdown(e.fd, how) };
            }
        }
    }

    /// Ends the reads of connections that wait for a new request (or of
    /// every connection, when `all`): their pending read returns end-of-file.
    pub fn shut_reads(&self, all: bool) {
        for (_, e) in self.conns.borrow().iter() {
            if all || e.idle {
                // SAFETY: the fd belongs to a live connection of this core
                // (entries are removed before their stream is dropped).
                unsafe { libc::shutdown(e.fd, libc::SHUT_RD) };
            }
        }
    }
}
