//! The request grammar of `docs/serve-protocol.md`: one line in, one [`Request`] or a
//! [`ProtocolError`] out. Nothing here touches the machine.

use thiserror::Error;

/// Most bytes one `read`, `write` or `memset` may cover (16 MiB).
pub const MAX_BULK_LEN: u64 = 16 << 20;

/// Longest request line accepted, newline excluded: a full-size `write` (two hex digits per
/// byte) plus room for the command word, the address and the length.
pub const MAX_LINE_LEN: usize = 2 * MAX_BULK_LEN as usize + 256;

/// Width of a port or memory access.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Width {
    /// `b`: one byte.
    Byte = 1,
    /// `w`: two bytes.
    Word = 2,
    /// `l`: four bytes.
    Long = 4,
    /// `q`: eight bytes.
    Quad = 8,
}

impl Width {
    /// Bytes moved by one access.
    pub fn bytes(self) -> usize {
        self as usize
    }

    /// Largest value an access of this width carries.
    pub fn max_value(self) -> u64 {
        match self {
            Width::Quad => u64::MAX,
            w => (1u64 << (8 * w.bytes())) - 1,
        }
    }

    fn bits(self) -> u32 {
        8 * self.bytes() as u32
    }
}

/// One parsed request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    /// `inb` / `inw` / `inl PORT`.
    PortIn {
        /// Access width.
        width: Width,
        /// I/O port.
        port: u16,
    },
    /// `outb` / `outw` / `outl PORT VALUE`.
    PortOut {
        /// Access width.
        width: Width,
        /// I/O port.
        port: u16,
        /// Value written.
        value: u32,
    },
    /// `readb` / `readw` / `readl` / `readq ADDR`.
    MemRead {
        /// Access width.
        width: Width,
        /// Guest-physical address.
        addr: u64,
    },
    /// `writeb` / `writew` / `writel` / `writeq ADDR VALUE`.
    MemWrite {
        /// Access width.
        width: Width,
        /// Guest-physical address.
        addr: u64,
        /// Value written.
        value: u64,
    },
    /// `read ADDR LEN`.
    BulkRead {
        /// Guest-physical address of the first byte.
        addr: u64,
        /// Bytes to read.
        len: u64,
    },
    /// `write ADDR LEN 0xHEX`.
    BulkWrite {
        /// Guest-physical address of the first byte.
        addr: u64,
        /// The bytes to write.
        data: Vec<u8>,
    },
    /// `memset ADDR LEN BYTE`.
    Memset {
        /// Guest-physical address of the first byte.
        addr: u64,
        /// Bytes to fill.
        len: u64,
        /// The fill value.
        byte: u8,
    },
    /// `irq_intercept_in NAME` / `irq_intercept_out NAME`: accepted for qtest clients that
    /// send them; interrupts are always reported, so they change nothing.
    IrqIntercept,
    /// `endianness`: qtest clients ask it once; the answer is always `little`.
    Endianness,
    /// `virq_events [FROM]`: the evidence recorded since sequence number FROM (default 0).
    Events {
        /// First sequence number to return.
        from: u64,
    },
    /// `virq_reset`: a fresh machine, as if the server had just started.
    Reset,
    /// `virq_info`: what is plugged where.
    Info,
    /// `virq_config_change`: the host changes device configuration (config interrupt).
    ConfigChange,
    /// `virq_msi_lines on|off`: whether `IRQ msi` lines are written.
    MsiLines(bool),
    /// `virq_dma_lines on|off`: whether a `DMA ADDR LEN` line is written for every range of
    /// guest RAM the device wrote.
    DmaLines(bool),
}

