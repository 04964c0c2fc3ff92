//! `dt` (display type) of the structures the start IRP hands a driver, as WinDbg prints them
//! with the Windows 7 x64 kernel's symbols, and their reader.
//!
//! Checklist 1.3 follows `!irp @rdx` with `dt nt!_CM_RESOURCE_LIST <AllocatedResourcesTranslated>`.
//! `PartialDescriptors` is declared `[1]`, so `dt` of the list shows the header and at most the
//! first descriptor; each descriptor is dumped at its own address, 0x14 bytes apart from
//! list + 0x14 (the structures are packed to 4 bytes):
//!
//! ```text
//! 0: kd> dt nt!_CM_RESOURCE_LIST -r2 fffff8a0`0189d1e0
//!    +0x000 Count            : 1
//!    +0x004 List             : [1] _CM_FULL_RESOURCE_DESCRIPTOR
//!       +0x000 InterfaceType    : 5 ( PCIBus )
//!       +0x004 BusNumber        : 0
//!       +0x008 PartialResourceList : _CM_PARTIAL_RESOURCE_LIST
//!          +0x000 Version          : 1
//!          +0x002 Revision         : 1
//!          +0x004 Count            : 6
//!          +0x008 PartialDescriptors : [1] _CM_PARTIAL_RESOURCE_DESCRIPTOR
//! 0: kd> dt nt!_CM_PARTIAL_RESOURCE_DESCRIPTOR -r3 fffff8a0`0189d208
//!    +0x000 Type             : 0x2 ''
//!    +0x001 ShareDisposition : 0x1 ''
//!    +0x002 Flags            : 3
//!    +0x004 u                : <unnamed-tag>
//!       ...
//!       +0x000 Interrupt        : <unnamed-tag>
//!          +0x000 Level            : 0xb
//!          +0x002 Group            : 0
//!          +0x004 Vector           : 0xb1
//!          +0x008 Affinity         : 0x00000000`00000003
//!       +0x000 MessageInterrupt : <unnamed-tag>
//!          +0x000 Raw              : <unnamed-tag>
//!             +0x000 Group            : 0xb
//!             +0x002 MessageCount     : 0
//!             ...
//!          +0x000 Translated       : <unnamed-tag>
//!             +0x000 Level            : 0xb
//!             +0x002 Group            : 0
//! ```
//!
//! `dt` shows every member of the `u` union over the same 16 bytes: on a translated message
//! descriptor `MessageInterrupt.Raw.MessageCount` is the translated `Group` (0), and
//! `Raw.Group` is the translated `Level` (the x64 layout of `NT_PROCESSOR_GROUPS`). The writer
//! lays the descriptor out in its 20 bytes and prints each member from them, so the overlay is
//! shown as the machine has it, not restated.
//!
//! The stack location the `!irp` marks current is dumped with its start parameters:
//! `dt nt!_IO_STACK_LOCATION <address> MajorFunction MinorFunction Parameters.StartDevice.`
//!
//! Unverified: whether `dt` prints unsigned values below 10 with `0x`, 64-bit values with the
//! backtick in full, the `_LARGE_INTEGER` header value, and which members the Windows 7 `u`
//! union has beyond `Interrupt`, `MessageInterrupt` and `Memory` (`Memory40/48/64` are printed).
//! The reader takes either spelling of a number, any indentation step, fields in any order,
//! a descriptor nested in its list (`-r6`) or on its own, and `-a` array elements.

use std::fmt::Write as _;

use virq_events::{EventKind, InterruptMode};

use super::{PROMPT, fmt_ptr, parse_number};
use crate::resources::{
    CM_RESOURCE_INTERRUPT_MESSAGE, CM_RESOURCE_TYPE_INTERRUPT, CM_RESOURCE_TYPE_MEMORY,
    CmDescriptorData, CmInterrupt, CmMemory, CmMessageInterrupt, CmMessageInterruptRaw,
    CmPartialResourceDescriptor, CmResourceType, ShareDisposition,
};

/// Offset of the first partial descriptor in a `CM_RESOURCE_LIST` with one full descriptor.
pub const FIRST_DESCRIPTOR: u64 = 0x14;
/// `sizeof(CM_PARTIAL_RESOURCE_DESCRIPTOR)` on x64 (packed to 4).
pub const DESCRIPTOR_SIZE: u64 = 0x14;
/// `PCIBus` in `INTERFACE_TYPE`.
pub const PCI_BUS: u32 = 5;

/// Where descriptor `i` of the list at `list` sits.
pub fn descriptor_address(list: u64, i: usize) -> u64 {
    list + FIRST_DESCRIPTOR + i as u64 * DESCRIPTOR_SIZE
}

