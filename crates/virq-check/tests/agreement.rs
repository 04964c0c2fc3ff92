//! One judge: for every fault `virq faults` knows and every mode, the rows `virq check` names
//! are exactly the rows `virq doctor` names from the files `virq check --logs DIR` writes, and
//! from the run's events as `--events-dir` writes them; a healthy run names none. A capture
//! that holds all three modes one after the other (a user who switched modes and rebooted)
//! gives each start its own verdict.

use std::collections::BTreeSet;

use virq_check::{
    CheckOptions, DebugPrintFilter, Fault, KmdfVersion, Mode, ModeReport, Overall, run_check,
};
use virq_doctor::{Report, diagnose};

fn rows_of(r: &Report) -> Vec<(BTreeSet<u8>, BTreeSet<u8>)> {
    r.subjects()
        .iter()
        .map(|s| (s.broken_rows(), s.candidate_rows()))
        .collect()
}

fn check_rows(m: &ModeReport) -> (BTreeSet<u8>, BTreeSet<u8>) {
    (m.subject.broken_rows(), m.subject.candidate_rows())
}

/// The rows a fault must name in the modes it breaks: its own row. The device that accepts an
/// out-of-range index is shown with the driver that writes one, so row 3 comes with it. The
/// Windows 7 rows 23-28 each name only their own: row 23's zeros explain the missing plan (not
/// row 24's count, not row 2), row 27's D0-entry reset is row 2's Windows form (row 2 then
/// cannot be told apart), row 26 is shown on a device without MSI-X so neither the INF (13) nor
/// the platform (28) explains the line.
fn expected(fault: Fault) -> BTreeSet<u8> {
    match fault {
        Fault::DeviceAcceptsOutOfRangeVector => [3, 18].into(),
        f => [f.catalogue_row()].into(),
    }
}

