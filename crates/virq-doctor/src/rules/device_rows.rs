//! Device / platform catalogue rows 14-22, from `!pci`, `lspci -vvv`, `/proc/interrupts` and
//! the driver's prints.

use super::driver_rows::pending_with_enabled_msix;
use super::facts::{Facts, selector_name};
use super::signals::{IntxIsr, caps, file_line, intx_storm, line_rows, same_snapshot};
use super::{Finding, Verdict, cannot, finding, proof};
use std::collections::BTreeMap;
use virq_events::{Event, EventKind, InterruptMode, NO_VECTOR, Origin, Selector};

const MISSING_CAP: &str = "the MSI-X capability: WinDbg `!pci` output or `lspci -vvv`";

/// Row 14: MSI-X enabled, yet the device raises INTx.
pub fn row14_intx_with_msix(events: &[Event]) -> Finding {
    let f = Facts::new(events);
    let title = "Device raises INTx while MSI-X is enabled";
    let fix = "Device: while MSI-X Enable is set, never assert INTx (and keep Status bit 3 clear).";
    let row = |verdict, symptom: String, p| finding(4, Some(14), title, verdict, symptom, p, fix);
    let both = pending_with_enabled_msix(&f);
    if !both.is_empty() {
        return row(
            Verdict::Broken,
            "PCI Status shows INTx pending (bit 3, IntStatus / INTx+) in the same dump where \
             MSI-X Enable = 1"
                .to_string(),
            proof(both.iter().flat_map(|(a, b)| [*a, *b])),
        );
    }
    // Linux: MSI-X enabled in lspci while a virtio line row storms on the device's IRQ.
    let enabled: Vec<&Event> = caps(&f).into_iter().filter(|c| c.0).map(|c| c.3).collect();
    if let (Some(storm), false) = (intx_storm(&f), enabled.is_empty()) {
        let routed: Vec<&Event> = f
            .intx_routes
            .iter()
            .copied()
            .filter(|e| {
                matches!(&e.kind, EventKind::IntxRouted { irq, .. }
                    if storm.irqs.contains(&irq.to_string()))
            })
            .collect();
        if !routed.is_empty() {
            return row(
                Verdict::Broken,
                format!(
                    "{} on the IRQ this function's INTx pin is routed to, while MSI-X is enabled",
                    storm.summary
                ),
                proof(storm.proof.into_iter().chain(routed).chain(enabled)),
            );
        }
    }
    let Some(&(en, _, _, cap)) = caps(&f).last() else {
        return row(
            cannot(MISSING_CAP),
            "no MSI-X capability dump".to_string(),
            Vec::new(),
        );
    };
    if !en {
        return row(
            Verdict::Holds,
            "MSI-X is disabled, so the line is the device's interrupt".to_string(),
            proof([cap]),
        );
    }
    let status: Vec<&Event> = f.intx_status.clone();
    match same_snapshot(cap, &status) {
        Some(st) => row(
            Verdict::Holds,
            "MSI-X Enable = 1 and PCI Status shows no INTx pending".to_string(),
            proof([cap, st]),
        ),
        None => row(
            cannot("the PCI Status word (`Sts[....]` in `!pci`, `Status: ... INTx-` in lspci)"),
            "MSI-X is enabled; the INTx pending bit was not in the same dump".to_string(),
            Vec::new(),
        ),
    }
}

/// A counter summary of one message: (line, isr count, event).
type Summary<'a> = (u64, u64, &'a Event);

/// In a device's own record: the Message Control (or entry) state that blocked delivery and
/// the message that left anyway.
fn record_message_through_mask(events: &[Event]) -> Option<[&Event; 2]> {
    let mut control: Option<&Event> = None;
    let mut entry_masked: BTreeMap<u16, bool> = BTreeMap::new();
    for e in events {
        match e.kind {
            EventKind::MsixControl { .. } => control = Some(e),
            EventKind::MsixEntry { entry, masked, .. } => {
                entry_masked.insert(entry, masked);
            }
            EventKind::MessageSent { entry, .. } => {
                let blocked_by_control = control.is_some_and(|c| {
                    matches!(
                        c.kind,
                        EventKind::MsixControl { enabled: false, .. }
                            | EventKind::MsixControl {
                                function_masked: true,
                                ..
                            }
                    )
                });
                if let Some(c) = control
                    && (blocked_by_control || entry_masked.get(&entry).copied() == Some(true))
                {
                    return Some([c, e]);
                }
            }
            _ => {}
        }
    }
    None
}

