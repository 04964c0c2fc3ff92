//! Failure-catalogue rows (shared/failure-catalogue.md) as rules. Each names its row, the
//! checklist step whose link it breaks, and the proof a user's evidence can show.

use super::facts::{Facts, SelectorAccess, selector_name};
use super::signals::{IntxIsr, StormSource, intx_counter_delta, intx_storm, line_rows};
use super::{Finding, Verdict, cannot, finding, proof};
use std::collections::BTreeMap;
use virq_events::{Event, EventKind, InterruptMode, NO_VECTOR, Origin, Selector};

/// APIC/IDT vectors seen in the evidence (connected objects, message resources), by value,
/// excluding values that are also connected MessageNumbers (those are ambiguous).
pub(crate) fn apic_vectors<'a>(f: &Facts<'a>) -> BTreeMap<u32, &'a Event> {
    let numbers: std::collections::BTreeSet<u32> = f.connections().iter().map(|c| c.1).collect();
    let mut out = BTreeMap::new();
    for (_, _, vector, e) in f.connections() {
        if vector != 0 && !numbers.contains(&vector) {
            out.entry(vector).or_insert(e);
        }
    }
    for e in f.message_resources() {
        if let EventKind::ResourceAssigned { vector, .. } = e.kind {
            if vector != 0 && !numbers.contains(&vector) {
                out.entry(vector).or_insert(e);
            }
        }
    }
    out
}

/// Queue writes of a real vector at or beyond the grant that are not APIC vectors (those are
/// row 3's business).
pub(crate) fn beyond_grant_writes<'a>(f: &Facts<'a>, granted: u32) -> Vec<&'a Event> {
    let apic = apic_vectors(f);
    f.accesses
        .iter()
        .filter(|a| matches!(a.selector, Selector::Queue(_)) && a.intended())
        .filter(|a| {
            let w = u32::from(a.written.unwrap_or(NO_VECTOR));
            w >= granted && !apic.contains_key(&w)
        })
        .map(|a| a.event)
        .collect()
}

/// Row 1: INTx storm because the ISR never reads (acknowledges) the virtio ISR status.
///
/// A storm alone is attributed to this row (it is the catalogue's own symptom) unless the
/// evidence shows the ISR does read ISR status (then rows 19/22 explain the storm) or that it
/// returns not-mine without reading (row 11).
pub fn row1_intx_storm(events: &[Event]) -> Finding {
    let f = Facts::new(events);
    let title = "INTx storm: the ISR never reads the virtio ISR status register";
    let fix = "In INTx mode read the virtio ISR status register first thing in the ISR (the \
               read deasserts the line); return FALSE when it reads 0.";
    let row = |verdict, symptom: String, p| finding(7, Some(1), title, verdict, symptom, p, fix);
    let isr = IntxIsr::new(&f);

    if let Some(storm) = intx_storm(&f) {
        if !isr.claimed_unread.is_empty() {
            return row(
                Verdict::Broken,
                format!(
                    "{}; the ISR claims the interrupt without reading ISR status, so the line \
                     is never deasserted",
                    storm.summary
                ),
                proof(
                    storm
                        .proof
                        .into_iter()
                        .chain(isr.claimed_unread.into_iter().take(2)),
                ),
            );
        }
        if !isr.notmine_unread.is_empty() {
            return row(
                Verdict::Holds,
                "the ISR returns not-mine without reading ISR status: that is row 11 (shared \
                 line), not an ISR that claims without acknowledging"
                    .to_string(),
                proof(isr.notmine_unread.into_iter().take(2)),
            );
        }
        if isr.reads_status() {
            let mut p = isr.read_cause.clone();
            p.extend(isr.read_zero.iter().copied());
            return row(
                Verdict::Holds,
                "the ISR does read ISR status (the storm has another cause: see rows 19 and 22)"
                    .to_string(),
                proof(p.into_iter().take(3)),
            );
        }
        if storm.source == StormSource::KernelLog {
            // The catalogue's own proof for this row on Linux.
            return row(Verdict::Broken, storm.summary, proof(storm.proof));
        }
        return row(
            cannot(
                "`ISR:` samples (docs/log-formats.md line 8) or `VIRTIO: isr_status read=` lines: \
                 the storm is proven (step 7), but not whether the ISR reads ISR status (this \
                 row), says not-mine without reading (row 11) or reads 0 from a device that \
                 holds the line (row 19)",
            ),
            storm.summary,
            proof(storm.proof),
        );
    }

    if let Some((d_isr, d_dpc, first, last)) = intx_counter_delta(&f) {
        let mut p: Vec<&Event> = f.intx_resources().into_iter().take(1).collect();
        p.extend([first, last]);
        return row(
            Verdict::Holds,
            format!("INTx ISR count rose by {d_isr} with {d_dpc} DPC(s): no storm"),
            proof(p),
        );
    }
    let rows = line_rows(&f);
    if rows.values().any(|v| v.len() > 1) {
        return row(
            Verdict::Holds,
            "the virtio INTx line moves at a normal rate between snapshots".to_string(),
            proof(rows.values().flat_map(|v| v.iter().map(|x| x.1))),
        );
    }
    if f.mode() == Some(InterruptMode::Message) {
        return row(
            Verdict::Holds,
            "message interrupts: there is no INTx line to storm".to_string(),
            Vec::new(),
        );
    }
    row(
        cannot(
            "INTx ISR counters (`COUNTERS: INTx ...`), two /proc/interrupts snapshots, or the \
             kernel's \"nobody cared\" message",
        ),
        "no interrupt counts for a line interrupt".to_string(),
        Vec::new(),
    )
}

