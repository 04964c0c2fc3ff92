//! One trail: the evidence of one device during one start, as one source (a file, or a run)
//! recorded it, folded as it arrives into the facts the rules need.
//!
//! Order matters only inside a trail: "a reset after the last vector write" compares positions
//! in one source, never across files whose relative order nobody knows. Everything a rule may
//! quote is kept in a bounded list; order-sensitive device-record checks (a line raised while
//! MSI-X was enabled, a message sent through a mask, DMA while bus mastering was off, a stale
//! pending bit) are followed as the events stream by, so a storm of millions of events costs
//! a few counters and the first proof, not memory.

use std::collections::BTreeMap;

use virq_events::{Event, EventKind, InterruptCause, NO_VECTOR, Origin, Selector};

use crate::kept::Kept;

/// Bounds of the kept lists: enough for any real start, small enough for any input.
const SETUP: usize = 512;
const OPS_HEAD: usize = 2048;
const OPS_TAIL: usize = 2048;
const SAMPLES: usize = 16;

/// A vector selector write or read as one source saw it.
#[derive(Clone, Debug)]
pub struct SelOp {
    pub pos: u64,
    pub event: Event,
    pub selector: Selector,
    /// What was written (`None` for a plain read).
    pub written: Option<u16>,
    /// What the register held afterwards (the read-back).
    pub value: u16,
    /// The MessageNumber the write was meant for, when the print says so.
    pub intended: Option<u32>,
}

/// A `/proc/interrupts` row over every snapshot of it.
#[derive(Clone, Debug)]
pub struct IrqRow {
    pub irq: String,
    pub name: String,
    pub chip: Option<String>,
    pub first: (u64, Event),
    pub last: (u64, Event),
    pub snapshots: u64,
}

/// The `/proc/interrupts` rows of a trail, by IRQ and then handler name: a row is found
/// with the two names as they stand in its event, without building a key, since a long
/// capture repeats every row once per snapshot.
#[derive(Clone, Debug, Default)]
pub struct IrqRows {
    by_irq: BTreeMap<String, BTreeMap<String, IrqRow>>,
    len: usize,
}

impl IrqRows {
    /// Rows held.
    pub fn len(&self) -> usize {
        self.len
    }

    /// No row held.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Every row, ordered by IRQ and then name.
    pub fn values(&self) -> impl Iterator<Item = &IrqRow> {
        self.by_irq.values().flat_map(BTreeMap::values)
    }

    fn get_mut(&mut self, irq: &str, name: &str) -> Option<&mut IrqRow> {
        self.by_irq.get_mut(irq)?.get_mut(name)
    }

    /// Adds `row` unless a row of the same IRQ and name is held.
    fn insert_if_absent(&mut self, row: IrqRow) {
        let names = self.by_irq.entry(row.irq.clone()).or_default();
        if !names.contains_key(&row.name) {
            names.insert(row.name.clone(), row);
            self.len += 1;
        }
    }

    fn into_rows(self) -> impl Iterator<Item = IrqRow> {
        self.by_irq.into_values().flat_map(BTreeMap::into_values)
    }
}

/// Overwrites `dst` with `src`, reusing `dst`'s strings where both are the same kind of
/// event: a row's last snapshot is replaced once per snapshot of a long capture.
fn refresh(dst: &mut Event, src: &Event) {
    dst.seq = src.seq;
    dst.time_ns = src.time_ns;
    dst.device.clone_from(&src.device);
    match (&mut dst.origin, &src.origin) {
        (
            Origin::File { path, line, text },
            Origin::File {
                path: p,
                line: l,
                text: t,
            },
        ) => {
            path.clone_from(p);
            *line = *l;
            text.clone_from(t);
        }
        (d, s) => *d = s.clone(),
    }
    match (&mut dst.kind, &src.kind) {
        (
            EventKind::IrqCount {
                irq,
                name,
                count,
                chip,
            },
            EventKind::IrqCount {
                irq: i,
                name: n,
                count: c,
                chip: h,
            },
        ) => {
            irq.clone_from(i);
            name.clone_from(n);
            *count = *c;
            chip.clone_from(h);
        }
        (d, s) => *d = s.clone(),
    }
}

