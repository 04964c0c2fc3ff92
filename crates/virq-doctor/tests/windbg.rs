//! Checklist section 1.3 as a WinDbg user does it: break in the driver's PnP dispatch routine,
//! `!irp @rdx`, then `dt nt!_CM_RESOURCE_LIST` of the start IRP's lists and `dt` of each
//! partial descriptor, laid out as WinDbg prints them (the x64 union overlay shown); `!dd` of the
//! MSI-X table the `!pci` dump locates. Each test asserts the evidence read and the lines quoted.

mod common;

use common::*;
use std::io::Cursor;
use virq_doctor::{Doctor, Format, ParseLimits, Verdict, parse_to_vec};
use virq_events::{Event, EventKind};

fn resources(events: &[Event]) -> Vec<(u64, EventKind)> {
    events
        .iter()
        .filter(|e| matches!(e.kind, EventKind::ResourceAssigned { .. }))
        .map(|e| (line_of(e), e.kind.clone()))
        .collect()
}

/// A session at `IRP_MN_START_DEVICE`: `!irp @rdx` names `AllocatedResources` and
/// `AllocatedResourcesTranslated`; `dt` of the translated list (once plain, once `-r6` with the
/// first descriptor nested), then each message descriptor at its address, through whichever
/// member the user expanded, and one descriptor of the raw list. The translated descriptors'
/// `MessageCount` (`Interrupt.Group` / `Raw.MessageCount`) reads 0, the overlaid Group; the raw
/// one, read through `Interrupt`, shows `Group 1`: the raw `MessageCount`, and the raw list's
/// message "vector" 0xfffffffe. The pointer in `!irp` says which list each descriptor is from.
#[test]
fn the_start_irp_and_dt_of_its_lists_give_raw_and_translated_resources() {
    let name = "win-windbg-start-irp.txt";
    let bytes = std::fs::read(fixture(name)).unwrap();
    let (events, summary) = parse_to_vec(name, Cursor::new(bytes), ParseLimits::default()).unwrap();
    assert_eq!(summary.format, Format::WinDbg);
    assert_eq!(
        resources(&events),
        [
            (48, message(8, 0x81, 0, false)),
            (67, message(9, 0x91, 0, false)),
            (83, message(0xa, 0xa1, 0, false)),
            (93, message(0, 0xffff_fffe, 1, true)),
        ]
    );
    // Nothing else is read as evidence: the disassembly, the breakpoint, the IRP's lines.
    assert!(
        events
            .iter()
            .all(|e| matches!(e.kind, EventKind::ResourceAssigned { .. })),
        "{events:?}"
    );

    let r = report(&[name]);
    let s = only(&r);
    assert_eq!(s.step(1).verdict, Verdict::Holds);
    assert!(
        s.step(1).finding.contains("3 Interrupt Request entries"),
        "{}",
        s.step(1).finding
    );
    assert_eq!(lines_in(s.step(1), name), [48, 67, 83, 93]);
    // What the driver read of its resources is not in WinDbg's text.
    assert!(
        matches!(&s.step(2).verdict, Verdict::CannotTell { missing } if missing.contains("INT:")),
        "{:?}",
        s.step(2).verdict
    );
    assert!(s.step(2).finding.contains("3 message(s)"));
    assert!(rows(s).is_empty(), "{}", r.render_text());
}

/// The same session saved as two files, `!irp` in one and the `dt` dumps in the other: read in
/// that order, the pointer ties the raw descriptor to `AllocatedResources`; read the other way
/// round, its raw message "vector" (above 0xff, no IDT vector) still says raw list.
#[test]
fn the_irp_pointer_ties_a_dt_in_another_file() {
    let text = std::fs::read_to_string(fixture("win-windbg-start-irp.txt")).unwrap();
    let cut = text.find("0: kd> dt").unwrap();
    let (irp, dt) = text.split_at(cut);
    for order in [
        [("irp.txt", irp), ("dt.txt", dt)],
        [("dt.txt", dt), ("irp.txt", irp)],
    ] {
        let mut events = Vec::new();
        let mut d = Doctor::new().watch(|e| events.push(e.clone()));
        for (name, body) in order {
            d.read(name, body.as_bytes()).unwrap();
        }
        let r = d.finish();
        let raw: Vec<bool> = events
            .iter()
            .filter_map(|e| match e.kind {
                EventKind::ResourceAssigned { raw, .. } => Some(raw),
                _ => None,
            })
            .collect();
        assert_eq!(raw, [false, false, false, true], "{order:?}");
        assert_eq!(r.subjects().len(), 1);
        let text = r.render_text();
        assert!(
            text.contains("irp.txt (WinDbg output): 1 line(s) read for context"),
            "{text}"
        );
    }
}

