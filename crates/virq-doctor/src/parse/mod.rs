//! The streaming parser: one pass over a `BufRead`, one bounded line at a time, turning every
//! recognised line into [`Event`]s that quote the file and line.
//!
//! One parser understands every format, because real evidence is mixed: a WinDbg log holds the
//! driver's DbgPrint output between `!pci` dumps, and a Linux bug report concatenates
//! `/proc/interrupts`, `lspci -vvv` and `dmesg`. Block-structured formats (a `!pci` MSI-X
//! capability, a resource entry, an lspci device) keep a little state and emit when the block
//! ends, quoting the line that carried the decisive value.

pub mod linux;
pub mod windows;

use crate::detect::{Format, Votes, cpu_header_columns, leading_bdf};
use crate::error::SourceError;
use crate::gate;
use crate::lines::{BINARY_SNIFF_BYTES, DEFAULT_MAX_LINE_BYTES, Line, LineReader};
use crate::text::{contains_ci, strip_prefixes};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::io::BufRead;
use virq_events::{Event, EventKind, Origin};
use virq_win7::windbg::{self, devnode as wdev, pci as wpci};

/// Bounds that keep a huge or hostile file from exhausting memory or time. Every structured
/// event is passed on wherever it appears (the judge keeps what it needs in bounded lists), and
/// so is every free-text line a rule reads (see [`decisive_line`]); only ordinary chatter is
/// capped, and what the cap skips is counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParseLimits {
    /// Longer lines are cut to this many bytes (and counted).
    pub max_line_bytes: usize,
    /// Ordinary free-text `LogLine` events quoted per file (a storm capture can print
    /// millions); past it they are counted in [`FileSummary::unquoted_log_lines`].
    pub max_log_lines: u64,
}

impl Default for ParseLimits {
    fn default() -> Self {
        Self {
            max_line_bytes: DEFAULT_MAX_LINE_BYTES,
            max_log_lines: 10_000,
        }
    }
}

/// What one file contributed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileSummary {
    /// The file as named on the command line.
    pub path: String,
    /// The detected format (the one most lines look like).
    pub format: Format,
    /// Lines read.
    pub lines: u64,
    /// Bytes read.
    pub bytes: u64,
    /// Lines longer than the limit, cut.
    pub truncated_lines: u64,
    /// Evidence the parser had to let go (events held back for a block past the memory
    /// bound): the judge notes it, and the answers it could change become *cannot tell*.
    pub dropped_events: u64,
    /// Ordinary free-text lines past [`ParseLimits::max_log_lines`], not quoted: no rule reads
    /// them (every line a rule reads is quoted wherever it is), so no answer depends on them.
    #[serde(default)]
    pub unquoted_log_lines: u64,
    /// WinDbg lines read for what they tell about others rather than as evidence: a start
    /// IRP naming its two resource lists (so a `dt` of either is read raw or translated), a
    /// `!pcitree` function.
    #[serde(default)]
    pub context_lines: u64,
    /// Event kinds found, by their JSON tag (`vector_written`, `irq_count`, ...).
    pub kinds: BTreeMap<String, u64>,
}

impl FileSummary {
    /// Events the file gave, of every kind.
    pub fn event_count(&self) -> u64 {
        self.kinds.values().sum()
    }
}

/// The JSON tag of an event kind (`vector_written`), used to summarise what a file held.
pub fn kind_name(kind: &EventKind) -> String {
    serde_json::to_value(kind)
        .ok()
        .and_then(|v| v.get("event").and_then(|t| t.as_str()).map(str::to_string))
        .unwrap_or_else(|| "unknown".to_string())
}

/// An event waiting for its origin to be attached.
struct Pending {
    kind: EventKind,
    line: u64,
    text: String,
    time_ns: Option<u64>,
    device: Option<String>,
}

/// A `!pci` MSI-X capability block being read.
struct MsixBlock {
    fields: wpci::MsixFields,
    line: u64,
    text: String,
    device: Option<String>,
    lines_seen: u32,
}

/// One `!pci` dump being read: the function it describes and what decides its MSI-X
/// capability, emitted when the dump ends (the raw Message Control word, when the dump shows
/// it, wins over the decoded capability lines: whether those print `TableSize` as N or N-1
/// is not settled).
struct PciDump {
    device: Option<String>,
    raw: wpci::RawConfig,
    cap_ptr: Option<u8>,
    msix_at: Option<u8>,
    /// The capability list's MSI-X fields and the line to quote.
    cap: Option<(wpci::MsixFields, u64, String)>,
    /// The function is not virtio (vendor other than 0x1AF4, virtio 1.2 section 4.1.2): its
    /// lines are not evidence about the device.
    foreign: bool,
}

/// A storport miniport's report of one granted message, being read.
struct StorportMsiBlock {
    msi: windows::StorportMsi,
    /// The `MessageId` line and the `InterruptVector` line.
    id_line: (u64, String),
    vector_line: Option<(u64, String)>,
    time_ns: Option<u64>,
}

/// The MSI-X capability as viostor/vioscsi print it, being read.
struct StorportMsixBlock {
    table_size_field: Option<u16>,
    function_masked: Option<bool>,
    enabled: Option<bool>,
    line: (u64, String),
    time_ns: Option<u64>,
}

/// A run of lines that may be an INF (or part of one) inside a mixed text: held until it ends,
/// then read as an INF, or, when it is none, fed to the other readers as if never held.
struct InfBlock {
    lines: Vec<Line>,
    bytes: usize,
}

/// One interrupt descriptor of a resource dump being read.
struct EntryBlock {
    entry: wdev::IntEntry,
    line: u64,
    text: String,
    device: Option<String>,
}

/// One `lspci` device block; its events go out as the function's when the block shows a
/// virtio function, and are held otherwise (see [`HeldDevice`]).
struct LspciBlock {
    bdf: String,
    virtio: bool,
    /// The IRQ of its pin (`Interrupt: pin A routed to IRQ 11`, `-v`'s `Flags: ..., IRQ 11`).
    irq: Option<u32>,
    /// Plain MSI is enabled: the IRQ `lspci` shows is the message's, not a pin's.
    msi_enabled: bool,
    /// MSI-X is enabled: the pin's IRQ is routed but unused.
    msix_enabled: bool,
    held: Vec<Pending>,
}

/// Evidence about a function not (yet) known to be virtio: an `lspci` block of another device,
/// or the INTx route the kernel printed for one. It matters only if that function turns out to
/// be virtio, or shares its IRQ with a virtio function (catalogue row 11); which of these holds
/// is known at the end of the file (or of the boot), so it is held until then.
struct HeldDevice {
    bdf: String,
    irq: Option<u32>,
    events: Vec<Pending>,
}

/// A kernel "irq N: nobody cared" report being read: a stack dump, its `handlers:` list, then
/// `Disabling IRQ #N`.
struct NobodyBlock {
    irq: u32,
    handlers: Vec<String>,
    collecting: bool,
    lines_seen: u32,
    line: u64,
    text: String,
    time_ns: Option<u64>,
}

/// Handlers kept per report (a shared line has a few).
const MAX_HANDLERS: usize = 32;
/// Lines between "nobody cared" and `handlers:` (a stack dump is a few dozen).
const MAX_NOBODY_LINES: u32 = 128;

/// A block's lines are few; more than this means the block never ended properly.
const MAX_BLOCK_LINES: u32 = 24;
/// Bytes of line text held back at once (an `lspci` block, held devices): the memory bound of
/// evidence whose fate is decided later. What does not fit is counted as dropped.
const MAX_HELD_BYTES: usize = 8 << 20;
/// Functions remembered as virtio, and IRQs as virtio's lines.
const MAX_KNOWN: usize = 4096;
/// Functions held at once.
const MAX_HELD_DEVICES: usize = 256;
/// Function names remembered for `/proc/interrupts` rows.
const MAX_FUNCTION_NAMES: usize = 64;

/// What WinDbg text said about addresses, kept across the files one reading takes in (a
/// `!irp` in one file names the lists a `dt` in another dumps): resource lists by address,
/// raw or translated, and where a function's MSI-X table and PBA sit. Bounded.
#[derive(Debug, Default, Clone)]
pub struct WinDbgContext {
    /// (address, raw) of every resource list named: the start IRP's `AllocatedResources` /
    /// `AllocatedResourcesTranslated`, `!devnode`'s `CmResourceList` / `TranslatedResourceList`.
    lists: Vec<(u64, bool)>,
    /// The MSI-X table and PBA a `!pci` dump located, with the function it named.
    msix: Vec<(Option<String>, windbg::dd::MsixLocation)>,
}

/// Lists and MSI-X locations remembered (a session names a few).
const MAX_WINDBG_ADDRESSES: usize = 256;
/// Descriptors a list can hold for a descriptor's address to be taken as one of its own.
const MAX_LIST_DESCRIPTORS: u64 = 4096;

impl WinDbgContext {
    fn note_list(&mut self, address: u64, raw: bool) {
        if address == 0 {
            return;
        }
        if let Some(slot) = self.lists.iter_mut().find(|(a, _)| *a == address) {
            slot.1 = raw;
        } else if self.lists.len() < MAX_WINDBG_ADDRESSES {
            self.lists.push((address, raw));
        }
    }

    /// Whether the list at `address` is the raw one, when a start IRP or `!devnode` said.
    pub fn list_is_raw(&self, address: u64) -> Option<bool> {
        self.lists
            .iter()
            .find(|(a, _)| *a == address)
            .map(|(_, r)| *r)
    }

    /// Whether the descriptor at `address` belongs to a raw list: the nearest list below it
    /// whose descriptor array it falls in.
    pub fn descriptor_is_raw(&self, address: u64) -> Option<bool> {
        use windbg::dt::{DESCRIPTOR_SIZE, FIRST_DESCRIPTOR};
        self.lists
            .iter()
            .filter(|(a, _)| {
                address >= a + FIRST_DESCRIPTOR
                    && (address - a - FIRST_DESCRIPTOR) % DESCRIPTOR_SIZE == 0
                    && (address - a - FIRST_DESCRIPTOR) / DESCRIPTOR_SIZE < MAX_LIST_DESCRIPTORS
            })
            .max_by_key(|(a, _)| *a)
            .map(|(_, r)| *r)
    }

    fn note_msix(&mut self, device: Option<String>, loc: windbg::dd::MsixLocation) {
        self.msix.retain(|(d, _)| *d != device);
        if self.msix.len() < MAX_WINDBG_ADDRESSES {
            self.msix.push((device, loc));
        }
    }

    /// The function whose MSI-X table or PBA holds `address`.
    fn msix_at(&self, address: u64) -> Option<(Option<String>, windbg::dd::MsixLocation)> {
        self.msix
            .iter()
            .rev()
            .find(|(_, l)| l.contains(address))
            .cloned()
    }
}

/// Without a pointer that says which list a descriptor is from: an IDT vector is below 0x100
/// and at least 0x30, so a larger or smaller one (a raw message's, a line's IRQ with its level
/// equal to it) is the raw list's.
fn guess_raw(d: &windbg::dt::DtDescriptor) -> bool {
    match d.to_event(false) {
        Some(EventKind::ResourceAssigned {
            mode,
            level,
            vector,
            ..
        }) => {
            vector > 0xFF
                || (mode == virq_events::InterruptMode::Intx && level == vector && vector < 0x30)
        }
        _ => false,
    }
}

