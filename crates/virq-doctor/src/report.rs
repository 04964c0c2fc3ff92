//! Reports: the checklist's seven steps with ticks and crosses and quoted proof lines, the
//! catalogue rows that matched, and the same as JSON. Plus the exit-code mapping.

use crate::error::LoadError;
use crate::evidence::Evidence;
use crate::parse::FileSummary;
use crate::rules::{Finding, Verdict, run_all};
use serde::{Deserialize, Serialize};
use std::fmt::Write as _;
use virq_events::{Event, Origin};

/// Exit code: every check holds (or cannot be told).
pub const EXIT_OK: i32 = 0;
/// Exit code: at least one link is broken.
pub const EXIT_BROKEN: i32 = 1;
/// Exit code: an input could not be read.
pub const EXIT_UNREADABLE: i32 = 2;

/// The doctor's answer for one set of evidence.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub files: Vec<FileSummary>,
    /// Checklist steps 1-7 first (in order), then catalogue rows.
    pub findings: Vec<Finding>,
}

impl Report {
    /// Runs every rule over the evidence.
    pub fn new(evidence: &Evidence) -> Self {
        Self {
            files: evidence.files.clone(),
            findings: run_all(&evidence.events),
        }
    }

    /// The finding for a checklist step (not a catalogue row).
    pub fn step(&self, step: u8) -> Option<&Finding> {
        self.findings
            .iter()
            .find(|f| f.catalogue_row.is_none() && f.step == step)
            .or_else(|| self.findings.iter().take(7).find(|f| f.step == step))
    }

    /// The finding for a catalogue row (from the row rules, not the step that also names it).
    pub fn row(&self, row: u8) -> Option<&Finding> {
        self.findings
            .iter()
            .skip(7)
            .find(|f| f.catalogue_row == Some(row))
    }

    /// Every finding whose verdict is `Broken`.
    pub fn broken(&self) -> impl Iterator<Item = &Finding> {
        self.findings.iter().filter(|f| f.verdict.is_broken())
    }

    pub fn exit_code(&self) -> i32 {
        if self.broken().next().is_some() {
            EXIT_BROKEN
        } else {
            EXIT_OK
        }
    }

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
                kinds.join(", ")
            );
            if f.truncated_lines > 0 || f.dropped_events > 0 {
                let _ = writeln!(
                    out,
                    "    note: {} line(s) cut at the length limit, {} event(s) not kept",
                    f.truncated_lines, f.dropped_events
                );
            }
        }
        let _ = writeln!(out, "\nChecklist (section 6)");
        for f in self.findings.iter().take(7) {
            write_finding(&mut out, &format!("{}.", f.step), f);
        }
        let rows: Vec<&Finding> = self.findings.iter().skip(7).collect();
        let broken: Vec<&&Finding> = rows.iter().filter(|f| f.verdict.is_broken()).collect();
        let _ = writeln!(out, "\nKnown failures (failure catalogue)");
        if broken.is_empty() {
            let _ = writeln!(out, "  none of the checked rows matched");
        }
        for f in &broken {
            write_finding(
                &mut out,
                &format!("row {}:", f.catalogue_row.unwrap_or(0)),
                f,
            );
        }
        let others: Vec<String> = rows
            .iter()
            .filter(|f| !f.verdict.is_broken())
            .map(|f| {
                let mark = match f.verdict {
                    Verdict::Holds => "ruled out",
                    _ => "cannot tell",
                };
                format!("{} {mark}", f.catalogue_row.unwrap_or(0))
            })
            .collect();
        if !others.is_empty() {
            let _ = writeln!(out, "  other rows: {}", others.join(", "));
        }
        let _ = writeln!(
            out,
            "\nResult: {}",
            match self.exit_code() {
                EXIT_OK => "no broken link found",
                _ => "broken link(s) found",
            }
        );
        out
    }
}

fn mark(v: &Verdict) -> &'static str {
    match v {
        Verdict::Holds => "\u{2713}",
        Verdict::Broken => "\u{2717}",
        Verdict::CannotTell { .. } => "?",
    }
}

/// `path:line` of an event's origin, for quoting.
pub fn location(e: &Event) -> String {
    match &e.origin {
        Origin::File { path, line, .. } => format!("{path}:{line}"),
        Origin::Run => format!("run#{}", e.seq),
    }
}

fn write_finding(out: &mut String, label: &str, f: &Finding) {
    let _ = writeln!(out, "  [{}] {label} {}", mark(&f.verdict), f.title);
    match &f.verdict {
        Verdict::CannotTell { missing } => {
            let _ = writeln!(out, "        cannot tell: needs {missing}");
        }
        _ => {
            if !f.symptom.is_empty() {
                let _ = writeln!(out, "        {}", f.symptom);
            }
        }
    }
    for e in &f.proof {
        let text = match &e.origin {
            Origin::File { text, .. } => text.trim().replace('\t', "  "),
            Origin::Run => format!("{:?}", e.kind),
        };
        let _ = writeln!(out, "          {}  {}", location(e), text);
    }
    if f.verdict.is_broken() && !f.fix.is_empty() {
        let _ = writeln!(out, "        fix: {}", f.fix);
    }
}

/// Exit code for a whole doctor run: 2 when inputs were unreadable, else the report's.
pub fn exit_code(result: &Result<Report, LoadError>) -> i32 {
    match result {
        Ok(r) => r.exit_code(),
        Err(_) => EXIT_UNREADABLE,
    }
}