/// What sampled INTx/message ISR invocations (and ISR status reads) showed.
#[derive(Clone, Debug)]
pub struct IsrSamples {
    /// Line ISR claimed without reading ISR status.
    pub claimed_unread: Kept<Event>,
    /// Line ISR returned not-mine without reading ISR status.
    pub notmine_unread: Kept<Event>,
    /// Message ISR returned FALSE although the interrupt was message-signalled.
    pub message_refused: Kept<Event>,
    /// ISR status read 0xFF and the ISR claimed it.
    pub all_ones_claimed: Kept<Event>,
    /// ISR status read 0xFF (whatever the ISR then did).
    pub all_ones: Kept<Event>,
    /// The last ISR status values read (device record `IsrRead`, or sampled `ISR:` lines),
    /// with their position in the source.
    pub reads: Kept<(u8, u64, Event)>,
    /// Sampled invocations of any kind.
    pub samples: u64,
    /// Line-ISR invocations (sampled) that read ISR status.
    pub line_reads: u64,
}

impl Default for IsrSamples {
    fn default() -> Self {
        IsrSamples {
            claimed_unread: Kept::new(SAMPLES, 0),
            notmine_unread: Kept::new(SAMPLES, 0),
            message_refused: Kept::new(SAMPLES, 0),
            all_ones_claimed: Kept::new(SAMPLES, 0),
            all_ones: Kept::new(SAMPLES, 0),
            reads: Kept::new(4, SAMPLES),
            samples: 0,
            line_reads: 0,
        }
    }
}

/// A device's own record, followed event by event (only a platform that runs the device can
/// produce these; a user's text never does).
#[derive(Clone, Debug, Default)]
pub struct DeviceRecord {
    /// Any device-side event was seen.
    pub present: bool,
    pub msix_enabled: bool,
    pub function_masked: bool,
    /// Entry mask bits; an entry never written is masked (its reset state).
    pub entry_masked: BTreeMap<u16, bool>,
    /// PCI Command as last written, when known.
    pub command: Option<u16>,
    pub line_high: bool,
    pub line_raised: u64,
    pub line_lowered: u64,
    pub messages: BTreeMap<u16, u64>,
    pub used: BTreeMap<u16, u64>,
    pub notifies: u64,
    pub config_changes: u64,
    /// Due interrupts not signalled: (cause, reason) -> (count, first event).
    pub suppressed: BTreeMap<String, (u64, Event)>,
    pub no_vector_queues: BTreeMap<u16, Event>,
    /// Pending bits set and not cleared: entry -> (PendingSet event, epoch at set).
    pub pending: BTreeMap<u16, (Event, u64)>,
    /// A pending bit just cleared by its delivery (the device clears the bit, then sends).
    just_cleared: Option<(u16, (Event, u64))>,
    /// Routing epoch per entry: bumped when a source stops using the entry or the device resets.
    pub epoch: BTreeMap<u16, (u64, Event)>,
    /// Which entry each source uses now (from the device's own read-backs).
    pub routes: BTreeMap<Selector, u16>,
    /// First violations, with their proof.
    pub line_with_msix: Option<Vec<Event>>,
    pub message_through_mask: Option<Vec<Event>>,
    pub line_while_disabled: Option<Vec<Event>>,
    pub dma_without_bus_master: Option<Vec<Event>>,
    pub stale_pending: Option<Vec<Event>>,
    /// An ISR status read that returned a cause again with no new cause since the last read.
    pub isr_not_cleared: Option<Vec<Event>>,
    /// An ISR status read of 0 while the line stayed high.
    pub line_high_nothing_pending: Option<Vec<Event>>,
    last_isr_read: Option<(u8, Event)>,
    cause_since_read: bool,
    pub budget: Option<Event>,
}

