//! `!pci 100 Bus Device Function`: one function's configuration space as the pci extension of
//! WinDbg for Windows 7 prints it, and the readers of every `!pci` shape people paste.
//!
//! ```text
//! 0: kd> !pci 100 0 1 0
//!
//! PCI Configuration Space (Segment:0000 Bus:00 Device:01 Function:00)
//! Common Header:
//!     00: VendorID       1af4      Red Hat, Inc.
//!     04: Command        0507      IOSpaceEn MemSpaceEn BusInitiate SERREn InterruptDis
//!     ...
//!     34: CapPtr         98
//! Device Private:
//!     40: 01100009 00000004 00000000 00001000
//! ```
//!
//! Flag 0x100 prints the header by name and everything past it as raw dwords, four to a line:
//! the capability list is in the `Device Private:` block and is walked from `CapPtr` (PCI 3.0
//! section 6.7), so the MSI-X Message Control word is read, not a decoded line. The MSI-X table
//! lives in BAR memory and is not in configuration space at all: [`super::dd`] shows it.
//!
//! Unverified details: the descriptions after the values (class names, the vendor's name), the
//! four-digit `CacheLineSize`, and whether a decoded capability list (flag 0x40) prints
//! `TableSize` as N or as the raw N-1 field. The readers take the shapes published sessions
//! show: the header, the `DD:F VVVV:DDDD.RR Cmd[..] Sts[..]` summary of a bus listing, decoded
//! capability lines, raw dword or byte blocks, and virq's own earlier layout.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use super::{PROMPT, contains_ci, parse_count, parse_flag, parse_number};

/// PCI capability id of MSI-X.
pub const PCI_CAP_ID_MSIX: u8 = 0x11;
/// PCI capability id of a vendor-specific capability (virtio uses these).
pub const PCI_CAP_ID_VENDOR: u8 = 0x09;
/// Red Hat / virtio vendor id (virtio 1.2 section 4.1.2).
pub const VIRTIO_PCI_VENDOR_ID: u16 = 0x1AF4;
/// Most capabilities walked before the list is declared broken.
const MAX_CAPABILITIES: usize = 48;

/// Everything the dump reads.
#[derive(Clone, Copy, Debug)]
pub struct PciDumpInput<'a> {
    /// Bus number.
    pub bus: u8,
    /// Device number.
    pub device: u8,
    /// Function number.
    pub function: u8,
    /// The function's 256 configuration bytes.
    pub config: &'a [u8; 256],
}

fn r8(c: &[u8; 256], off: usize) -> u8 {
    c[off & 0xFF]
}

fn r16(c: &[u8; 256], off: usize) -> u16 {
    u16::from_le_bytes([r8(c, off), r8(c, off + 1)])
}

fn r32(c: &[u8; 256], off: usize) -> u32 {
    u32::from_le_bytes([r8(c, off), r8(c, off + 1), r8(c, off + 2), r8(c, off + 3)])
}

/// Command register bits as the extension names them.
const COMMAND_FLAGS: &[(u16, &str)] = &[
    (1 << 0, "IOSpaceEn"),
    (1 << 1, "MemSpaceEn"),
    (1 << 2, "BusInitiate"),
    (1 << 3, "SpecialCycle"),
    (1 << 4, "MemWriteInvalidate"),
    (1 << 5, "VGASnoop"),
    (1 << 6, "PERREn"),
    (1 << 8, "SERREn"),
    (1 << 9, "FastB2BEn"),
    (1 << 10, "InterruptDis"),
];

const STATUS_FLAGS: &[(u16, &str)] = &[
    (1 << 3, "IntStatus"),
    (1 << 4, "CapList"),
    (1 << 5, "66MHzCapable"),
    (1 << 7, "FB2BCapable"),
    (1 << 8, "DataPERR"),
    (1 << 11, "SigTargetAbort"),
    (1 << 12, "RcvTargetAbort"),
    (1 << 13, "RcvMasterAbort"),
    (1 << 14, "SigSystemErr"),
    (1 << 15, "DetectedPERR"),
];

fn flag_names(value: u16, table: &[(u16, &str)]) -> String {
    table
        .iter()
        .filter(|(bit, _)| value & bit != 0)
        .map(|(_, name)| *name)
        .collect::<Vec<_>>()
        .join(" ")
}

/// Class names (unverified wording; the reader ignores them).
pub fn base_class_name(base: u8) -> Option<&'static str> {
    Some(match base {
        0x01 => "Mass Storage Controller",
        0x02 => "Network Controller",
        0x03 => "Display Controller",
        0x06 => "Bridge Device",
        0x07 => "Simple Serial Communications Controller",
        0xFF => "Unknown Class",
        _ => return None,
    })
}

/// The name `!pci` prints for a class and subclass, when it knows one.
pub fn sub_class_name(base: u8, sub: u8) -> Option<&'static str> {
    Some(match (base, sub) {
        (0x01, 0x00) => "SCSI Bus Controller",
        (0x01, 0x80) => "Other Mass Storage Controller",
        (0x02, 0x00) => "Ethernet Controller",
        (0x06, 0x00) => "Host Bridge",
        (0x06, 0x01) => "ISA Bridge",
        (0x07, 0x80) => "Other Communications Device",
        _ => return None,
    })
}

fn vendor_name(vendor: u16) -> Option<&'static str> {
    match vendor {
        VIRTIO_PCI_VENDOR_ID => Some("Red Hat, Inc."),
        0x8086 => Some("Intel Corporation"),
        _ => None,
    }
}

