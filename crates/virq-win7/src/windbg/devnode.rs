//! `!devnode Address a` and `!cmreslist Address`: the device node's state and its resource
//! lists as kdexts prints them, and their readers.
//!
//! ```text
//! 0: kd> !devnode fffffa8001c40d30 a
//! DevNode 0xfffffa8001c40d30 for PDO 0xfffffa8001c3e060
//!   InstancePath is "PCI\VEN_1AF4&DEV_1042&SUBSYS_11001AF4&REV_01\3&13c0b0c5&0&08"
//!   ServiceName is "virqblk"
//!   State = DeviceNodeStarted (0x308)
//!   Previous State = DeviceNodeStartPostWork (0x307)
//!   CmResourceList at 0xfffff8a00189c4b0  Version 1.1  Interface 0x5  Bus #0
//!     Entry 1 - Interrupt (0x2) Device Exclusive (0x1)
//!       Flags (0x03) - LATCHED MESSAGE
//!       Message Count 1, Vector 0xb1, Group 0, Affinity 0x3
//!   TranslatedResourceList at 0xfffff8a00189d1e0  Version 1.1  Interface 0x5  Bus #0
//!     ...
//! ```
//!
//! Flag 0x2 shows `CmResourceList` (the raw list, the start IRP's `AllocatedResources`), flag
//! 0x8 `TranslatedResourceList` (`AllocatedResourcesTranslated`), at the same addresses the
//! start IRP carries. A message descriptor's line has no `Level`; its `Message Count` is the
//! bytes of `Raw.MessageCount`, which on a translated descriptor are the overlaid `Group` (x64),
//! so the translated list reads `Message Count 0`. Unverified: which half's `Group` the message
//! line prints, the exact wording of flag names beyond `LATCHED`, `LEVEL_SENSITIVE`, `MESSAGE`,
//! `READ_WRITE`, `PREFETCHABLE`, and the indentation of a standalone `!cmreslist`.

use std::fmt::Write as _;

use virq_events::{EventKind, InterruptMode};

use super::{PROMPT, contains_ci, parse_count, parse_number};
use crate::resources::{
    CM_RESOURCE_INTERRUPT_LATCHED, CM_RESOURCE_INTERRUPT_MESSAGE,
    CM_RESOURCE_INTERRUPT_POLICY_INCLUDED, CM_RESOURCE_MEMORY_PREFETCHABLE, CmDescriptorData,
    CmPartialResourceDescriptor, CmResourceType, ShareDisposition,
};

/// What `!devnode` shows of one started device.
#[derive(Clone, Copy, Debug)]
pub struct DevnodeView<'a> {
    /// Address of the `DEVICE_NODE`.
    pub devnode: u64,
    /// Address of the PDO.
    pub pdo: u64,
    /// Device instance path (`PCI\VEN_1AF4&DEV_1042&...`).
    pub instance_path: &'a str,
    /// The function driver's service name.
    pub service: &'a str,
    /// Address of the raw list (`CmResourceList`).
    pub raw_list: u64,
    /// The raw list's descriptors.
    pub raw: &'a [CmPartialResourceDescriptor],
    /// Address of the translated list (`TranslatedResourceList`).
    pub translated_list: u64,
    /// The translated list's descriptors.
    pub translated: &'a [CmPartialResourceDescriptor],
}

fn share_name(s: ShareDisposition) -> &'static str {
    match s {
        ShareDisposition::Undetermined => "Undetermined",
        ShareDisposition::DeviceExclusive => "Device Exclusive",
        ShareDisposition::DriverExclusive => "Driver Exclusive",
        ShareDisposition::Shared => "Shared",
    }
}

