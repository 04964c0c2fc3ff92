//! Small text helpers shared by the parsers: number parsing, `key=value` lookup, prefix
//! stripping. Hand-written instead of regexes so that every accepted shape is spelled out and
//! no input can make matching slow.

/// Parses `0x`-prefixed hex, plain decimal, or bare hex digits (some drivers print `Vector=E1`).
/// Surrounding punctuation that log formats glue to numbers (`,` `;` `(` `)` `[` `]`) is ignored.
pub fn parse_num(s: &str) -> Option<u64> {
    let s = s.trim_matches(|c: char| matches!(c, ',' | ';' | '(' | ')' | '[' | ']' | '.' | ':'));
    if s.is_empty() {
        return None;
    }
    if let Some(hex) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        let hex = hex.trim_start_matches('`');
        return u64::from_str_radix(&hex.replace('`', ""), 16).ok();
    }
    if s.bytes().all(|b| b.is_ascii_digit()) {
        return s.parse().ok();
    }
    if s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return u64::from_str_radix(s, 16).ok();
    }
    None
}

/// Parses a number that a format defines as hex even without `0x` (`!pci` words, `Cmd[0407`).
pub fn parse_hex(s: &str) -> Option<u64> {
    let s = s.trim_matches(|c: char| matches!(c, ',' | ';' | '(' | ')' | '[' | ']' | ':'));
    let s = s
        .strip_prefix("0x")
        .or_else(|| s.strip_prefix("0X"))
        .unwrap_or(s);
    if s.is_empty() || s.len() > 16 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u64::from_str_radix(s, 16).ok()
}

/// Case-insensitive substring search from byte `from`; returns the byte index of the match.
/// Candidate positions come from a SIMD scan for the needle's first byte in either case.
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

fn is_word_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// Finds `needle` where it starts a word (the byte before is not a letter, digit or `_`).
pub fn find_word_ci(hay: &str, needle: &str) -> Option<usize> {
    let mut from = 0;
    while let Some(i) = find_ci(hay, needle, from) {
        if i == 0 || !is_word_byte(hay.as_bytes()[i - 1]) {
            return Some(i);
        }
        from = i + 1;
    }
    None
}

/// The value of `key=value` (case-insensitive key at a word start); the value runs to the next
/// whitespace or comma.
pub fn kv<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let mut from = 0;
    while let Some(i) = find_ci(line, key, from) {
        let bytes = line.as_bytes();
        let end = i + key.len();
        let at_word = i == 0 || !is_word_byte(bytes[i - 1]);
        if at_word && bytes.get(end) == Some(&b'=') {
            let rest = &line[end + 1..];
            let stop = rest
                .find(|c: char| c.is_whitespace() || c == ',')
                .unwrap_or(rest.len());
            return Some(&rest[..stop]);
        }
        from = i + 1;
    }
    None
}

/// `kv` parsed as a number.
pub fn kv_num(line: &str, key: &str) -> Option<u64> {
    kv(line, key).and_then(parse_num)
}

/// A truthy/falsy word as logs print booleans: `1/0`, `TRUE/FALSE`, `yes/no`, `+/-`.
pub fn parse_bool(s: &str) -> Option<bool> {
    let s = s.trim_matches(|c: char| matches!(c, ',' | ';' | ')' | '('));
    match s.to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "+" | "on" => Some(true),
        "0" | "false" | "no" | "-" | "off" => Some(false),
        _ => parse_num(s).map(|v| v != 0),
    }
}

/// What was stripped off the front of a line before matching its text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Prefix {
    /// DbgView's `SEQ<TAB>TIME<TAB>` columns were present.
    pub dbgview_columns: bool,
    /// A `[PID] ` prefix (DbgView, "show process ID").
    pub pid: Option<u32>,
    /// A dmesg `[   12.345678] ` stamp or a syslog `... kernel: ` prefix.
    pub kernel_log: bool,
    /// Time from DbgView's column or dmesg's stamp, in nanoseconds.
    pub time_ns: Option<u64>,
}

/// Seconds with a fraction (`0.00012345`, `12.345678`) into nanoseconds.
fn seconds_ns(s: &str) -> Option<u64> {
    let (whole, frac) = s.split_once('.').unwrap_or((s, ""));
    if whole.is_empty() || !whole.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let secs: u64 = whole.parse().ok()?;
    let mut ns: u64 = 0;
    for (i, b) in frac.bytes().take(9).enumerate() {
        ns += u64::from(b - b'0') * 10u64.pow(8 - i as u32);
    }
    secs.checked_mul(1_000_000_000)?.checked_add(ns)
}

