//! The doctor names the right checklist step and catalogue row, quoting the right lines, for
//! each hand-written capture in tests/fixtures.

use std::path::PathBuf;
use virq_doctor::{EXIT_BROKEN, EXIT_OK, Finding, Report, Verdict, diagnose};
use virq_events::Origin;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn report(names: &[&str]) -> Report {
    let paths: Vec<PathBuf> = names.iter().map(|n| fixture(n)).collect();
    diagnose(&paths).unwrap_or_else(|e| panic!("{e}"))
}

/// (file name, line) of every proof event.
fn proof_lines(f: &Finding) -> Vec<(String, u64)> {
    f.proof
        .iter()
        .map(|e| match &e.origin {
            Origin::File { path, line, .. } => (
                PathBuf::from(path)
                    .file_name()
                    .unwrap()
                    .to_string_lossy()
                    .into_owned(),
                *line,
            ),
            Origin::Run => panic!("parsed events come from files"),
        })
        .collect()
}

fn lines_in(f: &Finding, file: &str) -> Vec<u64> {
    proof_lines(f)
        .into_iter()
        .filter(|(p, _)| p == file)
        .map(|(_, l)| l)
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

fn broken_steps(r: &Report) -> Vec<u8> {
    r.findings
        .iter()
        .take(7)
        .filter(|f| f.verdict.is_broken())
        .map(|f| f.step)
        .collect()
}

#[test]
fn good_msix_capture_with_pci_dump_holds_everywhere() {
    let r = report(&["good-msix.log", "windbg-pci-good.txt"]);
    for step in 1..=7 {
        let f = r.step(step).unwrap();
        assert_eq!(f.verdict, Verdict::Holds, "step {step}: {f:?}");
    }
    assert!(broken_rows(&r).is_empty(), "{}", r.render_text());
    assert_eq!(r.exit_code(), EXIT_OK);
    assert_eq!(lines_in(r.step(3).unwrap(), "good-msix.log"), [3, 4, 5]);
    assert_eq!(
        lines_in(r.step(4).unwrap(), "windbg-pci-good.txt"),
        [19, 43]
    );
    assert_eq!(lines_in(r.step(6).unwrap(), "good-msix.log"), [10, 11, 12]);
    assert!(r.step(7).unwrap().symptom.contains("isr=1630"));
}

#[test]
fn good_capture_alone_cannot_tell_the_pci_layer() {
    let r = report(&["good-msix.log"]);
    assert!(matches!(
        r.step(4).unwrap().verdict,
        Verdict::CannotTell { ref missing } if missing.contains("!pci")
    ));
    assert_eq!(r.exit_code(), EXIT_OK);
}

#[test]
fn apic_vector_written_is_row_3_with_the_write_and_the_wdfint_lines() {
    let r = report(&["apic-vector.log"]);
    assert_eq!(broken_rows(&r), [3]);
    let row3 = r.row(3).unwrap();
    assert_eq!(row3.step, 6);
    assert_eq!(lines_in(row3, "apic-vector.log"), [3, 4, 9, 10]);
    assert!(row3.symptom.contains("0x00e1 = 225"), "{}", row3.symptom);
    assert_eq!(broken_steps(&r), [5, 6, 7]);
    assert_eq!(lines_in(r.step(6).unwrap(), "apic-vector.log"), [9, 10]);
    assert_eq!(r.exit_code(), EXIT_BROKEN);
}

#[test]
fn an_intx_storm_from_counters_alone_is_step_7_and_row_1_cannot_tell() {
    let r = report(&["intx-storm.log"]);
    // The storm is proven; which side fails to acknowledge the line is not (no ISR samples).
    assert_eq!(broken_rows(&r), Vec::<u8>::new());
    assert_eq!(broken_steps(&r), [7]);
    assert_eq!(lines_in(r.step(7).unwrap(), "intx-storm.log"), [2, 11, 13]);
    let row1 = r.row(1).unwrap();
    assert_eq!(row1.step, 7);
    match &row1.verdict {
        Verdict::CannotTell { missing } => assert!(missing.contains("ISR:"), "{missing}"),
        v => panic!("row 1 from counters alone is a guess: {v:?}"),
    }
    assert!(matches!(
        r.row(11).unwrap().verdict,
        Verdict::CannotTell { .. }
    ));
    assert!(matches!(
        r.row(19).unwrap().verdict,
        Verdict::CannotTell { .. }
    ));
    assert_eq!(
        r.step(6).unwrap().verdict,
        Verdict::Holds,
        "0xFFFF is right for INTx"
    );
    let text = r.render_text();
    assert!(text.contains("intx-storm.log:13"), "{text}");
    assert!(!text.contains('\r'));
}

#[test]
fn reset_after_the_vector_writes_is_row_2() {
    let r = report(&["reset-after-write.log"]);
    assert_eq!(broken_rows(&r), [2]);
    assert_eq!(
        lines_in(r.row(2).unwrap(), "reset-after-write.log"),
        [7, 8, 10]
    );
    assert!(r.step(6).unwrap().verdict.is_broken());
    assert!(r.step(7).unwrap().verdict.is_broken());
    assert_eq!(r.step(5).unwrap().verdict, Verdict::Holds);
}

#[test]
fn too_few_messages_with_per_queue_writes_is_row_4_at_step_2() {
    let r = report(&["few-messages.log"]);
    assert_eq!(broken_rows(&r), [4]);
    let row4 = r.row(4).unwrap();
    assert_eq!(row4.step, 2);
    assert_eq!(lines_in(row4, "few-messages.log"), [1, 8, 9]);
    let step2 = r.step(2).unwrap();
    assert!(step2.verdict.is_broken());
    assert_eq!(step2.catalogue_row, Some(4));
}

#[test]
fn config_vector_left_unset_is_row_5() {
    let r = report(&["config-novector.log"]);
    assert_eq!(broken_rows(&r), [5]);
    assert_eq!(lines_in(r.row(5).unwrap(), "config-novector.log"), [5, 6]);
}

#[test]
fn interrupt_object_with_vector_zero_is_row_7() {
    let r = report(&["vector-zero.log"]);
    assert_eq!(broken_rows(&r), [7]);
    assert_eq!(lines_in(r.row(7).unwrap(), "vector-zero.log"), [1, 4]);
    let step3 = r.step(3).unwrap();
    assert!(step3.verdict.is_broken());
    assert_eq!(step3.catalogue_row, Some(7));
}

#[test]
fn line_interrupt_although_msix_offered_is_row_13_across_two_files() {
    let r = report(&["no-msi-inf.log", "windbg-pci-msix-off.txt"]);
    assert_eq!(broken_rows(&r), [13]);
    let row13 = r.row(13).unwrap();
    assert_eq!(lines_in(row13, "no-msi-inf.log"), [1, 5, 6]);
    assert_eq!(lines_in(row13, "windbg-pci-msix-off.txt"), [6]);
    assert_eq!(r.step(4).unwrap().verdict, Verdict::Holds);
    assert!(r.step(2).unwrap().verdict.is_broken());
}

#[test]
fn linux_msix_pair_holds_and_shows_motion() {
    let r = report(&["proc-interrupts-pair.txt", "lspci-vvv.txt"]);
    assert_eq!(r.exit_code(), EXIT_OK, "{}", r.render_text());
    let step7 = r.step(7).unwrap();
    assert_eq!(step7.verdict, Verdict::Holds);
    assert!(lines_in(step7, "proc-interrupts-pair.txt").contains(&24));
    assert_eq!(r.step(4).unwrap().verdict, Verdict::Holds);
    assert_eq!(lines_in(r.step(4).unwrap(), "lspci-vvv.txt"), [20]);
    assert_eq!(r.step(3).unwrap().verdict, Verdict::Holds);
}

#[test]
fn linux_nobody_cared_is_row_1_with_the_kernel_lines_and_the_irq_rows() {
    let r = report(&["proc-interrupts-storm.txt", "dmesg-nobody-cared.log"]);
    // "nobody cared" on a line shared with uhci_hcd: every handler said not-mine (row 11) as
    // well as the catalogue's row-1 symptom.
    assert_eq!(broken_rows(&r), [1, 11]);
    let row11 = r.row(11).unwrap();
    assert!(row11.symptom.contains("shared"), "{}", row11.symptom);
    assert_eq!(lines_in(row11, "proc-interrupts-storm.txt"), [4, 11]);
    let row1 = r.row(1).unwrap();
    assert_eq!(lines_in(row1, "dmesg-nobody-cared.log"), [6, 11]);
    assert_eq!(lines_in(row1, "proc-interrupts-storm.txt"), [4, 11]);
    assert!(row1.symptom.contains("IRQ 11"));
}

#[test]
fn linux_intx_storm_from_snapshots_alone() {
    let r = report(&["proc-interrupts-storm.txt"]);
    let s7 = r.step(7).unwrap();
    assert!(s7.verdict.is_broken(), "{s7:?}");
    assert_eq!(lines_in(s7, "proc-interrupts-storm.txt"), [4, 11]);
    let row1 = r.row(1).unwrap();
    assert!(
        matches!(row1.verdict, Verdict::CannotTell { .. }),
        "{row1:?}"
    );
}

#[test]
fn json_report_round_trips_and_names_verdicts() {
    let r = report(&["apic-vector.log"]);
    let json = r.to_json();
    assert!(json.contains("\"status\": \"broken\""), "{json}");
    assert!(json.contains("\"catalogue_row\": 3"));
    let back: Report = serde_json::from_str(&json).unwrap();
    assert_eq!(back, r);
}

#[test]
fn nothing_useful_is_cannot_tell_not_a_guess() {
    let r = report(&["dmesg-nobody-cared.log"]);
    for step in [2, 3, 4, 5, 6] {
        assert!(
            matches!(r.step(step).unwrap().verdict, Verdict::CannotTell { .. }),
            "step {step}"
        );
    }
}

fn report_of(text: &str) -> Report {
    let mut ev = virq_doctor::Evidence::new();
    ev.add_reader(
        "inline.log",
        text.as_bytes(),
        virq_doctor::ParseLimits::default(),
    )
    .unwrap();
    Report::new(&ev)
}

#[test]
fn config_never_written_after_the_reset_is_row_5() {
    let r = report_of(
        "INT: MSI/MSI-X Level=11 Vector=177 Affinity=0x1 MessageCount=2 Flags=0x3\n\
         WDFINT: MessageSignaled=1 MessageNumber=0 Vector=177 Irql=11 Affinity=0x1\n\
         WDFINT: MessageSignaled=1 MessageNumber=1 Vector=178 Irql=11 Affinity=0x1\n\
         VIRTIO: device_status write=0x00\n\
         VIRTIO: queue=0 queue_msix_vector write=0x0001 read=0x0001 MessageNumber=1\n\
         VIRTIO: device_status write=0x0f\n",
    );
    assert_eq!(broken_rows(&r), [5]);
    assert_eq!(lines_in(r.row(5).unwrap(), "inline.log"), [4, 5]);
    assert!(r.step(6).unwrap().verdict.is_broken());
}

#[test]
fn intx_on_a_device_with_msix_is_not_row_13_without_vector_writes() {
    let r = report_of(
        "INT: INTx Level=10 Vector=10 Affinity=0x1 Flags=0x0\n\
         0: kd> !pci 100 0 5 0\n\
         \x20 98: CapID 11 MSI-X Capability\n\
         \x20     MessageControl 0002 Enable:0 FunctionMask:0 TableSize:3\n",
    );
    assert!(matches!(
        r.row(13).unwrap().verdict,
        Verdict::CannotTell { .. }
    ));
    assert_eq!(r.exit_code(), EXIT_OK);
}
