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
