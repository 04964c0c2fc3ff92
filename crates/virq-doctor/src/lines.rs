//! A bounded, streaming line reader.
//!
//! `BufRead::read_line` grows its buffer without limit, so one 2 GB line (a capture with no
//! newlines, or a binary blob) would exhaust memory. This reader copies at most
//! `max_line_bytes` of each line and skips the rest, counting the lines it cut. It also watches
//! the first KiB for NUL bytes, the cheapest reliable sign that a file is not text.

use std::io::{self, BufRead};

/// How many leading bytes are checked for NUL to call a file binary.
pub const BINARY_SNIFF_BYTES: u64 = 1024;

/// Lines longer than this are cut to this many bytes by default (64 KiB).
pub const DEFAULT_MAX_LINE_BYTES: usize = 64 * 1024;

/// One line as read: 1-based number, decoded text (lossy UTF-8, no line terminator).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    /// 1-based line number in the file.
    pub number: u64,
    /// The line's text, decoded as lossy UTF-8, without its terminator.
    pub text: String,
    /// The line was longer than the limit and its tail was dropped.
    pub truncated: bool,
}

/// Reads lines from any `BufRead` holding at most one (bounded) line in memory.
#[derive(Debug)]
pub struct LineReader<R> {
    inner: R,
    max_line_bytes: usize,
    buf: Vec<u8>,
    line_no: u64,
    offset: u64,
    truncated_lines: u64,
    first_nul: Option<u64>,
    saw_text: bool,
}

impl<R: BufRead> LineReader<R> {
    /// A reader of `inner` that cuts lines at `max_line_bytes`.
    pub fn new(inner: R, max_line_bytes: usize) -> Self {
        Self {
            inner,
            max_line_bytes: max_line_bytes.max(1),
            buf: Vec::new(),
            line_no: 0,
            offset: 0,
            truncated_lines: 0,
            first_nul: None,
            saw_text: false,
        }
    }

    /// Bytes consumed so far.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Lines read so far.
    pub fn line_count(&self) -> u64 {
        self.line_no
    }

    /// Lines cut at the length limit so far.
    pub fn truncated_lines(&self) -> u64 {
        self.truncated_lines
    }

    /// Offset of the first NUL byte seen within the first [`BINARY_SNIFF_BYTES`].
    pub fn first_nul(&self) -> Option<u64> {
        self.first_nul
    }

    /// Whether any non-whitespace byte has been read (an all-blank file counts as empty).
    pub fn saw_text(&self) -> bool {
        self.saw_text
    }

    /// The next line, or `None` at end of input.
    pub fn next_line(&mut self) -> io::Result<Option<Line>> {
        let mut line = Line {
            number: 0,
            text: String::new(),
            truncated: false,
        };
        Ok(self.next_line_into(&mut line)?.then_some(line))
    }

    /// Reads the next line into `line`, reusing its buffer (no allocation per line once the
    /// buffer has grown); `false` at end of input.
    pub fn next_line_into(&mut self, line: &mut Line) -> io::Result<bool> {
        self.buf.clear();
        let mut any = false;
        let mut truncated = false;
        loop {
            let avail = match self.inner.fill_buf() {
                Ok(b) => b,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if avail.is_empty() {
                break;
            }
            any = true;
            let newline = memchr::memchr(b'\n', avail);
            let chunk = &avail[..newline.unwrap_or(avail.len())];
            if self.offset < BINARY_SNIFF_BYTES && self.first_nul.is_none() {
                let window = (BINARY_SNIFF_BYTES - self.offset) as usize;
                if let Some(i) = memchr::memchr(0, &chunk[..chunk.len().min(window)]) {
                    self.first_nul = Some(self.offset + i as u64);
                }
            }
            if !self.saw_text && chunk.iter().any(|b| !b.is_ascii_whitespace()) {
                self.saw_text = true;
            }
            let room = self.max_line_bytes.saturating_sub(self.buf.len());
            if chunk.len() > room {
                truncated = true;
                self.buf.extend_from_slice(&chunk[..room]);
            } else {
                self.buf.extend_from_slice(chunk);
            }
            let used = chunk.len() + usize::from(newline.is_some());
            self.inner.consume(used);
            self.offset += used as u64;
            if newline.is_some() {
                break;
            }
        }
        if !any {
            return Ok(false);
        }
        self.line_no += 1;
        if truncated {
            self.truncated_lines += 1;
        }
        if !truncated && self.buf.last() == Some(&b'\r') {
            self.buf.pop();
        }
        let mut bytes: &[u8] = &self.buf;
        if self.line_no == 1 {
            bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
        }
        line.number = self.line_no;
        line.truncated = truncated;
        line.text.clear();
        match std::str::from_utf8(bytes) {
            Ok(s) => line.text.push_str(s),
            Err(_) => line.text.push_str(&String::from_utf8_lossy(bytes)),
        }
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(input: &[u8], max: usize) -> Vec<Line> {
        let mut r = LineReader::new(input, max);
        let mut out = Vec::new();
        while let Some(l) = r.next_line().unwrap() {
            out.push(l);
        }
        out
    }

    #[test]
    fn splits_lf_and_crlf_and_keeps_a_last_unterminated_line() {
        let lines = all(b"a\r\nb\n\nc", 100);
        let texts: Vec<_> = lines.iter().map(|l| l.text.as_str()).collect();
        assert_eq!(texts, ["a", "b", "", "c"]);
        assert_eq!(lines[3].number, 4);
    }

    #[test]
    fn cuts_long_lines_and_counts_them() {
        let mut input = vec![b'x'; 50];
        input.extend_from_slice(b"\nshort\n");
        let mut r = LineReader::new(&input[..], 8);
        let first = r.next_line().unwrap().unwrap();
        assert_eq!(first.text, "xxxxxxxx");
        assert!(first.truncated);
        assert_eq!(r.next_line().unwrap().unwrap().text, "short");
        assert_eq!(r.truncated_lines(), 1);
        assert_eq!(r.offset(), 57);
    }

    #[test]
    fn notices_nul_only_in_the_first_kib() {
        let mut r = LineReader::new(&b"ab\0c\n"[..], 100);
        r.next_line().unwrap();
        assert_eq!(r.first_nul(), Some(2));
        let mut late = vec![b'a'; 2000];
        late.push(0);
        let mut r = LineReader::new(&late[..], 100);
        r.next_line().unwrap();
        assert_eq!(r.first_nul(), None);
    }

    #[test]
    fn decodes_invalid_utf8_lossily_and_drops_a_bom() {
        let lines = all(b"\xEF\xBB\xBFok \xFF\n", 100);
        assert_eq!(lines[0].text, "ok \u{FFFD}");
    }
}
