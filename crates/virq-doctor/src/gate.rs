//! One pass over a line that finds every keyword any matcher looks for (ASCII case-insensitive,
//! overlapping), as a bit set. The parser consults it to skip matchers that cannot match, so a
//! line of unrelated chatter costs one scan instead of dozens of substring searches.

use aho_corasick::automaton::Automaton;
use aho_corasick::dfa::DFA;
use aho_corasick::{Anchored, MatchKind};
use std::sync::OnceLock;

/// The keywords, lower case; bit `i` of [`hits`] is set when `PATTERNS[i]` occurs.
pub const PATTERNS: [&str; 58] = [
    "wdfint:",                 // 0
    "int:",                    // 1
    "virtio:",                 // 2
    "counters:",               // 3
    "isr:",                    // 4
    "configuration space",     // 5
    "msi-x",                   // 6
    "msix",                    // 7
    "cmd[",                    // 8
    "command",                 // 9
    "sts[",                    // 10
    "status",                  // 11
    "resource",                // 12
    "cmreslist",               // 13
    "entry",                   // 14
    "interrupt (",             // 15
    "read",                    // 16
    "vector",                  // 17
    "msi",                     // 18
    "interrupt",               // 19
    "isr",                     // 20
    "dpc",                     // 21
    "irq",                     // 22
    "virtio",                  // 23
    "nobody cared",            // 24
    "messagecount",            // 25
    "intx",                    // 26
    "kd>",                     // 27
    "disabling irq #",         // 28
    "virtio_pci",              // 29
    "virtio-pci ",             // 30
    "virtio_blk",              // 31
    "virtio_net",              // 32
    "capid",                   // 33
    "resourcelist",            // 34
    "kinterrupt",              // 35
    "devnode",                 // 36
    "pci configuration space", // 37
    "vendorid",                // 38
    "io:",                     // 39
    "bugcheck:",               // 40
    "messageid",               // 41
    "messagecontrol.",         // 42
    "pci bus",                 // 43
    "pci segment",             // 44
    "device private",          // 45
    "dumping idt",             // 46
    "msix_vectors",            // 47
    "was not serviced",        // 48
    "interrupt on removed",    // 49
    "msix message",            // 50
    "msix interrupts (",       // 51
    "not using msix",          // 52
    "+0x",                     // 53
    "irp is active",           // 54
    "fdo ext",                 // 55
    "devext",                  // 56
    "read/write mismatch",     // 57
];

const fn mask(bits: &[u32]) -> u64 {
    let mut m = 0u64;
    let mut i = 0;
    while i < bits.len() {
        m |= 1 << bits[i];
        i += 1;
    }
    m
}

/// The checklist prints (`WDFINT:`, `INT:`, `VIRTIO:`, `COUNTERS:`, `ISR:`) and virq's own
/// (`IO:`, `BUGCHECK:`).
pub const CHECKLIST: u64 = mask(&[0, 1, 2, 3, 4, 39, 40]);
/// Everything the WinDbg `!pci` / resource-list matchers need outside a block.
pub const WINDBG: u64 = mask(&[5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 36, 43, 44, 45]);
/// `!pci`'s `Configuration Space` heading.
pub const CONFIG_SPACE: u64 = mask(&[5]);
/// The MSI-X capability's name (`msi-x`, `msix`).
pub const MSIX_WORD: u64 = mask(&[6, 7]);
/// The PCI Command word (`Cmd[`, `command`).
pub const PCI_COMMAND: u64 = mask(&[8, 9]);
/// The PCI Status word (`Sts[`, `status`).
pub const PCI_STATUS: u64 = mask(&[10, 11]);
/// A resource list's heading.
pub const RESOURCE: u64 = mask(&[12]);
/// WinDbg output read outside its command's block: a `dt` field, the `!irp` heading,
/// `!pcitree`'s bus and function lines.
pub const WINDBG_EXT: u64 = mask(&[53, 54, 55, 56]);
/// The `!irp` heading.
pub const IRP: u64 = mask(&[54]);
/// The prints of virtio-win's drivers the parser reads (`parse::windows::virtio_win_line`,
/// the storport MSI and MSI-X reports).
pub const VIRTIO_WIN: u64 = mask(&[41, 42, 47, 48, 49, 50, 51, 52, 57]);
/// A read-back wording needs "read" and one of these.
pub const READ: u64 = mask(&[16]);
/// With [`READ`], a word that makes a read-back about a vector (`msi-x`, `msix`, `vector`).
pub const VECTORISH: u64 = mask(&[6, 7, 17]);
/// Free-text lines worth keeping (`is_interesting`).
pub const INTERESTING: u64 = mask(&[17, 18, 19, 20, 21, 22, 23, 24, 25, 26]);
/// A WinDbg prompt.
pub const PROMPT: u64 = mask(&[27]);
/// Linux: a line naming virtio (a `/proc/interrupts` row worth keeping), and the kernel's
/// "nobody cared" report.
pub const VIRTIO: u64 = mask(&[23]);
/// Linux's "nobody cared" report of a line nobody handled.
pub const NOBODY_CARED: u64 = mask(&[24]);
/// Lines a rule reads whatever else they say (`decisive_line`): the kernel giving up on a
/// line, virtio_pci's own messages.
pub const DECISIVE: u64 = mask(&[24, 28, 29, 30]);
/// Lines naming `msi`.
pub const MSI: u64 = mask(&[18]);
/// Lines naming `irq`.
pub const IRQ: u64 = mask(&[22]);
/// The keyword-based part of format detection.
pub const CLASSIFY: u64 = CHECKLIST
    | mask(&[
        8, 24, 27, 28, 29, 30, 31, 32, 33, 34, 35, 36, 37, 38, 45, 46, 53, 54, 55, 56,
    ]);