/// In a device's own record: the Command write that set bit 10 and a line raise after it.
fn record_line_while_disabled(events: &[Event]) -> Option<[&Event; 2]> {
    let mut disabled: Option<&Event> = None;
    for e in events {
        match e.kind {
            EventKind::PciCommand { value } => {
                disabled = (value & (1 << 10) != 0).then_some(e);
            }
            EventKind::LineRaised { .. } => {
                if let Some(d) = disabled {
                    return Some([d, e]);
                }
            }
            _ => {}
        }
    }
    None
}

/// Row 15: a message delivered while MSI-X is disabled or masked.
pub fn row15_message_while_masked(events: &[Event]) -> Finding {
    let f = Facts::new(events);
    let title = "Message sent while MSI-X is disabled or masked";
    let fix = "Device: honour MSI-X Enable, the function mask and each entry's mask; set the \
               Pending bit instead and deliver on unmask.";
    let row = |verdict, symptom: String, p| finding(4, Some(15), title, verdict, symptom, p, fix);
    // A device's own record (a run's events): a message left while Enable was clear or the
    // function or its entry was masked.
    if let Some(p) = record_message_through_mask(events) {
        return row(
            Verdict::Broken,
            "the device's record shows a message sent while MSI-X was disabled or masked"
                .to_string(),
            proof(p),
        );
    }
    // Within one file: a capability (or entry) reading that blocks delivery of message m,
    // bracketed by two counter summaries of m that show the ISR count moving.
    let mut summaries: BTreeMap<(String, u32), Vec<Summary>> = BTreeMap::new();
    for e in &f.counters {
        if let (
            EventKind::CounterSummary {
                message: Some(m),
                isr_count,
                ..
            },
            Some((path, line)),
        ) = (&e.kind, file_line(e))
        {
            summaries
                .entry((path.to_string(), *m))
                .or_default()
                .push((line, *isr_count, *e));
        }
    }
    let mut blocked: Vec<(Option<u32>, &Event)> = Vec::new();
    for (en, masked, _, e) in caps(&f) {
        if !en || masked {
            blocked.push((None, e));
        }
    }
    for e in &f.msix_entries {
        if let EventKind::MsixEntry {
            entry,
            masked: true,
            ..
        } = e.kind
        {
            blocked.push((Some(u32::from(entry)), *e));
        }
    }
    let mut p: Vec<&Event> = Vec::new();
    for (which, b) in &blocked {
        let Some((path, line)) = file_line(b) else {
            continue;
        };
        for ((sp, m), v) in &summaries {
            if sp != path || which.is_some_and(|w| w != *m) {
                continue;
            }
            let before = v.iter().rev().find(|s| s.0 < line);
            let after = v.iter().find(|s| s.0 > line);
            if let (Some(a), Some(z)) = (before, after) {
                if z.1 > a.1 {
                    p.extend([a.2, *b, z.2]);
                }
            }
        }
    }
    if !p.is_empty() {
        return row(
            Verdict::Broken,
            "the ISR count of a message rose across a dump that shows MSI-X disabled or the \
             message masked"
                .to_string(),
            proof(p),
        );
    }
    row(
        cannot(
            "two `COUNTERS:` summaries in one capture with a `!pci` dump between them that shows \
             MSI-X disabled or the entry masked",
        ),
        "delivery while masked needs counters on both sides of a masked dump".to_string(),
        Vec::new(),
    )
}

