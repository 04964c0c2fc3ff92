//! Reading a user's files into the one judge, one event at a time: nothing is held per event,
//! so memory stays bounded whatever the files' size.

use crate::error::{LoadError, SourceError};
use crate::parse::{FileSummary, ParseLimits, WinDbgContext, parse_reader_in};
use crate::report::Report;
use std::fs::File;
use std::io::{BufReader, ErrorKind};
use std::path::Path;
use virq_events::Event;
use virq_judge::Judge;

/// Called with every event read.
type Watcher<'a> = Box<dyn FnMut(&Event) + 'a>;

/// The doctor at work: files go in, a [`Report`] comes out.
pub struct Doctor<'a> {
    judge: Judge,
    files: Vec<FileSummary>,
    limits: ParseLimits,
    /// Called with every event read (for `virq doctor --events`).
    watcher: Option<Watcher<'a>>,
    /// What the WinDbg text read so far said about addresses: the next file's `dt` is read as
    /// the list an earlier file's `!irp` named.
    windbg: WinDbgContext,
}

impl Default for Doctor<'_> {
    fn default() -> Self {
        Self::new()
    }
}

impl<'a> Doctor<'a> {
    /// A doctor with the default [`ParseLimits`].
    pub fn new() -> Self {
        Self::with_limits(ParseLimits::default())
    }

    /// A doctor with the given bounds on line length and quoted lines.
    pub fn with_limits(limits: ParseLimits) -> Self {
        Doctor {
            judge: Judge::new(),
            files: Vec::new(),
            limits,
            watcher: None,
            windbg: WinDbgContext::default(),
        }
    }

    /// Also hand every event read to `f`.
    pub fn watch(mut self, f: impl FnMut(&Event) + 'a) -> Self {
        self.watcher = Some(Box::new(f));
        self
    }

    /// Reads one text (a file's content) named `path`.
    pub fn read<R: std::io::BufRead + Send>(
        &mut self,
        path: &str,
        reader: R,
    ) -> Result<&FileSummary, SourceError> {
        let judge = &mut self.judge;
        let watcher = &mut self.watcher;
        let summary = parse_reader_in(path, reader, self.limits, &mut self.windbg, |e| {
            if let Some(w) = watcher.as_mut() {
                w(&e);
            }
            judge.observe(&e);
        })?;
        self.judge.note_lost(
            path,
            "lines cut at the length limit",
            summary.truncated_lines,
        );
        self.judge
            .note_lost(path, "events over the parse limit", summary.dropped_events);
        self.files.push(summary);
        Ok(self.files.last().expect("just pushed"))
    }

    /// Opens and reads one file, turning each way it can fail into a message naming it.
    pub fn read_file(&mut self, path: &Path) -> Result<&FileSummary, SourceError> {
        let name = path.display().to_string();
        let meta = std::fs::metadata(path).map_err(|e| open_error(&name, e))?;
        if meta.is_dir() {
            return Err(SourceError::Directory { path: name });
        }
        if meta.len() == 0 {
            return Err(SourceError::Empty { path: name });
        }
        let file = File::open(path).map_err(|e| open_error(&name, e))?;
        self.read(&name, BufReader::with_capacity(64 * 1024, file))
    }

    /// Judges everything read.
    pub fn finish(self) -> Report {
        Report::new(self.files, self.judge.finish())
    }
}

/// Reads every file and judges them together; if any cannot be used, reports all of them.
pub fn diagnose<P: AsRef<Path>>(paths: &[P]) -> Result<Report, LoadError> {
    let mut doctor = Doctor::new();
    let mut errors = Vec::new();
    for p in paths {
        if let Err(e) = doctor.read_file(p.as_ref()) {
            errors.push(e);
        }
    }
    if errors.is_empty() {
        Ok(doctor.finish())
    } else {
        Err(LoadError { errors })
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