/// The facts one source gave about one device in one start.
#[derive(Clone, Debug)]
pub struct Trail {
    /// Arrival position of the next event.
    pub pos: u64,
    pub label: Option<Event>,
    pub resources: Kept<(u64, Event)>,
    pub connected: Kept<(u64, Event)>,
    pub selector_ops: Kept<SelOp>,
    /// `queue_msix_vector` writes with their read-back whose queue the print does not name
    /// (`QueueVectorWritten`), with their position.
    pub unnamed_vector_writes: Kept<(u64, Event)>,
    pub resets: Kept<(u64, Event)>,
    pub status: Kept<(u64, Event)>,
    pub queue_enables: Kept<(u64, Event)>,
    pub caps: Kept<Event>,
    pub pci_commands: Kept<Event>,
    pub intx_status: Kept<Event>,
    pub intx_routes: Kept<Event>,
    pub msix_entries: Kept<Event>,
    /// First and last counter summary of each message (`None` = the line).
    pub counters: BTreeMap<Option<u32>, (Event, Event)>,
    pub isr: IsrSamples,
    pub dpcs: u64,
    pub irq_rows: IrqRows,
    pub irq_rows_dropped: u64,
    pub nobody_cared: Kept<Event>,
    pub logs: Kept<Event>,
    pub crashes: Kept<Event>,
    pub inf: Kept<Event>,
    pub requests: BTreeMap<Option<u16>, Event>,
    /// Sources read in this trail's stream: (format, lines).
    pub sources: Vec<(String, u64)>,
    /// The OS said the device started.
    pub started: Option<Event>,
    /// Power transitions (D0 exit / entry), with their position.
    pub power: Kept<(u64, Event)>,
    pub device: DeviceRecord,
    /// Kinds that arrived and what every kept list let go.
    pub events: u64,
}

impl Default for Trail {
    fn default() -> Self {
        Trail {
            pos: 0,
            label: None,
            resources: Kept::new(SETUP, 0),
            connected: Kept::new(SETUP, 0),
            selector_ops: Kept::new(OPS_HEAD, OPS_TAIL),
            unnamed_vector_writes: Kept::new(OPS_HEAD, OPS_TAIL),
            resets: Kept::new(OPS_HEAD, OPS_TAIL),
            status: Kept::new(OPS_HEAD, OPS_TAIL),
            queue_enables: Kept::new(OPS_HEAD, OPS_TAIL),
            caps: Kept::new(SAMPLES, SAMPLES),
            pci_commands: Kept::new(SAMPLES, SAMPLES),
            intx_status: Kept::new(SAMPLES, SAMPLES),
            intx_routes: Kept::new(SAMPLES, 0),
            msix_entries: Kept::new(SETUP, SETUP),
            counters: BTreeMap::new(),
            isr: IsrSamples::default(),
            dpcs: 0,
            irq_rows: IrqRows::default(),
            irq_rows_dropped: 0,
            nobody_cared: Kept::new(SAMPLES, SAMPLES),
            logs: Kept::new(64, 64),
            crashes: Kept::new(SAMPLES, 0),
            inf: Kept::new(SAMPLES, 0),
            requests: BTreeMap::new(),
            sources: Vec::new(),
            started: None,
            power: Kept::new(OPS_HEAD, OPS_TAIL),
            device: DeviceRecord::default(),
            events: 0,
        }
    }
}

/// Rows of `/proc/interrupts` kept per trail (a machine has a few hundred IRQs).
const MAX_IRQ_ROWS: usize = 4096;
/// Counter groups kept (one per MSI-X message at most, plus the line).
const MAX_COUNTER_GROUPS: usize = 2049;

