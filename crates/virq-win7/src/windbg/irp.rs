//! `!irp`: the PnP start IRP as kdexts prints it when the driver's dispatch routine is entered
//! (`!irp @rdx`, checklist 1.3), and its reader.
//!
//! ```text
//! 0: kd> !irp fffffa800355e010
//! Irp is active with 2 stacks 2 is current (= 0xfffffa800355e128)
//!  No Mdl: No System Buffer: Thread fffffa80018d3680:  Irp stack trace.
//!      cmd  flg cl Device   File     Completion-Context
//!  [  0, 0]   0  0 00000000 00000000 00000000-00000000
//!
//!             Args: 00000000 00000000 00000000 00000000
//! >[ 1b, 0]   0  0 fffffa80035a1e40 00000000 00000000-00000000
//!             \Driver\virqblk
//!             Args: fffff8a00189c4b0 fffff8a00189d1e0 00000000 00000000
//! ```
//!
//! Stack locations print from the lowest driver's up; `>` marks the current one, here the
//! function driver's on top of pci.sys's PDO. `[ 1b, 0]` is `IRP_MJ_PNP` / `IRP_MN_START_DEVICE`,
//! and for it the first two `Args` are `Parameters.StartDevice.AllocatedResources` (the raw list)
//! and `AllocatedResourcesTranslated`: the addresses to give `dt nt!_CM_RESOURCE_LIST`.
//! Unverified: the width x64 kdexts gives a NULL pointer (eight digits here) and the
//! indentation of the driver and `Args:` lines (tabs in published x86 sessions).

use std::fmt::Write as _;

use super::{KernelObjects, PROMPT, fmt_ptr_plain, parse_number};

/// `IRP_MJ_PNP`.
pub const IRP_MJ_PNP: u8 = 0x1B;
/// `IRP_MN_START_DEVICE`.
pub const IRP_MN_START_DEVICE: u8 = 0x00;
/// `sizeof(IRP)` on x64: the stack locations follow it.
pub const IRP_SIZE: u64 = 0xD0;
/// `sizeof(IO_STACK_LOCATION)` on x64.
pub const IO_STACK_LOCATION_SIZE: u64 = 0x48;

/// Stack locations of the start IRP the model prints: pci.sys's PDO and the function driver.
pub const START_IRP_STACKS: u8 = 2;

/// The address of stack location `n` (1-based, as `!irp` counts) of the IRP at `irp`.
pub fn stack_location(irp: u64, n: u8) -> u64 {
    irp + IRP_SIZE + u64::from(n.saturating_sub(1)) * IO_STACK_LOCATION_SIZE
}

fn ptr_or_null(v: u64) -> String {
    if v == 0 {
        "00000000".to_string()
    } else {
        fmt_ptr_plain(v)
    }
}

/// `!irp` of the start IRP at the function driver's dispatch routine; `driver` is the
/// service's driver object name (`\Driver\virqblk`).
pub fn render_start_irp(objects: &KernelObjects, driver: &str) -> String {
    let n = START_IRP_STACKS;
    let mut out = format!("{PROMPT}!irp {}\n", fmt_ptr_plain(objects.irp));
    let _ = writeln!(
        out,
        "Irp is active with {n} stacks {n} is current (= 0x{})",
        fmt_ptr_plain(stack_location(objects.irp, n))
    );
    out.push_str(" No Mdl: No System Buffer: Thread fffffa80018d3680:  Irp stack trace.\n");
    out.push_str("     cmd  flg cl Device   File     Completion-Context\n");
    // pci.sys's location, not reached yet.
    out.push_str(" [  0, 0]   0  0 00000000 00000000 00000000-00000000\n\n");
    out.push_str("\t\t\tArgs: 00000000 00000000 00000000 00000000\n");
    let _ = writeln!(
        out,
        ">[{IRP_MJ_PNP:3x},{IRP_MN_START_DEVICE:2x}]   0  0 {} 00000000 00000000-00000000",
        ptr_or_null(objects.fdo)
    );
    let _ = writeln!(out, "\t       {driver}");
    let _ = writeln!(
        out,
        "\t\t\tArgs: {} {} 00000000 00000000",
        ptr_or_null(objects.raw_list),
        ptr_or_null(objects.translated_list)
    );
    out
}

