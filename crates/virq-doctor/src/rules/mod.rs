//! The rules engine: plain functions from the evidence to a [`Finding`].
//!
//! Every rule answers one question of the checklist (section 6, steps 1-7) or one row of the
//! failure catalogue, and answers "cannot tell" - naming the missing evidence - rather than
//! guessing when the events it needs are absent.

mod catalogue;
mod facts;
mod steps;

use serde::{Deserialize, Serialize};
use virq_events::Event;

pub use catalogue::{row1_intx_storm, row2_reset_after_write, row3_apic_vector_written};
pub use catalogue::{
    row4_too_few_messages, row5_config_no_vector, row7_vector_zero, row13_no_message_flag,
};
pub use steps::{
    step1_mode, step2_resources, step3_connected, step4_msix_enable, step5_programmed,
    step6_read_back, step7_counters,
};

/// The outcome of one check.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "status")]
pub enum Verdict {
    /// The evidence shows this link works.
    Holds,
    /// The evidence shows this link is broken.
    Broken,
    /// The evidence needed to judge is not there; `missing` says what to capture.
    CannotTell { missing: String },
}

impl Verdict {
    pub fn is_broken(&self) -> bool {
        matches!(self, Verdict::Broken)
    }
}

/// One judged link: which checklist step, which catalogue row, the verdict and its proof.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Finding {
    /// Checklist step (section 6), 1-7.
    pub step: u8,
    /// Failure-catalogue row, for rules that detect one failure mode.
    pub catalogue_row: Option<u8>,
    pub verdict: Verdict,
    /// What was checked.
    pub title: String,
    /// What the evidence shows.
    pub symptom: String,
    /// The events (quoted lines) the verdict rests on.
    pub proof: Vec<Event>,
    /// What to change when the verdict is `Broken`.
    pub fix: String,
}

/// A rule: a pure function over the ordered evidence.
pub type Rule = fn(&[Event]) -> Finding;

/// The checklist's seven steps, in order.
pub const STEP_RULES: [Rule; 7] = [
    step1_mode,
    step2_resources,
    step3_connected,
    step4_msix_enable,
    step5_programmed,
    step6_read_back,
    step7_counters,
];

/// The catalogue rows the doctor detects so far.
pub const CATALOGUE_RULES: [Rule; 7] = [
    row1_intx_storm,
    row2_reset_after_write,
    row3_apic_vector_written,
    row4_too_few_messages,
    row5_config_no_vector,
    row7_vector_zero,
    row13_no_message_flag,
];

/// Runs every step and catalogue rule.
pub fn run_all(events: &[Event]) -> Vec<Finding> {
    STEP_RULES
        .iter()
        .chain(CATALOGUE_RULES.iter())
        .map(|rule| rule(events))
        .collect()
}

/// Proofs quote at most this many events, so a storm capture stays readable.
pub const MAX_PROOF: usize = 8;

/// Deduplicates (by sequence number), orders and bounds a proof list.
pub(crate) fn proof<'a>(events: impl IntoIterator<Item = &'a Event>) -> Vec<Event> {
    let mut v: Vec<&Event> = events.into_iter().collect();
    v.sort_by_key(|e| e.seq);
    v.dedup_by_key(|e| e.seq);
    v.truncate(MAX_PROOF);
    v.into_iter().cloned().collect()
}

pub(crate) fn finding(
    step: u8,
    catalogue_row: Option<u8>,
    title: &str,
    verdict: Verdict,
    symptom: impl Into<String>,
    proof: Vec<Event>,
    fix: &str,
) -> Finding {
    Finding {
        step,
        catalogue_row,
        verdict,
        title: title.to_string(),
        symptom: symptom.into(),
        proof,
        fix: fix.to_string(),
    }
}

pub(crate) fn cannot(missing: &str) -> Verdict {
    Verdict::CannotTell {
        missing: missing.to_string(),
    }
}
