//! Matchers for Linux evidence: `/proc/interrupts` rows, `lspci -vvv` lines, kernel log lines.

use crate::text::{contains_ci, is_ascii_space, parse_num, words};

/// One `/proc/interrupts` row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcRow {
    /// The IRQ column (`24`, `NMI`, `LOC`), without the colon.
    pub irq: String,
    /// Sum of the per-CPU counts.
    pub total: u64,
    /// The action names (`virtio0-config`, `uhci_hcd:usb1, virtio0`).
    pub name: String,
    /// The controller column (`PCI-MSI 49152-edge`, `IO-APIC 11-fasteoi`).
    pub chip: Option<String>,
}

fn is_trigger_token(t: &str) -> bool {
    let b = t.as_bytes();
    let ends = |suffix: &str| {
        b.len() >= suffix.len()
            && b[b.len() - suffix.len()..].eq_ignore_ascii_case(suffix.as_bytes())
    };
    ends("-edge")
        || ends("-fasteoi")
        || ends("-level")
        || ["edge", "fasteoi", "level"]
            .iter()
            .any(|w| t.eq_ignore_ascii_case(w))
}

/// A `/proc/interrupts` row read in place: nothing is allocated until the caller keeps it
/// ([`ProcRowRef::to_row`]). Same rules as [`proc_row`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcRowRef<'a> {
    /// The IRQ column, without the colon.
    pub irq: &'a str,
    /// Sum of the per-CPU counts.
    pub total: u64,
    /// The name's tokens as they stand in the line (separated by any whitespace).
    name_span: &'a str,
    /// The controller column between the counts and the name (`IO-APIC 11-fasteoi`,
    /// `PCI-MSIX-0000:00:04.0 0-edge`, `GICv3 48 Level`), as it stands in the line.
    chip_span: &'a str,
}

impl ProcRowRef<'_> {
    /// The action names, tokens joined by single spaces (what [`ProcRow::name`] holds).
    pub fn name(&self) -> String {
        let mut name = String::with_capacity(self.name_span.len());
        for (i, tok) in words(self.name_span).enumerate() {
            if i > 0 {
                name.push(' ');
            }
            name.push_str(tok);
        }
        name
    }

    /// Whether the name contains `needle` (ASCII case-insensitive). `needle` must hold no
    /// whitespace, so the in-line spacing of the name cannot matter.
    pub fn name_contains_ci(&self, needle: &str) -> bool {
        debug_assert!(!needle.contains(char::is_whitespace));
        contains_ci(self.name_span, needle)
    }

    /// The controller column, tokens joined by single spaces; `None` when the row has none.
    pub fn chip(&self) -> Option<String> {
        let mut chip = String::with_capacity(self.chip_span.len());
        for (i, tok) in words(self.chip_span).enumerate() {
            if i > 0 {
                chip.push(' ');
            }
            chip.push_str(tok);
        }
        (!chip.is_empty()).then_some(chip)
    }

    /// The controller column as it stands in the line.
    pub fn chip_span(&self) -> &str {
        self.chip_span
    }

    /// The owned row.
    pub fn to_row(&self) -> ProcRow {
        ProcRow {
            irq: self.irq.to_string(),
            total: self.total,
            name: self.name(),
            chip: self.chip(),
        }
    }
}

/// A row like ` 24:   1234   0   PCI-MSI 49152-edge   virtio0-config` under a header of `cpus`
/// columns. Rows of per-CPU system counters (`LOC:`, `NMI:`) parse too; the caller filters.
pub fn proc_row(line: &str, cpus: usize) -> Option<ProcRow> {
    proc_row_ref(line, cpus).map(|r| r.to_row())
}

/// [`proc_row`] without allocating: the counts are summed and the name located in one pass
/// over the tokens.
pub fn proc_row_ref(line: &str, cpus: usize) -> Option<ProcRowRef<'_>> {
    proc_row_head(line, cpus).map(|head| head.columns())
}

impl<'a> ProcRowHead<'a> {
    /// The row after its counts (controller and name columns), as it stands in the line.
    pub fn tail(&self) -> &'a str {
        &self.after[self.end..]
    }

    /// The whole row: the controller and name columns read from the tail.
    pub fn columns(&self) -> ProcRowRef<'a> {
        row_columns(self)
    }
}

fn row_columns<'a>(head: &ProcRowHead<'a>) -> ProcRowRef<'a> {
    let after = head.after;
    // Byte offset of a token (a subslice of `after`) within `after`.
    let at = |tok: &str| tok.as_ptr() as usize - after.as_ptr() as usize;
    let toks = words(&after[head.end..]);
    // The name: the tokens after the last trigger token (`49152-edge`, `IO-APIC-fasteoi`), or
    // the last token when no trigger is followed by one. The controller column is what lies
    // between the counts and the name.
    let mut after_trigger: Option<usize> = None;
    let mut seen_trigger = false;
    let mut first: Option<usize> = None;
    let mut last: Option<&str> = None;
    for tok in toks {
        if is_trigger_token(tok) {
            seen_trigger = true;
            after_trigger = None;
        } else if seen_trigger && after_trigger.is_none() {
            after_trigger = Some(at(tok));
        }
        first.get_or_insert(at(tok));
        last = Some(tok);
    }
    let (name_start, name_span) = match (after_trigger, last) {
        (Some(start), Some(last)) => (start, &after[start..at(last) + last.len()]),
        (None, Some(last)) => (at(last), last),
        (_, None) => (after.len(), ""),
    };
    let chip_span = match first {
        Some(start) if start < name_start => after[start..name_start].trim_end(),
        _ => "",
    };
    ProcRowRef {
        irq: head.irq,
        total: head.total,
        name_span,
        chip_span,
    }
}

/// The start of a `/proc/interrupts` row: the IRQ column and the per-CPU counts.
pub struct ProcRowHead<'a> {
    /// The IRQ column, without the colon.
    pub irq: &'a str,
    /// Sum of the per-CPU counts.
    pub total: u64,
    /// The line after the IRQ's colon.
    after: &'a str,
    /// Byte offset in `after` just past the last count.
    end: usize,
}

/// Whether a line is a row under a header of `cpus` columns (an IRQ column and at least one
/// count), without reading its controller and name columns: what a row that names no virtio
/// device needs, to be known as one.
pub fn proc_row_head(line: &str, cpus: usize) -> Option<ProcRowHead<'_>> {
    let t = crate::text::trim_start(line);
    let colon = memchr::memchr(b':', t.as_bytes())?;
    let irq = &t[..colon];
    let spaced = if irq.is_ascii() {
        irq.bytes().any(crate::text::is_ascii_space)
    } else {
        irq.contains(char::is_whitespace)
    };
    if irq.is_empty() || spaced {
        return None;
    }
    let after = &t[colon + 1..];
    let (counts, total, end) = if after.is_ascii() {
        ascii_counts(after.as_bytes(), cpus)
    } else {
        let (mut counts, mut total, mut end) = (0usize, 0u64, 0usize);
        for tok in words(after).take(cpus) {
            if !tok.bytes().all(|b| b.is_ascii_digit()) {
                break;
            }
            let Ok(n) = tok.parse::<u64>() else { break };
            total = total.saturating_add(n);
            counts += 1;
            end = tok.as_ptr() as usize - after.as_ptr() as usize + tok.len();
        }
        (counts, total, end)
    };
    (counts > 0).then_some(ProcRowHead {
        irq,
        total,
        after,
        end,
    })
}

