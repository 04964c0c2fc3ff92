//! Targets `serve_request` and `doctor_parse`: text that a client or a user hands virq.

use virq_doctor::{Doctor, ParseLimits};
use virq_serve::{DeviceKind, ServeOptions, Session, parse_request};

/// Most request lines one input may send.
const MAX_LINES: usize = 64;

/// Guest RAM of a `serve_request` session: small, so that comparing it around each request
/// stays cheap.
const SERVE_RAM: usize = 64 * 1024;

/// `virq serve`: the request parser on the whole input as one line, then a session (64 KiB of
/// RAM, a small disk) answering each line. Every line of the answer must be one of the
/// protocol's (`OK`, `FAIL`, `IRQ`, `DMA`, a JSON event), every request gets exactly one `OK`
/// or `FAIL`, and with `virq_dma_lines on` every byte of guest RAM the device changed while
/// serving a request lies in a `DMA` range of that request's answer, each range inside RAM
/// (docs/serve-protocol.md, "DMA lines"). Requests that write RAM themselves (`write`,
/// `memset`, sized writes to RAM, `virq_reset`) are left out of that comparison.
pub fn run_serve(data: &[u8]) {
    use virq_serve::Request;
    let _ = parse_request(data);
    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    let device = match first % 3 {
        0 => DeviceKind::Blk,
        1 => DeviceKind::Rng,
        _ => DeviceKind::Console,
    };
    let options = ServeOptions {
        device,
        ram_bytes: SERVE_RAM as u64,
        disk_bytes: 64 * 512,
        ..ServeOptions::default()
    };
    let mut session = Session::new(&options).expect("valid options");
    let mut out = Vec::new();
    let (mut before, mut after) = (vec![0u8; SERVE_RAM], vec![0u8; SERVE_RAM]);
    let mut dma_lines = false;
    for line in rest.split(|&b| b == b'\n').take(MAX_LINES) {
        out.clear();
        let blank = virq_serve::parse::is_blank(line);
        if line.len() > virq_serve::MAX_LINE_LEN {
            continue;
        }
        let request = parse_request(line);
        let client_writes = match &request {
            Ok(Request::BulkWrite { .. } | Request::Memset { .. } | Request::Reset) => true,
            Ok(Request::MemWrite { addr, .. }) => *addr < SERVE_RAM as u64,
            _ => false,
        };
        let compare = dma_lines && !client_writes;
        if compare {
            session.ram().read(0, &mut before).expect("RAM reads");
        }
        session
            .handle_line(line, &mut out)
            .expect("a Vec never fails");
        let text = String::from_utf8(out.clone()).expect("replies are UTF-8");
        let mut replies = 0;
        let mut ranges = Vec::new();
        for l in text.lines() {
            // IRQ and DMA lines come before the reply; `virq_events` prints one JSON event a line.
            if l.starts_with("IRQ ") || l.starts_with('{') {
                continue;
            }
            if let Some(dma) = l.strip_prefix("DMA ") {
                assert!(dma_lines, "a DMA line while they are off: {l:?}");
                let hex = |s: Option<&str>| {
                    u64::from_str_radix(s.and_then(|s| s.strip_prefix("0x")).expect("hex"), 16)
                        .expect("hex")
                };
                let mut f = dma.split(' ');
                let (addr, len) = (hex(f.next()), hex(f.next()));
                assert!(
                    len > 0 && addr.checked_add(len).is_some_and(|e| e <= SERVE_RAM as u64),
                    "DMA range outside RAM: {l:?}"
                );
                ranges.push((addr, len));
                continue;
            }
            assert!(
                l == "OK" || l.starts_with("OK ") || l.starts_with("FAIL "),
                "not a protocol line: {l:?}"
            );
            replies += 1;
        }
        assert_eq!(
            replies,
            usize::from(!blank),
            "replies to {line:?}: {text:?}"
        );
        if compare {
            session.ram().read(0, &mut after).expect("RAM reads");
            for (i, (b, a)) in before.iter().zip(&after).enumerate() {
                let i = i as u64;
                assert!(
                    b == a
                        || ranges
                            .iter()
                            .any(|&(addr, len)| (addr..addr + len).contains(&i)),
                    "the device changed RAM at {i:#x} without a DMA line ({line:?}: {text:?})"
                );
            }
        }
        if let (Ok(Request::DmaLines(on)), true) = (&request, text.ends_with("OK\n")) {
            dma_lines = *on;
        }
    }
}