fn events_file(dir: &std::path::Path, m: &ModeReport) -> std::path::PathBuf {
    let path = dir.join(format!("{}.jsonl", m.mode.name()));
    let mut text = String::new();
    for e in &m.events {
        text.push_str(&serde_json::to_string(e).unwrap());
        text.push('\n');
    }
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn check_and_doctor_name_the_same_rows_for_every_fault_and_mode() {
    let tmp = tempfile::tempdir().unwrap();
    let mut faults: Vec<Option<Fault>> = vec![None];
    faults.extend(Fault::ALL.into_iter().map(Some));
    let mut disagreements = Vec::new();
    for fault in faults {
        let report = run_check(&CheckOptions {
            inject: fault,
            ..CheckOptions::default()
        })
        .unwrap();
        let label = fault.map_or("healthy", Fault::name);
        for m in &report.modes {
            let dir = tmp.path().join(label).join(m.mode.name());
            let files = m.logs.write_to(&dir).unwrap();
            let from_files = diagnose(&files).unwrap();
            let from_events = diagnose(&[events_file(&dir, m)]).unwrap();
            let want = vec![check_rows(m)];
            if rows_of(&from_files) != want || rows_of(&from_events) != want {
                disagreements.push(format!(
                    "{label} {}: check {:?}, doctor on files {:?}, on events {:?}",
                    m.mode.name(),
                    want,
                    rows_of(&from_files),
                    rows_of(&from_events)
                ));
            }
            // Nothing on a healthy run; the fault's own rows, and only those, where it breaks.
            let (broken, candidates) = check_rows(m);
            assert!(
                candidates.is_empty(),
                "{label} {}: candidates {candidates:?}",
                m.mode.name()
            );
            match fault {
                None => assert!(broken.is_empty(), "healthy {}: {broken:?}", m.mode.name()),
                Some(f) if m.overall == Overall::Broken => {
                    assert_eq!(broken, expected(f), "{label} {}", m.mode.name())
                }
                Some(_) => assert!(broken.is_empty(), "{label} {}: {broken:?}", m.mode.name()),
            }
            // The doctor's exit code says what check's verdict says: 0 holds, 1 broken, 3 some
            // step cannot be told (the driver of row 23 on a line prints no object after start).
            assert_eq!(
                from_files.exit_code(),
                match m.overall {
                    Overall::Holds => 0,
                    Overall::Broken => 1,
                    Overall::Incomplete => 3,
                },
                "{label} {}",
                m.mode.name()
            );
        }
    }
    assert!(disagreements.is_empty(), "{}", disagreements.join("\n"));
}

/// The other Windows 7 the model knows: KMDF 1.11 (objects created with their resources in
/// EvtDevicePrepareHardware) with DbgView's verbose kernel output. The faults whose evidence
/// depends on the framework or the filter still agree; row 23 cannot happen there.
#[test]
fn check_and_doctor_agree_on_kmdf_1_11_too() {
    let tmp = tempfile::tempdir().unwrap();
    for fault in [
        None,
        Some(Fault::ExtraInterruptObject),
        Some(Fault::PreStartInterruptInfo),
        Some(Fault::TranslatedMessageCount),
        Some(Fault::PrintsFiltered),
        Some(Fault::VectorsLostOnD0Entry),
    ] {
        let report = run_check(&CheckOptions {
            inject: fault,
            kmdf: KmdfVersion::V1_11,
            print_filter: DebugPrintFilter::parse("verbose").unwrap(),
            ..CheckOptions::default()
        })
        .unwrap();
        let label = fault.map_or("healthy", Fault::name);
        for m in &report.modes {
            let dir = tmp.path().join(label).join(m.mode.name());
            let files = m.logs.write_to(&dir).unwrap();
            let from_files = diagnose(&files).unwrap();
            assert_eq!(
                rows_of(&from_files),
                vec![check_rows(m)],
                "{label} {}",
                m.mode.name()
            );
            let (broken, candidates) = check_rows(m);
            assert!(candidates.is_empty());
            match fault {
                Some(f) if m.overall == Overall::Broken => assert_eq!(broken, expected(f)),
                _ => assert!(broken.is_empty(), "{label} {}: {broken:?}", m.mode.name()),
            }
            if fault == Some(Fault::PreStartInterruptInfo) {
                assert_eq!(m.overall, Overall::Holds, "{}", m.mode.name());
            }
        }
    }
}

/// The three modes' files concatenated into one capture, in the order a user who switched
/// modes and rebooted would have them: three starts, each with its own rows and no extra.
#[test]
fn a_capture_of_three_starts_gives_each_start_its_own_verdict() {
    for fault in [
        None,
        Some(Fault::IntxNoIsrRead),
        Some(Fault::ApicVector),
        Some(Fault::DeviceSmallMsixTable),
        Some(Fault::InfKeysMisplaced),
    ] {
        let report = run_check(&CheckOptions {
            inject: fault,
            ..CheckOptions::default()
        })
        .unwrap();
        let mut text = String::new();
        for m in &report.modes {
            for (name, body) in m.logs.texts() {
                text.push_str(&format!("--- {} {name} ---\n", m.mode.name()));
                text.push_str(&body.replace("\r\n", "\n"));
                text.push('\n');
            }
        }
        text.push_str(&virq_check::render_text(&report));
        let mut d = virq_doctor::Doctor::new();
        d.read("run.txt", text.as_bytes()).unwrap();
        let r = d.finish();
        let got: Vec<BTreeSet<u8>> = r.subjects().iter().map(|s| s.broken_rows()).collect();
        let want: Vec<BTreeSet<u8>> = report
            .modes
            .iter()
            .map(|m| m.subject.broken_rows())
            .collect();
        assert_eq!(got, want, "{fault:?}\n{}", r.render_text());
        for s in r.subjects() {
            assert_eq!(s.starts, 3, "{}", s.heading());
        }
    }
}

/// What a user gets from a mode a fault does not touch and one it breaks, through the CLI's
/// own file writer: the files are the same ones the judge read.
#[test]
fn the_files_written_are_the_files_judged() {
    let report = run_check(&CheckOptions {
        inject: Some(Fault::ConfigVectorUnset),
        modes: vec![Mode::MsixEnough],
        ..CheckOptions::default()
    })
    .unwrap();
    let m = &report.modes[0];
    let tmp = tempfile::tempdir().unwrap();
    let files = m.logs.write_to(tmp.path()).unwrap();
    let names: Vec<String> = files
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names,
        [
            "dbgview.log",
            "pcitree.txt",
            "irp.txt",
            "dt.txt",
            "pci.txt",
            "devnode.txt",
            "driver.inf",
            "device.jsonl"
        ]
    );
    let dbg = std::fs::read_to_string(tmp.path().join("dbgview.log")).unwrap();
    assert_eq!(dbg, m.logs.dbgview);
    let r = diagnose(&files).unwrap();
    assert_eq!(r.subjects()[0].broken_rows(), [5].into());
    // Every answer, not only the rows: the same verdict and the same finding (the proofs differ
    // only in the directory the files sit in).
    let doctor = &r.subjects()[0];
    for (a, b) in doctor
        .steps
        .iter()
        .chain(&doctor.rows)
        .zip(m.subject.steps.iter().chain(&m.subject.rows))
    {
        assert_eq!(
            (&a.check, &a.verdict, &a.finding),
            (&b.check, &b.verdict, &b.finding)
        );
        assert_eq!(a.proof.len(), b.proof.len(), "{:?}", a.check);
    }
}
