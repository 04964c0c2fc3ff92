//! What Windows 7 really prints, read by the doctor: KMDF 1.9's zeros before start, the
//! translated MessageCount that reads 0, the power transitions (log format line 12, read by the
//! Windows 7 model's own reader), `!devnode`'s started state and the Debug Print Filter's empty
//! capture.

mod common;

use common::*;
use virq_doctor::{Doctor, Verdict};
use virq_events::EventKind;

/// A capture as a Windows 7 box with KMDF 1.9 and a correct driver leaves it: the checklist's
/// print after each WdfInterruptCreate (EvtDriverDeviceAdd) reads zeros, the print after start
/// the real values, every translated MessageCount 0 (the x64 Group), a sleep and resume with
/// the vectors programmed again in EvtDeviceD0Entry.
const KMDF_1_9_CAPTURE: &str = "\
00000000\t0.00000000\tvirqblk: EvtDriverDeviceAdd (KMDF 1.9)\r
00000001\t0.00000000\tWDFINT: MessageSignaled=0 MessageNumber=0 Vector=0 Irql=0 Affinity=0x0\r
00000002\t0.00000000\tWDFINT: MessageSignaled=0 MessageNumber=1 Vector=0 Irql=0 Affinity=0x0\r
00000003\t0.00000000\tWDFINT: MessageSignaled=0 MessageNumber=2 Vector=0 Irql=0 Affinity=0x0\r
00000004\t0.00000200\tvirqblk: EvtDevicePrepareHardware 00:01.0 VEN_1AF4\r
00000005\t0.00000200\tINT: MSI/MSI-X Level=11 Vector=177 Affinity=0x3 MessageCount=0 Flags=0x3\r
00000006\t0.00000200\tINT: MSI/MSI-X Level=10 Vector=161 Affinity=0x3 MessageCount=0 Flags=0x3\r
00000007\t0.00000200\tINT: MSI/MSI-X Level=9 Vector=145 Affinity=0x3 MessageCount=0 Flags=0x3\r
00000008\t0.00000200\tWDFINT: MessageSignaled=1 MessageNumber=0 Vector=177 Irql=11 Affinity=0x3\r
00000009\t0.00000200\tWDFINT: MessageSignaled=1 MessageNumber=1 Vector=161 Irql=10 Affinity=0x3\r
00000010\t0.00000200\tWDFINT: MessageSignaled=1 MessageNumber=2 Vector=145 Irql=9 Affinity=0x3\r
00000011\t0.00000730\tVIRTIO: device_status write=0x00\r
00000012\t0.00000730\tVIRTIO: msix_config write=0x0000 read=0x0000 MessageNumber=0\r
00000013\t0.00000730\tVIRTIO: queue=0 queue_msix_vector write=0x0001 read=0x0001 MessageNumber=1\r
00000014\t0.00000730\tVIRTIO: queue=1 queue_msix_vector write=0x0002 read=0x0002 MessageNumber=2\r
00000015\t0.00000730\tVIRTIO: device_status write=0x0f\r
00000016\t0.00001790\tVIRTIO: EvtDeviceD0Exit TargetState=D3\r
00000017\t0.00001810\tVIRTIO: device_status write=0x00\r
00000018\t0.00001810\tVIRTIO: EvtDeviceD0Entry PreviousState=D3\r
00000019\t0.00001860\tVIRTIO: msix_config read=0xffff after reset\r
00000020\t0.00002390\tVIRTIO: device_status write=0x00\r
00000021\t0.00002390\tVIRTIO: msix_config write=0x0000 read=0x0000 MessageNumber=0\r
00000022\t0.00002390\tVIRTIO: queue=0 queue_msix_vector write=0x0001 read=0x0001 MessageNumber=1\r
00000023\t0.00002390\tVIRTIO: queue=1 queue_msix_vector write=0x0002 read=0x0002 MessageNumber=2\r
00000024\t0.00002390\tVIRTIO: device_status write=0x0f\r
00000025\t0.00003000\tVIRTIO: msix_config read=0x0000\r
00000026\t0.00003000\tVIRTIO: queue=0 queue_msix_vector read=0x0001\r
00000027\t0.00003000\tVIRTIO: queue=1 queue_msix_vector read=0x0002\r
00000028\t0.00003000\tCOUNTERS: MessageNumber=0 isr=1 dpc=1 LastMessageID=0\r
00000029\t0.00003000\tCOUNTERS: MessageNumber=1 isr=9 dpc=9 LastMessageID=1\r
00000030\t0.00003000\tCOUNTERS: MessageNumber=2 isr=9 dpc=9 LastMessageID=2\r
00000031\t0.00003000\tIO: queue=0 submitted=9 completed=9\r
00000032\t0.00003000\tIO: queue=1 submitted=9 completed=9\r
";

