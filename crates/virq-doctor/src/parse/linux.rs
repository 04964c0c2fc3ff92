//! Matchers for Linux evidence: `/proc/interrupts` rows, `lspci -vvv` lines, kernel log lines.

use crate::text::{contains_ci, parse_num};

/// One `/proc/interrupts` row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcRow {
    pub irq: String,
    pub total: u64,
    /// The action names (`virtio0-config`, `uhci_hcd:usb1, virtio0`).
    pub name: String,
}

fn is_trigger_token(t: &str) -> bool {
    let t = t.to_ascii_lowercase();
    t.ends_with("-edge")
        || t.ends_with("-fasteoi")
        || t.ends_with("-level")
        || matches!(t.as_str(), "edge" | "fasteoi" | "level")
}

/// A row like ` 24:   1234   0   PCI-MSI 49152-edge   virtio0-config` under a header of `cpus`
/// columns. Rows of per-CPU system counters (`LOC:`, `NMI:`) parse too; the caller filters.
pub fn proc_row(line: &str, cpus: usize) -> Option<ProcRow> {
    let t = line.trim_start();
    let colon = t.find(':')?;
    let irq = &t[..colon];
    if irq.is_empty() || irq.contains(char::is_whitespace) {
        return None;
    }
    let toks: Vec<&str> = t[colon + 1..].split_whitespace().collect();
    let counts: Vec<u64> = toks
        .iter()
        .take(cpus)
        .map_while(|s| {
            if s.bytes().all(|b| b.is_ascii_digit()) {
                s.parse().ok()
            } else {
                None
            }
        })
        .collect();
    if counts.is_empty() {
        return None;
    }
    let rest = &toks[counts.len()..];
    let name = match rest.iter().rposition(|t| is_trigger_token(t)) {
        Some(i) if i + 1 < rest.len() => rest[i + 1..].join(" "),
        _ => rest.last().map(|s| s.to_string()).unwrap_or_default(),
    };
    Some(ProcRow {
        irq: irq.to_string(),
        total: counts.iter().fold(0u64, |a, &c| a.saturating_add(c)),
        name,
    })
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
