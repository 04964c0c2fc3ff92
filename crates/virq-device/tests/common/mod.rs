//! A tiny test driver for the conformance and property suites.
//!
//! Everything here talks to the device the way a guest and a platform would: configuration
//! cycles (`config_read` / `config_write`), MMIO at the addresses the BARs were programmed
//! with, and plain writes into guest RAM for the split rings. Nothing reaches into the
//! device's internals except through its public observation helpers.

#![allow(dead_code)]

use std::sync::Arc;

use virq_device::testing::{NullBackend, RecordingSink};
use virq_device::{
    BackendError, GuestMemory, Processed, TransportOptions, VecMemory, VirtioBackend,
    VirtioPciDevice, Virtqueue, common, status,
};
use virq_events::{EventKind, EventLog};

/// Guest RAM size handed to the device.
pub const RAM_SIZE: u64 = 1 << 20;
/// Where the tests place BAR0 (virtio structures, 16 KiB) and BAR2 (MSI-X, 64 KiB).
pub const BAR0_ADDR: u64 = 0xC000_0000;
pub const BAR2_ADDR: u64 = 0xD000_0000;
/// Default layout: the virtio structures inside BAR0, the MSI-X table and PBA inside BAR2.
pub const COMMON: u64 = BAR0_ADDR;
pub const NOTIFY: u64 = BAR0_ADDR + 0x1000;
pub const ISR: u64 = BAR0_ADDR + 0x2000;
pub const DEVICE_CFG: u64 = BAR0_ADDR + 0x3000;
pub const TABLE: u64 = BAR2_ADDR;
pub const PBA: u64 = BAR2_ADDR + 0x8000;

/// PCI header offsets and bits used by the tests.
pub const CFG_COMMAND: u16 = 0x04;
pub const CFG_STATUS: u16 = 0x06;
pub const CMD_MEMORY: u16 = 1 << 1;
pub const CMD_BUS_MASTER: u16 = 1 << 2;
pub const CMD_INTX_DISABLE: u16 = 1 << 10;
pub const STATUS_INTERRUPT: u16 = 1 << 3;
pub const STATUS_CAP_LIST: u16 = 1 << 4;

pub const CAP_VENDOR: u8 = 0x09;
pub const CAP_MSIX: u8 = 0x11;

/// Queue size the helper rings use.
pub const RING_SIZE: u16 = 16;

/// The MSI-X message the helper programs into table entry `i`: a LAPIC address with the
/// entry number as destination, and a distinct data word.
pub fn msg(i: u16) -> (u64, u32) {
    (0xFEE0_0000 | ((i as u64) << 12), 0x4030 + i as u32)
}

/// A backend with a chosen device ID, feature bits and queue maximum; everything else is the
/// crate's `NullBackend` (every chain completes with used length 0).
pub struct TestBackend {
    inner: NullBackend,
    pub id: u16,
    pub features: u64,
    pub max_size: u16,
}

impl TestBackend {
    pub fn new(queues: u16, id: u16, features: u64, max_size: u16) -> Self {
        TestBackend {
            inner: NullBackend::new(queues),
            id,
            features,
            max_size,
        }
    }
}

impl VirtioBackend for TestBackend {
    fn name(&self) -> &'static str {
        "test"
    }
    fn device_id(&self) -> u16 {
        self.id
    }
    fn device_features(&self) -> u64 {
        self.features
    }
    fn num_queues(&self) -> u16 {
        self.inner.num_queues()
    }
    fn queue_max_size(&self, _queue: u16) -> u16 {
        self.max_size
    }
    fn config_len(&self) -> usize {
        self.inner.config_len()
    }
    fn read_config(&self, offset: u64, data: &mut [u8]) {
        self.inner.read_config(offset, data)
    }
    fn reset(&mut self) {
        self.inner.reset()
    }
    fn process_queue(
        &mut self,
        queue_index: u16,
        queue: &mut Virtqueue<'_>,
    ) -> Result<Processed, BackendError> {
        self.inner.process_queue(queue_index, queue)
    }
    fn snapshot(&self) -> serde_json::Value {
        self.inner.snapshot()
    }
    fn restore(&mut self, state: &serde_json::Value) -> Result<(), BackendError> {
        self.inner.restore(state)
    }
}

