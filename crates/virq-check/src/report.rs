//! Judging the seven steps of the checklist (section 6) from a run's evidence, and printing
//! them the way a Windows driver developer reads them.

use std::fmt::Write as _;

use serde::Serialize;
use virq_events::{Event, EventKind, InterruptCause, NO_VECTOR, Selector, SuppressReason};
use virq_guest::{Counters, VectorReadBack};
use virq_sim::CpuRun;
use virq_win7::{DeviceStart, InterruptGrant};

use crate::run::{ModeReport, StepReport};
use crate::{CheckReport, Mode};

/// A link's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Holds,
    CannotTell,
    Broken,
}

impl Verdict {
    pub fn worst(it: impl Iterator<Item = Verdict>) -> Verdict {
        it.max().unwrap_or(Verdict::Holds)
    }

    fn mark(self) -> &'static str {
        match self {
            Verdict::Holds => "[ OK ]",
            Verdict::CannotTell => "[ ?? ]",
            Verdict::Broken => "[FAIL]",
        }
    }
}

/// What one mode's run left behind.
pub(crate) struct Evidence<'a> {
    pub mode: Mode,
    pub queues: u16,
    pub table_size: u16,
    pub messages: u16,
    pub start: &'a DeviceStart,
    pub dbg_events: Vec<Event>,
    pub dbg_lines: Vec<String>,
    pub pci_events: Vec<Event>,
    pub pci_dump: &'a str,
    pub device_events: Vec<Event>,
    pub driver_events: Vec<Event>,
    pub start_error: Option<String>,
    pub read_backs: &'a [VectorReadBack],
    pub counters: &'a Counters,
    pub run: CpuRun,
    pub requests: u32,
    pub completed: u32,
    pub line_high_at_end: bool,
    pub config_changes_raised: u32,
    pub config_changes_seen: u32,
    /// The driver crashed: the message being dispatched and the crash text.
    pub bugcheck: Option<(Option<u32>, String)>,
    /// Selectors read right after the mid-run reset, before they were programmed again.
    pub after_reset: &'a [VectorReadBack],
    /// Selectors written during a resource rebalance: (selector, written, the message of the
    /// interrupt object it was meant for).
    pub rebalance_writes: &'a [(Selector, u16, u32)],
}

impl Evidence<'_> {
    fn lines_with(&self, prefix: &str) -> Vec<String> {
        self.dbg_lines
            .iter()
            .filter(|l| l.starts_with(prefix))
            .cloned()
            .collect()
    }

    fn expects_messages(&self) -> bool {
        self.mode != Mode::Intx
    }
}

fn step(
    n: u8,
    title: &'static str,
    verdict: Verdict,
    finding: impl Into<String>,
    proof: Vec<String>,
) -> StepReport {
    StepReport {
        step: n,
        title,
        verdict,
        finding: finding.into(),
        proof,
        catalogue_row: None,
        fix: None,
    }
}

fn broken(mut s: StepReport, row: u8, fix: &str) -> StepReport {
    s.verdict = Verdict::Broken;
    s.catalogue_row = Some(row);
    s.fix = Some(fix.to_string());
    s
}

/// The seven steps.
pub(crate) fn judge(ev: &Evidence<'_>) -> Vec<StepReport> {
    vec![
        step1_mode(ev),
        step2_resources(ev),
        step3_connected(ev),
        step4_pci(ev),
        step5_programmed(ev),
        step6_read_back(ev),
        step7_counters(ev),
    ]
}

fn step1_mode(ev: &Evidence<'_>) -> StepReport {
    let is_message = matches!(ev.start.resources.grant, InterruptGrant::Messages { .. });
    let title = "Device Manager -> Resources: message interrupts or INTx?";
    let got = if is_message {
        format!(
            "message-signaled ({} Interrupt Request entries, not shared)",
            ev.start
                .resources
                .translated
                .iter()
                .filter(|d| d.is_interrupt())
                .count()
        )
    } else {
        let irq = match ev.start.resources.grant {
            InterruptGrant::Line { irq } => irq,
            _ => 0,
        };
        format!("line-based INTx (IRQ {irq}, shareable)")
    };
    let s = step(1, title, Verdict::Holds, got, ev.lines_with("INT:"));
    if ev.expects_messages() && !is_message {
        return broken(
            StepReport {
                finding: format!(
                    "{}: expected message interrupts but Windows granted a line; {}",
                    s.finding,
                    match ev.start.decision.line_reason {
                        Some(r) => format!("arbiter: {r:?}"),
                        None => "arbiter gave no reason".into(),
                    }
                ),
                ..s
            },
            13,
            "put MSISupported=1 (and MessageNumberLimit) under \"Interrupt Management\\MessageSignaledInterruptProperties\" in an AddReg of the .HW section",
        );
    }
    s
}