/// Row 2: a reset came after the last vector write, so the selectors are 0xFFFF again.
pub fn row2_reset_after_write(events: &[Event]) -> Finding {
    let f = Facts::new(events);
    let title = "Vectors programmed before the last reset";
    let fix = "Program msix_config and every queue_msix_vector after every reset (after the \
               last `device_status = 0`, before DRIVER_OK) and read them back.";
    let row = |verdict, symptom: String, p| finding(6, Some(2), title, verdict, symptom, p, fix);
    let states = f.selector_states();
    let intended: Vec<_> = states
        .iter()
        .filter_map(|(s, st)| st.last_intended.map(|w| (*s, w, st)))
        .collect();
    if intended.is_empty() {
        return row(
            cannot("the `VIRTIO:` vector write lines (checklist 5.3)"),
            "no vector write was logged".to_string(),
            Vec::new(),
        );
    }
    if !f.status_logged {
        return row(
            cannot("the `VIRTIO: device_status write=` lines, to see where resets happen"),
            "vector writes were logged but no device_status write".to_string(),
            Vec::new(),
        );
    }
    let mut lost = Vec::new();
    let mut p: Vec<&Event> = Vec::new();
    for (sel, w, st) in &intended {
        let reset = f.resets.iter().find(|(i, _)| *i > w.idx).map(|(_, e)| *e);
        let rewritten_after = reset.is_some_and(|r| {
            f.accesses
                .iter()
                .any(|a| a.selector == *sel && a.intended() && a.event.seq > r.seq)
        });
        if let (Some(r), false) = (reset.or(st.reset_after), rewritten_after) {
            lost.push(selector_name(*sel));
            p.push(w.event);
            p.push(r);
        }
    }
    if lost.is_empty() {
        return row(
            Verdict::Holds,
            "every programmed selector was written after the last reset".to_string(),
            proof(intended.iter().map(|(_, w, _)| w.event)),
        );
    }
    row(
        Verdict::Broken,
        format!(
            "a reset (device_status = 0) came after the last write of {}: those selectors \
             are 0xFFFF again",
            lost.join(", ")
        ),
        proof(p),
    )
}

/// Row 3: the APIC/IDT `Vector` was written instead of the `MessageNumber`, or a value
/// beyond the MSI-X table.
pub fn row3_apic_vector_written(events: &[Event]) -> Finding {
    let f = Facts::new(events);
    let title = "APIC Vector written instead of MessageNumber";
    let fix = "Program virtio's selectors with the MSI-X table entry index \
               (WdfInterruptGetInfo MessageNumber), never the CPU `Vector`.";
    let row = |verdict, symptom: String, p| finding(6, Some(3), title, verdict, symptom, p, fix);
    let writes: Vec<&SelectorAccess> = f.accesses.iter().filter(|a| a.intended()).collect();
    if writes.is_empty() {
        return row(
            cannot("the `VIRTIO:` vector write lines (checklist 5.3)"),
            "no vector write was logged".to_string(),
            Vec::new(),
        );
    }
    let apic = apic_vectors(&f);
    let table = f.table_size();
    if apic.is_empty() && table.is_none() {
        return row(
            cannot("the `WDFINT:` lines (to know the APIC vectors) or the MSI-X table size (!pci)"),
            "vector writes were logged but nothing to compare them with".to_string(),
            Vec::new(),
        );
    }
    let mut problems = Vec::new();
    let mut p: Vec<&Event> = Vec::new();
    for w in &writes {
        let written = w.written.unwrap_or(NO_VECTOR);
        if let Some(src) = apic.get(&u32::from(written)) {
            problems.push(format!(
                "{} written 0x{written:04x} = {written}, the APIC Vector of a connected \
                 interrupt; read back 0x{:04x}",
                selector_name(w.selector),
                w.value
            ));
            p.extend([w.event, *src]);
        } else if let Some((size, cap)) = table.filter(|(size, _)| written >= *size) {
            problems.push(format!(
                "{} written 0x{written:04x}, beyond the MSI-X table of {size} entries",
                selector_name(w.selector)
            ));
            p.extend([w.event, cap]);
        }
    }
    if problems.is_empty() {
        return row(
            Verdict::Holds,
            "every value written is a table index, not an APIC vector".to_string(),
            proof(writes.iter().map(|w| w.event)),
        );
    }
    problems.dedup();
    row(Verdict::Broken, problems.join("; "), proof(p))
}

