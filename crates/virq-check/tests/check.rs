//! `virq check` end to end: every checklist step in every mode, and every injectable fault
//! reproduced and named by its failure-catalogue row.

use virq_check::{
    CheckOptions, DebugPrintFilter, DeviceKind, Fault, InfChoice, KmdfVersion, Mode, ModeReport,
    Overall, run_check,
};
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
            "9 rounds per queue, one after the sleep/resume"
        );
        assert!(!r.budget_exhausted);
    }
    let enough = mode(&reports, Mode::MsixEnough);
    // Checklist 1.2 and 2.1, byte-exact formats; Vector differs from MessageNumber. The
    // translated MessageCount is the x64 Group: 0, as a real Windows 7 box prints it.
    assert!(
        enough.logs.dbgview.contains("\tINT: MSI/MSI-X Level="),
        "{}",
        enough.logs.dbgview
    );
    assert!(enough.logs.dbgview.contains("MessageCount=0 Flags=0x3"));
    assert!(!enough.logs.dbgview.contains("MessageCount=1"));
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
    // Each queue's own message fired once per round (9); the completion in flight at the sleep
    // waited in the PBA (the OS held the function masked) and the reset of D0 entry withdrew
    // it (catalogue row 30), and the request that raced the power-down was never served (Bus
    // Master off, row 29); the config message fired once for the resize. On INTx the line
    // the in-flight completion raised is lowered by that reset: the interrupt it latched finds
    // ISR status 0 afterwards, not ours, no DPC.
    assert!(
        enough
            .logs
            .dbgview
            .contains("COUNTERS: MessageNumber=1 isr=9 dpc=9"),
        "{}",
        enough.logs.dbgview
    );
    assert!(
        enough
            .logs
            .dbgview
            .contains("COUNTERS: MessageNumber=2 isr=9 dpc=9")
    );
    assert!(
        enough
            .logs
            .dbgview
            .contains("COUNTERS: MessageNumber=0 isr=1 dpc=1")
    );
    // `!pci` shows the raw Message Control word in its `Device Private:` dwords.
    let msix = |m: &virq_check::ModeReport| {
        virq_win7::windbg::parse_pci_dump(&m.logs.pci)
            .msix
            .expect("an MSI-X capability in the !pci dump")
    };
    assert!(msix(enough).enabled());
    // Checklist 3.4: the vectors were written again after the reset of D0 entry.
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
            .contains("COUNTERS: MessageNumber=0 isr=10 dpc=10"),
        "{}",
        fewer.logs.dbgview
    );
    let intx = mode(&reports, Mode::Intx);
    assert!(intx.logs.dbgview.contains("INT: INTx Level="));
    assert!(!intx.logs.dbgview.contains("MSI/MSI-X"));
    assert!(!msix(intx).enabled());
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
        (Fault::PreStartInterruptInfo, &[MsixEnough, MsixFewer]),
        (Fault::TranslatedMessageCount, &[MsixEnough]),
        (Fault::PrintsFiltered, &[MsixEnough, MsixFewer, Intx]),
        (Fault::ModeFromInf, &[Intx]),
        (Fault::VectorsLostOnD0Entry, &[MsixEnough, MsixFewer]),
        (Fault::PlatformMsiDisabled, &[MsixEnough, MsixFewer]),
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
        (
            Fault::DeviceDmaWhileBusMasterOff,
            &[MsixEnough, MsixFewer, Intx],
        ),
        (Fault::DeviceStalePendingBit, &[MsixEnough, MsixFewer]),
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
            } else if *fault == Fault::PreStartInterruptInfo {
                // On a line the zeros say "line", which is right; but the driver printed no
                // object after start, so step 3 cannot be told.
                assert_eq!(r.overall, Overall::Incomplete, "{fault:?} in {:?}", r.mode);
                assert!(rows(r).is_empty());
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
/// on message 1, and every link holds. Windows gives two only when two are asked for (the INF's
/// MessageNumberLimit): it grants all the messages requested or exactly one.
#[test]
fn linux_ladder_shares_queues_on_message_one_when_two_messages_are_granted() {
    let reports = run_check(&CheckOptions {
        policy: virq_check::VectorPolicy::LinuxLadder,
        modes: vec![Mode::MsixFewer],
        granted: Some(2),
        inf: InfChoice::Msi { limit: Some(2) },
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

/// Windows grants all the messages requested, exactly one, or a line: `--granted 2` below a
/// request of 3 is one message, and the report says why.
#[test]
fn a_grant_below_the_request_is_exactly_one_message() {
    let r = &run_check(&CheckOptions {
        granted: Some(2),
        modes: vec![Mode::MsixEnough],
        ..CheckOptions::default()
    })
    .unwrap()
    .modes[0];
    assert_eq!(r.overall, Overall::Holds, "{:#?}", r.subject.steps);
    assert!(
        r.grant.starts_with("exactly one message of 3"),
        "{}",
        r.grant
    );
    assert_eq!(r.logs.dbgview.matches("INT: MSI/MSI-X").count(), 1);
    let line = run_check(&CheckOptions {
        inject: Some(Fault::PlatformMsiDisabled),
        modes: vec![Mode::MsixEnough],
        ..CheckOptions::default()
    })
    .unwrap();
    assert!(
        line.modes[0].grant.contains("off platform-wide"),
        "{}",
        line.modes[0].grant
    );
}

/// Every mode sleeps and resumes: the selectors read 0xFFFF after the reset of D0 entry until
/// EvtDeviceD0Entry programs them again, and the report shows both.
#[test]
fn every_mode_sleeps_and_resumes_and_shows_the_vectors_reprogrammed() {
    use virq_events::Selector;
    let reports = run(None);
    for r in &reports {
        let p = r.power.as_ref().expect("a sleep/resume");
        assert!(p.resumed);
        assert!(
            p.after_reset.iter().all(|(_, v)| *v == 0xFFFF),
            "{:?}",
            p.after_reset
        );
        let dbg = r.logs.dbgview.replace("\r\n", "\n");
        let exit = dbg.find("VIRTIO: EvtDeviceD0Exit TargetState=D3").unwrap();
        let entry = dbg
            .find("VIRTIO: EvtDeviceD0Entry PreviousState=D3")
            .unwrap();
        let read = dbg
            .find("VIRTIO: msix_config read=0xffff after reset")
            .unwrap();
        assert!(exit < entry && entry < read, "{dbg}");
        let text = virq_check::render_text(&virq_check::CheckReport {
            options: CheckOptions::default(),
            modes: vec![r.clone()],
        });
        assert!(text.contains("sleep/resume: D0 exit to D3"), "{text}");
        match r.mode {
            Mode::Intx => assert!(p.reprogrammed.is_empty()),
            _ => {
                // After the 0xFFFF reads, every selector written again and read back equal.
                let again = &dbg[read..];
                assert!(
                    again.contains("VIRTIO: msix_config write=0x0000 read=0x0000"),
                    "{dbg}"
                );
                assert_eq!(p.reprogrammed.len(), 3);
                assert!(p.reprogrammed.iter().all(|(_, w, rb)| w == rb));
                assert!(
                    p.reprogrammed
                        .iter()
                        .any(|(s, ..)| *s == Selector::MsixConfig)
                );
                assert!(text.contains("re-programmed and read back: msix_config 0x0000->0x0000"));
            }
        }
    }
    // The driver of row 27 leaves them at 0xFFFF after resume: interrupts stop.
    let lost = run(Some(Fault::VectorsLostOnD0Entry));
    let enough = mode(&lost, Mode::MsixEnough);
    assert!(enough.power.as_ref().unwrap().reprogrammed.is_empty());
    assert!(enough.completed < enough.requests);
    assert!(
        enough
            .logs
            .dbgview
            .contains("VIRTIO: msix_config read=0xffff\r\n")
    );
}

/// KMDF 1.9, the default: the checklist's print after each WdfInterruptCreate (in
/// EvtDriverDeviceAdd) reads zeros with the creation index, the print after start the real
/// values, and nothing is called broken. KMDF 1.11 creates the objects with their resources.
#[test]
fn kmdf_1_9_zeros_before_start_are_harmless_and_1_11_has_none() {
    let reports = run(None);
    for r in &reports {
        let dbg = &r.logs.dbgview;
        let zero = dbg
            .find("WDFINT: MessageSignaled=0 MessageNumber=2 Vector=0 Irql=0 Affinity=0x0")
            .expect("the pre-start print");
        let resources = dbg.find("\tINT: ").unwrap();
        assert!(zero < resources, "{dbg}");
        assert!(dbg.contains("EvtDriverDeviceAdd (KMDF 1.9)"));
        assert_eq!(r.overall, Overall::Holds);
        let row23 = r.subject.row(23);
        if r.mode != Mode::Intx {
            assert!(row23.verdict.is_holds(), "{row23:?}");
            assert!(row23.finding.contains("KMDF 1.9"), "{}", row23.finding);
        }
    }
    // Objects 1 and 2 have no resource on one message: the driver says so in its own words
    // and KMDF says nothing.
    let fewer = mode(&reports, Mode::MsixFewer);
    assert!(fewer.logs.dbgview.contains(
        "virqblk: interrupt object 2 has no interrupt resource: not used, its work runs on message 0"
    ));
    assert!(!fewer.logs.dbgview.contains("WDF: "));
    let v111 = run_check(&CheckOptions {
        kmdf: KmdfVersion::V1_11,
        ..CheckOptions::default()
    })
    .unwrap();
    for r in &v111.modes {
        assert_eq!(r.overall, Overall::Holds, "{:?}", r.mode);
        assert!(!r.logs.dbgview.contains("Vector=0 Irql=0"), "{:?}", r.mode);
        assert!(!r.logs.dbgview.contains("has no interrupt resource"));
    }
    assert!(virq_check::render_text(&v111).contains("model: Windows 7 x64, KMDF 1.11,"));
}

/// The Debug Print Filter: the checklist's mask passes the INFO-level prints; Windows 7's
/// default leaves only other programs' lines, and row 25 is named; DbgView's verbose kernel
/// output passes everything.
#[test]
fn the_debug_print_filter_decides_what_the_capture_holds() {
    let unset = run_check(&CheckOptions {
        print_filter: DebugPrintFilter::windows_default(),
        ..CheckOptions::default()
    })
    .unwrap();
    assert!(
        virq_check::render_text(&unset)
            .contains("IHVDRIVER unset (Windows 7 default: error level only)")
    );
    assert!(
        virq_check::render_text(&unset)
            .contains("of the driver's lines dropped by the Debug Print Filter")
    );
    for r in &unset.modes {
        assert_eq!(rows(r), [25], "{:?}", r.mode);
        assert!(r.filtered_lines > 20, "{}", r.filtered_lines);
        for line in r.logs.dbgview.lines() {
            assert!(line.contains("[2140] iogen.exe: "), "{line}");
        }
        assert_eq!(
            r.completed, r.requests,
            "the driver works; only its prints are gone"
        );
    }
    let verbose = run_check(&CheckOptions {
        print_filter: DebugPrintFilter::parse("verbose").unwrap(),
        modes: vec![Mode::MsixEnough],
        ..CheckOptions::default()
    })
    .unwrap();
    assert_eq!(verbose.modes[0].overall, Overall::Holds);
}

/// pci.sys's Interrupt Disable with message interrupts (unverified on Windows 7): a switch that
/// shows in `!pci` and leaves every mode healthy.
#[test]
fn interrupt_disable_with_messages_is_a_switch() {
    let on = run_check(&CheckOptions {
        msi_interrupt_disable: true,
        ..CheckOptions::default()
    })
    .unwrap();
    for r in &on.modes {
        assert_eq!(r.overall, Overall::Holds, "{:?}", r.mode);
        let dis = r
            .logs
            .pci
            .lines()
            .any(|l| l.contains("Command") && l.contains("InterruptDis"));
        assert_eq!(dis, r.mode != Mode::Intx, "{:?}\n{}", r.mode, r.logs.pci);
    }
    assert!(virq_check::render_text(&on).contains("Interrupt Disable with messages on"));
}
