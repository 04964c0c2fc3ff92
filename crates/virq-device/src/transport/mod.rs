//! The virtio-pci modern transport (virtio 1.2, section 4.1) around a [`VirtioBackend`].
//!
//! Everything interrupt-related lives here and nowhere else: the vector selectors, the ISR
//! status byte, the MSI-X capability and table, the INTx pin and Status bit 3. The platform
//! reaches the device only through configuration and BAR accesses; the device reaches out
//! only through [`InterruptSink`] and guest memory, and touches guest memory only while PCI
//! Bus Master Enable is set.
//!
//! This file holds the device's state and routes accesses; each register block has its own
//! module (see the module map in the crate documentation):
//!
//! | module | what it holds |
//! |---|---|
//! | `caps` | configuration space at construction: BARs, the virtio capabilities, MSI-X |
//! | `config` | configuration cycles: Command (Memory Space, Bus Master, Interrupt Disable), Status bit 3, Message Control, the `pci_cfg` window |
//! | `mmio` | BAR decode and routing of memory accesses to the register blocks |
//! | `common_cfg` | features, `device_status` and reset, queue set-up, the vector selectors |
//! | `notify` | the notify region: which queue a write names |
//! | `queues` | processing a queue, the Bus Master gate, the used-buffer interrupt decision |
//! | `interrupts` | raising an interrupt (ISR bit, MSI-X or INTx), Pending Bits owned by a source |
//! | `isr` | ISR status (read-to-clear) and the INTx level |
//! | `snapshot` | snapshot, validation and restore |
//! | `faults` | the catalogue's device faults (feature `fault-injection`) |

mod caps;
mod common_cfg;
mod config;
mod faults;
mod interrupts;
mod isr;
mod mmio;
mod notify;
mod queues;
mod snapshot;

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use thiserror::Error;
use virq_events::{EventKind, EventSink, NO_VECTOR, NullSink};

use crate::backend::{BackendError, VirtioBackend};
use crate::layout::{Layout, LayoutError};
use crate::memory::GuestMemory;
use crate::msix::{self, Msix};
use crate::pci::{self, BarDef, ConfigSpace};
use crate::ring::SplitQueue;
use crate::{InterruptSink, features};

use caps::CapOffsets;
#[cfg(feature = "fault-injection")]
pub use faults::DeviceFaults;
pub(crate) use faults::Fault;
pub use snapshot::{DeviceSnapshot, QueueSnapshot, SnapshotError};

/// Transport options a VMM chooses per device.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransportOptions {
    /// Where the virtio structures and the MSI-X table sit in the BARs.
    pub layout: Layout,
    /// MSI-X table size; `None` means 1 + number of queues. `Some(0)` removes MSI-X.
    pub msix_table_size: Option<u16>,
    /// Offer VIRTIO_F_RING_EVENT_IDX.
    pub event_idx: bool,
    /// Offer VIRTIO_F_RING_INDIRECT_DESC.
    pub indirect_desc: bool,
    /// Offer VIRTIO_F_RING_RESET (per-queue reset through `queue_reset`).
    pub ring_reset: bool,
    /// Offer VIRTIO_F_NOTIFICATION_DATA.
    pub notification_data: bool,
}

impl Default for TransportOptions {
    fn default() -> Self {
        TransportOptions {
            layout: Layout::default(),
            msix_table_size: None,
            event_idx: true,
            indirect_desc: true,
            ring_reset: true,
            notification_data: false,
        }
    }
}

