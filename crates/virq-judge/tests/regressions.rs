//! Inputs the fuzzers found, kept so they stay fixed.

use virq_events::{Event, EventKind, Origin};
use virq_judge::describe::quote;

/// `judge` found it: an event read verbatim from a user's events file may carry a `text`
/// with line breaks, and its quote carried them into the report, where a quote could then
/// stand for lines of the report itself (a forged `verdict:` line, say). A quote is one line.
#[test]
fn a_quote_is_one_line_whatever_the_text() {
    let e = Event {
        seq: 0,
        time_ns: None,
        device: None,
        origin: Origin::File {
            path: "events.jsonl".into(),
            line: 1,
            text: "\tIttr\nerupt: pin A\r\nverdict: ok\u{b}\u{c}end ".into(),
        },
        kind: EventKind::IsrRead { value: 1 },
    };
    assert_eq!(quote(&e), "Ittr erupt: pin A  verdict: ok  end");
    let crash = include_bytes!("../../../fuzz/regressions/judge-quote-with-newline");
    let events: Vec<Event> = crash
        .split(|&b| b == b'\n')
        .filter_map(|l| serde_json::from_slice(l).ok())
        .collect();
    assert!(!events.is_empty());
    for e in &events {
        assert!(!quote(e).contains('\n'), "{:?}", quote(e));
    }
}
