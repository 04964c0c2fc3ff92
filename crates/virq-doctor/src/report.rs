//! The doctor's report: per device and per start, the checklist's seven steps with ticks and
//! crosses and quoted proof lines, then the catalogue rows that are broken (or candidates),
//! and the same as JSON. Plus the exit-code mapping.

use crate::error::LoadError;
use crate::parse::FileSummary;
use serde::{Deserialize, Serialize};
use std::fmt::Write as _;
use virq_judge::describe::{location, quote};
use virq_judge::{Answer, Judgement, Overall, Subject, Verdict};

/// Exit code: every link holds.
pub const EXIT_OK: i32 = 0;
/// Exit code: at least one link is broken.
pub const EXIT_BROKEN: i32 = 1;
/// Exit code: an input could not be read.
pub const EXIT_UNREADABLE: i32 = 2;
/// Exit code: nothing is shown broken, but not every link could be judged (or nothing in the
/// input could be judged at all).
pub const EXIT_INCOMPLETE: i32 = 3;

/// The doctor's answer for a set of files.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// What each file contributed.
    pub files: Vec<FileSummary>,
    /// The judge's answers for every device and start the files showed.
    pub judgement: Judgement,
}

impl Report {
    /// A report of `files` and what the judge made of them.
    pub fn new(files: Vec<FileSummary>, judgement: Judgement) -> Self {
        Report { files, judgement }
    }

    /// Every device and start judged.
    pub fn subjects(&self) -> &[Subject] {
        &self.judgement.subjects
    }

    /// Whether anything at all was read that a rule could use.
    pub fn read_anything(&self) -> bool {
        self.files.iter().any(|f| f.event_count() > 0)
    }

    /// The process exit code: [`EXIT_BROKEN`], [`EXIT_OK`] or [`EXIT_INCOMPLETE`].
    pub fn exit_code(&self) -> i32 {
        match self.judgement.overall() {
            Some(Overall::Broken) => EXIT_BROKEN,
            Some(Overall::Holds) if self.read_anything() => EXIT_OK,
            _ => EXIT_INCOMPLETE,
        }
    }

    /// The report as pretty-printed JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("report serialises")
    }

    /// The plain-text report.
    pub fn render_text(&self) -> String {
        let mut out = String::new();
        let events: u64 = self.files.iter().map(|f| f.event_count()).sum();
        let _ = writeln!(
            out,
            "virq doctor: {} file(s), {events} event(s)",
            self.files.len()
        );
        for f in &self.files {
            let kinds: Vec<String> = f.kinds.iter().map(|(k, n)| format!("{k} {n}")).collect();
            let _ = writeln!(
                out,
                "  {} ({}): {}",
                f.path,
                f.format.label(),
                match (kinds.is_empty(), f.context_lines) {
                    (true, 0) => "nothing the doctor can use".to_string(),
                    (true, n) => format!(
                        "{n} line(s) read for context (a start IRP's resource lists, !pcitree), no evidence of their own"
                    ),
                    (false, _) => kinds.join(", "),
                }
            );
            if f.truncated_lines > 0 || f.dropped_events > 0 {
                let _ = writeln!(
                    out,
                    "    note: {} line(s) cut at the length limit, {} event(s) not kept",
                    f.truncated_lines, f.dropped_events
                );
            }
            if f.unquoted_log_lines > 0 {
                let _ = writeln!(
                    out,
                    "    note: {} ordinary line(s) past the quoting limit not quoted (no rule reads them)",
                    f.unquoted_log_lines
                );
            }
        }
        if !self.read_anything() {
            let _ = writeln!(
                out,
                "\nNothing in these files is evidence the doctor can judge: no interrupt resources, \
                 interrupt objects, vector writes, counters, ISR samples, /proc/interrupts rows, \
                 lspci capabilities, kernel interrupt messages or INF keys were found."
            );
            let _ = writeln!(out, "\nResult: nothing to judge");
            return out;
        }
        for s in self.subjects() {
            render_subject(&mut out, s, self.subjects().len() > 1);
        }
        let broken: Vec<String> = self
            .subjects()
            .iter()
            .filter(|s| s.overall() == Overall::Broken)
            .map(Subject::heading)
            .collect();
        let _ = writeln!(
            out,
            "\nResult: {}",
            match self.exit_code() {
                EXIT_BROKEN => format!("broken link(s) found ({})", broken.join("; ")),
                EXIT_OK => "every link holds".to_string(),
                _ =>
                    "no broken link shown, but not every link could be judged (see \"cannot tell\")"
                        .to_string(),
            }
        );
        out
    }
}

