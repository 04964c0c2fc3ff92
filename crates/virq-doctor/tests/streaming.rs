//! A ~20 MB capture is parsed as a stream: events arrive while most of the input has not been
//! produced yet, and a 20 MB line without a newline costs one bounded line buffer.

use std::io::{BufReader, Read};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use virq_doctor::{ParseLimits, parse_reader};
use virq_events::EventKind;

/// Generates a DbgView capture on the fly (nothing is ever held whole): noise lines, with a
/// counter summary every 10,000 lines. `produced` tells how far generation has got.
struct Capture {
    total_lines: u64,
    next_line: u64,
    pending: Vec<u8>,
    pos: usize,
    produced: Arc<AtomicU64>,
}

impl Capture {
    fn line(n: u64) -> String {
        if n % 10_000 == 0 {
            format!(
                "{n}\t{}.000100\tCOUNTERS: MessageNumber=1 isr={n} dpc={n} LastMessageID=1\r\n",
                n / 1000
            )
        } else {
            format!(
                "{n}\t{}.000100\t[812] storport: srb completed, status ok, length 4096\r\n",
                n / 1000
            )
        }
    }
}

impl Read for Capture {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.pos == self.pending.len() {
            if self.next_line >= self.total_lines {
                return Ok(0);
            }
            self.next_line += 1;
            self.pending = Self::line(self.next_line).into_bytes();
            self.pos = 0;
        }
        let n = buf.len().min(self.pending.len() - self.pos).min(4093);
        buf[..n].copy_from_slice(&self.pending[self.pos..self.pos + n]);
        self.pos += n;
        self.produced.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

#[test]
fn twenty_megabytes_stream_through_without_being_held() {
    let produced = Arc::new(AtomicU64::new(0));
    let capture = Capture {
        total_lines: 300_000,
        next_line: 0,
        pending: Vec::new(),
        pos: 0,
        produced: produced.clone(),
    };
    let mut counters = 0u64;
    let mut produced_at_first_event = None;
    let summary = parse_reader(
        "big.log",
        BufReader::with_capacity(8192, capture),
        ParseLimits::default(),
        |e| {
            if let EventKind::CounterSummary { isr_count, .. } = e.kind {
                counters += 1;
                assert_eq!(isr_count % 10_000, 0);
                produced_at_first_event.get_or_insert(produced.load(Ordering::Relaxed));
            }
        },
    )
    .unwrap();
    assert!(summary.bytes > 20_000_000, "{} bytes", summary.bytes);
    assert_eq!(summary.lines, 300_000);
    assert_eq!(counters, 30);
    let first = produced_at_first_event.unwrap();
    assert!(first < 1_000_000, "first event only after {first} bytes");
}

/// Yields `len` bytes of `x` and no newline at all.
struct OneLine {
    left: u64,
}

impl Read for OneLine {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = (buf.len() as u64).min(self.left) as usize;
        buf[..n].fill(b'x');
        self.left -= n as u64;
        Ok(n)
    }
}

#[test]
fn a_twenty_megabyte_line_is_cut_not_loaded() {
    let input = (&b"INT: INTx Level=11 Vector=11 Affinity=0x1 Flags=0x0\n"[..])
        .chain(OneLine { left: 20 << 20 })
        .chain(&b"\nCOUNTERS: INTx isr=5 dpc=5 LastIsrStatus=0x01\n"[..]);
    let mut lines = Vec::new();
    let summary = parse_reader(
        "one-line.log",
        BufReader::with_capacity(64 * 1024, input),
        ParseLimits::default(),
        |e| {
            if let virq_events::Origin::File { line, text, .. } = e.origin {
                assert!(text.len() <= 64 * 1024);
                lines.push(line);
            }
        },
    )
    .unwrap();
    assert_eq!(summary.truncated_lines, 1);
    assert_eq!(summary.lines, 3);
    // Line 3 is a counter summary and, from its non-zero LastIsrStatus, an ISR status read.
    // Then the file says what it was (line 0).
    assert_eq!(lines, [1, 3, 3, 0]);
}
