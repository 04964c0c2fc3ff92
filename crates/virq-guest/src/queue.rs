//! A minimal split-ring virtqueue driver (virtio 1.2 section 2.7).
//!
//! Ring memory is device-writable and therefore untrusted: the free list and the record of
//! in-flight chains live in driver-private memory, and every used entry is checked against it.
//!
//! Memory ordering (virtio 1.2 section 2.7.13): descriptors and the avail ring entry are written
//! before a release fence, and only then `avail.idx`; a full fence separates publishing from
//! reading the device's notification suppression; `used.idx` is read before an acquire fence
//! and the used entries after it. With a [`GuestRam`] backed by memory shared with a device
//! these fences are what order the accesses on the CPU.

use crate::access::{GuestRam, GuestRamExt, RamError};
use std::sync::atomic::{Ordering, fence};
use thiserror::Error;

pub use virq_spec::ring::{
    MAX_QUEUE_SIZE, VRING_AVAIL_F_NO_INTERRUPT, VRING_DESC_F_NEXT, VRING_DESC_F_WRITE,
    VRING_USED_F_NO_NOTIFY,
};

/// One buffer of a descriptor chain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Buffer {
    /// Guest-physical address of the buffer.
    pub addr: u64,
    /// Length in bytes.
    pub len: u32,
    /// Device writes into it (VRING_DESC_F_WRITE); otherwise the device reads it.
    pub device_writes: bool,
}

/// A completed chain taken from the used ring.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UsedElem {
    /// The queue the chain was on.
    pub queue: u16,
    /// The caller's token given to [`SplitQueue::add`].
    pub token: u64,
    /// Head descriptor index.
    pub head: u16,
    /// Bytes the device says it wrote.
    pub len: u32,
}

/// Where a queue's notification goes: a 16-bit write of the queue index.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NotifyAddress {
    /// BAR of the notification structure.
    pub bar: u8,
    /// Offset of the queue's notify address in that BAR.
    pub offset: u64,
}

/// Guest-physical addresses of the three parts of a split ring.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RingAddresses {
    /// Descriptor table (`queue_desc`).
    pub desc: u64,
    /// Available ring, the driver area (`queue_driver`).
    pub avail: u64,
    /// Used ring, the device area (`queue_device`).
    pub used: u64,
}

/// Split-ring misuse by the caller or misbehaviour by the device.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum QueueError {
    /// `add` was given no buffer.
    #[error("queue {queue}: empty descriptor chain")]
    EmptyChain {
        /// The queue.
        queue: u16,
    },
    /// The chain needs more descriptors than are free.
    #[error("queue {queue}: chain of {needed} descriptors but only {free} free")]
    QueueFull {
        /// The queue.
        queue: u16,
        /// Descriptors needed.
        needed: usize,
        /// Descriptors free.
        free: u16,
    },
    #[error(
        "queue {queue}: device-readable buffer {index} follows a device-writable one (virtio 1.2 2.7.4.2)"
    )]
    /// A device-readable buffer comes after a device-writable one.
    ReadableAfterWritable {
        /// The queue.
        queue: u16,
        /// Position of the offending buffer in the chain.
        index: usize,
    },
    /// The device returned a used id that is not the head of a chain in flight.
    #[error("queue {queue}: device returned used id {id}, which is not an in-flight head")]
    BadUsedId {
        /// The queue.
        queue: u16,
        /// The id in the used element.
        id: u32,
    },
    /// `used.idx` moved by more than the ring size: the device is broken.
    #[error("queue {queue}: used.idx jumped from {last} to {now}, beyond the ring size {size}")]
    UsedIdxJump {
        /// The queue.
        queue: u16,
        /// `used.idx` last seen.
        last: u16,
        /// `used.idx` now.
        now: u16,
        /// The queue size.
        size: u16,
    },
    /// Guest RAM refused a ring access.
    #[error(transparent)]
    Ram(#[from] RamError),
}

#[derive(Clone, Copy, Debug)]
struct InFlight {
    token: u64,
    tail: u16,
    count: u16,
}

