//! `!pcitree`: the PCI buses pci.sys enumerated and the functions on each, as kdexts prints
//! them (the layout of the debugger reference page's example), and its reader.
//!
//! ```text
//! 0: kd> !pcitree
//!
//! Bus 0x0 (FDO Ext fffffa8001c2b190)
//!   0600 12378086 (d=0,  f=0) devext fffffa8001c35b30 Bridge/HOST to PCI
//!   0180 10421af4 (d=1,  f=0) devext fffffa8001c3f1b0 Mass Storage Controller/Other
//!
//! Total PCI Root busses processed = 1
//! ```
//!
//! Each function: base class and subclass, device id and vendor id as one word, the device
//! and function numbers in hex, pci.sys's extension of its PDO (what `!devext ... pci` takes),
//! and the class names. Unverified: 16-digit extension addresses on x64 (the reference page's
//! example is from a 32-bit target) and the wording of class names the page does not show.

use std::fmt::Write as _;

use super::{PROMPT, fmt_ptr_plain, parse_number};

/// One function of a bus as `!pcitree` lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PciTreeFunction {
    /// Device number.
    pub device: u8,
    /// Function number.
    pub function: u8,
    /// Vendor ID.
    pub vendor_id: u16,
    /// Device ID.
    pub device_id: u16,
    /// Base class.
    pub base_class: u8,
    /// Subclass.
    pub sub_class: u8,
    /// pci.sys's PDO extension.
    pub devext: u64,
}

/// The class names the listing ends with (the reference page's wording where it shows one).
pub fn class_description(base: u8, sub: u8) -> String {
    let base_name = match base {
        0x01 => "Mass Storage Controller",
        0x02 => "Network Controller",
        0x03 => "Display Controller",
        0x06 => "Bridge",
        0x07 => "Simple Serial Communications Controller",
        0xFF => "Unknown Class",
        _ => "Unknown Base Class",
    };
    let sub_name = match (base, sub) {
        (0x01, 0x00) => "SCSI",
        (0x01, 0x01) => "IDE",
        (0x02, 0x00) => "Ethernet",
        (0x03, 0x00) => "VGA",
        (0x06, 0x00) => "HOST to PCI",
        (0x06, 0x01) => "PCI to ISA",
        (0x06, 0x04) => "PCI to PCI",
        (_, 0x80) => "Other",
        _ => "Unknown Sub Class",
    };
    format!("{base_name}/{sub_name}")
}

/// `!pcitree` of one root bus.
pub fn render_pcitree(bus: u8, fdo_ext: u64, functions: &[PciTreeFunction]) -> String {
    let mut out = format!("{PROMPT}!pcitree\n\n");
    let _ = writeln!(out, "Bus 0x{bus:x} (FDO Ext {})", fmt_ptr_plain(fdo_ext));
    for f in functions {
        let _ = writeln!(
            out,
            "  {:02x}{:02x} {:04x}{:04x} (d={:<3} f={:x}) devext {} {}",
            f.base_class,
            f.sub_class,
            f.device_id,
            f.vendor_id,
            format!("{:x},", f.device),
            f.function,
            fmt_ptr_plain(f.devext),
            class_description(f.base_class, f.sub_class)
        );
    }
    out.push_str("\nTotal PCI Root busses processed = 1\n");
    out
}

/// A line of `!pcitree`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PciTreeLine {
    /// `Bus 0x0 (FDO Ext ...)`: the functions that follow are on this bus.
    Bus {
        /// Bus number.
        bus: u8,
        /// pci.sys's extension of the bus FDO.
        fdo_ext: u64,
    },
    /// A function on the current bus.
    Function(PciTreeFunction),
}

