//! Matchers for Windows evidence: the checklist's DbgPrint formats (docs/log-formats.md), common
//! real-driver wordings, virtio-win's own drivers' prints, and WinDbg `!pci` / resource-list
//! output. Stateless helpers only; the block state (inside an MSI-X capability, a resource
//! entry, a `!pci` dump, a storport MSI report) lives in the parser.

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
/// written value is the last number between the selector and the phrase (none: the line reads
/// the selector back, a `VectorRead`); the read-back value is the first number after the
/// phrase. Numbers in front of the selector (a DbgView sequence number pasted without its
/// tabs) are never the written value. Anything else stays a plain log line.
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
    // The written value follows the selector's name; a phrase with no number between them
    // reads the selector back without a write (`config vector read back 0xffff`).
    let after_selector = match (queue_word, skip) {
        (_, Some(off)) => off + 1,
        (Some(q), None) => q + 1,
        (None, None) => before
            .iter()
            .position(|t| t.contains("config"))
            .map_or(0, |i| i + 1),
    };
    let written = before
        .iter()
        .enumerate()
        .skip(after_selector)
        .rev()
        .filter(|(i, _)| Some(*i) != skip)
        .find_map(|(_, t)| strict_num(t));
    let read_back = u16_of(read_back)?;
    Some(match written {
        Some(w) => EventKind::VectorWritten {
            selector,
            written: u16_of(w)?,
            read_back,
        },
        None => EventKind::VectorRead {
            selector,
            value: read_back,
        },
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
    /// From the raw list (`AllocatedResources`, `!devnode`'s `CmResourceList`).
    pub raw: bool,
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
            raw: self.raw,
        })
    }
}

// ---- virtio-win's own drivers ----------------------------------------------------------
//
// viostor and vioscsi (storport miniports) print with `RhelDbgPrint`, NetKVM with `DPrintf`;
// both reach DbgView as DbgPrint text in checked builds, or as WPP text (the same words after a
// tracefmt prefix and the function name). They never print the checklist's lines; these are
// the ones about interrupts whose meaning is certain from the drivers' sources.

/// One line of the MSI report a storport miniport prints per granted message
/// (`StorPortGetMSIInfo` in `HwInitialize`): ` MessageId = %x`, ` InterruptVector = %x`,
/// ` InterruptLevel = %x`, ` InterruptMode = Latched`, and the data/address lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StorportMsiLine {
    MessageId(u32),
    Vector(u32),
    Level(u32),
    /// `InterruptMode`: latched (the only mode of a message) or level-sensitive.
    Latched(bool),
    /// `MessageData`, `MessageAddress`: part of the report, nothing the judge needs.
    Other,
}

/// The value after `key = ` (exact case: `MessageId` is the MSI report, `MessageID` the ISR's
/// complaint), when the key starts a word.
fn field_after<'a>(body: &'a str, key: &str) -> Option<&'a str> {
    let at = memchr::memmem::find(body.as_bytes(), key.as_bytes())?;
    if at > 0 && is_word(body.as_bytes()[at - 1]) {
        return None;
    }
    let rest = body[at + key.len()..].trim_start().strip_prefix('=')?;
    Some(rest.trim())
}

fn is_word(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'.'
}

/// A line of a storport miniport's per-message MSI report.
pub fn storport_msi_line(body: &str) -> Option<StorportMsiLine> {
    let hex = |v: &str| parse_hex(v.split_whitespace().next()?).and_then(u32_of);
    if let Some(v) = field_after(body, "MessageId") {
        return hex(v).map(StorportMsiLine::MessageId);
    }
    if let Some(v) = field_after(body, "InterruptVector") {
        return hex(v).map(StorportMsiLine::Vector);
    }
    if let Some(v) = field_after(body, "InterruptLevel") {
        return hex(v).map(StorportMsiLine::Level);
    }
    if let Some(v) = field_after(body, "InterruptMode") {
        return match v {
            "Latched" => Some(StorportMsiLine::Latched(true)),
            "LevelSensitive" => Some(StorportMsiLine::Latched(false)),
            _ => None,
        };
    }
    if field_after(body, "MessageData").is_some() || field_after(body, "MessageAddress").is_some() {
        return Some(StorportMsiLine::Other);
    }
    None
}

/// One message of a storport MSI report, read so far.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StorportMsi {
    pub message_id: u32,
    pub vector: Option<u32>,
    pub level: Option<u32>,
    pub latched: Option<bool>,
}