/// The leading per-CPU counts of an ASCII row (at most `cpus`): how many, their saturating
/// sum, and the byte offset just past the last one. A count is a token of decimal digits that
/// fits a `u64` (what `str::parse::<u64>` accepts of an all-digit token); the first token that
/// is not one ends the counts. One pass over the bytes, no tokenizer.
fn ascii_counts(b: &[u8], cpus: usize) -> (usize, u64, usize) {
    let (mut i, mut counts, mut total, mut end) = (0usize, 0usize, 0u64, 0usize);
    while counts < cpus {
        i = skip_ascii_space(b, i);
        if i == b.len() {
            break;
        }
        let start = i;
        let mut value = 0u64;
        while let Some(d) = b.get(i).filter(|d| d.is_ascii_digit()) {
            // Past 19 digits the value may overflow: checked below, digit by digit.
            value = value.wrapping_mul(10).wrapping_add(u64::from(d - b'0'));
            i += 1;
        }
        if i == start || b.get(i).is_some_and(|&c| !is_ascii_space(c)) {
            break;
        }
        let value = if i - start <= 19 {
            Some(value)
        } else {
            b[start..i].iter().try_fold(0u64, |v, d| {
                v.checked_mul(10)?.checked_add(u64::from(d - b'0'))
            })
        };
        let Some(v) = value else { break };
        total = total.saturating_add(v);
        counts += 1;
        end = i;
    }
    (counts, total, end)
}

/// The index of the first byte at or after `i` that is not ASCII whitespace: eight spaces at
/// a time, since the count columns of `/proc/interrupts` are mostly padding.
fn skip_ascii_space(b: &[u8], mut i: usize) -> usize {
    loop {
        while let Some(chunk) = b.get(i..i + 8) {
            let word = u64::from_le_bytes(chunk.try_into().expect("eight bytes"));
            let not_spaces = word ^ 0x2020_2020_2020_2020;
            if not_spaces != 0 {
                i += (not_spaces.trailing_zeros() / 8) as usize;
                break;
            }
            i += 8;
        }
        match b.get(i) {
            Some(&c) if is_ascii_space(c) => i += 1,
            _ => return i,
        }
    }
}

/// Whether an `lspci` device header names a virtio function: "Virtio" in the name, vendor
/// `[1af4:...]` (`-nn`), or Red Hat's / Qumranet's device 0x1000-0x107f under a `pci.ids` too
/// old to name it (`Red Hat, Inc. Device 1042`).
pub fn lspci_header_is_virtio(rest: &str) -> bool {
    if contains_ci(rest, "virtio") || contains_ci(rest, "1af4:") {
        return true;
    }
    let vendor = contains_ci(rest, "Red Hat") || contains_ci(rest, "Qumranet");
    vendor
        && rest
            .split_whitespace()
            .skip_while(|w| *w != "Device")
            .nth(1)
            .and_then(|id| u16::from_str_radix(id, 16).ok())
            .is_some_and(is_virtio_device_id)
}

/// Virtio's PCI device IDs (virtio 1.2 section 4.1.2): 0x1000-0x103f transitional,
/// 0x1040-0x107f modern.
pub fn is_virtio_device_id(id: u16) -> bool {
    (0x1000..=0x107f).contains(&id)
}

/// `Flags: bus master, fast devsel, latency 0, IRQ 11, IOMMU group 3` (`lspci -v`): the IRQ.
pub fn lspci_flags_irq(body: &str) -> Option<u32> {
    let rest = body.trim_start().strip_prefix("Flags:")?;
    rest.split(',').find_map(|part| {
        part.trim()
            .strip_prefix("IRQ ")
            .and_then(|n| n.trim().parse().ok())
    })
}

/// `Kernel driver in use: virtio-pci` or `Kernel modules: virtio_pci` (`lspci -k`): whether
/// the function is virtio's.
pub fn lspci_driver_is_virtio(body: &str) -> Option<bool> {
    let t = body.trim_start();
    let rest = t
        .strip_prefix("Kernel driver in use:")
        .or_else(|| t.strip_prefix("Kernel modules:"))?;
    Some(contains_ci(rest, "virtio"))
}

/// A capability line of virtio's own vendor-specific structures
/// (`Capabilities: [84] Vendor Specific Information: VirtIO: CommonCfg`).
pub fn lspci_virtio_cap(body: &str) -> bool {
    body.trim_start().starts_with("Capabilities:") && body.contains("VirtIO:")
}

/// The PCI Command word rebuilt from `Control: I/O+ Mem+ BusMaster+ ... DisINTx+`.
pub fn lspci_control(body: &str) -> Option<u16> {
    let rest = body.trim_start().strip_prefix("Control:")?;
    const BITS: [&str; 11] = [
        "I/O",
        "Mem",
        "BusMaster",
        "SpecCycle",
        "MemWINV",
        "VGASnoop",
        "ParErr",
        "Stepping",
        "SERR",
        "FastB2B",
        "DisINTx",
    ];
    let mut value = 0u16;
    let mut seen = false;
    for tok in rest.split_whitespace() {
        let (name, on) = match (tok.strip_suffix('+'), tok.strip_suffix('-')) {
            (Some(n), _) => (n, true),
            (_, Some(n)) => (n, false),
            _ => continue,
        };
        if let Some(bit) = BITS.iter().position(|b| *b == name) {
            seen = true;
            if on {
                value |= 1 << bit;
            }
        }
    }
    seen.then_some(value)
}

/// The INTx pending bit from `Status: Cap+ 66MHz- ... INTx+`.
pub fn lspci_status_intx(body: &str) -> Option<bool> {
    let rest = body.trim_start().strip_prefix("Status:")?;
    rest.split_whitespace().find_map(|t| match t {
        "INTx+" => Some(true),
        "INTx-" => Some(false),
        _ => None,
    })
}

/// `Interrupt: pin A routed to IRQ 11` -> (1, 11).
pub fn lspci_interrupt(body: &str) -> Option<(u8, u32)> {
    let rest = body.trim_start().strip_prefix("Interrupt:")?;
    let toks: Vec<&str> = rest.split_whitespace().collect();
    let pin = toks
        .windows(2)
        .find(|w| w[0] == "pin")
        .and_then(|w| w[1].bytes().next())
        .filter(|b| (b'A'..=b'D').contains(b))
        .map(|b| b - b'A' + 1)?;
    let irq = toks
        .windows(2)
        .find(|w| w[0] == "IRQ")
        .and_then(|w| parse_num(w[1]))
        .and_then(|v| u32::try_from(v).ok())?;
    Some((pin, irq))
}