/// Why a request line was refused. The `Display` text is the `FAIL` reason.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum ProtocolError {
    /// The line is not valid UTF-8.
    #[error("request is not UTF-8")]
    NotUtf8,
    /// The line exceeds the protocol's line limit.
    #[error("request line longer than {max} bytes")]
    LineTooLong {
        /// The limit in bytes.
        max: usize,
    },
    /// The first word names no request.
    #[error("unknown request {0:?}")]
    UnknownCommand(String),
    /// A request with the wrong number of arguments.
    #[error("{command} takes {expected}")]
    Arity {
        /// The request.
        command: String,
        /// What it takes.
        expected: &'static str,
    },
    /// An argument is not a number in any accepted base.
    #[error("bad number {0:?} (decimal, 0x hex or 0 octal)")]
    BadNumber(String),
    /// A number above `u64::MAX`.
    #[error("number {0:?} does not fit in 64 bits")]
    NumberOverflow(String),
    /// A value too wide for its field (a port, an access width).
    #[error("{what} {value:#x} does not fit in {bits} bits")]
    TooWide {
        /// What the value is.
        what: &'static str,
        /// The value.
        value: u64,
        /// Bits the field has.
        bits: u32,
    },
    /// A bulk length above the per-request limit.
    #[error("length {len:#x} exceeds the limit of {max:#x} bytes")]
    TooLong {
        /// The length asked for.
        len: u64,
        /// The limit.
        max: u64,
    },
    /// Bulk data that is not `0x` and exactly two hex digits per byte.
    #[error("data must be 0x followed by exactly {digits} hex digits")]
    BadHexData {
        /// Hex digits expected.
        digits: u64,
    },
    /// The named switch was given something other than `on` or `off`.
    #[error("{0} must be on or off")]
    OnOff(&'static str),
    /// `ADDR + LEN` overflows 64 bits.
    #[error("range {addr:#x}+{len:#x} wraps around the address space")]
    Wraps {
        /// Start address.
        addr: u64,
        /// Length.
        len: u64,
    },
    /// The range is not guest RAM.
    #[error("range {addr:#x}+{len:#x} is not inside guest RAM ({ram_size:#x} bytes at 0)")]
    NotRam {
        /// Start address.
        addr: u64,
        /// Length.
        len: u64,
        /// Bytes of guest RAM.
        ram_size: u64,
    },
    /// A guest RAM access that runs past the end of guest RAM.
    #[error("access {addr:#x}+{len} straddles the end of guest RAM")]
    StraddlesRam {
        /// Start address.
        addr: u64,
        /// Length.
        len: usize,
    },
    /// Guest RAM refused the access at this address.
    #[error("guest RAM access failed at {0:#x}")]
    RamAccess(u64),
    /// `virq_reset` could not build the fresh machine.
    #[error("machine rebuild failed: {0}")]
    Rebuild(String),
}

/// Parse a number the way C's `strtoull` with base 0 does, minus signs: `0x`/`0X` hex,
/// a leading `0` octal, otherwise decimal.
pub fn parse_number(s: &str) -> Result<u64, ProtocolError> {
    let bad = || ProtocolError::BadNumber(clip(s));
    let (digits, radix) = if let Some(h) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        (h, 16)
    } else if s.len() > 1 && s.starts_with('0') {
        (&s[1..], 8)
    } else {
        (s, 10)
    };
    if digits.is_empty() || !digits.bytes().all(|b| (b as char).is_digit(radix)) {
        return Err(bad());
    }
    u64::from_str_radix(digits, radix).map_err(|_| ProtocolError::NumberOverflow(clip(s)))
}

/// Error messages quote at most this much of a client's token.
fn clip(s: &str) -> String {
    const MAX: usize = 40;
    match s.char_indices().nth(MAX) {
        Some((i, _)) => format!("{}...", &s[..i]),
        None => s.to_string(),
    }
}

fn number_fitting(s: &str, what: &'static str, width: Width) -> Result<u64, ProtocolError> {
    let v = parse_number(s)?;
    if v > width.max_value() {
        return Err(ProtocolError::TooWide {
            what,
            value: v,
            bits: width.bits(),
        });
    }
    Ok(v)
}

fn bulk_len(s: &str) -> Result<u64, ProtocolError> {
    let len = parse_number(s)?;
    if len > MAX_BULK_LEN {
        return Err(ProtocolError::TooLong {
            len,
            max: MAX_BULK_LEN,
        });
    }
    Ok(len)
}

fn hex_data(s: &str, len: u64) -> Result<Vec<u8>, ProtocolError> {
    let bad = || ProtocolError::BadHexData { digits: 2 * len };
    let hex = s
        .strip_prefix("0x")
        .or_else(|| s.strip_prefix("0X"))
        .ok_or_else(bad)?;
    if hex.len() as u64 != 2 * len {
        return Err(bad());
    }
    hex.as_bytes()
        .chunks_exact(2)
        .map(|pair| Some((hex_digit(pair[0])? << 4) | hex_digit(pair[1])?))
        .collect::<Option<Vec<u8>>>()
        .ok_or_else(bad)
}

