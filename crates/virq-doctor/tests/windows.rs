//! Windows evidence as people really hand it over (issue 11, build point 4): DbgView text saved
//! or pasted every way, INF files, fragments and `.inx` templates, WinDbg `!pci` / `!devnode` /
//! `!idt` as WinDbg prints them, and virtio-win's own drivers' prints. Each test asserts the
//! doctor's verdict and the lines it quotes.

mod common;

use common::*;
use std::io::Cursor;
use virq_doctor::{Answer, Doctor, Format, ParseLimits, Report, Verdict, parse_to_vec};
use virq_events::{Event, EventKind, InterruptMode, Selector};

fn events_of(name: &str) -> Vec<Event> {
    let bytes = std::fs::read(fixture(name)).unwrap();
    parse_to_vec(name, Cursor::new(bytes), ParseLimits::default())
        .unwrap_or_else(|e| panic!("{e}"))
        .0
}

/// The events of `text` read as a file named `name`.
fn events_in(name: &str, text: &str) -> Vec<Event> {
    parse_to_vec(name, text.as_bytes(), ParseLimits::default())
        .unwrap_or_else(|e| panic!("{e}"))
        .0
}

/// (line, kind) of every event that is not a free-text line.
fn structured(events: &[Event]) -> Vec<(u64, EventKind)> {
    events
        .iter()
        .filter(|e| !matches!(e.kind, EventKind::LogLine { .. }))
        .map(|e| (line_of(e), e.kind.clone()))
        .collect()
}

fn report_bytes(name: &str, bytes: &[u8]) -> Report {
    let mut d = Doctor::new();
    d.read(name, Cursor::new(bytes))
        .unwrap_or_else(|e| panic!("{e}"));
    d.finish()
}

/// The answer's finding names `words` (a grant's size, a mode) in so many words.
#[track_caller]
fn assert_finding_names(answer: &Answer, words: &str) {
    assert!(
        answer.finding.contains(words),
        "finding {:?} does not name {words:?}",
        answer.finding
    );
}

// ---- DbgView ------------------------------------------------------------------------------

/// A capture copied out of DbgView's window into a forum post: columns separated by spaces,
/// 12-hour clock times, a Win32 line with its `[PID]`, CRLF, a Latin-1 `µ`. The driver prints
/// its read-backs in its own words; one of them names no written value. The sequence number in
/// front of it (13) is not the value written: read as one, it made the doctor name row 4 (a
/// selector written beyond the grant).
#[test]
fn dbgview_pasted_with_spaces_and_pm_clock_times() {
    let r = report(&["win-dbgview-spaces-ampm.log"]);
    assert_eq!(r.files[0].format, Format::DbgView);
    let s = only(&r);
    assert!(rows(s).is_empty(), "{}", r.render_text());
    assert_eq!(broken_steps(s), [6], "{}", r.render_text());
    assert_eq!(lines_in(s.step(6), "win-dbgview-spaces-ampm.log"), [13]);
    assert_eq!(s.step(3).verdict, Verdict::Holds);
    assert_eq!(
        lines_in(s.step(3), "win-dbgview-spaces-ampm.log"),
        [4, 5, 6]
    );

    let events = events_of("win-dbgview-spaces-ampm.log");
    let at = |line: u64| events.iter().find(|e| line_of(e) == line).unwrap();
    assert_eq!(
        at(13).kind,
        EventKind::VectorRead {
            selector: Selector::Queue(1),
            value: 0xffff
        }
    );
    assert_eq!(
        at(12).kind,
        EventKind::VectorWritten {
            selector: Selector::Queue(0),
            written: 1,
            read_back: 1
        }
    );
    let pm = |h: u64, m: u64, s: u64| ((h + 12) * 3600 + m * 60 + s) * 1_000_000_000;
    assert_eq!(at(3).time_ns, Some(pm(10, 35, 48)));
    assert_eq!(at(16).time_ns, Some(pm(10, 35, 53)));
    // The Latin-1 byte is a replacement character; the line around it is intact.
    match &at(15).kind {
        EventKind::LogLine { text } => {
            assert_eq!(text, "vblk: first read done in 412 \u{fffd}s, dpc on cpu 1")
        }
        k => panic!("{k:?}"),
    }
}