/// One header line: 4 spaces, the offset, the name in 15 columns, the value in 10, a note.
fn field(out: &mut String, offset: usize, name: &str, value: String, note: Option<&str>) {
    let line = match note.filter(|n| !n.is_empty()) {
        Some(n) => format!("    {offset:02x}: {name:<15}{value:<10}{n}"),
        None => format!("    {offset:02x}: {name:<15}{value}"),
    };
    out.push_str(line.trim_end());
    out.push('\n');
}

/// The `!pci 100 B D F` command and its output for one function.
pub fn render_pci(input: &PciDumpInput<'_>) -> String {
    let c = input.config;
    let mut out = format!(
        "{PROMPT}!pci 100 {:x} {:x} {:x}\n\n",
        input.bus, input.device, input.function
    );
    let _ = writeln!(
        out,
        "PCI Configuration Space (Segment:0000 Bus:{:02x} Device:{:02x} Function:{:02x})",
        input.bus, input.device, input.function
    );
    out.push_str("Common Header:\n");
    let vendor = r16(c, 0x00);
    let command = r16(c, 0x04);
    let status = r16(c, 0x06);
    let (base, sub) = (r8(c, 0x0B), r8(c, 0x0A));
    field(
        &mut out,
        0x00,
        "VendorID",
        format!("{vendor:04x}"),
        vendor_name(vendor),
    );
    field(
        &mut out,
        0x02,
        "DeviceID",
        format!("{:04x}", r16(c, 0x02)),
        None,
    );
    let cmd_names = flag_names(command, COMMAND_FLAGS);
    field(
        &mut out,
        0x04,
        "Command",
        format!("{command:04x}"),
        Some(&cmd_names),
    );
    let sts_names = flag_names(status, STATUS_FLAGS);
    field(
        &mut out,
        0x06,
        "Status",
        format!("{status:04x}"),
        Some(&sts_names),
    );
    field(
        &mut out,
        0x08,
        "RevisionID",
        format!("{:02x}", r8(c, 0x08)),
        None,
    );
    field(
        &mut out,
        0x09,
        "ProgIF",
        format!("{:02x}", r8(c, 0x09)),
        None,
    );
    field(
        &mut out,
        0x0A,
        "SubClass",
        format!("{sub:02x}"),
        sub_class_name(base, sub),
    );
    field(
        &mut out,
        0x0B,
        "BaseClass",
        format!("{base:02x}"),
        base_class_name(base),
    );
    field(
        &mut out,
        0x0C,
        "CacheLineSize",
        format!("{:04x}", r8(c, 0x0C)),
        None,
    );
    field(
        &mut out,
        0x0D,
        "LatencyTimer",
        format!("{:02x}", r8(c, 0x0D)),
        None,
    );
    field(
        &mut out,
        0x0E,
        "HeaderType",
        format!("{:02x}", r8(c, 0x0E)),
        None,
    );
    field(&mut out, 0x0F, "BIST", format!("{:02x}", r8(c, 0x0F)), None);
    for bar in 0..6 {
        let off = 0x10 + bar * 4;
        field(
            &mut out,
            off,
            &format!("BAR{bar}"),
            format!("{:08x}", r32(c, off)),
            None,
        );
    }
    field(
        &mut out,
        0x28,
        "CBCISPtr",
        format!("{:08x}", r32(c, 0x28)),
        None,
    );
    field(
        &mut out,
        0x2C,
        "SubSysVenID",
        format!("{:04x}", r16(c, 0x2C)),
        None,
    );
    field(
        &mut out,
        0x2E,
        "SubSysID",
        format!("{:04x}", r16(c, 0x2E)),
        None,
    );
    field(
        &mut out,
        0x30,
        "ROMBAR",
        format!("{:08x}", r32(c, 0x30)),
        None,
    );
    field(
        &mut out,
        0x34,
        "CapPtr",
        format!("{:02x}", r8(c, 0x34)),
        None,
    );
    field(
        &mut out,
        0x3C,
        "IntLine",
        format!("{:02x}", r8(c, 0x3C)),
        None,
    );
    field(
        &mut out,
        0x3D,
        "IntPin",
        format!("{:02x}", r8(c, 0x3D)),
        None,
    );
    field(
        &mut out,
        0x3E,
        "MinGnt",
        format!("{:02x}", r8(c, 0x3E)),
        None,
    );
    field(
        &mut out,
        0x3F,
        "MaxLat",
        format!("{:02x}", r8(c, 0x3F)),
        None,
    );
    out.push_str("Device Private:\n");
    for row in (0x40..0x100).step_by(16) {
        let dwords: Vec<String> = (0..4)
            .map(|i| format!("{:08x}", r32(c, row + 4 * i)))
            .collect();
        let _ = writeln!(out, "    {row:02x}: {}", dwords.join(" "));
    }
    out
}

/// The MSI-X capability as the configuration bytes hold it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MsixCapView {
    /// Offset of the capability in configuration space.
    pub at: u8,
    /// The raw Message Control word.
    pub control: u16,
    /// Table BIR (low 3 bits of the Table Offset/BIR register).
    pub table_bir: u8,
    /// Table offset in that BAR.
    pub table_offset: u32,
    /// PBA BIR.
    pub pba_bir: u8,
    /// PBA offset in that BAR.
    pub pba_offset: u32,
}

impl MsixCapView {
    /// Message Control bit 15, MSI-X Enable.
    pub fn enabled(&self) -> bool {
        self.control & crate::msi::MSIX_CONTROL_ENABLE != 0
    }