/// `struct virtq_desc` (virtio 1.2, 2.7.5) as the 16 little-endian bytes the table holds, so a
/// descriptor is one write to guest RAM.
#[inline]
fn descriptor(addr: u64, len: u32, flags: u16, next: u16) -> [u8; 16] {
    let mut d = [0u8; 16];
    d[..8].copy_from_slice(&addr.to_le_bytes());
    d[8..12].copy_from_slice(&len.to_le_bytes());
    d[12..14].copy_from_slice(&flags.to_le_bytes());
    d[14..].copy_from_slice(&next.to_le_bytes());
    d
}

/// `vring_need_event`: has `new` just passed `event`, given the previous index `old`?
pub fn need_event(event: u16, new: u16, old: u16) -> bool {
    new.wrapping_sub(event).wrapping_sub(1) < new.wrapping_sub(old)
}

/// Driver-side state of one split virtqueue.
#[derive(Clone, Debug)]
pub struct SplitQueue {
    index: u16,
    size: u16,
    rings: RingAddresses,
    notify: NotifyAddress,
    event_idx: bool,
    next: Vec<u16>,
    free_head: u16,
    num_free: u16,
    in_flight: Vec<Option<InFlight>>,
    avail_idx: u16,
    kicked_idx: u16,
    last_used: u16,
    /// Whether the driver wants used-buffer interrupts for this queue (virtio 1.2, 2.7.7).
    interrupts: bool,
}

impl SplitQueue {
    /// Bytes of the descriptor table, avail ring and used ring for `size` entries.
    pub fn ring_bytes(size: u16) -> (u64, u64, u64) {
        let n = u64::from(size);
        (16 * n, 6 + 2 * n, 6 + 8 * n)
    }

    /// A queue whose rings live at `rings`; call [`SplitQueue::init_rings`] before use.
    pub fn new(
        index: u16,
        size: u16,
        rings: RingAddresses,
        notify: NotifyAddress,
        event_idx: bool,
    ) -> Self {
        let mut q = Self {
            index,
            size,
            rings,
            notify,
            event_idx,
            next: Vec::new(),
            free_head: 0,
            num_free: 0,
            in_flight: Vec::new(),
            avail_idx: 0,
            kicked_idx: 0,
            last_used: 0,
            interrupts: true,
        };
        q.reset_state();
        q
    }

    fn reset_state(&mut self) {
        self.next = (1..=self.size).collect();
        self.free_head = 0;
        self.num_free = self.size;
        self.in_flight = vec![None; usize::from(self.size)];
        self.avail_idx = 0;
        self.kicked_idx = 0;
        self.last_used = 0;
    }

    /// Zero the rings and forget every in-flight chain (after a device reset the device has
    /// forgotten them too); returns the tokens that will never complete.
    pub fn init_rings<M: GuestRam + ?Sized>(
        &mut self,
        ram: &mut M,
    ) -> Result<Vec<u64>, QueueError> {
        let lost = self.in_flight.iter().flatten().map(|f| f.token).collect();
        let (d, a, u) = Self::ring_bytes(self.size);
        ram.write(self.rings.desc, &vec![0; d as usize])?;
        ram.write(self.rings.avail, &vec![0; a as usize])?;
        ram.write(self.rings.used, &vec![0; u as usize])?;
        self.reset_state();
        // Zeroed rings ask for every interrupt; keep the driver's choice across the reset.
        if !self.interrupts {
            self.disable_interrupts(ram)?;
        }
        Ok(lost)
    }

