//! The evidence model shared by every layer of virq.
//!
//! Each link of the interrupt chain (resources -> messages -> MSI-X table -> virtio vector
//! selectors -> ISR/DPC) leaves [`Event`]s behind. The device side, the guest side, the
//! platforms and the log parsers all produce the same type, so the doctor judges a simulated
//! run, a KVM run and a user's DbgView capture with the same rules.
//!
//! Device-side variants carry no heap data so that emitting them on the hot path allocates
//! nothing; free text (kernel log lines, unparsed driver prints) only appears in variants that
//! come from parsed logs or from the guest side.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod compact;
mod lane;

use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use compact::Packed;
use lane::{Lane, Pending, Slot};

/// `VIRTIO_PCI_MSI_NO_VECTOR`: "no vector assigned" in `msix_config` / `queue_msix_vector`.
pub use virq_spec::NO_VECTOR;

/// Which virtio vector selector an event talks about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Selector {
    /// `common_cfg.msix_config`: the configuration-change vector.
    MsixConfig,
    /// `common_cfg.queue_msix_vector` of the queue selected by `queue_select`.
    Queue(u16),
}

/// What caused an interrupt on the device side.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InterruptCause {
    /// Used buffers were published on this queue (ISR bit 0).
    Queue(u16),
    /// The device configuration changed (ISR bit 1).
    ConfigChange,
    /// A message held in the Pending Bit Array, sent when its mask cleared.
    PendingDelivery,
}

/// Why a due interrupt did not become an MSI-X message or a line assertion.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SuppressReason {
    /// The source's vector selector is `0xFFFF` while MSI-X is enabled.
    NoVector,
    /// The MSI-X table entry's mask bit is set (the PBA bit is set instead).
    EntryMasked,
    /// The MSI-X function mask is set (the PBA bit is set instead).
    FunctionMasked,
    /// PCI Command bit 10 (Interrupt Disable) keeps the INTx pin low.
    InterruptDisable,
    /// The driver set `VRING_AVAIL_F_NO_INTERRUPT` in the available ring.
    AvailNoInterrupt,
    /// `VIRTIO_F_EVENT_IDX`: `used_event` says the driver does not want this one.
    EventIdx,
    /// The device is not in DRIVER_OK (or needs a reset) and must not notify.
    NotLive,
    /// PCI Command bit 2 (Bus Master Enable) is clear: the message waits in the PBA.
    BusMasterDisabled,
}

/// Where an event came from, so the doctor can quote its proof.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Origin {
    /// Produced by a run of a machine (simulated or KVM) at `time_ns` on its clock.
    #[default]
    Run,
    /// Parsed from a file: `path` and 1-based `line`, with the line's text.
    File {
        /// The file as it was named to the parser.
        path: String,
        /// 1-based line number of the first line the event was read from.
        line: u64,
        /// That line's text, quoted in the doctor's findings.
        text: String,
    },
}

/// Interrupt mode a platform or OS handed to a device.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InterruptMode {
    /// Line-based, level-triggered INTx.
    Intx,
    /// Message-signalled (MSI or MSI-X).
    Message,
}

/// One link-level fact of the interrupt chain.
///
/// Device-side variants are emitted by `virq-device` as the driver touches the transport (and
/// re-emitted by the platforms that host it); OS-side variants come from the guest driver core
/// (`virq-guest`), the Windows 7 model (`virq-win7`), the machines (`virq-sim`, `virq-kvm`) and
/// the log parsers of `virq-doctor`, which read the same facts out of driver prints, WinDbg
/// output, `lspci` and `/proc/interrupts`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "event")]
#[non_exhaustive]
pub enum EventKind {
    // ---- device side: the virtio-pci transport -------------------------------------------
    /// The driver wrote a vector selector; `read_back` is what the register now holds.
    ///
    /// Emitted by the device on the write and by driver-side reporters for their write and
    /// read-back; a `read_back` of `0xFFFF` after a valid `written` is the device refusing the
    /// vector (virtio 1.2, 4.1.5.1.2).
    VectorWritten {
        /// Which selector was written.
        selector: Selector,
        /// The MSI-X table entry the driver asked for.
        written: u16,
        /// The value the selector holds afterwards.
        read_back: u16,
    },
    /// The driver wrote a `queue_msix_vector` and read it back, as its print reports without
    /// naming the queue (NetKVM sets each path's vector through its own virtqueue and prints
    /// only `read/write mismatch, <read> vs <written>`).
    QueueVectorWritten {
        /// The MSI-X table entry the driver asked for.
        written: u16,
        /// What `queue_msix_vector` held when read back.
        read_back: u16,
    },
    /// The driver read a vector selector (device side on the access, guest core on its
    /// verifying read).
    VectorRead {
        /// Which selector was read.
        selector: Selector,
        /// The value returned.
        value: u16,
    },
    /// `device_status` was written (virtio 1.2, 2.1): the driver's progress through
    /// ACKNOWLEDGE, DRIVER, FEATURES_OK and DRIVER_OK.
    DeviceStatus {
        /// The status byte written.
        value: u8,
    },
    /// The device went through a reset (`device_status = 0`); every selector is `0xFFFF` again.
    DeviceReset,
    /// The device set DEVICE_NEEDS_RESET because the driver broke a rule it cannot recover from.
    NeedsReset {
        /// The queue whose ring broke the rule, or `None` for a device-wide cause.
        queue: Option<u16>,
    },
    /// Feature negotiation finished: FEATURES_OK was accepted (or refused).
    FeaturesNegotiated {
        /// The device's feature bits (`device_feature`, all 64).
        offered: u64,
        /// The bits the driver wrote to `driver_feature`.
        accepted: u64,
        /// Whether FEATURES_OK stayed set: the device clears it when it cannot work with the
        /// accepted subset (virtio 1.2, 3.1.1).
        ok: bool,
    },
    /// A queue was enabled with this size.
    QueueEnabled {
        /// The queue index (`queue_select`).
        queue: u16,
        /// `queue_size` at the time `queue_enable` was written.
        size: u16,
    },
    /// A queue was reset through `queue_reset` (VIRTIO_F_RING_RESET).
    QueueReset {
        /// The queue index.
        queue: u16,
    },
    /// The driver notified (kicked) a queue.
    QueueNotify {
        /// The queue index written to the notification area.
        queue: u16,
    },
    /// The device published `count` used buffers on a queue.
    UsedPublished {
        /// The queue index.
        queue: u16,
        /// How many used-ring elements this publication added.
        count: u16,
    },
    /// The device configuration changed and `config_generation` moved to `generation`.
    ConfigChanged {
        /// The new `config_generation`.
        generation: u8,
    },
    /// The driver read the ISR status register (read-to-clear) and got `value`.
    IsrRead {
        /// Bit 0: queue interrupt, bit 1: configuration change (virtio 1.2, 4.1.4.5).
        value: u8,
    },

