//! (hookwire) Raw operations on the executor's main io_uring ring, for a
//! network data path that glommio's streams do not offer: multishot
//! accept and receive, receives into a provided-buffer ring, sends queued
//! from many connections and submitted together.
//!
//! [`submit`] queues a submission; it reaches the kernel with the loop's
//! next submission (one `io_uring_enter` for all queued in a turn). Every
//! completion of a raw operation goes to the handler set with
//! [`set_handler`], on the executor's thread, as `(user_data, res,
//! flags)`; the flags are the kernel's, with the provided buffer's id.
//! The handler must not call [`set_handler`]; it may call [`submit`] and
//! wake tasks.
//!
//! Only for the thread of a running executor: elsewhere [`submit`] and
//! [`set_handler`] do nothing and [`register`] fails.

use std::io;

/// (hookwire) A submission queue entry as the kernel reads it (64 bytes,
/// `struct io_uring_sqe`), written to the ring unchanged.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
#[allow(missing_docs)]
pub struct RawSqe {
    pub opcode: u8,
    /// `IOSQE_*`.
    pub flags: u8,
    pub ioprio: u16,
    pub fd: i32,
    pub off: u64,
    pub addr: u64,
    pub len: u32,
    /// The operation's flags (`msg_flags`, `accept_flags`, `cancel_flags`…).
    pub op_flags: u32,
    /// Must be below `1 << 63`.
    pub user_data: u64,
    /// `buf_index` or `buf_group`.
    pub buf_index: u16,
    pub personality: u16,
    pub file_index: u32,
    pub addr3: u64,
    pub pad: u64,
}


/// Queues `sqe` on the current executor's main ring; nothing outside a
/// running executor (its tasks dropped as it ends: its ring goes with it).
pub fn submit(sqe: RawSqe) {
    if crate::executor::executor_id().is_some() {
        crate::executor().reactor().sys.submit_raw(sqe)
    }
}

/// Sets what the current executor's main ring calls for each completion of
/// a raw operation (`None` drops it).
pub fn set_handler(handler: Option<Box<dyn FnMut(u64, i32, u32)>>) {
    if crate::executor::executor_id().is_some() {
        crate::executor().reactor().sys.set_raw_handler(handler)
    }
}

/// `io_uring_register(2)` on the current executor's main ring (for
/// `IORING_REGISTER_PBUF_RING` and its kin).
///
/// # Safety
/// `arg` and `nr_args` must be what the kernel expects for `opcode`.
pub unsafe fn register(opcode: u32, arg: *const libc::c_void, nr_args: u32) -> io::Result<i32> {
    if crate::executor::executor_id().is_none() {
        return Err(io::Error::new(io::ErrorKind::Other, "no running executor"));
    }
    crate::executor().reactor().sys.register_main(opcode, arg, nr_args)
}
