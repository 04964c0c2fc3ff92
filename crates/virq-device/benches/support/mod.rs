//! A live device and a one-descriptor driver for the hot-path benchmark and the
//! allocation test (`tests/alloc_free.rs` includes this file with `#[path]`).
//!
//! The device runs over virq's own [`VecMemory`] (and, with the `vm-memory` feature, over
//! `GuestMemoryMmap` too); the baseline is bare `virtio-queue` over `GuestMemoryMmap`, which
//! is the only memory it takes.
//!
//! The device is brought up the way a guest does it: BARs and Command through configuration
//! writes, the MSI-X table and Message Control, then `common_cfg` through MMIO. The driver
//! side of each cycle is plain stores into guest RAM: one available-ring entry (always
//! descriptor 0, a 512-byte buffer), the available index, and with EVENT_IDX the
//! `used_event` that keeps interrupts on.

#![allow(dead_code)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use virq_device::{
    BackendError, GuestMemory, InterruptSink, Processed, TransportOptions, VecMemory,
    VirtioBackend, VirtioPciDevice, Virtqueue, common, features, status,
};
use virtio_queue::{Queue, QueueT};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

/// Guest RAM as the baseline's `virtio-queue` needs it.
pub type MmapRam = GuestMemoryMmap<()>;

/// What the driver half needs from guest RAM: plain and ordered stores.
pub trait DriverRam {
    fn put(&self, addr: u64, bytes: &[u8]);
    fn store16(&self, addr: u64, v: u16, order: Ordering);
}

impl DriverRam for MmapRam {
    fn put(&self, addr: u64, bytes: &[u8]) {
        self.write_slice(bytes, GuestAddress(addr)).unwrap();
    }
    #[inline(always)]
    fn store16(&self, addr: u64, v: u16, order: Ordering) {
        self.store(v.to_le(), GuestAddress(addr), order).unwrap();
    }
}

impl DriverRam for VecMemory {
    fn put(&self, addr: u64, bytes: &[u8]) {
        self.write(addr, bytes).unwrap();
    }
    #[inline(always)]
    fn store16(&self, addr: u64, v: u16, order: Ordering) {
        match order {
            Ordering::Relaxed => self.store_u16(addr, v).unwrap(),
            _ => self.store_release_u16(addr, v).unwrap(),
        }
    }
}

pub const RAM_SIZE: usize = 1 << 20;
pub const BAR0: u64 = 0xC000_0000;
pub const BAR2: u64 = 0xD000_0000;
/// Queue 0's notify address (notify region at BAR0 + 0x1000, multiplier 4).
pub const NOTIFY_Q0: u64 = BAR0 + 0x1000;
pub const QUEUE_SIZE: u16 = 256;

/// Ring placement of one queue in guest RAM.
#[derive(Clone, Copy, Debug)]
pub struct Rings {
    pub desc: u64,
    pub avail: u64,
    pub used: u64,
    pub buffer: u64,
}

/// The rings the device's queue 0 uses.
pub const DEVICE_RINGS: Rings = Rings {
    desc: 0x1_0000,
    avail: 0x1_1000,
    used: 0x1_2000,
    buffer: 0x1_4000,
};
/// The rings the bare-queue baseline uses (same RAM, its own area).
pub const BASELINE_RINGS: Rings = Rings {
    desc: 0x2_0000,
    avail: 0x2_1000,
    used: 0x2_2000,
    buffer: 0x2_4000,
};

/// The message programmed into MSI-X table entry `i`.
pub fn message(i: u16) -> (u64, u32) {
    (0xFEE0_0000, 0x4030 + u32::from(i))
}

/// Counts messages so a run can prove that every cycle interrupted.
#[derive(Debug, Default)]
pub struct CountingSink {
    pub messages: AtomicU64,
    pub line_changes: AtomicU64,
}

impl InterruptSink for CountingSink {
    fn msi(&self, _address: u64, _data: u32) {
        self.messages.fetch_add(1, Ordering::Relaxed);
    }
    fn set_intx(&self, _level: bool) {
        self.line_changes.fetch_add(1, Ordering::Relaxed);
    }
}

/// A device type that pops every available chain, reads its descriptors and completes it
/// with used length 0: the least a real backend does.
#[derive(Debug, Default)]
pub struct OneDescBackend {
    pub completed: u64,
}

/// What the baseline does per available chain: pop it, read its descriptors, complete it.
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