fn step2_resources(ev: &Evidence<'_>) -> StepReport {
    let title = "Translated resources: CM_RESOURCE_INTERRUPT_MESSAGE and MessageCount";
    let proof = ev.lines_with("INT:");
    let total: u32 = ev
        .start
        .resources
        .translated
        .iter()
        .filter_map(|d| d.message_count())
        .sum();
    let needed = u32::from(ev.queues) + 1;
    if proof.is_empty() {
        return step(
            2,
            title,
            Verdict::CannotTell,
            "no INT: resource lines were printed",
            proof,
        );
    }
    if total == 0 {
        return step(
            2,
            title,
            Verdict::Holds,
            "no CM_RESOURCE_INTERRUPT_MESSAGE flag: INTx, the driver must read ISR status in its ISR",
            proof,
        );
    }
    let finding = if total >= needed {
        format!(
            "MessageCount {total} >= 1 + {} queues: a vector per queue plus config is possible",
            ev.queues
        )
    } else {
        format!(
            "MessageCount {total} < 1 + {} queues = {needed}: the driver must share (all on message 0)",
            ev.queues
        )
    };
    step(2, title, Verdict::Holds, finding, proof)
}

fn step3_connected(ev: &Evidence<'_>) -> StepReport {
    let title = "WdfInterruptGetInfo: MessageNumber of every interrupt object";
    let proof = ev.lines_with("WDFINT:");
    let mut proof_all = proof.clone();
    proof_all.extend(ev.lines_with("WDF:"));
    if proof.is_empty() {
        return step(
            3,
            title,
            Verdict::CannotTell,
            "no WDFINT: lines were printed",
            proof,
        );
    }
    let dead: Vec<&String> = proof.iter().filter(|l| l.contains(" Vector=0 ")).collect();
    if !dead.is_empty() {
        let s = step(
            3,
            title,
            Verdict::Broken,
            format!(
                "{} interrupt object(s) beyond the {} granted message(s): Vector=0, they never fire",
                dead.len(),
                ev.messages
            ),
            proof_all,
        );
        return broken(
            s,
            7,
            "create exactly one interrupt object per granted message; fold extra work into message 0",
        );
    }
    let numbers: Vec<String> = proof
        .iter()
        .filter_map(|l| l.split("MessageNumber=").nth(1))
        .filter_map(|r| r.split_whitespace().next())
        .map(str::to_string)
        .collect();
    let finding = if ev.messages > 0 {
        format!(
            "connected MessageNumber {} (MessageSignaled=1); Vector values differ, as expected",
            numbers.join(", ")
        )
    } else {
        "one line interrupt object (MessageSignaled=0)".to_string()
    };
    step(3, title, Verdict::Holds, finding, proof)
}

