//! The judge on hand-made evidence: starts, devices, the device record's order checks, the
//! storm rows, and what a bound lets go.

use std::collections::BTreeSet;

use virq_events::{Event, EventKind, InterruptCause, InterruptMode, NO_VECTOR, Origin, Selector};

use crate::{Judge, Overall, Verdict, judge};

fn file(path: &str, line: u64, device: Option<&str>, kind: EventKind) -> Event {
    Event {
        seq: line,
        time_ns: None,
        device: device.map(str::to_string),
        origin: Origin::File {
            path: path.into(),
            line,
            text: format!("line {line}"),
        },
        kind,
    }
}

fn run(device: &str, kind: EventKind) -> Event {
    Event {
        seq: 0,
        time_ns: None,
        device: Some(device.into()),
        origin: Origin::Run,
        kind,
    }
}

fn message_resource() -> EventKind {
    EventKind::ResourceAssigned {
        mode: InterruptMode::Message,
        message_count: 0,
        level: 9,
        vector: 0x91,
        affinity: 1,
        flags: 3,
        raw: false,
    }
}

fn rows(j: &crate::Judgement, i: usize) -> Vec<u8> {
    j.subjects[i].broken_rows().into_iter().collect()
}

#[test]
fn a_session_marker_splits_a_source_into_starts_and_a_later_snapshot_joins_the_last() {
    let mut events = Vec::new();
    let mut line = 0;
    let mut push = |kind| {
        line += 1;
        events.push(file("cap.log", line, None, kind));
    };
    for start in 0..2u16 {
        if start > 0 {
            push(EventKind::SessionStart {
                label: "driver start".into(),
            });
        }
        push(message_resource());
        // The first start programs an APIC vector (row 3); the second does it right.
        let v = if start == 0 { 0x91 } else { 0 };
        push(EventKind::VectorWritten {
            selector: Selector::MsixConfig,
            written: v,
            read_back: v,
        });
    }
    events.push(file(
        "pci.txt",
        1,
        Some("0000:00:04.0"),
        EventKind::MsixCapabilitySeen {
            enabled: true,
            function_masked: false,
            table_size: 2,
        },
    ));
    let j = judge(&events);
    assert_eq!(j.subjects.len(), 2);
    assert_eq!(j.subjects[0].device.as_deref(), Some("00:04.0"));
    assert_eq!((j.subjects[0].start, j.subjects[0].starts), (1, 2));
    assert_eq!(rows(&j, 0), [3]);
    assert!(rows(&j, 1).is_empty());
    // The !pci dump (no start of its own) describes the last start only.
    assert_eq!(j.subjects[1].step(4).verdict, Verdict::Holds);
    assert!(matches!(
        j.subjects[0].step(4).verdict,
        Verdict::CannotTell { .. }
    ));
    assert_eq!(j.subjects[1].label.as_deref(), Some("driver start"));
}

/// A device's record, in the order the device emitted it.
fn record(kinds: Vec<EventKind>) -> Vec<Event> {
    kinds.into_iter().map(|k| run("00:01.0", k)).collect()
}

#[test]
fn a_line_raised_while_msix_is_enabled_is_row_14_from_the_record() {
    let j = judge(&record(vec![
        EventKind::MsixControl {
            enabled: true,
            function_masked: false,
        },
        EventKind::LineRaised { pin: 1 },
    ]));
    assert_eq!(rows(&j, 0), [14]);
    let clean = judge(&record(vec![
        EventKind::LineRaised { pin: 1 },
        EventKind::LineLowered { pin: 1 },
        EventKind::MsixControl {
            enabled: true,
            function_masked: false,
        },
    ]));
    assert!(rows(&clean, 0).is_empty());
    assert_eq!(clean.subjects[0].row(14).verdict, Verdict::Holds);
}