/// A `dt` command's output being read, with the lines a descriptor may quote.
struct DtBlock {
    reader: windbg::dt::DtReader,
    quotes: std::collections::VecDeque<(u64, String)>,
}

/// Lines of a `dt` block kept for quoting (a descriptor's `Type` and `Vector` lines).
const MAX_DT_QUOTES: usize = 64;

/// What a `/proc/interrupts` row's columns after its counts say, worked out once per text:
/// a capture repeats every row once per snapshot with only the counts changed.
#[derive(Debug, Clone)]
struct ProcRowShape {
    /// The name mentions virtio (only such rows are kept).
    kept: bool,
    name: String,
    chip: Option<String>,
    /// A bare `virtioN` handler: virtio_pci's INTx handler, so the IRQ is its line.
    line_handler: bool,
    /// The function the controller column names (a message's domain).
    function: Option<linux::PciFunction>,
    /// Else each `virtioN` whose handler the row lists.
    virtio: Vec<String>,
}

impl ProcRowShape {
    fn of(row: &linux::ProcRowRef<'_>) -> Self {
        let name = row.name();
        ProcRowShape {
            kept: row.name_contains_ci("virtio"),
            chip: row.chip(),
            line_handler: linux::has_line_handler(&name),
            function: linux::chip_function(row.chip_span()),
            virtio: linux::virtio_devices(&name)
                .into_iter()
                .map(str::to_string)
                .collect(),
            name,
        }
    }
}

/// Row shapes remembered per file (a machine has a few hundred IRQs), and the longest row
/// text after the counts remembered (a real one is a few dozen bytes): at most 256 KiB.
const MAX_PROC_ROWS: usize = 1024;
const MAX_PROC_TAIL: usize = 256;

/// The per-file parser state.
struct Parser {
    limits: ParseLimits,
    votes: Votes,
    out: Vec<Pending>,
    windbg_device: Option<String>,
    msix: Option<MsixBlock>,
    section: wdev::ResSection,
    entry: Option<EntryBlock>,
    proc_cpus: Option<usize>,
    lspci: Option<LspciBlock>,
    /// Functions known to be virtio (an `lspci` block, a `virtio-pci` kernel message, a
    /// `/proc/interrupts` row), as `lspci` prints them.
    virtio_bdfs: BTreeSet<String>,
    /// IRQs of virtio functions' INTx lines.
    virtio_irqs: BTreeSet<u32>,
    function_names: Vec<(linux::PciFunction, String)>,
    /// The `/proc/interrupts` rows naming virtio read so far, by IRQ: the row's text after
    /// its counts, and its shape.
    proc_rows: BTreeMap<String, (String, ProcRowShape)>,
    held: Vec<HeldDevice>,
    held_bytes: usize,
    /// The function a shell command named (`lspci -vvv -s 00:04.0 | grep MSI-X`): its output
    /// lost the device header, the command did not.
    shell_device: Option<String>,
    /// The last WinDbg command (`!devnode`, `!pci`, ...), lower-case.
    command: String,
    log_lines: u64,
    unquoted: u64,
    /// Lines read for context ([`FileSummary::context_lines`]).
    context: u64,
    dropped: u64,
    /// Events read whole from JSON lines, passed on as they are.
    verbatim: Vec<Event>,
    /// The driver has run (printed register accesses, counters...) since its last start.
    driver_active: bool,
    nobody: Option<NobodyBlock>,
    /// Inside a report virq printed (`virq check: ...` to `verdict: ...`, `virq doctor: ...`
    /// to `Result: ...`): the end marker. A report quotes evidence; it is none itself.
    in_report: Option<&'static str>,
    pci: Option<PciDump>,
    /// The bus of a `!pci` listing (`PCI Bus 0`), for its `DD:F` summary lines.
    pci_bus: Option<u8>,
    storport_msi: Option<StorportMsiBlock>,
    storport_msix: Option<StorportMsixBlock>,
    /// NetKVM's unified IRQL of its messages (`Using MSIX interrupts (N messages, irql I)`).
    netkvm_irql: Option<u8>,
    inf: Option<InfBlock>,
    /// Held lines are being fed again: none of them opens an INF block.
    replaying: bool,
    /// What WinDbg text said about addresses, across the files of one reading.
    ctx: WinDbgContext,
    /// A `dt` command's output being read.
    dt: Option<DtBlock>,
    /// An `!irp` command's output being read.
    irp: Option<windbg::irp::IrpReader>,
    /// A start IRP was read since the last start began: another one is a new start.
    irp_in_start: bool,
    /// An `!dd`/`!dq` of a function's MSI-X table or PBA being read, with the function.
    msix_memory: Option<(windbg::dd::MsixMemoryReader, Option<String>)>,
    /// In `!pcitree` output.
    pcitree: bool,
}

impl Parser {
    fn new(limits: ParseLimits) -> Self {
        Self {
            limits,
            votes: Votes::default(),
            out: Vec::new(),
            windbg_device: None,
            msix: None,
            section: wdev::ResSection::Unknown,
            entry: None,
            proc_cpus: None,
            lspci: None,
            virtio_bdfs: BTreeSet::new(),
            virtio_irqs: BTreeSet::new(),
            function_names: Vec::new(),
            proc_rows: BTreeMap::new(),
            held: Vec::new(),
            held_bytes: 0,
            shell_device: None,
            command: String::new(),
            log_lines: 0,
            unquoted: 0,
            context: 0,
            dropped: 0,
            verbatim: Vec::new(),
            driver_active: false,
            nobody: None,
            in_report: None,
            pci: None,
            pci_bus: None,
            storport_msi: None,
            storport_msix: None,
            netkvm_irql: None,
            inf: None,
            replaying: false,
            ctx: WinDbgContext::default(),
            dt: None,
            irp: None,
            irp_in_start: false,
            msix_memory: None,
            pcitree: false,
        }
    }

    fn push(&mut self, p: Pending) {
        if self.lspci.is_some() {
            if self.held_bytes + p.text.len() > MAX_HELD_BYTES {
                self.dropped += 1;
                return;
            }
            self.held_bytes += p.text.len();
            if let Some(block) = self.lspci.as_mut() {
                block.held.push(p);
            }
            return;
        }
        self.out.push(p);
    }

    /// An event about a named device (a kernel message's `virtio-pci 0000:00:04.0:` prefix, a
    /// `/proc/interrupts` row's function), outside any block.
    fn emit_for(
        &mut self,
        kind: EventKind,
        line: &Line,
        time_ns: Option<u64>,
        device: Option<String>,
    ) {
        self.out.push(Pending {
            kind,
            line: line.number,
            text: line.text.clone(),
            time_ns,
            device,
        });
    }

    fn emit(&mut self, kind: EventKind, line: &Line, time_ns: Option<u64>) {
        self.emit_at(kind, line.number, line.text.clone(), time_ns);
    }

    /// [`Parser::emit`] for an event quoting a line read earlier.
    fn emit_at(&mut self, kind: EventKind, line: u64, text: String, time_ns: Option<u64>) {
        if self.lspci.is_none() && self.pci.as_ref().is_some_and(|d| d.foreign) {
            return;
        }
        let device = self
            .lspci
            .as_ref()
            .map(|b| b.bdf.clone())
            .or_else(|| self.windbg_device.clone());
        self.push(Pending {
            kind,
            line,
            text,
            time_ns,
            device,
        });
    }

    /// What a driver printed: a resource dump (or a pre-start interrupt query) after the
    /// driver ran is the driver starting again (reboot, re-install, rebalance, mode switch),
    /// so a new start begins at the first of them.
    fn driver_events(&mut self, events: Vec<(EventKind, u64, String)>, time: Option<u64>) {
        let Some((_, first_line, first_text)) = events.first() else {
            return;
        };
        if self.driver_active && events.iter().any(|(k, _, _)| k.is_driver_start()) {
            let (line, text) = (*first_line, first_text.clone());
            self.emit_at(
                EventKind::SessionStart {
                    label: format!("driver start at line {line}"),
                },
                line,
                text,
                time,
            );
            self.driver_active = false;
            self.irp_in_start = false;
        }
        self.driver_active |= events.iter().any(|(k, _, _)| k.is_driver_activity());
        for (k, line, text) in events {
            self.emit_at(k, line, text, time);
        }
    }

    /// One `virq_events::Event` as JSON (a run's own evidence): kept exactly as it is,
    /// origin included, so the judge sees the run as the run saw itself (a device's record, or
    /// a line of the file the run parsed).
    fn event_line(&mut self, raw: &str, _line: &Line) -> bool {
        let Ok(e) = serde_json::from_str::<virq_events::Event>(raw.trim()) else {
            return false;
        };
        self.votes.vote(Format::Events);
        self.verbatim.push(e);
        true
    }

    fn end_msix(&mut self) {
        if let Some(b) = self.msix.take() {
            if let Some(dump) = self.pci.as_mut().filter(|d| d.device == b.device) {
                if b.fields.any() {
                    dump.cap = Some((b.fields, b.line, b.text));
                }
                return;
            }
            if b.fields.any() {
                let (enabled, function_masked, table_size) = b.fields.decode();
                self.push(Pending {
                    kind: EventKind::MsixCapabilitySeen {
                        enabled,
                        function_masked,
                        table_size,
                    },
                    line: b.line,
                    text: b.text,
                    time_ns: None,
                    device: b.device,
                });
            }
        }
    }

    fn end_entry(&mut self) {
        if let Some(b) = self.entry.take() {
            if let Some(kind) = b.entry.to_event() {
                self.push(Pending {
                    kind,
                    line: b.line,
                    text: b.text,
                    time_ns: None,
                    device: b.device,
                });
            }
        }
    }

    fn end_lspci(&mut self) {
        let Some(block) = self.lspci.take() else {
            return;
        };
        let bytes: usize = block.held.iter().map(|p| p.text.len()).sum();
        self.held_bytes = self.held_bytes.saturating_sub(bytes);
        let mut events = block.held;
        // With plain MSI enabled, the IRQ lspci shows is the message's: it routes no pin.
        if block.msi_enabled {
            events.retain(|p| !matches!(p.kind, EventKind::IntxRouted { .. }));
        }
        let irq = block.irq.filter(|_| !block.msi_enabled);
        if block.virtio {
            // With MSI-X on, the pin is routed but silent: not a line the device uses.
            let line = irq.filter(|_| !block.msix_enabled);
            self.note_virtio(Some(&block.bdf), line);
            self.out.extend(events);
        } else if irq.is_some() {
            // Another device: it matters if its line is a virtio function's too.
            self.hold(block.bdf, irq, events);
        }
    }

    /// Remembers a virtio function and the IRQ of its line.
    fn note_virtio(&mut self, bdf: Option<&str>, irq: Option<u32>) {
        if let Some(bdf) = bdf {
            if self.virtio_bdfs.len() < MAX_KNOWN && !self.virtio_bdfs.contains(bdf) {
                self.virtio_bdfs.insert(bdf.to_string());
            }
        }
        if let Some(irq) = irq {
            if self.virtio_irqs.len() < MAX_KNOWN {
                self.virtio_irqs.insert(irq);
            }
        }
    }

