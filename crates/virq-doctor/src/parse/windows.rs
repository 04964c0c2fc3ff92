//! Matchers for Windows evidence: the checklist's DbgPrint formats (docs/log-formats.md), common
//! real-driver wordings and virtio-win's own drivers' prints. Stateless helpers only; the block
//! state (a storport MSI report) lives in the parser. WinDbg's text is read by the readers
//! beside its writers in `virq_win7::windbg`.

use crate::text::{contains_ci, find_word_ci, kv, kv_num, parse_bool, parse_hex, tokens};
use virq_events::{EventKind, InterruptMode, Selector};

use virq_win7::{CM_RESOURCE_INTERRUPT_LATCHED, CM_RESOURCE_INTERRUPT_MESSAGE};

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
    /// ` MessageId = %x`: the message this report is about.
    MessageId(u32),
    /// ` InterruptVector = %x`: the IDT vector behind the message.
    Vector(u32),
    /// ` InterruptLevel = %x`: its IRQL.
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
    /// `MessageId` (0-based message number).
    pub message_id: u32,
    /// `InterruptVector`, once read.
    pub vector: Option<u32>,
    /// `InterruptLevel`, once read.
    pub level: Option<u32>,
    /// `InterruptMode`: latched, once read.
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

/// A line of the MSI-X capability viostor/vioscsi read in `HwFindAdapter`
/// (` MessageControl.TableSize = %d`, `.FunctionMask`, `.MSIXEnable`). `TableSize` is the raw
/// field, N-1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StorportMsixLine {
    /// `MessageControl.TableSize`: the raw Table Size field, entries - 1.
    TableSizeField(u16),
    /// `MessageControl.FunctionMask`.
    FunctionMask(bool),
    /// `MessageControl.MSIXEnable`.
    Enable(bool),
}

/// The MSI-X capability line a storport miniport printed, if `body` is one.
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
    StorportVectors {
        /// Queues the adapter set up.
        queues: u32,
        /// MSI-X vectors it got (0: line interrupt).
        vectors: u32,
    },
    /// NetKVM `Using MSIX interrupts (%d messages, irql %d)`.
    NetkvmMessages {
        /// Messages granted.
        count: u32,
        /// The IRQL printed.
        irql: u8,
    },
    /// NetKVM `MSIX message%d=%08X=>%I64X`: one message of its table (data, address).
    NetkvmMessage {
        /// MessageNumber of the table entry.
        index: u32,
        /// Message Data.
        data: u32,
        /// Message Address.
        address: u64,
    },
    /// NetKVM `Not using MSIX`: the resources carry no message interrupt.
    NetkvmNoMsix,
    /// NetKVM `read/write mismatch, %u vs %u` (`SetupMessageIndex`): a path's
    /// `queue_msix_vector` read back `read_back` after `written`; the queue is not named.
    NetkvmVectorMismatch {
        /// The value read back.
        read_back: u16,
        /// The value written.
        written: u16,
    },
    /// viostor's message ISR refusing a message (` MessageID = %d`, then `return FALSE`).
    MessageRefused {
        /// The MessageID the ISR received.
        message_id: u32,
    },
    /// viostor's line ISR: ` was not serviced ISR status = %d` (read, nothing pending).
    LineNotServiced {
        /// The ISR status byte read.
        isr_status: u8,
    },
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
            VirtioWinLine::NetkvmVectorMismatch { read_back, written } => {
                vec![EventKind::QueueVectorWritten { written, read_back }]
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
    if let Some(i) = memchr::memmem::find(body.as_bytes(), b"read/write mismatch,") {
        let (read_back, written) = body[i + 20..].split_once(" vs ")?;
        let num = |t: &str| whole_decimal(t).and_then(|n| u16::try_from(n).ok());
        return Some(VirtioWinLine::NetkvmVectorMismatch {
            read_back: num(read_back)?,
            written: num(written.split_whitespace().next()?)?,
        });
    }
    if body.trim_end().ends_with("Not using MSIX") {
        return Some(VirtioWinLine::NetkvmNoMsix);
    }
    None
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

    /// NetKVM's `SetupMessageIndex` prints the read-back first, then what it wrote; older
    /// builds put a garbled `[%s] -` before it.
    #[test]
    fn netkvm_vector_mismatch() {
        for body in [
            "[netkvm][CParaNdisAbstractPath::SetupMessageIndex] read/write mismatch, 65535 vs 1",
            "[\x01] - read/write mismatch, 65535 vs 1",
        ] {
            assert_eq!(
                virtio_win_line(body),
                Some(VirtioWinLine::NetkvmVectorMismatch {
                    read_back: 0xFFFF,
                    written: 1
                }),
                "{body}"
            );
        }
        assert_eq!(
            VirtioWinLine::NetkvmVectorMismatch {
                read_back: 2,
                written: 3
            }
            .to_events(None),
            vec![EventKind::QueueVectorWritten {
                written: 3,
                read_back: 2
            }]
        );
        assert_eq!(virtio_win_line("read/write mismatch, lots vs 1"), None);
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
}
