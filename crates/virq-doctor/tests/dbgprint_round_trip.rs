//! The DbgView lines the simulated Windows 7 machine prints (`virq_win7::DbgPrint`, the writer)
//! read back by the doctor (the reader) as the events they stand for: one writer and one reader
//! per line of docs/log-formats.md, and nothing in between. `virq check` judges exactly these
//! files, so a line the reader misreads is a verdict `virq check` gets wrong.

use virq_doctor::{ParseLimits, parse_to_vec};
use virq_events::{EventKind, InterruptMode, Selector};
use virq_win7::arbiter::InterruptGrant;
use virq_win7::resources::{
    CM_RESOURCE_INTERRUPT_LATCHED, CM_RESOURCE_INTERRUPT_MESSAGE, ResourceBuilder,
};
use virq_win7::{DbgPrint, DbgViewStyle, DebugPrintFilter, VectorAllocator, WdfInterrupts};

fn read_back(p: &DbgPrint<'_>) -> Vec<EventKind> {
    let text = p.capture.render();
    let (events, _) = parse_to_vec("dbgview.log", text.as_bytes(), ParseLimits::default())
        .expect("the writer's capture is readable");
    events
        .into_iter()
        .map(|e| e.kind)
        .filter(|k| !matches!(k, EventKind::LogLine { .. }))
        .collect()
}

/// Every checklist print (1.2 `INT:`, 2.1 `WDFINT:`, 3.4 and 5.3 `VIRTIO:`, 4.1 `ISR:`, 5.4
/// `COUNTERS:`) and virq's own lines 8, 9 and 12, as DbgView saves them (sequence, elapsed
/// time, CRLF), read back as the event each stands for, in order.
#[test]
fn every_print_reads_back_as_its_event() {
    let mut alloc = VectorAllocator::default();
    let r = ResourceBuilder::default()
        .build(InterruptGrant::Messages { count: 2 }, &mut alloc, &[])
        .unwrap();
    let mut w = WdfInterrupts::new(&r);
    let ids = w.create_per_resource();
    let mut p = DbgPrint::new(DbgViewStyle::default());
    p.resources(&r.translated);
    for id in ids {
        p.interrupt_connected(&w.get_info(id));
    }
    p.device_status(0);
    p.msix_config(0, 0, 0);
    p.queue_vector(0, 1, 1, 1);
    p.queue_vector(1, 5, 0xFFFF, 5);
    p.queue_enable(0, 64);
    p.isr_status(0);
    p.isr_sample(Some(1), None, true);
    p.isr_sample(None, Some(1), true);
    p.counters_message(1, 5, 4, 1);
    p.counters_intx(9, 9, 0);
    p.d0_exit(3);
    p.d0_entry(3);
    let message = CM_RESOURCE_INTERRUPT_LATCHED | CM_RESOURCE_INTERRUPT_MESSAGE;
    assert_eq!(
        read_back(&p),
        [
            EventKind::ResourceAssigned {
                mode: InterruptMode::Message,
                message_count: 0,
                level: 11,
                vector: 0xB1,
                affinity: 1,
                flags: message,
                raw: false,
            },
            EventKind::ResourceAssigned {
                mode: InterruptMode::Message,
                message_count: 0,
                level: 10,
                vector: 0xA1,
                affinity: 1,
                flags: message,
                raw: false,
            },
            EventKind::InterruptConnected {
                message_signaled: true,
                message_number: 0,
                vector: 0xB1,
                irql: 11,
                affinity: 1
            },
            EventKind::InterruptConnected {
                message_signaled: true,
                message_number: 1,
                vector: 0xA1,
                irql: 10,
                affinity: 1
            },
            EventKind::DeviceStatus { value: 0 },
            EventKind::DeviceReset,
            EventKind::VectorWritten {
                selector: Selector::MsixConfig,
                written: 0,
                read_back: 0
            },
            EventKind::VectorMessage {
                selector: Selector::MsixConfig,
                message_number: 0
            },
            EventKind::VectorWritten {
                selector: Selector::Queue(0),
                written: 1,
                read_back: 1
            },
            EventKind::VectorMessage {
                selector: Selector::Queue(0),
                message_number: 1
            },
            EventKind::VectorWritten {
                selector: Selector::Queue(1),
                written: 5,
                read_back: 0xFFFF
            },
            EventKind::VectorMessage {
                selector: Selector::Queue(1),
                message_number: 5
            },
            EventKind::QueueEnabled { queue: 0, size: 64 },
            EventKind::IsrRead { value: 0 },
            EventKind::IsrRan {
                message_id: Some(1),
                claimed: true,
                isr_status: None
            },
            EventKind::IsrRan {
                message_id: None,
                claimed: true,
                isr_status: Some(1)
            },
            EventKind::CounterSummary {
                message: Some(1),
                isr_count: 5,
                dpc_count: 4
            },
            EventKind::CounterSummary {
                message: None,
                isr_count: 9,
                dpc_count: 9
            },
            EventKind::PowerTransition {
                entering_d0: false,
                state: 3
            },
            EventKind::PowerTransition {
                entering_d0: true,
                state: 3
            },
        ]
    );
}

/// What the Debug Print Filter drops never reaches the capture, so the reader sees only the
/// error-level line: an untuned Windows 7 shows nothing of the checklist's prints.
#[test]
fn filtered_prints_leave_no_evidence() {
    let mut p =
        DbgPrint::new(DbgViewStyle::default()).with_filter(DebugPrintFilter::windows_default());
    p.device_status(0);
    p.msix_config(0, 0, 0);
    p.d0_entry(3);
    p.error("virqblk: bring-up failed");
    assert_eq!(p.dropped, 3);
    assert_eq!(read_back(&p), []);
    assert_eq!(p.capture.texts(), ["virqblk: bring-up failed"]);
}
