//! Driver-side catalogue rows 6, 8, 9, 10, 11 and 12.

use super::facts::{Facts, selector_name};
use super::signals::{
    IntxIsr, StormSource, all_ones_commands, intx_storm, mapped_messages, message_counters,
    messages_seen, same_snapshot,
};
use super::{Finding, Verdict, cannot, finding, proof};
use crate::text::{contains_ci, kv_num};
use std::collections::BTreeSet;
use virq_events::{Event, EventKind, InterruptMode, NO_VECTOR, Selector};

const MISSING_ISR_SAMPLES: &str = "`ISR:` samples (docs/log-formats.md line 8: MessageSignaled, \
     MessageID, whether ISR status was read, the return value)";

/// Row 6: the vector programmed (after a rebalance) differs from the message the ISR sees.
pub fn row6_message_changed(events: &[Event]) -> Finding {
    let f = Facts::new(events);
    let title = "Message number changed after a rebalance: selectors and ISR disagree";
    let fix = "Cache each interrupt object's MessageNumber at creation (WdfInterruptGetInfo) and \
               re-program every selector from it after every restart or rebalance.";
    let row = |verdict, symptom: String, p| finding(5, Some(6), title, verdict, symptom, p, fix);
    if f.mode() == Some(InterruptMode::Intx) {
        return row(
            Verdict::Holds,
            "INTx: no message numbers to lose".to_string(),
            Vec::new(),
        );
    }
    if let Some((w, m, e)) = written_other_message(events, &f) {
        return row(
            Verdict::Broken,
            format!(
                "a selector was written with message {w} while the print says its interrupt                  object's MessageNumber is {m}: the number changed between creation and                  programming"
            ),
            proof([e]),
        );
    }
    let seen = messages_seen(&f);
    let states = f.selector_states();
    let programmed: BTreeSet<u32> = states
        .values()
        .map(|s| s.current())
        .filter(|v| *v != NO_VECTOR)
        .map(u32::from)
        .collect();
    if seen.is_empty() || programmed.is_empty() {
        return row(
            cannot(
                "both the selectors' read-backs (`VIRTIO:` lines) and the messages the ISR runs \
                 on (`COUNTERS:` with isr > 0, or `ISR:` samples)",
            ),
            "the messages programmed and the messages the ISR sees are not both known".to_string(),
            Vec::new(),
        );
    }
    let config_known = states.contains_key(&Selector::MsixConfig);
    let unexplained: Vec<(u32, &Event)> = seen
        .iter()
        .filter(|(m, _)| !programmed.contains(m))
        .map(|(m, e)| (*m, *e))
        .collect();
    let rebalances = f
        .resources
        .windows(2)
        .any(|w| resource_restart(&f, w[0], w[1]));
    let note = if rebalances {
        " (the resources were assigned more than once: a restart or rebalance)"
    } else {
        ""
    };
    let list = |s: &BTreeSet<u32>| {
        s.iter()
            .map(|m| m.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    if unexplained.is_empty() {
        return row(
            Verdict::Holds,
            format!(
                "the ISR runs on message(s) {}, all programmed into a selector{note}",
                list(&seen.keys().copied().collect())
            ),
            proof(seen.values().copied().take(4)),
        );
    }
    if !config_known {
        return row(
            cannot("the `VIRTIO: msix_config write=... read=...` line (the config vector)"),
            format!(
                "the ISR runs on message {} which no logged selector holds, but msix_config was \
                 not logged",
                unexplained[0].0
            ),
            Vec::new(),
        );
    }
    let p: Vec<&Event> = unexplained
        .iter()
        .map(|u| u.1)
        .chain(states.values().map(|s| s.last.event))
        .collect();
    row(
        Verdict::Broken,
        format!(
            "the ISR runs on message(s) {} but the selectors hold {}{note}: the vectors were \
             programmed from stale message numbers",
            unexplained
                .iter()
                .map(|u| u.0.to_string())
                .collect::<Vec<_>>()
                .join(", "),
            list(&programmed)
        ),
        proof(p),
    )
}

/// Two resource prints with a `device_status` reset between them: the device was restarted.
fn resource_restart(f: &Facts<'_>, a: &Event, b: &Event) -> bool {
    f.resets.iter().any(|(_, r)| r.seq > a.seq && r.seq < b.seq)
}

/// A selector write whose value is a real, granted message number (not an APIC vector, not
/// beyond the grant) but not the `MessageNumber` its own print says it was meant for.
fn written_other_message<'a>(events: &'a [Event], f: &Facts<'a>) -> Option<(u16, u32, &'a Event)> {
    let vectors: Vec<u32> = f
        .connected
        .iter()
        .filter_map(|e| match e.kind {
            EventKind::InterruptConnected { vector, .. } => Some(vector),
            _ => None,
        })
        .collect();
    let granted = f
        .connected
        .iter()
        .filter(|e| {
            matches!(
                e.kind,
                EventKind::InterruptConnected {
                    message_signaled: true,
                    ..
                }
            )
        })
        .count() as u32;
    events
        .windows(2)
        .find_map(|w| match (&w[0].kind, &w[1].kind) {
            (
                EventKind::VectorWritten {
                    selector, written, ..
                },
                EventKind::VectorMessage {
                    selector: s2,
                    message_number,
                },
            ) if selector == s2
                && *written != NO_VECTOR
                && u32::from(*written) != *message_number
                && u32::from(*written) < granted
                && *message_number < granted
                && !vectors.contains(&u32::from(*written)) =>
            {
                Some((*written, *message_number, &w[0]))
            }
            _ => None,
        })
}

/// Row 8: the ISR indexes per-message state with a message ID beyond the mapped messages.
pub fn row8_unmapped_message_id(events: &[Event]) -> Finding {
    let f = Facts::new(events);
    let title = "ISR sees a message ID beyond the mapped messages";
    let fix = "Bound-check the MessageID before indexing per-message state; ignore IDs >= the \
               number of mapped messages.";
    let row = |verdict, symptom: String, p| finding(7, Some(8), title, verdict, symptom, p, fix);
    if f.mode() == Some(InterruptMode::Intx) {
        return row(
            Verdict::Holds,
            "INTx: there are no message IDs".to_string(),
            Vec::new(),
        );
    }
    if let Some(found) = per_message_state_too_small(&f) {
        return row(Verdict::Broken, found.0, found.1);
    }
    let seen = messages_seen(&f);
    let Some(mapped) = mapped_messages(&f) else {
        return row(
            cannot("the message grant (`INT: MSI/MSI-X ... MessageCount=`) or `WDFINT:` lines"),
            "the number of mapped messages is unknown".to_string(),
            Vec::new(),
        );
    };
    if seen.is_empty() {
        return row(
            cannot("the messages the ISR runs on (`COUNTERS:` with isr > 0, or `ISR:` samples)"),
            format!("{mapped} message(s) mapped; no ISR activity per message was logged"),
            Vec::new(),
        );
    }
    let beyond: Vec<(u32, &Event)> = seen
        .iter()
        .filter(|(m, _)| **m >= mapped)
        .map(|(m, e)| (*m, *e))
        .collect();
    if beyond.is_empty() {
        return row(
            Verdict::Holds,
            format!("every message ID the ISR sees is below the {mapped} mapped"),
            proof(seen.values().copied().take(3)),
        );
    }
    row(
        Verdict::Broken,
        format!(
            "the ISR ran on message ID {} with only {mapped} message(s) mapped",
            beyond
                .iter()
                .map(|b| b.0.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
        proof(
            beyond
                .iter()
                .map(|b| b.1)
                .chain(f.message_resources().into_iter().take(1)),
        ),
    )
}

/// The driver's own per-message state (one `COUNTERS: MessageNumber=` line per message it
/// keeps) is smaller than the message-signalled objects connected: the ISR for a message past
/// it indexes state that does not exist. A crash line in the capture is quoted with it.
fn per_message_state_too_small<'a>(f: &Facts<'a>) -> Option<(String, Vec<Event>)> {
    let mut tracked: Vec<u32> = f
        .counters
        .iter()
        .filter_map(|e| match e.kind {
            EventKind::CounterSummary {
                message: Some(m), ..
            } => Some(m),
            _ => None,
        })
        .collect();
    tracked.sort_unstable();
    tracked.dedup();
    let connected = f
        .connected
        .iter()
        .filter(|e| {
            matches!(
                e.kind,
                EventKind::InterruptConnected {
                    message_signaled: true,
                    vector,
                    ..
                } if vector != 0
            )
        })
        .count();
    // Counters for messages 0..k only (a driver may print just the busy ones otherwise), and
    // the crash the catalogue names as the symptom.
    let contiguous = tracked.iter().enumerate().all(|(i, m)| *m == i as u32);
    if tracked.is_empty() || tracked.len() >= connected || !contiguous {
        return None;
    }
    let crash = f.logs.iter().copied().find(|e| match &e.kind {
        EventKind::LogLine { text } => {
            text.contains("BUGCHECK") || text.contains("BugCheck") || text.contains("bugcheck")
        }
        _ => false,
    })?;
    let crash = Some(crash);
    let symptom = format!(
        "the driver keeps per-message state (counters) for {} message(s) but {connected}          message-signalled interrupt objects are connected{}",
        tracked.len(),
        if crash.is_some() {
            ", and the machine crashed in an ISR"
        } else {
            ""
        }
    );
    let p = proof(
        f.counters
            .iter()
            .copied()
            .take(2)
            .chain(f.connected.iter().copied().take(3))
            .chain(crash),
    );
    Some((symptom, p))
}

/// Row 9: message ID 0 treated as "not a message interrupt".
pub fn row9_message_zero(events: &[Event]) -> Finding {
    let f = Facts::new(events);
    let title = "Message 0 treated as \"not a message interrupt\"";
    let fix = "Tell message interrupts apart by MessageSignaled (WdfInterruptGetInfo), never by \
               MessageID != 0; message 0 is a message like any other.";
    let row = |verdict, symptom: String, p| finding(7, Some(9), title, verdict, symptom, p, fix);
    if f.mode() == Some(InterruptMode::Intx) {
        return row(
            Verdict::Holds,
            "INTx: no message interrupts".to_string(),
            Vec::new(),
        );
    }
    let zero_samples: Vec<&Event> = f
        .isr_runs
        .iter()
        .copied()
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
    let refused: Vec<&Event> = zero_samples
        .iter()
        .copied()
        .filter(|e| matches!(e.kind, EventKind::IsrRan { claimed: false, .. }))
        .collect();
    if !refused.is_empty() {
        return row(
            Verdict::Broken,
            format!(
                "the ISR returned FALSE {} time(s) for MessageID 0 with MessageSignaled=1",
                refused.len()
            ),
            proof(refused.into_iter().take(4)),
        );
    }
    if !zero_samples.is_empty() {
        return row(
            Verdict::Holds,
            "the ISR claims interrupts on message 0".to_string(),
            proof(zero_samples.into_iter().take(2)),
        );
    }
    // The checklist's counters (5.4) count every ISR entry: an ISR that ran on message 0 and
    // never queued a DPC there, while the other messages did, refused message 0.
    let counters = message_counters(&f);
    if let Some(&(isr, dpc, e)) = counters.get(&0) {
        let others_ok = counters
            .iter()
            .any(|(m, (i, d, _))| *m != 0 && *i > 0 && *d > 0);
        if isr > 0 && dpc == 0 && others_ok {
            let other: Vec<&Event> = counters
                .iter()
                .filter(|(m, _)| **m != 0)
                .map(|(_, c)| c.2)
                .take(1)
                .collect();
            return row(
                Verdict::Broken,
                format!(
                    "the ISR ran {isr} time(s) on message 0 and never queued a DPC there, while \
                     other messages did: it does not treat message 0 as its own"
                ),
                proof(std::iter::once(e).chain(other)),
            );
        }
        if dpc > 0 {
            return row(
                Verdict::Holds,
                format!("message 0 queued {dpc} DPC(s): the ISR claims it"),
                proof([e]),
            );
        }
    }
    row(
        cannot(MISSING_ISR_SAMPLES),
        "nothing shows what the ISR returned for message 0 (a counter of 0 cannot tell \"never \
         fired\" from \"fired and refused\")"
            .to_string(),
        Vec::new(),
    )
}

/// Row 10: a queue enabled after a failed vector read-back, then setup retried without reset.
pub fn row10_enable_before_verified(events: &[Event]) -> Finding {
    let f = Facts::new(events);
    let title = "Queue enabled before every vector read back right";
    let fix = "Enable queues only after the whole vector plan reads back as written; when a plan \
               fails, reset the device before trying the next one.";
    let row = |verdict, symptom: String, p| finding(6, Some(10), title, verdict, symptom, p, fix);
    let failed: Vec<_> = f
        .accesses
        .iter()
        .filter(|a| a.intended() && a.written != Some(a.value))
        .collect();
    if f.accesses.iter().all(|a| a.written.is_none()) {
        return row(
            cannot("the `VIRTIO:` vector write lines (checklist 5.3)"),
            "no vector write was logged".to_string(),
            Vec::new(),
        );
    }
    let Some(first_fail) = failed.first() else {
        return row(
            Verdict::Holds,
            "every vector read back as written: no plan failed, so no queue ran ahead of one"
                .to_string(),
            Vec::new(),
        );
    };
    if f.queue_enables.is_empty() {
        return row(
            cannot("`VIRTIO: queue=N queue_enable write=1` lines (docs/log-formats.md line 9)"),
            format!(
                "{} read back 0x{:04x}; whether a queue was already enabled is not logged",
                selector_name(first_fail.selector),
                first_fail.value
            ),
            proof([first_fail.event]),
        );
    }
    // An enable at or before a failed read-back, with no reset between the enable and the
    // failure, means a live queue was left behind by a failed plan.
    let mut p: Vec<&Event> = Vec::new();
    for fail in &failed {
        for (i, en) in &f.queue_enables {
            let reset_between = f.resets.iter().any(|(r, _)| r > i && *r < fail.idx);
            if *i < fail.idx && !reset_between {
                p.extend([*en, fail.event]);
            }
        }
    }
    if p.is_empty() {
        return row(
            Verdict::Holds,
            "queues were enabled only after the vectors read back right (or after a reset)"
                .to_string(),
            proof(f.queue_enables.iter().map(|q| q.1).take(2)),
        );
    }
    row(
        Verdict::Broken,
        "a queue was enabled while the vector plan was still failing read-back, and setup went \
         on without a reset"
            .to_string(),
        proof(p),
    )
}

/// Row 11: a shared INTx line where a handler says not-mine without reading its ISR status.
pub fn row11_shared_line(events: &[Event]) -> Finding {
    let f = Facts::new(events);
    let title = "Shared INTx line: a handler returns not-mine without reading its ISR status";
    let fix = "Every INTx handler on a shared line reads its own device's ISR status and claims \
               the interrupt when it is non-zero.";
    let row = |verdict, symptom: String, p| finding(7, Some(11), title, verdict, symptom, p, fix);
    if f.mode() == Some(InterruptMode::Message) && f.intx_status.is_empty() {
        return row(
            Verdict::Holds,
            "message interrupts: no shared line".to_string(),
            Vec::new(),
        );
    }
    let isr = IntxIsr::new(&f);
    let storm = intx_storm(&f);
    let Some(storm) = storm else {
        if isr.samples > 0 || intx_quiet(&f) {
            return row(
                Verdict::Holds,
                "no storm on the line".to_string(),
                Vec::new(),
            );
        }
        return row(
            cannot("INTx counters, /proc/interrupts snapshots or the kernel log"),
            "nothing shows whether the line storms".to_string(),
            Vec::new(),
        );
    };
    if !isr.notmine_unread.is_empty() {
        return row(
            Verdict::Broken,
            format!(
                "{}; the ISR returns not-mine without reading ISR status, so nobody \
                 acknowledges the device and the other handlers on the line starve",
                storm.summary
            ),
            proof(
                storm
                    .proof
                    .into_iter()
                    .chain(isr.notmine_unread.into_iter().take(2)),
            ),
        );
    }
    // Our ISR reads 0 and says not-mine, and our own device does not hold the line: another
    // handler on the line is not acknowledging its device.
    let ours_low: Vec<&Event> = f
        .intx_status
        .iter()
        .copied()
        .filter(|e| matches!(e.kind, EventKind::IntxStatus { pending: false }))
        .collect();
    if isr.claimed.is_empty() && !isr.read_zero.is_empty() && !ours_low.is_empty() {
        return row(
            Verdict::Broken,
            format!(
                "{}; this device's ISR reads 0 and its PCI Status shows no pending INTx: \
                 another device on the shared line is not being acknowledged",
                storm.summary
            ),
            proof(
                storm
                    .proof
                    .into_iter()
                    .chain(isr.read_zero.into_iter().take(1))
                    .chain(ours_low.into_iter().take(1)),
            ),
        );
    }
    if storm.source == StormSource::KernelLog {
        let shared: Vec<&Event> = f
            .irqs
            .iter()
            .copied()
            .filter(|e| match &e.kind {
                EventKind::IrqCount { irq, name, .. } => {
                    storm.irqs.contains(irq) && name.contains(',')
                }
                _ => false,
            })
            .collect();
        if !shared.is_empty() {
            return row(
                Verdict::Broken,
                format!(
                    "{} and the line is shared by several handlers: every one of them returned \
                     not-mine",
                    storm.summary
                ),
                proof(storm.proof.into_iter().chain(shared)),
            );
        }
    }
    if !isr.claimed.is_empty() || !isr.read_cause.is_empty() {
        return row(
            Verdict::Holds,
            "the ISR claims interrupts on the line (it does not answer not-mine)".to_string(),
            proof(isr.claimed.into_iter().chain(isr.read_cause).take(2)),
        );
    }
    row(
        cannot(MISSING_ISR_SAMPLES),
        format!(
            "{}, but not what the handlers returned, so this row cannot be told from row 1",
            storm.summary
        ),
        Vec::new(),
    )
}

/// INTx counters (or line rows) that move at a normal rate.
fn intx_quiet(f: &Facts<'_>) -> bool {
    super::signals::intx_counter_delta(f).is_some()
        || super::signals::line_rows(f).values().any(|v| v.len() > 1)
}

/// Row 12: surprise removal: ISR status 0xFF, config space all ones.
pub fn row12_surprise_removal(events: &[Event]) -> Finding {
    let f = Facts::new(events);
    let title = "Device gone (surprise removal): ISR status and config read all ones";
    let fix = "Treat an ISR status of 0xFF as not ours and stop the device (no DPC, no register \
               access) until PnP removes it.";
    let row = |verdict, symptom: String, p| finding(7, Some(12), title, verdict, symptom, p, fix);
    let isr = IntxIsr::new(&f);
    let status_ff: Vec<&Event> = f
        .logs
        .iter()
        .copied()
        .filter(|e| match &e.kind {
            EventKind::LogLine { text } => {
                contains_ci(text, "device_status")
                    && kv_num(text, "read").is_some_and(|v| v == 0xFF)
            }
            _ => false,
        })
        .collect();
    let config_ff = all_ones_commands(&f);
    let mut p: Vec<&Event> = isr.read_all_ones.clone();
    p.extend(status_ff);
    p.extend(config_ff);
    if !p.is_empty() {
        let claimed: Vec<&Event> = f
            .isr_runs
            .iter()
            .copied()
            .filter(|e| {
                matches!(
                    e.kind,
                    EventKind::IsrRan {
                        claimed: true,
                        isr_status: Some(0xFF),
                        ..
                    }
                )
            })
            .collect();
        let how = if claimed.is_empty() {
            "the device reads all ones: it is gone"
        } else {
            "the device reads all ones and the ISR still claimed 0xFF as its own"
        };
        return row(
            Verdict::Broken,
            how.to_string(),
            proof(p.into_iter().chain(claimed)),
        );
    }
    let present: Vec<&Event> = f
        .pci_commands
        .iter()
        .copied()
        .chain(isr.read_cause.iter().copied())
        .chain(isr.read_zero.iter().copied())
        .take(2)
        .collect();
    if !present.is_empty() {
        return row(
            Verdict::Holds,
            "the device answered register reads (no all-ones value)".to_string(),
            proof(present),
        );
    }
    row(
        cannot("ISR status reads (`VIRTIO: isr_status read=`, `ISR:` samples) or a `!pci` dump"),
        "no register value read from the device was logged".to_string(),
        Vec::new(),
    )
}

/// Whether an INTx pending reading shares a snapshot with an enabled MSI-X capability.
pub(crate) fn pending_with_enabled_msix<'a>(f: &Facts<'a>) -> Vec<(&'a Event, &'a Event)> {
    let caps: Vec<&Event> = f.caps.clone();
    f.intx_pending
        .iter()
        .filter_map(|st| {
            let cap = same_snapshot(st, &caps)?;
            matches!(
                cap.kind,
                EventKind::MsixCapabilitySeen { enabled: true, .. }
            )
            .then_some((*st, cap))
        })
        .collect()
}
