//! What one mode's run leaves behind: the files a Windows driver developer would have after the
//! same run on a real machine (the DbgView capture; WinDbg's `!pcitree`, the start IRP with
//! `!irp` and `dt` of its resource lists, `!pci` with an `!dd` of the MSI-X table, `!devnode`
//! and `!cmreslist`; the driver's INF) plus the device's own record, and the one judge's answer
//! over exactly those.
//!
//! `virq check` judges a run by parsing its own files with the doctor's readers and handing
//! them, with the device's record, to [`virq_judge`]: `virq doctor` on the same files reaches
//! the same verdict by construction, and every run proves the readers read what the model
//! writes.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use virq_events::Event;
use virq_judge::{Judge, Judgement};

/// The files of one mode, by name, as `virq check --logs DIR` writes them.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ModeLogs {
    /// The DbgView capture, saved as DbgView saves it (tab-separated, CRLF).
    pub dbgview: String,
    /// WinDbg `!pcitree`: the bus with the host bridge and the device.
    pub pcitree: String,
    /// WinDbg at the driver's `IRP_MN_START_DEVICE` (checklist 1.3): `!irp` of the start IRP
    /// and `dt nt!_IO_STACK_LOCATION` of its current location (the `StartDevice` pointers).
    pub irp: String,
    /// `dt nt!_CM_RESOURCE_LIST` of `AllocatedResources` and `AllocatedResourcesTranslated`,
    /// each descriptor dumped with its union.
    pub dt: String,
    /// WinDbg `!pci` of the device after the run, then `!dd`/`!dq` of its MSI-X table and PBA.
    pub pci: String,
    /// WinDbg `!devnode` of the device (state, raw and translated lists) and `!cmreslist` of the
    /// translated list.
    pub devnode: String,
    /// The INF the reference driver was installed with.
    pub inf: String,
    /// The device's own record (what no text on a real machine shows): JSON lines.
    pub record: Vec<Event>,
}

/// Why the files could not be written or read back.
#[derive(Debug, thiserror::Error)]
pub enum LogsError {
    /// A log file could not be written.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        #[source]
        source: std::io::Error,
    },
    /// A file written by this run does not parse: a writer and its reader disagree.
    #[error("virq check wrote {file} and cannot read it back: {reason}")]
    Unreadable {
        /// The file name.
        file: &'static str,
        /// What the reader said.
        reason: String,
    },
}

impl ModeLogs {
    /// File name of [`ModeLogs::dbgview`].
    pub const DBGVIEW: &'static str = "dbgview.log";
    /// File name of [`ModeLogs::pcitree`].
    pub const PCITREE: &'static str = "pcitree.txt";
    /// File name of [`ModeLogs::irp`].
    pub const IRP: &'static str = "irp.txt";
    /// File name of [`ModeLogs::dt`].
    pub const DT: &'static str = "dt.txt";
    /// File name of [`ModeLogs::pci`].
    pub const PCI: &'static str = "pci.txt";
    /// File name of [`ModeLogs::devnode`].
    pub const DEVNODE: &'static str = "devnode.txt";
    /// File name of [`ModeLogs::inf`].
    pub const INF: &'static str = "driver.inf";
    /// File name of [`ModeLogs::record`].
    pub const RECORD: &'static str = "device.jsonl";

    /// The text files, in the order the judge reads them (the `!irp` before the `dt` of the
    /// lists it names).
    pub fn texts(&self) -> [(&'static str, &str); 7] {
        [
            (Self::DBGVIEW, self.dbgview.as_str()),
            (Self::PCITREE, self.pcitree.as_str()),
            (Self::IRP, self.irp.as_str()),
            (Self::DT, self.dt.as_str()),
            (Self::PCI, self.pci.as_str()),
            (Self::DEVNODE, self.devnode.as_str()),
            (Self::INF, self.inf.as_str()),
        ]
    }

    /// The WinDbg files only, in the order [`ModeLogs::texts`] has them: what a user with a
    /// kernel debugger and no capture has.
    pub fn windbg_texts(&self) -> [(&'static str, &str); 5] {
        [
            (Self::PCITREE, self.pcitree.as_str()),
            (Self::IRP, self.irp.as_str()),
            (Self::DT, self.dt.as_str()),
            (Self::PCI, self.pci.as_str()),
            (Self::DEVNODE, self.devnode.as_str()),
        ]
    }

    /// The device record as JSON lines.
    pub fn record_jsonl(&self) -> String {
        let mut out = String::new();
        for e in &self.record {
            out.push_str(&serde_json::to_string(e).expect("events serialise"));
            out.push('\n');
        }
        out
    }

    /// Writes every file into `dir` (created if needed); returns their paths.
    pub fn write_to(&self, dir: &Path) -> Result<Vec<PathBuf>, LogsError> {
        let fail = |path: &Path, source| LogsError::Write {
            path: path.to_path_buf(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(|e| fail(dir, e))?;
        let mut paths = Vec::new();
        let record = self.record_jsonl();
        let files = self
            .texts()
            .into_iter()
            .chain([(Self::RECORD, record.as_str())]);
        for (name, text) in files {
            if text.is_empty() {
                continue;
            }
            let path = dir.join(name);
            let mut f = std::fs::File::create(&path).map_err(|e| fail(&path, e))?;
            f.write_all(text.as_bytes()).map_err(|e| fail(&path, e))?;
            paths.push(path);
        }
        Ok(paths)
    }

    /// Every event the files hold, as the doctor reads them: each text parsed under its file
    /// name, then the device record.
    pub fn evidence(&self) -> Result<Vec<Event>, LogsError> {
        let mut events = Vec::new();
        let mut windbg = virq_doctor::WinDbgContext::default();
        for (name, text) in self.texts() {
            if text.is_empty() {
                continue;
            }
            virq_doctor::parse_reader_in(
                name,
                text.as_bytes(),
                virq_doctor::ParseLimits::default(),
                &mut windbg,
                |e| events.push(e),
            )
            .map_err(|e| LogsError::Unreadable {
                file: name,
                reason: e.to_string(),
            })?;
        }
        events.extend(self.record.iter().cloned());
        Ok(events)
    }

    /// The judge's answer over these files.
    pub fn judge(&self) -> Result<Judgement, LogsError> {
        let mut judge = Judge::new();
        for e in self.evidence()? {
            judge.observe(&e);
        }
        Ok(judge.finish())
    }
}
