//! Harnesses behind virq's fuzz targets.
//!
//! Each harness takes raw bytes, decodes them into what a hostile party could do (a guest's
//! configuration and BAR accesses, a guest's rings, a client's request lines, a user's log
//! file), runs them against the real code and checks invariants that must hold whatever the
//! input. A harness panics only when virq is wrong: that is the crash libFuzzer reports.
//!
//! The same functions serve three callers: the `fuzz_targets/*` (nightly, libFuzzer), the
//! `replay` example (any toolchain: run a corpus or a crash file through a harness) and the
//! `gen_seeds` example, whose encoders write the seed corpus under `fuzz/seeds/`.

pub mod cursor;
pub mod ring;
pub mod rings;
pub mod seeds;
pub mod text;
pub mod transport;

/// A harness: runs one input, panics when virq is wrong.
pub type Harness = fn(&[u8]);

/// The harnesses by target name, for `replay`.
pub const TARGETS: &[(&str, Harness)] = &[
    ("config_bar", transport::run),
    ("queues_blk", rings::run_blk),
    ("queues_rng", rings::run_rng),
    ("queues_console", rings::run_console),
    ("serve_request", text::run_serve),
    ("doctor_parse", text::run_doctor),
    ("ring", ring::run),
    ("judge", text::run_judge),
    ("win_text", text::run_win_text),
];
