//! Signals several rows share: is an INTx line storming, what did the ISR read and return,
//! which messages does the ISR see, and which `!pci`/`lspci` readings belong to one snapshot.

use super::facts::{Facts, linux_irq_mode};
use crate::text::contains_ci;
use std::collections::{BTreeMap, BTreeSet};
use virq_events::{Event, EventKind, InterruptMode, Origin};

/// An INTx ISR count rising by at least this much over a capture, with at most one DPC per
/// [`STORM_ISR_PER_DPC`] ISRs, is a line nobody acknowledges: a claimed interrupt queues a DPC,
/// an unacknowledged level line just re-enters the ISR.
pub const STORM_MIN_ISR: u64 = 10_000;
pub const STORM_ISR_PER_DPC: u64 = 50;
/// A Linux INTx row rising this much between two snapshots is a storm (the kernel's own
/// "nobody cared" check fires at 99,900 unhandled of 100,000).
pub const STORM_MIN_IRQ_DELTA: u64 = 100_000;

/// Where a storm was seen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StormSource {
    /// The kernel's "nobody cared" / "Disabling IRQ #N".
    KernelLog,
    /// A platform's interrupt budget ran out.
    Budget,
    /// `COUNTERS: INTx` summaries.
    Counters,
    /// Two `/proc/interrupts` snapshots of a line row.
    ProcInterrupts,
}

/// A level line that never went low.
#[derive(Clone, Debug)]
pub struct Storm<'a> {
    pub source: StormSource,
    pub summary: String,
    pub proof: Vec<&'a Event>,
    /// IRQ numbers named by the kernel log (Linux), for tying to `/proc/interrupts` rows.
    pub irqs: Vec<String>,
}

/// The INTx counter summaries: (isr, dpc, event), in order.
pub fn intx_counters<'a>(f: &Facts<'a>) -> Vec<(u64, u64, &'a Event)> {
    f.counters
        .iter()
        .filter_map(|e| match e.kind {
            EventKind::CounterSummary {
                message: None,
                isr_count,
                dpc_count,
            } => Some((isr_count, dpc_count, *e)),
            _ => None,
        })
        .collect()
}

/// ISR and DPC growth over the capture from the INTx counters (the last summary alone when
/// there is one).
pub fn intx_counter_delta<'a>(f: &Facts<'a>) -> Option<(u64, u64, &'a Event, &'a Event)> {
    let c = intx_counters(f);
    let (first, last) = (c.first()?, c.last()?);
    Some(if c.len() > 1 {
        (
            last.0.saturating_sub(first.0),
            last.1.saturating_sub(first.1),
            first.2,
            last.2,
        )
    } else {
        (last.0, last.1, last.2, last.2)
    })
}

/// Kernel log lines saying the kernel gave up on a line.
pub fn kernel_gave_up<'a>(f: &Facts<'a>) -> Vec<&'a Event> {
    f.logs
        .iter()
        .copied()
        .filter(|e| match &e.kind {
            EventKind::LogLine { text } => {
                contains_ci(text, "nobody cared") || contains_ci(text, "Disabling IRQ #")
            }
            _ => false,
        })
        .collect()
}

/// The IRQ number a "nobody cared" / "Disabling IRQ #N" line names.
pub fn irq_number(e: &Event) -> Option<String> {
    let EventKind::LogLine { text } = &e.kind else {
        return None;
    };
    let lower = text.to_ascii_lowercase();
    let rest = if let Some(i) = lower.find("disabling irq #") {
        &text[i + "disabling irq #".len()..]
    } else {
        &text[lower.find("irq ")? + 4..]
    };
    let n: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
    (!n.is_empty()).then_some(n)
}

/// Linux virtio line rows grouped by (irq, name), each with its snapshots.
pub fn line_rows<'a>(f: &Facts<'a>) -> BTreeMap<(String, String), Vec<(u64, &'a Event)>> {
    let mut rows: BTreeMap<(String, String), Vec<(u64, &Event)>> = BTreeMap::new();
    for e in &f.irqs {
        if let EventKind::IrqCount { irq, name, count } = &e.kind {
            if linux_irq_mode(name) == Some(InterruptMode::Intx) {
                rows.entry((irq.clone(), name.clone()))
                    .or_default()
                    .push((*count, *e));
            }
        }
    }
    rows
}

