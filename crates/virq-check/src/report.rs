//! The terminal report of `virq check`: the checklist's seven steps per mode, each with its
//! verdict, finding, quoted proof, broken catalogue rows and fix, rendered from the one judge's
//! answers.

use std::fmt::Write as _;

use virq_events::{Event, Origin};
use virq_judge::{Answer, Overall, Verdict};

use crate::CheckReport;
use crate::run::ModeReport;

fn mark(v: &Verdict) -> &'static str {
    match v {
        Verdict::Holds => "[ OK ]",
        Verdict::CannotTell { .. } => "[ ?? ]",
        Verdict::Broken | Verdict::OneOf { .. } => "[FAIL]",
    }
}

/// A proof line as the user's file shows it (DbgView columns dropped), or the device
/// record's event in words.
pub fn proof_line(e: &Event) -> String {
    match &e.origin {
        Origin::File { text, .. } => virq_doctor::text::strip_prefixes(text).0.trim().to_string(),
        Origin::Run => virq_judge::describe::quote(e),
    }
}

/// One step (numbered `n`) as the check report prints it.
pub fn render_answer_text(out: &mut String, s: &Answer, n: u8) {
    let _ = writeln!(out, "{} {n}. {}", mark(&s.verdict), s.title);
    let _ = writeln!(out, "       {}", s.finding);
    if let Verdict::CannotTell { missing } = &s.verdict {
        let _ = writeln!(out, "       needs: {missing}");
    }
    for p in s.proof.iter().take(8) {
        let _ = writeln!(out, "         | {}", proof_line(p));
    }
    match &s.verdict {
        Verdict::Broken if !s.rows.is_empty() => {
            let rows: Vec<String> = s.rows.iter().map(u8::to_string).collect();
            let _ = writeln!(
                out,
                "       broken link: failure catalogue row{} {}",
                if rows.len() > 1 { "s" } else { "" },
                rows.join(", ")
            );
        }
        Verdict::OneOf { rows, tell_apart } => {
            let rows: Vec<String> = rows.iter().map(u8::to_string).collect();
            let _ = writeln!(
                out,
                "       broken link: one of failure catalogue rows {}",
                rows.join(", ")
            );
            let _ = writeln!(out, "       to tell them apart: {tell_apart}");
        }
        _ => {}
    }
    if s.verdict.is_broken()
        && let Some(fix) = &s.fix
    {
        let _ = writeln!(out, "       fix: {fix}");
    }
}

/// The terminal report.
pub fn render_text(report: &CheckReport) -> String {
    let mut out = String::new();
    let o = &report.options;
    let device = match o.device {
        crate::DeviceKind::Blk => "blk",
        crate::DeviceKind::Rng => "rng",
        crate::DeviceKind::Console => "console",
    };
    let _ = writeln!(
        out,
        "virq check: virtio-{device} with {} queue(s) on the simulated Windows 7 machine{}",
        o.queues,
        o.inject
            .map(|f| format!(
                ", fault injected: {} (catalogue row {})",
                f.name(),
                f.catalogue_row()
            ))
            .unwrap_or_default()
    );
    let _ = writeln!(out, "model: {}", o.model_summary());
    for m in &report.modes {
        render_mode(&mut out, m);
    }
    let _ = writeln!(out);
    let broken: Vec<&str> = report
        .modes
        .iter()
        .filter(|m| m.overall != Overall::Holds)
        .map(|m| m.mode.name())
        .collect();
    if broken.is_empty() {
        let _ = writeln!(out, "verdict: every link holds in every mode");
    } else {
        let _ = writeln!(
            out,
            "verdict: a link is broken (or cannot be told) in: {}",
            broken.join(", ")
        );
    }
    out
}

fn selector(s: virq_events::Selector) -> String {
    match s {
        virq_events::Selector::MsixConfig => "msix_config".to_string(),
        virq_events::Selector::Queue(q) => format!("queue {q}"),
    }
}

/// The sleep/resume in one line: what the reset left, what `EvtDeviceD0Entry` re-programmed.
pub fn power_line(p: &crate::run::PowerCycle) -> String {
    let after: Vec<String> = p
        .after_reset
        .iter()
        .map(|(s, v)| format!("{}=0x{v:04x}", selector(*s)))
        .collect();
    let mut line = format!(
        "sleep/resume: D0 exit to D3, D0 entry with the device reset ({})",
        if after.is_empty() {
            "no selector in use".to_string()
        } else {
            after.join(" ")
        }
    );
    if p.reprogrammed.is_empty() {
        line.push_str(if p.resumed {
            "; no vector re-programmed in EvtDeviceD0Entry"
        } else {
            "; EvtDeviceD0Entry failed"
        });
    } else {
        let again: Vec<String> = p
            .reprogrammed
            .iter()
            .map(|(s, w, r)| format!("{} 0x{w:04x}->0x{r:04x}", selector(*s)))
            .collect();
        line.push_str(&format!(
            "; re-programmed and read back: {}",
            again.join(", ")
        ));
    }
    line
}

fn render_mode(out: &mut String, m: &ModeReport) {
    let _ = writeln!(out, "\n=== mode {}: {} ===", m.mode.name(), m.mode.title());
    let _ = writeln!(out, "  grant: {}", m.grant);
    if let Some(p) = &m.power {
        let _ = writeln!(out, "  {}", power_line(p));
    }
    if m.filtered_lines > 0 {
        let _ = writeln!(
            out,
            "  DbgView: {} of the driver's lines dropped by the Debug Print Filter",
            m.filtered_lines
        );
    }
    for (i, s) in m.subject.steps.iter().enumerate() {
        render_answer_text(out, s, i as u8 + 1);
    }
    let rows = m.subject.broken_rows();
    let candidates = m.subject.candidate_rows();
    if !rows.is_empty() || !candidates.is_empty() {
        let list = |r: &std::collections::BTreeSet<u8>| {
            r.iter().map(u8::to_string).collect::<Vec<_>>().join(", ")
        };
        let mut line = String::new();
        if !rows.is_empty() {
            line.push_str(&format!("rows {}", list(&rows)));
        }
        if !candidates.is_empty() {
            if !line.is_empty() {
                line.push_str("; ");
            }
            line.push_str(&format!("one of rows {}", list(&candidates)));
        }
        let _ = writeln!(out, "  failure catalogue: {line}");
    }
    let _ = writeln!(
        out,
        "  mode verdict: {:?} ({} interrupts, {}/{} requests completed{})",
        m.overall,
        m.interrupts,
        m.completed,
        m.requests,
        if m.budget_exhausted {
            ", interrupt budget exhausted"
        } else {
            ""
        }
    );
}
