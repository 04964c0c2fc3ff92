//! Helpers the doctor's tests share: fixtures, one report's single subject, proof lines.

#![allow(dead_code)]

use std::path::PathBuf;
use virq_doctor::{Answer, Doctor, Report, Subject, diagnose};
use virq_events::Origin;

pub fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
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
