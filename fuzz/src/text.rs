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