/// `Capabilities: [98] MSI-X: Enable+ Count=3 Masked-` -> (enabled, function masked, count).
pub fn lspci_msix(body: &str) -> Option<(bool, bool, u16)> {
    let t = body.trim_start().strip_prefix("Capabilities:")?;
    let rest = &t[t.find("MSI-X:")? + "MSI-X:".len()..];
    let mut enabled = None;
    let mut masked = false;
    let mut count = 0u16;
    for tok in rest.split_whitespace() {
        match tok {
            "Enable+" => enabled = Some(true),
            "Enable-" => enabled = Some(false),
            "Masked+" => masked = true,
            _ => {
                if let Some(n) = tok.strip_prefix("Count=") {
                    count = n.parse().unwrap_or(0);
                }
            }
        }
    }
    Some((enabled?, masked, count))
}

/// `Capabilities: [..] MSI: Enable+ Count=1/1 ...` (plain MSI, not MSI-X).
pub fn lspci_is_msi(body: &str) -> bool {
    body.trim_start()
        .strip_prefix("Capabilities:")
        .is_some_and(|t| t.contains("] MSI: "))
}

/// Whether a plain MSI capability line says `Enable+`: the function then signals through
/// MSI, and the IRQ `lspci` shows is the message's, not the pin's.
pub fn lspci_msi_enabled(body: &str) -> bool {
    lspci_is_msi(body) && body.split_whitespace().any(|t| t == "Enable+")
}

#[cfg(test)]
mod tests {
    proptest::proptest! {
        /// A row's IRQ and total as `/proc/interrupts` defines them (the IRQ before the first
        /// colon, then up to `cpus` decimal counts separated by any whitespace), read with
        /// the standard library's splitting: the byte-wise head reader must agree.
        #[test]
        fn a_row_head_reads_what_split_whitespace_reads(
            s in proptest::prop_oneof![
                // Columns as the kernel pads them: runs of spaces, then digits.
                r"[ ]{0,3}[0-9]{1,3}:(( {0,17}|\t)[0-9]{1,22}){0,6}( {1,9}[A-Za-z-]{1,8}[0-9]?){0,3}",
                r"[ \t\u{a0}]{0,3}[0-9A-Z]{0,3}:?[ \t0-9\u{a0}]{0,40}[ a-zA-Z0-9:.,\u{a0}-]{0,20}",
            ],
            cpus in 1usize..6,
        ) {
            let oracle = (|| {
                let t = s.trim_start();
                let (irq, after) = t.split_once(':')?;
                if irq.is_empty() || irq.contains(char::is_whitespace) {
                    return None;
                }
                let mut total = 0u64;
                let mut counts = 0;
                for tok in after.split_whitespace().take(cpus) {
                    if !tok.bytes().all(|b| b.is_ascii_digit()) {
                        break;
                    }
                    let Ok(n) = tok.parse::<u64>() else { break };
                    total = total.saturating_add(n);
                    counts += 1;
                }
                (counts > 0).then_some((irq, total))
            })();
            let head = proc_row_head(&s, cpus).map(|h| (h.irq, h.total));
            proptest::prop_assert_eq!(head, oracle);
        }
    }

    use super::*;

    #[test]
    fn proc_rows_modern_and_old_kernels() {
        assert_eq!(
            proc_row(" 24:   1234   10   PCI-MSI 49152-edge   virtio0-config", 2),
            Some(ProcRow {
                irq: "24".into(),
                total: 1244,
                name: "virtio0-config".into(),
                chip: Some("PCI-MSI 49152-edge".into()),
            })
        );
        assert_eq!(
            proc_row(
                " 11:  98765  0  IO-APIC-fasteoi   uhci_hcd:usb1, virtio0",
                2
            )
            .unwrap()
            .name,
            "uhci_hcd:usb1, virtio0"
        );
        assert_eq!(
            proc_row("NMI:  0  0  Non-maskable interrupts", 2)
                .unwrap()
                .total,
            0
        );
        assert_eq!(proc_row("garbage line", 2), None);
    }

    #[test]
    fn ascii_and_unicode_rows_read_alike() {
        for (row, cpus) in [
            (" 24:   1234   10   PCI-MSI 49152-edge   virtio0-config", 2),
            (" 24:   1234   10   PCI-MSI 49152-edge   virtio0-config", 4),
            ("NMI:  0  0  Non-maskable interrupts", 2),
            (
                " 11: 18446744073709551615 1 IO-APIC 11-fasteoi uhci, virtio0",
                2,
            ),
            (" 11: 18446744073709551616 1 IO-APIC 11-fasteoi virtio0", 2),
            (" 12: 0x10 1 edge", 2),
            (" 13: 7 8", 2),
            (" 14: 7 8 edge", 2),
        ] {
            // The same row with a non-ASCII byte at its end takes the Unicode path.
            let unicode = format!("{row} \u{e9}");
            let a = proc_row(row, cpus);
            let u = proc_row(&unicode, cpus);
            assert_eq!(
                a.as_ref().map(|r| r.total),
                u.as_ref().map(|r| r.total),
                "{row:?}"
            );
            assert_eq!(
                a.as_ref().map(|r| &r.irq),
                u.as_ref().map(|r| &r.irq),
                "{row:?}"
            );
        }
        assert_eq!(proc_row(" 11: 18446744073709551616 1 x", 2), None);
        assert_eq!(
            proc_row(" 14: 7 8 9 edge", 2).map(|r| (r.total, r.name)),
            Some((15, "edge".to_string()))
        );
    }

    #[test]
    fn lspci_lines() {
        assert_eq!(
            lspci_control(
                "\tControl: I/O+ Mem+ BusMaster+ SpecCycle- MemWINV- VGASnoop- ParErr- Stepping- SERR+ FastB2B- DisINTx+"
            ),
            Some(0x0507)
        );
        assert_eq!(
            lspci_status_intx(
                "\tStatus: Cap+ 66MHz- UDF- FastB2B- ParErr- DEVSEL=fast >TAbort- <TAbort- <MAbort- >SERR- <PERR- INTx+"
            ),
            Some(true)
        );
        assert_eq!(
            lspci_interrupt("\tInterrupt: pin A routed to IRQ 11"),
            Some((1, 11))
        );
        assert_eq!(
            lspci_msix("\tCapabilities: [98] MSI-X: Enable+ Count=3 Masked-"),
            Some((true, false, 3))
        );
        assert!(lspci_is_msi(
            "\tCapabilities: [50] MSI: Enable- Count=1/1 Maskable- 64bit+"
        ));
    }
}