/// The 20 bytes of a descriptor as the x64 kernel lays them out.
pub fn descriptor_bytes(d: &CmPartialResourceDescriptor) -> [u8; 20] {
    let mut b = [0u8; 20];
    b[0] = d.resource_type as u8;
    b[1] = d.share_disposition as u8;
    b[2..4].copy_from_slice(&d.flags.to_le_bytes());
    let u = &mut b[4..];
    fn put16(u: &mut [u8], at: usize, v: u16) {
        u[at..at + 2].copy_from_slice(&v.to_le_bytes());
    }
    match d.u {
        CmDescriptorData::Interrupt(i)
        | CmDescriptorData::MessageInterrupt(CmMessageInterrupt::Translated(i)) => {
            put16(u, 0, i.level as u16);
            put16(u, 2, i.group);
            u[4..8].copy_from_slice(&i.vector.to_le_bytes());
            u[8..16].copy_from_slice(&i.affinity.to_le_bytes());
        }
        CmDescriptorData::MessageInterrupt(CmMessageInterrupt::Raw(r)) => {
            put16(u, 0, r.group);
            put16(u, 2, r.message_count as u16);
            u[4..8].copy_from_slice(&r.vector.to_le_bytes());
            u[8..16].copy_from_slice(&r.affinity.to_le_bytes());
        }
        CmDescriptorData::Memory(m) => {
            u[0..8].copy_from_slice(&m.start.to_le_bytes());
            u[8..12].copy_from_slice(&(m.length as u32).to_le_bytes());
        }
    }
    b
}

/// The value formats `dt` uses.
enum Val {
    UChar(u8),
    U16(u16),
    U32(u32),
    U64(u64),
    I32(i32),
    I64(i64),
    Large(u64),
    Tag,
}

fn value_text(v: &Val) -> String {
    let unsigned = |v: u64| {
        if v == 0 {
            "0".to_string()
        } else {
            format!("0x{v:x}")
        }
    };
    match *v {
        Val::UChar(c) => {
            let ch = if (0x20..0x7F).contains(&c) {
                (c as char).to_string()
            } else {
                String::new()
            };
            if c == 0 {
                format!("0 '{ch}'")
            } else {
                format!("0x{c:x} '{ch}'")
            }
        }
        Val::U16(v) => unsigned(u64::from(v)),
        Val::U32(v) => unsigned(u64::from(v)),
        Val::U64(v) => format!("0x{}", fmt_ptr(v)),
        Val::I32(v) => format!("0n{v}"),
        Val::I64(v) => format!("0n{v}"),
        Val::Large(v) if v >> 32 == 0 => format!("_LARGE_INTEGER 0x{v:x}"),
        Val::Large(v) => format!("_LARGE_INTEGER 0x{:x}`{:08x}", v >> 32, v & 0xFFFF_FFFF),
        Val::Tag => "<unnamed-tag>".to_string(),
    }
}

/// One `+0xOFF Name : value` line at nesting `depth` (0 = the dumped structure's own fields).
fn line(out: &mut String, depth: usize, offset: u32, name: &str, value: &str) {
    let pad = " ".repeat(3 + 3 * depth);
    let _ = writeln!(out, "{pad}+0x{offset:03x} {name:<16} : {value}");
}

fn v(out: &mut String, depth: usize, offset: u32, name: &str, val: Val) {
    line(out, depth, offset, name, &value_text(&val));
}

fn rd16(u: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([u[at], u[at + 1]])
}

fn rd32(u: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([u[at], u[at + 1], u[at + 2], u[at + 3]])
}

fn rd64(u: &[u8], at: usize) -> u64 {
    u64::from(rd32(u, at)) | (u64::from(rd32(u, at + 4)) << 32)
}

/// A `_LARGE_INTEGER` field with its union expanded one more level.
fn large(out: &mut String, depth: usize, name: &str, q: u64) {
    v(out, depth, 0, name, Val::Large(q));
    v(out, depth + 1, 0, "LowPart", Val::U32(q as u32));
    v(out, depth + 1, 4, "HighPart", Val::I32((q >> 32) as i32));
    v(out, depth + 1, 0, "u", Val::Tag);
    v(out, depth + 1, 0, "QuadPart", Val::I64(q as i64));
}

/// The four fields of `u.Interrupt` / `Raw` / `Translated` at `depth` (16-bit pair first).
fn four(out: &mut String, depth: usize, names: [&str; 2], u: &[u8]) {
    v(out, depth, 0, names[0], Val::U16(rd16(u, 0)));
    v(out, depth, 2, names[1], Val::U16(rd16(u, 2)));
    v(out, depth, 4, "Vector", Val::U32(rd32(u, 4)));
    v(out, depth, 8, "Affinity", Val::U64(rd64(u, 8)));
}

