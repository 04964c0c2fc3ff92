//! Linux evidence as people paste it (issue 11, build points 3 and 4): `/proc/interrupts` with
//! and without its header on x86, arm64 and RISC-V; `lspci` in its verbosities and `grep`
//! slices; dmesg and journal text in their stamp styles; virtio_pci's own messages. Each
//! fixture in tests/fixtures/linux-* is written from the format's source (kernel/irq/proc.c,
//! kernel/irq/spurious.c, drivers/pci/msi/irqdomain.c, pciutils' lspci.c) and judged here.

mod common;

use common::*;
use virq_doctor::{Format, ParseLimits, Report, Subject, Verdict, diagnose, parse::parse_to_vec};
use virq_events::{Event, EventKind, Origin};

/// The events one fixture gives, in line order.
fn events_of(name: &str) -> (Vec<Event>, virq_doctor::FileSummary) {
    let file = std::fs::File::open(fixture(name)).unwrap();
    parse_to_vec(name, std::io::BufReader::new(file), ParseLimits::default()).unwrap()
}

fn line_of(e: &Event) -> u64 {
    match &e.origin {
        Origin::File { line, .. } => *line,
        Origin::Run => panic!("a file event"),
    }
}

/// The subjects' devices, in report order.
fn devices(r: &Report) -> Vec<String> {
    r.subjects()
        .iter()
        .map(|s| s.device.clone().unwrap_or_else(|| "-".into()))
        .collect()
}

fn subject<'a>(r: &'a Report, device: &str) -> &'a Subject {
    r.subjects()
        .iter()
        .find(|s| s.device.as_deref() == Some(device))
        .unwrap_or_else(|| panic!("no subject {device}:\n{}", r.render_text()))
}

const STORM_ROWS: [u8; 5] = [1, 11, 19, 20, 22];

// ---- /proc/interrupts ------------------------------------------------------------------------

#[test]
fn grep_slices_without_the_cpu_header_judge_each_virtio_device_apart() {
    let r = report(&["linux-proc-grep-slices.txt"]);
    let text = r.render_text();
    assert_eq!(r.files[0].format, Format::ProcInterrupts, "{text}");
    // PCI-MSI 65536 = 00:04.0 (devfn 0x20 << 11), 81920 = 00:05.0 (devfn 0x28 << 11).
    assert_eq!(devices(&r), ["00:04.0", "00:05.0"], "{text}");
    for s in r.subjects() {
        assert!(rows(s).is_empty() && candidates(s).is_empty(), "{text}");
        assert_eq!(s.step(1).verdict, Verdict::Holds, "{text}");
        assert_eq!(s.step(7).verdict, Verdict::Holds, "{text}");
        assert!(
            s.step(1).finding.contains("message"),
            "{}",
            s.step(1).finding
        );
    }
    // Each device's motion is proven by its own rows, in both snapshots.
    let blk = subject(&r, "00:04.0");
    assert_eq!(lines_in(blk.step(7), "linux-proc-grep-slices.txt"), [3, 13]);
    let net = subject(&r, "00:05.0");
    assert_eq!(
        lines_in(net.step(7), "linux-proc-grep-slices.txt"),
        [5, 15, 6, 16]
    );
    // The prompts and the dd output are no evidence.
    let (events, _) = events_of("linux-proc-grep-slices.txt");
    assert_eq!(events.len(), 10);
    assert!(
        events
            .iter()
            .all(|e| matches!(e.kind, EventKind::IrqCount { .. }))
    );
}

#[test]
fn a_count_frozen_at_the_spurious_cutoff_is_a_storm() {
    let r = report(&["linux-proc-frozen-100000.txt"]);
    let s = only(&r);
    let text = r.render_text();
    assert_eq!(s.device.as_deref(), Some("virtio0"), "{text}");
    assert!(s.step(7).verdict.is_broken(), "{text}");
    assert!(
        s.step(7).finding.contains("100000"),
        "{}",
        s.step(7).finding
    );
    // Nothing tells the storm rows apart: all five are named, with what would separate them.
    assert_eq!(candidates(s), STORM_ROWS, "{text}");
    assert!(rows(s).is_empty());
    assert_eq!(lines_in(s.step(7), "linux-proc-frozen-100000.txt"), [2, 4]);
    assert_eq!(r.exit_code(), virq_doctor::EXIT_BROKEN);
}

