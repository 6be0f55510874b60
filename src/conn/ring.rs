//! A core's io_uring data path: multishot accept, one multishot receive
//! per connection into the core's shared provided-buffer ring, and sends
//! queued by the connections and submitted together with the executor's
//! next turn (no system call per request).
//!
//! The kernel's completions come to [`Ring`]'s handler, which files them
//! in the connection's [`Slot`] (a slab, reused: no allocation per
//! connection once warm) and wakes its task. A receive's bytes stay in
//! the ring's buffer while the request is parsed in place; only a request
//! that spans buffers is copied into the connection's own buffer. A
//! connection that holds part of a request, or that found the ring dry
//! (`ENOBUFS`), reads with one-shot receives into its own buffer until it
//! is empty again. Idle connections hold no buffer.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::io;
use std::os::fd::RawFd;
use std::rc::Rc;
use std::sync::atomic::{AtomicU16, Ordering};
use std::task::{Poll, Waker};

use glommio::net::uring::{self as raw, RawSqe};
use slab::Slab;

/// Size of one buffer of the ring: a GET postback and its headers fit one.
pub const BUF_SIZE: usize = 4096;
/// Buffers per core (a power of two).
pub const BUF_COUNT: usize = 1024;
const GROUP: u16 = 7;

const IORING_OP_ACCEPT: u8 = 13;
const IORING_OP_ASYNC_CANCEL: u8 = 14;
const IORING_OP_CLOSE: u8 = 19;
const IORING_OP_SEND: u8 = 26;
const IORING_OP_RECV: u8 = 27;
const IOSQE_BUFFER_SELECT: u8 = 1 << 5;
const IORING_RECV_MULTISHOT: u16 = 1 << 1;
const IORING_ACCEPT_MULTISHOT: u16 = 1 << 0;
const IORING_CQE_F_BUFFER: u32 = 1;
const IORING_CQE_F_MORE: u32 = 2;
const IORING_REGISTER_PBUF_RING: u32 = 22;

/// What a completion is for: the low byte of its user data.
const KIND_IGNORE: u64 = 0;
const KIND_RECV: u64 = 1;
const KIND_OWN: u64 = 2;
const KIND_SEND: u64 = 3;
const KIND_ACCEPT: u64 = 4;
/// Raw operations' user data as the kernel sees it (glommio's tag).
const TAG: u64 = 1 << 63;

fn ud(slot: usize, kind: u64) -> u64 {
    ((slot as u64) << 8) | kind
}

/// Whether this kernel has what the path needs (provided-buffer rings and
/// multishot receive: Linux 6.0).
pub fn supported() -> bool {
    kernel_at_least(6, 0)
}

fn kernel_at_least(major: u32, minor: u32) -> bool {
    // SAFETY: `uname` fills the zeroed struct; `release` is NUL-terminated.
    let release = unsafe {
        let mut uts: libc::utsname = std::mem::zeroed();
        if libc::uname(&mut uts) != 0 {
            return false;
        }
        std::ffi::CStr::from_ptr(uts.release.as_ptr())
            .to_string_lossy()
            .into_owned()
    };
    let mut parts = release
        .split(|c: char| !c.is_ascii_digit())
        .map(|p| p.parse::<u32>().unwrap_or(0));
    matches!((parts.next(), parts.next()), (Some(a), Some(b)) if (a, b) >= (major, minor))
}

/// What a receive brought.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rx {
    /// `len` bytes in the ring's buffer `bid`: give it back with
    /// [`Ring::recycle`].
    Buf { bid: u16, len: u32 },
    /// `n` bytes received into the connection's own buffer.
    Own(usize),
    /// The end of the stream (0) or an error (a negated errno).
    End(i32),
    /// The ring was dry: ask again with the connection's own buffer.
    Dry,
}

/// One connection's state as the kernel's completions see it.
#[derive(Debug, Default)]
struct Slot {
    fd: RawFd,
    rx: VecDeque<Rx>,
    /// The multishot receive is armed (its last completion not yet come).
    armed: bool,
    /// It is being cancelled.
    cancelling: bool,
    /// A one-shot receive into the connection's own buffer is in flight.
    own: bool,
    /// The ring was dry: read into the own buffer until it is empty.
    dry: bool,
    /// The response being sent (kept here, so that it outlives its task),
    /// and how much of it is sent.
    sending: Vec<u8>,
    sent: usize,
    in_flight: bool,
    send_error: bool,
    /// Operations whose last completion has not come.
    ops: u32,
    /// Its task is gone: the descriptor closes when `ops` reaches 0.
    closed: bool,
    waker: Option<Waker>,
}