impl Trail {
    /// Folds one event in; `pos` is its position in its source.
    pub fn observe(&mut self, e: &Event, pos: u64) {
        self.pos = pos + 1;
        self.events += 1;
        if !matches!(
            e.kind,
            EventKind::PendingCleared { .. } | EventKind::MessageSent { .. }
        ) {
            self.device.just_cleared = None;
        }
        match &e.kind {
            EventKind::SessionStart { .. } if self.label.is_none() => {
                self.label = Some(e.clone());
            }
            EventKind::ResourceAssigned { .. } => self.resources.push((pos, e.clone())),
            EventKind::InterruptConnected { .. } => self.connected.push((pos, e.clone())),
            EventKind::VectorWritten {
                selector,
                written,
                read_back,
            } => {
                self.selector_ops.push(SelOp {
                    pos,
                    event: e.clone(),
                    selector: *selector,
                    written: Some(*written),
                    value: *read_back,
                    intended: None,
                });
                self.device_route(*selector, *read_back, e);
            }
            EventKind::QueueVectorWritten { .. } => {
                self.unnamed_vector_writes.push((pos, e.clone()));
            }
            EventKind::VectorRead { selector, value } => self.selector_ops.push(SelOp {
                pos,
                event: e.clone(),
                selector: *selector,
                written: None,
                value: *value,
                intended: None,
            }),
            EventKind::VectorMessage {
                selector,
                message_number,
            } => {
                // The MessageNumber printed on the same line as the write just before it.
                if let Some(op) = self.last_op_mut()
                    && op.selector == *selector
                    && op.written.is_some()
                    && op.pos + 1 == pos
                {
                    op.intended = Some(*message_number);
                }
            }
            EventKind::DeviceStatus { value } => {
                self.status.push((pos, e.clone()));
                if *value == 0 {
                    self.resets.push((pos, e.clone()));
                }
            }
            EventKind::DeviceReset => {
                // `device_status = 0` is usually logged as the status write and the reset it
                // caused: one reset.
                let same = self.resets.last().is_some_and(|(p, r)| {
                    *p + 1 == pos && matches!(r.kind, EventKind::DeviceStatus { value: 0 })
                });
                if !same {
                    self.resets.push((pos, e.clone()));
                }
                self.device_reset(e);
            }
            EventKind::QueueEnabled { .. } => self.queue_enables.push((pos, e.clone())),
            EventKind::MsixCapabilitySeen { .. } => self.caps.push(e.clone()),
            EventKind::PciCommand { value } => {
                self.pci_commands.push(e.clone());
                if matches!(e.origin, virq_events::Origin::Run) {
                    self.device.present = true;
                    self.device.command = Some(*value);
                }
            }
            EventKind::IntxStatus { .. } => self.intx_status.push(e.clone()),
            EventKind::IntxRouted { .. } => self.intx_routes.push(e.clone()),
            EventKind::CounterSummary { message, .. } => {
                if let Some(slot) = self.counters.get_mut(message) {
                    slot.1 = e.clone();
                } else if self.counters.len() < MAX_COUNTER_GROUPS {
                    self.counters.insert(*message, (e.clone(), e.clone()));
                }
            }
            EventKind::IsrRan {
                message_id,
                claimed,
                isr_status,
            } => self.isr_ran(*message_id, *claimed, *isr_status, e, pos),
            EventKind::IsrRead { value } => {
                self.isr_read(*value, e, pos);
                self.device_isr_read(*value, e);
            }
            EventKind::DpcRan { .. } => self.dpcs += 1,
            EventKind::IrqCount {
                irq,
                name,
                count,
                chip,
            } => self.irq_row(irq, name, *count, chip.as_deref(), e),
            EventKind::IrqNobodyCared { .. } => self.nobody_cared.push(e.clone()),
            EventKind::LogLine { .. } => self.logs.push(e.clone()),
            EventKind::DriverCrash { .. } => self.crashes.push(e.clone()),
            EventKind::InfInterruptPolicy { .. } => self.inf.push(e.clone()),
            EventKind::SourceRead { format, lines } if self.sources.len() < 64 => {
                self.sources.push((format.clone(), *lines));
            }
            EventKind::DeviceStarted => {
                self.started.get_or_insert_with(|| e.clone());
            }
            EventKind::PowerTransition { .. } => self.power.push((pos, e.clone())),
            EventKind::RequestsCompleted { queue, .. } => {
                self.requests.insert(*queue, e.clone());
            }
            EventKind::InterruptBudgetExhausted { .. } => {
                self.device.budget.get_or_insert_with(|| e.clone());
            }
            EventKind::MsixControl {
                enabled,
                function_masked,
            } => {
                self.device.present = true;
                self.device.msix_enabled = *enabled;
                self.device.function_masked = *function_masked;
            }
            EventKind::MsixEntry { entry, masked, .. } => {
                self.msix_entries.push(e.clone());
                if matches!(e.origin, virq_events::Origin::Run) {
                    self.device.present = true;
                    self.device.entry_masked.insert(*entry, *masked);
                }
            }
            EventKind::MessageSent { cause, entry, .. } => self.device_message(*cause, *entry, e),
            EventKind::InterruptSuppressed { cause, reason, .. } => {
                self.device.present = true;
                let key = format!("{cause:?}/{reason:?}");
                let slot = self.device.suppressed.entry(key).or_insert((0, e.clone()));
                slot.0 += 1;
                if let (InterruptCause::Queue(q), virq_events::SuppressReason::NoVector) =
                    (cause, reason)
                {
                    self.device
                        .no_vector_queues
                        .entry(*q)
                        .or_insert_with(|| e.clone());
                }
            }
            EventKind::PendingSet { entry } => {
                self.msix_entries.push(e.clone());
                if matches!(e.origin, virq_events::Origin::Run) {
                    let epoch = self.device.epoch.get(entry).map_or(0, |(n, _)| *n);
                    self.device.pending.insert(*entry, (e.clone(), epoch));
                }
            }
            EventKind::PendingCleared { entry } => {
                self.device.just_cleared = self.device.pending.remove(entry).map(|p| (*entry, p));
            }
            EventKind::LineRaised { .. } => self.device_line(true, e),
            EventKind::LineLowered { .. } => self.device_line(false, e),
            EventKind::UsedPublished { queue, count } => {
                self.device.present = true;
                *self.device.used.entry(*queue).or_insert(0) += u64::from(*count);
                self.device.cause_since_read = true;
                if self.device.command.is_some_and(|c| c & 0x4 == 0)
                    && self.device.dma_without_bus_master.is_none()
                {
                    let mut proof: Vec<Event> =
                        self.pci_commands.last().cloned().into_iter().collect();
                    proof.push(e.clone());
                    self.device.dma_without_bus_master = Some(proof);
                }
            }
            EventKind::QueueNotify { .. } => {
                self.device.present = true;
                self.device.notifies += 1;
            }
            EventKind::ConfigChanged { .. } => {
                self.device.present = true;
                self.device.config_changes += 1;
                self.device.cause_since_read = true;
            }
            _ => {}
        }
    }