/// Why a device cannot be built, or a snapshot not restored.
#[derive(Debug, Error)]
pub enum DeviceError {
    /// The layout was refused.
    #[error("invalid layout: {0}")]
    Layout(#[from] LayoutError),
    /// A backend's queue maximum is not a valid split-ring size.
    #[error("queue {queue}: maximum size {size} is not a power of two in 1..=32768")]
    QueueSize {
        /// The queue index.
        queue: u16,
        /// The maximum size the backend asked for.
        size: u16,
    },
    /// The backend offers no virtqueue.
    #[error("device has no queues")]
    NoQueues,
    /// A snapshot that belongs to another device or is malformed.
    #[error("snapshot does not fit this device: {0}")]
    Snapshot(#[from] SnapshotError),
    /// The backend refused (restore, or a failed request it cannot recover from).
    #[error(transparent)]
    Backend(#[from] BackendError),
}

/// One virtqueue and the transport state that goes with it.
#[derive(Debug)]
struct QueueSlot {
    queue: SplitQueue,
    msix_vector: u16,
    /// This queue's interrupt is waiting in the PBA bit of `msix_vector`: the bit is this
    /// source's to clear when it stops using the entry (catalogue row 30).
    msix_pending: bool,
    /// A notify (or host input) arrived while Bus Master Enable was clear: the queue is
    /// processed once bus mastering is enabled again (catalogue row 29).
    notify_deferred: bool,
    /// A queue reset is in progress: `queue_reset` reads 1 while it is (virtio 1.2, 4.1.4.3.1).
    /// Resets complete within the driver's write, so this is only ever set by a restore of an
    /// older snapshot and cleared again when the queue is enabled.
    reset_pending: bool,
}

impl QueueSlot {
    fn new(queue: SplitQueue) -> Self {
        QueueSlot {
            queue,
            msix_vector: NO_VECTOR,
            msix_pending: false,
            notify_deferred: false,
            reset_pending: false,
        }
    }
}

/// Where the device records evidence. Off until [`VirtioPciDevice::set_event_sink`]: while it
/// is off no event is built or sent, so the notify path makes no call whose result would be
/// dropped anyway.
#[derive(Clone, Default)]
struct Recorder(Option<Arc<dyn EventSink>>);

impl Recorder {
    #[inline(always)]
    fn emit(&self, kind: EventKind) {
        if let Some(sink) = &self.0 {
            sink.emit(kind);
        }
    }

    /// [`Recorder::emit`] for the notify path: the event is not even built while recording is
    /// off (building and dropping an `EventKind` costs a call into its drop glue).
    #[inline(always)]
    fn emit_with(&self, kind: impl FnOnce() -> EventKind) {
        if let Some(sink) = &self.0 {
            sink.emit(kind());
        }
    }
}

impl AsRef<dyn EventSink> for Recorder {
    fn as_ref(&self) -> &(dyn EventSink + 'static) {
        match &self.0 {
            Some(sink) => sink.as_ref(),
            None => &NullSink,
        }
    }
}

/// A virtio-pci modern device function.
///
/// One owner drives it (`&mut self` for every access): a VMM that serves vCPU exits from
/// several threads puts it behind its own lock. Interrupts leave through the
/// [`InterruptSink`], which may be called from inside any access.
pub struct VirtioPciDevice {
    config: ConfigSpace,
    caps: CapOffsets,
    layout: Layout,
    msix: Option<Msix>,
    backend: Box<dyn VirtioBackend>,
    /// [`VirtioBackend::takes_host_input`], asked once: false spares every poll a call per
    /// queue.
    polls_backend: bool,
    mem: Box<dyn GuestMemory>,
    sink: Arc<dyn InterruptSink>,
    events: Recorder,

    device_features: u64,
    device_feature_select: u32,
    driver_feature_select: u32,
    driver_features: u64,
    msix_config: u16,
    /// The configuration-change interrupt waits in the PBA bit of `msix_config` (row 30).
    config_msix_pending: bool,
    device_status: u8,
    config_generation: u8,
    queue_select: u16,
    queues: Vec<QueueSlot>,
    isr_status: u8,
    /// Level currently presented on INTA# (after Interrupt Disable and MSI-X gating).
    line: bool,
    #[cfg(feature = "fault-injection")]
    faults: DeviceFaults,
    /// Row 19 fault: the line a reset failed to lower.
    intx_stuck: bool,
    /// The memory windows the function decodes now, as (BAR index, base, size): rebuilt after
    /// every configuration write and restore, so an MMIO access does not re-read the BARs.
    windows: Vec<(u8, u64, u64)>,
}

impl std::fmt::Debug for VirtioPciDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VirtioPciDevice")
            .field("backend", &self.backend.name())
            .field("device_status", &self.device_status)
            .field("msix_config", &self.msix_config)
            .field("isr_status", &self.isr_status)
            .field("line", &self.line)
            .finish_non_exhaustive()
    }
}

impl VirtioPciDevice {
    /// Build a device function around `backend` over guest memory `mem`, sending interrupts
    /// to `sink`.
    pub fn new(
        backend: Box<dyn VirtioBackend>,
        mem: impl GuestMemory + 'static,
        sink: Arc<dyn InterruptSink>,
        options: TransportOptions,
    ) -> Result<Self, DeviceError> {
        let num_queues = backend.num_queues();
        if num_queues == 0 {
            return Err(DeviceError::NoQueues);
        }
        let table_size = options
            .msix_table_size
            .unwrap_or(num_queues.saturating_add(1).min(msix::MAX_TABLE_SIZE));
        let layout = options.layout;
        layout.validate(num_queues, table_size.max(1))?;

        let mut queues = Vec::with_capacity(num_queues as usize);
        for q in 0..num_queues {
            let size = backend.queue_max_size(q);
            let queue =
                SplitQueue::new(size).map_err(|_| DeviceError::QueueSize { queue: q, size })?;
            queues.push(QueueSlot::new(queue));
        }

        let mut device_features = backend.device_features() | features::VERSION_1;
        for (offered, bit) in [
            (options.event_idx, features::RING_EVENT_IDX),
            (options.indirect_desc, features::RING_INDIRECT_DESC),
            (options.ring_reset, features::RING_RESET),
            (options.notification_data, features::NOTIFICATION_DATA),
        ] {
            if offered {
                device_features |= bit;
            }
        }
        let (config, caps) = caps::build(backend.device_id(), &layout, table_size);
        let msix = (table_size > 0).then(|| Msix::new(table_size));

        Ok(VirtioPciDevice {
            config,
            caps,
            layout,
            msix,
            polls_backend: backend.takes_host_input(),
            backend,
            mem: Box::new(mem),
            sink,
            events: Recorder::default(),
            device_features,
            device_feature_select: 0,
            driver_feature_select: 0,
            driver_features: 0,
            msix_config: NO_VECTOR,
            config_msix_pending: false,
            device_status: 0,
            config_generation: 0,
            queue_select: 0,
            queues,
            isr_status: 0,
            line: false,
            #[cfg(feature = "fault-injection")]
            faults: DeviceFaults::default(),
            intx_stuck: false,
            windows: Vec::with_capacity(6),
        })
    }

