//! Throughput of the `virq serve` protocol: requests per second answered by the real binary,
//! over standard input/output pipes and over a Unix socket.
//!
//! Two client styles:
//! - lock-step: send one request, wait for its reply (how qtest clients drive a device; this
//!   measures the round trip through the kernel and both processes);
//! - pipelined: a writer thread streams requests while the reader consumes replies (the
//!   server's own processing rate).
//!
//! The request mix is what a driver bring-up does most: configuration cycles through
//! 0xCF8/0xCFC, common_cfg register reads through a BAR, and guest RAM reads and writes.
//!
//! Run: `cargo bench -p virq --bench serve_throughput` (`VIRQ_BENCH_RUNS=N` changes the number
//! of runs per figure; the median and the spread are printed).

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BAR0: u64 = 0xE000_0000;
const LOCKSTEP_REQUESTS: usize = 20_000;
const PIPELINED_REQUESTS: usize = 400_000;

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn virq() -> Command {
    Command::new(env!("CARGO_BIN_EXE_virq"))
}

/// Requests that place BAR0 and enable decoding (not timed).
const SETUP: &[&str] = &[
    "outl 0xcf8 0x80000810",
    "outl 0xcfc 0xe0000000",
    "outl 0xcf8 0x80000814",
    "outl 0xcfc 0",
    "outl 0xcf8 0x80000804",
    "outw 0xcfc 6",
];

/// The timed mix, repeated; each request with its newline, so one write sends it.
fn mix() -> Vec<String> {
    let m: Vec<String> = vec![
        "outl 0xcf8 0x80000800".into(),
        "inl 0xcfc".into(),
        format!("readw {:#x}", BAR0 + 0x10),
        format!("readl {:#x}", BAR0 + 0x04),
        "writel 0x10000 0x12345678".into(),
        "readl 0x10000".into(),
        "readq 0x10008".into(),
        "read 0x10000 16".into(),
    ];
    m.into_iter().map(|r| r + "\n").collect()
}

fn requests(n: usize) -> Vec<u8> {
    let m = mix();
    let mut out = Vec::new();
    for i in 0..n {
        out.extend_from_slice(m[i % m.len()].as_bytes());
    }
    out
}

/// Run SETUP, then the timed part; returns requests per second.
fn lockstep(r: &mut impl BufRead, w: &mut impl Write) -> f64 {
    let mut line = String::new();
    for s in SETUP {
        w.write_all(format!("{s}\n").as_bytes()).unwrap();
        line.clear();
        r.read_line(&mut line).unwrap();
        assert_eq!(line, "OK\n");
    }
    let m = mix();
    let start = Instant::now();
    for i in 0..LOCKSTEP_REQUESTS {
        w.write_all(m[i % m.len()].as_bytes()).unwrap();
        line.clear();
        r.read_line(&mut line).unwrap();
        assert!(line.starts_with("OK"), "{line}");
    }
    LOCKSTEP_REQUESTS as f64 / start.elapsed().as_secs_f64()
}

fn pipelined(mut r: impl BufRead, mut w: impl Write + Send + 'static) -> f64 {
    let mut line = String::new();
    for s in SETUP {
        w.write_all(format!("{s}\n").as_bytes()).unwrap();
        line.clear();
        r.read_line(&mut line).unwrap();
        assert_eq!(line, "OK\n");
    }
    let body = requests(PIPELINED_REQUESTS);
    let start = Instant::now();
    let writer = std::thread::spawn(move || {
        w.write_all(&body).unwrap();
        w.flush().unwrap();
        w
    });
    let mut replies = 0usize;
    let mut buf = vec![0u8; 1 << 16];
    let mut reader = r;
    while replies < PIPELINED_REQUESTS {
        let n = reader.read(&mut buf).unwrap();
        assert!(n > 0, "server closed early");
        replies += buf[..n].iter().filter(|&&b| b == b'\n').count();
    }
    let rate = PIPELINED_REQUESTS as f64 / start.elapsed().as_secs_f64();
    drop(writer.join().unwrap());
    rate
}

fn stdio_server() -> (
    Server,
    BufReader<std::process::ChildStdout>,
    std::process::ChildStdin,
) {
    let mut child = virq()
        .arg("serve")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start virq serve");
    let stdin = child.stdin.take().unwrap();
    let stdout = BufReader::new(child.stdout.take().unwrap());
    (Server(child), stdout, stdin)
}

fn connect(path: &std::path::Path) -> UnixStream {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match UnixStream::connect(path) {
            Ok(s) => return s,
            Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
            Err(e) => panic!("connect: {e}"),
        }
    }
}

fn summary(name: &str, mut rates: Vec<f64>) {
    rates.sort_by(|a, b| a.total_cmp(b));
    let median = rates[rates.len() / 2];
    let (min, max) = (rates[0], rates[rates.len() - 1]);
    println!(
        "{name:<28} median {:>10.0} req/s   min {:>10.0}   max {:>10.0}   ({} runs, spread {:.1}%)",
        median,
        min,
        max,
        rates.len(),
        100.0 * (max - min) / median
    );
}

fn main() {
    let runs: usize = std::env::var("VIRQ_BENCH_RUNS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(7)
        .max(1);
    println!(
        "virq serve protocol throughput: lock-step {LOCKSTEP_REQUESTS} requests, pipelined \
         {PIPELINED_REQUESTS} requests per run"
    );

    summary(
        "stdio lock-step",
        (0..runs)
            .map(|_| {
                let (_s, mut r, mut w) = stdio_server();
                lockstep(&mut r, &mut w)
            })
            .collect(),
    );
    summary(
        "stdio pipelined",
        (0..runs)
            .map(|_| {
                let (_s, r, w) = stdio_server();
                pipelined(r, w)
            })
            .collect(),
    );

    let dir = std::env::temp_dir().join(format!("virq-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("serve.sock");
    let _server = Server(
        virq()
            .arg("serve")
            .arg("--socket")
            .arg(&path)
            .stdin(Stdio::null())
            .spawn()
            .unwrap(),
    );
    summary(
        "unix socket lock-step",
        (0..runs)
            .map(|_| {
                let s = connect(&path);
                let mut r = BufReader::new(s.try_clone().unwrap());
                let mut w = s;
                lockstep(&mut r, &mut w)
            })
            .collect(),
    );
    summary(
        "unix socket pipelined",
        (0..runs)
            .map(|_| {
                let s = connect(&path);
                let r = BufReader::new(s.try_clone().unwrap());
                pipelined(r, s)
            })
            .collect(),
    );
    let _ = std::fs::remove_dir_all(&dir);
}
