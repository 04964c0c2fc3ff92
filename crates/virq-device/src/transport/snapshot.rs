//! Snapshot and restore of everything interrupt-relevant.
//!
//! Restore validates the whole snapshot against this device before it changes anything, and
//! refuses what does not fit with a [`SnapshotError`] naming the field: a device that came back
//! from a snapshot holds only states the device itself could have reached. Mid-flight state
//! (an ISR bit, a pending line, a Pending Bit, a deferred notification) survives, so a restore
//! loses no interrupt.

use serde::{Deserialize, Serialize};
use thiserror::Error;
use virq_events::{NO_VECTOR, Selector};
use virq_spec::virtio_pci::{ISR_CONFIG, ISR_QUEUE};

use super::{DeviceError, QueueSlot, VirtioPciDevice};
use crate::msix::{self, Msix};
use crate::pci;
use crate::ring::{RingError, SplitQueue};
use crate::{features, status};

/// Serializable transport state (see [`VirtioPciDevice::snapshot`]).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DeviceSnapshot {
    /// The 256 configuration-space bytes, BARs and capability registers included.
    pub config_space: Vec<u8>,
    /// MSI-X table, PBA and control bits; `None` for a function without MSI-X.
    pub msix: Option<Msix>,
    /// `device_feature_select`.
    pub device_feature_select: u32,
    /// `driver_feature_select`.
    pub driver_feature_select: u32,
    /// `driver_feature`, all 64 bits.
    pub driver_features: u64,
    /// `msix_config`.
    pub msix_config: u16,
    /// The configuration interrupt waits in the PBA bit of `msix_config`.
    #[serde(default)]
    pub config_msix_pending: bool,
    /// `device_status`.
    pub device_status: u8,
    /// `config_generation`.
    pub config_generation: u8,
    /// `queue_select`.
    pub queue_select: u16,
    /// The ISR status byte, interrupts the driver has not read yet.
    pub isr_status: u8,
    /// The INTx level (INTA# asserted).
    pub line: bool,
    /// Every queue, in index order.
    pub queues: Vec<QueueSnapshot>,
    /// The device type's own state (its [`VirtioBackend::snapshot`](crate::VirtioBackend::snapshot)).
    pub backend: serde_json::Value,
}

/// One queue's state in a [`DeviceSnapshot`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueSnapshot {
    /// `queue_size` after reset: the device's maximum.
    pub max_size: u16,
    /// `queue_size` as the driver set it.
    pub size: u16,
    /// `queue_enable`.
    pub ready: bool,
    /// The device's next index into the available ring.
    pub next_avail: u16,
    /// The device's next index into the used ring.
    pub next_used: u16,
    /// VIRTIO_F_EVENT_IDX was negotiated for this queue.
    pub event_idx_enabled: bool,
    /// `queue_desc`: the descriptor table's guest-physical address.
    pub desc_table: u64,
    /// `queue_driver`: the available ring's guest-physical address.
    pub avail_ring: u64,
    /// `queue_device`: the used ring's guest-physical address.
    pub used_ring: u64,
    /// `queue_msix_vector`.
    pub msix_vector: u16,
    /// A `queue_reset` in progress (virtio 1.2, 4.1.4.3.1), from older snapshots only.
    pub reset_pending: bool,
    /// The queue's interrupt waits in the PBA bit of `msix_vector`.
    #[serde(default)]
    pub msix_pending: bool,
    /// A notification waits for Bus Master Enable.
    #[serde(default)]
    pub notify_deferred: bool,
    /// `next_used` at the last EVENT_IDX decision (absent: `next_used`).
    #[serde(default)]
    pub signalled_used: Option<u16>,
}

