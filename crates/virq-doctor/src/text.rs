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

pub use virq_win7::windbg::{contains_ci, find_ci};

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
    /// DbgView's sequence and time columns were present (tab- or space-separated).
    pub dbgview_columns: bool,
    /// A tracefmt / TraceView prefix of a decoded WPP trace
    /// (`[0]0C40.0C3C::09/20/2004-14:41:31.625 [provider]`).
    pub wpp: bool,
    /// A `[PID] ` prefix (DbgView, "show process ID").
    pub pid: Option<u32>,
    /// A dmesg `[   12.345678] ` stamp or a syslog `... kernel: ` prefix.
    pub kernel_log: bool,
    /// Time from DbgView's column or dmesg's stamp, in nanoseconds.
    pub time_ns: Option<u64>,
}

/// Seconds with a fraction (`0.00012345`, `12.345678`, or `12,345678` where the locale writes
/// a decimal comma) into nanoseconds.
fn seconds_ns(s: &str) -> Option<u64> {
    let b = s.as_bytes();
    let whole = b.iter().take_while(|d| d.is_ascii_digit()).count();
    let frac = match b.get(whole) {
        None => &b[whole..],
        Some(b'.' | b',') => &b[whole + 1..],
        Some(_) => return None,
    };
    if whole == 0 || !frac.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let secs = b[..whole].iter().try_fold(0u64, |v, d| {
        v.checked_mul(10)?.checked_add(u64::from(d - b'0'))
    })?;
    // Nanoseconds: the first nine fraction digits, padded with zeros.
    let mut ns: u64 = 0;
    for i in 0..9 {
        ns = ns * 10 + frac.get(i).map_or(0, |d| u64::from(d - b'0'));
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
        Some((c, m)) => (c.trim(), Some(am_pm(m)?)),
        None => (s, None),
    };
    clock_ns(clock, ampm)
}

/// `AM` / `PM` (either case, with or without dots: `p.m.`): whether it is PM.
fn am_pm(s: &str) -> Option<bool> {
    match s.as_bytes() {
        [a, b'm' | b'M'] | [a, b'.', b'm' | b'M', b'.'] => match a.to_ascii_lowercase() {
            b'a' => Some(false),
            b'p' => Some(true),
            _ => None,
        },
        _ => None,
    }
}

/// `H:MM:SS[.fff]` (`,` also as the decimal mark, as some locales print it), on a 12-hour
/// clock when `pm` says which half.
fn clock_ns(clock: &str, pm: Option<bool>) -> Option<u64> {
    let mut parts = clock.split(':');
    let h = parts.next()?;
    let m = parts.next()?;
    let sec = parts.next()?;
    let two_digits = |t: &str| t.len() == 2 && t.bytes().all(|b| b.is_ascii_digit());
    if parts.next().is_some()
        || h.is_empty()
        || h.len() > 2
        || !h.bytes().all(|b| b.is_ascii_digit())
        || !two_digits(m)
        || !sec.get(..2).is_some_and(two_digits)
    {
        return None;
    }
    let (h, m): (u64, u64) = (h.parse().ok()?, m.parse().ok()?);
    let sec = seconds_ns(sec)?;
    if h > 23 || m > 59 || sec >= 61 * 1_000_000_000 || pm.is_some() && !(1..=12).contains(&h) {
        return None;
    }
    let h = match pm {
        Some(true) if h < 12 => h + 12,
        Some(false) if h == 12 => 0,
        _ => h,
    };
    Some((h * 3600 + m * 60) * 1_000_000_000 + sec)
}

/// `str::trim_start`, comparing bytes while they are ASCII (every line of the formats the
/// doctor reads) and characters only from the first byte that is not.
pub fn trim_start(s: &str) -> &str {
    let ascii = s.bytes().take_while(|&b| is_ascii_space(b)).count();
    match s.as_bytes().get(ascii) {
        Some(b) if !b.is_ascii() => s[ascii..].trim_start(),
        _ => &s[ascii..],
    }
}

/// Whitespace between DbgView's columns: tabs when saved, spaces when pasted, and the
/// no-break spaces some editors and browsers put in (`char::is_whitespace`).
fn skip_space(s: &str) -> (&str, bool) {
    let rest = trim_start(s);
    (rest, rest.len() < s.len())
}

