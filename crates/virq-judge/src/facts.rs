//! Facts over one subject: the trails of every source about one device in one start, and what
//! several rules derive from them (the mode, the grant, the queues, a storm, selector states).
//! Positional questions are answered per trail; everything else is a union over trails.

use std::collections::{BTreeMap, BTreeSet};

use virq_events::{Event, EventKind, InterruptMode, NO_VECTOR, Origin, Selector};

use crate::trail::{IrqRow, SelOp, Trail};

/// An INTx ISR count rising by at least this much, at most one DPC per
/// [`STORM_ISR_PER_DPC`] ISRs (or per request completed), is a line nobody acknowledges.
pub const STORM_MIN_ISR: u64 = 10_000;
pub const STORM_ISR_PER_DPC: u64 = 50;
/// The Linux kernel disables a line after 100,000 interrupts of which 99,900 went unhandled;
/// a line row rising this much between snapshots, or frozen at this count, stormed.
pub const LINUX_SPURIOUS_CUTOFF: u64 = 100_000;

/// Linux's own virtio interrupt handlers: they read ISR status (so row 1 is not theirs).
pub const LINUX_VIRTIO_HANDLERS: [&str; 4] = [
    "vp_interrupt",
    "vring_interrupt",
    "vp_vring_interrupt",
    "vp_config_changed",
];

/// Where the interrupt mode was read from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ModeSource {
    /// Windows interrupt resources (`INT:` lines, `!devnode`, a resource-list dump).
    Resources,
    /// Connected interrupt objects (`WDFINT:` after start).
    Objects,
    /// Linux `/proc/interrupts` rows.
    LinuxIrqs,
    /// The device's own record (MSI-X Enable, messages and line activity).
    Record,
}

/// A storm on the device's line.
#[derive(Clone, Debug)]
pub struct Storm {
    pub summary: String,
    pub proof: Vec<Event>,
    /// The handlers Linux listed for the line, when it gave up on it.
    pub handlers: Option<Vec<String>>,
}

pub struct Facts<'a> {
    pub trails: &'a [Trail],
    /// Steps whose evidence a bound let go: they cannot be said to hold.
    pub lost_steps: BTreeSet<u8>,
}

fn is_file(e: &Event) -> bool {
    matches!(e.origin, Origin::File { .. })
}

/// The format label the doctor gives a DbgView capture (its `SourceRead`).
pub const DBGVIEW_CAPTURE: &str = "DbgView capture";

/// The format label the doctor gives WinDbg output (its `SourceRead`).
pub const WINDBG_OUTPUT: &str = "WinDbg output";

/// Whether a trail was read from WinDbg output only (`!devnode`, `dt` of the start IRP's lists):
/// its resources are what Windows assigned, not what the driver printed.
pub fn from_windbg(t: &Trail) -> bool {
    !t.sources.is_empty() && t.sources.iter().all(|(f, _)| f == WINDBG_OUTPUT)
}

/// Whether a trail holds the driver's own prints: resources (not WinDbg's), objects or selector
/// accesses read from a file, counters, sampled ISR lines.
pub fn prints_in(t: &Trail) -> bool {
    (!from_windbg(t) && t.resources.iter().any(|(_, e)| is_file(e)))
        || t.connected.iter().any(|(_, e)| is_file(e))
        || t.selector_ops.iter().any(|o| is_file(&o.event))
        || t.unnamed_vector_writes.iter().any(|(_, e)| is_file(e))
        || !t.counters.is_empty()
        || t.isr.samples > 0
}

impl<'a> Facts<'a> {
    /// `source_lost`: a source let evidence go before it reached the judge.
    pub fn new(trails: &'a [Trail], source_lost: bool) -> Self {
        let mut lost_steps = BTreeSet::new();
        if source_lost {
            lost_steps.extend(1..=7);
        }
        for t in trails {
            for (what, _) in t.dropped() {
                lost_steps.extend(Trail::steps_of(what).iter().copied());
            }
        }
        Facts { trails, lost_steps }
    }

    // ---- resources and mode ------------------------------------------------------------

