//! Why an evidence file could not be used. Every message names the file and the reason, so a
//! user who passed five files knows which one to fix.

use thiserror::Error;

/// A single file the doctor could not read as evidence.
#[derive(Debug, Error)]
pub enum SourceError {
    #[error("{path}: no such file")]
    Missing { path: String },
    #[error("{path}: is a directory, not a capture file")]
    Directory { path: String },
    #[error("{path}: cannot be read: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: the file is empty")]
    Empty { path: String },
    #[error(
        "{path}: looks like UTF-16 text (byte-order mark {bom}); save it as ANSI/UTF-8 \
         (DbgView: File > Save As; PowerShell: Out-File -Encoding utf8) and try again"
    )]
    Utf16 { path: String, bom: &'static str },
    #[error("{path}: looks binary (NUL byte at offset {offset}); expected a text capture")]
    Binary { path: String, offset: u64 },
    #[error(
        "{path}: not a recognised format (expected a DbgView capture, WinDbg !pci/!devnode \
         output, /proc/interrupts, lspci -vvv or a kernel log)"
    )]
    NotRecognised { path: String },
}

impl SourceError {
    /// The file the error is about.
    pub fn path(&self) -> &str {
        match self {
            SourceError::Missing { path }
            | SourceError::Directory { path }
            | SourceError::Io { path, .. }
            | SourceError::Empty { path }
            | SourceError::Utf16 { path, .. }
            | SourceError::Binary { path, .. }
            | SourceError::NotRecognised { path } => path,
        }
    }
}

/// One or more files could not be used; the doctor reports them all at once.
#[derive(Debug, Error)]
#[error("{}", render(.errors))]
pub struct LoadError {
    pub errors: Vec<SourceError>,
}

fn render(errors: &[SourceError]) -> String {
    errors
        .iter()
        .map(|e| e.to_string())
        .collect::<Vec<_>>()
        .join("\n")
}

impl From<SourceError> for LoadError {
    fn from(e: SourceError) -> Self {
        LoadError { errors: vec![e] }
    }
}
