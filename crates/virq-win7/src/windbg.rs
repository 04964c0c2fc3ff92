//! WinDbg-style views: a `!pci 100 B D F` dump and a `!devnode` resource list.
//!
//! The text resembles what the Windows 7 `pci` extension prints (common header with decoded
//! Command/Status flags, BARs, interrupt pin/line, then the capability list with the MSI-X
//! capability and its table), but its layout is virq's own and stable, so the doctor can parse
//! it back with [`parse_pci_dump`]. The layout is documented in the crate root.

use crate::resources::{
    CM_RESOURCE_INTERRUPT_LATCHED, CM_RESOURCE_INTERRUPT_MESSAGE,
    CM_RESOURCE_INTERRUPT_POLICY_INCLUDED, CM_RESOURCE_MEMORY_PREFETCHABLE, CmDescriptorData,
    CmPartialResourceDescriptor, CmResourceType, ShareDisposition,
};
use std::collections::BTreeSet;
use std::fmt::Write as _;
use virq_events::{EventKind, EventSink};

/// PCI capability id of MSI-X.
pub const PCI_CAP_ID_MSIX: u8 = 0x11;
/// PCI capability id of a vendor-specific capability (virtio uses these).
pub const PCI_CAP_ID_VENDOR: u8 = 0x09;
/// Red Hat / virtio vendor id.
pub const VIRTIO_PCI_VENDOR_ID: u16 = 0x1AF4;
/// Most capabilities walked before the list is declared broken.
const MAX_CAPABILITIES: usize = 48;

/// One MSI-X table entry as read from the table BAR.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MsixEntryView {
    pub address: u64,
    pub data: u32,
    pub masked: bool,
}

/// Everything the dump reads.
#[derive(Clone, Copy, Debug)]
pub struct PciDumpInput<'a> {
    pub bus: u8,
    pub device: u8,
    pub function: u8,
    pub config: &'a [u8; 256],
    /// Table entries from the table BAR, entry 0 first (may be shorter than the table).
    pub msix_table: &'a [MsixEntryView],
    /// Pending Bit Array qwords from the PBA BAR.
    pub pba: &'a [u64],
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

const COMMAND_FLAGS: &[(u16, &str)] = &[
    (1 << 0, "IOSpaceEn"),
    (1 << 1, "MemSpaceEn"),
    (1 << 2, "BusInitiate"),
    (1 << 3, "SpecialCycle"),
    (1 << 4, "MemWriteInvalidate"),
    (1 << 5, "VGASnoop"),
    (1 << 6, "ParityErrorRsp"),
    (1 << 8, "SERREn"),
    (1 << 9, "FastB2BEn"),
    (1 << 10, "InterruptDis"),
];

const STATUS_FLAGS: &[(u16, &str)] = &[
    (1 << 4, "CapList"),
    (1 << 3, "IntStatus"),
    (1 << 5, "66MHzCapable"),
    (1 << 7, "FB2BCapable"),
    (1 << 8, "DataParityErr"),
    (1 << 11, "SigTargetAbort"),
    (1 << 12, "RcvTargetAbort"),
    (1 << 13, "RcvMasterAbort"),
    (1 << 14, "SigSystemErr"),
    (1 << 15, "DetParityErr"),
];

fn flag_names(value: u16, table: &[(u16, &str)]) -> String {
    table
        .iter()
        .filter(|(bit, _)| value & bit != 0)
        .map(|(_, name)| *name)
        .collect::<Vec<_>>()
        .join(" ")
}

fn field(out: &mut String, offset: Option<usize>, name: &str, value: &str) {
    let prefix = match offset {
        Some(o) => format!("    {o:02x}: "),
        None => "        ".to_string(),
    };
    let line = format!("{prefix}{name:<15}{value}");
    out.push_str(line.trim_end());
    out.push('\n');
}

fn capability_name(id: u8) -> &'static str {
    match id {
        0x01 => "Power Management Capability",
        0x05 => "MSI Capability",
        0x09 => "Vendor Specific Capability",
        0x10 => "PCI Express Capability",
        0x11 => "MSI-X Capability",
        _ => "Unknown Capability",
    }
}