#[test]
fn a_message_through_a_mask_is_row_15_and_an_unmasked_one_is_not() {
    let sent = EventKind::MessageSent {
        cause: InterruptCause::Queue(0),
        entry: 1,
        address: 0xFEE0_0000,
        data: 0x41,
    };
    let masked = judge(&record(vec![
        EventKind::MsixControl {
            enabled: true,
            function_masked: true,
        },
        sent.clone(),
    ]));
    assert_eq!(rows(&masked, 0), [15]);
    let fine = judge(&record(vec![
        EventKind::MsixControl {
            enabled: true,
            function_masked: false,
        },
        EventKind::MsixEntry {
            entry: 1,
            address: 0xFEE0_0000,
            data: 0x41,
            masked: false,
        },
        sent,
    ]));
    assert!(rows(&fine, 0).is_empty(), "{:?}", rows(&fine, 0));
    assert_eq!(fine.subjects[0].row(15).verdict, Verdict::Holds);
}

#[test]
fn ring_use_while_bus_master_is_off_is_row_29() {
    let j = judge(&record(vec![
        EventKind::PciCommand { value: 0x0002 },
        EventKind::UsedPublished { queue: 0, count: 1 },
    ]));
    assert_eq!(rows(&j, 0), [29]);
    let fine = judge(&record(vec![
        EventKind::PciCommand { value: 0x0006 },
        EventKind::UsedPublished { queue: 0, count: 1 },
    ]));
    assert_eq!(fine.subjects[0].row(29).verdict, Verdict::Holds);
}

#[test]
fn a_pending_bit_delivered_after_a_reset_is_row_30() {
    let pending = vec![
        EventKind::VectorWritten {
            selector: Selector::Queue(0),
            written: 1,
            read_back: 1,
        },
        EventKind::MsixEntry {
            entry: 1,
            address: 0xFEE0_0000,
            data: 0x41,
            masked: true,
        },
        EventKind::PendingSet { entry: 1 },
    ];
    let deliver = EventKind::MessageSent {
        cause: InterruptCause::PendingDelivery,
        entry: 1,
        address: 0xFEE0_0000,
        data: 0x41,
    };
    let mut stale = pending.clone();
    stale.extend([
        EventKind::DeviceReset,
        EventKind::MsixControl {
            enabled: true,
            function_masked: false,
        },
        EventKind::MsixEntry {
            entry: 1,
            address: 0xFEE0_0000,
            data: 0x41,
            masked: false,
        },
        deliver.clone(),
    ]);
    let j = judge(&record(stale));
    assert!(rows(&j, 0).contains(&30), "{:?}", rows(&j, 0));
    let mut fresh = vec![EventKind::MsixControl {
        enabled: true,
        function_masked: false,
    }];
    fresh.extend(pending);
    fresh.extend([
        EventKind::MsixEntry {
            entry: 1,
            address: 0xFEE0_0000,
            data: 0x41,
            masked: false,
        },
        deliver,
    ]);
    let j = judge(&record(fresh));
    assert_eq!(
        j.subjects[0].row(30).verdict,
        Verdict::Holds,
        "{:?}",
        rows(&j, 0)
    );
}

#[test]
fn isr_reads_that_never_clear_and_a_line_high_with_nothing_pending_are_rows_22_and_19() {
    let j = judge(&record(vec![
        EventKind::UsedPublished { queue: 0, count: 1 },
        EventKind::LineRaised { pin: 1 },
        EventKind::IsrRead { value: 1 },
        EventKind::IsrRead { value: 1 },
    ]));
    assert!(rows(&j, 0).contains(&22), "{:?}", rows(&j, 0));
    let j = judge(&record(vec![
        EventKind::LineRaised { pin: 1 },
        EventKind::DeviceReset,
        EventKind::IsrRead { value: 0 },
    ]));
    assert!(rows(&j, 0).contains(&19), "{:?}", rows(&j, 0));
}

fn lspci(line: u64, kind: EventKind) -> Event {
    file("lspci.txt", line, Some("00:04.0"), kind)
}

fn nobody(handlers: &[&str]) -> Event {
    file(
        "dmesg.log",
        6,
        None,
        EventKind::IrqNobodyCared {
            irq: 11,
            handlers: handlers.iter().map(|h| h.to_string()).collect(),
        },
    )
}

