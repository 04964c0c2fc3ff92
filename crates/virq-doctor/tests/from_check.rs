//! Every fault `virq check` can inject, run on the simulated Windows 7 machine, rendered the way
//! a user would have it (the DbgView capture saved to a file, the `!pci` output saved to a
//! file), and diagnosed from that text alone: the doctor must name the fault's catalogue row.
//!
//! Where the text a run leaves behind cannot carry the proof, the doctor must say "cannot tell"
//! for that row (and say what is missing) rather than guess; those cases are listed in [`GAPS`]
//! with the missing evidence, so the test fails the day the run starts printing it.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use virq_check::{CheckOptions, Fault, Mode, ModeReport, run_mode};
use virq_doctor::{EXIT_BROKEN, EXIT_OK, Report, Verdict, diagnose};

/// (fault, mode, what the text lacks): the row must be "cannot tell", naming that evidence.
const GAPS: &[(&str, Mode, &str)] = &[];

/// (fault, mode): the proof lives only in the device's own record. The OS held the function's
/// interrupts off for a moment (Function Mask, Command bit 10) and let them go again; no print
/// and no end-of-run dump shows that window, so from the text the row is not named, while the
/// run's events (`virq check --events-dir`) name it.
const RECORD_ONLY: &[(&str, Mode)] = &[
    ("device-ignores-msix-masks", Mode::MsixEnough),
    ("device-ignores-msix-masks", Mode::MsixFewer),
    ("device-ignores-interrupt-disable", Mode::Intx),
];

/// Faults that break no mode with the default options (the check itself reports them holding).
const NEVER_BREAKS: &[&str] = &[];

static NEXT: AtomicU64 = AtomicU64::new(0);