    /// Holds evidence about a function not known to be virtio (see [`HeldDevice`]).
    fn hold(&mut self, bdf: String, irq: Option<u32>, events: Vec<Pending>) {
        let bytes: usize = events.iter().map(|p| p.text.len()).sum();
        let at = self.held.iter().position(|h| h.bdf == bdf);
        let full = at.is_none() && self.held.len() >= MAX_HELD_DEVICES;
        if full || self.held_bytes + bytes > MAX_HELD_BYTES {
            self.dropped += events.len() as u64;
            return;
        }
        self.held_bytes += bytes;
        match at {
            Some(i) => {
                let h = &mut self.held[i];
                h.irq = h.irq.or(irq);
                h.events.extend(events);
            }
            None => self.held.push(HeldDevice { bdf, irq, events }),
        }
    }

    /// Passes on the held evidence of every function that turned out to be virtio or to share
    /// a virtio function's IRQ; the rest concerns other devices only and goes.
    fn release_held(&mut self) {
        for h in std::mem::take(&mut self.held) {
            let shares = h.irq.is_some_and(|irq| self.virtio_irqs.contains(&irq));
            if shares || self.virtio_bdfs.contains(&h.bdf) {
                self.out.extend(h.events);
            }
        }
        self.held_bytes = self
            .lspci
            .as_ref()
            .map_or(0, |b| b.held.iter().map(|p| p.text.len()).sum());
    }

    fn end_blocks(&mut self) {
        self.end_windbg_output();
        self.end_msix();
        self.end_entry();
        self.end_lspci();
        self.end_nobody();
        self.end_storport();
    }

    /// Ends the `!pci` dump being read: its MSI-X capability from the raw Message Control
    /// word when the dump shows one, else from the capability lines.
    fn end_pci(&mut self) {
        self.end_msix();
        let Some(d) = self.pci.take() else {
            return;
        };
        if d.foreign {
            return;
        }
        let cap_at = d.raw.find_msix(d.msix_at, d.cap_ptr);
        // Where the table and PBA are, for an `!dd` of them later.
        if let Some(m) = cap_at.and_then(|at| d.raw.msix_cap(at)) {
            let bars = d.raw.bars();
            // A BAR at the top of the address space (user text) puts no table past 2^64.
            let at =
                |bir, offset: u32| wpci::bar_address(&bars, bir)?.checked_add(u64::from(offset));
            if let (Some(table), Some(pba)) =
                (at(m.table_bir, m.table_offset), at(m.pba_bir, m.pba_offset))
            {
                self.ctx.note_msix(
                    d.device.clone(),
                    windbg::dd::MsixLocation {
                        table,
                        entries: m.table_size(),
                        pba,
                    },
                );
            }
        }
        let raw = cap_at.and_then(|at| d.raw.msix_control(at));
        let (fields, line, text) = match (raw, d.cap) {
            (Some((control, (line, text))), _) => (
                wpci::MsixFields {
                    control: Some(control),
                    ..Default::default()
                },
                *line,
                text.clone(),
            ),
            (None, Some(cap)) => cap,
            (None, None) => return,
        };
        let (enabled, function_masked, table_size) = fields.decode();
        let device = std::mem::replace(&mut self.windbg_device, d.device);
        self.emit_at(
            EventKind::MsixCapabilitySeen {
                enabled,
                function_masked,
                table_size,
            },
            line,
            text,
            None,
        );
        self.windbg_device = device;
    }

    /// Starts reading the `!pci` dump of `device` (ending another function's dump).
    fn open_pci(&mut self, device: Option<String>) {
        if let Some(d) = self.pci.as_mut() {
            if d.device.is_none() || d.device == device {
                d.device = d.device.take().or(device.clone());
                self.windbg_device = d.device.clone();
                return;
            }
        }
        self.end_pci();
        self.windbg_device = device.clone();
        self.pci = Some(PciDump {
            device,
            raw: wpci::RawConfig::default(),
            cap_ptr: None,
            msix_at: None,
            cap: None,
            foreign: false,
        });
    }

    /// A line between files of a concatenation (`--- name ---`, `==> name <==`): what one file
    /// said about its device or its WinDbg command ends there.
    fn file_boundary(&mut self) {
        self.end_blocks();
        self.end_pci();
        self.windbg_device = None;
        self.pci_bus = None;
        self.section = wdev::ResSection::Unknown;
        self.command.clear();
        self.proc_cpus = None;
    }

    fn end_storport(&mut self) {
        if let Some(b) = self.storport_msi.take() {
            if let Some((resource, connected)) = b.msi.to_events() {
                let (vl, vt) = b.vector_line.unwrap_or_else(|| b.id_line.clone());
                let (il, it) = b.id_line;
                self.driver_events(vec![(connected, il, it), (resource, vl, vt)], b.time_ns);
            }
        }
        if let Some(b) = self.storport_msix.take() {
            if let Some(enabled) = b.enabled {
                let (line, text) = b.line;
                self.emit_at(
                    EventKind::MsixCapabilitySeen {
                        enabled,
                        function_masked: b.function_masked.unwrap_or(false),
                        table_size: b.table_size_field.map_or(0, |n| n.saturating_add(1)),
                    },
                    line,
                    text,
                    b.time_ns,
                );
            }
        }
    }

    /// A line of a storport report already open; returns whether it was one.
    fn storport_line(&mut self, body: &str, line: &Line) -> bool {
        use windows::{StorportMsiLine as F, StorportMsixLine as X};
        if let Some(b) = self.storport_msi.as_mut() {
            match windows::storport_msi_line(body) {
                Some(F::MessageId(_)) | None => {}
                Some(F::Vector(v)) => {
                    b.msi.vector = Some(v);
                    b.vector_line = Some((line.number, line.text.clone()));
                    return true;
                }
                Some(F::Level(v)) => {
                    b.msi.level = Some(v);
                    return true;
                }
                Some(F::Latched(l)) => {
                    b.msi.latched = Some(l);
                    return true;
                }
                Some(F::Other) => return true,
            }
        }
        if let Some(b) = self.storport_msix.as_mut() {
            match windows::storport_msix_line(body) {
                Some(X::TableSizeField(n)) if b.table_size_field.is_none() => {
                    b.table_size_field = Some(n);
                    return true;
                }
                Some(X::FunctionMask(m)) if b.function_masked.is_none() => {
                    b.function_masked = Some(m);
                    return true;
                }
                Some(X::Enable(e)) if b.enabled.is_none() => {
                    b.enabled = Some(e);
                    b.line = (line.number, line.text.clone());
                    return true;
                }
                _ => {}
            }
        }
        self.end_storport();
        false
    }

    /// The prints of virtio-win's own drivers (viostor, vioscsi, NetKVM); returns whether the
    /// line was one with a meaning the judge uses.
    fn virtio_win(&mut self, body: &str, line: &Line, time: Option<u64>) -> bool {
        use windows::{StorportMsiLine as F, StorportMsixLine as X};
        if let Some(F::MessageId(id)) = windows::storport_msi_line(body) {
            self.end_storport();
            self.storport_msi = Some(StorportMsiBlock {
                msi: windows::StorportMsi {
                    message_id: id,
                    ..Default::default()
                },
                id_line: (line.number, line.text.clone()),
                vector_line: None,
                time_ns: time,
            });
            return true;
        }
        if let Some(x) = windows::storport_msix_line(body) {
            self.end_storport();
            let mut b = StorportMsixBlock {
                table_size_field: None,
                function_masked: None,
                enabled: None,
                line: (line.number, line.text.clone()),
                time_ns: time,
            };
            match x {
                X::TableSizeField(n) => b.table_size_field = Some(n),
                X::FunctionMask(m) => b.function_masked = Some(m),
                X::Enable(e) => b.enabled = Some(e),
            }
            self.storport_msix = Some(b);
            return true;
        }
        let Some(v) = windows::virtio_win_line(body) else {
            return false;
        };
        if let windows::VirtioWinLine::NetkvmMessages { irql, .. } = v {
            self.netkvm_irql = Some(irql);
        }
        let kinds = v.to_events(self.netkvm_irql);
        if kinds.is_empty() {
            return false;
        }
        let events = kinds
            .into_iter()
            .map(|k| (k, line.number, line.text.clone()))
            .collect();
        self.driver_events(events, time);
        true
    }

    fn end_nobody(&mut self) {
        if let Some(b) = self.nobody.take() {
            self.out.push(Pending {
                kind: EventKind::IrqNobodyCared {
                    irq: b.irq,
                    handlers: b.handlers,
                },
                line: b.line,
                text: b.text,
                time_ns: b.time_ns,
                device: None,
            });
        }
    }

    /// The kernel's report on a line it gave up on: `irq N: nobody cared`, a stack dump,
    /// `handlers:`, one `[<address>] function` per handler, `Disabling IRQ #N`. The report
    /// ends with its handler list (or, without one, after [`MAX_NOBODY_LINES`]), so a later
    /// boot never receives it. Returns whether the line was part of it.
    fn nobody_line(&mut self, body: &str, hits: u64, line: &Line, time: Option<u64>) -> bool {
        let t = body.trim();
        if hits & gate::NOBODY_CARED != 0 {
            if let Some(irq) = linux::nobody_cared_irq(t) {
                self.end_nobody();
                self.nobody = Some(NobodyBlock {
                    irq,
                    handlers: Vec::new(),
                    collecting: false,
                    lines_seen: 0,
                    line: line.number,
                    text: line.text.clone(),
                    time_ns: time,
                });
                return false;
            }
        }
        let Some(b) = self.nobody.as_mut() else {
            return false;
        };
        b.lines_seen += 1;
        if t.eq_ignore_ascii_case("handlers:") {
            b.collecting = true;
            return true;
        }
        if b.collecting {
            if let Some(name) = linux::handler_name(t) {
                if b.handlers.len() < MAX_HANDLERS {
                    b.handlers.push(name);
                }
                return true;
            }
            self.end_nobody();
            return false;
        }
        if b.lines_seen > MAX_NOBODY_LINES || contains_ci(t, "Disabling IRQ #") {
            self.end_nobody();
        }
        false
    }

    /// One line: held while it may belong to an INF, read otherwise. `shape` is the line's
    /// [`LineShape`] when the reading thread already worked it out.
    fn feed(&mut self, line: &Line, shape: Option<&LineShape>) {
        if let Some(block) = self.inf.as_mut() {
            if block.bytes <= MAX_INF_BYTES
                && block.lines.len() < MAX_INF_LINES
                && inf_block_continues(&line.text)
            {
                block.bytes += line.text.len() + 1;
                block.lines.push(line.clone());
                return;
            }
            self.end_inf();
        } else if !self.replaying && self.in_report.is_none() && inf_block_starts(&line.text) {
            self.inf = Some(InfBlock {
                lines: vec![line.clone()],
                bytes: line.text.len() + 1,
            });
            return;
        }
        self.feed_line(line, shape);
    }

