//! `virq check --guest linux-kvm`: a real Linux kernel's run judged by the one judge, from the
//! files such a run leaves (the kernel's serial console log, the hvc0 log when used) and the
//! devices' own records, read the same way `virq doctor` reads them.
//!
//! Whether the run itself did what it was meant to (the kernel stopped cleanly, the block
//! layer read the partition table, the hwrng took entropy) is the harness's business, not the
//! interrupt chain's: it is reported beside the judgement as [`Workload`] lines, and a run
//! whose workload did not happen cannot show that the chain holds.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use serde::Serialize;
use virq_events::{Event, EventKind};
use virq_judge::{Judge, Judgement, Overall};
use virq_kvm::{GuestExit, GuestRun};

use crate::evidence::LogsError;

/// The files one boot leaves.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct GuestLogs {
    /// The kernel's console on ttyS0.
    pub serial: String,
    /// The kernel's console on hvc0 (virtio-console), when used.
    pub hvc: String,
    /// Every device's own record (tagged with its BDF).
    pub record: Vec<Event>,
}

/// One thing the run had to do for its judgement to mean anything.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Workload {
    /// Whether it happened.
    pub done: bool,
    /// What it is (a partition table read, rng bytes, a console line).
    pub what: String,
}

/// The judgement of one boot.
#[derive(Clone, Debug, Serialize)]
pub struct GuestVerdict {
    /// The judge's answers for every device the boot's evidence named.
    pub judgement: Judgement,
    /// What the boot had to do, each done or not.
    pub workload: Vec<Workload>,
    /// The files the boot left.
    pub logs: GuestLogs,
}

impl GuestVerdict {
    /// Every device's chain holds or could not be shown broken, and the workload happened.
    pub fn holds(&self) -> bool {
        self.workload.iter().all(|w| w.done)
            && self.judgement.overall() != Some(Overall::Broken)
            && !self.judgement.subjects.is_empty()
    }
}

impl GuestLogs {
    /// File name of [`GuestLogs::serial`].
    pub const SERIAL: &'static str = "serial.log";
    /// File name of [`GuestLogs::hvc`].
    pub const HVC: &'static str = "hvc.log";
    /// File name of [`GuestLogs::record`].
    pub const RECORD: &'static str = "devices.jsonl";

    /// The files a boot's run leaves: its two consoles and the devices' records (console
    /// `LogLine` events dropped: the consoles hold them).
    pub fn from_run(run: &GuestRun) -> Self {
        GuestLogs {
            serial: run.serial_log.clone(),
            hvc: run.hvc_log.clone(),
            record: run
                .events
                .iter()
                .filter(|e| !matches!(e.kind, EventKind::LogLine { .. }))
                .cloned()
                .collect(),
        }
    }

    /// Every event the files hold, as the doctor reads them.
    pub fn evidence(&self) -> Result<Vec<Event>, LogsError> {
        let mut events = Vec::new();
        for (name, text) in [(Self::SERIAL, &self.serial), (Self::HVC, &self.hvc)] {
            if text.trim().is_empty() {
                continue;
            }
            let parsed = virq_doctor::parse_reader(
                name,
                text.as_bytes(),
                virq_doctor::ParseLimits::default(),
                |e| events.push(e),
            );
            // A console that printed nothing the doctor recognises says nothing.
            if let Err(e) = parsed
                && !matches!(e, virq_doctor::SourceError::NotRecognised { .. })
            {
                return Err(LogsError::Unreadable {
                    file: name,
                    reason: e.to_string(),
                });
            }
        }
        events.extend(self.record.iter().cloned());
        Ok(events)
    }

    /// The judge's verdict on the files, as `virq doctor` would read them.
    pub fn judge(&self) -> Result<Judgement, LogsError> {
        let mut judge = Judge::new();
        for e in self.evidence()? {
            judge.observe(&e);
        }
        Ok(judge.finish())
    }

    /// Writes the files into `dir`.
    pub fn write_to(&self, dir: &Path) -> Result<Vec<PathBuf>, LogsError> {
        let fail = |path: &Path, source| LogsError::Write {
            path: path.to_path_buf(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(|e| fail(dir, e))?;
        let mut record = String::new();
        for e in &self.record {
            record.push_str(&serde_json::to_string(e).expect("events serialise"));
            record.push('\n');
        }
        let mut paths = Vec::new();
        for (name, text) in [
            (Self::SERIAL, &self.serial),
            (Self::HVC, &self.hvc),
            (Self::RECORD, &record),
        ] {
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
}

/// Judges one boot.
pub fn judge_run(run: &GuestRun) -> Result<GuestVerdict, LogsError> {
    let logs = GuestLogs::from_run(run);
    let judgement = logs.judge()?;
    let mut workload = vec![
        Workload {
            done: matches!(run.exit, GuestExit::Reboot | GuestExit::Shutdown),
            what: format!(
                "the kernel ran to its end and stopped cleanly ({:?})",
                run.exit
            ),
        },
        Workload {
            done: run.data.partition_table_read && run.data.blk_reads > 0,
            what: format!(
                "virtio-blk: the partition table was read ({} reads)",
                run.data.blk_reads
            ),
        },
        Workload {
            done: run.data.rng_bytes > 0,
            what: format!("virtio-rng: {} entropy bytes taken", run.data.rng_bytes),
        },
    ];
    if run.hvc_console {
        workload.push(Workload {
            done: run.data.hvc_lines >= 5,
            what: format!(
                "virtio-console: {} log lines through hvc0",
                run.data.hvc_lines
            ),
        });
    }
    Ok(GuestVerdict {
        judgement,
        workload,
        logs,
    })
}