#[test]
fn nobody_cared_on_a_line_another_driver_owns_is_not_this_devices_link() {
    let base = vec![
        lspci(1, EventKind::IntxRouted { pin: 1, irq: 11 }),
        lspci(
            2,
            EventKind::MsixCapabilitySeen {
                enabled: false,
                function_masked: false,
                table_size: 3,
            },
        ),
        file(
            "other.txt",
            1,
            Some("00:1d.0"),
            EventKind::IntxRouted { pin: 1, irq: 11 },
        ),
    ];
    let mut events = base.clone();
    events.push(nobody(&["usb_hcd_irq"]));
    let j = judge(&events);
    let dev = j
        .subjects
        .iter()
        .find(|s| s.device.as_deref() == Some("00:04.0"))
        .unwrap();
    assert!(
        dev.broken_rows().is_empty() && dev.candidate_rows().is_empty(),
        "{:?}",
        dev.rows
    );
    assert_eq!(dev.row(1).verdict, Verdict::Holds);
    assert!(dev.row(1).finding.contains("usb_hcd_irq"));

    let mut events = base;
    events.push(nobody(&["vp_interrupt"]));
    let j = judge(&events);
    let dev = j
        .subjects
        .iter()
        .find(|s| s.device.as_deref() == Some("00:04.0"))
        .unwrap();
    // Linux's virtio handler reads ISR status: not row 1; the device side is suspect.
    assert_eq!(dev.candidate_rows(), BTreeSet::from([19, 20, 22]));
    assert_eq!(dev.row(1).verdict, Verdict::Holds);
    assert_eq!(dev.overall(), Overall::Broken);
}

#[test]
fn a_virtio_handler_name_joins_the_pci_function_routed_to_its_irq() {
    let events = vec![
        lspci(1, EventKind::IntxRouted { pin: 1, irq: 11 }),
        file(
            "proc.txt",
            3,
            Some("virtio0"),
            EventKind::IrqCount {
                irq: "11".into(),
                name: "virtio0".into(),
                count: 100_000,
                chip: Some("IO-APIC 11-fasteoi".into()),
            },
        ),
    ];
    let j = judge(&events);
    assert_eq!(
        j.subjects.len(),
        1,
        "{:?}",
        j.subjects.iter().map(|s| &s.device).collect::<Vec<_>>()
    );
    let s = &j.subjects[0];
    assert_eq!(s.device.as_deref(), Some("00:04.0"));
    // Frozen at the kernel's cutoff: the line stormed.
    assert!(s.step(7).verdict.is_broken(), "{:?}", s.step(7));
}

#[test]
fn evidence_a_bound_let_go_turns_holds_into_cannot_tell() {
    let mut j = Judge::new();
    let mut line = 0;
    let mut e = |kind| {
        line += 1;
        file("big.log", line, None, kind)
    };
    j.observe(&e(message_resource()));
    for _ in 0..10_000 {
        j.observe(&e(EventKind::VectorWritten {
            selector: Selector::Queue(0),
            written: 0,
            read_back: 0,
        }));
    }
    let judged = j.finish();
    let s = &judged.subjects[0];
    assert!(!s.lost.is_empty());
    assert!(
        matches!(s.step(5).verdict, Verdict::CannotTell { .. }),
        "{:?}",
        s.step(5)
    );
    assert!(matches!(s.step(6).verdict, Verdict::CannotTell { .. }));
    // Steps whose evidence was all kept still hold.
    assert_eq!(s.step(1).verdict, Verdict::Holds);

    let mut j = Judge::new();
    j.observe(&file("cut.log", 1, None, message_resource()));
    j.note_lost("cut.log", "lines cut at the length limit", 1);
    let judged = j.finish();
    assert!(matches!(
        judged.subjects[0].step(1).verdict,
        Verdict::CannotTell { .. }
    ));
}

#[test]
fn a_read_back_of_no_vector_in_message_mode_without_a_reset_names_the_refusal() {
    let events = vec![
        file("c.log", 1, None, message_resource()),
        file(
            "c.log",
            2,
            None,
            EventKind::VectorWritten {
                selector: Selector::Queue(0),
                written: 7,
                read_back: NO_VECTOR,
            },
        ),
        file(
            "c.log",
            3,
            None,
            EventKind::MsixCapabilitySeen {
                enabled: true,
                function_masked: false,
                table_size: 2,
            },
        ),
    ];
    let j = judge(&events);
    let s = &j.subjects[0];
    // 7 is beyond a 2-entry table and below 0x20: the device refused it (step 6), and the
    // driver wrote an index beyond the grant (row 4).
    assert!(s.step(6).verdict.is_broken());
    assert!(s.broken_rows().contains(&4), "{:?}", s.broken_rows());
    assert_eq!(s.row(18).verdict, Verdict::Holds);
}

