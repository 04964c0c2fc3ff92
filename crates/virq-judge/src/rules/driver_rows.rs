//! Rows of the driver and OS side (1-13 that are not storms, 23-28): what the resources, the
//! interrupt objects, the INF and the driver's selector writes and read-backs show.

use std::collections::BTreeMap;

use virq_events::{Event, EventKind, NO_VECTOR, Selector};

use super::{Ctx, broken, one_of, ruled_out, unknown};
use crate::Answer;
use crate::facts::{prints_in, selector_name};
use crate::trail::{SelOp, Trail};

pub(crate) fn judge(ctx: &Ctx<'_>) -> Vec<Answer> {
    let mut out: Vec<Answer> = Vec::new();
    let decided = decision_rows(ctx, &mut out);
    let power = row27_lost_across_power(ctx);
    let power_explains = power.as_ref().is_some_and(|a| a.verdict.is_broken());
    out.extend(power);
    out.extend(row2_reset_or_never(ctx, decided, power_explains));
    out.extend(row3_apic_vector(ctx));
    out.extend(row4_beyond_grant(ctx));
    out.extend(row5_config_unset(ctx));
    out.extend(row6_other_message(ctx));
    out.extend(row7_object_beyond_grant(ctx));
    out.extend(row8_unmapped_message(ctx));
    out.extend(row9_message_zero(ctx));
    out.extend(row10_enable_after_refusal(ctx));
    out.extend(row12_surprise_removal(ctx));
    out.extend(row25_prints_filtered(ctx));
    out
}