    // ---- device side: PCI / MSI-X / INTx ----------------------------------------------------
    /// MSI-X Message Control changed.
    MsixControl {
        /// MSI-X Enable (bit 15): messages replace INTx.
        enabled: bool,
        /// Function Mask (bit 14): every entry masked regardless of its own bit.
        function_masked: bool,
    },
    /// An MSI-X table entry was (re)programmed or its mask bit changed.
    MsixEntry {
        /// The table entry index.
        entry: u16,
        /// Message Address (upper and lower dwords): on x86 the local APIC destination.
        address: u64,
        /// Message Data: on x86 the IDT vector and delivery mode.
        data: u32,
        /// The entry's Vector Control mask bit.
        masked: bool,
    },
    /// An MSI-X message left the device.
    MessageSent {
        /// What the message signals.
        cause: InterruptCause,
        /// The MSI-X table entry it was built from.
        entry: u16,
        /// The Message Address written.
        address: u64,
        /// The Message Data written.
        data: u32,
    },
    /// A due interrupt was not signalled.
    InterruptSuppressed {
        /// What would have been signalled.
        cause: InterruptCause,
        /// The source's vector selector value (the MSI-X entry, or `0xFFFF`).
        vector: u16,
        /// Which rule held it back.
        reason: SuppressReason,
    },
    /// A masked entry's Pending Bit was set.
    PendingSet {
        /// The MSI-X table entry (and PBA bit) index.
        entry: u16,
    },
    /// A Pending Bit was cleared (message delivered on unmask, or state dropped).
    PendingCleared {
        /// The MSI-X table entry (and PBA bit) index.
        entry: u16,
    },
    /// The INTx pin went high.
    LineRaised {
        /// Interrupt Pin register value: 1 = INTA#.
        pin: u8,
    },
    /// The INTx pin went low.
    LineLowered {
        /// Interrupt Pin register value: 1 = INTA#.
        pin: u8,
    },
    /// PCI Command register written (memory enable, interrupt disable).
    PciCommand {
        /// The register value after the write.
        value: u16,
    },