/// How a saved or pasted line looks: the columns and the line ending.
struct Style {
    name: &'static str,
    /// `seq`, `time`, `text` -> the line without its ending.
    line: fn(u64, &str, &str) -> String,
    /// The time as the style shows it for `ms` milliseconds after 22:35:40.
    time: fn(u64) -> String,
    /// Nanoseconds the doctor should read back for `ms`, or `None` with no time column.
    expect: fn(u64) -> Option<u64>,
    crlf: bool,
}

impl Style {
    /// DbgView's own column: seconds since the capture started, read back to the nanosecond.
    fn elapsed(name: &'static str, line: fn(u64, &str, &str) -> String, crlf: bool) -> Self {
        Style {
            name,
            line,
            time: elapsed,
            expect: |ms| Some(ms * 1_000_000),
            crlf,
        }
    }

    /// A 12-hour clock with AM/PM and whole seconds, saved with CRLF.
    fn clock12(name: &'static str, line: fn(u64, &str, &str) -> String) -> Self {
        Style {
            name,
            line,
            time: clock12,
            expect: |ms| Some(clock_ns(ms / 1000 * 1000)),
            crlf: true,
        }
    }
}

fn clock_ns(ms: u64) -> u64 {
    ((22 * 3600 + 35 * 60 + 40) * 1000 + ms) * 1_000_000
}

fn clock12(ms: u64) -> String {
    let s = 22 * 3600 + 35 * 60 + 40 + ms / 1000;
    format!("{}:{:02}:{:02} PM", s / 3600 - 12, s / 60 % 60, s % 60)
}

fn elapsed(ms: u64) -> String {
    format!("{}.{:03}00000", ms / 1000, ms % 1000)
}