#[test]
fn arm64_gic_lines_and_its_messages() {
    let r = report(&["linux-proc-arm64.txt"]);
    let text = r.render_text();
    // ITS-MSI 16384 is 00:01.0 (devfn 8 << 11); the GIC SPI line names only virtio1.
    assert_eq!(devices(&r), ["00:01.0", "virtio1"], "{text}");
    let msix = subject(&r, "00:01.0");
    assert!(msix.step(1).finding.contains("message"), "{text}");
    assert_eq!(msix.step(7).verdict, Verdict::Holds, "{text}");
    assert!(candidates(msix).is_empty() && rows(msix).is_empty());
    let line = subject(&r, "virtio1");
    assert!(line.step(1).finding.contains("INTx"), "{text}");
    assert!(line.step(7).verdict.is_broken(), "{text}");
    assert_eq!(candidates(line), STORM_ROWS);
    let (events, _) = events_of("linux-proc-arm64.txt");
    let chips: Vec<(u64, Option<&str>, Option<&str>)> = events
        .iter()
        .map(|e| match &e.kind {
            EventKind::IrqCount { chip, .. } => (line_of(e), chip.as_deref(), e.device.as_deref()),
            k => panic!("{k:?}"),
        })
        .collect();
    assert_eq!(
        chips,
        [
            (4, Some("GICv3 37 Level"), Some("virtio1")),
            (6, Some("ITS-MSI 16384 Edge"), Some("00:01.0")),
            (7, Some("ITS-MSI 16385 Edge"), Some("00:01.0")),
            (8, Some("ITS-MSI 16386 Edge"), Some("00:01.0")),
        ]
    );
}

#[test]
fn riscv_plic_and_aplic_lines() {
    let r = report(&["linux-proc-riscv.txt"]);
    let text = r.render_text();
    assert_eq!(devices(&r), ["virtio0", "virtio1", "virtio2"], "{text}");
    for s in r.subjects() {
        assert!(s.step(1).finding.contains("INTx"), "{text}");
        assert_eq!(s.step(7).verdict, Verdict::Holds, "{text}");
        assert!(rows(s).is_empty() && candidates(s).is_empty(), "{text}");
    }
    let (events, _) = events_of("linux-proc-riscv.txt");
    let chip = |device: &str| {
        events.iter().find_map(|e| match &e.kind {
            EventKind::IrqCount { chip, .. } if e.device.as_deref() == Some(device) => chip.clone(),
            _ => None,
        })
    };
    assert_eq!(chip("virtio0").as_deref(), Some("SiFive PLIC 33 Level"));
    assert_eq!(chip("virtio2").as_deref(), Some("APLIC-DIRECT 35 Level"));
}

#[test]
fn per_device_msi_domains_name_the_function() {
    let r = report(&["linux-proc-per-device-msix.txt"]);
    let text = r.render_text();
    assert_eq!(devices(&r), ["00:04.0", "00:05.0"], "{text}");
    for s in r.subjects() {
        assert_eq!(s.step(7).verdict, Verdict::Holds, "{text}");
        assert!(s.step(1).finding.contains("message"), "{text}");
    }
}

#[test]
fn a_shared_line_row_is_its_virtio_device_with_its_controller() {
    let (events, _) = events_of("proc-interrupts-storm.txt");
    assert_eq!(events.len(), 2);
    for e in &events {
        assert_eq!(e.device.as_deref(), Some("virtio0"));
        match &e.kind {
            EventKind::IrqCount { name, chip, .. } => {
                assert_eq!(name, "uhci_hcd:usb1, virtio0");
                assert_eq!(chip.as_deref(), Some("IO-APIC 11-fasteoi"));
            }
            k => panic!("{k:?}"),
        }
    }
}