/// Rows where the driver decided its mode or plan from the wrong input (13, 23, 24, 26, 28).
/// Returns whether one of them explains a missing vector plan.
fn decision_rows(ctx: &Ctx<'_>, out: &mut Vec<Answer>) -> bool {
    let f = ctx.f;
    let mut explains_no_plan = false;
    let inf = f.inf();
    let inf_msi = inf.iter().copied().find(|e| {
        matches!(
            e.kind,
            EventKind::InfInterruptPolicy {
                msi_supported: true,
                ..
            }
        )
    });
    let inf_misplaced = inf.iter().copied().find(|e| {
        matches!(
            e.kind,
            EventKind::InfInterruptPolicy {
                msi_supported: false,
                misplaced_keys: 1..,
                ..
            }
        )
    });
    let line_resources = f.line_resources();
    let on_line = ctx.line() && !line_resources.is_empty();
    let intended = f.intended_writes();
    let unnamed = f.unnamed_programmed();
    // Row 26: vectors programmed while the resources are a line.
    if on_line && (!intended.is_empty() || !unnamed.is_empty()) {
        out.extend(broken(
            26,
            format!(
                "the resources are a line interrupt (no CM_RESOURCE_INTERRUPT_MESSAGE), yet the driver programmed {} vector selector(s): it chose message mode from something other than its resources",
                intended.len() + unnamed.len()
            ),
            line_resources
                .iter()
                .copied()
                .take(1)
                .chain(intended.iter().map(|o| &o.event).take(3))
                .chain(unnamed.iter().copied().take(3)),
        ));
    } else if ctx.line() && !line_resources.is_empty() && f.accesses_logged() {
        out.extend(ruled_out(
            26,
            "on a line interrupt the driver left every vector selector alone",
            line_resources.iter().copied().take(1),
        ));
    }
    // Rows 13 and 28: a line although message interrupts were wanted.
    if on_line {
        let cap = ctx.table.map(|(_, e)| e);
        if let Some(m) = inf_misplaced {
            out.extend(broken(
                13,
                "only a line interrupt was granted: the INF's MessageSignaledInterruptProperties keys sit outside an AddReg of the .HW section, where Windows never reads them",
                [m].into_iter().chain(line_resources.iter().copied().take(1)),
            ));
            out.extend(ruled_out(
                28,
                "the INF itself does not ask for message interrupts where Windows looks",
                [m],
            ));
        } else if let Some(m) = inf_msi {
            out.extend(ruled_out(
                13,
                "the INF asks for message interrupts in the .HW section",
                [m],
            ));
            match cap {
                Some(cap) => out.extend(broken(
                    28,
                    "the INF sets MSISupported=1 under the .HW AddReg and the device has an MSI-X capability, yet Windows granted a line: message interrupts are off for the whole platform",
                    [m, cap].into_iter().chain(line_resources.iter().copied().take(1)),
                )),
                None => out.extend(unknown(
                    28,
                    "the INF asks for message interrupts and Windows granted a line",
                    "the device's !pci dump: whether it has an MSI-X capability at all",
                )),
            }
        } else if !inf.is_empty() {
            // The INF asks for nothing: a line is what it gets.
            let e = inf[0];
            if intended.is_empty() {
                out.extend(ruled_out(
                    13,
                    "the INF does not ask for message interrupts and the driver does not use them",
                    [e],
                ));
            } else {
                out.extend(broken(
                    13,
                    "the driver programs MSI-X vectors but its INF never asks for message interrupts (no MSISupported key): Windows granted a line",
                    [e].into_iter().chain(intended.iter().map(|o| &o.event).take(2)),
                ));
            }
            out.extend(ruled_out(
                28,
                "the INF does not ask for message interrupts",
                [e],
            ));
        } else if !intended.is_empty() && cap.is_some() {
            out.extend(one_of(
                &[13, 28],
                "the driver's INF: MSISupported=1 in an AddReg of the .HW section rules out row 13 (then the platform disabled message interrupts, row 28)",
                "the driver wanted message interrupts (it programs vectors) and the device has MSI-X, but Windows granted a line",
                line_resources.iter().copied().take(1).chain(intended.iter().map(|o| &o.event).take(2)),
            ));
        } else {
            // A line, and nothing says whether messages were asked for.
            let missing = "the driver's INF: whether it asks for message interrupts (MSISupported=1 in an AddReg of its .HW section)";
            out.extend(unknown(
                13,
                "a line interrupt was granted; whether the INF asked for messages is not in the evidence",
                missing,
            ));
            out.extend(unknown(
                28,
                "a line interrupt was granted; whether the INF asked for messages is not in the evidence",
                missing,
            ));
        }
    } else if ctx.message() {
        let e = ctx.mode_proof();
        out.extend(ruled_out(
            13,
            "message interrupts were granted",
            e.iter().copied(),
        ));
        out.extend(ruled_out(
            28,
            "message interrupts were granted",
            e.iter().copied(),
        ));
    }
    // Row 23: every interrupt-object query returned zeros, one of them before the resources.
    let message_resources = f.message_resources();
    let mut zeros_only = false;
    let mut pre_start: Vec<&Event> = Vec::new();
    let mut real_objects = false;
    for t in f.trails {
        let first_resource = t.resources.first().map(|(p, _)| *p);
        for (p, e) in t.connected.iter() {
            if let EventKind::InterruptConnected { vector, .. } = e.kind {
                if vector != 0 {
                    real_objects = true;
                } else if first_resource.is_some_and(|r| *p < r) {
                    pre_start.push(e);
                }
            }
        }
    }
    if !message_resources.is_empty() && !pre_start.is_empty() {
        if real_objects {
            out.extend(ruled_out(
                23,
                "interrupt information read before start gave zeros (KMDF 1.9), and was read again after start with the real values",
                pre_start.iter().copied().take(1),
            ));
        } else {
            explains_no_plan = true;
            zeros_only = true;
            out.extend(broken(
                23,
                "WdfInterruptGetInfo was only called before start: it returned MessageSignaled=0 Vector=0 while message interrupts were granted, so the driver planned from zeros",
                pre_start.iter().copied().take(3).chain(message_resources.iter().copied().take(1)),
            ));
        }
    } else if real_objects && pre_start.is_empty() {
        out.extend(ruled_out(
            23,
            "interrupt information was read after start",
            f.objects().into_iter().take(1),
        ));
    }
    // Row 24: the translated MessageCount (the x64 Group) taken for a message count.
    let translated: Vec<&Event> = message_resources
        .iter()
        .copied()
        .filter(|e| matches!(e.kind, EventKind::ResourceAssigned { raw: false, .. }))
        .collect();
    let zero_counts = translated
        .iter()
        .filter(|e| {
            matches!(
                e.kind,
                EventKind::ResourceAssigned {
                    message_count: 0,
                    ..
                }
            )
        })
        .count();
    let granted = ctx.granted.unwrap_or(0);
    let needed = 1 + ctx.queues.len() as u32;
    if !translated.is_empty() && zero_counts == translated.len() && granted >= 2 {
        let all_on_zero = !intended.is_empty()
            && intended.iter().all(|o| o.written == Some(0))
            && granted >= needed
            && !ctx.queues.is_empty();
        if intended.is_empty() && unnamed.is_empty() && f.accesses_logged() && !zeros_only {
            // (When the driver only ever saw zeros from WdfInterruptGetInfo, row 23 explains
            // the missing plan; the count was never its input.)
            explains_no_plan = true;
            out.extend(broken(
                24,
                format!(
                    "{granted} message descriptors were granted (each translated MessageCount reads 0: on x64 it is the Group), and the driver programmed no vector at all: it took the translated MessageCount as its message count"
                ),
                translated.iter().copied().take(3),
            ));
        } else if all_on_zero {
            out.extend(broken(
                24,
                format!(
                    "{granted} message descriptors were granted for config + {} queue(s), yet every selector shares message 0: the translated MessageCount (0 on x64) was read as the count",
                    ctx.queues.len()
                ),
                translated.iter().copied().take(2).chain(intended.iter().map(|o| &o.event).take(2)),
            ));
        } else if !intended.is_empty() {
            out.extend(ruled_out(
                24,
                "the driver used more than the translated MessageCount suggests",
                intended.iter().map(|o| &o.event).take(1),
            ));
        }
    } else if !translated.is_empty() && !intended.is_empty() {
        out.extend(ruled_out(
            24,
            "the vector plan matches the message descriptors granted",
            translated.iter().copied().take(1),
        ));
    }
    explains_no_plan
}