/// `irq 11: nobody cared (try booting with the "irqpoll" option)`: the IRQ number.
pub fn nobody_cared_irq(line: &str) -> Option<u32> {
    let lower = line.to_ascii_lowercase();
    let at = lower.find("nobody cared")?;
    let head = &lower[..at];
    let i = head.rfind("irq ")?;
    let digits: String = head[i + 4..]
        .chars()
        .take_while(|c| c.is_ascii_digit())
        .collect();
    digits.parse().ok()
}

/// One line of a `handlers:` list: the handler as Linux named it. The shapes across versions:
/// `[<000000004b5a2c6e>] usb_hcd_irq` (hashed pointer, `%ps`), `[<ffffffffa0012345>]
/// vp_interrupt [virtio_pci]` (module symbol), `[<c0245f60>] (usb_hcd_irq+0x0/0x60)` (2.6's
/// `print_symbol`), `[<(____ptrval____)>] vp_interrupt` (a pointer hashed before the key was
/// ready), and a threaded handler's `... threaded [<...>] thread_fn`, named
/// `primary threaded thread_fn`.
pub fn handler_name(line: &str) -> Option<String> {
    let (name, rest) = handler_symbol(line.trim())?;
    match rest.trim_start().strip_prefix("threaded") {
        Some(thread) => {
            let (thread_fn, _) = handler_symbol(thread.trim_start())?;
            Some(format!("{name} threaded {thread_fn}"))
        }
        None => Some(name.to_string()),
    }
}

/// `[<pointer>] symbol` at the start of `s`: the symbol and what follows it (a `[module]` tag
/// is skipped).
fn handler_symbol(s: &str) -> Option<(&str, &str)> {
    let rest = s.strip_prefix("[<")?;
    let close = rest.find(">]")?;
    let pointer = rest[..close].trim();
    let hashed_early = pointer.contains("ptrval");
    if pointer.is_empty() || !(hashed_early || pointer.bytes().all(|b| b.is_ascii_hexdigit())) {
        return None;
    }
    let after = rest[close + 2..].trim_start();
    let end = after.find(char::is_whitespace).unwrap_or(after.len());
    let token = &after[..end];
    let mut tail = &after[end..];
    // 2.6: `(usb_hcd_irq+0x0/0x60)`.
    let name = token
        .strip_prefix('(')
        .map(|t| t.trim_end_matches(')'))
        .map(|t| t.split('+').next().unwrap_or(t))
        .unwrap_or(token);
    if name.is_empty()
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.')
    {
        return None;
    }
    let trimmed = tail.trim_start();
    if trimmed.starts_with('[') && !trimmed.starts_with("[<") {
        tail = trimmed.find(']').map_or("", |i| &trimmed[i + 1..]);
    }
    Some((name, tail))
}

// ---- /proc/interrupts: which device a row is about -------------------------------------------

/// A PCI address with its domain (`0000:00:04.0`) inside `s`, as written.
pub fn find_domain_bdf(s: &str) -> Option<&str> {
    let b = s.as_bytes();
    // Only where a ':' stands 4 bytes in: most text holds no ':' at all.
    memchr::memchr_iter(b':', b).find_map(|colon| {
        let i = colon.checked_sub(4)?;
        let alone = (i == 0 || !b[i - 1].is_ascii_hexdigit())
            && b.get(i + 12).is_none_or(|c| !c.is_ascii_alphanumeric());
        (alone && bdf_shaped(b.get(i..i + 12)?)).then(|| &s[i..i + 12])
    })
}

/// Whether 12 bytes are `dddd:bb:dd.f`.
fn bdf_shaped(w: &[u8]) -> bool {
    let hex = |r: std::ops::Range<usize>| w[r].iter().all(u8::is_ascii_hexdigit);
    w.len() == 12
        && w[4] == b':'
        && w[7] == b':'
        && w[10] == b'.'
        && hex(0..4)
        && hex(5..7)
        && hex(8..10)
        && (b'0'..=b'7').contains(&w[11])
}

/// `0000:00:04.0` -> `00:04.0` (the form `lspci` prints); other domains are kept.
pub fn short_bdf(bdf: &str) -> String {
    let lower = bdf.to_ascii_lowercase();
    match lower.strip_prefix("0000:") {
        Some(short) if short.len() == 7 => short.to_string(),
        _ => lower,
    }
}

/// A PCI function by number.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct PciFunction {
    /// PCI segment (domain).
    pub segment: u32,
    /// Bus number.
    pub bus: u8,
    /// Device number.
    pub dev: u8,
    /// Function number.
    pub func: u8,
}

impl PciFunction {
    /// `dddd:bb:dd.f`, as [`find_domain_bdf`] found it.
    fn parse(bdf: &str) -> Option<Self> {
        let hex = |s: &str| u32::from_str_radix(s, 16).ok();
        Some(PciFunction {
            segment: hex(bdf.get(0..4)?)?,
            bus: hex(bdf.get(5..7)?)? as u8,
            dev: hex(bdf.get(8..10)?)? as u8,
            func: hex(bdf.get(11..12)?)? as u8,
        })
    }

    /// As `lspci` prints it: `bb:dd.f`, with the domain when it is not 0.
    pub fn name(&self) -> String {
        if self.segment == 0 {
            format!("{:02x}:{:02x}.{}", self.bus, self.dev, self.func)
        } else {
            format!(
                "{:04x}:{:02x}:{:02x}.{}",
                self.segment, self.bus, self.dev, self.func
            )
        }
    }
}

/// The PCI function a `/proc/interrupts` row belongs to, read from its controller column.
/// Per-device MSI domains (Linux 6.2 on) name it: `PCI-MSIX-0000:00:04.0`,
/// `IR-PCI-MSIX-0000:00:04.0`, `ITS-PCI-MSIX-0000:00:04.0`. The shared PCI/MSI domains
/// (`PCI-MSI`, `IR-PCI-MSI`, arm64's `ITS-MSI`) print the hardware IRQ number, which
/// `pci_msi_domain_calc_hwirq` (drivers/pci/msi/irqdomain.c) builds as
/// `msi_index | pci_dev_id << 11 | domain << 27`, with `pci_dev_id = bus << 8 | devfn`:
/// `PCI-MSI 65536-edge` is function 00:04.0, message 0.
pub fn chip_function(chip: &str) -> Option<PciFunction> {
    let mut toks = words(chip);
    let domain = toks.next()?;
    // A per-device domain ends its name with the function: `...-MSIX-0000:00:04.0`.
    if let Some(tail) = domain.len().checked_sub(12).and_then(|i| domain.get(i..)) {
        if bdf_shaped(tail.as_bytes()) {
            return PciFunction::parse(tail);
        }
    }
    let shared_domain = domain.len() >= 7
        && domain.as_bytes()[domain.len() - 7..].eq_ignore_ascii_case(b"PCI-MSI")
        || domain.eq_ignore_ascii_case("ITS-MSI");
    if !shared_domain {
        return None;
    }
    let hw = toks.next()?;
    let digits = hw.split('-').next().unwrap_or(hw);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let hwirq: u64 = digits.parse().ok()?;
    let id = (hwirq >> 11) & 0xffff;
    Some(PciFunction {
        segment: (hwirq >> 27) as u32,
        bus: (id >> 8) as u8,
        dev: ((id >> 3) & 0x1f) as u8,
        func: (id & 7) as u8,
    })
}

