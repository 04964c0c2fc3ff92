//! How a piece of evidence reads in a report: a line of a file is quoted as the user's file
//! has it; an event of a run (the device's own record) is spelled out in the checklist's terms.

use virq_events::{Event, EventKind, InterruptCause, Origin, Selector};

/// `path:line` for a file line, `run` for an event of a run.
pub fn location(e: &Event) -> String {
    match &e.origin {
        Origin::File { path, line, .. } => format!("{path}:{line}"),
        Origin::Run => match &e.device {
            Some(d) => format!("run {d}"),
            None => "run".to_string(),
        },
    }
}

/// The quoted text of a file line, or a sentence for a run's event. Always one line: a
/// line break or other control character in the text (an event file's `text` may hold any)
/// becomes a space, so a quote cannot add lines to a report.
pub fn quote(e: &Event) -> String {
    match &e.origin {
        Origin::File { text, .. } => text
            .trim()
            .replace('\t', "  ")
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect(),
        Origin::Run => describe(&e.kind),
    }
}

fn selector(s: Selector) -> String {
    match s {
        Selector::MsixConfig => "msix_config".into(),
        Selector::Queue(q) => format!("queue {q} queue_msix_vector"),
    }
}

fn cause(c: InterruptCause) -> String {
    match c {
        InterruptCause::Queue(q) => format!("queue {q}"),
        InterruptCause::ConfigChange => "config change".into(),
        InterruptCause::PendingDelivery => "pending bit".into(),
    }
}

/// One event in words.
pub fn describe(k: &EventKind) -> String {
    match k {
        EventKind::VectorWritten {
            selector: s,
            written,
            read_back,
        } => {
            format!(
                "device: {} write=0x{written:04x} read=0x{read_back:04x}",
                selector(*s)
            )
        }
        EventKind::QueueVectorWritten { written, read_back } => {
            format!(
                "driver: a queue_msix_vector write=0x{written:04x} read=0x{read_back:04x} (queue not named)"
            )
        }
        EventKind::VectorRead { selector: s, value } => {
            format!("device: {} read=0x{value:04x}", selector(*s))
        }
        EventKind::DeviceStatus { value } => format!("device: device_status write=0x{value:02x}"),
        EventKind::DeviceReset => "device: reset (device_status = 0)".into(),
        EventKind::QueueEnabled { queue, size } => {
            format!("device: queue {queue} enabled, size {size}")
        }
        EventKind::QueueNotify { queue } => format!("device: queue {queue} notified"),
        EventKind::UsedPublished { queue, count } => {
            format!("device: queue {queue} published {count} used buffer(s)")
        }
        EventKind::ConfigChanged { generation } => {
            format!("device: configuration changed (generation {generation})")
        }
        EventKind::IsrRead { value } => format!("device: ISR status read 0x{value:02x}"),
        EventKind::MsixControl {
            enabled,
            function_masked,
        } => format!(
            "device: MSI-X Message Control Enable={} FunctionMask={}",
            *enabled as u8, *function_masked as u8
        ),
        EventKind::MsixEntry {
            entry,
            address,
            data,
            masked,
        } => format!(
            "device: MSI-X entry {entry} address 0x{address:x} data 0x{data:x} masked={}",
            *masked as u8
        ),
        EventKind::MessageSent {
            cause: c, entry, ..
        } => format!("device: MSI-X message on entry {entry} ({})", cause(*c)),
        EventKind::InterruptSuppressed {
            cause: c,
            vector,
            reason,
        } => {
            format!(
                "device: {} interrupt not sent on vector 0x{vector:04x}: {reason:?}",
                cause(*c)
            )
        }
        EventKind::PendingSet { entry } => format!("device: pending bit of entry {entry} set"),
        EventKind::PendingCleared { entry } => {
            format!("device: pending bit of entry {entry} cleared")
        }
        EventKind::LineRaised { .. } => "device: INTx line raised".into(),
        EventKind::LineLowered { .. } => "device: INTx line lowered".into(),
        EventKind::PciCommand { value } => format!("device: PCI Command = 0x{value:04x}"),
        EventKind::InterruptBudgetExhausted { delivered } => {
            format!("platform: interrupt budget exhausted after {delivered} interrupts (storm)")
        }
        EventKind::LogLine { text } => text.clone(),
        other => format!("{other:?}"),
    }
}
