//! A small, honest virtio-pci modern device model for the unit tests.
//!
//! It follows virtio 1.2 section 4.1 where the driver core can observe it: natural access widths
//! are enforced (a wrong width panics), vector selectors hold 0xFFFF after reset and for any
//! index at or above the MSI-X table size, ISR status is read-to-clear and lowers the line, FEATURES_OK is only
//! kept for a subset of the offered features that includes VERSION_1, and interrupts honour
//! `VRING_AVAIL_F_NO_INTERRUPT` / `used_event`. It knows nothing of the driver core's code.

use crate::access::{GuestRam, GuestRamExt, RegisterAccess, VecRam, Width};
use crate::queue::need_event;
use std::cell::RefCell;
use std::rc::Rc;
use virq_events::{NO_VECTOR, SuppressReason};

/// Raw 256-byte configuration space, counting reads (the parser's proptest bounds them).
#[derive(Clone, Debug)]
pub struct ConfigSpace {
    pub bytes: [u8; 256],
    pub reads: usize,
}

impl RegisterAccess for ConfigSpace {
    fn config_read(&mut self, offset: u16, width: Width) -> u32 {
        self.reads += 1;
        let mut v = 0u32;
        for i in 0..width.bytes() as u16 {
            let b = self
                .bytes
                .get(usize::from(offset + i))
                .copied()
                .unwrap_or(0xFF);
            v |= u32::from(b) << (8 * i);
        }
        v
    }
    fn config_write(&mut self, offset: u16, width: Width, value: u32) {
        for i in 0..width.bytes() as u16 {
            if let Some(b) = self.bytes.get_mut(usize::from(offset + i)) {
                *b = (value >> (8 * i)) as u8;
            }
        }
    }
    fn bar_read(&mut self, _bar: u8, _offset: u64, _width: Width) -> u64 {
        u64::MAX
    }
    fn bar_write(&mut self, _bar: u8, _offset: u64, _width: Width, _value: u64) {}
}

/// Builds the default layout of design.md: BAR0 (64-bit) holds common 0x0000, notify 0x1000
/// (multiplier 4), ISR 0x2000, device 0x3000; the MSI-X table and PBA live in BAR2.
pub struct ConfigSpaceBuilder {
    caps: Vec<(u8, Vec<u8>)>,
}

fn vendor_cap(cfg_type: u8, bar: u8, offset: u32, length: u32, len: u8) -> Vec<u8> {
    let mut c = vec![0u8; usize::from(len)];
    c[0] = 0x09;
    c[2] = len;
    c[3] = cfg_type;
    c[4] = bar;
    c[8..12].copy_from_slice(&offset.to_le_bytes());
    c[12..16].copy_from_slice(&length.to_le_bytes());
    c
}

impl ConfigSpaceBuilder {
    pub fn standard() -> Self {
        let mut notify = vendor_cap(2, 0, 0x1000, 0x1000, 20);
        notify[16..20].copy_from_slice(&4u32.to_le_bytes());
        let msix = vec![0x11, 0, 2, 0, 2, 0, 0, 0, 0x02, 0x08, 0, 0];
        Self {
            caps: vec![
                (0x40, vendor_cap(1, 0, 0x0000, 0x40, 16)),
                (0x50, notify),
                (0x64, vendor_cap(3, 0, 0x2000, 4, 16)),
                (0x74, vendor_cap(4, 0, 0x3000, 0x100, 16)),
                (0x84, vendor_cap(5, 0, 0, 0, 20)),
                (0x98, msix),
            ],
        }
    }

    /// MSI-X table size (1..=2048) in Message Control.
    pub fn msix_table_size(mut self, size: u16) -> Self {
        let control = (size - 1) & 0x7FF;
        let msix = self.caps.iter_mut().find(|c| c.1[0] == 0x11).unwrap();
        msix.1[2..4].copy_from_slice(&control.to_le_bytes());
        self
    }

    /// Append a 16-byte virtio capability at `at` to the end of the list.
    pub fn extra_vendor_cap(
        mut self,
        at: u8,
        cfg_type: u8,
        bar: u8,
        offset: u32,
        length: u32,
    ) -> Self {
        self.caps
            .push((at, vendor_cap(cfg_type, bar, offset, length, 16)));
        self
    }