    // ---- OS / platform side ------------------------------------------------------------------
    /// The OS assigned an interrupt resource (one per CM descriptor): from the Windows 7
    /// model, a WinDbg `dt` dump or the driver's resource print.
    ResourceAssigned {
        /// Line or message descriptor (`CM_RESOURCE_INTERRUPT_MESSAGE` in `flags`).
        mode: InterruptMode,
        /// `u.MessageInterrupt.MessageCount` (message mode) or 0. In a translated descriptor on
        /// x64 this field overlays `Group` and reads 0: count message descriptors instead.
        message_count: u32,
        /// `u.Interrupt.Level`: the IRQL (translated) or the IRQ/message data (raw).
        level: u32,
        /// `u.Interrupt.Vector`: the IDT vector (translated) or the bus vector (raw).
        vector: u32,
        /// `u.Interrupt.Affinity`: the processors the interrupt may target.
        affinity: u64,
        /// The descriptor's `Flags` (`CM_RESOURCE_INTERRUPT_*`: latched, message).
        flags: u16,
        /// From the raw list (`AllocatedResources`) rather than the translated one.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        raw: bool,
    },
    /// The driver connected an interrupt object (`WdfInterruptCreate` + `WdfInterruptGetInfo`),
    /// as its print reports `WDF_INTERRUPT_INFO`.
    InterruptConnected {
        /// `MessageSignaled`: the object is bound to a message, not the line.
        message_signaled: bool,
        /// `MessageNumber`: the message this object handles (what a selector must carry).
        message_number: u32,
        /// `Vector`: the IDT vector the OS connected.
        vector: u32,
        /// `Irql`: the device IRQL the ISR runs at.
        irql: u8,
        /// `TargetProcessorSet`: the processors the ISR may run on.
        affinity: u64,
    },
    /// The MSI-X capability as seen from the OS (a `!pci` dump, `lspci -vvv`, or the bus driver).
    MsixCapabilitySeen {
        /// MSI-X Enable as read.
        enabled: bool,
        /// Function Mask as read.
        function_masked: bool,
        /// Table Size + 1: how many table entries the function has.
        table_size: u16,
    },
    /// The CPU received an interrupt on an APIC/IDT vector (the simulated machine, when its
    /// local APIC dispatches).
    CpuInterrupt {
        /// The IDT vector taken.
        vector: u8,
    },
    /// An ISR ran (the guest driver core, or a driver print); `message_id` for message
    /// interrupts; `claimed` is its return value.
    IsrRan {
        /// KMDF's MessageID for a message ISR; `None` for the line ISR.
        message_id: Option<u32>,
        /// Whether the ISR said the interrupt was its own.
        claimed: bool,
        /// The ISR status byte the line ISR read, `None` when it read none (message ISRs
        /// must not read it; a line ISR that skips it never deasserts INTx).
        isr_status: Option<u8>,
    },
    /// A DPC ran for this message (or for the line interrupt when `None`).
    DpcRan {
        /// The message whose DPC ran, `None` for the line interrupt's.
        message_id: Option<u32>,
        /// How many used buffers the DPC consumed.
        completions: u32,
    },
    /// A periodic counter summary (checklist 5.4): per message ISR and DPC counts, from the
    /// guest driver core or a driver print.
    CounterSummary {
        /// The message counted, `None` for the line interrupt.
        message: Option<u32>,
        /// ISR entries so far, claimed or not.
        isr_count: u64,
        /// DPCs run so far.
        dpc_count: u64,
    },
    /// The platform stopped delivering because the interrupt budget ran out (a storm).
    InterruptBudgetExhausted {
        /// Interrupts delivered before the machine gave up.
        delivered: u64,
    },
    /// A line of a guest kernel log or driver print that a rule may quote (the KVM guest's
    /// serial console, or a parsed capture).
    LogLine {
        /// The line without its end-of-line.
        text: String,
    },
    /// A `/proc/interrupts` row: name, IRQ, and its total count.
    IrqCount {
        /// The first column (`11`, `24`, `NMI`): not always a number.
        irq: String,
        /// The action names at the end of the row (`virtio0-config`, `virtio1-req.0`).
        name: String,
        /// The row's count summed over every CPU column.
        count: u64,
        /// The controller column (`IO-APIC 11-fasteoi`, `PCI-MSI 65536-edge`,
        /// `PCI-MSIX-0000:00:04.0 0-edge`, `GICv3 48 Level`): whether the row is a line or a
        /// message, and often which function owns it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        chip: Option<String>,
    },
    /// The INTx pending state as the PCI Status register reports it (bit 3, `IntStatus` in
    /// WinDbg `!pci`, `INTx+` in `lspci -vvv`): a pending line nobody acknowledges storms.
    IntxStatus {
        /// Status bit 3 as read.
        pending: bool,
    },
    /// The INTx pin a function uses and the IRQ the OS routed it to (`lspci -vvv`
    /// `Interrupt: pin A routed to IRQ 11`); pin 1 = INTA#. Lets a rule tie a line to its IRQ.
    /// The KVM machine emits it for the IOAPIC input its MP table gives the slot.
    IntxRouted {
        /// Interrupt Pin: 1 = INTA# .. 4 = INTD#.
        pin: u8,
        /// The IRQ (GSI) the pin was routed to.
        irq: u32,
    },
    /// The MessageNumber a selector write was meant to carry (the `MessageNumber=` of a
    /// checklist 5.3 print), beside the `VectorWritten` of the same line.
    VectorMessage {
        /// The selector the print talks about.
        selector: Selector,
        /// The `WDF_INTERRUPT_INFO.MessageNumber` the driver meant.
        message_number: u32,
    },
    /// A source was read: its detected format (`DbgView capture`, `WinDbg output`, ...) and
    /// how many lines it had. Lets a rule tell "the capture holds none of the driver's lines"
    /// from "no capture was given".
    SourceRead {
        /// The format the doctor recognised.
        format: String,
        /// Lines in the source.
        lines: u64,
    },
    /// The OS reports the device started (WinDbg `!devnode` `DeviceNodeStarted`, Device
    /// Manager "working properly", Linux `Kernel driver in use`).
    DeviceStarted,
    /// A power transition of the device as the driver saw it (from its prints or the Windows 7
    /// model): leaving D0 for `state` (KMDF `EvtDeviceD0Exit`, interrupts disconnected) or
    /// entering D0 from `state` (`EvtDeviceD0Entry`, interrupts reconnected; the device has
    /// been reset).
    PowerTransition {
        /// `true` for `EvtDeviceD0Entry`, `false` for `EvtDeviceD0Exit`.
        entering_d0: bool,
        /// The other device power state, as its number (3 = D3).
        state: u8,
    },
    /// Where a new start of the driver (or a new boot of the OS) begins in a log: evidence
    /// before it and after it describe different starts and are judged apart.
    SessionStart {
        /// What marked the start (the banner or boot line), for quoting.
        label: String,
    },
    /// The Linux kernel gave up on a level line: `irq N: nobody cared`, the `handlers:` it
    /// listed (function names such as `vp_interrupt`), and `Disabling IRQ #N`.
    IrqNobodyCared {
        /// The IRQ the kernel disabled.
        irq: u32,
        /// The handler functions the kernel listed for it.
        handlers: Vec<String>,
    },
    /// The driver's own count of requests it submitted and saw completed (`IO:` lines, or a
    /// run's bookkeeping): the "known events" checklist step 7 compares the counters with.
    RequestsCompleted {
        /// The queue counted, `None` for a device-wide total.
        queue: Option<u16>,
        /// Requests made available to the device.
        submitted: u64,
        /// Requests the driver saw in the used ring.
        completed: u64,
    },
    /// The driver (or the machine) crashed; `message_id` when the crash names the message
    /// being handled (`BUGCHECK: ... MessageID=N`).
    DriverCrash {
        /// The message being handled, when the crash names it.
        message_id: Option<u32>,
        /// The crash line (bugcheck code and parameters, or the panic text).
        text: String,
    },
    /// What a driver's INF asks of Windows for one install section: `MSISupported` and
    /// `MessageNumberLimit` as Windows reads them (only from an AddReg of the `.HW` section),
    /// and how many interrupt-management keys sit where Windows never looks.
    InfInterruptPolicy {
        /// The `[DDInstall]` section the policy belongs to.
        install_section: String,
        /// `Interrupt Management\MessageSignaledInterruptProperties\MSISupported` = 1.
        msi_supported: bool,
        /// `MessageNumberLimit`, when set: the most messages Windows grants.
        message_number_limit: Option<u32>,
        /// Interrupt-management keys outside the `.HW` AddReg, which Windows ignores.
        misplaced_keys: u32,
    },
}