/// Writes the run's two texts to fresh files exactly as a user saves them, and diagnoses them.
fn doctor_on(r: &ModeReport, label: &str) -> Report {
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!(
        "virq-doctor-from-check-{}-{n}-{label}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let dbgview = dir.join("dbgview.log");
    let pci = dir.join("pci.txt");
    std::fs::write(&dbgview, r.dbgview.as_bytes()).unwrap();
    std::fs::write(&pci, r.pci_dump.as_bytes()).unwrap();
    let inf = dir.join("virqblk.inf");
    std::fs::write(&inf, r.inf.as_bytes()).unwrap();
    let report = diagnose(&[dbgview, pci, inf]).unwrap_or_else(|e| panic!("{label}: {e}"));
    std::fs::remove_dir_all(&dir).ok();
    report
}

/// Writes the run's events as JSON lines (what `virq check --events-dir` writes) and
/// diagnoses that file.
fn doctor_on_events(r: &ModeReport, label: &str) -> Report {
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let path = std::env::temp_dir().join(format!(
        "virq-doctor-from-check-{}-{n}-{label}.jsonl",
        std::process::id()
    ));
    let text: String = r
        .events
        .iter()
        .map(|e| serde_json::to_string(e).unwrap() + "\n")
        .collect();
    std::fs::write(&path, text).unwrap();
    let report = diagnose(&[&path]).unwrap_or_else(|e| panic!("{label}: {e}"));
    std::fs::remove_file(&path).ok();
    report
}

fn run(fault: Option<Fault>, mode: Mode) -> ModeReport {
    run_mode(
        &CheckOptions {
            inject: fault,
            ..CheckOptions::default()
        },
        mode,
    )
    .expect("check runs")
}

fn broken_rows(r: &Report) -> Vec<u8> {
    r.findings
        .iter()
        .skip(7)
        .filter(|f| f.verdict.is_broken())
        .filter_map(|f| f.catalogue_row)
        .collect()
}

fn check_rows(r: &ModeReport) -> Vec<u8> {
    r.steps.iter().filter_map(|s| s.catalogue_row).collect()
}

#[test]
fn a_fault_free_run_has_no_broken_row_or_step_in_any_mode() {
    for mode in Mode::ALL {
        let r = run(None, mode);
        let report = doctor_on(&r, mode.name());
        assert!(
            report.broken().next().is_none(),
            "{mode:?}:\n{}",
            report.render_text()
        );
        assert_eq!(report.exit_code(), EXIT_OK);
        // Every step was judged from the text (nothing left at "cannot tell").
        for step in 1..=7 {
            assert_eq!(
                report.step(step).unwrap().verdict,
                Verdict::Holds,
                "{mode:?} step {step}:\n{}",
                report.render_text()
            );
        }
    }
}

#[test]
fn every_injected_fault_is_named_from_the_text_alone() {
    let mut named = Vec::new();
    let mut gaps = Vec::new();
    for fault in Fault::ALL {
        let row = fault.catalogue_row();
        let mut broke_somewhere = false;
        for mode in Mode::ALL {
            let r = run(Some(fault), mode);
            let breaks_here =
                r.verdict == virq_check::Verdict::Broken && check_rows(&r).contains(&row);
            let label = format!("{}-{}", fault.name(), mode.name());
            let report = doctor_on(&r, &label);
            let finding = report
                .row(row)
                .unwrap_or_else(|| panic!("the doctor has a rule for row {row}"));
            // Never a row the run does not show: the doctor names a subset of the check's rows.
            let extra: Vec<u8> = broken_rows(&report)
                .into_iter()
                .filter(|b| !check_rows(&r).contains(b))
                .collect();
            assert!(
                extra.is_empty(),
                "{label}: the doctor names rows {extra:?} the run does not break:\n{}",
                report.render_text()
            );
            if !breaks_here {
                assert!(
                    !finding.verdict.is_broken(),
                    "{label}: the check says this mode holds, the doctor names row {row}:\n{}",
                    report.render_text()
                );
                continue;
            }
            broke_somewhere = true;
            if RECORD_ONLY.contains(&(fault.name(), mode)) {
                assert!(
                    !finding.verdict.is_broken(),
                    "{label}: named from the text, move it out of RECORD_ONLY"
                );
                let from_events = doctor_on_events(&r, &label);
                let f = from_events.row(row).unwrap();
                assert!(
                    f.verdict.is_broken() && !f.proof.is_empty(),
                    "{label}: the run's events do not name row {row}:\n{}",
                    from_events.render_text()
                );
                named.push(label);
                continue;
            }
            if let Some((_, _, missing)) = GAPS
                .iter()
                .find(|(f, m, _)| *f == fault.name() && *m == mode)
            {
                match &finding.verdict {
                    Verdict::CannotTell { missing: said } => assert!(
                        said.contains(missing),
                        "{label}: row {row} should name the missing {missing:?}, says {said:?}"
                    ),
                    v => panic!(
                        "{label}: row {row} is {v:?}; the gap list says the text cannot show it \
                         (update GAPS if the run now prints the evidence):\n{}",
                        report.render_text()
                    ),
                }
                gaps.push(label);
                continue;
            }
            assert!(
                finding.verdict.is_broken(),
                "{label}: the doctor does not name row {row}:\n{}",
                report.render_text()
            );
            assert!(
                !finding.proof.is_empty(),
                "{label}: row {row} quotes no proof"
            );
            assert_eq!(report.exit_code(), EXIT_BROKEN, "{label}");
            named.push(label);
        }
        assert!(
            broke_somewhere || NEVER_BREAKS.contains(&fault.name()),
            "{fault:?} broke no mode in the check"
        );
    }
    // Every gap listed was exercised (a stale entry is an error too).
    for (f, m, _) in GAPS {
        let label = format!("{f}-{}", m.name());
        assert!(gaps.contains(&label), "gap {label} was not exercised");
    }
    assert!(named.len() >= 20, "named only {named:?}");
}

/// The proof quotes the lines a user would point at, from the files they gave.
#[test]
fn proofs_quote_the_users_files() {
    let r = run(Some(Fault::ApicVector), Mode::MsixEnough);
    let report = doctor_on(&r, "apic-proof");
    let f = report.row(3).unwrap();
    assert!(f.verdict.is_broken(), "{}", report.render_text());
    let texts: Vec<String> = f
        .proof
        .iter()
        .filter_map(|e| match &e.origin {
            virq_events::Origin::File { path, text, .. } => Some(format!(
                "{}|{}",
                PathBuf::from(path).file_name()?.to_string_lossy(),
                text
            )),
            virq_events::Origin::Run => None,
        })
        .collect();
    assert!(
        texts
            .iter()
            .any(|t| t.starts_with("dbgview.log|")
                && t.contains("msix_config write=0x00d1 read=0xffff")),
        "{texts:#?}"
    );
    assert!(
        texts.iter().any(|t| t.starts_with("dbgview.log|")
            && t.contains("WDFINT: MessageSignaled=1 MessageNumber=0 Vector=209")),
        "{texts:#?}"
    );
}
