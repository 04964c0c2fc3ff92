//! Checklist section 1.3 on its own: a user with a kernel debugger and nothing else has the
//! WinDbg files `virq check --logs` writes (`pcitree.txt`, `irp.txt` with the start IRP,
//! `dt.txt` with its resource lists, `pci.txt` with the MSI-X table, `devnode.txt`). For every
//! mode and every fault that touches the resources (rows 4, 13, 23-28) and the healthy run, the
//! doctor's answer from those files alone is `virq check`'s for steps 1-2 and the resource rows,
//! or *cannot tell*, naming evidence those files cannot show (the INF, the driver's own prints).

use virq_check::{CheckOptions, Fault, ModeLogs, run_check};
use virq_doctor::{Check, Doctor, Report, Verdict};

/// The faults whose evidence is the interrupt resources (or whose rows read them), and none.
const FAULTS: [Option<Fault>; 9] = [
    None,
    Some(Fault::AssumePerQueue),
    Some(Fault::InfKeysMisplaced),
    Some(Fault::PreStartInterruptInfo),
    Some(Fault::TranslatedMessageCount),
    Some(Fault::PrintsFiltered),
    Some(Fault::ModeFromInf),
    Some(Fault::VectorsLostOnD0Entry),
    Some(Fault::PlatformMsiDisabled),
];

/// Steps 1-2 and the rows the resources decide or feed.
const COMPARED: [Check; 10] = [
    Check::Step(1),
    Check::Step(2),
    Check::Row(4),
    Check::Row(13),
    Check::Row(23),
    Check::Row(24),
    Check::Row(25),
    Check::Row(26),
    Check::Row(27),
    Check::Row(28),
];

/// Evidence no WinDbg command of checklist 1.3 prints: the INF, the driver's own lines.
const NOT_IN_WINDBG: [&str; 8] = [
    "INF",
    "DbgView",
    "INT:",
    "WDFINT:",
    "VIRTIO:",
    "WdfInterruptGetInfo",
    "vector selector",
    "msix_config",
];

fn windbg_report(logs: &ModeLogs) -> Report {
    let mut d = Doctor::new();
    for (name, text) in logs.windbg_texts() {
        d.read(name, text.as_bytes())
            .unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    d.finish()
}

#[test]
fn the_windbg_files_alone_agree_with_check_or_name_what_they_cannot_show() {
    let mut problems = Vec::new();
    let mut agreed = 0;
    let mut cannot = 0;
    for fault in FAULTS {
        let report = run_check(&CheckOptions {
            inject: fault,
            ..CheckOptions::default()
        })
        .unwrap();
        let label = fault.map_or("healthy", Fault::name);
        for m in &report.modes {
            let r = windbg_report(&m.logs);
            assert_eq!(
                r.subjects().len(),
                1,
                "{label} {}: {}",
                m.mode.name(),
                r.render_text()
            );
            let doctor = &r.subjects()[0];
            // The files name the function they show.
            assert_eq!(doctor.device.as_deref(), Some("00:01.0"));
            for check in COMPARED {
                let answer = |s: &virq_doctor::Subject| match check {
                    Check::Step(n) => s.step(n).clone(),
                    Check::Row(n) => s.row(n).clone(),
                };
                let (d, c) = (answer(doctor), answer(&m.subject));
                match &d.verdict {
                    v if *v == c.verdict => agreed += 1,
                    Verdict::CannotTell { missing }
                        if NOT_IN_WINDBG.iter().any(|w| missing.contains(w)) =>
                    {
                        cannot += 1
                    }
                    v => problems.push(format!(
                        "{label} {} {check:?}: check {:?} ({}), WinDbg alone {v:?} ({})",
                        m.mode.name(),
                        c.verdict,
                        c.finding,
                        d.finding
                    )),
                }
            }
            // What the files do show is read: the mode, the grant, and the resources quoted
            // from the dt dump and the start IRP's lists.
            let step1 = doctor.step(1);
            let message = !m.grant.starts_with("line IRQ");
            assert_eq!(
                step1.finding.contains("message-signaled"),
                message,
                "{label} {}: {}",
                m.mode.name(),
                step1.finding
            );
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    // Both outcomes occur: the files decide some answers and cannot decide others.
    assert!(
        agreed > 0 && cannot > 0,
        "{agreed} agreed, {cannot} cannot tell"
    );
}