/// `Irp is active with N stacks M is current (= 0x...)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IrpHeader {
    /// Stack locations in the IRP.
    pub stacks: u8,
    /// The current location's number.
    pub current: u8,
    /// Address of the current `IO_STACK_LOCATION`.
    pub current_location: u64,
}

/// Reads the `Irp is active with ...` heading of `!irp`.
pub fn parse_header(body: &str) -> Option<IrpHeader> {
    let t = body.trim();
    let rest = t.strip_prefix("Irp is active with ")?;
    let toks: Vec<&str> = rest.split_whitespace().collect();
    // N stacks M is current (= 0x...)
    match toks.as_slice() {
        [n, "stacks", m, "is", "current", "(=", addr, ..] => Some(IrpHeader {
            stacks: n.parse().ok()?,
            current: m.parse().ok()?,
            current_location: parse_number(addr.trim_end_matches(')'))?,
        }),
        _ => None,
    }
}

/// One stack location line: `>[ 1b, 0]   0  0 fffffa80035a1e40 00000000 ...`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IrpLocation {
    /// The line starts with `>`: the current location.
    pub current: bool,
    /// `MajorFunction` (0x1b: `IRP_MJ_PNP`).
    pub major: u8,
    /// `MinorFunction` (0x00: `IRP_MN_START_DEVICE` under `IRP_MJ_PNP`).
    pub minor: u8,
    /// The device object of the location.
    pub device: u64,
}

/// Reads one stack location line of `!irp`.
pub fn parse_location(body: &str) -> Option<IrpLocation> {
    let t = body.trim_start();
    let (current, t) = match t.strip_prefix('>') {
        Some(rest) => (true, rest),
        None => (false, t),
    };
    let inner = t.strip_prefix('[')?;
    let close = inner.find(']')?;
    let (major, minor) = inner[..close].split_once(',')?;
    let major = u8::try_from(parse_number(major.trim())?).ok()?;
    let minor = u8::try_from(parse_number(minor.trim())?).ok()?;
    let mut toks = inner[close + 1..].split_whitespace();
    let _flg = toks.next()?;
    let _cl = toks.next()?;
    let device = parse_number(toks.next()?)?;
    Some(IrpLocation {
        current,
        major,
        minor,
        device,
    })
}

/// `Args: a b c d`.
pub fn parse_args(body: &str) -> Option<[u64; 4]> {
    let rest = body.trim().strip_prefix("Args:")?;
    let mut out = [0u64; 4];
    let mut n = 0;
    for tok in rest.split_whitespace() {
        if n == 4 {
            return None;
        }
        out[n] = parse_number(tok)?;
        n += 1;
    }
    (n == 4).then_some(out)
}

/// Whether a line is part of `!irp` output: the heading, the `Mdl`/`Irp stack trace` line, the
/// column heading, a stack location, its driver and completion routine, its `Args:`.
pub fn is_irp_line(body: &str) -> bool {
    let t = body.trim();
    parse_header(t).is_some()
        || parse_location(t).is_some()
        || parse_args(t).is_some()
        || t.starts_with('\\')
        || t.contains("Irp stack trace")
        || (t.starts_with("cmd") && t.contains("Completion-Context"))
}

/// The current stack location of an `!irp` and its arguments.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CurrentLocation {
    /// The IRP's heading, when it was read.
    pub header: Option<IrpHeader>,
    /// The current stack location.
    pub location: IrpLocation,
    /// Its `Args:` (`Parameters` of the location, four pointers).
    pub args: [u64; 4],
}

impl CurrentLocation {
    /// `(AllocatedResources, AllocatedResourcesTranslated)` of an `IRP_MN_START_DEVICE`.
    pub fn start_device_lists(&self) -> Option<(u64, u64)> {
        (self.location.major == IRP_MJ_PNP && self.location.minor == IRP_MN_START_DEVICE)
            .then_some((self.args[0], self.args[1]))
    }
}

