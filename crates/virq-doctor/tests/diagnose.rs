//! The doctor names the right checklist step and catalogue row, quoting the right lines, for
//! each hand-written capture in tests/fixtures.

mod common;

use common::*;
use virq_doctor::{EXIT_BROKEN, EXIT_INCOMPLETE, EXIT_OK, Report, Verdict};

#[test]
fn good_msix_capture_with_pci_dump_holds_everywhere() {
    let r = report(&["good-msix.log", "windbg-pci-good.txt"]);
    let s = only(&r);
    for step in 1..=7 {
        assert_eq!(
            s.step(step).verdict,
            Verdict::Holds,
            "step {step}: {}",
            r.render_text()
        );
    }
    assert!(rows(s).is_empty(), "{}", r.render_text());
    assert_eq!(r.exit_code(), EXIT_OK);
    assert_eq!(lines_in(s.step(3), "good-msix.log"), [3, 4, 5]);
    assert!(!lines_in(s.step(4), "windbg-pci-good.txt").is_empty());
    assert!(
        s.step(7).finding.contains("isr=1630"),
        "{}",
        s.step(7).finding
    );
}

#[test]
fn good_capture_alone_cannot_tell_the_pci_layer() {
    let r = report(&["good-msix.log"]);
    let s = only(&r);
    assert!(matches!(
        &s.step(4).verdict,
        Verdict::CannotTell { missing } if missing.contains("!pci")
    ));
    assert!(rows(s).is_empty());
    assert_eq!(r.exit_code(), EXIT_INCOMPLETE, "not every link was judged");
}

#[test]
fn apic_vector_written_is_row_3_with_the_write_and_the_wdfint_lines() {
    let r = report(&["apic-vector.log"]);
    let s = only(&r);
    assert_eq!(rows(s), [3]);
    let row3 = s.row(3);
    assert!(row3.finding.contains("0x00e1"), "{}", row3.finding);
    assert!(!lines_in(row3, "apic-vector.log").is_empty());
    assert!(s.step(5).verdict.is_broken());
    assert_eq!(s.step(5).rows, [3]);
    assert_eq!(r.exit_code(), EXIT_BROKEN);
}

#[test]
fn an_intx_storm_from_counters_alone_is_step_7_and_one_of_the_storm_rows() {
    let r = report(&["intx-storm.log"]);
    let s = only(&r);
    // The storm is proven; which side fails to acknowledge the line is not (no ISR samples):
    // the doctor names the candidates and what would separate them.
    assert!(rows(s).is_empty(), "{}", r.render_text());
    assert_eq!(candidates(s), [1, 11, 19, 20, 22]);
    assert_eq!(broken_steps(s), [7]);
    assert!(lines_in(s.step(7), "intx-storm.log").contains(&13));
    match &s.row(1).verdict {
        Verdict::OneOf { tell_apart, .. } => {
            assert!(tell_apart.contains("IsrStatusRead"), "{tell_apart}")
        }
        v => panic!("row 1 from counters alone is a guess: {v:?}"),
    }
    assert_eq!(
        s.step(6).verdict,
        Verdict::Holds,
        "0xFFFF is right for INTx"
    );
    assert_eq!(r.exit_code(), EXIT_BROKEN);
    let text = r.render_text();
    assert!(text.contains("intx-storm.log:13"), "{text}");
    assert!(!text.contains('\r'));
}

#[test]
fn reset_after_the_vector_writes_is_row_2() {
    let r = report(&["reset-after-write.log"]);
    let s = only(&r);
    assert_eq!(rows(s), [2], "{}", r.render_text());
    assert!(!lines_in(s.row(2), "reset-after-write.log").is_empty());
    assert!(s.step(6).verdict.is_broken());
    assert_eq!(s.step(5).verdict, Verdict::Holds);
}

#[test]
fn too_few_messages_with_per_queue_writes_is_row_4() {
    let r = report(&["few-messages.log"]);
    let s = only(&r);
    assert_eq!(rows(s), [4], "{}", r.render_text());
    let row4 = s.row(4);
    assert_eq!(lines_in(row4, "few-messages.log"), [8, 1]);
    assert_eq!(s.step(5).rows, [4]);
    assert!(
        s.step(2).finding.contains("must share"),
        "{}",
        s.step(2).finding
    );
}

#[test]
fn config_vector_left_unset_is_row_5() {
    let r = report(&["config-novector.log"]);
    let s = only(&r);
    assert_eq!(rows(s), [5], "{}", r.render_text());
    assert!(!lines_in(s.row(5), "config-novector.log").is_empty());
}

#[test]
fn interrupt_object_with_vector_zero_is_row_7() {
    let r = report(&["vector-zero.log"]);
    let s = only(&r);
    assert_eq!(rows(s), [7], "{}", r.render_text());
    assert!(s.step(3).verdict.is_broken());
    assert_eq!(s.step(3).rows, [7]);
}

#[test]
fn line_interrupt_although_the_driver_programs_vectors_is_named() {
    let r = report(&["no-msi-inf.log", "windbg-pci-msix-off.txt"]);
    let s = only(&r);
    // The driver programs vectors on a line (row 26); with no INF in the evidence, whether the
    // INF (13) or the platform (28) cost the messages is named as a pair.
    assert_eq!(rows(s), [26], "{}", r.render_text());
    assert_eq!(candidates(s), [13, 28]);
    assert_eq!(s.step(4).verdict, Verdict::Holds);
}