    pub fn build(self) -> ConfigSpace {
        let mut bytes = [0u8; 256];
        bytes[0..2].copy_from_slice(&0x1AF4u16.to_le_bytes());
        bytes[2..4].copy_from_slice(&0x1044u16.to_le_bytes());
        bytes[6] = 0x10;
        bytes[8] = 1;
        bytes[0x10..0x14].copy_from_slice(&0xFE00_0004u32.to_le_bytes());
        bytes[0x14..0x18].copy_from_slice(&1u32.to_le_bytes());
        bytes[0x18..0x1C].copy_from_slice(&0xFE10_0000u32.to_le_bytes());
        bytes[0x34] = self.caps.first().map_or(0, |c| c.0);
        for (i, (at, cap)) in self.caps.iter().enumerate() {
            let next = self.caps.get(i + 1).map_or(0, |c| c.0);
            for (j, b) in cap.iter().enumerate() {
                if let Some(slot) = bytes.get_mut(usize::from(*at) + j) {
                    *slot = *b;
                }
            }
            if let Some(slot) = bytes.get_mut(usize::from(*at) + 1) {
                *slot = next;
            }
        }
        ConfigSpace { bytes, reads: 0 }
    }
}

/// Guest RAM shared between the driver under test and the fake device.
#[derive(Clone)]
pub struct SharedRam(pub Rc<RefCell<VecRam>>);

impl SharedRam {
    pub fn new(base: u64, len: usize) -> Self {
        Self(Rc::new(RefCell::new(VecRam::new(base, len))))
    }
}

impl GuestRam for SharedRam {
    fn read(&mut self, gpa: u64, buf: &mut [u8]) -> Result<(), crate::access::RamError> {
        self.0.borrow_mut().read(gpa, buf)
    }
    fn write(&mut self, gpa: u64, data: &[u8]) -> Result<(), crate::access::RamError> {
        self.0.borrow_mut().write(gpa, data)
    }
}

/// What the fake saw the driver do, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FakeOp {
    Status(u8),
    Reset,
    MsixConfig {
        written: u16,
        stored: u16,
    },
    QueueVector {
        queue: u16,
        written: u16,
        stored: u16,
    },
    QueueEnable {
        queue: u16,
    },
}

#[derive(Clone, Debug, Default)]
pub struct FakeQueue {
    pub max_size: u16,
    pub size: u16,
    pub vector: u16,
    pub enabled: bool,
    pub desc: u64,
    pub driver: u64,
    pub device: u64,
    pub last_avail: u16,
}

/// Which interrupt source fired.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cause {
    Queue(u16),
    Config,
}

pub struct FakeState {
    pub config: ConfigSpace,
    pub ram: SharedRam,
    pub offered: u64,
    pub device_feature_select: u32,
    pub driver_feature_select: u32,
    pub driver_features: u64,
    pub status: u8,
    pub msix_config: u16,
    pub table_size: u16,
    pub queue_select: u16,
    pub queues: Vec<FakeQueue>,
    pub isr: u8,
    pub line: bool,
    pub config_generation: u8,
    pub history: Vec<FakeOp>,
    pub notifications: Vec<u16>,
    /// MSI-X table entries signalled, in order.
    pub sent: Vec<u16>,
    pub suppressed: Vec<(Cause, SuppressReason)>,
    pub isr_reads: u64,
    // Knobs.
    pub refuse_features_ok: bool,
    /// Reads of `device_status` that still return the old value after a reset.
    pub reset_delay_reads: u32,
    pub pending_reset_reads: u32,
    pub stale_status: u8,
    /// Vector indices >= this read back 0xFFFF even inside the table (resource refusal).
    pub refuse_vectors_from: Option<u16>,
    /// Surprise removal: every read returns all ones, writes are lost.
    pub removed: bool,
    /// Device-specific configuration bytes (BAR0 + 0x3000).
    pub device_cfg: Vec<u8>,
    /// Device-configuration reads that each bump `config_generation` (a change racing the
    /// driver's read, virtio 1.2 2.5.1).
    pub generation_bumps_on_read: u32,
}

/// A handle on the fake; clones share one device.
#[derive(Clone)]
pub struct FakeDevice(pub Rc<RefCell<FakeState>>);

/// The shape of a fake device.
#[derive(Clone, Copy, Debug)]
pub struct FakeSpec {
    pub queues: u16,
    pub queue_size: u16,
    pub table_size: u16,
    pub offered: u64,
    pub msix_enabled: bool,
}

const COMMON_LEN: u64 = 0x40;
const NOTIFY: u64 = 0x1000;
const ISR: u64 = 0x2000;
const DEVICE: u64 = 0x3000;

