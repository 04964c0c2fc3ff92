//! Rows of the device and platform side (14-22, 29, 30) and the storm rows (1, 11, 19, 20,
//! 22), which a storm shows the same way on Windows and Linux and which only the ISR's own
//! reads, the device's record or the PCI Command word tell apart.

use virq_events::{Event, EventKind, NO_VECTOR};

use super::{Ctx, broken, one_of, ruled_out};
use crate::Answer;
use crate::facts::{LINUX_VIRTIO_HANDLERS, selector_name};

pub(crate) fn judge(ctx: &Ctx<'_>) -> Vec<Answer> {
    let mut out = storm_rows(ctx);
    out.extend(row14_line_with_msix(ctx));
    out.extend(row15_message_through_mask(ctx));
    out.extend(row16_enable_ignored(ctx));
    out.extend(row17_selector_after_reset(ctx));
    out.extend(row18_out_of_range_accepted(ctx));
    out.extend(row21_small_table(ctx));
    out.extend(row29_dma_without_bus_master(ctx));
    out.extend(row30_stale_pending(ctx));
    out
}

const STORM_ROWS: [u8; 5] = [1, 11, 19, 20, 22];

/// Who kept the line up: the driver's ISR (1, 11) or the device (19, 20, 22).
fn storm_rows(ctx: &Ctx<'_>) -> Vec<Answer> {
    let f = ctx.f;
    let mut out = Vec::new();
    let record = f.record();
    // The device's own record names device faults whether or not the run stormed.
    if let Some(d) = record {
        if let Some(p) = &d.line_while_disabled {
            out.extend(broken(
                20,
                "the device drove INTx high while PCI Command bit 10 (Interrupt Disable) was set",
                p,
            ));
        }
        if let Some(p) = &d.isr_not_cleared {
            out.extend(broken(22, "two ISR status reads in a row returned the same cause with no new cause between them: the read does not clear it", p));
        }
        if let Some(p) = &d.line_high_nothing_pending {
            if d.line_while_disabled.is_none() {
                out.extend(broken(19, "ISR status read 0 while the device kept its INTx line asserted: the line is high with nothing pending", p));
            }
        }
    }
    let foreign = f.foreign_storms();
    if ctx.storm.is_none()
        && let Some((handlers, e)) = foreign.first()
    {
        for n in STORM_ROWS {
            if out.iter().all(|a| a.check != crate::Check::Row(n)) {
                out.extend(ruled_out(
                    n,
                    format!(
                        "the line Linux gave up on is handled by {}, not by a virtio driver: it is not this device's link",
                        handlers.join(", ")
                    ),
                    [*e],
                ));
            }
        }
        return out;
    }
    if ctx.message() && ctx.storm.is_none() {
        for n in STORM_ROWS {
            if out.iter().all(|a| a.check != crate::Check::Row(n)) {
                out.extend(ruled_out(
                    n,
                    "message interrupts: no line to storm",
                    ctx.mode_proof(),
                ));
            }
        }
        return out;
    }
    let Some(storm) = &ctx.storm else {
        // A line that does not storm: the ISR acknowledges it.
        if ctx.line() {
            let quiet = f.counters().get(&None).copied();
            let proof: Vec<&Event> = quiet.map(|q| q.2).into_iter().collect();
            if !proof.is_empty() || record.is_some() {
                for n in STORM_ROWS {
                    if out.iter().all(|a| a.check != crate::Check::Row(n)) {
                        out.extend(ruled_out(
                            n,
                            "the INTx line does not storm",
                            proof.iter().copied(),
                        ));
                    }
                }
            }
        }
        return out;
    };
    let storm_proof: Vec<&Event> = storm.proof.iter().collect();
    let named = |out: &Vec<Answer>| out.iter().any(|a| a.verdict == crate::Verdict::Broken);
    // Linux told us whose handlers share the line.
    if let Some(handlers) = &storm.handlers {
        let virtio: Vec<&String> = handlers
            .iter()
            .filter(|h| LINUX_VIRTIO_HANDLERS.iter().any(|v| h.contains(v)))
            .collect();
        if !handlers.is_empty() && virtio.is_empty() {
            for n in STORM_ROWS {
                out.extend(ruled_out(
                    n,
                    format!(
                        "the line Linux gave up on is handled by {}, not by a virtio driver: it is not this device's link",
                        handlers.join(", ")
                    ),
                    storm_proof.iter().copied(),
                ));
            }
            return out;
        }
        if named(&out) {
            return out;
        }
        let disable = f.interrupt_disable();
        let shared = handlers.len() > virtio.len();
        out.extend(ruled_out(
            1,
            "Linux's virtio handler (vp_interrupt) reads ISR status on every interrupt",
            storm_proof.iter().copied(),
        ));
        if let Some((true, cmd)) = disable {
            out.extend(broken(20, format!("{}; the device's Command register has Interrupt Disable set (DisINTx+), yet the line fires", storm.summary), storm_proof.iter().copied().chain([cmd])));
            return out;
        }
        let mut rows: Vec<u8> = Vec::new();
        if shared {
            rows.push(11);
        }
        rows.push(19);
        if disable.is_none() {
            rows.push(20);
        }
        rows.push(22);
        out.extend(one_of(
            &rows,
            "the device's ISR status as the handler reads it (0 every time: the line is stuck, row 19; the same cause every time: not cleared, row 22), the Command register's Interrupt Disable bit (lspci DisINTx) for row 20, and for row 11 whether another handler on the line reads its own status",
            &format!("{}{}", storm.summary, if shared { format!("; the line is shared by {}", handlers.join(", ")) } else { String::new() }),
            storm_proof.iter().copied(),
        ));
        return out;
    }
    if named(&out) {
        // The record already named the device's fault; the driver read ISR status.
        if !out.iter().any(|a| a.check == crate::Check::Row(1)) {
            out.extend(ruled_out(
                1,
                "the ISR reads ISR status",
                storm_proof.iter().copied(),
            ));
        }
        return out;
    }
    let samples =
        |pick: fn(&crate::trail::IsrSamples) -> &crate::kept::Kept<Event>| -> Vec<&Event> {
            f.trails.iter().flat_map(|t| pick(&t.isr).iter()).collect()
        };
    let claimed_unread = samples(|s| &s.claimed_unread);
    let notmine_unread = samples(|s| &s.notmine_unread);
    if !notmine_unread.is_empty() {
        out.extend(broken(
            11,
            format!("{}; the ISR answered \"not mine\" without reading ISR status, so nobody acknowledges the line", storm.summary),
            storm_proof.iter().copied().chain(notmine_unread.into_iter().take(3)),
        ));
        return out;
    }
    let record_reads = record.map(|_| {
        f.trails
            .iter()
            .filter(|t| t.device.present)
            .flat_map(|t| t.isr.reads.iter())
            .filter(|(_, _, e)| matches!(e.origin, virq_events::Origin::Run))
            .count()
    });
    if !claimed_unread.is_empty() || record_reads == Some(0) {
        out.extend(broken(
            1,
            format!("{}; the INTx ISR claims the interrupt without ever reading ISR status, so the level line is never deasserted", storm.summary),
            storm_proof.iter().copied().chain(claimed_unread.into_iter().take(3)),
        ));
        return out;
    }
    let tail: Vec<(u8, &Event)> = f.isr_reads().into_iter().rev().collect();
    if tail.len() >= 2 {
        out.extend(ruled_out(
            1,
            "the ISR reads ISR status",
            tail.iter().map(|r| r.1).take(1),
        ));
        if tail.iter().all(|(v, _)| *v == 0) {
            match f.interrupt_disable() {
                Some((true, cmd)) => out.extend(broken(
                    20,
                    format!("{}; ISR status reads 0 and Interrupt Disable is set, yet the line keeps firing", storm.summary),
                    storm_proof.iter().copied().chain([cmd]).chain(tail.iter().map(|r| r.1).take(2)),
                )),
                Some((false, cmd)) => out.extend(broken(
                    19,
                    format!("{}; every ISR status read returns 0 while the line stays high: the device holds the line with nothing pending", storm.summary),
                    storm_proof.iter().copied().chain(tail.iter().map(|r| r.1).take(2)).chain([cmd]),
                )),
                None => out.extend(one_of(
                    &[19, 20],
                    "the device's PCI Command register (!pci Cmd / lspci Control: InterruptDis / DisINTx): set means row 20",
                    &format!("{}; every ISR status read returns 0 while the line stays high", storm.summary),
                    storm_proof.iter().copied().chain(tail.iter().map(|r| r.1).take(2)),
                )),
            }
            return out;
        }
        if tail.iter().all(|(v, _)| *v != 0 && *v != 0xFF) {
            out.extend(broken(
                22,
                format!(
                    "{}; consecutive ISR status reads keep returning 0x{:02x}: the read does not clear it",
                    storm.summary, tail[0].0
                ),
                storm_proof.iter().copied().chain(tail.iter().map(|r| r.1).take(2)),
            ));
            return out;
        }
    }
    out.extend(one_of(
        &STORM_ROWS,
        "the ISR's own samples (docs/log-formats.md line 8: IsrStatusRead and Return tell rows 1 and 11 apart), the ISR status values it reads (always 0: row 19 or 20; the same cause every time: row 22) and the Command register's Interrupt Disable bit (row 20)",
        &storm.summary,
        storm_proof.iter().copied(),
    ));
    out
}

