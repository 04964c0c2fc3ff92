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
use std::collections::BTreeMap;
use std::io::BufRead;
use virq_events::{Event, EventKind, Origin};

/// Bounds that keep a huge or hostile file from exhausting memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParseLimits {
    /// Longer lines are cut to this many bytes (and counted).
    pub max_line_bytes: usize,
    /// Free-text `LogLine` events kept per file; a storm capture can print millions.
    pub max_log_lines: u64,
    /// Structured events kept per file.
    pub max_events: u64,
}

impl Default for ParseLimits {
    fn default() -> Self {
        Self {
            max_line_bytes: DEFAULT_MAX_LINE_BYTES,
            max_log_lines: 10_000,
            max_events: 1_000_000,
        }
    }
}

/// What one file contributed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileSummary {
    pub path: String,
    /// The detected format (the one most lines look like).
    pub format: Format,
    pub lines: u64,
    pub bytes: u64,
    /// Lines longer than the limit, cut.
    pub truncated_lines: u64,
    /// Events not kept because of [`ParseLimits`].
    pub dropped_events: u64,
    /// Event kinds found, by their JSON tag (`vector_written`, `irq_count`, ...).
    pub kinds: BTreeMap<String, u64>,
}

impl FileSummary {
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
    fields: windows::MsixFields,
    line: u64,
    text: String,
    device: Option<String>,
    lines_seen: u32,
}

/// One interrupt descriptor of a resource dump being read.
struct EntryBlock {
    entry: windows::IntEntry,
    line: u64,
    text: String,
    device: Option<String>,
}

/// One `lspci -vvv` device block; its events are released only if it is a virtio function.
struct LspciBlock {
    bdf: String,
    virtio: bool,
    held: Vec<Pending>,
}

/// A kernel "irq N: nobody cared" report being read: its `handlers:` list follows, then
/// `Disabling IRQ #N`.
struct NobodyBlock {
    irq: u32,
    handlers: Vec<String>,
    collecting: bool,
    line: u64,
    text: String,
    time_ns: Option<u64>,
}

/// Handlers kept per report (a shared line has a few).
const MAX_HANDLERS: usize = 32;

/// A block's lines are few; more than this means the block never ended properly.
const MAX_BLOCK_LINES: u32 = 24;
const MAX_HELD: usize = 1024;

/// The per-file parser state.
struct Parser {
    limits: ParseLimits,
    votes: Votes,
    out: Vec<Pending>,
    windbg_device: Option<String>,
    msix: Option<MsixBlock>,
    section: windows::ResSection,
    entry: Option<EntryBlock>,
    proc_cpus: Option<usize>,
    lspci: Option<LspciBlock>,
    /// The last WinDbg command (`!devnode`, `!pci`, ...), lower-case.
    command: String,
    log_lines: u64,
    events: u64,
    dropped: u64,
    /// Events read whole from JSON lines, passed on as they are.
    verbatim: Vec<Event>,
    /// The driver has run (printed register accesses, counters...) since its last start.
    driver_active: bool,
    nobody: Option<NobodyBlock>,
    /// Inside a report virq printed (`virq check: ...` to `verdict: ...`, `virq doctor: ...`
    /// to `Result: ...`): the end marker. A report quotes evidence; it is none itself.
    in_report: Option<&'static str>,
}

impl Parser {
    fn new(limits: ParseLimits) -> Self {
        Self {
            limits,
            votes: Votes::default(),
            out: Vec::new(),
            windbg_device: None,
            msix: None,
            section: windows::ResSection::Unknown,
            entry: None,
            proc_cpus: None,
            lspci: None,
            command: String::new(),
            log_lines: 0,
            events: 0,
            dropped: 0,
            verbatim: Vec::new(),
            driver_active: false,
            nobody: None,
            in_report: None,
        }
    }

    fn push(&mut self, p: Pending) {
        let is_log = matches!(p.kind, EventKind::LogLine { .. });
        if is_log && self.log_lines >= self.limits.max_log_lines
            || self.events >= self.limits.max_events
        {
            self.dropped += 1;
            return;
        }
        if is_log {
            self.log_lines += 1;
        }
        self.events += 1;
        if let Some(block) = self.lspci.as_mut() {
            if block.held.len() < MAX_HELD {
                block.held.push(p);
            } else {
                self.dropped += 1;
            }
            return;
        }
        self.out.push(p);
    }

    fn emit(&mut self, kind: EventKind, line: &Line, time_ns: Option<u64>) {
        let device = self
            .lspci
            .as_ref()
            .map(|b| b.bdf.clone())
            .or_else(|| self.windbg_device.clone());
        self.push(Pending {
            kind,
            line: line.number,
            text: line.text.clone(),
            time_ns,
            device,
        });
    }

