//! WinDbg text as the debugger prints it on a Windows 7 x64 target: each command's writer and
//! its reader live together, one module per format, with round-trip tests, as
//! [`crate::dbgprint`] does for DbgPrint lines.
//!
//! | command | module | what it shows |
//! |---|---|---|
//! | `!pcitree` | [`pcitree`] | the bus with its host bridge and the device |
//! | `!pci 100 B D F` | [`pci`] | the header, the `Device Private:` dwords (MSI-X Message Control inside) |
//! | `!dd [uc]` / `!dq [uc]` | [`dd`] | the MSI-X table and Pending Bit Array in BAR memory |
//! | `!devnode`, `!cmreslist` | [`devnode`] | the state, the raw and translated resource lists |
//! | `!irp` | [`irp`] | the start IRP: `[ 1b, 0]` and the `StartDevice` pointers in `Args:` |
//! | `dt nt!_CM_RESOURCE_LIST`, `dt nt!_CM_PARTIAL_RESOURCE_DESCRIPTOR`, `dt nt!_IO_STACK_LOCATION` | [`dt`] | the lists field by field, the x64 union overlay shown |
//!
//! The layouts follow Microsoft's debugger reference pages and published sessions as far as they
//! go; what no published capture settles is marked *unverified* in each module and in
//! `docs/log-formats.md`, and each reader accepts the plausible variants.
//!
//! The kernel addresses the model prints ([`KernelObjects`]) are fictitious but shaped like a
//! Windows 7 x64 machine's (non-paged pool `fffffa80...`, paged pool `fffff8a0...`) and
//! consistent across the commands: the `!irp` arguments are the lists `dt` dumps and `!devnode`
//! names, so the doctor can tie them together.

pub mod dd;
pub mod devnode;
pub mod dt;
pub mod irp;
pub mod pci;
pub mod pcitree;

pub use dd::MsixEntryView;
pub use devnode::{DevnodeView, parse_devnode_state, render_cmreslist, render_devnode};
pub use pci::{PciDumpInput, PciDumpSummary, parse_pci_dump, render_pci};

/// The prompt WinDbg prints before a command in a kernel session on processor 0.
pub const PROMPT: &str = "0: kd> ";

/// The kernel objects one start of the device involves, at the addresses the model's WinDbg
/// session shows. Deterministic per slot and start, so files of one run agree with each other.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KernelObjects {
    /// The `IRP_MN_START_DEVICE` IRP (non-paged pool).
    pub irp: u64,
    /// The driver's (KMDF's) functional device object, on top of the stack.
    pub fdo: u64,
    /// pci.sys's physical device object.
    pub pdo: u64,
    /// The device node (`!devnode`).
    pub devnode: u64,
    /// `AllocatedResources`: the raw list (paged pool).
    pub raw_list: u64,
    /// `AllocatedResourcesTranslated`.
    pub translated_list: u64,
    /// pci.sys's extension of the root bus FDO, and of the device's PDO (`!pcitree`).
    pub bus_fdo_ext: u64,
    /// The device's PDO extension (its `devext` in `!pcitree`).
    pub pdo_ext: u64,
}

impl KernelObjects {
    /// The objects of start number `start` (0-based) of the function in `slot`.
    pub fn for_start(slot: u8, start: u32) -> Self {
        let s = u64::from(slot);
        let n = u64::from(start);
        KernelObjects {
            irp: 0xFFFF_FA80_0355_E010 + n * 0x1_0000 + s * 0x400,
            fdo: 0xFFFF_FA80_035A_1E40 + s * 0x1000,
            pdo: 0xFFFF_FA80_01C3_E060 + s * 0x1000,
            devnode: 0xFFFF_FA80_01C4_0D30 + s * 0x1000,
            raw_list: 0xFFFF_F8A0_0189_C4B0 + n * 0x4000 + s * 0x10_0000,
            translated_list: 0xFFFF_F8A0_0189_D1E0 + n * 0x4000 + s * 0x10_0000,
            bus_fdo_ext: 0xFFFF_FA80_01C2_B190,
            pdo_ext: 0xFFFF_FA80_01C3_E1B0 + s * 0x1000,
        }
    }
}

/// A 64-bit pointer as WinDbg prints it: ``fffff8a0`0189c4b0``.
pub fn fmt_ptr(v: u64) -> String {
    format!("{:08x}`{:08x}", v >> 32, v & 0xFFFF_FFFF)
}

/// A 64-bit pointer as `!irp` and `!devnode` print it: 16 digits, no separator.
pub fn fmt_ptr_plain(v: u64) -> String {
    format!("{v:016x}")
}