fn step4_pci(ev: &Evidence<'_>) -> StepReport {
    let title = "WinDbg !pci: MSI-X capability present and Enable as expected";
    let proof: Vec<String> = ev
        .pci_dump
        .lines()
        .filter(|l| l.contains("MSI-X") || l.contains("MessageControl") || l.contains("Cmd["))
        .map(|l| l.trim().to_string())
        .collect();
    let seen = ev.pci_events.iter().find_map(|e| match e.kind {
        EventKind::MsixCapabilitySeen {
            enabled,
            function_masked,
            table_size,
        } => Some((enabled, function_masked, table_size)),
        _ => None,
    });
    let Some((enabled, masked, size)) = seen else {
        if ev.expects_messages() {
            return step(
                4,
                title,
                Verdict::Broken,
                "no MSI-X capability in the !pci dump",
                proof,
            );
        }
        return step(
            4,
            title,
            Verdict::Holds,
            "no MSI-X capability; INTx only",
            proof,
        );
    };
    let message_mode = ev.messages > 0;
    if message_mode && !enabled && ev.start.msix.set_enable {
        let s = step(
            4,
            title,
            Verdict::Broken,
            "message interrupts granted and the bus driver wrote Enable with a dword write of the capability, but MSI-X Enable reads 0",
            proof,
        );
        return broken(
            s,
            16,
            "decode every access width and offset into the MSI-X capability",
        );
    }
    if message_mode && line_raised_with_msix(ev) {
        let s = step(
            4,
            title,
            Verdict::Broken,
            "MSI-X Enable=1 and the device still drove its INTx pin high",
            proof,
        );
        return broken(s, 14, "when MSI-X is enabled, never assert INTx");
    }
    if message_mode && (!enabled || masked) {
        return step(
            4,
            title,
            Verdict::Broken,
            format!(
                "message interrupts granted but MSI-X Enable={} FunctionMask={}",
                enabled as u8, masked as u8
            ),
            proof,
        );
    }
    if !message_mode && enabled {
        return step(
            4,
            title,
            Verdict::Broken,
            "INTx granted but MSI-X is enabled",
            proof,
        );
    }
    let mut s = step(
        4,
        title,
        Verdict::Holds,
        format!(
            "MSI-X TableSize={size} Enable={} FunctionMask={}",
            enabled as u8, masked as u8
        ),
        proof,
    );
    if size < ev.queues + 1 {
        s.finding.push_str(&format!(
            ": the table has fewer entries than 1 + {} queues, so no guest can give each queue its own vector",
            ev.queues
        ));
        return broken(
            s,
            21,
            "size the MSI-X table for the config vector plus every queue",
        );
    }
    s
}

/// Whether the device was reset after the last vector selector write it saw.
fn reset_after_last_vector_write(ev: &Evidence<'_>) -> bool {
    let last = |pred: fn(&EventKind) -> bool| {
        ev.device_events
            .iter()
            .filter(|e| pred(&e.kind))
            .map(|e| e.seq)
            .max()
    };
    match (
        last(|k| matches!(k, EventKind::VectorWritten { .. })),
        last(|k| matches!(k, EventKind::DeviceReset)),
    ) {
        (Some(w), Some(r)) => r > w,
        _ => false,
    }
}

/// A queue enabled after some vector write was refused (read back 0xFFFF), as the device saw it.
fn queue_enabled_after_refusal(ev: &Evidence<'_>) -> Option<(u16, u16)> {
    let mut refused: Option<u16> = None;
    for e in &ev.device_events {
        match e.kind {
            EventKind::VectorWritten {
                written, read_back, ..
            } if written != NO_VECTOR && read_back == NO_VECTOR => refused = Some(written),
            EventKind::DeviceReset => refused = None,
            EventKind::QueueEnabled { queue, .. } => {
                if let Some(w) = refused {
                    return Some((queue, w));
                }
            }
            _ => {}
        }
    }
    None
}

/// The first entry a message left through while MSI-X was off or the function or entry was
/// masked, as the device's own record shows.
fn message_through_mask(ev: &Evidence<'_>) -> Option<u16> {
    let (mut enabled, mut function_masked) = (false, false);
    let mut masked = std::collections::BTreeMap::new();
    for e in &ev.device_events {
        match e.kind {
            EventKind::MsixControl {
                enabled: en,
                function_masked: fm,
            } => (enabled, function_masked) = (en, fm),
            EventKind::MsixEntry {
                entry, masked: m, ..
            } => {
                masked.insert(entry, m);
            }
            EventKind::MessageSent { entry, .. }
                if !enabled || function_masked || masked.get(&entry).copied().unwrap_or(true) =>
            {
                return Some(entry);
            }
            _ => {}
        }
    }
    None
}

/// Whether the device raised INTx while PCI Command bit 10 was set.
fn line_raised_while_disabled(ev: &Evidence<'_>) -> bool {
    let mut disabled = false;
    for e in &ev.device_events {
        match e.kind {
            EventKind::PciCommand { value } => disabled = value & (1 << 10) != 0,
            EventKind::LineRaised { .. } if disabled => return true,
            _ => {}
        }
    }
    false
}