fn virtio_cfg_type_name(t: u8) -> &'static str {
    match t {
        1 => "COMMON_CFG",
        2 => "NOTIFY_CFG",
        3 => "ISR_CFG",
        4 => "DEVICE_CFG",
        5 => "PCI_CFG",
        8 => "SHARED_MEMORY_CFG",
        9 => "VENDOR_CFG",
        _ => "UNKNOWN",
    }
}

/// Render the dump; emits `MsixCapabilitySeen` for each MSI-X capability into `sink`.
pub fn render_pci(input: &PciDumpInput<'_>, sink: Option<&dyn EventSink>) -> String {
    let c = input.config;
    let mut out = String::new();
    let vendor = r16(c, 0x00);
    let device = r16(c, 0x02);
    let command = r16(c, 0x04);
    let status = r16(c, 0x06);
    let _ = writeln!(
        out,
        "PCI Segment 0 Bus 0x{:02x} Device 0x{:02x} Function 0x{:x}",
        input.bus, input.device, input.function
    );
    let _ = writeln!(
        out,
        "{:02x}:{:02x}.{:x}  {vendor:04x}:{device:04x}.{:02x}  Cmd[{command:04x}]  Sts[{status:04x}]  Class:{:02x}:{:02x}:{:02x}  SubID:{:04x}:{:04x}",
        input.bus,
        input.device,
        input.function,
        r8(c, 0x08),
        r8(c, 0x0B),
        r8(c, 0x0A),
        r8(c, 0x09),
        r16(c, 0x2C),
        r16(c, 0x2E)
    );
    out.push_str("  Common Header:\n");
    let vendor_text = if vendor == VIRTIO_PCI_VENDOR_ID {
        format!("{vendor:04x} Red Hat, Inc. (virtio)")
    } else {
        format!("{vendor:04x}")
    };
    field(&mut out, Some(0x00), "VendorID", &vendor_text);
    field(&mut out, Some(0x02), "DeviceID", &format!("{device:04x}"));
    field(
        &mut out,
        Some(0x04),
        "Command",
        &format!("{command:04x} {}", flag_names(command, COMMAND_FLAGS)),
    );
    field(
        &mut out,
        Some(0x06),
        "Status",
        &format!("{status:04x} {}", flag_names(status, STATUS_FLAGS)),
    );
    for (off, name) in [
        (0x08, "RevisionID"),
        (0x09, "ProgIF"),
        (0x0A, "SubClass"),
        (0x0B, "BaseClass"),
        (0x0C, "CacheLineSize"),
        (0x0D, "LatencyTimer"),
        (0x0E, "HeaderType"),
        (0x0F, "BIST"),
    ] {
        field(&mut out, Some(off), name, &format!("{:02x}", r8(c, off)));
    }
    let mut bar = 0;
    while bar < 6 {
        let off = 0x10 + bar * 4;
        let v = r32(c, off);
        let name = format!("BAR{bar}");
        if v & 1 == 1 {
            field(
                &mut out,
                Some(off),
                &name,
                &format!("{v:08x} IO Base:{:08x}", v & !3),
            );
            bar += 1;
            continue;
        }
        let pf = if v & 8 != 0 { " Prefetchable" } else { "" };
        if (v >> 1) & 3 == 2 && bar < 5 {
            let hi = r32(c, off + 4);
            let base = (u64::from(hi) << 32) | u64::from(v & !0xF);
            field(
                &mut out,
                Some(off),
                &name,
                &format!("{v:08x} MEM64{pf} Base:{base:016x}"),
            );
            field(
                &mut out,
                Some(off + 4),
                &format!("BAR{}", bar + 1),
                &format!("{hi:08x} Upper:BAR{bar}"),
            );
            bar += 2;
        } else {
            let text = if v == 0 {
                format!("{v:08x}")
            } else {
                format!("{v:08x} MEM32{pf} Base:{:08x}", v & !0xF)
            };
            field(&mut out, Some(off), &name, &text);
            bar += 1;
        }
    }
    // Plain hex header fields between the BARs and the interrupt pin: (offset, name, bytes).
    const PLAIN: [(usize, &str, usize); 6] = [
        (0x28, "CBCISPtr", 4),
        (0x2C, "SubVendorID", 2),
        (0x2E, "SubSystemID", 2),
        (0x30, "ROMBAR", 4),
        (0x34, "CapPtr", 1),
        (0x3C, "IntLine", 1),
    ];
    for (off, name, width) in PLAIN {
        let value = match width {
            4 => format!("{:08x}", r32(c, off)),
            2 => format!("{:04x}", r16(c, off)),
            _ => format!("{:02x}", r8(c, off)),
        };
        field(&mut out, Some(off), name, &value);
    }
    let pin = r8(c, 0x3D);
    let pin_text = match pin {
        1..=4 => format!("{pin:02x} INT{}#", (b'A' + pin - 1) as char),
        _ => format!("{pin:02x}"),
    };
    field(&mut out, Some(0x3D), "IntPin", &pin_text);
    field(
        &mut out,
        Some(0x3E),
        "MinGnt",
        &format!("{:02x}", r8(c, 0x3E)),
    );
    field(
        &mut out,
        Some(0x3F),
        "MaxLat",
        &format!("{:02x}", r8(c, 0x3F)),
    );

    if status & (1 << 4) == 0 {
        out.push_str("  Capabilities: none (Status.CapList clear)\n");
        return out;
    }
    out.push_str("  Capabilities:\n");
    let mut seen = BTreeSet::new();
    let mut ptr = r8(c, 0x34) & !3;
    for _ in 0..MAX_CAPABILITIES {
        if ptr == 0 {
            return out;
        }
        if ptr < 0x40 {
            let _ = writeln!(
                out,
                "    {ptr:02x}: (capability pointer below 0x40; list ends)"
            );
            return out;
        }
        if !seen.insert(ptr) {
            let _ = writeln!(out, "    {ptr:02x}: (capability list loops; list ends)");
            return out;
        }
        let at = usize::from(ptr);
        let id = r8(c, at);
        let next = r8(c, at + 1);
        field(
            &mut out,
            Some(at),
            "CapID",
            &format!("{id:02x} {}", capability_name(id)),
        );
        field(&mut out, None, "NextPtr", &format!("{next:02x}"));
        match id {
            PCI_CAP_ID_MSIX => render_msix(&mut out, input, at, sink),
            PCI_CAP_ID_VENDOR if vendor == VIRTIO_PCI_VENDOR_ID => {
                render_virtio_cap(&mut out, c, at)
            }
            PCI_CAP_ID_VENDOR => {
                field(&mut out, None, "Length", &format!("{:02x}", r8(c, at + 2)));
            }
            _ => {}
        }
        ptr = next & !3;
    }
    out.push_str("    (more than 48 capabilities; list ends)\n");
    out
}