fn automaton() -> &'static DFA {
    static AC: OnceLock<DFA> = OnceLock::new();
    AC.get_or_init(|| {
        DFA::builder()
            .ascii_case_insensitive(true)
            .match_kind(MatchKind::Standard)
            .prefilter(false)
            .build(PATTERNS)
            .expect("static patterns build")
    })
}

/// Bytes a keyword can start with (either case).
fn first_bytes() -> &'static [bool; 256] {
    static FIRST: OnceLock<[bool; 256]> = OnceLock::new();
    FIRST.get_or_init(|| {
        let mut t = [false; 256];
        for p in PATTERNS {
            let b = p.as_bytes()[0];
            t[usize::from(b.to_ascii_lowercase())] = true;
            t[usize::from(b.to_ascii_uppercase())] = true;
        }
        t
    })
}

/// The set of [`PATTERNS`] occurring in `text`.
///
/// The DFA is walked directly, one transition per byte, and every pattern of each match state
/// is OR-ed in: with standard match semantics a match state lists every pattern ending there
/// (its failure chain included), so this finds exactly what an overlapping search reports,
/// without the iterator's per-match bookkeeping. In the start state, bytes no keyword starts
/// with lead back to the start state, so they are skipped without a transition (the digits,
/// spaces and most letters of a line).
pub fn hits(text: &str) -> u64 {
    let dfa = automaton();
    let first = first_bytes();
    let Ok(start) = dfa.start_state(Anchored::No) else {
        unreachable!("an unanchored DFA has an unanchored start state");
    };
    let bytes = text.as_bytes();
    let mut sid = start;
    let mut m = 0u64;
    let mut i = 0;
    while i < bytes.len() {
        if sid == start {
            match bytes[i..].iter().position(|&b| first[usize::from(b)]) {
                Some(skip) => i += skip,
                None => break,
            }
        }
        sid = dfa.next_state(Anchored::No, sid, bytes[i]);
        i += 1;
        if dfa.is_special(sid) {
            if dfa.is_dead(sid) {
                break;
            }
            if dfa.is_match(sid) {
                for k in 0..dfa.match_len(sid) {
                    m |= 1 << dfa.match_pattern(sid, k).as_u32();
                }
            }
        }
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::text::contains_ci;

    #[test]
    fn hits_agree_with_contains_ci_for_every_pattern() {
        let lines = [
            "00000001\t0.0\tviostor: WDFINT: MessageSignaled=1 MessageNumber=0",
            "    98: CapID          11 MSI-X Capability",
            "00:01.0  1af4:1042.01  Cmd[0006]  Sts[0018]",
            "[  5.1] irq 11: nobody cared (try booting with the \"irqpoll\" option)",
            "queue 2 msix vector 0x00e1 READ BACK 0xffff",
            "storport: srb 0x1f completed, status 0x01, 4096 bytes",
            "",
        ];
        for line in lines {
            let h = hits(line);
            for (i, p) in PATTERNS.iter().enumerate() {
                assert_eq!(h & (1 << i) != 0, contains_ci(line, p), "{p:?} in {line:?}");
            }
        }
    }

    #[test]
    fn the_direct_walk_finds_what_an_overlapping_search_finds() {
        let overlapping = aho_corasick::AhoCorasick::builder()
            .ascii_case_insensitive(true)
            .build(PATTERNS)
            .unwrap();
        // Every pattern alone, glued to its neighbours, and nested ones (`msi` in `msi-x`,
        // `virtio` in `virtio_pci:`), in mixed case.
        let mut lines: Vec<String> = PATTERNS.iter().map(|p| p.to_string()).collect();
        lines.push(PATTERNS.concat());
        lines.push(PATTERNS.join(" ").to_ascii_uppercase());
        lines.push("xxVirtIO_PCI: MSI-X KINTERRUPT (Cmd[0407] Sts[0010]) kd> !devnode".into());
        lines.push("Disabling IRQ #11 nobody cared, isr: dpc irq intx vendorid".into());
        for line in &lines {
            let want = overlapping
                .find_overlapping_iter(line.as_str())
                .fold(0u64, |m, hit| m | 1 << hit.pattern().as_u32());
            assert_eq!(hits(line), want, "{line:?}");
        }
    }
}