/// A device under test with its interrupt sink, event log and guest RAM.
pub struct Rig {
    pub dev: VirtioPciDevice,
    pub sink: Arc<RecordingSink>,
    pub log: Arc<EventLog>,
    pub mem: VecMemory,
}

/// A split virtqueue the test driver owns in guest RAM (virtio 1.2, 2.7).
pub struct Ring {
    pub queue: u16,
    pub size: u16,
    pub desc: u64,
    pub avail: u64,
    pub used: u64,
    next_avail: u16,
    mem: VecMemory,
}

impl Ring {
    /// Lay out a ring of `size` entries at `base`: descriptors, then the available ring at
    /// base + 0x2000, then the used ring at base + 0x4000.
    pub fn new(mem: &VecMemory, queue: u16, size: u16, base: u64) -> Self {
        let ring = Ring {
            queue,
            size,
            desc: base,
            avail: base + 0x2000,
            used: base + 0x4000,
            next_avail: 0,
            mem: mem.clone(),
        };
        // Fresh rings: flags 0, idx 0, used_event 0 and no stale used entries.
        let zeros = vec![0u8; 0x6000];
        mem.write(base, &zeros).unwrap();
        ring
    }

    /// Make one single-descriptor chain available (a 256-byte device-writable buffer).
    pub fn push(&mut self) -> u16 {
        let head = self.next_avail % self.size;
        let buf = 0xC_0000 + ((self.queue as u64) << 12) + head as u64 * 0x100;
        let d = self.desc + head as u64 * 16;
        self.mem.write_u64(d, buf).unwrap();
        self.mem.write_u32(d + 8, 0x100).unwrap();
        self.mem.write_u16(d + 12, 2).unwrap(); // VIRTQ_DESC_F_WRITE
        self.mem.write_u16(d + 14, 0).unwrap();
        let slot = self.avail + 4 + 2 * (self.next_avail % self.size) as u64;
        self.mem.write_u16(slot, head).unwrap();
        self.next_avail = self.next_avail.wrapping_add(1);
        self.mem
            .store_release_u16(self.avail + 2, self.next_avail)
            .unwrap();
        head
    }

    /// `used.idx` as the device last published it.
    pub fn used_idx(&self) -> u16 {
        self.mem.load_acquire_u16(self.used + 2).unwrap()
    }

    /// Used ring element `i`: (id, len).
    pub fn used_elem(&self, i: u16) -> (u32, u32) {
        let at = self.used + 4 + 8 * (i % self.size) as u64;
        (
            self.mem.read_u32(at).unwrap(),
            self.mem.read_u32(at + 4).unwrap(),
        )
    }

    /// `avail.flags` (bit 0 is VRING_AVAIL_F_NO_INTERRUPT).
    pub fn set_avail_flags(&self, flags: u16) {
        self.mem.store_u16(self.avail, flags).unwrap();
    }

    /// `used_event`, the word after the available ring (VIRTIO_F_EVENT_IDX).
    pub fn set_used_event(&self, v: u16) {
        let at = self.avail + 4 + 2 * self.size as u64;
        self.mem.store_u16(at, v).unwrap();
    }
}

/// What `Rig::setup` negotiates and programs.
#[derive(Clone, Debug)]
pub struct Setup {
    /// Driver features to accept (must make FEATURES_OK stick).
    pub features: u64,
    /// Program the MSI-X table (entry i = `msg(i)`, unmasked), enable MSI-X and route
    /// config to entry 0 and queue q to entry q + 1. INTx otherwise.
    pub msix: bool,
    /// Queues to configure and enable (None: all).
    pub queues: Option<Vec<u16>>,
}

impl Setup {
    pub fn msix() -> Self {
        Setup {
            features: virq_device::features::VERSION_1,
            msix: true,
            queues: None,
        }
    }
    pub fn intx() -> Self {
        Setup {
            msix: false,
            ..Setup::msix()
        }
    }
}

impl Rig {
    pub fn new(queues: u16) -> Self {
        Self::with_options(queues, TransportOptions::default())
    }

    pub fn with_options(queues: u16, options: TransportOptions) -> Self {
        Self::with_backend(Box::new(NullBackend::new(queues)), options)
    }