/// [`chip_function`] as `lspci` prints the function.
pub fn chip_device(chip: &str) -> Option<String> {
    chip_function(chip).map(|f| f.name())
}

/// Whether a row lists a bare `virtioN` handler: virtio_pci's INTx handler, so the row's IRQ
/// is a virtio function's line.
pub fn has_line_handler(name: &str) -> bool {
    name.split(',').any(|part| {
        part.trim()
            .strip_prefix("virtio")
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
    })
}

/// The virtio devices whose handlers a row lists, once each: `virtio0-config` and
/// `virtio0-req.0` are virtio0's per-vector handlers, a bare `virtio1` its shared-line handler
/// (`uhci_hcd:usb1, virtio1`).
pub fn virtio_devices(name: &str) -> Vec<&str> {
    let mut out: Vec<&str> = Vec::new();
    for part in name.split(',') {
        let p = part.trim();
        let Some(rest) = p.strip_prefix("virtio") else {
            continue;
        };
        let n = rest.bytes().take_while(u8::is_ascii_digit).count();
        let ends = rest.len() == n || rest.as_bytes()[n] == b'-';
        if n > 0 && ends && !out.contains(&&p[..6 + n]) {
            out.push(&p[..6 + n]);
        }
    }
    out
}

/// Controllers that name a `/proc/interrupts` row without a trigger column.
const CONTROLLERS: [&str; 5] = ["PIC", "MSI", "GIC", "PLIC", "INTC"];

/// A row pasted without its `CPU0 CPU1 ...` header (`grep virtio /proc/interrupts`). The
/// per-CPU columns are read from the row itself: every count before the controller column,
/// whose name never starts with a digit. Accepted only in the full shape: a numeric IRQ, the
/// counts, a controller column with a trigger (`-edge`, `Level`) or a known controller name,
/// and the handler names.
pub fn headerless_proc_row(line: &str) -> Option<ProcRowRef<'_>> {
    let row = proc_row_ref(line, usize::MAX)?;
    if !row.irq.bytes().all(|b| b.is_ascii_digit())
        || row.chip_span.is_empty()
        || row.name_span.is_empty()
    {
        return None;
    }
    let known = words(row.chip_span).any(is_trigger_token)
        || CONTROLLERS.iter().any(|c| contains_ci(row.chip_span, c));
    known.then_some(row)
}

// ---- shells and kernel logs ------------------------------------------------------------------

/// How far into a line a shell prompt's `$` or `#` may be.
pub const PROMPT_SPAN: usize = 160;

/// A shell prompt and the command typed after it (`$ cat /proc/interrupts`,
/// `root@host:~# grep virtio /proc/interrupts`, `[root@host ~]# lspci -vvv`, `host:~ # dmesg`,
/// `sh-5.2$ dmesg`, busybox's `/ # cat /proc/interrupts`). What follows is that command's
/// output, not evidence of its own.
pub fn shell_prompt(line: &str) -> Option<&str> {
    let t = line.trim_start();
    let b = t.as_bytes();
    let i = b
        .iter()
        .take(PROMPT_SPAN)
        .position(|&c| c == b'$' || c == b'#')?;
    if b.get(i + 1).is_some_and(|&c| c != b' ' && c != b'\t') {
        return None;
    }
    let head = t[..i].trim_end();
    let single = !head.contains(char::is_whitespace);
    let shell_name = |h: &str| {
        ["bash-", "sh-", "zsh-"].iter().any(|p| {
            h.strip_prefix(p).is_some_and(|v| {
                !v.is_empty() && v.bytes().all(|c| c.is_ascii_digit() || c == b'.')
            })
        })
    };
    let ok = head.is_empty()
        || (head.starts_with('[') && head.ends_with(']') && head.contains('@'))
        || (single
            && (head.contains('@')
                || head.ends_with('~')
                || head.starts_with('/')
                || head.starts_with("~/")
                || head.contains(":/")
                || shell_name(head)));
    ok.then(|| t[i + 1..].trim())
}

/// The function an `lspci` command selects (`lspci -vvv -s 00:04.0`, `-s0000:00:04.0`), as
/// `lspci` prints it; `None` for any other command.
pub fn lspci_slot(command: &str) -> Option<String> {
    let mut toks = command
        .split_whitespace()
        .skip_while(|t| !t.ends_with("lspci"));
    toks.next()?;
    let mut toks = toks.take_while(|t| !matches!(*t, "|" | ";" | "&&" | "||"));
    while let Some(t) = toks.next() {
        let slot = match t.strip_prefix("-s") {
            Some("") => toks.next()?,
            Some(rest) => rest,
            None => continue,
        };
        let full = if slot.len() == 7 {
            format!("0000:{slot}")
        } else {
            slot.to_string()
        };
        return find_domain_bdf(&full)
            .filter(|b| b.len() == full.len())
            .map(short_bdf);
    }
    None
}

/// Where a new boot begins in a kernel log: the banner (`Linux version 6.1.0-18-amd64 ...`), or
/// journalctl's separator between boots (`-- Boot 0f3c... --`, older `-- Reboot --`).
pub fn boot_marker(body: &str) -> bool {
    let t = body.trim();
    if let Some(rest) = t.strip_prefix("Linux version ") {
        return rest.bytes().next().is_some_and(|b| b.is_ascii_digit());
    }
    (t.starts_with("-- Boot ") && t.ends_with(" --")) || t == "-- Reboot --"
}

/// Seconds with a fraction (`12.345678`) into nanoseconds.
fn stamp_ns(s: &str) -> Option<u64> {
    let (whole, frac) = s.split_once('.')?;
    if whole.is_empty() || !whole.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if frac.is_empty() || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut ns: u64 = 0;
    for (i, b) in frac.bytes().take(9).enumerate() {
        ns += u64::from(b - b'0') * 10u64.pow(8 - i as u32);
    }
    whole
        .parse::<u64>()
        .ok()?
        .checked_mul(1_000_000_000)?
        .checked_add(ns)
}

