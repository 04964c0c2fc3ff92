//! The virq doctor: reads the evidence a user has from a broken machine (DbgView captures and
//! virtio-win drivers' own prints, WinDbg output (`!pcitree`, `!pci`, `!dd`/`!dq` of the MSI-X
//! table, `!devnode`, `!cmreslist`, `!irp` and `dt` of the start IRP's resource lists, read by
//! the readers beside their writers in `virq_win7::windbg`, `!idt`), the driver's INF,
//! Linux `/proc/interrupts`, `lspci -vvv`, kernel logs), as people save or paste it, turns it
//! into [`virq_events::Event`]s, and judges each link of the interrupt chain against the
//! bring-up checklist (section 6) and the failure catalogue, quoting the lines that prove it.
//! `docs/log-formats.md` lists the shapes it reads.
//!
//! Linux evidence is read as people paste it: `/proc/interrupts` with or without its `CPU0`
//! header (a `grep virtio` slice), on any interrupt controller (IO-APIC, PCI-MSI and per-device
//! MSI domains, GIC and ITS, PLIC and APLIC), shell prompts and all; `lspci` from `-v` to `-vvv`,
//! with `-nn`, `-k`, `-D` or cut by `grep -A`; dmesg in every stamp style and journalctl, with
//! each boot a start of its own. Every event names the function it is about when the text does.
//!
//! Judging is the one judge's ([`virq_judge`]); this crate reads the formats. Files stream
//! through in bounded memory; past a file's first MiB a second thread reads the lines and
//! works out what depends on each line alone (prefixes, keyword hits) while the caller's
//! thread parses and judges, so readers passed to [`Doctor::read`] are `Send`.
//!
//! ```no_run
//! let result = virq_doctor::diagnose(&["capture.log", "pci.txt"]);
//! match &result {
//!     Ok(report) => print!("{}", report.render_text()),
//!     Err(e) => eprintln!("{e}"),
//! }
//! std::process::exit(virq_doctor::exit_code(&result));
//! ```

#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod detect;
pub mod error;
pub mod evidence;
pub mod gate;
pub mod html;
pub mod lines;
pub mod parse;
pub mod report;
pub mod text;

pub use detect::Format;
pub use error::{LoadError, SourceError};
pub use evidence::{Doctor, diagnose};
pub use parse::{
    FileSummary, ParseLimits, WinDbgContext, parse_reader, parse_reader_in, parse_to_vec,
};
pub use report::{EXIT_BROKEN, EXIT_INCOMPLETE, EXIT_OK, EXIT_UNREADABLE, Report, exit_code};
pub use virq_judge::{Answer, Check, Judgement, Overall, Subject, Verdict};