#[test]
fn linux_msix_pair_holds_and_shows_motion() {
    let r = report(&["proc-interrupts-pair.txt", "lspci-vvv.txt"]);
    let text = r.render_text();
    assert!(
        r.subjects().iter().all(|s| s.broken_rows().is_empty()),
        "{text}"
    );
    let s = r
        .subjects()
        .iter()
        .find(|s| s.step(7).verdict == Verdict::Holds)
        .unwrap_or_else(|| panic!("{text}"));
    assert!(
        lines_in(s.step(7), "proc-interrupts-pair.txt").contains(&24),
        "{text}"
    );
}

#[test]
fn linux_nobody_cared_on_a_shared_line_names_the_candidates_not_row_1() {
    let r = report(&["proc-interrupts-storm.txt", "dmesg-nobody-cared.log"]);
    let s = only(&r);
    // Linux's own handler (vp_interrupt) reads ISR status, so row 1 is out; the line is shared
    // with usb_hcd_irq, so row 11 stays a candidate with the device rows.
    assert!(rows(s).is_empty(), "{}", r.render_text());
    assert_eq!(candidates(s), [11, 19, 20, 22]);
    assert_eq!(s.row(1).verdict, Verdict::Holds);
    assert!(
        s.row(11).finding.contains("usb_hcd_irq"),
        "{}",
        s.row(11).finding
    );
    assert!(lines_in(s.row(11), "dmesg-nobody-cared.log").contains(&6));
}

#[test]
fn linux_intx_storm_from_snapshots_alone() {
    let r = report(&["proc-interrupts-storm.txt"]);
    let s = only(&r);
    assert!(s.step(7).verdict.is_broken());
    assert_eq!(lines_in(s.step(7), "proc-interrupts-storm.txt"), [4, 11]);
    assert!(matches!(s.row(1).verdict, Verdict::OneOf { .. }));
}

#[test]
fn json_report_round_trips_and_names_verdicts() {
    let r = report(&["apic-vector.log"]);
    let json = r.to_json();
    assert!(json.contains("\"status\": \"broken\""), "{json}");
    let back: Report = serde_json::from_str(&json).unwrap();
    assert_eq!(back, r);
}

#[test]
fn a_kernel_log_alone_says_what_it_cannot_show() {
    let r = report(&["dmesg-nobody-cared.log"]);
    let s = only(&r);
    for step in [2, 3, 4, 5, 6] {
        assert!(
            matches!(s.step(step).verdict, Verdict::CannotTell { .. }),
            "step {step}: {:?}",
            s.step(step)
        );
    }
}

#[test]
fn config_never_written_after_the_reset_is_row_5() {
    let r = report_of(
        "INT: MSI/MSI-X Level=11 Vector=177 Affinity=0x1 MessageCount=2 Flags=0x3\n\
         WDFINT: MessageSignaled=1 MessageNumber=0 Vector=177 Irql=11 Affinity=0x1\n\
         WDFINT: MessageSignaled=1 MessageNumber=1 Vector=178 Irql=11 Affinity=0x1\n\
         VIRTIO: device_status write=0x00\n\
         VIRTIO: queue=0 queue_msix_vector write=0x0001 read=0x0001 MessageNumber=1\n\
         VIRTIO: msix_config read=0xffff\n\
         VIRTIO: device_status write=0x0f\n",
    );
    let s = only(&r);
    assert_eq!(rows(s), [5], "{}", r.render_text());
    assert_eq!(lines_in(s.row(5), "inline.log"), [6, 5]);
}

#[test]
fn intx_on_a_device_with_msix_is_not_row_13_without_vector_writes() {
    let r = report_of(
        "INT: INTx Level=10 Vector=10 Affinity=0x1 Flags=0x0\n\
         0: kd> !pci 100 0 5 0\n\
         \x20 98: CapID 11 MSI-X Capability\n\
         \x20     MessageControl 0002 Enable:0 FunctionMask:0 TableSize:3\n",
    );
    let s = only(&r);
    assert!(!s.row(13).verdict.is_broken(), "{}", r.render_text());
    assert!(rows(s).is_empty());
}

#[test]
fn nothing_usable_says_so_and_is_not_healthy() {
    // Free text with no recognisable shape is refused outright...
    let mut d = virq_doctor::Doctor::new();
    let e = d
        .read(
            "chat.txt",
            "hello world\nnothing to see here: virtio was fine yesterday\n".as_bytes(),
        )
        .unwrap_err();
    assert!(e.to_string().contains("chat.txt"), "{e}");
    // ...and a recognised file with nothing about a virtio device says so, without a verdict.
    let r = report_of(
        "00:1f.2 SATA controller: Intel Corporation 82801IR/IO/IH (ICH9R/DO/DH) 6 port SATA Controller [AHCI mode] (rev 02)\n         \tControl: I/O+ Mem+ BusMaster+ SpecCycle- MemWINV- VGASnoop- ParErr- Stepping- SERR- FastB2B- DisINTx+\n",
    );
    let text = r.render_text();
    assert!(text.contains("nothing to judge"), "{text}");
    assert_eq!(r.exit_code(), EXIT_INCOMPLETE);
    assert!(!text.contains("every link holds"), "{text}");
}