impl StorportMsi {
    /// The granted message as a resource (one descriptor per message, as Windows lists MSI-X)
    /// and as the interrupt storport connected for it (`MessageId` is the `MessageID` the ISR
    /// receives). `None` without the vector.
    pub fn to_events(&self) -> Option<(EventKind, EventKind)> {
        let vector = self.vector?;
        let level = self.level.unwrap_or(vector >> 4);
        let latched = if self.latched.unwrap_or(true) {
            CM_RESOURCE_INTERRUPT_LATCHED
        } else {
            0
        };
        let flags = CM_RESOURCE_INTERRUPT_MESSAGE | latched;
        Some((
            EventKind::ResourceAssigned {
                mode: InterruptMode::Message,
                message_count: 0,
                level,
                vector,
                affinity: 0,
                flags,
                raw: false,
            },
            EventKind::InterruptConnected {
                message_signaled: true,
                message_number: self.message_id,
                vector,
                irql: u8::try_from(level).unwrap_or(0),
                affinity: 0,
            },
        ))
    }
}

/// `CM_RESOURCE_INTERRUPT_LATCHED`.
pub const CM_RESOURCE_INTERRUPT_LATCHED: u16 = 0x0001;

/// A line of the MSI-X capability viostor/vioscsi read in `HwFindAdapter`
/// (` MessageControl.TableSize = %d`, `.FunctionMask`, `.MSIXEnable`). `TableSize` is the raw
/// field, N-1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StorportMsixLine {
    TableSizeField(u16),
    FunctionMask(bool),
    Enable(bool),
}

pub fn storport_msix_line(body: &str) -> Option<StorportMsixLine> {
    let num = |v: &str| v.split_whitespace().next()?.parse::<u16>().ok();
    if let Some(v) = field_after(body, "MessageControl.TableSize") {
        return num(v).map(StorportMsixLine::TableSizeField);
    }
    if let Some(v) = field_after(body, "MessageControl.FunctionMask") {
        return num(v).map(|n| StorportMsixLine::FunctionMask(n != 0));
    }
    if let Some(v) = field_after(body, "MessageControl.MSIXEnable") {
        return num(v).map(|n| StorportMsixLine::Enable(n != 0));
    }
    None
}

/// What a virtio-win driver's single line says about interrupts, when it is certain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VirtioWinLine {
    /// viostor/vioscsi ` Queues %d msix_vectors %d`: with 0 vectors `StorPortGetMSIInfo`
    /// found no message, so the adapter runs on its line interrupt.
    StorportVectors { queues: u32, vectors: u32 },
    /// NetKVM `Using MSIX interrupts (%d messages, irql %d)`.
    NetkvmMessages { count: u32, irql: u8 },
    /// NetKVM `MSIX message%d=%08X=>%I64X`: one message of its table (data, address).
    NetkvmMessage { index: u32, data: u32, address: u64 },
    /// NetKVM `Not using MSIX`: the resources carry no message interrupt.
    NetkvmNoMsix,
    /// viostor's message ISR refusing a message (` MessageID = %d`, then `return FALSE`).
    MessageRefused { message_id: u32 },
    /// viostor's line ISR: ` was not serviced ISR status = %d` (read, nothing pending).
    LineNotServiced { isr_status: u8 },
    /// viostor's line ISR on a removed or stopped adapter: returns FALSE without reading.
    LineIsrStopped,
}