    fn last_op_mut(&mut self) -> Option<&mut SelOp> {
        self.selector_ops.last_mut()
    }

    fn isr_ran(
        &mut self,
        message_id: Option<u32>,
        claimed: bool,
        status: Option<u8>,
        e: &Event,
        pos: u64,
    ) {
        let s = &mut self.isr;
        s.samples += 1;
        match (message_id, status) {
            (None, None) if claimed => s.claimed_unread.push(e.clone()),
            (None, None) => s.notmine_unread.push(e.clone()),
            (Some(_), _) if !claimed && status != Some(0xFF) => s.message_refused.push(e.clone()),
            _ => {}
        }
        if let Some(v) = status {
            if message_id.is_none() {
                s.line_reads += 1;
            }
            if v == 0xFF {
                s.all_ones.push(e.clone());
                if claimed {
                    s.all_ones_claimed.push(e.clone());
                }
            }
            s.reads.push((v, pos, e.clone()));
        }
    }

    fn isr_read(&mut self, value: u8, e: &Event, pos: u64) {
        if value == 0xFF {
            self.isr.all_ones.push(e.clone());
        }
        self.isr.reads.push((value, pos, e.clone()));
    }

    fn irq_row(&mut self, irq: &str, name: &str, count: u64, chip: Option<&str>, e: &Event) {
        if let Some(row) = self.irq_rows.get_mut(irq, name) {
            row.last.0 = count;
            refresh(&mut row.last.1, e);
            row.snapshots += 1;
            if row.chip.is_none() {
                row.chip = chip.map(str::to_string);
            }
        } else if self.irq_rows.len() < MAX_IRQ_ROWS {
            self.irq_rows.insert_if_absent(IrqRow {
                irq: irq.to_string(),
                name: name.to_string(),
                chip: chip.map(str::to_string),
                first: (count, e.clone()),
                last: (count, e.clone()),
                snapshots: 1,
            });
        } else {
            self.irq_rows_dropped += 1;
        }
    }