    /// Message Control bit 14, Function Mask.
    pub fn function_masked(&self) -> bool {
        self.control & crate::msi::MSIX_CONTROL_FUNCTION_MASK != 0
    }

    /// Entries in the table (the field holds N-1).
    pub fn table_size(&self) -> u16 {
        (self.control & crate::msi::MSIX_CONTROL_TABLE_SIZE_MASK) + 1
    }
}

/// What [`parse_pci_dump`] reads from one dump.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PciDumpSummary {
    /// `bb:dd.f` from the heading.
    pub bdf: Option<String>,
    /// Vendor ID.
    pub vendor_id: Option<u16>,
    /// Device ID.
    pub device_id: Option<u16>,
    /// Command register.
    pub command: Option<u16>,
    /// Status register.
    pub status: Option<u16>,
    /// Interrupt Pin.
    pub interrupt_pin: Option<u8>,
    /// Interrupt Line.
    pub interrupt_line: Option<u8>,
    /// Capabilities Pointer.
    pub cap_ptr: Option<u8>,
    /// The BAR dwords as printed.
    pub bars: [Option<u32>; 6],
    /// The MSI-X capability found by walking the list through the raw bytes.
    pub msix: Option<MsixCapView>,
}

impl PciDumpSummary {
    /// The physical address BAR `bir` decodes to (memory BARs; 64-bit ones with their upper
    /// half), when the dump shows it.
    pub fn bar_address(&self, bir: u8) -> Option<u64> {
        bar_address(&self.bars, bir)
    }

    /// Where the MSI-X table and the PBA sit in physical memory.
    pub fn msix_location(&self) -> Option<super::dd::MsixLocation> {
        let m = self.msix?;
        Some(super::dd::MsixLocation {
            table: self
                .bar_address(m.table_bir)?
                .checked_add(u64::from(m.table_offset))?,
            entries: m.table_size(),
            pba: self
                .bar_address(m.pba_bir)?
                .checked_add(u64::from(m.pba_offset))?,
        })
    }
}

/// Where the MSI-X table and PBA of the function with this configuration sit, by walking its
/// capability list and decoding the BARs: the address to give `!dd` (what a user reads off
/// `!pci` before dumping the table).
pub fn msix_location(config: &[u8; 256]) -> Option<super::dd::MsixLocation> {
    let mut raw = RawConfig::default();
    raw.add(0, config, 0, "");
    let cap = raw.find_msix(None, Some(config[0x34]))?;
    let m = raw.msix_cap(cap)?;
    let bars = raw.bars();
    Some(super::dd::MsixLocation {
        table: bar_address(&bars, m.table_bir)?.checked_add(u64::from(m.table_offset))?,
        entries: m.table_size(),
        pba: bar_address(&bars, m.pba_bir)?.checked_add(u64::from(m.pba_offset))?,
    })
}

/// The address of memory BAR `bir` from the six BAR dwords (PCI 3.0 section 6.2.5.1).
pub fn bar_address(bars: &[Option<u32>; 6], bir: u8) -> Option<u64> {
    let i = usize::from(bir);
    let lo = (*bars.get(i)?)?;
    if lo & 1 == 1 {
        return None;
    }
    let base = u64::from(lo & !0xF);
    if (lo >> 1) & 3 == 2 {
        let hi = (*bars.get(i + 1)?)?;
        return Some((u64::from(hi) << 32) | base);
    }
    Some(base)
}

/// Reads back what [`render_pci`] writes: the header fields, the raw bytes, and the MSI-X
/// capability found by walking the capability list through them.
pub fn parse_pci_dump(text: &str) -> PciDumpSummary {
    let mut s = PciDumpSummary::default();
    let mut raw = RawConfig::default();
    for (n, line) in text.lines().enumerate() {
        if let Some(PciHeading::Function(bdf)) = pci_heading(line) {
            s.bdf = Some(bdf);
            continue;
        }
        if let Some((off, value)) = header_field(line) {
            match off {
                0x00 => s.vendor_id = u16::try_from(value).ok(),
                0x02 => s.device_id = u16::try_from(value).ok(),
                0x04 => s.command = u16::try_from(value).ok(),
                0x06 => s.status = u16::try_from(value).ok(),
                0x34 => s.cap_ptr = u8::try_from(value).ok(),
                0x3C => s.interrupt_line = u8::try_from(value).ok(),
                0x3D => s.interrupt_pin = u8::try_from(value).ok(),
                0x10..=0x27 => s.bars[usize::from(off - 0x10) / 4] = u32::try_from(value).ok(),
                _ => {}
            }
            continue;
        }
        if let Some((off, bytes)) = pci_raw_line(line) {
            raw.add(off, &bytes, n as u64 + 1, line);
        }
    }
    s.msix = raw
        .find_msix(None, s.cap_ptr)
        .and_then(|at| raw.msix_cap(at));
    s
}

/// A named header line (`    34: CapPtr         98`): the offset and the value.
pub fn header_field(body: &str) -> Option<(u8, u64)> {
    let mut toks = body.split_whitespace();
    let off = toks.next()?.strip_suffix(':')?;
    if off.len() != 2 {
        return None;
    }
    let off = u8::from_str_radix(off, 16).ok()?;
    let name = toks.next()?;
    // A name, not the first dword of a raw line (`50: c7ff0011 ...`).
    if !name.bytes().next()?.is_ascii_alphabetic() || name.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let value = toks.next()?;
    if !value.bytes().all(|b| b.is_ascii_hexdigit()) || value.len() > 8 {
        return None;
    }
    Some((off, u64::from_str_radix(value, 16).ok()?))
}