/// Whether the device raised INTx at a moment MSI-X was enabled.
fn line_raised_with_msix(ev: &Evidence<'_>) -> bool {
    let mut enabled = false;
    for e in &ev.device_events {
        match e.kind {
            EventKind::MsixControl { enabled: en, .. } => enabled = en,
            EventKind::LineRaised { .. } if enabled => return true,
            _ => {}
        }
    }
    false
}

/// Vector writes as the driver reported them (`VIRTIO:` lines).
fn vector_writes(ev: &Evidence<'_>) -> Vec<(Selector, u16, u16)> {
    ev.dbg_events
        .iter()
        .filter_map(|e| match e.kind {
            EventKind::VectorWritten {
                selector,
                written,
                read_back,
            } => Some((selector, written, read_back)),
            _ => None,
        })
        .collect()
}

fn step5_programmed(ev: &Evidence<'_>) -> StepReport {
    let title = "Program virtio: msix_config and each queue_msix_vector = MessageNumber";
    let proof: Vec<String> = ev
        .dbg_lines
        .iter()
        .filter(|l| l.starts_with("VIRTIO:") && l.contains("vector") || l.contains("msix_config"))
        .cloned()
        .collect();
    let writes = vector_writes(ev);
    if ev.messages == 0 {
        if writes.iter().any(|(_, w, _)| *w != NO_VECTOR) {
            return step(
                5,
                title,
                Verdict::Holds,
                "INTx: vector writes are ignored by the device (MSI-X off)",
                proof,
            );
        }
        return step(
            5,
            title,
            Verdict::Holds,
            "INTx: no vectors to program",
            proof,
        );
    }
    if writes.is_empty() {
        let mut s = step(
            5,
            title,
            Verdict::Broken,
            "message interrupts granted but no vector selector was written",
            proof,
        );
        if let Some(e) = &ev.start_error {
            s.finding.push_str(&format!(" (bring-up failed: {e})"));
        }
        return broken(
            s,
            2,
            "program msix_config and every queue_msix_vector after the last reset, before DRIVER_OK",
        );
    }
    if let Some((sel, w, m)) = ev
        .rebalance_writes
        .iter()
        .find(|(_, w, m)| u32::from(*w) != *m)
    {
        let s = step(
            5,
            title,
            Verdict::Broken,
            format!(
                "after a resource rebalance {} was programmed with {w} while its interrupt object's MessageNumber is {m}: the number was re-queried mid-rebalance",
                selector_name(*sel)
            ),
            proof,
        );
        return broken(
            s,
            6,
            "cache each interrupt object's MessageNumber at creation and program that after every rebalance",
        );
    }
    let apic: Vec<u32> = ev
        .start
        .resources
        .interrupts
        .iter()
        .map(|a| u32::from(a.vector))
        .collect();
    if let Some((sel, w, _)) = writes
        .iter()
        .find(|(_, w, _)| *w != NO_VECTOR && (apic.contains(&u32::from(*w)) || *w >= ev.table_size))
    {
        let s = step(
            5,
            title,
            Verdict::Broken,
            format!(
                "{} written with 0x{w:04x}, which is an APIC Vector, not a MessageNumber",
                selector_name(*sel)
            ),
            proof,
        );
        return broken(
            s,
            3,
            "program the MSI-X table entry index (MessageNumber from WdfInterruptGetInfo), not the IDT Vector",
        );
    }
    if let Some((sel, w, _)) = writes
        .iter()
        .find(|(_, w, _)| *w != NO_VECTOR && u32::from(*w) >= u32::from(ev.messages))
    {
        let s = step(
            5,
            title,
            Verdict::Broken,
            format!(
                "{} written with MessageNumber {w}, but only {} message(s) were granted",
                selector_name(*sel),
                ev.messages
            ),
            proof,
        );
        return broken(
            s,
            4,
            "fall back when fewer messages are granted: config and all queues on message 0",
        );
    }
    if let Some(e) = &ev.start_error {
        let s = step(
            5,
            title,
            Verdict::Broken,
            format!("bring-up failed: {e}"),
            proof,
        );
        return broken(
            s,
            10,
            "enable queues only after the whole vector plan succeeded; reset before retrying",
        );
    }
    step(
        5,
        title,
        Verdict::Holds,
        format!(
            "{} selector write(s), each a granted MessageNumber",
            writes.len()
        ),
        proof,
    )
}