/// `dmesg -T`'s stamp body (`Mon Jan 15 10:00:01 2024`): nanoseconds since midnight.
fn human_stamp_ns(s: &str) -> Option<u64> {
    let mut it = s.split_whitespace();
    let (day, month, date, clock, year) =
        (it.next()?, it.next()?, it.next()?, it.next()?, it.next()?);
    let alpha3 = |w: &str| w.len() == 3 && w.bytes().all(|b| b.is_ascii_alphabetic());
    let digits = |w: &str, n: std::ops::RangeInclusive<usize>| {
        n.contains(&w.len()) && w.bytes().all(|b| b.is_ascii_digit())
    };
    if it.next().is_some()
        || !alpha3(day)
        || !alpha3(month)
        || !digits(date, 1..=2)
        || !digits(year, 4..=4)
    {
        return None;
    }
    let mut hms = clock.split(':');
    let (h, m, sec) = (hms.next()?, hms.next()?, hms.next()?);
    if hms.next().is_some() || !digits(h, 1..=2) || !digits(m, 2..=2) || !digits(sec, 2..=2) {
        return None;
    }
    let (h, m, sec): (u64, u64, u64) = (h.parse().ok()?, m.parse().ok()?, sec.parse().ok()?);
    (h < 24 && m < 60 && sec < 61).then_some(((h * 60 + m) * 60 + sec) * 1_000_000_000)
}

/// `dmesg -x`'s `kern  :err   : ` (facility and level, each padded to six).
fn facility_level(s: &str) -> Option<&str> {
    const FACILITIES: [&str; 9] = [
        "kern", "user", "mail", "daemon", "auth", "syslog", "lpr", "news", "local",
    ];
    let b = s.as_bytes();
    if b.len() < 15 || b[6] != b':' || &b[13..15] != b": " {
        return None;
    }
    let facility = s[..6].trim_end();
    FACILITIES
        .iter()
        .any(|f| facility.starts_with(f))
        .then(|| &s[15..])
}

/// The Linux log prefixes the shared prefix stripper leaves on a line: `dmesg -r`'s `<3>`,
/// `dmesg -x`'s `kern  :err   : `, a `[   12.345678]` stamp after either, `dmesg -T`'s
/// `[Mon Jan 15 10:00:01 2024]`, and journalctl `-o short-monotonic`'s `host kernel: ` after
/// the stamp. `after_stamp`: the shared stripper already took a stamp off this line. Returns the
/// text and the stamp's time (since boot, or since midnight for `-T`), or `None` when there
/// was nothing to strip.
pub fn strip_kernel_prefixes(body: &str, after_stamp: bool) -> Option<(&str, Option<u64>)> {
    let mut s = body;
    let mut time = None;
    let mut stripped = false;
    if let Some(r) = s.strip_prefix('<') {
        if let Some(end) = r.find('>') {
            if (1..=3).contains(&end) && r[..end].bytes().all(|b| b.is_ascii_digit()) {
                s = &r[end + 1..];
                stripped = true;
            }
        }
    }
    if let Some(rest) = facility_level(s) {
        s = rest;
        stripped = true;
    }
    if let Some(r) = s.strip_prefix('[') {
        if let Some(end) = r.find(']') {
            let inner = r[..end].trim();
            if let Some(ns) = stamp_ns(inner).or_else(|| human_stamp_ns(inner)) {
                time = Some(ns);
                s = r[end + 1..].strip_prefix(' ').unwrap_or(&r[end + 1..]);
                stripped = true;
            }
        }
    }
    if stripped || after_stamp {
        if let Some(i) = s.get(..80).unwrap_or(s).find(" kernel: ") {
            if !s[..i].contains(char::is_whitespace) && i > 0 {
                s = &s[i + " kernel: ".len()..];
                stripped = true;
            }
        }
    }
    stripped.then_some((s, time))
}

/// `virtio-pci 0000:00:04.0: text`: a kernel message about a PCI function (`dev_printk` names
/// the bound driver, `pci` before one binds; a module's own `pr_*` says `virtio_pci`). Returns
/// (driver, function as `lspci` prints it, text).
pub fn pci_dev_prefix(body: &str) -> Option<(&str, String, &str)> {
    let b = body.as_bytes();
    // The driver name: up to 32 name bytes, a space, then the address's first hex digit.
    let space = b
        .iter()
        .take(33)
        .position(|&c| !(c.is_ascii_alphanumeric() || c == b'_' || c == b'-'))?;
    if space == 0 || b[space] != b' ' || !b.get(space + 1)?.is_ascii_hexdigit() {
        return None;
    }
    let (driver, rest) = (&body[..space], &body[space + 1..]);
    let (addr, text) = rest.split_once(": ")?;
    let bdf = if addr.len() == 12 {
        find_domain_bdf(addr)?
    } else {
        let ok = addr.len() == 7 && find_domain_bdf(&format!("0000:{addr}")).is_some();
        if !ok {
            return None;
        }
        addr
    };
    Some((driver, short_bdf(bdf), text))
}

/// Whether a kernel message speaks of the function's interrupts: vectors, MSI(-X), its IRQ,
/// a fallback to the legacy driver, a failure.
pub fn about_interrupts(text: &str) -> bool {
    const WORDS: [&str; 8] = [
        "irq",
        "msi",
        "intx",
        "interrupt",
        "vector",
        "legacy",
        "fail",
        "error",
    ];
    WORDS.iter().any(|w| contains_ci(text, w))
}

/// Whether a driver name printed before a PCI address is virtio's PCI transport.
pub fn is_virtio_pci_driver(driver: &str) -> bool {
    driver.eq_ignore_ascii_case("virtio-pci") || driver.eq_ignore_ascii_case("virtio_pci")
}

/// `pci 0000:00:04.0: [1af4:1042] type 00 class 0x010000`: the PCI core found a virtio function.
pub fn enumerated_virtio(text: &str) -> bool {
    text.strip_prefix("[1af4:")
        .and_then(|r| r.get(..4))
        .and_then(|id| u16::from_str_radix(id, 16).ok())
        .is_some_and(is_virtio_device_id)
}

/// The INTx route the kernel printed when it enabled a function. After a `driver bdf:`
/// prefix: `PCI INT A -> GSI 11 (level, high) -> IRQ 11` (older kernels add `Link[LNKD] ->`);
/// 2.6-era ACPI: `ACPI: PCI Interrupt 0000:00:04.0[A] -> Link [LNKD] -> GSI 11 (level, high)
/// -> IRQ 11`. Returns the function when the text names it, the pin (1 = INTA#) and the IRQ.
pub fn pci_int_route(text: &str) -> Option<(Option<String>, u8, u32)> {
    let (bdf, pin) = if let Some(r) = text.strip_prefix("PCI INT ") {
        (None, r.bytes().next()?)
    } else {
        let r = text.strip_prefix("ACPI: PCI Interrupt ")?;
        let open = r.find('[')?;
        let addr = &r[..open];
        let bdf = find_domain_bdf(addr).filter(|b| b.len() == addr.len())?;
        (Some(short_bdf(bdf)), r.as_bytes().get(open + 1).copied()?)
    };
    if !(b'A'..=b'D').contains(&pin) {
        return None;
    }
    let at = text.rfind("-> IRQ ")?;
    let irq = text[at + 7..]
        .split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()?;
    Some((bdf, pin - b'A' + 1, irq))
}

