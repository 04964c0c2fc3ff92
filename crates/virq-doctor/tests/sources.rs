//! Parsers: what each format turns into, and how unreadable inputs are reported.

mod common;

use common::*;
use std::path::PathBuf;
use virq_doctor::{
    FileSummary, Format, LoadError, ParseLimits, SourceError, diagnose, exit_code, parse_to_vec,
};
use virq_events::{Event, EventKind, InterruptMode, Origin, Selector};

/// The fixture `name` parsed as a file called `shown_as`, read through a buffered reader as
/// the doctor reads a file from disk.
#[track_caller]
fn parse_fixture(shown_as: &str, name: &str) -> (Vec<Event>, FileSummary) {
    let file = match std::fs::File::open(fixture(name)) {
        Ok(file) => file,
        Err(e) => panic!("{name}: {e}"),
    };
    match parse_to_vec(
        shown_as,
        std::io::BufReader::new(file),
        ParseLimits::default(),
    ) {
        Ok(parsed) => parsed,
        Err(e) => panic!("{name}: {e}"),
    }
}

/// Each event with the line it came from.
fn numbered(events: &[Event]) -> Vec<(u64, EventKind)> {
    events
        .iter()
        .map(|e| (line_of(e), e.kind.clone()))
        .collect()
}

fn parse(text: &str) -> Vec<Event> {
    parse_to_vec("t.log", text.as_bytes(), ParseLimits::default())
        .unwrap_or_else(|e| panic!("{e}"))
        .0
}

#[test]
fn every_file_says_what_it_was_and_how_long() {
    let mut events = Vec::new();
    let summary = virq_doctor::parse_reader(
        "c.log",
        "1\t0.1\tINT: INTx Level=11 Vector=11 Affinity=0x1 Flags=0x0\n2\t0.2\thello\n".as_bytes(),
        ParseLimits::default(),
        |e| events.push(e),
    )
    .unwrap();
    let read: Vec<&EventKind> = events
        .iter()
        .map(|e| &e.kind)
        .filter(|k| matches!(k, EventKind::SourceRead { .. }))
        .collect();
    assert_eq!(
        read,
        [&EventKind::SourceRead {
            format: "DbgView capture".into(),
            lines: 2
        }]
    );
    assert!(
        !summary.kinds.contains_key("source_read"),
        "not counted as evidence"
    );
}

fn scratch(name: &str, bytes: &[u8]) -> PathBuf {
    let p = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("virq-doctor-{name}"));
    std::fs::write(&p, bytes).unwrap();
    p
}

#[test]
fn crlf_dbgview_columns_give_times_and_line_numbers() {
    let (events, summary) = parse_fixture("storm.log", "intx-storm.log");
    assert_eq!(summary.format, Format::DbgView);
    assert_eq!(summary.lines, 13);
    let first = &events[0];
    assert_eq!(line_of(first), 2);
    assert_eq!(
        first.kind,
        EventKind::ResourceAssigned {
            mode: InterruptMode::Intx,
            message_count: 0,
            level: 11,
            vector: 11,
            affinity: 0xf,
            flags: 0,
            raw: false,
        }
    );
    assert_eq!(
        first.time_ns,
        Some((10 * 3600 + 14 * 60 + 2) * 1_000_000_000 + 341_000_000)
    );
    let Origin::File { text, .. } = &first.origin else {
        panic!()
    };
    assert!(!text.ends_with('\r'));
    let counters: Vec<_> = events
        .iter()
        .filter(|e| matches!(e.kind, EventKind::CounterSummary { message: None, .. }))
        .collect();
    assert_eq!(counters.len(), 3);
}