/// The fields of one descriptor, its union printed member by member over the same bytes.
fn descriptor_fields(out: &mut String, depth: usize, bytes: &[u8; 20]) {
    v(out, depth, 0, "Type", Val::UChar(bytes[0]));
    v(out, depth, 1, "ShareDisposition", Val::UChar(bytes[1]));
    v(out, depth, 2, "Flags", Val::U16(rd16(bytes, 2)));
    v(out, depth, 4, "u", Val::Tag);
    let u = &bytes[4..];
    let d = depth + 1;
    for name in ["Generic", "Port"] {
        v(out, d, 0, name, Val::Tag);
        large(out, d + 1, "Start", rd64(u, 0));
        v(out, d + 1, 8, "Length", Val::U32(rd32(u, 8)));
    }
    v(out, d, 0, "Interrupt", Val::Tag);
    four(out, d + 1, ["Level", "Group"], u);
    v(out, d, 0, "MessageInterrupt", Val::Tag);
    v(out, d + 1, 0, "Raw", Val::Tag);
    four(out, d + 2, ["Group", "MessageCount"], u);
    v(out, d + 1, 0, "Translated", Val::Tag);
    four(out, d + 2, ["Level", "Group"], u);
    v(out, d, 0, "Memory", Val::Tag);
    large(out, d + 1, "Start", rd64(u, 0));
    v(out, d + 1, 8, "Length", Val::U32(rd32(u, 8)));
    v(out, d, 0, "Dma", Val::Tag);
    v(out, d + 1, 0, "Channel", Val::U32(rd32(u, 0)));
    v(out, d + 1, 4, "Port", Val::U32(rd32(u, 4)));
    v(out, d + 1, 8, "Reserved1", Val::U32(rd32(u, 8)));
    v(out, d, 0, "DevicePrivate", Val::Tag);
    line(
        out,
        d + 1,
        0,
        "Data",
        &format!("[3] {}", value_text(&Val::U32(rd32(u, 0)))),
    );
    v(out, d, 0, "BusNumber", Val::Tag);
    v(out, d + 1, 0, "Start", Val::U32(rd32(u, 0)));
    v(out, d + 1, 4, "Length", Val::U32(rd32(u, 4)));
    v(out, d + 1, 8, "Reserved", Val::U32(rd32(u, 8)));
    v(out, d, 0, "DeviceSpecificData", Val::Tag);
    v(out, d + 1, 0, "DataSize", Val::U32(rd32(u, 0)));
    v(out, d + 1, 4, "Reserved1", Val::U32(rd32(u, 4)));
    v(out, d + 1, 8, "Reserved2", Val::U32(rd32(u, 8)));
    for (name, len) in [
        ("Memory40", "Length40"),
        ("Memory48", "Length48"),
        ("Memory64", "Length64"),
    ] {
        v(out, d, 0, name, Val::Tag);
        large(out, d + 1, "Start", rd64(u, 0));
        v(out, d + 1, 8, len, Val::U32(rd32(u, 8)));
    }
}

/// `dt nt!_CM_RESOURCE_LIST -r2` of the list at `address`, then each descriptor at its own
/// address with `-r3`.
pub fn render_resource_list(address: u64, descriptors: &[CmPartialResourceDescriptor]) -> String {
    let mut out = format!("{PROMPT}dt nt!_CM_RESOURCE_LIST -r2 {}\n", fmt_ptr(address));
    v(&mut out, 0, 0, "Count", Val::U32(1));
    line(&mut out, 0, 4, "List", "[1] _CM_FULL_RESOURCE_DESCRIPTOR");
    line(
        &mut out,
        1,
        0,
        "InterfaceType",
        &format!("{PCI_BUS} ( PCIBus )"),
    );
    v(&mut out, 1, 4, "BusNumber", Val::U32(0));
    line(
        &mut out,
        1,
        8,
        "PartialResourceList",
        "_CM_PARTIAL_RESOURCE_LIST",
    );
    v(&mut out, 2, 0, "Version", Val::U16(1));
    v(&mut out, 2, 2, "Revision", Val::U16(1));
    v(&mut out, 2, 4, "Count", Val::U32(descriptors.len() as u32));
    line(
        &mut out,
        2,
        8,
        "PartialDescriptors",
        "[1] _CM_PARTIAL_RESOURCE_DESCRIPTOR",
    );
    for (i, d) in descriptors.iter().enumerate() {
        let _ = writeln!(
            out,
            "{PROMPT}dt nt!_CM_PARTIAL_RESOURCE_DESCRIPTOR -r3 {}",
            fmt_ptr(descriptor_address(address, i))
        );
        descriptor_fields(&mut out, 0, &descriptor_bytes(d));
    }
    out
}

/// `dt nt!_IO_STACK_LOCATION <location> MajorFunction MinorFunction Parameters.StartDevice.`
/// of the start IRP's current stack location.
pub fn render_start_stack_location(location: u64, raw_list: u64, translated_list: u64) -> String {
    let mut out = format!(
        "{PROMPT}dt nt!_IO_STACK_LOCATION {} MajorFunction MinorFunction Parameters.StartDevice.\n",
        fmt_ptr(location)
    );
    v(
        &mut out,
        0,
        0,
        "MajorFunction",
        Val::UChar(super::irp::IRP_MJ_PNP),
    );
    v(
        &mut out,
        0,
        1,
        "MinorFunction",
        Val::UChar(super::irp::IRP_MN_START_DEVICE),
    );
    v(&mut out, 0, 8, "Parameters", Val::Tag);
    v(&mut out, 1, 0, "StartDevice", Val::Tag);
    let ptr = |p: u64| format!("0x{} _CM_RESOURCE_LIST", fmt_ptr(p));
    line(&mut out, 2, 0, "AllocatedResources", &ptr(raw_list));
    line(
        &mut out,
        2,
        8,
        "AllocatedResourcesTranslated",
        &ptr(translated_list),
    );
    out
}

// ---- reading ---------------------------------------------------------------------------------

