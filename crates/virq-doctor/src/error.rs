//! Why an evidence file could not be used. Every message names the file and the reason, so a
//! user who passed five files knows which one to fix.

use thiserror::Error;

/// A single file the doctor could not read as evidence.
#[derive(Debug, Error)]
pub enum SourceError {
    /// The path does not exist.
    #[error("{path}: no such file")]
    Missing {
        /// The path as given.
        path: String,
    },
    /// The path is a directory.
    #[error("{path}: is a directory, not a capture file")]
    Directory {
        /// The path as given.
        path: String,
    },
    /// The file could not be opened or read.
    #[error("{path}: cannot be read: {source}")]
    Io {
        /// The path as given.
        path: String,
        /// What the OS said.
        #[source]
        source: std::io::Error,
    },
    /// The file has no bytes.
    #[error("{path}: the file is empty")]
    Empty {
        /// The path as given.
        path: String,
    },
    #[error(
        "{path}: looks like UTF-16 text (byte-order mark {bom}); save it as ANSI/UTF-8 \
         (DbgView: File > Save As; PowerShell: Out-File -Encoding utf8) and try again"
    )]
    /// The file is UTF-16 (a BOM says so); captures must be saved as UTF-8 or ANSI.
    Utf16 {
        /// The path as given.
        path: String,
        /// Which BOM was found.
        bom: &'static str,
    },
    /// A NUL byte near the start: not a text capture.
    #[error("{path}: looks binary (NUL byte at offset {offset}); expected a text capture")]
    Binary {
        /// The path as given.
        path: String,
        /// Byte offset of the first NUL.
        offset: u64,
    },
    #[error(
        "{path}: not a recognised format (expected a DbgView capture, WinDbg !pci/!devnode \
         output, /proc/interrupts, lspci -vvv or a kernel log)"
    )]
    /// No line looks like any format the doctor reads.
    NotRecognised {
        /// The path as given.
        path: String,
    },
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
    /// Every file that failed, in the order given.
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
