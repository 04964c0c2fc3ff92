//! Catalogue rows 6-22 from hand-written captures that use the prints of docs/log-formats.md
//! (including the `ISR:` samples, line 8, and `queue_enable`, line 9), WinDbg and lspci output.

use std::path::PathBuf;
use virq_doctor::{Finding, Report, Verdict, diagnose};
use virq_events::Origin;

fn report(names: &[&str]) -> Report {
    let paths: Vec<PathBuf> = names
        .iter()
        .map(|n| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("tests/fixtures")
                .join(n)
        })
        .collect();
    diagnose(&paths).unwrap_or_else(|e| panic!("{e}"))
}

fn lines_in(f: &Finding, file: &str) -> Vec<u64> {
    f.proof
        .iter()
        .filter_map(|e| match &e.origin {
            Origin::File { path, line, .. } if path.ends_with(file) => Some(*line),
            _ => None,
        })
        .collect()
}

fn broken_rows(r: &Report) -> Vec<u8> {
    r.findings
        .iter()
        .skip(7)
        .filter(|f| f.verdict.is_broken())
        .filter_map(|f| f.catalogue_row)
        .collect()
}

fn cannot(f: &Finding) -> &str {
    match &f.verdict {
        Verdict::CannotTell { missing } => missing,
        v => panic!("row {:?} is {v:?}, expected cannot tell", f.catalogue_row),
    }
}

#[test]
fn every_catalogue_row_has_a_rule_in_order() {
    let r = report(&["good-msix.log"]);
    let rows: Vec<u8> = r
        .findings
        .iter()
        .skip(7)
        .filter_map(|f| f.catalogue_row)
        .collect();
    assert_eq!(rows, (1..=22).collect::<Vec<u8>>());
}

#[test]
fn isr_claiming_without_reading_is_row_1_not_11_or_19() {
    let r = report(&["isr-claims-unread.log"]);
    assert_eq!(broken_rows(&r), [1]);
    assert_eq!(
        lines_in(r.row(1).unwrap(), "isr-claims-unread.log"),
        [1, 4, 5, 6]
    );
    assert!(
        r.row(1)
            .unwrap()
            .symptom
            .contains("without reading ISR status")
    );
    assert_eq!(r.row(11).unwrap().verdict, Verdict::Holds);
    assert_eq!(r.row(19).unwrap().verdict, Verdict::Holds);
}

#[test]
fn isr_saying_not_mine_without_reading_is_row_11_not_1() {
    let r = report(&["isr-notmine-unread.log"]);
    assert_eq!(broken_rows(&r), [11]);
    assert_eq!(
        lines_in(r.row(11).unwrap(), "isr-notmine-unread.log"),
        [1, 3, 4, 5]
    );
    assert_eq!(r.row(1).unwrap().verdict, Verdict::Holds);
    assert!(r.row(1).unwrap().symptom.contains("row 11"));
}

#[test]
fn a_line_high_while_isr_status_reads_zero_is_row_19() {
    let r = report(&["isr-line-stuck.log"]);
    assert_eq!(broken_rows(&r), [19]);
    let f = r.row(19).unwrap();
    assert!(f.symptom.contains("after a reset"), "{}", f.symptom);
    // The reset, the two zero reads, the counters around the storm.
    assert_eq!(lines_in(f, "isr-line-stuck.log"), [1, 3, 4, 5, 6, 7]);
    assert_eq!(r.row(1).unwrap().verdict, Verdict::Holds);
    assert_eq!(r.row(22).unwrap().verdict, Verdict::Holds);
}

#[test]
fn isr_status_that_never_clears_is_row_22() {
    let text = "INT: INTx Level=11 Vector=11 Affinity=0xf Flags=0x0\n\
                VIRTIO: isr_status read=0x01\n\
                VIRTIO: isr_status read=0x01\n\
                COUNTERS: INTx isr=9 dpc=9 LastIsrStatus=0x01\n";
    let mut ev = virq_doctor::Evidence::new();
    ev.add_reader("inline.log", text.as_bytes(), Default::default())
        .unwrap();
    let r = Report::new(&ev);
    assert_eq!(broken_rows(&r), [22]);
    assert_eq!(lines_in(r.row(22).unwrap(), "inline.log"), [2, 3]);
}

