//! Matchers for Windows evidence: the checklist's DbgPrint formats (docs/log-formats.md), common
//! real-driver wordings, and WinDbg `!pci` / resource-list output. Stateless helpers only; the
//! block state (inside an MSI-X capability, inside a resource entry) lives in the parser.

use crate::text::{
    contains_ci, find_word_ci, kv, kv_num, parse_bool, parse_hex, parse_num, tokens,
};
use virq_events::{EventKind, InterruptMode, Selector};

/// `CM_RESOURCE_INTERRUPT_MESSAGE`.
pub const CM_RESOURCE_INTERRUPT_MESSAGE: u16 = 0x0002;

fn u32_of(v: u64) -> Option<u32> {
    u32::try_from(v).ok()
}

fn u16_of(v: u64) -> Option<u16> {
    u16::try_from(v).ok()
}

/// One of the checklist prints (`INT:`, `WDFINT:`, `VIRTIO:`, `COUNTERS:`, `ISR:`) anywhere in
/// the line (drivers often put their own name in front). `None` when the line is not one, or is
/// one with a field missing (the caller then keeps it as a plain log line).
pub fn checklist_print(body: &str) -> Option<Vec<EventKind>> {
    if let Some(kinds) = virq_win7::dbgprint::parse_line(body) {
        return Some(kinds);
    }
    if let Some(i) = find_word_ci(body, "WDFINT:") {
        return connected(&body[i + 7..]).map(|k| vec![k]);
    }
    if let Some(i) = find_word_ci(body, "ISR:") {
        return isr_sample(&body[i + 4..]).map(|k| vec![k]);
    }
    if let Some(i) = find_word_ci(body, "INT:") {
        return resource(&body[i + 4..]).map(|k| vec![k]);
    }
    if let Some(i) = find_word_ci(body, "VIRTIO:") {
        return virtio(&body[i + 7..]);
    }
    if let Some(i) = find_word_ci(body, "COUNTERS:") {
        return counters(&body[i + 9..]);
    }
    if let Some(i) = find_word_ci(body, "IO:") {
        return requests(&body[i + 3..]).map(|k| vec![k]);
    }
    if let Some(i) = find_word_ci(body, "BUGCHECK:") {
        return Some(vec![EventKind::DriverCrash {
            message_id: kv_num(&body[i..], "MessageID").and_then(u32_of),
            text: body[i..].trim().to_string(),
        }]);
    }
    None
}

/// `IO: queue=%u submitted=%u completed=%u` (docs/log-formats.md line 11).
fn requests(rest: &str) -> Option<EventKind> {
    Some(EventKind::RequestsCompleted {
        queue: kv_num(rest, "queue").and_then(u16_of),
        submitted: kv_num(rest, "submitted")?,
        completed: kv_num(rest, "completed")?,
    })
}

/// `INT: MSI/MSI-X Level=.. Vector=.. Affinity=.. MessageCount=.. Flags=..` or `INT: INTx ...`.
fn resource(rest: &str) -> Option<EventKind> {
    let head = rest.split('=').next().unwrap_or("");
    let flags = kv_num(rest, "Flags").and_then(u16_of).unwrap_or(0);
    let message = contains_ci(head, "MSI") || flags & CM_RESOURCE_INTERRUPT_MESSAGE != 0;
    Some(EventKind::ResourceAssigned {
        mode: if message {
            InterruptMode::Message
        } else {
            InterruptMode::Intx
        },
        message_count: if message {
            kv_num(rest, "MessageCount").and_then(u32_of).unwrap_or(0)
        } else {
            0
        },
        level: kv_num(rest, "Level").and_then(u32_of)?,
        vector: kv_num(rest, "Vector").and_then(u32_of)?,
        affinity: kv_num(rest, "Affinity").unwrap_or(0),
        flags,
        raw: false,
    })
}