/// The function `!pci [flags] [segment] bus dev func` names, from the words after `!pci`.
pub fn command_function(args: &[&str]) -> Option<(u8, u8, u8)> {
    if args.len() < 4 {
        return None;
    }
    let bus = args[1].rsplit(':').next()?;
    let num = |s: &str| parse_number(s).and_then(|v| u8::try_from(v).ok());
    Some((num(bus)?, num(args[2])?, num(args[3])?))
}

/// `!pci [flags] bus dev func` -> `bb:dd.f`.
pub fn pci_command_bdf(cmd: &str) -> Option<String> {
    let mut it = cmd.split_whitespace();
    if !it.next()?.eq_ignore_ascii_case("!pci") {
        return None;
    }
    let args: Vec<&str> = it.collect();
    let (b, d, f) = command_function(&args)?;
    Some(format!("{b:02x}:{d:02x}.{f:x}"))
}

/// `PCI Configuration Space (Segment:0000 Bus:00 Device:04 Function:00)` -> `00:04.0`.
pub fn config_space_bdf(body: &str) -> Option<String> {
    if !contains_ci(body, "configuration space") {
        return None;
    }
    let field = |key: &str| {
        let i = body.find(key)? + key.len();
        let rest = &body[i..];
        let end = rest
            .find(|c: char| !c.is_ascii_hexdigit())
            .unwrap_or(rest.len());
        parse_number(&rest[..end])
    };
    Some(format!(
        "{:02x}:{:02x}.{:x}",
        field("Bus:")?,
        field("Device:")?,
        field("Function:")?
    ))
}

/// The PCI Command word from `Cmd[0407:...]` or `Command 0407 ...` (a 4-digit hex word).
pub fn pci_command_word(body: &str) -> Option<u16> {
    word_after(body, "Cmd[", "command")
}

/// The PCI Status word from `Sts[0010:...]` or `Status 0010 ...`.
pub fn pci_status_word(body: &str) -> Option<u16> {
    word_after(body, "Sts[", "status")
}

/// The word after `bracket` (`Cmd[`, `Sts[`), else the four-character word after the word
/// `name` (ASCII case ignored, trailing colons allowed: `Status: 0010`), as whitespace splits
/// the line. Runs on every line that says "status" or "command", so it finds the candidates
/// with byte searches instead of splitting the whole line.
fn word_after(body: &str, bracket: &str, name: &str) -> Option<u16> {
    let (stem, open) = bracket.split_at(bracket.len() - 1);
    debug_assert_eq!(open, "[");
    if let Some(i) = memchr::memchr_iter(b'[', body.as_bytes()).find(|&i| body[..i].ends_with(stem))
    {
        let rest = &body[i + 1..];
        let end = rest.find([':', ']']).unwrap_or(rest.len());
        return parse_number(&rest[..end]).and_then(|v| u16::try_from(v).ok());
    }
    let mut from = 0;
    while let Some(i) = super::find_ci(body, name, from) {
        from = i + 1;
        // A whole word: `name` starts it and only colons follow it.
        let starts = body[..i]
            .chars()
            .next_back()
            .is_none_or(char::is_whitespace);
        let after = body[i + name.len()..].trim_start_matches(':');
        let Some(gap) = after.chars().next() else {
            continue;
        };
        if !starts || !gap.is_whitespace() {
            continue;
        }
        let next = after.trim_start();
        let next = &next[..next.find(char::is_whitespace).unwrap_or(next.len())];
        if next.len() == 4
            && let Some(v) = parse_number(next).and_then(|v| u16::try_from(v).ok())
        {
            return Some(v);
        }
    }
    None
}

/// `Entry[1]  Address:00000000fee00000 Data:000000c1 Masked:0 Pending:0`, a table line of
/// virq's earlier `!pci` layout -> (entry, address, data, masked, pending).
pub fn msix_entry_line(body: &str) -> Option<(u16, u64, u32, bool, bool)> {
    let t = body.trim_start();
    let rest = t.strip_prefix("Entry[")?;
    let close = rest.find(']')?;
    let entry = parse_count(&rest[..close]).and_then(|v| u16::try_from(v).ok())?;
    let fields = &rest[close + 1..];
    let field = |name: &str| {
        fields.split_whitespace().find_map(|tok| {
            let (k, v) = tok.split_once(':')?;
            k.eq_ignore_ascii_case(name).then_some(v)
        })
    };
    let address = field("Address").and_then(parse_number).unwrap_or(0);
    let data = field("Data")
        .and_then(parse_number)
        .and_then(|v| u32::try_from(v).ok())
        .unwrap_or(0);
    let masked = field("Masked").and_then(parse_flag)?;
    let pending = field("Pending").and_then(parse_flag).unwrap_or(false);
    Some((entry, address, data, masked, pending))
}

/// Whether a line opens a decoded MSI-X capability block (`98: CapID 11 MSI-X Capability`).
pub fn is_msix_cap_start(body: &str) -> bool {
    (contains_ci(body, "msi-x") || contains_ci(body, "msix"))
        && contains_ci(body, "cap")
        && !body.contains("Capabilities: [")
}

/// What the lines of one decoded `!pci` MSI-X capability block said.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct MsixFields {
    /// The raw Message Control word; when present it decides everything.
    pub control: Option<u16>,
    /// MSI-X Enable as printed.
    pub enabled: Option<bool>,
    /// Function Mask as printed.
    pub function_masked: Option<bool>,
    /// Number of table entries as printed (decoded, not N-1).
    pub table_size: Option<u16>,
}

