//! Targets `serve_request` and `doctor_parse`: text that a client or a user hands virq.

use virq_doctor::{Doctor, ParseLimits};
use virq_serve::{DeviceKind, ServeOptions, Session, parse_request};

/// Most request lines one input may send.
const MAX_LINES: usize = 64;

/// `virq serve`: the request parser on the whole input as one line, then a session (1 MiB of
/// RAM, a small disk) answering each line. Every line of the answer must be one of the
/// protocol's (`OK`, `FAIL`, `IRQ`, a JSON event), every request gets exactly one `OK` or `FAIL`, and
/// nothing panics.
pub fn run_serve(data: &[u8]) {
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
        ram_bytes: 1 << 20,
        disk_bytes: 64 * 512,
        ..ServeOptions::default()
    };
    let mut session = Session::new(&options).expect("valid options");
    let mut out = Vec::new();
    for line in rest.split(|&b| b == b'\n').take(MAX_LINES) {
        out.clear();
        let blank = virq_serve::parse::is_blank(line);
        if line.len() > virq_serve::MAX_LINE_LEN {
            continue;
        }
        session
            .handle_line(line, &mut out)
            .expect("a Vec never fails");
        let text = String::from_utf8(out.clone()).expect("replies are UTF-8");
        let mut replies = 0;
        for l in text.lines() {
            // IRQ lines come before the reply; `virq_events` prints one JSON event a line.
            if l.starts_with("IRQ ") || l.starts_with('{') {
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
    for e in &events {
        let _ = virq_judge::describe::quote(e);
    }
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
    let _ = virq_win7::parse_pci_dump(&text);
    for line in text.lines().take(4096) {
        let _ = virq_win7::windbg::parse_devnode_state(line);
        let _ = virq_win7::dbgprint::parse_line(line);
    }
}
