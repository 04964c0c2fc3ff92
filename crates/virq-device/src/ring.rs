//! virq's device-side split virtqueue (virtio 1.2, 2.7).
//!
//! [`SplitQueue`] is the state the transport keeps per queue (what `common_cfg` programs, and
//! where the device is in the rings). For one pass of work the transport lends it, together
//! with a [`Dma`] view of guest memory, to the backend as a [`Virtqueue`]: pop available
//! chains, walk their descriptors, publish used entries. The interrupt decision after a pass
//! ([`Virtqueue::used_notification`]) and the EVENT_IDX re-arm
//! ([`Virtqueue::enable_notification`]) live here too, next to the ring fields they read.
//!
//! Everything in the rings is written by the guest, so nothing is trusted: the available
//! index may run at most a queue size ahead, a descriptor walk stops after the table's size
//! (a loop) or past 2^32 - 1 bytes, indirect tables are checked, and every access is
//! bounds-checked. Errors are values ([`RingError`] for the queue, [`ChainError`] for one
//! chain), never panics.
//!
//! rust-vmm's `virtio-queue` is the oracle: `tests/ring_oracle.rs` drives both with the same
//! random guest-written rings and requires the same chains, used entries and notification
//! decisions.

use std::sync::atomic::{Ordering, fence};

use serde::{Deserialize, Serialize};
use thiserror::Error;
use virq_spec::ring::{
    AVAIL_ALIGN, AVAIL_ELEM_SIZE, AVAIL_HEADER, DESC_SIZE, MAX_QUEUE_SIZE, USED_ALIGN,
    USED_ELEM_SIZE, USED_HEADER, VRING_AVAIL_F_NO_INTERRUPT, VRING_DESC_F_INDIRECT,
    VRING_DESC_F_NEXT, VRING_DESC_F_WRITE, avail_ring_len, desc_table_len, used_ring_len,
};

use crate::memory::{Dma, FlatWindow, GuestMemory, MemoryError};

/// The three areas of a split virtqueue.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RingPart {
    /// The descriptor table (`queue_desc`).
    DescriptorTable,
    /// The available ring, the driver area (`queue_driver`).
    AvailRing,
    /// The used ring, the device area (`queue_device`).
    UsedRing,
}

impl std::fmt::Display for RingPart {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            RingPart::DescriptorTable => "descriptor table",
            RingPart::AvailRing => "available ring",
            RingPart::UsedRing => "used ring",
        })
    }
}

/// Why a queue cannot be used (set-up) or can no longer be used (a corrupt ring: the device
/// must then set DEVICE_NEEDS_RESET, virtio 1.2, 2.1.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Error)]
pub enum RingError {
    /// A `queue_size` that is not a power of two or exceeds the device's maximum (virtio 1.2, 2.7).
    #[error("queue size {0} is not a power of two in 1..=32768")]
    Size(u16),
    /// A ring part whose address breaks its alignment (virtio 1.2, 2.7: 16, 2 and 4 bytes).
    #[error("{part} at {addr:#x} is not {align}-byte aligned")]
    Misaligned {
        /// The misaligned part.
        part: RingPart,
        /// Its guest-physical address as the driver wrote it.
        addr: u64,
        /// The alignment the part needs, in bytes.
        align: u64,
    },
    /// A ring part that does not lie wholly in guest RAM.
    #[error("{part} of {len} bytes at {addr:#x} is not guest RAM")]
    OutsideRam {
        /// The part outside RAM.
        part: RingPart,
        /// Its guest-physical address.
        addr: u64,
        /// Its length for the queue size, in bytes.
        len: u64,
    },
    #[error(
        "available index {avail_idx} is more than the queue size ({size}) ahead of {next_avail}"
    )]
    /// The driver's `avail->idx` moved further than a queue size past what the device has taken:
    /// an impossible ring (virtio 1.2, 2.7.13).
    AvailIndex {
        /// `idx` read from the available ring.
        avail_idx: u16,
        /// The device's next available index.
        next_avail: u16,
        /// The queue size.
        size: u16,
    },
    /// Guest memory refused an access to a ring part.
    #[error("{part} cannot be accessed: {source}")]
    Memory {
        /// The part being accessed.
        part: RingPart,
        /// What guest memory reported.
        #[source]
        source: MemoryError,
    },
    /// The device was asked to publish a used element whose head is outside the descriptor table.
    #[error("head {head} published to the used ring is not below the queue size {size}")]
    UsedHead {
        /// The chain head being published.
        head: u16,
        /// The queue size.
        size: u16,
    },
}

