//! The checklist's seven steps (section 6). A step is broken when a catalogue row that breaks
//! its link is; otherwise it answers its own question from the evidence.

use std::collections::BTreeSet;

use virq_events::{Event, EventKind, InterruptMode, NO_VECTOR, Selector};

use super::{Ctx, step_answer};
use crate::facts::{ModeSource, selector_name};
use crate::{Answer, Check, Verdict, catalogue};

pub(crate) fn judge(ctx: &Ctx<'_>, rows: &[Option<Answer>]) -> Vec<Answer> {
    let own: [fn(&Ctx<'_>) -> Answer; 7] = [step1, step2, step3, step4, step5, step6, step7];
    (1..=7u8)
        .map(|n| from_rows(n, rows).unwrap_or_else(|| own[usize::from(n) - 1](ctx)))
        .collect()
}

/// The step broken by its rows, if any: proven rows first, then candidates.
fn from_rows(n: u8, rows: &[Option<Answer>]) -> Option<Answer> {
    let mine: Vec<&Answer> = rows
        .iter()
        .flatten()
        .filter(|a| matches!(a.check, Check::Row(r) if catalogue::row(r).step == n))
        .collect();
    let proven: Vec<&Answer> = mine
        .iter()
        .copied()
        .filter(|a| a.verdict == Verdict::Broken)
        .collect();
    if let Some(first) = proven.first() {
        let mut proof: Vec<&Event> = Vec::new();
        for a in &proven {
            proof.extend(a.proof.iter());
        }
        let numbers: Vec<u8> = proven
            .iter()
            .filter_map(|a| match a.check {
                Check::Row(r) => Some(r),
                Check::Step(_) => None,
            })
            .collect();
        let mut s = step_answer(
            n,
            Verdict::Broken,
            first.finding.clone(),
            proof,
            first.fix.as_deref(),
        );
        s.rows = numbers;
        return Some(s);
    }
    let candidates: Vec<&Answer> = mine
        .iter()
        .copied()
        .filter(|a| matches!(a.verdict, Verdict::OneOf { .. }))
        .collect();
    let first = candidates.first()?;
    let Verdict::OneOf { rows, tell_apart } = &first.verdict else {
        return None;
    };
    let mut s = step_answer(
        n,
        Verdict::OneOf {
            rows: rows.clone(),
            tell_apart: tell_apart.clone(),
        },
        format!("{}: one of rows {}", first.finding, list(rows)),
        first.proof.iter().collect(),
        None,
    );
    s.rows = rows.clone();
    Some(s)
}

fn list(rows: &[u8]) -> String {
    rows.iter()
        .map(u8::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

fn cannot(n: u8, finding: &str, missing: &str) -> Answer {
    step_answer(
        n,
        Verdict::CannotTell {
            missing: missing.to_string(),
        },
        finding,
        Vec::new(),
        None,
    )
}

fn holds(n: u8, finding: impl Into<String>, proof: Vec<&Event>) -> Answer {
    step_answer(n, Verdict::Holds, finding, proof, None)
}

fn broken(n: u8, finding: impl Into<String>, proof: Vec<&Event>, fix: &str) -> Answer {
    step_answer(n, Verdict::Broken, finding, proof, Some(fix))
}

fn step1(ctx: &Ctx<'_>) -> Answer {
    let Some((mode, proof, source)) = &ctx.mode else {
        return cannot(
            1,
            "nothing shows which interrupt mode the OS assigned",
            "the interrupt resources (the driver's INT: lines, WinDbg !devnode / !cmreslist), WDFINT: lines, or Linux /proc/interrupts",
        );
    };
    let proof: Vec<&Event> = proof.iter().copied().take(4).collect();
    let from = match source {
        ModeSource::Resources => "",
        ModeSource::Objects => " (from the interrupt objects)",
        ModeSource::LinuxIrqs => " (Linux /proc/interrupts)",
        ModeSource::Record => " (the device's record)",
    };
    match mode {
        InterruptMode::Message => {
            let n = ctx.granted.unwrap_or(0);
            let what = if n > 0 {
                format!(
                    "message-signaled ({n} Interrupt Request entr{}, not shared){from}",
                    if n == 1 { "y" } else { "ies" }
                )
            } else {
                format!("message-signaled (MSI/MSI-X){from}")
            };
            holds(1, what, proof)
        }
        InterruptMode::Intx => {
            let irq = ctx.f.resources().find_map(|e| match e.kind {
                EventKind::ResourceAssigned {
                    mode: InterruptMode::Intx,
                    raw: true,
                    vector,
                    ..
                } => Some(vector),
                _ => None,
            });
            let what = format!(
                "line-based INTx ({}shareable){from}",
                irq.map(|i| format!("IRQ {i}, ")).unwrap_or_default()
            );
            // A line on a device that has MSI-X is the right mode only if the driver did not
            // ask for messages; without its INF nothing says whether it did (rows 13, 28).
            if *source == ModeSource::Resources && ctx.f.inf().is_empty() && ctx.table.is_some() {
                return step_answer(
                    1,
                    Verdict::CannotTell {
                        missing: "the driver's INF: whether it asks for message interrupts (MSISupported=1 in an AddReg of its .HW section); the device has MSI-X, so a line is the mode it should have only if the INF asks for none".into(),
                    },
                    format!("{what}, on a device with an MSI-X capability"),
                    proof,
                    None,
                );
            }
            holds(1, what, proof)
        }
    }
}

fn step2(ctx: &Ctx<'_>) -> Answer {
    let f = ctx.f;
    let resources: Vec<&Event> = f.resources().collect();
    if resources.is_empty() {
        if let Some((m, proof, ModeSource::LinuxIrqs)) = &ctx.mode {
            let n = proof.len();
            return holds(
                2,
                match m {
                    InterruptMode::Message => {
                        format!("Linux allocated message interrupts: {n} per-vector handler(s)")
                    }
                    InterruptMode::Intx => {
                        "Linux uses the device's line (one shared handler)".to_string()
                    }
                },
                proof.iter().copied().take(4).collect(),
            );
        }
        if let Some(d) = f.record()
            && !d.msix_enabled
            && d.line_raised > 0
            && d.messages.is_empty()
        {
            return holds(
                2,
                format!(
                    "the device signalled its INTx line {} time(s) with MSI-X off (device record)",
                    d.line_raised
                ),
                Vec::new(),
            );
        }
        if let Some(d) = f.record()
            && d.msix_enabled
        {
            let programmed = f
                .trails
                .iter()
                .flat_map(|t| t.msix_entries.iter())
                .filter(|e| matches!(e.kind, EventKind::MsixEntry { address, .. } if address != 0))
                .count();
            if programmed > 0 {
                return holds(
                    2,
                    format!(
                        "the OS programmed {programmed} MSI-X table entr{} and enabled MSI-X (device record)",
                        if programmed == 1 { "y" } else { "ies" }
                    ),
                    Vec::new(),
                );
            }
        }
        return cannot(
            2,
            "no interrupt resource was logged",
            "the translated interrupt resources: the driver's INT: lines (checklist 1.2), or WinDbg !devnode / !cmreslist / dt nt!_CM_RESOURCE_LIST",
        );
    }
    let proof: Vec<&Event> = resources
        .iter()
        .copied()
        .filter(|e| matches!(e.kind, EventKind::ResourceAssigned { raw: false, .. }))
        .take(4)
        .collect();
    let proof = if proof.is_empty() {
        resources.iter().copied().take(4).collect()
    } else {
        proof
    };
    if f.resources_only_from_windbg() {
        // Step 2 is the driver's own dump (checklist 1.2): WinDbg shows what Windows assigned,
        // not what the driver read of it (row 24) or whether its prints reach a capture (25).
        let what = match ctx.granted {
            Some(n) => format!("Windows assigned {n} message(s) (WinDbg)"),
            None => "Windows assigned a line interrupt (WinDbg)".to_string(),
        };
        return step_answer(
            2,
            Verdict::CannotTell {
                missing: "the driver's own dump of its translated resources: its INT: lines in a DbgView capture (checklist 1.2)".into(),
            },
            format!("{what}; what the driver read of its resources is not in the evidence"),
            proof,
            None,
        );
    }
    let Some(granted) = ctx.granted else {
        return holds(
            2,
            "no CM_RESOURCE_INTERRUPT_MESSAGE flag: INTx, the driver must read ISR status in its ISR",
            proof,
        );
    };
    if ctx.queues.is_empty() {
        return holds(
            2,
            format!("{granted} message(s) granted; the number of queues is not in the evidence"),
            proof,
        );
    }
    let needed = ctx.queues.len() as u32 + 1;
    let finding = if granted >= needed {
        format!(
            "{granted} message(s) granted >= 1 + {} queues: a vector per queue plus config is possible",
            ctx.queues.len()
        )
    } else {
        format!(
            "{granted} message(s) granted < 1 + {} queues = {needed}: the driver must share (all on message 0)",
            ctx.queues.len()
        )
    };
    holds(2, finding, proof)
}

fn step3(ctx: &Ctx<'_>) -> Answer {
    let f = ctx.f;
    let objects = f.objects();
    if objects.is_empty() {
        if let Some((InterruptMode::Message, proof, ModeSource::LinuxIrqs)) = &ctx.mode {
            let names: BTreeSet<String> = f
                .irq_rows()
                .iter()
                .filter(|r| crate::facts::linux_row_mode(r) == Some(InterruptMode::Message))
                .map(|r| r.name.clone())
                .collect();
            return holds(
                3,
                format!(
                    "Linux connected per-vector handlers: {}",
                    names.into_iter().collect::<Vec<_>>().join(", ")
                ),
                proof.iter().copied().take(4).collect(),
            );
        }
        return cannot(
            3,
            "no connected interrupt object was logged",
            "the WDFINT: line printed for each interrupt object after start (checklist 2.1; on KMDF 1.9 in EvtDevicePrepareHardware or EvtInterruptEnable)",
        );
    }
    let proof: Vec<&Event> = objects.iter().copied().take(4).collect();
    if ctx.line()
        || objects.iter().all(|e| {
            matches!(
                e.kind,
                EventKind::InterruptConnected {
                    message_signaled: false,
                    ..
                }
            )
        })
    {
        let wrong: Vec<&Event> = objects
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
        if ctx.line() && !wrong.is_empty() {
            return broken(
                3,
                "an object reports MessageSignaled=1 although the resources are a line",
                wrong,
                "connect exactly the resources the PnP manager assigned",
            );
        }
        return holds(3, "one line interrupt object (MessageSignaled=0)", proof);
    }
    let numbers: BTreeSet<u32> = f.message_numbers();
    let list: Vec<String> = numbers.iter().map(u32::to_string).collect();
    holds(
        3,
        format!(
            "connected MessageNumber {} (MessageSignaled=1); Vector values differ, as expected",
            list.join(", ")
        ),
        proof,
    )
}

fn step4(ctx: &Ctx<'_>) -> Answer {
    let f = ctx.f;
    let cap = f.last_cap();
    let record = f.record().filter(|_| cap.is_none());
    let (enabled, masked, size, proof): (bool, bool, u16, Vec<&Event>) = match (cap, record) {
        (Some((en, fm, size, e)), _) => {
            let mut p = vec![e];
            p.extend(f.commands().into_iter().map(|c| c.1).take(1));
            (en, fm, size, p)
        }
        (None, Some(d)) => (d.msix_enabled, d.function_masked, 0, Vec::new()),
        (None, None) => {
            return cannot(
                4,
                "no view of the device's MSI-X capability",
                "WinDbg !pci of the device (MSI-X capability and Enable) or lspci -vvv",
            );
        }
    };
    let state = if size > 0 {
        format!(
            "MSI-X TableSize={size} Enable={} FunctionMask={}",
            enabled as u8, masked as u8
        )
    } else {
        format!(
            "MSI-X Enable={} FunctionMask={}",
            enabled as u8, masked as u8
        )
    };
    match &ctx.mode {
        Some((InterruptMode::Message, ..)) if enabled && !masked => holds(4, state, proof),
        Some((InterruptMode::Message, ..)) if masked => broken(
            4,
            format!(
                "message interrupts granted but {state}: the function mask holds every message pending"
            ),
            proof,
            "clear the MSI-X function mask once the table is programmed",
        ),
        Some((InterruptMode::Message, ..)) => broken(
            4,
            format!("message interrupts granted but {state}: no message can be sent"),
            proof,
            "the bus driver enables MSI-X when the device starts with message resources; find why the device did not take the Enable bit",
        ),
        Some((InterruptMode::Intx, ..)) if enabled => broken(
            4,
            format!("INTx granted but {state}"),
            proof,
            "keep MSI-X disabled when the OS granted a line interrupt",
        ),
        Some((InterruptMode::Intx, ..)) => holds(4, format!("{state}: INTx, as granted"), proof),
        None if enabled => holds(
            4,
            format!("{state} (the assigned mode itself was not logged)"),
            proof,
        ),
        None => cannot(
            4,
            &format!("{state}, but whether message interrupts were granted is unknown"),
            "the interrupt resources (INT: lines or !devnode)",
        ),
    }
}

fn step5(ctx: &Ctx<'_>) -> Answer {
    let f = ctx.f;
    let writes = f.writes();
    let proof: Vec<&Event> = writes.iter().map(|o| &o.event).take(8).collect();
    if ctx.line() {
        // On a line the driver must program no vector (row 26); only its own log shows that.
        if matches!(ctx.mode, Some((_, _, ModeSource::Resources))) && !f.accesses_logged() {
            return cannot(
                5,
                "INTx: nothing shows whether the driver left the vector selectors alone",
                "the driver's VIRTIO: vector selector writes with their read-back (checklist 5.3): on a line it programs none",
            );
        }
        return holds(5, "INTx: no vectors to program", proof);
    }
    let unnamed = f.unnamed_vector_writes();
    if writes.is_empty() && !unnamed.is_empty() {
        return holds(
            5,
            format!(
                "{} queue_msix_vector write(s) (the driver's prints do not name the queues)",
                unnamed.len()
            ),
            unnamed.iter().map(|u| u.3).take(8).collect(),
        );
    }
    if writes.is_empty() {
        if ctx.message() && f.accesses_logged() {
            return broken(
                5,
                "message interrupts granted but no vector selector was written",
                ctx.mode_proof(),
                "program msix_config and every queue_msix_vector after the last reset, before DRIVER_OK",
            );
        }
        return cannot(
            5,
            "no vector selector write was logged",
            "the VIRTIO: msix_config / queue_msix_vector write lines with their read-back (checklist 5.3)",
        );
    }
    let intended = f.intended_writes();
    holds(
        5,
        format!(
            "{} selector write(s), each a granted MessageNumber",
            intended.len()
        ),
        proof,
    )
}

fn step6(ctx: &Ctx<'_>) -> Answer {
    let f = ctx.f;
    // The last value each selector holds, per source; a reset after it means 0xFFFF.
    let mut states: Vec<(Selector, u16, &Event, bool)> = Vec::new();
    for (t, ops) in f.ops_by_trail() {
        let mut last: std::collections::BTreeMap<Selector, &crate::trail::SelOp> =
            Default::default();
        for o in &ops {
            last.insert(o.selector, o);
        }
        for (sel, o) in last {
            let reset = t.resets.iter().any(|(p, _)| *p > o.pos);
            states.push((
                sel,
                if reset { NO_VECTOR } else { o.value },
                &o.event,
                reset,
            ));
        }
    }
    // Writes whose queue is not named: each is judged on its own read-back.
    let unnamed = f.unnamed_vector_writes();
    let mut proof: Vec<&Event> = states.iter().map(|s| s.2).take(8).collect();
    proof.extend(unnamed.iter().map(|u| u.3).take(8));
    if ctx.line() {
        let all_none = states.iter().all(|s| s.1 == NO_VECTOR);
        return holds(
            6,
            if all_none {
                "INTx: every selector reads 0xFFFF, as expected"
            } else {
                "INTx: selectors are not used"
            },
            proof,
        );
    }
    if states.is_empty() && unnamed.is_empty() {
        return cannot(
            6,
            "no vector selector read-back was logged",
            "the read-back of msix_config and every queue_msix_vector while running (checklist 3.1, 3.2)",
        );
    }
    if !ctx.message() {
        return cannot(
            6,
            "selectors were read back, but the interrupt mode is unknown",
            "the interrupt resources (INT: lines)",
        );
    }
    let bad: Vec<&(Selector, u16, &Event, bool)> =
        states.iter().filter(|s| s.1 == NO_VECTOR && !s.3).collect();
    let refused: Vec<&(u16, u16, bool, &Event)> = unnamed
        .iter()
        .filter(|u| u.1 == NO_VECTOR && u.0 != NO_VECTOR && !u.2)
        .collect();
    if !bad.is_empty() || !refused.is_empty() {
        let mut names: Vec<String> = bad.iter().map(|s| selector_name(s.0)).collect();
        names.extend(refused.iter().map(|u| {
            format!(
                "a queue_msix_vector written 0x{:04x} (queue not named)",
                u.0
            )
        }));
        let mut proof: Vec<&Event> = bad.iter().map(|s| s.2).collect();
        proof.extend(refused.iter().map(|u| u.3));
        return broken(
            6,
            format!(
                "{} read(s) 0xFFFF while running: the device refused the index (see step 5)",
                names.join(", ")
            ),
            proof,
            "program only indices below the MSI-X table size and within the grant; fall back to message 0",
        );
    }
    let distinct: BTreeSet<Selector> = states.iter().map(|s| s.0).collect();
    let finding = match unnamed.len() {
        0 => format!("{} selector(s) read back as programmed", distinct.len()),
        n => format!(
            "{} selector(s) and {n} queue vector write(s) naming no queue read back as programmed",
            distinct.len()
        ),
    };
    holds(6, finding, proof)
}

fn step7(ctx: &Ctx<'_>) -> Answer {
    let f = ctx.f;
    if let Some(storm) = &ctx.storm {
        return broken(
            7,
            storm.summary.clone(),
            storm.proof.iter().collect(),
            "acknowledge the line: read ISR status first thing in the INTx ISR",
        );
    }
    let counters = f.counters();
    let requests = f.requests();
    let record = f.record();
    let mut proof: Vec<&Event> = counters.values().map(|c| c.2).collect();
    if let Some((sub, done, p)) = &requests {
        proof.extend(p.iter().copied());
        if done < sub {
            let mut finding = format!("{done}/{sub} requests completed through interrupts");
            if let Some(d) = record
                && let Some((q, e)) = d.no_vector_queues.iter().next()
            {
                finding.push_str(&format!(
                    "; the device had completions on queue {q} to signal but its vector was 0xFFFF"
                ));
                proof.push(e);
            }
            return broken(
                7,
                finding,
                proof,
                "find the first broken link above; the device completed requests whose interrupts never arrived",
            );
        }
    }
    if !counters.is_empty() {
        let isr: u64 = counters.values().map(|c| c.0).sum();
        let dpc: u64 = counters.values().map(|c| c.1).sum();
        if isr == 0 {
            return broken(
                7,
                "no ISR ever ran: every ISR count is 0",
                proof,
                "find the first broken link above",
            );
        }
        if dpc == 0 {
            return broken(
                7,
                format!("ISRs ran ({isr}) but no DPC was ever queued"),
                proof,
                "queue the DPC from the ISR when it claims the interrupt",
            );
        }
        let mut finding = match &requests {
            Some((sub, done, _)) => format!("{done}/{sub} requests completed through interrupts"),
            None => "interrupts arrive and DPCs run".to_string(),
        };
        let used: Vec<String> = counters
            .iter()
            .filter(|(_, c)| c.0 > 0)
            .map(|(m, c)| match m {
                Some(m) => format!("message {m}: isr={} dpc={}", c.0, c.1),
                None => format!("INTx: isr={} dpc={}", c.0, c.1),
            })
            .collect();
        finding.push_str(&format!("; {}", used.join(", ")));
        return holds(7, finding, proof);
    }
    if let Some(d) = record {
        let used: u64 = d.used.values().sum();
        let sent: u64 = d.messages.values().sum::<u64>() + d.line_raised;
        if used > 0 && sent == 0 {
            return broken(
                7,
                format!("the device published {used} used buffer(s) but sent no interrupt"),
                proof,
                "find the first broken link above",
            );
        }
        if used > 0 {
            return holds(
                7,
                format!(
                    "the device published {used} used buffer(s) and signalled {sent} interrupt(s)"
                ),
                proof,
            );
        }
    }
    let rows = f.irq_rows();
    if !rows.is_empty() {
        let queue_rows: Vec<&&crate::trail::IrqRow> = rows
            .iter()
            .filter(|r| !r.name.ends_with("-config"))
            .collect();
        let moved: Vec<&Event> = queue_rows
            .iter()
            .filter(|r| r.snapshots > 1 && r.last.0 > r.first.0)
            .flat_map(|r| [&r.first.1, &r.last.1])
            .collect();
        if !moved.is_empty() {
            return holds(
                7,
                "virtio interrupt counts in /proc/interrupts increased between snapshots",
                moved,
            );
        }
        if queue_rows.iter().any(|r| r.last.0 > 0) {
            return holds(
                7,
                "virtio queue interrupts have been counted (two snapshots around known I/O show them move)",
                queue_rows.iter().map(|r| &r.last.1).take(4).collect(),
            );
        }
        if !queue_rows.is_empty() {
            return broken(
                7,
                "every virtio queue interrupt count in /proc/interrupts is 0",
                queue_rows.iter().map(|r| &r.last.1).take(4).collect(),
                "find the first broken link above",
            );
        }
    }
    cannot(
        7,
        "no interrupt counters",
        "COUNTERS: summaries (checklist 5.4), IO: request counts, or two /proc/interrupts snapshots around known I/O",
    )
}