/// The provided-buffer ring: its entries, shared with the kernel, and the
/// buffers. A core's ring lives as long as its executor, and the kernel
/// drops the registration with the executor's io_uring: the mappings are
/// never unmapped (an unmap while receives could still fill them, or a
/// call to the ring from outside its executor, would be worse).
struct Buffers {
    entries: *mut u8,
    data: *mut u8,
    tail: u16,
}

#[repr(C)]
struct BufEntry {
    addr: u64,
    len: u32,
    bid: u16,
    resv: u16,
}

#[repr(C)]
struct BufReg {
    ring_addr: u64,
    ring_entries: u32,
    bgid: u16,
    flags: u16,
    resv: [u64; 3],
}

impl Buffers {
    fn new() -> io::Result<Self> {
        let entries = mmap(BUF_COUNT * std::mem::size_of::<BufEntry>())?;
        let data = match mmap(BUF_COUNT * BUF_SIZE) {
            Ok(d) => d,
            Err(e) => {
                unmap(entries, BUF_COUNT * std::mem::size_of::<BufEntry>());
                return Err(e);
            }
        };
        let mut b = Self {
            entries,
            data,
            tail: 0,
        };
        let reg = BufReg {
            ring_addr: entries as u64,
            ring_entries: BUF_COUNT as u32,
            bgid: GROUP,
            flags: 0,
            resv: [0; 3],
        };
        // SAFETY: `reg` describes the mapping above, page-aligned, of
        // `BUF_COUNT` entries; it stays mapped for good.
        let registered = unsafe {
            raw::register(
                IORING_REGISTER_PBUF_RING,
                &reg as *const BufReg as *const libc::c_void,
                1,
            )
        };
        if let Err(e) = registered {
            unmap(b.entries, BUF_COUNT * std::mem::size_of::<BufEntry>());
            unmap(b.data, BUF_COUNT * BUF_SIZE);
            return Err(e);
        }
        for bid in 0..BUF_COUNT as u16 {
            b.put(bid);
        }
        b.publish();
        Ok(b)
    }

    /// Adds buffer `bid` at the ring's tail (seen by the kernel after
    /// [`Buffers::publish`]).
    fn put(&mut self, bid: u16) {
        let at = (self.tail as usize) & (BUF_COUNT - 1);
        // SAFETY: `at` is within the ring's entries; the kernel reads an
        // entry only once the tail passes it.
        unsafe {
            let e = (self.entries as *mut BufEntry).add(at);
            (*e).addr = self.data.add(bid as usize * BUF_SIZE) as u64;
            (*e).len = BUF_SIZE as u32;
            (*e).bid = bid;
        }
        self.tail = self.tail.wrapping_add(1);
    }

    fn publish(&self) {
        // SAFETY: the ring's tail is the u16 at offset 14 of its first
        // entry (`struct io_uring_buf_ring`), written by us, read by the
        // kernel.
        let tail = unsafe { &*(self.entries.add(14) as *const AtomicU16) };
        tail.store(self.tail, Ordering::Release);
    }

    fn slice(&self, bid: u16, len: usize) -> *mut u8 {
        debug_assert!(len <= BUF_SIZE && (bid as usize) < BUF_COUNT);
        // SAFETY: within the buffers' mapping.
        unsafe { self.data.add(bid as usize * BUF_SIZE) }
    }
}

fn mmap(len: usize) -> io::Result<*mut u8> {
    // SAFETY: an anonymous private mapping, owned by the caller.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    Ok(p as *mut u8)
}

fn unmap(p: *mut u8, len: usize) {
    // SAFETY: `p` is a mapping of `len` bytes made by `mmap`.
    unsafe { libc::munmap(p as *mut libc::c_void, len) };
}

#[derive(Default)]
struct Accepts {
    fd: RawFd,
    ready: VecDeque<Result<RawFd, i32>>,
    armed: bool,
    waker: Option<Waker>,
}

struct Inner {
    slots: Slab<Slot>,
    /// The queues of closed connections' slots, for the next ones: a new
    /// connection allocates nothing here.
    spare: Vec<(VecDeque<Rx>, Vec<u8>)>,
    bufs: Buffers,
    accepts: Accepts,
    /// Completions that found the ring dry, for the figures.
    dry: u64,
}

/// Receives a connection may have waiting before its multishot receive
/// is stopped (armed again once they are taken).
const MAX_QUEUED: usize = 4;

/// Closed connections' slot queues kept for new ones.
const MAX_SPARE: usize = 1024;
/// The largest send buffer kept with them.
const SPARE_SEND: usize = 64 << 10;

