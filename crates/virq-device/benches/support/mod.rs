//! The hot-path benchmark's two subjects, shared with the allocation test
//! (`tests/alloc_free.rs` includes this file with `#[path]`).
//!
//! * [`Live`]: virq's transport, built and brought up with the crate's test toolkit
//!   (`virq_device::testing`) the way a guest does it, over virq's own [`VecMemory`] (and, with
//!   the `vm-memory` feature, over `GuestMemoryMmap` too). Each cycle the driver re-posts
//!   descriptor 0 (a 512-byte device-readable buffer) with the toolkit's ring writer, with
//!   EVENT_IDX re-arms `used_event` so the completion interrupts, and writes the notify
//!   register.
//! * The baseline: bare rust-vmm `virtio-queue` over `GuestMemoryMmap`, the only memory it
//!   takes. Its driver half makes the same three stores (available entry, `used_event` when
//!   asked, release of `avail.idx`) through vm-memory, since no virq code may run on that side.

#![allow(dead_code)]

use std::sync::Arc;
use std::sync::atomic::Ordering;

use virq_device::testing::{Rig, Ring, WalkingBackend, live_queue};
use virq_device::{GuestMemory, InterruptSink, VecMemory, features};
use virtio_queue::{Queue, QueueT};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

/// Guest RAM as the baseline's `virtio-queue` needs it.
pub type MmapRam = GuestMemoryMmap<()>;

pub const RAM_SIZE: usize = 1 << 20;
pub const QUEUE_SIZE: u16 = 256;
/// The buffer descriptor 0 points at, on both sides.
const BUFFER: u64 = 0x8_0000;

/// A live device: queue 0 of [`QUEUE_SIZE`] entries, MSI-X on, descriptor 0 written.
pub struct Live<M = VecMemory, S = virq_device::testing::NullInterruptSink> {
    pub rig: Rig<M, S>,
    pub ring: Ring<M>,
    notify: u64,
    rearm: bool,
}

impl<M: GuestMemory + Clone + 'static, S: InterruptSink + 'static> Live<M, S> {
    /// With `event_idx` the driver negotiates VIRTIO_F_RING_EVENT_IDX and keeps `used_event`
    /// armed.
    pub fn new(mem: M, sink: Arc<S>, event_idx: bool) -> Self {
        let extra = if event_idx {
            features::RING_EVENT_IDX
        } else {
            0
        };
        let (rig, ring, notify) = live_queue(
            Box::new(WalkingBackend::default()),
            mem,
            sink,
            QUEUE_SIZE,
            extra,
        );
        ring.set_desc(0, BUFFER, 512, 0, 0);
        Live {
            rig,
            ring,
            notify,
            rearm: event_idx,
        }
    }

    /// One transport cycle: the driver re-posts and writes the notify register; the device
    /// pops, completes, publishes, decides and sends the message.
    #[inline(always)]
    pub fn cycle(&mut self) {
        if self.rearm {
            self.ring.set_used_event(self.ring.next_avail());
        }
        self.ring.make_available(0);
        self.rig.dev.mmio_write(self.notify, &0u16.to_le_bytes());
    }

    /// Leave `used_event` where it is from now on, so EVENT_IDX suppresses the interrupts.
    pub fn stop_rearming(&mut self) {
        self.rearm = false;
    }
}

/// Ring placement of the baseline's queue in guest RAM.
const DESC: u64 = 0x2_0000;
const AVAIL: u64 = 0x2_1000;
const USED: u64 = 0x2_2000;

/// The baseline's driver half: the available index it publishes next.
#[derive(Debug, Default)]
pub struct BareDriver {
    avail_idx: u16,
}

impl BareDriver {
    /// Re-post descriptor 0, then publish the index with release ordering.
    #[inline(always)]
    pub fn post(&mut self, mem: &MmapRam) {
        let slot = u64::from(self.avail_idx % QUEUE_SIZE);
        let store = |addr: u64, v: u16, order| mem.store(v.to_le(), GuestAddress(addr), order);
        store(AVAIL + 4 + 2 * slot, 0, Ordering::Relaxed).unwrap();
        self.avail_idx = self.avail_idx.wrapping_add(1);
        store(AVAIL + 2, self.avail_idx, Ordering::Release).unwrap();
    }
}

/// What the baseline does per available chain: pop it, read its descriptors, complete it
/// (the same work as `WalkingBackend` on virq's ring).
#[inline(always)]
pub fn drain(queue: &mut Queue, mem: &MmapRam) -> Result<u16, virtio_queue::Error> {
    let budget = queue.size();
    let mut used = 0u16;
    while used < budget {
        let Some(chain) = queue.pop_descriptor_chain(mem) else {
            break;
        };
        let head = chain.head_index();
        let mut bytes = 0u64;
        for desc in chain {
            bytes += u64::from(desc.len());
        }
        std::hint::black_box(bytes);
        queue.add_used(mem, head, 0)?;
        used += 1;
    }
    Ok(used)
}

/// A bare `virtio-queue` queue with descriptor 0 written and empty rings, ready.
pub fn baseline_queue(mem: &MmapRam) -> (Queue, BareDriver) {
    let mut d = [0u8; 16];
    d[0..8].copy_from_slice(&BUFFER.to_le_bytes());
    d[8..12].copy_from_slice(&512u32.to_le_bytes());
    mem.write_slice(&d, GuestAddress(DESC)).unwrap();
    mem.write_slice(&[0u8; 4 + 2 * QUEUE_SIZE as usize + 2], GuestAddress(AVAIL))
        .unwrap();
    mem.write_slice(&[0u8; 4 + 8 * QUEUE_SIZE as usize + 2], GuestAddress(USED))
        .unwrap();
    let mut q = Queue::new(QUEUE_SIZE).unwrap();
    q.try_set_desc_table_address(GuestAddress(DESC)).unwrap();
    q.try_set_avail_ring_address(GuestAddress(AVAIL)).unwrap();
    q.try_set_used_ring_address(GuestAddress(USED)).unwrap();
    q.set_ready(true);
    assert!(q.is_valid(mem));
    (q, BareDriver::default())
}

/// One baseline cycle: the driver re-posts, the queue pops and completes.
#[inline(always)]
pub fn baseline_cycle(q: &mut Queue, driver: &mut BareDriver, mem: &MmapRam) {
    driver.post(mem);
    let n = drain(q, mem).unwrap();
    debug_assert_eq!(n, 1);
}

/// Fresh guest RAM, virq's own.
pub fn ram() -> VecMemory {
    VecMemory::new(RAM_SIZE)
}

/// Fresh guest RAM for the baseline (and the device with the `vm-memory` feature).
pub fn mmap_ram() -> MmapRam {
    MmapRam::from_ranges(&[(GuestAddress(0), RAM_SIZE)]).unwrap()
}
