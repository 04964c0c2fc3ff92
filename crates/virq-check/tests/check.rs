//! `virq check` end to end: every checklist step in every mode, and every injectable fault
//! reproduced and named by its failure-catalogue row.

use virq_check::{CheckOptions, DeviceKind, Fault, Mode, ModeReport, Overall, run_check};
use virq_judge::Verdict;

fn run(inject: Option<Fault>) -> Vec<ModeReport> {
    run_check(&CheckOptions {
        inject,
        ..CheckOptions::default()
    })
    .expect("check runs")
    .modes
}

fn mode(reports: &[ModeReport], m: Mode) -> &ModeReport {
    reports.iter().find(|r| r.mode == m).expect("mode ran")
}

/// Rows the judge found broken in a mode.
fn rows(r: &ModeReport) -> Vec<u8> {
    r.subject.broken_rows().into_iter().collect()
}

#[test]
fn a_correct_driver_and_device_hold_every_link_in_all_three_modes() {
    let reports = run(None);
    assert_eq!(reports.len(), 3);
    for r in &reports {
        for (i, s) in r.subject.steps.iter().enumerate() {
            assert_eq!(
                s.verdict,
                Verdict::Holds,
                "{:?} step {}: {}",
                r.mode,
                i + 1,
                s.finding
            );
        }
        assert!(rows(r).is_empty(), "{:?}: {:?}", r.mode, rows(r));
        assert_eq!(r.completed, r.requests, "{:?}", r.mode);
        assert_eq!(
            r.requests, 18,
            "9 rounds per queue, one after the quiesce/resume"
        );
        assert!(!r.budget_exhausted);
    }
    let enough = mode(&reports, Mode::MsixEnough);
    // Checklist 1.2 and 2.1, byte-exact formats; Vector differs from MessageNumber.
    assert!(
        enough.logs.dbgview.contains("\tINT: MSI/MSI-X Level="),
        "{}",
        enough.logs.dbgview
    );
    assert!(enough.logs.dbgview.contains("MessageCount=1 Flags=0x3"));
    assert!(
        enough
            .logs
            .dbgview
            .contains("WDFINT: MessageSignaled=1 MessageNumber=2 Vector=")
    );
    assert!(
        enough
            .logs
            .dbgview
            .contains("VIRTIO: queue=1 queue_msix_vector write=0x0002 read=0x0002 MessageNumber=2")
    );
    // Each queue's own message fired once per round (9) and once more for the completion the
    // mid-run reset threw away; the config message once for the resize. On INTx the
    // interrupt latched before that reset finds ISR status 0 afterwards: not ours, no DPC.
    assert!(
        enough
            .logs
            .dbgview
            .contains("COUNTERS: MessageNumber=1 isr=10 dpc=10"),
        "{}",
        enough.logs.dbgview
    );
    assert!(
        enough
            .logs
            .dbgview
            .contains("COUNTERS: MessageNumber=2 isr=10 dpc=10")
    );
    assert!(
        enough
            .logs
            .dbgview
            .contains("COUNTERS: MessageNumber=0 isr=1 dpc=1")
    );
    assert!(enough.logs.pci.contains("Enable:1"));
    // Checklist 3.4: the vectors were written again after the mid-run reset.
    assert_eq!(
        enough
            .logs
            .dbgview
            .matches("VIRTIO: queue=1 queue_msix_vector write=0x0002 read=0x0002 MessageNumber=2")
            .count(),
        2
    );
    let fewer = mode(&reports, Mode::MsixFewer);
    assert!(
        fewer
            .logs
            .dbgview
            .contains("VIRTIO: queue=1 queue_msix_vector write=0x0000 read=0x0000 MessageNumber=0")
    );
    assert!(
        fewer
            .logs
            .dbgview
            .contains("COUNTERS: MessageNumber=0 isr=11 dpc=11"),
        "{}",
        fewer.logs.dbgview
    );
    let intx = mode(&reports, Mode::Intx);
    assert!(intx.logs.dbgview.contains("INT: INTx Level="));
    assert!(!intx.logs.dbgview.contains("MSI/MSI-X"));
    assert!(intx.logs.pci.contains("Enable:0"));
    assert!(
        intx.logs.dbgview.contains("COUNTERS: INTx isr=11 dpc=10"),
        "{}",
        intx.logs.dbgview
    );
}

#[test]
fn rng_and_console_devices_also_hold() {
    for device in [DeviceKind::Rng, DeviceKind::Console] {
        let report = run_check(&CheckOptions {
            device,
            queues: 1,
            ..CheckOptions::default()
        })
        .unwrap();
        for r in &report.modes {
            assert_eq!(
                r.overall,
                Overall::Holds,
                "{device:?} {:?}: {:#?}",
                r.mode,
                r.subject.steps
            );
            assert!(r.requests > 0 && r.completed == r.requests);
        }
    }
}

/// Two runs with the same options give the same modes, logs, verdicts and events, element by
/// element (the lengths first, so that neither run can hold more than the other).
#[test]
fn the_same_run_gives_the_same_evidence() {
    let a = run(Some(Fault::ApicVector));
    let b = run(Some(Fault::ApicVector));
    assert_eq!(a.len(), 3, "every mode ran");
    assert_eq!(a.len(), b.len());
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(x.mode, y.mode);
        assert!(!x.events.is_empty(), "{:?}: no evidence", x.mode);
        assert!(
            !x.logs.dbgview.is_empty(),
            "{:?}: no DbgView capture",
            x.mode
        );
        assert_eq!(x.logs, y.logs, "{:?}", x.mode);
        assert_eq!(x.events.len(), y.events.len(), "{:?}: event count", x.mode);
        for (i, (e, f)) in x.events.iter().zip(&y.events).enumerate() {
            assert_eq!(e, f, "{:?}: event {i}", x.mode);
        }
        // Everything else the report holds (the judge's answers, counters).
        assert_eq!(x.subject, y.subject, "{:?}", x.mode);
        assert_eq!(
            serde_json::to_value(x).unwrap(),
            serde_json::to_value(y).unwrap(),
            "{:?}",
            x.mode
        );
    }
}