    /// Record evidence into `events` from now on.
    pub fn set_event_sink(&mut self, events: Arc<dyn EventSink>) {
        self.events = Recorder(Some(events));
    }

    /// The device type behind the transport.
    pub fn backend(&self) -> &dyn VirtioBackend {
        self.backend.as_ref()
    }

    /// The device type, to inspect or change it between accesses.
    pub fn backend_mut(&mut self) -> &mut dyn VirtioBackend {
        self.backend.as_mut()
    }

    /// The guest memory the device was built over.
    pub fn memory(&self) -> &dyn GuestMemory {
        self.mem.as_ref()
    }

    /// The memory BARs this function implements (index, size), for the platform's allocator.
    pub fn bar_defs(&self) -> &[BarDef] {
        self.config.bars()
    }

    /// The address BAR `index` is programmed with.
    pub fn bar_address(&self, index: u8) -> Option<u64> {
        // A BAR the function decodes now is one of the windows rebuilt after every
        // configuration write, so a driver that looks its BAR up on each access (a notify)
        // does not re-read configuration space; configuration space answers the rest.
        if let Some(&(_, base, _)) = self.windows.iter().find(|w| w.0 == index) {
            return Some(base);
        }
        self.config.bar_address(index)
    }

    /// Raw configuration bytes as the driver would read them (for `!pci`-style dumps).
    pub fn config_bytes(&self) -> [u8; pci::CONFIG_SPACE_SIZE] {
        let mut b = *self.config.bytes();
        let status = self.status_register();
        b[pci::STATUS..pci::STATUS + 2].copy_from_slice(&status.to_le_bytes());
        b
    }

    /// MSI-X table, PBA and control bits; `None` when the function has no MSI-X capability.
    pub fn msix(&self) -> Option<&Msix> {
        self.msix.as_ref()
    }

    /// MSI-X Enable is set (Message Control bit 15): the device signals by message, not INTx.
    pub fn msix_enabled(&self) -> bool {
        self.msix.as_ref().is_some_and(|m| m.enabled)
    }

    /// `msix_config`: the vector of configuration-change notifications (`VIRTIO_MSI_NO_VECTOR` when none).
    pub fn msix_config(&self) -> u16 {
        self.msix_config
    }

    /// `queue_msix_vector` of queue `queue` as the device accepted it, `None` past the last queue.
    pub fn queue_msix_vector(&self, queue: u16) -> Option<u16> {
        self.queues.get(queue as usize).map(|q| q.msix_vector)
    }

    /// `num_queues` in `common_cfg`.
    pub fn num_queues(&self) -> u16 {
        self.queues.len() as u16
    }

    /// `device_status` (virtio 1.2, 2.1).
    pub fn device_status(&self) -> u8 {
        self.device_status
    }

    /// The ISR status byte (bit 0 queue interrupt, bit 1 configuration change), without the
    /// read-to-clear a driver's read has.
    pub fn isr_status(&self) -> u8 {
        self.isr_status
    }

    /// Level presented on INTA#.
    pub fn intx_level(&self) -> bool {
        self.line
    }

    /// `driver_feature` bits the driver wrote, all 64.
    pub fn driver_features(&self) -> u64 {
        self.driver_features
    }

    /// `device_feature` bits the device offers, all 64.
    pub fn device_features(&self) -> u64 {
        self.device_features
    }

    /// `config_generation` (virtio 1.2, 4.1.4.3): bumped when device configuration changes.
    pub fn config_generation(&self) -> u8 {
        self.config_generation
    }

    /// PCI Command bit 2: the function may initiate memory accesses (DMA and MSI-X writes).
    pub fn bus_master_enabled(&self) -> bool {
        self.config.command() & pci::COMMAND_BUS_MASTER != 0
    }

    /// Queues whose notification waits for Bus Master Enable (catalogue row 29).
    pub fn deferred_queues(&self) -> impl Iterator<Item = u16> + '_ {
        self.queues
            .iter()
            .enumerate()
            .filter(|(_, s)| s.notify_deferred)
            .map(|(q, _)| q as u16)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::Rig;
    use virq_spec::common_cfg as common;

    /// virtio 1.2, 4.1.5.1.2.1: an index the table does not have reads back NO_VECTOR.
    #[test]
    fn out_of_range_vector_reads_back_no_vector() {
        let mut r = Rig::new(2);
        r.map_bars();
        r.set_common16(common::MSIX_CONFIG, 7);
        assert_eq!(r.msix_config(), NO_VECTOR);
        r.set_common16(common::MSIX_CONFIG, 2);
        assert_eq!(r.msix_config(), 2);
    }
}