/// Row 4: fewer messages granted than 1 + queues while the driver assumes per-queue vectors.
pub fn row4_too_few_messages(events: &[Event]) -> Finding {
    let f = Facts::new(events);
    let title = "Fewer messages granted than 1 + queues, driver assumes per-queue vectors";
    let fix = "When MessageCount < 1 + queues, fall back: config and all queues on message 0 \
               (or Linux's ladder: per-queue, shared, INTx).";
    let row = |verdict, symptom: String, p| finding(2, Some(4), title, verdict, symptom, p, fix);
    let Some(granted) = f.granted() else {
        return row(
            cannot("message interrupt resources with MessageCount (`INT: MSI/MSI-X ...`)"),
            "no message grant was logged".to_string(),
            Vec::new(),
        );
    };
    let queues = f.queues();
    if queues.is_empty() {
        return row(
            cannot("the `VIRTIO: queue=N queue_msix_vector` lines"),
            format!("{granted} message(s) granted; no queue vector write logged"),
            proof(f.message_resources()),
        );
    }
    let needed = 1 + queues.len() as u32;
    if granted >= needed {
        return row(
            Verdict::Holds,
            format!("{granted} message(s) granted, {needed} needed"),
            proof(f.message_resources()),
        );
    }
    let failing = beyond_grant_writes(&f, granted);
    if failing.is_empty() {
        return row(
            Verdict::Holds,
            format!("{granted} of {needed} granted, and every queue vector is within the grant"),
            proof(f.message_resources()),
        );
    }
    row(
        Verdict::Broken,
        format!(
            "MessageCount {granted} < {needed} (config + {} queues), and queues are programmed \
             with per-queue vectors beyond the grant",
            queues.len()
        ),
        proof(f.message_resources().into_iter().chain(failing)),
    )
}

/// Row 5: msix_config left at 0xFFFF while the queues use MSI-X.
pub fn row5_config_no_vector(events: &[Event]) -> Finding {
    let f = Facts::new(events);
    let title = "Config vector left at 0xFFFF while queues use MSI-X";
    let fix = "Route config changes to a message too (share message 0 with a queue if needed).";
    let row = |verdict, symptom: String, p| finding(6, Some(5), title, verdict, symptom, p, fix);
    let states = f.selector_states();
    let queues_live: Vec<&Event> = states
        .iter()
        .filter(|(s, st)| matches!(s, Selector::Queue(_)) && st.current() != NO_VECTOR)
        .map(|(_, st)| st.last.event)
        .collect();
    let Some(cfg) = states.get(&Selector::MsixConfig) else {
        if let (Some(reset), false) = (f.config_never_written_since_reset(), queues_live.is_empty())
        {
            return row(
                Verdict::Broken,
                "msix_config was never written after the reset, so it is still 0xFFFF while                  queues have message vectors: config changes are never signalled"
                    .to_string(),
                proof(std::iter::once(reset).chain(queues_live)),
            );
        }
        return row(
            cannot("the `VIRTIO: msix_config write=... read=...` line"),
            "no msix_config write or read was logged".to_string(),
            Vec::new(),
        );
    };
    if cfg.current() != NO_VECTOR {
        return row(
            Verdict::Holds,
            format!("msix_config = 0x{:04x}", cfg.current()),
            proof([cfg.last.event]),
        );
    }
    if queues_live.is_empty() {
        return row(
            Verdict::Holds,
            "msix_config is 0xFFFF, but no queue uses MSI-X either (not this failure)".to_string(),
            proof([cfg.last.event]),
        );
    }
    row(
        Verdict::Broken,
        "msix_config reads 0xFFFF while queues have message vectors: config changes (resize, \
         link state) are never signalled"
            .to_string(),
        proof(std::iter::once(cfg.last.event).chain(queues_live.into_iter().take(1))),
    )
}

