//! The checklist's seven steps (section 6) as rules.

use super::facts::{Facts, selector_name};
use super::{Finding, Verdict, cannot, finding, proof};
use crate::rules::catalogue::{apic_vectors, beyond_grant_writes};
use std::collections::BTreeMap;
use virq_events::{Event, EventKind, InterruptMode, NO_VECTOR, Selector};

const MISSING_RESOURCES: &str = "the translated interrupt resources: the driver's `INT:` lines \
     (checklist 1.2) or a WinDbg `!devnode`/`!cmreslist` resource list";

/// Step 1: which interrupt mode did the OS assign?
pub fn step1_mode(events: &[Event]) -> Finding {
    let f = Facts::new(events);
    let title = "Interrupt mode assigned (MSI-X or INTx)";
    let fix = "If message interrupts were expected but INTx was assigned, check the INF's \
               MessageSignaledInterruptProperties keys (catalogue row 13).";
    match f.assigned_mode() {
        Some((InterruptMode::Message, ev)) => {
            let granted = f
                .granted()
                .map(|g| format!(", {g} message(s) granted"))
                .unwrap_or_default();
            finding(
                1,
                None,
                title,
                Verdict::Holds,
                format!("message-signalled interrupts (MSI/MSI-X){granted}"),
                proof(ev.into_iter().take(4)),
                fix,
            )
        }
        Some((InterruptMode::Intx, ev)) => {
            let why = match ev.first().map(|e| &e.kind) {
                Some(EventKind::ResourceAssigned { .. }) => {
                    " (no message flag on any interrupt resource)"
                }
                Some(EventKind::IrqCount { .. }) => " (a shared line handler in /proc/interrupts)",
                _ => "",
            };
            finding(
                1,
                None,
                title,
                Verdict::Holds,
                format!("line-based INTx{why}"),
                proof(ev.into_iter().take(4)),
                fix,
            )
        }
        None => finding(
            1,
            None,
            title,
            cannot(
                "interrupt resources (`INT:` lines or `!devnode`), `WDFINT:` lines, or Linux \
                 /proc/interrupts",
            ),
            "no evidence of the assigned interrupt mode",
            Vec::new(),
            fix,
        ),
    }
}

/// Step 2: `CM_RESOURCE_INTERRUPT_MESSAGE` present, and `MessageCount` against 1 + queues.
pub fn step2_resources(events: &[Event]) -> Finding {
    let f = Facts::new(events);
    let title = "Translated interrupt resources: message flag and MessageCount";
    if f.resources.is_empty() {
        return finding(
            2,
            None,
            title,
            cannot(MISSING_RESOURCES),
            "no interrupt resource was logged",
            Vec::new(),
            "Dump the translated resources in EvtDevicePrepareHardware (checklist 1.2).",
        );
    }
    let msg = f.message_resources();
    if msg.is_empty() {
        let wanted = f.message_wanted();
        if wanted.is_empty() {
            return finding(
                2,
                None,
                title,
                Verdict::Holds,
                "INTx: no resource carries CM_RESOURCE_INTERRUPT_MESSAGE, and nothing shows \
                 that message interrupts were wanted",
                proof(f.intx_resources()),
                "",
            );
        }
        return finding(
            2,
            Some(13),
            title,
            Verdict::Broken,
            "message interrupts were wanted (vectors programmed or an MSI-X capability), but \
             no interrupt resource carries CM_RESOURCE_INTERRUPT_MESSAGE: Windows granted a \
             line interrupt",
            proof(f.intx_resources().into_iter().chain(wanted)),
            "Put `Interrupt Management\\MessageSignaledInterruptProperties` \
             (`MSISupported=1`, `MessageNumberLimit`) in the INF's `.HW` AddReg section.",
        );
    }
    let granted = f.granted().unwrap_or(0);
    let queues = f.queues();
    if queues.is_empty() {
        return finding(
            2,
            None,
            title,
            Verdict::Holds,
            format!(
                "message interrupts granted: {granted} message(s); the number of queues is \
                 unknown, so the count is not compared"
            ),
            proof(msg),
            "",
        );
    }
    let needed = 1 + queues.len() as u32;
    if granted >= needed {
        return finding(
            2,
            None,
            title,
            Verdict::Holds,
            format!(
                "{granted} message(s) granted for config + {} queue(s)",
                queues.len()
            ),
            proof(msg),
            "",
        );
    }
    let failing = beyond_grant_writes(&f, granted);
    if failing.is_empty() {
        finding(
            2,
            None,
            title,
            Verdict::Holds,
            format!(
                "only {granted} of {needed} messages granted, and the driver shares them (no \
                 write beyond the grant)"
            ),
            proof(msg),
            "",
        )
    } else {
        finding(
            2,
            Some(4),
            title,
            Verdict::Broken,
            format!(
                "only {granted} of {needed} messages granted, but the driver programs \
                 per-queue vectors beyond the grant"
            ),
            proof(msg.into_iter().chain(failing)),
            "Fall back when fewer messages are granted: config and every queue on message 0 \
             (or per-queue -> shared -> INTx).",
        )
    }
}