/// Row 16: the driver (bus driver) enabled MSI-X, but Enable stays 0.
pub fn row16_enable_ignored(events: &[Event]) -> Finding {
    let f = Facts::new(events);
    let title = "MSI-X Enable write ignored: Enable stays 0 after the start enabled it";
    let fix = "Device: decode every access width and offset into the MSI-X capability (a dword \
               write at the capability start carries Message Control in its upper half).";
    let row = |verdict, symptom: String, p| finding(4, Some(16), title, verdict, symptom, p, fix);
    let Some(&(en, _, _, cap)) = caps(&f).last() else {
        return row(
            cannot(MISSING_CAP),
            "no MSI-X capability dump".to_string(),
            Vec::new(),
        );
    };
    let connected: Vec<&Event> = f
        .connections()
        .iter()
        .filter(|c| c.0 && c.2 != 0)
        .map(|c| c.3)
        .collect();
    let linux_msix = f.linux_irqs(InterruptMode::Message);
    let started: Vec<&Event> = if !connected.is_empty() {
        f.message_resources()
            .into_iter()
            .take(1)
            .chain(connected.into_iter().take(2))
            .collect()
    } else {
        linux_msix.into_iter().take(2).collect()
    };
    match (en, started.is_empty(), f.mode()) {
        (true, _, _) => row(Verdict::Holds, "MSI-X Enable = 1".to_string(), proof([cap])),
        (false, false, _) => row(
            Verdict::Broken,
            "message interrupts were granted and connected (the start enabled MSI-X), yet the \
             capability reads Enable = 0: the device dropped the write"
                .to_string(),
            proof(started.into_iter().chain([cap])),
        ),
        (false, true, Some(InterruptMode::Intx)) => row(
            Verdict::Holds,
            "INTx: MSI-X is meant to be disabled".to_string(),
            proof([cap]),
        ),
        (false, true, _) => row(
            cannot("`WDFINT:` lines (message objects connected) or Linux per-vector handlers"),
            "MSI-X Enable = 0, but nothing shows the start tried to enable it".to_string(),
            proof([cap]),
        ),
    }
}

/// Row 17: a selector read right after reset is not 0xFFFF.
pub fn row17_selector_after_reset(events: &[Event]) -> Finding {
    let f = Facts::new(events);
    let title = "Vector selectors not 0xFFFF after reset";
    let fix = "Device: reset msix_config and every queue_msix_vector to 0xFFFF on power-on and on \
               every reset.";
    let row = |verdict, symptom: String, p| finding(6, Some(17), title, verdict, symptom, p, fix);
    let mut bad: Vec<&Event> = Vec::new();
    let mut good: Vec<&Event> = Vec::new();
    for a in f.accesses.iter().filter(|a| a.written.is_none()) {
        let Some((ri, reset)) = f.resets.iter().rev().find(|(i, _)| *i < a.idx) else {
            continue;
        };
        let written_since = f.accesses.iter().any(|w| {
            w.selector == a.selector && w.written.is_some() && w.idx > *ri && w.idx < a.idx
        });
        if written_since {
            continue;
        }
        if a.value == NO_VECTOR {
            good.push(a.event);
        } else {
            bad.extend([*reset, a.event]);
        }
    }
    if !bad.is_empty() {
        return row(
            Verdict::Broken,
            "a selector read after a reset, before any write, is not 0xFFFF: stale routing \
             survived the reset"
                .to_string(),
            proof(bad),
        );
    }
    if !good.is_empty() {
        return row(
            Verdict::Holds,
            "selectors read 0xFFFF after the reset".to_string(),
            proof(good),
        );
    }
    row(
        cannot(
            "a `VIRTIO: msix_config read=0x....` line (a read, no write) right after \
             `device_status write=0x00`",
        ),
        "no selector was read between a reset and the first write".to_string(),
        Vec::new(),
    )
}