/// One `+0xOFF Name : value` line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DtField<'a> {
    /// Leading spaces: the nesting.
    pub indent: usize,
    /// `+0xOFF`: offset of the field in its structure.
    pub offset: u32,
    /// The field name.
    pub name: &'a str,
    /// The value as printed, after the colon.
    pub value: &'a str,
}

/// A `dt` field line.
pub fn parse_field(line: &str) -> Option<DtField<'_>> {
    let trimmed = line.trim_start_matches([' ', '\t']);
    let indent = line.len() - trimmed.len();
    let rest = trimmed.strip_prefix("+0x")?;
    let (offset, rest) = rest.split_once(|c: char| c.is_whitespace())?;
    let offset = u32::from_str_radix(offset, 16).ok()?;
    let rest = rest.trim_start();
    let (name, value) = rest.split_once(':')?;
    let name = name.trim_end();
    if name.is_empty() || name.contains(char::is_whitespace) {
        return None;
    }
    Some(DtField {
        indent,
        offset,
        name,
        value: value.trim(),
    })
}

/// The number a `dt` value shows: `3`, `0x1b ''`, `0n177`, ``0x00000000`00000003``,
/// `5 ( PCIBus )`, `_LARGE_INTEGER 0x1000b`, `[3] 0xb`, ``0xfffff8a0`0189c4b0 _CM_RESOURCE_LIST``.
pub fn parse_value(value: &str) -> Option<u64> {
    let mut toks = value.split_whitespace();
    let first = toks.next()?;
    let tok = if first.starts_with('_') || first.starts_with('[') {
        toks.next()?
    } else {
        first
    };
    if let Some(dec) = tok.strip_prefix("0n") {
        return dec
            .parse::<i64>()
            .ok()
            .map(|v| v as u64)
            .or_else(|| dec.parse().ok());
    }
    parse_number(tok)
}

/// The 16 bytes of `u` as seen through one union member: (a 16-bit pair, vector, affinity).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FourFields {
    /// The 16 bits at +0.
    pub first: Option<u16>,
    /// The 16 bits at +2.
    pub second: Option<u16>,
    /// The 32 bits at +4 (`Vector`).
    pub vector: Option<u32>,
    /// The 64 bits at +8 (`Affinity`).
    pub affinity: Option<u64>,
}

impl FourFields {
    /// Sets the field at `offset` in the member (+0, +2, +4, +8).
    fn set_at(&mut self, offset: u32, value: u64) {
        match offset {
            0 => self.first = Some(value as u16),
            2 => self.second = Some(value as u16),
            4 => self.vector = Some(value as u32),
            8 => self.affinity = Some(value),
            _ => {}
        }
    }
}

/// What `dt` showed of one partial descriptor, member by member.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DtDescriptor {
    /// Address of the descriptor, when the dump gave it.
    pub address: Option<u64>,
    /// `Type` (`CM_RESOURCE_TYPE`).
    pub resource_type: Option<u8>,
    /// `ShareDisposition`.
    pub share: Option<u8>,
    /// `Flags`.
    pub flags: Option<u16>,
    /// `u.Interrupt`: (Level, Group, Vector, Affinity).
    pub interrupt: FourFields,
    /// `u.MessageInterrupt.Raw`: (Group, MessageCount, Vector, Affinity).
    pub raw: FourFields,
    /// `u.MessageInterrupt.Translated`: (Level, Group, Vector, Affinity).
    pub translated: FourFields,
    /// `u.Memory`: Start, Length.
    pub memory: (Option<u64>, Option<u32>),
    /// Caller's tags of the lines that showed the vector through each view.
    pub vector_tags: [Option<u64>; 3],
    /// Tag of the `Type` line.
    pub type_tag: Option<u64>,
}

impl DtDescriptor {
    fn is_message(&self) -> bool {
        self.flags.unwrap_or(0) & CM_RESOURCE_INTERRUPT_MESSAGE != 0
    }

    /// The tag of the line to quote for this descriptor read from the raw list or not.
    pub fn quote_tag(&self, raw: bool) -> Option<u64> {
        let [interrupt, raw_view, translated] = self.vector_tags;
        let own = if !self.is_message() {
            interrupt
        } else if raw {
            raw_view
        } else {
            translated
        };
        own.or(interrupt)
            .or(raw_view)
            .or(translated)
            .or(self.type_tag)
    }

    /// The evidence this descriptor is, read as a member of the raw list or the translated one:
    /// the same facts [`CmPartialResourceDescriptor::assigned_event`] gives the model's
    /// descriptor. `None` for anything but an interrupt, or without a vector.
    pub fn to_event(&self, raw: bool) -> Option<EventKind> {
        if self.resource_type? != CM_RESOURCE_TYPE_INTERRUPT {
            return None;
        }
        let flags = self.flags.unwrap_or(0);
        let i = &self.interrupt;
        let (r, t) = (&self.raw, &self.translated);
        let vector = i.vector.or(r.vector).or(t.vector)?;
        let affinity = i.affinity.or(r.affinity).or(t.affinity).unwrap_or(0);
        // Every view reads the same bytes: +0 is Interrupt.Level = Raw.Group =
        // Translated.Level, +2 is Interrupt.Group = Raw.MessageCount = Translated.Group.
        let at0 = i.first.or(r.first).or(t.first).unwrap_or(0);
        let at2 = i.second.or(r.second).or(t.second).unwrap_or(0);
        let message = flags & CM_RESOURCE_INTERRUPT_MESSAGE != 0;
        Some(EventKind::ResourceAssigned {
            mode: if message {
                InterruptMode::Message
            } else {
                InterruptMode::Intx
            },
            message_count: if message { u32::from(at2) } else { 0 },
            level: u32::from(at0),
            vector,
            affinity,
            flags,
            raw,
        })
    }

