//! `struct virtio_pci_common_cfg` (virtio 1.2, 4.1.4.3): feature negotiation, `device_status`
//! and device reset, queue set-up, and the vector selectors with their read-back rule.

use virq_events::{EventKind, NO_VECTOR, Selector};
use virq_spec::common_cfg::*;

use super::{Fault, QueueSlot, VirtioPciDevice};
use crate::ring::RingPart;
use crate::{features, status};

/// The source a vector selector routes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Source {
    Config,
    Queue(u16),
}

impl VirtioPciDevice {
    pub(super) fn common_read(&mut self, offset: u64, data: &mut [u8]) {
        // Assemble the read from the fields it covers; common_cfg reads have no side effects.
        let mut i = 0;
        while i < data.len() {
            let at = offset + i as u64;
            let (field, width, value) = match at {
                DEVICE_FEATURE_SELECT..0x04 => {
                    (DEVICE_FEATURE_SELECT, 4, self.device_feature_select as u64)
                }
                DEVICE_FEATURE..0x08 => (
                    DEVICE_FEATURE,
                    4,
                    self.feature_window(self.device_feature_select, self.device_features) as u64,
                ),
                DRIVER_FEATURE_SELECT..0x0C => {
                    (DRIVER_FEATURE_SELECT, 4, self.driver_feature_select as u64)
                }
                DRIVER_FEATURE..0x10 => (
                    DRIVER_FEATURE,
                    4,
                    self.feature_window(self.driver_feature_select, self.driver_features) as u64,
                ),
                MSIX_CONFIG..0x12 => (MSIX_CONFIG, 2, self.msix_config as u64),
                NUM_QUEUES..0x14 => (NUM_QUEUES, 2, self.queues.len() as u64),
                DEVICE_STATUS => (DEVICE_STATUS, 1, self.device_status as u64),
                CONFIG_GENERATION => (CONFIG_GENERATION, 1, self.config_generation as u64),
                QUEUE_SELECT..0x18 => (QUEUE_SELECT, 2, self.queue_select as u64),
                QUEUE_SIZE..0x1A => (
                    QUEUE_SIZE,
                    2,
                    self.selected().map_or(0, |s| s.queue.size()) as u64,
                ),
                QUEUE_MSIX_VECTOR..0x1C => (
                    QUEUE_MSIX_VECTOR,
                    2,
                    self.selected().map_or(NO_VECTOR, |s| s.msix_vector) as u64,
                ),
                QUEUE_ENABLE..0x1E => (
                    QUEUE_ENABLE,
                    2,
                    self.selected().map_or(0, |s| s.queue.ready() as u64),
                ),
                QUEUE_NOTIFY_OFF..0x20 => (
                    QUEUE_NOTIFY_OFF,
                    2,
                    self.selected().map_or(0, |_| self.queue_select as u64),
                ),
                QUEUE_DESC..0x28 => (
                    QUEUE_DESC,
                    8,
                    self.selected().map_or(0, |s| s.queue.desc_table()),
                ),
                QUEUE_DRIVER..0x30 => (
                    QUEUE_DRIVER,
                    8,
                    self.selected().map_or(0, |s| s.queue.avail_ring()),
                ),
                QUEUE_DEVICE..0x38 => (
                    QUEUE_DEVICE,
                    8,
                    self.selected().map_or(0, |s| s.queue.used_ring()),
                ),
                QUEUE_RESET..0x3C if self.offers(features::RING_RESET) => (
                    QUEUE_RESET,
                    2,
                    self.selected().map_or(0, |s| s.reset_pending as u64),
                ),
                _ => (at, 1, 0),
            };
            let bytes = value.to_le_bytes();
            let start = (at - field) as usize;
            let take = (width - start).min(data.len() - i);
            data[i..i + take].copy_from_slice(&bytes[start..start + take]);
            i += take;
        }
        if data.len() == 2 {
            match offset {
                MSIX_CONFIG => self.events.emit(EventKind::VectorRead {
                    selector: Selector::MsixConfig,
                    value: self.msix_config,
                }),
                QUEUE_MSIX_VECTOR => self.events.emit(EventKind::VectorRead {
                    selector: Selector::Queue(self.queue_select),
                    value: u16::from_le_bytes([data[0], data[1]]),
                }),
                _ => {}
            }
        }
    }

    fn feature_window(&self, select: u32, bits: u64) -> u32 {
        match select {
            0 => bits as u32,
            1 => (bits >> 32) as u32,
            // Feature words beyond 64 bits are reserved and read 0 (virtio 1.2, 4.1.4.3).
            _ => 0,
        }
    }

    pub(super) fn offers(&self, feature: u64) -> bool {
        self.device_features & feature != 0
    }

    fn selected(&self) -> Option<&QueueSlot> {
        self.queues.get(self.queue_select as usize)
    }