#[test]
fn a_line_shared_by_two_virtio_devices_is_each_ones_line() {
    let r = report_of(
        "$ grep virtio /proc/interrupts\n\
         \x20 10:     100000          0   IO-APIC  10-fasteoi   virtio0, virtio1\n",
    );
    let text = r.render_text();
    assert_eq!(devices(&r), ["virtio0", "virtio1"], "{text}");
    for s in r.subjects() {
        assert!(s.step(7).verdict.is_broken(), "{text}");
        assert_eq!(lines_in(s.step(7), "inline.log"), [2]);
    }
}

// ---- lspci -------------------------------------------------------------------------------------

#[test]
fn lspci_v_is_read_as_lspci_not_as_a_dbgview_capture() {
    let r = report(&["linux-lspci-v.txt"]);
    let text = r.render_text();
    assert_eq!(r.files[0].format, Format::Lspci, "{text}");
    // Three virtio functions, each judged on its own; the host bridge, IDE and VGA are not.
    assert_eq!(devices(&r), ["00:03.0", "00:04.0", "00:05.0"], "{text}");
    let (events, _) = events_of("linux-lspci-v.txt");
    let shown: Vec<(u64, &str, EventKind)> = events
        .iter()
        .map(|e| (line_of(e), e.device.as_deref().unwrap(), e.kind.clone()))
        .collect();
    assert_eq!(
        shown,
        [
            // `-v` shows the IRQ but not the pin: pin 0.
            (25, "00:03.0", EventKind::IntxRouted { pin: 0, irq: 11 }),
            (
                30,
                "00:03.0",
                EventKind::MsixCapabilitySeen {
                    enabled: true,
                    function_masked: false,
                    table_size: 3
                }
            ),
            (42, "00:04.0", EventKind::IntxRouted { pin: 0, irq: 11 }),
            (
                46,
                "00:04.0",
                EventKind::MsixCapabilitySeen {
                    enabled: false,
                    function_masked: false,
                    table_size: 2
                }
            ),
            (58, "00:05.0", EventKind::IntxRouted { pin: 0, irq: 10 }),
        ]
    );
    // The MSI-X capability of each device proves that device's step 4 only.
    let net = subject(&r, "00:03.0");
    assert_eq!(lines_in(net.step(4), "linux-lspci-v.txt"), [30], "{text}");
}

#[test]
fn lspci_with_many_devices_judges_each_with_its_own_block() {
    let r = report(&["linux-lspci-vvv-many.txt"]);
    let text = r.render_text();
    assert_eq!(r.files[0].format, Format::Lspci);
    // The e1000 at 00:03.0 shares IRQ 11 with the virtio block device's INTx line and is kept;
    // the SMBus on IRQ 10 shares a pin only with the virtio NIC, whose MSI-X leaves it unused,
    // and goes with the host bridge. `-D` addresses are judged as lspci prints them without.
    assert_eq!(devices(&r), ["00:03.0", "00:04.0", "00:05.0"], "{text}");
    let (events, _) = events_of("linux-lspci-vvv-many.txt");
    let of = |device: &str| -> Vec<u64> {
        events
            .iter()
            .filter(|e| e.device.as_deref() == Some(device))
            .map(line_of)
            .collect()
    };
    assert_eq!(of("00:03.0"), [10, 11, 13]);
    assert_eq!(of("00:04.0"), [23, 24, 26, 30]);
    assert_eq!(of("00:05.0"), [49, 50, 52, 55]);
    let net = subject(&r, "00:04.0");
    let blk = subject(&r, "00:05.0");
    assert!(
        lines_in(net.step(4), "linux-lspci-vvv-many.txt").contains(&30),
        "{text}"
    );
    // Every answer about a device quotes only that device's block.
    for (s, block) in [
        (subject(&r, "00:03.0"), 8..=19),
        (net, 20..=45),
        (blk, 46..=71),
    ] {
        for a in s.steps.iter().chain(&s.rows) {
            let lines = lines_in(a, "linux-lspci-vvv-many.txt");
            assert!(
                lines.iter().all(|l| block.contains(l)),
                "{:?}: {lines:?}",
                a.check
            );
        }
    }
}