/// Whether the evidence shows an INTx line that never goes low.
pub fn intx_storm<'a>(f: &Facts<'a>) -> Option<Storm<'a>> {
    let kernel = kernel_gave_up(f);
    if !kernel.is_empty() {
        let irqs: Vec<String> = kernel.iter().filter_map(|e| irq_number(e)).collect();
        let rows: Vec<&Event> = f
            .irqs
            .iter()
            .copied()
            .filter(|e| matches!(&e.kind, EventKind::IrqCount { irq, .. } if irqs.contains(irq)))
            .collect();
        let which = irqs.first().map(|n| format!(" {n}")).unwrap_or_default();
        return Some(Storm {
            source: StormSource::KernelLog,
            summary: format!(
                "the kernel gave up on IRQ{which}: a level line kept firing and no handler \
                 claimed it"
            ),
            proof: kernel.into_iter().chain(rows).collect(),
            irqs,
        });
    }
    if !f.budget.is_empty() {
        return Some(Storm {
            source: StormSource::Budget,
            summary: "the platform's interrupt budget ran out (a storm)".to_string(),
            proof: f.budget.clone(),
            irqs: Vec::new(),
        });
    }
    if let Some((d_isr, d_dpc, first, last)) = intx_counter_delta(f) {
        if d_isr >= STORM_MIN_ISR && d_isr >= STORM_ISR_PER_DPC * d_dpc.max(1) {
            let mut proof: Vec<&Event> = f.intx_resources().into_iter().take(1).collect();
            proof.extend([first, last]);
            proof.extend(f.intx_pending.iter().copied().take(1));
            return Some(Storm {
                source: StormSource::Counters,
                summary: format!(
                    "INTx ISR ran {d_isr} times for {d_dpc} DPC(s) over the capture: the line \
                     is never deasserted"
                ),
                proof,
                irqs: Vec::new(),
            });
        }
    }
    let rows = line_rows(f);
    let storming: Vec<(&String, &Event, &Event)> = rows
        .iter()
        .filter(|(_, v)| {
            v.len() > 1 && v[v.len() - 1].0.saturating_sub(v[0].0) >= STORM_MIN_IRQ_DELTA
        })
        .map(|((irq, _), v)| (irq, v[0].1, v[v.len() - 1].1))
        .collect();
    if !storming.is_empty() {
        let irqs: Vec<String> = storming.iter().map(|s| s.0.clone()).collect();
        return Some(Storm {
            source: StormSource::ProcInterrupts,
            summary: format!(
                "a virtio INTx line rose by at least {STORM_MIN_IRQ_DELTA} between \
                 /proc/interrupts snapshots"
            ),
            proof: storming.iter().flat_map(|s| [s.1, s.2]).collect(),
            irqs,
        });
    }
    None
}

/// What the INTx ISR was seen doing: sampled invocations (`ISR:` lines) and status reads.
#[derive(Clone, Debug, Default)]
pub struct IntxIsr<'a> {
    /// Claimed (returned TRUE) without reading ISR status.
    pub claimed_unread: Vec<&'a Event>,
    /// Returned not-mine without reading ISR status.
    pub notmine_unread: Vec<&'a Event>,
    /// Read ISR status and got 0 (nothing pending).
    pub read_zero: Vec<&'a Event>,
    /// Read ISR status and got a cause (bits set, not 0xFF).
    pub read_cause: Vec<&'a Event>,
    /// Read 0xFF: the device is gone.
    pub read_all_ones: Vec<&'a Event>,
    /// Sampled invocations that claimed the interrupt.
    pub claimed: Vec<&'a Event>,
    /// Any sampled invocation at all.
    pub samples: usize,
    /// The last ISR status value seen (in evidence order).
    pub last_read: Option<(u8, &'a Event)>,
}

impl<'a> IntxIsr<'a> {
    pub fn new(f: &Facts<'a>) -> Self {
        let mut s = IntxIsr::default();
        for e in &f.isr_runs {
            let EventKind::IsrRan {
                message_id: None,
                claimed,
                isr_status,
            } = e.kind
            else {
                continue;
            };
            s.samples += 1;
            if claimed {
                s.claimed.push(e);
            }
            match isr_status {
                None if claimed => s.claimed_unread.push(e),
                None => s.notmine_unread.push(e),
                Some(v) => s.classify(v, e),
            }
        }
        for e in &f.isr_reads {
            if let EventKind::IsrRead { value } = e.kind {
                s.classify(value, e);
            }
        }
        s.last_read = f
            .isr_reads
            .iter()
            .chain(f.isr_runs.iter())
            .filter_map(|e| match e.kind {
                EventKind::IsrRead { value } => Some((value, *e)),
                EventKind::IsrRan {
                    message_id: None,
                    isr_status: Some(v),
                    ..
                } => Some((v, *e)),
                _ => None,
            })
            .max_by_key(|(_, e)| e.seq);
        s
    }