    /// The queue's index (`queue_select`).
    pub fn index(&self) -> u16 {
        self.index
    }
    /// Queue size in entries.
    pub fn size(&self) -> u16 {
        self.size
    }
    /// Guest-physical addresses of the three ring parts.
    pub fn rings(&self) -> RingAddresses {
        self.rings
    }
    /// Where a notification of this queue is written.
    pub fn notify_address(&self) -> NotifyAddress {
        self.notify
    }
    /// Descriptors free for `add`.
    pub fn num_free(&self) -> u16 {
        self.num_free
    }
    /// VIRTIO_F_EVENT_IDX was negotiated: `used_event`/`avail_event` replace the flags.
    pub fn event_idx(&self) -> bool {
        self.event_idx
    }
    /// Whether the driver asked for used-buffer interrupts ([`SplitQueue::enable_interrupts`]).
    pub fn interrupts_enabled(&self) -> bool {
        self.interrupts
    }
    /// Carry the interrupt choice of a previous instance of this queue (across a rebuild).
    pub fn set_interrupts_wanted(&mut self, wanted: bool) {
        self.interrupts = wanted;
    }
    /// Chains added and not yet completed.
    pub fn in_flight(&self) -> usize {
        self.in_flight.iter().flatten().count()
    }

    fn used_event_addr(&self) -> u64 {
        self.rings.avail + 4 + 2 * u64::from(self.size)
    }
    fn avail_event_addr(&self) -> u64 {
        self.rings.used + 4 + 8 * u64::from(self.size)
    }

    /// Ring position of free-running index `idx` (`idx % size`): a mask for the power-of-two
    /// sizes a split ring has (virtio 1.2, 2.7), a division only for a size the device should
    /// not have offered.
    #[inline]
    fn ring_slot(&self, idx: u16) -> u16 {
        if self.size.is_power_of_two() {
            idx & (self.size - 1)
        } else {
            idx % self.size
        }
    }

    /// Descriptor `id` for buffer `b`, with `flags` besides its direction, pointing at `next`.
    #[inline(always)]
    fn write_descriptor<M: GuestRam + ?Sized>(
        &self,
        ram: &mut M,
        id: u16,
        b: &Buffer,
        flags: u16,
        next: u16,
    ) -> Result<(), RamError> {
        let write = if b.device_writes {
            VRING_DESC_F_WRITE
        } else {
            0
        };
        let at = self.rings.desc + 16 * u64::from(id);
        ram.write(at, &descriptor(b.addr, b.len, flags | write, next))
    }

    /// Put a chain on the descriptor table and publish its head in the avail ring.
    /// Device-readable buffers must come before device-writable ones.
    pub fn add<M: GuestRam + ?Sized>(
        &mut self,
        ram: &mut M,
        bufs: &[Buffer],
        token: u64,
    ) -> Result<u16, QueueError> {
        let queue = self.index;
        // Every buffer but the last links to the next free descriptor.
        let Some((last, linked)) = bufs.split_last() else {
            return Err(QueueError::EmptyChain { queue });
        };
        if bufs.len() > usize::from(self.num_free) {
            return Err(QueueError::QueueFull {
                queue,
                needed: bufs.len(),
                free: self.num_free,
            });
        }
        if let Some(index) = bufs
            .windows(2)
            .position(|w| w[0].device_writes && !w[1].device_writes)
        {
            return Err(QueueError::ReadableAfterWritable {
                queue,
                index: index + 1,
            });
        }
        let head = self.free_head;
        let mut id = head;
        for b in linked {
            let next = self.next[usize::from(id)];
            self.write_descriptor(ram, id, b, VRING_DESC_F_NEXT, next)?;
            id = next;
        }
        self.write_descriptor(ram, id, last, 0, 0)?;
        self.free_head = self.next[usize::from(id)];
        self.in_flight[usize::from(head)] = Some(InFlight {
            token,
            tail: id,
            count: bufs.len() as u16,
        });
        self.num_free -= bufs.len() as u16;
        let slot = self.rings.avail + 4 + 2 * u64::from(self.ring_slot(self.avail_idx));
        ram.write_u16(slot, head)?;
        // The device must see the descriptors and the ring entry before the new index.
        fence(Ordering::Release);
        self.avail_idx = self.avail_idx.wrapping_add(1);
        ram.write_u16(self.rings.avail + 2, self.avail_idx)?;
        Ok(head)
    }