fn render_virtio_cap(out: &mut String, c: &[u8; 256], at: usize) {
    let len = r8(c, at + 2);
    let cfg_type = r8(c, at + 3);
    field(out, None, "Length", &format!("{len:02x}"));
    field(
        out,
        None,
        "VirtioCfgType",
        &format!("{cfg_type:02x} {}", virtio_cfg_type_name(cfg_type)),
    );
    field(out, None, "Bar", &format!("{:02x}", r8(c, at + 4)));
    field(out, None, "Id", &format!("{:02x}", r8(c, at + 5)));
    field(out, None, "Offset", &format!("{:08x}", r32(c, at + 8)));
    field(
        out,
        None,
        "RegionLength",
        &format!("{:08x}", r32(c, at + 12)),
    );
    if cfg_type == 2 && len >= 20 {
        field(
            out,
            None,
            "NotifyOffMult",
            &format!("{:08x}", r32(c, at + 16)),
        );
    }
}

fn render_msix(
    out: &mut String,
    input: &PciDumpInput<'_>,
    at: usize,
    sink: Option<&dyn EventSink>,
) {
    let c = input.config;
    let control = r16(c, at + 2);
    let enabled = control & crate::msi::MSIX_CONTROL_ENABLE != 0;
    let function_masked = control & crate::msi::MSIX_CONTROL_FUNCTION_MASK != 0;
    let table_size = (control & crate::msi::MSIX_CONTROL_TABLE_SIZE_MASK) + 1;
    field(
        out,
        None,
        "MessageControl",
        &format!(
            "{control:04x} Enable:{} FunctionMask:{} TableSize:{table_size}",
            u8::from(enabled),
            u8::from(function_masked)
        ),
    );
    for (name, off) in [("Table", at + 4), ("PBA", at + 8)] {
        let v = r32(c, off);
        field(
            out,
            None,
            name,
            &format!("{v:08x} BIR:{} Offset:{:08x}", v & 7, v & !7),
        );
    }
    let shown = input.msix_table.len().min(usize::from(table_size));
    for (i, e) in input.msix_table.iter().take(shown).enumerate() {
        let pending = input
            .pba
            .get(i / 64)
            .is_some_and(|q| q >> (i % 64) & 1 == 1);
        field(
            out,
            None,
            &format!("Entry[{i}]"),
            &format!(
                "Address:{:016x} Data:{:08x} Masked:{} Pending:{}",
                e.address,
                e.data,
                u8::from(e.masked),
                u8::from(pending)
            ),
        );
    }
    if let Some(sink) = sink {
        sink.emit(EventKind::MsixCapabilitySeen {
            enabled,
            function_masked,
            table_size,
        });
    }
}

