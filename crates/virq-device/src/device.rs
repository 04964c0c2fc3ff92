//! The virtio-pci modern transport (virtio 1.2, section 4.1) around a [`VirtioBackend`].
//!
//! Everything interrupt-related lives here and nowhere else: the vector selectors, the ISR
//! status byte, the MSI-X capability and table, the INTx pin and Status bit 3. The platform
//! reaches the device only through configuration and BAR accesses; the device reaches out
//! only through [`InterruptSink`] and guest memory.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use thiserror::Error;
use virq_events::{
    EventKind, EventSink, InterruptCause, NO_VECTOR, NullSink, Selector, SuppressReason,
};
use virtio_queue::{Queue, QueueT};
use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend};

use crate::backend::{BackendError, GuestMemory, VirtioBackend};
use crate::layout::{Layout, LayoutError, Region};
use crate::msix::{self, Msix};
use crate::pci::{self, BarDef, BarKind, ConfigSpace, PciIdentity};
use crate::{InterruptSink, features, status};

/// PCI vendor ID of virtio devices.
pub const VIRTIO_PCI_VENDOR_ID: u16 = 0x1AF4;
/// Modern virtio-pci device IDs are 0x1040 + the virtio device ID (virtio 1.2, 4.1.2).
pub const VIRTIO_PCI_DEVICE_ID_BASE: u16 = 0x1040;

/// `cfg_type` values of `struct virtio_pci_cap` (virtio 1.2, 4.1.4).
pub mod cfg_type {
    pub const COMMON: u8 = 1;
    pub const NOTIFY: u8 = 2;
    pub const ISR: u8 = 3;
    pub const DEVICE: u8 = 4;
    pub const PCI_CFG: u8 = 5;
}

/// PCI capability IDs.
pub const CAP_ID_VENDOR: u8 = 0x09;
pub const CAP_ID_MSIX: u8 = 0x11;

/// Offsets in `struct virtio_pci_common_cfg` (virtio 1.2, 4.1.4.3).
pub mod common {
    pub const DEVICE_FEATURE_SELECT: u64 = 0x00;
    pub const DEVICE_FEATURE: u64 = 0x04;
    pub const DRIVER_FEATURE_SELECT: u64 = 0x08;
    pub const DRIVER_FEATURE: u64 = 0x0C;
    pub const MSIX_CONFIG: u64 = 0x10;
    pub const NUM_QUEUES: u64 = 0x12;
    pub const DEVICE_STATUS: u64 = 0x14;
    pub const CONFIG_GENERATION: u64 = 0x15;
    pub const QUEUE_SELECT: u64 = 0x16;
    pub const QUEUE_SIZE: u64 = 0x18;
    pub const QUEUE_MSIX_VECTOR: u64 = 0x1A;
    pub const QUEUE_ENABLE: u64 = 0x1C;
    pub const QUEUE_NOTIFY_OFF: u64 = 0x1E;
    pub const QUEUE_DESC: u64 = 0x20;
    pub const QUEUE_DRIVER: u64 = 0x28;
    pub const QUEUE_DEVICE: u64 = 0x30;
    pub const QUEUE_NOTIF_CONFIG_DATA: u64 = 0x38;
    pub const QUEUE_RESET: u64 = 0x3A;
}

/// Backend passes one notify may trigger when EVENT_IDX keeps finding new buffers.
const MAX_PASSES_PER_NOTIFY: usize = 4;

/// ISR status bit 0: a queue interrupt (virtio 1.2, 4.1.4.5).
pub const ISR_QUEUE: u8 = 1;
/// ISR status bit 1: a configuration change interrupt.
pub const ISR_CONFIG: u8 = 2;

/// `VRING_AVAIL_F_NO_INTERRUPT` (virtio 1.2, 2.7.7).
const VRING_AVAIL_F_NO_INTERRUPT: u16 = 1;

/// Transport options a VMM chooses per device.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransportOptions {
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

/// Device-side bugs from the failure catalogue (rows 14-22), so a driver or a doctor can be
/// shown what a broken device does. All off by default; a conformant device sets none.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceFaults {
    /// Row 14: INTx is raised even while MSI-X is enabled.
    pub intx_while_msix_enabled: bool,
    /// Row 15: messages are sent while MSI-X Enable is clear or the entry/function is masked.
    pub ignore_msix_masks: bool,
    /// Row 16: a 32-bit configuration write covering Message Control is ignored.
    pub ignore_dword_msix_control_write: bool,
    /// Row 17: a reset leaves the vector selectors as they were.
    pub keep_vectors_across_reset: bool,
    /// Row 18: vector indices beyond the table are stored as written.
    pub accept_out_of_range_vectors: bool,
    /// Row 19: a reset leaves INTx asserted (with ISR status 0) for good.
    pub intx_stays_high_on_reset: bool,
    /// Row 20: INTx ignores Command bit 10 and Status bit 3 never reports it.
    pub ignore_interrupt_disable: bool,
    /// Row 22: reading ISR status does not clear it.
    pub isr_not_cleared_on_read: bool,
    /// A table smaller than advertised: indices at or above this read back 0xFFFF although
    /// the capability's Table Size covers them (what drives a driver into its fallback).
    pub vectors_accepted_below: Option<u16>,
}