/// Why a descriptor chain ended before a descriptor without NEXT (virtio 1.2, 2.7.5).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Error)]
pub enum ChainError {
    /// A descriptor index (a head or a `next`) beyond the descriptor table.
    #[error("descriptor index {index} is not below the table size {size}")]
    IndexOutOfRange {
        /// The offending index.
        index: u16,
        /// The size of the table it indexes.
        size: u16,
    },
    /// A descriptor could not be read from guest memory.
    #[error("descriptor {index} at {addr:#x} cannot be read: {source}")]
    Unreadable {
        /// Index of the descriptor in its table.
        index: u16,
        /// Guest-physical address of the descriptor.
        addr: u64,
        /// What guest memory reported.
        #[source]
        source: MemoryError,
    },
    /// A chain longer than its table: the driver made a loop.
    #[error("chain goes on after {limit} descriptors: a loop, or longer than its table")]
    TooLong {
        /// The most descriptors a chain of that table can have.
        limit: u16,
    },
    /// The chain's buffers add up to more than a `u32` of bytes.
    #[error("chain describes more than 2^32 - 1 bytes (virtio 1.2, 2.7.5.2)")]
    TooLarge,
    /// An indirect table names another indirect table, which the spec forbids.
    #[error("indirect descriptor inside an indirect table (virtio 1.2, 2.7.5.3.1)")]
    NestedIndirect,
    /// An indirect table whose length cannot be a table of descriptors.
    #[error("indirect table of {len} bytes is empty, not a multiple of 16 or over 65535 entries")]
    IndirectTable {
        /// The `len` of the `VIRTQ_DESC_F_INDIRECT` descriptor.
        len: u32,
    },
}

/// One descriptor as the driver wrote it (`struct virtq_desc`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Descriptor {
    /// Guest-physical address of the buffer (`virtq_desc.addr`).
    pub addr: u64,
    /// Length of the buffer in bytes (`virtq_desc.len`).
    pub len: u32,
    /// `VIRTQ_DESC_F_NEXT`, `_WRITE` and `_INDIRECT` (`virtq_desc.flags`).
    pub flags: u16,
    /// Index of the next descriptor when `VIRTQ_DESC_F_NEXT` is set (`virtq_desc.next`).
    pub next: u16,
}

impl Descriptor {
    /// Decode the 16 little-endian bytes of a descriptor.
    #[inline(always)]
    pub fn from_bytes(b: [u8; 16]) -> Self {
        Self::from_le_value(u128::from_le_bytes(b))
    }

    /// Split the descriptor read as one 128-bit little-endian value: two loads and shifts
    /// instead of a byte shuffle per field.
    #[inline(always)]
    fn from_le_value(v: u128) -> Self {
        Descriptor {
            addr: v as u64,
            len: (v >> 64) as u32,
            flags: (v >> 96) as u16,
            next: (v >> 112) as u16,
        }
    }

    /// The buffer is device-writable (VIRTQ_DESC_F_WRITE).
    #[inline(always)]
    pub fn is_write_only(&self) -> bool {
        self.flags & VRING_DESC_F_WRITE != 0
    }

    /// The chain continues at `next` (VIRTQ_DESC_F_NEXT).
    #[inline(always)]
    pub fn has_next(&self) -> bool {
        self.flags & VRING_DESC_F_NEXT != 0
    }

    /// The buffer is a table of descriptors (VIRTQ_DESC_F_INDIRECT).
    #[inline(always)]
    pub fn is_indirect(&self) -> bool {
        self.flags & VRING_DESC_F_INDIRECT != 0
    }
}

/// The device's state of one split virtqueue: what the driver programmed through
/// `common_cfg`, and how far the device has got in the rings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SplitQueue {
    max_size: u16,
    size: u16,
    ready: bool,
    desc_table: u64,
    avail_ring: u64,
    used_ring: u64,
    next_avail: u16,
    next_used: u16,
    event_idx: bool,
    /// `next_used` when the last used-buffer interrupt decision was taken: with EVENT_IDX the
    /// device interrupts when `used_event` lies between it and `next_used` (2.7.10).
    signalled_used: u16,
}

impl SplitQueue {
    /// A queue whose size can be at most `max_size` (a power of two up to 32768).
    pub fn new(max_size: u16) -> Result<Self, RingError> {
        if !is_valid_size(max_size, MAX_QUEUE_SIZE) {
            return Err(RingError::Size(max_size));
        }
        Ok(SplitQueue {
            max_size,
            size: max_size,
            ready: false,
            desc_table: 0,
            avail_ring: 0,
            used_ring: 0,
            next_avail: 0,
            next_used: 0,
            event_idx: false,
            signalled_used: 0,
        })
    }

    /// Back to the state after construction (a device or queue reset): disabled, size at the
    /// maximum, addresses and indices 0 (virtio 1.2, 4.1.4.3.1).
    pub fn reset(&mut self) {
        *self = SplitQueue {
            max_size: self.max_size,
            ..SplitQueue::new(self.max_size).expect("max_size was validated")
        };
    }

    /// The largest queue size the device offers (`queue_size` after reset).
    pub fn max_size(&self) -> u16 {
        self.max_size
    }

    /// The queue size the driver chose (`queue_size`).
    pub fn size(&self) -> u16 {
        self.size
    }