    /// Ends an INF block: its events when it is an INF, else its lines read as any others.
    fn end_inf(&mut self) {
        let Some(block) = self.inf.take() else {
            return;
        };
        let texts: Vec<&str> = block.lines.iter().map(|l| l.text.as_str()).collect();
        match inf_events(&texts) {
            Some(events) => {
                self.end_blocks();
                for _ in &block.lines {
                    self.votes.vote(Format::Inf);
                }
                for (idx, kind) in events {
                    let l = &block.lines[idx.clamp(1, block.lines.len()) - 1];
                    self.push(Pending {
                        kind,
                        line: l.number,
                        text: l.text.clone(),
                        time_ns: None,
                        device: None,
                    });
                }
            }
            None => {
                self.replaying = true;
                for l in &block.lines {
                    self.feed_line(l, None);
                }
                self.replaying = false;
            }
        }
    }

    fn feed_line(&mut self, line: &Line, shape: Option<&LineShape>) {
        let raw = line.text.as_str();
        if crate::text::trim_start(raw).starts_with('{') && self.event_line(raw, line) {
            return;
        }
        if is_file_separator(raw) {
            self.file_boundary();
            return;
        }
        let shape = match shape {
            Some(s) => *s,
            None => LineShape::of(raw),
        };
        let body = shape.body(raw);
        let prefix = shape.prefix;
        if (self.storport_msi.is_some() || self.storport_msix.is_some())
            && self.storport_line(body, line)
        {
            return;
        }
        // A line quoted in a report (`virq check`'s `| INT: ...` proof lines) is not evidence
        // of its own: the line it quotes is. Nor is any line of a report virq printed.
        let t = crate::text::trim_start(body);
        if let Some(end) = self.in_report {
            if t.starts_with(end) {
                self.in_report = None;
            }
            return;
        }
        if t.starts_with("virq check: ") {
            self.end_blocks();
            self.in_report = Some("verdict: ");
            return;
        }
        if t.starts_with("virq doctor: ") {
            self.end_blocks();
            self.in_report = Some("Result: ");
            return;
        }
        if t.starts_with("| ") {
            return;
        }
        // Every keyword any matcher below looks for, found in one pass, so matchers that cannot
        // match are skipped. The body is enough: every matcher reads the body, and the keyword
        // part of format detection only runs when no prefix was stripped (a stripped `[PID] `
        // carries no letter, so no keyword can start in it); DbgView columns, a dmesg stamp or
        // a syslog head decide the format before any keyword is looked at.
        let hits = shape.hits;
        self.votes
            .add_gated(raw, body, &prefix, hits & gate::CLASSIFY != 0);
        let time = prefix.time_ns;
        if crate::text::trim_start(body).is_empty() {
            // Older kernels print a blank line inside a "nobody cared" report (before
            // `Call Trace:`); it ends every other block.
            self.end_msix();
            self.end_entry();
            self.end_lspci();
            return;
        }
        if (self.dt.is_some()
            || self.irp.is_some()
            || self.msix_memory.is_some()
            || self.pcitree
            || hits & gate::WINDBG_EXT != 0)
            && hits & gate::PROMPT == 0
            && self.windbg_output_line(body, hits, line, time)
        {
            return;
        }
        // A shell prompt: what follows is a command's output (`cat /proc/interrupts`, `lspci`).
        let head = &body.as_bytes()[..body.len().min(linux::PROMPT_SPAN)];
        if memchr::memchr2(b'$', b'#', head).is_some() {
            if let Some(command) = linux::shell_prompt(body) {
                self.end_blocks();
                self.proc_cpus = None;
                self.shell_device = linux::lspci_slot(command);
                return;
            }
        }
        if matches!(t.as_bytes().first(), Some(b'L' | b'-')) && linux::boot_marker(body) {
            self.boot(body, line, time);
            return;
        }
        if (self.nobody.is_some() || hits & gate::INTERESTING != 0)
            && self.nobody_line(body, hits, line, time)
        {
            return;
        }
        if hits & gate::PROMPT != 0 {
            if let Some(cmd) = windbg::prompt_command(body) {
                self.end_blocks();
                self.end_pci();
                self.section = wdev::ResSection::Unknown;
                self.proc_cpus = None;
                self.pci_bus = None;
                self.command = cmd
                    .split_whitespace()
                    .next()
                    .unwrap_or("")
                    .to_ascii_lowercase();
                self.windbg_device = None;
                match windbg::Command::parse(cmd) {
                    windbg::Command::Pci(_) => self.open_pci(wpci::pci_command_bdf(cmd)),
                    windbg::Command::DisplayType { type_name, address } => {
                        self.dt = Some(DtBlock {
                            reader: windbg::dt::DtReader::new(Some(&type_name), address),
                            quotes: Default::default(),
                        });
                    }
                    windbg::Command::Irp(_) => self.irp = Some(Default::default()),
                    windbg::Command::PhysicalMemory { address, .. } => {
                        self.msix_memory = self
                            .ctx
                            .msix_at(address)
                            .map(|(device, loc)| (windbg::dd::MsixMemoryReader::new(loc), device));
                    }
                    windbg::Command::PciTree => self.pcitree = true,
                    _ => {}
                }
                return;
            }
        }
        if self.proc_line(body, hits, line, time) {
            return;
        }
        if self.lspci_line(raw, body, line, time) {
            return;
        }
        // A DbgView column or `[PID]` says the line is Windows' own.
        let windows_line = prefix.dbgview_columns || prefix.pid.is_some();
        if !windows_line && self.kernel_pci_line(body, line, time) {
            return;
        }
        if hits & gate::CHECKLIST != 0 {
            if let Some(kinds) = windows::checklist_print(body) {
                let events = kinds
                    .into_iter()
                    .map(|k| (k, line.number, line.text.clone()))
                    .collect();
                self.driver_events(events, time);
                return;
            }
        }
        if hits & gate::VIRTIO_WIN != 0 && self.virtio_win(body, line, time) {
            return;
        }
        if let Some(kind) = virq_win7::windbg::parse_devnode_state(body) {
            self.emit(kind, line, time);
            return;
        }
        let in_block = self.msix.is_some()
            || self.entry.is_some()
            || self.pci.is_some()
            || self.section == wdev::ResSection::Raw;
        if (in_block || hits & gate::WINDBG != 0) && self.windbg_line(body, hits, line, time) {
            return;
        }
        if hits & gate::READ != 0 && hits & gate::VECTORISH != 0 {
            if let Some(kind) = windows::readback_wording(body) {
                self.emit(kind, line, time);
                return;
            }
        }
        // The INTERESTING bits are exactly `is_interesting`'s keywords, found in the body.
        if hits & gate::INTERESTING != 0 {
            debug_assert!(is_interesting(body));
            if self.log_lines >= self.limits.max_log_lines && !decisive_line(body, hits) {
                // Ordinary chatter over the quoting limit: counted, never read by a rule.
                self.unquoted += 1;
                return;
            }
            self.log_lines += 1;
            self.emit(
                EventKind::LogLine {
                    text: body.trim_end().to_string(),
                },
                line,
                time,
            );
        }
    }

    /// A kernel boot banner or journalctl's boot separator: a new start of every device.
    /// Evidence held for the boot that ended is settled first.
    fn boot(&mut self, body: &str, line: &Line, time: Option<u64>) {
        self.end_blocks();
        self.release_held();
        self.proc_cpus = None;
        self.driver_active = false;
        self.irp_in_start = false;
        let t = body.trim();
        let label = match t.strip_prefix("Linux version ") {
            Some(rest) => format!(
                "boot at line {}: Linux {}",
                line.number,
                rest.split_whitespace().next().unwrap_or("")
            ),
            None => format!("boot at line {}: {t}", line.number),
        };
        self.emit_for(EventKind::SessionStart { label }, line, time, None);
    }

    /// A kernel message about a PCI function (`virtio-pci 0000:00:04.0: ...`): tagged with
    /// the function when it is virtio's, an INTx route (`PCI INT A -> GSI 11 ... -> IRQ 11`)
    /// kept as [`EventKind::IntxRouted`]; the PCI core's enumeration line
    /// (`pci 0000:00:04.0: [1af4:1042] ...`) only marks the function as virtio.
    fn kernel_pci_line(&mut self, body: &str, line: &Line, time: Option<u64>) -> bool {
        let t = body.trim_start();
        if let Some((driver, bdf, text)) = linux::pci_dev_prefix(t) {
            let virtio = linux::is_virtio_pci_driver(driver)
                || (driver == "pci" && linux::enumerated_virtio(text));
            if virtio {
                self.note_virtio(Some(&bdf), None);
            }
            if let Some((_, pin, irq)) = linux::pci_int_route(text) {
                let routed = Pending {
                    kind: EventKind::IntxRouted { pin, irq },
                    line: line.number,
                    text: line.text.clone(),
                    time_ns: time,
                    device: Some(bdf.clone()),
                };
                if virtio {
                    self.note_virtio(None, Some(irq));
                    self.out.push(routed);
                } else {
                    self.hold(bdf, Some(irq), vec![routed]);
                }
                return true;
            }
            // Tagged only when it speaks of interrupts: a function named by nothing but
            // `enabling device` would be judged as a device of its own with nothing to judge.
            if virtio && linux::is_virtio_pci_driver(driver) && linux::about_interrupts(text) {
                self.emit_for(
                    EventKind::LogLine {
                        text: t.trim_end().to_string(),
                    },
                    line,
                    time,
                    Some(bdf),
                );
                return true;
            }
            return false;
        }
        if let Some((Some(bdf), pin, irq)) = linux::pci_int_route(t) {
            let routed = Pending {
                kind: EventKind::IntxRouted { pin, irq },
                line: line.number,
                text: line.text.clone(),
                time_ns: time,
                device: Some(bdf.clone()),
            };
            if self.virtio_bdfs.contains(&bdf) {
                self.note_virtio(None, Some(irq));
                self.out.push(routed);
            } else {
                self.hold(bdf, Some(irq), vec![routed]);
            }
            return true;
        }
        false
    }

    /// `/proc/interrupts`: the header sets the column count; rows follow until a line that is
    /// not a row. A row naming virtio is read without a header too (a `grep virtio` slice),
    /// its columns inferred from its shape. Only rows naming a virtio device are kept.
    fn proc_line(&mut self, body: &str, hits: u64, line: &Line, time: Option<u64>) -> bool {
        if let Some(n) = cpu_header_columns(body) {
            self.end_blocks();
            self.proc_cpus = Some(n);
            return true;
        }
        let row = match self.proc_cpus {
            Some(cpus) => {
                let Some(head) = linux::proc_row_head(body, cpus) else {
                    self.proc_cpus = None;
                    return false;
                };
                // A row whose line does not say "virtio" is not kept: knowing it is a row is
                // enough.
                if hits & gate::VIRTIO != 0 {
                    self.proc_row_under_header(&head, line, time);
                }
                return true;
            }
            None if hits & gate::VIRTIO != 0 => match linux::headerless_proc_row(body) {
                Some(row) => {
                    self.votes.vote(Format::ProcInterrupts);
                    row
                }
                None => return false,
            },
            None => return false,
        };
        let shape = ProcRowShape::of(&row);
        if shape.kept {
            self.proc_row(row.irq, row.total, shape, line, time);
        }
        true
    }

