//! [`Rig`]: a device under test and the driver and platform around it.
//!
//! Everything here talks to the device the way a guest and a platform would: configuration
//! cycles (`config_read` / `config_write`), MMIO at the addresses the BARs were programmed
//! with, and plain writes into guest RAM for the split rings. Nothing reaches into the
//! device's internals except through its public observation helpers.

use std::sync::Arc;

use virq_events::{EventKind, EventLog};
use virq_spec::{msix as msix_spec, pci as pci_spec};

use super::backends::NullBackend;
use super::ring::{Ring, RingAddrs};
use super::sinks::RecordingSink;
use crate::layout::{Layout, Region};
use crate::{
    GuestMemory, InterruptSink, TransportOptions, VecMemory, VirtioBackend, VirtioPciDevice,
    cfg_type, common, features, status,
};

/// Guest RAM size handed to the device by [`Rig::new`].
pub const RAM_SIZE: u64 = 1 << 20;
/// Where [`Rig::map_bars`] places BAR0, BAR2 and BAR4.
pub const BAR0_ADDR: u64 = 0xC000_0000;
/// BAR2's address (the MSI-X table and PBA in the default layout).
pub const BAR2_ADDR: u64 = 0xD000_0000;
/// BAR4's address (used by layouts that put structures there).
pub const BAR4_ADDR: u64 = 0xE000_0000;
/// `common_cfg` in the default layout.
pub const COMMON: u64 = BAR0_ADDR;
/// The notify region in the default layout.
pub const NOTIFY: u64 = BAR0_ADDR + 0x1000;
/// ISR status in the default layout.
pub const ISR: u64 = BAR0_ADDR + 0x2000;
/// Device-specific configuration in the default layout.
pub const DEVICE_CFG: u64 = BAR0_ADDR + 0x3000;
/// The MSI-X table in the default layout.
pub const TABLE: u64 = BAR2_ADDR;
/// The MSI-X PBA in the default layout.
pub const PBA: u64 = BAR2_ADDR + 0x8000;

/// PCI Command register offset.
pub const CFG_COMMAND: u16 = pci_spec::COMMAND;
/// PCI Status register offset.
pub const CFG_STATUS: u16 = pci_spec::STATUS;
/// Command bit 1: Memory Space.
pub const CMD_MEMORY: u16 = pci_spec::COMMAND_MEMORY_SPACE;
/// Command bit 2: Bus Master Enable.
pub const CMD_BUS_MASTER: u16 = pci_spec::COMMAND_BUS_MASTER;
/// Command bit 10: Interrupt Disable.
pub const CMD_INTX_DISABLE: u16 = pci_spec::COMMAND_INTERRUPT_DISABLE;
/// Status bit 3: Interrupt Status.
pub const STATUS_INTERRUPT: u16 = pci_spec::STATUS_INTERRUPT;
/// Status bit 4: Capabilities List.
pub const STATUS_CAP_LIST: u16 = pci_spec::STATUS_CAPABILITIES_LIST;
/// Capability ID of a vendor-specific (virtio) capability.
pub const CAP_VENDOR: u8 = pci_spec::CAP_ID_VENDOR;
/// Capability ID of MSI-X.
pub const CAP_MSIX: u8 = pci_spec::CAP_ID_MSIX;

/// Queue size [`Setup`] uses unless told otherwise.
pub const RING_SIZE: u16 = 16;

/// The MSI-X message the rig programs into table entry `i`: a LAPIC address with the entry
/// number as destination, and a distinct data word.
pub fn msg(i: u16) -> (u64, u32) {
    (0xFEE0_0000 | (u64::from(i) << 12), 0x4030 + u32::from(i))
}