/// Row 18: an index >= the table size accepted instead of read back as 0xFFFF.
pub fn row18_out_of_range_accepted(events: &[Event]) -> Finding {
    let f = Facts::new(events);
    let title = "Out-of-range vector accepted instead of reading back 0xFFFF";
    let fix = "Device: store 0xFFFF when the driver writes an index >= the MSI-X table size.";
    let row = |verdict, symptom: String, p| finding(6, Some(18), title, verdict, symptom, p, fix);
    let Some((size, cap)) = f.table_size() else {
        return row(
            cannot("the MSI-X table size (`!pci` TableSize or lspci `Count=`)"),
            "the table size is unknown".to_string(),
            Vec::new(),
        );
    };
    let beyond: Vec<_> = f
        .accesses
        .iter()
        .filter(|a| a.written.is_some_and(|w| w != NO_VECTOR && w >= size))
        .collect();
    let accepted: Vec<&Event> = beyond
        .iter()
        .filter(|a| a.value == a.written.unwrap_or(NO_VECTOR))
        .map(|a| a.event)
        .collect();
    if !accepted.is_empty() {
        let first = beyond
            .iter()
            .find(|a| a.value == a.written.unwrap_or(NO_VECTOR))
            .expect("non-empty");
        return row(
            Verdict::Broken,
            format!(
                "{} written 0x{:04x} reads back unchanged although the MSI-X table has {size} \
                 entries",
                selector_name(first.selector),
                first.value
            ),
            proof(accepted.into_iter().chain([cap])),
        );
    }
    if !beyond.is_empty() {
        return row(
            Verdict::Holds,
            format!("values >= the table size ({size}) read back 0xFFFF"),
            proof(beyond.iter().map(|a| a.event).take(2).chain([cap])),
        );
    }
    row(
        cannot("a vector write >= the MSI-X table size, to see whether the device refuses it"),
        format!("every value written is below the table size ({size})"),
        Vec::new(),
    )
}

/// Row 19: INTx left asserted (across a reset): the line is high while ISR status reads 0.
pub fn row19_line_stuck(events: &[Event]) -> Finding {
    let f = Facts::new(events);
    let title = "INTx stays asserted with nothing pending (e.g. across a reset)";
    let fix = "Device: lower the INTx line on reset and whenever ISR status becomes 0.";
    let row = |verdict, symptom: String, p| finding(7, Some(19), title, verdict, symptom, p, fix);
    if f.mode() == Some(InterruptMode::Message) && f.intx_status.is_empty() {
        return row(
            Verdict::Holds,
            "message interrupts: no line in use".to_string(),
            Vec::new(),
        );
    }
    let isr = IntxIsr::new(&f);
    let storm = intx_storm(&f);
    let Some(storm) = storm else {
        if !isr.read_zero.is_empty() && !f.intx_status.is_empty() {
            let low = f
                .intx_status
                .iter()
                .copied()
                .all(|e| matches!(e.kind, EventKind::IntxStatus { pending: false }));
            if low {
                return row(
                    Verdict::Holds,
                    "ISR status reads 0 and the line is low".to_string(),
                    proof(f.intx_status.iter().copied().take(1)),
                );
            }
        }
        if super::signals::intx_counter_delta(&f).is_some() {
            return row(
                Verdict::Holds,
                "no storm on the line".to_string(),
                Vec::new(),
            );
        }
        return row(
            cannot("INTx counters, /proc/interrupts snapshots or the kernel log"),
            "nothing shows the state of the line".to_string(),
            Vec::new(),
        );
    };
    let zero_unclaimed: Vec<&Event> = isr
        .read_zero
        .iter()
        .copied()
        .filter(|e| !matches!(e.kind, EventKind::IsrRan { claimed: true, .. }))
        .collect();
    if matches!(isr.last_read, Some((0, _))) && !zero_unclaimed.is_empty() {
        let ours_high: Vec<&Event> = f.intx_pending.iter().copied().take(1).collect();
        let reset = f.resets.last().map(|r| r.1);
        let after_reset = if reset.is_some() {
            " (after a reset)"
        } else {
            ""
        };
        return row(
            Verdict::Broken,
            format!(
                "{}; the ISR status reads return 0: the device holds the line with nothing \
                 pending{after_reset}",
                storm.summary
            ),
            proof(
                storm
                    .proof
                    .into_iter()
                    .chain(zero_unclaimed.into_iter().take(2))
                    .chain(ours_high)
                    .chain(reset),
            ),
        );
    }
    if !isr.read_cause.is_empty()
        || !isr.claimed_unread.is_empty()
        || !isr.notmine_unread.is_empty()
    {
        return row(
            Verdict::Holds,
            "the ISR status read is not 0 during the storm (or is never read): not a line \
             stuck with nothing pending"
                .to_string(),
            proof(
                isr.read_cause
                    .into_iter()
                    .chain(isr.claimed_unread)
                    .chain(isr.notmine_unread)
                    .take(2),
            ),
        );
    }
    row(
        cannot(
            "the ISR status values read during the storm (`ISR:` samples or `VIRTIO: isr_status read=` lines)",
        ),
        format!("{}, but not what ISR status read", storm.summary),
        Vec::new(),
    )
}