/// Reads the current location of every `!irp` in a text, line by line.
#[derive(Debug, Default, Clone)]
pub struct IrpReader {
    header: Option<IrpHeader>,
    pending: Option<IrpLocation>,
}

impl IrpReader {
    /// Takes one line; returns the current location once its `Args:` line is read.
    pub fn feed(&mut self, body: &str) -> Option<CurrentLocation> {
        if let Some(h) = parse_header(body) {
            self.header = Some(h);
            self.pending = None;
            return None;
        }
        if let Some(l) = parse_location(body) {
            self.pending = l.current.then_some(l);
            return None;
        }
        if let Some(args) = parse_args(body) {
            let location = self.pending.take()?;
            return Some(CurrentLocation {
                header: self.header,
                location,
                args,
            });
        }
        None
    }
}

/// Every current location in a text.
pub fn parse_irps(text: &str) -> Vec<CurrentLocation> {
    let mut r = IrpReader::default();
    text.lines().filter_map(|l| r.feed(l)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_start_irp_is_laid_out_as_kdexts_prints_it() {
        let o = KernelObjects::for_start(1, 0);
        let text = render_start_irp(&o, r"\Driver\virqblk");
        assert!(text.starts_with("0: kd> !irp fffffa800355e410\nIrp is active with 2 stacks 2 is current (= 0xfffffa800355e528)\n"), "{text}");
        assert!(
            text.contains(">[ 1b, 0]   0  0 fffffa80035a2e40 00000000 00000000-00000000\n\t       \\Driver\\virqblk\n\t\t\tArgs: fffff8a00199c4b0 fffff8a00199d1e0 00000000 00000000\n"),
            "{text}"
        );
    }

    /// Round trip: the current location is the start IRP's, with the two lists' addresses.
    #[test]
    fn the_start_irp_reads_back_to_its_lists() {
        for (slot, start) in [(1, 0), (3, 1)] {
            let o = KernelObjects::for_start(slot, start);
            let irps = parse_irps(&render_start_irp(&o, r"\Driver\virqblk"));
            assert_eq!(irps.len(), 1);
            let c = irps[0];
            assert_eq!(c.location.device, o.fdo);
            assert_eq!(
                c.header.map(|h| (h.stacks, h.current, h.current_location)),
                Some((2, 2, stack_location(o.irp, 2)))
            );
            assert_eq!(
                c.start_device_lists(),
                Some((o.raw_list, o.translated_list))
            );
        }
    }

    /// A published x86 session's shape: an I/O IRP, a completion routine, a pending one.
    #[test]
    fn other_irps_are_read_but_carry_no_lists() {
        let text = "Irp is active with 10 stacks 5 is current (= 0x8667aa28)\n\
             Mdl = 86041108 Thread 8a613768:  Irp stack trace.\n\
             \x20    cmd  flg cl Device   File     Completion-Context\n\
             \x20[  0, 0]   0  0 00000000 00000000 00000000-00000000\n\n\
             \t\t\tArgs: 00000000 00000000 00000000 00000000\n\
             >[  4,34]   c e0 8a58b030 00000000 f74c95d0-8a58be00 Success Error Cancel\n\
             \t       \\Driver\\Disk\tPartMgr!PmIoCompletion\n\
             \t\t\tArgs: 00010000 00000000 be82ee00 00000000\n";
        let irps = parse_irps(text);
        assert_eq!(irps.len(), 1);
        assert_eq!((irps[0].location.major, irps[0].location.minor), (4, 0x34));
        assert_eq!(irps[0].location.device, 0x8a58_b030);
        assert_eq!(irps[0].start_device_lists(), None);
        assert_eq!(parse_args("Args: 1 2 3"), None);
        assert!(
            text.lines()
                .filter(|l| !l.trim().is_empty())
                .all(is_irp_line)
        );
        assert!(!is_irp_line("12\t0.5\tINT: MSI/MSI-X Level=11 Vector=177"));
        assert_eq!(parse_location("[N/A] nothing"), None);
    }
}