/// `virq doctor`: the streaming parser (every format, detection included) on arbitrary bytes,
/// then every rule and both renderings of the report.
pub fn run_doctor(data: &[u8]) {
    let limits = ParseLimits {
        max_line_bytes: 4096,
        max_log_lines: 1000,
    };
    let mut doctor = Doctor::with_limits(limits);
    if doctor.read("fuzz.log", data).is_err() {
        return;
    }
    let report = doctor.finish();
    for s in report.subjects() {
        assert_eq!((s.steps.len(), s.rows.len()), (7, 30));
    }
    let _ = report.render_text();
    let _ = report.render_html();
    let _ = report.to_json();
    check_gate(&String::from_utf8_lossy(data));
}

/// Most lines of one input the gate checks look at (each line costs 58 substring searches).
const GATE_LINES: usize = 256;

/// The keyword gate (`virq_doctor::gate`) lets the parser skip matchers, so it must be exact:
/// on every line, bit `i` of `hits` is set exactly when `PATTERNS[i]` occurs (ASCII case
/// ignored), and format detection gated by it classifies every line, and so the whole text,
/// as the ungated detection does.
fn check_gate(text: &str) {
    use virq_doctor::detect::{Votes, classify_gated, classify_line};
    use virq_doctor::gate::{self, PATTERNS};
    use virq_doctor::text::{contains_ci, strip_prefixes};
    let (mut gated, mut stripped) = (Votes::default(), Votes::default());
    for raw in text.lines().take(GATE_LINES) {
        let (body, prefix) = strip_prefixes(raw);
        let hits = gate::hits(body);
        for (i, p) in PATTERNS.iter().enumerate() {
            assert_eq!(
                hits & 1 << i != 0,
                contains_ci(body, p),
                "gate bit {i} ({p:?}) on {body:?}"
            );
        }
        let keywords = hits & gate::CLASSIFY != 0;
        assert_eq!(
            classify_gated(raw, body, &prefix, keywords),
            classify_line(raw),
            "gated detection of {raw:?}"
        );
        gated.add_gated(raw, body, &prefix, keywords);
        stripped.add_stripped(raw, body, &prefix);
    }
    let head: String = text
        .lines()
        .take(GATE_LINES)
        .flat_map(|l| [l, "\n"])
        .collect();
    let whole = virq_doctor::Format::detect(&head);
    assert_eq!(gated.winner(), whole, "gated votes");
    assert_eq!(stripped.winner(), whole, "votes on stripped lines");
}

/// Most events one `judge` input may hand the judge.
const MAX_EVENTS: usize = 512;

/// The judge (`virq_judge`) over events: the input is JSON lines of [`virq_events::Event`]s
/// (what `virq check --events` and the doctor's `--events` print; lines that are not an event
/// are skipped). Every subject answers all seven steps and thirty rows; and since order is
/// compared only inside one source, handing the same events over source by source (each
/// source's events in their order) gives the same judgement.
pub fn run_judge(data: &[u8]) {
    let events: Vec<virq_events::Event> = data
        .split(|&b| b == b'\n')
        .filter_map(|l| serde_json::from_slice(l).ok())
        .take(MAX_EVENTS)
        .collect();
    let judgement = virq_judge::judge(&events);
    for s in &judgement.subjects {
        assert_eq!((s.steps.len(), s.rows.len()), (7, 30));
        let _ = s.heading();
        let _ = s.overall();
    }
    let _ = judgement.broken_rows();
    // Every event reads as one line in a report: a file line quoted, a run's event in words.
    for e in &events {
        let quoted = virq_judge::describe::quote(e);
        assert!(!quoted.contains('\n'), "a quote of two lines: {quoted:?}");
        if matches!(e.origin, virq_events::Origin::Run) {
            assert!(!quoted.is_empty(), "no words for {:?}", e.kind);
        }
        let _ = virq_judge::describe::location(e);
    }
    // Evidence lost at a source is reported by that source's subjects, and changes nothing
    // else of the judgement.
    let mut lossy = virq_judge::Judge::new();
    lossy.note_lost("fuzz", "lines cut", 1);
    for e in &events {
        lossy.observe(e);
    }
    let lossy = lossy.finish();
    assert_eq!(lossy.subjects.len(), judgement.subjects.len());
    // The same events grouped by source, each source in first-seen order.
    let key = |e: &virq_events::Event| match &e.origin {
        virq_events::Origin::File { path, .. } => Some(path.clone()),
        virq_events::Origin::Run => None,
    };
    let mut sources: Vec<Option<String>> = Vec::new();
    for e in &events {
        let k = key(e);
        if !sources.contains(&k) {
            sources.push(k);
        }
    }
    let grouped: Vec<virq_events::Event> = sources
        .iter()
        .flat_map(|s| events.iter().filter(move |e| key(e) == *s).cloned())
        .collect();
    assert_eq!(
        virq_judge::judge(&grouped),
        judgement,
        "the judgement depends on how sources interleave"
    );
}

