//! `virq check`: the checklist's seven steps, run end to end on the simulated Windows 7
//! machine against a real virtio-pci device, for every interrupt mode Windows can hand out.
//!
//! One run per mode: the machine boots (firmware sizes and places the BARs), the reference
//! driver creates its interrupt objects (in `EvtDriverDeviceAdd` on KMDF 1.9, before any
//! resource), the PnP manager reads the INF policy and the device's MSI-X capability, the
//! arbiter grants all the messages requested, exactly one, or the line, the PCI bus driver
//! programs the MSI-X table, KMDF hands the resources to the objects, and the reference driver
//! (the guest bring-up library plus KMDF glue) counts its message descriptors, negotiates,
//! programs the vector selectors with read-back, and drives real block I/O whose completions
//! must arrive as interrupts. Every mode then sleeps and resumes: KMDF disconnects the
//! interrupts, `EvtDeviceD0Exit` stops the device, it comes back reset, and `EvtDeviceD0Entry`
//! programs and reads back every vector before the interrupts are connected again. What the
//! driver prints passes the machine's Debug Print Filter first. Each step is judged from what the run left behind: the DbgView capture, the
//! WinDbg text of the start IRP (`!irp`, `dt` of its resource lists), `!pcitree`, the `!pci` dump
//! with `!dd` of the MSI-X table, `!devnode`, the device's own read-backs and the ISR/DPC
//! counters (the files `virq check --logs` writes, [`ModeLogs`]).

#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod adapters;
pub mod evidence;
pub mod faults;
mod os;
pub mod real_guest;
mod report;
mod run;

pub use evidence::{LogsError, ModeLogs};
pub use faults::Fault;
pub use real_guest::{GuestLogs, GuestVerdict, judge_run};
pub use report::{proof_line, render_answer_text, render_text};
pub use run::{ModeReport, run_mode};
pub use virq_judge::{Overall, Subject};

use serde::{Deserialize, Serialize};
pub use virq_guest::VectorPolicy;
pub use virq_win7::{DebugPrintFilter, KmdfVersion};

/// The interrupt modes Windows 7 can give a PCI function.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// MSI-X with a message for the configuration vector and one per queue.
    MsixEnough,
    /// MSI-X with fewer messages than 1 + queues (the driver must share). Windows grants all
    /// the messages requested or exactly one, so this is one message unless `--granted` and
    /// the INF's `MessageNumberLimit` ask for fewer.
    MsixFewer,
    /// A level-triggered line (INTx).
    Intx,
}

impl Mode {
    /// Every mode, in the order a check runs them.
    pub const ALL: [Mode; 3] = [Mode::MsixEnough, Mode::MsixFewer, Mode::Intx];

    /// The `--mode` name of the mode.
    pub fn name(self) -> &'static str {
        match self {
            Mode::MsixEnough => "msix-enough",
            Mode::MsixFewer => "msix-fewer",
            Mode::Intx => "intx",
        }
    }

    /// The mode a `--mode` name means.
    pub fn from_name(s: &str) -> Option<Mode> {
        Mode::ALL.into_iter().find(|m| m.name() == s)
    }

    /// How a Windows driver developer would describe the mode.
    pub fn title(self) -> &'static str {
        match self {
            Mode::MsixEnough => "MSI-X, one message per queue plus config",
            Mode::MsixFewer => "MSI-X, fewer messages than 1 + queues",
            Mode::Intx => "INTx (line-based, level-triggered)",
        }
    }
}

/// The virtio device type under test.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DeviceKind {
    /// virtio-blk.
    Blk,
    /// virtio-rng.
    Rng,
    /// virtio-console.
    Console,
}

impl DeviceKind {
    /// The device type a `--device` name means.
    pub fn from_name(s: &str) -> Option<DeviceKind> {
        match s {
            "blk" => Some(DeviceKind::Blk),
            "rng" => Some(DeviceKind::Rng),
            "console" => Some(DeviceKind::Console),
            _ => None,
        }
    }
}

/// INF interrupt policy for the reference driver.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum InfChoice {
    /// The mode decides: MSISupported=1 for the MSI-X modes, no keys for INTx.
    Auto,
    /// `MSISupported=1`, with `MessageNumberLimit` when given.
    Msi {
        /// `MessageNumberLimit` under `Interrupt Management\MessageSignaledInterruptProperties`.
        limit: Option<u32>,
    },
    /// No MSI keys at all: Windows grants a line.
    LineOnly,
    /// The text of a user's INF, and the install section to use.
    Text {
        /// The INF text.
        text: String,
        /// The `[DDInstall]` section to install from.
        install: String,
    },
}

