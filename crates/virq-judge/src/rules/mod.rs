//! The rules: one function per catalogue row, then the seven steps composed from the rows that
//! break them and their own checks. A row answers only when its own evidence speaks; a row
//! with nothing to say inherits from its step (ruled out when the step holds, *cannot tell*
//! otherwise), so "ruled out" always rests on evidence.

mod device_rows;
mod driver_rows;
mod steps;

use std::collections::{BTreeMap, BTreeSet};

use virq_events::{Event, InterruptMode};

use crate::catalogue::{self, STEPS};
use crate::facts::{Facts, ModeSource, Storm};
use crate::{Answer, Check, Verdict};

/// Proofs quote at most this many events.
pub const MAX_PROOF: usize = 8;

/// What several rules need, derived once.
pub(crate) struct Ctx<'a> {
    pub f: &'a Facts<'a>,
    pub mode: Option<(InterruptMode, Vec<&'a Event>, ModeSource)>,
    pub granted: Option<u32>,
    pub queues: BTreeSet<u16>,
    pub table: Option<(u16, &'a Event)>,
    pub storm: Option<Storm>,
    pub apic: BTreeMap<u32, &'a Event>,
}

impl<'a> Ctx<'a> {
    fn new(f: &'a Facts<'a>) -> Self {
        Ctx {
            f,
            mode: f.mode(),
            granted: f.granted(),
            queues: f.queues(),
            table: f.table_size(),
            storm: f.storm(),
            apic: f.apic_vectors(),
        }
    }

    pub fn message(&self) -> bool {
        matches!(self.mode, Some((InterruptMode::Message, ..)))
    }

    pub fn line(&self) -> bool {
        matches!(self.mode, Some((InterruptMode::Intx, ..)))
    }

    pub fn mode_proof(&self) -> Vec<&'a Event> {
        self.mode
            .as_ref()
            .map(|(_, e, _)| e.iter().copied().take(3).collect())
            .unwrap_or_default()
    }
}

/// Deduplicates (same source line), orders and bounds a proof list.
pub(crate) fn proof<'e>(events: impl IntoIterator<Item = &'e Event>) -> Vec<Event> {
    let mut out: Vec<Event> = Vec::new();
    for e in events {
        let dup = out.iter().any(|o| match (&o.origin, &e.origin) {
            (
                virq_events::Origin::File { path, line, .. },
                virq_events::Origin::File {
                    path: p2, line: l2, ..
                },
            ) => path == p2 && line == l2,
            _ => o.seq == e.seq && o.kind == e.kind && o.origin == e.origin,
        });
        if !dup {
            out.push(e.clone());
        }
        if out.len() == MAX_PROOF {
            break;
        }
    }
    out
}

fn row_answer(n: u8, verdict: Verdict, finding: String, proof: Vec<Event>) -> Answer {
    let row = catalogue::row(n);
    let broken = verdict.is_broken();
    Answer {
        check: Check::Row(n),
        title: row.title.to_string(),
        rows: if broken { vec![n] } else { Vec::new() },
        fix: broken.then(|| row.fix.to_string()),
        verdict,
        finding,
        proof,
    }
}

/// Row `n` is broken, with its proof.
pub(crate) fn broken<'e>(
    n: u8,
    finding: impl Into<String>,
    events: impl IntoIterator<Item = &'e Event>,
) -> Option<Answer> {
    Some(row_answer(
        n,
        Verdict::Broken,
        finding.into(),
        proof(events),
    ))
}

/// Row `n` is ruled out by evidence.
pub(crate) fn ruled_out<'e>(
    n: u8,
    finding: impl Into<String>,
    events: impl IntoIterator<Item = &'e Event>,
) -> Option<Answer> {
    Some(row_answer(n, Verdict::Holds, finding.into(), proof(events)))
}

/// Row `n` cannot be judged: this evidence is missing.
pub(crate) fn unknown(n: u8, finding: impl Into<String>, missing: &str) -> Option<Answer> {
    Some(row_answer(
        n,
        Verdict::CannotTell {
            missing: missing.to_string(),
        },
        finding.into(),
        Vec::new(),
    ))
}