/// The MSI-X part of a parsed dump.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MsixDumpSummary {
    pub enabled: bool,
    pub function_masked: bool,
    pub table_size: u16,
    pub table_bir: u8,
    pub table_offset: u32,
    pub pba_bir: u8,
    pub pba_offset: u32,
    /// `(entry, address, data, masked, pending)`.
    pub entries: Vec<(u16, u64, u32, bool, bool)>,
}

/// What [`parse_pci_dump`] extracts.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PciDumpSummary {
    pub vendor_id: Option<u16>,
    pub device_id: Option<u16>,
    pub command: Option<u16>,
    pub status: Option<u16>,
    pub interrupt_pin: Option<u8>,
    pub interrupt_line: Option<u8>,
    pub msix: Option<MsixDumpSummary>,
}

fn tag_value<'t>(tokens: &[&'t str], tag: &str) -> Option<&'t str> {
    tokens
        .iter()
        .find_map(|t| t.strip_prefix(tag)?.strip_prefix(':'))
}

fn hex<T: TryFrom<u64>>(text: Option<&str>) -> Option<T> {
    T::try_from(u64::from_str_radix(text?, 16).ok()?).ok()
}

/// Read back the layout [`render_pci`] writes (the stable, documented one).
pub fn parse_pci_dump(text: &str) -> PciDumpSummary {
    let mut s = PciDumpSummary::default();
    let mut in_msix = false;
    for line in text.lines() {
        let tokens: Vec<&str> = line.split_whitespace().collect();
        // A line may be an offset alone (`11:`, as /proc/interrupts pasted beside it also
        // starts): then it names no field.
        let (name, rest) = match tokens.first() {
            Some(t) if t.ends_with(':') && t.len() == 3 => {
                (tokens.get(1).copied(), tokens.get(2..).unwrap_or_default())
            }
            Some(t) => (Some(*t), &tokens[1..]),
            None => continue,
        };
        let first = rest.first().copied();
        match name {
            Some("VendorID") => s.vendor_id = hex(first),
            Some("DeviceID") => s.device_id = hex(first),
            Some("Command") => s.command = hex(first),
            Some("Status") => s.status = hex(first),
            Some("IntPin") => s.interrupt_pin = hex(first),
            Some("IntLine") => s.interrupt_line = hex(first),
            Some("CapID") => {
                in_msix = hex::<u8>(first) == Some(PCI_CAP_ID_MSIX);
                if in_msix {
                    s.msix = Some(MsixDumpSummary::default());
                }
            }
            Some(n) if in_msix => {
                let Some(m) = s.msix.as_mut() else { continue };
                match n {
                    "MessageControl" => {
                        m.enabled = tag_value(rest, "Enable") == Some("1");
                        m.function_masked = tag_value(rest, "FunctionMask") == Some("1");
                        m.table_size = tag_value(rest, "TableSize")
                            .and_then(|v| v.parse().ok())
                            .unwrap_or(0);
                    }
                    "Table" | "PBA" => {
                        let bir = tag_value(rest, "BIR")
                            .and_then(|v| v.parse().ok())
                            .unwrap_or(0);
                        let off = hex(tag_value(rest, "Offset")).unwrap_or(0);
                        if n == "Table" {
                            (m.table_bir, m.table_offset) = (bir, off);
                        } else {
                            (m.pba_bir, m.pba_offset) = (bir, off);
                        }
                    }
                    _ => {
                        let Some(idx) = n
                            .strip_prefix("Entry[")
                            .and_then(|r| r.strip_suffix(']'))
                            .and_then(|r| r.parse().ok())
                        else {
                            continue;
                        };
                        m.entries.push((
                            idx,
                            hex(tag_value(rest, "Address")).unwrap_or(0),
                            hex(tag_value(rest, "Data")).unwrap_or(0),
                            tag_value(rest, "Masked") == Some("1"),
                            tag_value(rest, "Pending") == Some("1"),
                        ));
                    }
                }
            }
            _ => {}
        }
    }
    s
}

