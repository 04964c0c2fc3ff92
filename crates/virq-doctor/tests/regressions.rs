//! Inputs the fuzzers found, kept so they stay fixed.

use std::io::Cursor;
use virq_doctor::parse::{ParseLimits, parse_to_vec};

/// `doctor_parse` found it: a line after `[Version]` whose ninth byte falls inside a UTF-8
/// character made the INF sniffer slice a `str` off a character boundary and panic.
#[test]
fn inf_sniffer_survives_a_multibyte_character_at_byte_nine() {
    let line = "Signaturé = \"$WINDOWS NT$\"";
    assert_eq!(&line.as_bytes()[8..10], "é".as_bytes());
    let input = format!("[Version]\n{line}\n");
    let result = parse_to_vec(
        "x.inf",
        Cursor::new(input.as_bytes()),
        ParseLimits::default(),
    );
    // Not an INF (the key is not `Signature`) and no other format: a clear error, no panic.
    assert!(result.is_err(), "{result:?}");
    let crash =
        include_bytes!("../../../fuzz/regressions/doctor_parse-inf-signature-char-boundary");
    // The fuzzer's input itself: read as an INF fragment (its comment says so) that holds
    // no key the judge uses.
    let (events, summary) =
        parse_to_vec("crash.txt", Cursor::new(&crash[..]), ParseLimits::default()).unwrap();
    assert_eq!(summary.format, virq_doctor::Format::Inf);
    assert!(events.is_empty(), "{events:?}");
}

/// The events of the fuzzer's input `name` (every one of them reads as WinDbg output).
fn windbg_events(name: &str, input: &[u8]) -> Vec<virq_events::Event> {
    let (events, summary) = parse_to_vec(name, Cursor::new(input), ParseLimits::default()).unwrap();
    assert_eq!(summary.format, virq_doctor::Format::WinDbg);
    events
}

/// `doctor_parse` and `win_text` found it: an `!dd` row at the top of the address space after
/// a `!dd` of the MSI-X table made the memory reader add past 2^64 and panic. The row names no
/// table entry; the dump before it still reads.
#[test]
fn an_msix_memory_row_past_the_top_of_the_address_space() {
    let crash = include_bytes!("../../../fuzz/regressions/doctor_parse-dd-row-past-top-of-memory");
    let events = windbg_events("crash.txt", crash);
    assert_capability_read_but_no_entry(&events);
}

/// A `!pci` dump whose 64-bit BAR sits at the top of the address space, with the PBA offset
/// past 2^64: placing the table and PBA added past 2^64 and panicked. No location is noted,
/// so the `!dd` after it names no entry; the dump itself still reads.
#[test]
fn an_msix_bar_at_the_top_of_the_address_space() {
    let crash = include_bytes!("../../../fuzz/regressions/doctor_parse-pci-bar-at-top-of-memory");
    let events = windbg_events("crash.txt", crash);
    assert_capability_read_but_no_entry(&events);
}

/// The dump's MSI-X capability was read, and no table entry was placed anywhere.
fn assert_capability_read_but_no_entry(events: &[virq_events::Event]) {
    assert!(
        events
            .iter()
            .any(|e| matches!(e.kind, virq_events::EventKind::MsixCapabilitySeen { .. })),
        "{events:?}"
    );
    assert!(
        !events
            .iter()
            .any(|e| matches!(e.kind, virq_events::EventKind::MsixEntry { .. })),
        "{events:?}"
    );
}