impl VirtioWinLine {
    /// The events the line stands for; `irql` is NetKVM's last reported unified IRQL.
    pub fn to_events(&self, irql: Option<u8>) -> Vec<EventKind> {
        let line = || EventKind::ResourceAssigned {
            mode: InterruptMode::Intx,
            message_count: 0,
            level: 0,
            vector: 0,
            affinity: 0,
            flags: 0,
            raw: false,
        };
        match *self {
            VirtioWinLine::StorportVectors { vectors: 0, .. } | VirtioWinLine::NetkvmNoMsix => {
                vec![line()]
            }
            VirtioWinLine::StorportVectors { .. } | VirtioWinLine::NetkvmMessages { .. } => {
                Vec::new()
            }
            VirtioWinLine::NetkvmMessage { index, data, .. } => {
                // An x86 MSI data word carries the IDT vector in bits 7:0.
                let vector = data & 0xFF;
                let irql = irql.unwrap_or(0);
                vec![
                    EventKind::ResourceAssigned {
                        mode: InterruptMode::Message,
                        message_count: 0,
                        level: u32::from(irql),
                        vector,
                        affinity: 0,
                        flags: CM_RESOURCE_INTERRUPT_MESSAGE | CM_RESOURCE_INTERRUPT_LATCHED,
                        raw: false,
                    },
                    EventKind::InterruptConnected {
                        message_signaled: true,
                        message_number: index,
                        vector,
                        irql,
                        affinity: 0,
                    },
                ]
            }
            VirtioWinLine::MessageRefused { message_id } => vec![EventKind::IsrRan {
                message_id: Some(message_id),
                claimed: false,
                isr_status: None,
            }],
            VirtioWinLine::LineNotServiced { isr_status } => vec![EventKind::IsrRan {
                message_id: None,
                claimed: false,
                isr_status: Some(isr_status),
            }],
            VirtioWinLine::LineIsrStopped => vec![EventKind::IsrRan {
                message_id: None,
                claimed: false,
                isr_status: None,
            }],
        }
    }
}

/// A decimal number that is the whole of `s` (after trimming).
fn whole_decimal(s: &str) -> Option<u32> {
    let t = s.trim();
    (!t.is_empty() && t.len() <= 10 && t.bytes().all(|b| b.is_ascii_digit()))
        .then(|| t.parse().ok())
        .flatten()
}

/// One of the single-line virtio-win prints of [`VirtioWinLine`].
pub fn virtio_win_line(body: &str) -> Option<VirtioWinLine> {
    if let Some(v) = field_after(body, "MessageID") {
        // The lock tracing prints `---> MessageID = %d isr = %d`: not the ISR.
        let head = &body[..memchr::memmem::find(body.as_bytes(), b"MessageID")?];
        if !head.contains("--->") && !head.contains("<---") {
            return whole_decimal(v).map(|message_id| VirtioWinLine::MessageRefused { message_id });
        }
        return None;
    }
    if let Some(i) = memchr::memmem::find(body.as_bytes(), b"was not serviced ISR status") {
        let v = body[i..].split('=').nth(1)?;
        return whole_decimal(v)
            .and_then(|v| u8::try_from(v).ok())
            .map(|isr_status| VirtioWinLine::LineNotServiced { isr_status });
    }
    if body.contains("Interrupt on removed or stopped device") {
        return Some(VirtioWinLine::LineIsrStopped);
    }
    if let Some(i) = find_word_ci(body, "Queues") {
        let toks: Vec<&str> = body[i..].split_whitespace().collect();
        if let [_, q, key, v, ..] = toks.as_slice() {
            if *key == "msix_vectors" {
                return Some(VirtioWinLine::StorportVectors {
                    queues: whole_decimal(q)?,
                    vectors: whole_decimal(v)?,
                });
            }
        }
    }
    if let Some(i) = memchr::memmem::find(body.as_bytes(), b"Using MSIX interrupts (") {
        let inner = body[i + 23..].split(')').next()?;
        let (count, irql) = inner.split_once(',')?;
        let count = whole_decimal(count.trim().strip_suffix("messages")?)?;
        let irql = whole_decimal(irql.trim().strip_prefix("irql")?)?;
        return Some(VirtioWinLine::NetkvmMessages {
            count,
            irql: u8::try_from(irql).ok()?,
        });
    }
    if let Some(i) = memchr::memmem::find(body.as_bytes(), b"MSIX message") {
        let rest = &body[i + 12..];
        let (index, rest) = rest.split_once('=')?;
        let (data, address) = rest.split_once("=>")?;
        return Some(VirtioWinLine::NetkvmMessage {
            index: whole_decimal(index)?,
            data: parse_hex(data.trim()).and_then(u32_of)?,
            address: parse_hex(address.split_whitespace().next()?)?,
        });
    }
    if body.trim_end().ends_with("Not using MSIX") {
        return Some(VirtioWinLine::NetkvmNoMsix);
    }
    None
}

// ---- WinDbg `!pci` as the pci extension prints it ----------------------------------------