/// The Windows readers the doctor builds on (`virq-win7`): the INF parser and what is read
/// from it (install sections, the interrupt-management policy, misplaced keys), the WinDbg
/// `!pci` dump and `!devnode` state readers, and the driver-print reader of log format line
/// 12, all on arbitrary text.
pub fn run_win_text(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    if let Ok(inf) = virq_win7::Inf::parse(&text) {
        for arch in [virq_win7::InfArch::Amd64, virq_win7::InfArch::X86] {
            for install in inf.install_sections(arch).iter().take(8) {
                let settings = inf.interrupt_settings(install, arch);
                if settings.is_ok() {
                    assert!(
                        inf.pick_install_section(install, arch).is_some(),
                        "settings for {install:?} without its section"
                    );
                }
            }
            for id in ["PCI\\VEN_1AF4&DEV_1042", "PCI\\VEN_1AF4&DEV_1001"] {
                if let Ok(install) = inf.install_section_for_hardware_id(id, arch) {
                    let _ = inf.interrupt_settings(&install, arch);
                }
            }
        }
        for s in inf.sections().iter().take(64) {
            assert!(inf.section(&s.name).is_some(), "section {:?}", s.name);
        }
    }
    let _ = virq_win7::InfPolicy::from_inf(&text, "Install", virq_win7::InfArch::Amd64);
    check_pci_dump(data, &text);
    for line in text.lines().take(4096) {
        let _ = virq_win7::windbg::parse_devnode_state(line);
        let _ = virq_win7::dbgprint::parse_line(line);
        // A table line of virq's earlier `!pci` layout reads back from its canonical form.
        if let Some((entry, address, data, masked, pending)) =
            virq_win7::windbg::pci::msix_entry_line(line)
        {
            let canonical = format!(
                "Entry[{entry}] Address:{address:016x} Data:{data:08x} Masked:{} Pending:{}",
                u8::from(masked),
                u8::from(pending)
            );
            assert_eq!(
                virq_win7::windbg::pci::msix_entry_line(&canonical),
                Some((entry, address, data, masked, pending)),
                "{line:?}"
            );
        }
        if let Some(cmd) = virq_win7::windbg::prompt_command(line) {
            let _ = virq_win7::windbg::Command::parse(cmd);
        }
    }
    windbg_round_trips(&text);
}

/// An `!pci` dump read whole: the MSI-X capability's decoded bits are its Message Control's,
/// and the table and PBA it places sit at their BAR plus offset; the raw configuration bytes
/// (the input's first 256 bytes) give a location only with a table of 1 to 2048 entries.
fn check_pci_dump(data: &[u8], text: &str) {
    use virq_win7::windbg::pci;
    let s = virq_win7::parse_pci_dump(text);
    if let Some(m) = s.msix {
        assert_eq!(m.enabled(), m.control & 0x8000 != 0);
        assert_eq!(m.function_masked(), m.control & 0x4000 != 0);
        assert_eq!(m.table_size(), (m.control & 0x7FF) + 1);
        if let Some(loc) = s.msix_location() {
            assert_eq!(loc.entries, m.table_size());
            let at = |bir, off: u32| s.bar_address(bir)?.checked_add(u64::from(off));
            assert_eq!(Some(loc.table), at(m.table_bir, m.table_offset));
            assert_eq!(Some(loc.pba), at(m.pba_bir, m.pba_offset));
        }
    }
    if let Some(config) = data.first_chunk::<256>()
        && let Some(loc) = pci::msix_location(config)
    {
        assert!((1..=2048).contains(&loc.entries), "{} entries", loc.entries);
    }
}