/// A number as WinDbg prints or takes one: `0x1f`, `1f`, `0n31`, ``0xfffff8a0`0189c4b0``,
/// ``fffff8a0`0189c4b0``, with trailing punctuation trimmed. Bare digits are hex, as in the
/// debugger's default radix.
pub fn parse_number(s: &str) -> Option<u64> {
    let s = s.trim_matches(|c: char| matches!(c, ',' | ';' | '(' | ')' | '[' | ']' | ':'));
    if let Some(dec) = s.strip_prefix("0n") {
        return dec.parse().ok();
    }
    let hex = s
        .strip_prefix("0x")
        .or_else(|| s.strip_prefix("0X"))
        .unwrap_or(s);
    if hex.is_empty() || hex.len() > 17 {
        return None;
    }
    let mut v: u64 = 0;
    let mut digits = 0;
    for b in hex.bytes() {
        if b == b'`' {
            continue;
        }
        let d = (b as char).to_digit(16)?;
        digits += 1;
        if digits > 16 {
            return None;
        }
        v = (v << 4) | u64::from(d);
    }
    (digits > 0).then_some(v)
}

/// A number where decimal is the default (`Message Count 3`, `TableSize:4`): decimal digits
/// are decimal, `0x` or hex letters make it hex, `0n` decimal; backticks are ignored.
pub fn parse_count(s: &str) -> Option<u64> {
    let s = s.trim_matches(|c: char| matches!(c, ',' | ';' | '(' | ')' | '[' | ']' | '.' | ':'));
    if s.is_empty() {
        return None;
    }
    if s.starts_with("0x") || s.starts_with("0X") || s.starts_with("0n") {
        return parse_number(s);
    }
    if s.bytes().all(|b| b.is_ascii_digit()) {
        return s.parse().ok();
    }
    parse_number(s)
}

/// `1`/`0`, `+`/`-`, `true`/`false`, `yes`/`no`, `on`/`off`, or a number (non-zero is true).
pub fn parse_flag(s: &str) -> Option<bool> {
    let s = s.trim_matches(|c: char| matches!(c, ',' | ';' | ')' | '('));
    match s.to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "+" | "on" => Some(true),
        "0" | "false" | "no" | "-" | "off" => Some(false),
        _ => parse_count(s).map(|v| v != 0),
    }
}

/// Case-insensitive substring search from byte `from`; returns the byte index of the match.
/// Candidate positions come from a SIMD scan for the needle's first byte in either case: the
/// readers here run on every line a doctor reads, so this is the one implementation they and
/// the doctor's matchers share.
pub fn find_ci(hay: &str, needle: &str, from: usize) -> Option<usize> {
    let h = hay.as_bytes();
    let n = needle.as_bytes();
    if n.is_empty() || from > h.len() || h.len() - from < n.len() {
        return None;
    }
    let (lo, up) = (n[0].to_ascii_lowercase(), n[0].to_ascii_uppercase());
    let rest = &n[1..];
    let last = h.len() - n.len();
    let mut i = from;
    while i <= last {
        let window = &h[i..=last];
        let found = if lo == up {
            memchr::memchr(lo, window)
        } else {
            memchr::memchr2(lo, up, window)
        };
        let at = i + found?;
        if h[at + 1..at + n.len()].eq_ignore_ascii_case(rest) {
            return Some(at);
        }
        i = at + 1;
    }
    None
}

/// Whether `hay` contains `needle`, ignoring ASCII case.
pub fn contains_ci(hay: &str, needle: &str) -> bool {
    find_ci(hay, needle, 0).is_some()
}

/// The command after a WinDbg prompt (`kd> `, `0: kd> `, `lkd> `), trimmed.
pub fn prompt_command(body: &str) -> Option<&str> {
    let i = body.find("kd>")?;
    let head = body[..i].trim();
    let ok = head.len() <= 8
        && head
            .bytes()
            .all(|b| b.is_ascii_digit() || b == b':' || b == b'l' || b == b' ');
    ok.then(|| body[i + 3..].trim())
}

/// The WinDbg commands whose output the readers here know.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// `!pci [flags] [segment] bus dev func`, with the function when named.
    Pci(Option<(u8, u8, u8)>),
    /// `!pcitree`.
    PciTree,
    /// `!devnode Address [Flags]`.
    Devnode,
    /// `!cmreslist Address`.
    CmResList(Option<u64>),
    /// `!irp Address [Detail]`.
    Irp(Option<u64>),
    /// `!dd` / `!dq` of physical memory: the first address and the unit size in bytes.
    PhysicalMemory {
        /// First physical address dumped.
        address: u64,
        /// Bytes per value: 4 for `!dd`, 8 for `!dq`.
        unit: u8,
    },
    /// `dt`: the type (without module) and the address.
    DisplayType {
        /// The type, without its module (`_CM_RESOURCE_LIST`).
        type_name: String,
        /// The address dumped, when given.
        address: Option<u64>,
    },
    /// Anything else (`!idt`, `.logopen`, `r`, ...).
    Other(String),
}

