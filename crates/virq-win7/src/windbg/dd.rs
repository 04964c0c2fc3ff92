//! `!dd [uc]` and `!dq [uc]`: physical memory, here the MSI-X table and the Pending Bit Array
//! in the device's BAR memory (PCI 3.0 section 6.8.2: 16 bytes per entry, Message Address,
//! Message Upper Address, Message Data, Vector Control; the PBA one bit per entry). `!pci`
//! cannot show them: they are not in configuration space. The address to dump is the BAR the
//! capability's Table BIR names plus its offset ([`super::pci::PciDumpSummary::msix_location`]).
//!
//! ```text
//! 0: kd> !dd [uc] c0003000 L10
//! #c0003000 fee0100c 00000000 00004051 00000000
//! 0: kd> !dq [uc] c0003800 L1
//! #c0003800 00000000`00000000
//! ```
//!
//! Device memory must be read uncached (`[uc]`). Each line is `#`, the physical address right
//! aligned in eight columns, then four dwords (`!dd`) or two qwords with a backtick (`!dq`).
//! Unverified: the column widths for addresses above 4 GiB (printed in full here).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use virq_events::EventKind;

use super::{PROMPT, parse_number};
use crate::msi::{MSIX_ENTRY_SIZE, MSIX_VECTOR_CONTROL_MASKED};

/// One MSI-X table entry as read from the table BAR.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MsixEntryView {
    /// Message Address (DWORDs 0 and 1).
    pub address: u64,
    /// Message Data (DWORD 2).
    pub data: u32,
    /// Vector Control's Mask Bit (DWORD 3, bit 0).
    pub masked: bool,
}

/// Where a function's MSI-X table and PBA sit in physical memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MsixLocation {
    /// Physical address of the table.
    pub table: u64,
    /// Entries in the table (Table Size + 1).
    pub entries: u16,
    /// Physical address of the PBA.
    pub pba: u64,
}

impl MsixLocation {
    /// Whether `address` is in the table or the PBA.
    pub fn contains(&self, address: u64) -> bool {
        (self.table..self.table_end()).contains(&address)
            || (self.pba..self.pba_end()).contains(&address)
    }

    fn table_end(&self) -> u64 {
        self.table
            .saturating_add(u64::from(self.entries) * MSIX_ENTRY_SIZE)
    }

    fn pba_end(&self) -> u64 {
        self.pba
            .saturating_add(u64::from(self.entries).div_ceil(64) * 8)
    }
}

/// `!dd [uc] addr Ln` of `dwords`.
pub fn render_dd(address: u64, dwords: &[u32]) -> String {
    let mut out = format!("{PROMPT}!dd [uc] {address:x} L{:x}\n", dwords.len());
    for (i, row) in dwords.chunks(4).enumerate() {
        let words: Vec<String> = row.iter().map(|d| format!("{d:08x}")).collect();
        let _ = writeln!(out, "#{:8x} {}", address + 16 * i as u64, words.join(" "));
    }
    out
}

/// `!dq [uc] addr Ln` of `qwords`.
pub fn render_dq(address: u64, qwords: &[u64]) -> String {
    let mut out = format!("{PROMPT}!dq [uc] {address:x} L{:x}\n", qwords.len());
    for (i, row) in qwords.chunks(2).enumerate() {
        let words: Vec<String> = row.iter().map(|q| super::fmt_ptr(*q)).collect();
        let _ = writeln!(out, "#{:8x} {}", address + 16 * i as u64, words.join(" "));
    }
    out
}

/// The table as `!dd` shows it, then the PBA as `!dq` shows it.
pub fn render_msix(loc: &MsixLocation, table: &[MsixEntryView], pba: &[u64]) -> String {
    let mut dwords = Vec::with_capacity(table.len() * 4);
    for e in table.iter().take(usize::from(loc.entries)) {
        dwords.extend([
            e.address as u32,
            (e.address >> 32) as u32,
            e.data,
            u32::from(e.masked) * MSIX_VECTOR_CONTROL_MASKED,
        ]);
    }
    let mut out = render_dd(loc.table, &dwords);
    let words = usize::from(loc.entries).div_ceil(64);
    let pba: Vec<u64> = (0..words)
        .map(|i| pba.get(i).copied().unwrap_or(0))
        .collect();
    out.push_str(&render_dq(loc.pba, &pba));
    out
}