    /// A row under a `CPUn` header, its columns read once per distinct text.
    fn proc_row_under_header(
        &mut self,
        head: &linux::ProcRowHead<'_>,
        line: &Line,
        time: Option<u64>,
    ) {
        let tail = head.tail();
        // The same text as last time gives the same shape; only the counts are new.
        let shape = match self.proc_rows.get(head.irq) {
            Some((seen, shape)) if seen == tail => shape.clone(),
            _ => {
                let shape = ProcRowShape::of(&head.columns());
                let room =
                    self.proc_rows.len() < MAX_PROC_ROWS || self.proc_rows.contains_key(head.irq);
                if room && tail.len() <= MAX_PROC_TAIL {
                    let entry = (tail.to_string(), shape.clone());
                    self.proc_rows.insert(head.irq.to_string(), entry);
                }
                shape
            }
        };
        if shape.kept {
            self.proc_row(head.irq, head.total, shape, line, time);
        }
    }

    /// One `IrqCount` per virtio device a row is about: the function its controller column
    /// names (a message's domain), else each `virtioN` whose handler it lists (a shared line
    /// can carry two), so several devices are judged apart.
    fn proc_row(
        &mut self,
        irq: &str,
        total: u64,
        shape: ProcRowShape,
        line: &Line,
        time: Option<u64>,
    ) {
        if shape.line_handler {
            self.note_virtio(None, irq.parse::<u32>().ok());
        }
        let devices: Vec<Option<String>> = match shape.function {
            Some(f) => vec![Some(self.function_name(f))],
            None if shape.virtio.is_empty() => vec![None],
            None => shape.virtio.into_iter().map(Some).collect(),
        };
        let last = devices.len() - 1;
        let (mut name, mut chip) = (Some(shape.name), Some(shape.chip));
        for (i, device) in devices.into_iter().enumerate() {
            // The last (usually the only) event takes the strings, the others copy them.
            let (name, chip) = if i == last {
                (name.take(), chip.take())
            } else {
                (name.clone(), chip.clone())
            };
            self.emit_for(
                EventKind::IrqCount {
                    irq: irq.to_string(),
                    name: name.unwrap_or_default(),
                    count: total,
                    chip: chip.flatten(),
                },
                line,
                time,
                device,
            );
        }
    }

    /// The name of a virtio function a row's controller column gives, as `lspci` prints it;
    /// remembered (and noted as virtio) once, as a snapshot names the same few functions on
    /// every row.
    fn function_name(&mut self, f: linux::PciFunction) -> String {
        if let Some((_, name)) = self.function_names.iter().find(|(k, _)| *k == f) {
            return name.clone();
        }
        let name = f.name();
        self.note_virtio(Some(&name), None);
        if self.function_names.len() < MAX_FUNCTION_NAMES {
            self.function_names.push((f, name.clone()));
        }
        name
    }

    /// `lspci` (`-v` to `-vvv`, `-nn`, `-k`, `-D`): a device header opens a block; indented
    /// lines belong to it; a `--` of `grep -A` ends it. Every event of a block names its
    /// function.
    fn lspci_line(&mut self, raw: &str, body: &str, line: &Line, time: Option<u64>) -> bool {
        let indented = raw.starts_with([' ', '\t']);
        if !indented {
            if body.trim_end() == "--" {
                self.end_lspci();
                return true;
            }
            match leading_bdf(body) {
                Some((bdf, rest)) if rest.contains(": ") => {
                    self.end_blocks();
                    self.lspci = Some(LspciBlock {
                        bdf: linux::short_bdf(bdf),
                        virtio: linux::lspci_header_is_virtio(rest),
                        irq: None,
                        msi_enabled: false,
                        msix_enabled: false,
                        held: Vec::new(),
                    });
                    return true;
                }
                _ => self.end_lspci(),
            }
            return false;
        }
        let t = body.trim_start();
        if self.lspci.is_none() && !t.starts_with("Capabilities:") {
            // A slice that lost its device header: only unmistakable lspci lines.
            let lspci_shaped = ["Control:", "Status:", "Interrupt:"]
                .iter()
                .any(|k| t.starts_with(k))
                && t.contains(['+', '-']);
            if !lspci_shaped {
                return false;
            }
        }
        if let Some(virtio) = linux::lspci_driver_is_virtio(t) {
            if let Some(b) = self.lspci.as_mut() {
                b.virtio |= virtio;
            }
            return true;
        }
        if linux::lspci_virtio_cap(t) {
            if let Some(b) = self.lspci.as_mut() {
                b.virtio = true;
            }
            return true;
        }
        if let Some(v) = linux::lspci_control(t) {
            self.lspci_emit(EventKind::PciCommand { value: v }, line, time);
            return true;
        }
        if let Some(pending) = linux::lspci_status_intx(t) {
            self.lspci_emit(EventKind::IntxStatus { pending }, line, time);
            return true;
        }
        if let Some((pin, irq)) = linux::lspci_interrupt(t) {
            if let Some(b) = self.lspci.as_mut() {
                b.irq = Some(irq);
            }
            self.lspci_emit(EventKind::IntxRouted { pin, irq }, line, time);
            return true;
        }
        if let Some(irq) = linux::lspci_flags_irq(t) {
            // `-v` shows the IRQ but not the pin: pin 0, "not shown".
            if let Some(b) = self.lspci.as_mut() {
                b.irq = Some(irq);
                self.lspci_emit(EventKind::IntxRouted { pin: 0, irq }, line, time);
            }
            return true;
        }
        if let Some((enabled, function_masked, table_size)) = linux::lspci_msix(t) {
            if let Some(b) = self.lspci.as_mut() {
                b.msix_enabled |= enabled;
            }
            self.lspci_emit(
                EventKind::MsixCapabilitySeen {
                    enabled,
                    function_masked,
                    table_size,
                },
                line,
                time,
            );
            return true;
        }
        if linux::lspci_is_msi(t) {
            if let Some(b) = self.lspci.as_mut() {
                b.msi_enabled |= linux::lspci_msi_enabled(t);
            }
            self.lspci_emit(
                EventKind::LogLine {
                    text: t.to_string(),
                },
                line,
                time,
            );
            return true;
        }
        self.lspci.is_some()
    }

    /// An event of an `lspci` line: its block's function, or without a block (a `grep` slice
    /// that lost the header) the function the shell command selected.
    fn lspci_emit(&mut self, kind: EventKind, line: &Line, time: Option<u64>) {
        if self.lspci.is_some() {
            self.emit(kind, line, time);
        } else {
            let device = self.shell_device.clone();
            self.emit_for(kind, line, time, device);
        }
    }

    /// WinDbg `!pci` words, raw bytes and capability blocks, and `!devnode` resource lists.
    /// `hits` are the body's keywords: a matcher whose keyword the line lacks is not asked.
    fn windbg_line(&mut self, body: &str, hits: u64, line: &Line, time: Option<u64>) -> bool {
        let heading = hits & gate::CONFIG_SPACE != 0 || body.trim_start().starts_with("PCI ");
        match heading.then(|| wpci::pci_heading(body)).flatten() {
            Some(wpci::PciHeading::Function(bdf)) => {
                self.end_blocks();
                self.open_pci(Some(bdf));
                return true;
            }
            Some(wpci::PciHeading::Bus(bus)) => {
                self.end_blocks();
                self.end_pci();
                self.windbg_device = None;
                self.pci_bus = Some(bus);
                return true;
            }
            None => {}
        }
        if wdev::is_devnode_heading(body) {
            self.end_blocks();
            self.end_pci();
            self.windbg_device = None;
            self.command = "!devnode".to_string();
            self.section = wdev::ResSection::Unknown;
            return true;
        }
        if let Some(dump) = self.pci.as_mut() {
            if let Some((off, bytes)) = wpci::pci_raw_line(body) {
                dump.raw.add(off, &bytes, line.number, &line.text);
                self.end_msix();
                return true;
            }
            if let Some(p) = wpci::pci_cap_ptr(body) {
                dump.cap_ptr = Some(p);
                return true;
            }
            if let Some((off, bar)) = wpci::pci_bar_field(body) {
                dump.raw
                    .add(off, &bar.to_le_bytes(), line.number, &line.text);
                return true;
            }
            if let Some(v) = wpci::pci_vendor_field(body) {
                dump.foreign = is_foreign_vendor(v);
                return true;
            }
            if body.trim_start().starts_with("Device Private") {
                self.end_msix();
                return true;
            }
        }
        if let Some((bdf, vendor)) = wpci::pci_summary_line(body, self.pci_bus) {
            self.end_blocks();
            if bdf.is_some() || self.pci.is_none() {
                self.open_pci(bdf);
            }
            if let Some(d) = self.pci.as_mut() {
                d.foreign = is_foreign_vendor(vendor);
            }
        }
        if hits & gate::MSIX_WORD != 0 && wpci::is_msix_cap_start(body) {
            self.end_msix();
            if let Some(dump) = self.pci.as_mut() {
                dump.msix_at = wpci::line_offset(body).or(dump.msix_at);
            }
            let mut fields = wpci::MsixFields::default();
            fields.read_line(body);
            self.msix = Some(MsixBlock {
                fields,
                line: line.number,
                text: line.text.clone(),
                device: self.windbg_device.clone(),
                lines_seen: 0,
            });
            return true;
        }
        if let Some(block) = self.msix.as_mut() {
            if contains_ci(body, "CapID") || block.lines_seen >= MAX_BLOCK_LINES {
                self.end_msix();
            } else if let Some((entry, address, data, masked, pending)) =
                wpci::msix_entry_line(body)
            {
                block.lines_seen += 1;
                self.emit(
                    EventKind::MsixEntry {
                        entry,
                        address,
                        data,
                        masked,
                    },
                    line,
                    time,
                );
                if pending {
                    self.emit(EventKind::PendingSet { entry }, line, time);
                }
                return true;
            } else {
                block.lines_seen += 1;
                let had_any = block.fields.any();
                let had_control = block.fields.control.is_some();
                if block.fields.read_line(body) {
                    let control_now = !had_control && block.fields.control.is_some();
                    if !had_any || control_now {
                        block.line = line.number;
                        block.text = line.text.clone();
                    }
                }
                return true;
            }
        }
        let status = |body| {
            (hits & gate::PCI_STATUS != 0)
                .then(|| wpci::pci_status_word(body))
                .flatten()
        };
        let command = (hits & gate::PCI_COMMAND != 0)
            .then(|| wpci::pci_command_word(body))
            .flatten();
        if let Some(v) = command {
            self.emit(EventKind::PciCommand { value: v }, line, time);
            if let Some(s) = status(body).filter(|s| *s != 0xFFFF) {
                self.emit(
                    EventKind::IntxStatus {
                        pending: s & 0x0008 != 0,
                    },
                    line,
                    time,
                );
            }
            return true;
        }
        if let Some(s) = status(body) {
            if s == 0xFFFF {
                return true;
            }
            self.emit(
                EventKind::IntxStatus {
                    pending: s & 0x0008 != 0,
                },
                line,
                time,
            );
            return true;
        }
        let heading = (hits & gate::RESOURCE != 0)
            .then(|| wdev::resource_list_heading(body))
            .flatten();
        if let Some((mut section, address)) = heading {
            self.end_entry();
            if section == wdev::ResSection::Unknown {
                if self.command == "!devnode" {
                    section = wdev::ResSection::Raw;
                } else if let Some(raw) = address.and_then(|a| self.ctx.list_is_raw(a)) {
                    section = if raw {
                        wdev::ResSection::Raw
                    } else {
                        wdev::ResSection::Translated
                    };
                }
            }
            if let Some(a) = address.filter(|_| section != wdev::ResSection::Unknown) {
                self.ctx.note_list(a, section == wdev::ResSection::Raw);
            }
            self.section = section;
            return true;
        }
        if let Some(is_interrupt) = wdev::resource_entry_start(body) {
            self.end_entry();
            if is_interrupt {
                let mut entry = wdev::IntEntry {
                    raw: self.section == wdev::ResSection::Raw,
                    ..Default::default()
                };
                entry.read_line(body);
                self.entry = Some(EntryBlock {
                    entry,
                    line: line.number,
                    text: line.text.clone(),
                    device: self.windbg_device.clone(),
                });
            }
            return true;
        }
        if self.entry.is_none()
            && self.section == wdev::ResSection::Raw
            && wdev::IntEntry::default().read_line(body)
        {
            return true;
        }
        if let Some(block) = self.entry.as_mut() {
            let had_vector = block.entry.vector.is_some();
            if block.entry.read_line(body) {
                if !had_vector && block.entry.vector.is_some() {
                    block.line = line.number;
                    block.text = line.text.clone();
                }
                return true;
            }
        }
        false
    }