    /// Whether the device asked to be notified about what was published since the last call
    /// (EVENT_IDX `avail_event`, or `VRING_USED_F_NO_NOTIFY`).
    pub fn needs_notify<M: GuestRam + ?Sized>(&mut self, ram: &mut M) -> Result<bool, QueueError> {
        // Publishing must be globally visible before reading the device's suppression state.
        fence(Ordering::SeqCst);
        let old = self.kicked_idx;
        let new = self.avail_idx;
        self.kicked_idx = new;
        if old == new {
            return Ok(false);
        }
        if self.event_idx {
            let avail_event = ram.read_u16(self.avail_event_addr())?;
            Ok(need_event(avail_event, new, old))
        } else {
            Ok(ram.read_u16(self.rings.used)? & VRING_USED_F_NO_NOTIFY == 0)
        }
    }

    /// Whether the used ring holds entries not yet collected.
    #[inline(always)]
    pub fn has_used<M: GuestRam + ?Sized>(&self, ram: &mut M) -> Result<bool, QueueError> {
        Ok(ram.read_u16(self.rings.used + 2)? != self.last_used)
    }

    /// Take one used entry, checking it names an in-flight head.
    pub fn pop_used<M: GuestRam + ?Sized>(
        &mut self,
        ram: &mut M,
    ) -> Result<Option<UsedElem>, QueueError> {
        let now = self.used_idx(ram)?;
        if now == self.last_used {
            return Ok(None);
        }
        self.take_used(ram).map(Some)
    }

    /// `used.idx`, refused when it claims more new entries than the ring holds.
    #[inline(always)]
    fn used_idx<M: GuestRam + ?Sized>(&self, ram: &mut M) -> Result<u16, QueueError> {
        let now = ram.read_u16(self.rings.used + 2)?;
        if now.wrapping_sub(self.last_used) > self.size {
            return Err(QueueError::UsedIdxJump {
                queue: self.index,
                last: self.last_used,
                now,
                size: self.size,
            });
        }
        Ok(now)
    }

    /// Take the used entry at `last_used`, which a `used.idx` just read covers.
    #[inline(always)]
    fn take_used<M: GuestRam + ?Sized>(&mut self, ram: &mut M) -> Result<UsedElem, QueueError> {
        // Entries are read only after the index that covers them.
        fence(Ordering::Acquire);
        let at = self.rings.used + 4 + 8 * u64::from(self.ring_slot(self.last_used));
        // `struct virtq_used_elem { le32 id; le32 len; }`, read in one access.
        let mut elem = [0u8; 8];
        ram.read(at, &mut elem)?;
        let [i0, i1, i2, i3, l0, l1, l2, l3] = elem;
        let id = u32::from_le_bytes([i0, i1, i2, i3]);
        let len = u32::from_le_bytes([l0, l1, l2, l3]);
        let bad = || QueueError::BadUsedId {
            queue: self.index,
            id,
        };
        let slot = usize::try_from(id).map_err(|_| bad())?;
        let flight = self
            .in_flight
            .get_mut(slot)
            .and_then(Option::take)
            .ok_or_else(bad)?;
        self.next[usize::from(flight.tail)] = self.free_head;
        self.free_head = id as u16;
        self.num_free += flight.count;
        self.last_used = self.last_used.wrapping_add(1);
        Ok(UsedElem {
            queue: self.index,
            token: flight.token,
            head: id as u16,
            len,
        })
    }

    /// Ask the device not to interrupt for this queue: `VRING_AVAIL_F_NO_INTERRUPT`, or with
    /// EVENT_IDX a `used_event` already behind the device so it is not crossed again soon.
    pub fn disable_interrupts<M: GuestRam + ?Sized>(
        &mut self,
        ram: &mut M,
    ) -> Result<(), QueueError> {
        self.interrupts = false;
        if self.event_idx {
            ram.write_u16(self.used_event_addr(), self.last_used.wrapping_sub(1))?;
        } else {
            ram.write_u16(self.rings.avail, VRING_AVAIL_F_NO_INTERRUPT)?;
        }
        Ok(())
    }