/// One line of `!dd`/`!dq` output: the address and the values, with the unit the values' width
/// says (4 or 8 bytes).
pub fn parse_line(body: &str) -> Option<(u64, Vec<u64>, u8)> {
    let t = body.trim_start().strip_prefix('#')?;
    let mut toks = t.split_whitespace();
    let address = parse_number(toks.next()?)?;
    let mut values = Vec::with_capacity(4);
    let mut unit = 0u8;
    for tok in toks {
        let digits = tok.bytes().filter(|b| *b != b'`').count();
        let this = match digits {
            8 => 4,
            16 => 8,
            _ => return None,
        };
        if unit != 0 && unit != this {
            return None;
        }
        unit = this;
        values.push(parse_number(tok)?);
    }
    (!values.is_empty() && values.len() <= 16).then_some((address, values, unit))
}

/// Reads `!dd`/`!dq` lines of one function's MSI-X table and PBA into entries and pending bits.
/// Bytes outside the table and the PBA are ignored; an entry is known once its four dwords are.
#[derive(Debug, Clone)]
pub struct MsixMemoryReader {
    loc: MsixLocation,
    /// Table dwords seen, by entry: (dword index -> value).
    partial: BTreeMap<u16, [Option<u32>; 4]>,
}

impl MsixMemoryReader {
    /// A reader of the table and PBA at `loc`, nothing read yet.
    pub fn new(loc: MsixLocation) -> Self {
        Self {
            loc,
            partial: BTreeMap::new(),
        }
    }

    /// Where the table and PBA are.
    pub fn location(&self) -> MsixLocation {
        self.loc
    }