#[test]
fn lspci_grep_slices_keep_each_device_and_the_selected_slot() {
    let r = report(&["linux-lspci-grep-slices.txt"]);
    let text = r.render_text();
    assert_eq!(r.files[0].format, Format::Lspci, "{text}");
    // The last slice lost its header, but its command selected 00:04.0.
    assert_eq!(devices(&r), ["00:03.0", "00:04.0"], "{text}");
    let (events, _) = events_of("linux-lspci-grep-slices.txt");
    let last = events.last().unwrap();
    assert_eq!(line_of(last), 20);
    assert_eq!(last.device.as_deref(), Some("00:04.0"));
    assert!(matches!(
        last.kind,
        EventKind::MsixCapabilitySeen { enabled: false, .. }
    ));
    // `--` ends a block: nothing of 00:03.0 is read into 00:04.0.
    assert!(
        events
            .iter()
            .filter(|e| line_of(e) <= 9)
            .all(|e| e.device.as_deref() == Some("00:03.0"))
    );
}

// ---- kernel logs -----------------------------------------------------------------------------

#[test]
fn nobody_cared_on_another_drivers_line_is_not_this_devices_link() {
    let r = report(&[
        "linux-dmesg-T-other-driver.log",
        "linux-proc-msix-one-device.txt",
    ]);
    let s = only(&r);
    let text = r.render_text();
    assert_eq!(s.device.as_deref(), Some("00:04.0"), "{text}");
    // `dmesg -T` stamps are read: the handler list is e1000's alone.
    for n in STORM_ROWS {
        assert_eq!(s.row(n).verdict, Verdict::Holds, "row {n}: {text}");
        assert!(
            s.row(n).finding.contains("e1000_intr"),
            "{}",
            s.row(n).finding
        );
    }
    assert!(rows(s).is_empty() && candidates(s).is_empty(), "{text}");
    let (events, _) = events_of("linux-dmesg-T-other-driver.log");
    let nobody: Vec<(u64, &EventKind, Option<u64>)> = events
        .iter()
        .filter(|e| matches!(e.kind, EventKind::IrqNobodyCared { .. }))
        .map(|e| (line_of(e), &e.kind, e.time_ns))
        .collect();
    assert_eq!(
        nobody,
        [(
            10,
            &EventKind::IrqNobodyCared {
                irq: 11,
                handlers: vec!["e1000_intr".into()]
            },
            Some((9 * 3600 + 21 * 60 + 47) * 1_000_000_000)
        )]
    );
}

#[test]
fn another_drivers_storm_leaves_the_virtio_device_healthy() {
    let r = report(&[
        "linux-dmesg-T-other-driver.log",
        "linux-proc-msix-one-device.txt",
    ]);
    let s = only(&r);
    assert!(!s.step(7).verdict.is_broken(), "{}", r.render_text());
    assert_ne!(r.exit_code(), virq_doctor::EXIT_BROKEN);
}

#[test]
fn a_journal_with_two_boots_gives_two_starts() {
    let r = report(&["linux-journal-two-boots.log"]);
    let text = r.render_text();
    assert_eq!(r.files[0].format, Format::KernelLog);
    assert_eq!(r.subjects().len(), 2, "{text}");
    let (first, second) = (&r.subjects()[0], &r.subjects()[1]);
    // One device (the journal names it only in a line about enabling it, which says nothing of
    // its interrupts), two boots.
    for (i, s) in [first, second].into_iter().enumerate() {
        assert_eq!(s.device, None, "{text}");
        assert_eq!((s.start, s.starts), (i + 1, 2), "{text}");
    }
    assert!(
        first
            .label
            .as_deref()
            .is_some_and(|l| l.contains("Linux 6.1.0-18-amd64"))
    );
    assert!(
        second
            .label
            .as_deref()
            .is_some_and(|l| l.contains("-- Boot"))
    );
    // The first boot (pci=nomsi) stormed on a line only vp_interrupt handles: Linux's handler
    // reads ISR status, so the device side is left.
    assert!(first.step(7).verdict.is_broken(), "{text}");
    assert_eq!(first.row(1).verdict, Verdict::Holds);
    assert_eq!(candidates(first), [19, 20, 22], "{text}");
    assert_eq!(
        lines_in(first.step(7), "linux-journal-two-boots.log"),
        [8],
        "{text}"
    );
    // Nothing of the first boot reaches the second.
    assert!(!second.step(7).verdict.is_broken(), "{text}");
    assert!(candidates(second).is_empty() && rows(second).is_empty());
}