/// `WDFINT: MessageSignaled=.. MessageNumber=.. Vector=.. Irql=.. Affinity=..`.
fn connected(rest: &str) -> Option<EventKind> {
    Some(EventKind::InterruptConnected {
        message_signaled: kv(rest, "MessageSignaled").and_then(parse_bool)?,
        message_number: kv_num(rest, "MessageNumber").and_then(u32_of)?,
        vector: kv_num(rest, "Vector").and_then(u32_of)?,
        irql: kv_num(rest, "Irql")
            .and_then(|v| u8::try_from(v).ok())
            .unwrap_or(0),
        affinity: kv_num(rest, "Affinity").unwrap_or(0),
    })
}

/// `ISR: MessageSignaled=%u MessageID=%lu IsrStatusRead=%u IsrStatus=0x%02x Return=%u`
/// (docs/log-formats.md line 8): one sampled ISR invocation, with what it read and returned.
fn isr_sample(rest: &str) -> Option<EventKind> {
    let signaled = kv(rest, "MessageSignaled").and_then(parse_bool)?;
    let claimed = kv(rest, "Return").and_then(parse_bool)?;
    let read = kv(rest, "IsrStatusRead").and_then(parse_bool)?;
    let status = if read {
        Some(kv_num(rest, "IsrStatus").and_then(|v| u8::try_from(v).ok())?)
    } else {
        None
    };
    let message_id = if signaled {
        Some(kv_num(rest, "MessageID").and_then(u32_of)?)
    } else {
        None
    };
    Some(EventKind::IsrRan {
        message_id,
        claimed,
        isr_status: status,
    })
}

/// `VIRTIO:` vector write/read-back, `device_status` write, `isr_status` read, `queue_enable`.
fn virtio(rest: &str) -> Option<Vec<EventKind>> {
    let selector = if contains_ci(rest, "msix_config") {
        Some(Selector::MsixConfig)
    } else if contains_ci(rest, "queue_msix_vector") {
        Some(Selector::Queue(kv_num(rest, "queue").and_then(u16_of)?))
    } else {
        None
    };
    if let Some(selector) = selector {
        let write = kv_num(rest, "write").and_then(u16_of);
        let read = kv_num(rest, "read").and_then(u16_of)?;
        let mut out = vec![match write {
            Some(written) => EventKind::VectorWritten {
                selector,
                written,
                read_back: read,
            },
            None => EventKind::VectorRead {
                selector,
                value: read,
            },
        }];
        if let (Some(_), Some(message_number)) =
            (write, kv_num(rest, "MessageNumber").and_then(u32_of))
        {
            out.push(EventKind::VectorMessage {
                selector,
                message_number,
            });
        }
        return Some(out);
    }
    if contains_ci(rest, "queue_enable") {
        let queue = kv_num(rest, "queue").and_then(u16_of)?;
        let on = kv_num(rest, "write")?;
        if on == 0 {
            return None;
        }
        let size = kv_num(rest, "size").and_then(u16_of).unwrap_or(0);
        return Some(vec![EventKind::QueueEnabled { queue, size }]);
    }
    if contains_ci(rest, "device_status") {
        let value = kv_num(rest, "write").and_then(|v| u8::try_from(v).ok())?;
        let mut out = vec![EventKind::DeviceStatus { value }];
        if value == 0 {
            out.push(EventKind::DeviceReset);
        }
        return Some(out);
    }
    if contains_ci(rest, "isr_status") {
        let value = kv_num(rest, "read").and_then(|v| u8::try_from(v).ok())?;
        return Some(vec![EventKind::IsrRead { value }]);
    }
    None
}

/// `COUNTERS: MessageNumber=.. isr=.. dpc=.. LastMessageID=..` or `COUNTERS: INTx isr=.. dpc=..
/// LastIsrStatus=..`. A non-zero `LastIsrStatus` also proves an ISR status read returned that
/// value (0 does not: a driver that never read prints its initial 0).
fn counters(rest: &str) -> Option<Vec<EventKind>> {
    let intx = find_word_ci(rest, "INTx").is_some();
    let message = if intx {
        None
    } else {
        kv_num(rest, "MessageNumber").and_then(u32_of)
    };
    let mut out = vec![EventKind::CounterSummary {
        message,
        isr_count: kv_num(rest, "isr")?,
        dpc_count: kv_num(rest, "dpc")?,
    }];
    if let (true, Some(v)) = (
        intx,
        kv_num(rest, "LastIsrStatus").and_then(|v| u8::try_from(v).ok()),
    ) {
        if v != 0 {
            out.push(EventKind::IsrRead { value: v });
        }
    }
    Some(out)
}

