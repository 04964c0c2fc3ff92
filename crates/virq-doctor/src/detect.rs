//! Format detection. Users hand the doctor whatever they have, often renamed `log.txt`, so the
//! format is read from the content, never from the name or a flag. Each line votes for the
//! format its shape belongs to; the file's format is the one with most votes.

use crate::text::{Prefix, contains_ci, find_word_ci, strip_prefixes};
use serde::{Deserialize, Serialize};

/// The kinds of evidence file the doctor reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    /// DbgPrint output as saved or pasted from DbgView (bare, or with its sequence and time
    /// columns, tab- or space-separated), or a decoded WPP trace.
    DbgView,
    /// WinDbg command output: `!pci`, `!devnode`/`!cmreslist`, `!idt`.
    WinDbg,
    /// Linux `/proc/interrupts` (one or more snapshots).
    ProcInterrupts,
    /// Linux `lspci` (`-v`, `-vv`, `-vvv`, `-nn`, `-k`, `grep -A` slices).
    Lspci,
    /// Linux kernel log (`dmesg`, `journalctl -k`, syslog).
    KernelLog,
    /// virq's own evidence as JSON lines (`virq check --events`, a real-guest run): a run
    /// handed to the doctor directly, with nothing lost to text.
    Events,
    /// A driver's INF: what it asks Windows for (MSI keys, and where they sit).
    Inf,
}

impl Format {
    /// Human name used in reports.
    pub fn label(self) -> &'static str {
        match self {
            Format::DbgView => "DbgView capture",
            Format::WinDbg => "WinDbg output",
            Format::ProcInterrupts => "/proc/interrupts",
            Format::Lspci => "lspci",
            Format::KernelLog => "kernel log",
            Format::Events => "virq events (JSON lines)",
            Format::Inf => "driver INF",
        }
    }

    const ALL: [Format; 7] = [
        Format::DbgView,
        Format::WinDbg,
        Format::ProcInterrupts,
        Format::Lspci,
        Format::KernelLog,
        Format::Events,
        Format::Inf,
    ];

    fn index(self) -> usize {
        self as usize
    }

    /// Detects the format of a whole text (convenience for small inputs and tests).
    pub fn detect(text: &str) -> Option<Format> {
        let mut votes = Votes::default();
        for line in text.lines() {
            votes.add(line);
        }
        votes.winner()
    }
}

/// Whether a line is the `/proc/interrupts` header: only `CPUn` tokens.
pub fn cpu_header_columns(line: &str) -> Option<usize> {
    // Every line is asked: most are turned away by their first word.
    if !crate::text::trim_start(line).starts_with("CPU") {
        return None;
    }
    let mut n = 0;
    for tok in crate::text::words(line) {
        let digits = tok.strip_prefix("CPU")?;
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        n += 1;
    }
    (n > 0).then_some(n)
}

/// A PCI address at the start of a line (`00:04.0`, `0000:00:04.0`) and the rest of the line.
pub fn leading_bdf(line: &str) -> Option<(&str, &str)> {
    // The first colon ends a two-digit bus or a four-character domain: most lines of any
    // log are turned away here.
    let b = line.as_bytes();
    if b.get(2) != Some(&b':') && b.get(4) != Some(&b':') {
        return None;
    }
    let end = line.find(' ').unwrap_or(line.len());
    let addr = &line[..end];
    let mut parts = addr.split(':');
    let (bus, devfn) = match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(bus), Some(devfn), None, _) => (bus, devfn),
        (Some(domain), Some(bus), Some(devfn), None) if domain.len() == 4 => (bus, devfn),
        _ => return None,
    };
    let (dev, func) = devfn.split_once('.')?;
    let hex = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_hexdigit());
    if hex(bus, 2) && hex(dev, 2) && func.len() == 1 && func.as_bytes()[0].is_ascii_digit() {
        Some((addr, line[end..].trim_start()))
    } else {
        None
    }
}

/// The format a single line's shape suggests, if any.
pub fn classify_line(raw: &str) -> Option<Format> {
    let (body, prefix) = strip_prefixes(raw);
    classify_stripped(raw, body, &prefix)
}

/// [`classify_line`] for a line whose prefixes were already stripped.
pub fn classify_stripped(raw: &str, body: &str, prefix: &Prefix) -> Option<Format> {
    classify_gated(raw, body, prefix, true)
}