    pub fn resources(&self) -> impl Iterator<Item = &'a Event> + '_ {
        self.trails
            .iter()
            .flat_map(|t| t.resources.iter().map(|(_, e)| e))
    }

    fn resources_of(&self, mode: InterruptMode) -> Vec<&'a Event> {
        self.resources()
            .filter(|e| matches!(e.kind, EventKind::ResourceAssigned { mode: m, .. } if m == mode))
            .collect()
    }

    pub fn message_resources(&self) -> Vec<&'a Event> {
        self.resources_of(InterruptMode::Message)
    }

    pub fn line_resources(&self) -> Vec<&'a Event> {
        self.resources_of(InterruptMode::Intx)
    }

    /// Messages granted: per source, the message descriptors of its list (one per MSI-X
    /// message), or a descriptor's `MessageCount` when it says more (multi-message MSI, or a
    /// 32-bit system); the largest. On x64 the translated `MessageCount` is the processor
    /// group and reads 0, so the descriptors are what counts there.
    ///
    /// Descriptors are told apart by their vector (each message has its own), so one list seen
    /// twice in a source (the driver's `INT:` dump and a pasted `!devnode`) counts once.
    pub fn granted(&self) -> Option<u32> {
        let mut best = None;
        for t in self.trails {
            let mut translated = BTreeSet::new();
            let mut raw_count = 0u32;
            let mut raw_descriptors = BTreeSet::new();
            for (_, e) in t.resources.iter() {
                if let EventKind::ResourceAssigned {
                    mode: InterruptMode::Message,
                    message_count,
                    raw,
                    vector,
                    ..
                } = e.kind
                {
                    raw_count = raw_count.max(message_count);
                    if raw {
                        raw_descriptors.insert(vector);
                    } else {
                        translated.insert(vector);
                    }
                }
            }
            let here = (translated.len() as u32)
                .max(raw_descriptors.len() as u32)
                .max(raw_count);
            if here > 0 {
                best = Some(best.unwrap_or(0).max(here));
            }
        }
        best
    }

    /// Connected interrupt objects that carry resources (printed after start).
    pub fn objects(&self) -> Vec<&'a Event> {
        self.trails
            .iter()
            .flat_map(|t| t.connected.iter().map(|(_, e)| e))
            .filter(|e| {
                matches!(
                    e.kind,
                    EventKind::InterruptConnected { vector, .. } if vector != 0
                )
            })
            .collect()
    }

    /// Linux `/proc/interrupts` rows of virtio handlers.
    pub fn irq_rows(&self) -> Vec<&'a IrqRow> {
        self.trails
            .iter()
            .flat_map(|t| t.irq_rows.values())
            .collect()
    }

    /// The mode the OS assigned, with the events that show it and where it was read.
    pub fn mode(&self) -> Option<(InterruptMode, Vec<&'a Event>, ModeSource)> {
        let msg = self.message_resources();
        if !msg.is_empty() {
            return Some((InterruptMode::Message, msg, ModeSource::Resources));
        }
        let line = self.line_resources();
        if !line.is_empty() {
            return Some((InterruptMode::Intx, line, ModeSource::Resources));
        }
        let objects = self.objects();
        if !objects.is_empty() {
            let msg: Vec<&Event> = objects
                .iter()
                .copied()
                .filter(|e| {
                    matches!(
                        e.kind,
                        EventKind::InterruptConnected {
                            message_signaled: true,
                            ..
                        }
                    )
                })
                .collect();
            return Some(if msg.is_empty() {
                (InterruptMode::Intx, objects, ModeSource::Objects)
            } else {
                (InterruptMode::Message, msg, ModeSource::Objects)
            });
        }
        let rows = self.irq_rows();
        let msg: Vec<&Event> = rows
            .iter()
            .filter(|r| linux_row_mode(r) == Some(InterruptMode::Message))
            .map(|r| &r.last.1)
            .collect();
        if !msg.is_empty() {
            return Some((InterruptMode::Message, msg, ModeSource::LinuxIrqs));
        }
        let line: Vec<&Event> = rows
            .iter()
            .filter(|r| linux_row_mode(r) == Some(InterruptMode::Intx))
            .map(|r| &r.last.1)
            .collect();
        if !line.is_empty() {
            return Some((InterruptMode::Intx, line, ModeSource::LinuxIrqs));
        }
        for t in self.trails {
            let d = &t.device;
            if !d.present {
                continue;
            }
            let sent: u64 = d.messages.values().sum();
            if d.msix_enabled || sent > 0 {
                return Some((InterruptMode::Message, Vec::new(), ModeSource::Record));
            }
            if d.line_raised > 0 {
                return Some((InterruptMode::Intx, Vec::new(), ModeSource::Record));
            }
        }
        None
    }

    // ---- the device ---------------------------------------------------------------------

    /// Every MSI-X capability reading: (enabled, function masked, table size, event).
    pub fn caps(&self) -> Vec<(bool, bool, u16, &'a Event)> {
        self.trails
            .iter()
            .flat_map(|t| t.caps.iter())
            .filter_map(|e| match e.kind {
                EventKind::MsixCapabilitySeen {
                    enabled,
                    function_masked,
                    table_size,
                } => Some((enabled, function_masked, table_size, e)),
                _ => None,
            })
            .collect()
    }

    /// The last capability reading of the trail that has one (a snapshot after the run).
    pub fn last_cap(&self) -> Option<(bool, bool, u16, &'a Event)> {
        self.trails
            .iter()
            .filter_map(|t| t.caps.last())
            .filter_map(|e| match e.kind {
                EventKind::MsixCapabilitySeen {
                    enabled,
                    function_masked,
                    table_size,
                } => Some((enabled, function_masked, table_size, e)),
                _ => None,
            })
            .next_back()
    }

    pub fn table_size(&self) -> Option<(u16, &'a Event)> {
        self.caps()
            .into_iter()
            .filter(|c| c.2 > 0)
            .map(|c| (c.2, c.3))
            .next_back()
    }

    /// The device's own record, when a run left one.
    pub fn record(&self) -> Option<&'a crate::trail::DeviceRecord> {
        self.trails.iter().map(|t| &t.device).find(|d| d.present)
    }

    /// PCI Command words read from snapshots (`!pci`, `lspci`) or the record.
    pub fn commands(&self) -> Vec<(u16, &'a Event)> {
        self.trails
            .iter()
            .flat_map(|t| t.pci_commands.iter())
            .filter_map(|e| match e.kind {
                EventKind::PciCommand { value } => Some((value, e)),
                _ => None,
            })
            .collect()
    }

    /// The INF policies the driver's INF states.
    pub fn inf(&self) -> Vec<&'a Event> {
        self.trails.iter().flat_map(|t| t.inf.iter()).collect()
    }

    // ---- the driver -----------------------------------------------------------------------

    /// Queues the evidence names: programmed or read selectors, enabled queues, Linux
    /// per-queue handlers, the device's used publications.
    pub fn queues(&self) -> BTreeSet<u16> {
        let mut q = BTreeSet::new();
        for t in self.trails {
            for op in t.selector_ops.iter() {
                if let Selector::Queue(n) = op.selector {
                    q.insert(n);
                }
            }
            for (_, e) in t.queue_enables.iter() {
                if let EventKind::QueueEnabled { queue, .. } = e.kind {
                    q.insert(queue);
                }
            }
        }
        q
    }

    /// Every selector access, per trail, in source order.
    pub fn ops_by_trail(&self) -> impl Iterator<Item = (&'a Trail, Vec<&'a SelOp>)> + '_ {
        self.trails
            .iter()
            .map(|t| (t, t.selector_ops.iter().collect::<Vec<_>>()))
    }

    pub fn writes(&self) -> Vec<&'a SelOp> {
        self.trails
            .iter()
            .flat_map(|t| t.selector_ops.iter())
            .filter(|o| o.written.is_some())
            .collect()
    }

    /// Writes that mean a vector (not 0xFFFF).
    pub fn intended_writes(&self) -> Vec<&'a SelOp> {
        self.writes()
            .into_iter()
            .filter(|o| o.written.is_some_and(|w| w != NO_VECTOR))
            .collect()
    }

    /// Some source logs the driver's register accesses (so a missing write means a write
    /// that did not happen).
    pub fn accesses_logged(&self) -> bool {
        self.trails.iter().any(|t| {
            !t.selector_ops.is_empty()
                || !t.unnamed_vector_writes.is_empty()
                || !t.status.is_empty()
                || !t.queue_enables.is_empty()
        }) || self.record().is_some()
    }

    /// Whether the driver wrote a vector (not NO_VECTOR) to a queue its print does not name.
    pub fn unnamed_programmed(&self) -> Vec<&'a Event> {
        self.unnamed_vector_writes()
            .into_iter()
            .filter(|u| u.0 != NO_VECTOR)
            .map(|u| u.3)
            .collect()
    }

    /// `queue_msix_vector` writes whose queue the print does not name, as (written, read back,
    /// whether a reset followed it in its trail, the event).
    pub fn unnamed_vector_writes(&self) -> Vec<(u16, u16, bool, &'a Event)> {
        let mut out = Vec::new();
        for t in self.trails.iter() {
            for (pos, e) in t.unnamed_vector_writes.iter() {
                if let EventKind::QueueVectorWritten { written, read_back } = e.kind {
                    let reset = t.resets.iter().any(|(p, _)| p > pos);
                    out.push((written, read_back, reset, e));
                }
            }
        }
        out
    }

    /// APIC/IDT vectors the evidence shows for this device's interrupts.
    pub fn apic_vectors(&self) -> BTreeMap<u32, &'a Event> {
        let mut out = BTreeMap::new();
        for e in self.resources().chain(self.objects()) {
            let v = match e.kind {
                EventKind::ResourceAssigned { vector, .. } => vector,
                EventKind::InterruptConnected { vector, .. } => vector,
                _ => continue,
            };
            // IDT vectors below 0x20 are exceptions: a "vector" that small is an IRQ or a
            // message number, not something a driver would confuse.
            if v >= 0x20 {
                out.entry(v).or_insert(e);
            }
        }
        out
    }

    /// Connected MessageNumbers of message-signalled objects.
    pub fn message_numbers(&self) -> BTreeSet<u32> {
        self.objects()
            .iter()
            .filter_map(|e| match e.kind {
                EventKind::InterruptConnected {
                    message_signaled: true,
                    message_number,
                    ..
                } => Some(message_number),
                _ => None,
            })
            .collect()
    }

    /// The per-message counters: message -> (isr, dpc, last event); `None` = the line.
    pub fn counters(&self) -> BTreeMap<Option<u32>, (u64, u64, &'a Event)> {
        let mut out = BTreeMap::new();
        for t in self.trails {
            for (m, (_, last)) in &t.counters {
                if let EventKind::CounterSummary {
                    isr_count,
                    dpc_count,
                    ..
                } = last.kind
                {
                    out.insert(*m, (isr_count, dpc_count, last));
                }
            }
        }
        out
    }

    /// Requests submitted and completed, summed over queues (the last report of each).
    pub fn requests(&self) -> Option<(u64, u64, Vec<&'a Event>)> {
        let mut sub = 0;
        let mut done = 0;
        let mut proof = Vec::new();
        for t in self.trails {
            for e in t.requests.values() {
                if let EventKind::RequestsCompleted {
                    submitted,
                    completed,
                    ..
                } = e.kind
                {
                    sub += submitted;
                    done += completed;
                    proof.push(e);
                }
            }
        }
        (!proof.is_empty()).then_some((sub, done, proof))
    }

    pub fn logs(&self) -> impl Iterator<Item = &'a Event> + '_ {
        self.trails.iter().flat_map(|t| t.logs.iter())
    }

    /// Any evidence that the driver's own prints reached a capture.
    pub fn driver_prints(&self) -> bool {
        self.trails.iter().any(prints_in)
    }

    /// The interrupt resources are known only from WinDbg (`!devnode`, `!cmreslist`, `dt` of
    /// the start IRP's lists) and the driver printed nothing: what Windows assigned is known,
    /// what the driver read of it is not.
    pub fn resources_only_from_windbg(&self) -> bool {
        let mut any = false;
        for t in self.trails {
            if !t.resources.is_empty() {
                if !from_windbg(t) {
                    return false;
                }
                any = true;
            }
        }
        any && !self.driver_prints()
    }

    /// The trails read from a DbgView capture (the doctor's `SourceRead` says which), with how
    /// many lines the captures had.
    pub fn dbgview_captures(&self) -> (Vec<&'a Trail>, u64) {
        let mut lines = 0;
        let mut out = Vec::new();
        for t in self.trails {
            let mut here = false;
            for (format, n) in &t.sources {
                if format == DBGVIEW_CAPTURE {
                    lines += n;
                    here = true;
                }
            }
            if here {
                out.push(t);
            }
        }
        (out, lines)
    }

    // ---- storms ---------------------------------------------------------------------------

    /// Whether this device's INTx line stormed, and how that shows.
    pub fn storm(&self) -> Option<Storm> {
        for t in self.trails {
            if let Some(b) = &t.device.budget {
                return Some(Storm {
                    summary: "the platform's interrupt budget ran out: the line never went low"
                        .into(),
                    proof: vec![b.clone()],
                    handlers: None,
                });
            }
        }
        if let Some((isr, dpc, e)) = self.counters().get(&None).copied() {
            let done = self.requests().map_or(0, |r| r.1);
            if isr >= STORM_MIN_ISR
                && (isr >= STORM_ISR_PER_DPC * dpc.max(1) || isr >= STORM_ISR_PER_DPC * done.max(1))
            {
                let mut proof = vec![e.clone()];
                proof.extend(
                    self.requests()
                        .into_iter()
                        .flat_map(|r| r.2)
                        .take(2)
                        .cloned(),
                );
                return Some(Storm {
                    summary: format!(
                        "the INTx ISR ran {isr} times for {dpc} DPC(s){}: the line is never deasserted",
                        if done > 0 {
                            format!(" and {done} completed request(s)")
                        } else {
                            String::new()
                        }
                    ),
                    proof,
                    handlers: None,
                });
            }
        }
        // A line Linux gave up on whose handlers are all another driver's is not this device's.
        let nobody: Vec<&Event> = self
            .trails
            .iter()
            .flat_map(|t| t.nobody_cared.iter())
            .filter(|e| !is_foreign(e))
            .collect();
        if let Some(first) = nobody.first() {
            let handlers = match &first.kind {
                EventKind::IrqNobodyCared { handlers, .. } => Some(handlers.clone()),
                _ => None,
            };
            let irq = match first.kind {
                EventKind::IrqNobodyCared { irq, .. } => irq.to_string(),
                _ => "?".into(),
            };
            return Some(Storm {
                summary: format!(
                    "the kernel gave up on IRQ {irq} (\"nobody cared\"): a level line kept firing and no handler claimed it"
                ),
                proof: nobody.iter().take(2).map(|e| (*e).clone()).collect(),
                handlers,
            });
        }
        // A run's own kernel log arrives as plain lines (a parsed file's "nobody cared"
        // becomes `IrqNobodyCared`, handled above, and tied to its IRQ's owner).
        let gave_up: Vec<&Event> = self
            .logs()
            .filter(|e| matches!(e.origin, Origin::Run))
            .filter(|e| match &e.kind {
                EventKind::LogLine { text } => {
                    let l = text.to_ascii_lowercase();
                    l.contains("nobody cared") || l.contains("disabling irq #")
                }
                _ => false,
            })
            .collect();
        if !gave_up.is_empty() {
            return Some(Storm {
                summary: "the kernel gave up on a level line (\"nobody cared\")".into(),
                proof: gave_up.into_iter().take(2).cloned().collect(),
                handlers: None,
            });
        }
        for r in self.irq_rows() {
            if linux_row_mode(r) != Some(InterruptMode::Intx) {
                continue;
            }
            let rise = r.last.0.saturating_sub(r.first.0);
            let frozen = r.snapshots > 1 && rise == 0 && r.last.0 >= LINUX_SPURIOUS_CUTOFF;
            let at_cutoff = r.last.0 == LINUX_SPURIOUS_CUTOFF;
            if rise >= LINUX_SPURIOUS_CUTOFF || frozen || at_cutoff {
                let why = if rise >= LINUX_SPURIOUS_CUTOFF {
                    format!(
                        "IRQ {} ({}) rose by {rise} between /proc/interrupts snapshots",
                        r.irq, r.name
                    )
                } else {
                    format!(
                        "IRQ {} ({}) stands at {}, the count at which Linux disables a line nobody handles",
                        r.irq, r.name, r.last.0
                    )
                };
                let mut proof = vec![r.first.1.clone()];
                if r.snapshots > 1 {
                    proof.push(r.last.1.clone());
                }
                return Some(Storm {
                    summary: why,
                    proof,
                    handlers: None,
                });
            }
        }
        None
    }

    /// Linux's reports on a line that only other drivers' handlers serve: (handlers, event).
    pub fn foreign_storms(&self) -> Vec<(Vec<String>, &'a Event)> {
        self.trails
            .iter()
            .flat_map(|t| t.nobody_cared.iter())
            .filter(|e| is_foreign(e))
            .filter_map(|e| match &e.kind {
                EventKind::IrqNobodyCared { handlers, .. } => Some((handlers.clone(), e)),
                _ => None,
            })
            .collect()
    }

    /// The ISR status values read since each source's last reset (the reads before a reset
    /// describe a device that no longer exists), at most the last eight per source.
    pub fn isr_reads(&self) -> Vec<(u8, &'a Event)> {
        let mut out = Vec::new();
        for t in self.trails {
            let since = t.resets.last().map_or(0, |(p, _)| *p);
            let reads: Vec<(u8, &Event)> = t
                .isr
                .reads
                .iter()
                .filter(|(_, p, _)| *p > since || since == 0)
                .map(|(v, _, e)| (*v, e))
                .collect();
            out.extend(reads.iter().rev().take(8).rev().copied());
        }
        out
    }

    /// Interrupt Disable (Command bit 10) as a snapshot of this device shows it.
    pub fn interrupt_disable(&self) -> Option<(bool, &'a Event)> {
        self.commands()
            .into_iter()
            .filter(|(v, _)| *v != 0xFFFF)
            .map(|(v, e)| (v & (1 << 10) != 0, e))
            .next_back()
    }
}