    /// A line of `dt`, `!irp`, `!dd`/`!dq` or `!pcitree` output (or one of their shapes
    /// pasted without the command); returns whether it was one.
    fn windbg_output_line(
        &mut self,
        body: &str,
        hits: u64,
        line: &Line,
        time: Option<u64>,
    ) -> bool {
        if let Some(f) = windbg::dt::parse_field(body) {
            let block = self.dt.get_or_insert_with(|| DtBlock {
                reader: windbg::dt::DtReader::new(None, None),
                quotes: Default::default(),
            });
            if matches!(f.name, "Type" | "Vector") {
                if block.quotes.len() == MAX_DT_QUOTES {
                    block.quotes.pop_front();
                }
                block.quotes.push_back((line.number, line.text.clone()));
            }
            let items = block.reader.feed(&f, line.number);
            self.dt_items(items);
            return true;
        }
        if let Some(block) = self.dt.as_mut() {
            if block.reader.feed_other(body) {
                return true;
            }
            self.end_dt();
        }
        if (self.irp.is_some() || hits & gate::IRP != 0) && !windbg::irp::is_irp_line(body) {
            // The IRP's output ended without a prompt (a paste): read the line as any other.
            self.irp = None;
        }
        if self.irp.is_some() || hits & gate::IRP != 0 {
            let reader = self.irp.get_or_insert_with(Default::default);
            if let Some(current) = reader.feed(body) {
                if let Some((raw, translated)) = current.start_device_lists() {
                    self.context += 1;
                    self.ctx.note_list(raw, true);
                    self.ctx.note_list(translated, false);
                    if std::mem::replace(&mut self.irp_in_start, true) {
                        self.end_entry();
                        self.emit(
                            EventKind::SessionStart {
                                label: format!("start IRP at line {}", line.number),
                            },
                            line,
                            time,
                        );
                    }
                }
            }
            return true;
        }
        if let Some((reader, device)) = self.msix_memory.as_mut() {
            if let Some((address, values, unit)) = windbg::dd::parse_line(body) {
                let device = device.clone();
                for kind in reader.feed(address, &values, unit) {
                    self.push(Pending {
                        kind,
                        line: line.number,
                        text: line.text.clone(),
                        time_ns: time,
                        device: device.clone(),
                    });
                }
                return true;
            }
            self.msix_memory = None;
        }
        if self.pcitree || hits & gate::WINDBG_EXT != 0 {
            if windbg::pcitree::parse_line(body).is_some() {
                self.context += 1;
                self.pcitree = true;
                return true;
            }
            let total = body.trim_start().starts_with("Total PCI");
            let was = std::mem::replace(&mut self.pcitree, false);
            return was && total;
        }
        false
    }

    /// Descriptors, list headers and start parameters a `dt` block completed.
    fn dt_items(&mut self, items: Vec<windbg::dt::DtItem>) {
        use windbg::dt::DtItem;
        for item in items {
            match item {
                DtItem::StartDevice {
                    raw,
                    translated,
                    major,
                    minor,
                } => {
                    let start = major.is_none_or(|m| m == windbg::irp::IRP_MJ_PNP)
                        && minor.is_none_or(|m| m == windbg::irp::IRP_MN_START_DEVICE);
                    if start {
                        self.context += 1;
                        self.ctx.note_list(raw, true);
                        self.ctx.note_list(translated, false);
                    }
                }
                DtItem::List { .. } => {}
                DtItem::Descriptor(d) => {
                    let raw = d
                        .address
                        .and_then(|a| self.ctx.descriptor_is_raw(a))
                        .unwrap_or_else(|| guess_raw(&d));
                    let Some(kind) = d.to_event(raw) else {
                        continue;
                    };
                    let tag = d.quote_tag(raw).unwrap_or(0);
                    let (line, text) = self
                        .dt
                        .as_ref()
                        .and_then(|b| b.quotes.iter().find(|(n, _)| *n == tag).cloned())
                        .unwrap_or((tag, String::new()));
                    self.push(Pending {
                        kind,
                        line,
                        text,
                        time_ns: None,
                        device: None,
                    });
                }
            }
        }
    }

    fn end_dt(&mut self) {
        if let Some(mut block) = self.dt.take() {
            let items = block.reader.finish();
            self.dt = Some(block);
            self.dt_items(items);
            self.dt = None;
        }
    }

    /// Ends every WinDbg command's output block.
    fn end_windbg_output(&mut self) {
        self.end_dt();
        self.irp = None;
        self.msix_memory = None;
        self.pcitree = false;
    }

    fn finish(&mut self) {
        self.end_inf();
        self.end_blocks();
        self.release_held();
        self.end_pci();
    }
}

/// PCI vendor id of every virtio function (virtio 1.2 section 4.1.2).
const VIRTIO_PCI_VENDOR_ID: u16 = 0x1AF4;

/// A function other than a virtio one. All ones is not another vendor: it is what a read of
/// a function that is gone returns (the device's own evidence of surprise removal).
fn is_foreign_vendor(vendor: u16) -> bool {
    vendor != VIRTIO_PCI_VENDOR_ID && vendor != 0xFFFF
}

/// A line between the files of a concatenation: `--- name ---` (as `virq check --logs`
/// prints to stdout), `==> name <==` (as `head`/`tail` of several files print).
fn is_file_separator(raw: &str) -> bool {
    let t = crate::text::trim_start(raw);
    if !matches!(t.as_bytes().first(), Some(b'-' | b'=')) {
        return false;
    }
    let t = t.trim_end();
    let framed = |open: &str, close: &str| {
        t.len() > open.len() + close.len()
            && t.starts_with(open)
            && t.ends_with(close)
            && t[open.len()..t.len() - close.len()]
                .trim()
                .bytes()
                .any(|b| b.is_ascii_alphanumeric())
    };
    framed("--- ", " ---") || framed("==> ", " <==")
}

/// Free-text lines worth keeping for a rule to quote: anything about interrupts, MSI(-X),
/// vectors, ISRs/DPCs or virtio.
fn is_interesting(body: &str) -> bool {
    const KEYWORDS: [&str; 10] = [
        "msi",
        "interrupt",
        "vector",
        "isr",
        "dpc",
        "irq",
        "virtio",
        "nobody cared",
        "messagecount",
        "intx",
    ];
    KEYWORDS.iter().any(|k| contains_ci(body, k))
}

/// Free-text lines a rule reads (the kernel giving up on a line, a rebalance, an IRQ request
/// refused, a probe failing, virtio_pci's own messages): quoted wherever they are in a file,
/// whatever the quoting limit. Checked only for lines past the limit.
pub fn decisive_line(body: &str, hits: u64) -> bool {
    // The gate's keywords decide most lines: a storm capture asks this of millions. Each
    // phrase is looked for only in lines holding its keyword.
    if hits & gate::DECISIVE != 0 {
        return true;
    }
    // The kernel prints these where they stand: `irq event 11: bogus return value`,
    // `genirq: Flags mismatch irq 11. ...`, `... irq 24 for MSI/MSI-X`.
    let t = body.trim();
    (hits & gate::VIRTIO != 0
        && (contains_ci(t, "probe of") || contains_ci(t, "failed with error")))
        || (hits & gate::MSI != 0 && t.ends_with("for MSI/MSI-X"))
        || (hits & gate::IRQ != 0
            && (t.starts_with("irq event ") || t.starts_with("genirq: Flags mismatch")))
        || contains_ci(t, "rebalance")
}

/// What the parser reads of a line before any state is consulted: where its text starts once
/// DbgView's columns, a `[PID]`, a dmesg stamp or a syslog head are stripped, what those said,
/// and which keywords ([`gate::hits`]) the text holds. It depends on the line alone, so the
/// thread that reads a big file works it out while the parser reads the lines before.
#[derive(Clone, Copy, Debug, Default)]
struct LineShape {
    /// The text's byte range in the line.
    start: usize,
    end: usize,
    prefix: crate::text::Prefix,
    hits: u64,
}

impl LineShape {
    fn of(raw: &str) -> Self {
        let (mut body, mut prefix) = strip_prefixes(raw);
        // Linux log heads the shared stripper leaves (`dmesg -r`, `-x`, `-T`, journalctl's
        // monotonic head); a cheap look at the first byte decides whether to try.
        let first = body.as_bytes().first().copied().unwrap_or(b' ');
        let after_stamp = prefix.kernel_log && prefix.time_ns.is_some();
        if first == b'<' || first == b'[' || after_stamp || body.as_bytes().get(6) == Some(&b':') {
            if let Some((rest, time)) = linux::strip_kernel_prefixes(body, after_stamp) {
                body = rest;
                prefix.kernel_log = true;
                prefix.time_ns = time.or(prefix.time_ns);
            }
        }
        let start = body.as_ptr() as usize - raw.as_ptr() as usize;
        LineShape {
            start,
            end: start + body.len(),
            prefix,
            hits: gate::hits(body),
        }
    }

    /// The text the matchers read, in the line the shape was taken of.
    fn body<'a>(&self, raw: &'a str) -> &'a str {
        &raw[self.start..self.end]
    }
}

/// Files longer than this are read by a second thread (lines and their [`LineShape`]) while
/// the caller's thread parses and judges; shorter ones, all of a fuzzer's inputs and nearly
/// every real capture, stay on the caller's thread.
const PIPELINE_AFTER_BYTES: u64 = 1 << 20;
/// Lines (and bytes) per batch handed between the two threads: few hand-overs per megabyte,
/// and at most a few batches alive, so memory stays bounded.
const BATCH_LINES: usize = 1024;
const BATCH_BYTES: usize = 256 * 1024;
/// Batches in flight between the reading thread and the parser.
const BATCHES_IN_FLIGHT: usize = 2;