/// Row 7: an interrupt object created beyond the messages granted (`Vector = 0`).
pub fn row7_vector_zero(events: &[Event]) -> Finding {
    let f = Facts::new(events);
    let title = "Interrupt object created beyond the messages granted (Vector 0)";
    let fix = "Create one interrupt object per granted message; fold extra work into message 0.";
    let row = |verdict, symptom: String, p| finding(3, Some(7), title, verdict, symptom, p, fix);
    let conns = f.connections();
    if conns.is_empty() {
        return row(
            cannot("the `WDFINT:` lines (checklist 2.1)"),
            "no connected interrupt object was logged".to_string(),
            Vec::new(),
        );
    }
    let zero: Vec<(u32, &Event)> = conns
        .iter()
        .filter(|c| c.2 == 0)
        .map(|c| (c.1, c.3))
        .collect();
    if zero.is_empty() {
        return row(
            Verdict::Holds,
            "every connected object has a non-zero Vector".to_string(),
            proof(conns.iter().map(|c| c.3)),
        );
    }
    let granted = f
        .granted()
        .map(|g| format!(" ({g} granted)"))
        .unwrap_or_default();
    let numbers: Vec<String> = zero.iter().map(|z| z.0.to_string()).collect();
    row(
        Verdict::Broken,
        format!(
            "the object(s) for MessageNumber {} have Vector=0{granted}: they will never fire",
            numbers.join(", ")
        ),
        proof(
            zero.iter()
                .map(|z| z.1)
                .chain(f.message_resources().into_iter().take(1)),
        ),
    )
}

/// Row 13: only a line interrupt granted although message interrupts were wanted.
pub fn row13_no_message_flag(events: &[Event]) -> Finding {
    let f = Facts::new(events);
    let title = "No message flag at all: INF keys missing or in the wrong section";
    let fix = "Put `Interrupt Management\\MessageSignaledInterruptProperties` \
               (`MSISupported=1`, `MessageNumberLimit`) under the `.HW` section's AddReg.";
    let row = |verdict, symptom: String, p| finding(2, Some(13), title, verdict, symptom, p, fix);
    if f.resources.is_empty() {
        return row(
            cannot("the translated interrupt resources (`INT:` lines or `!devnode`)"),
            "no interrupt resource was logged".to_string(),
            Vec::new(),
        );
    }
    let msg = f.message_resources();
    if !msg.is_empty() {
        return row(
            Verdict::Holds,
            "a resource carries CM_RESOURCE_INTERRUPT_MESSAGE".to_string(),
            proof(msg.into_iter().take(2)),
        );
    }
    // The driver's INF, when handed over: keys written but where Windows never reads them
    // show both the intent and the mistake.
    let inf: Vec<&Event> = events
        .iter()
        .filter(|e| matches!(e.kind, EventKind::InfInterruptPolicy { .. }))
        .collect();
    if let Some(bad) = inf.iter().find(|e| {
        matches!(
            e.kind,
            EventKind::InfInterruptPolicy {
                msi_supported: false,
                misplaced_keys: 1..,
                ..
            }
        )
    }) {
        let misplaced = events.iter().filter(|e| {
            matches!(&e.kind, EventKind::LogLine { text } if text.contains("MessageSignaledInterruptProperties"))
                && matches!((&e.origin, &bad.origin), (Origin::File { path: a, .. }, Origin::File { path: b, .. }) if a == b)
        });
        return row(
            Verdict::Broken,
            "only a line interrupt was granted, and the INF writes its MSI keys outside the              `.HW` section's AddReg, where Windows never reads them"
                .to_string(),
            proof(
                std::iter::once(*bad)
                    .chain(misplaced.take(2))
                    .chain(f.intx_resources().into_iter().take(1)),
            ),
        );
    }
    if inf.iter().any(|e| {
        matches!(
            e.kind,
            EventKind::InfInterruptPolicy {
                msi_supported: true,
                ..
            }
        )
    }) {
        return row(
            Verdict::Holds,
            "the INF asks for message interrupts under the `.HW` AddReg; a line grant has another cause"
                .to_string(),
            proof(inf.into_iter().take(1)),
        );
    }
    let wanted = f.message_wanted();
    if wanted.is_empty() {
        return row(
            cannot(
                "evidence that message interrupts were wanted (an MSI-X capability in `!pci`, \
                 or vector writes)",
            ),
            "only INTx resources; nothing shows MSI-X was expected".to_string(),
            proof(f.intx_resources()),
        );
    }
    row(
        Verdict::Broken,
        "only line (INTx) resources were granted although the device offers MSI-X / the \
         driver programs vectors: Windows never saw MSISupported"
            .to_string(),
        proof(f.intx_resources().into_iter().chain(wanted)),
    )
}