impl EventKind {
    /// What a driver does once it runs (register accesses, counters, ISR samples, request
    /// counts, a crash): a resource dump or an interrupt-object query printed after any of
    /// these belongs to a new start of the driver.
    pub fn is_driver_activity(&self) -> bool {
        matches!(
            self,
            EventKind::VectorWritten { .. }
                | EventKind::QueueVectorWritten { .. }
                | EventKind::VectorRead { .. }
                | EventKind::DeviceStatus { .. }
                | EventKind::DeviceReset
                | EventKind::QueueEnabled { .. }
                | EventKind::CounterSummary { .. }
                | EventKind::IsrRan { .. }
                | EventKind::IsrRead { .. }
                | EventKind::DpcRan { .. }
                | EventKind::RequestsCompleted { .. }
                | EventKind::DriverCrash { .. }
        )
    }

    /// What a driver prints when it starts: its resource dump, or (KMDF 1.9, objects created
    /// in `EvtDriverDeviceAdd`) an interrupt-object query that finds no resources yet.
    pub fn is_driver_start(&self) -> bool {
        matches!(
            self,
            EventKind::ResourceAssigned { .. }
                | EventKind::InterruptConnected {
                    message_signaled: false,
                    vector: 0,
                    ..
                }
        )
    }
}

/// One piece of evidence: what happened, when, and where it was seen.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Order in the log it belongs to (0-based).
    pub seq: u64,
    /// Time on the producing machine's clock in nanoseconds, when known.
    pub time_ns: Option<u64>,
    /// Which device (PCI BDF like `00:01.0`, or a name) the event is about, when known.
    pub device: Option<String>,
    /// Where the event was seen: a run, or a line of a parsed file.
    pub origin: Origin,
    /// What happened.
    #[serde(flatten)]
    pub kind: EventKind,
}

/// Where a layer sends its events. Implementations must be cheap: the device calls this on
/// its hot path whenever recording is enabled.
pub trait EventSink: Send + Sync {
    /// Record one event; the sink stamps sequence, time and device.
    fn emit(&self, kind: EventKind);
}

/// A sink that drops everything (the default: zero cost beyond the call).
#[derive(Debug, Default, Clone, Copy)]
pub struct NullSink;

impl EventSink for NullSink {
    fn emit(&self, _kind: EventKind) {}
}

/// A clock an [`EventLog`] stamps events with (a platform's virtual clock, for example).
pub trait Clock: Send + Sync {
    /// The current time in nanoseconds; must not go backwards within one log.
    fn now_ns(&self) -> u64;

    /// The nanosecond counter this clock reads, when it is nothing more than that (a simulated
    /// machine's virtual clock): the log then reads it inline instead of calling `now_ns`
    /// through the trait object, which is a good share of stamping an event.
    fn counter(&self) -> Option<Arc<AtomicU64>> {
        None
    }
}

/// Where a log's time stamps come from.
#[derive(Default)]
enum Stamp {
    /// No clock: events carry no time.
    #[default]
    None,
    /// A counter read with one load ([`Clock::counter`]).
    Counter(Arc<AtomicU64>),
    Clock(Box<dyn Clock>),
}