/// Row 20: INTx raised while Command.InterruptDisable (bit 10) is set.
pub fn row20_interrupt_disable_ignored(events: &[Event]) -> Finding {
    let f = Facts::new(events);
    let title = "INTx raised although PCI Command.InterruptDisable is set";
    let fix = "Device: gate the INTx pin with Command bit 10, and report the pending state in \
               Status bit 3 regardless.";
    let row = |verdict, symptom: String, p| finding(4, Some(20), title, verdict, symptom, p, fix);
    if let Some(p) = record_line_while_disabled(events) {
        return row(
            Verdict::Broken,
            "the device's record shows INTx raised while Command bit 10 was set".to_string(),
            proof(p),
        );
    }
    let disabled: Vec<&Event> = f
        .pci_commands
        .iter()
        .copied()
        .filter(|e| matches!(e.kind, EventKind::PciCommand { value } if value != 0xFFFF && value & 0x0400 != 0))
        .collect();
    if f.pci_commands.is_empty() {
        return row(
            cannot("the PCI Command word (`Cmd[....]` in `!pci`, `Control:` in lspci)"),
            "no Command register reading".to_string(),
            Vec::new(),
        );
    }
    if disabled.is_empty() {
        // Every reading has the bit clear: the line was allowed then, which says nothing about
        // what the device does while it is set.
        return row(
            cannot(
                "a Command word with Interrupt Disable (bit 10) set, and line activity after it",
            ),
            "Interrupt Disable (Command bit 10) is clear in every reading".to_string(),
            proof(f.pci_commands.iter().copied().take(1)),
        );
    }
    // Interrupts counted on the line after the disable bit was seen set (same file, later).
    let storm = intx_storm(&f);
    if let Some(storm) = storm {
        let routed_storm = f.intx_routes.iter().any(|e| {
            matches!(&e.kind, EventKind::IntxRouted { irq, .. } if storm.irqs.contains(&irq.to_string()))
        });
        let later = storm.proof.iter().any(|s| {
            disabled.iter().any(|d| match (file_line(d), file_line(s)) {
                (Some((dp, dl)), Some((sp, sl))) => dp == sp && sl > dl,
                _ => false,
            })
        });
        if routed_storm || later {
            return row(
                Verdict::Broken,
                format!(
                    "{} while Command bit 10 (Interrupt Disable) is set",
                    storm.summary
                ),
                proof(disabled.into_iter().take(1).chain(storm.proof)),
            );
        }
    }
    let rows = line_rows(&f);
    if rows
        .values()
        .any(|v| v.len() > 1 && v[v.len() - 1].0 == v[0].0)
    {
        return row(
            Verdict::Holds,
            "Interrupt Disable is set and the line's count does not move".to_string(),
            proof(disabled.into_iter().take(1)),
        );
    }
    row(
        cannot("line interrupt counts taken after the Command word shows Interrupt Disable set"),
        "Interrupt Disable is set; nothing shows whether the line still fires".to_string(),
        proof(disabled.into_iter().take(1)),
    )
}