    pub fn with_backend(backend: Box<dyn VirtioBackend>, options: TransportOptions) -> Self {
        Self::on_memory(backend, options, VecMemory::new(RAM_SIZE as usize))
    }

    /// A rig over guest RAM someone else already uses (a restore "on the same machine").
    pub fn on_memory(
        backend: Box<dyn VirtioBackend>,
        options: TransportOptions,
        mem: VecMemory,
    ) -> Self {
        let sink = Arc::new(RecordingSink::new());
        let log = Arc::new(EventLog::new());
        let mut dev = VirtioPciDevice::new(backend, mem.clone(), sink.clone(), options).unwrap();
        dev.set_event_sink(log.clone());
        Rig {
            dev,
            sink,
            log,
            mem,
        }
    }

    // ------------------------------------------------------------ configuration space

    pub fn cfg_read(&mut self, off: u16, width: usize) -> u32 {
        let mut b = [0u8; 4];
        self.dev.config_read(off, &mut b[..width]);
        u32::from_le_bytes(b)
    }
    pub fn cfg8(&mut self, off: u16) -> u8 {
        self.cfg_read(off, 1) as u8
    }
    pub fn cfg16(&mut self, off: u16) -> u16 {
        self.cfg_read(off, 2) as u16
    }
    pub fn cfg32(&mut self, off: u16) -> u32 {
        self.cfg_read(off, 4)
    }
    pub fn cfg_write(&mut self, off: u16, width: usize, v: u32) {
        self.dev.config_write(off, &v.to_le_bytes()[..width]);
    }
    pub fn command(&mut self) -> u16 {
        self.cfg16(CFG_COMMAND)
    }
    pub fn set_command(&mut self, v: u16) {
        self.cfg_write(CFG_COMMAND, 2, v as u32);
    }
    /// PCI Status bit 3 (Interrupt Status).
    pub fn status_int(&mut self) -> bool {
        self.cfg16(CFG_STATUS) & STATUS_INTERRUPT != 0
    }

    /// Walk the capability list from 0x34: (offset, id) in chain order.
    pub fn caps(&mut self) -> Vec<(u16, u8)> {
        let mut out = Vec::new();
        let mut p = self.cfg8(0x34) as u16;
        while p != 0 {
            assert!(out.len() < 48, "capability list loops");
            out.push((p, self.cfg8(p)));
            p = self.cfg8(p + 1) as u16;
        }
        out
    }

    /// Offset of the first vendor capability with this `cfg_type`.
    pub fn virtio_cap(&mut self, cfg_type: u8) -> u16 {
        let caps = self.caps();
        caps.into_iter()
            .find(|&(off, id)| id == CAP_VENDOR && self.cfg8(off + 3) == cfg_type)
            .map(|(off, _)| off)
            .unwrap_or_else(|| panic!("no virtio capability of cfg_type {cfg_type}"))
    }

    pub fn msix_cap(&mut self) -> Option<u16> {
        self.caps()
            .into_iter()
            .find(|&(_, id)| id == CAP_MSIX)
            .map(|(o, _)| o)
    }

    pub fn msix_control(&mut self) -> u16 {
        let c = self.msix_cap().expect("MSI-X capability");
        self.cfg16(c + 2)
    }

    /// 16-bit write of Message Control (only bits 15:14 are writable).
    pub fn set_msix_control(&mut self, v: u16) {
        let c = self.msix_cap().expect("MSI-X capability");
        self.cfg_write(c + 2, 2, v as u32);
    }

    pub fn table_size(&mut self) -> u16 {
        (self.msix_control() & 0x7FF) + 1
    }

    /// Program BAR0 and BAR2 and turn on memory decoding and bus mastering.
    pub fn map_bars(&mut self) {
        self.cfg_write(0x10, 4, BAR0_ADDR as u32);
        self.cfg_write(0x14, 4, (BAR0_ADDR >> 32) as u32);
        if self.msix_cap().is_some() {
            self.cfg_write(0x18, 4, BAR2_ADDR as u32);
            self.cfg_write(0x1C, 4, (BAR2_ADDR >> 32) as u32);
        }
        let cmd = self.command() | CMD_MEMORY | CMD_BUS_MASTER;
        self.set_command(cmd);
    }