fn flags_text(flags: u16) -> String {
    if flags == 0 {
        "(0000)".to_string()
    } else {
        format!("(0x{flags:02x})")
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

/// The entries of one list, each line indented by `indent` spaces (entries) and two more
/// (their fields).
fn render_entries(out: &mut String, indent: usize, descriptors: &[CmPartialResourceDescriptor]) {
    let pad = " ".repeat(indent);
    for (i, d) in descriptors.iter().enumerate() {
        let (type_name, type_code) = match d.resource_type {
            CmResourceType::Interrupt => ("Interrupt", 2),
            CmResourceType::Memory => ("Memory", 3),
        };
        let _ = writeln!(
            out,
            "{pad}Entry {i} - {type_name} (0x{type_code:x}) {} (0x{:x})",
            share_name(d.share_disposition),
            d.share_disposition as u8
        );
        match d.u {
            CmDescriptorData::Memory(m) => {
                let name = if d.flags & CM_RESOURCE_MEMORY_PREFETCHABLE != 0 {
                    "PREFETCHABLE"
                } else {
                    "READ_WRITE"
                };
                let _ = writeln!(out, "{pad}  Flags {} - {name}", flags_text(d.flags));
                let _ = writeln!(
                    out,
                    "{pad}  Range starts at 0x{:016x} for 0x{:x} bytes",
                    m.start, m.length
                );
            }
            CmDescriptorData::Interrupt(t) => {
                let _ = writeln!(
                    out,
                    "{pad}  Flags {} - {}",
                    flags_text(d.flags),
                    interrupt_flag_names(d.flags)
                );
                let _ = writeln!(
                    out,
                    "{pad}  Level 0x{:x}, Vector 0x{:x}, Group {}, Affinity 0x{:x}",
                    t.level, t.vector, t.group, t.affinity
                );
            }
            CmDescriptorData::MessageInterrupt(m) => {
                let _ = writeln!(
                    out,
                    "{pad}  Flags {} - {}",
                    flags_text(d.flags),
                    interrupt_flag_names(d.flags)
                );
                let (group, vector, affinity) = match m {
                    crate::resources::CmMessageInterrupt::Raw(r) => (r.group, r.vector, r.affinity),
                    crate::resources::CmMessageInterrupt::Translated(t) => {
                        (t.group, t.vector, t.affinity)
                    }
                };
                let _ = writeln!(
                    out,
                    "{pad}  Message Count {}, Vector 0x{vector:x}, Group {group}, Affinity 0x{affinity:x}",
                    d.message_count().unwrap_or(0)
                );
            }
        }
    }
}

fn list_heading(name: &str, address: u64, count: usize) -> String {
    let _ = count;
    format!("{name} at 0x{address:016x}  Version 1.1  Interface 0x5  Bus #0")
}

/// `!devnode Address a`: the device node with its raw (`CmResourceList`) and translated
/// (`TranslatedResourceList`) lists.
pub fn render_devnode(v: &DevnodeView<'_>) -> String {
    let mut out = format!("{PROMPT}!devnode {:016x} a\n", v.devnode);
    let _ = writeln!(out, "DevNode 0x{:016x} for PDO 0x{:016x}", v.devnode, v.pdo);
    let _ = writeln!(out, "  InstancePath is \"{}\"", v.instance_path);
    let _ = writeln!(out, "  ServiceName is \"{}\"", v.service);
    out.push_str("  State = DeviceNodeStarted (0x308)\n");
    out.push_str("  Previous State = DeviceNodeStartPostWork (0x307)\n");
    let _ = writeln!(
        out,
        "  {}",
        list_heading("CmResourceList", v.raw_list, v.raw.len())
    );
    render_entries(&mut out, 4, v.raw);
    let _ = writeln!(
        out,
        "  {}",
        list_heading(
            "TranslatedResourceList",
            v.translated_list,
            v.translated.len()
        )
    );
    render_entries(&mut out, 4, v.translated);
    out
}

/// `!cmreslist Address`: one list on its own.
pub fn render_cmreslist(address: u64, descriptors: &[CmPartialResourceDescriptor]) -> String {
    let mut out = format!("{PROMPT}!cmreslist {address:016x}\n\n");
    let _ = writeln!(
        out,
        "{}",
        list_heading("CmResourceList", address, descriptors.len())
    );
    render_entries(&mut out, 2, descriptors);
    out
}

/// The reader of the state line as WinDbg prints it (`State = DeviceNodeStarted (0x308)`):
/// `DeviceStarted` for a started devnode, `None` for any other line or state (`Previous State
/// = ...` included).
pub fn parse_devnode_state(text: &str) -> Option<EventKind> {
    let t = text.trim_start();
    let rest = t.get(..5).filter(|h| h.eq_ignore_ascii_case("State"))?;
    let rest = t[rest.len()..].trim_start().strip_prefix('=')?.trim_start();
    let word = rest.split_whitespace().next()?;
    word.eq_ignore_ascii_case("DeviceNodeStarted")
        .then_some(EventKind::DeviceStarted)
}

/// A `DevNode` heading without a prompt (`DevNode 0xfffffa80... for PDO ...`, virq's earlier
/// `DevNode (virq model)`): the resource lists that follow are `!devnode`'s.
pub fn is_devnode_heading(body: &str) -> bool {
    let t = body.trim_start();
    t.starts_with("DevNode 0x") || t.starts_with("DevNode (")
}

/// Which resource list of a dump a line opens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ResSection {
    /// No telling (a pasted fragment, or `!cmreslist` of an unknown list): taken as translated.
    #[default]
    Unknown,
    /// The translated list (`AllocatedResourcesTranslated`, `!devnode`'s `TranslatedResourceList`).
    Translated,
    /// The raw list: bus-relative numbers, the raw `MessageCount`.
    Raw,
}

/// The section a header line opens, if it is one, and the list's address when printed
/// (`CmResourceList at 0xfffff8a0...`).
pub fn resource_list_heading(body: &str) -> Option<(ResSection, Option<u64>)> {
    let t = body.trim_start();
    // Every heading names a resource list (`ResourceList`, `TranslatedResources`, ...): one
    // search turns away the lines of other output this runs on.
    if !contains_ci(t, "resource") {
        return None;
    }
    let section = if contains_ci(t, "translated") {
        ResSection::Translated
    } else if contains_ci(t, "cmresourcelist") {
        ResSection::Unknown
    } else if contains_ci(t, "allocatedresources")
        || contains_ci(t, "bootresources")
        || t.starts_with("ResourceList")
        || (contains_ci(t, "raw") && contains_ci(t, "resource"))
    {
        ResSection::Raw
    } else {
        return None;
    };
    let address = t
        .split_whitespace()
        .skip_while(|w| *w != "at")
        .nth(1)
        .and_then(parse_number);
    Some((section, address))
}

/// Whether a line opens a resource entry; `Some(true)` for an interrupt entry.
pub fn resource_entry_start(body: &str) -> Option<bool> {
    let t = body.trim_start();
    if t.starts_with("Entry") {
        return Some(contains_ci(t, "interrupt"));
    }
    if t.starts_with("Interrupt (") {
        return Some(true);
    }
    None
}

/// Fields of one interrupt descriptor in a resource dump.
#[derive(Debug, Default, Clone)]
pub struct IntEntry {
    /// From the raw list (`AllocatedResources`, `!devnode`'s `CmResourceList`).
    pub raw: bool,
    /// The descriptor's `Flags` (`CM_RESOURCE_INTERRUPT_*`).
    pub flags: Option<u16>,
    /// The entry said "Message" in words rather than in its flags.
    pub message_word: bool,
    /// `Level` (IRQ or IRQL).
    pub level: Option<u32>,
    /// `Vector` (IRQ or IDT vector).
    pub vector: Option<u32>,
    /// `Affinity` (`KAFFINITY`).
    pub affinity: Option<u64>,
    /// `MessageCount`, for a raw message descriptor.
    pub message_count: Option<u32>,
}

impl IntEntry {
    /// Reads `Flags (0x03) - LATCHED MESSAGE`, `Level 0xb, Vector 0xb, Group 0, Affinity 0xf`,
    /// `Message Count 3`, `MessageCount=3` from one line of the entry.
    pub fn read_line(&mut self, body: &str) -> bool {
        let toks: Vec<&str> = body
            .split(|c: char| c.is_whitespace() || matches!(c, '=' | ':' | ',' | '(' | ')'))
            .filter(|t| !t.is_empty())
            .collect();
        let num = |t: &str| parse_count(t);
        let mut any = false;
        for (i, tok) in toks.iter().enumerate() {
            let next = || toks.get(i + 1).and_then(|t| num(t));
            let lower = tok.to_ascii_lowercase();
            match lower.as_str() {
                "flags" => {
                    if let Some(v) = next().and_then(|v| u16::try_from(v).ok()) {
                        self.flags = Some(v);
                        any = true;
                    }
                }
                "message" => {
                    if toks
                        .get(i + 1)
                        .is_some_and(|t| t.eq_ignore_ascii_case("count"))
                    {
                        if let Some(v) = toks.get(i + 2).and_then(|t| num(t)) {
                            self.message_count = u32::try_from(v).ok();
                            any = true;
                        }
                    } else {
                        self.message_word = true;
                        any = true;
                    }
                }
                "messagecount" => {
                    if let Some(v) = next().and_then(|v| u32::try_from(v).ok()) {
                        self.message_count = Some(v);
                        any = true;
                    }
                }
                "level" => {
                    self.level = next().and_then(|v| u32::try_from(v).ok()).or(self.level);
                    any = true;
                }
                "vector" => {
                    self.vector = next().and_then(|v| u32::try_from(v).ok()).or(self.vector);
                    any = true;
                }
                "affinity" => {
                    self.affinity = next().or(self.affinity);
                    any = true;
                }
                "latched" | "level_sensitive" => any = true,
                _ => {}
            }
        }
        any
    }

    /// The `ResourceAssigned` evidence the entry stands for, once it has a level or a vector.
    pub fn to_event(&self) -> Option<EventKind> {
        if self.vector.is_none() && self.level.is_none() {
            return None;
        }
        let flags = self.flags.unwrap_or(0);
        let message = self.message_word
            || flags & CM_RESOURCE_INTERRUPT_MESSAGE != 0
            || self.message_count.is_some();
        Some(EventKind::ResourceAssigned {
            mode: if message {
                InterruptMode::Message
            } else {
                InterruptMode::Intx
            },
            message_count: if message {
                self.message_count.unwrap_or(0)
            } else {
                0
            },
            level: self.level.unwrap_or(0),
            vector: self.vector.unwrap_or(0),
            affinity: self.affinity.unwrap_or(0),
            flags,
            raw: self.raw,
        })
    }
}

/// Reads every resource list of a `!devnode` / `!cmreslist` text into its interrupt events:
/// (the list's section and address, its events). Under a `DevNode` heading an unnamed
/// `CmResourceList` is the raw list.
pub fn parse_resource_lists(text: &str) -> Vec<(ResSection, Option<u64>, Vec<EventKind>)> {
    let mut out: Vec<(ResSection, Option<u64>, Vec<EventKind>)> = Vec::new();
    let mut in_devnode = false;
    let mut entry: Option<IntEntry> = None;
    let flush = |entry: &mut Option<IntEntry>,
                 out: &mut Vec<(ResSection, Option<u64>, Vec<EventKind>)>| {
        if let (Some(e), Some(list)) = (entry.take(), out.last_mut()) {
            list.2.extend(e.to_event());
        }
    };
    for line in text.lines() {
        if is_devnode_heading(line) || super::prompt_command(line).is_some() {
            flush(&mut entry, &mut out);
            in_devnode = is_devnode_heading(line)
                || super::prompt_command(line).is_some_and(|c| contains_ci(c, "!devnode"));
            continue;
        }
        if let Some((mut section, address)) = resource_list_heading(line) {
            flush(&mut entry, &mut out);
            if section == ResSection::Unknown && in_devnode {
                section = ResSection::Raw;
            }
            out.push((section, address, Vec::new()));
            continue;
        }
        if let Some(is_interrupt) = resource_entry_start(line) {
            flush(&mut entry, &mut out);
            if is_interrupt {
                let raw = out.last().is_some_and(|l| l.0 == ResSection::Raw);
                entry = Some(IntEntry {
                    raw,
                    ..IntEntry::default()
                });
            }
            continue;
        }
        if let Some(e) = entry.as_mut() {
            e.read_line(line);
        }
    }
    flush(&mut entry, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arbiter::InterruptGrant;
    use crate::resources::ResourceBuilder;
    use crate::vectors::VectorAllocator;

    fn view<'a>(
        raw: &'a [CmPartialResourceDescriptor],
        translated: &'a [CmPartialResourceDescriptor],
    ) -> DevnodeView<'a> {
        DevnodeView {
            devnode: 0xFFFF_FA80_01C4_0D30,
            pdo: 0xFFFF_FA80_01C3_E060,
            instance_path: r"PCI\VEN_1AF4&DEV_1042&SUBSYS_11001AF4&REV_01\3&13c0b0c5&0&08",
            service: "virqblk",
            raw_list: 0xFFFF_F8A0_0189_C4B0,
            raw,
            translated_list: 0xFFFF_F8A0_0189_D1E0,
            translated,
        }
    }

    /// What the lists show of a descriptor: a message line has no Level.
    fn shown(d: &CmPartialResourceDescriptor, raw: bool) -> Option<EventKind> {
        match d.assigned_event(raw)? {
            EventKind::ResourceAssigned {
                mode: InterruptMode::Message,
                message_count,
                vector,
                affinity,
                flags,
                raw,
                ..
            } => Some(EventKind::ResourceAssigned {
                mode: InterruptMode::Message,
                message_count,
                level: 0,
                vector,
                affinity,
                flags,
                raw,
            }),
            other => Some(other),
        }
    }

    #[test]
    fn the_devnode_is_laid_out_as_kdexts_prints_it() {
        let mut alloc = VectorAllocator::default();
        let r = ResourceBuilder::default()
            .build(
                InterruptGrant::Messages { count: 2 },
                &mut alloc,
                &[(0xC000_0000, 0x4000, false)],
            )
            .unwrap();
        let text = render_devnode(&view(&r.raw, &r.translated));
        for want in [
            "0: kd> !devnode fffffa8001c40d30 a\nDevNode 0xfffffa8001c40d30 for PDO 0xfffffa8001c3e060\n",
            "  State = DeviceNodeStarted (0x308)\n",
            "  CmResourceList at 0xfffff8a00189c4b0  Version 1.1  Interface 0x5  Bus #0\n",
            "    Entry 0 - Memory (0x3) Device Exclusive (0x1)\n      Flags (0000) - READ_WRITE\n      Range starts at 0x00000000c0000000 for 0x4000 bytes\n",
            "    Entry 1 - Interrupt (0x2) Device Exclusive (0x1)\n      Flags (0x03) - LATCHED MESSAGE\n      Message Count 1, Vector 0xb1, Group 0, Affinity 0x1\n",
            "  TranslatedResourceList at 0xfffff8a00189d1e0  Version 1.1  Interface 0x5  Bus #0\n",
            "      Message Count 0, Vector 0xb1, Group 0, Affinity 0x1\n",
        ] {
            assert!(text.contains(want), "{want:?} in\n{text}");
        }
        let line = ResourceBuilder::default()
            .build(
                InterruptGrant::Line { irq: 11 },
                &mut VectorAllocator::default(),
                &[],
            )
            .unwrap();
        let text = render_cmreslist(0xFFFF_F8A0_0189_D1E0, &line.translated);
        assert!(
            text.contains(
                "CmResourceList at 0xfffff8a00189d1e0  Version 1.1  Interface 0x5  Bus #0\n  Entry 0 - Interrupt (0x2) Shared (0x3)\n    Flags (0000) - LEVEL_SENSITIVE\n    Level 0xb, Vector 0xb1, Group 0, Affinity 0x1\n"
            ),
            "{text}"
        );
    }

    /// Round trip: both lists read back as the interrupt facts they show, raw and translated.
    #[test]
    fn the_lists_read_back_raw_and_translated() {
        for grant in [
            InterruptGrant::Messages { count: 3 },
            InterruptGrant::Messages { count: 1 },
            InterruptGrant::Line { irq: 11 },
        ] {
            let mut alloc = VectorAllocator::default();
            let r = ResourceBuilder::default()
                .build(grant, &mut alloc, &[(0xC000_0000, 0x4000, true)])
                .unwrap();
            let text = render_devnode(&view(&r.raw, &r.translated));
            let lists = parse_resource_lists(&text);
            assert_eq!(lists.len(), 2, "{text}");
            let (raw_section, raw_at, raw_events) = &lists[0];
            let (tr_section, tr_at, tr_events) = &lists[1];
            assert_eq!(
                (*raw_section, *raw_at),
                (ResSection::Raw, Some(0xFFFF_F8A0_0189_C4B0))
            );
            assert_eq!(
                (*tr_section, *tr_at),
                (ResSection::Translated, Some(0xFFFF_F8A0_0189_D1E0))
            );
            let want_raw: Vec<EventKind> = r.raw.iter().filter_map(|d| shown(d, true)).collect();
            let want_tr: Vec<EventKind> = r
                .translated
                .iter()
                .filter_map(|d| shown(d, false))
                .collect();
            assert_eq!(raw_events, &want_raw, "{grant:?}");
            assert_eq!(tr_events, &want_tr, "{grant:?}");
            let standalone = parse_resource_lists(&render_cmreslist(0x1000, &r.translated));
            assert_eq!(standalone[0].0, ResSection::Unknown);
            assert_eq!(standalone[0].2, want_tr);
        }
    }

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

    #[test]
    fn resource_entries() {
        let mut e = IntEntry::default();
        e.read_line("    Flags (0x03) - LATCHED MESSAGE");
        e.read_line("    Message Count 3, Vector 0xb1, Group 0, Affinity 0x3");
        assert_eq!(
            e.to_event(),
            Some(EventKind::ResourceAssigned {
                mode: InterruptMode::Message,
                message_count: 3,
                level: 0,
                vector: 0xb1,
                affinity: 3,
                flags: 3,
                raw: false,
            })
        );
    }
}