#[test]
fn old_kernels_without_stamps_and_with_print_symbol_handlers() {
    let r = report(&["linux-dmesg-2.6-old-handlers.log"]);
    let s = only(&r);
    let text = r.render_text();
    // `(usb_hcd_irq+0x0/0x55 [usbcore])`: the line is shared with USB, so row 11 stays.
    assert_eq!(candidates(s), [11, 19, 20, 22], "{text}");
    assert_eq!(s.row(1).verdict, Verdict::Holds);
    let (events, summary) = events_of("linux-dmesg-2.6-old-handlers.log");
    assert_eq!(summary.format, Format::KernelLog);
    let handlers = events.iter().find_map(|e| match &e.kind {
        EventKind::IrqNobodyCared { handlers, .. } => Some(handlers.clone()),
        _ => None,
    });
    assert_eq!(
        handlers,
        Some(vec!["usb_hcd_irq".to_string(), "vp_interrupt".to_string()])
    );
    // The routes of functions never shown to be virtio, sharing no known virtio line, go.
    assert!(
        events
            .iter()
            .all(|e| !matches!(e.kind, EventKind::IntxRouted { .. }))
    );
}

#[test]
fn virtio_pci_messages_name_their_function() {
    let (events, summary) = events_of("linux-dmesg-el6-virtio-pci.log");
    assert_eq!(summary.format, Format::KernelLog);
    let first = &events[0];
    assert!(
        matches!(&first.kind, EventKind::SessionStart { label } if label.contains("Linux 2.6.32-754.35.1.el6.x86_64")),
        "{first:?}"
    );
    let routes: Vec<(u64, Option<&str>, &EventKind)> = events
        .iter()
        .filter(|e| matches!(e.kind, EventKind::IntxRouted { .. }))
        .map(|e| (line_of(e), e.device.as_deref(), &e.kind))
        .collect();
    assert_eq!(
        routes,
        [
            (
                4,
                Some("00:03.0"),
                &EventKind::IntxRouted { pin: 1, irq: 11 }
            ),
            (
                6,
                Some("00:04.0"),
                &EventKind::IntxRouted { pin: 1, irq: 10 }
            ),
            // uhci_hcd's INT D shares IRQ 10 with the virtio function at 00:04.0.
            (
                12,
                Some("00:01.2"),
                &EventKind::IntxRouted { pin: 4, irq: 10 }
            ),
        ]
    );
    let msi: Vec<(u64, Option<&str>)> = events
        .iter()
        .filter(
            |e| matches!(&e.kind, EventKind::LogLine { text } if text.contains("for MSI/MSI-X")),
        )
        .map(|e| (line_of(e), e.device.as_deref()))
        .collect();
    assert_eq!(
        msi,
        [
            (7, Some("00:03.0")),
            (8, Some("00:03.0")),
            (9, Some("00:03.0"))
        ]
    );
    // `dmesg -r`'s priority is stripped from what is quoted.
    for e in &events {
        if let EventKind::LogLine { text } = &e.kind {
            assert!(!text.starts_with('<'), "{text}");
        }
    }
    let probe = events.iter().any(|e| {
        matches!(&e.kind, EventKind::LogLine { text } if text == "virtio_blk: probe of virtio1 failed with error -16")
    });
    assert!(probe);
}

#[test]
fn a_pasted_bug_report_is_one_device_with_row_20() {
    let r = report(&["linux-bug-report.txt"]);
    let s = only(&r);
    let text = r.render_text();
    assert_eq!(s.device.as_deref(), Some("00:04.0"), "{text}");
    // vp_interrupt alone on the line, the count frozen at the cutoff, and DisINTx+ in the
    // Command register while the line keeps firing: the device ignores Interrupt Disable.
    assert_eq!(rows(s), [20], "{text}");
}