/// [`classify_stripped`] that skips the keyword searches when `keywords` is false (the caller
/// knows from [`crate::gate::hits`] that none of them occurs).
pub fn classify_gated(raw: &str, body: &str, prefix: &Prefix, keywords: bool) -> Option<Format> {
    if prefix.dbgview_columns || prefix.pid.is_some() || prefix.wpp {
        return Some(Format::DbgView);
    }
    if prefix.kernel_log {
        return Some(Format::KernelLog);
    }
    if cpu_header_columns(raw).is_some() {
        return Some(Format::ProcInterrupts);
    }
    // lspci's indented lines before the checklist markers: `lspci -v` prints virtio's own
    // capabilities as `Capabilities: [84] Vendor Specific Information: VirtIO: CommonCfg`,
    // whose `VirtIO:` is not a checklist print.
    let trimmed = crate::text::trim_start(raw);
    if raw.starts_with('\t') {
        for key in [
            "Capabilities: [",
            "Control: ",
            "Status: ",
            "Flags: ",
            "Interrupt: pin ",
            "Kernel driver in use:",
            "Kernel modules:",
        ] {
            if trimmed.starts_with(key) {
                return Some(Format::Lspci);
            }
        }
    }
    if keywords {
        for marker in ["WDFINT:", "INT:", "VIRTIO:", "COUNTERS:", "ISR:"] {
            if find_word_ci(body, marker).is_some() {
                return Some(Format::DbgView);
            }
        }
    }
    if leading_bdf(raw).is_some_and(|(_, rest)| rest.contains(": ")) {
        return Some(Format::Lspci);
    }
    if !keywords {
        return None;
    }
    // A `dt` field: `   +0x004 List             : [1] _CM_FULL_RESOURCE_DESCRIPTOR`.
    if trimmed.starts_with("+0x") && trimmed.contains(" : ") {
        return Some(Format::WinDbg);
    }
    for phrase in [
        "nobody cared",
        "Disabling IRQ #",
        "virtio_pci",
        "virtio-pci ",
        "virtio_blk",
        "virtio_net",
    ] {
        if body.contains(phrase) {
            return Some(Format::KernelLog);
        }
    }
    for marker in [
        "kd>",
        "CapID",
        "Cmd[",
        "ResourceList",
        "KINTERRUPT",
        "DevNode",
        "PCI Configuration Space",
        "VendorID",
        "Device Private",
        "Dumping IDT",
        "Irp is active",
        "FDO Ext",
        "devext",
    ] {
        if contains_ci(trimmed, marker) {
            return Some(Format::WinDbg);
        }
    }
    None
}

/// Running vote count; feed every line, ask for the winner at the end.
#[derive(Debug, Default, Clone)]
pub struct Votes {
    counts: [u64; Format::ALL.len()],
}

impl Votes {
    /// Vote for the format `raw` looks like, if any.
    pub fn add(&mut self, raw: &str) {
        if let Some(f) = classify_line(raw) {
            self.vote(f);
        }
    }

    /// [`Votes::add`] for a line whose prefixes were already stripped.
    pub fn add_stripped(&mut self, raw: &str, body: &str, prefix: &Prefix) {
        self.add_gated(raw, body, prefix, true);
    }

    /// [`Votes::add_stripped`] skipping the keyword searches when `keywords` is false.
    pub fn add_gated(&mut self, raw: &str, body: &str, prefix: &Prefix, keywords: bool) {
        if let Some(f) = classify_gated(raw, body, prefix, keywords) {
            self.vote(f);
        }
    }

    /// One vote for `f`.
    pub fn vote(&mut self, f: Format) {
        self.counts[f.index()] += 1;
    }

    /// The format with most votes (ties go to the earlier variant), or `None` with no votes.
    pub fn winner(&self) -> Option<Format> {
        let mut best: Option<Format> = None;
        for f in Format::ALL {
            let c = self.counts[f.index()];
            if c > 0 && best.is_none_or(|b| c > self.counts[b.index()]) {
                best = Some(f);
            }
        }
        best
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_each_format_from_a_few_lines() {
        assert_eq!(
            Format::detect("1\t0.0\tINT: INTx Level=11 Vector=11 Affinity=0x1 Flags=0x0\r\n"),
            Some(Format::DbgView)
        );
        assert_eq!(
            Format::detect("0: kd> !pci 100 0 4 0\n    98: CapID 11 MSI-X Capability\n"),
            Some(Format::WinDbg)
        );
        assert_eq!(
            Format::detect(
                "           CPU0       CPU1\n 24:  1  2  PCI-MSI 49152-edge virtio0-config\n"
            ),
            Some(Format::ProcInterrupts)
        );
        assert_eq!(
            Format::detect(
                "00:04.0 SCSI storage controller: Red Hat, Inc. Virtio block device\n\tControl: I/O+ Mem+ DisINTx+\n"
            ),
            Some(Format::Lspci)
        );
        assert_eq!(
            Format::detect(
                "[    1.000000] virtio_blk virtio0: [vda] 2097152 512-byte logical blocks\n"
            ),
            Some(Format::KernelLog)
        );
        assert_eq!(Format::detect("hello\nworld\n"), None);
    }

    #[test]
    fn bdf_shapes() {
        assert_eq!(leading_bdf("00:04.0 SCSI"), Some(("00:04.0", "SCSI")));
        assert_eq!(
            leading_bdf("0000:00:1f.3 Audio"),
            Some(("0000:00:1f.3", "Audio"))
        );
        assert_eq!(leading_bdf("12:01:02.345 text"), None);
        assert_eq!(leading_bdf("ab:cd"), None);
    }
}
