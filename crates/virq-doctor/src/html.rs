//! The HTML report: one self-contained page (inline CSS and SVG, no scripts, no external
//! resources) that draws the interrupt chain as boxes, each link coloured by its verdict, with the
//! quoted proof lines under it, followed by the failure-catalogue findings.

use crate::report::Report;
use std::fmt::Write as _;
use virq_judge::describe::{location, quote};
use virq_judge::{Answer, Check, Subject, Verdict};

/// One link of the chain and the checklist steps that judge it.
pub struct Link {
    /// The link's part of its box's HTML id (`link-N-ID`).
    pub id: &'static str,
    /// The link's name as drawn.
    pub name: &'static str,
    /// The checklist steps (section 6) whose verdicts colour it.
    pub steps: &'static [u8],
}

/// The chain, in order: resources -> messages -> MSI-X table -> virtio selectors -> ISR/DPC.
pub const CHAIN: [Link; 5] = [
    Link {
        id: "resources",
        name: "Resources",
        steps: &[1, 2],
    },
    Link {
        id: "messages",
        name: "Messages",
        steps: &[3],
    },
    Link {
        id: "msix-table",
        name: "MSI-X table",
        steps: &[4],
    },
    Link {
        id: "selectors",
        name: "virtio selectors",
        steps: &[5, 6],
    },
    Link {
        id: "isr-dpc",
        name: "ISR / DPC",
        steps: &[7],
    },
];

/// The CSS class of a verdict: `holds`, `broken` or `cannot-tell`.
pub fn verdict_class(v: &Verdict) -> &'static str {
    match v {
        Verdict::Holds => "holds",
        Verdict::Broken | Verdict::OneOf { .. } => "broken",
        Verdict::CannotTell { .. } => "cannot-tell",
    }
}

fn verdict_label(v: &Verdict) -> &'static str {
    match v {
        Verdict::Holds => "holds",
        Verdict::Broken => "broken",
        Verdict::OneOf { .. } => "broken (one of several rows)",
        Verdict::CannotTell { .. } => "cannot tell",
    }
}

fn rank(v: &Verdict) -> u8 {
    match v {
        Verdict::Holds => 0,
        Verdict::CannotTell { .. } => 1,
        Verdict::OneOf { .. } => 2,
        Verdict::Broken => 3,
    }
}

/// Escapes text for HTML element content and attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if c.is_control() && c != '\n' => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