/// The reset in a trail that came after `pos`, if any.
fn reset_after(t: &Trail, pos: u64) -> Option<&Event> {
    t.resets.iter().find(|(p, _)| *p > pos).map(|(_, e)| e)
}

/// Whether the device ran again (DRIVER_OK written, or a selector read) after `pos`.
fn ran_after<'a>(
    t: &'a Trail,
    ops: &[&'a SelOp],
    pos: u64,
    selector: Selector,
) -> Option<&'a Event> {
    t.status
        .iter()
        .find(|(p, e)| {
            *p > pos && matches!(e.kind, EventKind::DeviceStatus { value } if value & 0x4 != 0)
        })
        .map(|(_, e)| e)
        .or_else(|| {
            ops.iter()
                .find(|o| {
                    o.pos > pos
                        && o.selector == selector
                        && o.written.is_none()
                        && o.value == NO_VECTOR
                })
                .map(|o| &o.event)
        })
}

fn row2_reset_or_never(ctx: &Ctx<'_>, decided: bool, power_explains: bool) -> Option<Answer> {
    if power_explains {
        // Row 27 is this row's Windows form: the reset that lost the vectors is the device's
        // reset at D0 entry. A source without the power transition (the device's record) shows
        // the same loss; it is not a second failure.
        return unknown(
            2,
            "the vectors were lost to the reset at D0 entry, which row 27 names",
            "a reset other than the one at D0 entry after the last vector write",
        );
    }
    if ctx.line() {
        return ruled_out(
            2,
            "a line interrupt: no vector selector is relied on",
            ctx.mode_proof(),
        );
    }
    if !ctx.message() {
        return None;
    }
    let f = ctx.f;
    for (t, ops) in f.ops_by_trail() {
        let mut last: BTreeMap<Selector, &SelOp> = BTreeMap::new();
        for o in &ops {
            if o.written.is_some_and(|w| w != NO_VECTOR) {
                last.insert(o.selector, o);
            }
        }
        for (sel, w) in &last {
            let Some(reset) = reset_after(t, w.pos) else {
                continue;
            };
            let reset_pos = t
                .resets
                .iter()
                .find(|(p, _)| *p > w.pos)
                .map(|(p, _)| *p)
                .unwrap_or(0);
            if let Some(ran) = ran_after(t, &ops, reset_pos, *sel) {
                return broken(
                    2,
                    format!(
                        "{} was programmed (0x{:04x}) before a reset and never again: it is 0xFFFF while the device runs",
                        selector_name(*sel),
                        w.written.unwrap_or(0)
                    ),
                    [&w.event, reset, ran],
                );
            }
        }
    }
    // Never programmed at all, where the driver's register accesses are logged.
    if f.intended_writes().is_empty()
        && f.unnamed_programmed().is_empty()
        && f.accesses_logged()
        && !decided
    {
        let status: Vec<&Event> = f
            .trails
            .iter()
            .flat_map(|t| t.status.iter().map(|(_, e)| e))
            .take(3)
            .collect();
        let record_ran = f
            .record()
            .is_some_and(|d| d.used.values().sum::<u64>() > 0 || d.notifies > 0);
        if !status.is_empty() || record_ran {
            return broken(
                2,
                "message interrupts were granted but no vector selector was ever written: every source is 0xFFFF",
                ctx.mode_proof().into_iter().take(1).chain(status),
            );
        }
    }
    let intended = f.intended_writes();
    if !intended.is_empty() {
        return ruled_out(
            2,
            "every vector written after the last reset",
            intended.iter().rev().map(|o| &o.event).take(1),
        );
    }
    None
}

