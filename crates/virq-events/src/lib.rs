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

use serde::{Deserialize, Serialize};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// `VIRTIO_PCI_MSI_NO_VECTOR`: "no vector assigned" in `msix_config` / `queue_msix_vector`.
pub const NO_VECTOR: u16 = 0xFFFF;

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
        path: String,
        line: u64,
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
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "event")]
#[non_exhaustive]
pub enum EventKind {
    // ---- device side: the virtio-pci transport -------------------------------------------
    /// The driver wrote a vector selector; `read_back` is what the register now holds.
    VectorWritten {
        selector: Selector,
        written: u16,
        read_back: u16,
    },
    /// The driver read a vector selector.
    VectorRead { selector: Selector, value: u16 },
    /// `device_status` was written.
    DeviceStatus { value: u8 },
    /// The device went through a reset (`device_status = 0`); every selector is `0xFFFF` again.
    DeviceReset,
    /// The device set DEVICE_NEEDS_RESET because the driver broke a rule it cannot recover from.
    NeedsReset { queue: Option<u16> },
    /// Feature negotiation finished: FEATURES_OK was accepted (or refused).
    FeaturesNegotiated {
        offered: u64,
        accepted: u64,
        ok: bool,
    },
    /// A queue was enabled with this size.
    QueueEnabled { queue: u16, size: u16 },
    /// A queue was reset through `queue_reset` (VIRTIO_F_RING_RESET).
    QueueReset { queue: u16 },
    /// The driver notified (kicked) a queue.
    QueueNotify { queue: u16 },
    /// The device published `count` used buffers on a queue.
    UsedPublished { queue: u16, count: u16 },
    /// The device configuration changed and `config_generation` moved to `generation`.
    ConfigChanged { generation: u8 },
    /// The driver read the ISR status register (read-to-clear) and got `value`.
    IsrRead { value: u8 },

    // ---- device side: PCI / MSI-X / INTx ----------------------------------------------------
    /// MSI-X Message Control changed.
    MsixControl {
        enabled: bool,
        function_masked: bool,
    },
    /// An MSI-X table entry was (re)programmed or its mask bit changed.
    MsixEntry {
        entry: u16,
        address: u64,
        data: u32,
        masked: bool,
    },
    /// An MSI-X message left the device.
    MessageSent {
        cause: InterruptCause,
        entry: u16,
        address: u64,
        data: u32,
    },
    /// A due interrupt was not signalled.
    InterruptSuppressed {
        cause: InterruptCause,
        vector: u16,
        reason: SuppressReason,
    },
    /// A masked entry's Pending Bit was set.
    PendingSet { entry: u16 },
    /// A Pending Bit was cleared (message delivered on unmask, or state dropped).
    PendingCleared { entry: u16 },
    /// The INTx pin went high.
    LineRaised { pin: u8 },
    /// The INTx pin went low.
    LineLowered { pin: u8 },
    /// PCI Command register written (memory enable, interrupt disable).
    PciCommand { value: u16 },

    // ---- OS / platform side ------------------------------------------------------------------
    /// The OS assigned an interrupt resource (one per CM descriptor).
    ResourceAssigned {
        mode: InterruptMode,
        /// `u.MessageInterrupt.MessageCount` (message mode) or 0.
        message_count: u32,
        level: u32,
        vector: u32,
        affinity: u64,
        flags: u16,
    },
    /// The driver connected an interrupt object (`WdfInterruptCreate` + `WdfInterruptGetInfo`).
    InterruptConnected {
        message_signaled: bool,
        message_number: u32,
        vector: u32,
        irql: u8,
        affinity: u64,
    },
    /// The MSI-X capability as seen from the OS (a `!pci` dump, `lspci -vvv`, or the bus driver).
    MsixCapabilitySeen {
        enabled: bool,
        function_masked: bool,
        table_size: u16,
    },
    /// The CPU received an interrupt on an APIC/IDT vector.
    CpuInterrupt { vector: u8 },
    /// An ISR ran; `message_id` for message interrupts; `claimed` is its return value.
    IsrRan {
        message_id: Option<u32>,
        claimed: bool,
        isr_status: Option<u8>,
    },
    /// A DPC ran for this message (or for the line interrupt when `None`).
    DpcRan {
        message_id: Option<u32>,
        completions: u32,
    },
    /// A periodic counter summary (checklist 5.4): per message ISR and DPC counts.
    CounterSummary {
        message: Option<u32>,
        isr_count: u64,
        dpc_count: u64,
    },
    /// The platform stopped delivering because the interrupt budget ran out (a storm).
    InterruptBudgetExhausted { delivered: u64 },
    /// A line of a guest kernel log or driver print that a rule may quote.
    LogLine { text: String },
    /// A `/proc/interrupts` row: name, IRQ, and its total count.
    IrqCount {
        irq: String,
        name: String,
        count: u64,
    },
    /// The INTx pending state as the PCI Status register reports it (bit 3, `IntStatus` in
    /// WinDbg `!pci`, `INTx+` in `lspci -vvv`): a pending line nobody acknowledges storms.
    IntxStatus { pending: bool },
    /// The INTx pin a function uses and the IRQ the OS routed it to (`lspci -vvv`
    /// `Interrupt: pin A routed to IRQ 11`); pin 1 = INTA#. Lets a rule tie a line to its IRQ.
    IntxRouted { pin: u8, irq: u32 },
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
    pub origin: Origin,
    #[serde(flatten)]
    pub kind: EventKind,
}

/// Where a layer sends its events. Implementations must be cheap: the device calls this on
/// its hot path whenever recording is enabled.
pub trait EventSink: Send + Sync {
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
    fn now_ns(&self) -> u64;
}

/// An in-memory, ordered event log. Cloneable handles are obtained with `Arc`.
#[derive(Default)]
pub struct EventLog {
    events: Mutex<Vec<Event>>,
    next_seq: AtomicU64,
    clock: Option<Box<dyn Clock>>,
    device: Option<String>,
    /// Events beyond this many are counted but not stored, so a storm cannot exhaust memory.
    capacity: Option<usize>,
    dropped: AtomicU64,
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
    pub fn new() -> Self {
        Self::default()
    }

    /// Stamp events with this clock.
    pub fn with_clock(mut self, clock: Box<dyn Clock>) -> Self {
        self.clock = Some(clock);
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

    /// Append an event of a given origin (parsers use this to keep file and line).
    pub fn push(&self, origin: Origin, kind: EventKind) {
        let seq = self.next_seq.fetch_add(1, Ordering::Relaxed);
        let time_ns = self.clock.as_ref().map(|c| c.now_ns());
        let mut events = self.events.lock().unwrap_or_else(|e| e.into_inner());
        if self.capacity.is_some_and(|cap| events.len() >= cap) {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        events.push(Event {
            seq,
            time_ns,
            device: self.device.clone(),
            origin,
            kind,
        });
    }

    /// A copy of every stored event, in order.
    pub fn snapshot(&self) -> Vec<Event> {
        self.events
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Take the stored events out of the log.
    pub fn drain(&self) -> Vec<Event> {
        std::mem::take(&mut *self.events.lock().unwrap_or_else(|e| e.into_inner()))
    }

    pub fn len(&self) -> usize {
        self.events.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Events not stored because of the capacity limit.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Count stored events matching a predicate.
    pub fn count(&self, pred: impl Fn(&EventKind) -> bool) -> usize {
        self.events
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter(|e| pred(&e.kind))
            .count()
    }
}

impl EventSink for EventLog {
    fn emit(&self, kind: EventKind) {
        self.push(Origin::Run, kind);
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