    // ---------------------------------------------------------------------- MMIO

    pub fn rd(&mut self, addr: u64, width: usize) -> u64 {
        let mut b = [0u8; 8];
        assert!(
            self.dev.mmio_read(addr, &mut b[..width]),
            "MMIO read at {addr:#x} not decoded"
        );
        u64::from_le_bytes(b)
    }
    pub fn wr(&mut self, addr: u64, width: usize, v: u64) {
        assert!(
            self.dev.mmio_write(addr, &v.to_le_bytes()[..width]),
            "MMIO write at {addr:#x} not decoded"
        );
    }
    pub fn common16(&mut self, off: u64) -> u16 {
        self.rd(COMMON + off, 2) as u16
    }
    pub fn set_common16(&mut self, off: u64, v: u16) {
        self.wr(COMMON + off, 2, v as u64);
    }
    pub fn common32(&mut self, off: u64) -> u32 {
        self.rd(COMMON + off, 4) as u32
    }
    pub fn set_common32(&mut self, off: u64, v: u32) {
        self.wr(COMMON + off, 4, v as u64);
    }
    pub fn device_status(&mut self) -> u8 {
        self.rd(COMMON + common::DEVICE_STATUS, 1) as u8
    }
    pub fn set_device_status(&mut self, v: u8) {
        self.wr(COMMON + common::DEVICE_STATUS, 1, v as u64);
    }
    pub fn select_queue(&mut self, q: u16) {
        self.set_common16(common::QUEUE_SELECT, q);
    }
    pub fn msix_config(&mut self) -> u16 {
        self.common16(common::MSIX_CONFIG)
    }
    pub fn queue_vector(&mut self, q: u16) -> u16 {
        self.select_queue(q);
        self.common16(common::QUEUE_MSIX_VECTOR)
    }
    pub fn set_queue_vector(&mut self, q: u16, v: u16) {
        self.select_queue(q);
        self.set_common16(common::QUEUE_MSIX_VECTOR, v);
    }
    /// Read (and so clear) the ISR status byte.
    pub fn isr(&mut self) -> u8 {
        self.rd(ISR, 1) as u8
    }
    /// `device_feature` as a 64-bit value, through both selector windows.
    pub fn device_features(&mut self) -> u64 {
        self.set_common32(common::DEVICE_FEATURE_SELECT, 0);
        let lo = self.common32(common::DEVICE_FEATURE) as u64;
        self.set_common32(common::DEVICE_FEATURE_SELECT, 1);
        let hi = self.common32(common::DEVICE_FEATURE) as u64;
        lo | (hi << 32)
    }
    pub fn write_driver_features(&mut self, f: u64) {
        self.set_common32(common::DRIVER_FEATURE_SELECT, 0);
        self.set_common32(common::DRIVER_FEATURE, f as u32);
        self.set_common32(common::DRIVER_FEATURE_SELECT, 1);
        self.set_common32(common::DRIVER_FEATURE, (f >> 32) as u32);
    }
    pub fn driver_features(&mut self) -> u64 {
        self.set_common32(common::DRIVER_FEATURE_SELECT, 0);
        let lo = self.common32(common::DRIVER_FEATURE) as u64;
        self.set_common32(common::DRIVER_FEATURE_SELECT, 1);
        let hi = self.common32(common::DRIVER_FEATURE) as u64;
        lo | (hi << 32)
    }

    /// Reset, ACKNOWLEDGE, DRIVER, features, FEATURES_OK (virtio 1.2, 3.1.1 steps 1-5).
    /// Returns whether FEATURES_OK reads back set.
    pub fn negotiate(&mut self, features: u64) -> bool {
        self.set_device_status(0);
        self.set_device_status(status::ACKNOWLEDGE);
        self.set_device_status(status::ACKNOWLEDGE | status::DRIVER);
        self.write_driver_features(features);
        self.set_device_status(status::ACKNOWLEDGE | status::DRIVER | status::FEATURES_OK);
        self.device_status() & status::FEATURES_OK != 0
    }