/// One line of `!pcitree` output.
pub fn parse_line(body: &str) -> Option<PciTreeLine> {
    let t = body.trim();
    if let Some(rest) = t.strip_prefix("Bus ") {
        let (bus, rest) = rest.split_once(' ')?;
        let ext = rest.trim().strip_prefix("(FDO Ext ")?.strip_suffix(')')?;
        return Some(PciTreeLine::Bus {
            bus: u8::try_from(parse_number(bus)?).ok()?,
            fdo_ext: parse_number(ext)?,
        });
    }
    // `0600 12378086 (d=0,  f=0) devext fe4f4ee8 Bridge/HOST to PCI`
    let mut toks = t.split_whitespace();
    let class = toks.next()?;
    let ids = toks.next()?;
    if class.len() != 4 || ids.len() != 8 {
        return None;
    }
    let class = u16::try_from(parse_number(class)?).ok()?;
    let ids = u32::try_from(parse_number(ids)?).ok()?;
    let open = t.find("(d=")?;
    let close = open + t[open..].find(')')?;
    let (d, f) = t[open + 3..close].split_once(',')?;
    let f = f.trim().strip_prefix("f=")?;
    let after = &t[close + 1..];
    let devext = after
        .split_whitespace()
        .skip_while(|w| *w != "devext")
        .nth(1)
        .and_then(parse_number)
        .unwrap_or(0);
    Some(PciTreeLine::Function(PciTreeFunction {
        device: u8::try_from(parse_number(d.trim())?).ok()?,
        function: u8::try_from(parse_number(f)?).ok()?,
        vendor_id: ids as u16,
        device_id: (ids >> 16) as u16,
        base_class: (class >> 8) as u8,
        sub_class: class as u8,
        devext,
    }))
}

/// Every function of a `!pcitree` text with its bus.
pub fn parse_pcitree(text: &str) -> Vec<(u8, PciTreeFunction)> {
    let mut bus = 0;
    let mut out = Vec::new();
    for line in text.lines() {
        match parse_line(line) {
            Some(PciTreeLine::Bus { bus: b, .. }) => bus = b,
            Some(PciTreeLine::Function(f)) => out.push((bus, f)),
            None => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn functions() -> Vec<PciTreeFunction> {
        vec![
            PciTreeFunction {
                device: 0,
                function: 0,
                vendor_id: 0x8086,
                device_id: 0x1237,
                base_class: 0x06,
                sub_class: 0x00,
                devext: 0xFFFF_FA80_01C3_5B30,
            },
            PciTreeFunction {
                device: 0x10,
                function: 0,
                vendor_id: 0x1AF4,
                device_id: 0x1042,
                base_class: 0x01,
                sub_class: 0x80,
                devext: 0xFFFF_FA80_01C3_F1B0,
            },
        ]
    }

    #[test]
    fn the_tree_is_laid_out_as_the_reference_page_shows() {
        let text = render_pcitree(0, 0xFFFF_FA80_01C2_B190, &functions());
        assert_eq!(
            text,
            "0: kd> !pcitree\n\n\
             Bus 0x0 (FDO Ext fffffa8001c2b190)\n\
             \x20 0600 12378086 (d=0,  f=0) devext fffffa8001c35b30 Bridge/HOST to PCI\n\
             \x20 0180 10421af4 (d=10, f=0) devext fffffa8001c3f1b0 Mass Storage Controller/Other\n\
             \n\
             Total PCI Root busses processed = 1\n"
        );
    }

    /// Round trip, and the reference page's own 32-bit example.
    #[test]
    fn the_tree_reads_back() {
        let text = render_pcitree(0, 0xFFFF_FA80_01C2_B190, &functions());
        let got: Vec<PciTreeFunction> = parse_pcitree(&text).into_iter().map(|(_, f)| f).collect();
        assert_eq!(got, functions());
        let page = "Bus 0x1 (FDO Ext fe516998)\n  0100 81789004 (d=9,  f=0) devext fe515ce8 Mass Storage Controller/SCSI\n";
        assert_eq!(
            parse_pcitree(page),
            [(
                1,
                PciTreeFunction {
                    device: 9,
                    function: 0,
                    vendor_id: 0x9004,
                    device_id: 0x8178,
                    base_class: 1,
                    sub_class: 0,
                    devext: 0xfe51_5ce8
                }
            )]
        );
        assert_eq!(parse_line("Total PCI Root busses processed = 1"), None);
    }
}