/// What to run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckOptions {
    /// The device type to check.
    pub device: DeviceKind,
    /// Request queues (virtio-blk multiqueue).
    pub queues: u16,
    /// MSI-X table size; `None` means 1 + queues. 0 removes the capability.
    pub msix_table: Option<u16>,
    /// The INF interrupt policy the reference driver is installed with.
    pub inf: InfChoice,
    /// Messages the platform can give at most in the MSI-X modes; `None`: all asked for in
    /// `msix-enough`, 1 in `msix-fewer`. A request above it gets exactly one message (Windows
    /// grants all, one, or a line; never N of M).
    pub granted: Option<u32>,
    /// The modes to run, in order.
    pub modes: Vec<Mode>,
    /// A catalogue fault to inject (driver, OS or device side), or none.
    pub inject: Option<Fault>,
    /// Block reads submitted per queue.
    pub requests_per_queue: u16,
    /// Interrupts one CPU run may take before the machine calls it a storm.
    pub interrupt_budget: u64,
    /// How the reference driver plans its vectors: the checklist's rule (per-queue when
    /// enough messages, else everything on message 0) or Linux's ladder (per-queue, shared,
    /// then INTx).
    pub policy: VectorPolicy,
    /// The framework the reference driver runs on: 1.9 (Windows 7's inbox KMDF, interrupt
    /// objects created in `EvtDriverDeviceAdd`) or 1.11 (created in
    /// `EvtDevicePrepareHardware`).
    pub kmdf: KmdfVersion,
    /// The Debug Print Filter of the machine: the checklist assumes `IHVDRIVER = 0xF`.
    pub print_filter: DebugPrintFilter,
    /// pci.sys sets PCI Command bit 10 (Interrupt Disable) when message interrupts are
    /// granted. Seen in a published `!pci` dump, unverified on Windows 7 itself: off by default.
    pub msi_interrupt_disable: bool,
}

impl CheckOptions {
    /// How the report names the Windows 7 it modelled.
    pub fn model_summary(&self) -> String {
        format!(
            "Windows 7 x64, KMDF {}{}, {}, pci.sys Interrupt Disable with messages {} (unverified)",
            self.kmdf.name(),
            if self.kmdf == KmdfVersion::V1_9 {
                " (inbox)"
            } else {
                ""
            },
            self.print_filter.describe(),
            if self.msi_interrupt_disable {
                "on"
            } else {
                "off"
            }
        )
    }
}

impl Default for CheckOptions {
    fn default() -> Self {
        CheckOptions {
            device: DeviceKind::Blk,
            queues: 2,
            msix_table: None,
            inf: InfChoice::Auto,
            granted: None,
            modes: Mode::ALL.to_vec(),
            inject: None,
            requests_per_queue: 8,
            interrupt_budget: 10_000,
            policy: VectorPolicy::Checklist,
            kmdf: KmdfVersion::default(),
            print_filter: DebugPrintFilter::checklist(),
            msi_interrupt_disable: false,
        }
    }
}

/// The whole check: one report per mode.
#[derive(Clone, Debug, Serialize)]
pub struct CheckReport {
    /// What was run.
    pub options: CheckOptions,
    /// One report per mode, in the order they ran.
    pub modes: Vec<ModeReport>,
}

impl CheckReport {
    /// True when every link held in every mode.
    pub fn all_hold(&self) -> bool {
        self.modes.iter().all(|m| m.overall == Overall::Holds)
    }
}

/// Errors that stop a check before any verdict.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    /// The options contradict each other or exceed a limit.
    #[error("invalid options: {0}")]
    Options(String),
    /// The simulated machine could not be built or its device could not be found.
    #[error("machine: {0}")]
    Machine(String),
}

/// Run the checklist for every requested mode.
pub fn run_check(options: &CheckOptions) -> Result<CheckReport, CheckError> {
    if options.queues == 0 || options.queues > 64 {
        return Err(CheckError::Options(format!(
            "queue count {} is outside 1..=64",
            options.queues
        )));
    }
    if options.modes.is_empty() {
        return Err(CheckError::Options("no interrupt mode selected".into()));
    }
    let mut modes = Vec::new();
    for &mode in &options.modes {
        modes.push(run_mode(options, mode)?);
    }
    Ok(CheckReport {
        options: options.clone(),
        modes,
    })
}