impl Command {
    /// Reads a command line (what follows the prompt).
    pub fn parse(cmd: &str) -> Command {
        let mut words = cmd.split_whitespace();
        let Some(first) = words.next() else {
            return Command::Other(String::new());
        };
        let rest: Vec<&str> = words.collect();
        let lower = first.to_ascii_lowercase();
        match lower.as_str() {
            "!pci" => Command::Pci(pci::command_function(&rest)),
            "!pcitree" => Command::PciTree,
            "!devnode" => Command::Devnode,
            "!cmreslist" => Command::CmResList(rest.first().and_then(|a| parse_number(a))),
            "!irp" => Command::Irp(rest.first().and_then(|a| parse_number(a))),
            "!dd" | "!dq" => {
                let unit = if lower == "!dd" { 4 } else { 8 };
                // `[uc]`, `[c]`, `[wc]`, `-m` come before the address; `L n` after it.
                let address = rest
                    .iter()
                    .filter(|w| !w.starts_with('[') && !w.starts_with('-'))
                    .find_map(|w| parse_number(w));
                match address {
                    Some(address) => Command::PhysicalMemory { address, unit },
                    None => Command::Other(lower),
                }
            }
            "dt" => {
                let mut type_name = None;
                let mut address = None;
                for w in rest {
                    if w.starts_with('-') {
                        continue;
                    }
                    let name = w.rsplit('!').next().unwrap_or(w);
                    if type_name.is_none() && name.starts_with('_') {
                        type_name = Some(name.to_string());
                    } else if address.is_none() && type_name.is_some() {
                        address = parse_number(w);
                    }
                }
                match type_name {
                    Some(type_name) => Command::DisplayType { type_name, address },
                    None => Command::Other(lower),
                }
            }
            _ => Command::Other(lower),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_as_windbg_prints_them() {
        assert_eq!(
            parse_number("0xfffff8a0`0189c4b0"),
            Some(0xFFFF_F8A0_0189_C4B0)
        );
        assert_eq!(
            parse_number("fffff8a0`0189c4b0"),
            Some(0xFFFF_F8A0_0189_C4B0)
        );
        assert_eq!(
            parse_number("fffff8a00189c4b0"),
            Some(0xFFFF_F8A0_0189_C4B0)
        );
        assert_eq!(parse_number("0n31"), Some(31));
        assert_eq!(parse_number("1f"), Some(0x1F));
        assert_eq!(parse_number("(0x3)"), Some(3));
        assert_eq!(parse_number("0x"), None);
        assert_eq!(parse_number("zz"), None);
        assert_eq!(parse_number("1ffffffffffffffff"), None);
        assert_eq!(fmt_ptr(0xFFFF_F8A0_0189_C4B0), "fffff8a0`0189c4b0");
    }

    #[test]
    fn commands_after_the_prompt() {
        assert_eq!(prompt_command("0: kd> !irp @rdx"), Some("!irp @rdx"));
        assert_eq!(prompt_command("lkd> !pcitree"), Some("!pcitree"));
        assert_eq!(prompt_command("the kd> of a sentence"), None);
        assert_eq!(
            Command::parse("dt nt!_CM_RESOURCE_LIST -r2 0xfffff8a0`0189c4b0"),
            Command::DisplayType {
                type_name: "_CM_RESOURCE_LIST".into(),
                address: Some(0xFFFF_F8A0_0189_C4B0)
            }
        );
        assert_eq!(
            Command::parse("dt -r3 _CM_PARTIAL_RESOURCE_DESCRIPTOR fffff8a00189c4c4"),
            Command::DisplayType {
                type_name: "_CM_PARTIAL_RESOURCE_DESCRIPTOR".into(),
                address: Some(0xFFFF_F8A0_0189_C4C4)
            }
        );
        assert_eq!(
            Command::parse("!dd [uc] c0001000 L10"),
            Command::PhysicalMemory {
                address: 0xC000_1000,
                unit: 4
            }
        );
        assert_eq!(
            Command::parse("!irp fffffa80`0355e010 1"),
            Command::Irp(Some(0xFFFF_FA80_0355_E010))
        );
        assert_eq!(Command::parse("!irp @rdx"), Command::Irp(None));
        assert_eq!(
            Command::parse("!pci 100 0 4 0"),
            Command::Pci(Some((0, 4, 0)))
        );
        assert_eq!(Command::parse("!idt"), Command::Other("!idt".into()));
    }
}