impl Inner {
    /// Removes a closed connection's slot, keeping its queues.
    fn retire(&mut self, key: usize) {
        let Slot {
            mut rx,
            mut sending,
            ..
        } = self.slots.remove(key);
        if self.spare.len() < MAX_SPARE && sending.capacity() <= SPARE_SEND {
            rx.clear();
            sending.clear();
            self.spare.push((rx, sending));
        }
    }
}

/// One core's io_uring data path.
pub struct Ring {
    inner: RefCell<Inner>,
}

impl std::fmt::Debug for Ring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ring").finish_non_exhaustive()
    }
}

impl Ring {
    /// Registers the core's buffer ring and completion handler; on the
    /// executor's thread.
    pub fn start() -> io::Result<Rc<Self>> {
        let bufs = Buffers::new()?;
        let ring = Rc::new(Ring {
            inner: RefCell::new(Inner {
                slots: Slab::with_capacity(256),
                spare: Vec::with_capacity(MAX_SPARE),
                bufs,
                accepts: Accepts {
                    fd: -1,
                    ..Accepts::default()
                },
                dry: 0,
            }),
        });
        let weak = Rc::downgrade(&ring);
        raw::set_handler(Some(Box::new(move |user_data, res, flags| {
            if let Some(ring) = weak.upgrade() {
                ring.complete(user_data, res, flags);
            }
        })));
        Ok(ring)
    }

    /// Times a receive found the ring dry.
    pub fn dry_count(&self) -> u64 {
        self.inner.borrow().dry
    }

    /// Files one completion and wakes whoever waits for it.
    fn complete(&self, user_data: u64, res: i32, flags: u32) {
        let kind = user_data & 0xff;
        let key = (user_data >> 8) as usize;
        let more = flags & IORING_CQE_F_MORE != 0;
        let mut guard = self.inner.borrow_mut();
        let inner = &mut *guard;
        match kind {
            KIND_ACCEPT => {
                let a = &mut inner.accepts;
                if a.fd < 0 {
                    // No longer listening.
                    if res >= 0 {
                        close(res);
                    }
                    a.armed &= more;
                    return;
                }
                if res >= 0 {
                    a.ready.push_back(Ok(res));
                } else {
                    a.ready.push_back(Err(-res));
                }
                if !more {
                    a.armed = false;
                }
                if let Some(w) = a.waker.take() {
                    w.wake();
                }
                return;
            }
            KIND_IGNORE => return,
            _ => {}
        }
        let Some(slot) = inner.slots.get_mut(key) else {
            return;
        };
        match kind {
            KIND_RECV => {
                if flags & IORING_CQE_F_BUFFER != 0 {
                    let bid = (flags >> 16) as u16;
                    if res > 0 && !slot.closed {
                        slot.rx.push_back(Rx::Buf {
                            bid,
                            len: res as u32,
                        });
                        if slot.rx.len() >= MAX_QUEUED && more && !slot.cancelling {
                            // Its task is not keeping up (a sender that
                            // does not read its answers, a body waiting
                            // for the budget): stop receiving for it, so
                            // one connection cannot drain the ring.
                            slot.cancelling = true;
                            cancel(ud(key, KIND_RECV));
                        }
                    } else {
                        inner.bufs.put(bid);
                        inner.bufs.publish();
                    }
                }
                if !more {
                    slot.armed = false;
                    slot.cancelling = false;
                    slot.ops -= 1;
                    match res {
                        // Ended by the kernel after data: armed again
                        // on the next read.
                        r if r > 0 => {}
                        r if r == -libc::ENOBUFS => {
                            slot.dry = true;
                            inner.dry += 1;
                        }
                        r if r == -libc::ECANCELED => {}
                        r => slot.rx.push_back(Rx::End(r)),
                    }
                }
            }
            KIND_OWN => {
                slot.own = false;
                slot.ops -= 1;
                slot.rx.push_back(match res {
                    r if r > 0 => Rx::Own(r as usize),
                    r => Rx::End(r),
                });
            }
            KIND_SEND => {
                slot.ops -= 1;
                if res < 0 {
                    slot.send_error = true;
                    slot.in_flight = false;
                } else {
                    slot.sent += res as usize;
                    if slot.sent < slot.sending.len() && res > 0 && !slot.closed {
                        // A short send: the rest goes with the next turn.
                        submit_send(key, slot);
                    } else {
                        slot.send_error = slot.sent < slot.sending.len();
                        slot.in_flight = false;
                    }
                }
            }
            _ => {}
        }
        if slot.closed && slot.ops == 0 {
            let fd = slot.fd;
            for rx in slot.rx.drain(..) {
                if let Rx::Buf { bid, .. } = rx {
                    inner.bufs.put(bid);
                }
            }
            inner.bufs.publish();
            inner.retire(key);
            close(fd);
            return;
        }
        if let Some(w) = slot.waker.take() {
            w.wake();
        }
    }