/// A number written as decimal digits or `0x` hex; words that merely look like hex (`bad`,
/// `face`) are not numbers here, since free text is full of them.
fn strict_num(tok: &str) -> Option<u64> {
    let t = tok.trim_matches(|c: char| matches!(c, '.' | ':' | '#'));
    let t = t.strip_prefix("q").unwrap_or(t);
    if t.starts_with("0x") || t.starts_with("0X") {
        return parse_hex(t);
    }
    if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()) {
        return t.parse().ok();
    }
    None
}

/// Real drivers' own wordings of a vector read-back, for example
/// `queue 2 msix vector 0x00e1 read back 0xffff`, `Queue[1] vector set 1, read back 65535`,
/// `config vector 0 readback 0`, `queue_msix_vector(q=2) = 0xe1, read-back 0xffff`.
///
/// Accepted shape: the line mentions a vector (`vector`, `msix`, `msi-x`) and a read-back
/// phrase; the selector is "config" or the first number after a word containing `queue`; the
/// written value is the last other number before the phrase; the read-back value is the first
/// number after it. Anything else stays a plain log line.
pub fn readback_wording(body: &str) -> Option<EventKind> {
    if !contains_ci(body, "read") {
        return None;
    }
    let lower = body.to_ascii_lowercase();
    if !(lower.contains("vector") || lower.contains("msix") || lower.contains("msi-x")) {
        return None;
    }
    let (pos, len) = ["read back", "readback", "read-back", "reads back"]
        .iter()
        .find_map(|p| lower.find(p).map(|i| (i, p.len())))?;
    let before: Vec<&str> = tokens(&lower[..pos]).collect();
    let read_back = tokens(&lower[pos + len..]).find_map(strict_num)?;
    let queue_word = before.iter().position(|t| t.contains("queue"));
    let (selector, skip) = match queue_word {
        Some(q) => {
            let (off, idx) = before[q + 1..]
                .iter()
                .enumerate()
                .find_map(|(i, t)| strict_num(t).map(|n| (q + 1 + i, n)))?;
            (Selector::Queue(u16_of(idx)?), Some(off))
        }
        None if lower[..pos].contains("config") => (Selector::MsixConfig, None),
        None => return None,
    };
    let written = before
        .iter()
        .enumerate()
        .rev()
        .filter(|(i, _)| Some(*i) != skip)
        .find_map(|(_, t)| strict_num(t))?;
    Some(EventKind::VectorWritten {
        selector,
        written: u16_of(written)?,
        read_back: u16_of(read_back)?,
    })
}

/// The command after a WinDbg prompt (`kd> `, `0: kd> `, `lkd> `).
pub fn windbg_prompt(body: &str) -> Option<&str> {
    let i = body.find("kd>")?;
    let head = body[..i].trim();
    let ok = head.len() <= 8
        && head
            .bytes()
            .all(|b| b.is_ascii_digit() || b == b':' || b == b'l' || b == b' ');
    ok.then(|| body[i + 3..].trim())
}

/// `!pci [flags] bus dev func` -> `bb:dd.f`.
pub fn pci_command_bdf(cmd: &str) -> Option<String> {
    let mut it = cmd.split_whitespace();
    if !it.next()?.eq_ignore_ascii_case("!pci") {
        return None;
    }
    let args: Vec<&str> = it.collect();
    if args.len() < 4 {
        return None;
    }
    let bus = args[1].rsplit(':').next()?;
    let (bus, dev, func) = (parse_hex(bus)?, parse_hex(args[2])?, parse_hex(args[3])?);
    Some(format!("{bus:02x}:{dev:02x}.{func:x}"))
}