fn selector_name(s: Selector) -> String {
    match s {
        Selector::MsixConfig => "msix_config".into(),
        Selector::Queue(q) => format!("queue {q} queue_msix_vector"),
    }
}

fn step6_read_back(ev: &Evidence<'_>) -> StepReport {
    let title = "Read back every vector selector while running: no unexpected 0xFFFF";
    let mut proof: Vec<String> = ev
        .read_backs
        .iter()
        .map(|r| {
            format!(
                "{} reads 0x{:04x} (plan: 0x{:04x})",
                selector_name(r.selector),
                r.read_back,
                r.expected
            )
        })
        .collect();
    if ev.messages == 0 {
        let all_none = ev.read_backs.iter().all(|r| r.read_back == NO_VECTOR);
        return step(
            6,
            title,
            Verdict::Holds,
            if all_none {
                "INTx: every selector reads 0xFFFF, as expected".to_string()
            } else {
                "INTx: selectors are not used".to_string()
            },
            proof,
        );
    }
    if let Some((queue, written)) = queue_enabled_after_refusal(ev) {
        let s = step(
            6,
            title,
            Verdict::Broken,
            format!(
                "queue {queue} was enabled after a vector write of 0x{written:04x} read back 0xffff: the plan had not succeeded"
            ),
            proof,
        );
        return broken(
            s,
            10,
            "enable queues only after the whole vector plan read back right; reset before retrying",
        );
    }
    if ev.read_backs.is_empty() {
        return step(
            6,
            title,
            Verdict::CannotTell,
            "the driver never reached the running state, nothing to read back",
            proof,
        );
    }
    if let Some(r) = ev.after_reset.iter().find(|r| r.read_back != NO_VECTOR) {
        let mut proof = proof;
        proof.extend(
            ev.lines_with("VIRTIO: device_status write=0x00")
                .into_iter()
                .take(1),
        );
        proof.extend(
            ev.dbg_lines
                .iter()
                .filter(|l| l.ends_with("after reset"))
                .cloned(),
        );
        let s = step(
            6,
            title,
            Verdict::Broken,
            format!(
                "{} reads 0x{:04x} right after a reset instead of 0xFFFF: stale routing survives the reset",
                selector_name(r.selector),
                r.read_back
            ),
            proof,
        );
        return broken(
            s,
            17,
            "the device must reset every vector selector to 0xFFFF",
        );
    }
    if let Some(r) = ev
        .read_backs
        .iter()
        .find(|r| r.read_back != NO_VECTOR && r.read_back >= ev.table_size)
    {
        let s = step(
            6,
            title,
            Verdict::Broken,
            format!(
                "{} reads back 0x{:04x}, beyond the {}-entry MSI-X table: the device kept an index it cannot use",
                selector_name(r.selector),
                r.read_back,
                ev.table_size
            ),
            proof,
        );
        return broken(
            s,
            18,
            "the device must store 0xFFFF for a vector index >= its table size",
        );
    }
    let bad: Vec<&VectorReadBack> = ev
        .read_backs
        .iter()
        .filter(|r| r.read_back == NO_VECTOR)
        .collect();
    if bad.is_empty() {
        return step(
            6,
            title,
            Verdict::Holds,
            format!(
                "{} selector(s) read back as programmed",
                ev.read_backs.len()
            ),
            proof,
        );
    }
    // A reset after the last vector write explains a selector lost to 0xFFFF (row 2).
    let last_write = ev
        .device_events
        .iter()
        .filter(|e| matches!(e.kind, EventKind::VectorWritten { .. }))
        .map(|e| e.seq)
        .max();
    let last_reset = ev
        .device_events
        .iter()
        .filter(|e| matches!(e.kind, EventKind::DeviceReset))
        .map(|e| e.seq)
        .max();
    proof.extend(ev.lines_with("VIRTIO: device_status"));
    let names: Vec<String> = bad.iter().map(|r| selector_name(r.selector)).collect();
    let finding = format!("{} read(s) 0xFFFF while running", names.join(", "));
    if let (Some(w), Some(r)) = (last_write, last_reset)
        && r > w
    {
        let s = step(
            6,
            title,
            Verdict::Broken,
            format!("{finding}; a reset came after the last vector write"),
            proof,
        );
        return broken(
            s,
            2,
            "program vectors after every reset, before DRIVER_OK, and read them back",
        );
    }
    if bad.iter().all(|r| r.selector == Selector::MsixConfig) {
        let s = step(
            6,
            title,
            Verdict::Broken,
            format!("{finding}: the config vector was never set"),
            proof,
        );
        return broken(
            s,
            5,
            "route the config interrupt to a message (share message 0)",
        );
    }
    let s = step(
        6,
        title,
        Verdict::Broken,
        format!("{finding}: the device refused the index"),
        proof,
    );
    broken(
        s,
        18,
        "program only indices below the MSI-X table size; fall back to message 0",
    )
}