/// An in-memory, ordered event log. Cloneable handles are obtained with `Arc`.
///
/// Events are stored in a compact form and turned into [`Event`]s when read: the device tag is
/// the log's (not a clone per event), the sequence number follows from the position, and the
/// kinds a machine emits on its interrupt path are kept inline in 32 bytes (other kinds, and
/// events of a file origin, are boxed). Recording an interrupt therefore appends 32 bytes
/// instead of a 160-byte [`Event`], which is what the log's memory traffic and page faults
/// scale with.
///
/// Those interrupt-path kinds, when the thread that records them first records them again,
/// are appended without a lock or a locked instruction: into a ring of pre-allocated slots
/// that the log's storage takes over when it fills or someone reads (see `lane.rs`). Other
/// threads and other kinds take the lock. Order, sequence numbers and time stamps are those
/// of the calls; a reader sees every event whose `emit` returned before it started.
#[derive(Default)]
pub struct EventLog {
    inner: Mutex<LogInner>,
    /// Allocated at the first inline event.
    lane: OnceLock<Lane>,
    clock: Stamp,
    device: Option<String>,
    /// Events beyond this many are counted but not stored, so a storm cannot exhaust memory.
    capacity: Option<usize>,
}

/// What the log's lock protects: the stored events, the next sequence number and the count of
/// events dropped at the capacity limit.
#[derive(Default)]
struct LogInner {
    events: Chunks,
    /// Sequence number of the first stored event. Stored events are consecutive: once the
    /// capacity limit drops one, none is stored again until [`EventLog::drain`] empties the log.
    first_seq: u64,
    next_seq: u64,
    dropped: u64,
}

impl LogInner {
    /// Give the next sequence number to an event and keep it, unless the log is at
    /// `capacity` (then it is counted as dropped).
    #[inline]
    fn store(&mut self, capacity: Option<usize>, time_ns: u64, rec: Rec) {
        let seq = self.next_seq;
        self.next_seq += 1;
        if capacity.is_some_and(|cap| self.events.len() >= cap) {
            self.dropped += 1;
            return;
        }
        if self.events.is_empty() {
            self.first_seq = seq;
        }
        self.events.push(Stored { time_ns, rec });
    }

    /// [`LogInner::store`] of every event a lane flush hands over, in order, with the
    /// capacity and numbering bookkeeping done once for all of them.
    fn store_all(&mut self, capacity: Option<usize>, events: Pending<'_>) {
        let first = self.next_seq;
        let before = self.events.len();
        let n = events.len();
        let room = capacity.map_or(usize::MAX, |cap| cap.saturating_sub(before));
        let mut left = n.min(room);
        for run in events.into_runs() {
            let take = left.min(run.len());
            self.events.extend_from_slots(&run[..take]);
            left -= take;
        }
        let kept = self.events.len() - before;
        let dropped = n - kept;
        if before == 0 && kept > 0 {
            self.first_seq = first;
        }
        self.next_seq += (kept + dropped) as u64;
        self.dropped += dropped as u64;
    }
}

/// The stored events, in chunks that are never reallocated: a growing log touches each byte
/// once instead of copying itself (and faulting in a fresh copy) every time it doubles.
/// Chunks start small (a log of a few events stays small) and double up to a cap.
#[derive(Default)]
struct Chunks {
    chunks: Vec<Vec<Stored>>,
    len: usize,
}

impl Chunks {
    const FIRST: usize = 256;
    const MAX: usize = 1 << 16;

    #[inline]
    fn push(&mut self, e: Stored) {
        match self.chunks.last_mut() {
            Some(c) if c.len() < c.capacity() => c.push(e),
            _ => self.push_to_new_chunk(e),
        }
        self.len += 1;
    }

    #[cold]
    fn push_to_new_chunk(&mut self, e: Stored) {
        let mut chunk = Vec::with_capacity(self.next_capacity());
        chunk.push(e);
        self.chunks.push(chunk);
    }

    /// The size of the chunk after the last one.
    fn next_capacity(&self) -> usize {
        self.chunks
            .last()
            .map_or(Self::FIRST, |c| (c.capacity() * 2).min(Self::MAX))
    }

    /// Append the events of lane slots, in order: a copy per chunk with room, without a
    /// capacity check per event.
    fn extend_from_slots(&mut self, mut slots: &[Slot]) {
        while !slots.is_empty() {
            let room = match self.chunks.last() {
                Some(c) => c.capacity() - c.len(),
                None => 0,
            };
            if room == 0 {
                self.chunks.push(Vec::with_capacity(self.next_capacity()));
                continue;
            }
            let (now, later) = slots.split_at(room.min(slots.len()));
            if let Some(chunk) = self.chunks.last_mut() {
                chunk.extend(now.iter().map(|slot| {
                    let (time_ns, p) = slot.event();
                    Stored {
                        time_ns,
                        rec: Rec::Packed(p),
                    }
                }));
            }
            self.len += now.len();
            slots = later;
        }
    }

    fn len(&self) -> usize {
        self.len
    }

    fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn iter(&self) -> impl Iterator<Item = &Stored> {
        self.chunks.iter().flatten()
    }

    fn into_iter(self) -> impl Iterator<Item = Stored> {
        self.chunks.into_iter().flatten()
    }
}

/// One stored event. `time_ns` is meaningful only when the log has a clock.
struct Stored {
    time_ns: u64,
    rec: Rec,
}

