//! The rules engine: plain functions from the evidence to a [`Finding`].
//!
//! Every rule answers one question of the checklist (section 6, steps 1-7) or one row of the
//! failure catalogue, and answers "cannot tell" - naming the missing evidence - rather than
//! guessing when the events it needs are absent.

mod catalogue;
mod device_rows;
mod driver_rows;
mod facts;
mod signals;
mod steps;

use serde::{Deserialize, Serialize};
use virq_events::Event;

pub use catalogue::{row1_intx_storm, row2_reset_after_write, row3_apic_vector_written};
pub use catalogue::{
    row4_too_few_messages, row5_config_no_vector, row7_vector_zero, row13_no_message_flag,
};
pub use device_rows::{
    row14_intx_with_msix, row15_message_while_masked, row16_enable_ignored,
    row17_selector_after_reset, row18_out_of_range_accepted, row19_line_stuck,
    row20_interrupt_disable_ignored, row21_small_table, row22_isr_not_cleared,
};
pub use driver_rows::{
    row6_message_changed, row8_unmapped_message_id, row9_message_zero,
    row10_enable_before_verified, row11_shared_line, row12_surprise_removal,
};
pub use signals::{STORM_ISR_PER_DPC, STORM_MIN_IRQ_DELTA, STORM_MIN_ISR};
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

/// One rule per failure-catalogue row, in row order (1-22).
pub const CATALOGUE_RULES: [Rule; 22] = [
    row1_intx_storm,
    row2_reset_after_write,
    row3_apic_vector_written,
    row4_too_few_messages,
    row5_config_no_vector,
    row6_message_changed,
    row7_vector_zero,
    row8_unmapped_message_id,
    row9_message_zero,
    row10_enable_before_verified,
    row11_shared_line,
    row12_surprise_removal,
    row13_no_message_flag,
    row14_intx_with_msix,
    row15_message_while_masked,
    row16_enable_ignored,
    row17_selector_after_reset,
    row18_out_of_range_accepted,
    row19_line_stuck,
    row20_interrupt_disable_ignored,
    row21_small_table,
    row22_isr_not_cleared,
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
    // One line can carry two events (a counter summary and the ISR status it reports): quote
    // the line once.
    v.dedup_by(|a, b| match (&a.origin, &b.origin) {
        (
            virq_events::Origin::File { path, line, .. },
            virq_events::Origin::File {
                path: p2, line: l2, ..
            },
        ) => path == p2 && line == l2,
        _ => false,
    });
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