/// Step 3: which message numbers were connected (one interrupt object per message).
pub fn step3_connected(events: &[Event]) -> Finding {
    let f = Facts::new(events);
    let title = "Interrupt objects connected (WdfInterruptGetInfo MessageNumber)";
    let fix = "Create one WDFINTERRUPT per granted message and program virtio with each \
               object's MessageNumber.";
    let conns = f.connections();
    if conns.is_empty() {
        let linux = f.linux_irqs(InterruptMode::Message);
        if !linux.is_empty() {
            let names: Vec<String> = linux
                .iter()
                .filter_map(|e| match &e.kind {
                    EventKind::IrqCount { name, .. } => Some(name.clone()),
                    _ => None,
                })
                .collect::<std::collections::BTreeSet<_>>()
                .into_iter()
                .collect();
            return finding(
                3,
                None,
                title,
                Verdict::Holds,
                format!("Linux connected per-vector handlers: {}", names.join(", ")),
                proof(linux),
                fix,
            );
        }
        return finding(
            3,
            None,
            title,
            cannot("the `WDFINT:` line printed after each WdfInterruptCreate (checklist 2.1)"),
            "no connected interrupt object was logged",
            Vec::new(),
            fix,
        );
    }
    let mode = f.assigned_mode().map(|(m, _)| m);
    if mode == Some(InterruptMode::Intx) && !f.resources.is_empty() {
        let wrong: Vec<&Event> = conns.iter().filter(|c| c.0).map(|c| c.3).collect();
        if wrong.is_empty() {
            return finding(
                3,
                None,
                title,
                Verdict::Holds,
                "INTx: the interrupt object is line-based (MessageSignaled=0)",
                proof(conns.iter().map(|c| c.3)),
                fix,
            );
        }
        return finding(
            3,
            None,
            title,
            Verdict::Broken,
            "an object reports MessageSignaled=1 although the resources are INTx",
            proof(f.intx_resources().into_iter().chain(wrong)),
            fix,
        );
    }
    let granted = f.granted();
    let mut problems = Vec::new();
    let mut bad: Vec<&Event> = Vec::new();
    for &(signaled, number, vector, e) in &conns {
        if !signaled {
            problems.push(format!("MessageNumber {number} is not message-signalled"));
            bad.push(e);
        } else if vector == 0 {
            problems.push(format!(
                "MessageNumber {number} has Vector=0 (created beyond the grant)"
            ));
            bad.push(e);
        } else if granted.is_some_and(|g| number >= g) {
            problems.push(format!(
                "MessageNumber {number} is beyond the {} granted",
                granted.unwrap_or(0)
            ));
            bad.push(e);
        }
    }
    if !bad.is_empty() {
        return finding(
            3,
            bad.iter()
                .any(|e| matches!(e.kind, EventKind::InterruptConnected { vector: 0, .. }))
                .then_some(7),
            title,
            Verdict::Broken,
            problems.join("; "),
            proof(bad.into_iter().chain(f.message_resources())),
            fix,
        );
    }
    let numbers: std::collections::BTreeSet<u32> = conns.iter().map(|c| c.1).collect();
    let list: Vec<String> = numbers.iter().map(|n| n.to_string()).collect();
    finding(
        3,
        None,
        title,
        Verdict::Holds,
        format!(
            "message-signalled objects connected on MessageNumber {}",
            list.join(", ")
        ),
        proof(conns.iter().map(|c| c.3)),
        fix,
    )
}