    fn classify(&mut self, v: u8, e: &'a Event) {
        match v {
            0 => self.read_zero.push(e),
            0xFF => self.read_all_ones.push(e),
            _ => self.read_cause.push(e),
        }
    }

    /// Some evidence shows the ISR reads the status register.
    pub fn reads_status(&self) -> bool {
        !self.read_zero.is_empty() || !self.read_cause.is_empty() || !self.read_all_ones.is_empty()
    }
}

/// Message IDs the ISR is seen running on: counters with isr > 0 (last summary per message)
/// and sampled `ISR:` lines. Each with one event that shows it.
pub fn messages_seen<'a>(f: &Facts<'a>) -> BTreeMap<u32, &'a Event> {
    let mut out = BTreeMap::new();
    let mut last: BTreeMap<u32, (u64, &Event)> = BTreeMap::new();
    for e in &f.counters {
        if let EventKind::CounterSummary {
            message: Some(m),
            isr_count,
            ..
        } = e.kind
        {
            last.insert(m, (isr_count, *e));
        }
    }
    for (m, (isr, e)) in last {
        if isr > 0 {
            out.insert(m, e);
        }
    }
    for e in &f.isr_runs {
        if let EventKind::IsrRan {
            message_id: Some(m),
            ..
        } = e.kind
        {
            out.entry(m).or_insert(*e);
        }
    }
    out
}

/// The last counter summary of each message: (isr, dpc, event).
pub fn message_counters<'a>(f: &Facts<'a>) -> BTreeMap<u32, (u64, u64, &'a Event)> {
    let mut out = BTreeMap::new();
    for e in &f.counters {
        if let EventKind::CounterSummary {
            message: Some(m),
            isr_count,
            dpc_count,
        } = e.kind
        {
            out.insert(m, (isr_count, dpc_count, *e));
        }
    }
    out
}

/// The number of messages mapped to interrupt objects: the grant, or else the connected
/// message-signalled objects.
pub fn mapped_messages(f: &Facts<'_>) -> Option<u32> {
    if let Some(g) = f.granted() {
        return Some(g);
    }
    let numbers: BTreeSet<u32> = f
        .connections()
        .iter()
        .filter(|c| c.0 && c.2 != 0)
        .map(|c| c.1)
        .collect();
    (!numbers.is_empty()).then_some(numbers.len() as u32)
}

/// (path, line) of a file event.
pub fn file_line(e: &Event) -> Option<(&str, u64)> {
    match &e.origin {
        Origin::File { path, line, .. } => Some((path.as_str(), *line)),
        Origin::Run => None,
    }
}

/// Readings this many lines apart in the same file, about the same device, belong to one
/// `!pci` dump or `lspci` block.
pub const SNAPSHOT_LINES: u64 = 400;

/// The reading in `candidates` that belongs to the same snapshot as `e` (same file, same
/// device, nearest line within [`SNAPSHOT_LINES`]). Run events pair with run events.
pub fn same_snapshot<'a>(e: &Event, candidates: &[&'a Event]) -> Option<&'a Event> {
    let here = file_line(e);
    candidates
        .iter()
        .copied()
        .filter(|c| c.device == e.device)
        .filter_map(|c| match (here, file_line(c)) {
            (Some((p, l)), Some((cp, cl))) if p == cp && l.abs_diff(cl) <= SNAPSHOT_LINES => {
                Some((l.abs_diff(cl), c))
            }
            (None, None) => Some((e.seq.abs_diff(c.seq), c)),
            _ => None,
        })
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// The MSI-X capability readings: (enabled, function masked, table size, event).
pub fn caps<'a>(f: &Facts<'a>) -> Vec<(bool, bool, u16, &'a Event)> {
    f.caps
        .iter()
        .filter_map(|e| match e.kind {
            EventKind::MsixCapabilitySeen {
                enabled,
                function_masked,
                table_size,
            } => Some((enabled, function_masked, table_size, *e)),
            _ => None,
        })
        .collect()
}

/// A PCI Command word of all ones: config space reads back 0xFFFF (the device is gone).
pub fn all_ones_commands<'a>(f: &Facts<'a>) -> Vec<&'a Event> {
    f.pci_commands
        .iter()
        .copied()
        .filter(|e| matches!(e.kind, EventKind::PciCommand { value: 0xFFFF }))
        .collect()
}