impl VirtioBackend for OneDescBackend {
    fn name(&self) -> &'static str {
        "one-desc"
    }
    fn device_id(&self) -> u16 {
        0xFF
    }
    fn device_features(&self) -> u64 {
        0
    }
    fn num_queues(&self) -> u16 {
        1
    }
    fn queue_max_size(&self, _queue: u16) -> u16 {
        QUEUE_SIZE
    }
    fn config_len(&self) -> usize {
        0
    }
    fn read_config(&self, _offset: u64, _data: &mut [u8]) {}
    fn reset(&mut self) {}
    /// The same work as [`drain`] on virq's own ring.
    #[inline]
    fn process_queue(
        &mut self,
        queue_index: u16,
        queue: &mut Virtqueue<'_>,
    ) -> Result<Processed, BackendError> {
        let corrupt = |e| BackendError::corrupt(queue_index, e);
        let budget = queue.size();
        let mut used = 0u16;
        while used < budget {
            let Some(chain) = queue.pop().map_err(corrupt)? else {
                break;
            };
            let head = chain.head_index();
            let mut bytes = 0u64;
            for desc in chain {
                bytes += u64::from(desc.map_or(0, |d| d.len));
            }
            std::hint::black_box(bytes);
            queue.add_used(head, 0).map_err(corrupt)?;
            used += 1;
        }
        self.completed += u64::from(used);
        Ok(Processed { used })
    }
    fn snapshot(&self) -> serde_json::Value {
        serde_json::Value::Null
    }
    fn restore(&mut self, _state: &serde_json::Value) -> Result<(), BackendError> {
        Ok(())
    }
}

/// The driver half: it owns nothing but the ring addresses and its available index.
#[derive(Debug)]
pub struct RingDriver {
    pub rings: Rings,
    pub avail_idx: u16,
    pub event_idx: bool,
}

impl RingDriver {
    /// Lay out descriptor 0 (a 512-byte device-readable buffer) and empty rings.
    pub fn new(mem: &impl DriverRam, rings: Rings, event_idx: bool) -> Self {
        let mut d = [0u8; 16];
        d[0..8].copy_from_slice(&rings.buffer.to_le_bytes());
        d[8..12].copy_from_slice(&512u32.to_le_bytes());
        mem.put(rings.desc, &d);
        mem.put(rings.avail, &[0u8; 4 + 2 * QUEUE_SIZE as usize + 2]);
        mem.put(rings.used, &[0u8; 4 + 8 * QUEUE_SIZE as usize + 2]);
        RingDriver {
            rings,
            avail_idx: 0,
            event_idx,
        }
    }

    /// Re-post descriptor 0: one available-ring entry, and with EVENT_IDX `used_event` set so
    /// that the completion interrupts (as a driver with interrupts enabled does), then the
    /// index with release ordering.
    #[inline(always)]
    pub fn post(&mut self, mem: &impl DriverRam) {
        let slot = u64::from(self.avail_idx % QUEUE_SIZE);
        mem.store16(self.rings.avail + 4 + 2 * slot, 0, Ordering::Relaxed);
        if self.event_idx {
            let used_event = self.rings.avail + 4 + 2 * u64::from(QUEUE_SIZE);
            mem.store16(used_event, self.avail_idx, Ordering::Relaxed);
        }
        self.avail_idx = self.avail_idx.wrapping_add(1);
        mem.store16(self.rings.avail + 2, self.avail_idx, Ordering::Release);
    }

    /// Leave `used_event` where it is from now on, so EVENT_IDX suppresses the interrupts.
    pub fn stop_rearming(&mut self) {
        self.event_idx = false;
    }
}

/// A bare `virtio-queue` queue over [`BASELINE_RINGS`], ready.
pub fn baseline_queue(mem: &MmapRam) -> (Queue, RingDriver) {
    let driver = RingDriver::new(mem, BASELINE_RINGS, false);
    let mut q = Queue::new(QUEUE_SIZE).unwrap();
    q.try_set_desc_table_address(GuestAddress(BASELINE_RINGS.desc))
        .unwrap();
    q.try_set_avail_ring_address(GuestAddress(BASELINE_RINGS.avail))
        .unwrap();
    q.try_set_used_ring_address(GuestAddress(BASELINE_RINGS.used))
        .unwrap();
    q.set_ready(true);
    assert!(q.is_valid(mem));
    (q, driver)
}

/// One baseline cycle: the driver re-posts, the queue pops and completes.
#[inline(always)]
pub fn baseline_cycle(q: &mut Queue, driver: &mut RingDriver, mem: &MmapRam) {
    driver.post(mem);
    let n = drain(q, mem).unwrap();
    debug_assert_eq!(n, 1);
}

fn cfg_write(dev: &mut VirtioPciDevice, off: u16, v: &[u8]) {
    dev.config_write(off, v);
}

fn mmio16(dev: &mut VirtioPciDevice, off: u64, v: u16) {
    assert!(dev.mmio_write(BAR0 + off, &v.to_le_bytes()));
}

fn mmio32(dev: &mut VirtioPciDevice, addr: u64, v: u32) {
    assert!(dev.mmio_write(addr, &v.to_le_bytes()));
}

fn mmio64(dev: &mut VirtioPciDevice, off: u64, v: u64) {
    assert!(dev.mmio_write(BAR0 + off, &v.to_le_bytes()));
}