/// Each fault breaks the modes it can break, names its own row, and leaves the others alone.
#[test]
fn every_injected_fault_is_named_by_its_catalogue_row() {
    use Mode::*;
    let cases: &[(Fault, &[Mode])] = &[
        (Fault::IntxNoIsrRead, &[Intx]),
        (Fault::VectorsBeforeReset, &[MsixEnough, MsixFewer]),
        (Fault::ApicVector, &[MsixEnough, MsixFewer]),
        (Fault::AssumePerQueue, &[MsixFewer]),
        (Fault::ConfigVectorUnset, &[MsixEnough, MsixFewer]),
        (Fault::RebalanceRequery, &[MsixEnough]),
        (Fault::ExtraInterruptObject, &[MsixEnough, MsixFewer, Intx]),
        (Fault::UncheckedMessageId, &[MsixEnough]),
        (Fault::MessageZeroNotMessage, &[MsixEnough, MsixFewer]),
        (Fault::EnableBeforeVerified, &[MsixEnough]),
        (Fault::SharedLineNotMine, &[Intx]),
        (Fault::SurpriseRemovalClaimed, &[Intx]),
        (Fault::InfKeysMisplaced, &[MsixEnough, MsixFewer]),
        (Fault::DeviceIntxWithMsix, &[MsixEnough, MsixFewer]),
        (
            Fault::DeviceIgnoresDwordMsixControl,
            &[MsixEnough, MsixFewer],
        ),
        (
            Fault::DeviceAcceptsOutOfRangeVector,
            &[MsixEnough, MsixFewer],
        ),
        (
            Fault::DeviceKeepsVectorsAcrossReset,
            &[MsixEnough, MsixFewer],
        ),
        (Fault::DeviceIntxStuckAfterReset, &[Intx]),
        (Fault::DeviceIgnoresMsixMasks, &[MsixEnough, MsixFewer]),
        (Fault::DeviceIgnoresInterruptDisable, &[Intx]),
        (Fault::DeviceSmallMsixTable, &[MsixEnough, MsixFewer, Intx]),
        (Fault::DeviceIsrNotCleared, &[Intx]),
    ];
    assert_eq!(cases.len(), Fault::ALL.len(), "every fault has a case");
    for (fault, broken_in) in cases {
        let reports = run(Some(*fault));
        for r in &reports {
            if broken_in.contains(&r.mode) {
                assert_eq!(r.overall, Overall::Broken, "{fault:?} in {:?}", r.mode);
                assert!(
                    rows(r).contains(&fault.catalogue_row()),
                    "{fault:?} in {:?} named rows {:?}",
                    r.mode,
                    rows(r)
                );
            } else {
                assert_eq!(
                    r.overall,
                    Overall::Holds,
                    "{fault:?} must not break {:?}: {:?}",
                    r.mode,
                    rows(r)
                );
            }
        }
    }
}

#[test]
fn an_intx_storm_is_bounded_by_the_budget_and_reported() {
    let reports = run_check(&CheckOptions {
        inject: Some(Fault::IntxNoIsrRead),
        modes: vec![Mode::Intx],
        interrupt_budget: 777,
        ..CheckOptions::default()
    })
    .unwrap()
    .modes;
    let r = &reports[0];
    assert!(r.budget_exhausted);
    assert_eq!(r.interrupts, 777);
    assert!(r.logs.dbgview.contains("interrupt storm: 777 interrupts"));
    let s7 = r.subject.step(7);
    assert!(
        s7.finding.contains("without ever reading ISR status"),
        "{}",
        s7.finding
    );
    assert_eq!(s7.rows, [1]);
}

/// Linux's ladder with two messages for two queues: config on message 0, both queues shared
/// on message 1, and every link holds.
#[test]
fn linux_ladder_shares_queues_on_message_one_when_two_messages_are_granted() {
    let reports = run_check(&CheckOptions {
        policy: virq_check::VectorPolicy::LinuxLadder,
        modes: vec![Mode::MsixFewer],
        granted: Some(2),
        ..CheckOptions::default()
    })
    .unwrap()
    .modes;
    let r = &reports[0];
    assert_eq!(r.overall, Overall::Holds, "{:#?}", r.subject.steps);
    assert!(
        r.logs
            .dbgview
            .contains("VIRTIO: msix_config write=0x0000 read=0x0000 MessageNumber=0")
    );
    assert!(
        r.logs
            .dbgview
            .contains("VIRTIO: queue=0 queue_msix_vector write=0x0001 read=0x0001 MessageNumber=1")
    );
    assert!(
        r.logs
            .dbgview
            .contains("VIRTIO: queue=1 queue_msix_vector write=0x0001 read=0x0001 MessageNumber=1")
    );
    assert!(
        r.logs.dbgview.contains("COUNTERS: MessageNumber=1 isr="),
        "{}",
        r.logs.dbgview
    );
}