#[cfg(test)]
mod nobody_tests {
    use super::*;

    #[test]
    fn nobody_cared_and_handler_lines() {
        assert_eq!(
            nobody_cared_irq("irq 11: nobody cared (try booting with the \"irqpoll\" option)"),
            Some(11)
        );
        assert_eq!(nobody_cared_irq("irq 11: handled"), None);
        let name = |l: &str| handler_name(l);
        assert_eq!(
            name("[<000000004b5a2c6e>] usb_hcd_irq").as_deref(),
            Some("usb_hcd_irq")
        );
        assert_eq!(
            name("[<ffffffffa0012345>] vp_interrupt [virtio_pci]").as_deref(),
            Some("vp_interrupt")
        );
        assert_eq!(
            name("[<c0245f60>] (usb_hcd_irq+0x0/0x60)").as_deref(),
            Some("usb_hcd_irq")
        );
        assert_eq!(
            name("[<(____ptrval____)>] vp_interrupt").as_deref(),
            Some("vp_interrupt")
        );
        assert_eq!(
            name("[<00000000a1b2c3d4>] irq_default_primary_handler threaded [<00000000e5f6a7b8>] foo_thread_fn [foo]")
                .as_deref(),
            Some("irq_default_primary_handler threaded foo_thread_fn")
        );
        assert_eq!(name("[<zz>] x"), None);
        assert_eq!(name("[<>] x"), None);
        assert_eq!(name("handlers:"), None);
    }
}

#[cfg(test)]
mod shape_tests {
    use super::*;

    #[test]
    fn controller_columns_name_the_function() {
        // pci_dev_id = bus << 8 | devfn; 00:04.0 has devfn 0x20, so 0x20 << 11 = 65536.
        assert_eq!(
            chip_device("PCI-MSI 65536-edge").as_deref(),
            Some("00:04.0")
        );
        assert_eq!(
            chip_device("PCI-MSI 65537-edge").as_deref(),
            Some("00:04.0")
        );
        assert_eq!(
            chip_device("PCI-MSI 81922-edge").as_deref(),
            Some("00:05.0")
        );
        // 0x7D000 >> 11 = 0xFA: device 31, function 2.
        assert_eq!(
            chip_device("IR-PCI-MSI 512000-edge").as_deref(),
            Some("00:1f.2")
        );
        // Bus 1, devfn 0: 0x100 << 11.
        assert_eq!(
            chip_device("ITS-MSI 524288 Edge").as_deref(),
            Some("01:00.0")
        );
        assert_eq!(
            chip_device("ITS-MSI 16384 Edge").as_deref(),
            Some("00:01.0")
        );
        // Domain 1 sits above bit 27.
        assert_eq!(
            chip_device(&format!("PCI-MSI {}-edge", (1u64 << 27) | (0x20 << 11))).as_deref(),
            Some("0001:00:04.0")
        );
        assert_eq!(
            chip_device("PCI-MSIX-0000:00:04.0 0-edge").as_deref(),
            Some("00:04.0")
        );
        assert_eq!(
            chip_device("IR-PCI-MSIX-0000:00:05.0 2-edge").as_deref(),
            Some("00:05.0")
        );
        assert_eq!(
            chip_device("ITS-PCI-MSIX-0002:01:00.0 1 Edge").as_deref(),
            Some("0002:01:00.0")
        );
        for wire in [
            "IO-APIC 11-fasteoi",
            "GICv3 37 Level",
            "SiFive PLIC 33 Level",
            "PCI-MSI-edge",
        ] {
            assert_eq!(chip_device(wire), None, "{wire}");
        }
        assert_eq!(chip_device("DMAR-MSI 0-edge"), None);
    }

    #[test]
    fn rows_keep_their_controller_column() {
        let r = proc_row(
            " 35:     100000          0     GICv3  37 Level     virtio1",
            2,
        )
        .unwrap();
        assert_eq!(
            (r.chip.as_deref(), r.name.as_str()),
            (Some("GICv3 37 Level"), "virtio1")
        );
        let r = proc_row(" 1:  0  0  SiFive PLIC  33 Level     virtio0", 2).unwrap();
        assert_eq!(r.chip.as_deref(), Some("SiFive PLIC 33 Level"));
        // No trigger column (a PLIC without GENERIC_IRQ_SHOW_LEVEL): the name is the last token.
        let r = proc_row(" 1:  7  0  SiFive PLIC  33  virtio0", 2).unwrap();
        assert_eq!(
            (r.chip.as_deref(), r.name.as_str()),
            (Some("SiFive PLIC 33"), "virtio0")
        );
        assert_eq!(proc_row("ERR:          0", 2).unwrap().chip, None);
    }

    #[test]
    fn virtio_devices_of_a_row() {
        assert_eq!(virtio_devices("virtio0-config"), ["virtio0"]);
        assert_eq!(virtio_devices("virtio12-input.0"), ["virtio12"]);
        assert_eq!(virtio_devices("uhci_hcd:usb1, virtio0"), ["virtio0"]);
        assert_eq!(
            virtio_devices("virtio0, virtio1, virtio0"),
            ["virtio0", "virtio1"]
        );
        assert!(virtio_devices("virtiofs").is_empty());
        assert!(virtio_devices("eth0").is_empty());
    }

    #[test]
    fn rows_without_a_header_are_read_from_their_shape() {
        let r = headerless_proc_row(
            " 25:       2113        118   PCI-MSI 65537-edge      virtio0-req.0",
        )
        .unwrap();
        assert_eq!((r.irq, r.total), ("25", 2231));
        let r =
            headerless_proc_row(" 36:  9  8  7  6  5  4  3  2   GICv3  36 Level  virtio0").unwrap();
        assert_eq!(r.total, 44);
        assert_eq!(r.chip().as_deref(), Some("GICv3 36 Level"));
        // What is not a row: a prompt, dmesg text, a DbgView print, a hex dump.
        for line in [
            "root@guest:~# grep virtio /proc/interrupts",
            "virtio_blk virtio0: [vda] 2097152 512-byte logical blocks",
            "VIRTIO: queue=0 queue_msix_vector write=0x0001 read=0x0001",
            "10: 01 c0 00 00 00 00 00 00 virtio",
            "12: 5 virtio",
        ] {
            assert!(headerless_proc_row(line).is_none(), "{line}");
        }
    }