    // ---- the device's own record --------------------------------------------------------

    fn is_record(e: &Event) -> bool {
        matches!(e.origin, virq_events::Origin::Run)
    }

    fn device_route(&mut self, selector: Selector, read_back: u16, e: &Event) {
        if !Self::is_record(e) {
            return;
        }
        self.device.present = true;
        let old = self.device.routes.get(&selector).copied();
        if read_back == NO_VECTOR {
            self.device.routes.remove(&selector);
        } else {
            self.device.routes.insert(selector, read_back);
        }
        if let Some(entry) = old
            && old != Some(read_back)
            && !self.device.routes.values().any(|v| *v == entry)
        {
            self.bump_epoch(entry, e);
        }
    }

    fn bump_epoch(&mut self, entry: u16, e: &Event) {
        let slot = self.device.epoch.entry(entry).or_insert((0, e.clone()));
        slot.0 += 1;
        slot.1 = e.clone();
    }

    fn device_reset(&mut self, e: &Event) {
        if !Self::is_record(e) {
            return;
        }
        self.device.present = true;
        let entries: Vec<u16> = self.device.routes.values().copied().collect();
        self.device.routes.clear();
        for entry in entries {
            self.bump_epoch(entry, e);
        }
        let pending: Vec<u16> = self.device.pending.keys().copied().collect();
        for entry in pending {
            self.bump_epoch(entry, e);
        }
    }

    fn device_isr_read(&mut self, value: u8, e: &Event) {
        if !Self::is_record(e) {
            return;
        }
        let d = &mut self.device;
        d.present = true;
        if value != 0
            && value != 0xFF
            && d.isr_not_cleared.is_none()
            && !d.cause_since_read
            && let Some((prev, prev_e)) = &d.last_isr_read
            && *prev == value
        {
            d.isr_not_cleared = Some(vec![prev_e.clone(), e.clone()]);
        }
        // A read that finds nothing pending clears nothing, so a correct device's line is
        // already low; high here means asserted with nothing to acknowledge.
        if value == 0 && d.line_high && d.line_high_nothing_pending.is_none() {
            d.line_high_nothing_pending = Some(vec![e.clone()]);
        }
        d.last_isr_read = Some((value, e.clone()));
        d.cause_since_read = false;
    }

    fn device_line(&mut self, high: bool, e: &Event) {
        let d = &mut self.device;
        d.present = true;
        if high {
            d.line_raised += 1;
            if d.msix_enabled && d.line_with_msix.is_none() {
                d.line_with_msix = Some(vec![e.clone()]);
            }
            if d.command.is_some_and(|c| c & (1 << 10) != 0) && d.line_while_disabled.is_none() {
                let mut proof: Vec<Event> = self.pci_commands.last().cloned().into_iter().collect();
                proof.push(e.clone());
                self.device.line_while_disabled = Some(proof);
            }
        } else {
            self.device.line_lowered += 1;
        }
        self.device.line_high = high;
    }