/// DbgView's time column: relative seconds, or wall clock `HH:MM:SS[.fff][ AM|PM]`
/// (nanoseconds since midnight).
pub fn dbgview_time_ns(s: &str) -> Option<u64> {
    let s = s.trim();
    if !s.contains(':') {
        return seconds_ns(s);
    }
    let (clock, ampm) = match s.rsplit_once(' ') {
        Some((c, m)) if m.eq_ignore_ascii_case("AM") || m.eq_ignore_ascii_case("PM") => {
            (c.trim(), Some(m.eq_ignore_ascii_case("PM")))
        }
        _ => (s, None),
    };
    let mut parts = clock.split(':');
    let h: u64 = parts.next()?.parse().ok()?;
    let m: u64 = parts.next()?.parse().ok()?;
    let sec = seconds_ns(parts.next()?)?;
    if parts.next().is_some() || h > 23 || m > 59 {
        return None;
    }
    let h = match ampm {
        Some(true) if h < 12 => h + 12,
        Some(false) if h == 12 => 0,
        _ => h,
    };
    Some((h * 3600 + m * 60) * 1_000_000_000 + sec)
}

/// Strips DbgView columns, a `[PID]` prefix, a dmesg stamp or a syslog prefix; returns the text
/// that matchers look at.
pub fn strip_prefixes(line: &str) -> (&str, Prefix) {
    let mut p = Prefix::default();
    let mut s = line;
    if let Some((seq, rest)) = s.split_once('\t') {
        let seq = seq.trim();
        if !seq.is_empty() && seq.bytes().all(|b| b.is_ascii_digit()) {
            if let Some((time, text)) = rest.split_once('\t') {
                if let Some(t) = dbgview_time_ns(time) {
                    p.dbgview_columns = true;
                    p.time_ns = Some(t);
                    s = text;
                }
            }
        }
    }
    let t = s.trim_start();
    if let Some(inner_end) = t.strip_prefix('[').and_then(|r| r.find(']')) {
        let inner = t[1..=inner_end].trim();
        let rest = &t[inner_end + 2..];
        if !inner.is_empty() && inner.bytes().all(|b| b.is_ascii_digit()) {
            p.pid = inner.parse().ok();
            s = rest.strip_prefix(' ').unwrap_or(rest);
        } else if inner.contains('.') {
            if let Some(ns) = seconds_ns(inner) {
                p.kernel_log = true;
                if p.time_ns.is_none() {
                    p.time_ns = Some(ns);
                }
                s = rest.strip_prefix(' ').unwrap_or(rest);
            }
        }
    }
    if !p.kernel_log {
        // Only a first ` kernel: ` at most 64 bytes in counts, so only the first 64 + 9 bytes
        // are searched, with a searcher built once.
        static KERNEL: std::sync::OnceLock<memchr::memmem::Finder<'static>> =
            std::sync::OnceLock::new();
        let finder = KERNEL.get_or_init(|| memchr::memmem::Finder::new(b" kernel: "));
        let window = &s.as_bytes()[..s.len().min(64 + " kernel: ".len())];
        if let Some(i) = finder.find(window) {
            let head = &s[..i];
            if head.len() <= 64 && head.bytes().any(|b| b == b':') {
                p.kernel_log = true;
                s = &s[i + " kernel: ".len()..];
                if let Some((_, rest)) = strip_dmesg_stamp(s) {
                    s = rest;
                }
            }
        }
    }
    (s, p)
}

fn strip_dmesg_stamp(s: &str) -> Option<(u64, &str)> {
    let inner_end = s.strip_prefix('[')?.find(']')?;
    let ns = seconds_ns(s[1..=inner_end].trim())?;
    let rest = &s[inner_end + 2..];
    Some((ns, rest.strip_prefix(' ').unwrap_or(rest)))
}

/// `str::split_whitespace`, faster on ASCII text (every line of the formats the doctor reads):
/// the same tokens, found by a byte loop instead of decoding characters. A line with any
/// non-ASCII byte goes through `split_whitespace` itself, so Unicode spaces split as before.
pub fn words(s: &str) -> Words<'_> {
    if s.is_ascii() {
        Words::Ascii { text: s, pos: 0 }
    } else {
        Words::Unicode(s.split_whitespace())
    }
}