/// Lines read ahead, with their shapes; the buffers are handed back and reused.
#[derive(Default)]
struct Batch {
    lines: Vec<(Line, LineShape)>,
    len: usize,
}

impl Batch {
    /// Refills the batch from `lines`; `false` when nothing was left to read.
    fn fill<R: BufRead>(&mut self, lines: &mut LineReader<R>) -> std::io::Result<bool> {
        self.len = 0;
        let mut bytes = 0;
        while self.len < BATCH_LINES && bytes < BATCH_BYTES {
            if self.len == self.lines.len() {
                self.lines.push((
                    Line {
                        number: 0,
                        text: String::new(),
                        truncated: false,
                    },
                    LineShape::default(),
                ));
            }
            let (line, shape) = &mut self.lines[self.len];
            if !lines.next_line_into(line)? {
                break;
            }
            *shape = LineShape::of(&line.text);
            bytes += line.text.len();
            self.len += 1;
        }
        Ok(self.len > 0)
    }

    fn iter(&self) -> impl Iterator<Item = &(Line, LineShape)> {
        self.lines[..self.len].iter()
    }
}

/// Reads the rest of `lines` on a second thread, in batches, feeding each line to `parser` and
/// calling `drain` after each; returns the reader once it reached the end.
fn read_pipelined<R: BufRead + Send>(
    mut lines: LineReader<R>,
    parser: &mut Parser,
    mut drain: impl FnMut(&mut Parser),
) -> std::io::Result<LineReader<R>> {
    use std::sync::mpsc;
    std::thread::scope(|scope| {
        let (full_tx, full_rx) = mpsc::sync_channel::<std::io::Result<Batch>>(BATCHES_IN_FLIGHT);
        let (empty_tx, empty_rx) = mpsc::channel::<Batch>();
        let reader = scope.spawn(move || {
            loop {
                let mut batch = empty_rx.try_recv().unwrap_or_default();
                match batch.fill(&mut lines) {
                    Ok(true) => {
                        if full_tx.send(Ok(batch)).is_err() {
                            break;
                        }
                    }
                    Ok(false) => break,
                    Err(e) => {
                        let _ = full_tx.send(Err(e));
                        break;
                    }
                }
            }
            lines
        });
        for batch in full_rx.iter() {
            let batch = batch?;
            for (line, shape) in batch.iter() {
                parser.feed(line, Some(shape));
                drain(parser);
            }
            // The reader may have finished; its batches are then simply dropped.
            let _ = empty_tx.send(batch);
        }
        Ok(reader.join().expect("the line reader does not panic"))
    })
}

/// Parses one file's text from `reader`, calling `sink` with each event as soon as it is known
/// (in file order except that block-structured events arrive when their block ends).
///
/// Errors: `Empty`, `Utf16`, `Binary` (checked before any event is emitted), `NotRecognised`
/// (no line of a known shape in the whole file), `Io`.
pub fn parse_reader<R: BufRead + Send>(
    path: &str,
    reader: R,
    limits: ParseLimits,
    sink: impl FnMut(Event),
) -> Result<FileSummary, SourceError> {
    parse_reader_in(path, reader, limits, &mut WinDbgContext::default(), sink)
}

/// [`parse_reader`] as one of several files read together: what WinDbg text said about
/// addresses (the start IRP's resource lists, the MSI-X table's place) is taken from `ctx` and
/// added to it, so a `dt` in one file is read as the list an `!irp` in another named.
pub fn parse_reader_in<R: BufRead + Send>(
    path: &str,
    reader: R,
    limits: ParseLimits,
    ctx: &mut WinDbgContext,
    sink: impl FnMut(Event),
) -> Result<FileSummary, SourceError> {
    parse_reader_split(path, reader, limits, ctx, sink, PIPELINE_AFTER_BYTES)
}

/// [`parse_reader_in`], reading on a second thread past `pipeline_after_bytes`.
fn parse_reader_split<R: BufRead + Send>(
    path: &str,
    mut reader: R,
    limits: ParseLimits,
    ctx: &mut WinDbgContext,
    mut sink: impl FnMut(Event),
    pipeline_after_bytes: u64,
) -> Result<FileSummary, SourceError> {
    let io = |source| SourceError::Io {
        path: path.to_string(),
        source,
    };
    let head = reader.fill_buf().map_err(io)?;
    let bom = match head {
        [0xFF, 0xFE, ..] => Some("FF FE"),
        [0xFE, 0xFF, ..] => Some("FE FF"),
        _ => None,
    };
    if let Some(bom) = bom {
        return Err(SourceError::Utf16 {
            path: path.to_string(),
            bom,
        });
    }
    let mut lines = LineReader::new(reader, limits.max_line_bytes);
    let mut sniffed = Vec::new();
    while lines.offset() < BINARY_SNIFF_BYTES {
        match lines.next_line().map_err(io)? {
            Some(l) => sniffed.push(l),
            None => break,
        }
    }
    if let Some(offset) = lines.first_nul() {
        return Err(SourceError::Binary {
            path: path.to_string(),
            offset,
        });
    }
    let mut parser = Parser::new(limits);
    parser.ctx = std::mem::take(ctx);
    let mut seq = 0u64;
    let mut kinds: BTreeMap<String, u64> = BTreeMap::new();
    // Naming a kind goes through serde; do it once per variant, not once per event.
    let mut names: Vec<(std::mem::Discriminant<EventKind>, String)> = Vec::new();
    let mut drain = |parser: &mut Parser, sink: &mut dyn FnMut(Event)| {
        for e in parser.verbatim.drain(..) {
            let d = std::mem::discriminant(&e.kind);
            let name = match names.iter().find(|(k, _)| *k == d) {
                Some((_, n)) => n.clone(),
                None => {
                    names.push((d, kind_name(&e.kind)));
                    names.last().expect("just pushed").1.clone()
                }
            };
            *kinds.entry(name).or_insert(0) += 1;
            sink(e);
            seq += 1;
        }
        for p in parser.out.drain(..) {
            let d = std::mem::discriminant(&p.kind);
            let name = match names.iter().find(|(k, _)| *k == d) {
                Some((_, n)) => n,
                None => {
                    names.push((d, kind_name(&p.kind)));
                    &names.last().expect("just pushed").1
                }
            };
            match kinds.get_mut(name.as_str()) {
                Some(n) => *n += 1,
                None => {
                    kinds.insert(name.clone(), 1);
                }
            }
            sink(Event {
                seq,
                time_ns: p.time_ns,
                device: p.device,
                origin: Origin::File {
                    path: path.to_string(),
                    line: p.line,
                    text: p.text,
                },
                kind: p.kind,
            });
            seq += 1;
        }
    };
    for l in &sniffed {
        parser.feed(l, None);
    }
    drop(sniffed);
    drain(&mut parser, &mut sink);
    let mut l = Line {
        number: 0,
        text: String::new(),
        truncated: false,
    };
    let mut more = true;
    while lines.offset() < pipeline_after_bytes {
        more = lines.next_line_into(&mut l).map_err(io)?;
        if !more {
            break;
        }
        parser.feed(&l, None);
        drain(&mut parser, &mut sink);
    }
    if more {
        lines = read_pipelined(lines, &mut parser, |p| drain(p, &mut sink)).map_err(io)?;
    }
    parser.finish();
    drain(&mut parser, &mut sink);
    *ctx = std::mem::take(&mut parser.ctx);
    if !lines.saw_text() {
        return Err(SourceError::Empty {
            path: path.to_string(),
        });
    }
    let structured = kinds.iter().any(|(k, n)| k != "log_line" && *n > 0);
    let format = match parser.votes.winner() {
        Some(f) => f,
        None if structured => Format::DbgView,
        None => {
            return Err(SourceError::NotRecognised {
                path: path.to_string(),
            });
        }
    };
    // What was read, so a rule can tell an empty capture from a missing one. A run's own
    // events carry their sources inside.
    if format != Format::Events {
        sink(Event {
            seq,
            time_ns: None,
            device: None,
            origin: Origin::File {
                path: path.to_string(),
                line: 0,
                text: String::new(),
            },
            kind: EventKind::SourceRead {
                format: format.label().to_string(),
                lines: lines.line_count(),
            },
        });
    }
    Ok(FileSummary {
        path: path.to_string(),
        format,
        lines: lines.line_count(),
        bytes: lines.offset(),
        truncated_lines: lines.truncated_lines(),
        dropped_events: parser.dropped,
        unquoted_log_lines: parser.unquoted,
        context_lines: parser.context,
        kinds,
    })
}

/// Most an INF block may hold: real INFs are a few KiB and a few hundred lines. A longer run
/// is read in pieces of this size, so what is held stays bounded on any input.
const MAX_INF_BYTES: usize = 4 << 20;
const MAX_INF_LINES: usize = 1 << 16;

/// A section header as an INF writes it: `[name]`, maybe with a `;` comment after it.
fn inf_section_header(t: &str) -> Option<&str> {
    let inner = t.strip_prefix('[')?;
    let close = inner.find(']')?;
    let after = inner[close + 1..].trim_start();
    if !(after.is_empty() || after.starts_with(';')) {
        return None;
    }
    let name = inner[..close].trim();
    let ok = !name.is_empty()
        && name.len() <= 255
        && name.bytes().any(|b| b.is_ascii_alphabetic())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-$%#&".contains(&b));
    ok.then_some(name)
}

/// Whether a line may begin an INF (or an INF fragment): a section header or a `;` comment,
/// written as the whole line.
fn inf_block_starts(raw: &str) -> bool {
    let t = raw.trim_start();
    let t = t.strip_prefix('\u{feff}').unwrap_or(t);
    match t.as_bytes().first() {
        Some(b';') => true,
        Some(b'[') => inf_section_header(t.trim_end()).is_some(),
        _ => false,
    }
}

/// Whether a line can still be part of the INF held so far. What ends it is a line that is
/// plainly something else: a file separator, DbgView or kernel-log columns, a checklist
/// print, a WinDbg prompt, a report virq printed, a JSON event, `/proc/interrupts` or `lspci`
/// headings. Comments and blank lines never end it.
fn inf_block_continues(raw: &str) -> bool {
    let t = raw.trim();
    if t.is_empty() || t.starts_with(';') {
        return true;
    }
    if is_file_separator(raw) || t.starts_with('{') {
        return false;
    }
    let (body, prefix) = strip_prefixes(raw);
    if prefix.dbgview_columns || prefix.pid.is_some() || prefix.kernel_log || prefix.wpp {
        return false;
    }
    let b = body.trim_start();
    if b.starts_with("virq check: ") || b.starts_with("virq doctor: ") {
        return false;
    }
    let hits = gate::hits(body);
    if hits & gate::CHECKLIST != 0 && windows::checklist_print(body).is_some() {
        return false;
    }
    if hits & gate::PROMPT != 0 && windbg::prompt_command(body).is_some() {
        return false;
    }
    if cpu_header_columns(raw).is_some() || wpci::pci_heading(body).is_some() {
        return false;
    }
    !leading_bdf(raw).is_some_and(|(_, rest)| rest.contains(": "))
}