pub(crate) fn mark(v: &Verdict) -> &'static str {
    match v {
        Verdict::Holds => "\u{2713}",
        Verdict::Broken | Verdict::OneOf { .. } => "\u{2717}",
        Verdict::CannotTell { .. } => "?",
    }
}

fn render_subject(out: &mut String, s: &Subject, headed: bool) {
    let _ = writeln!(out);
    if headed || s.starts > 1 || s.device.is_some() {
        let label = s
            .label
            .as_ref()
            .map(|l| format!(" ({l})"))
            .unwrap_or_default();
        let _ = writeln!(out, "== {}{label} ==", s.heading());
    }
    for lost in &s.lost {
        let _ = writeln!(out, "  evidence not kept: {lost}");
    }
    let _ = writeln!(out, "Checklist (section 6)");
    for (i, a) in s.steps.iter().enumerate() {
        write_answer(out, &format!("{}.", i + 1), a);
    }
    let _ = writeln!(out, "Known failures (failure catalogue)");
    let named: Vec<&Answer> = s.rows.iter().filter(|a| a.verdict.is_broken()).collect();
    if named.is_empty() {
        let _ = writeln!(out, "  none of the rows is shown broken");
    }
    // Candidate rows share one answer: say it once for the group.
    let mut said: Vec<Vec<u8>> = Vec::new();
    for a in &named {
        let n = match a.check {
            virq_judge::Check::Row(n) => n,
            virq_judge::Check::Step(n) => n,
        };
        match &a.verdict {
            Verdict::OneOf { rows, .. } => {
                if said.contains(rows) {
                    continue;
                }
                said.push(rows.clone());
                write_candidates(out, rows, a);
            }
            _ => write_answer(out, &format!("row {n}:"), a),
        }
    }
    let ruled: Vec<String> = s
        .rows
        .iter()
        .filter(|a| a.verdict.is_holds())
        .filter_map(|a| match a.check {
            virq_judge::Check::Row(n) => Some(n.to_string()),
            _ => None,
        })
        .collect();
    let unknown: Vec<String> = s
        .rows
        .iter()
        .filter(|a| matches!(a.verdict, Verdict::CannotTell { .. }))
        .filter_map(|a| match a.check {
            virq_judge::Check::Row(n) => Some(n.to_string()),
            _ => None,
        })
        .collect();
    if !ruled.is_empty() {
        let _ = writeln!(out, "  ruled out: rows {}", ruled.join(", "));
    }
    if !unknown.is_empty() {
        let _ = writeln!(out, "  cannot tell: rows {}", unknown.join(", "));
    }
}

fn write_answer(out: &mut String, label: &str, a: &Answer) {
    let _ = writeln!(out, "  [{}] {label} {}", mark(&a.verdict), a.title);
    match &a.verdict {
        Verdict::CannotTell { missing } => {
            let _ = writeln!(out, "        cannot tell: needs {missing}");
        }
        Verdict::OneOf { rows, tell_apart } => {
            let list: Vec<String> = rows.iter().map(u8::to_string).collect();
            let _ = writeln!(out, "        {}", a.finding);
            let _ = writeln!(
                out,
                "        one of rows {}; to tell them apart: {tell_apart}",
                list.join(", ")
            );
        }
        _ => {
            if !a.finding.is_empty() {
                let _ = writeln!(out, "        {}", a.finding);
            }
        }
    }
    for e in &a.proof {
        let _ = writeln!(out, "          {}  {}", location(e), quote(e));
    }
    if a.verdict.is_broken()
        && let Some(fix) = &a.fix
    {
        let _ = writeln!(out, "        fix: {fix}");
    }
}

/// Rows named as candidates for one symptom: the symptom once, then each row with its fix.
fn write_candidates(out: &mut String, rows: &[u8], a: &Answer) {
    let list: Vec<String> = rows.iter().map(u8::to_string).collect();
    let _ = writeln!(
        out,
        "  [{}] one of rows {}:",
        mark(&a.verdict),
        list.join(", ")
    );
    let _ = writeln!(out, "        {}", a.finding);
    for e in &a.proof {
        let _ = writeln!(out, "          {}  {}", location(e), quote(e));
    }
    for n in rows {
        let row = virq_judge::row(*n);
        let _ = writeln!(out, "        row {n}: {} (fix: {})", row.title, row.fix);
    }
    if let Verdict::OneOf { tell_apart, .. } = &a.verdict {
        let _ = writeln!(out, "        to tell them apart: {tell_apart}");
    }
}

/// Exit code for a whole doctor run: 2 when inputs were unreadable, else the report's.
pub fn exit_code(result: &Result<Report, LoadError>) -> i32 {
    match result {
        Ok(r) => r.exit_code(),
        Err(_) => EXIT_UNREADABLE,
    }
}