    /// Writes must use the field's natural width (virtio 1.2, 4.1.3.1); 64-bit fields may also
    /// be written as two 32-bit halves. Any other write is ignored.
    pub(super) fn common_write(&mut self, offset: u64, data: &[u8]) {
        let mut raw = [0u8; 8];
        raw[..data.len()].copy_from_slice(data);
        let v = u64::from_le_bytes(raw);
        match (offset, data.len()) {
            (DEVICE_FEATURE_SELECT, 4) => self.device_feature_select = v as u32,
            (DRIVER_FEATURE_SELECT, 4) => self.driver_feature_select = v as u32,
            (DRIVER_FEATURE, 4) => self.write_driver_features(v as u32),
            (MSIX_CONFIG, 2) => self.write_vector(Source::Config, v as u16),
            (DEVICE_STATUS, 1) => self.write_device_status(v as u8),
            (QUEUE_SELECT, 2) => self.queue_select = v as u16,
            (QUEUE_SIZE, 2) => self.write_queue_size(v as u16),
            (QUEUE_MSIX_VECTOR, 2) => self.write_vector(Source::Queue(self.queue_select), v as u16),
            (QUEUE_ENABLE, 2) => self.write_queue_enable(v as u16),
            (QUEUE_DESC, 4 | 8) | (0x24, 4) => self.write_queue_addr(
                RingPart::DescriptorTable,
                offset - QUEUE_DESC,
                data.len(),
                v,
            ),
            (QUEUE_DRIVER, 4 | 8) | (0x2C, 4) => {
                self.write_queue_addr(RingPart::AvailRing, offset - QUEUE_DRIVER, data.len(), v)
            }
            (QUEUE_DEVICE, 4 | 8) | (0x34, 4) => {
                self.write_queue_addr(RingPart::UsedRing, offset - QUEUE_DEVICE, data.len(), v)
            }
            (QUEUE_RESET, 2) if self.offers(features::RING_RESET) => {
                self.write_queue_reset(v as u16)
            }
            _ => {}
        }
    }

    /// A vector index the table does not have is stored as NO_VECTOR, so the driver's
    /// read-back shows the refusal (virtio 1.2, 4.1.5.1.2.1).
    fn accept_vector(&self, vector: u16) -> u16 {
        let accept_any = self.fault(Fault::AcceptOutOfRangeVectors);
        if self.vectors_accepted_below().is_some_and(|n| vector >= n)
            && vector != NO_VECTOR
            && !accept_any
        {
            return NO_VECTOR;
        }
        match &self.msix {
            Some(m) if vector < m.table_size() => vector,
            Some(_) if accept_any => vector,
            _ => NO_VECTOR,
        }
    }

    /// `msix_config` or `queue_msix_vector` written: store what the table accepts. A source
    /// that leaves an entry takes its pending message with it (row 30), after the write.
    fn write_vector(&mut self, source: Source, written: u16) {
        let accepted = self.accept_vector(written);
        let (selector, old, read_back) = match source {
            Source::Config => (
                Selector::MsixConfig,
                std::mem::replace(&mut self.msix_config, accepted),
                accepted,
            ),
            Source::Queue(q) => match self.queues.get_mut(q as usize) {
                Some(slot) => (
                    Selector::Queue(q),
                    std::mem::replace(&mut slot.msix_vector, accepted),
                    accepted,
                ),
                None => (Selector::Queue(q), NO_VECTOR, NO_VECTOR),
            },
        };
        self.events.emit(EventKind::VectorWritten {
            selector,
            written,
            read_back,
        });
        if old != read_back {
            self.release_pending(source, old);
        }
    }

    fn write_driver_features(&mut self, word: u32) {
        // Features are fixed once FEATURES_OK is set (virtio 1.2, 3.1.1).
        if self.device_status & status::FEATURES_OK != 0 {
            return;
        }
        match self.driver_feature_select {
            0 => self.driver_features = (self.driver_features & !0xFFFF_FFFF) | word as u64,
            1 => {
                self.driver_features = (self.driver_features & 0xFFFF_FFFF) | ((word as u64) << 32)
            }
            _ => {}
        }
    }

    fn write_device_status(&mut self, value: u8) {
        self.events.emit(EventKind::DeviceStatus { value });
        if value == 0 {
            self.reset();
            return;
        }
        let old = self.device_status;
        // The driver never clears a bit (virtio 1.2, 2.1.1); DEVICE_NEEDS_RESET is the device's.
        let driver_bits = old & !status::DEVICE_NEEDS_RESET;
        if value & driver_bits != driver_bits {
            return;
        }
        let mut new = (value & !status::DEVICE_NEEDS_RESET) | (old & status::DEVICE_NEEDS_RESET);
        if new & status::FEATURES_OK != 0 && old & status::FEATURES_OK == 0 {
            // FEATURES_OK sticks only for a subset of what we offer that includes VERSION_1.
            let ok = self.driver_features & !self.device_features == 0
                && self.driver_features & features::VERSION_1 != 0;
            self.events.emit(EventKind::FeaturesNegotiated {
                offered: self.device_features,
                accepted: self.driver_features,
                ok,
            });
            if !ok {
                new &= !status::FEATURES_OK;
            }
        }
        if new & status::DRIVER_OK != 0 && old & status::DRIVER_OK == 0 {
            if new & status::FEATURES_OK == 0 {
                // DRIVER_OK without FEATURES_OK is a driver error we cannot run with.
                self.device_status = new & !status::DRIVER_OK;
                self.needs_reset(None);
                return;
            }
            let event_idx = self.driver_features & features::RING_EVENT_IDX != 0;
            for slot in &mut self.queues {
                slot.queue.set_event_idx(event_idx);
            }
            self.backend.activate(self.driver_features);
        }
        self.device_status = new;
        if new & status::DRIVER_OK != 0 && old & status::DRIVER_OK == 0 {
            self.process_all_ready();
        }
    }