fn share_name(s: ShareDisposition) -> &'static str {
    match s {
        ShareDisposition::Undetermined => "Undetermined",
        ShareDisposition::DeviceExclusive => "Device Exclusive",
        ShareDisposition::DriverExclusive => "Driver Exclusive",
        ShareDisposition::Shared => "Shared",
    }
}

fn interrupt_flag_names(flags: u16) -> String {
    let mut names = vec![if flags & CM_RESOURCE_INTERRUPT_LATCHED != 0 {
        "LATCHED"
    } else {
        "LEVEL_SENSITIVE"
    }];
    if flags & CM_RESOURCE_INTERRUPT_MESSAGE != 0 {
        names.push("MESSAGE");
    }
    if flags & CM_RESOURCE_INTERRUPT_POLICY_INCLUDED != 0 {
        names.push("POLICY_INCLUDED");
    }
    names.join(" ")
}

/// A `!devnode`-style resource list (`title` is e.g. `TranslatedResourceList`).
pub fn render_resource_list(title: &str, descriptors: &[CmPartialResourceDescriptor]) -> String {
    let mut out = format!("  {title}:  Version 1.1  Interface 0x5 (PCIBus)  Bus Number 0\n");
    for (i, d) in descriptors.iter().enumerate() {
        let (type_name, type_code) = match d.resource_type {
            CmResourceType::Interrupt => ("Interrupt", 2),
            CmResourceType::Memory => ("Memory", 3),
        };
        let _ = writeln!(
            out,
            "    Entry {i} - {type_name} (0x{type_code:x}) {} (0x{:x})",
            share_name(d.share_disposition),
            d.share_disposition as u8
        );
        match d.u {
            CmDescriptorData::Memory(m) => {
                let flags = if d.flags & CM_RESOURCE_MEMORY_PREFETCHABLE != 0 {
                    "READ_WRITE PREFETCHABLE"
                } else {
                    "READ_WRITE"
                };
                let _ = writeln!(out, "      Flags (0x{:04x}) - {flags}", d.flags);
                let _ = writeln!(
                    out,
                    "      Range starts at 0x{:016x} for 0x{:x} bytes",
                    m.start, m.length
                );
            }
            CmDescriptorData::Interrupt(t) => {
                let _ = writeln!(
                    out,
                    "      Flags (0x{:04x}) - {}",
                    d.flags,
                    interrupt_flag_names(d.flags)
                );
                let _ = writeln!(
                    out,
                    "      Level 0x{:x}, Vector 0x{:x}, Group 0, Affinity 0x{:x}",
                    t.level, t.vector, t.affinity
                );
            }
            CmDescriptorData::MessageInterrupt(_) => {
                let _ = writeln!(
                    out,
                    "      Flags (0x{:04x}) - {}",
                    d.flags,
                    interrupt_flag_names(d.flags)
                );
                // The descriptor's fields as its list holds them: on a translated descriptor
                // `MessageCount` reads the overlaid Group.
                let t = d
                    .interrupt_fields()
                    .unwrap_or(crate::resources::CmInterrupt {
                        level: 0,
                        group: 0,
                        vector: 0,
                        affinity: 0,
                    });
                let _ = writeln!(
                    out,
                    "      Message Count {}, Level 0x{:x}, Vector 0x{:x}, Group 0, Affinity 0x{:x}",
                    d.message_count().unwrap_or(0),
                    t.level,
                    t.vector,
                    t.affinity
                );
            }
        }
    }
    out
}