#[test]
fn message_zero_refused_and_an_unmapped_id_are_rows_9_and_8() {
    let r = report(&["isr-message-zero.log"]);
    assert_eq!(broken_rows(&r), [6, 8, 9]);
    assert_eq!(lines_in(r.row(9).unwrap(), "isr-message-zero.log"), [7]);
    let r8 = r.row(8).unwrap();
    assert!(
        r8.symptom.contains("message ID 3 with only 2"),
        "{}",
        r8.symptom
    );
    assert_eq!(lines_in(r8, "isr-message-zero.log"), [1, 9]);
    // Message 3 is seen by the ISR but no selector holds it.
    assert!(r.row(6).unwrap().symptom.contains("message(s) 3"));
}

#[test]
fn device_rows_from_driver_prints_and_lspci() {
    let r = report(&["device-rows.log", "lspci-intx-with-msix.txt"]);
    let rows = broken_rows(&r);
    for row in [10, 14, 17, 18, 21] {
        assert!(
            rows.contains(&row),
            "row {row} in {rows:?}\n{}",
            r.render_text()
        );
    }
    assert_eq!(lines_in(r.row(17).unwrap(), "device-rows.log"), [5, 6]);
    assert_eq!(lines_in(r.row(18).unwrap(), "device-rows.log"), [9]);
    assert_eq!(
        lines_in(r.row(18).unwrap(), "lspci-intx-with-msix.txt"),
        [6]
    );
    assert_eq!(lines_in(r.row(10).unwrap(), "device-rows.log"), [8, 10, 11]);
    assert_eq!(
        lines_in(r.row(14).unwrap(), "lspci-intx-with-msix.txt"),
        [4, 6]
    );
    assert!(
        r.row(21)
            .unwrap()
            .symptom
            .contains("2 entries for config + 2 queue(s)")
    );
    // DisINTx+ with no line counts: whether the line still fires is not shown.
    assert!(cannot(r.row(20).unwrap()).contains("Interrupt Disable"));
    assert!(cannot(r.row(15).unwrap()).contains("COUNTERS"));
}

#[test]
fn config_space_of_all_ones_is_row_12() {
    let r = report(&["good-msix.log", "windbg-pci-removed.txt"]);
    assert!(broken_rows(&r).contains(&12));
    assert_eq!(lines_in(r.row(12).unwrap(), "windbg-pci-removed.txt"), [3]);
    // An all-ones Status word is not an INTx pending bit.
    assert!(!broken_rows(&r).contains(&14));
    let good = report(&["good-msix.log", "windbg-pci-good.txt"]);
    assert_eq!(good.row(12).unwrap().verdict, Verdict::Holds);
}

#[test]
fn a_good_capture_says_cannot_tell_for_what_it_cannot_show() {
    let r = report(&["good-msix.log", "windbg-pci-good.txt"]);
    assert!(broken_rows(&r).is_empty(), "{}", r.render_text());
    // Nothing read a selector between a reset and the first write.
    assert!(cannot(r.row(17).unwrap()).contains("msix_config read="));
    // No write beyond the table, so whether the device would refuse one is unknown.
    assert!(cannot(r.row(18).unwrap()).contains("table size"));
    assert_eq!(r.row(6).unwrap().verdict, Verdict::Holds);
    assert_eq!(r.row(16).unwrap().verdict, Verdict::Holds);
}

/// Row 13 from the driver's INF: the MSI keys sit in the install section's AddReg, not the
/// `.HW` one, and Windows granted a line. The proof quotes the INF's own lines.
#[test]
fn inf_with_keys_outside_the_hw_addreg_is_row_13() {
    let r = report(&["no-msi-inf.log", "misplaced-keys.inf"]);
    assert!(
        r.files.iter().any(|f| f.format.label() == "driver INF"),
        "{:?}",
        r.files
    );
    assert_eq!(broken_rows(&r), [13], "{}", r.render_text());
    let row13 = r.row(13).unwrap();
    assert_eq!(lines_in(row13, "misplaced-keys.inf"), [13, 20, 21]);
    assert_eq!(lines_in(row13, "no-msi-inf.log"), [1]);
}