    /// Set the size the driver chose: a power of two no larger than the maximum (2.7).
    pub fn set_size(&mut self, size: u16) -> Result<(), RingError> {
        if !is_valid_size(size, self.max_size) {
            return Err(RingError::Size(size));
        }
        self.size = size;
        Ok(())
    }

    /// Whether the driver enabled the queue (`queue_enable`).
    pub fn ready(&self) -> bool {
        self.ready
    }

    /// Record the driver's `queue_enable` write.
    pub fn set_ready(&mut self, ready: bool) {
        self.ready = ready;
    }

    /// Guest address of the descriptor table.
    pub fn desc_table(&self) -> u64 {
        self.desc_table
    }

    /// Guest address of the available ring (driver area).
    pub fn avail_ring(&self) -> u64 {
        self.avail_ring
    }

    /// Guest address of the used ring (device area).
    pub fn used_ring(&self) -> u64 {
        self.used_ring
    }

    /// Store a ring address as written; [`SplitQueue::validate`] checks it before use.
    pub fn set_address(&mut self, part: RingPart, addr: u64) {
        match part {
            RingPart::DescriptorTable => self.desc_table = addr,
            RingPart::AvailRing => self.avail_ring = addr,
            RingPart::UsedRing => self.used_ring = addr,
        }
    }

    /// The ring address of `part`.
    pub fn address(&self, part: RingPart) -> u64 {
        match part {
            RingPart::DescriptorTable => self.desc_table,
            RingPart::AvailRing => self.avail_ring,
            RingPart::UsedRing => self.used_ring,
        }
    }

    /// The next available-ring entry the device will read.
    pub fn next_avail(&self) -> u16 {
        self.next_avail
    }

    /// Set the next available index (snapshot restore).
    pub fn set_next_avail(&mut self, v: u16) {
        self.next_avail = v;
    }

    /// The next used-ring entry the device will write (and the `used.idx` it published).
    pub fn next_used(&self) -> u16 {
        self.next_used
    }

    /// Set `next_used`; the interrupt decision starts afresh from it.
    pub fn set_next_used(&mut self, v: u16) {
        self.next_used = v;
        self.signalled_used = v;
    }

    /// `next_used` at the last used-buffer interrupt decision.
    pub fn signalled_used(&self) -> u16 {
        self.signalled_used
    }

    /// Restore `signalled_used` (snapshot restore).
    pub fn set_signalled_used(&mut self, v: u16) {
        self.signalled_used = v;
    }

    /// VIRTIO_F_RING_EVENT_IDX was negotiated.
    pub fn event_idx_enabled(&self) -> bool {
        self.event_idx
    }

    /// Record whether VIRTIO_F_EVENT_IDX was negotiated for this queue's notifications.
    pub fn set_event_idx(&mut self, on: bool) {
        self.event_idx = on;
    }

    /// Check alignment (2.7.2: 16, 2 and 4 bytes) and that each area, `used_event` and
    /// `avail_event` included, is guest RAM.
    pub fn validate(&self, mem: &dyn GuestMemory) -> Result<(), RingError> {
        let size = self.size;
        for (part, addr, align, len) in [
            (
                RingPart::DescriptorTable,
                self.desc_table,
                DESC_SIZE,
                desc_table_len(size),
            ),
            (
                RingPart::AvailRing,
                self.avail_ring,
                AVAIL_ALIGN,
                avail_ring_len(size),
            ),
            (
                RingPart::UsedRing,
                self.used_ring,
                USED_ALIGN,
                used_ring_len(size),
            ),
        ] {
            if addr % align != 0 {
                return Err(RingError::Misaligned { part, addr, align });
            }
            if !mem.check_range(addr, len) {
                return Err(RingError::OutsideRam { part, addr, len });
            }
        }
        Ok(())
    }
}

fn is_valid_size(size: u16, max: u16) -> bool {
    size.is_power_of_two() && size <= max
}

/// Whether the driver wants an interrupt for the used buffers just published.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UsedNotification {
    /// Send it.
    Send,
    /// EVENT_IDX: `used_event` was not crossed (virtio 1.2, 2.7.10).
    SuppressedByEventIdx,
    /// No EVENT_IDX and `VRING_AVAIL_F_NO_INTERRUPT` set (virtio 1.2, 2.7.7.2).
    SuppressedByFlag,
}

/// A [`SplitQueue`] at work: the queue's state and the guest memory the device may access,
/// for one pass.
#[derive(Debug)]
pub struct Virtqueue<'a> {
    state: &'a mut SplitQueue,
    mem: Dma<'a>,
    /// `avail.idx` as last read in this pass, so a batch costs one acquire load.
    seen_avail: Option<u16>,
    /// The three ring areas, when guest memory is one flat region holding all of them.
    rings: Option<RingWindows<'a>>,
}

/// The ring areas of a queue checked once per pass against the flat region, so each ring
/// access compares an offset with the area's length instead of translating a guest address.
/// Anything outside them (or any memory without a flat region) takes the [`Dma`] path, which
/// decides exactly as before.
#[derive(Clone, Copy, Debug)]
struct RingWindows<'a> {
    desc: FlatWindow<'a>,
    avail: FlatWindow<'a>,
    used: FlatWindow<'a>,
}