/// One of `rows` is broken; each gets the same answer.
pub(crate) fn one_of<'e>(
    rows: &[u8],
    tell_apart: &str,
    finding: &str,
    events: impl IntoIterator<Item = &'e Event> + Clone,
) -> Vec<Answer> {
    rows.iter()
        .map(|n| {
            row_answer(
                *n,
                Verdict::OneOf {
                    rows: rows.to_vec(),
                    tell_apart: tell_apart.to_string(),
                },
                finding.to_string(),
                proof(events.clone()),
            )
        })
        .collect()
}

/// A step's answer.
pub(crate) fn step_answer(
    n: u8,
    verdict: Verdict,
    finding: impl Into<String>,
    events: Vec<&Event>,
    fix: Option<&str>,
) -> Answer {
    Answer {
        check: Check::Step(n),
        title: STEPS[usize::from(n) - 1].to_string(),
        verdict,
        finding: finding.into(),
        proof: proof(events),
        rows: Vec::new(),
        fix: fix.map(str::to_string),
    }
}

/// Judges one subject: (steps 1-7, rows 1-30).
pub(crate) fn judge(f: &Facts<'_>) -> (Vec<Answer>, Vec<Answer>) {
    let ctx = Ctx::new(f);
    let mut rows: Vec<Option<Answer>> = vec![None; 30];
    let mut set = |a: Answer| {
        if let Check::Row(n) = a.check {
            let slot = &mut rows[usize::from(n) - 1];
            // A proven break outranks a candidate list, which outranks a ruling-out.
            if slot
                .as_ref()
                .is_none_or(|old| a.verdict.rank() > old.verdict.rank())
            {
                *slot = Some(a);
            }
        }
    };
    for a in driver_rows::judge(&ctx)
        .into_iter()
        .chain(device_rows::judge(&ctx))
    {
        set(a);
    }
    let rows_now: Vec<Option<Answer>> = rows.clone();
    let mut steps = steps::judge(&ctx, &rows_now);
    // A step whose evidence a bound let go cannot be said to hold.
    for s in &mut steps {
        if let Check::Step(n) = s.check
            && f.lost_steps.contains(&n)
            && s.verdict == Verdict::Holds
        {
            s.verdict = Verdict::CannotTell {
                missing: "the evidence a size bound let go (see the lost evidence listed)".into(),
            };
        }
    }
    let rows: Vec<Option<Answer>> = rows
        .into_iter()
        .map(|a| {
            a.map(|mut a| {
                if let Check::Row(n) = a.check
                    && f.lost_steps.contains(&catalogue::row(n).step)
                    && a.verdict == Verdict::Holds
                {
                    a.verdict = Verdict::CannotTell {
                        missing: "the evidence a size bound let go".into(),
                    };
                }
                a
            })
        })
        .collect();
    // Rows with nothing of their own inherit from their step.
    let rows = rows
        .into_iter()
        .enumerate()
        .map(|(i, a)| {
            a.unwrap_or_else(|| {
                let n = i as u8 + 1;
                let step = &steps[usize::from(catalogue::row(n).step) - 1];
                match &step.verdict {
                    Verdict::Holds => row_answer(
                        n,
                        Verdict::Holds,
                        format!("ruled out: step {} holds", catalogue::row(n).step),
                        Vec::new(),
                    ),
                    Verdict::CannotTell { missing } => row_answer(
                        n,
                        Verdict::CannotTell {
                            missing: missing.clone(),
                        },
                        format!("step {} cannot be judged", catalogue::row(n).step),
                        Vec::new(),
                    ),
                    _ => row_answer(
                        n,
                        Verdict::CannotTell {
                            missing: format!("evidence of row {n} itself"),
                        },
                        format!(
                            "step {} is broken by another cause; nothing shows this row either way",
                            catalogue::row(n).step
                        ),
                        Vec::new(),
                    ),
                }
            })
        })
        .collect();
    (steps, rows)
}