#[test]
fn a_pasted_bug_report_reads_every_section() {
    let (events, summary) = events_of("linux-bug-report.txt");
    assert_eq!(summary.dropped_events, 0);
    let kinds: Vec<(u64, String)> = events
        .iter()
        .filter(|e| !matches!(e.kind, EventKind::LogLine { .. }))
        .map(|e| (line_of(e), virq_doctor::parse::kind_name(&e.kind)))
        .collect();
    assert_eq!(
        kinds,
        [
            (4, "irq_nobody_cared".to_string()),
            (23, "irq_count".to_string()),
            (28, "pci_command".to_string()),
            (29, "intx_status".to_string()),
            (31, "intx_routed".to_string()),
            (35, "msix_capability_seen".to_string()),
        ]
    );
    // The shell's own lines are not evidence.
    assert!(events.iter().all(|e| match &e.origin {
        Origin::File { text, .. } => !text.starts_with('$'),
        Origin::Run => true,
    }));
}

// ---- nothing dropped silently ----------------------------------------------------------------

/// A kernel log of `chatter` lines a rule never reads (but which carry interrupt words), then
/// two `/proc/interrupts` snapshots of a healthy MSI-X device.
fn chatter_then_snapshots(chatter: usize) -> String {
    let mut text = String::new();
    for i in 0..chatter {
        text.push_str(&format!(
            "[{:5}.{:06}] virtio_net virtio1 eth0: rx irq coalescing {} usecs\n",
            i / 1000,
            i % 1000,
            i % 64
        ));
    }
    text.push_str(
        "$ grep virtio /proc/interrupts\n\
         \x20 24:          0          0   PCI-MSI 65536-edge      virtio0-config\n\
         \x20 25:       2113        118   PCI-MSI 65537-edge      virtio0-req.0\n\
         $ grep virtio /proc/interrupts\n\
         \x20 24:          0          0   PCI-MSI 65536-edge      virtio0-config\n\
         \x20 25:       2960        140   PCI-MSI 65537-edge      virtio0-req.0\n",
    );
    text
}

#[test]
fn evidence_past_the_first_ten_thousand_lines_still_holds() {
    let r = report_of(&chatter_then_snapshots(12_000));
    let text = r.render_text();
    // The chatter past the quoting limit is counted, and no answer depends on it.
    assert_eq!(r.files[0].dropped_events, 0, "{text}");
    assert_eq!(r.files[0].unquoted_log_lines, 2_000, "{text}");
    let s = subject(&r, "00:04.0");
    assert!(s.lost.is_empty(), "{:?}", s.lost);
    assert_eq!(s.step(7).verdict, Verdict::Holds, "{text}");
    assert_eq!(lines_in(s.step(7), "inline.log"), [12_003, 12_006]);
}

#[test]
fn decisive_lines_past_the_limit_are_quoted() {
    let mut text = chatter_then_snapshots(12_000);
    text.push_str(
        "[  99.000001] irq 11: nobody cared (try booting with the \"irqpoll\" option)\n\
         [  99.000002] handlers:\n\
         [  99.000003] [<000000006a1f2c9e>] vp_interrupt [virtio_pci]\n\
         [  99.000004] Disabling IRQ #11\n",
    );
    let (events, summary) =
        parse_to_vec("big.log", text.as_bytes(), ParseLimits::default()).unwrap();
    assert_eq!(summary.unquoted_log_lines, 2_000);
    let tail: Vec<(u64, String)> = events
        .iter()
        .filter(|e| line_of(e) > 12_006)
        .map(|e| (line_of(e), virq_doctor::parse::kind_name(&e.kind)))
        .collect();
    assert_eq!(
        tail,
        [
            (12_007, "log_line".to_string()),
            (12_007, "irq_nobody_cared".to_string()),
            (12_010, "log_line".to_string()),
        ]
    );
}

