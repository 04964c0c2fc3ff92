//! The test toolkit (feature `test-utils`): one driver, one platform and a few stand-in
//! device types for the device's tests and benchmarks, the backends' tests and the fuzz
//! targets.
//!
//! - [`Rig`]: a device built over guest RAM with a [`RecordingSink`] and an event log, and the
//!   driver's and platform's accesses as methods: configuration cycles, BAR mapping, MMIO
//!   at the mapped addresses, feature negotiation, the MSI-X table, queue set-up and the
//!   whole of virtio 1.2, 3.1.1 ([`Rig::bring_up`] with a [`Setup`]). [`layouts`] names the
//!   BAR layouts worth running against.
//! - [`Ring`]: the driver's half of a split virtqueue in guest memory (descriptors, chains,
//!   indirect tables, the available ring, `used_event`, the used ring read back);
//!   [`TestQueue`] pairs it with the device's [`SplitQueue`](crate::SplitQueue) to run a
//!   backend on a ring without a transport.
//! - [`NotFlat`]: guest RAM that offers no flat region, for the device's trait-call path.
//! - Sinks: [`RecordingSink`] (every message and line change), [`CountingSink`] (counts, never
//!   allocates), [`NullInterruptSink`].
//! - Backends: [`NullBackend`] (completes every chain unread), [`TestBackend`] (the same with
//!   a chosen ID, features and queue maximum), [`WalkingBackend`] (walks each chain: the
//!   hot-path benchmark's device type).
//!
//! Not part of the device's product surface: the module exists only under `cfg(test)` or the
//! `test-utils` feature, which only dev-dependencies and the fuzz workspace turn on.

mod backends;
mod rig;
mod ring;
mod sinks;

pub use backends::{NullBackend, TestBackend, WalkingBackend, config_u64};
pub use rig::{
    BAR0_ADDR, BAR2_ADDR, BAR4_ADDR, CAP_MSIX, CAP_VENDOR, CFG_COMMAND, CFG_STATUS, CMD_BUS_MASTER,
    CMD_INTX_DISABLE, CMD_MEMORY, COMMON, DEVICE_CFG, ISR, NOTIFY, PBA, RAM_SIZE, RING_SIZE, Rig,
    STATUS_CAP_LIST, STATUS_INTERRUPT, Setup, TABLE, layouts, live_queue, msg,
};
pub use ring::{
    Buf, DATA_BASE, INDIRECT, MEM_SIZE, NEXT, NotFlat, Ring, RingAddrs, TestQueue,
    USED_RING_OFFSET, WRITE, desc_bytes, guest_byte, guest_memory, pattern, r, read_guest, w,
    write_desc, write_guest,
};
pub use sinks::{CountingSink, NullInterruptSink, RecordingSink};