/// The next run of non-whitespace and what follows it.
fn next_token(s: &str) -> (&str, &str) {
    // Bytes are compared while they are ASCII; from the first that is not, characters.
    let ascii = s
        .bytes()
        .position(|b| !b.is_ascii() || is_ascii_space(b))
        .unwrap_or(s.len());
    let end = match s.as_bytes().get(ascii) {
        Some(b) if !b.is_ascii() => {
            ascii
                + s[ascii..]
                    .find(char::is_whitespace)
                    .unwrap_or(s.len() - ascii)
        }
        _ => ascii,
    };
    (&s[..end], &s[end..])
}

/// DbgView's columns at the start of a line: a sequence number (any number of digits, leading
/// zeros or not), then the time (elapsed seconds `0.00012345`, or clock time `10:35:48 PM`,
/// `10:35:48.123`, `22:35:48`), each followed by tabs (as DbgView saves them) or spaces (as
/// people paste them). Returns the time and the text after the columns.
///
/// With spaces, the elapsed time must carry its fraction: `12 3 queues` is text, not columns.
fn dbgview_columns(line: &str) -> Option<(u64, &str)> {
    let s = if line.as_bytes().first().is_some_and(u8::is_ascii_digit) {
        line
    } else {
        line.trim_start_matches(['\u{feff}', '\u{200b}', ' ', '\t'])
    };
    let digits = s.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 || digits > 20 {
        return None;
    }
    let (rest, spaced) = skip_space(&s[digits..]);
    if !spaced {
        return None;
    }
    let tabbed = s.as_bytes()[digits] == b'\t';
    let (time, after) = next_token(rest);
    let (ns, after) = if time.contains(':') {
        // A 12-hour clock's `AM` / `PM` is a word of its own.
        let (word, past_word) = next_token(after.trim_start());
        match am_pm(word) {
            Some(pm) => (clock_ns(time, Some(pm))?, past_word),
            None => (clock_ns(time, None)?, after),
        }
    } else {
        // Pasted with spaces, only a point-separated fraction tells a time from a number
        // of the text (`8 1,024 byte sectors`).
        if !tabbed && !time.contains('.') {
            return None;
        }
        (seconds_ns(time)?, after)
    };
    let (text, spaced) = skip_space(after);
    (spaced || text.is_empty()).then_some((ns, text))
}

/// A decoded WPP trace line's prefix as tracefmt and TraceView print it by default:
/// `[CPU]PID.TID::MM/DD/YYYY-HH:MM:SS.mmm [provider]`. Returns the clock time and the text
/// after the prefix.
fn wpp_prefix(s: &str) -> Option<(Option<u64>, &str)> {
    let rest = s.strip_prefix('[')?;
    let close = rest.find(']')?;
    if close == 0 || !rest[..close].bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let hex_run = |t: &str| {
        let n = t.bytes().take_while(u8::is_ascii_hexdigit).count();
        (1..=8).contains(&n).then_some(n)
    };
    let rest = &rest[close + 1..];
    let rest = rest[hex_run(rest)?..].strip_prefix('.')?;
    let rest = rest[hex_run(rest)?..].strip_prefix("::")?;
    let (stamp, rest) = next_token(rest);
    let time = stamp
        .split_once('-')
        .and_then(|(_, clock)| clock_ns(clock, None));
    let rest = rest.trim_start();
    let provider_end = rest.strip_prefix('[').and_then(|r| r.find(']'))?;
    Some((time, &rest[provider_end + 2..]))
}