fn row3_apic_vector(ctx: &Ctx<'_>) -> Option<Answer> {
    let table = ctx.table.map(|t| t.0);
    for o in ctx.f.intended_writes() {
        let w = o.written.unwrap_or(NO_VECTOR);
        if let Some(src) = ctx.apic.get(&u32::from(w)) {
            return broken(
                3,
                format!(
                    "{} written with 0x{w:04x}, the APIC/IDT Vector of an interrupt, not a MessageNumber",
                    selector_name(o.selector)
                ),
                [&o.event, *src],
            );
        }
        if table.is_some_and(|t| w >= t) && w >= 0x20 {
            return broken(
                3,
                format!(
                    "{} written with 0x{w:04x}, beyond the MSI-X table of {}: an IDT Vector, not a MessageNumber",
                    selector_name(o.selector),
                    table.unwrap_or(0)
                ),
                [&o.event].into_iter().chain(ctx.table.map(|t| t.1)),
            );
        }
    }
    let intended = ctx.f.intended_writes();
    if !intended.is_empty() && (!ctx.apic.is_empty() || table.is_some()) {
        return ruled_out(
            3,
            "every value written is a table index, none an APIC vector",
            intended.iter().map(|o| &o.event).take(1),
        );
    }
    None
}

/// Messages the evidence shows mapped: the grant, or the connected message objects.
fn mapped(ctx: &Ctx<'_>) -> Option<u32> {
    ctx.granted.or_else(|| {
        let n = ctx.f.message_numbers();
        (!n.is_empty()).then_some(n.len() as u32)
    })
}

fn row4_beyond_grant(ctx: &Ctx<'_>) -> Option<Answer> {
    if !ctx.message() {
        return None;
    }
    let granted = mapped(ctx)?;
    let table = ctx.table.map(|t| t.0);
    for o in ctx.f.intended_writes() {
        let w = o.written.unwrap_or(NO_VECTOR);
        if ctx.apic.contains_key(&u32::from(w)) || (table.is_some_and(|t| w >= t) && w >= 0x20) {
            continue;
        }
        if u32::from(w) >= granted {
            return broken(
                4,
                format!(
                    "{} written with MessageNumber {w}, but only {granted} message(s) were granted: it reads back, yet its interrupts arrive as message 0 (or never)",
                    selector_name(o.selector)
                ),
                [&o.event]
                    .into_iter()
                    .chain(ctx.f.message_resources().into_iter().take(1)),
            );
        }
    }
    let intended = ctx.f.intended_writes();
    if !intended.is_empty() {
        return ruled_out(
            4,
            format!("every MessageNumber written is below the {granted} granted"),
            intended.iter().map(|o| &o.event).take(1),
        );
    }
    None
}

fn row5_config_unset(ctx: &Ctx<'_>) -> Option<Answer> {
    if !ctx.message() {
        return None;
    }
    let f = ctx.f;
    let queue_programmed: Vec<&SelOp> = f
        .intended_writes()
        .into_iter()
        .filter(|o| matches!(o.selector, Selector::Queue(_)))
        .collect();
    if queue_programmed.is_empty() {
        return None;
    }
    let config: Vec<&SelOp> = f
        .trails
        .iter()
        .flat_map(|t| t.selector_ops.iter())
        .filter(|o| o.selector == Selector::MsixConfig)
        .collect();
    let config_set = config
        .iter()
        .any(|o| o.written.is_some_and(|w| w != NO_VECTOR));
    if config_set {
        return ruled_out(
            5,
            "msix_config was given a vector",
            config.iter().map(|o| &o.event).take(1),
        );
    }
    let record_lost = f.record().and_then(|d| {
        d.suppressed
            .iter()
            .find(|(k, _)| k.starts_with("ConfigChange/NoVector"))
            .map(|(_, v)| &v.1)
    });
    let read_none = config
        .iter()
        .find(|o| o.value == NO_VECTOR)
        .map(|o| &o.event);
    match (read_none, record_lost) {
        (None, None) => unknown(
            5,
            "queue vectors were programmed, but no access to msix_config was logged",
            "a read-back of msix_config (checklist 3.1)",
        ),
        (a, b) => broken(
            5,
            "queue vectors are programmed but msix_config was never given one: it reads 0xFFFF, so configuration changes never interrupt",
            a.into_iter()
                .chain(b)
                .chain(queue_programmed.iter().map(|o| &o.event).take(1)),
        ),
    }
}