/// `PCI Configuration Space (Segment:0000 Bus:00 Device:04 Function:00)` -> `00:04.0`.
pub fn config_space_bdf(body: &str) -> Option<String> {
    if !contains_ci(body, "Configuration Space") {
        return None;
    }
    let field = |key: &str| {
        let i = body.find(key)? + key.len();
        let rest = &body[i..];
        let end = rest
            .find(|c: char| !c.is_ascii_hexdigit())
            .unwrap_or(rest.len());
        parse_hex(&rest[..end])
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
    word_after(body, "Cmd[", &["command"])
}

/// The PCI Status word from `Sts[0010:...]` or `Status 0010 ...`.
pub fn pci_status_word(body: &str) -> Option<u16> {
    word_after(body, "Sts[", &["status"])
}

fn word_after(body: &str, bracket: &str, names: &[&str]) -> Option<u16> {
    if let Some(i) = memchr::memmem::find(body.as_bytes(), bracket.as_bytes()) {
        let rest = &body[i + bracket.len()..];
        let end = rest.find([':', ']']).unwrap_or(rest.len());
        return parse_hex(&rest[..end]).and_then(u16_of);
    }
    if !names.iter().any(|n| contains_ci(body, n)) {
        return None;
    }
    let toks: Vec<&str> = body.split_whitespace().collect();
    toks.windows(2).find_map(|w| {
        let name = w[0].trim_end_matches(':');
        let is_name = names.iter().any(|n| name.eq_ignore_ascii_case(n));
        (is_name && w[1].len() == 4)
            .then(|| parse_hex(w[1]))
            .flatten()
            .and_then(u16_of)
    })
}

/// `Entry[1]  Address:00000000fee00000 Data:000000c1 Masked:0 Pending:0` inside a `!pci` MSI-X
/// block -> (entry, address, data, masked, pending).
pub fn msix_entry_line(body: &str) -> Option<(u16, u64, u32, bool, bool)> {
    let t = body.trim_start();
    let rest = t.strip_prefix("Entry[")?;
    let close = rest.find(']')?;
    let entry = parse_num(&rest[..close]).and_then(u16_of)?;
    let fields = &rest[close + 1..];
    let field = |name: &str| {
        fields.split_whitespace().find_map(|tok| {
            let (k, v) = tok.split_once(':')?;
            k.eq_ignore_ascii_case(name).then_some(v)
        })
    };
    let address = field("Address").and_then(parse_hex).unwrap_or(0);
    let data = field("Data")
        .and_then(parse_hex)
        .and_then(|v| u32::try_from(v).ok())
        .unwrap_or(0);
    let masked = field("Masked").and_then(parse_bool)?;
    let pending = field("Pending").and_then(parse_bool).unwrap_or(false);
    Some((entry, address, data, masked, pending))
}

/// Whether a line opens a `!pci` MSI-X capability block (`98: CapID 11 MSI-X Capability`).
pub fn is_msix_cap_start(body: &str) -> bool {
    (contains_ci(body, "MSI-X") || contains_ci(body, "MSIX"))
        && contains_ci(body, "Cap")
        && !body.contains("Capabilities: [")
}

/// What the lines of one `!pci` MSI-X capability block said.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct MsixFields {
    /// The raw Message Control word; when present it decides everything.
    pub control: Option<u16>,
    pub enabled: Option<bool>,
    pub function_masked: Option<bool>,
    /// Number of table entries as printed (decoded, not N-1).
    pub table_size: Option<u16>,
}

impl MsixFields {
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
            let flag = || sign.or_else(|| parse_bool(next));
            match name {
                "messagecontrol" | "msgctrl" | "messagectrl" | "msgcontrol" => {
                    let word = (next.len() <= 6).then(|| parse_hex(next)).flatten();
                    if let Some(w) = word.and_then(u16_of) {
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
                    if let Some(n) = parse_num(next).and_then(u16_of) {
                        self.table_size = Some(n);
                    }
                }
                _ => {}
            }
        }
        *self != before
    }
}

/// Which resource list of a `!devnode` dump we are in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ResSection {
    /// No header seen (a pasted fragment, or `!cmreslist` of an unknown list): use it.
    #[default]
    Unknown,
    Translated,
    /// The raw list carries bus-relative numbers; the checklist reads the translated one.
    Raw,
}