impl MsixFields {
    /// Whether the block gave any field.
    pub fn any(&self) -> bool {
        self.control.is_some()
            || self.enabled.is_some()
            || self.function_masked.is_some()
            || self.table_size.is_some()
    }

    /// (enabled, function_masked, table_size) with 0 for an unknown table size.
    pub fn decode(&self) -> (bool, bool, u16) {
        match self.control {
            Some(w) => (w & 0x8000 != 0, w & 0x4000 != 0, (w & 0x07FF) + 1),
            None => (
                self.enabled.unwrap_or(false),
                self.function_masked.unwrap_or(false),
                self.table_size.unwrap_or(0),
            ),
        }
    }

    /// Reads `MessageControl 8002`, `MsgCtrl: 8002`, `Enable:1`, `MSIXEnable+`,
    /// `FunctionMask=0`, `FuncMask:0`, `TableSize:3`, `Table Size 3` from one line.
    pub fn read_line(&mut self, body: &str) -> bool {
        let before = self.clone();
        let lower = body
            .to_ascii_lowercase()
            .replace("message control", "messagecontrol")
            .replace("table size", "tablesize")
            .replace("function mask", "functionmask");
        let toks: Vec<&str> = lower
            .split(|c: char| c.is_whitespace() || matches!(c, '=' | ':' | ',' | '(' | ')'))
            .filter(|t| !t.is_empty())
            .collect();
        for (i, tok) in toks.iter().enumerate() {
            let next = toks.get(i + 1).copied().unwrap_or("");
            let (name, sign) = match tok.strip_suffix('+') {
                Some(n) => (n, Some(true)),
                None => match tok.strip_suffix('-') {
                    Some(n) => (n, Some(false)),
                    None => (*tok, None),
                },
            };
            let flag = || sign.or_else(|| parse_flag(next));
            match name {
                "messagecontrol" | "msgctrl" | "messagectrl" | "msgcontrol" => {
                    let word = (next.len() <= 6).then(|| parse_number(next)).flatten();
                    if let Some(w) = word.and_then(|v| u16::try_from(v).ok()) {
                        self.control = Some(w);
                    }
                }
                "enable" | "enabled" | "msixenable" | "msix_enable" => {
                    self.enabled = Some(flag().unwrap_or(true));
                }
                "functionmask" | "funcmask" | "functionmasked" | "fnmask" => {
                    self.function_masked = flag().or(self.function_masked);
                }
                "tablesize" => {
                    if let Some(n) = parse_count(next).and_then(|v| u16::try_from(v).ok()) {
                        self.table_size = Some(n);
                    }
                }
                _ => {}
            }
        }
        *self != before
    }
}

/// What a `!pci` heading line says about the function the lines after it describe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PciHeading {
    /// `PCI Bus 0`, `PCI Segment 0 Bus 0`: the bus of the summary lines that follow.
    Bus(u8),
    /// A heading naming the whole address (`PCI Configuration Space (Segment:0000 Bus:00
    /// Device:04 Function:00)`, or virq's earlier `PCI Segment 0 Bus 0x00 Device 0x04
    /// Function 0x0`).
    Function(String),
}

/// A `!pci` heading line.
pub fn pci_heading(body: &str) -> Option<PciHeading> {
    if let Some(bdf) = config_space_bdf(body) {
        return Some(PciHeading::Function(bdf));
    }
    let t = body.trim();
    let rest = t.strip_prefix("PCI ")?;
    let toks: Vec<&str> = rest.split_whitespace().collect();
    let num = |s: &str| parse_number(s).and_then(|v| u8::try_from(v).ok());
    match toks.as_slice() {
        ["Bus", b] | ["Segment", _, "Bus", b] => num(b).map(PciHeading::Bus),
        ["Segment", _, "Bus", b, "Device", d, "Function", f] => Some(PciHeading::Function(
            format!("{:02x}:{:02x}.{:x}", num(b)?, num(d)?, num(f)?),
        )),
        _ => None,
    }
}

/// The summary line of one function: `DD:F  VVVV:DDDD.RR  Cmd[...]  Sts[...]  ...` (with the
/// bus from the heading) or `BB:DD.F  VVVV:DDDD.RR  Cmd[...]`. Returns the address (`None`
/// when the bus is not known) and the vendor id.
pub fn pci_summary_line(body: &str, bus: Option<u8>) -> Option<(Option<String>, u16)> {
    let mut toks = body.split_whitespace();
    let addr = toks.next()?;
    let ids = toks.next()?;
    let (vendor, rest) = ids.split_once(':')?;
    let device = rest.split('.').next()?;
    if vendor.len() != 4 || device.len() != 4 {
        return None;
    }
    let vendor = parse_number(vendor).and_then(|v| u16::try_from(v).ok())?;
    parse_number(device)?;
    let hex = |s: &str, n: usize| s.len() <= n && !s.is_empty() && parse_number(s).is_some();
    let bdf = match addr.split(':').collect::<Vec<_>>().as_slice() {
        [b, df] if df.contains('.') => {
            let (d, f) = df.split_once('.')?;
            if !(hex(b, 2) && hex(d, 2) && hex(f, 1)) {
                return None;
            }
            Some(format!(
                "{:02x}:{:02x}.{:x}",
                parse_number(b)?,
                parse_number(d)?,
                parse_number(f)?
            ))
        }
        [d, f] if hex(d, 2) && hex(f, 1) => {
            let (d, f) = (parse_number(d)?, parse_number(f)?);
            bus.map(|b| format!("{b:02x}:{d:02x}.{f:x}"))
        }
        _ => return None,
    };
    Some((bdf, vendor))
}