fn row14_line_with_msix(ctx: &Ctx<'_>) -> Option<Answer> {
    let f = ctx.f;
    if let Some(d) = f.record() {
        if let Some(p) = &d.line_with_msix {
            return broken(
                14,
                "the device drove its INTx pin high while MSI-X was enabled",
                p,
            );
        }
        if d.msix_enabled || d.messages.values().sum::<u64>() > 0 {
            return ruled_out(
                14,
                "the device's record shows no line raised while MSI-X was enabled",
                [],
            );
        }
    }
    // A snapshot that shows MSI-X enabled and the INTx status bit set together.
    for t in f.trails {
        let enabled = t
            .caps
            .iter()
            .find(|e| matches!(e.kind, EventKind::MsixCapabilitySeen { enabled: true, .. }));
        let pending = t
            .intx_status
            .iter()
            .find(|e| matches!(e.kind, EventKind::IntxStatus { pending: true }));
        if let (Some(c), Some(p)) = (enabled, pending) {
            return broken(
                14,
                "a snapshot of the device shows MSI-X enabled and the INTx status bit (Status bit 3) set: the device asserts INTx with MSI-X on",
                [c, p],
            );
        }
    }
    if let Some((true, _, _, cap)) = f.last_cap() {
        let clear = f
            .trails
            .iter()
            .flat_map(|t| t.intx_status.iter())
            .find(|e| matches!(e.kind, EventKind::IntxStatus { pending: false }));
        if let Some(c) = clear {
            return ruled_out(14, "MSI-X enabled and the INTx status bit clear", [cap, c]);
        }
    }
    None
}