#[test]
fn real_driver_wordings_become_vector_writes() {
    let events = parse(
        "NetKVM: MSI-X enabled, 3 messages granted\n\
         NetKVM: queue 1 msix vector 0x00b3 read back 0xffff\n\
         viostor: config vector 0 readback 0\n\
         viostor: something unrelated\n",
    );
    let kinds = numbered(&events);
    assert_eq!(
        kinds,
        vec![
            (
                1,
                EventKind::LogLine {
                    text: "NetKVM: MSI-X enabled, 3 messages granted".into()
                }
            ),
            (
                2,
                EventKind::VectorWritten {
                    selector: Selector::Queue(1),
                    written: 0xb3,
                    read_back: 0xffff
                }
            ),
            (
                3,
                EventKind::VectorWritten {
                    selector: Selector::MsixConfig,
                    written: 0,
                    read_back: 0
                }
            ),
        ]
    );
}

#[test]
fn windbg_pci_and_devnode_dumps() {
    let (events, summary) = parse_fixture("pci.txt", "windbg-pci-good.txt");
    assert_eq!(summary.format, Format::WinDbg);
    let shown = numbered(&events);
    assert_eq!(
        shown,
        vec![
            (8, EventKind::PciCommand { value: 0x0507 }),
            (9, EventKind::IntxStatus { pending: false }),
            (19, msix_enabled_unmasked(3)),
            (29, EventKind::DeviceStarted),
            (
                36,
                EventKind::ResourceAssigned {
                    mode: InterruptMode::Message,
                    message_count: 3,
                    level: 0,
                    vector: 0xffff_fffe,
                    affinity: 3,
                    flags: 3,
                    raw: true,
                }
            ),
            (
                43,
                EventKind::ResourceAssigned {
                    mode: InterruptMode::Message,
                    message_count: 3,
                    level: 0,
                    vector: 0xb1,
                    affinity: 3,
                    flags: 3,
                    raw: false,
                }
            ),
        ],
        "the raw list's interrupt (line 36) is kept, marked raw"
    );
    assert_eq!(events[0].device.as_deref(), Some("00:04.0"));
}

#[test]
fn legacy_pci_line_and_message_control_word() {
    let events = parse(
        "0: kd> !pci 100 0 5 0\n\
         00:05.0 1af4:1042.01  Cmd[0403:i.....]  Sts[0018:c....]  SCSI Controller\n\
         \x20 CapID 11 MSI-X Capability\n\
         \x20     MessageControl 8002 something\n",
    );
    let kinds: Vec<_> = events.iter().map(|e| e.kind.clone()).collect();
    assert_eq!(
        kinds,
        vec![
            EventKind::PciCommand { value: 0x0403 },
            EventKind::IntxStatus { pending: true },
            msix_enabled_unmasked(3),
        ]
    );
    assert_eq!(line_of(&events[2]), 4);
    assert_eq!(events[2].device.as_deref(), Some("00:05.0"));
}

#[test]
fn lspci_keeps_only_virtio_functions() {
    let (events, summary) = parse_fixture("lspci.txt", "lspci-vvv.txt");
    assert_eq!(summary.format, Format::Lspci);
    assert!(
        events
            .iter()
            .all(|e| e.device.as_deref() == Some("00:04.0"))
    );
    let shown = numbered(&events);
    assert_eq!(
        shown,
        vec![
            (14, EventKind::PciCommand { value: 0x0507 }),
            (15, EventKind::IntxStatus { pending: false }),
            (17, EventKind::IntxRouted { pin: 1, irq: 10 }),
            (20, msix_enabled_unmasked(2)),
        ]
    );
}

#[test]
fn proc_interrupts_two_snapshots_keep_virtio_rows() {
    let (events, summary) = parse_fixture("pi.txt", "proc-interrupts-pair.txt");
    assert_eq!(summary.format, Format::ProcInterrupts);
    assert_eq!(events.len(), 10);
    let req: Vec<(u64, u64)> = events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::IrqCount {
                irq, name, count, ..
            } if name == "virtio0-req.0" => {
                assert_eq!(irq, "25");
                Some((line_of(e), *count))
            }
            _ => None,
        })
        .collect();
    assert_eq!(req, [(8, 2231), (24, 3100)]);
}