/// The iterator of [`words`].
#[derive(Debug, Clone)]
pub enum Words<'a> {
    Ascii { text: &'a str, pos: usize },
    Unicode(std::str::SplitWhitespace<'a>),
}

/// `char::is_whitespace` restricted to ASCII: tab, LF, VT, FF, CR and space.
pub(crate) fn is_ascii_space(b: u8) -> bool {
    matches!(b, b'\t'..=b'\r' | b' ')
}

impl<'a> Iterator for Words<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        match self {
            Words::Ascii { text, pos } => {
                let b = text.as_bytes();
                let mut i = *pos;
                while i < b.len() && is_ascii_space(b[i]) {
                    i += 1;
                }
                let start = i;
                while i < b.len() && !is_ascii_space(b[i]) {
                    i += 1;
                }
                *pos = i;
                (i > start).then(|| &text[start..i])
            }
            Words::Unicode(it) => it.next(),
        }
    }
}

/// Splits a line into tokens at whitespace and the punctuation logs glue to words.
pub fn tokens(s: &str) -> impl Iterator<Item = &str> {
    s.split(|c: char| c.is_whitespace() || matches!(c, ',' | ';' | '(' | ')' | '[' | ']' | '='))
        .filter(|t| !t.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_in_the_shapes_logs_use() {
        assert_eq!(parse_num("0x00e1"), Some(0xe1));
        assert_eq!(parse_num("225,"), Some(225));
        assert_eq!(parse_num("E1"), Some(0xe1));
        assert_eq!(parse_num("0xfffff880`01234567"), Some(0xfffff88001234567));
        assert_eq!(parse_num("zz"), None);
        assert_eq!(parse_hex("0407"), Some(0x407));
        assert_eq!(parse_hex("Cmd"), None);
    }

    #[test]
    fn kv_finds_keys_at_word_starts_only() {
        let l = "WDFINT: MessageSignaled=1 MessageNumber=2 Vector=225 Irql=8";
        assert_eq!(kv(l, "MessageNumber"), Some("2"));
        assert_eq!(kv(l, "Vector"), Some("225"));
        assert_eq!(kv("XVector=3 Vector=4", "Vector"), Some("4"));
        assert_eq!(kv("Vector 3", "Vector"), None);
    }

    #[test]
    fn strips_dbgview_columns_pid_and_dmesg_stamps() {
        let (s, p) = strip_prefixes("12\t0.00123400\t[4] INT: INTx");
        assert_eq!(s, "INT: INTx");
        assert!(p.dbgview_columns);
        assert_eq!(p.pid, Some(4));
        assert_eq!(p.time_ns, Some(1_234_000));
        let (s, p) = strip_prefixes("3\t12:01:02.5\tWDFINT: x");
        assert_eq!(s, "WDFINT: x");
        assert_eq!(
            p.time_ns,
            Some((12 * 3600 + 62) * 1_000_000_000 + 500_000_000)
        );
        let (s, p) = strip_prefixes("[   12.345678] irq 11: nobody cared");
        assert_eq!(s, "irq 11: nobody cared");
        assert!(p.kernel_log);
        assert_eq!(p.time_ns, Some(12_345_678_000));
        let (s, p) = strip_prefixes("Jan  1 10:00:00 guest kernel: [    1.5] virtio_pci x");
        assert_eq!(s, "virtio_pci x");
        assert!(p.kernel_log);
    }

    #[test]
    fn words_split_like_split_whitespace() {
        for s in [
            "",
            "   ",
            " 24:   1234\t0 \x0b PCI-MSI 49152-edge\x0cvirtio0-config\r",
            "a",
            "no\u{a0}break\u{3000}spaces and ascii ones",
        ] {
            assert_eq!(
                words(s).collect::<Vec<_>>(),
                s.split_whitespace().collect::<Vec<_>>(),
                "{s:?}"
            );
        }
    }

    #[test]
    fn wall_clock_with_am_pm() {
        assert_eq!(
            dbgview_time_ns("1:00:00 PM"),
            Some(13 * 3600 * 1_000_000_000)
        );
        assert_eq!(dbgview_time_ns("12:00:00 AM"), Some(0));
        assert_eq!(dbgview_time_ns("not a time"), None);
    }
}