/// A line of raw configuration space (the `Device Private:` block, or the raw dword / byte
/// flags): `40: 00028011 00000001 ...` or `40: 11 00 02 80 ...`. Returns the offset of the
/// first byte and the bytes (little-endian dwords unpacked).
pub fn pci_raw_line(body: &str) -> Option<(u8, Vec<u8>)> {
    let t = body.trim();
    let (off, rest) = t.split_once(':')?;
    if off.is_empty() || off.len() > 3 || !off.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let off = u8::try_from(u32::from_str_radix(off, 16).ok()?).ok()?;
    let toks: Vec<&str> = rest.split_whitespace().collect();
    if toks.is_empty() || toks.len() > 16 {
        return None;
    }
    let width = toks[0].len();
    if !matches!(width, 2 | 8) || toks.iter().any(|t| t.len() != width) {
        return None;
    }
    let mut bytes = Vec::with_capacity(toks.len() * (width / 2));
    for tok in toks {
        let v = u32::from_str_radix(tok, 16).ok()?;
        if width == 8 {
            bytes.extend_from_slice(&v.to_le_bytes());
        } else {
            bytes.push(v as u8);
        }
    }
    (usize::from(off) + bytes.len() <= 256).then_some((off, bytes))
}

/// `34: CapPtr  98`: the first capability's offset.
pub fn pci_cap_ptr(body: &str) -> Option<u8> {
    named_field(body, "34:", "CapPtr").and_then(|v| u8::try_from(v).ok())
}

/// `00: VendorID  1af4 ...`: the vendor of a `!pci 1xx` dump.
pub fn pci_vendor_field(body: &str) -> Option<u16> {
    named_field(body, "00:", "VendorID").and_then(|v| u16::try_from(v).ok())
}

/// `10: BAR0  fe000004`: a BAR dword, with its configuration offset.
pub fn pci_bar_field(body: &str) -> Option<(u8, u32)> {
    // Most lines of a dump are not BARs: look at the name before splitting anything.
    let t = body.trim_start();
    if t.as_bytes().get(2) != Some(&b':') || !t.get(3..)?.trim_start().starts_with("BAR") {
        return None;
    }
    let (off, value) = header_field(body)?;
    let name = body.split_whitespace().nth(1)?;
    (name.len() == 4 && name.starts_with("BAR") && (0x10..0x28).contains(&off))
        .then(|| Some((off, u32::try_from(value).ok()?)))
        .flatten()
}

fn named_field(body: &str, off: &str, name: &str) -> Option<u64> {
    let mut toks = body.split_whitespace();
    if toks.next()? != off || !toks.next()?.eq_ignore_ascii_case(name) {
        return None;
    }
    parse_number(toks.next()?)
}

/// The offset a capability line sits at (`98: CapID 11 MSI-X Capability` -> 0x98).
pub fn line_offset(body: &str) -> Option<u8> {
    let (off, _) = body.trim_start().split_once(':')?;
    (off.len() == 2)
        .then(|| u8::from_str_radix(off, 16).ok())
        .flatten()
}

/// Raw configuration bytes of one `!pci` dump, with the line each came from.
#[derive(Debug, Clone)]
pub struct RawConfig {
    bytes: Box<[Option<(u8, u32)>; 256]>,
    /// Quoted lines, indexed by the `u32` stored with each byte.
    pub lines: Vec<(u64, String)>,
}

impl Default for RawConfig {
    fn default() -> Self {
        Self {
            bytes: Box::new([None; 256]),
            lines: Vec::new(),
        }
    }
}

/// Lines of raw bytes kept per dump (256 bytes at 4 bytes a line, and a margin).
const MAX_RAW_LINES: usize = 80;

impl RawConfig {
    /// Note raw bytes from `off`, printed on dump line `line` as `text`.
    pub fn add(&mut self, off: u8, bytes: &[u8], line: u64, text: &str) {
        if self.lines.len() >= MAX_RAW_LINES {
            return;
        }
        let idx = self.lines.len() as u32;
        self.lines.push((line, text.to_string()));
        for (i, b) in bytes.iter().enumerate() {
            if let Some(slot) = self.bytes.get_mut(usize::from(off) + i) {
                *slot = Some((*b, idx));
            }
        }
    }

    /// No raw byte line was read.
    pub fn is_empty(&self) -> bool {
        self.lines.is_empty()
    }

    fn byte(&self, off: usize) -> Option<u8> {
        self.bytes.get(off).copied().flatten().map(|(b, _)| b)
    }

    fn dword(&self, off: usize) -> Option<u32> {
        Some(u32::from_le_bytes([
            self.byte(off)?,
            self.byte(off + 1)?,
            self.byte(off + 2)?,
            self.byte(off + 3)?,
        ]))
    }

    /// The MSI-X capability's offset: `at` when a capability line named it, else found by
    /// walking the list from `cap_ptr` through the raw bytes (PCI 3.0 section 6.7).
    pub fn find_msix(&self, at: Option<u8>, cap_ptr: Option<u8>) -> Option<usize> {
        if let Some(at) = at {
            return Some(usize::from(at));
        }
        let mut ptr = usize::from(cap_ptr?);
        let mut seen = BTreeSet::new();
        for _ in 0..MAX_CAPABILITIES {
            if !(0x40..=0xFC).contains(&ptr) || !seen.insert(ptr & !3) {
                return None;
            }
            ptr &= !3;
            if self.byte(ptr)? == PCI_CAP_ID_MSIX {
                return Some(ptr);
            }
            ptr = usize::from(self.byte(ptr + 1)?);
        }
        None
    }