fn row6_other_message(ctx: &Ctx<'_>) -> Option<Answer> {
    let granted = mapped(ctx);
    let mut checked = None;
    for o in ctx.f.intended_writes() {
        let (Some(w), Some(m)) = (o.written, o.intended) else {
            continue;
        };
        checked = Some(o);
        if u32::from(w) != m
            && !ctx.apic.contains_key(&u32::from(w))
            && granted.is_none_or(|g| u32::from(w) < g)
        {
            let rebalance = ctx.f.logs().find(|e| match &e.kind {
                EventKind::LogLine { text } => text.to_ascii_lowercase().contains("rebalance"),
                _ => false,
            });
            return broken(
                6,
                format!(
                    "{} was programmed with {w} while the interrupt object it serves has MessageNumber {m}{}",
                    selector_name(o.selector),
                    if rebalance.is_some() {
                        ", after a resource rebalance"
                    } else {
                        ""
                    }
                ),
                [&o.event].into_iter().chain(rebalance),
            );
        }
    }
    checked.and_then(|o| {
        ruled_out(
            6,
            "every selector carries the MessageNumber of the object it serves",
            [&o.event],
        )
    })
}

fn row7_object_beyond_grant(ctx: &Ctx<'_>) -> Option<Answer> {
    let f = ctx.f;
    let resources: Vec<&Event> = f.resources().collect();
    if resources.is_empty() {
        return None;
    }
    for t in f.trails {
        let first_resource = t.resources.first().map(|(p, _)| *p);
        // Objects printed together after start: real ones beside zero ones.
        let after: Vec<&Event> = t
            .connected
            .iter()
            .filter(|(p, _)| first_resource.is_none_or(|r| *p > r))
            .map(|(_, e)| e)
            .collect();
        let real = after
            .iter()
            .any(|e| matches!(e.kind, EventKind::InterruptConnected { vector, .. } if vector != 0));
        let dead: Vec<&Event> = after
            .iter()
            .copied()
            .filter(|e| matches!(e.kind, EventKind::InterruptConnected { vector: 0, .. }))
            .collect();
        if real && !dead.is_empty() {
            let numbers: Vec<String> = dead
                .iter()
                .filter_map(|e| match e.kind {
                    EventKind::InterruptConnected { message_number, .. } => {
                        Some(message_number.to_string())
                    }
                    _ => None,
                })
                .collect();
            return broken(
                7,
                format!(
                    "{} interrupt object(s) (MessageNumber {}) beyond the {} interrupt resource(s) granted: Vector=0 after start, they never fire",
                    dead.len(),
                    numbers.join(", "),
                    ctx.granted.unwrap_or(resources.len() as u32)
                ),
                dead.iter()
                    .copied()
                    .take(3)
                    .chain(resources.iter().copied().take(1)),
            );
        }
    }
    let objects = f.objects();
    if !objects.is_empty() {
        return ruled_out(
            7,
            "every interrupt object has a message",
            objects.into_iter().take(1),
        );
    }
    None
}

