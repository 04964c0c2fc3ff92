//! Several files combined into one ordered evidence list.

use crate::error::{LoadError, SourceError};
use crate::parse::{FileSummary, ParseLimits, parse_reader, sort_by_line};
use serde::{Deserialize, Serialize};
use std::fs::File;
use std::io::{BufReader, ErrorKind};
use std::path::Path;
use virq_events::Event;

/// Everything the doctor was given: the events of every file (file order, then line order) and
/// what each file contributed.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Evidence {
    pub events: Vec<Event>,
    pub files: Vec<FileSummary>,
}

impl Evidence {
    pub fn new() -> Self {
        Self::default()
    }

    /// Evidence from events that did not come from files (a simulated or KVM run).
    pub fn from_events(events: Vec<Event>) -> Self {
        Self {
            events,
            files: Vec::new(),
        }
    }

    /// Parses one reader as a file named `path` and appends its events.
    pub fn add_reader<R: std::io::BufRead>(
        &mut self,
        path: &str,
        reader: R,
        limits: ParseLimits,
    ) -> Result<&FileSummary, SourceError> {
        let mut events = Vec::new();
        let summary = parse_reader(path, reader, limits, |e| events.push(e))?;
        sort_by_line(&mut events);
        let base = self.events.len() as u64;
        for e in &mut events {
            e.seq += base;
        }
        self.events.extend(events);
        self.files.push(summary);
        Ok(self.files.last().expect("just pushed"))
    }

    /// Opens and parses one file, turning each way it can fail into a message naming it.
    pub fn add_file(
        &mut self,
        path: &Path,
        limits: ParseLimits,
    ) -> Result<&FileSummary, SourceError> {
        let name = path.display().to_string();
        let meta = std::fs::metadata(path).map_err(|e| open_error(&name, e))?;
        if meta.is_dir() {
            return Err(SourceError::Directory { path: name });
        }
        if meta.len() == 0 {
            return Err(SourceError::Empty { path: name });
        }
        let file = File::open(path).map_err(|e| open_error(&name, e))?;
        self.add_reader(&name, BufReader::with_capacity(64 * 1024, file), limits)
    }

    /// Loads every file; if any cannot be used, reports all of them instead.
    pub fn load<P: AsRef<Path>>(paths: &[P]) -> Result<Evidence, LoadError> {
        Self::load_with(paths, ParseLimits::default())
    }

    /// [`Evidence::load`] with explicit limits.
    pub fn load_with<P: AsRef<Path>>(
        paths: &[P],
        limits: ParseLimits,
    ) -> Result<Evidence, LoadError> {
        let mut evidence = Evidence::new();
        let mut errors = Vec::new();
        for p in paths {
            if let Err(e) = evidence.add_file(p.as_ref(), limits) {
                errors.push(e);
            }
        }
        if errors.is_empty() {
            Ok(evidence)
        } else {
            Err(LoadError { errors })
        }
    }

    /// Which files contributed events of a kind (by JSON tag, e.g. `vector_written`).
    pub fn files_with(&self, kind: &str) -> Vec<&str> {
        self.files
            .iter()
            .filter(|f| f.kinds.get(kind).is_some_and(|n| *n > 0))
            .map(|f| f.path.as_str())
            .collect()
    }
}

fn open_error(path: &str, e: std::io::Error) -> SourceError {
    if e.kind() == ErrorKind::NotFound {
        SourceError::Missing {
            path: path.to_string(),
        }
    } else {
        SourceError::Io {
            path: path.to_string(),
            source: e,
        }
    }
}