    /// Message Control of the MSI-X capability at `at` and the line that showed it.
    pub fn msix_control(&self, at: usize) -> Option<(u16, &(u64, String))> {
        let (lo, idx) = self.bytes.get(at + 2).copied().flatten()?;
        let (hi, _) = self.bytes.get(at + 3).copied().flatten()?;
        Some((u16::from_le_bytes([lo, hi]), self.lines.get(idx as usize)?))
    }

    /// The whole MSI-X capability at `at`, when its three dwords are in the dump.
    pub fn msix_cap(&self, at: usize) -> Option<MsixCapView> {
        let header = self.dword(at)?;
        let table = self.dword(at + 4)?;
        let pba = self.dword(at + 8)?;
        Some(MsixCapView {
            at: u8::try_from(at).ok()?,
            control: (header >> 16) as u16,
            table_bir: (table & 7) as u8,
            table_offset: table & !7,
            pba_bir: (pba & 7) as u8,
            pba_offset: pba & !7,
        })
    }

    /// The BAR dwords the dump showed (named lines or raw bytes).
    pub fn bars(&self) -> [Option<u32>; 6] {
        std::array::from_fn(|i| self.dword(0x10 + 4 * i))
    }
}

#[cfg(test)]
mod tests {
    /// The byte-search `word_after` against the whitespace-splitting reading it replaced.
    fn word_after_by_splitting(body: &str, bracket: &str, name: &str) -> Option<u16> {
        if let Some(i) = body.find(bracket) {
            let rest = &body[i + bracket.len()..];
            let end = rest.find([':', ']']).unwrap_or(rest.len());
            return parse_number(&rest[..end]).and_then(|v| u16::try_from(v).ok());
        }
        let toks: Vec<&str> = body.split_whitespace().collect();
        toks.windows(2).find_map(|w| {
            let word = w[0].trim_end_matches(':');
            (word.eq_ignore_ascii_case(name) && w[1].len() == 4)
                .then(|| parse_number(w[1]))
                .flatten()
                .and_then(|v| u16::try_from(v).ok())
        })
    }

    proptest::proptest! {
        #[test]
        fn word_after_reads_what_splitting_reads(
            body in r"([ \t\u{a0}:\[\]]|Sts|Cmd|status|STATUS|Status|command|00ff|0x1|0010|xx|é){0,12}",
        ) {
            for (bracket, name) in [("Sts[", "status"), ("Cmd[", "command")] {
                proptest::prop_assert_eq!(
                    word_after(&body, bracket, name),
                    word_after_by_splitting(&body, bracket, name),
                    "{:?}", body
                );
            }
        }
    }

    use super::*;

    /// A modern virtio-blk function: BAR0 64-bit at 0xc0000000 (MSI-X table and PBA), one
    /// virtio vendor cap (ISR) at 0x40, MSI-X at 0x50.
    fn config(control: u16, command: u16, status: u16) -> [u8; 256] {
        let mut c = [0u8; 256];
        let mut put = |off: usize, bytes: &[u8]| c[off..off + bytes.len()].copy_from_slice(bytes);
        put(0x00, &0x1AF4u16.to_le_bytes());
        put(0x02, &0x1042u16.to_le_bytes());
        put(0x04, &command.to_le_bytes());
        put(0x06, &status.to_le_bytes());
        put(0x08, &[0x01, 0x00, 0x00, 0x01]);
        put(0x10, &0xC000_000Cu32.to_le_bytes());
        put(0x14, &0x0000_0001u32.to_le_bytes());
        put(0x2C, &0x1AF4u16.to_le_bytes());
        put(0x2E, &0x1100u16.to_le_bytes());
        put(0x34, &[0x40]);
        put(0x3C, &[0x0B, 0x01]);
        put(0x40, &[0x09, 0x50, 0x10, 0x03, 0x00, 0x00, 0, 0]);
        put(0x48, &0x2000u32.to_le_bytes());
        put(0x4C, &0x1000u32.to_le_bytes());
        put(0x50, &[0x11, 0x00]);
        put(0x52, &control.to_le_bytes());
        put(0x54, &0x0000_3000u32.to_le_bytes());
        put(0x58, &0x0000_3800u32.to_le_bytes());
        c
    }

    fn dump(c: &[u8; 256]) -> String {
        render_pci(&PciDumpInput {
            bus: 0,
            device: 1,
            function: 0,
            config: c,
        })
    }

    /// Found by the `win_text` fuzz target against the earlier reader: a line that is an offset
    /// alone (`11:`, how a pasted /proc/interrupts line starts) made it slice past its one token.
    /// Such a line names no field: the dump around it reads the same as without it.
    #[test]
    fn a_line_that_is_an_offset_alone_names_no_field() {
        let text = dump(&config(0x8003, 0x0406, 0x0018));
        let clean = parse_pci_dump(&text);
        assert_eq!(clean.vendor_id, Some(0x1AF4));
        assert!(clean.msix.is_some());
        let (head, tail) = text.split_at(text.find("Device Private:").unwrap());
        let noisy = format!("{head} 11:   \n    04:\n{tail}\n10:");
        assert_eq!(parse_pci_dump(&noisy), clean);
        assert_eq!(parse_pci_dump(" 11:   "), PciDumpSummary::default());
        let crash = include_bytes!("../../../../fuzz/regressions/win_text-pci-dump-offset-alone");
        assert_eq!(
            parse_pci_dump(&String::from_utf8_lossy(crash)),
            PciDumpSummary::default()
        );
    }