    #[test]
    fn shell_prompts() {
        for (line, cmd) in [
            ("$ cat /proc/interrupts", "cat /proc/interrupts"),
            (
                "root@host:~# grep virtio /proc/interrupts",
                "grep virtio /proc/interrupts",
            ),
            (
                "user@vm:/tmp$ dmesg | grep -i virtio",
                "dmesg | grep -i virtio",
            ),
            ("[root@rhel9 ~]# lspci -vvv", "lspci -vvv"),
            ("host:~ # dmesg", "dmesg"),
            ("sh-5.2$ dmesg", "dmesg"),
            ("/ # cat /proc/interrupts", "cat /proc/interrupts"),
            ("# ", ""),
        ] {
            assert_eq!(shell_prompt(line), Some(cmd), "{line}");
        }
        for line in [
            "Disabling IRQ #11",
            "viostor: Queue #1 enabled",
            "storport: srb $1 done",
            "foo # bar",
            "[Strings] $ARCH$",
        ] {
            assert_eq!(shell_prompt(line), None, "{line}");
        }
        assert_eq!(
            lspci_slot("sudo lspci -vvv -s 00:04.0 | grep MSI-X").as_deref(),
            Some("00:04.0")
        );
        assert_eq!(
            lspci_slot("lspci -s0000:00:05.0 -vv").as_deref(),
            Some("00:05.0")
        );
        assert_eq!(lspci_slot("lspci -vvv | grep -s x"), None);
        assert_eq!(lspci_slot("dmesg -s 00:04.0"), None);
    }

    #[test]
    fn kernel_log_heads() {
        assert!(boot_marker(
            "Linux version 6.1.0-18-amd64 (debian-kernel@lists.debian.org) #1 SMP"
        ));
        assert!(boot_marker("-- Boot 0f3c9a8e52b34f8c8a1d6e4b2c7f9a10 --"));
        assert!(boot_marker("-- Reboot --"));
        assert!(!boot_marker("Linux version: unknown"));
        assert!(!boot_marker(
            "-- Journal begins at Mon 2024-03-11 08:02:11 UTC. --"
        ));

        let strip = strip_kernel_prefixes;
        assert_eq!(
            strip("[Tue Mar 12 09:21:47 2024] handlers:", false),
            Some(("handlers:", Some((9 * 3600 + 21 * 60 + 47) * 1_000_000_000)))
        );
        assert_eq!(
            strip("<4>[   31.882410] irq 11: nobody cared", false),
            Some(("irq 11: nobody cared", Some(31_882_410_000)))
        );
        assert_eq!(
            strip("<6>virtio-pci 0000:00:03.0: x", false),
            Some(("virtio-pci 0000:00:03.0: x", None))
        );
        assert_eq!(
            strip("kern  :err   : [   31.882410] Disabling IRQ #11", false),
            Some(("Disabling IRQ #11", Some(31_882_410_000)))
        );
        assert_eq!(
            strip("guest kernel: handlers:", true),
            Some(("handlers:", None))
        );
        assert_eq!(strip("[0x1] not a stamp", false), None);
        assert_eq!(strip("Loaded kernel: modules", false), None);
    }

    #[test]
    fn kernel_messages_about_pci_functions() {
        assert_eq!(
            pci_dev_prefix("virtio-pci 0000:00:04.0: irq 24 for MSI/MSI-X"),
            Some(("virtio-pci", "00:04.0".to_string(), "irq 24 for MSI/MSI-X"))
        );
        assert_eq!(
            pci_dev_prefix("pci 0000:00:04.0: [1af4:1042] type 00 class 0x010000").map(|p| p.1),
            Some("00:04.0".to_string())
        );
        assert_eq!(pci_dev_prefix("e1000 0000:00:03.0 eth0: link up"), None);
        assert_eq!(pci_dev_prefix("virtio_blk virtio0: [vda] 1 blocks"), None);
        assert!(enumerated_virtio("[1af4:1042] type 00 class 0x010000"));
        assert!(enumerated_virtio("[1af4:1000] type 00 class 0x020000"));
        assert!(!enumerated_virtio("[1af4:1100] type 00 class 0x000000"));
        assert!(!enumerated_virtio("[8086:100e] type 00 class 0x020000"));
        assert_eq!(
            pci_int_route("PCI INT A -> Link[LNKC] -> GSI 11 (level, high) -> IRQ 11"),
            Some((None, 1, 11))
        );
        assert_eq!(
            pci_int_route("PCI INT B -> GSI 17 (level, low) -> IRQ 17"),
            Some((None, 2, 17))
        );
        assert_eq!(
            pci_int_route(
                "ACPI: PCI Interrupt 0000:00:04.0[A] -> Link [LNKD] -> GSI 10 (level, high) -> IRQ 10"
            ),
            Some((Some("00:04.0".to_string()), 1, 10))
        );
        assert_eq!(pci_int_route("PCI INT A: no GSI"), None);
        assert!(about_interrupts("virtio_pci: leaving for legacy driver"));
        assert!(!about_interrupts("enabling device (0000 -> 0003)"));
    }

    #[test]
    fn lspci_variants() {
        assert_eq!(
            lspci_flags_irq("\tFlags: bus master, fast devsel, latency 0, IRQ 11"),
            Some(11)
        );
        assert_eq!(
            lspci_flags_irq(
                "\tFlags: bus master, fast devsel, latency 0, IRQ 24, NUMA node 0, IOMMU group 5"
            ),
            Some(24)
        );
        assert_eq!(lspci_flags_irq("\tFlags: fast devsel"), None);
        assert_eq!(lspci_interrupt("\tInterrupt: pin ? routed to IRQ 24"), None);
        assert_eq!(
            lspci_driver_is_virtio("\tKernel driver in use: virtio-pci"),
            Some(true)
        );
        assert_eq!(
            lspci_driver_is_virtio("\tKernel modules: e1000"),
            Some(false)
        );
        assert!(lspci_virtio_cap(
            "\tCapabilities: [84] Vendor Specific Information: VirtIO: <unknown>"
        ));
        assert!(lspci_msi_enabled(
            "\tCapabilities: [50] MSI: Enable+ Count=1/1 Maskable- 64bit+"
        ));
        assert!(!lspci_msi_enabled(
            "\tCapabilities: [50] MSI: Enable- Count=1/1 Maskable- 64bit+"
        ));
        for header in [
            "SCSI storage controller: Red Hat, Inc. Virtio block device",
            "SCSI storage controller [0100]: Red Hat, Inc. Device [1af4:1042] (rev 01)",
            "SCSI storage controller: Red Hat, Inc. Device 1042 (rev 01)",
            "Ethernet controller: Qumranet, Inc. Device 1000",
        ] {
            assert!(lspci_header_is_virtio(header), "{header}");
        }
        for header in [
            "Ethernet controller: Intel Corporation 82540EM Gigabit Ethernet Controller (rev 03)",
            "Unclassified device: Red Hat, Inc. Device 1100",
        ] {
            assert!(!lspci_header_is_virtio(header), "{header}");
        }
    }
}