impl FakeDevice {
    pub fn new(spec: FakeSpec, ram: SharedRam) -> Self {
        let mut config = ConfigSpaceBuilder::standard()
            .msix_table_size(spec.table_size)
            .build();
        if spec.msix_enabled {
            config.bytes[0x9B] |= 0x80;
        }
        let mut st = FakeState {
            config,
            ram,
            offered: spec.offered,
            device_feature_select: 0,
            driver_feature_select: 0,
            driver_features: 0,
            status: 0,
            msix_config: NO_VECTOR,
            table_size: spec.table_size,
            queue_select: 0,
            queues: vec![
                FakeQueue {
                    max_size: spec.queue_size,
                    ..FakeQueue::default()
                };
                usize::from(spec.queues)
            ],
            isr: 0,
            line: false,
            config_generation: 0,
            history: Vec::new(),
            notifications: Vec::new(),
            sent: Vec::new(),
            suppressed: Vec::new(),
            isr_reads: 0,
            refuse_features_ok: false,
            reset_delay_reads: 0,
            pending_reset_reads: 0,
            stale_status: 0,
            refuse_vectors_from: None,
            removed: false,
            device_cfg: vec![0; 0x100],
            generation_bumps_on_read: 0,
        };
        st.reset();
        st.history.clear();
        Self(Rc::new(RefCell::new(st)))
    }

    pub fn st(&self) -> std::cell::RefMut<'_, FakeState> {
        self.0.borrow_mut()
    }

    /// Consume every available chain of `queue`, report `written` bytes for each, and interrupt.
    pub fn complete(&self, queue: u16, written: u32) -> u16 {
        self.0.borrow_mut().complete(queue, written)
    }

    /// A configuration change (virtio 1.2 section 4.1.4.5 bit 1).
    pub fn config_change(&self) {
        let mut st = self.0.borrow_mut();
        st.config_generation = st.config_generation.wrapping_add(1);
        st.raise(Cause::Config);
    }
}

impl FakeState {
    fn reset(&mut self) {
        self.status = 0;
        self.driver_features = 0;
        self.msix_config = NO_VECTOR;
        for q in &mut self.queues {
            *q = FakeQueue {
                max_size: q.max_size,
                size: q.max_size,
                vector: NO_VECTOR,
                ..FakeQueue::default()
            };
        }
        self.isr = 0;
        self.line = false;
        self.history.push(FakeOp::Reset);
    }

    fn msix_enabled(&self) -> bool {
        self.config.bytes[0x9B] & 0x80 != 0
    }

    fn event_idx(&self) -> bool {
        self.driver_features & (1 << 29) != 0
    }

    fn accept_vector(&self, v: u16) -> u16 {
        let refused = self.refuse_vectors_from.is_some_and(|r| v >= r);
        if v == NO_VECTOR || v >= self.table_size || refused {
            NO_VECTOR
        } else {
            v
        }
    }

    fn selected(&mut self) -> Option<&mut FakeQueue> {
        self.queues.get_mut(usize::from(self.queue_select))
    }

    fn raise(&mut self, cause: Cause) {
        if self.status & 4 == 0 {
            self.suppressed.push((cause, SuppressReason::NotLive));
            return;
        }
        if self.msix_enabled() {
            let vector = match cause {
                Cause::Queue(q) => self.queues[usize::from(q)].vector,
                Cause::Config => self.msix_config,
            };
            if vector == NO_VECTOR {
                self.suppressed.push((cause, SuppressReason::NoVector));
            } else {
                self.sent.push(vector);
            }
        } else {
            self.isr |= match cause {
                Cause::Queue(_) => 1,
                Cause::Config => 2,
            };
            self.line = true;
        }
    }