/// Step 4: MSI-X capability present and enabled when message interrupts are expected.
pub fn step4_msix_enable(events: &[Event]) -> Finding {
    let f = Facts::new(events);
    let title = "MSI-X capability enabled at the PCI layer (!pci / lspci)";
    let Some((enabled, masked, size, cap)) = f.last_cap() else {
        return finding(
            4,
            None,
            title,
            cannot("WinDbg `!pci` output of the device (MSI-X capability) or `lspci -vvv`"),
            "no MSI-X capability dump",
            Vec::new(),
            "",
        );
    };
    let state = format!(
        "MSI-X Enable={} FunctionMask={} TableSize={}",
        u8::from(enabled),
        u8::from(masked),
        size
    );
    let mode = f.assigned_mode();
    let mode_ev: Vec<&Event> = mode
        .as_ref()
        .map(|(_, ev)| ev.iter().copied().take(2).collect())
        .unwrap_or_default();
    let all = |extra: Vec<&Event>| proof(std::iter::once(cap).chain(extra));
    match (mode.as_ref().map(|m| m.0), enabled, masked) {
        (Some(InterruptMode::Message), true, false) => finding(
            4,
            None,
            title,
            Verdict::Holds,
            format!("message interrupts assigned and {state}"),
            all(mode_ev),
            "",
        ),
        (Some(InterruptMode::Message), false, _) => finding(
            4,
            None,
            title,
            Verdict::Broken,
            format!("message interrupts assigned but {state}: no message can be sent"),
            all(mode_ev),
            "The bus driver enables MSI-X when the device starts with message resources; a \
             disabled capability means the start failed or interrupts were never connected. \
             Connect interrupts in the start path and re-check !pci after start.",
        ),
        (Some(InterruptMode::Message), true, true) => finding(
            4,
            None,
            title,
            Verdict::Broken,
            format!("{state}: the function mask holds every message pending"),
            all(mode_ev),
            "Clear the MSI-X function mask once the table is programmed.",
        ),
        (Some(InterruptMode::Intx), false, _) => finding(
            4,
            None,
            title,
            Verdict::Holds,
            format!("INTx assigned and {state}, as it should be"),
            all(mode_ev),
            "",
        ),
        (Some(InterruptMode::Intx), true, _) => finding(
            4,
            None,
            title,
            Verdict::Broken,
            format!("INTx assigned but {state}: with MSI-X enabled the device must not raise INTx"),
            all(mode_ev),
            "Keep MSI-X disabled when the OS granted a line interrupt (or fix the grant).",
        ),
        (None, true, _) => finding(
            4,
            None,
            title,
            Verdict::Holds,
            format!("{state} (the assigned mode itself was not logged)"),
            all(Vec::new()),
            "",
        ),
        (None, false, _) => finding(
            4,
            None,
            title,
            cannot(MISSING_RESOURCES),
            format!("{state}, but whether message interrupts were assigned is unknown"),
            all(Vec::new()),
            "",
        ),
    }
}

/// Step 5: msix_config and every queue_msix_vector programmed with a MessageNumber.
pub fn step5_programmed(events: &[Event]) -> Finding {
    let f = Facts::new(events);
    let title = "virtio vector selectors programmed with MessageNumbers";
    let fix = "Write common_cfg.msix_config and each queue_msix_vector with the MSI-X table \
               entry index (WdfInterruptGetInfo MessageNumber), after the last reset.";
    let writes: Vec<_> = f.accesses.iter().filter(|a| a.written.is_some()).collect();
    let mode = f.mode();
    if writes.is_empty() {
        if mode == Some(InterruptMode::Intx) {
            return finding(
                5,
                None,
                title,
                Verdict::Holds,
                "INTx: no vector selector needs programming",
                Vec::new(),
                fix,
            );
        }
        return finding(
            5,
            None,
            title,
            cannot("the `VIRTIO:` msix_config / queue_msix_vector write lines (checklist 5.3)"),
            "no vector write was logged",
            Vec::new(),
            fix,
        );
    }
    let message = mode == Some(InterruptMode::Message) || writes.iter().any(|a| a.intended());
    if !message {
        return finding(
            5,
            None,
            title,
            Verdict::Holds,
            "INTx: selectors left at 0xFFFF (no vector)",
            proof(writes.iter().map(|a| a.event)),
            fix,
        );
    }
    let mut last: BTreeMap<Selector, &super::facts::SelectorAccess> = BTreeMap::new();
    for w in &writes {
        last.insert(w.selector, w);
    }
    let numbers: std::collections::BTreeSet<u32> = f
        .connections()
        .iter()
        .filter(|c| c.0)
        .map(|c| c.1)
        .collect();
    let apic = apic_vectors(&f);
    let mut problems = Vec::new();
    let mut bad = Vec::new();
    for (sel, w) in &last {
        let written = w.written.unwrap_or(NO_VECTOR);
        if written == NO_VECTOR {
            problems.push(format!(
                "{} written 0xFFFF (no vector)",
                selector_name(*sel)
            ));
            bad.push(w.event);
        } else if apic.contains_key(&u32::from(written))
            || (!numbers.is_empty() && !numbers.contains(&u32::from(written)))
        {
            problems.push(format!(
                "{} written 0x{written:04x}, which is not a connected MessageNumber",
                selector_name(*sel)
            ));
            bad.push(w.event);
        }
    }
    let config_note = if last.contains_key(&Selector::MsixConfig) {
        ""
    } else {
        " (no msix_config write was logged)"
    };
    if bad.is_empty() {
        let list: Vec<String> = last
            .iter()
            .map(|(s, w)| format!("{}=0x{:04x}", selector_name(*s), w.written.unwrap_or(0)))
            .collect();
        return finding(
            5,
            None,
            title,
            Verdict::Holds,
            format!("programmed {}{config_note}", list.join(", ")),
            proof(last.values().map(|w| w.event)),
            fix,
        );
    }
    finding(
        5,
        None,
        title,
        Verdict::Broken,
        format!("{}{config_note}", problems.join("; ")),
        proof(bad),
        fix,
    )
}