    /// Takes one parsed line; returns the entries it completed (`MsixEntry`) and the pending
    /// bits it showed set (`PendingSet`).
    pub fn feed(&mut self, address: u64, values: &[u64], unit: u8) -> Vec<EventKind> {
        let mut out = Vec::new();
        let mut dwords: Vec<(u64, u32)> = Vec::with_capacity(values.len() * 2);
        for (i, v) in values.iter().enumerate() {
            // A row near the top of the address space names no table past 2^64.
            let Some(at) = address.checked_add(i as u64 * u64::from(unit)) else {
                break;
            };
            if unit == 8 {
                dwords.push((at, *v as u32));
                let Some(high) = at.checked_add(4) else { break };
                dwords.push((high, (*v >> 32) as u32));
            } else {
                dwords.push((at, *v as u32));
            }
        }
        for (at, d) in dwords {
            if (self.loc.table..self.loc.table_end()).contains(&at) && at % 4 == 0 {
                let off = at - self.loc.table;
                let entry = (off / MSIX_ENTRY_SIZE) as u16;
                let word = ((off % MSIX_ENTRY_SIZE) / 4) as usize;
                let slot = self.partial.entry(entry).or_insert([None; 4]);
                slot[word] = Some(d);
                if let [Some(lo), Some(hi), Some(data), Some(ctrl)] = *slot {
                    self.partial.remove(&entry);
                    out.push(EventKind::MsixEntry {
                        entry,
                        address: (u64::from(hi) << 32) | u64::from(lo),
                        data,
                        masked: ctrl & MSIX_VECTOR_CONTROL_MASKED != 0,
                    });
                }
            } else if (self.loc.pba..self.loc.pba_end()).contains(&at) && at % 4 == 0 {
                let first = ((at - self.loc.pba) * 8) as u16;
                for bit in 0..32u16 {
                    let entry = first + bit;
                    if entry < self.loc.entries && d >> bit & 1 == 1 {
                        out.push(EventKind::PendingSet { entry });
                    }
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loc() -> MsixLocation {
        MsixLocation {
            table: 0xC000_3000,
            entries: 3,
            pba: 0xC000_3800,
        }
    }

    #[test]
    fn the_table_is_laid_out_as_windbg_prints_physical_memory() {
        let table = [
            MsixEntryView {
                address: 0xFEE0_100C,
                data: 0x4051,
                masked: false,
            },
            MsixEntryView {
                address: 0xFEE0_0000,
                data: 0x4061,
                masked: true,
            },
        ];
        let text = render_msix(&loc(), &table, &[0b10]);
        assert_eq!(
            text,
            "0: kd> !dd [uc] c0003000 L8\n\
             #c0003000 fee0100c 00000000 00004051 00000000\n\
             #c0003010 fee00000 00000000 00004061 00000001\n\
             0: kd> !dq [uc] c0003800 L1\n\
             #c0003800 00000000`00000002\n"
        );
    }

    /// Round trip: the entries and pending bits written read back as the same events.
    #[test]
    fn the_table_and_pba_read_back() {
        let table: Vec<MsixEntryView> = (0..3)
            .map(|i| MsixEntryView {
                address: 0xFEE0_0000 | (i << 12),
                data: 0x51 + 0x10 * i as u32,
                masked: i == 2,
            })
            .collect();
        let text = render_msix(&loc(), &table, &[0b101]);
        let mut r = MsixMemoryReader::new(loc());
        let mut events = Vec::new();
        for line in text.lines() {
            if let Some((a, v, u)) = parse_line(line) {
                events.extend(r.feed(a, &v, u));
            }
        }
        let mut want: Vec<EventKind> = table
            .iter()
            .enumerate()
            .map(|(i, e)| EventKind::MsixEntry {
                entry: i as u16,
                address: e.address,
                data: e.data,
                masked: e.masked,
            })
            .collect();
        want.push(EventKind::PendingSet { entry: 0 });
        want.push(EventKind::PendingSet { entry: 2 });
        assert_eq!(events, want);
    }

    /// An 8-byte aligned table splits entries across lines; memory around it is not read.
    #[test]
    fn entries_split_across_lines_and_memory_outside_is_ignored() {
        let l = MsixLocation {
            table: 0x1008,
            entries: 1,
            pba: 0x2000,
        };
        let mut r = MsixMemoryReader::new(l);
        let (a, v, u) = parse_line("#    1000 11111111 22222222 fee00000 00000000").unwrap();
        assert!(r.feed(a, &v, u).is_empty());
        let (a, v, u) = parse_line("#    1010 00000041 00000000 33333333 44444444").unwrap();
        assert_eq!(
            r.feed(a, &v, u),
            [EventKind::MsixEntry {
                entry: 0,
                address: 0xFEE0_0000,
                data: 0x41,
                masked: false
            }]
        );
        assert_eq!(parse_line("# not memory"), None);
        assert_eq!(parse_line("#c0003000 fee0100c 0000"), None);
    }

    /// A row (user text) at the top of the address space: the values past 2^64 are no
    /// memory, those below still count; a table that would end past 2^64 ends there. Found by
    /// the `win_text` fuzz target (an overflow panic in `feed`).
    #[test]
    fn rows_and_tables_at_the_top_of_the_address_space() {
        let l = MsixLocation {
            table: u64::MAX - 31,
            entries: 1,
            pba: u64::MAX - 7,
        };
        let mut r = MsixMemoryReader::new(l);
        let (a, v, u) =
            parse_line("#ffffffffffffffe0 fee00000 00000000 00000041 00000000").unwrap();
        assert_eq!(
            r.feed(a, &v, u),
            [EventKind::MsixEntry {
                entry: 0,
                address: 0xFEE0_0000,
                data: 0x41,
                masked: false
            }]
        );
        let (a, v, u) =
            parse_line("#fffffffffffffff8 00000000`00000001 00000000`00000002").unwrap();
        assert_eq!(r.feed(a, &v, u), [EventKind::PendingSet { entry: 0 }]);
        let (a, v, u) = parse_line("#fffffffffffffffc 00000001 00000001").unwrap();
        assert!(r.feed(a, &v, u).is_empty());
        assert!(l.contains(u64::MAX - 1) && !l.contains(0));
    }
}