/// What a `!pci` heading line says about the function the lines after it describe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PciHeading {
    /// `PCI Bus 0`, `PCI Segment 0 Bus 0`: the bus of the summary lines that follow.
    Bus(u8),
    /// A heading naming the whole address (`PCI Configuration Space (Segment:0000 Bus:00
    /// Device:04 Function:00)`, or virq's `PCI Segment 0 Bus 0x00 Device 0x04 Function 0x0`).
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
    let num = |s: &str| parse_hex(s).and_then(|v| u8::try_from(v).ok());
    match toks.as_slice() {
        ["Bus", b] | ["Segment", _, "Bus", b] => num(b).map(PciHeading::Bus),
        ["Segment", _, "Bus", b, "Device", d, "Function", f] => Some(PciHeading::Function(
            format!("{:02x}:{:02x}.{:x}", num(b)?, num(d)?, num(f)?),
        )),
        _ => None,
    }
}

/// The summary line of one function: `DD:F  VVVV:DDDD.RR  Cmd[...]  Sts[...]  ...` (with the
/// bus from the heading) or virq's `BB:DD.F  VVVV:DDDD.RR  Cmd[...]`. Returns the address
/// (`None` when the bus is not known) and the vendor id.
pub fn pci_summary_line(body: &str, bus: Option<u8>) -> Option<(Option<String>, u16)> {
    let mut toks = body.split_whitespace();
    let addr = toks.next()?;
    let ids = toks.next()?;
    let (vendor, rest) = ids.split_once(':')?;
    let device = rest.split('.').next()?;
    if vendor.len() != 4 || device.len() != 4 {
        return None;
    }
    let vendor = parse_hex(vendor).and_then(u16_of)?;
    parse_hex(device)?;
    let hex = |s: &str, n: usize| s.len() <= n && !s.is_empty() && parse_hex(s).is_some();
    let bdf = match addr.split(':').collect::<Vec<_>>().as_slice() {
        [b, df] if df.contains('.') => {
            let (d, f) = df.split_once('.')?;
            if !(hex(b, 2) && hex(d, 2) && hex(f, 1)) {
                return None;
            }
            Some(format!(
                "{:02x}:{:02x}.{:x}",
                parse_hex(b)?,
                parse_hex(d)?,
                parse_hex(f)?
            ))
        }
        [d, f] if hex(d, 2) && hex(f, 1) => {
            let (d, f) = (parse_hex(d)?, parse_hex(f)?);
            bus.map(|b| format!("{b:02x}:{d:02x}.{f:x}"))
        }
        _ => return None,
    };
    Some((bdf, vendor))
}

/// A line of raw configuration space as `!pci` prints it (the `Device Private:` block, or the
/// raw dword / byte flags): `40: 00028011 00000001 ...` or `40: 11 00 02 80 ...`. Returns the
/// offset of the first byte and the bytes (little-endian dwords unpacked).
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
    let mut toks = body.split_whitespace();
    if toks.next()? != "34:" || !toks.next()?.eq_ignore_ascii_case("CapPtr") {
        return None;
    }
    parse_hex(toks.next()?).and_then(|v| u8::try_from(v).ok())
}

/// `00: VendorID  1af4 ...`: the vendor of a `!pci 1xx` dump.
pub fn pci_vendor_field(body: &str) -> Option<u16> {
    let mut toks = body.split_whitespace();
    if toks.next()? != "00:" || !toks.next()?.eq_ignore_ascii_case("VendorID") {
        return None;
    }
    parse_hex(toks.next()?).and_then(u16_of)
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

    pub fn is_empty(&self) -> bool {
        self.lines.is_empty()
    }

    fn byte(&self, off: usize) -> Option<u8> {
        self.bytes.get(off).copied().flatten().map(|(b, _)| b)
    }

    /// The MSI-X capability's offset: `at` when a capability line named it, else found by
    /// walking the list from `cap_ptr` through the raw bytes (PCI 3.0 section 6.7).
    pub fn find_msix(&self, at: Option<u8>, cap_ptr: Option<u8>) -> Option<usize> {
        if let Some(at) = at {
            return Some(usize::from(at));
        }
        let mut ptr = usize::from(cap_ptr?);
        for _ in 0..48 {
            if !(0x40..=0xFC).contains(&ptr) {
                return None;
            }
            ptr &= !3;
            if self.byte(ptr)? == 0x11 {
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
}

/// A `DevNode` heading without a prompt (`DevNode 0xfffffa80... for PDO ...`, virq's
/// `DevNode (virq model)`): the resource lists that follow are `!devnode`'s.
pub fn is_devnode_heading(body: &str) -> bool {
    let t = body.trim_start();
    t.starts_with("DevNode 0x") || t.starts_with("DevNode (")
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