    /// The model's descriptor this dump shows, read as a member of the raw list or not.
    pub fn to_descriptor(&self, raw: bool) -> Option<CmPartialResourceDescriptor> {
        let share = match self.share? {
            0 => ShareDisposition::Undetermined,
            1 => ShareDisposition::DeviceExclusive,
            2 => ShareDisposition::DriverExclusive,
            3 => ShareDisposition::Shared,
            _ => return None,
        };
        let flags = self.flags.unwrap_or(0);
        let (resource_type, u) = match self.resource_type? {
            CM_RESOURCE_TYPE_MEMORY => (
                CmResourceType::Memory,
                CmDescriptorData::Memory(CmMemory {
                    start: self.memory.0?,
                    length: u64::from(self.memory.1?),
                }),
            ),
            CM_RESOURCE_TYPE_INTERRUPT => {
                let EventKind::ResourceAssigned {
                    message_count,
                    level,
                    vector,
                    affinity,
                    ..
                } = self.to_event(raw)?
                else {
                    return None;
                };
                let i = &self.interrupt;
                let at2 = i.second.or(self.raw.second).or(self.translated.second);
                let group = at2.unwrap_or(0);
                let u = if !self.is_message() {
                    CmDescriptorData::Interrupt(CmInterrupt {
                        level,
                        group,
                        vector,
                        affinity,
                    })
                } else if raw {
                    CmDescriptorData::MessageInterrupt(CmMessageInterrupt::Raw(
                        CmMessageInterruptRaw {
                            group: level as u16,
                            message_count,
                            vector,
                            affinity,
                        },
                    ))
                } else {
                    CmDescriptorData::MessageInterrupt(CmMessageInterrupt::Translated(
                        CmInterrupt {
                            level,
                            group,
                            vector,
                            affinity,
                        },
                    ))
                };
                (CmResourceType::Interrupt, u)
            }
            _ => return None,
        };
        Some(CmPartialResourceDescriptor {
            resource_type,
            share_disposition: share,
            flags,
            u,
        })
    }
}

/// What a `dt` block yields.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DtItem {
    /// A list header: its address (when the command gave it) and the descriptor count.
    List {
        /// Address of the list.
        address: Option<u64>,
        /// `List.PartialResourceList.Count`: descriptors in the list.
        count: u32,
    },
    /// One `CM_PARTIAL_RESOURCE_DESCRIPTOR`.
    Descriptor(DtDescriptor),
    /// `Parameters.StartDevice` of a stack location: the raw and translated lists.
    StartDevice {
        /// `Argument1`: address of `AllocatedResources`.
        raw: u64,
        /// `Argument2`: address of `AllocatedResourcesTranslated`.
        translated: u64,
        /// `MajorFunction` of the location, when shown.
        major: Option<u8>,
        /// `MinorFunction`, when shown.
        minor: Option<u8>,
    },
}

/// Reads the field lines of `dt` blocks (one command's output), line by line.
#[derive(Debug, Default, Clone)]
pub struct DtReader {
    /// The dumped structure (`_CM_RESOURCE_LIST`, ...), without module, when the command said.
    type_name: Option<String>,
    address: Option<u64>,
    /// The nesting: (indent, field name).
    path: Vec<(usize, String)>,
    current: Option<DtDescriptor>,
    /// Descriptors read in this block so far.
    descriptors: u32,
    /// The address of the next descriptor from a `[01] @ fffff8a0...` element line.
    element: Option<u64>,
    start: (Option<u64>, Option<u64>, Option<u8>, Option<u8>),
    start_done: bool,
}

/// The names a descriptor's own fields have.
fn is_descriptor_field(name: &str) -> bool {
    matches!(name, "Type" | "ShareDisposition" | "Flags" | "u")
}

impl DtReader {
    /// A reader for the output of `dt <type_name> <address>` (either may be unknown).
    pub fn new(type_name: Option<&str>, address: Option<u64>) -> Self {
        DtReader {
            type_name: type_name.map(str::to_string),
            address,
            ..Default::default()
        }
    }

    /// The address the `dt` command dumped, when it gave one.
    pub fn address(&self) -> Option<u64> {
        self.address
    }

    /// Takes a line that is not a field: an `-a` array element heading (`[01] @ fffff8a0...`)
    /// or its separator. Returns whether it was one.
    pub fn feed_other(&mut self, line: &str) -> bool {
        let t = line.trim();
        if t.starts_with("---") && t.bytes().all(|b| b == b'-') {
            return true;
        }
        let Some(rest) = t.strip_prefix('[') else {
            return false;
        };
        let Some((idx, at)) = rest.split_once("] @ ") else {
            return false;
        };
        if idx.bytes().all(|b| b.is_ascii_hexdigit()) {
            self.element = parse_number(at.trim());
            return self.element.is_some();
        }
        false
    }