    /// Program entry `i` of the MSI-X table with `msg(i)` and the given mask.
    pub fn program_entry(&mut self, i: u16, masked: bool) {
        let (addr, data) = msg(i);
        let e = TABLE + 16 * i as u64;
        self.wr(e, 4, addr & 0xFFFF_FFFF);
        self.wr(e + 4, 4, addr >> 32);
        self.wr(e + 8, 4, data as u64);
        self.wr(e + 12, 4, masked as u64);
    }
    pub fn mask_entry(&mut self, i: u16, masked: bool) {
        self.wr(TABLE + 16 * i as u64 + 12, 4, masked as u64);
    }
    /// PBA qword `word`.
    pub fn pba(&mut self, word: u64) -> u64 {
        self.rd(PBA + 8 * word, 8)
    }

    /// Configure queue `q` with a fresh ring of `RING_SIZE` entries (not enabled).
    pub fn configure_queue(&mut self, q: u16, base: u64) -> Ring {
        let ring = Ring::new(&self.mem, q, RING_SIZE, base);
        self.select_queue(q);
        self.set_common16(common::QUEUE_SIZE, RING_SIZE);
        self.wr(COMMON + common::QUEUE_DESC, 8, ring.desc);
        self.wr(COMMON + common::QUEUE_DRIVER, 8, ring.avail);
        self.wr(COMMON + common::QUEUE_DEVICE, 8, ring.used);
        ring
    }
    pub fn enable_queue(&mut self, q: u16) {
        self.select_queue(q);
        self.set_common16(common::QUEUE_ENABLE, 1);
    }
    /// Ring base for queue `q` (each queue gets its own 32 KiB of RAM).
    pub fn ring_base(q: u16) -> u64 {
        0x1_0000 + q as u64 * 0x8000
    }

    /// Steps 1-7 of virtio 1.2, 3.1.1 (everything but DRIVER_OK).
    pub fn setup(&mut self, s: &Setup) -> Vec<Ring> {
        self.map_bars();
        assert!(self.negotiate(s.features), "FEATURES_OK refused");
        if s.msix {
            for i in 0..self.table_size() {
                self.program_entry(i, false);
            }
            let ctl = self.msix_control();
            self.set_msix_control(ctl | 0x8000);
            self.set_common16(common::MSIX_CONFIG, 0);
            assert_eq!(self.msix_config(), 0);
        }
        let n = self.common16(common::NUM_QUEUES);
        let which: Vec<u16> = s.queues.clone().unwrap_or_else(|| (0..n).collect());
        let mut rings = Vec::new();
        for q in 0..n {
            let ring = self.configure_queue(q, Self::ring_base(q));
            if s.msix {
                self.set_queue_vector(q, q + 1);
                assert_eq!(self.queue_vector(q), q + 1);
            }
            if which.contains(&q) {
                self.enable_queue(q);
            }
            rings.push(ring);
        }
        rings
    }

    pub fn driver_ok(&mut self) {
        let s = self.device_status();
        self.set_device_status(s | status::DRIVER_OK);
    }

    /// `setup` + DRIVER_OK.
    pub fn bring_up(&mut self, s: &Setup) -> Vec<Ring> {
        let rings = self.setup(s);
        self.driver_ok();
        rings
    }

    /// Notify queue `q` with a 16-bit write of its index at its notify address.
    pub fn kick(&mut self, q: u16) {
        self.kick_width(q, 2);
    }
    pub fn kick_width(&mut self, q: u16, width: usize) {
        let addr = self.notify_addr(q);
        self.wr(addr, width, q as u64);
    }
    /// cap.offset + queue_notify_off * notify_off_multiplier (virtio 1.2, 4.1.4.4).
    pub fn notify_addr(&mut self, q: u16) -> u64 {
        let cap = self.virtio_cap(virq_device::cfg_type::NOTIFY);
        let off = self.cfg32(cap + 8) as u64;
        let mult = self.cfg32(cap + 16) as u64;
        self.select_queue(q);
        let notify_off = self.common16(common::QUEUE_NOTIFY_OFF) as u64;
        BAR0_ADDR + off + notify_off * mult
    }

    // ------------------------------------------------------------------- evidence

    pub fn events(&self) -> Vec<EventKind> {
        self.log.snapshot().into_iter().map(|e| e.kind).collect()
    }
    pub fn count(&self, pred: impl Fn(&EventKind) -> bool) -> usize {
        self.log.count(pred)
    }
}