#[test]
fn the_kmdf_1_9_capture_pattern_is_not_a_failure() {
    let r = report_of(KMDF_1_9_CAPTURE);
    let s = only(&r);
    assert!(rows(s).is_empty(), "{}", r.render_text());
    assert!(candidates(s).is_empty(), "{}", r.render_text());
    assert!(broken_steps(s).is_empty(), "{}", r.render_text());
    // The zeros before start are named for what they are, and are one start, not two.
    assert_eq!(s.row(23).verdict, Verdict::Holds);
    assert!(
        s.row(23).finding.contains("KMDF 1.9"),
        "{}",
        s.row(23).finding
    );
    assert_eq!(lines_in(s.row(23), "inline.log"), [2]);
    assert_eq!(s.starts, 1);
    // Three messages from three descriptors although each MessageCount reads 0.
    assert!(
        s.step(2).finding.starts_with("3 message(s) granted"),
        "{}",
        s.step(2).finding
    );
    // The sleep/resume was read, and the vectors were programmed again after D0 entry.
    assert_eq!(s.row(27).verdict, Verdict::Holds);
    assert!(lines_in(s.row(27), "inline.log").contains(&19));
}

#[test]
fn power_lines_become_power_transitions() {
    let mut kinds = Vec::new();
    let mut d = Doctor::new().watch(|e| kinds.push(e.kind.clone()));
    d.read("inline.log", KMDF_1_9_CAPTURE.as_bytes()).unwrap();
    drop(d);
    let power: Vec<&EventKind> = kinds
        .iter()
        .filter(|k| matches!(k, EventKind::PowerTransition { .. }))
        .collect();
    assert_eq!(
        power,
        [
            &EventKind::PowerTransition {
                entering_d0: false,
                state: 3
            },
            &EventKind::PowerTransition {
                entering_d0: true,
                state: 3
            }
        ]
    );
}

/// Row 27 from the capture: the D0 entry's reset, and no vector written after it.
#[test]
fn vectors_not_programmed_after_d0_entry_are_row_27() {
    // EvtDeviceD0Entry brings the device up without programming the vectors; they read 0xFFFF.
    let lost: String = KMDF_1_9_CAPTURE
        .lines()
        .filter(|l| !(l.starts_with("0000002") && l.contains("write=0x000")))
        .map(|l| {
            let l = if l.starts_with("0000002") {
                l.replace("read=0x0000", "read=0xffff")
                    .replace("read=0x0001", "read=0xffff")
                    .replace("read=0x0002", "read=0xffff")
            } else {
                l.to_string()
            };
            format!("{l}\n")
        })
        .collect();
    let r = report_of(&lost);
    let s = only(&r);
    assert_eq!(rows(s), [27], "{}", r.render_text());
    assert!(lines_in(s.row(27), "inline.log").contains(&17));
}

/// Row 25: DbgView holds only a program's own lines while `!devnode` says started.
#[test]
fn an_empty_capture_of_a_started_device_is_the_debug_print_filter() {
    let mut d = Doctor::new();
    d.read(
        "dbgview.log",
        "00000000\t0.00000000\t[2140] iogen.exe: 8 read(s) per queue\r\n\
         00000001\t0.00001780\t[2140] iogen.exe: done\r\n"
            .as_bytes(),
    )
    .unwrap();
    d.read(
        "devnode.txt",
        "0: kd> !devnode 0 1 PCI\\VEN_1AF4&DEV_1042\n\
         DevNode 0xfffffa8001e4b8f0 for PDO 0xfffffa8001e4a060\n\
         \x20 InstancePath is \"PCI\\VEN_1AF4&DEV_1042&SUBSYS_11001AF4&REV_01\\3&13c0b0c5&0&08\"\n\
         \x20 ServiceName is \"virqblk\"\n\
         \x20 State = DeviceNodeStarted (0x308)\n\
         \x20 Previous State = DeviceNodeEnumerateCompletion (0x30d)\n"
            .as_bytes(),
    )
    .unwrap();
    let r = d.finish();
    let s = only(&r);
    assert_eq!(rows(s), [25], "{}", r.render_text());
    assert_eq!(lines_in(s.row(25), "devnode.txt"), [5]);
    assert!(
        s.row(25)
            .fix
            .as_deref()
            .unwrap()
            .contains("Debug Print Filter"),
        "{:?}",
        s.row(25).fix
    );
}