    /// Device reset (virtio 1.2, 2.4 and 4.1.4.3.1): every vector selector back to NO_VECTOR,
    /// queues disabled, ISR cleared, INTx lowered, and no interrupt of the old life left to
    /// deliver: the Pending Bits the device's sources set are cleared (virtio 1.2, 2.4.1: no
    /// notification after a reset; PCIe 6.1.4.5: a pending message whose cause is gone is
    /// withdrawn). The MSI-X table itself belongs to PCI and survives.
    pub fn reset(&mut self) {
        self.backend.reset();
        self.device_status = 0;
        self.device_feature_select = 0;
        self.driver_feature_select = 0;
        self.driver_features = 0;
        let keep_vectors = self.fault(Fault::KeepVectorsAcrossReset);
        if !keep_vectors {
            self.msix_config = NO_VECTOR;
        }
        self.queue_select = 0;
        for slot in &mut self.queues {
            slot.queue.reset();
            if !keep_vectors {
                slot.msix_vector = NO_VECTOR;
            }
            slot.reset_pending = false;
            slot.notify_deferred = false;
        }
        self.isr_status = 0;
        self.events.emit(EventKind::DeviceReset);
        self.withdraw_all_pending();
        if self.fault(Fault::IntxStaysHighOnReset) && self.line {
            self.intx_stuck = true;
        }
        self.update_intx();
    }

    fn selected_mut_if_configurable(&mut self) -> Option<&mut QueueSlot> {
        // Queue configuration is frozen while the queue is enabled (virtio 1.2, 4.1.4.3.2).
        self.queues
            .get_mut(self.queue_select as usize)
            .filter(|s| !s.queue.ready())
    }

    fn write_queue_size(&mut self, size: u16) {
        if let Some(slot) = self.selected_mut_if_configurable() {
            // Split rings need a power of two no larger than the maximum (virtio 1.2, 2.7);
            // anything else is ignored so the read-back shows the refusal.
            let _ = slot.queue.set_size(size);
        }
    }

    /// A ring address (whole, or one 32-bit half at `half_offset` 0 or 4). Stored as
    /// written; alignment and placement are checked when the queue is enabled.
    fn write_queue_addr(&mut self, part: RingPart, half_offset: u64, len: usize, v: u64) {
        let Some(slot) = self.selected_mut_if_configurable() else {
            return;
        };
        let cur = slot.queue.address(part);
        let new = match (len, half_offset) {
            (8, _) => v,
            (_, 0) => (cur & !0xFFFF_FFFF) | (v & 0xFFFF_FFFF),
            _ => (cur & 0xFFFF_FFFF) | (v << 32),
        };
        slot.queue.set_address(part, new);
    }

    fn write_queue_enable(&mut self, v: u16) {
        // Writing 0 is not allowed (virtio 1.2, 4.1.4.3.2): queue_reset exists for that.
        if v != 1 {
            return;
        }
        let q = self.queue_select;
        let Some(slot) = self.queues.get_mut(q as usize) else {
            return;
        };
        if slot.queue.ready() {
            return;
        }
        slot.reset_pending = false;
        // Rings that are misaligned or do not fit in guest RAM make the queue unusable, and
        // so does a driver area left at its reset value 0: it was never set up, and serving
        // it would answer nothing.
        if slot.queue.validate(self.mem.as_ref()).is_err() || slot.queue.avail_ring() == 0 {
            self.needs_reset(Some(q));
            return;
        }
        slot.queue.set_ready(true);
        let size = slot.queue.size();
        self.events.emit(EventKind::QueueEnabled { queue: q, size });
    }

    fn write_queue_reset(&mut self, v: u16) {
        if v != 1 {
            return;
        }
        let q = self.queue_select;
        let event_idx = self.driver_features & features::RING_EVENT_IDX != 0;
        let Some(slot) = self.queues.get_mut(q as usize) else {
            return;
        };
        slot.queue.reset();
        slot.queue.set_event_idx(event_idx);
        let old = slot.msix_vector;
        slot.msix_vector = NO_VECTOR;
        slot.notify_deferred = false;
        // The reset is complete when this write returns, and virtio 1.2, 4.1.4.3.1 says
        // a completed reset presents 0 in both queue_reset and queue_enable: a driver
        // (Linux's vp_modern_set_queue_reset) polls queue_reset until it reads 0.
        slot.reset_pending = false;
        self.events.emit(EventKind::QueueReset { queue: q });
        self.release_pending(Source::Queue(q), old);
    }
}