    fn complete(&mut self, queue: u16, written: u32) -> u16 {
        let event_idx = self.event_idx();
        let q = self.queues[usize::from(queue)].clone();
        if !q.enabled || self.status & 4 == 0 {
            return 0;
        }
        let mut ram = self.ram.clone();
        let n = u64::from(q.size);
        let avail_idx = ram.read_u16(q.driver + 2).unwrap();
        let old_used = ram.read_u16(q.device + 2).unwrap();
        let mut used = old_used;
        let mut last_avail = q.last_avail;
        while last_avail != avail_idx {
            let head = ram
                .read_u16(q.driver + 4 + 2 * (u64::from(last_avail) % n))
                .unwrap();
            let at = q.device + 4 + 8 * (u64::from(used) % n);
            ram.write_u32(at, u32::from(head)).unwrap();
            ram.write_u32(at + 4, written).unwrap();
            used = used.wrapping_add(1);
            last_avail = last_avail.wrapping_add(1);
        }
        ram.write_u16(q.device + 2, used).unwrap();
        // avail_event: ask for a notification on every new buffer.
        ram.write_u16(q.device + 4 + 8 * n, last_avail).unwrap();
        self.queues[usize::from(queue)].last_avail = last_avail;
        let count = used.wrapping_sub(old_used);
        if count == 0 {
            return 0;
        }
        let wanted = if event_idx {
            let used_event = ram.read_u16(q.driver + 4 + 2 * n).unwrap();
            need_event(used_event, used, old_used)
        } else {
            ram.read_u16(q.driver).unwrap() & 1 == 0
        };
        if wanted {
            self.raise(Cause::Queue(queue));
        } else {
            let reason = if event_idx {
                SuppressReason::EventIdx
            } else {
                SuppressReason::AvailNoInterrupt
            };
            self.suppressed.push((Cause::Queue(queue), reason));
        }
        count
    }

    fn common_width(off: u64) -> Width {
        match off {
            0x00..=0x0F | 0x20..=0x37 => Width::U32,
            0x14 | 0x15 => Width::U8,
            _ => Width::U16,
        }
    }

    fn common_read(&mut self, off: u64) -> u64 {
        let qsel = self.queue_select;
        let q = self.queues.get(usize::from(qsel)).cloned();
        match off {
            0x00 => u64::from(self.device_feature_select),
            0x04 => match self.device_feature_select {
                0 => self.offered & 0xFFFF_FFFF,
                1 => self.offered >> 32,
                _ => 0,
            },
            0x08 => u64::from(self.driver_feature_select),
            0x0C => match self.driver_feature_select {
                0 => self.driver_features & 0xFFFF_FFFF,
                1 => self.driver_features >> 32,
                _ => 0,
            },
            0x10 => u64::from(self.msix_config),
            0x12 => self.queues.len() as u64,
            0x14 => {
                if self.pending_reset_reads > 0 {
                    self.pending_reset_reads -= 1;
                    u64::from(self.stale_status)
                } else {
                    u64::from(self.status)
                }
            }
            0x15 => u64::from(self.config_generation),
            0x16 => u64::from(qsel),
            _ => {
                let Some(q) = q else { return 0 };
                match off {
                    0x18 => u64::from(q.size),
                    0x1A => u64::from(q.vector),
                    0x1C => u64::from(q.enabled),
                    0x1E => u64::from(qsel),
                    0x20 => q.desc & 0xFFFF_FFFF,
                    0x24 => q.desc >> 32,
                    0x28 => q.driver & 0xFFFF_FFFF,
                    0x2C => q.driver >> 32,
                    0x30 => q.device & 0xFFFF_FFFF,
                    0x34 => q.device >> 32,
                    _ => 0,
                }
            }
        }
    }

    fn common_write(&mut self, off: u64, v: u64) {
        let set_half = |field: &mut u64, high: bool, v: u64| {
            if high {
                *field = (*field & 0xFFFF_FFFF) | (v << 32);
            } else {
                *field = (*field & !0xFFFF_FFFF) | (v & 0xFFFF_FFFF);
            }
        };
        match off {
            0x00 => self.device_feature_select = v as u32,
            0x08 => self.driver_feature_select = v as u32,
            0x0C => match self.driver_feature_select {
                0 => set_half(&mut self.driver_features, false, v),
                1 => set_half(&mut self.driver_features, true, v),
                _ => {}
            },
            0x10 => {
                let stored = self.accept_vector(v as u16);
                self.msix_config = stored;
                self.history.push(FakeOp::MsixConfig {
                    written: v as u16,
                    stored,
                });
            }
            0x14 => {
                let v = v as u8;
                self.history.push(FakeOp::Status(v));
                if v == 0 {
                    self.stale_status = self.status;
                    self.pending_reset_reads = self.reset_delay_reads;
                    self.reset();
                    return;
                }
                let mut v = v;
                let newly_ok = v & 8 != 0 && self.status & 8 == 0;
                if newly_ok {
                    let subset = self.driver_features & !self.offered == 0;
                    let modern = self.driver_features & (1 << 32) != 0;
                    if !subset || !modern || self.refuse_features_ok {
                        v &= !8;
                    }
                }
                self.status = v;
            }
            0x16 => self.queue_select = v as u16,
            _ => {
                let stored = self.accept_vector(v as u16);
                let queue = self.queue_select;
                let Some(q) = self.selected() else { return };
                match off {
                    0x18 => {
                        assert!(!q.enabled, "queue_size written after queue_enable");
                        assert!(v as u16 <= q.max_size && v > 0, "bad queue_size {v}");
                        q.size = v as u16;
                    }
                    0x1A => {
                        q.vector = stored;
                        self.history.push(FakeOp::QueueVector {
                            queue,
                            written: v as u16,
                            stored,
                        });
                    }
                    0x1C => {
                        assert_eq!(
                            v, 1,
                            "driver wrote 0 to queue_enable (virtio 1.2 4.1.4.3.2)"
                        );
                        q.enabled = true;
                        self.history.push(FakeOp::QueueEnable { queue });
                    }
                    0x20 => set_half(&mut q.desc, false, v),
                    0x24 => set_half(&mut q.desc, true, v),
                    0x28 => set_half(&mut q.driver, false, v),
                    0x2C => set_half(&mut q.driver, true, v),
                    0x30 => set_half(&mut q.device, false, v),
                    0x34 => set_half(&mut q.device, true, v),
                    _ => panic!("write to read-only common_cfg offset {off:#x}"),
                }
            }
        }
    }
}