/// A line interrupt: the raw list carries the IRQ as Level and Vector (0x11), the translated
/// list the IRQL and the IDT vector. With the `!irp` the pointers decide; without it (the `dt`
/// dumps pasted alone) a Level equal to a Vector below 0x30 is the raw list's.
#[test]
fn a_line_interrupt_from_the_two_lists() {
    let irp = "0: kd> !irp fffffa80`04c2a010\n\
        Irp is active with 2 stacks 2 is current (= 0xfffffa8004c2a128)\n\
        >[ 1b, 0]   0  0 fffffa8004b7e050 00000000 00000000-00000000\n\
        \t       \\Driver\\vblk\n\
        \t\t\tArgs: fffff8a001e3c010 fffff8a001e3d320 00000000 00000000\n";
    let dt = "0: kd> dt -r2 nt!_CM_PARTIAL_RESOURCE_DESCRIPTOR fffff8a0`01e3c024\n\
        \x20  +0x000 Type             : 0x2 ''\n\
        \x20  +0x001 ShareDisposition : 0x3 ''\n\
        \x20  +0x002 Flags            : 0\n\
        \x20  +0x004 u                : <unnamed-tag>\n\
        \x20     +0x000 Interrupt        : <unnamed-tag>\n\
        \x20        +0x000 Level            : 0x11\n\
        \x20        +0x002 Group            : 0\n\
        \x20        +0x004 Vector           : 0x11\n\
        \x20        +0x008 Affinity         : 0xf\n\
        0: kd> dt -r2 nt!_CM_PARTIAL_RESOURCE_DESCRIPTOR fffff8a0`01e3d334\n\
        \x20  +0x000 Type             : 0x2 ''\n\
        \x20  +0x001 ShareDisposition : 0x3 ''\n\
        \x20  +0x002 Flags            : 0\n\
        \x20  +0x004 u                : <unnamed-tag>\n\
        \x20     +0x000 Interrupt        : <unnamed-tag>\n\
        \x20        +0x000 Level            : 8\n\
        \x20        +0x002 Group            : 0\n\
        \x20        +0x004 Vector           : 0x81\n\
        \x20        +0x008 Affinity         : 0xf\n";
    let want = [
        (9, line_interrupt(0x11, 0x11, 0xf, true)),
        (19, line_interrupt(8, 0x81, 0xf, false)),
    ];
    let events = parse_to_vec("dt.txt", dt.as_bytes(), ParseLimits::default())
        .unwrap()
        .0;
    assert_eq!(resources(&events), want);
    let mut both = Vec::new();
    let mut d = Doctor::new().watch(|e| both.push(e.clone()));
    d.read("irp.txt", irp.as_bytes()).unwrap();
    d.read("dt.txt", dt.as_bytes()).unwrap();
    let r = d.finish();
    assert_eq!(resources(&both), want);
    let s = only(&r);
    assert!(
        s.step(1).finding.contains("IRQ 17"),
        "{}",
        s.step(1).finding
    );
}

/// `!pci` locates the MSI-X table (BAR4 + Table offset) and the PBA; `!dd [uc]` of the table and
/// `!dq [uc]` of the PBA give each entry's address, data and mask and the pending bits, for the
/// function the `!pci` named.
#[test]
fn the_msix_table_from_dd_after_pci() {
    let text = "0: kd> !pci 100 0 4 0\n\n\
        PCI Configuration Space (Segment:0000 Bus:00 Device:04 Function:00)\n\
        Common Header:\n\
        \x20   00: VendorID       1af4      Red Hat, Inc.\n\
        \x20   04: Command        0507      IOSpaceEn MemSpaceEn BusInitiate SERREn InterruptDis\n\
        \x20   20: BAR4           fe00000c\n\
        \x20   24: BAR5           00000000\n\
        \x20   34: CapPtr         98\n\
        Device Private:\n\
        \x20   90: 00000000 00000000 80028411 00000004\n\
        \x20   a0: 00000804 00000000 00000000 00000000\n\
        0: kd> !dd [uc] fe000000 Lc\n\
        #fe000000 fee0100c 00000000 00004081 00000000\n\
        #fe000010 fee0100c 00000000 00004091 00000000\n\
        #fe000020 fee0100c 00000000 000040a1 00000001\n\
        0: kd> !dq [uc] fe000800 L1\n\
        #fe000800 00000000`00000004\n";
    let events = parse_to_vec("pci.txt", text.as_bytes(), ParseLimits::default())
        .unwrap()
        .0;
    let got: Vec<(u64, EventKind, Option<&str>)> = events
        .iter()
        .filter(|e| {
            matches!(
                e.kind,
                EventKind::MsixEntry { .. } | EventKind::PendingSet { .. }
            )
        })
        .map(|e| (line_of(e), e.kind.clone(), e.device.as_deref()))
        .collect();
    let entry = |entry, data, masked| EventKind::MsixEntry {
        entry,
        address: 0xFEE0_100C,
        data,
        masked,
    };
    assert_eq!(
        got,
        [
            (14, entry(0, 0x4081, false), Some("00:04.0")),
            (15, entry(1, 0x4091, false), Some("00:04.0")),
            (16, entry(2, 0x40a1, true), Some("00:04.0")),
            (18, EventKind::PendingSet { entry: 2 }, Some("00:04.0")),
        ]
    );
    // The capability itself, from the raw Message Control word (8002: Enable, 3 entries).
    assert!(events.iter().any(|e| e.kind == msix_enabled_unmasked(3)));
}