impl<'a> RingWindows<'a> {
    #[inline]
    fn new(state: &SplitQueue, mem: &Dma<'a>) -> Option<Self> {
        if !state.ready {
            return None;
        }
        let size = state.size;
        Some(RingWindows {
            desc: mem.window(state.desc_table, desc_table_len(size))?,
            avail: mem.window(state.avail_ring, avail_ring_len(size))?,
            used: mem.window(state.used_ring, used_ring_len(size))?,
        })
    }
}

impl<'a> Virtqueue<'a> {
    /// The queue `state` over guest memory `mem`, for one round of processing.
    #[inline]
    pub fn new(state: &'a mut SplitQueue, mem: Dma<'a>) -> Self {
        let rings = RingWindows::new(state, &mem);
        Virtqueue {
            state,
            mem,
            seen_avail: None,
            rings,
        }
    }

    /// The queue size the driver chose: also the most chains one pass should take.
    #[inline]
    pub fn size(&self) -> u16 {
        self.state.size
    }

    /// Guest memory, for the buffers of the chains.
    #[inline]
    pub fn memory(&self) -> Dma<'a> {
        self.mem
    }

    /// The queue's state.
    pub fn state(&self) -> &SplitQueue {
        self.state
    }

    /// `base + offset` inside ring area `part`, or the error of an access past the end of
    /// the address space.
    #[inline(always)]
    fn at(part: RingPart, base: u64, offset: u64) -> Result<u64, RingError> {
        base.checked_add(offset).ok_or(RingError::Memory {
            part,
            source: MemoryError::range(base, 2),
        })
    }

    /// The 16-bit field at `offset` in the available ring (`flags`, `idx`, `used_event`),
    /// loaded atomically with `order` (`Relaxed` or `Acquire`).
    #[inline(always)]
    fn avail_load(&self, offset: u64, order: Ordering) -> Result<u16, RingError> {
        if let Some(r) = &self.rings
            && let Some(v) = r.avail.load_u16(offset as usize, order)
        {
            return Ok(v);
        }
        let addr = Self::at(RingPart::AvailRing, self.state.avail_ring, offset)?;
        match order {
            Ordering::Acquire => self.mem.load_acquire_u16(addr),
            _ => self.mem.load_u16(addr),
        }
        .map_err(|source| RingError::Memory {
            part: RingPart::AvailRing,
            source,
        })
    }

    /// Store the 16-bit field at `offset` in the used ring (`flags`, `idx`, `avail_event`)
    /// atomically with `order` (`Relaxed` or `Release`).
    #[inline(always)]
    fn used_store(&self, offset: u64, value: u16, order: Ordering) -> Result<(), RingError> {
        if let Some(r) = &self.rings
            && r.used.store_u16(offset as usize, value, order)
        {
            return Ok(());
        }
        let addr = Self::at(RingPart::UsedRing, self.state.used_ring, offset)?;
        match order {
            Ordering::Release => self.mem.store_release_u16(addr, value),
            _ => self.mem.store_u16(addr, value),
        }
        .map_err(|source| RingError::Memory {
            part: RingPart::UsedRing,
            source,
        })
    }

    /// The next available chain, or `None` when the driver has made nothing new available
    /// (or the queue is not ready). An available index more than the queue size ahead, or an
    /// available ring that cannot be read, is a corrupt ring (2.7.13.3, 2.1.2).
    #[inline]
    pub fn pop(&mut self) -> Result<Option<DescriptorChain<'a>>, RingError> {
        let s = &*self.state;
        if !s.ready {
            return Ok(None);
        }
        let next = s.next_avail;
        let avail_idx = match self.seen_avail {
            Some(seen) if seen != next => seen,
            _ => {
                let idx = self.avail_load(2, Ordering::Acquire)?;
                self.seen_avail = Some(idx);
                idx
            }
        };
        let s = &*self.state;
        let pending = avail_idx.wrapping_sub(next);
        if pending == 0 {
            return Ok(None);
        }
        if pending > s.size {
            return Err(RingError::AvailIndex {
                avail_idx,
                next_avail: next,
                size: s.size,
            });
        }
        // The size is a power of two, so the slot is a mask; the entry was written before the
        // index the acquire load above saw.
        let slot = u64::from(next & (s.size - 1));
        let entry_offset = AVAIL_HEADER + AVAIL_ELEM_SIZE * slot;
        let window_entry = self
            .rings
            .and_then(|r| r.avail.read_array::<2>(entry_offset as usize));
        let head = match window_entry {
            Some(b) => u16::from_le_bytes(b),
            None => {
                let entry = Self::at(RingPart::AvailRing, s.avail_ring, entry_offset)?;
                self.mem
                    .read_array::<2>(entry)
                    .map(u16::from_le_bytes)
                    .map_err(|source| RingError::Memory {
                        part: RingPart::AvailRing,
                        source,
                    })?
            }
        };
        self.state.next_avail = next.wrapping_add(1);
        Ok(Some(DescriptorChain::new(
            self.mem,
            self.state.desc_table,
            self.state.size,
            head,
            self.rings.map(|r| r.desc),
        )))
    }

    /// Publish a used entry for the chain headed by `head` with `len` bytes written, then
    /// `used.idx` with release ordering (2.7.8).
    #[inline]
    pub fn add_used(&mut self, head: u16, len: u32) -> Result<(), RingError> {
        let s = &mut *self.state;
        if head >= s.size {
            return Err(RingError::UsedHead { head, size: s.size });
        }
        let slot = u64::from(s.next_used & (s.size - 1));
        let elem_offset = USED_HEADER + USED_ELEM_SIZE * slot;
        let elem = (u64::from(len) << 32 | u64::from(head)).to_le_bytes();
        let in_window = self
            .rings
            .is_some_and(|r| r.used.write(elem_offset as usize, &elem));
        if !in_window {
            let at = Self::at(RingPart::UsedRing, s.used_ring, elem_offset)?;
            Self::at(RingPart::UsedRing, s.used_ring, 2)?;
            self.mem
                .write(at, &elem)
                .map_err(|source| RingError::Memory {
                    part: RingPart::UsedRing,
                    source,
                })?;
        }
        s.next_used = s.next_used.wrapping_add(1);
        let next_used = s.next_used;
        self.used_store(2, next_used, Ordering::Release)
    }

    /// Ask the driver for notifications again and say whether it made buffers available
    /// meanwhile. With EVENT_IDX the device publishes `avail_event` = how far it got
    /// (2.7.10); otherwise it clears `used.flags`. The full fence orders that store before
    /// the re-read of `avail.idx`, so a buffer made available in between is never missed.
    #[inline(always)]
    pub fn enable_notification(&mut self) -> Result<bool, RingError> {
        let s = &*self.state;
        let next_avail = s.next_avail;
        if s.event_idx {
            let avail_event = USED_HEADER + USED_ELEM_SIZE * u64::from(s.size);
            self.used_store(avail_event, next_avail, Ordering::Relaxed)?;
        } else {
            self.used_store(0, 0, Ordering::Relaxed)?;
        }
        fence(Ordering::SeqCst);
        let idx = self.avail_load(2, Ordering::Relaxed)?;
        self.seen_avail = None;
        Ok(idx != next_avail)
    }

    /// The used-buffer interrupt decision after publishing (virtio 1.2, 2.7.7.2 and 2.7.10).
    ///
    /// The used index was stored before this; the full fence keeps the read of the driver's
    /// suppression field (`used_event` or `avail.flags`) from being satisfied before that
    /// store is visible, else a driver that re-enables interrupts and then checks `used.idx`
    /// could miss the entry while the device misses its new `used_event`.
    #[inline(always)]
    pub fn used_notification(&mut self) -> Result<UsedNotification, RingError> {
        fence(Ordering::SeqCst);
        if self.state.event_idx {
            let used_event_at = AVAIL_HEADER + AVAIL_ELEM_SIZE * u64::from(self.state.size);
            let used_event = self.avail_load(used_event_at, Ordering::Relaxed)?;
            let s = &mut *self.state;
            let new = s.next_used;
            let old = s.signalled_used;
            s.signalled_used = new;
            // Interrupt when used_event lies in [old, new): the driver asked for the entry at
            // that index, and it was published since the last decision.
            return Ok(
                if new.wrapping_sub(used_event).wrapping_sub(1) < new.wrapping_sub(old) {
                    UsedNotification::Send
                } else {
                    UsedNotification::SuppressedByEventIdx
                },
            );
        }
        let flags = self.avail_load(0, Ordering::Relaxed)?;
        Ok(if flags & VRING_AVAIL_F_NO_INTERRUPT != 0 {
            UsedNotification::SuppressedByFlag
        } else {
            UsedNotification::Send
        })
    }
}