fn step7_counters(ev: &Evidence<'_>) -> StepReport {
    let title = "ISR/DPC counters move with known I/O";
    let mut proof = ev.lines_with("COUNTERS:");
    proof.extend(ev.lines_with("virqblk: interrupt storm"));
    // The ISR's own samples (log format line 8) say whether it read ISR status and what it
    // returned: the difference between rows 1, 11, 19 and 22 when the line storms.
    if ev.run.budget_exhausted {
        proof.extend(ev.lines_with("ISR:").into_iter().take(3));
    }
    if let Some(entry) = message_through_mask(ev) {
        proof.extend(ev.lines_with("virqblk: interrupts held off"));
        let s = step(
            7,
            title,
            Verdict::Broken,
            format!(
                "the device sent a message on entry {entry} while the OS held the function masked (MSI-X Function Mask set): it should have waited in the PBA"
            ),
            proof,
        );
        return broken(
            s,
            15,
            "honour Enable, the function mask and the entry mask; set the PBA bit and deliver on unmask",
        );
    }
    if line_raised_while_disabled(ev) {
        proof.extend(ev.lines_with("virqblk: interrupts held off"));
        let s = step(
            7,
            title,
            Verdict::Broken,
            "the device drove INTx high while PCI Command bit 10 (Interrupt Disable) was set",
            proof,
        );
        return broken(
            s,
            20,
            "gate the INTx pin on Command bit 10 and report the pending state in Status bit 3",
        );
    }
    if let Some((message, what)) = &ev.bugcheck {
        proof.extend(ev.lines_with("BUGCHECK:"));
        let mapped = ev.counters.messages.len();
        let s = step(
            7,
            title,
            Verdict::Broken,
            format!(
                "BUGCHECK in the ISR for MessageID {}: per-message state holds {mapped} entr{} while {} message(s) were granted ({what})",
                message.map_or("?".to_string(), |m| m.to_string()),
                if mapped == 1 { "y" } else { "ies" },
                ev.messages
            ),
            proof,
        );
        return broken(
            s,
            8,
            "size per-message state by the granted message count (sum MessageCount over every descriptor) and bound-check the message ID",
        );
    }
    if ev.driver_events.iter().any(|e| {
        matches!(
            e.kind,
            EventKind::IsrRan {
                isr_status: Some(0xFF),
                claimed: true,
                ..
            }
        )
    }) {
        let dpcs_after = ev
            .driver_events
            .iter()
            .skip_while(|e| {
                !matches!(
                    e.kind,
                    EventKind::IsrRan {
                        isr_status: Some(0xFF),
                        ..
                    }
                )
            })
            .filter(|e| matches!(e.kind, EventKind::DpcRan { .. }))
            .count();
        let s = step(
            7,
            title,
            Verdict::Broken,
            format!(
                "ISR status read 0xFF (the device is gone) and the ISR claimed it; {dpcs_after} DPC(s) ran against the removed device"
            ),
            proof,
        );
        return broken(
            s,
            12,
            "treat an ISR status of 0xFF as not ours and stop the device",
        );
    }
    if ev.run.budget_exhausted {
        return storm(ev, title, proof);
    }
    if ev.requests == 0 {
        return step(
            7,
            title,
            Verdict::CannotTell,
            "no I/O could be submitted",
            proof,
        );
    }
    let mut finding = format!(
        "{}/{} requests completed through interrupts ({} interrupts taken)",
        ev.completed, ev.requests, ev.run.interrupts
    );
    let config_ok = ev.config_changes_seen >= ev.config_changes_raised;
    finding.push_str(&format!(
        "; configuration change noticed {}/{}",
        ev.config_changes_seen, ev.config_changes_raised
    ));
    if ev.completed == ev.requests && !ev.line_high_at_end && config_ok {
        if ev.messages > 0 {
            let used: Vec<String> = ev
                .counters
                .messages
                .iter()
                .enumerate()
                .filter(|(_, c)| c.isr > 0)
                .map(|(m, c)| format!("message {m}: isr={} dpc={}", c.isr, c.dpc))
                .collect();
            finding.push_str(&format!("; {}", used.join(", ")));
        }
        return step(7, title, Verdict::Holds, finding, proof);
    }
    // Completions missing: find out which link lost them.
    let suppressed: Vec<(InterruptCause, SuppressReason)> = ev
        .device_events
        .iter()
        .filter_map(|e| match e.kind {
            EventKind::InterruptSuppressed { cause, reason, .. } => Some((cause, reason)),
            _ => None,
        })
        .collect();
    let unclaimed_zero = ev.driver_events.iter().any(|e| {
        matches!(
            e.kind,
            EventKind::IsrRan {
                message_id: Some(0),
                claimed: false,
                ..
            }
        )
    });
    // A Pending Bit still set at the end: a message that was never let go (a pending bit
    // that was delivered later, as after the OS's hold-off window, is normal).
    let pending = {
        let mut open = std::collections::BTreeSet::new();
        for e in &ev.device_events {
            match e.kind {
                EventKind::PendingSet { entry } => {
                    open.insert(entry);
                }
                EventKind::PendingCleared { entry } => {
                    open.remove(&entry);
                }
                _ => {}
            }
        }
        !open.is_empty()
    };
    let config_unset = ev
        .read_backs
        .iter()
        .any(|r| r.selector == Selector::MsixConfig && r.read_back == NO_VECTOR);
    if unclaimed_zero {
        finding.push_str("; the ISR returned FALSE for MessageID 0 with MessageSignaled=1");
        return broken(
            step(7, title, Verdict::Broken, finding, proof),
            9,
            "test MessageSignaled, not the message ID, to tell message interrupts apart",
        );
    }
    if suppressed
        .iter()
        .any(|(c, r)| *r == SuppressReason::NoVector && matches!(c, InterruptCause::Queue(_)))
    {
        finding.push_str(
            "; the device had completions to signal but the queue's vector was 0xFFFF (NoVector)",
        );
        // Vectors lost to a reset after they were written (or never written) are row 2; a
        // vector the driver left unprogrammed on purpose because it misjudged the grant is 4.
        let row = if reset_after_last_vector_write(ev) || vector_writes(ev).is_empty() {
            2
        } else {
            4
        };
        return broken(
            step(7, title, Verdict::Broken, finding, proof),
            row,
            "program vectors after the last reset and read them back",
        );
    }
    if ev.completed == ev.requests && !config_ok && config_unset && ev.messages > 0 {
        finding
            .push_str("; msix_config reads 0xFFFF, so the config change interrupt was never sent");
        return broken(
            step(7, title, Verdict::Broken, finding, proof),
            5,
            "route the config interrupt to a message (share message 0)",
        );
    }
    if pending {
        finding.push_str(
            "; messages were held in the PBA (entry masked): a MessageNumber beyond the grant",
        );
        return broken(
            step(7, title, Verdict::Broken, finding, proof),
            4,
            "fall back: config and all queues on message 0 when fewer messages are granted",
        );
    }
    if ev.line_high_at_end {
        finding.push_str("; INTx line still asserted at the end");
    }
    step(7, title, Verdict::Broken, finding, proof)
}

