//! One 4 KiB virtio-blk read per notify, two ways on the same request layout:
//!
//! * virq: the whole device. The driver posts the request and writes the notify register; the
//!   transport decodes it, `Block` serves the chain on virq's ring, the used entry is published,
//!   the interrupt decision runs and the MSI-X message goes to a counting sink.
//! * bare: what a VMM writes with rust-vmm's `virtio-queue` over `vm-memory` and no transport:
//!   pop the chain, read its descriptors and the request header, copy 4 KiB from the image into
//!   the data buffer, write the status byte, `add_used`. No notify decode, no interrupt.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use virq_backends::{Block, BlockConfig, MemoryStorage};
use virq_device::{
    GuestMemory, InterruptSink, TransportOptions, VirtioPciDevice, common, features, status,
};
use virq_spec::blk::{VIRTIO_BLK_S_OK, VIRTIO_BLK_T_IN};
use virq_spec::ring::{VRING_DESC_F_NEXT, VRING_DESC_F_WRITE};
use virtio_queue::{Queue, QueueOwnedT, QueueT};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

pub const RAM: usize = 4 << 20;
pub const DISK: usize = 1 << 20;
const QSIZE: u16 = 256;
const DESC: u64 = 0x1000;
const AVAIL: u64 = 0x2000;
const USED: u64 = 0x3000;
const HEADER: u64 = 0x8000;
const STATUS: u64 = 0x9000;
const DATA: u64 = 0x10_0000;
const BAR0: u64 = 0xC000_0000;
const BAR2: u64 = 0xD000_0000;
const SECTOR: u64 = 8;

/// The disk image both sides read from.
pub fn image() -> Vec<u8> {
    (0..DISK).map(|i| (i * 7 + 3) as u8).collect()
}

/// Lay out the request once: header (read sector 8), 4 KiB data, status.
fn lay_out(put: &dyn Fn(u64, &[u8])) {
    let mut h = [0u8; 16];
    h[..4].copy_from_slice(&VIRTIO_BLK_T_IN.to_le_bytes());
    h[8..].copy_from_slice(&SECTOR.to_le_bytes());
    put(HEADER, &h);
    for (i, (addr, len, flags)) in [
        (HEADER, 16u32, VRING_DESC_F_NEXT),
        (DATA, 4096, VRING_DESC_F_NEXT | VRING_DESC_F_WRITE),
        (STATUS, 1, VRING_DESC_F_WRITE),
    ]
    .into_iter()
    .enumerate()
    {
        let mut d = [0u8; 16];
        d[..8].copy_from_slice(&addr.to_le_bytes());
        d[8..12].copy_from_slice(&len.to_le_bytes());
        d[12..14].copy_from_slice(&flags.to_le_bytes());
        d[14..].copy_from_slice(&(i as u16 + 1).to_le_bytes());
        put(DESC + 16 * i as u64, &d);
    }
    put(AVAIL, &[0u8; 4 + 2 * QSIZE as usize + 2]);
    put(USED, &[0u8; 4 + 8 * QSIZE as usize + 2]);
}

/// Counts MSI-X messages, so a run proves every request interrupted.
#[derive(Default)]
pub struct Messages(pub AtomicU64);

impl InterruptSink for Messages {
    fn msi(&self, _address: u64, _data: u32) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
    fn set_intx(&self, _level: bool) {}
}

/// The whole device over guest memory `M`.
pub struct Device<M> {
    pub mem: M,
    pub dev: VirtioPciDevice,
    pub messages: Arc<Messages>,
    avail_idx: u16,
}