    /// Arms the multishot accept on `fd` (a listening socket).
    pub fn listen(&self, fd: RawFd) {
        let mut inner = self.inner.borrow_mut();
        inner.accepts.fd = fd;
        if !inner.accepts.armed {
            inner.accepts.armed = true;
            raw::submit(RawSqe {
                opcode: IORING_OP_ACCEPT,
                ioprio: IORING_ACCEPT_MULTISHOT,
                fd,
                op_flags: libc::SOCK_CLOEXEC as u32,
                user_data: ud(0, KIND_ACCEPT),
                ..RawSqe::default()
            });
        }
    }

    /// Stops accepting: the multishot accept is cancelled and the
    /// listener closed (connections it still accepts are closed).
    pub fn unlisten(&self) {
        let mut inner = self.inner.borrow_mut();
        let fd = std::mem::replace(&mut inner.accepts.fd, -1);
        if fd < 0 {
            return;
        }
        if inner.accepts.armed {
            cancel(ud(0, KIND_ACCEPT));
        }
        close(fd);
        for c in inner.accepts.ready.drain(..).flatten() {
            close(c);
        }
    }

    /// The next accepted connection (`Err`: the errno of a failed accept).
    pub async fn accept(&self) -> Result<RawFd, i32> {
        std::future::poll_fn(|cx| {
            let mut inner = self.inner.borrow_mut();
            if let Some(r) = inner.accepts.ready.pop_front() {
                return Poll::Ready(r);
            }
            if !inner.accepts.armed && inner.accepts.fd >= 0 {
                let fd = inner.accepts.fd;
                drop(inner);
                self.listen(fd);
                inner = self.inner.borrow_mut();
            }
            inner.accepts.waker = Some(cx.waker().clone());
            Poll::Pending
        })
        .await
    }

    /// Takes `fd` (an accepted connection) for its lifetime; returns its key.
    pub fn open(&self, fd: RawFd) -> usize {
        let mut inner = self.inner.borrow_mut();
        let (rx, sending) = inner.spare.pop().unwrap_or_default();
        inner.slots.insert(Slot {
            fd,
            rx,
            sending,
            ..Slot::default()
        })
    }

    /// Waits for what the next receive brings. `own`: where a receive into
    /// the connection's own buffer goes, when one is needed (`pending`:
    /// the connection holds part of a request, so its bytes go there).
    ///
    /// # Safety
    /// `own` must stay valid until the receive completes: until this
    /// returns, or, if its future is dropped first, for good.
    pub async unsafe fn recv(&self, key: usize, pending: bool, own: *mut u8, own_len: usize) -> Rx {
        std::future::poll_fn(|cx| {
            let mut inner = self.inner.borrow_mut();
            let slot = &mut inner.slots[key];
            if let Some(rx) = slot.rx.pop_front() {
                return Poll::Ready(rx);
            }
            if slot.own {
                // Its completion is awaited.
            } else if pending || slot.dry {
                if slot.armed {
                    // Bytes for the own buffer: the multishot receive
                    // ends first (what it still brings is appended).
                    if !slot.cancelling {
                        slot.cancelling = true;
                        cancel(ud(key, KIND_RECV));
                    }
                } else if own.is_null() {
                    return Poll::Ready(Rx::Dry);
                } else {
                    slot.own = true;
                    slot.dry = false;
                    slot.ops += 1;
                    raw::submit(RawSqe {
                        opcode: IORING_OP_RECV,
                        fd: slot.fd,
                        addr: own as u64,
                        len: own_len as u32,
                        user_data: ud(key, KIND_OWN),
                        ..RawSqe::default()
                    });
                }
            } else if !slot.armed {
                slot.armed = true;
                slot.ops += 1;
                raw::submit(RawSqe {
                    opcode: IORING_OP_RECV,
                    flags: IOSQE_BUFFER_SELECT,
                    ioprio: IORING_RECV_MULTISHOT,
                    fd: slot.fd,
                    buf_index: GROUP,
                    user_data: ud(key, KIND_RECV),
                    ..RawSqe::default()
                });
            }
            slot.waker = Some(cx.waker().clone());
            Poll::Pending
        })
        .await
    }

