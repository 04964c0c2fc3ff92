//! Helpers the doctor's tests share: fixtures, one report's single subject, proof lines.

#![allow(dead_code)]

use std::path::PathBuf;
use virq_doctor::{Answer, Doctor, Report, Subject, diagnose};
use virq_events::{Event, EventKind, InterruptMode, Origin};

pub fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// The line of its file an event came from (0 for an event of the run itself).
pub fn line_of(e: &Event) -> u64 {
    match &e.origin {
        Origin::File { line, .. } => *line,
        Origin::Run => 0,
    }
}

/// An MSI-X capability as a dump shows it in use: Enable set, Function Mask clear, and
/// `table_size` entries (PCI 3.0, 6.8.2.3: the Message Control word's field plus one).
pub fn msix_enabled_unmasked(table_size: u16) -> EventKind {
    EventKind::MsixCapabilitySeen {
        enabled: true,
        function_masked: false,
        table_size,
    }
}

/// A message interrupt as `!devnode` (and the driver's dump of it) shows one: affinity 0xf,
/// latched (flags 3); `raw` for the untranslated list's descriptor.
pub fn message(level: u32, vector: u32, message_count: u32, raw: bool) -> EventKind {
    EventKind::ResourceAssigned {
        mode: InterruptMode::Message,
        message_count,
        level,
        vector,
        affinity: 0xf,
        flags: 3,
        raw,
    }
}

/// A line interrupt (level-sensitive, flags 0) as a resource list shows it. viostor and
/// vioscsi print only the mode (`msix_vectors 0`): level, vector and affinity 0.
pub fn line_interrupt(level: u32, vector: u32, affinity: u64, raw: bool) -> EventKind {
    EventKind::ResourceAssigned {
        mode: InterruptMode::Intx,
        message_count: 0,
        level,
        vector,
        affinity,
        flags: 0,
        raw,
    }
}

pub fn report(names: &[&str]) -> Report {
    let paths: Vec<PathBuf> = names.iter().map(|n| fixture(n)).collect();
    diagnose(&paths).unwrap_or_else(|e| panic!("{e}"))
}

/// A report of one in-memory text named `inline.log`.
pub fn report_of(text: &str) -> Report {
    let mut d = Doctor::new();
    d.read("inline.log", text.as_bytes()).unwrap();
    d.finish()
}

/// The one subject a report must hold.
pub fn only(r: &Report) -> &Subject {
    assert_eq!(r.subjects().len(), 1, "{}", r.render_text());
    &r.subjects()[0]
}

pub fn rows(s: &Subject) -> Vec<u8> {
    s.broken_rows().into_iter().collect()
}

pub fn candidates(s: &Subject) -> Vec<u8> {
    s.candidate_rows().into_iter().collect()
}

pub fn broken_steps(s: &Subject) -> Vec<u8> {
    (1..=7).filter(|n| s.step(*n).verdict.is_broken()).collect()
}

/// Lines of `file` (by file name) an answer's proof quotes.
pub fn lines_in(a: &Answer, file: &str) -> Vec<u64> {
    a.proof
        .iter()
        .filter_map(|e| match &e.origin {
            Origin::File { path, line, .. } => {
                let name = PathBuf::from(path)
                    .file_name()
                    .unwrap()
                    .to_string_lossy()
                    .into_owned();
                (name == file).then_some(*line)
            }
            Origin::Run => None,
        })
        .collect()
}