/// A `!devnode`-style block for a started device with its translated resources.
pub fn render_devnode(
    instance_path: &str,
    service: &str,
    translated: &[CmPartialResourceDescriptor],
) -> String {
    let mut out = String::from("DevNode (virq model)\n");
    let _ = writeln!(out, "  InstancePath is \"{instance_path}\"");
    let _ = writeln!(out, "  ServiceName is \"{service}\"");
    out.push_str("  State = DeviceNodeStarted (0x308)\n");
    out.push_str(&render_resource_list("TranslatedResourceList", translated));
    out
}

/// The reader of [`render_devnode`]'s state line as WinDbg prints it (`State =
/// DeviceNodeStarted (0x308)`): `DeviceStarted` for a started devnode, `None` for any other
/// line or state (`Previous State = ...` included).
pub fn parse_devnode_state(text: &str) -> Option<EventKind> {
    let t = text.trim_start();
    let rest = t.get(..5).filter(|h| h.eq_ignore_ascii_case("State"))?;
    let rest = t[rest.len()..].trim_start().strip_prefix('=')?.trim_start();
    let word = rest.split_whitespace().next()?;
    word.eq_ignore_ascii_case("DeviceNodeStarted")
        .then_some(EventKind::DeviceStarted)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devnode_state_reader_takes_started_only() {
        assert_eq!(
            parse_devnode_state("  State = DeviceNodeStarted (0x308)"),
            Some(EventKind::DeviceStarted)
        );
        assert_eq!(
            parse_devnode_state("State=DeviceNodeStarted"),
            Some(EventKind::DeviceStarted)
        );
        for other in [
            "  Previous State = DeviceNodeStarted (0x308)",
            "  State = DeviceNodeRemoved (0x312)",
            "  State = ",
            "Statement = DeviceNodeStarted",
            "St",
            "",
        ] {
            assert_eq!(parse_devnode_state(other), None, "{other:?}");
        }
    }
    use crate::arbiter::InterruptGrant;
    use crate::resources::ResourceBuilder;
    use crate::vectors::VectorAllocator;
    use virq_events::EventLog;

    /// A modern virtio-blk function: BAR0 64-bit at 0xfe000000, BAR2 for the MSI-X table,
    /// one virtio vendor cap (ISR) at 0x40 and MSI-X at 0x50.
    fn config(control: u16, command: u16, status: u16) -> [u8; 256] {
        let mut c = [0u8; 256];
        let mut put = |off: usize, bytes: &[u8]| c[off..off + bytes.len()].copy_from_slice(bytes);
        put(0x00, &0x1AF4u16.to_le_bytes());
        put(0x02, &0x1042u16.to_le_bytes());
        put(0x04, &command.to_le_bytes());
        put(0x06, &status.to_le_bytes());
        put(0x08, &[0x01, 0x00, 0x00, 0x01]);
        put(0x10, &0xFE00_0004u32.to_le_bytes());
        put(0x18, &0xFE01_0000u32.to_le_bytes());
        put(0x2C, &0x1AF4u16.to_le_bytes());
        put(0x2E, &0x1100u16.to_le_bytes());
        put(0x34, &[0x40]);
        put(0x3C, &[0x0B, 0x01]);
        put(0x40, &[0x09, 0x50, 0x10, 0x03, 0x00, 0x00, 0, 0]);
        put(0x48, &0x2000u32.to_le_bytes());
        put(0x4C, &0x1000u32.to_le_bytes());
        put(0x50, &[0x11, 0x00]);
        put(0x52, &control.to_le_bytes());
        put(0x54, &0x0000_0002u32.to_le_bytes());
        put(0x58, &0x0000_0802u32.to_le_bytes());
        c
    }

    #[test]
    fn dump_shows_enable_tablesize_and_flags_and_emits_event() {
        let c = config(0x8003, 0x0406, 0x0018);
        let table = [
            MsixEntryView {
                address: 0xFEE0_0000,
                data: 0xD1,
                masked: false,
            },
            MsixEntryView {
                address: 0xFEE0_0000,
                data: 0xC1,
                masked: true,
            },
        ];
        let log = EventLog::new();
        let text = render_pci(
            &PciDumpInput {
                bus: 0,
                device: 3,
                function: 0,
                config: &c,
                msix_table: &table,
                pba: &[0b10],
            },
            Some(&log),
        );
        assert!(
            text.contains("    04: Command        0406 MemSpaceEn BusInitiate InterruptDis\n"),
            "{text}"
        );
        assert!(
            text.contains("    06: Status         0018 CapList IntStatus\n"),
            "{text}"
        );
        assert!(
            text.contains("    10: BAR0           fe000004 MEM64 Base:00000000fe000000\n"),
            "{text}"
        );
        assert!(text.contains("    3d: IntPin         01 INTA#\n"), "{text}");
        assert!(
            text.contains("    40: CapID          09 Vendor Specific Capability\n"),
            "{text}"
        );
        assert!(
            text.contains("        VirtioCfgType  03 ISR_CFG\n"),
            "{text}"
        );
        assert!(
            text.contains("    50: CapID          11 MSI-X Capability\n"),
            "{text}"
        );
        assert!(
            text.contains("        MessageControl 8003 Enable:1 FunctionMask:0 TableSize:4\n"),
            "{text}"
        );
        assert!(
            text.contains("        PBA            00000802 BIR:2 Offset:00000800\n"),
            "{text}"
        );
        assert!(
            text.contains(
                "        Entry[1]       Address:00000000fee00000 Data:000000c1 Masked:1 Pending:1\n"
            ),
            "{text}"
        );
        assert_eq!(
            log.snapshot()[0].kind,
            EventKind::MsixCapabilitySeen {
                enabled: true,
                function_masked: false,
                table_size: 4
            }
        );

        let parsed = parse_pci_dump(&text);
        assert_eq!(parsed.command, Some(0x0406));
        assert_eq!(parsed.status, Some(0x0018));
        assert_eq!(parsed.vendor_id, Some(0x1AF4));
        assert_eq!(parsed.interrupt_pin, Some(1));
        let m = parsed.msix.unwrap();
        assert!(m.enabled && !m.function_masked);
        assert_eq!((m.table_size, m.table_bir, m.pba_offset), (4, 2, 0x800));
        assert_eq!(m.entries[1], (1, 0xFEE0_0000, 0xC1, true, true));
    }

    #[test]
    fn disabled_masked_msix_reads_back_as_such() {
        let c = config(0x4000, 0x0006, 0x0010);
        let text = render_pci(
            &PciDumpInput {
                bus: 0,
                device: 3,
                function: 0,
                config: &c,
                msix_table: &[],
                pba: &[],
            },
            None,
        );
        assert!(
            text.contains("MessageControl 4000 Enable:0 FunctionMask:1 TableSize:1"),
            "{text}"
        );
        let m = parse_pci_dump(&text).msix.unwrap();
        assert!(!m.enabled && m.function_masked);
        assert_eq!(m.table_size, 1);
    }

    /// Found by the `win_text` fuzz target: a line that is an offset alone (`11:`, how a
    /// pasted /proc/interrupts line starts) made the reader slice past its one token and
    /// panic. Such a line names no field: the dump around it reads the same as without it.
    #[test]
    fn a_line_that_is_an_offset_alone_names_no_field() {
        let c = config(0x8003, 0x0406, 0x0018);
        let text = render_pci(
            &PciDumpInput {
                bus: 0,
                device: 3,
                function: 0,
                config: &c,
                msix_table: &[],
                pba: &[],
            },
            None,
        );
        let clean = parse_pci_dump(&text);
        assert_eq!(clean.vendor_id, Some(0x1AF4));
        assert!(clean.msix.is_some());
        let (head, tail) = text.split_at(text.find("Capabilities:").unwrap());
        let noisy = format!("{head} 11:   \n    04:\n{tail}\n10:");
        assert_eq!(parse_pci_dump(&noisy), clean);
        assert_eq!(parse_pci_dump(" 11:   "), PciDumpSummary::default());
        let crash = include_bytes!("../../../fuzz/regressions/win_text-pci-dump-offset-alone");
        assert_eq!(
            parse_pci_dump(&String::from_utf8_lossy(crash)),
            PciDumpSummary::default()
        );
    }

    #[test]
    fn capability_loops_and_bad_pointers_end_the_walk() {
        let mut c = config(0x8000, 0x0006, 0x0010);
        c[0x51] = 0x40;
        let text = render_pci(
            &PciDumpInput {
                bus: 0,
                device: 3,
                function: 0,
                config: &c,
                msix_table: &[],
                pba: &[],
            },
            None,
        );
        assert!(
            text.contains("    40: (capability list loops; list ends)"),
            "{text}"
        );
        c[0x51] = 0x10;
        let text = render_pci(
            &PciDumpInput {
                bus: 0,
                device: 3,
                function: 0,
                config: &c,
                msix_table: &[],
                pba: &[],
            },
            None,
        );
        assert!(
            text.contains("    10: (capability pointer below 0x40; list ends)"),
            "{text}"
        );
        let no_caps = config(0x8000, 0x0006, 0x0000);
        let text = render_pci(
            &PciDumpInput {
                bus: 0,
                device: 3,
                function: 0,
                config: &no_caps,
                msix_table: &[],
                pba: &[],
            },
            None,
        );
        assert!(text.contains("Capabilities: none"));
        assert_eq!(parse_pci_dump(&text).msix, None);
    }

    #[test]
    fn devnode_lists_message_and_line_interrupts() {
        let mut alloc = VectorAllocator::default();
        let r = ResourceBuilder::default()
            .build(
                InterruptGrant::Messages { count: 1 },
                &mut alloc,
                &[(0xFE00_0000, 0x4000, false)],
            )
            .unwrap();
        let text = render_devnode(r"PCI\VEN_1AF4&DEV_1042\3&0&18", "virqblk", &r.translated);
        assert!(
            text.contains("    Entry 0 - Memory (0x3) Device Exclusive (0x1)\n"),
            "{text}"
        );
        assert!(
            text.contains("      Range starts at 0x00000000fe000000 for 0x4000 bytes\n"),
            "{text}"
        );
        assert!(
            text.contains("    Entry 1 - Interrupt (0x2) Device Exclusive (0x1)\n"),
            "{text}"
        );
        assert!(
            text.contains("      Flags (0x0003) - LATCHED MESSAGE\n"),
            "{text}"
        );
        assert!(
            text.contains("      Message Count 0, Level 0xb, Vector 0xb1, Group 0, Affinity 0x1\n"),
            "{text}"
        );
        let line = ResourceBuilder::default()
            .build(InterruptGrant::Line { irq: 11 }, &mut alloc, &[])
            .unwrap();
        let text = render_resource_list("TranslatedResourceList", &line.translated);
        assert!(
            text.contains("    Entry 0 - Interrupt (0x2) Shared (0x3)\n"),
            "{text}"
        );
        assert!(
            text.contains("      Flags (0x0000) - LEVEL_SENSITIVE\n"),
            "{text}"
        );
        let started: Vec<EventKind> = render_devnode("PCI\\X", "virqblk", &line.translated)
            .lines()
            .filter_map(parse_devnode_state)
            .collect();
        assert_eq!(started, [EventKind::DeviceStarted]);
        assert!(
            text.contains("      Level 0xa, Vector 0xa1, Group 0, Affinity 0x1\n"),
            "{text}"
        );
    }
}