/// The WinDbg readers' whole-text forms (`virq_win7::windbg::*::parse_*`) on arbitrary text,
/// and what they read handed to the writer beside each reader and read again: whatever a
/// reader accepts, its writer prints in a form the reader reads back unchanged (`!pcitree`
/// functions, `!dd`/`!dq` lines, `dt` resource descriptors), the MSI-X memory reader places
/// every entry it completes inside the table it was given, and `!irp` locations name their
/// lists only for a start IRP.
fn windbg_round_trips(text: &str) {
    use virq_win7::windbg::{dd, devnode, dt, irp, pcitree};
    for (bus, f) in pcitree::parse_pcitree(text).into_iter().take(16) {
        let again =
            pcitree::parse_pcitree(&pcitree::render_pcitree(bus, 0, std::slice::from_ref(&f)));
        assert_eq!(again, [(bus, f)], "!pcitree round trip");
    }

    // `!dd`/`!dq` lines: the writer's rows read back as the same values; the first line's
    // address is taken as an MSI-X table of up to 16 entries (PBA right after it).
    let mut memory: Option<dd::MsixMemoryReader> = None;
    for line in text.lines().take(4096) {
        let Some((address, values, unit)) = dd::parse_line(line) else {
            continue;
        };
        assert!(matches!(unit, 4 | 8) && !values.is_empty() && values.len() <= 16);
        if address < 1 << 62 {
            let printed = if unit == 4 {
                let dwords: Vec<u32> = values.iter().map(|&v| v as u32).collect();
                assert!(values.iter().all(|&v| v <= u64::from(u32::MAX)));
                dd::render_dd(address, &dwords)
            } else {
                dd::render_dq(address, &values)
            };
            let mut back = Vec::new();
            for (i, l) in printed.lines().skip(1).enumerate() {
                let (a, v, u) = dd::parse_line(l).expect("a printed row reads");
                assert_eq!((a, u), (address + 16 * i as u64, unit), "{l:?}");
                back.extend(v);
            }
            assert_eq!(
                back,
                values,
                "!d{} round trip",
                if unit == 4 { 'd' } else { 'q' }
            );
        }
        let loc = memory
            .get_or_insert_with(|| {
                let entries = (address as u16 & 0xF) + 1;
                dd::MsixMemoryReader::new(dd::MsixLocation {
                    table: address & !0xF,
                    entries,
                    pba: (address & !0xF).wrapping_add(u64::from(entries) * 16),
                })
            })
            .location();
        let reader = memory.as_mut().expect("set above");
        for e in reader.feed(address, &values, unit) {
            match e {
                virq_events::EventKind::MsixEntry { entry, .. }
                | virq_events::EventKind::PendingSet { entry } => {
                    assert!(entry < loc.entries, "entry {entry} of {}", loc.entries)
                }
                other => panic!("the MSI-X memory reader made {other:?}"),
            }
        }
    }

    for c in irp::parse_irps(text).into_iter().take(16) {
        if let Some((raw, translated)) = c.start_device_lists() {
            assert_eq!((raw, translated), (c.args[0], c.args[1]));
            assert_eq!(
                (c.location.major, c.location.minor),
                (irp::IRP_MJ_PNP, irp::IRP_MN_START_DEVICE)
            );
        }
    }

    // `dt` descriptors: one the reader makes a descriptor of, printed as a one-descriptor list
    // and read again, is the same descriptor.
    for item in dt::parse_dt(text).into_iter().take(64) {
        let dt::DtItem::Descriptor(d) = item else {
            continue;
        };
        for raw in [true, false] {
            let _ = d.to_event(raw);
            let _ = d.quote_tag(raw);
            let Some(desc) = d.to_descriptor(raw) else {
                continue;
            };
            let printed = dt::render_resource_list(0xFFFF_F8A0_0189_C4B0, &[desc]);
            let back: Vec<_> = dt::parse_dt(&printed)
                .into_iter()
                .filter_map(|i| match i {
                    dt::DtItem::Descriptor(d) => d.to_descriptor(raw),
                    _ => None,
                })
                .collect();
            assert_eq!(back, [desc], "dt round trip of {d:?}");
        }
    }

    for (_, _, events) in devnode::parse_resource_lists(text).into_iter().take(16) {
        for e in events {
            assert!(
                matches!(e, virq_events::EventKind::ResourceAssigned { .. }),
                "a resource list made {e:?}"
            );
        }
    }
}