/// Row 21: the MSI-X table is smaller than 1 + queues.
pub fn row21_small_table(events: &[Event]) -> Finding {
    let f = Facts::new(events);
    let title = "MSI-X table smaller than 1 + queues";
    let fix = "Device: size the MSI-X table for the config vector plus one vector per queue.";
    let row = |verdict, symptom: String, p| finding(4, Some(21), title, verdict, symptom, p, fix);
    let Some((size, cap)) = f.table_size() else {
        return row(
            cannot("the MSI-X table size (`!pci` TableSize or lspci `Count=`)"),
            "the table size is unknown".to_string(),
            Vec::new(),
        );
    };
    let mut queues: std::collections::BTreeSet<u16> = f.queues();
    for (_, e) in &f.queue_enables {
        if let EventKind::QueueEnabled { queue, .. } = e.kind {
            queues.insert(queue);
        }
    }
    if queues.is_empty() {
        return row(
            cannot("the number of queues (`VIRTIO: queue=N ...` lines)"),
            format!("MSI-X table of {size} entries; the queue count is unknown"),
            Vec::new(),
        );
    }
    let needed = 1 + queues.len() as u32;
    let queue_ev: Vec<&Event> = f
        .accesses
        .iter()
        .filter(|a| matches!(a.selector, Selector::Queue(_)))
        .map(|a| a.event)
        .take(2)
        .collect();
    if u32::from(size) < needed {
        return row(
            Verdict::Broken,
            format!(
                "the MSI-X table has {size} entries for config + {} queue(s) ({needed} needed)",
                queues.len()
            ),
            proof(std::iter::once(cap).chain(queue_ev)),
        );
    }
    row(
        Verdict::Holds,
        format!(
            "{size} table entries for config + {} queue(s)",
            queues.len()
        ),
        proof([cap]),
    )
}

/// Row 22: ISR status not cleared by the read.
pub fn row22_isr_not_cleared(events: &[Event]) -> Finding {
    let f = Facts::new(events);
    let title = "ISR status not cleared by the read";
    let fix = "Device: clear ISR status on read (and lower INTx); ignore writes to it.";
    let row = |verdict, symptom: String, p| finding(7, Some(22), title, verdict, symptom, p, fix);
    let isr = IntxIsr::new(&f);
    // Two explicit ISR status reads (format line 7) on consecutive lines of one file returning
    // the same cause. Sampled `ISR:` lines do not count: consecutive samples may come from two
    // separate interrupts, each with its own cause; for those only a storm tells (below).
    let mut reads: Vec<(&str, u64, u8, &Event)> = f
        .isr_reads
        .iter()
        .filter_map(|e| {
            let v = match e.kind {
                EventKind::IsrRead { value } => value,
                EventKind::IsrRan {
                    isr_status: Some(v),
                    ..
                } => v,
                _ => return None,
            };
            if let Origin::File { text, .. } = &e.origin {
                if text.contains("LastIsrStatus") {
                    return None;
                }
            }
            let (p, l) = file_line(e)?;
            Some((p, l, v, *e))
        })
        .collect();
    reads.sort_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));
    let twice: Vec<&Event> = reads
        .windows(2)
        .filter(|w| {
            w[0].0 == w[1].0
                && w[1].1 == w[0].1 + 1
                && w[0].2 == w[1].2
                && !matches!(w[0].2, 0 | 0xFF)
        })
        .flat_map(|w| [w[0].3, w[1].3])
        .collect();
    if !twice.is_empty() {
        return row(
            Verdict::Broken,
            "two back-to-back ISR status reads both return the same cause: the read did not \
             clear it"
                .to_string(),
            proof(twice),
        );
    }
    let storm = intx_storm(&f);
    if let (Some(storm), Some((last, _))) = (storm, isr.last_read) {
        if !matches!(last, 0 | 0xFF) {
            return row(
                Verdict::Broken,
                format!(
                    "{}; the last ISR status read still returns a cause and the line stays high: the read \
                     does not clear ISR status",
                    storm.summary
                ),
                proof(
                    storm
                        .proof
                        .into_iter()
                        .chain(isr.read_cause.into_iter().take(2)),
                ),
            );
        }
    }
    if isr.reads_status() {
        return row(
            Verdict::Holds,
            "ISR status reads go back to 0 (or no storm follows them)".to_string(),
            proof(isr.read_zero.into_iter().chain(isr.read_cause).take(2)),
        );
    }
    if f.mode() == Some(InterruptMode::Message) && f.intx_status.is_empty() {
        return row(
            Verdict::Holds,
            "message interrupts: ISR status is not read on this path".to_string(),
            Vec::new(),
        );
    }
    row(
        cannot(
            "ISR status values (`VIRTIO: isr_status read=`, `ISR:` samples, or a non-zero `LastIsrStatus`)",
        ),
        "no ISR status value was logged".to_string(),
        Vec::new(),
    )
}