/// Why a snapshot does not fit this device; nothing was restored.
#[derive(Debug, Error)]
pub enum SnapshotError {
    /// The snapshot has another number of queues than the device.
    #[error("{snapshot} queues in the snapshot, {device} in the device")]
    QueueCount {
        /// Queues in the snapshot.
        snapshot: usize,
        /// Queues in the device.
        device: usize,
    },
    /// The configuration space is not 256 bytes long.
    #[error("configuration space of {0} bytes, not 256")]
    ConfigSpaceLength(usize),
    #[error(
        "configuration byte {offset:#04x} is {snapshot:#04x}, but its read-only bits are \
         {device:#04x} in this device"
    )]
    /// A read-only configuration byte differs: the snapshot is of another device.
    ReadOnlyConfig {
        /// Offset of the first such byte.
        offset: usize,
        /// The byte in the snapshot.
        snapshot: u8,
        /// The byte in this device.
        device: u8,
    },
    /// MSI-X is present in one and not the other, or the table sizes differ.
    #[error("MSI-X table of {snapshot:?} entries in the snapshot, {device:?} in the device")]
    MsixTableSize {
        /// Table size in the snapshot, `None` without MSI-X.
        snapshot: Option<usize>,
        /// Table size in this device, `None` without MSI-X.
        device: Option<usize>,
    },
    /// The PBA words cannot be the PBA of the table.
    #[error("MSI-X Pending Bit Array {words:?} does not fit a table of {entries} entries")]
    PbaShape {
        /// The PBA in the snapshot.
        words: Vec<u64>,
        /// The table size.
        entries: usize,
    },
    /// A Pending Bit is set although its message could be sent now (MSI-X Enable and Bus
    /// Master Enable set, function and entry unmasked): the device sends such a message at
    /// once (PCI 3.0, 6.8.2.10), so restoring it would hold an interrupt nothing ever delivers.
    #[error("MSI-X entry {entry} is unmasked and deliverable, but its Pending Bit is set")]
    DeliverablePending {
        /// The entry.
        entry: u16,
    },
    #[error(
        "negotiated features {accepted:#x} (FEATURES_OK set) are not a subset of the offered \
         {offered:#x} including VERSION_1"
    )]
    /// The accepted features are not a subset of the offered ones, or lack VIRTIO_F_VERSION_1.
    Features {
        /// `driver_feature` in the snapshot.
        accepted: u64,
        /// `device_feature` of this device.
        offered: u64,
    },
    /// `device_status` no device could reach (DRIVER_OK without FEATURES_OK).
    #[error("device_status {0:#04x} has DRIVER_OK without FEATURES_OK")]
    DeviceStatus(u8),
    /// ISR status bits the device never sets.
    #[error("ISR status {0:#04x} has bits other than queue (0) and configuration (1)")]
    IsrStatus(u8),
    #[error(
        "{selector:?} holds vector {vector}, neither NO_VECTOR nor below the table size {table_size}"
    )]
    /// A vector register holds a vector the table does not have.
    Vector {
        /// The register: `msix_config` or a queue's `queue_msix_vector`.
        selector: Selector,
        /// The vector it holds.
        vector: u16,
        /// The MSI-X table size.
        table_size: u16,
    },
    /// A live queue's notification waits for Bus Master Enable although it is set: the device
    /// serves such a notification the moment Bus Master Enable is set (PCI 3.0, 6.2.2), so
    /// restoring it would keep the driver's buffers waiting for good.
    #[error("queue {queue}: a notification waits for Bus Master Enable, which is set")]
    DeferredNotify {
        /// The queue index.
        queue: u16,
    },
    /// A queue's maximum size differs from the device's.
    #[error("queue {queue}: maximum size {snapshot} in the snapshot, {device} in the device")]
    QueueMaxSize {
        /// The queue index.
        queue: u16,
        /// Its maximum in the snapshot.
        snapshot: u16,
        /// Its maximum in this device.
        device: u16,
    },
    /// A queue size that is not a power of two or exceeds the maximum.
    #[error("queue {queue}: size {size} is not a power of two up to the maximum {max}")]
    QueueSize {
        /// The queue index.
        queue: u16,
        /// The size in the snapshot.
        size: u16,
        /// The queue's maximum.
        max: u16,
    },
    /// An enabled queue's rings are misaligned or outside guest RAM.
    #[error("queue {queue} is enabled on rings this device cannot use: {source}")]
    QueueRings {
        /// The queue index.
        queue: u16,
        /// Why the rings cannot be used.
        #[source]
        source: RingError,
    },
}

impl VirtioPciDevice {
    /// Everything interrupt-relevant, as a serde value.
    pub fn snapshot(&self) -> DeviceSnapshot {
        DeviceSnapshot {
            config_space: self.config.bytes().to_vec(),
            msix: self.msix.clone(),
            device_feature_select: self.device_feature_select,
            driver_feature_select: self.driver_feature_select,
            driver_features: self.driver_features,
            msix_config: self.msix_config,
            config_msix_pending: self.config_msix_pending,
            device_status: self.device_status,
            config_generation: self.config_generation,
            queue_select: self.queue_select,
            isr_status: self.isr_status,
            line: self.line,
            queues: self
                .queues
                .iter()
                .map(|s| {
                    let q = &s.queue;
                    QueueSnapshot {
                        max_size: q.max_size(),
                        size: q.size(),
                        ready: q.ready(),
                        next_avail: q.next_avail(),
                        next_used: q.next_used(),
                        event_idx_enabled: q.event_idx_enabled(),
                        desc_table: q.desc_table(),
                        avail_ring: q.avail_ring(),
                        used_ring: q.used_ring(),
                        msix_vector: s.msix_vector,
                        reset_pending: s.reset_pending,
                        msix_pending: s.msix_pending,
                        notify_deferred: s.notify_deferred,
                        signalled_used: Some(q.signalled_used()),
                    }
                })
                .collect(),
            backend: self.backend.snapshot(),
        }
    }