    /// Laid out as the extension prints it: the heading naming the function, the named header
    /// with offsets, the capability list only as `Device Private:` dwords.
    #[test]
    fn the_dump_is_laid_out_as_windbg_prints_it() {
        let text = dump(&config(0x8004, 0x0507, 0x0010));
        for want in [
            "0: kd> !pci 100 0 1 0\n\nPCI Configuration Space (Segment:0000 Bus:00 Device:01 Function:00)\nCommon Header:\n",
            "    00: VendorID       1af4      Red Hat, Inc.\n",
            "    04: Command        0507      IOSpaceEn MemSpaceEn BusInitiate SERREn InterruptDis\n",
            "    06: Status         0010      CapList\n",
            "    0a: SubClass       00        SCSI Bus Controller\n",
            "    10: BAR0           c000000c\n",
            "    2c: SubSysVenID    1af4\n",
            "    34: CapPtr         40\n",
            "    3d: IntPin         01\n",
            "Device Private:\n    40: 03105009 00000000 00002000 00001000\n",
            "    50: 80040011 00003000 00003800 00000000\n",
            "    f0: 00000000 00000000 00000000 00000000\n",
        ] {
            assert!(text.contains(want), "{want:?} in\n{text}");
        }
        assert!(!text.contains("Entry["), "no table in configuration space");
    }

    /// Round trip: what the writer prints reads back to the configuration it was given, the
    /// MSI-X capability found by walking the list from CapPtr through the raw dwords.
    #[test]
    fn the_dump_reads_back_to_the_configuration() {
        for (control, command) in [(0x8004, 0x0507), (0x4000, 0x0006), (0xC7FF, 0x0406)] {
            let c = config(control, command, 0x0010);
            let s = parse_pci_dump(&dump(&c));
            assert_eq!(s.bdf.as_deref(), Some("00:01.0"));
            assert_eq!(s.vendor_id, Some(0x1AF4));
            assert_eq!(s.device_id, Some(0x1042));
            assert_eq!(s.command, Some(command));
            assert_eq!(s.interrupt_pin, Some(1));
            assert_eq!(s.interrupt_line, Some(0x0B));
            let m = s.msix.unwrap();
            assert_eq!(m.at, 0x50);
            assert_eq!(m.control, control);
            assert_eq!((m.table_bir, m.table_offset), (0, 0x3000));
            assert_eq!((m.pba_bir, m.pba_offset), (0, 0x3800));
            assert_eq!(s.bar_address(0), Some(0x1_C000_0000));
            let loc = s.msix_location().unwrap();
            assert_eq!(msix_location(&c), Some(loc));
            assert_eq!(loc.table, 0x1_C000_3000);
            assert_eq!(loc.pba, 0x1_C000_3800);
            assert_eq!(loc.entries, (control & 0x7FF) + 1);
        }
    }

    /// A 64-bit BAR at the top of the address space whose table offset would carry past 2^64
    /// (a dump from user text): no location rather than an overflow. Found with the `win_text`
    /// fuzz target's MSI-X memory checks.
    #[test]
    fn a_table_past_the_top_of_the_address_space_has_no_location() {
        let mut c = config(0x8004, 0x0006, 0x0010);
        c[0x10..0x14].copy_from_slice(&0xFFFF_F00Cu32.to_le_bytes());
        c[0x14..0x18].copy_from_slice(&u32::MAX.to_le_bytes());
        let s = parse_pci_dump(&dump(&c));
        assert_eq!(s.bar_address(0), Some(0xFFFF_FFFF_FFFF_F000));
        assert_eq!(s.msix_location(), None);
        assert_eq!(msix_location(&c), None);
    }

    #[test]
    fn a_broken_capability_list_ends_the_walk() {
        let mut c = config(0x8000, 0x0006, 0x0010);
        c[0x51] = 0x40;
        c[0x50] = 0x05;
        assert_eq!(parse_pci_dump(&dump(&c)).msix, None);
        let mut c = config(0x8000, 0x0006, 0x0010);
        c[0x41] = 0x10;
        assert_eq!(parse_pci_dump(&dump(&c)).msix, None);
    }

    #[test]
    fn pci_words_and_msix_fields() {
        assert_eq!(
            pci_command_word("00:04.0 1af4:1041 Cmd[0407:imb..i.] Sts[0010:c....]"),
            Some(0x407)
        );
        assert_eq!(
            pci_status_word("Cmd[0407:imb..i.] Sts[0018:c....]"),
            Some(0x18)
        );
        assert_eq!(
            pci_command_word("    04: Command  0407  IOSpace InterruptDis"),
            Some(0x407)
        );
        assert_eq!(pci_command_word("Command line: windbg -k"), None);
        let mut f = MsixFields::default();
        assert!(f.read_line("    9a: MessageControl 8002  TableSize:3 FunctionMask:0 Enable:1"));
        assert_eq!(f.decode(), (true, false, 3));
        let mut f = MsixFields::default();
        f.read_line("MsgCtrl TableSize:4 FuncMask:1 MSIXEnable:0");
        assert_eq!(f.decode(), (false, true, 4));
        assert_eq!(
            pci_command_bdf("!pci 100 0 4 0").as_deref(),
            Some("00:04.0")
        );
        assert_eq!(
            config_space_bdf("PCI Configuration Space (Segment:0000 Bus:00 Device:0a Function:00)")
                .as_deref(),
            Some("00:0a.0")
        );
        assert_eq!(
            pci_bar_field("    14: BAR1           00000001"),
            Some((0x14, 1))
        );
        assert_eq!(pci_bar_field("    34: CapPtr         40"), None);
    }
}