/// Step 6: read back every selector; 0xFFFF where a vector was intended is a hard error.
pub fn step6_read_back(events: &[Event]) -> Finding {
    let f = Facts::new(events);
    let title = "Read-back of every virtio vector selector";
    let fix = "Program the selectors after the last reset with in-range MessageNumbers and \
               assert the read-back; 0xFFFF means the device refused (index >= table size, \
               MSI-X not enabled) or a reset cleared it.";
    let states = f.selector_states();
    if states.is_empty() && f.mode() == Some(InterruptMode::Intx) {
        return finding(
            6,
            None,
            title,
            Verdict::Holds,
            "INTx: no vector selector is in use",
            Vec::new(),
            fix,
        );
    }
    if states.is_empty() {
        return finding(
            6,
            None,
            title,
            cannot("the `VIRTIO:` write/read-back lines (checklist 5.3)"),
            "no vector read-back was logged",
            Vec::new(),
            fix,
        );
    }
    let message =
        f.mode() == Some(InterruptMode::Message) || f.accesses.iter().any(|a| a.intended());
    let mut problems = Vec::new();
    let mut bad: Vec<&Event> = Vec::new();
    for (sel, st) in &states {
        let name = selector_name(*sel);
        let intended = st.last.intended() || (st.last.written.is_none() && message);
        if let (Some(reset), Some(w)) = (st.reset_after, st.last_intended) {
            problems.push(format!(
                "{name} was written 0x{:04x} but a reset followed, so it is 0xFFFF again",
                w.written.unwrap_or(0)
            ));
            bad.extend([w.event, reset]);
        } else if let Some(w) = st
            .last
            .written
            .filter(|&w| w != NO_VECTOR && w != st.last.value)
        {
            problems.push(format!(
                "{name} written 0x{w:04x} but read back 0x{:04x}",
                st.last.value
            ));
            bad.push(st.last.event);
        } else if intended && st.last.value == NO_VECTOR {
            problems.push(format!("{name} reads 0xFFFF"));
            bad.push(st.last.event);
        } else if message && st.current() == NO_VECTOR {
            problems.push(format!("{name} is 0xFFFF in message mode"));
            bad.push(st.last.event);
        }
    }
    if let (true, Some(reset)) = (message, f.config_never_written_since_reset()) {
        problems.push("msix_config was never written after the reset, so it is 0xFFFF".into());
        bad.push(reset);
    }
    if bad.is_empty() {
        let list: Vec<String> = states
            .iter()
            .map(|(s, st)| format!("{}=0x{:04x}", selector_name(*s), st.current()))
            .collect();
        let verdict_note = if message {
            ""
        } else {
            " (INTx: 0xFFFF expected)"
        };
        return finding(
            6,
            None,
            title,
            Verdict::Holds,
            format!("read back {}{verdict_note}", list.join(", ")),
            proof(states.values().map(|s| s.last.event)),
            fix,
        );
    }
    finding(
        6,
        None,
        title,
        Verdict::Broken,
        problems.join("; "),
        proof(bad),
        fix,
    )
}

