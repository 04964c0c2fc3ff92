//! Matchers for Linux evidence: `/proc/interrupts` rows, `lspci -vvv` lines, kernel log lines.

use crate::text::{contains_ci, is_ascii_space, parse_num, words};

/// One `/proc/interrupts` row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcRow {
    pub irq: String,
    pub total: u64,
    /// The action names (`virtio0-config`, `uhci_hcd:usb1, virtio0`).
    pub name: String,
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
    pub irq: &'a str,
    pub total: u64,
    /// The name's tokens as they stand in the line (separated by any whitespace).
    name_span: &'a str,
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

    /// The owned row.
    pub fn to_row(&self) -> ProcRow {
        ProcRow {
            irq: self.irq.to_string(),
            total: self.total,
            name: self.name(),
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
    let t = line.trim_start();
    let colon = t.find(':')?;
    let irq = &t[..colon];
    if irq.is_empty() || irq.contains(char::is_whitespace) {
        return None;
    }
    let after = &t[colon + 1..];
    // Byte offset of a token (a subslice of `after`) within `after`.
    let at = |tok: &str| tok.as_ptr() as usize - after.as_ptr() as usize;
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
            end = at(tok) + tok.len();
        }
        (counts, total, end)
    };
    if counts == 0 {
        return None;
    }
    let toks = words(&after[end..]);
    // The name: the tokens after the last trigger token (`49152-edge`, `IO-APIC-fasteoi`), or
    // the last token when no trigger is followed by one.
    let mut after_trigger: Option<usize> = None;
    let mut seen_trigger = false;
    let mut last: Option<&str> = None;
    for tok in toks {
        if is_trigger_token(tok) {
            seen_trigger = true;
            after_trigger = None;
        } else if seen_trigger && after_trigger.is_none() {
            after_trigger = Some(at(tok));
        }
        last = Some(tok);
    }
    let name_span = match (after_trigger, last) {
        (Some(start), Some(last)) => &after[start..at(last) + last.len()],
        (None, Some(last)) => last,
        (_, None) => "",
    };
    Some(ProcRowRef {
        irq,
        total,
        name_span,
    })
}

/// The leading per-CPU counts of an ASCII row (at most `cpus`): how many, their saturating
/// sum, and the byte offset just past the last one. A count is a token of decimal digits that
/// fits a `u64` (what `str::parse::<u64>` accepts of an all-digit token); the first token that
/// is not one ends the counts. One pass over the bytes, no tokenizer.
fn ascii_counts(b: &[u8], cpus: usize) -> (usize, u64, usize) {
    let (mut i, mut counts, mut total, mut end) = (0usize, 0usize, 0u64, 0usize);
    while counts < cpus {
        while i < b.len() && is_ascii_space(b[i]) {
            i += 1;
        }
        if i == b.len() {
            break;
        }
        let mut value = Some(0u64);
        while i < b.len() && !is_ascii_space(b[i]) {
            let digit = b[i].wrapping_sub(b'0');
            value = value.and_then(|v| {
                if digit < 10 {
                    v.checked_mul(10)?.checked_add(u64::from(digit))
                } else {
                    None
                }
            });
            i += 1;
        }
        let Some(v) = value else { break };
        total = total.saturating_add(v);
        counts += 1;
        end = i;
    }
    (counts, total, end)
}

/// Whether an `lspci` device header names a virtio function (vendor 1af4 or "Virtio").
pub fn lspci_header_is_virtio(rest: &str) -> bool {
    contains_ci(rest, "virtio") || contains_ci(rest, "1af4:")
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_rows_modern_and_old_kernels() {
        assert_eq!(
            proc_row(" 24:   1234   10   PCI-MSI 49152-edge   virtio0-config", 2),
            Some(ProcRow {
                irq: "24".into(),
                total: 1244,
                name: "virtio0-config".into()
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

/// One line of a `handlers:` list: `[<000000004b5a2c6e>] usb_hcd_irq` (older kernels add
/// ` [module]`): the function name.
pub fn handler_name(line: &str) -> Option<&str> {
    let rest = line.trim().strip_prefix("[<")?;
    let close = rest.find(">]")?;
    if !rest[..close].bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let name = rest[close + 2..].split_whitespace().next()?;
    (!name.is_empty()).then_some(name)
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
        assert_eq!(
            handler_name("[<000000004b5a2c6e>] usb_hcd_irq"),
            Some("usb_hcd_irq")
        );
        assert_eq!(
            handler_name("[<ffffffffa0012345>] vp_interrupt [virtio_pci]"),
            Some("vp_interrupt")
        );
        assert_eq!(handler_name("[<zz>] x"), None);
        assert_eq!(handler_name("handlers:"), None);
    }
}