/// The section a header line opens, if it is one.
pub fn resource_section(body: &str) -> Option<ResSection> {
    let t = body.trim_start();
    if contains_ci(t, "Translated") && contains_ci(t, "Resource") {
        return Some(ResSection::Translated);
    }
    if contains_ci(t, "CmResourceList") {
        return Some(ResSection::Unknown);
    }
    if contains_ci(t, "AllocatedResources")
        || contains_ci(t, "BootResources")
        || t.starts_with("ResourceList")
        || (contains_ci(t, "Raw") && contains_ci(t, "Resource"))
    {
        return Some(ResSection::Raw);
    }
    None
}

/// Whether a line opens a resource entry; `Some(true)` for an interrupt entry.
pub fn resource_entry_start(body: &str) -> Option<bool> {
    let t = body.trim_start();
    if t.starts_with("Entry") {
        return Some(contains_ci(t, "Interrupt"));
    }
    if t.starts_with("Interrupt (") {
        return Some(true);
    }
    None
}

/// Fields of one interrupt descriptor in a resource dump.
#[derive(Debug, Default, Clone)]
pub struct IntEntry {
    pub flags: Option<u16>,
    pub message_word: bool,
    pub level: Option<u32>,
    pub vector: Option<u32>,
    pub affinity: Option<u64>,
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
        let mut any = false;
        for (i, tok) in toks.iter().enumerate() {
            let next = || toks.get(i + 1).and_then(|t| parse_num(t));
            let lower = tok.to_ascii_lowercase();
            match lower.as_str() {
                "flags" => {
                    if let Some(v) = next().and_then(u16_of) {
                        self.flags = Some(v);
                        any = true;
                    }
                }
                "message" => {
                    if toks
                        .get(i + 1)
                        .is_some_and(|t| t.eq_ignore_ascii_case("count"))
                    {
                        if let Some(v) = toks.get(i + 2).and_then(|t| parse_num(t)) {
                            self.message_count = u32_of(v);
                            any = true;
                        }
                    } else {
                        self.message_word = true;
                        any = true;
                    }
                }
                "messagecount" => {
                    if let Some(v) = next().and_then(u32_of) {
                        self.message_count = Some(v);
                        any = true;
                    }
                }
                "level" => {
                    self.level = next().and_then(u32_of).or(self.level);
                    any = true;
                }
                "vector" => {
                    self.vector = next().and_then(u32_of).or(self.vector);
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
            raw: false,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checklist_prints_become_events() {
        let ev = checklist_print(
            "INT: MSI/MSI-X Level=5 Vector=177 Affinity=0x3 MessageCount=3 Flags=0x3",
        )
        .unwrap();
        assert_eq!(
            ev,
            vec![EventKind::ResourceAssigned {
                mode: InterruptMode::Message,
                message_count: 3,
                level: 5,
                vector: 177,
                affinity: 3,
                flags: 3,
                raw: false,
            }]
        );
        let ev = checklist_print("viostor: VIRTIO: device_status write=0x00").unwrap();
        assert_eq!(
            ev,
            vec![EventKind::DeviceStatus { value: 0 }, EventKind::DeviceReset]
        );
        assert!(checklist_print("WDFINT: MessageSignaled=1").is_none());
        assert!(checklist_print("PRINT: hello").is_none());
    }

    #[test]
    fn driver_wordings_of_a_readback() {
        let q = |s| readback_wording(s);
        assert_eq!(
            q("NetKVM: queue 2 msix vector 0x00e1 read back 0xffff"),
            Some(EventKind::VectorWritten {
                selector: Selector::Queue(2),
                written: 0xe1,
                read_back: 0xffff
            })
        );
        assert_eq!(
            q("viostor: Queue[1] vector set 1, read back 65535"),
            Some(EventKind::VectorWritten {
                selector: Selector::Queue(1),
                written: 1,
                read_back: 0xffff
            })
        );
        assert_eq!(
            q("config msix vector 0 readback 0"),
            Some(EventKind::VectorWritten {
                selector: Selector::MsixConfig,
                written: 0,
                read_back: 0
            })
        );
        assert_eq!(
            q("queue_msix_vector(q=2) = 0xe1, read-back 0xffff"),
            Some(EventKind::VectorWritten {
                selector: Selector::Queue(2),
                written: 0xe1,
                read_back: 0xffff
            })
        );
        assert_eq!(q("read back the face of the disk"), None);
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