const CSS: &str = "
body{font:15px/1.45 system-ui,-apple-system,'Segoe UI',sans-serif;margin:24px;color:#1d232a;background:#fafbfc}
h1{font-size:24px;margin:0 0 4px}h2{font-size:19px;margin:28px 0 10px}
.meta{color:#56606b;margin:0 0 16px}.meta li{margin:2px 0}
svg.chain{width:100%;max-width:1140px;height:auto;display:block;margin:8px 0 4px}
svg .box rect{stroke-width:3}
svg .holds rect{fill:#e3f6e8;stroke:#1f8a3b}svg .broken rect{fill:#fde4e4;stroke:#c62828}
svg .cannot-tell rect{fill:#fff4d6;stroke:#b7791f}
svg text{font:600 17px system-ui,sans-serif;fill:#1d232a}svg text.v{font-weight:400;font-size:14px}
svg .arrow{stroke-width:4}svg .arrow.holds{stroke:#1f8a3b}svg .arrow.broken{stroke:#c62828}
svg .arrow.cannot-tell{stroke:#b7791f;stroke-dasharray:7 5}
.legend span{display:inline-block;margin-right:14px}.legend i{display:inline-block;width:14px;height:14px;border-radius:3px;vertical-align:-2px;margin-right:5px}
section.link{border-left:8px solid;border-radius:6px;background:#fff;padding:10px 16px;margin:12px 0;box-shadow:0 1px 2px #0002}
section.link.holds{border-color:#1f8a3b}section.link.broken{border-color:#c62828}section.link.cannot-tell{border-color:#b7791f}
section.link h3{margin:2px 0 8px;font-size:18px}
.badge{display:inline-block;border-radius:10px;padding:0 9px;font-size:13px;font-weight:600;color:#fff;vertical-align:2px;margin-left:6px}
.badge.holds{background:#1f8a3b}.badge.broken{background:#c62828}.badge.cannot-tell{background:#b7791f}
.finding{margin:8px 0 12px}.finding .title{font-weight:600}.finding .symptom{margin:2px 0}
.finding .missing{color:#8a5a00}.finding .fix{color:#1d4e89;margin:2px 0}
pre.proof{background:#f3f5f7;border:1px solid #dde2e7;border-radius:4px;padding:6px 8px;margin:4px 0;font:12.5px/1.4 ui-monospace,Consolas,monospace;white-space:pre-wrap;word-break:break-all}
pre.proof .loc{color:#56606b}
table.rows{border-collapse:collapse;width:100%;max-width:1140px;background:#fff}
table.rows td,table.rows th{border:1px solid #dde2e7;padding:5px 8px;vertical-align:top;text-align:left}
table.rows tr.broken td:first-child{background:#fde4e4}table.rows tr.holds td:first-child{background:#e3f6e8}
table.rows tr.cannot-tell td:first-child{background:#fff4d6}
";

/// The worst verdict of a chain link (broken > cannot tell > holds) over its steps.
pub fn link_verdict(subject: &Subject, link: &Link) -> Verdict {
    link.steps
        .iter()
        .map(|s| subject.step(*s).verdict.clone())
        .max_by_key(rank)
        .unwrap_or(Verdict::CannotTell {
            missing: "no rule judged this link".to_string(),
        })
}

impl Report {
    /// One self-contained HTML page: per device and start, the chain with verdict colours and
    /// proofs, then the catalogue.
    pub fn render_html(&self) -> String {
        let mut h = String::new();
        let result = match self.exit_code() {
            crate::report::EXIT_BROKEN => "broken link(s) found",
            crate::report::EXIT_OK => "every link holds",
            _ => "not every link could be judged",
        };
        let _ = write!(
            h,
            "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
             <title>virq doctor: {result}</title><style>{CSS}</style></head><body>\n\
             <h1>virq doctor: {result}</h1>\n<ul class=\"meta\">"
        );
        for f in &self.files {
            let _ = write!(
                h,
                "<li>{} ({}, {} line(s), {} event(s))</li>",
                escape(&f.path),
                f.format.label(),
                f.lines,
                f.event_count()
            );
        }
        h.push_str("</ul>\n");
        h.push_str(
            "<p class=\"legend\"><span><i style=\"background:#1f8a3b\"></i>holds</span>\
             <span><i style=\"background:#c62828\"></i>broken</span>\
             <span><i style=\"background:#b7791f\"></i>cannot tell (evidence missing)</span></p>\n",
        );
        for (i, s) in self.subjects().iter().enumerate() {
            let _ = writeln!(
                h,
                "<div class=\"subject\" id=\"subject-{i}\"><h2>{}</h2>",
                escape(&s.heading())
            );
            chain_svg(&mut h, s, i);
            for link in &CHAIN {
                let v = link_verdict(s, link);
                let class = verdict_class(&v);
                let _ = writeln!(
                    h,
                    "<section class=\"link {class}\" id=\"link-{i}-{}\" data-verdict=\"{class}\">\
                     <h3>{}<span class=\"badge {class}\">{}</span></h3>",
                    link.id,
                    escape(link.name),
                    verdict_label(&v)
                );
                for n in link.steps {
                    write_answer(&mut h, &format!("Step {n}."), s.step(*n), "step");
                }
                for a in s.rows.iter().filter(|a| {
                    a.verdict.is_broken()
                        && matches!(a.check, Check::Row(r) if link.steps.contains(&virq_judge::row(r).step))
                }) {
                    let n = match a.check {
                        Check::Row(n) | Check::Step(n) => n,
                    };
                    write_answer(&mut h, &format!("Catalogue row {n}:"), a, "row");
                }
                h.push_str("</section>\n");
            }
            let _ = writeln!(
                h,
                "<h3>Failure catalogue</h3>\n<table class=\"rows\" id=\"catalogue-{i}\">\
                 <tr><th>row</th><th>verdict</th><th>failure</th><th>what the evidence shows</th></tr>"
            );
            for a in &s.rows {
                let class = verdict_class(&a.verdict);
                let n = match a.check {
                    Check::Row(n) | Check::Step(n) => n,
                };
                let what = match &a.verdict {
                    Verdict::CannotTell { missing } => format!("needs {missing}"),
                    _ => a.finding.clone(),
                };
                let _ = writeln!(
                    h,
                    "<tr class=\"{class}\" id=\"row-{i}-{n}\" data-verdict=\"{class}\"><td>{n}</td>\
                     <td>{}</td><td>{}</td><td>{}</td></tr>",
                    verdict_label(&a.verdict),
                    escape(&a.title),
                    escape(&what),
                );
            }
            h.push_str("</table></div>\n");
        }
        h.push_str("</body></html>\n");
        h
    }
}

fn chain_svg(h: &mut String, s: &Subject, index: usize) {
    const W: u32 = 190;
    const GAP: u32 = 46;
    const BOX_H: u32 = 84;
    let width = CHAIN.len() as u32 * W + (CHAIN.len() as u32 - 1) * GAP + 8;
    let _ = write!(
        h,
        "<svg class=\"chain\" xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {width} {}\" \
         role=\"img\" aria-label=\"the interrupt chain\">\
         <defs><marker id=\"head-{index}\" viewBox=\"0 0 10 10\" refX=\"8\" refY=\"5\" \
         markerWidth=\"5\" markerHeight=\"5\" orient=\"auto\">\
         <path d=\"M0,0 L10,5 L0,10 z\" fill=\"#56606b\"/></marker></defs>",
        BOX_H + 8
    );
    for (i, link) in CHAIN.iter().enumerate() {
        let v = link_verdict(s, link);
        let class = verdict_class(&v);
        let x = 4 + i as u32 * (W + GAP);
        if i > 0 {
            let _ = write!(
                h,
                "<line class=\"arrow {class}\" x1=\"{}\" y1=\"{y}\" x2=\"{}\" y2=\"{y}\" \
                 marker-end=\"url(#head-{index})\"/>",
                x - GAP + 2,
                x - 4,
                y = 4 + BOX_H / 2
            );
        }
        let _ = write!(
            h,
            "<g class=\"box {class}\" id=\"box-{index}-{}\"><rect x=\"{x}\" y=\"4\" width=\"{W}\" \
             height=\"{BOX_H}\" rx=\"10\"/>\
             <text x=\"{cx}\" y=\"40\" text-anchor=\"middle\">{}</text>\
             <text class=\"v\" x=\"{cx}\" y=\"64\" text-anchor=\"middle\">{}</text></g>",
            link.id,
            escape(link.name),
            verdict_label(&v),
            cx = x + W / 2
        );
    }
    h.push_str("</svg>\n");
}

fn write_answer(h: &mut String, label: &str, a: &Answer, kind: &str) {
    let class = verdict_class(&a.verdict);
    let _ = write!(
        h,
        "<div class=\"finding {kind} {class}\" data-verdict=\"{class}\"><div class=\"title\">{} {}\
         <span class=\"badge {class}\">{}</span></div>",
        escape(label),
        escape(&a.title),
        verdict_label(&a.verdict)
    );
    match &a.verdict {
        Verdict::CannotTell { missing } => {
            let _ = write!(
                h,
                "<div class=\"missing\">cannot tell: needs {}</div>",
                escape(missing)
            );
        }
        Verdict::OneOf { tell_apart, .. } => {
            let _ = write!(
                h,
                "<div class=\"symptom\">{}</div><div class=\"missing\">to tell them apart: {}</div>",
                escape(&a.finding),
                escape(tell_apart)
            );
        }
        _ if !a.finding.is_empty() => {
            let _ = write!(h, "<div class=\"symptom\">{}</div>", escape(&a.finding));
        }
        _ => {}
    }
    if !a.proof.is_empty() {
        h.push_str("<pre class=\"proof\">");
        for e in &a.proof {
            let _ = writeln!(
                h,
                "<span class=\"loc\">{}</span>  {}",
                escape(&location(e)),
                escape(&quote(e))
            );
        }
        h.push_str("</pre>");
    }
    if a.verdict.is_broken()
        && let Some(fix) = &a.fix
    {
        let _ = write!(h, "<div class=\"fix\">fix: {}</div>", escape(fix));
    }
    h.push_str("</div>\n");
}