/// The descriptors of one available chain, in order, following NEXT and at most one
/// indirect table. Yields `Err` once if the chain is broken, then ends.
#[derive(Clone, Debug)]
pub struct DescriptorChain<'a> {
    mem: Dma<'a>,
    head: u16,
    table: u64,
    table_size: u16,
    next: u16,
    /// Descriptors the current table may still yield: a walk longer than the table is a loop.
    ttl: u16,
    /// The current table as a flat window, when guest memory holds all of it in its flat region.
    window: Option<FlatWindow<'a>>,
    indirect: bool,
    bytes: u32,
    done: bool,
}

impl<'a> DescriptorChain<'a> {
    #[inline]
    fn new(
        mem: Dma<'a>,
        table: u64,
        table_size: u16,
        head: u16,
        window: Option<FlatWindow<'a>>,
    ) -> Self {
        DescriptorChain {
            mem,
            head,
            table,
            table_size,
            next: head,
            ttl: table_size,
            window,
            indirect: false,
            bytes: 0,
            done: false,
        }
    }

    /// The descriptor index the driver made available: the `id` of the used entry.
    #[inline]
    pub fn head_index(&self) -> u16 {
        self.head
    }

    /// Guest memory, for the chain's buffers.
    #[inline]
    pub fn memory(&self) -> Dma<'a> {
        self.mem
    }

    // Inlined, like `enter_indirect`: an out-of-line `&mut self` call would keep the whole
    // walk's state in memory instead of registers.
    #[inline(always)]
    fn fail(&mut self, e: ChainError) -> Option<Result<Descriptor, ChainError>> {
        self.done = true;
        Some(Err(e))
    }

    /// Continue in the indirect table `desc` points at (2.7.5.3): it replaces the rest of the
    /// chain, so the NEXT flag of `desc` itself is not followed.
    #[inline(always)]
    fn enter_indirect(&mut self, desc: &Descriptor) -> Result<(), ChainError> {
        if self.indirect {
            return Err(ChainError::NestedIndirect);
        }
        let len = desc.len;
        if len == 0 || len % DESC_SIZE as u32 != 0 || len / DESC_SIZE as u32 > u32::from(u16::MAX) {
            return Err(ChainError::IndirectTable { len });
        }
        let entries = (len / DESC_SIZE as u32) as u16;
        self.table = desc.addr;
        self.window = self.mem.window(desc.addr, u64::from(len));
        self.table_size = entries;
        self.next = 0;
        self.ttl = entries;
        self.indirect = true;
        Ok(())
    }
}