fn source(path: &str, format: &str, lines: u64) -> Event {
    file(
        path,
        0,
        None,
        EventKind::SourceRead {
            format: format.into(),
            lines,
        },
    )
}

/// Row 25: a DbgView capture with none of the driver's lines while `!devnode` says started.
#[test]
fn a_capture_without_the_drivers_lines_while_started_is_row_25() {
    let events = vec![
        source("dbgview.log", "DbgView capture", 3),
        file("devnode.txt", 4, None, EventKind::DeviceStarted),
        file("devnode.txt", 14, None, message_resource()),
        source("devnode.txt", "WinDbg output", 20),
    ];
    let j = judge(&events);
    assert_eq!(j.subjects.len(), 1);
    assert_eq!(rows(&j, 0), [25], "{:#?}", j.subjects[0].row(25));
    assert_eq!(j.subjects[0].step(2).rows, [25]);
}

fn dbg(line: u64, kind: EventKind) -> Event {
    file("dbgview.log", line, None, kind)
}

fn wdfint(message_number: u32, vector: u32) -> EventKind {
    EventKind::InterruptConnected {
        message_signaled: vector != 0,
        message_number,
        vector,
        irql: (vector >> 4) as u8,
        affinity: u64::from(vector != 0),
    }
}

fn translated(vector: u32) -> EventKind {
    EventKind::ResourceAssigned {
        mode: InterruptMode::Message,
        message_count: 0,
        level: vector >> 4,
        vector,
        affinity: 1,
        flags: 3,
        raw: false,
    }
}

fn write(selector: Selector, value: u16) -> EventKind {
    EventKind::VectorWritten {
        selector,
        written: value,
        read_back: value,
    }
}

fn status(value: u8) -> EventKind {
    EventKind::DeviceStatus { value }
}

fn power(entering_d0: bool) -> EventKind {
    EventKind::PowerTransition {
        entering_d0,
        state: 3,
    }
}

/// Windows 7's inbox KMDF 1.9: the print after each WdfInterruptCreate (in
/// EvtDriverDeviceAdd) reads zeros, the print after start the real values. Nothing is broken.
#[test]
fn kmdf_1_9_zeros_before_start_then_real_values_are_not_a_failure() {
    let events = vec![
        dbg(1, wdfint(0, 0)),
        dbg(2, wdfint(1, 0)),
        dbg(3, translated(0xB1)),
        dbg(4, translated(0xA1)),
        dbg(5, wdfint(0, 0xB1)),
        dbg(6, wdfint(1, 0xA1)),
        dbg(7, status(0)),
        dbg(8, write(Selector::MsixConfig, 0)),
        dbg(9, write(Selector::Queue(0), 1)),
        dbg(10, status(0xF)),
    ];
    let j = judge(&events);
    let s = &j.subjects[0];
    assert!(s.broken_rows().is_empty(), "{:#?}", s.rows);
    assert!(s.candidate_rows().is_empty());
    assert!(s.row(23).verdict.is_holds(), "{:?}", s.row(23));
    assert!(s.row(7).verdict.is_holds(), "{:?}", s.row(7));
    assert!(s.row(24).verdict.is_holds(), "{:?}", s.row(24));
    assert!(s.step(3).verdict.is_holds());
}

/// Row 23: only the zeros from before start, message resources granted, no vector programmed.
/// Not row 24 (the count was never the driver's input) and not row 2.
#[test]
fn zeros_only_before_start_is_row_23_alone() {
    let events = vec![
        dbg(1, wdfint(0, 0)),
        dbg(2, wdfint(1, 0)),
        dbg(3, wdfint(2, 0)),
        dbg(4, translated(0xB1)),
        dbg(5, translated(0xA1)),
        dbg(6, translated(0x91)),
        dbg(7, status(0)),
        dbg(8, status(0xF)),
    ];
    let j = judge(&events);
    assert_eq!(rows(&j, 0), [23], "{:#?}", j.subjects[0].rows);
}