fn hex_digit(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// True when a line holds no request (empty or blanks only): such lines get no reply.
pub fn is_blank(line: &[u8]) -> bool {
    line.iter().all(|b| b.is_ascii_whitespace())
}

/// Parse one request line (without its newline).
pub fn parse_request(line: &[u8]) -> Result<Request, ProtocolError> {
    if line.len() > MAX_LINE_LEN {
        return Err(ProtocolError::LineTooLong { max: MAX_LINE_LEN });
    }
    let text = std::str::from_utf8(line).map_err(|_| ProtocolError::NotUtf8)?;
    let mut words = text.split_ascii_whitespace();
    let command = words.next().unwrap_or("");
    // At most five words are meaningful; a sixth is enough to call the arity wrong.
    let mut args: [&str; 5] = [""; 5];
    let mut n = 0;
    for w in words {
        if n == args.len() {
            n += 1;
            break;
        }
        args[n] = w;
        n += 1;
    }
    let args = &args[..n.min(args.len())];
    let arity = |expected: &'static str, want: usize| {
        if n == want {
            Ok(())
        } else {
            Err(ProtocolError::Arity {
                command: command.to_string(),
                expected,
            })
        }
    };

    let port_width = |c: &str| match c {
        "inb" | "outb" => Width::Byte,
        "inw" | "outw" => Width::Word,
        _ => Width::Long,
    };
    let mem_width = |c: &str| match c {
        "readb" | "writeb" => Width::Byte,
        "readw" | "writew" => Width::Word,
        "readl" | "writel" => Width::Long,
        _ => Width::Quad,
    };

    Ok(match command {
        "inb" | "inw" | "inl" => {
            arity("PORT", 1)?;
            let port = number_fitting(args[0], "port", Width::Word)? as u16;
            Request::PortIn {
                width: port_width(command),
                port,
            }
        }
        "outb" | "outw" | "outl" => {
            arity("PORT VALUE", 2)?;
            let width = port_width(command);
            let port = number_fitting(args[0], "port", Width::Word)? as u16;
            let value = number_fitting(args[1], "value", width)? as u32;
            Request::PortOut { width, port, value }
        }
        "readb" | "readw" | "readl" | "readq" => {
            arity("ADDR", 1)?;
            Request::MemRead {
                width: mem_width(command),
                addr: parse_number(args[0])?,
            }
        }
        "writeb" | "writew" | "writel" | "writeq" => {
            arity("ADDR VALUE", 2)?;
            let width = mem_width(command);
            Request::MemWrite {
                width,
                addr: parse_number(args[0])?,
                value: number_fitting(args[1], "value", width)?,
            }
        }
        "read" => {
            arity("ADDR LEN", 2)?;
            Request::BulkRead {
                addr: parse_number(args[0])?,
                len: bulk_len(args[1])?,
            }
        }
        "write" => {
            arity("ADDR LEN 0xHEX", 3)?;
            let addr = parse_number(args[0])?;
            let len = bulk_len(args[1])?;
            Request::BulkWrite {
                addr,
                data: hex_data(args[2], len)?,
            }
        }
        "memset" => {
            arity("ADDR LEN BYTE", 3)?;
            Request::Memset {
                addr: parse_number(args[0])?,
                len: bulk_len(args[1])?,
                byte: number_fitting(args[2], "byte", Width::Byte)? as u8,
            }
        }
        "irq_intercept_in" | "irq_intercept_out" => {
            arity("NAME", 1)?;
            Request::IrqIntercept
        }
        "endianness" => {
            arity("no arguments", 0)?;
            Request::Endianness
        }
        "virq_events" => match n {
            0 => Request::Events { from: 0 },
            1 => Request::Events {
                from: parse_number(args[0])?,
            },
            _ => {
                return Err(ProtocolError::Arity {
                    command: command.to_string(),
                    expected: "[FROM]",
                });
            }
        },
        "virq_reset" => {
            arity("no arguments", 0)?;
            Request::Reset
        }
        "virq_info" => {
            arity("no arguments", 0)?;
            Request::Info
        }
        "virq_config_change" => {
            arity("no arguments", 0)?;
            Request::ConfigChange
        }
        "virq_msi_lines" => {
            arity("on or off", 1)?;
            match args[0] {
                "on" => Request::MsiLines(true),
                "off" => Request::MsiLines(false),
                _ => return Err(ProtocolError::OnOff("virq_msi_lines")),
            }
        }
        "virq_dma_lines" => {
            arity("on or off", 1)?;
            match args[0] {
                "on" => Request::DmaLines(true),
                "off" => Request::DmaLines(false),
                _ => return Err(ProtocolError::OnOff("virq_dma_lines")),
            }
        }
        other => return Err(ProtocolError::UnknownCommand(clip(other))),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Result<Request, ProtocolError> {
        parse_request(s.as_bytes())
    }

    #[test]
    fn numbers_follow_strtoull_base_0_without_signs() {
        assert_eq!(parse_number("0"), Ok(0));
        assert_eq!(parse_number("42"), Ok(42));
        assert_eq!(parse_number("0x2A"), Ok(42));
        assert_eq!(parse_number("0X2a"), Ok(42));
        assert_eq!(parse_number("052"), Ok(42));
        assert_eq!(parse_number("00"), Ok(0));
        assert_eq!(parse_number("0xffffffffffffffff"), Ok(u64::MAX));
        assert_eq!(parse_number("18446744073709551615"), Ok(u64::MAX));
        for bad in [
            "", "0x", "x1", "-1", "+1", "08", "1a", "0xg", "1_000", " 1", "0b1",
        ] {
            assert!(
                matches!(parse_number(bad), Err(ProtocolError::BadNumber(_))),
                "{bad:?}"
            );
        }
        assert!(matches!(
            parse_number("0x10000000000000000"),
            Err(ProtocolError::NumberOverflow(_))
        ));
        assert!(matches!(
            parse_number("18446744073709551616"),
            Err(ProtocolError::NumberOverflow(_))
        ));
    }

    #[test]
    fn every_request_kind_parses() {
        use Request::*;
        use Width::*;
        assert_eq!(
            p("inb 0x61"),
            Ok(PortIn {
                width: Byte,
                port: 0x61
            })
        );
        assert_eq!(
            p("inw 3320"),
            Ok(PortIn {
                width: Word,
                port: 0xCF8
            })
        );
        assert_eq!(
            p("inl 0xcfc"),
            Ok(PortIn {
                width: Long,
                port: 0xCFC
            })
        );
        assert_eq!(
            p("outb 0x80 0xff"),
            Ok(PortOut {
                width: Byte,
                port: 0x80,
                value: 0xFF
            })
        );
        assert_eq!(
            p("outw 0xcfc 0xffff"),
            Ok(PortOut {
                width: Word,
                port: 0xCFC,
                value: 0xFFFF
            })
        );
        assert_eq!(
            p("outl 0xcf8 0x80000800"),
            Ok(PortOut {
                width: Long,
                port: 0xCF8,
                value: 0x8000_0800
            })
        );
        for (c, w) in [
            ("readb", Byte),
            ("readw", Word),
            ("readl", Long),
            ("readq", Quad),
        ] {
            assert_eq!(
                p(&format!("{c} 0x1000")),
                Ok(MemRead {
                    width: w,
                    addr: 0x1000
                })
            );
        }
        for (c, w) in [
            ("writeb", Byte),
            ("writew", Word),
            ("writel", Long),
            ("writeq", Quad),
        ] {
            assert_eq!(
                p(&format!("{c} 0x1000 7")),
                Ok(MemWrite {
                    width: w,
                    addr: 0x1000,
                    value: 7
                })
            );
        }
        assert_eq!(
            p("writeq 8 0xffffffffffffffff"),
            Ok(MemWrite {
                width: Quad,
                addr: 8,
                value: u64::MAX
            })
        );
        assert_eq!(
            p("read 0x2000 16"),
            Ok(BulkRead {
                addr: 0x2000,
                len: 16
            })
        );
        assert_eq!(
            p("write 0x2000 3 0x0a0B0c"),
            Ok(BulkWrite {
                addr: 0x2000,
                data: vec![0x0A, 0x0B, 0x0C]
            })
        );
        assert_eq!(
            p("write 0 0 0x"),
            Ok(BulkWrite {
                addr: 0,
                data: vec![]
            })
        );
        assert_eq!(
            p("memset 0x100 0x20 0xa5"),
            Ok(Memset {
                addr: 0x100,
                len: 0x20,
                byte: 0xA5
            })
        );
        assert_eq!(p("irq_intercept_in ioapic"), Ok(IrqIntercept));
        assert_eq!(p("irq_intercept_out /machine/x"), Ok(IrqIntercept));
        assert_eq!(p("endianness"), Ok(Endianness));
        assert_eq!(p("virq_events"), Ok(Events { from: 0 }));
        assert_eq!(p("virq_events 12"), Ok(Events { from: 12 }));
        assert_eq!(p("virq_reset"), Ok(Reset));
        assert_eq!(p("virq_info"), Ok(Info));
        assert_eq!(p("virq_config_change"), Ok(ConfigChange));
        assert_eq!(p("virq_msi_lines off"), Ok(MsiLines(false)));
        assert_eq!(p("virq_msi_lines on"), Ok(MsiLines(true)));
        assert_eq!(p("virq_dma_lines on"), Ok(DmaLines(true)));
        assert_eq!(p("virq_dma_lines\toff "), Ok(DmaLines(false)));
    }

    #[test]
    fn blanks_tabs_and_carriage_returns_separate_words() {
        assert_eq!(
            p("  outl\t0xcf8   0x80000000 \r"),
            Ok(Request::PortOut {
                width: Width::Long,
                port: 0xCF8,
                value: 0x8000_0000
            })
        );
        assert!(is_blank(b""));
        assert!(is_blank(b" \t\r"));
        assert!(!is_blank(b" inb 1"));
    }

    #[test]
    fn bad_requests_name_their_fault() {
        use ProtocolError::*;
        assert!(matches!(p("frobnicate 1"), Err(UnknownCommand(_))));
        assert!(matches!(p("INB 0x61"), Err(UnknownCommand(_))));
        assert!(matches!(p("inb"), Err(Arity { .. })));
        assert!(matches!(p("inb 1 2"), Err(Arity { .. })));
        assert!(matches!(p("outl 0xcf8"), Err(Arity { .. })));
        assert!(matches!(p("write 0 1"), Err(Arity { .. })));
        assert!(matches!(p("memset 0 1 2 3 4 5 6 7"), Err(Arity { .. })));
        assert!(matches!(p("virq_reset now"), Err(Arity { .. })));
        assert!(matches!(p("virq_events 1 2"), Err(Arity { .. })));
        assert!(matches!(p("virq_msi_lines maybe"), Err(OnOff(_))));
        assert!(matches!(p("virq_dma_lines"), Err(Arity { .. })));
        assert!(matches!(
            p("virq_dma_lines ON"),
            Err(OnOff("virq_dma_lines"))
        ));
        assert!(matches!(p("inb 0x10000"), Err(TooWide { bits: 16, .. })));
        assert!(matches!(p("outb 0x80 0x100"), Err(TooWide { bits: 8, .. })));
        assert!(matches!(
            p("outw 0x80 0x10000"),
            Err(TooWide { bits: 16, .. })
        ));
        assert!(matches!(
            p("outl 0x80 0x100000000"),
            Err(TooWide { bits: 32, .. })
        ));
        assert!(matches!(p("writel 0 0x100000000"), Err(TooWide { .. })));
        assert!(matches!(p("memset 0 1 256"), Err(TooWide { .. })));
        assert!(matches!(p("readl banana"), Err(BadNumber(_))));
        assert!(matches!(p("readl -4"), Err(BadNumber(_))));
        assert!(matches!(
            p("write 0 2 0x123"),
            Err(BadHexData { digits: 4 })
        ));
        assert!(matches!(p("write 0 2 0x12345"), Err(BadHexData { .. })));
        assert!(matches!(p("write 0 2 1234"), Err(BadHexData { .. })));
        assert!(matches!(p("write 0 2 0x12zz"), Err(BadHexData { .. })));
        assert!(matches!(p(""), Err(UnknownCommand(_))));
        assert_eq!(parse_request(b"inb \xff\xfe"), Err(NotUtf8));
    }

    #[test]
    fn huge_lengths_are_refused_before_any_allocation() {
        use ProtocolError::*;
        assert!(matches!(p("read 0 0x1000001"), Err(TooLong { .. })));
        assert!(matches!(
            p("memset 0 0xffffffffffffffff 0"),
            Err(TooLong { .. })
        ));
        // The data token is checked against LEN, so a short line cannot claim a huge write.
        assert!(matches!(p("write 0 0x1000001 0x00"), Err(TooLong { .. })));
        assert!(matches!(
            p("write 0 0x1000000 0x00"),
            Err(BadHexData { .. })
        ));
        assert_eq!(
            p("read 0 0x1000000"),
            Ok(Request::BulkRead {
                addr: 0,
                len: MAX_BULK_LEN
            })
        );
        let long = vec![b'a'; MAX_LINE_LEN + 1];
        assert_eq!(parse_request(&long), Err(LineTooLong { max: MAX_LINE_LEN }));
    }

    #[test]
    fn error_text_quotes_at_most_a_clipped_token() {
        let token = "z".repeat(10_000);
        let e = p(&format!("readl {token}")).unwrap_err().to_string();
        assert!(e.len() < 120, "{e}");
        let e = p(&token).unwrap_err().to_string();
        assert!(e.len() < 120, "{e}");
    }
}
