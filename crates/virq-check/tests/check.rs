//! `virq check` end to end: every checklist step in every mode, and every injectable fault
//! reproduced and named by its failure-catalogue row.

use virq_check::{CheckOptions, DeviceKind, Fault, Mode, ModeReport, Verdict, run_check};

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

/// Rows a mode's broken steps name.
fn rows(r: &ModeReport) -> Vec<u8> {
    r.steps.iter().filter_map(|s| s.catalogue_row).collect()
}

#[test]
fn a_correct_driver_and_device_hold_every_link_in_all_three_modes() {
    let reports = run(None);
    assert_eq!(reports.len(), 3);
    for r in &reports {
        for s in &r.steps {
            assert_eq!(
                s.verdict,
                Verdict::Holds,
                "{:?} step {}: {}",
                r.mode,
                s.step,
                s.finding
            );
        }
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
        enough.dbgview.contains("\tINT: MSI/MSI-X Level="),
        "{}",
        enough.dbgview
    );
    assert!(enough.dbgview.contains("MessageCount=1 Flags=0x3"));
    assert!(
        enough
            .dbgview
            .contains("WDFINT: MessageSignaled=1 MessageNumber=2 Vector=")
    );
    assert!(
        enough
            .dbgview
            .contains("VIRTIO: queue=1 queue_msix_vector write=0x0002 read=0x0002 MessageNumber=2")
    );
    // Each queue's own message fired once per round (9) and once more for the completion the
    // mid-run reset threw away; the config message once for the resize. On INTx the
    // interrupt latched before that reset finds ISR status 0 afterwards: not ours, no DPC.
    assert!(
        enough
            .dbgview
            .contains("COUNTERS: MessageNumber=1 isr=10 dpc=10"),
        "{}",
        enough.dbgview
    );
    assert!(
        enough
            .dbgview
            .contains("COUNTERS: MessageNumber=2 isr=10 dpc=10")
    );
    assert!(
        enough
            .dbgview
            .contains("COUNTERS: MessageNumber=0 isr=1 dpc=1")
    );
    assert!(enough.pci_dump.contains("Enable:1"));
    // Checklist 3.4: the vectors were written again after the mid-run reset.
    assert_eq!(
        enough
            .dbgview
            .matches("VIRTIO: queue=1 queue_msix_vector write=0x0002 read=0x0002 MessageNumber=2")
            .count(),
        2
    );
    let fewer = mode(&reports, Mode::MsixFewer);
    assert!(
        fewer
            .dbgview
            .contains("VIRTIO: queue=1 queue_msix_vector write=0x0000 read=0x0000 MessageNumber=0")
    );
    assert!(
        fewer
            .dbgview
            .contains("COUNTERS: MessageNumber=0 isr=11 dpc=11"),
        "{}",
        fewer.dbgview
    );
    let intx = mode(&reports, Mode::Intx);
    assert!(intx.dbgview.contains("INT: INTx Level="));
    assert!(!intx.dbgview.contains("MSI/MSI-X"));
    assert!(intx.pci_dump.contains("Enable:0"));
    assert!(
        intx.dbgview.contains("COUNTERS: INTx isr=11 dpc=10"),
        "{}",
        intx.dbgview
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
                r.verdict,
                Verdict::Holds,
                "{device:?} {:?}: {:#?}",
                r.mode,
                r.steps
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
        assert!(!x.dbgview.is_empty(), "{:?}: no DbgView capture", x.mode);
        assert_eq!(x.dbgview, y.dbgview, "{:?}", x.mode);
        assert_eq!(x.pci_dump, y.pci_dump, "{:?}", x.mode);
        assert_eq!(x.events.len(), y.events.len(), "{:?}: event count", x.mode);
        for (i, (e, f)) in x.events.iter().zip(&y.events).enumerate() {
            assert_eq!(e, f, "{:?}: event {i}", x.mode);
        }
        // Everything else the report holds (verdicts, steps, counters, the INF).
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
                assert_eq!(r.verdict, Verdict::Broken, "{fault:?} in {:?}", r.mode);
                assert!(
                    rows(r).contains(&fault.catalogue_row()),
                    "{fault:?} in {:?} named rows {:?}",
                    r.mode,
                    rows(r)
                );
            } else {
                assert_eq!(
                    r.verdict,
                    Verdict::Holds,
                    "{fault:?} must not break {:?}",
                    r.mode
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
    assert!(r.dbgview.contains("interrupt storm: 777 interrupts"));
    let s7 = r.steps.iter().find(|s| s.step == 7).unwrap();
    assert!(
        s7.finding.contains("ISR status was never read"),
        "{}",
        s7.finding
    );
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
    assert_eq!(r.verdict, Verdict::Holds, "{:#?}", r.steps);
    assert!(
        r.dbgview
            .contains("VIRTIO: msix_config write=0x0000 read=0x0000 MessageNumber=0")
    );
    assert!(
        r.dbgview
            .contains("VIRTIO: queue=0 queue_msix_vector write=0x0001 read=0x0001 MessageNumber=1")
    );
    assert!(
        r.dbgview
            .contains("VIRTIO: queue=1 queue_msix_vector write=0x0001 read=0x0001 MessageNumber=1")
    );
    assert!(
        r.dbgview.contains("COUNTERS: MessageNumber=1 isr="),
        "{}",
        r.dbgview
    );
}