/// Strips DbgView columns, a `[PID]` prefix, a dmesg stamp or a syslog prefix; returns the text
/// that matchers look at.
pub fn strip_prefixes(line: &str) -> (&str, Prefix) {
    let mut p = Prefix::default();
    let mut s = line;
    if let Some((ns, text)) = dbgview_columns(s) {
        p.dbgview_columns = true;
        p.time_ns = Some(ns);
        s = text;
    }
    let t = s.trim_start();
    if let Some((time, text)) = wpp_prefix(t) {
        p.wpp = true;
        p.time_ns = p.time_ns.or(time);
        return (text, p);
    }
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
    /// ASCII text, split by hand without decoding.
    Ascii {
        /// The text.
        text: &'a str,
        /// Byte offset of the next word.
        pos: usize,
    },
    /// Anything else, through `str::split_whitespace`.
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

    /// Seconds as the reader read them before it went byte by byte.
    fn seconds_by_splitting(s: &str) -> Option<u64> {
        let (whole, frac) = s.split_once(['.', ',']).unwrap_or((s, ""));
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

    proptest::proptest! {
        #[test]
        fn seconds_read_as_before(s in "[0-9]{0,22}([.,][0-9]{0,12})?[.,x0-9]{0,2}") {
            proptest::prop_assert_eq!(seconds_ns(&s), seconds_by_splitting(&s));
        }

        /// The byte-wise fast paths give what the `char`-wise standard library gives, on
        /// ASCII, on Unicode spaces (no-break, ideographic) and on text mixing both.
        #[test]
        fn fast_trim_and_token_match_the_standard_library(
            s in "[ \t\r\x0b\x0c\u{a0}\u{3000}\u{85}a-z0-9é:.]{0,24}"
        ) {
            proptest::prop_assert_eq!(trim_start(&s), s.trim_start());
            let (rest, spaced) = skip_space(&s);
            proptest::prop_assert_eq!(rest, s.trim_start());
            proptest::prop_assert_eq!(spaced, s.trim_start().len() < s.len());
            let end = s.find(char::is_whitespace).unwrap_or(s.len());
            proptest::prop_assert_eq!(next_token(&s), (&s[..end], &s[end..]));
            proptest::prop_assert_eq!(seconds_ns(&s), seconds_by_splitting(&s));
        }
    }

    #[test]
    fn dbgview_columns_as_people_paste_them() {
        let clock =
            |h: u64, m: u64, s: u64, ms: u64| ((h * 3600 + m * 60 + s) * 1000 + ms) * 1_000_000;
        // (line, time, text) for every way DbgView text reaches the doctor.
        let cases: [(&str, u64, &str); 10] = [
            ("00000012\t0.00123400\tINT: x", 1_234_000, "INT: x"),
            ("12 0.00123400 INT: x", 1_234_000, "INT: x"),
            ("12      0.00123400      INT: x", 1_234_000, "INT: x"),
            ("7\t10:35:48 PM\tINT: x", clock(22, 35, 48, 0), "INT: x"),
            ("7   10:35:48 PM   INT: x", clock(22, 35, 48, 0), "INT: x"),
            ("7 12:05:01 AM INT: x", clock(0, 5, 1, 0), "INT: x"),
            ("7 10:35:48.123 INT: x", clock(10, 35, 48, 123), "INT: x"),
            ("7\t22:35:48\tINT: x", clock(22, 35, 48, 0), "INT: x"),
            ("\u{feff}1\u{a0}0.5\u{a0}INT: x", 500_000_000, "INT: x"),
            ("3\t0\t[4] INT: x", 0, "INT: x"),
        ];
        for (line, ns, text) in cases {
            let (s, p) = strip_prefixes(line);
            assert_eq!(
                (s, p.time_ns, p.dbgview_columns),
                (text, Some(ns), true),
                "{line:?}"
            );
        }
        for text in [
            "12 3 queues were set up",
            "3 0.5x text",
            "24:   1234   0   PCI-MSI 49152-edge   virtio0-config",
            "00:04.0 SCSI storage controller",
            "    40: 00000000 00000000",
            "2024-01-01 10:35:48.123 text",
            "7 10:3:48 text",
            "7 25:35:48 text",
            "7 13:35:48 PM text",
        ] {
            let (_, p) = strip_prefixes(text);
            assert!(!p.dbgview_columns, "{text:?}");
        }
    }

    #[test]
    fn wpp_trace_prefix() {
        let (s, p) = strip_prefixes(
            "[1]0004.0068::07/22/2024-10:35:48.123 [netkvm][ParaNdis_InitializeContext] Message interrupt assigned",
        );
        assert_eq!(s, "[ParaNdis_InitializeContext] Message interrupt assigned");
        assert!(p.wpp);
        assert_eq!(
            p.time_ns,
            Some(((10 * 3600 + 35 * 60 + 48) * 1000 + 123) * 1_000_000)
        );
        let (s, p) = strip_prefixes("[4] [1]0004.0068:: not a trace");
        assert!(!p.wpp);
        assert_eq!(p.pid, Some(4));
        assert_eq!(s, "[1]0004.0068:: not a trace");
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