    /// Takes one field line, tagged by the caller (a line number, say). Returns what it
    /// completed: the descriptor before it when it starts a new one, a list header, a stack
    /// location's start parameters.
    pub fn feed(&mut self, f: &DtField<'_>, tag: u64) -> Vec<DtItem> {
        let mut out = Vec::new();
        while self.path.last().is_some_and(|(i, _)| *i >= f.indent) {
            self.path.pop();
        }
        let path = std::mem::take(&mut self.path);
        let value = parse_value(f.value);
        let mut full: Vec<&str> = path.iter().map(|(_, n)| n.as_str()).collect();
        full.push(f.name);
        // Where the descriptor's own fields start in this path: at the top of a descriptor
        // dump, or under `PartialDescriptors` of a list.
        let rel = full
            .iter()
            .position(|n| is_descriptor_field(n))
            .filter(|&p| p == 0 || full[p - 1] == "PartialDescriptors")
            .filter(|_| self.reads_descriptors())
            .map(|p| &full[p..]);
        if let Some(rel) = rel {
            if rel == ["Type"] {
                out.extend(self.take_current());
                let nested = full.len() > 1;
                let address = self.element.take().or_else(|| {
                    let base = self.address?;
                    let i = self.descriptors as usize;
                    Some(if nested || self.is_list() {
                        descriptor_address(base, i)
                    } else {
                        base + i as u64 * DESCRIPTOR_SIZE
                    })
                });
                self.descriptors += 1;
                self.current = Some(DtDescriptor {
                    address,
                    type_tag: Some(tag),
                    ..Default::default()
                });
            }
            if let (Some(d), Some(value)) = (self.current.as_mut(), value) {
                Self::set_descriptor_field(d, rel, f.offset, value, tag);
            }
        } else if let Some(value) = value {
            match full.as_slice() {
                ["List", "PartialResourceList", "Count"] => out.push(DtItem::List {
                    address: self.address,
                    count: value as u32,
                }),
                [.., "StartDevice", "AllocatedResources"] => self.start.0 = Some(value),
                [.., "StartDevice", "AllocatedResourcesTranslated"] => self.start.1 = Some(value),
                ["MajorFunction"] => self.start.2 = u8::try_from(value).ok(),
                ["MinorFunction"] => self.start.3 = u8::try_from(value).ok(),
                _ => {}
            }
            if let (Some(raw), Some(translated), false) =
                (self.start.0, self.start.1, self.start_done)
            {
                self.start_done = true;
                out.push(DtItem::StartDevice {
                    raw,
                    translated,
                    major: self.start.2,
                    minor: self.start.3,
                });
            }
        }
        drop(full);
        self.path = path;
        self.path.push((f.indent, f.name.to_string()));
        out
    }

    fn is_list(&self) -> bool {
        self.type_name.as_deref() == Some("_CM_RESOURCE_LIST")
    }

    /// Whether this dump can hold descriptors: a list, a descriptor, or a paste without its
    /// command (a `_DEVICE_OBJECT`'s `Type` is no resource type).
    fn reads_descriptors(&self) -> bool {
        matches!(
            self.type_name.as_deref(),
            None | Some("_CM_PARTIAL_RESOURCE_DESCRIPTOR") | Some("_CM_RESOURCE_LIST")
        )
    }

    fn take_current(&mut self) -> Option<DtItem> {
        self.current.take().map(DtItem::Descriptor)
    }

    fn set_descriptor_field(d: &mut DtDescriptor, rel: &[&str], offset: u32, value: u64, tag: u64) {
        match rel {
            ["Type"] => d.resource_type = u8::try_from(value).ok(),
            ["ShareDisposition"] => d.share = u8::try_from(value).ok(),
            ["Flags"] => d.flags = u16::try_from(value).ok(),
            ["u", "Interrupt", name] => {
                d.interrupt.set_at(offset, value);
                if *name == "Vector" {
                    d.vector_tags[0] = Some(tag);
                }
            }
            ["u", "MessageInterrupt", "Raw", name] => {
                d.raw.set_at(offset, value);
                if *name == "Vector" {
                    d.vector_tags[1] = Some(tag);
                }
            }
            ["u", "MessageInterrupt", "Translated", name] => {
                d.translated.set_at(offset, value);
                if *name == "Vector" {
                    d.vector_tags[2] = Some(tag);
                }
            }
            ["u", "Memory", "Start"] => d.memory.0 = Some(value),
            ["u", "Memory", "Length"] => d.memory.1 = u32::try_from(value).ok(),
            _ => {}
        }
    }

    /// The end of the block: the descriptor being read, if any.
    pub fn finish(&mut self) -> Vec<DtItem> {
        self.path.clear();
        self.take_current().into_iter().collect()
    }
}