impl RegisterAccess for FakeDevice {
    fn config_read(&mut self, offset: u16, width: Width) -> u32 {
        let mut st = self.0.borrow_mut();
        if st.removed {
            return u32::MAX >> (32 - 8 * width.bytes() as u32);
        }
        st.config.config_read(offset, width)
    }

    fn config_write(&mut self, offset: u16, width: Width, value: u32) {
        let mut st = self.0.borrow_mut();
        if st.removed {
            return;
        }
        // Only MSI-X Message Control bits 15 (enable) and 14 (function mask) are writable.
        let control_hi = 0x9B;
        for i in 0..width.bytes() as u16 {
            if offset + i == control_hi {
                let b = (value >> (8 * i)) as u8;
                st.config.bytes[0x9B] = (st.config.bytes[0x9B] & 0x07) | (b & 0xC0);
            }
        }
    }

    fn bar_read(&mut self, bar: u8, offset: u64, width: Width) -> u64 {
        let mut st = self.0.borrow_mut();
        if st.removed {
            return u64::MAX >> (64 - 8 * width.bytes());
        }
        assert_eq!(bar, 0, "fake only decodes BAR0 registers");
        if offset < COMMON_LEN {
            assert_eq!(
                width,
                FakeState::common_width(offset),
                "width at {offset:#x}"
            );
            st.common_read(offset)
        } else if offset == ISR {
            assert_eq!(width, Width::U8);
            st.isr_reads += 1;
            let v = st.isr;
            st.isr = 0;
            st.line = false;
            u64::from(v)
        } else if (DEVICE..DEVICE + 0x100).contains(&offset) {
            if st.generation_bumps_on_read > 0 {
                st.generation_bumps_on_read -= 1;
                st.config_generation = st.config_generation.wrapping_add(1);
            }
            let at = (offset - DEVICE) as usize;
            let mut v = 0u64;
            for i in 0..width.bytes() as usize {
                v |= u64::from(st.device_cfg.get(at + i).copied().unwrap_or(0)) << (8 * i);
            }
            v
        } else {
            panic!("read of unmapped BAR0 offset {offset:#x}")
        }
    }

    fn bar_write(&mut self, bar: u8, offset: u64, width: Width, value: u64) {
        let mut st = self.0.borrow_mut();
        if st.removed {
            return;
        }
        assert_eq!(bar, 0, "fake only decodes BAR0 registers");
        if offset < COMMON_LEN {
            assert_eq!(
                width,
                FakeState::common_width(offset),
                "width at {offset:#x}"
            );
            st.common_write(offset, value);
        } else if (NOTIFY..NOTIFY + 0x1000).contains(&offset) {
            assert_eq!(width, Width::U16, "notify must be a 16-bit write");
            let queue = ((offset - NOTIFY) / 4) as u16;
            assert_eq!(value, u64::from(queue), "notify data is the queue index");
            st.notifications.push(queue);
        } else if offset == ISR {
            // ISR status ignores writes (catalogue row 22).
        } else {
            panic!("write to unmapped BAR0 offset {offset:#x}")
        }
    }
}