/// Row 24: three message descriptors (each translated MessageCount 0, the Group), config and
/// both queues on message 0.
#[test]
fn the_translated_count_read_as_the_message_count_is_row_24() {
    let events = vec![
        dbg(1, translated(0xB1)),
        dbg(2, translated(0xA1)),
        dbg(3, translated(0x91)),
        dbg(4, status(0)),
        dbg(5, write(Selector::MsixConfig, 0)),
        dbg(6, write(Selector::Queue(0), 0)),
        dbg(7, write(Selector::Queue(1), 0)),
        dbg(8, status(0xF)),
    ];
    let j = judge(&events);
    assert_eq!(rows(&j, 0), [24], "{:#?}", j.subjects[0].rows);
}

/// The same descriptors in the driver's dump and in a pasted `!devnode` of the same source
/// count once (each message has its own vector).
#[test]
fn one_list_seen_twice_counts_its_messages_once() {
    let events = vec![
        dbg(1, translated(0xB1)),
        dbg(2, translated(0xA1)),
        dbg(3, translated(0xB1)),
        dbg(4, translated(0xA1)),
    ];
    let j = judge(&events);
    assert!(
        j.subjects[0]
            .step(1)
            .finding
            .contains("2 Interrupt Request entries"),
        "{}",
        j.subjects[0].step(1).finding
    );
}

fn programmed_then_sleep(reprogram: bool) -> Vec<Event> {
    let mut events = vec![
        dbg(1, translated(0xB1)),
        dbg(2, translated(0xA1)),
        dbg(3, status(0)),
        dbg(4, write(Selector::MsixConfig, 0)),
        dbg(5, write(Selector::Queue(0), 1)),
        dbg(6, status(0xF)),
        dbg(7, power(false)),
        dbg(8, status(0)),
        dbg(9, power(true)),
        dbg(
            10,
            EventKind::VectorRead {
                selector: Selector::MsixConfig,
                value: NO_VECTOR,
            },
        ),
        dbg(11, status(0)),
    ];
    if reprogram {
        events.push(dbg(12, write(Selector::MsixConfig, 0)));
        events.push(dbg(13, write(Selector::Queue(0), 1)));
    }
    events.push(dbg(14, status(0xF)));
    events
}

/// Row 27: the vectors programmed before a sleep and not again after the reset at D0 entry.
/// Row 2 is this row's general form: it is not named a second time.
#[test]
fn vectors_not_reprogrammed_after_d0_entry_are_row_27() {
    let j = judge(&programmed_then_sleep(false));
    assert_eq!(rows(&j, 0), [27], "{:#?}", j.subjects[0].rows);
    let s = &j.subjects[0];
    assert_eq!(s.step(6).rows, [27]);
    assert!(matches!(s.row(2).verdict, Verdict::CannotTell { .. }));
    let quoted: Vec<u64> = s
        .row(27)
        .proof
        .iter()
        .filter_map(|e| match e.origin {
            Origin::File { line, .. } => Some(line),
            Origin::Run => None,
        })
        .collect();
    assert!(quoted.contains(&7) && quoted.contains(&8), "{quoted:?}");
    // Programmed again in EvtDeviceD0Entry: ruled out, with the D0 entry quoted.
    let ok = judge(&programmed_then_sleep(true));
    assert!(ok.subjects[0].broken_rows().is_empty());
    assert!(ok.subjects[0].row(27).verdict.is_holds());
}

/// A reset without any power transition is row 2, not row 27.
#[test]
fn a_reset_without_a_power_transition_is_row_2() {
    let events: Vec<Event> = programmed_then_sleep(false)
        .into_iter()
        .filter(|e| !matches!(e.kind, EventKind::PowerTransition { .. }))
        .collect();
    let j = judge(&events);
    assert_eq!(rows(&j, 0), [2], "{:#?}", j.subjects[0].rows);
}