/// Registry value types INFs name through `[Strings]` tokens (`%REG_DWORD%`); a fragment
/// pasted without its `[Strings]` still means these.
const INF_REG_TYPES: [(&str, &str); 5] = [
    ("REG_DWORD", "0x00010001"),
    ("REG_SZ", "0x00000000"),
    ("REG_EXPAND_SZ", "0x00020000"),
    ("REG_MULTI_SZ", "0x00010000"),
    ("REG_BINARY", "0x00000001"),
];

/// Platform decorations an install section name may carry.
const INF_DECORATIONS: [&str; 5] = [".ntamd64", ".ntx86", ".ntarm64", ".ntia64", ".nt"];

fn undecorated(name: &str) -> &str {
    let lower = name.to_ascii_lowercase();
    INF_DECORATIONS
        .iter()
        .find(|d| lower.ends_with(*d))
        .map_or(name, |d| &name[..name.len() - d.len()])
}

/// Reads held lines as an INF: per install section, what Windows reads of its interrupt keys
/// (`InfInterruptPolicy`, at the section's header), and each key that sits where Windows never
/// looks (catalogue row 13), quoted. Returns the events with their 1-based line in `lines`,
/// or `None` when the lines are not an INF.
///
/// Accepted as they are pasted: whole INFs, `.inx` templates (`$ARCH$` read as `amd64`, as
/// stampinf would for an x64 package), fragments without `[Version]`, `[Manufacturer]` or
/// `[Strings]` (the install sections are then the ones with a `.HW` section, or failing that
/// the ones that copy files or add registry values; a `.HW` section pasted without its install
/// section stands for it).
fn inf_events(lines: &[&str]) -> Option<Vec<(usize, EventKind)>> {
    use virq_win7::{Inf, InfArch, InfError};
    let arch = InfArch::Amd64;
    let mut text: Vec<String> = lines
        .iter()
        .map(|l| l.replace("$ARCH$", "amd64").replace("$arch$", "amd64"))
        .collect();
    let real = text.len();
    let headers: Vec<usize> = text
        .iter()
        .enumerate()
        .filter(|(_, l)| inf_section_header(l.trim()).is_some())
        .map(|(i, _)| i + 1)
        .collect();
    let last_header = *headers.last()?;
    // Text after the INF that no end marker caught lands in its last section; a line there
    // that cannot be INF (an unclosed quote) ends the INF instead of spoiling it.
    // A parse error names the first line it cannot read, so one retry without that line and
    // what follows is all the cutting there is.
    let mut tries = 0;
    let inf = loop {
        tries += 1;
        match Inf::parse(&text.join("\n")) {
            Ok(inf) => break inf,
            Err(
                InfError::UnterminatedQuote { line }
                | InfError::LineOutsideSection { line }
                | InfError::UnterminatedSectionHeader { line },
            ) if tries == 1 && line > last_header && line <= text.len() => text.truncate(line - 1),
            Err(_) => {
                let has_version = headers
                    .iter()
                    .any(|h| inf_section_header(text[h - 1].trim()) == Some("Version"));
                return has_version.then(Vec::new);
            }
        }
    };
    let named = |want: &str| {
        inf.sections()
            .iter()
            .any(|s| s.name.eq_ignore_ascii_case(want))
    };
    let is_hw = |name: &str| name.to_ascii_lowercase().ends_with(".hw");
    let directive = |sec: &virq_win7::inf::InfSection, key: &str| {
        sec.lines.iter().any(|l| {
            l.key
                .as_deref()
                .is_some_and(|k| k.eq_ignore_ascii_case(key))
        })
    };
    let hkr = inf.sections().iter().any(|sec| {
        sec.lines.iter().any(|l| {
            l.key.is_none()
                && l.fields
                    .first()
                    .is_some_and(|f| f.eq_ignore_ascii_case("HKR"))
        })
    });
    let addreg = inf.sections().iter().any(|sec| directive(sec, "AddReg"));
    let hw = inf.sections().iter().any(|sec| is_hw(&sec.name));
    let signed = inf.section("Version").is_some_and(|v| {
        v.lines.iter().any(|l| {
            l.key
                .as_deref()
                .is_some_and(|k| k.eq_ignore_ascii_case("Signature"))
        })
    });
    if !(signed || named("Manufacturer") || hkr || addreg || hw) {
        return None;
    }
    // What a fragment leaves out and Windows would have: the registry type tokens, and an
    // install section for a `.HW` section pasted alone.
    let mut extra: Vec<String> = Vec::new();
    let strings = inf.section("Strings");
    let defined = |token: &str| {
        strings.is_some_and(|s| {
            s.lines.iter().any(|l| {
                l.key
                    .as_deref()
                    .is_some_and(|k| k.eq_ignore_ascii_case(token))
            })
        })
    };
    let mut types: Vec<String> = INF_REG_TYPES
        .iter()
        .filter(|(token, _)| !defined(token))
        .filter(|(token, _)| text.iter().any(|l| l.contains(&format!("%{token}%"))))
        .map(|(token, value)| format!("{token} = {value}"))
        .collect();
    if !types.is_empty() {
        extra.push("[Strings]".to_string());
        extra.append(&mut types);
    }
    let mut installs = inf.install_sections(arch);
    let mut from_hw = false;
    if installs.is_empty() {
        for sec in inf.sections() {
            if is_hw(&sec.name) {
                let base = &sec.name[..sec.name.len() - 3];
                if inf.section(base).is_none() {
                    extra.push(format!("[{base}]"));
                }
                from_hw = true;
                let name = undecorated(base).to_string();
                if !installs
                    .iter()
                    .any(|i: &String| i.eq_ignore_ascii_case(&name))
                {
                    installs.push(name);
                }
            }
        }
    }
    if installs.is_empty() {
        for sec in inf.sections() {
            let lower = sec.name.to_ascii_lowercase();
            let service_like = directive(sec, "ServiceType")
                || lower.contains("service")
                || lower.contains("eventlog")
                || lower.ends_with(".coinstallers")
                || lower.ends_with(".wdf")
                || lower.ends_with(".interfaces");
            if !service_like && (directive(sec, "AddReg") || directive(sec, "CopyFiles")) {
                let name = undecorated(&sec.name).to_string();
                if !installs.iter().any(|i| i.eq_ignore_ascii_case(&name)) {
                    installs.push(name);
                }
            }
        }
    }
    let inf = if extra.is_empty() {
        inf
    } else {
        text.extend(extra);
        Inf::parse(&text.join("\n")).ok()?
    };
    let header_of = |name: &str| {
        text.iter()
            .take(real)
            .position(|l| {
                inf_section_header(l.trim()).is_some_and(|n| n.eq_ignore_ascii_case(name))
            })
            .map(|i| i + 1)
    };
    let mut out = Vec::new();
    for install in installs {
        let Ok(settings) = inf.interrupt_settings(&install, arch) else {
            continue;
        };
        let header = header_of(&settings.install_section)
            .or_else(|| {
                from_hw
                    .then(|| header_of(&format!("{}.HW", settings.install_section)))
                    .flatten()
            })
            .unwrap_or(1);
        out.push((
            header,
            EventKind::InfInterruptPolicy {
                install_section: settings.install_section.clone(),
                msi_supported: settings.policy.msi_supported,
                message_number_limit: settings.policy.message_number_limit,
                misplaced_keys: settings.misplaced.len() as u32,
            },
        ));
        for m in &settings.misplaced {
            if let Some(quoted) = m.line.checked_sub(1).and_then(|i| lines.get(i)) {
                out.push((
                    m.line,
                    EventKind::LogLine {
                        text: quoted.trim().to_string(),
                    },
                ));
            }
        }
    }
    Some(out)
}

/// [`parse_reader`] collecting the events of the file's lines into a vector, sorted by line
/// (the closing `SourceRead` is left out: the summary says the same).
pub fn parse_to_vec<R: BufRead + Send>(
    path: &str,
    reader: R,
    limits: ParseLimits,
) -> Result<(Vec<Event>, FileSummary), SourceError> {
    let mut events = Vec::new();
    let summary = parse_reader(path, reader, limits, |e| {
        if !matches!(e.kind, EventKind::SourceRead { .. }) {
            events.push(e);
        }
    })?;
    sort_by_line(&mut events);
    Ok((events, summary))
}

/// Block events are emitted when their block ends; put everything back in line order.
pub(crate) fn sort_by_line(events: &mut [Event]) {
    events.sort_by_key(|e| match &e.origin {
        Origin::File { line, .. } => *line,
        Origin::Run => e.seq,
    });
    for (i, e) in events.iter_mut().enumerate() {
        e.seq = i as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A read that fails on the second thread fails the file, with the reader's error, as
    /// one on the caller's thread does.
    #[test]
    fn a_read_error_on_the_second_thread_is_the_files_error() {
        struct FailsAfter(u64);
        impl std::io::Read for FailsAfter {
            fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
                if self.0 == 0 {
                    return Err(std::io::Error::other("disk gone"));
                }
                let line = b"00000001\t0.5\tvirqblk: DPC drained 3 used buffers\n";
                let n = buf.len().min(line.len()).min(self.0 as usize);
                buf[..n].copy_from_slice(&line[..n]);
                self.0 -= n as u64;
                Ok(n)
            }
        }
        for after in [0, u64::MAX] {
            let err = parse_reader_split(
                "gone.log",
                std::io::BufReader::new(FailsAfter(3 << 20)),
                ParseLimits::default(),
                &mut WinDbgContext::default(),
                |_| {},
                after,
            )
            .unwrap_err();
            assert!(
                matches!(&err, SourceError::Io { path, source } if path == "gone.log" && source.to_string() == "disk gone"),
                "threshold {after}: {err:?}"
            );
        }
    }

    /// A file read partly on a second thread gives exactly the events, in the same order,
    /// and the same summary as the same file read on one: every fixture's lines, so blocks
    /// (lspci, WinDbg, "nobody cared", INF) straddle the batches' boundaries.
    #[test]
    fn the_second_thread_changes_nothing_read() {
        let fixtures = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");
        let mut names: Vec<_> = std::fs::read_dir(fixtures)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.is_file())
            .collect();
        names.sort();
        let mut text = String::new();
        while text.len() < 3 << 19 {
            for p in &names {
                text.push_str(&String::from_utf8_lossy(&std::fs::read(p).unwrap()));
                text.push('\n');
            }
        }
        let read = |after: u64| {
            let mut events = Vec::new();
            let summary = parse_reader_split(
                "mixed.log",
                text.as_bytes(),
                ParseLimits::default(),
                &mut WinDbgContext::default(),
                |e| events.push(e),
                after,
            )
            .unwrap();
            (events, summary)
        };
        let (one, one_summary) = read(u64::MAX);
        assert!(one.len() > 10_000, "{} events", one.len());
        for after in [4096, PIPELINE_AFTER_BYTES] {
            let (two, two_summary) = read(after);
            assert_eq!(two_summary, one_summary, "threshold {after}");
            assert_eq!(two.len(), one.len(), "threshold {after}");
            assert!(two == one, "threshold {after}: the events differ");
        }
    }
}