/// Why a device cannot be built.
#[derive(Debug, Error)]
pub enum DeviceError {
    #[error("invalid layout: {0}")]
    Layout(#[from] LayoutError),
    #[error("queue {queue}: maximum size {size} is not a power of two in 1..=32768")]
    QueueSize { queue: u16, size: u16 },
    #[error("device has no queues")]
    NoQueues,
    #[error("snapshot does not fit this device: {0}")]
    Snapshot(String),
    #[error(transparent)]
    Backend(#[from] BackendError),
}

/// One virtqueue and the transport state that goes with it.
#[derive(Debug)]
struct QueueSlot {
    queue: Queue,
    msix_vector: u16,
    /// A queue reset is in progress: `queue_reset` reads 1 while it is (virtio 1.2, 4.1.4.3.1).
    /// Resets complete within the driver's write, so this is only ever set by a restore of an
    /// older snapshot and cleared again when the queue is enabled.
    reset_pending: bool,
}

/// The kind of BAR region an access hit, resolved once per access.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Target {
    Common(u64),
    Notify(u64),
    Isr(u64),
    Device(u64),
    MsixTable(u64),
    MsixPba(u64),
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

/// Where the capabilities sit in configuration space (fixed at construction).
#[derive(Clone, Copy, Debug, Default)]
struct CapOffsets {
    pci_cfg: usize,
    msix: Option<usize>,
}

/// A virtio-pci modern device function.
pub struct VirtioPciDevice {
    config: ConfigSpace,
    caps: CapOffsets,
    layout: Layout,
    msix: Option<Msix>,
    backend: Box<dyn VirtioBackend>,
    mem: GuestMemory,
    sink: Arc<dyn InterruptSink>,
    events: Recorder,

    device_features: u64,
    device_feature_select: u32,
    driver_feature_select: u32,
    driver_features: u64,
    msix_config: u16,
    device_status: u8,
    config_generation: u8,
    queue_select: u16,
    queues: Vec<QueueSlot>,
    isr_status: u8,
    /// Level currently presented on INTA# (after Interrupt Disable and MSI-X gating).
    line: bool,
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
    /// Build a device function around `backend`, sending interrupts to `sink`.
    pub fn new(
        backend: Box<dyn VirtioBackend>,
        mem: GuestMemory,
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
            let queue = Queue::new(size).map_err(|_| DeviceError::QueueSize { queue: q, size })?;
            queues.push(QueueSlot {
                queue,
                msix_vector: NO_VECTOR,
                reset_pending: false,
            });
        }

        let device_id = backend.device_id();
        let mut device_features = backend.device_features() | features::VERSION_1;
        if options.event_idx {
            device_features |= features::RING_EVENT_IDX;
        }
        if options.indirect_desc {
            device_features |= features::RING_INDIRECT_DESC;
        }
        if options.ring_reset {
            device_features |= features::RING_RESET;
        }
        if options.notification_data {
            device_features |= features::NOTIFICATION_DATA;
        }

        let mut config = ConfigSpace::new(PciIdentity {
            vendor_id: VIRTIO_PCI_VENDOR_ID,
            device_id: VIRTIO_PCI_DEVICE_ID_BASE + device_id,
            revision_id: 1,
            class_code: class_code_for(device_id),
            subsystem_vendor_id: VIRTIO_PCI_VENDOR_ID,
            subsystem_id: 0x1100,
        });
        let with_msix = table_size > 0;
        for (bar, size) in layout.bar_sizes(table_size.max(1)) {
            let msix_only = [
                layout.common.bar,
                layout.notify.bar,
                layout.isr.bar,
                layout.device.bar,
            ]
            .iter()
            .all(|b| *b != bar);
            if msix_only && !with_msix {
                continue;
            }
            config.add_bar(BarDef {
                index: bar,
                size,
                kind: BarKind::Memory64 {
                    prefetchable: false,
                },
            });
        }
        let mut caps = CapOffsets::default();
        add_virtio_cap(&mut config, cfg_type::COMMON, layout.common, &[], &[]);
        add_virtio_cap(
            &mut config,
            cfg_type::NOTIFY,
            layout.notify,
            &layout.notify_off_multiplier.to_le_bytes(),
            &[],
        );
        add_virtio_cap(&mut config, cfg_type::ISR, layout.isr, &[], &[]);
        add_virtio_cap(&mut config, cfg_type::DEVICE, layout.device, &[], &[]);
        // virtio_pci_cfg_cap: bar, offset, length and pci_cfg_data are driver-writable.
        let mut pci_cfg_mask = [0u8; 18];
        pci_cfg_mask[2] = 0xFF; // bar
        pci_cfg_mask[6..18].fill(0xFF); // offset, length, pci_cfg_data
        caps.pci_cfg = add_virtio_cap(
            &mut config,
            cfg_type::PCI_CFG,
            Region::new(0, 0, 0),
            &[0; 4],
            &pci_cfg_mask,
        ) as usize;
        let msix = if with_msix {
            let control = (table_size - 1) & 0x7FF;
            let mut body = [0u8; 10];
            body[0..2].copy_from_slice(&control.to_le_bytes());
            body[2..6].copy_from_slice(
                &((layout.msix_table_offset as u32) | layout.msix_table_bar as u32).to_le_bytes(),
            );
            body[6..10].copy_from_slice(
                &((layout.msix_pba_offset as u32) | layout.msix_pba_bar as u32).to_le_bytes(),
            );
            // Only Enable (bit 15) and Function Mask (bit 14) are writable.
            let off = config.add_capability(CAP_ID_MSIX, &body, &[0x00, 0xC0]);
            caps.msix = Some(off as usize);
            Some(Msix::new(table_size))
        } else {
            None
        };

        Ok(VirtioPciDevice {
            config,
            caps,
            layout,
            msix,
            backend,
            mem,
            sink,
            events: Recorder::default(),
            device_features,
            device_feature_select: 0,
            driver_feature_select: 0,
            driver_features: 0,
            msix_config: NO_VECTOR,
            device_status: 0,
            config_generation: 0,
            queue_select: 0,
            queues,
            isr_status: 0,
            line: false,
            faults: DeviceFaults::default(),
            intx_stuck: false,
            windows: Vec::with_capacity(6),
        })
    }

    /// Turn device-side catalogue faults on (see [`DeviceFaults`]).
    pub fn set_faults(&mut self, faults: DeviceFaults) {
        self.faults = faults;
    }

    pub fn faults(&self) -> DeviceFaults {
        self.faults
    }

    /// Record evidence into `events` from now on.
    pub fn set_event_sink(&mut self, events: Arc<dyn EventSink>) {
        self.events = Recorder(Some(events));
    }

    pub fn backend(&self) -> &dyn VirtioBackend {
        self.backend.as_ref()
    }

    pub fn backend_mut(&mut self) -> &mut dyn VirtioBackend {
        self.backend.as_mut()
    }

    /// The memory BARs this function implements (index, size), for the platform's allocator.
    pub fn bar_defs(&self) -> &[BarDef] {
        self.config.bars()
    }

    /// The address BAR `index` is programmed with.
    pub fn bar_address(&self, index: u8) -> Option<u64> {
        self.config.bar_address(index)
    }

    /// Raw configuration bytes as the driver would read them (for `!pci`-style dumps).
    pub fn config_bytes(&self) -> [u8; pci::CONFIG_SPACE_SIZE] {
        let mut b = *self.config.bytes();
        let status = self.status_register();
        b[pci::STATUS..pci::STATUS + 2].copy_from_slice(&status.to_le_bytes());
        b
    }

    pub fn msix(&self) -> Option<&Msix> {
        self.msix.as_ref()
    }

    pub fn msix_enabled(&self) -> bool {
        self.msix.as_ref().is_some_and(|m| m.enabled)
    }

    pub fn msix_config(&self) -> u16 {
        self.msix_config
    }

    pub fn queue_msix_vector(&self, queue: u16) -> Option<u16> {
        self.queues.get(queue as usize).map(|q| q.msix_vector)
    }

    pub fn num_queues(&self) -> u16 {
        self.queues.len() as u16
    }

    pub fn device_status(&self) -> u8 {
        self.device_status
    }

    pub fn isr_status(&self) -> u8 {
        self.isr_status
    }

    /// Level presented on INTA#.
    pub fn intx_level(&self) -> bool {
        self.line
    }

    pub fn driver_features(&self) -> u64 {
        self.driver_features
    }

    pub fn device_features(&self) -> u64 {
        self.device_features
    }

    pub fn config_generation(&self) -> u8 {
        self.config_generation
    }

    // ---------------------------------------------------------------- configuration space

    /// A configuration read of 1, 2 or 4 bytes at `offset`. Offsets 0x100..0x1000 (PCIe
    /// extended space, no extended capabilities) read 0; anything beyond, or other widths,
    /// read all ones, as a master abort does.
    pub fn config_read(&mut self, offset: u16, data: &mut [u8]) {
        let off = offset as usize;
        if !matches!(data.len(), 1 | 2 | 4) || off + data.len() > pci::EXTENDED_CONFIG_SIZE {
            data.fill(0xFF);
            return;
        }
        if off + data.len() > pci::CONFIG_SPACE_SIZE {
            data.fill(0);
            return;
        }
        let data_off = self.caps.pci_cfg + 16;
        if off < data_off + 4 && off + data.len() > data_off {
            self.pci_cfg_window_read();
        }
        let status = self.status_register().to_le_bytes();
        for (i, b) in data.iter_mut().enumerate() {
            let o = off + i;
            *b = match o {
                pci::STATUS => status[0],
                o if o == pci::STATUS + 1 => status[1],
                _ => self.config.byte(o),
            };
        }
    }

    /// A configuration write of 1, 2 or 4 bytes at `offset`; read-only bits keep their value
    /// and writes outside the 256-byte space are ignored.
    pub fn config_write(&mut self, offset: u16, data: &[u8]) {
        let off = offset as usize;
        if !matches!(data.len(), 1 | 2 | 4) || off + data.len() > pci::CONFIG_SPACE_SIZE {
            return;
        }
        let old_command = self.config.command();
        let msix_control = self.caps.msix.map(|c| c + 2);
        let old_control = msix_control.map(|c| self.config.u16_at(c));
        for (i, b) in data.iter().enumerate() {
            self.config.write_byte_masked(off + i, *b);
        }
        if let (Some(c), Some(old), true) = (
            msix_control,
            old_control,
            self.faults.ignore_dword_msix_control_write && data.len() == 4,
        ) && off <= c
            && c < off + 4
        {
            self.config.set_u16(c, old);
        }
        self.rebuild_windows();
        let command = self.config.command();
        if command != old_command {
            self.events.emit(EventKind::PciCommand { value: command });
            if let Some(m) = self.msix.as_mut() {
                m.bus_master = command & pci::COMMAND_BUS_MASTER != 0;
                m.deliver_pending(self.sink.as_ref(), self.events.as_ref());
            }
            self.update_intx();
        }
        if let (Some(c), Some(old)) = (msix_control, old_control) {
            let new = self.config.u16_at(c);
            if new != old {
                self.msix_control_changed(new);
            }
        }
        let data_off = self.caps.pci_cfg + 16;
        if off < data_off + 4 && off + data.len() > data_off {
            self.pci_cfg_window_write();
        }
    }

    /// Status: the capability-list bit is static; bit 3 is the INTx pending state, which is
    /// the OR of the ISR bits while MSI-X is off (virtio 1.2, 4.1.4.5.1).
    fn status_register(&self) -> u16 {
        let mut s = self.config.u16_at(pci::STATUS) & !pci::STATUS_INTERRUPT;
        if self.intx_pending() && !self.faults.ignore_interrupt_disable {
            s |= pci::STATUS_INTERRUPT;
        }
        s
    }

    fn intx_pending(&self) -> bool {
        self.isr_status != 0 && (!self.msix_enabled() || self.faults.intx_while_msix_enabled)
    }

    fn msix_control_changed(&mut self, control: u16) {
        let Some(m) = self.msix.as_mut() else { return };
        let was_enabled = m.enabled;
        let was_masked = m.function_masked;
        m.enabled = control & msix::CONTROL_ENABLE != 0;
        m.function_masked = control & msix::CONTROL_FUNCTION_MASK != 0;
        if (m.enabled, m.function_masked) == (was_enabled, was_masked) {
            return;
        }
        self.events.emit(EventKind::MsixControl {
            enabled: m.enabled,
            function_masked: m.function_masked,
        });
        m.deliver_pending(self.sink.as_ref(), self.events.as_ref());
        self.update_intx();
    }

    /// The `virtio_pci_cfg_cap` window (virtio 1.2, 4.1.4.9): a read of `pci_cfg_data`
    /// performs a BAR read of `cap.length` bytes at `cap.bar` + `cap.offset`.
    fn pci_cfg_window_read(&mut self) {
        let Some((bar, offset, len)) = self.pci_cfg_window() else {
            return;
        };
        let mut buf = [0u8; 4];
        self.bar_read(bar, offset, &mut buf[..len]);
        let data_off = self.caps.pci_cfg + 16;
        for (i, b) in buf.iter().enumerate() {
            self.config.set_byte(data_off + i, *b);
        }
    }

    fn pci_cfg_window_write(&mut self) {
        let Some((bar, offset, len)) = self.pci_cfg_window() else {
            return;
        };
        let data_off = self.caps.pci_cfg + 16;
        let mut buf = [0u8; 4];
        for (i, b) in buf.iter_mut().enumerate() {
            *b = self.config.byte(data_off + i);
        }
        self.bar_write(bar, offset, &buf[..len]);
    }

    /// The window's target, if the driver set a legal one: length 1, 2 or 4, offset aligned to
    /// the length (virtio 1.2, 4.1.4.9.1); anything else is ignored.
    fn pci_cfg_window(&self) -> Option<(u8, u64, usize)> {
        let c = self.caps.pci_cfg;
        let bar = self.config.byte(c + 4);
        let offset = self.config.u32_at(c + 8) as u64;
        let len = self.config.u32_at(c + 12) as usize;
        (matches!(len, 1 | 2 | 4) && offset % len as u64 == 0).then_some((bar, offset, len))
    }

    // ---------------------------------------------------------------------- memory BARs

    /// Decode a guest-physical MMIO address against the programmed BARs (only while the
    /// Command register's Memory Space bit is set). Returns (BAR index, offset).
    pub fn decode_mmio(&self, addr: u64, len: usize) -> Option<(u8, u64)> {
        self.windows.iter().find_map(|&(index, base, size)| {
            if addr < base {
                return None;
            }
            let off = addr - base;
            (off.checked_add(len as u64)? <= size).then_some((index, off))
        })
    }

    /// Recompute [`VirtioPciDevice::decode_mmio`]'s windows from Command and the BARs: none
    /// while Memory Space is off, and none for a BAR still at address 0.
    fn rebuild_windows(&mut self) {
        self.windows.clear();
        if self.config.command() & pci::COMMAND_MEMORY_SPACE == 0 {
            return;
        }
        for b in self.config.bars() {
            let base = self.config.bar_base(b);
            if base != 0 {
                self.windows.push((b.index, base, b.size));
            }
        }
    }

    /// A guest MMIO read at a bus address; false when no BAR decodes it.
    pub fn mmio_read(&mut self, addr: u64, data: &mut [u8]) -> bool {
        match self.decode_mmio(addr, data.len()) {
            Some((bar, off)) => {
                self.bar_read(bar, off, data);
                true
            }
            None => false,
        }
    }

    /// A guest MMIO write at a bus address; false when no BAR decodes it.
    pub fn mmio_write(&mut self, addr: u64, data: &[u8]) -> bool {
        match self.decode_mmio(addr, data.len()) {
            Some((bar, off)) => {
                self.bar_write(bar, off, data);
                true
            }
            None => false,
        }
    }

    #[inline]
    fn target(&self, bar: u8, offset: u64, len: usize) -> Option<Target> {
        let l = &self.layout;
        if let Some(o) = l.notify.contains(bar, offset, len) {
            return Some(Target::Notify(o));
        }
        if let Some(o) = l.common.contains(bar, offset, len) {
            return Some(Target::Common(o));
        }
        if let Some(o) = l.isr.contains(bar, offset, len) {
            return Some(Target::Isr(o));
        }
        if let Some(o) = l.device.contains(bar, offset, len) {
            return Some(Target::Device(o));
        }
        let m = self.msix.as_ref()?;
        let table = Region::new(l.msix_table_bar, l.msix_table_offset, m.table_bytes());
        if let Some(o) = table.contains(bar, offset, len) {
            return Some(Target::MsixTable(o));
        }
        let pba = Region::new(l.msix_pba_bar, l.msix_pba_offset, m.pba_bytes());
        pba.contains(bar, offset, len).map(Target::MsixPba)
    }

    /// A read of `data.len()` bytes at `offset` in BAR `bar`. Unmapped bytes read 0.
    pub fn bar_read(&mut self, bar: u8, offset: u64, data: &mut [u8]) {
        data.fill(0);
        if data.is_empty() || data.len() > 8 {
            return;
        }
        match self.target(bar, offset, data.len()) {
            Some(Target::Common(o)) => self.common_read(o, data),
            Some(Target::Isr(o)) => {
                if o == 0 {
                    data[0] = self.isr_read();
                }
            }
            Some(Target::Device(o)) => {
                if o < self.backend.config_len() as u64 {
                    self.backend.read_config(o, data);
                }
            }
            Some(Target::MsixTable(o)) => {
                if let Some(m) = &self.msix {
                    m.table_read(o, data)
                }
            }
            Some(Target::MsixPba(o)) => {
                if let Some(m) = &self.msix {
                    m.pba_read(o, data)
                }
            }
            Some(Target::Notify(_)) | None => {}
        }
    }

    /// A write of `data.len()` bytes at `offset` in BAR `bar`. Unmapped bytes are ignored.
    pub fn bar_write(&mut self, bar: u8, offset: u64, data: &[u8]) {
        if data.is_empty() || data.len() > 8 {
            return;
        }
        match self.target(bar, offset, data.len()) {
            Some(Target::Notify(o)) => self.notify_write(o, data),
            Some(Target::Common(o)) => self.common_write(o, data),
            Some(Target::Device(o)) => {
                if o < self.backend.config_len() as u64 && self.backend.write_config(o, data) {
                    self.config_changed();
                }
            }
            Some(Target::MsixTable(o)) => {
                if let Some(m) = self.msix.as_mut() {
                    m.table_write(o, data, self.sink.as_ref(), self.events.as_ref());
                }
            }
            // ISR status ignores writes (virtio 1.2, 4.1.4.5); the PBA is read-only.
            Some(Target::Isr(_)) | Some(Target::MsixPba(_)) | None => {}
        }
    }

    // ---------------------------------------------------------------------- ISR status

    /// Read-to-clear ISR status; clearing the last bit lowers INTx (virtio 1.2, 4.1.4.5.1).
    fn isr_read(&mut self) -> u8 {
        let v = self.isr_status;
        if !self.faults.isr_not_cleared_on_read {
            self.isr_status = 0;
        }
        self.events.emit(EventKind::IsrRead { value: v });
        self.update_intx();
        v
    }

    /// Drive INTA#: high while an ISR bit is pending, MSI-X is off and Command bit 10 is clear.
    fn update_intx(&mut self) {
        let pending = self.intx_pending();
        let disabled = self.config.command() & pci::COMMAND_INTERRUPT_DISABLE != 0
            && !self.faults.ignore_interrupt_disable;
        let level = (pending && !disabled) || self.intx_stuck;
        if level == self.line {
            return;
        }
        self.line = level;
        self.sink.set_intx(level);
        self.events.emit(if level {
            EventKind::LineRaised {
                pin: pci::INTERRUPT_PIN_INTA,
            }
        } else {
            EventKind::LineLowered {
                pin: pci::INTERRUPT_PIN_INTA,
            }
        });
    }

    /// Raise an interrupt for `cause`: set the ISR bit, then a message on the source's vector
    /// (MSI-X on) or the INTx pin (MSI-X off). Never both.
    fn signal(&mut self, cause: InterruptCause) {
        let (bit, vector) = match cause {
            InterruptCause::Queue(q) => (
                ISR_QUEUE,
                self.queues
                    .get(q as usize)
                    .map_or(NO_VECTOR, |s| s.msix_vector),
            ),
            _ => (ISR_CONFIG, self.msix_config),
        };
        self.isr_status |= bit;
        if self.faults.ignore_msix_masks
            && let Some(m) = self.msix.as_ref()
            && let Some(e) = m.table.get(vector as usize)
            && (!m.enabled || m.function_masked || e.masked())
        {
            self.sink.msi(e.address, e.data);
            self.events.emit(EventKind::MessageSent {
                cause,
                entry: vector,
                address: e.address,
                data: e.data,
            });
            return;
        }
        if self.faults.intx_while_msix_enabled {
            self.update_intx();
        }
        match self.msix.as_mut() {
            Some(m) if m.enabled => {
                if vector == NO_VECTOR {
                    self.events.emit(EventKind::InterruptSuppressed {
                        cause,
                        vector,
                        reason: SuppressReason::NoVector,
                    });
                } else {
                    // Monomorphised on NullSink while recording is off: no event call at all.
                    match &self.events.0 {
                        Some(events) => m.fire(vector, cause, self.sink.as_ref(), events.as_ref()),
                        None => m.fire(vector, cause, self.sink.as_ref(), &NullSink),
                    }
                }
            }
            _ => {
                if self.config.command() & pci::COMMAND_INTERRUPT_DISABLE != 0 && !self.line {
                    self.events.emit(EventKind::InterruptSuppressed {
                        cause,
                        vector,
                        reason: SuppressReason::InterruptDisable,
                    });
                }
                self.update_intx();
            }
        }
    }

    /// The host changed device configuration (a disk resize, a link change): bump
    /// `config_generation` and send a configuration change interrupt (virtio 1.2, 4.1.4.3.1).
    pub fn config_changed(&mut self) {
        self.config_generation = self.config_generation.wrapping_add(1);
        self.events.emit(EventKind::ConfigChanged {
            generation: self.config_generation,
        });
        if self.device_status & status::DRIVER_OK != 0 {
            self.signal(InterruptCause::ConfigChange);
        }
    }

    /// Enter DEVICE_NEEDS_RESET (virtio 1.2, 2.1.2): stop using queues and tell a live driver
    /// with a configuration change interrupt.
    fn needs_reset(&mut self, queue: Option<u16>) {
        if self.device_status & status::DEVICE_NEEDS_RESET != 0 {
            return;
        }
        self.device_status |= status::DEVICE_NEEDS_RESET;
        self.events.emit(EventKind::NeedsReset { queue });
        if self.device_status & status::DRIVER_OK != 0 {
            self.signal(InterruptCause::ConfigChange);
        }
    }

    // ---------------------------------------------------------------------- common_cfg

    fn common_read(&mut self, offset: u64, data: &mut [u8]) {
        use common::*;
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

    fn offers(&self, feature: u64) -> bool {
        self.device_features & feature != 0
    }

    fn selected(&self) -> Option<&QueueSlot> {
        self.queues.get(self.queue_select as usize)
    }

    /// Writes must use the field's natural width (virtio 1.2, 4.1.3.1); 64-bit fields may also
    /// be written as two 32-bit halves. Any other write is ignored.
    fn common_write(&mut self, offset: u64, data: &[u8]) {
        use common::*;
        let mut raw = [0u8; 8];
        raw[..data.len()].copy_from_slice(data);
        let v = u64::from_le_bytes(raw);
        match (offset, data.len()) {
            (DEVICE_FEATURE_SELECT, 4) => self.device_feature_select = v as u32,
            (DRIVER_FEATURE_SELECT, 4) => self.driver_feature_select = v as u32,
            (DRIVER_FEATURE, 4) => self.write_driver_features(v as u32),
            (MSIX_CONFIG, 2) => {
                self.msix_config = self.accept_vector(v as u16);
                self.events.emit(EventKind::VectorWritten {
                    selector: Selector::MsixConfig,
                    written: v as u16,
                    read_back: self.msix_config,
                });
            }
            (DEVICE_STATUS, 1) => self.write_device_status(v as u8),
            (QUEUE_SELECT, 2) => self.queue_select = v as u16,
            (QUEUE_SIZE, 2) => self.write_queue_size(v as u16),
            (QUEUE_MSIX_VECTOR, 2) => {
                let q = self.queue_select;
                let accepted = self.accept_vector(v as u16);
                let read_back = match self.queues.get_mut(q as usize) {
                    Some(slot) => {
                        slot.msix_vector = accepted;
                        accepted
                    }
                    None => NO_VECTOR,
                };
                self.events.emit(EventKind::VectorWritten {
                    selector: Selector::Queue(q),
                    written: v as u16,
                    read_back,
                });
            }
            (QUEUE_ENABLE, 2) => self.write_queue_enable(v as u16),
            (QUEUE_DESC, 4 | 8) | (0x24, 4) => {
                self.write_queue_addr(QUEUE_DESC, offset, data.len(), v)
            }
            (QUEUE_DRIVER, 4 | 8) | (0x2C, 4) => {
                self.write_queue_addr(QUEUE_DRIVER, offset, data.len(), v)
            }
            (QUEUE_DEVICE, 4 | 8) | (0x34, 4) => {
                self.write_queue_addr(QUEUE_DEVICE, offset, data.len(), v)
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
        if self
            .faults
            .vectors_accepted_below
            .is_some_and(|n| vector >= n)
            && vector != NO_VECTOR
            && !self.faults.accept_out_of_range_vectors
        {
            return NO_VECTOR;
        }
        match &self.msix {
            Some(m) if vector < m.table_size() => vector,
            Some(_) if self.faults.accept_out_of_range_vectors => vector,
            _ => NO_VECTOR,
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
    /// queues disabled, ISR cleared, INTx lowered. The MSI-X table and its Pending Bits
    /// belong to PCI and survive.
    pub fn reset(&mut self) {
        self.backend.reset();
        self.device_status = 0;
        self.device_feature_select = 0;
        self.driver_feature_select = 0;
        self.driver_features = 0;
        let keep_vectors = self.faults.keep_vectors_across_reset;
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
        }
        self.isr_status = 0;
        self.events.emit(EventKind::DeviceReset);
        if self.faults.intx_stays_high_on_reset && self.line {
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
            let _ = slot.queue.try_set_size(size);
        }
    }

    fn write_queue_addr(&mut self, field: u64, offset: u64, len: usize, v: u64) {
        let Some(slot) = self.selected_mut_if_configurable() else {
            return;
        };
        let q = &mut slot.queue;
        let (low, high) = match (len, offset - field) {
            (8, _) => (Some(v as u32), Some((v >> 32) as u32)),
            (_, 0) => (Some(v as u32), None),
            _ => (None, Some(v as u32)),
        };
        // Store the raw value; alignment and range are checked when the queue is enabled.
        let cur = match field {
            common::QUEUE_DESC => q.desc_table(),
            common::QUEUE_DRIVER => q.avail_ring(),
            _ => q.used_ring(),
        };
        let new = (low.map_or(cur & 0xFFFF_FFFF, |l| l as u64))
            | (high.map_or(cur >> 32, |h| h as u64) << 32);
        let addr = GuestAddress(new);
        let ok = match field {
            common::QUEUE_DESC => q.try_set_desc_table_address(addr),
            common::QUEUE_DRIVER => q.try_set_avail_ring_address(addr),
            _ => q.try_set_used_ring_address(addr),
        };
        if ok.is_err() {
            // A misaligned address makes the queue unusable; remember it as 1 so enabling fails.
            let bad = GuestAddress(!0xF);
            let _ = match field {
                common::QUEUE_DESC => q.try_set_desc_table_address(bad),
                common::QUEUE_DRIVER => q.try_set_avail_ring_address(bad),
                _ => q.try_set_used_ring_address(bad),
            };
        }
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
        slot.queue.set_ready(true);
        slot.reset_pending = false;
        let size = slot.queue.size();
        // Rings that do not fit in guest RAM, or an available ring left at address 0 (never
        // set up: virtio-queue refuses to serve it, so every request would hang unanswered),
        // make the queue unusable.
        if !slot.queue.is_valid(&self.mem) || slot.queue.avail_ring() == 0 {
            slot.queue.set_ready(false);
            self.needs_reset(Some(q));
            return;
        }
        self.events.emit(EventKind::QueueEnabled { queue: q, size });
    }

    fn write_queue_reset(&mut self, v: u16) {
        if v != 1 {
            return;
        }
        let q = self.queue_select;
        if let Some(slot) = self.queues.get_mut(q as usize) {
            slot.queue.reset();
            slot.queue
                .set_event_idx(self.driver_features & features::RING_EVENT_IDX != 0);
            slot.msix_vector = NO_VECTOR;
            // The reset is complete when this write returns, and virtio 1.2, 4.1.4.3.1 says
            // a completed reset presents 0 in both queue_reset and queue_enable: a driver
            // (Linux's vp_modern_set_queue_reset) polls queue_reset until it reads 0.
            slot.reset_pending = false;
            self.events.emit(EventKind::QueueReset { queue: q });
        }
    }

    // ------------------------------------------------------------------- notifications

    fn notify_write(&mut self, offset: u64, data: &[u8]) {
        if !matches!(data.len(), 2 | 4) {
            return;
        }
        let value = u32::from_le_bytes({
            let mut b = [0u8; 4];
            b[..data.len()].copy_from_slice(data);
            b
        });
        // With a multiplier each queue has its own address; with 0 they share one and the
        // written value names the queue (virtio 1.2, 4.1.4.4 and 4.1.5.2).
        let m = self.layout.notify_off_multiplier as u64;
        let queue = if m == 0 {
            value as u16
        } else if m.is_power_of_two() {
            // What the layout validates (an even power of two): a mask and a shift instead of
            // a 64-bit division on every notify.
            if offset & (m - 1) != 0 {
                return;
            }
            (offset >> m.trailing_zeros()) as u16
        } else if offset % m == 0 {
            (offset / m) as u16
        } else {
            return;
        };
        if queue as usize >= self.queues.len() {
            return;
        }
        self.events.emit_with(|| EventKind::QueueNotify { queue });
        self.process_queue(queue);
    }

    /// Process `queue` as if the driver had notified it (host-side input arrived).
    pub fn process_queue(&mut self, queue: u16) {
        let live = self.device_status & status::DRIVER_OK != 0
            && self.device_status & status::DEVICE_NEEDS_RESET == 0;
        let Some(slot) = self.queues.get_mut(queue as usize) else {
            return;
        };
        if !live || !slot.queue.ready() {
            return;
        }
        // With VIRTIO_F_EVENT_IDX the driver notifies only when its avail index passes the
        // `avail_event` the device published (virtio 1.2, 2.7.10), so after each pass the device
        // must publish how far it got; if buffers arrived meanwhile, it goes round again. The
        // passes are bounded so one notify never does more than a few queues' worth of work.
        let mut used: u16 = 0;
        for _ in 0..MAX_PASSES_PER_NOTIFY {
            match self
                .backend
                .process_queue(queue, &mut slot.queue, &self.mem)
            {
                Ok(p) => used = used.saturating_add(p.used),
                Err(_) => {
                    self.needs_reset(Some(queue));
                    return;
                }
            }
            if !slot.queue.event_idx_enabled()
                || !slot.queue.enable_notification(&self.mem).unwrap_or(false)
            {
                break;
            }
        }
        if used > 0 {
            self.events
                .emit_with(|| EventKind::UsedPublished { queue, count: used });
            self.maybe_signal_used(queue);
        }
    }

    /// Benchmark hook, not a stable API: run the used-buffer interrupt decision for `queue`
    /// (EVENT_IDX or `VRING_AVAIL_F_NO_INTERRUPT` suppression, ISR bit, vector lookup, MSI-X
    /// mask and PBA, message) as if the backend had just published used buffers. A queue
    /// index the device does not have is ignored.
    #[doc(hidden)]
    pub fn bench_used_interrupt(&mut self, queue: u16) {
        if (queue as usize) < self.queues.len() {
            self.maybe_signal_used(queue);
        }
    }

    /// Process every ready queue that has host input waiting.
    pub fn poll_backend(&mut self) {
        for q in 0..self.queues.len() as u16 {
            if self.backend.has_pending_input(q) {
                self.process_queue(q);
            }
        }
    }

    fn process_all_ready(&mut self) {
        for q in 0..self.queues.len() as u16 {
            self.process_queue(q);
        }
    }

    /// Used-buffer notification suppression (virtio 1.2, 2.7.7.2 and 2.7.10).
    fn maybe_signal_used(&mut self, queue: u16) {
        let slot = &mut self.queues[queue as usize];
        let reason = if slot.queue.event_idx_enabled() {
            match slot.queue.needs_notification(&self.mem) {
                Ok(true) => None,
                Ok(false) => Some(SuppressReason::EventIdx),
                Err(_) => None,
            }
        } else {
            // The used index was published before this read; order the store before the load
            // so the device never reads a stale flag (virtio 1.2, 2.7.7.2).
            std::sync::atomic::fence(std::sync::atomic::Ordering::SeqCst);
            let flags = load_u16(&self.mem, slot.queue.avail_ring()).unwrap_or(0);
            (flags & VRING_AVAIL_F_NO_INTERRUPT != 0).then_some(SuppressReason::AvailNoInterrupt)
        };
        match reason {
            None => self.signal(InterruptCause::Queue(queue)),
            Some(reason) => self.events.emit(EventKind::InterruptSuppressed {
                cause: InterruptCause::Queue(queue),
                vector: slot.msix_vector,
                reason,
            }),
        }
    }

    // ------------------------------------------------------------------ snapshot/restore

    /// Everything interrupt-relevant, as a serde value.
    pub fn snapshot(&self) -> DeviceSnapshot {
        DeviceSnapshot {
            config_space: self.config.bytes().to_vec(),
            msix: self.msix.clone(),
            device_feature_select: self.device_feature_select,
            driver_feature_select: self.driver_feature_select,
            driver_features: self.driver_features,
            msix_config: self.msix_config,
            device_status: self.device_status,
            config_generation: self.config_generation,
            queue_select: self.queue_select,
            isr_status: self.isr_status,
            line: self.line,
            queues: self
                .queues
                .iter()
                .map(|s| {
                    let st = s.queue.state();
                    QueueSnapshot {
                        max_size: st.max_size,
                        size: st.size,
                        ready: st.ready,
                        next_avail: st.next_avail,
                        next_used: st.next_used,
                        event_idx_enabled: st.event_idx_enabled,
                        desc_table: st.desc_table,
                        avail_ring: st.avail_ring,
                        used_ring: st.used_ring,
                        msix_vector: s.msix_vector,
                        reset_pending: s.reset_pending,
                    }
                })
                .collect(),
            backend: self.backend.snapshot(),
        }
    }

    /// Restore a snapshot taken from a device built with the same backend and options. The
    /// sink is brought to the restored INTx level (a pending line interrupt is re-asserted, a
    /// stale one lowered); pending MSI-X bits stay in the PBA until their mask clears.
    pub fn restore(&mut self, snap: &DeviceSnapshot) -> Result<(), DeviceError> {
        if snap.queues.len() != self.queues.len() {
            return Err(DeviceError::Snapshot(format!(
                "{} queues in the snapshot, {} in the device",
                snap.queues.len(),
                self.queues.len()
            )));
        }
        if snap.msix.as_ref().map(|m| m.table.len()) != self.msix.as_ref().map(|m| m.table.len()) {
            return Err(DeviceError::Snapshot("MSI-X table size differs".into()));
        }
        let mut queues = Vec::with_capacity(snap.queues.len());
        for q in &snap.queues {
            let mut queue =
                Queue::new(q.max_size).map_err(|e| DeviceError::Snapshot(format!("queue: {e}")))?;
            let _ = queue.try_set_size(q.size);
            queue.set_next_avail(q.next_avail);
            queue.set_next_used(q.next_used);
            queue.set_event_idx(q.event_idx_enabled);
            queue
                .try_set_desc_table_address(GuestAddress(q.desc_table))
                .and_then(|_| queue.try_set_avail_ring_address(GuestAddress(q.avail_ring)))
                .and_then(|_| queue.try_set_used_ring_address(GuestAddress(q.used_ring)))
                .map_err(|e| DeviceError::Snapshot(format!("queue: {e}")))?;
            queue.set_ready(q.ready);
            queues.push(QueueSlot {
                queue,
                msix_vector: q.msix_vector,
                reset_pending: q.reset_pending,
            });
        }
        if !self.config.restore_bytes(&snap.config_space) {
            return Err(DeviceError::Snapshot(
                "config space must be 256 bytes".into(),
            ));
        }
        self.rebuild_windows();
        self.backend.restore(&snap.backend)?;
        self.queues = queues;
        self.msix = snap.msix.clone();
        self.device_feature_select = snap.device_feature_select;
        self.driver_feature_select = snap.driver_feature_select;
        self.driver_features = snap.driver_features;
        self.msix_config = snap.msix_config;
        self.device_status = snap.device_status;
        self.config_generation = snap.config_generation;
        self.queue_select = snap.queue_select;
        self.isr_status = snap.isr_status;
        // `self.line` still holds the level the sink was last given, so update_intx tells the
        // sink about a change in either direction: a pending line is re-asserted and a line
        // the restored state does not drive is lowered (PCI 3.0, 6.2.3: INTx follows the
        // function's interrupt state; catalogue row 19).
        self.update_intx();
        Ok(())
    }
}

/// Serializable transport state (see [`VirtioPciDevice::snapshot`]).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DeviceSnapshot {
    pub config_space: Vec<u8>,
    pub msix: Option<Msix>,
    pub device_feature_select: u32,
    pub driver_feature_select: u32,
    pub driver_features: u64,
    pub msix_config: u16,
    pub device_status: u8,
    pub config_generation: u8,
    pub queue_select: u16,
    pub isr_status: u8,
    pub line: bool,
    pub queues: Vec<QueueSnapshot>,
    pub backend: serde_json::Value,
}

/// One queue's state in a [`DeviceSnapshot`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueSnapshot {
    pub max_size: u16,
    pub size: u16,
    pub ready: bool,
    pub next_avail: u16,
    pub next_used: u16,
    pub event_idx_enabled: bool,
    pub desc_table: u64,
    pub avail_ring: u64,
    pub used_ring: u64,
    pub msix_vector: u16,
    pub reset_pending: bool,
}

/// A little-endian u16 of guest RAM, read atomically (the driver may be writing it) with one
/// region lookup. vm-memory's `read_obj` and `load` go through its general slice iterator,
/// which cost the notify path more than the rest of the interrupt decision together.
#[inline]
fn load_u16(mem: &GuestMemory, addr: u64) -> Option<u16> {
    let (region, at) = mem.to_region_addr(GuestAddress(addr))?;
    region
        .load::<u16>(at, std::sync::atomic::Ordering::Relaxed)
        .ok()
        .map(u16::from_le)
}

fn class_code_for(device_id: u16) -> u32 {
    match device_id {
        1 => 0x020000, // network controller
        2 => 0x018000, // mass storage, other
        3 => 0x078000, // simple communication, other
        _ => 0x00FF00, // unclassified
    }
}

/// Append a `struct virtio_pci_cap` (virtio 1.2, 4.1.4): cfg_type, bar, id, offset, length,
/// then `extra` (notify_off_multiplier or pci_cfg_data).
fn add_virtio_cap(
    config: &mut ConfigSpace,
    cfg_type: u8,
    region: Region,
    extra: &[u8],
    writable: &[u8],
) -> u8 {
    let cap_len = 16 + extra.len();
    let mut body = Vec::with_capacity(cap_len - 2);
    body.push(cap_len as u8);
    body.push(cfg_type);
    body.push(region.bar);
    body.push(0); // id
    body.extend_from_slice(&[0, 0]); // padding
    body.extend_from_slice(&(region.offset as u32).to_le_bytes());
    body.extend_from_slice(&(region.length as u32).to_le_bytes());
    body.extend_from_slice(extra);
    config.add_capability(CAP_ID_VENDOR, &body, writable)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::*;

    #[test]
    fn out_of_range_vector_reads_back_no_vector() {
        let (mut dev, _irq) = test_device(2, None);
        common_write16(&mut dev, common::MSIX_CONFIG, 7);
        assert_eq!(common_read16(&mut dev, common::MSIX_CONFIG), NO_VECTOR);
        common_write16(&mut dev, common::MSIX_CONFIG, 2);
        assert_eq!(common_read16(&mut dev, common::MSIX_CONFIG), 2);
    }
}