/// An event kind as stored: the interrupt-path kinds of [`Origin::Run`] packed inline,
/// anything else (and every event parsed from a file) boxed whole.
enum Rec {
    Packed(Packed),
    Other(Box<(Origin, EventKind)>),
}

impl Rec {
    fn new(origin: Origin, kind: EventKind) -> Rec {
        if origin != Origin::Run {
            return Rec::Other(Box::new((origin, kind)));
        }
        match Packed::of(&kind) {
            Some(p) => Rec::Packed(p),
            None => Rec::Other(Box::new((Origin::Run, kind))),
        }
    }

    /// Origin and kind, copied.
    fn to_parts(&self) -> (Origin, EventKind) {
        match self {
            Rec::Packed(p) => (Origin::Run, p.kind()),
            Rec::Other(both) => (both.0.clone(), both.1.clone()),
        }
    }

    /// Origin and kind, moved out.
    fn into_parts(self) -> (Origin, EventKind) {
        match self {
            Rec::Packed(p) => (Origin::Run, p.kind()),
            Rec::Other(both) => *both,
        }
    }

    /// Whether the stored kind matches `pred` (without copying a boxed kind).
    fn matches(&self, pred: &impl Fn(&EventKind) -> bool) -> bool {
        match self {
            Rec::Packed(p) => pred(&p.kind()),
            Rec::Other(both) => pred(&both.1),
        }
    }
}

impl std::fmt::Debug for EventLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventLog")
            .field("len", &self.len())
            .field("dropped", &self.dropped())
            .finish()
    }
}

impl EventLog {
    /// An empty log with no clock, no device tag and no capacity limit.
    pub fn new() -> Self {
        Self::default()
    }

    /// Stamp events with this clock.
    pub fn with_clock(mut self, clock: Box<dyn Clock>) -> Self {
        self.clock = match clock.counter() {
            Some(counter) => Stamp::Counter(counter),
            None => Stamp::Clock(clock),
        };
        self
    }

    /// Tag every event with this device name.
    pub fn with_device(mut self, device: impl Into<String>) -> Self {
        self.device = Some(device.into());
        self
    }

    /// Keep at most `capacity` events; later ones are counted in [`EventLog::dropped`].
    pub fn with_capacity_limit(mut self, capacity: usize) -> Self {
        self.capacity = Some(capacity);
        self
    }

    /// The storage, with every event the lane holds moved into it first, so what the caller
    /// reads or appends comes after everything emitted before.
    fn lock(&self) -> std::sync::MutexGuard<'_, LogInner> {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(lane) = self.lane.get() {
            let capacity = self.capacity;
            lane.flush(|events| inner.store_all(capacity, events));
        }
        inner
    }

    #[inline(always)]
    fn now(&self) -> u64 {
        match &self.clock {
            Stamp::Counter(counter) => counter.load(Ordering::Relaxed),
            Stamp::Clock(clock) => clock.now_ns(),
            Stamp::None => 0,
        }
    }

    /// Append an event of a given origin (parsers use this to keep file and line).
    pub fn push(&self, origin: Origin, kind: EventKind) {
        if origin == Origin::Run {
            self.push_run(kind);
        } else {
            self.push_locked(self.now(), Rec::new(origin, kind));
        }
    }

    /// [`EventLog::push`] of an event of this run: through the lane when its kind packs.
    #[inline(always)]
    fn push_run(&self, kind: EventKind) {
        let time_ns = self.now();
        match Packed::of(&kind) {
            Some(p) => {
                // Plain data (see `Packed::of`): this skips a call into the drop glue of
                // every kind.
                std::mem::forget(kind);
                if let Err(p) = self.lane.get_or_init(Lane::new).try_push(time_ns, p) {
                    self.push_locked(time_ns, Rec::Packed(p));
                }
            }
            None => self.push_locked(time_ns, Rec::new(Origin::Run, kind)),
        }
    }

    /// Append under the lock (after the lane's events).
    #[cold]
    #[inline(never)]
    fn push_locked(&self, time_ns: u64, rec: Rec) {
        self.lock().store(self.capacity, time_ns, rec);
    }

    /// The public form of a stored event.
    fn event(&self, seq: u64, time_ns: u64, origin: Origin, kind: EventKind) -> Event {
        Event {
            seq,
            time_ns: (!matches!(self.clock, Stamp::None)).then_some(time_ns),
            device: self.device.clone(),
            origin,
            kind,
        }
    }

    /// A copy of every stored event, in order.
    pub fn snapshot(&self) -> Vec<Event> {
        let inner = self.lock();
        (inner.first_seq..)
            .zip(inner.events.iter())
            .map(|(seq, e)| {
                let (origin, kind) = e.rec.to_parts();
                self.event(seq, e.time_ns, origin, kind)
            })
            .collect()
    }

    /// Take the stored events out of the log.
    pub fn drain(&self) -> Vec<Event> {
        let (first_seq, stored) = {
            let mut inner = self.lock();
            (inner.first_seq, std::mem::take(&mut inner.events))
        };
        (first_seq..)
            .zip(stored.into_iter())
            .map(|(seq, e)| {
                let (origin, kind) = e.rec.into_parts();
                self.event(seq, e.time_ns, origin, kind)
            })
            .collect()
    }

    /// Events stored now (drained events and dropped ones not counted).
    pub fn len(&self) -> usize {
        self.lock().events.len()
    }

    /// Whether no events are stored.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Events not stored because of the capacity limit.
    pub fn dropped(&self) -> u64 {
        self.lock().dropped
    }

    /// Count stored events matching a predicate.
    pub fn count(&self, pred: impl Fn(&EventKind) -> bool) -> usize {
        self.lock()
            .events
            .iter()
            .filter(|e| e.rec.matches(&pred))
            .count()
    }
}

