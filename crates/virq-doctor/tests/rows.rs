//! Catalogue rows the doctor names from hand-written captures, each with the lines that prove
//! it, and the rows it refuses to guess.

mod common;

use common::*;
use virq_doctor::{Check, Verdict};

#[test]
fn every_catalogue_row_is_answered_in_order() {
    let r = report(&["good-msix.log"]);
    let s = only(&r);
    let numbers: Vec<u8> = s
        .rows
        .iter()
        .map(|a| match a.check {
            Check::Row(n) => n,
            Check::Step(_) => 0,
        })
        .collect();
    assert_eq!(numbers, (1..=30).collect::<Vec<u8>>());
}

#[test]
fn isr_claiming_without_reading_is_row_1_not_11_or_19() {
    let r = report(&["isr-claims-unread.log"]);
    let s = only(&r);
    assert_eq!(rows(s), [1], "{}", r.render_text());
    assert!(!lines_in(s.row(1), "isr-claims-unread.log").is_empty());
    assert!(s.row(1).finding.contains("without ever reading ISR status"));
    assert!(!s.row(11).verdict.is_broken());
    assert!(!s.row(19).verdict.is_broken());
}

#[test]
fn isr_saying_not_mine_without_reading_is_row_11_not_1() {
    let r = report(&["isr-notmine-unread.log"]);
    let s = only(&r);
    assert_eq!(rows(s), [11], "{}", r.render_text());
    assert!(!lines_in(s.row(11), "isr-notmine-unread.log").is_empty());
    assert!(!s.row(1).verdict.is_broken());
}

#[test]
fn a_line_high_while_isr_status_reads_zero_is_row_19_or_20_until_the_command_word_says() {
    let r = report(&["isr-line-stuck.log"]);
    let s = only(&r);
    // The ISR reads 0 every time while the line storms: the device holds it. Whether Interrupt
    // Disable was set (row 20) or not (row 19) needs the Command register.
    assert!(rows(s).is_empty(), "{}", r.render_text());
    assert_eq!(candidates(s), [19, 20]);
    match &s.row(19).verdict {
        Verdict::OneOf { tell_apart, .. } => {
            assert!(tell_apart.contains("Command"), "{tell_apart}")
        }
        v => panic!("{v:?}"),
    }
    assert!(!s.row(1).verdict.is_broken());
    assert!(!s.row(22).verdict.is_broken());
}

#[test]
fn isr_status_that_never_clears_is_row_22() {
    let r = report_of(
        "INT: INTx Level=11 Vector=11 Affinity=0xf Flags=0x0\n\
         VIRTIO: isr_status read=0x01\n\
         VIRTIO: isr_status read=0x01\n\
         COUNTERS: INTx isr=40000 dpc=40000 LastIsrStatus=0x01\n\
         IO: queue=0 submitted=8 completed=8\n",
    );
    let s = only(&r);
    assert_eq!(rows(s), [22], "{}", r.render_text());
    assert!(lines_in(s.row(22), "inline.log").contains(&4));
}

#[test]
fn message_zero_refused_is_row_9() {
    let r = report(&["isr-message-zero.log"]);
    let s = only(&r);
    assert!(rows(s).contains(&9), "{}", r.render_text());
    assert!(lines_in(s.row(9), "isr-message-zero.log").contains(&7));
}

#[test]
fn device_rows_from_driver_prints_and_lspci() {
    let r = report(&["device-rows.log", "lspci-intx-with-msix.txt"]);
    let s = only(&r);
    let got = rows(s);
    for row in [10, 14, 17, 18, 21] {
        assert!(
            got.contains(&row),
            "row {row} in {got:?}\n{}",
            r.render_text()
        );
    }
    assert!(lines_in(s.row(17), "device-rows.log").contains(&6));
    assert!(lines_in(s.row(18), "device-rows.log").contains(&9));
    assert!(!lines_in(s.row(10), "device-rows.log").is_empty());
    assert_eq!(lines_in(s.row(14), "lspci-intx-with-msix.txt").len(), 2);
    assert!(
        s.row(21)
            .finding
            .contains("2 entries for config + 2 queue(s)"),
        "{}",
        s.row(21).finding
    );
}

#[test]
fn config_space_of_all_ones_is_a_removed_device() {
    let r = report(&["good-msix.log", "windbg-pci-removed.txt"]);
    let s = only(&r);
    // The ISR did not claim an all-ones status here, so row 12 is not broken: the device is
    // simply gone, and the report says so.
    assert!(!s.row(12).verdict.is_broken(), "{}", r.render_text());
    assert!(!lines_in(s.row(12), "windbg-pci-removed.txt").is_empty());
    assert!(
        !rows(s).contains(&14),
        "an all-ones Status word is not an INTx pending bit"
    );
}

#[test]
fn a_good_capture_rules_out_what_its_steps_prove() {
    let r = report(&["good-msix.log", "windbg-pci-good.txt"]);
    let s = only(&r);
    assert!(rows(s).is_empty(), "{}", r.render_text());
    assert_eq!(s.row(6).verdict, Verdict::Holds);
    assert_eq!(s.row(16).verdict, Verdict::Holds);
    assert_eq!(s.row(3).verdict, Verdict::Holds);
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
    let s = only(&r);
    assert!(rows(s).contains(&13), "{}", r.render_text());
    assert!(!lines_in(s.row(13), "misplaced-keys.inf").is_empty());
    assert!(!lines_in(s.row(13), "no-msi-inf.log").is_empty());
}