    /// Ask for an interrupt on the next used entry (`flags = 0`, or `used_event = last seen`).
    /// Returns true when entries arrived meanwhile, so the caller must drain again rather than
    /// wait for an interrupt that may already have been suppressed.
    #[inline(always)]
    pub fn enable_interrupts<M: GuestRam + ?Sized>(
        &mut self,
        ram: &mut M,
    ) -> Result<bool, QueueError> {
        self.interrupts = true;
        if self.event_idx {
            ram.write_u16(self.used_event_addr(), self.last_used)?;
        } else {
            ram.write_u16(self.rings.avail, 0)?;
        }
        fence(Ordering::SeqCst);
        self.has_used(ram)
    }

    /// Take every used entry into `out`, then re-arm as the driver wants and re-check, until
    /// nothing arrived in between (virtio 1.2, 2.7.14): with EVENT_IDX a `used_event` left
    /// behind `used.idx` would suppress every later interrupt, so the drain never stops short.
    /// With interrupts off the suppression is re-applied instead and the drain stops.
    #[inline]
    pub fn drain<M: GuestRam + ?Sized>(
        &mut self,
        ram: &mut M,
        out: &mut Vec<UsedElem>,
    ) -> Result<usize, QueueError> {
        let start = out.len();
        loop {
            // One read of `used.idx` covers every entry up to it.
            let now = self.used_idx(ram)?;
            while self.last_used != now {
                out.push(self.take_used(ram)?);
            }
            if !self.interrupts {
                self.disable_interrupts(ram)?;
                break;
            }
            if !self.enable_interrupts(ram)? {
                break;
            }
        }
        Ok(out.len() - start)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::access::VecRam;

    fn queue(event_idx: bool) -> (SplitQueue, VecRam) {
        let ram = VecRam::new(0x10000, 0x1000);
        let rings = RingAddresses {
            desc: 0x10000,
            avail: 0x10100,
            used: 0x10200,
        };
        let notify = NotifyAddress {
            bar: 0,
            offset: 0x1000,
        };
        (SplitQueue::new(0, 4, rings, notify, event_idx), ram)
    }

    /// A queue whose rings are laid out and zeroed, as the driver leaves them before
    /// queue_enable.
    fn ready_queue(event_idx: bool) -> (SplitQueue, VecRam) {
        let (mut q, mut ram) = queue(event_idx);
        let lost = q.init_rings(&mut ram).unwrap();
        assert!(lost.is_empty(), "a new queue has nothing in flight");
        (q, ram)
    }

    /// One byte the device reads (no VRING_DESC_F_WRITE).
    const ONE_BYTE_READ: Buffer = Buffer {
        addr: 0,
        len: 1,
        device_writes: false,
    };

    /// A device's side of the used ring, written by hand.
    fn device_use(ram: &mut VecRam, q: &SplitQueue, id: u32, len: u32) {
        let used = q.rings().used;
        let idx = ram.read_u16(used + 2).unwrap();
        let at = used + 4 + 8 * u64::from(idx % q.size());
        ram.write_u32(at, id).unwrap();
        ram.write_u32(at + 4, len).unwrap();
        ram.write_u16(used + 2, idx.wrapping_add(1)).unwrap();
    }

    #[test]
    fn add_writes_descriptors_and_avail_virtio_1_2_2_7_13() {
        let (mut q, mut ram) = ready_queue(false);
        let bufs = [
            Buffer {
                addr: 0x5000,
                len: 16,
                device_writes: false,
            },
            Buffer {
                addr: 0x6000,
                len: 512,
                device_writes: true,
            },
        ];
        let head = q.add(&mut ram, &bufs, 77).unwrap();
        assert_eq!(head, 0);
        assert_eq!(ram.read_u64(0x10000).unwrap(), 0x5000);
        assert_eq!(ram.read_u32(0x10008).unwrap(), 16);
        assert_eq!(ram.read_u16(0x1000C).unwrap(), VRING_DESC_F_NEXT);
        assert_eq!(ram.read_u16(0x1000E).unwrap(), 1);
        assert_eq!(ram.read_u64(0x10010).unwrap(), 0x6000);
        assert_eq!(ram.read_u16(0x1001C).unwrap(), VRING_DESC_F_WRITE);
        assert_eq!(ram.read_u16(0x10102).unwrap(), 1, "avail.idx");
        assert_eq!(ram.read_u16(0x10104).unwrap(), 0, "avail.ring[0]");
        assert_eq!(q.num_free(), 2);
        assert!(q.needs_notify(&mut ram).unwrap());
        assert!(!q.needs_notify(&mut ram).unwrap(), "nothing new since");

        device_use(&mut ram, &q, 0, 100);
        let e = q.pop_used(&mut ram).unwrap().unwrap();
        assert_eq!(
            e,
            UsedElem {
                queue: 0,
                token: 77,
                head: 0,
                len: 100
            }
        );
        assert_eq!(q.num_free(), 4);
        assert_eq!(q.pop_used(&mut ram).unwrap(), None);
    }

    #[test]
    fn chain_rules_are_enforced() {
        let (mut q, mut ram) = ready_queue(false);
        assert_eq!(
            q.add(&mut ram, &[], 0),
            Err(QueueError::EmptyChain { queue: 0 })
        );
        let w = Buffer {
            addr: 0,
            len: 1,
            device_writes: true,
        };
        let r = Buffer {
            device_writes: false,
            ..w
        };
        assert_eq!(
            q.add(&mut ram, &[w, r], 0),
            Err(QueueError::ReadableAfterWritable { queue: 0, index: 1 })
        );
        assert!(matches!(
            q.add(&mut ram, &[r; 5], 0),
            Err(QueueError::QueueFull { .. })
        ));
        for t in 0..4 {
            q.add(&mut ram, &[r], t).unwrap();
        }
        assert!(matches!(
            q.add(&mut ram, &[r], 9),
            Err(QueueError::QueueFull { free: 0, .. })
        ));
    }

    #[test]
    fn device_lies_are_caught() {
        let (mut q, mut ram) = ready_queue(false);
        let r = ONE_BYTE_READ;
        q.add(&mut ram, &[r], 1).unwrap();
        device_use(&mut ram, &q, 3, 0);
        assert_eq!(
            q.pop_used(&mut ram),
            Err(QueueError::BadUsedId { queue: 0, id: 3 })
        );
        let (mut q, mut ram) = ready_queue(false);
        ram.write_u16(q.rings().used + 2, 9).unwrap();
        assert!(matches!(
            q.pop_used(&mut ram),
            Err(QueueError::UsedIdxJump { now: 9, .. })
        ));
    }

    #[test]
    fn no_interrupt_flag_toggles_without_event_idx() {
        let (mut q, mut ram) = ready_queue(false);
        q.disable_interrupts(&mut ram).unwrap();
        assert_eq!(
            ram.read_u16(q.rings().avail).unwrap(),
            VRING_AVAIL_F_NO_INTERRUPT
        );
        assert!(!q.enable_interrupts(&mut ram).unwrap());
        assert_eq!(ram.read_u16(q.rings().avail).unwrap(), 0);
    }

    #[test]
    fn event_idx_writes_used_event_and_reads_avail_event_virtio_1_2_2_7_10() {
        let (mut q, mut ram) = ready_queue(true);
        let r = ONE_BYTE_READ;
        q.add(&mut ram, &[r], 1).unwrap();
        q.add(&mut ram, &[r], 2).unwrap();
        // Device wants a kick when avail idx passes 0 (avail_event = 0): old 0 -> new 2 crosses.
        assert!(q.needs_notify(&mut ram).unwrap());
        // Device now asks for a kick only after index 5.
        ram.write_u16(q.rings().used + 4 + 8 * 4, 5).unwrap();
        q.add(&mut ram, &[r], 3).unwrap();
        assert!(!q.needs_notify(&mut ram).unwrap());
        device_use(&mut ram, &q, 0, 0);
        q.pop_used(&mut ram).unwrap().unwrap();
        assert!(!q.enable_interrupts(&mut ram).unwrap());
        assert_eq!(ram.read_u16(q.rings().avail + 4 + 8).unwrap(), 1);
        q.disable_interrupts(&mut ram).unwrap();
        assert_eq!(ram.read_u16(q.rings().avail + 4 + 8).unwrap(), 0);
        assert_eq!(ram.read_u16(q.rings().avail).unwrap(), 0, "flags stay 0");
        device_use(&mut ram, &q, 1, 0);
        assert!(q.enable_interrupts(&mut ram).unwrap(), "arrived meanwhile");
    }

    #[test]
    fn drain_takes_a_batch_in_order_and_rearms_virtio_1_2_2_7_14() {
        let (mut q, mut ram) = ready_queue(false);
        q.disable_interrupts(&mut ram).unwrap();
        q.set_interrupts_wanted(true);
        let r = Buffer {
            addr: 0x7000,
            len: 8,
            device_writes: true,
        };
        let heads: Vec<u16> = (0..3)
            .map(|t| q.add(&mut ram, &[r], 10 + t).unwrap())
            .collect();
        // The device completes them out of order, with lengths of its own.
        for (&h, len) in heads.iter().rev().zip([30, 20, 10]) {
            device_use(&mut ram, &q, u32::from(h), len);
        }
        let mut out = vec![UsedElem {
            queue: 9,
            token: 0,
            head: 0,
            len: 0,
        }];
        assert_eq!(q.drain(&mut ram, &mut out).unwrap(), 3);
        let got: Vec<(u64, u16, u32)> = out[1..].iter().map(|e| (e.token, e.head, e.len)).collect();
        assert_eq!(got, vec![(12, 2, 30), (11, 1, 20), (10, 0, 10)]);
        assert_eq!(out[0].queue, 9, "what was in the buffer stays");
        assert_eq!(q.num_free(), 4);
        assert_eq!(ram.read_u16(q.rings().avail).unwrap(), 0, "re-armed");
        assert_eq!(q.drain(&mut ram, &mut out).unwrap(), 0);
    }

    #[test]
    fn a_bad_entry_in_a_batch_keeps_the_good_ones_before_it() {
        let (mut q, mut ram) = ready_queue(false);
        let r = ONE_BYTE_READ;
        let h = q.add(&mut ram, &[r], 5).unwrap();
        device_use(&mut ram, &q, u32::from(h), 0);
        device_use(&mut ram, &q, 3, 0);
        let mut out = Vec::new();
        assert_eq!(
            q.drain(&mut ram, &mut out),
            Err(QueueError::BadUsedId { queue: 0, id: 3 })
        );
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].token, 5);
    }

    #[test]
    fn a_queue_works_through_a_trait_object_too() {
        let (mut q, mut ram) = queue(true);
        let dynamic: &mut dyn GuestRam = &mut ram;
        q.init_rings(dynamic).unwrap();
        let r = Buffer {
            addr: 0x1234_5678_9ABC,
            len: 0xDEAD,
            device_writes: true,
        };
        q.add(dynamic, &[r], 1).unwrap();
        assert!(q.needs_notify(dynamic).unwrap());
        assert_eq!(ram.read_u64(0x10000).unwrap(), 0x1234_5678_9ABC);
        assert_eq!(ram.read_u32(0x10008).unwrap(), 0xDEAD);
        assert_eq!(ram.read_u16(0x1000C).unwrap(), VRING_DESC_F_WRITE);
        assert_eq!(ram.read_u16(0x1000E).unwrap(), 0, "last: no next");
    }

    #[test]
    fn need_event_wraps() {
        assert!(need_event(0, 1, 0));
        assert!(!need_event(1, 1, 0));
        assert!(need_event(0xFFFF, 0, 0xFFFF));
        assert!(!need_event(5, 3, 0));
    }

    #[test]
    fn reinit_returns_lost_tokens() {
        let (mut q, mut ram) = ready_queue(false);
        let r = ONE_BYTE_READ;
        q.add(&mut ram, &[r], 41).unwrap();
        q.add(&mut ram, &[r, r], 42).unwrap();
        let mut lost = q.init_rings(&mut ram).unwrap();
        lost.sort();
        assert_eq!(lost, vec![41, 42]);
        assert_eq!(q.num_free(), 4);
        assert_eq!(ram.read_u16(q.rings().avail + 2).unwrap(), 0);
    }
}