/// Step 7: ISR and DPC counters move.
pub fn step7_counters(events: &[Event]) -> Finding {
    let f = Facts::new(events);
    let title = "ISR/DPC counters increment";
    let fix = "Find the first broken link above; if every step holds, check that the device \
               really completes requests (queue notify -> used buffers).";
    if let Some(storm) = super::signals::intx_storm(&f) {
        return finding(
            7,
            None,
            title,
            Verdict::Broken,
            format!("{}: interrupts arrive, but as a storm", storm.summary),
            proof(storm.proof),
            "Acknowledge the line: read ISR status in the INTx ISR (see the catalogue rows \
             below for which side fails to).",
        );
    }
    if !f.counters.is_empty() {
        let mut groups: BTreeMap<Option<u32>, Vec<(u64, u64, &Event)>> = BTreeMap::new();
        for e in &f.counters {
            if let EventKind::CounterSummary {
                message,
                isr_count,
                dpc_count,
            } = e.kind
            {
                groups
                    .entry(message)
                    .or_default()
                    .push((isr_count, dpc_count, *e));
            }
        }
        let lasts: Vec<(Option<u32>, u64, u64, &Event)> = groups
            .iter()
            .filter_map(|(m, v)| v.last().map(|l| (*m, l.0, l.1, l.2)))
            .collect();
        let label = |m: Option<u32>| match m {
            Some(n) => format!("message {n}"),
            None => "INTx".to_string(),
        };
        let isr_total: u64 = lasts.iter().map(|l| l.1).sum();
        let dpc_total: u64 = lasts.iter().map(|l| l.2).sum();
        if isr_total == 0 {
            return finding(
                7,
                None,
                title,
                Verdict::Broken,
                "no ISR ever ran: every ISR count is 0",
                proof(lasts.iter().map(|l| l.3)),
                fix,
            );
        }
        if dpc_total == 0 {
            return finding(
                7,
                None,
                title,
                Verdict::Broken,
                format!("ISRs ran ({isr_total}) but no DPC was ever queued"),
                proof(lasts.iter().map(|l| l.3)),
                "Queue the DPC from the ISR when it claims the interrupt.",
            );
        }
        let silent: Vec<String> = lasts
            .iter()
            .filter(|l| l.1 == 0)
            .map(|l| label(l.0))
            .collect();
        let moving: Vec<String> = lasts
            .iter()
            .filter(|l| l.1 > 0)
            .map(|l| format!("{} isr={} dpc={}", label(l.0), l.1, l.2))
            .collect();
        let note = if silent.is_empty() {
            String::new()
        } else {
            format!(" (never fired: {})", silent.join(", "))
        };
        return finding(
            7,
            None,
            title,
            Verdict::Holds,
            format!("{}{note}", moving.join("; ")),
            proof(lasts.iter().map(|l| l.3)),
            fix,
        );
    }
    if !f.irqs.is_empty() {
        let mut rows: BTreeMap<(String, String), Vec<(u64, &Event)>> = BTreeMap::new();
        for e in &f.irqs {
            if let EventKind::IrqCount { irq, name, count } = &e.kind {
                rows.entry((irq.clone(), name.clone()))
                    .or_default()
                    .push((*count, *e));
            }
        }
        let queue_rows: Vec<_> = rows
            .iter()
            .filter(|((_, name), _)| !name.ends_with("-config"))
            .collect();
        let moved: Vec<&Event> = queue_rows
            .iter()
            .filter(|(_, v)| v.len() > 1 && v.last().map(|l| l.0) > v.first().map(|f| f.0))
            .flat_map(|(_, v)| [v[0].1, v[v.len() - 1].1])
            .collect();
        let any_count = queue_rows
            .iter()
            .any(|(_, v)| v.iter().any(|(c, _)| *c > 0));
        let lasts: Vec<&Event> = queue_rows
            .iter()
            .filter_map(|(_, v)| v.last().map(|l| l.1))
            .collect();
        if !moved.is_empty() {
            return finding(
                7,
                None,
                title,
                Verdict::Holds,
                "virtio interrupt counts in /proc/interrupts increased between snapshots",
                proof(moved),
                fix,
            );
        }
        if !any_count && !queue_rows.is_empty() {
            return finding(
                7,
                None,
                title,
                Verdict::Broken,
                "every virtio queue interrupt count in /proc/interrupts is 0",
                proof(lasts),
                fix,
            );
        }
        if any_count {
            return finding(
                7,
                None,
                title,
                Verdict::Holds,
                "virtio queue interrupts have been counted (take two snapshots around a known \
                 I/O to see them move)",
                proof(lasts),
                fix,
            );
        }
    }
    if !f.isr_runs.is_empty() {
        return finding(
            7,
            None,
            title,
            Verdict::Holds,
            format!("{} ISR run(s) recorded", f.isr_runs.len()),
            proof(f.isr_runs.iter().copied().take(3)),
            fix,
        );
    }
    finding(
        7,
        None,
        title,
        cannot("`COUNTERS:` summaries (checklist 5.4) or two /proc/interrupts snapshots"),
        "no interrupt counters",
        Vec::new(),
        fix,
    )
}