    fn device_message(&mut self, cause: InterruptCause, entry: u16, e: &Event) {
        let d = &mut self.device;
        d.present = true;
        *d.messages.entry(entry).or_insert(0) += 1;
        let masked = d.entry_masked.get(&entry).copied().unwrap_or(true);
        if (!d.msix_enabled || d.function_masked || masked) && d.message_through_mask.is_none() {
            d.message_through_mask = Some(vec![e.clone()]);
        }
        if d.command.is_some_and(|c| c & 0x4 == 0) && d.dma_without_bus_master.is_none() {
            let mut proof: Vec<Event> = self.pci_commands.last().cloned().into_iter().collect();
            proof.push(e.clone());
            self.device.dma_without_bus_master = Some(proof);
        }
        if cause == InterruptCause::PendingDelivery {
            let record = match self.device.just_cleared.take() {
                Some((e, p)) if e == entry => Some(p),
                _ => self.device.pending.get(&entry).cloned(),
            };
            if let Some((set, epoch)) = record {
                let now = self.device.epoch.get(&entry).cloned();
                if let Some((n, why)) = now
                    && n > epoch
                    && self.device.stale_pending.is_none()
                {
                    self.device.stale_pending = Some(vec![set, why, e.clone()]);
                }
            }
        }
    }

    /// Takes in another trail of the same source and start (evidence that named no device,
    /// joined to the one device the others name), keeping source order.
    pub fn absorb(&mut self, other: Trail) {
        fn merge<T: Clone>(into: &mut Kept<T>, from: Kept<T>, pos: impl Fn(&T) -> u64) {
            let lost = into.dropped() + from.dropped();
            let mut all: Vec<T> = into.iter().cloned().chain(from.iter().cloned()).collect();
            all.sort_by_key(|t| pos(t));
            let mut fresh = into.empty_like();
            for t in all {
                fresh.push(t);
            }
            fresh.add_dropped(lost);
            *into = fresh;
        }
        fn append<T: Clone>(into: &mut Kept<T>, from: Kept<T>) {
            let lost = from.dropped();
            for t in from.iter().cloned() {
                into.push(t);
            }
            into.add_dropped(lost);
        }
        let at = |t: &(u64, Event)| t.0;
        merge(&mut self.resources, other.resources, at);
        merge(&mut self.connected, other.connected, at);
        merge(&mut self.selector_ops, other.selector_ops, |o: &SelOp| {
            o.pos
        });
        merge(
            &mut self.unnamed_vector_writes,
            other.unnamed_vector_writes,
            at,
        );
        merge(&mut self.resets, other.resets, at);
        merge(&mut self.status, other.status, at);
        merge(&mut self.queue_enables, other.queue_enables, at);
        merge(&mut self.power, other.power, at);
        self.sources.extend(other.sources);
        if self.started.is_none() {
            self.started = other.started;
        }
        append(&mut self.caps, other.caps);
        append(&mut self.pci_commands, other.pci_commands);
        append(&mut self.intx_status, other.intx_status);
        append(&mut self.intx_routes, other.intx_routes);
        append(&mut self.msix_entries, other.msix_entries);
        append(&mut self.nobody_cared, other.nobody_cared);
        append(&mut self.logs, other.logs);
        append(&mut self.crashes, other.crashes);
        append(&mut self.inf, other.inf);
        append(&mut self.isr.claimed_unread, other.isr.claimed_unread);
        append(&mut self.isr.notmine_unread, other.isr.notmine_unread);
        append(&mut self.isr.message_refused, other.isr.message_refused);
        append(&mut self.isr.all_ones_claimed, other.isr.all_ones_claimed);
        append(&mut self.isr.all_ones, other.isr.all_ones);
        append(&mut self.isr.reads, other.isr.reads);
        self.isr.samples += other.isr.samples;
        self.isr.line_reads += other.isr.line_reads;
        self.dpcs += other.dpcs;
        for (k, v) in other.counters {
            self.counters.entry(k).or_insert(v);
        }
        for row in other.irq_rows.into_rows() {
            self.irq_rows.insert_if_absent(row);
        }
        self.irq_rows_dropped += other.irq_rows_dropped;
        self.requests.extend(other.requests);
        if self.label.is_none() {
            self.label = other.label;
        }
        if !self.device.present {
            self.device = other.device;
        }
        self.events += other.events;
        self.pos = self.pos.max(other.pos);
    }