    /// Check that `snap` fits this device, changing nothing.
    pub fn validate_snapshot(&self, snap: &DeviceSnapshot) -> Result<(), SnapshotError> {
        if snap.queues.len() != self.queues.len() {
            return Err(SnapshotError::QueueCount {
                snapshot: snap.queues.len(),
                device: self.queues.len(),
            });
        }
        if snap.config_space.len() != pci::CONFIG_SPACE_SIZE {
            return Err(SnapshotError::ConfigSpaceLength(snap.config_space.len()));
        }
        if let Some(offset) = self.config.first_read_only_difference(&snap.config_space) {
            return Err(SnapshotError::ReadOnlyConfig {
                offset,
                snapshot: snap.config_space[offset],
                device: self.config.byte(offset),
            });
        }
        let table_size = match (&snap.msix, &self.msix) {
            (None, None) => 0,
            (Some(s), Some(d)) if s.table.len() == d.table.len() => {
                check_pba(s)?;
                self.check_deliverable_pending(s, &snap.config_space)?;
                d.table_size()
            }
            (s, d) => {
                return Err(SnapshotError::MsixTableSize {
                    snapshot: s.as_ref().map(|m| m.table.len()),
                    device: d.as_ref().map(|m| m.table.len()),
                });
            }
        };
        if snap.device_status & status::FEATURES_OK != 0
            && (snap.driver_features & !self.device_features != 0
                || snap.driver_features & features::VERSION_1 == 0)
        {
            return Err(SnapshotError::Features {
                accepted: snap.driver_features,
                offered: self.device_features,
            });
        }
        if snap.device_status & status::DRIVER_OK != 0
            && snap.device_status & status::FEATURES_OK == 0
        {
            return Err(SnapshotError::DeviceStatus(snap.device_status));
        }
        if snap.isr_status & !(ISR_QUEUE | ISR_CONFIG) != 0 {
            return Err(SnapshotError::IsrStatus(snap.isr_status));
        }
        let command = u16::from_le_bytes([
            snap.config_space[pci::COMMAND],
            snap.config_space[pci::COMMAND + 1],
        ]);
        let live = snap.device_status & (status::DRIVER_OK | status::DEVICE_NEEDS_RESET)
            == status::DRIVER_OK;
        let serves = live && command & pci::COMMAND_BUS_MASTER != 0;
        let vector_ok = |v: u16| v == NO_VECTOR || v < table_size;
        if !vector_ok(snap.msix_config) {
            return Err(SnapshotError::Vector {
                selector: Selector::MsixConfig,
                vector: snap.msix_config,
                table_size,
            });
        }
        for (i, (q, slot)) in snap.queues.iter().zip(&self.queues).enumerate() {
            let queue = i as u16;
            if !vector_ok(q.msix_vector) {
                return Err(SnapshotError::Vector {
                    selector: Selector::Queue(queue),
                    vector: q.msix_vector,
                    table_size,
                });
            }
            if serves && q.notify_deferred {
                return Err(SnapshotError::DeferredNotify { queue });
            }
            let max = slot.queue.max_size();
            if q.max_size != max {
                return Err(SnapshotError::QueueMaxSize {
                    queue,
                    snapshot: q.max_size,
                    device: max,
                });
            }
            let restored = restored_queue(q).map_err(|_| SnapshotError::QueueSize {
                queue,
                size: q.size,
                max,
            })?;
            if q.ready {
                restored
                    .validate(self.mem.as_ref())
                    .map_err(|source| SnapshotError::QueueRings { queue, source })?;
            }
        }
        Ok(())
    }