/// An interrupt storm: tell apart who kept the line up, from what the ISRs read.
fn storm(ev: &Evidence<'_>, title: &'static str, proof: Vec<String>) -> StepReport {
    let isr_reads: Vec<u8> = ev
        .device_events
        .iter()
        .filter_map(|e| match e.kind {
            EventKind::IsrRead { value } => Some(value),
            _ => None,
        })
        .collect();
    let unclaimed_unread = ev.driver_events.iter().any(|e| {
        matches!(
            e.kind,
            EventKind::IsrRan {
                claimed: false,
                isr_status: None,
                ..
            }
        )
    });
    let tail = &isr_reads[isr_reads.len().saturating_sub(16)..];
    let head = format!(
        "interrupt storm: {} interrupts and the line stayed asserted",
        ev.run.interrupts
    );
    if unclaimed_unread {
        let s = step(
            7,
            title,
            Verdict::Broken,
            format!("{head}; the ISR returned \"not mine\" without reading ISR status"),
            proof,
        );
        return broken(
            s,
            11,
            "every INTx handler on a shared line must read its own ISR status",
        );
    }
    if isr_reads.is_empty() {
        let s = step(
            7,
            title,
            Verdict::Broken,
            format!("{head}; ISR status was never read"),
            proof,
        );
        return broken(
            s,
            1,
            "read ISR status first thing in the INTx ISR; return FALSE when it reads 0",
        );
    }
    if tail.len() >= 2 && tail.iter().all(|v| *v == 0) {
        let reset_before = ev
            .device_events
            .iter()
            .any(|e| matches!(e.kind, EventKind::DeviceReset));
        let s = step(
            7,
            title,
            Verdict::Broken,
            format!(
                "{head}; every ISR status read returns 0 while the line is high{}",
                if reset_before {
                    ", since a device reset"
                } else {
                    ""
                }
            ),
            proof,
        );
        return broken(
            s,
            19,
            "the device must lower INTx on reset (a driver cannot clear it)",
        );
    }
    if tail.len() >= 2 && tail.iter().all(|v| *v != 0) {
        let s = step(
            7,
            title,
            Verdict::Broken,
            format!(
                "{head}; consecutive ISR status reads keep returning 0x{:02x}: the read does not clear it",
                tail[tail.len() - 1]
            ),
            proof,
        );
        return broken(
            s,
            22,
            "the device must clear ISR status on read and ignore writes",
        );
    }
    step(7, title, Verdict::Broken, head, proof)
}