    /// One `virq_events::Event` as JSON (a run's own evidence): kept exactly as it is,
    /// origin included, so the judge sees the run as the run saw itself (a device's record, or
    /// a line of the file the run parsed).
    fn event_line(&mut self, raw: &str, _line: &Line) -> bool {
        let Ok(e) = serde_json::from_str::<virq_events::Event>(raw.trim()) else {
            return false;
        };
        self.votes.vote(Format::Events);
        if self.events >= self.limits.max_events {
            self.dropped += 1;
            return true;
        }
        self.events += 1;
        self.verbatim.push(e);
        true
    }

    fn end_msix(&mut self) {
        if let Some(b) = self.msix.take() {
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
        if let Some(block) = self.lspci.take() {
            if block.virtio {
                self.out.extend(block.held);
            } else {
                self.events = self.events.saturating_sub(block.held.len() as u64);
            }
        }
    }

    fn end_blocks(&mut self) {
        self.end_msix();
        self.end_entry();
        self.end_lspci();
        self.end_nobody();
    }

    fn end_nobody(&mut self) {
        if let Some(b) = self.nobody.take() {
            self.push(Pending {
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

    /// The kernel's report on a line it gave up on: `irq N: nobody cared`, `handlers:`, one
    /// `[<address>] function` per handler, `Disabling IRQ #N`. Returns whether the line was
    /// part of it.
    fn nobody_line(&mut self, body: &str, line: &Line, time: Option<u64>) -> bool {
        let t = body.trim();
        if let Some(irq) = linux::nobody_cared_irq(t) {
            self.end_nobody();
            self.nobody = Some(NobodyBlock {
                irq,
                handlers: Vec::new(),
                collecting: false,
                line: line.number,
                text: line.text.clone(),
                time_ns: time,
            });
            return false;
        }
        let Some(b) = self.nobody.as_mut() else {
            return false;
        };
        if t.eq_ignore_ascii_case("handlers:") {
            b.collecting = true;
            return true;
        }
        if b.collecting {
            if let Some(name) = linux::handler_name(t) {
                if b.handlers.len() < MAX_HANDLERS {
                    b.handlers.push(name.to_string());
                }
                return true;
            }
            b.collecting = false;
        }
        if contains_ci(t, "Disabling IRQ #") {
            self.end_nobody();
        }
        false
    }

    fn feed(&mut self, line: &Line) {
        let raw = line.text.as_str();
        if raw.trim_start().starts_with('{') && self.event_line(raw, line) {
            return;
        }
        let (body, prefix) = strip_prefixes(raw);
        // A line quoted in a report (`virq check`'s `| INT: ...` proof lines) is not evidence
        // of its own: the line it quotes is. Nor is any line of a report virq printed.
        let t = body.trim_start();
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
        let hits = gate::hits(body);
        self.votes
            .add_gated(raw, body, &prefix, hits & gate::CLASSIFY != 0);
        let time = prefix.time_ns;
        if body.trim().is_empty() {
            self.end_blocks();
            return;
        }
        if (self.nobody.is_some() || hits & gate::INTERESTING != 0)
            && self.nobody_line(body, line, time)
        {
            return;
        }
        if hits & gate::PROMPT != 0 {
            if let Some(cmd) = windows::windbg_prompt(body) {
                self.end_blocks();
                self.section = windows::ResSection::Unknown;
                self.proc_cpus = None;
                self.windbg_device = windows::pci_command_bdf(cmd);
                self.command = cmd
                    .split_whitespace()
                    .next()
                    .unwrap_or("")
                    .to_ascii_lowercase();
                return;
            }
        }
        if self.proc_line(body, line, time) {
            return;
        }
        if self.lspci_line(raw, body, line, time) {
            return;
        }
        if hits & gate::CHECKLIST != 0 {
            if let Some(kinds) = windows::checklist_print(body) {
                // A resource dump (or a pre-start interrupt query) after the driver ran is
                // the driver starting again: reboot, re-install, rebalance, mode switch.
                if self.driver_active && kinds.iter().any(EventKind::is_driver_start) {
                    self.emit(
                        EventKind::SessionStart {
                            label: format!("driver start at line {}", line.number),
                        },
                        line,
                        time,
                    );
                    self.driver_active = false;
                }
                self.driver_active |= kinds.iter().any(EventKind::is_driver_activity);
                for k in kinds {
                    self.emit(k, line, time);
                }
                return;
            }
        }
        if let Some(kind) = virq_win7::windbg::parse_devnode_state(body) {
            self.emit(kind, line, time);
            return;
        }
        let in_block =
            self.msix.is_some() || self.entry.is_some() || self.section == windows::ResSection::Raw;
        if (in_block || hits & gate::WINDBG != 0) && self.windbg_line(body, line, time) {
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
            if self.log_lines >= self.limits.max_log_lines {
                // Over the free-text limit: count it without building the event.
                self.dropped += 1;
                return;
            }
            self.emit(
                EventKind::LogLine {
                    text: body.trim_end().to_string(),
                },
                line,
                time,
            );
        }
    }

    /// `/proc/interrupts`: the header sets the column count; rows follow until a line that is
    /// not a row. Only rows naming a virtio device are kept.
    fn proc_line(&mut self, body: &str, line: &Line, time: Option<u64>) -> bool {
        if let Some(n) = cpu_header_columns(body) {
            self.end_blocks();
            self.proc_cpus = Some(n);
            return true;
        }
        let Some(cpus) = self.proc_cpus else {
            return false;
        };
        match linux::proc_row_ref(body, cpus) {
            Some(row) => {
                // Strings are built only for the rows that are kept.
                if row.name_contains_ci("virtio") {
                    self.emit(
                        EventKind::IrqCount {
                            irq: row.irq.to_string(),
                            name: row.name(),
                            count: row.total,
                            chip: None,
                        },
                        line,
                        time,
                    );
                }
                true
            }
            None => {
                self.proc_cpus = None;
                false
            }
        }
    }

    /// `lspci -vvv`: a device header opens a block; indented lines belong to it.
    fn lspci_line(&mut self, raw: &str, body: &str, line: &Line, time: Option<u64>) -> bool {
        let indented = raw.starts_with([' ', '\t']);
        if !indented {
            match leading_bdf(body) {
                Some((bdf, rest)) if rest.contains(": ") => {
                    self.end_blocks();
                    self.lspci = Some(LspciBlock {
                        bdf: bdf.to_string(),
                        virtio: linux::lspci_header_is_virtio(rest),
                        held: Vec::new(),
                    });
                    return true;
                }
                _ => self.end_lspci(),
            }
            return false;
        }
        if self.lspci.is_none() && !body.trim_start().starts_with("Capabilities:") {
            let t = body.trim_start();
            let lspci_shaped = ["Control:", "Status:", "Interrupt:"]
                .iter()
                .any(|k| t.starts_with(k))
                && t.contains(['+', '-']);
            if !lspci_shaped {
                return false;
            }
        }
        let t = body.trim_start();
        if let Some(driver) = t.strip_prefix("Kernel driver in use:") {
            if let Some(b) = self.lspci.as_mut() {
                b.virtio |= contains_ci(driver, "virtio");
            }
            return true;
        }
        if let Some(v) = linux::lspci_control(t) {
            self.emit(EventKind::PciCommand { value: v }, line, time);
            return true;
        }
        if let Some(pending) = linux::lspci_status_intx(t) {
            self.emit(EventKind::IntxStatus { pending }, line, time);
            return true;
        }
        if let Some((pin, irq)) = linux::lspci_interrupt(t) {
            self.emit(EventKind::IntxRouted { pin, irq }, line, time);
            return true;
        }
        if let Some((enabled, function_masked, table_size)) = linux::lspci_msix(t) {
            self.emit(
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
            self.emit(
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

    /// WinDbg `!pci` words and capability blocks, and `!devnode` resource lists.
    fn windbg_line(&mut self, body: &str, line: &Line, time: Option<u64>) -> bool {
        if let Some(bdf) = windows::config_space_bdf(body) {
            self.windbg_device = Some(bdf);
            return true;
        }
        if windows::is_msix_cap_start(body) {
            self.end_msix();
            let mut fields = windows::MsixFields::default();
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
                windows::msix_entry_line(body)
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
        if let Some(v) = windows::pci_command_word(body) {
            self.emit(EventKind::PciCommand { value: v }, line, time);
            if let Some(s) = windows::pci_status_word(body).filter(|s| *s != 0xFFFF) {
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
        if let Some(s) = windows::pci_status_word(body) {
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
        if let Some(mut section) = windows::resource_section(body) {
            self.end_entry();
            if section == windows::ResSection::Unknown && self.command == "!devnode" {
                section = windows::ResSection::Raw;
            }
            self.section = section;
            return true;
        }
        if let Some(is_interrupt) = windows::resource_entry_start(body) {
            self.end_entry();
            if is_interrupt && self.section != windows::ResSection::Raw {
                let mut entry = windows::IntEntry::default();
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
            && self.section == windows::ResSection::Raw
            && windows::IntEntry::default().read_line(body)
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

    fn finish(&mut self) {
        self.end_blocks();
    }
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

/// Parses one file's text from `reader`, calling `sink` with each event as soon as it is known
/// (in file order except that block-structured events arrive when their block ends).
///
/// Errors: `Empty`, `Utf16`, `Binary` (checked before any event is emitted), `NotRecognised`
/// (no line of a known shape in the whole file), `Io`.
pub fn parse_reader<R: BufRead>(
    path: &str,
    mut reader: R,
    limits: ParseLimits,
    mut sink: impl FnMut(Event),
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
    if looks_like_inf(&sniffed) {
        return parse_inf(path, sniffed, &mut lines, &mut sink).map_err(io);
    }
    let mut parser = Parser::new(limits);
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
        parser.feed(l);
    }
    drop(sniffed);
    drain(&mut parser, &mut sink);
    let mut l = Line {
        number: 0,
        text: String::new(),
        truncated: false,
    };
    while lines.next_line_into(&mut l).map_err(io)? {
        parser.feed(&l);
        drain(&mut parser, &mut sink);
    }
    parser.finish();
    drain(&mut parser, &mut sink);
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
        kinds,
    })
}

/// An INF starts with (or soon has) a `[Version]` section carrying a `Signature`.
fn looks_like_inf(sniffed: &[Line]) -> bool {
    let mut version = false;
    for l in sniffed {
        let t = l.text.trim();
        if t.eq_ignore_ascii_case("[Version]") {
            version = true;
        } else if version
            && t.as_bytes()
                .get(..9)
                .is_some_and(|b| b.eq_ignore_ascii_case(b"Signature"))
        {
            return true;
        }
    }
    false
}

/// Most an INF may hold: real ones are a few KiB.
const MAX_INF_BYTES: u64 = 8 << 20;

/// Read a whole INF (bounded) and say, per install section, what Windows will read of its
/// interrupt keys, quoting every key that sits where Windows never looks (catalogue row 13).
fn parse_inf<R: BufRead>(
    path: &str,
    sniffed: Vec<Line>,
    lines: &mut LineReader<R>,
    sink: &mut impl FnMut(Event),
) -> std::io::Result<FileSummary> {
    let mut text_lines: Vec<String> = sniffed.into_iter().map(|l| l.text).collect();
    while lines.offset() <= MAX_INF_BYTES {
        match lines.next_line()? {
            Some(l) => text_lines.push(l.text),
            None => break,
        }
    }
    let text = text_lines.join("\n");
    let mut kinds: BTreeMap<String, u64> = BTreeMap::new();
    let mut seq = 0u64;
    let mut emit = |line: usize, kind: EventKind| {
        *kinds.entry(kind_name(&kind)).or_insert(0) += 1;
        let text = text_lines
            .get(line.saturating_sub(1))
            .cloned()
            .unwrap_or_default();
        sink(Event {
            seq,
            time_ns: None,
            device: None,
            origin: Origin::File {
                path: path.to_string(),
                line: line as u64,
                text,
            },
            kind,
        });
        seq += 1;
    };
    if let Ok(inf) = virq_win7::Inf::parse(&text) {
        for install in inf.install_sections(virq_win7::InfArch::Amd64) {
            let Ok(settings) = inf.interrupt_settings(&install, virq_win7::InfArch::Amd64) else {
                continue;
            };
            let header = text_lines
                .iter()
                .position(|l| {
                    l.trim()
                        .to_ascii_lowercase()
                        .starts_with(&format!("[{}", install.to_ascii_lowercase()))
                })
                .map_or(1, |i| i + 1);
            emit(
                header,
                EventKind::InfInterruptPolicy {
                    install_section: settings.install_section.clone(),
                    msi_supported: settings.policy.msi_supported,
                    message_number_limit: settings.policy.message_number_limit,
                    misplaced_keys: settings.misplaced.len() as u32,
                },
            );
            for m in &settings.misplaced {
                let quoted = text_lines
                    .get(m.line.saturating_sub(1))
                    .cloned()
                    .unwrap_or_default();
                emit(
                    m.line,
                    EventKind::LogLine {
                        text: quoted.trim().to_string(),
                    },
                );
            }
        }
    }
    Ok(FileSummary {
        path: path.to_string(),
        format: Format::Inf,
        lines: lines.line_count(),
        bytes: lines.offset(),
        truncated_lines: lines.truncated_lines(),
        dropped_events: 0,
        kinds,
    })
}

/// [`parse_reader`] collecting the events of the file's lines into a vector, sorted by line
/// (the closing `SourceRead` is left out: the summary says the same).
pub fn parse_to_vec<R: BufRead>(
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