/// Named BAR layouts, the default first: how different VMMs place the virtio structures and
/// the MSI-X table. Every one is valid for up to 8 queues and a 2048-entry table.
pub fn layouts() -> [(&'static str, Layout); 5] {
    let all_in_bar4 = Layout {
        common: Region::new(4, 0x0000, 0x1000),
        isr: Region::new(4, 0x1000, 0x1000),
        device: Region::new(4, 0x2000, 0x1000),
        notify: Region::new(4, 0x3000, 0x1000),
        notify_off_multiplier: 4,
        msix_table_bar: 2,
        msix_table_offset: 0,
        msix_pba_bar: 2,
        msix_pba_offset: 0x8000,
    };
    let one_bar = Layout {
        common: Region::new(0, 0x0000, 0x100),
        isr: Region::new(0, 0x100, 0x100),
        device: Region::new(0, 0x200, 0x200),
        notify: Region::new(0, 0x400, 0x400),
        notify_off_multiplier: 2,
        msix_table_bar: 0,
        msix_table_offset: 0x2000,
        msix_pba_bar: 0,
        msix_pba_offset: 0xA000,
    };
    let shared_notify = Layout {
        notify_off_multiplier: 0,
        notify: Region::new(0, 0x1000, 4),
        ..Layout::default()
    };
    let page_per_queue = Layout {
        notify_off_multiplier: 0x1000,
        notify: Region::new(4, 0, 0x8000),
        ..Layout::default()
    };
    [
        ("default", Layout::default()),
        ("all-in-bar4", all_in_bar4),
        ("one-bar", one_bar),
        ("shared-notify", shared_notify),
        ("page-per-queue", page_per_queue),
    ]
}

/// What [`Rig::setup`] negotiates and programs.
#[derive(Clone, Debug)]
pub struct Setup {
    /// Driver features to accept (must make FEATURES_OK stick).
    pub features: u64,
    /// Program the MSI-X table (entry i = `msg(i)`, unmasked), enable MSI-X and route
    /// config to entry 0 and queue q to entry q + 1. INTx otherwise.
    pub msix: bool,
    /// Queues to configure and enable (None: all).
    pub queues: Option<Vec<u16>>,
    /// Queue size of every ring.
    pub ring_size: u16,
}

impl Setup {
    /// VERSION_1 and MSI-X, every queue, [`RING_SIZE`] entries.
    pub fn msix() -> Self {
        Setup {
            features: features::VERSION_1,
            msix: true,
            queues: None,
            ring_size: RING_SIZE,
        }
    }

    /// VERSION_1 and INTx.
    pub fn intx() -> Self {
        Setup {
            msix: false,
            ..Setup::msix()
        }
    }
}

/// A device under test with its interrupt sink, event log and guest RAM.
///
/// `M` is the guest memory (virq's [`VecMemory`] unless a test or benchmark needs another),
/// `S` the interrupt sink ([`RecordingSink`] unless a benchmark wants one that does not
/// allocate).
pub struct Rig<M = VecMemory, S = RecordingSink> {
    /// The device.
    pub dev: VirtioPciDevice,
    /// Where its interrupts went.
    pub sink: Arc<S>,
    /// What it recorded (empty when built with [`Rig::build`] and `events` false).
    pub log: Arc<EventLog>,
    /// Its guest RAM.
    pub mem: M,
    options: TransportOptions,
}

impl Rig {
    /// A [`NullBackend`] with `queues` queues, default options, 1 MiB of RAM.
    pub fn new(queues: u16) -> Self {
        Self::with_options(queues, TransportOptions::default())
    }

    /// A [`NullBackend`] with `queues` queues and these options.
    pub fn with_options(queues: u16, options: TransportOptions) -> Self {
        Self::with_backend(Box::new(NullBackend::new(queues)), options)
    }

    /// `backend` with these options over 1 MiB of RAM.
    pub fn with_backend(backend: Box<dyn VirtioBackend>, options: TransportOptions) -> Self {
        Self::on_memory(backend, options, VecMemory::new(RAM_SIZE as usize))
    }

    /// A rig over guest RAM someone else already uses (a restore "on the same machine").
    pub fn on_memory(
        backend: Box<dyn VirtioBackend>,
        options: TransportOptions,
        mem: VecMemory,
    ) -> Self {
        Rig::build(backend, options, mem, Arc::new(RecordingSink::new()), true)
    }

    /// A [`NullBackend`] with `queues` queues, every queue but the last brought up with MSI-X
    /// (DRIVER_OK set), the bring-up's messages taken, and the last queue selected: the driver
    /// is about to set up one more queue on a live device.
    pub fn setting_up_last_queue(queues: u16) -> Self {
        let last = queues - 1;
        let mut r = Rig::new(queues);
        r.bring_up(&Setup {
            queues: Some((0..last).collect()),
            ..Setup::msix()
        });
        r.sink.take_messages();
        r.select_queue(last);
        r
    }

    /// Where [`Rig::map_bars`] puts BAR `bar`.
    pub fn bar_addr(bar: u8) -> u64 {
        match bar {
            0 => BAR0_ADDR,
            2 => BAR2_ADDR,
            _ => BAR4_ADDR,
        }
    }

    /// The address of `region` once the BARs are mapped.
    pub fn region_addr(region: Region) -> u64 {
        Rig::bar_addr(region.bar) + region.offset
    }

    /// Ring base for queue `q` (each queue gets its own 32 KiB of RAM).
    pub fn ring_base(q: u16) -> u64 {
        0x1_0000 + u64::from(q) * 0x8000
    }
}

impl<M, S> Rig<M, S>
where
    M: GuestMemory + Clone + 'static,
    S: InterruptSink + 'static,
{
    /// The general constructor: any memory, any sink; `events` attaches [`Rig::log`] as the
    /// device's event sink (off where recording would be the cost measured).
    pub fn build(
        backend: Box<dyn VirtioBackend>,
        options: TransportOptions,
        mem: M,
        sink: Arc<S>,
        events: bool,
    ) -> Self {
        let log = Arc::new(EventLog::new());
        let mut dev = VirtioPciDevice::new(backend, mem.clone(), sink.clone(), options)
            .expect("a valid device for the rig");
        if events {
            dev.set_event_sink(log.clone());
        }
        Rig {
            dev,
            sink,
            log,
            mem,
            options,
        }
    }

    /// The options the device was built with.
    pub fn options(&self) -> TransportOptions {
        self.options
    }

    // ------------------------------------------------------------ configuration space

    /// A configuration read of `width` bytes (1, 2 or 4) at `off`.
    pub fn cfg_read(&mut self, off: u16, width: usize) -> u32 {
        let mut b = [0u8; 4];
        self.dev.config_read(off, &mut b[..width]);
        u32::from_le_bytes(b)
    }
    /// A byte of configuration space.
    pub fn cfg8(&mut self, off: u16) -> u8 {
        self.cfg_read(off, 1) as u8
    }
    /// A word of configuration space.
    pub fn cfg16(&mut self, off: u16) -> u16 {
        self.cfg_read(off, 2) as u16
    }
    /// A dword of configuration space.
    pub fn cfg32(&mut self, off: u16) -> u32 {
        self.cfg_read(off, 4)
    }
    /// A configuration write of the low `width` bytes of `v`.
    pub fn cfg_write(&mut self, off: u16, width: usize, v: u32) {
        self.dev.config_write(off, &v.to_le_bytes()[..width]);
    }
    /// The Command register.
    pub fn command(&mut self) -> u16 {
        self.cfg16(CFG_COMMAND)
    }
    /// Write the Command register.
    pub fn set_command(&mut self, v: u16) {
        self.cfg_write(CFG_COMMAND, 2, u32::from(v));
    }
    /// PCI Status bit 3 (Interrupt Status).
    pub fn status_int(&mut self) -> bool {
        self.cfg16(CFG_STATUS) & STATUS_INTERRUPT != 0
    }

    /// Walk the capability list from 0x34: (offset, id) in chain order.
    pub fn caps(&mut self) -> Vec<(u16, u8)> {
        let mut out = Vec::new();
        let mut p = u16::from(self.cfg8(pci_spec::CAPABILITIES_POINTER));
        while p != 0 {
            assert!(out.len() < 48, "capability list loops");
            out.push((p, self.cfg8(p)));
            p = u16::from(self.cfg8(p + 1));
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

    /// Offset of the MSI-X capability, if the device has one.
    pub fn msix_cap(&mut self) -> Option<u16> {
        self.caps()
            .into_iter()
            .find(|&(_, id)| id == CAP_MSIX)
            .map(|(o, _)| o)
    }

    /// MSI-X Message Control.
    pub fn msix_control(&mut self) -> u16 {
        let c = self.msix_cap().expect("MSI-X capability");
        self.cfg16(c + 2)
    }

    /// 16-bit write of Message Control (only bits 15:14 are writable).
    pub fn set_msix_control(&mut self, v: u16) {
        let c = self.msix_cap().expect("MSI-X capability");
        self.cfg_write(c + 2, 2, u32::from(v));
    }

    /// MSI-X table size as Message Control reports it.
    pub fn table_size(&mut self) -> u16 {
        (self.msix_control() & msix_spec::CONTROL_TABLE_SIZE) + 1
    }

    /// Program every BAR the device has (BAR0 at [`BAR0_ADDR`], BAR2 at [`BAR2_ADDR`], BAR4
    /// at [`BAR4_ADDR`]) and turn on memory decoding and bus mastering.
    pub fn map_bars(&mut self) {
        let bars: Vec<u8> = self.dev.bar_defs().iter().map(|b| b.index).collect();
        for bar in bars {
            let addr = Rig::bar_addr(bar);
            let reg = pci_spec::BAR0 + 4 * u16::from(bar);
            self.cfg_write(reg, 4, addr as u32);
            self.cfg_write(reg + 4, 4, (addr >> 32) as u32);
        }
        let cmd = self.command() | CMD_MEMORY | CMD_BUS_MASTER;
        self.set_command(cmd);
    }

    // ---------------------------------------------------------------------- MMIO

    /// An MMIO read of `width` bytes; panics when no BAR decodes it.
    pub fn rd(&mut self, addr: u64, width: usize) -> u64 {
        let mut b = [0u8; 8];
        assert!(
            self.dev.mmio_read(addr, &mut b[..width]),
            "MMIO read at {addr:#x} not decoded"
        );
        u64::from_le_bytes(b)
    }
    /// An MMIO write of the low `width` bytes of `v`; panics when no BAR decodes it.
    pub fn wr(&mut self, addr: u64, width: usize, v: u64) {
        assert!(
            self.dev.mmio_write(addr, &v.to_le_bytes()[..width]),
            "MMIO write at {addr:#x} not decoded"
        );
    }
    fn common_addr(&self) -> u64 {
        Rig::region_addr(self.options.layout.common)
    }
    /// A word of `common_cfg`.
    pub fn common16(&mut self, off: u64) -> u16 {
        self.rd(self.common_addr() + off, 2) as u16
    }
    /// Write a word of `common_cfg`.
    pub fn set_common16(&mut self, off: u64, v: u16) {
        self.wr(self.common_addr() + off, 2, u64::from(v));
    }
    /// A dword of `common_cfg`.
    pub fn common32(&mut self, off: u64) -> u32 {
        self.rd(self.common_addr() + off, 4) as u32
    }
    /// Write a dword of `common_cfg`.
    pub fn set_common32(&mut self, off: u64, v: u32) {
        self.wr(self.common_addr() + off, 4, u64::from(v));
    }
    /// `device_status`.
    pub fn device_status(&mut self) -> u8 {
        self.rd(self.common_addr() + common::DEVICE_STATUS, 1) as u8
    }
    /// Write `device_status`.
    pub fn set_device_status(&mut self, v: u8) {
        self.wr(self.common_addr() + common::DEVICE_STATUS, 1, u64::from(v));
    }
    /// Write `queue_select`.
    pub fn select_queue(&mut self, q: u16) {
        self.set_common16(common::QUEUE_SELECT, q);
    }
    /// `msix_config`.
    pub fn msix_config(&mut self) -> u16 {
        self.common16(common::MSIX_CONFIG)
    }
    /// `queue_msix_vector` of queue `q`.
    pub fn queue_vector(&mut self, q: u16) -> u16 {
        self.select_queue(q);
        self.common16(common::QUEUE_MSIX_VECTOR)
    }
    /// Write `queue_msix_vector` of queue `q`.
    pub fn set_queue_vector(&mut self, q: u16, v: u16) {
        self.select_queue(q);
        self.set_common16(common::QUEUE_MSIX_VECTOR, v);
    }
    /// Read (and so clear) the ISR status byte.
    pub fn isr(&mut self) -> u8 {
        let at = Rig::region_addr(self.options.layout.isr);
        self.rd(at, 1) as u8
    }
    /// `device_feature` as a 64-bit value, through both selector windows.
    pub fn device_features(&mut self) -> u64 {
        self.set_common32(common::DEVICE_FEATURE_SELECT, 0);
        let lo = u64::from(self.common32(common::DEVICE_FEATURE));
        self.set_common32(common::DEVICE_FEATURE_SELECT, 1);
        let hi = u64::from(self.common32(common::DEVICE_FEATURE));
        lo | (hi << 32)
    }
    /// Write `driver_feature` through both selector windows.
    pub fn write_driver_features(&mut self, f: u64) {
        self.set_common32(common::DRIVER_FEATURE_SELECT, 0);
        self.set_common32(common::DRIVER_FEATURE, f as u32);
        self.set_common32(common::DRIVER_FEATURE_SELECT, 1);
        self.set_common32(common::DRIVER_FEATURE, (f >> 32) as u32);
    }
    /// `driver_feature` as a 64-bit value.
    pub fn driver_features(&mut self) -> u64 {
        self.set_common32(common::DRIVER_FEATURE_SELECT, 0);
        let lo = u64::from(self.common32(common::DRIVER_FEATURE));
        self.set_common32(common::DRIVER_FEATURE_SELECT, 1);
        let hi = u64::from(self.common32(common::DRIVER_FEATURE));
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

    fn table_addr(&self) -> u64 {
        Rig::bar_addr(self.options.layout.msix_table_bar) + self.options.layout.msix_table_offset
    }

    /// Program entry `i` of the MSI-X table with `msg(i)` and the given mask.
    pub fn program_entry(&mut self, i: u16, masked: bool) {
        let (addr, data) = msg(i);
        let e = self.table_addr() + msix_spec::ENTRY_SIZE * u64::from(i);
        self.wr(e, 4, addr & 0xFFFF_FFFF);
        self.wr(e + 4, 4, addr >> 32);
        self.wr(e + 8, 4, u64::from(data));
        self.wr(e + 12, 4, u64::from(masked));
    }
    /// Set or clear the Mask bit of entry `i`.
    pub fn mask_entry(&mut self, i: u16, masked: bool) {
        let at = self.table_addr() + msix_spec::ENTRY_SIZE * u64::from(i) + 12;
        self.wr(at, 4, u64::from(masked));
    }
    /// PBA qword `word`.
    pub fn pba(&mut self, word: u64) -> u64 {
        let l = self.options.layout;
        self.rd(
            Rig::bar_addr(l.msix_pba_bar) + l.msix_pba_offset + 8 * word,
            8,
        )
    }

    /// Program every MSI-X entry i with `msg(i)` unmasked, set MSI-X Enable and route
    /// configuration changes to entry 0 (virtio 1.2, 4.1.5.1.2).
    pub fn enable_msix(&mut self) {
        for i in 0..self.table_size() {
            self.program_entry(i, false);
        }
        let ctl = self.msix_control();
        self.set_msix_control(ctl | msix_spec::CONTROL_ENABLE);
        self.set_common16(common::MSIX_CONFIG, 0);
        assert_eq!(self.msix_config(), 0);
    }

    /// Write size and ring addresses of queue `q` to `common_cfg` (nothing in RAM).
    pub fn program_queue(&mut self, q: u16, size: u16, addrs: RingAddrs) {
        self.select_queue(q);
        self.set_common16(common::QUEUE_SIZE, size);
        let c = self.common_addr();
        self.wr(c + common::QUEUE_DESC, 8, addrs.desc);
        self.wr(c + common::QUEUE_DRIVER, 8, addrs.avail);
        self.wr(c + common::QUEUE_DEVICE, 8, addrs.used);
    }

    /// Configure queue `q` with a fresh ring of [`RING_SIZE`] entries (not enabled).
    pub fn configure_queue(&mut self, q: u16, base: u64) -> Ring<M> {
        self.configure_queue_sized(q, base, RING_SIZE)
    }

    /// Configure queue `q` with a fresh ring of `size` entries at `base` (not enabled).
    pub fn configure_queue_sized(&mut self, q: u16, base: u64, size: u16) -> Ring<M> {
        let ring = Ring::new(&self.mem, q, size, base);
        self.program_queue(q, size, ring.addrs());
        ring
    }

    /// Write `queue_enable` = 1 for queue `q`.
    pub fn enable_queue(&mut self, q: u16) {
        self.select_queue(q);
        self.set_common16(common::QUEUE_ENABLE, 1);
    }

    /// Steps 1-7 of virtio 1.2, 3.1.1 (everything but DRIVER_OK).
    pub fn setup(&mut self, s: &Setup) -> Vec<Ring<M>> {
        self.map_bars();
        assert!(self.negotiate(s.features), "FEATURES_OK refused");
        if s.msix {
            self.enable_msix();
        }
        let n = self.common16(common::NUM_QUEUES);
        let which: Vec<u16> = s.queues.clone().unwrap_or_else(|| (0..n).collect());
        let mut rings = Vec::new();
        for q in 0..n {
            let ring = self.configure_queue_sized(q, Rig::ring_base(q), s.ring_size);
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

    /// Set DRIVER_OK on top of the current status.
    pub fn driver_ok(&mut self) {
        let s = self.device_status();
        self.set_device_status(s | status::DRIVER_OK);
    }

    /// `setup` + DRIVER_OK.
    pub fn bring_up(&mut self, s: &Setup) -> Vec<Ring<M>> {
        let rings = self.setup(s);
        self.driver_ok();
        rings
    }

    /// Notify queue `q` with a 16-bit write of its index at its notify address.
    pub fn kick(&mut self, q: u16) {
        self.kick_width(q, 2);
    }
    /// Notify queue `q` with a write of `width` bytes.
    pub fn kick_width(&mut self, q: u16, width: usize) {
        let addr = self.notify_addr(q);
        self.wr(addr, width, u64::from(q));
    }
    /// cap.offset + queue_notify_off * notify_off_multiplier (virtio 1.2, 4.1.4.4).
    pub fn notify_addr(&mut self, q: u16) -> u64 {
        let cap = self.virtio_cap(cfg_type::NOTIFY);
        let bar = self.cfg8(cap + 4);
        let off = u64::from(self.cfg32(cap + 8));
        let mult = u64::from(self.cfg32(cap + 16));
        self.select_queue(q);
        let notify_off = u64::from(self.common16(common::QUEUE_NOTIFY_OFF));
        Rig::bar_addr(bar) + off + notify_off * mult
    }

    // ------------------------------------------------------------------- evidence

    /// Every event recorded so far.
    pub fn events(&self) -> Vec<EventKind> {
        self.log.snapshot().into_iter().map(|e| e.kind).collect()
    }
    /// How many recorded events match `pred`.
    pub fn count(&self, pred: impl Fn(&EventKind) -> bool) -> usize {
        self.log.count(pred)
    }
}

/// A brought-up single-queue device for the hot path: `backend` over `mem`, MSI-X on (entry 0
/// configuration, entry 1 queue 0), queue 0 of `size` entries live, VERSION_1 plus
/// `extra_features` negotiated, DRIVER_OK set; no event log. Returns the rig, its ring and the
/// queue's notify address.
pub fn live_queue<M, S>(
    backend: Box<dyn VirtioBackend>,
    mem: M,
    sink: Arc<S>,
    size: u16,
    extra_features: u64,
) -> (Rig<M, S>, Ring<M>, u64)
where
    M: GuestMemory + Clone + 'static,
    S: InterruptSink + 'static,
{
    let mut rig = Rig::build(backend, TransportOptions::default(), mem, sink, false);
    let ring = rig
        .bring_up(&Setup {
            features: features::VERSION_1 | extra_features,
            ring_size: size,
            ..Setup::msix()
        })
        .remove(0);
    let notify = rig.notify_addr(0);
    assert!(rig.dev.msix_enabled());
    assert_eq!(rig.dev.queue_msix_vector(0), Some(1));
    (rig, ring, notify)
}