#[test]
fn dmesg_stamps_become_times_and_the_text_loses_them() {
    let events =
        parse("[   31.882410] irq 11: nobody cared (try booting with the \"irqpoll\" option)\n");
    assert_eq!(events[0].time_ns, Some(31_882_410_000));
    assert_eq!(
        events[0].kind,
        EventKind::LogLine {
            text: "irq 11: nobody cared (try booting with the \"irqpoll\" option)".into()
        }
    );
}

#[test]
fn long_lines_are_cut_and_counted() {
    let mut text = "x".repeat(100_000);
    text.push_str("\nINT: INTx Level=1 Vector=1 Affinity=0x1 Flags=0x0\n");
    let (events, summary) =
        parse_to_vec("long.log", text.as_bytes(), ParseLimits::default()).unwrap();
    assert_eq!(summary.truncated_lines, 1);
    assert_eq!(events.len(), 1);
    assert_eq!(line_of(&events[0]), 2);
}

#[test]
fn log_lines_are_bounded_per_file() {
    let text = "1\t0.5\tviostor: isr spurious\n".repeat(50);
    let limits = ParseLimits {
        max_log_lines: 10,
        ..ParseLimits::default()
    };
    let (events, summary) = parse_to_vec("spam.log", text.as_bytes(), limits).unwrap();
    assert_eq!(events.len(), 10);
    // Chatter past the limit is counted, not lost: no rule reads it.
    assert_eq!(summary.unquoted_log_lines, 40);
    assert_eq!(summary.dropped_events, 0);
}

#[test]
fn every_unreadable_file_is_named_with_its_reason() {
    let empty = scratch("empty.log", b"");
    let blank = scratch("blank.log", b"\n  \r\n\t\n");
    let binary = scratch("binary.bin", b"MZ\x90\x00\x03\x00\x00\x00\x04\x00");
    let utf16 = scratch("utf16.log", b"\xFF\xFEI\x00N\x00T\x00");
    let prose = scratch("prose.txt", b"Dear diary,\ntoday the disk was slow.\n");
    let missing = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("virq-doctor-missing.log");
    let paths = [
        empty.clone(),
        blank.clone(),
        binary.clone(),
        utf16.clone(),
        prose.clone(),
        missing.clone(),
        fixture("good-msix.log"),
    ];
    let result = diagnose(&paths);
    let Err(LoadError { errors }) = &result else {
        panic!("must fail")
    };
    assert_eq!(errors.len(), 6);
    assert!(matches!(errors[0], SourceError::Empty { .. }));
    assert!(matches!(errors[1], SourceError::Empty { .. }));
    assert!(matches!(errors[2], SourceError::Binary { offset: 3, .. }));
    assert!(matches!(errors[3], SourceError::Utf16 { .. }));
    assert!(matches!(errors[4], SourceError::NotRecognised { .. }));
    assert!(matches!(errors[5], SourceError::Missing { .. }));
    for (e, p) in errors.iter().zip(&paths) {
        assert_eq!(e.path(), p.display().to_string());
        assert!(e.to_string().starts_with(&p.display().to_string()), "{e}");
    }
    let message = result.as_ref().unwrap_err().to_string();
    assert_eq!(message.lines().count(), 6, "{message}");
    assert!(message.contains("not a recognised format"));
    assert_eq!(exit_code(&result), 2);
}

#[test]
fn the_report_records_which_file_gave_which_kinds() {
    let r = diagnose(&[fixture("good-msix.log"), fixture("lspci-vvv.txt")]).unwrap();
    assert_eq!(r.files.len(), 2);
    let with = |kind: &str| -> Vec<&str> {
        r.files
            .iter()
            .filter(|f| f.kinds.get(kind).is_some_and(|n| *n > 0))
            .map(|f| f.path.as_str())
            .collect()
    };
    assert_eq!(with("vector_written").len(), 1);
    assert!(with("vector_written")[0].ends_with("good-msix.log"));
    assert!(with("msix_capability_seen")[0].ends_with("lspci-vvv.txt"));
}