fn row15_message_through_mask(ctx: &Ctx<'_>) -> Option<Answer> {
    let d = ctx.f.record()?;
    if let Some(p) = &d.message_through_mask {
        return broken(
            15,
            "the device sent a message while MSI-X was disabled or the function or its entry was masked: it should have waited in the PBA",
            p,
        );
    }
    (d.messages.values().sum::<u64>() > 0)
        .then(|| {
            ruled_out(
                15,
                "every message the device sent left through an enabled, unmasked entry",
                [],
            )
        })
        .flatten()
}

fn row16_enable_ignored(ctx: &Ctx<'_>) -> Option<Answer> {
    let f = ctx.f;
    let resources = f.message_resources();
    let (enabled, _, size, cap) = f.last_cap()?;
    if resources.is_empty() {
        return None;
    }
    if !enabled && size > 0 {
        return broken(
            16,
            "message interrupts were granted, so the bus driver enabled MSI-X, yet the capability reads Enable=0: the device ignored the Message Control write",
            [cap].into_iter().chain(resources.into_iter().take(1)),
        );
    }
    ruled_out(16, "MSI-X reads enabled", [cap])
}

fn row17_selector_after_reset(ctx: &Ctx<'_>) -> Option<Answer> {
    let mut seen = None;
    for (t, ops) in ctx.f.ops_by_trail() {
        for (rp, reset) in t.resets.iter() {
            for o in ops.iter().filter(|o| o.pos > *rp) {
                let next_reset = t.resets.iter().find(|(p, _)| *p > *rp).map(|(p, _)| *p);
                if next_reset.is_some_and(|n| o.pos > n) {
                    break;
                }
                let written_since = ops.iter().any(|w| {
                    w.selector == o.selector && w.written.is_some() && w.pos > *rp && w.pos < o.pos
                });
                if o.written.is_some() || written_since {
                    continue;
                }
                if o.value != NO_VECTOR {
                    return broken(
                        17,
                        format!(
                            "{} reads 0x{:04x} right after a reset instead of 0xFFFF: stale routing survives the reset",
                            selector_name(o.selector),
                            o.value
                        ),
                        [reset, &o.event],
                    );
                }
                seen = Some(&o.event);
            }
        }
    }
    seen.and_then(|e| ruled_out(17, "selectors read 0xFFFF right after a reset", [e]))
}