#[test]
fn a_file_of_only_a_header_less_slice_is_recognised() {
    let r = diagnose(&[fixture("linux-proc-frozen-100000.txt")]).unwrap();
    assert_eq!(r.files[0].format, Format::ProcInterrupts);
    assert_eq!(r.files[0].kinds.get("irq_count"), Some(&2));
}

#[test]
fn which_lines_are_decisive() {
    let decisive = |l: &str| virq_doctor::parse::decisive_line(l, virq_doctor::gate::hits(l));
    for line in [
        "irq 11: nobody cared (try booting with the \"irqpoll\" option)",
        "Disabling IRQ #11",
        "irq event 11: bogus return value 5",
        "genirq: Flags mismatch irq 11. 00000080 (virtio0) vs. 00000000 (ide0)",
        "virtio-pci 0000:00:04.0: irq 24 for MSI/MSI-X",
        "pcieport 0000:00:1c.0: irq 40 for MSI/MSI-X",
        "virtio_blk: probe of virtio1 failed with error -16",
        "virtio_net virtio0: probe with driver virtio_net failed with error -22",
        "[<000000006a1f2c9e>] vp_interrupt [virtio_pci]",
        "viostor: interrupt resources rebalanced",
    ] {
        assert!(decisive(line), "{line}");
    }
    for line in [
        "virtio_net virtio1 eth0: rx irq coalescing 12 usecs",
        "virqblk: DPC drained 3 used buffers on queue 0",
        "e1000: probe of 0000:00:03.0 failed with error -5",
    ] {
        assert!(!decisive(line), "{line}");
    }
}

/// A row read again with the same text after its counts reuses what its columns said; a row
/// whose columns changed between snapshots (a handler added, the line moved to another
/// controller) is read anew: each event names what its own line says.
#[test]
fn a_row_whose_columns_change_between_snapshots_is_read_anew() {
    let text = "\
           CPU0       CPU1
 11:         10          0   IO-APIC   11-fasteoi   virtio0
 24:          5          0   PCI-MSI 49152-edge      virtio0-config
           CPU0       CPU1
 11:         20          0   IO-APIC   11-fasteoi   virtio0, virtio1
 24:          6          0   PCI-MSIX-0000:00:05.0   0-edge   virtio0-config
           CPU0       CPU1
 11:         30          0   IO-APIC   11-fasteoi   virtio0, virtio1
";
    let (events, _) = parse_to_vec("proc.txt", text.as_bytes(), ParseLimits::default()).unwrap();
    /// Line, IRQ and name, count, controller, device.
    type Row = (u64, String, u64, Option<String>, Option<String>);
    let rows: Vec<Row> = events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::IrqCount {
                irq,
                name,
                count,
                chip,
            } => Some((
                line_of(e),
                format!("{irq} {name}"),
                *count,
                chip.clone(),
                e.device.clone(),
            )),
            _ => None,
        })
        .collect();
    let s = |v: &str| Some(v.to_string());
    assert_eq!(
        rows,
        [
            (
                2,
                "11 virtio0".into(),
                10,
                s("IO-APIC 11-fasteoi"),
                s("virtio0")
            ),
            (
                3,
                "24 virtio0-config".into(),
                5,
                s("PCI-MSI 49152-edge"),
                s("00:03.0")
            ),
            (
                5,
                "11 virtio0, virtio1".into(),
                20,
                s("IO-APIC 11-fasteoi"),
                s("virtio0")
            ),
            (
                5,
                "11 virtio0, virtio1".into(),
                20,
                s("IO-APIC 11-fasteoi"),
                s("virtio1")
            ),
            (
                6,
                "24 virtio0-config".into(),
                6,
                s("PCI-MSIX-0000:00:05.0 0-edge"),
                s("00:05.0")
            ),
            (
                8,
                "11 virtio0, virtio1".into(),
                30,
                s("IO-APIC 11-fasteoi"),
                s("virtio0")
            ),
            (
                8,
                "11 virtio0, virtio1".into(),
                30,
                s("IO-APIC 11-fasteoi"),
                s("virtio1")
            ),
        ]
    );
}