/// Row 25 needs the device started; with the driver's prints in the capture it is ruled out;
/// a capture with free text that may be a real driver's own words says nothing.
#[test]
fn row_25_needs_a_start_and_no_line_of_the_driver() {
    let j = judge(&[
        source("dbgview.log", "DbgView capture", 3),
        file("devnode.txt", 14, None, message_resource()),
    ]);
    assert!(matches!(
        j.subjects[0].row(25).verdict,
        Verdict::CannotTell { .. }
    ));
    let j = judge(&[
        dbg(1, translated(0xB1)),
        source("dbgview.log", "DbgView capture", 1),
        file("devnode.txt", 4, None, EventKind::DeviceStarted),
    ]);
    assert!(j.subjects[0].row(25).verdict.is_holds());
    let j = judge(&[
        dbg(
            1,
            EventKind::LogLine {
                text: "viostor: using one MSI vector for all queues".into(),
            },
        ),
        source("dbgview.log", "DbgView capture", 1),
        file("devnode.txt", 4, None, EventKind::DeviceStarted),
        file("devnode.txt", 14, None, message_resource()),
    ]);
    assert!(!j.subjects[0].row(25).verdict.is_broken());
}

/// WinDbg output alone (a `SourceRead` of "WinDbg output"): the resources show what Windows
/// assigned, not what the driver read or printed. Step 2 (the driver's own dump) and rows 24-25
/// cannot be told; on a line, steps 1 and 5 and rows 4, 13, 26, 28 need the INF or the driver's
/// selector accesses. The same resources printed by the driver in a DbgView capture decide them.
#[test]
fn windbg_resources_alone_are_not_the_drivers_prints() {
    let source = |path: &str, format: &str| {
        file(
            path,
            0,
            None,
            EventKind::SourceRead {
                format: format.into(),
                lines: 10,
            },
        )
    };
    let cap = file(
        "pci.txt",
        1,
        Some("00:04.0"),
        EventKind::MsixCapabilitySeen {
            enabled: false,
            function_masked: false,
            table_size: 3,
        },
    );
    let line = EventKind::ResourceAssigned {
        mode: InterruptMode::Intx,
        message_count: 0,
        level: 0xb,
        vector: 0xb1,
        affinity: 1,
        flags: 0,
        raw: false,
    };
    let cannot = |v: &Verdict, what: &str| matches!(v, Verdict::CannotTell { missing } if missing.contains(what));
    // Messages, from WinDbg only.
    let j = judge(&[
        file("dt.txt", 5, None, message_resource()),
        source("dt.txt", "WinDbg output"),
        cap.clone(),
    ]);
    let s = &j.subjects[0];
    assert_eq!(s.step(1).verdict, Verdict::Holds);
    assert!(
        cannot(&s.step(2).verdict, "INT:"),
        "{:?}",
        s.step(2).verdict
    );
    assert!(s.step(2).finding.contains("1 message(s)"));
    assert!(cannot(&s.row(24).verdict, "INT:"));
    assert!(cannot(&s.row(25).verdict, "INT:"), "{:?}", s.row(25));
    // The same line printed by the driver in a capture is its own dump.
    let j = judge(&[
        file("cap.log", 5, None, message_resource()),
        source("cap.log", "DbgView capture"),
    ]);
    assert_eq!(j.subjects[0].step(2).verdict, Verdict::Holds);
    // A line on a device with MSI-X, from WinDbg only.
    let j = judge(&[
        file("dt.txt", 5, None, line.clone()),
        source("dt.txt", "WinDbg output"),
        cap.clone(),
    ]);
    let s = &j.subjects[0];
    assert!(cannot(&s.step(1).verdict, "INF"), "{:?}", s.step(1).verdict);
    for row in [13, 28] {
        assert!(
            cannot(&s.row(row).verdict, "INF"),
            "{row}: {:?}",
            s.row(row)
        );
    }
    assert!(
        cannot(&s.step(5).verdict, "VIRTIO:"),
        "{:?}",
        s.step(5).verdict
    );
    for row in [4, 26] {
        assert!(
            cannot(&s.row(row).verdict, "VIRTIO:"),
            "{row}: {:?}",
            s.row(row)
        );
    }
    // With the driver's accesses (it left the selectors alone) step 5 holds and row 26 is out.
    let j = judge(&[
        file("dt.txt", 5, None, line),
        source("dt.txt", "WinDbg output"),
        cap,
        file(
            "cap.log",
            1,
            None,
            EventKind::VectorRead {
                selector: Selector::MsixConfig,
                value: NO_VECTOR,
            },
        ),
    ]);
    let s = &j.subjects[0];
    assert_eq!(s.step(5).verdict, Verdict::Holds);
    assert_eq!(s.row(26).verdict, Verdict::Holds);
}