fn row18_out_of_range_accepted(ctx: &Ctx<'_>) -> Option<Answer> {
    let (table, cap) = ctx.table?;
    let mut refused = None;
    for o in ctx.f.writes() {
        let Some(w) = o.written else { continue };
        if w == NO_VECTOR || w < table {
            continue;
        }
        if o.value == w {
            return broken(
                18,
                format!(
                    "{} accepted 0x{w:04x} although the MSI-X table has {table} entries: the device should read back 0xFFFF",
                    selector_name(o.selector)
                ),
                [&o.event, cap],
            );
        }
        refused = Some(&o.event);
    }
    refused.and_then(|e| ruled_out(18, "an index beyond the table read back 0xFFFF", [e, cap]))
}

fn row21_small_table(ctx: &Ctx<'_>) -> Option<Answer> {
    let (table, cap) = ctx.table?;
    if ctx.queues.is_empty() {
        return None;
    }
    let needed = ctx.queues.len() as u16 + 1;
    if table < needed {
        return broken(
            21,
            format!(
                "the MSI-X table has {table} entries for config + {} queue(s): no guest can give each queue its own vector",
                ctx.queues.len()
            ),
            [cap],
        );
    }
    ruled_out(
        21,
        format!(
            "the MSI-X table has {table} entries for config + {} queue(s)",
            ctx.queues.len()
        ),
        [cap],
    )
}

fn row29_dma_without_bus_master(ctx: &Ctx<'_>) -> Option<Answer> {
    let d = ctx.f.record()?;
    if let Some(p) = &d.dma_without_bus_master {
        return broken(
            29,
            "the device used the rings (or sent a message) while Bus Master Enable was clear",
            p,
        );
    }
    d.command.and_then(|_| {
        ruled_out(
            29,
            "no device memory access while Bus Master Enable was clear",
            [],
        )
    })
}

fn row30_stale_pending(ctx: &Ctx<'_>) -> Option<Answer> {
    let d = ctx.f.record()?;
    if let Some(p) = &d.stale_pending {
        return broken(
            30,
            "a message pending on a masked entry was delivered after its source was reset or re-routed",
            p,
        );
    }
    ruled_out(30, "no pending message outlived the source that set it", [])
}