/// One capture (catalogue row 2: the vectors were written before a reset) saved and pasted
/// every way DbgView text reaches a user: tabs or spaces, elapsed seconds or clock time (12-hour
/// with AM/PM, 24-hour, with milliseconds), sequence numbers with or without leading zeros,
/// the `[PID]` column on Win32 lines, CRLF or LF, a UTF-8 byte-order mark, no-break spaces
/// between the columns, and no columns at all. Every variant gives the same verdict quoting the
/// same lines, and every variant with a time column gives its times.
#[test]
fn every_way_dbgview_text_is_saved_or_pasted_gives_the_same_verdict() {
    let source = std::fs::read_to_string(fixture("reset-after-write.log")).unwrap();
    let mut texts: Vec<String> = source.lines().map(str::to_string).collect();
    // A Win32 program's line between the driver's: DbgView shows its process id.
    texts.insert(8, "[2964] vblkctl.exe: interrupt test started".to_string());
    let reference = {
        let r = report_of(&texts.join("\n"));
        let s = only(&r).clone();
        (
            rows(&s),
            candidates(&s),
            broken_steps(&s),
            lines_in(s.row(2), "inline.log"),
        )
    };
    assert_eq!(reference.0, [2], "the bare capture is row 2");
    let styles = [
        Style::elapsed(
            "saved: tabs, elapsed, zero-padded, CRLF",
            |seq, time, text| format!("{seq:08}\t{time}\t{text}"),
            true,
        ),
        Style::elapsed(
            "pasted: spaces, elapsed, LF",
            |seq, time, text| format!("{seq}   {time}   {text}"),
            false,
        ),
        Style::clock12("tabs, 12-hour clock", |seq, time, text| {
            format!("{seq}\t{time}\t{text}")
        }),
        Style::clock12("pasted: spaces, 12-hour clock", |seq, time, text| {
            format!("{seq:05} {time}  {text}")
        }),
        Style {
            name: "spaces, 24-hour clock with milliseconds",
            line: |seq, time, text| format!("{seq}  {time}  {text}"),
            time: |ms| {
                let t = clock_ns(ms) / 1_000_000;
                format!(
                    "{}:{:02}:{:02}.{:03}",
                    t / 3_600_000,
                    t / 60_000 % 60,
                    t / 1000 % 60,
                    t % 1000
                )
            },
            expect: |ms| Some(clock_ns(ms)),
            crlf: false,
        },
        Style::elapsed(
            "no-break spaces, and a byte-order mark before the first line",
            |seq, time, text| format!("{seq}\u{a0}{time}\u{a0}{text}"),
            true,
        ),
        Style {
            name: "no columns",
            line: |_, _, text| text.to_string(),
            time: elapsed,
            expect: |_| None,
            crlf: false,
        },
    ];
    for style in &styles {
        let mut out = String::new();
        if style.name.contains("byte-order") {
            out.push('\u{feff}');
        }
        for (i, text) in texts.iter().enumerate() {
            let ms = i as u64 * 1250 + 7;
            out.push_str(&(style.line)(i as u64 + 1, &(style.time)(ms), text));
            out.push_str(if style.crlf { "\r\n" } else { "\n" });
        }
        let r = report_bytes("inline.log", out.as_bytes());
        let s = only(&r);
        let got = (
            rows(s),
            candidates(s),
            broken_steps(s),
            lines_in(s.row(2), "inline.log"),
        );
        assert_eq!(
            got,
            reference,
            "{}:\n{out}\n{}",
            style.name,
            r.render_text()
        );
        let events = events_in("inline.log", &out);
        for e in &events {
            let ms = (line_of(e) - 1) * 1250 + 7;
            assert_eq!(e.time_ns, (style.expect)(ms), "{}: {e:?}", style.name);
        }
        let logs: Vec<&str> = events
            .iter()
            .filter_map(|e| match &e.kind {
                EventKind::LogLine { text } => Some(text.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(
            logs,
            ["vblkctl.exe: interrupt test started"],
            "{}: the text, without the columns",
            style.name
        );
    }
}

// ---- INF files, fragments, templates, INFs inside other text --------------------------------

/// A user pastes only the install section and the AddReg it names, no `[Version]`, no
/// `[Strings]` (`%REG_DWORD%` stays a token): the keys are outside the `.HW` section, and with
/// a line granted that is row 13, quoting the pasted keys. This fragment was rejected.
#[test]
fn an_inf_fragment_without_version_gives_row_13() {
    let events = events_of("win-inf-fragment-misplaced.txt");
    assert_eq!(
        structured(&events),
        [(
            2,
            EventKind::InfInterruptPolicy {
                install_section: "vblk_inst.NTamd64".into(),
                msi_supported: false,
                message_number_limit: None,
                misplaced_keys: 2,
            }
        )]
    );
    let quoted: Vec<u64> = events
        .iter()
        .filter(|e| matches!(e.kind, EventKind::LogLine { .. }))
        .map(line_of)
        .collect();
    assert_eq!(quoted, [8, 9]);
    let r = report(&["no-msi-inf.log", "win-inf-fragment-misplaced.txt"]);
    assert_eq!(r.files[1].format, Format::Inf);
    let s = only(&r);
    assert!(rows(s).contains(&13), "{}", r.render_text());
    assert_eq!(
        lines_in(s.row(13), "win-inf-fragment-misplaced.txt"),
        [2],
        "{}",
        r.render_text()
    );
    assert!(!lines_in(s.row(13), "no-msi-inf.log").is_empty());
}

/// Only the `.HW` section and its AddReg pasted: the `.HW` section stands for its install
/// section, and the keys count.
#[test]
fn a_hw_section_pasted_alone_is_read_with_its_keys_counted() {
    assert_eq!(
        structured(&events_of("win-inf-fragment-hw.txt")),
        [(
            1,
            EventKind::InfInterruptPolicy {
                install_section: "vblk_inst.NTamd64".into(),
                msi_supported: true,
                message_number_limit: Some(3),
                misplaced_keys: 0,
            }
        )]
    );
    let r = report(&["no-msi-inf.log", "win-inf-fragment-hw.txt"]);
    let s = only(&r);
    assert!(!rows(s).contains(&13), "{}", r.render_text());
    assert_eq!(s.row(13).verdict, Verdict::Holds);
    // The INF is right and Windows granted a line: row 28, which needs the !pci dump.
    assert!(matches!(s.row(28).verdict, Verdict::CannotTell { .. }));
}

/// An `.inx` template as it sits in a driver's source tree: `NT$ARCH$` decorations,
/// `%VAR%` tokens resolved through `[Strings]`, a service section and an event-log section that
/// also use AddReg. It was read as nothing (no install section found).
#[test]
fn an_inx_template_is_read_like_the_inf_stampinf_makes() {
    let events = events_of("win-vblk.inx");
    assert_eq!(
        structured(&events),
        [(
            33,
            EventKind::InfInterruptPolicy {
                install_section: "vblk_inst".into(),
                msi_supported: true,
                message_number_limit: Some(65),
                misplaced_keys: 0,
            }
        )]
    );
    let r = report(&["no-msi-inf.log", "win-vblk.inx"]);
    assert_eq!(r.files[1].format, Format::Inf);
    let s = only(&r);
    assert_eq!(s.row(13).verdict, Verdict::Holds, "{}", r.render_text());
    assert_eq!(lines_in(s.row(13), "win-vblk.inx"), [33]);
}

/// `head dbgview.log vblk.inf pci.txt` in one file, as a user concatenates them: the INF in
/// the middle is read (row 13, quoting the INF's lines in this file), and the capture before it
/// and the `!pci` after it still count. The whole file was read as one broken INF: nothing.
#[test]
fn an_inf_between_other_files_of_a_concatenation_is_read() {
    let name = "win-concatenated-head.txt";
    let r = report(&[name]);
    let s = only(&r);
    assert_eq!(s.device.as_deref(), Some("00:04.0"));
    assert_eq!(rows(s), [13], "{}", r.render_text());
    assert_eq!(lines_in(s.row(13), name), [31, 3]);
    assert_eq!(lines_in(s.step(4), name)[0], 73, "{}", r.render_text());
    let events = events_of(name);
    let misplaced: Vec<u64> = events
        .iter()
        .filter(|e| matches!(&e.kind, EventKind::LogLine { text } if text.starts_with("HKR")))
        .map(line_of)
        .collect();
    assert_eq!(misplaced, [51, 52]);
    assert!(
        events
            .iter()
            .filter(|e| matches!(e.kind, EventKind::InfInterruptPolicy { .. }))
            .all(|e| e.device.is_none()),
        "an INF names no device"
    );
}

// ---- WinDbg ------------------------------------------------------------------------------------

/// One WinDbg session log: `!pci 100` with the `Device Private:` dwords (no capability list:
/// the MSI-X Message Control word is read from the raw bytes, by walking the list from
/// `CapPtr`), `!devnode` with the raw and the translated lists, and `!idt`. The raw list's
/// descriptors are kept, marked raw; the `!pci` events name the function from the header.
#[test]
fn a_windbg_session_with_pci_devnode_and_idt() {
    let name = "win-windbg-session.txt";
    let events = events_of(name);
    let pci: Vec<(u64, EventKind, Option<&str>)> = events
        .iter()
        .filter(|e| line_of(e) < 50)
        .map(|e| (line_of(e), e.kind.clone(), e.device.as_deref()))
        .collect();
    assert_eq!(
        pci,
        [
            (11, EventKind::PciCommand { value: 0x0507 }, Some("00:04.0")),
            (
                12,
                EventKind::IntxStatus { pending: false },
                Some("00:04.0")
            ),
            (42, msix_enabled_unmasked(5), Some("00:04.0")),
        ]
    );
    let resources: Vec<(u64, EventKind)> = structured(&events)
        .into_iter()
        .filter(|(_, k)| matches!(k, EventKind::ResourceAssigned { .. }))
        .collect();
    assert_eq!(
        resources,
        [
            (72, message(0, 0xffff_fffe, 1, true)),
            (75, message(0, 0xffff_fffd, 1, true)),
            (78, message(0, 0xffff_fffc, 1, true)),
            (91, message(0, 0x81, 0, false)),
            (94, message(0, 0x91, 0, false)),
            (97, message(0, 0xa1, 0, false)),
        ]
    );
    // The ISRs WinDbg lists for the device's vectors stay quotable.
    let idt: Vec<u64> = events
        .iter()
        .filter(|e| matches!(&e.kind, EventKind::LogLine { text } if text.contains("Wdf01000!")))
        .map(line_of)
        .collect();
    assert_eq!(idt, [109, 110, 111]);

    let r = report(&[name]);
    assert_eq!(r.files[0].format, Format::WinDbg);
    let s = only(&r);
    assert_eq!(s.device.as_deref(), Some("00:04.0"));
    // WinDbg shows what Windows assigned; step 2 is the driver's own dump of it, which only a
    // capture of the driver's prints shows.
    assert!(
        matches!(&s.step(2).verdict, Verdict::CannotTell { missing } if missing.contains("INT:")),
        "{:?}",
        s.step(2).verdict
    );
    assert_finding_names(s.step(2), "3 message");
    assert_eq!(s.step(4).verdict, Verdict::Holds, "{}", r.render_text());
    assert_eq!(lines_in(s.step(4), name)[0], 42);
    assert!(rows(s).is_empty(), "{}", r.render_text());
}

/// The raw dword wins over a decoded capability line: whether `!pci` prints `TableSize` as N or
/// as the raw N-1 field is not settled, the Message Control word is.
#[test]
fn the_raw_message_control_word_decides_over_the_decoded_line() {
    let text = "0: kd> !pci 141 0 4 0\n\
        PCI Configuration Space (Segment:0000 Bus:00 Device:04 Function:00)\n\
        Capabilities:\n\
        \x20   98: CapID          11        MSI-X Capability\n\
        \x20   99: NextPtr        00\n\
        \x20   9a: MsgCtrl        TableSize:4 FuncMask:0 MSIXEnable:1\n\
        Device Private:\n\
        \x20   90: 00000000 00000000 80040011 00000001\n";
    let events = events_in("pci.txt", text);
    assert_eq!(structured(&events), [(8, msix_enabled_unmasked(5))]);
    assert_eq!(events[0].device.as_deref(), Some("00:04.0"));
    // Without the raw bytes the decoded line is what there is.
    let decoded: String = text.lines().take(6).map(|l| format!("{l}\n")).collect();
    let events = events_in("pci.txt", &decoded);
    assert_eq!(structured(&events), [(6, msix_enabled_unmasked(4))]);
}

/// `!pci 2 ff`: every function of the bus on one line each. Only the virtio functions are the
/// device's evidence, each under its own address (bus from the `PCI Segment 0 Bus 0` heading);
/// the IDE controller's pending INTx (`Sts[0288]`) is not a virtio device's.
#[test]
fn a_pci_bus_listing_keeps_the_virtio_functions_each_under_its_address() {
    let events = events_of("win-windbg-pci-bus.txt");
    let got: Vec<(u64, EventKind, Option<&str>)> = events
        .iter()
        .map(|e| (line_of(e), e.kind.clone(), e.device.as_deref()))
        .collect();
    assert_eq!(
        got,
        [
            (8, EventKind::PciCommand { value: 0x0107 }, Some("00:03.0")),
            (8, EventKind::IntxStatus { pending: false }, Some("00:03.0")),
            (9, EventKind::PciCommand { value: 0x0507 }, Some("00:04.0")),
            (9, EventKind::IntxStatus { pending: false }, Some("00:04.0")),
        ]
    );
    let r = report(&["win-windbg-pci-bus.txt"]);
    let devices: Vec<Option<&str>> = r.subjects().iter().map(|s| s.device.as_deref()).collect();
    assert_eq!(devices, [Some("00:03.0"), Some("00:04.0")]);
}

/// `!devnode` output pasted without its prompt: the `DevNode` heading still says that
/// `CmResourceList` is the raw list, so its descriptor is not counted twice.
#[test]
fn devnode_output_pasted_without_its_prompt() {
    let text = "DevNode 0xfffffa80024e5d30 for PDO 0xfffffa80024e8060\n\
        \x20 InstancePath is \"PCI\\VEN_1AF4&DEV_1042&SUBSYS_11001AF4&REV_01\\3&13c0b0c5&0&20\"\n\
        \x20 CmResourceList at 0xfffff8a000d7e9b0  Version 1.1  Interface 0x5  Bus #0\n\
        \x20   Entry 0 - Interrupt (0x2) Shared (0x3)\n\
        \x20     Flags (0000) - LEVEL_SENSITIVE\n\
        \x20     Level 0xb, Vector 0xb, Group 0, Affinity 0xffffffff\n\
        \x20 TranslatedResourceList at 0xfffff8a000d80c90  Version 1.1  Interface 0x5  Bus #0\n\
        \x20   Entry 0 - Interrupt (0x2) Shared (0x3)\n\
        \x20     Flags (0000) - LEVEL_SENSITIVE\n\
        \x20     Level 0x8, Vector 0x81, Group 0, Affinity 0xf\n";
    let events = events_in("devnode.txt", text);
    assert_eq!(
        structured(&events),
        [
            (6, line_interrupt(0xb, 0xb, 0xffff_ffff, true)),
            (10, line_interrupt(8, 0x81, 0xf, false)),
        ]
    );
}

// ---- virtio-win's own drivers ------------------------------------------------------------------

/// A checked viostor build on a machine that granted one message: the MSI-X capability it
/// reads (`TableSize` is the raw N-1 field), the per-message `StorPortGetMSIInfo` report, and
/// its decision to put every queue on that one message. It printed none of the checklist's
/// lines, and the capture was rejected.
#[test]
fn viostor_granted_one_message_uses_it_for_every_queue() {
    let name = "win-viostor-one-vector.log";
    let events = events_of(name);
    assert_eq!(
        structured(&events),
        [
            (3, msix_enabled_unmasked(5)),
            (
                7,
                EventKind::InterruptConnected {
                    message_signaled: true,
                    message_number: 0,
                    vector: 0x81,
                    irql: 8,
                    affinity: 0
                }
            ),
            (
                9,
                EventKind::ResourceAssigned {
                    mode: InterruptMode::Message,
                    message_count: 0,
                    level: 8,
                    vector: 0x81,
                    affinity: 0,
                    flags: 3,
                    raw: false
                }
            ),
        ]
    );
    let r = report(&[name]);
    assert_eq!(r.files[0].format, Format::DbgView);
    let s = only(&r);
    for step in 1..=4 {
        assert_eq!(
            s.step(step).verdict,
            Verdict::Holds,
            "step {step}: {}",
            r.render_text()
        );
    }
    assert_finding_names(s.step(2), "1 message");
    assert_eq!(lines_in(s.step(3), name), [7]);
    assert!(rows(s).is_empty(), "{}", r.render_text());
    // The policy lines stay quotable.
    assert!(events.iter().any(
        |e| matches!(&e.kind, EventKind::LogLine { text } if text == "Using one MSI vector for all queues")
    ));
}

/// viostor on a line interrupt (`msix_vectors 0`: `StorPortGetMSIInfo` found no message),
/// logging in clock time: its line ISR reads ISR status, finds nothing and returns FALSE.
#[test]
fn viostor_on_a_line_interrupt_reads_isr_status_and_refuses() {
    let name = "win-viostor-line.log";
    let events = events_of(name);
    let s = structured(&events);
    assert_eq!(
        s[..2],
        [
            (
                3,
                EventKind::MsixCapabilitySeen {
                    enabled: false,
                    function_masked: false,
                    table_size: 5
                }
            ),
            (5, line_interrupt(0, 0, 0, false)),
        ]
    );
    assert_eq!(s.len(), 10);
    for (line, kind) in &s[2..] {
        assert!((9..=16).contains(line));
        assert_eq!(
            *kind,
            EventKind::IsrRan {
                message_id: None,
                claimed: false,
                isr_status: Some(0)
            }
        );
    }
    assert_eq!(
        events[0].time_ns,
        Some(((10 * 3600 + 2 * 60 + 11) * 1000 + 207) * 1_000_000)
    );
    let r = report(&[name]);
    let sub = only(&r);
    // A line on a device with MSI-X: the right mode only if the INF asks for no messages, and
    // the INF is not among the files (viostor's own asks for them: rows 13 or 28).
    assert!(
        matches!(&sub.step(1).verdict, Verdict::CannotTell { missing } if missing.contains("INF")),
        "{:?}",
        sub.step(1).verdict
    );
    assert_finding_names(sub.step(1), "INTx");
    assert_eq!(lines_in(sub.step(1), name), [5]);
    // A line interrupt with MSI-X Enable clear is what the grant says.
    assert_eq!(sub.step(4).verdict, Verdict::Holds, "{}", r.render_text());
}

/// NetKVM's trace as tracefmt decodes it (`[CPU]PID.TID::time [netkvm][function] text`): the
/// message table it was given becomes the grant and the connected messages (each message's
/// vector from its data word).
#[test]
fn netkvm_wpp_trace_gives_the_grant_and_the_connected_messages() {
    let name = "win-netkvm-wpp.txt";
    let events = events_of(name);
    let connected = |n, vector| EventKind::InterruptConnected {
        message_signaled: true,
        message_number: n,
        vector,
        irql: 8,
        affinity: 0,
    };
    let resource = |vector| EventKind::ResourceAssigned {
        mode: InterruptMode::Message,
        message_count: 0,
        level: 8,
        vector,
        affinity: 0,
        flags: 3,
        raw: false,
    };
    assert_eq!(
        structured(&events),
        [
            (8, resource(0x81)),
            (8, connected(0, 0x81)),
            (9, resource(0x82)),
            (9, connected(1, 0x82)),
            (10, resource(0x83)),
            (10, connected(2, 0x83)),
            (
                11,
                EventKind::QueueVectorWritten {
                    written: 1,
                    read_back: 0xFFFF
                }
            ),
        ]
    );
    assert_eq!(
        events[0].time_ns,
        Some(((22 * 3600 + 35 * 60 + 47) * 1000 + 512) * 1_000_000)
    );
    let r = report(&[name]);
    assert_eq!(r.files[0].format, Format::DbgView);
    let s = only(&r);
    assert_eq!(s.step(2).verdict, Verdict::Holds);
    assert_finding_names(s.step(2), "3 message");
    assert_eq!(s.step(3).verdict, Verdict::Holds);
    assert_eq!(lines_in(s.step(3), name), [8, 9, 10]);
}

/// NetKVM's `read/write mismatch, 65535 vs 1` is a vector the device refused (written 1, read
/// back 0xFFFF), printed by the path's `SetupMessageIndex` without naming the queue: a
/// `QueueVectorWritten`, and step 6 is broken on it.
#[test]
fn netkvm_read_write_mismatch_breaks_step_6() {
    let r = report(&["win-netkvm-wpp.txt"]);
    let s = only(&r);
    assert!(s.step(6).verdict.is_broken(), "{}", r.render_text());
    assert_eq!(lines_in(s.step(6), "win-netkvm-wpp.txt"), [11]);
    // The driver did program a vector: not the "programmed nothing" of row 24.
    assert_eq!(s.step(5).verdict, Verdict::Holds, "{}", r.render_text());
    assert!(!s.row(24).verdict.is_broken(), "{}", r.render_text());
}

/// A viostor whose message ISR refuses a message it got (` MessageID = 3`: beyond its queues),
/// then starts again (a reboot) and reports its messages anew: two starts, each judged alone.
#[test]
fn a_viostor_restart_after_isr_activity_is_a_new_start() {
    let report_line = |id: u32, vector: u32| {
        format!(
            " MessageId = {id:x}\n MessageData = {:x}\n InterruptVector = {vector:x}\n \
             InterruptLevel = {:x}\n InterruptMode = Latched\n MessageAddress = fee0100c\n\n",
            0x4000 + vector,
            vector >> 4
        )
    };
    let mut text = String::new();
    for (id, v) in [(0, 0x81), (1, 0x91), (2, 0xa1)] {
        text.push_str(&report_line(id, v));
    }
    text.push_str(" Queues 2 msix_vectors 3\n Using a unique MSI vector per queue\n");
    text.push_str(" MessageID = 3\n MessageID = 3\n");
    text.push_str(" ---> MessageID = 1 isr = 1\n");
    text.push_str(&report_line(0, 0x81));
    text.push_str(" Queues 2 msix_vectors 1\n Using one MSI vector for all queues\n");
    let r = report_of(&text);
    assert_eq!(r.subjects().len(), 2, "{}", r.render_text());
    let first = &r.subjects()[0];
    let second = &r.subjects()[1];
    assert_finding_names(first.step(2), "3 message");
    assert_finding_names(second.step(2), "1 message");
    let refused: Vec<u64> = events_in("t", &text)
        .iter()
        .filter(|e| {
            matches!(
                e.kind,
                EventKind::IsrRan {
                    message_id: Some(3),
                    claimed: false,
                    isr_status: None
                }
            )
        })
        .map(line_of)
        .collect();
    assert_eq!(refused, [24, 25], "the lock tracing line is not the ISR");
}

/// vioscsi's release builds log through WPP with their own prefix (`####\t\t[function] DEBUG:`)
/// after tracefmt's: the same words, read the same way.
#[test]
fn vioscsi_wpp_lines_are_read_like_its_dbgprint_lines() {
    let text = "[0]0004.0038::12/01/2026-09:14:02.118 [vioscsi]####\t\t[VioScsiHwInitialize] DEBUG: Queues 2 msix_vectors 0\n\
        [0]0004.0038::12/01/2026-09:14:02.119 [vioscsi]####\t\t[VioScsiHwInitialize] DEBUG: Using one MSI vector for all queues\n";
    let events = events_in("vioscsi.txt", text);
    assert_eq!(structured(&events), [(1, line_interrupt(0, 0, 0, false))]);
    assert_eq!(
        events[0].time_ns,
        Some(((9 * 3600 + 14 * 60 + 2) * 1000 + 118) * 1_000_000)
    );
}

/// An INF section pasted straight after DbgView lines, with no separator, and DbgView lines
/// after it: all three parts are read.
#[test]
fn an_inf_section_pasted_between_dbgview_lines() {
    let text = "1\t0.000\tINT: INTx Level=8 Vector=129 Affinity=0xf Flags=0x0\n\
        2\t0.001\tWDFINT: MessageSignaled=0 MessageNumber=0 Vector=129 Irql=8 Affinity=0xf\n\
        [vblk_inst.NTamd64]\n\
        CopyFiles = vblk_files\n\
        AddReg = vblk_msi\n\
        \n\
        [vblk_msi]\n\
        HKR, \"Interrupt Management\\MessageSignaledInterruptProperties\", MSISupported, 0x00010001, 1\n\
        3\t0.002\tVIRTIO: device_status write=0x0f\n";
    let events = events_in("paste.txt", text);
    let kinds: Vec<(u64, &str)> = events
        .iter()
        .map(|e| {
            let name = match &e.kind {
                EventKind::ResourceAssigned { .. } => "resource",
                EventKind::InterruptConnected { .. } => "connected",
                EventKind::InfInterruptPolicy {
                    msi_supported: false,
                    misplaced_keys: 1,
                    ..
                } => "inf, 1 key misplaced",
                EventKind::LogLine { .. } => "quoted key",
                EventKind::DeviceStatus { .. } => "status",
                k => panic!("{k:?}"),
            };
            (line_of(e), name)
        })
        .collect();
    assert_eq!(
        kinds,
        [
            (1, "resource"),
            (2, "connected"),
            (3, "inf, 1 key misplaced"),
            (8, "quoted key"),
            (9, "status"),
        ]
    );
    let r = report_of(text);
    assert!(rows(only(&r)).contains(&13), "{}", r.render_text());
}