/// `!pcitree` is WinDbg output: read as such, with no evidence of its own.
#[test]
fn a_pcitree_alone_is_windbg_output() {
    let text = "0: kd> !pcitree\n\n\
        Bus 0x0 (FDO Ext fffffa8001c2b190)\n\
        \x20 0600 12378086 (d=0,  f=0) devext fffffa8001c35b30 Bridge/HOST to PCI\n\
        \x20 0100 10421af4 (d=4,  f=0) devext fffffa8001c3e1b0 Mass Storage Controller/SCSI\n\n\
        Total PCI Root busses processed = 1\n";
    let (events, summary) =
        parse_to_vec("pcitree.txt", text.as_bytes(), ParseLimits::default()).unwrap();
    assert_eq!(summary.format, Format::WinDbg);
    assert!(events.is_empty(), "{events:?}");
    assert_eq!(
        summary.context_lines, 3,
        "the bus line, the host bridge and the device"
    );
}

/// Where the content cannot tell the lists apart (a raw message descriptor whose vector looks
/// like an IDT vector, as in virq's own model), only the start IRP's pointer says it is the raw
/// list's: with the `!irp` read first it is raw; pasted alone it is taken as translated (the
/// list the checklist dumps), its `MessageCount` 1 kept.
#[test]
fn the_irp_pointer_decides_where_the_content_cannot() {
    let irp = "0: kd> !irp fffffa80`04c2a010\n\
        Irp is active with 2 stacks 2 is current (= 0xfffffa8004c2a128)\n\
        >[ 1b, 0]   0  0 fffffa8004b7e050 00000000 00000000-00000000\n\
        \t\t\tArgs: fffff8a001e3c010 fffff8a001e3d320 00000000 00000000\n";
    let dt = "0: kd> dt -r3 nt!_CM_PARTIAL_RESOURCE_DESCRIPTOR fffff8a0`01e3c024\n\
        \x20  +0x000 Type             : 0x2 ''\n\
        \x20  +0x001 ShareDisposition : 0x1 ''\n\
        \x20  +0x002 Flags            : 3\n\
        \x20  +0x004 u                : <unnamed-tag>\n\
        \x20     +0x000 MessageInterrupt : <unnamed-tag>\n\
        \x20        +0x000 Raw              : <unnamed-tag>\n\
        \x20           +0x000 Group            : 0\n\
        \x20           +0x002 MessageCount     : 1\n\
        \x20           +0x004 Vector           : 0x81\n\
        \x20           +0x008 Affinity         : 0xf\n";
    for (with_irp, raw) in [(true, true), (false, false)] {
        let mut events = Vec::new();
        let mut d = Doctor::new().watch(|e| events.push(e.clone()));
        if with_irp {
            d.read("irp.txt", irp.as_bytes()).unwrap();
        }
        d.read("dt.txt", dt.as_bytes()).unwrap();
        d.finish();
        assert_eq!(resources(&events), [(10, message(0, 0x81, 1, raw))]);
    }
}

/// `!irp` output pasted with no prompt after it: the driver's prints that follow are still read.
#[test]
fn lines_after_an_irp_without_a_prompt_are_read() {
    let text = "Irp is active with 2 stacks 2 is current (= 0xfffffa8004c2a128)\n\
        >[ 1b, 0]   0  0 fffffa8004b7e050 00000000 00000000-00000000\n\
        \t       \\Driver\\vblk\n\
        \t\t\tArgs: fffff8a001e3c010 fffff8a001e3d320 00000000 00000000\n\
        vblk: INT: MSI/MSI-X Level=8 Vector=129 Affinity=0xf MessageCount=0 Flags=0x3\n";
    let events = parse_to_vec("mixed.txt", text.as_bytes(), ParseLimits::default())
        .unwrap()
        .0;
    assert_eq!(resources(&events), [(5, message(8, 0x81, 0, false))]);
}