/// A "nobody cared" report that lists handlers, none of them a virtio one.
fn is_foreign(e: &Event) -> bool {
    match &e.kind {
        EventKind::IrqNobodyCared { handlers, .. } => {
            !handlers.is_empty()
                && !handlers
                    .iter()
                    .any(|h| LINUX_VIRTIO_HANDLERS.iter().any(|v| h.contains(v)))
        }
        _ => false,
    }
}

/// Whether a Linux `/proc/interrupts` row is a line or a message: the controller column says
/// so (`IO-APIC`, `XT-PIC`, `-fasteoi`/`Level` are lines; `PCI-MSI`, `-edge` MSI domains are
/// messages); without it, the handler name (`virtio0-config` is a per-vector handler, a bare
/// `virtio0` the shared line handler).
pub fn linux_row_mode(r: &IrqRow) -> Option<InterruptMode> {
    if let Some(chip) = &r.chip {
        let c = chip.to_ascii_lowercase();
        if c.contains("msi") || c.contains("its-") {
            return Some(InterruptMode::Message);
        }
        if c.contains("io-apic")
            || c.contains("xt-pic")
            || c.contains("fasteoi")
            || c.contains("level")
        {
            return Some(InterruptMode::Intx);
        }
    }
    r.name.split(',').find_map(|part| {
        let rest = part.trim().strip_prefix("virtio")?;
        let rest = rest.trim_start_matches(|c: char| c.is_ascii_digit());
        if rest.is_empty() {
            Some(InterruptMode::Intx)
        } else if rest.starts_with('-') {
            Some(InterruptMode::Message)
        } else {
            None
        }
    })
}

pub fn selector_name(s: Selector) -> String {
    match s {
        Selector::MsixConfig => "msix_config".into(),
        Selector::Queue(q) => format!("queue {q} queue_msix_vector"),
    }
}