    /// Moves out the kernel's reports on IRQs and the `/proc/interrupts` rows that `owners`
    /// (given an IRQ and, for a row, its handler names) assigns to devices; returns a trail per
    /// device. Evidence nobody owns stays.
    pub fn take_irq_evidence(
        &mut self,
        owners: impl Fn(&str, Option<&str>) -> Vec<String>,
    ) -> BTreeMap<String, Trail> {
        let mut out: BTreeMap<String, Trail> = BTreeMap::new();
        let mut keep = self.nobody_cared.empty_like();
        for e in self.nobody_cared.iter() {
            let irq = match e.kind {
                EventKind::IrqNobodyCared { irq, .. } => irq.to_string(),
                _ => String::new(),
            };
            let to = owners(&irq, None);
            if to.is_empty() {
                keep.push(e.clone());
            }
            for d in to {
                let t = out.entry(d).or_default();
                t.nobody_cared.push(e.clone());
                t.events += 1;
            }
        }
        self.nobody_cared = keep;
        let rows = std::mem::take(&mut self.irq_rows);
        for row in rows.into_rows() {
            let to = owners(&row.irq, Some(&row.name));
            if to.is_empty() {
                self.irq_rows.insert_if_absent(row);
                continue;
            }
            for d in to {
                let t = out.entry(d).or_default();
                t.irq_rows.insert_if_absent(row.clone());
                t.events += row.snapshots;
            }
        }
        out
    }

    /// Nothing left in this trail that a rule reads.
    pub fn is_empty(&self) -> bool {
        self.resources.is_empty()
            && self.connected.is_empty()
            && self.selector_ops.is_empty()
            && self.unnamed_vector_writes.is_empty()
            && self.resets.is_empty()
            && self.status.is_empty()
            && self.queue_enables.is_empty()
            && self.caps.is_empty()
            && self.pci_commands.is_empty()
            && self.intx_status.is_empty()
            && self.intx_routes.is_empty()
            && self.msix_entries.is_empty()
            && self.counters.is_empty()
            && self.isr.samples == 0
            && self.isr.reads.is_empty()
            && self.irq_rows.is_empty()
            && self.nobody_cared.is_empty()
            && self.crashes.is_empty()
            && self.inf.is_empty()
            && self.requests.is_empty()
            && self.started.is_none()
            && self.power.is_empty()
            && self.sources.is_empty()
            && !self.device.present
            && self.logs.is_empty()
    }

    /// Whether anything here could move a verdict (free-text lines and the list of sources
    /// read cannot on their own).
    pub fn has_evidence(&self) -> bool {
        let mut probe = Trail {
            logs: Kept::new(0, 0),
            ..self.clone()
        };
        probe.sources.clear();
        !probe.is_empty()
    }

    /// What each bounded list let go: (what, how many).
    pub fn dropped(&self) -> Vec<(&'static str, u64)> {
        let mut out = vec![
            ("interrupt resources", self.resources.dropped()),
            ("interrupt objects", self.connected.dropped()),
            ("vector selector accesses", self.selector_ops.dropped()),
            (
                "queue vector writes naming no queue",
                self.unnamed_vector_writes.dropped(),
            ),
            ("resets", self.resets.dropped()),
            ("device_status writes", self.status.dropped()),
            ("queue enables", self.queue_enables.dropped()),
            ("power transitions", self.power.dropped()),
            ("MSI-X table entries", self.msix_entries.dropped()),
            ("/proc/interrupts rows", self.irq_rows_dropped),
        ];
        out.retain(|(_, n)| *n > 0);
        out
    }

    /// The checklist steps a list of [`Trail::dropped`] feeds.
    pub fn steps_of(what: &str) -> &'static [u8] {
        match what {
            "interrupt resources" => &[1, 2, 5],
            "interrupt objects" => &[3],
            "vector selector accesses" | "resets" | "device_status writes" | "queue enables" => {
                &[5, 6]
            }
            "MSI-X table entries" => &[4, 7],
            _ => &[7],
        }
    }
}