impl Iterator for DescriptorChain<'_> {
    type Item = Result<Descriptor, ChainError>;

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        loop {
            if self.ttl == 0 {
                let limit = self.table_size;
                return self.fail(ChainError::TooLong { limit });
            }
            let index = self.next;
            if index >= self.table_size {
                let size = self.table_size;
                return self.fail(ChainError::IndexOutOfRange { index, size });
            }
            let offset = u64::from(index) * DESC_SIZE;
            let read = match self.window.and_then(|w| w.read_u128(offset as usize)) {
                Some(v) => Ok(v),
                None => match self.table.checked_add(offset) {
                    Some(addr) => self
                        .mem
                        .read_array::<16>(addr)
                        .map(u128::from_le_bytes)
                        .map_err(|e| (addr, e)),
                    None => Err((self.table, MemoryError::range(self.table, 16))),
                },
            };
            let desc = match read {
                Ok(v) => Descriptor::from_le_value(v),
                Err((addr, source)) => {
                    return self.fail(ChainError::Unreadable {
                        index,
                        addr,
                        source,
                    });
                }
            };
            if desc.is_indirect() {
                if let Err(e) = self.enter_indirect(&desc) {
                    return self.fail(e);
                }
                continue;
            }
            match self.bytes.checked_add(desc.len) {
                Some(b) => self.bytes = b,
                None => return self.fail(ChainError::TooLarge),
            }
            if desc.has_next() {
                self.next = desc.next;
                self.ttl -= 1;
            } else {
                self.done = true;
            }
            return Some(Ok(desc));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::VecMemory;
    use crate::testing::{NotFlat, RingAddrs, write_desc};

    const DESC: u64 = 0x1000;
    const AVAIL: u64 = 0x2000;
    const USED: u64 = 0x3000;

    fn queue(mem: &VecMemory, size: u16) -> SplitQueue {
        let mut q = SplitQueue::new(size).unwrap();
        q.set_address(RingPart::DescriptorTable, DESC);
        q.set_address(RingPart::AvailRing, AVAIL);
        q.set_address(RingPart::UsedRing, USED);
        q.validate(mem).unwrap();
        q.set_ready(true);
        q
    }

    /// The driver's side of the same rings (the test toolkit's writer).
    fn driver(mem: &VecMemory, size: u16) -> crate::testing::Ring<&VecMemory> {
        let addrs = RingAddrs {
            desc: DESC,
            avail: AVAIL,
            used: USED,
        };
        crate::testing::Ring::at(mem, 0, size, addrs)
    }

    fn desc(mem: &VecMemory, table: u64, i: u16, addr: u64, len: u32, flags: u16, next: u16) {
        write_desc(mem, table + 16 * u64::from(i), addr, len, flags, next);
    }

    /// virtio 1.2, 2.7.5 and 2.7.5.3: a direct descriptor followed into an indirect table.
    #[test]
    fn walks_a_chain_into_an_indirect_table_and_publishes_it() {
        let mem = VecMemory::new(0x10000);
        let mut q = queue(&mem, 4);
        let mut drv = driver(&mem, 4);
        desc(&mem, DESC, 0, 0x8000, 16, VRING_DESC_F_NEXT, 2);
        desc(&mem, DESC, 2, 0x5000, 32, VRING_DESC_F_INDIRECT, 0);
        desc(
            &mem,
            0x5000,
            0,
            0x9000,
            100,
            VRING_DESC_F_NEXT | VRING_DESC_F_WRITE,
            1,
        );
        desc(&mem, 0x5000, 1, 0xA000, 1, VRING_DESC_F_WRITE, 0);
        drv.make_available(0);
        let mut vq = Virtqueue::new(&mut q, Dma::new(&mem));
        let chain = vq.pop().unwrap().unwrap();
        assert_eq!(chain.head_index(), 0);
        let got: Vec<_> = chain.map(|d| d.map(|d| (d.addr, d.len))).collect();
        assert_eq!(
            got,
            vec![Ok((0x8000, 16)), Ok((0x9000, 100)), Ok((0xA000, 1))]
        );
        assert!(vq.pop().unwrap().is_none());
        vq.add_used(0, 101).unwrap();
        assert_eq!(mem.read_u16(USED + 2).unwrap(), 1);
        assert_eq!(mem.read_u64(USED + 4).unwrap(), 101 << 32);
    }

    /// virtio 1.2, 2.7.5.3.1 and 2.7.5.2: loops, nested indirect tables and chains over
    /// 2^32 - 1 bytes end the walk with an error after what was valid.
    #[test]
    fn broken_chains_end_in_an_error() {
        let mem = VecMemory::new(0x10000);
        let mut q = queue(&mem, 2);
        let mut drv = driver(&mem, 2);
        desc(&mem, DESC, 0, 0x8000, 1, VRING_DESC_F_NEXT, 1);
        desc(&mem, DESC, 1, 0x8000, 1, VRING_DESC_F_NEXT, 0);
        drv.make_available(0);
        let mut vq = Virtqueue::new(&mut q, Dma::new(&mem));
        let chain: Vec<_> = vq.pop().unwrap().unwrap().collect();
        assert_eq!(chain.len(), 3);
        assert_eq!(chain[2], Err(ChainError::TooLong { limit: 2 }));

        desc(&mem, DESC, 0, 0x5000, 16, VRING_DESC_F_INDIRECT, 0);
        desc(&mem, 0x5000, 0, 0x5000, 16, VRING_DESC_F_INDIRECT, 0);
        drv.make_available(0);
        let chain: Vec<_> = vq.pop().unwrap().unwrap().collect();
        assert_eq!(chain, vec![Err(ChainError::NestedIndirect)]);

        desc(&mem, DESC, 0, 0x8000, u32::MAX, VRING_DESC_F_NEXT, 1);
        desc(&mem, DESC, 1, 0x8000, 1, 0, 0);
        drv.make_available(0);
        let chain: Vec<_> = vq.pop().unwrap().unwrap().collect();
        assert_eq!(chain.len(), 2);
        assert_eq!(chain[1], Err(ChainError::TooLarge));

        drv.make_available(7);
        let chain: Vec<_> = vq.pop().unwrap().unwrap().collect();
        assert_eq!(
            chain,
            vec![Err(ChainError::IndexOutOfRange { index: 7, size: 2 })]
        );
        assert_eq!(
            vq.add_used(7, 0),
            Err(RingError::UsedHead { head: 7, size: 2 })
        );
    }

    /// virtio 1.2, 2.7.13.3: an available index more than a queue size ahead is corrupt.
    #[test]
    fn an_available_index_too_far_ahead_is_a_corrupt_ring() {
        let mem = VecMemory::new(0x10000);
        let mut q = queue(&mem, 4);
        mem.write_u16(AVAIL + 2, 5).unwrap();
        let mut vq = Virtqueue::new(&mut q, Dma::new(&mem));
        assert_eq!(
            vq.pop().unwrap_err(),
            RingError::AvailIndex {
                avail_idx: 5,
                next_avail: 0,
                size: 4
            }
        );
    }

    /// virtio 1.2, 2.7.10: with EVENT_IDX the device interrupts once `used_event` is crossed,
    /// and `enable_notification` publishes `avail_event`.
    #[test]
    fn event_idx_interrupts_when_used_event_is_crossed() {
        let mem = VecMemory::new(0x10000);
        let mut q = queue(&mem, 4);
        let mut drv = driver(&mem, 4);
        q.set_event_idx(true);
        desc(&mem, DESC, 0, 0x8000, 1, 0, 0);
        let used_event = AVAIL + 4 + 2 * 4;
        let mut vq = Virtqueue::new(&mut q, Dma::new(&mem));
        // used_event 1: the first entry does not interrupt, the second does.
        mem.write_u16(used_event, 1).unwrap();
        vq.add_used(0, 0).unwrap();
        assert_eq!(
            vq.used_notification().unwrap(),
            UsedNotification::SuppressedByEventIdx
        );
        vq.add_used(0, 0).unwrap();
        assert_eq!(vq.used_notification().unwrap(), UsedNotification::Send);
        drv.make_available(0);
        assert!(vq.pop().unwrap().is_some());
        assert!(!vq.enable_notification().unwrap());
        assert_eq!(mem.read_u16(USED + 4 + 8 * 4).unwrap(), 1, "avail_event");
    }

    /// virtio 1.2, 2.7.7.2: without EVENT_IDX, `VRING_AVAIL_F_NO_INTERRUPT` suppresses.
    #[test]
    fn no_interrupt_flag_suppresses_without_event_idx() {
        let mem = VecMemory::new(0x10000);
        let mut q = queue(&mem, 4);
        let mut vq = Virtqueue::new(&mut q, Dma::new(&mem));
        assert_eq!(vq.used_notification().unwrap(), UsedNotification::Send);
        mem.write_u16(AVAIL, VRING_AVAIL_F_NO_INTERRUPT).unwrap();
        assert_eq!(
            vq.used_notification().unwrap(),
            UsedNotification::SuppressedByFlag
        );
    }

    /// virtio 1.2, 2.7.5, 2.7.8 and 2.7.10: the ring windows of a flat memory and the plain
    /// guest-memory path agree on chains, used entries, `avail_event` and the interrupt
    /// decision, and a descriptor table that runs past the end of RAM still yields what lies
    /// inside it, then an unreadable descriptor.
    #[test]
    fn flat_windows_and_the_memory_path_decide_alike() {
        let run = |mem: &dyn GuestMemory, ram: &VecMemory| {
            let mut q = queue(ram, 4);
            q.set_event_idx(true);
            let mut drv = driver(ram, 4);
            desc(ram, DESC, 0, 0x8000, 16, VRING_DESC_F_NEXT, 1);
            desc(ram, DESC, 1, 0x9000, 8, VRING_DESC_F_WRITE, 0);
            drv.make_available(0);
            ram.write_u16(AVAIL + 4 + 2 * 4, 0).unwrap();
            let mut vq = Virtqueue::new(&mut q, Dma::new(mem));
            let chain = vq.pop().unwrap().unwrap();
            let got: Vec<_> = chain.map(|d| d.map(|d| (d.addr, d.len, d.flags))).collect();
            vq.add_used(0, 8).unwrap();
            let notify = vq.used_notification().unwrap();
            let more = vq.enable_notification().unwrap();
            let used = (
                ram.read_u16(USED + 2).unwrap(),
                ram.read_u64(USED + 4).unwrap(),
                ram.read_u16(USED + 4 + 8 * 4).unwrap(),
            );
            // A table of 4 entries whose last two lie past the end of RAM (0x10000).
            let mut q = queue(ram, 4);
            q.set_address(RingPart::DescriptorTable, 0x10000 - 32);
            desc(ram, 0x10000 - 32, 0, 0x8000, 1, VRING_DESC_F_NEXT, 1);
            desc(ram, 0x10000 - 32, 1, 0x8000, 1, VRING_DESC_F_NEXT, 2);
            let mut drv = driver(ram, 4);
            drv.make_available(0);
            let mut vq = Virtqueue::new(&mut q, Dma::new(mem));
            let cut: Vec<_> = vq
                .pop()
                .unwrap()
                .unwrap()
                .map(|d| d.map(|d| d.addr))
                .collect();
            (got, notify, more, used, cut)
        };
        let flat = VecMemory::new(0x10000);
        let plain = VecMemory::new(0x10000);
        let a = run(&flat, &flat);
        let b = run(&NotFlat(plain.clone()), &plain);
        assert_eq!(a, b);
        assert_eq!(
            a.0,
            vec![
                Ok((0x8000, 16, VRING_DESC_F_NEXT)),
                Ok((0x9000, 8, VRING_DESC_F_WRITE))
            ]
        );
        assert_eq!((a.1, a.2), (UsedNotification::Send, false));
        assert_eq!(a.3, (1, 8 << 32, 1));
        assert_eq!(a.4.len(), 3);
        assert_eq!(&a.4[..2], &[Ok(0x8000), Ok(0x8000)]);
        assert!(matches!(
            a.4[2],
            Err(ChainError::Unreadable {
                index: 2,
                addr: 0x10000,
                ..
            })
        ));
    }

    /// virtio 1.2, 2.7.2: alignment and placement are checked before the queue is used.
    #[test]
    fn validate_refuses_misaligned_and_outside_rings() {
        let mem = VecMemory::new(0x4000);
        let mut q = queue(&mem, 4);
        q.set_address(RingPart::DescriptorTable, DESC + 8);
        assert_eq!(
            q.validate(&mem),
            Err(RingError::Misaligned {
                part: RingPart::DescriptorTable,
                addr: DESC + 8,
                align: 16
            })
        );
        q.set_address(RingPart::DescriptorTable, DESC);
        q.set_address(RingPart::UsedRing, 0x4000 - 8);
        assert_eq!(
            q.validate(&mem),
            Err(RingError::OutsideRam {
                part: RingPart::UsedRing,
                addr: 0x4000 - 8,
                len: 4 + 8 * 4 + 2
            })
        );
        assert_eq!(q.set_size(3), Err(RingError::Size(3)));
        assert_eq!(q.set_size(8), Err(RingError::Size(8)));
        assert_eq!(SplitQueue::new(0).unwrap_err(), RingError::Size(0));
    }
}