/// The terminal report.
pub fn render_text(report: &CheckReport) -> String {
    let mut out = String::new();
    let o = &report.options;
    let _ = writeln!(
        out,
        "virq check: virtio-{:?} with {} queue(s) on the simulated Windows 7 machine{}",
        o.device,
        o.queues,
        o.inject
            .map(|f| format!(
                ", fault injected: {} (catalogue row {})",
                f.name(),
                f.catalogue_row()
            ))
            .unwrap_or_default()
    )
    .map(|_| ());
    for m in &report.modes {
        render_mode(&mut out, m);
    }
    let _ = writeln!(out);
    let broken: Vec<&str> = report
        .modes
        .iter()
        .filter(|m| m.verdict != Verdict::Holds)
        .map(|m| m.mode.name())
        .collect();
    if broken.is_empty() {
        let _ = writeln!(out, "verdict: every link holds in every mode");
    } else {
        let _ = writeln!(out, "verdict: a link is broken in: {}", broken.join(", "));
    }
    out.replace("Blk", "blk")
        .replace("Rng", "rng")
        .replace("Console", "console")
}

fn render_mode(out: &mut String, m: &ModeReport) {
    let _ = writeln!(out, "\n=== mode {}: {} ===", m.mode.name(), m.mode.title());
    for s in &m.steps {
        let _ = writeln!(out, "{} {}. {}", s.verdict.mark(), s.step, s.title);
        let _ = writeln!(out, "       {}", s.finding);
        for p in s.proof.iter().take(8) {
            let _ = writeln!(out, "         | {p}");
        }
        if s.proof.len() > 8 {
            let _ = writeln!(out, "         | ... {} more", s.proof.len() - 8);
        }
        if let Some(row) = s.catalogue_row {
            let _ = writeln!(out, "       broken link: failure catalogue row {row}");
        }
        if let Some(fix) = &s.fix {
            let _ = writeln!(out, "       fix: {fix}");
        }
    }
    let _ = writeln!(
        out,
        "  mode verdict: {:?} ({} interrupts, {}/{} requests completed{})",
        m.verdict,
        m.interrupts,
        m.completed,
        m.requests,
        if m.budget_exhausted {
            ", interrupt budget exhausted"
        } else {
            ""
        }
    );
}