impl<M: GuestMemory + Clone + 'static> Device<M> {
    pub fn new(mem: M) -> Self {
        lay_out(&|a, b| mem.write(a, b).unwrap());
        let blk = Block::new(MemoryStorage::from_bytes(image()), BlockConfig::default()).unwrap();
        let messages = Arc::new(Messages::default());
        let mut dev = VirtioPciDevice::new(
            Box::new(blk),
            mem.clone(),
            messages.clone(),
            TransportOptions::default(),
        )
        .unwrap();
        let cfg =
            |dev: &mut VirtioPciDevice, off: u16, v: u32| dev.config_write(off, &v.to_le_bytes());
        cfg(&mut dev, 0x10, BAR0 as u32);
        cfg(&mut dev, 0x14, 0);
        cfg(&mut dev, 0x18, BAR2 as u32);
        cfg(&mut dev, 0x1C, 0);
        dev.config_write(0x04, &0x0006u16.to_le_bytes());
        let w =
            |dev: &mut VirtioPciDevice, addr: u64, data: &[u8]| assert!(dev.mmio_write(addr, data));
        w(&mut dev, BAR2 + 16, &0xFEE0_0000u64.to_le_bytes());
        w(&mut dev, BAR2 + 24, &0x4031u32.to_le_bytes());
        w(&mut dev, BAR2 + 28, &0u32.to_le_bytes());
        let bytes = dev.config_bytes();
        let mut cap = bytes[0x34] as usize;
        while bytes[cap] != 0x11 {
            cap = bytes[cap + 1] as usize;
        }
        dev.config_write(cap as u16 + 2, &0x8000u16.to_le_bytes());
        let st = BAR0 + common::DEVICE_STATUS;
        w(&mut dev, st, &[status::ACKNOWLEDGE | status::DRIVER]);
        w(
            &mut dev,
            BAR0 + common::DRIVER_FEATURE_SELECT,
            &1u32.to_le_bytes(),
        );
        w(
            &mut dev,
            BAR0 + common::DRIVER_FEATURE,
            &((features::VERSION_1 >> 32) as u32).to_le_bytes(),
        );
        let ok = status::ACKNOWLEDGE | status::DRIVER | status::FEATURES_OK;
        w(&mut dev, st, &[ok]);
        w(&mut dev, BAR0 + common::QUEUE_DESC, &DESC.to_le_bytes());
        w(&mut dev, BAR0 + common::QUEUE_DRIVER, &AVAIL.to_le_bytes());
        w(&mut dev, BAR0 + common::QUEUE_DEVICE, &USED.to_le_bytes());
        w(
            &mut dev,
            BAR0 + common::QUEUE_MSIX_VECTOR,
            &1u16.to_le_bytes(),
        );
        w(&mut dev, BAR0 + common::QUEUE_ENABLE, &1u16.to_le_bytes());
        w(&mut dev, st, &[ok | status::DRIVER_OK]);
        assert_eq!(dev.device_status(), ok | status::DRIVER_OK);
        Device {
            mem,
            dev,
            messages,
            avail_idx: 0,
        }
    }

    /// Post the request and notify: one read served and one message sent.
    #[inline(always)]
    pub fn cycle(&mut self) {
        let slot = u64::from(self.avail_idx % QSIZE);
        self.mem.store_u16(AVAIL + 4 + 2 * slot, 0).unwrap();
        self.avail_idx = self.avail_idx.wrapping_add(1);
        self.mem
            .store_release_u16(AVAIL + 2, self.avail_idx)
            .unwrap();
        self.dev.mmio_write(BAR0 + 0x1000, &0u16.to_le_bytes());
    }

    /// One cycle served correctly: data, status, used entry, message.
    pub fn check(&mut self) {
        let before = self.messages.0.load(Ordering::Relaxed);
        self.mem.write(STATUS, &[0xFF]).unwrap();
        self.mem.write(DATA, &[0u8; 4096]).unwrap();
        self.cycle();
        check_request(&|a, b| self.mem.read(a, b).unwrap(), self.avail_idx);
        assert_eq!(self.messages.0.load(Ordering::Relaxed), before + 1);
    }
}

fn check_request(get: &dyn Fn(u64, &mut [u8]), idx: u16) {
    let mut data = vec![0u8; 4096];
    get(DATA, &mut data);
    let start = SECTOR as usize * 512;
    assert_eq!(data, image()[start..start + 4096]);
    let mut s = [0xFFu8];
    get(STATUS, &mut s);
    assert_eq!(u32::from(s[0]), VIRTIO_BLK_S_OK);
    let mut u = [0u8; 2];
    get(USED + 2, &mut u);
    assert_eq!(u16::from_le_bytes(u), idx);
    let mut e = [0u8; 8];
    get(
        USED + 4 + 8 * u64::from(idx.wrapping_sub(1) % QSIZE),
        &mut e,
    );
    assert_eq!(u32::from_le_bytes([e[4], e[5], e[6], e[7]]), 4097);
}

/// The bare baseline: virtio-queue and vm-memory, a minimal blk read and nothing else.
pub struct Bare {
    mem: GuestMemoryMmap<()>,
    queue: Queue,
    disk: Vec<u8>,
    avail_idx: u16,
}

impl Bare {
    pub fn new() -> Self {
        let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), RAM)]).unwrap();
        lay_out(&|a, b| mem.write_slice(b, GuestAddress(a)).unwrap());
        let mut queue = Queue::new(QSIZE).unwrap();
        queue
            .try_set_desc_table_address(GuestAddress(DESC))
            .unwrap();
        queue
            .try_set_avail_ring_address(GuestAddress(AVAIL))
            .unwrap();
        queue.try_set_used_ring_address(GuestAddress(USED)).unwrap();
        queue.set_ready(true);
        assert!(queue.is_valid(&mem));
        Bare {
            mem,
            queue,
            disk: image(),
            avail_idx: 0,
        }
    }

    #[inline(always)]
    pub fn cycle(&mut self) {
        let m = &self.mem;
        let slot = u64::from(self.avail_idx % QSIZE);
        m.store(0u16, GuestAddress(AVAIL + 4 + 2 * slot), Ordering::Relaxed)
            .unwrap();
        self.avail_idx = self.avail_idx.wrapping_add(1);
        m.store(
            self.avail_idx.to_le(),
            GuestAddress(AVAIL + 2),
            Ordering::Release,
        )
        .unwrap();
        let chain = self.queue.iter(m).unwrap().next().unwrap();
        let head = chain.head_index();
        let mut descs = chain;
        let header = descs.next().unwrap();
        let data = descs.next().unwrap();
        let status = descs.next().unwrap();
        let mut h = [0u8; 16];
        m.read_slice(&mut h, header.addr()).unwrap();
        let sector = u64::from_le_bytes(h[8..16].try_into().unwrap());
        let start = sector as usize * 512;
        let len = data.len() as usize;
        let ok = u32::from_le_bytes(h[..4].try_into().unwrap()) == VIRTIO_BLK_T_IN
            && data.is_write_only()
            && start + len <= self.disk.len();
        if ok {
            m.write_slice(&self.disk[start..start + len], data.addr())
                .unwrap();
        }
        m.write_slice(&[if ok { 0 } else { 1 }], status.addr())
            .unwrap();
        self.queue.add_used(m, head, len as u32 + 1).unwrap();
    }

    pub fn check(&mut self) {
        self.cycle();
        check_request(
            &|a, b| self.mem.read_slice(b, GuestAddress(a)).unwrap(),
            self.avail_idx,
        );
    }
}