/// Offset of the MSI-X capability in configuration space.
fn msix_cap(dev: &mut VirtioPciDevice) -> u16 {
    let mut b = [0u8; 1];
    dev.config_read(0x34, &mut b);
    let mut at = u16::from(b[0]);
    while at != 0 {
        let mut h = [0u8; 2];
        dev.config_read(at, &mut h);
        if h[0] == 0x11 {
            return at;
        }
        at = u16::from(h[1]);
    }
    panic!("no MSI-X capability");
}

/// A device with MSI-X enabled (entry 0 for configuration, entry 1 for queue 0, both
/// unmasked), queue 0 live on [`DEVICE_RINGS`], and its driver. With `event_idx` the driver
/// negotiates VIRTIO_F_RING_EVENT_IDX and keeps `used_event` armed.
pub fn live_device<B: VirtioBackend + 'static, M: GuestMemory + DriverRam + 'static>(
    backend: B,
    mem: M,
    sink: Arc<dyn InterruptSink>,
    event_idx: bool,
) -> (VirtioPciDevice, RingDriver) {
    let driver = RingDriver::new(&mem, DEVICE_RINGS, event_idx);
    let mut dev =
        VirtioPciDevice::new(Box::new(backend), mem, sink, TransportOptions::default()).unwrap();
    cfg_write(&mut dev, 0x10, &(BAR0 as u32).to_le_bytes());
    cfg_write(&mut dev, 0x14, &((BAR0 >> 32) as u32).to_le_bytes());
    cfg_write(&mut dev, 0x18, &(BAR2 as u32).to_le_bytes());
    cfg_write(&mut dev, 0x1C, &((BAR2 >> 32) as u32).to_le_bytes());
    cfg_write(&mut dev, 0x04, &0x0006u16.to_le_bytes());
    for i in 0..2u16 {
        let (addr, data) = message(i);
        let e = BAR2 + 16 * u64::from(i);
        mmio32(&mut dev, e, addr as u32);
        mmio32(&mut dev, e + 4, (addr >> 32) as u32);
        mmio32(&mut dev, e + 8, data);
        mmio32(&mut dev, e + 12, 0);
    }
    let cap = msix_cap(&mut dev);
    cfg_write(&mut dev, cap + 2, &0x8000u16.to_le_bytes());

    let s = common::DEVICE_STATUS;
    assert!(dev.mmio_write(BAR0 + s, &[status::ACKNOWLEDGE]));
    assert!(dev.mmio_write(BAR0 + s, &[status::ACKNOWLEDGE | status::DRIVER]));
    let wanted = features::VERSION_1
        | if event_idx {
            features::RING_EVENT_IDX
        } else {
            0
        };
    for sel in 0..2u32 {
        mmio32(&mut dev, BAR0 + common::DRIVER_FEATURE_SELECT, sel);
        mmio32(
            &mut dev,
            BAR0 + common::DRIVER_FEATURE,
            (wanted >> (32 * sel)) as u32,
        );
    }
    let feat_ok = status::ACKNOWLEDGE | status::DRIVER | status::FEATURES_OK;
    assert!(dev.mmio_write(BAR0 + s, &[feat_ok]));
    mmio16(&mut dev, common::MSIX_CONFIG, 0);
    mmio16(&mut dev, common::QUEUE_SELECT, 0);
    mmio16(&mut dev, common::QUEUE_SIZE, QUEUE_SIZE);
    mmio64(&mut dev, common::QUEUE_DESC, DEVICE_RINGS.desc);
    mmio64(&mut dev, common::QUEUE_DRIVER, DEVICE_RINGS.avail);
    mmio64(&mut dev, common::QUEUE_DEVICE, DEVICE_RINGS.used);
    mmio16(&mut dev, common::QUEUE_MSIX_VECTOR, 1);
    mmio16(&mut dev, common::QUEUE_ENABLE, 1);
    assert!(dev.mmio_write(BAR0 + s, &[feat_ok | status::DRIVER_OK]));
    assert_eq!(dev.device_status(), feat_ok | status::DRIVER_OK);
    assert_eq!(dev.msix_config(), 0);
    assert_eq!(dev.queue_msix_vector(0), Some(1));
    assert!(dev.msix_enabled());
    (dev, driver)
}

/// One transport cycle: the driver re-posts and writes the notify register; the device pops,
/// completes, publishes, decides and sends the message.
#[inline(always)]
pub fn device_cycle(dev: &mut VirtioPciDevice, driver: &mut RingDriver, mem: &impl DriverRam) {
    driver.post(mem);
    dev.mmio_write(NOTIFY_Q0, &0u16.to_le_bytes());
}

/// Fresh guest RAM, virq's own.
pub fn ram() -> VecMemory {
    VecMemory::new(RAM_SIZE)
}

/// Fresh guest RAM for the baseline (and the device with the `vm-memory` feature).
pub fn mmap_ram() -> MmapRam {
    MmapRam::from_ranges(&[(GuestAddress(0), RAM_SIZE)]).unwrap()
}