    /// The length of the receive into the ring that the next
    /// [`Ring::recv`] returns at once, if one has come.
    pub fn queued(&self, key: usize) -> Option<usize> {
        match self.inner.borrow().slots[key].rx.front() {
            Some(Rx::Buf { len, .. }) => Some(*len as usize),
            _ => None,
        }
    }

    /// A receive into the ring already come, without waiting.
    pub fn next_buffer(&self, key: usize) -> Option<Rx> {
        let mut inner = self.inner.borrow_mut();
        let rx = &mut inner.slots[key].rx;
        match rx.front() {
            Some(Rx::Buf { .. }) => rx.pop_front(),
            _ => None,
        }
    }

    /// The bytes of ring buffer `bid`, until [`Ring::recycle`].
    ///
    /// # Safety
    /// `bid` and `len` must come from an [`Rx::Buf`] not yet recycled, and
    /// the slice must not be used after it is.
    #[allow(clippy::mut_from_ref)]
    pub unsafe fn buffer(&self, bid: u16, len: u32) -> &mut [u8] {
        let p = self.inner.borrow().bufs.slice(bid, len as usize);
        std::slice::from_raw_parts_mut(p, len as usize)
    }

    /// Gives buffer `bid` back to the kernel.
    pub fn recycle(&self, bid: u16) {
        let mut inner = self.inner.borrow_mut();
        inner.bufs.put(bid);
        inner.bufs.publish();
    }

    /// Waits until the connection's previous response is sent; `false` if
    /// sending it failed.
    pub async fn sent(&self, key: usize) -> bool {
        std::future::poll_fn(|cx| {
            let mut inner = self.inner.borrow_mut();
            let slot = &mut inner.slots[key];
            if !slot.in_flight {
                return Poll::Ready(!slot.send_error);
            }
            slot.waker = Some(cx.waker().clone());
            Poll::Pending
        })
        .await
    }

    /// Whether a receive into the connection's own buffer is in flight.
    pub fn receiving_own(&self, key: usize) -> bool {
        self.inner.borrow().slots[key].own
    }

    /// Whether a response of the connection is still being sent.
    pub fn sending(&self, key: usize) -> bool {
        self.inner.borrow().slots[key].in_flight
    }

    /// Queues `out` (swapped for an empty buffer) to be sent with the next
    /// turn of the loop. The previous send must be over ([`Ring::sent`]).
    pub fn send(&self, key: usize, out: &mut Vec<u8>) {
        let mut inner = self.inner.borrow_mut();
        let slot = &mut inner.slots[key];
        debug_assert!(!slot.in_flight);
        slot.sending.clear();
        std::mem::swap(&mut slot.sending, out);
        slot.sent = 0;
        submit_send(key, slot);
    }

    /// The connection's task is done: what is in flight is cancelled or
    /// finishes, then its descriptor is closed.
    pub fn close(&self, key: usize) {
        let mut guard = self.inner.borrow_mut();
        let inner = &mut *guard;
        let slot = &mut inner.slots[key];
        slot.closed = true;
        slot.waker = None;
        if slot.armed && !slot.cancelling {
            cancel(ud(key, KIND_RECV));
        }
        if slot.own {
            cancel(ud(key, KIND_OWN));
        }
        for rx in slot.rx.drain(..) {
            if let Rx::Buf { bid, .. } = rx {
                inner.bufs.put(bid);
            }
        }
        inner.bufs.publish();
        if slot.ops == 0 {
            let fd = slot.fd;
            inner.retire(key);
            close(fd);
        }
    }
}

fn submit_send(key: usize, slot: &mut Slot) {
    slot.in_flight = true;
    slot.ops += 1;
    let rest = &slot.sending[slot.sent..];
    raw::submit(RawSqe {
        opcode: IORING_OP_SEND,
        fd: slot.fd,
        addr: rest.as_ptr() as u64,
        len: rest.len() as u32,
        op_flags: libc::MSG_NOSIGNAL as u32,
        user_data: ud(key, KIND_SEND),
        ..RawSqe::default()
    });
}

fn cancel(target: u64) {
    raw::submit(RawSqe {
        opcode: IORING_OP_ASYNC_CANCEL,
        fd: -1,
        addr: target | TAG,
        user_data: ud(0, KIND_IGNORE),
        ..RawSqe::default()
    });
}

fn close(fd: RawFd) {
    raw::submit(RawSqe {
        opcode: IORING_OP_CLOSE,
        fd,
        user_data: ud(0, KIND_IGNORE),
        ..RawSqe::default()
    });
}