impl EventSink for EventLog {
    // The whole append is inlined here, so a device's call through `dyn EventSink` lands in
    // the code that does it.
    #[inline]
    fn emit(&self, kind: EventKind) {
        self.push_run(kind);
    }
}

impl<T: EventSink + ?Sized> EventSink for std::sync::Arc<T> {
    fn emit(&self, kind: EventKind) {
        (**self).emit(kind)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    struct Fixed(u64);
    impl Clock for Fixed {
        fn now_ns(&self) -> u64 {
            self.0
        }
    }

    /// A clock that is only a counter, read inline by the log.
    struct Counter(Arc<AtomicU64>);
    impl Clock for Counter {
        fn now_ns(&self) -> u64 {
            unreachable!("the log reads the counter itself")
        }
        fn counter(&self) -> Option<Arc<AtomicU64>> {
            Some(self.0.clone())
        }
    }

    #[test]
    fn a_counter_clock_stamps_each_event_with_the_counter_at_its_emit() {
        let ticks = Arc::new(AtomicU64::new(5));
        let log = EventLog::new().with_clock(Box::new(Counter(ticks.clone())));
        log.emit(EventKind::QueueNotify { queue: 0 });
        ticks.store(17, Ordering::Relaxed);
        log.emit(EventKind::DeviceReset);
        log.emit(EventKind::CpuInterrupt { vector: 0x41 });
        let times: Vec<_> = log.snapshot().iter().map(|e| e.time_ns).collect();
        assert_eq!(times, vec![Some(5), Some(17), Some(17)]);
        let clockless = EventLog::new();
        clockless.emit(EventKind::QueueNotify { queue: 0 });
        assert_eq!(clockless.snapshot()[0].time_ns, None, "no clock, no time");
    }

    #[test]
    fn log_orders_stamps_and_tags_events() {
        let log = EventLog::new()
            .with_clock(Box::new(Fixed(42)))
            .with_device("00:01.0");
        log.emit(EventKind::DeviceReset);
        log.emit(EventKind::IsrRead { value: 1 });
        let events = log.snapshot();
        assert_eq!(events.len(), 2);
        assert_eq!(events[0].seq, 0);
        assert_eq!(events[1].seq, 1);
        assert_eq!(events[1].time_ns, Some(42));
        assert_eq!(events[1].device.as_deref(), Some("00:01.0"));
        assert_eq!(events[1].kind, EventKind::IsrRead { value: 1 });
    }

    #[test]
    fn every_kind_and_origin_reads_back_as_pushed_with_consecutive_seqs() {
        let log = EventLog::new().with_clock(Box::new(Fixed(7)));
        let file = Origin::File {
            path: "a.log".into(),
            line: 3,
            text: "x".into(),
        };
        let pushed = [
            (Origin::Run, EventKind::CpuInterrupt { vector: 0x41 }),
            (
                Origin::Run,
                EventKind::MessageSent {
                    cause: InterruptCause::Queue(2),
                    entry: 3,
                    address: 0xFEE0_0000,
                    data: 0x41,
                },
            ),
            (file.clone(), EventKind::CpuInterrupt { vector: 0x42 }),
            (
                Origin::Run,
                EventKind::LogLine {
                    text: "hello".into(),
                },
            ),
            (
                Origin::Run,
                EventKind::IsrRan {
                    message_id: Some(1),
                    claimed: true,
                    isr_status: None,
                },
            ),
        ];
        for (origin, kind) in pushed.iter().cloned() {
            log.push(origin, kind);
        }
        assert_eq!(
            log.count(|k| matches!(k, EventKind::CpuInterrupt { .. })),
            2
        );
        let snap = log.snapshot();
        let drained = log.drain();
        assert_eq!(snap, drained);
        assert_eq!(drained.len(), pushed.len());
        for (i, (e, (origin, kind))) in drained.iter().zip(&pushed).enumerate() {
            assert_eq!(e.seq, i as u64);
            assert_eq!(e.time_ns, Some(7));
            assert_eq!(&e.origin, origin);
            assert_eq!(&e.kind, kind);
        }
        log.emit(EventKind::DeviceReset);
        assert_eq!(
            log.snapshot()[0].seq,
            5,
            "numbering continues after a drain"
        );
    }

    #[test]
    fn a_log_longer_than_a_chunk_keeps_order_and_limit() {
        let log = EventLog::new().with_capacity_limit(3000);
        for i in 0..4000u32 {
            log.emit(EventKind::DpcRan {
                message_id: Some(i),
                completions: i,
            });
        }
        assert_eq!((log.len(), log.dropped()), (3000, 1000));
        let events = log.snapshot();
        for (i, e) in events.iter().enumerate() {
            assert_eq!(e.seq, i as u64);
            assert_eq!(
                e.kind,
                EventKind::DpcRan {
                    message_id: Some(i as u32),
                    completions: i as u32
                }
            );
        }
        assert_eq!(log.drain(), events);
        assert!(log.is_empty());
        // Room again after the drain; dropped events kept their numbers.
        log.emit(EventKind::CpuInterrupt { vector: 0x51 });
        assert_eq!(log.snapshot()[0].seq, 4000);
        assert_eq!(log.dropped(), 1000);
    }

    #[test]
    fn a_stored_event_is_32_bytes() {
        assert_eq!(std::mem::size_of::<Stored>(), 32);
    }

    #[test]
    fn writers_on_many_threads_lose_nothing_and_keep_their_own_order() {
        const THREADS: u32 = 4;
        // Under Miri (the data-race checker of .ci/run's miri stage) fewer events still cross
        // the lane's and the log's boundaries (256 slots; a boxed kind every BOXED events).
        const EACH: u32 = if cfg!(miri) { 600 } else { 20_000 };
        const BOXED: u32 = if cfg!(miri) { 100 } else { 1000 };
        let log = Arc::new(EventLog::new().with_clock(Box::new(Fixed(3))));
        let reader = {
            let log = log.clone();
            std::thread::spawn(move || {
                // Whatever a reader sees mid-run is numbered without a gap.
                let mut longest = 0;
                while longest < (THREADS * EACH) as usize {
                    let snap = log.snapshot();
                    assert!(snap.iter().enumerate().all(|(i, e)| e.seq == i as u64));
                    assert!(snap.len() >= longest, "a reader never sees the log shrink");
                    longest = snap.len();
                    std::thread::yield_now();
                }
            })
        };
        let writers: Vec<_> = (0..THREADS)
            .map(|t| {
                let log = log.clone();
                std::thread::spawn(move || {
                    for i in 0..EACH {
                        if i % BOXED == BOXED - 1 {
                            // A boxed kind takes the lock and flushes the lane in between.
                            log.emit(EventKind::LogLine {
                                text: format!("{t} {i}"),
                            });
                        } else {
                            log.emit(EventKind::DpcRan {
                                message_id: Some(t),
                                completions: i,
                            });
                        }
                    }
                })
            })
            .collect();
        for w in writers {
            w.join().unwrap();
        }
        reader.join().unwrap();
        let events = log.snapshot();
        assert_eq!(events.len(), (THREADS * EACH) as usize);
        let mut next = vec![0u32; THREADS as usize];
        for (i, e) in events.iter().enumerate() {
            assert_eq!((e.seq, e.time_ns), (i as u64, Some(3)));
            let (t, n) = match &e.kind {
                EventKind::DpcRan {
                    message_id: Some(t),
                    completions,
                } => (*t, *completions),
                EventKind::LogLine { text } => {
                    let (t, n) = text.split_once(' ').unwrap();
                    (t.parse().unwrap(), n.parse().unwrap())
                }
                other => panic!("unexpected {other:?}"),
            };
            assert_eq!(n, next[t as usize], "thread {t}'s events in its order");
            next[t as usize] += 1;
        }
        assert!(next.iter().all(|&n| n == EACH));
    }

    #[test]
    fn boxed_and_inline_events_keep_the_order_of_their_calls() {
        let log = EventLog::new().with_capacity_limit(600);
        for i in 0..700u32 {
            if i % 3 == 0 {
                log.emit(EventKind::SessionStart {
                    label: i.to_string(),
                });
            } else {
                log.emit(EventKind::DpcRan {
                    message_id: None,
                    completions: i,
                });
            }
        }
        assert_eq!((log.len(), log.dropped()), (600, 100));
        for (i, e) in log.drain().into_iter().enumerate() {
            assert_eq!(e.seq, i as u64);
            let n = match e.kind {
                EventKind::SessionStart { label } => label.parse().unwrap(),
                EventKind::DpcRan { completions, .. } => completions,
                other => panic!("unexpected {other:?}"),
            };
            assert_eq!(n, i as u32);
        }
        log.emit(EventKind::CpuInterrupt { vector: 0x41 });
        let after = log.snapshot();
        assert_eq!(after.len(), 1);
        assert_eq!(after[0].seq, 700, "dropped events keep their numbers");
    }

    #[test]
    fn capacity_limit_counts_what_it_drops() {
        let log = EventLog::new().with_capacity_limit(3);
        for _ in 0..10 {
            log.emit(EventKind::LineRaised { pin: 1 });
        }
        assert_eq!(log.len(), 3);
        assert_eq!(log.dropped(), 7);
    }

    #[test]
    fn events_round_trip_through_json_with_a_flat_tag() {
        let log = Arc::new(EventLog::new());
        log.emit(EventKind::VectorWritten {
            selector: Selector::Queue(1),
            written: 0xE1,
            read_back: NO_VECTOR,
        });
        let event = &log.snapshot()[0];
        let json = serde_json::to_string(event).unwrap();
        assert!(json.contains("\"event\":\"vector_written\""), "{json}");
        assert!(json.contains("\"read_back\":65535"), "{json}");
        let back: Event = serde_json::from_str(&json).unwrap();
        assert_eq!(&back, event);
    }
}