/// Reads a whole text of `dt` commands and their output.
pub fn parse_dt(text: &str) -> Vec<DtItem> {
    let mut out = Vec::new();
    let mut reader: Option<DtReader> = None;
    for (n, l) in text.lines().enumerate() {
        if let Some(cmd) = super::prompt_command(l) {
            if let Some(mut r) = reader.take() {
                out.extend(r.finish());
            }
            if let super::Command::DisplayType { type_name, address } = super::Command::parse(cmd) {
                reader = Some(DtReader::new(Some(&type_name), address));
            }
            continue;
        }
        match (parse_field(l), reader.as_mut()) {
            (Some(f), Some(r)) => out.extend(r.feed(&f, n as u64 + 1)),
            (Some(f), None) => {
                let mut r = DtReader::new(None, None);
                out.extend(r.feed(&f, n as u64 + 1));
                reader = Some(r);
            }
            (None, Some(r)) => {
                r.feed_other(l);
            }
            (None, None) => {}
        }
    }
    if let Some(mut r) = reader {
        out.extend(r.finish());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arbiter::InterruptGrant;
    use crate::resources::{MessageDescriptorLayout, ResourceBuilder};
    use crate::vectors::VectorAllocator;
    use crate::windbg::KernelObjects;

    const BARS: &[(u64, u64, bool)] =
        &[(0x1_C000_0000, 0x4000, true), (0xC000_4000, 0x1000, false)];

    fn descriptors(items: &[DtItem]) -> Vec<&DtDescriptor> {
        items
            .iter()
            .filter_map(|i| match i {
                DtItem::Descriptor(d) => Some(d),
                _ => None,
            })
            .collect()
    }

    /// The translated message descriptor as `dt` prints it: Type, ShareDisposition, Flags, and
    /// the union member by member, so `Raw.MessageCount` shows the translated `Group` (0) and
    /// `Raw.Group` the translated `Level`.
    #[test]
    fn a_translated_message_descriptor_shows_the_overlay() {
        let mut alloc = VectorAllocator::default();
        let r = ResourceBuilder::default()
            .build(InterruptGrant::Messages { count: 2 }, &mut alloc, &[])
            .unwrap();
        let text = render_resource_list(0xFFFF_F8A0_0189_D1E0, &r.translated);
        for want in [
            "0: kd> dt nt!_CM_RESOURCE_LIST -r2 fffff8a0`0189d1e0\n   +0x000 Count            : 0x1\n   +0x004 List             : [1] _CM_FULL_RESOURCE_DESCRIPTOR\n      +0x000 InterfaceType    : 5 ( PCIBus )\n",
            "      +0x008 PartialResourceList : _CM_PARTIAL_RESOURCE_LIST\n",
            "         +0x004 Count            : 0x2\n         +0x008 PartialDescriptors : [1] _CM_PARTIAL_RESOURCE_DESCRIPTOR\n",
            "0: kd> dt nt!_CM_PARTIAL_RESOURCE_DESCRIPTOR -r3 fffff8a0`0189d1f4\n   +0x000 Type             : 0x2 ''\n   +0x001 ShareDisposition : 0x1 ''\n   +0x002 Flags            : 0x3\n   +0x004 u                : <unnamed-tag>\n",
            "      +0x000 Interrupt        : <unnamed-tag>\n         +0x000 Level            : 0xb\n         +0x002 Group            : 0\n         +0x004 Vector           : 0xb1\n         +0x008 Affinity         : 0x00000000`00000001\n",
            "      +0x000 MessageInterrupt : <unnamed-tag>\n         +0x000 Raw              : <unnamed-tag>\n            +0x000 Group            : 0xb\n            +0x002 MessageCount     : 0\n            +0x004 Vector           : 0xb1\n",
            "         +0x000 Translated       : <unnamed-tag>\n            +0x000 Level            : 0xb\n            +0x002 Group            : 0\n",
            "0: kd> dt nt!_CM_PARTIAL_RESOURCE_DESCRIPTOR -r3 fffff8a0`0189d208\n",
        ] {
            assert!(text.contains(want), "{want:?} in\n{text}");
        }
    }

    /// Round trip: each list, raw and translated, for every grant and descriptor layout, reads
    /// back to the model's own descriptors and to the facts they stand for.
    #[test]
    fn both_lists_read_back_to_the_same_descriptors_and_facts() {
        for (grant, layout) in [
            (
                InterruptGrant::Messages { count: 5 },
                MessageDescriptorLayout::PerMessage,
            ),
            (
                InterruptGrant::Messages { count: 1 },
                MessageDescriptorLayout::PerMessage,
            ),
            (
                InterruptGrant::Messages { count: 4 },
                MessageDescriptorLayout::Single,
            ),
            (
                InterruptGrant::Line { irq: 11 },
                MessageDescriptorLayout::PerMessage,
            ),
        ] {
            let mut alloc = VectorAllocator::default();
            let b = ResourceBuilder {
                layout,
                ..ResourceBuilder::default()
            };
            let r = b.build(grant, &mut alloc, BARS).unwrap();
            let o = KernelObjects::for_start(1, 0);
            for (list, at, raw) in [
                (&r.raw, o.raw_list, true),
                (&r.translated, o.translated_list, false),
            ] {
                let items = parse_dt(&render_resource_list(at, list));
                assert_eq!(
                    items[0],
                    DtItem::List {
                        address: Some(at),
                        count: list.len() as u32
                    }
                );
                let read = descriptors(&items);
                assert_eq!(read.len(), list.len(), "{grant:?}");
                for (i, (d, model)) in read.iter().zip(list.iter()).enumerate() {
                    assert_eq!(d.address, Some(descriptor_address(at, i)));
                    assert_eq!(d.to_descriptor(raw).as_ref(), Some(model), "{grant:?} {i}");
                    assert_eq!(d.to_event(raw), model.assigned_event(raw), "{grant:?} {i}");
                }
            }
        }
    }

    #[test]
    fn the_stack_location_reads_back_to_the_lists() {
        let text = render_start_stack_location(0xFFFF_FA80_0355_E128, 0x10, 0x20);
        assert!(
            text.contains(
                "   +0x000 MajorFunction    : 0x1b ''\n   +0x001 MinorFunction    : 0 ''\n"
            ),
            "{text}"
        );
        assert!(text.contains("         +0x008 AllocatedResourcesTranslated : 0x00000000`00000020 _CM_RESOURCE_LIST\n"), "{text}");
        assert_eq!(
            parse_dt(&text),
            [DtItem::StartDevice {
                raw: 0x10,
                translated: 0x20,
                major: Some(0x1b),
                minor: Some(0)
            }]
        );
    }

    /// As a user types it: `dt -r6` of the list (descriptor 0 nested in it), numbers in other
    /// spellings, only the members they care about, and `-a` elements.
    #[test]
    fn hand_typed_dumps_read_the_same() {
        let text = "0: kd> dt -r6 nt!_CM_RESOURCE_LIST 0xfffff8a0`00d80c90\n\
            \x20  +0x000 Count            : 1\n\
            \x20  +0x004 List             : [1] _CM_FULL_RESOURCE_DESCRIPTOR\n\
            \x20     +0x000 InterfaceType    : 5 ( PCIBus )\n\
            \x20     +0x004 BusNumber        : 0\n\
            \x20     +0x008 PartialResourceList : _CM_PARTIAL_RESOURCE_LIST\n\
            \x20        +0x000 Version          : 1\n\
            \x20        +0x002 Revision         : 1\n\
            \x20        +0x004 Count            : 3\n\
            \x20        +0x008 PartialDescriptors : [1] _CM_PARTIAL_RESOURCE_DESCRIPTOR\n\
            \x20           +0x000 Type             : 0x2 ''\n\
            \x20           +0x001 ShareDisposition : 0x1 ''\n\
            \x20           +0x002 Flags            : 3\n\
            \x20           +0x004 u                : <unnamed-tag>\n\
            \x20              +0x000 MessageInterrupt : <unnamed-tag>\n\
            \x20                 +0x000 Translated       : <unnamed-tag>\n\
            \x20                    +0x000 Level            : 8\n\
            \x20                    +0x002 Group            : 0\n\
            \x20                    +0x004 Vector           : 0x81\n\
            \x20                    +0x008 Affinity         : 0xf\n\
            0: kd> dt -a2 nt!_CM_PARTIAL_RESOURCE_DESCRIPTOR fffff8a000d80cb8\n\
            [00] @ fffff8a0`00d80cb8\n\
            ---------------------------------------------\n\
            \x20  +0x000 Type             : 0x2 ''\n\
            \x20  +0x001 ShareDisposition : 0x1 ''\n\
            \x20  +0x002 Flags            : 0x3\n\
            \x20  +0x004 u                : <unnamed-tag>\n\
            \x20     +0x000 MessageInterrupt : <unnamed-tag>\n\
            \x20        +0x000 Raw              : <unnamed-tag>\n\
            \x20           +0x000 Group            : 9\n\
            \x20           +0x002 MessageCount     : 0\n\
            \x20           +0x004 Vector           : 0x91\n\
            \x20           +0x008 Affinity         : 0x00000000`0000000f\n\
            [01] @ fffff8a0`00d80ccc\n\
            ---------------------------------------------\n\
            \x20  +0x000 Type             : 0x3 ''\n\
            \x20  +0x001 ShareDisposition : 0x1 ''\n\
            \x20  +0x002 Flags            : 0\n";
        let items = parse_dt(text);
        let read = descriptors(&items);
        assert_eq!(read.len(), 3);
        assert_eq!(read[0].address, Some(0xFFFF_F8A0_00D8_0CA4));
        assert_eq!(read[1].address, Some(0xFFFF_F8A0_00D8_0CB8));
        assert_eq!(read[2].address, Some(0xFFFF_F8A0_00D8_0CCC));
        let msg = |level, vector| EventKind::ResourceAssigned {
            mode: InterruptMode::Message,
            message_count: 0,
            level,
            vector,
            affinity: 0xf,
            flags: 3,
            raw: false,
        };
        assert_eq!(read[0].to_event(false), Some(msg(8, 0x81)));
        // Read through Raw, the translated bytes still say Level 9 (Raw.Group) and the
        // overlaid Group as MessageCount 0.
        assert_eq!(read[1].to_event(false), Some(msg(9, 0x91)));
        assert_eq!(read[2].to_event(false), None);
        assert_eq!(parse_value("0n-1"), Some(u64::MAX));
        assert_eq!(parse_field("+0x004 u : <unnamed-tag>").unwrap().name, "u");
        assert_eq!(parse_field("   +0x00 no colon"), None);
    }
}