fn row8_unmapped_message(ctx: &Ctx<'_>) -> Option<Answer> {
    let f = ctx.f;
    let crashes: Vec<&Event> = f.trails.iter().flat_map(|t| t.crashes.iter()).collect();
    let counters = f.counters();
    let state: u32 = counters.keys().filter(|k| k.is_some()).count() as u32;
    for c in &crashes {
        let EventKind::DriverCrash {
            message_id: Some(m),
            ..
        } = c.kind
        else {
            continue;
        };
        let proof_counters: Vec<&Event> = counters.values().map(|v| v.2).take(2).collect();
        if state > 0 && m >= state {
            return broken(
                8,
                format!(
                    "the driver crashed in the ISR for MessageID {m}, while its per-message state holds {state} entr{}{}",
                    if state == 1 { "y" } else { "ies" },
                    ctx.granted
                        .map(|g| format!(" of {g} messages granted"))
                        .unwrap_or_default()
                ),
                [*c].into_iter().chain(proof_counters),
            );
        }
        if ctx.granted.is_some_and(|g| m < g) || state == 0 {
            return broken(
                8,
                format!(
                    "the driver crashed in the ISR for MessageID {m}: its per-message state does not cover every message it connected"
                ),
                [*c].into_iter()
                    .chain(f.message_resources().into_iter().take(1)),
            );
        }
    }
    if !crashes.is_empty() {
        return unknown(
            8,
            "the driver crashed, but the crash does not name a message",
            "the crash's MessageID (the ISR's argument)",
        );
    }
    if ctx.message() && !counters.is_empty() {
        return ruled_out(
            8,
            "no crash; the ISR ran for every message it saw",
            counters.values().map(|v| v.2).take(1),
        );
    }
    None
}

fn row9_message_zero(ctx: &Ctx<'_>) -> Option<Answer> {
    let f = ctx.f;
    let refused: Vec<&Event> = f
        .trails
        .iter()
        .flat_map(|t| t.isr.message_refused.iter())
        .filter(|e| {
            matches!(
                e.kind,
                EventKind::IsrRan {
                    message_id: Some(0),
                    ..
                }
            )
        })
        .collect();
    if !refused.is_empty() {
        return broken(
            9,
            "the ISR returned FALSE for MessageID 0 although the interrupt is message-signalled: message 0 is taken for \"not a message interrupt\"",
            refused.into_iter().take(3),
        );
    }
    if ctx.message() {
        let zero = f.counters().get(&Some(0)).copied();
        if let Some((isr, dpc, e)) = zero
            && isr > 0
            && dpc > 0
        {
            return ruled_out(
                9,
                "message 0's ISR claims its interrupts (DPCs queued)",
                [e],
            );
        }
    }
    None
}

fn row10_enable_after_refusal(ctx: &Ctx<'_>) -> Option<Answer> {
    for (t, ops) in ctx.f.ops_by_trail() {
        for o in &ops {
            let Some(w) = o.written else { continue };
            if w == NO_VECTOR || o.value != NO_VECTOR {
                continue;
            }
            let next_reset = t.resets.iter().find(|(p, _)| *p > o.pos).map(|(p, _)| *p);
            let last_reset = t
                .resets
                .iter()
                .rev()
                .find(|(p, _)| *p < o.pos)
                .map_or(0, |(p, _)| *p);
            // A queue already enabled when the plan failed, and the plan retried on the same
            // selector without a reset: the half-configured queue stays as it was.
            let enabled_before = t
                .queue_enables
                .iter()
                .find(|(p, _)| *p < o.pos && *p > last_reset)
                .map(|(_, e)| e);
            let retried = ops.iter().find(|r| {
                r.selector == o.selector
                    && r.pos > o.pos
                    && r.written.is_some()
                    && next_reset.is_none_or(|n| r.pos < n)
            });
            if let (Some(q), Some(r)) = (enabled_before, retried) {
                return broken(
                    10,
                    format!(
                        "a queue was enabled before the vector plan succeeded; {} was refused (0x{w:04x} read back 0xFFFF) and set up again without a reset",
                        selector_name(o.selector)
                    ),
                    [q, &o.event, &r.event],
                );
            }
            if let Some((_, q)) = t
                .queue_enables
                .iter()
                .find(|(p, _)| *p > o.pos && next_reset.is_none_or(|r| *p < r))
            {
                return broken(
                    10,
                    format!(
                        "a queue was enabled after {} was written 0x{w:04x} and read back 0xFFFF: the vector plan had not succeeded",
                        selector_name(o.selector)
                    ),
                    [&o.event, q],
                );
            }
        }
    }
    let enables: Vec<&Event> = ctx
        .f
        .trails
        .iter()
        .flat_map(|t| t.queue_enables.iter().map(|(_, e)| e))
        .collect();
    if !enables.is_empty() && ctx.f.accesses_logged() {
        return ruled_out(
            10,
            "no queue was enabled after a refused vector",
            enables.into_iter().take(1),
        );
    }
    None
}