    /// Restore a snapshot taken from a device built with the same backend and options, after
    /// [`VirtioPciDevice::validate_snapshot`] accepted it (and the backend its own state).
    /// The sink is brought to the restored INTx level (a pending line interrupt is
    /// re-asserted, a stale one lowered); pending MSI-X bits stay in the PBA until their mask
    /// clears; notifications that waited for Bus Master Enable still wait for it.
    pub fn restore(&mut self, snap: &DeviceSnapshot) -> Result<(), DeviceError> {
        self.validate_snapshot(snap)?;
        self.backend.restore(&snap.backend)?;
        let queues = snap
            .queues
            .iter()
            .map(|q| {
                let mut slot = QueueSlot::new(restored_queue(q).expect("validated above"));
                slot.msix_vector = q.msix_vector;
                slot.msix_pending = q.msix_pending;
                slot.notify_deferred = q.notify_deferred;
                slot.reset_pending = q.reset_pending;
                slot
            })
            .collect();
        // Length checked by the validation above.
        self.config.restore_bytes(&snap.config_space);
        self.rebuild_windows();
        self.queues = queues;
        self.msix = snap.msix.clone();
        // The MSI-X state follows its registers, whatever copies the snapshot carries.
        let command = self.config.command();
        if let (Some(m), Some(c)) = (self.msix.as_mut(), self.caps.msix_control()) {
            let control = self.config.u16_at(c);
            m.enabled = control & msix::CONTROL_ENABLE != 0;
            m.function_masked = control & msix::CONTROL_FUNCTION_MASK != 0;
            m.bus_master = command & pci::COMMAND_BUS_MASTER != 0;
        }
        self.device_feature_select = snap.device_feature_select;
        self.driver_feature_select = snap.driver_feature_select;
        self.driver_features = snap.driver_features;
        self.msix_config = snap.msix_config;
        self.config_msix_pending = snap.config_msix_pending;
        self.device_status = snap.device_status;
        self.config_generation = snap.config_generation;
        self.queue_select = snap.queue_select;
        self.isr_status = snap.isr_status;
        self.forget_delivered_sources();
        // `self.line` still holds the level the sink was last given, so update_intx tells the
        // sink about a change in either direction: a pending line is re-asserted and a line
        // the restored state does not drive is lowered (PCI 3.0, 6.2.3: INTx follows the
        // function's interrupt state; catalogue row 19).
        self.update_intx();
        Ok(())
    }
}

impl VirtioPciDevice {
    /// A Pending Bit the restored function would hold although it can send: MSI-X Enable,
    /// Function Mask and Bus Master Enable as the snapshot's registers say (restore derives
    /// them from there, not from the snapshot's copies).
    fn check_deliverable_pending(&self, m: &Msix, config: &[u8]) -> Result<(), SnapshotError> {
        let Some(c) = self.caps.msix_control() else {
            return Ok(());
        };
        let control = u16::from_le_bytes([config[c], config[c + 1]]);
        let command = u16::from_le_bytes([config[pci::COMMAND], config[pci::COMMAND + 1]]);
        let sends = control & msix::CONTROL_ENABLE != 0
            && control & msix::CONTROL_FUNCTION_MASK == 0
            && command & pci::COMMAND_BUS_MASTER != 0;
        match m
            .pending_entries()
            .find(|&e| !m.table[usize::from(e)].masked())
        {
            Some(entry) if sends => Err(SnapshotError::DeliverablePending { entry }),
            _ => Ok(()),
        }
    }
}

/// The ring state of a [`QueueSnapshot`]; fails on a size the maximum does not allow.
fn restored_queue(q: &QueueSnapshot) -> Result<SplitQueue, RingError> {
    let mut queue = SplitQueue::new(q.max_size)?;
    queue.set_size(q.size)?;
    queue.set_address(crate::ring::RingPart::DescriptorTable, q.desc_table);
    queue.set_address(crate::ring::RingPart::AvailRing, q.avail_ring);
    queue.set_address(crate::ring::RingPart::UsedRing, q.used_ring);
    queue.set_next_avail(q.next_avail);
    queue.set_next_used(q.next_used);
    if let Some(s) = q.signalled_used {
        queue.set_signalled_used(s);
    }
    queue.set_event_idx(q.event_idx_enabled);
    queue.set_ready(q.ready);
    Ok(queue)
}

/// One Pending Bit per table entry, 64 to a word, none beyond the table (PCI 3.0, 6.8.2).
fn check_pba(m: &Msix) -> Result<(), SnapshotError> {
    let entries = m.table.len();
    let fits = m.pba.len() == entries.div_ceil(64)
        && m.pba.last().is_none_or(|&last| {
            let used = entries % 64;
            used == 0 || last >> used == 0
        });
    if fits {
        Ok(())
    } else {
        Err(SnapshotError::PbaShape {
            words: m.pba.clone(),
            entries,
        })
    }
}