fn row12_surprise_removal(ctx: &Ctx<'_>) -> Option<Answer> {
    let f = ctx.f;
    let claimed: Vec<&Event> = f
        .trails
        .iter()
        .flat_map(|t| t.isr.all_ones_claimed.iter())
        .collect();
    let gone: Vec<&Event> = f
        .commands()
        .into_iter()
        .filter(|(v, _)| *v == 0xFFFF)
        .map(|(_, e)| e)
        .collect();
    if !claimed.is_empty() {
        return broken(
            12,
            "ISR status read 0xFF (the device is gone) and the ISR claimed it: DPCs ran against a removed device",
            claimed.into_iter().take(2).chain(gone.into_iter().take(1)),
        );
    }
    let all_ones: Vec<&Event> = f
        .trails
        .iter()
        .flat_map(|t| t.isr.all_ones.iter())
        .collect();
    if !all_ones.is_empty() || !gone.is_empty() {
        return ruled_out(
            12,
            "the device reads all ones (removed), and the ISR did not claim it",
            all_ones.into_iter().chain(gone).take(2),
        );
    }
    None
}

/// Row 25: a DbgView capture holds none of the driver's lines while the OS says the device
/// started. Free-text lines about interrupts or virtio in the capture may be a real driver's own
/// words (viostor, NetKVM): then nothing is said.
fn row25_prints_filtered(ctx: &Ctx<'_>) -> Option<Answer> {
    let f = ctx.f;
    let (captures, lines) = f.dbgview_captures();
    if captures.is_empty() || captures.iter().copied().any(prints_in) {
        return f.driver_prints().then(|| {
            ruled_out(
                25,
                "the driver's own prints reached the capture",
                ctx.mode_proof(),
            )
        })?;
    }
    if captures.iter().any(|t| !t.logs.is_empty()) {
        return None;
    }
    match f.trails.iter().find_map(|t| t.started.as_ref()) {
        Some(e) => broken(
            25,
            format!(
                "the DbgView capture ({lines} line(s)) holds none of the driver's prints while the device is started: Windows 7 drops DbgPrintEx below DPFLTR_ERROR_LEVEL unless the Debug Print Filter allows it"
            ),
            [e],
        ),
        None => unknown(
            25,
            format!("the DbgView capture ({lines} line(s)) holds none of the driver's prints"),
            "whether the device started: WinDbg !devnode (State = DeviceNodeStarted) or Device Manager",
        ),
    }
}

/// Row 27: a power transition after a selector's last vector write, then a reset, and the
/// device running (DRIVER_OK) or the selector reading 0xFFFF after it: the vectors were lost
/// at D0 entry and never programmed again.
fn row27_lost_across_power(ctx: &Ctx<'_>) -> Option<Answer> {
    if !ctx.message() {
        return None;
    }
    let f = ctx.f;
    let mut saw_power = None;
    for (t, ops) in f.ops_by_trail() {
        let Some((_, entry)) = t.power.iter().rev().find(|(_, e)| {
            matches!(
                e.kind,
                EventKind::PowerTransition {
                    entering_d0: true,
                    ..
                }
            )
        }) else {
            continue;
        };
        saw_power.get_or_insert((t, entry));
        let mut last: BTreeMap<Selector, &SelOp> = BTreeMap::new();
        for o in &ops {
            if o.written.is_some_and(|w| w != NO_VECTOR) {
                last.insert(o.selector, o);
            }
        }
        for (sel, w) in &last {
            let Some((_, power)) = t.power.iter().find(|(p, _)| *p > w.pos) else {
                continue;
            };
            let Some((reset_pos, reset)) = t.resets.iter().find(|(p, _)| *p > w.pos) else {
                continue;
            };
            if let Some(ran) = ran_after(t, &ops, *reset_pos, *sel) {
                return broken(
                    27,
                    format!(
                        "{} was programmed (0x{:04x}) before a power transition and not again after the reset at D0 entry: it is 0xFFFF after resume",
                        selector_name(*sel),
                        w.written.unwrap_or(0)
                    ),
                    [&w.event, power, reset, ran],
                );
            }
        }
    }
    let (t, entry) = saw_power?;
    let entry_pos = t
        .power
        .iter()
        .find(|(_, e)| std::ptr::eq(e, entry))
        .map_or(0, |(p, _)| *p);
    let again = t
        .selector_ops
        .iter()
        .find(|o| o.pos > entry_pos && o.written.is_some_and(|w| w != NO_VECTOR))?;
    ruled_out(
        27,
        "the vectors were programmed again after D0 entry",
        [entry, &again.event],
    )
}
