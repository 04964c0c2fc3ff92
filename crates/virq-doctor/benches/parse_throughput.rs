//! How fast the doctor reads a big capture: MB/s of the doctor reading a file into the judge
//! (format detection, line splitting, matching, events, judging) on a generated 100 MB DbgView capture and a generated
//! 100 MB `/proc/interrupts` file, with `wc -l` on the same file timed in the same run as the
//! floor (the cost of just reading the bytes and finding the newlines).
//!
//! Run: `cargo bench -p virq-doctor --bench parse_throughput`. `VIRQ_BENCH_MB=N` changes the
//! file size, `VIRQ_BENCH_RUNS=N` the number of timed runs of the summary (median and spread
//! printed); criterion's own statistics follow unless `VIRQ_BENCH_SUMMARY_ONLY=1`. The summary
//! also prints the process's peak resident memory (`VmHWM` in /proc/self/status): with
//! `VIRQ_BENCH_MB=1024` it shows what reading a 1 GiB log costs in memory.

use criterion::{Criterion, Throughput};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};
use virq_doctor::Doctor;

fn size_mb() -> u64 {
    std::env::var("VIRQ_BENCH_MB")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(100)
}

fn runs() -> usize {
    std::env::var("VIRQ_BENCH_RUNS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(7)
}

/// A DbgView capture as saved (numbered, timed, CRLF): a driver's start-up prints, then a long
/// run of driver chatter, periodic counter summaries and sampled ISR lines.
fn write_dbgview(path: &Path, bytes: u64) {
    let mut w = BufWriter::with_capacity(1 << 20, std::fs::File::create(path).unwrap());
    let start = [
        "virqblk: EvtDevicePrepareHardware 00:01.0 VEN_1AF4",
        "INT: MSI/MSI-X Level=13 Vector=209 Affinity=0x3 MessageCount=1 Flags=0x3",
        "INT: MSI/MSI-X Level=12 Vector=193 Affinity=0x3 MessageCount=1 Flags=0x3",
        "WDFINT: MessageSignaled=1 MessageNumber=0 Vector=209 Irql=13 Affinity=0x3",
        "WDFINT: MessageSignaled=1 MessageNumber=1 Vector=193 Irql=12 Affinity=0x3",
        "VIRTIO: device_status write=0x00",
        "VIRTIO: msix_config write=0x0000 read=0x0000 MessageNumber=0",
        "VIRTIO: queue=0 queue_msix_vector write=0x0001 read=0x0001 MessageNumber=1",
        "VIRTIO: device_status write=0x0f",
    ];
    let chatter = [
        "storport: srb 0x%x completed, status 0x01, 4096 bytes",
        "[1204] svchost.exe: RPC call completed in 12 ms",
        "virqblk: request 0x%x sector 2048 len 4096 queued on queue 0",
        "ndis: link state unchanged, 1000 Mbps full duplex",
        "virqblk: DPC drained 3 used buffers on queue 0",
    ];
    let (mut written, mut seq, mut n) = (0u64, 0u64, 0u64);
    let mut line = String::new();
    while written < bytes {
        line.clear();
        let text: String = if (seq as usize) < start.len() {
            start[seq as usize].to_string()
        } else if n % 512 == 0 {
            format!(
                "COUNTERS: MessageNumber=1 isr={} dpc={} LastMessageID=1",
                n, n
            )
        } else if n % 97 == 0 {
            "ISR: MessageSignaled=1 MessageID=1 IsrStatusRead=0 IsrStatus=0x00 Return=1".to_string()
        } else {
            chatter[(n % chatter.len() as u64) as usize].replace("%x", &format!("{:x}", n))
        };
        n += 1;
        use std::fmt::Write as _;
        let _ = write!(
            line,
            "{seq:08}\t{}.{:08}\t{text}\r\n",
            seq / 100_000,
            seq % 100_000
        );
        w.write_all(line.as_bytes()).unwrap();
        written += line.len() as u64;
        seq += 1;
    }
    w.flush().unwrap();
}

/// Repeated `/proc/interrupts` snapshots of a 4-CPU guest, each with its header.
fn write_proc_interrupts(path: &Path, bytes: u64) {
    let mut w = BufWriter::with_capacity(1 << 20, std::fs::File::create(path).unwrap());
    let (mut written, mut snap) = (0u64, 0u64);
    let mut buf = String::new();
    while written < bytes {
        use std::fmt::Write as _;
        buf.clear();
        let _ = writeln!(buf, "           CPU0       CPU1       CPU2       CPU3");
        let rows: [(&str, &str); 12] = [
            ("0", "IO-APIC    2-edge      timer"),
            ("1", "IO-APIC    1-edge      i8042"),
            ("8", "IO-APIC    8-edge      rtc0"),
            ("9", "IO-APIC    9-fasteoi   acpi"),
            ("11", "IO-APIC   11-fasteoi   uhci_hcd:usb1, virtio2"),
            ("24", "PCI-MSI 49152-edge      virtio0-config"),
            ("25", "PCI-MSI 49153-edge      virtio0-req.0"),
            ("26", "PCI-MSI 49154-edge      virtio0-req.1"),
            ("27", "PCI-MSI 65536-edge      virtio1-config"),
            ("28", "PCI-MSI 65537-edge      virtio1-input.0"),
            ("29", "PCI-MSI 65538-edge      virtio1-output.0"),
            ("30", "PCI-MSI 81920-edge      ahci[0000:00:1f.2]"),
        ];
        for (i, (irq, tail)) in rows.iter().enumerate() {
            let c = snap * 1000 + i as u64 * 37;
            let _ = writeln!(
                buf,
                "{irq:>3}: {:>10} {:>10} {:>10} {:>10}   {tail}",
                c,
                c / 2,
                c / 3,
                c / 5
            );
        }
        for name in ["NMI", "LOC", "SPU", "PMI", "IWI", "RES", "CAL", "TLB"] {
            let _ = writeln!(
                buf,
                "{name}: {:>10} {:>10} {:>10} {:>10}   Some per-CPU counter",
                snap, snap, snap, snap
            );
        }
        w.write_all(buf.as_bytes()).unwrap();
        written += buf.len() as u64;
        snap += 1;
    }
    w.flush().unwrap();
}

/// Writes a generated file of about the given size.
type Writer = fn(&Path, u64);

fn parse(path: &Path) -> usize {
    let mut d = Doctor::new();
    let events = d.read_file(path).expect("parses").event_count() as usize;
    std::hint::black_box(d.finish());
    events
}

fn wc_l(path: &Path) -> Option<Duration> {
    let t = Instant::now();
    let out = Command::new("wc").arg("-l").arg(path).output().ok()?;
    out.status.success().then(|| t.elapsed())
}

/// The process's peak resident set so far, MiB (Linux `VmHWM`).
fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

fn median_spread(mut v: Vec<Duration>) -> (Duration, Duration, Duration) {
    v.sort();
    (v[v.len() / 2], v[0], v[v.len() - 1])
}

fn mbps(bytes: u64, d: Duration) -> f64 {
    bytes as f64 / 1e6 / d.as_secs_f64()
}

/// Median and spread of our parse and of `wc -l`, interleaved so both see the same page cache.
fn summary(name: &str, path: &Path) {
    let bytes = std::fs::metadata(path).unwrap().len();
    let _ = parse(path);
    let _ = wc_l(path);
    let (mut ours, mut wc) = (Vec::new(), Vec::new());
    let mut events = 0;
    for _ in 0..runs() {
        let t = Instant::now();
        events = parse(path);
        ours.push(t.elapsed());
        if let Some(d) = wc_l(path) {
            wc.push(d);
        }
    }
    let (m, lo, hi) = median_spread(ours);
    println!(
        "{name}: {:.1} MB, {events} events; doctor median {:.3} s = {:.0} MB/s (runs {:.0}-{:.0} MB/s, n={})",
        bytes as f64 / 1e6,
        m.as_secs_f64(),
        mbps(bytes, m),
        mbps(bytes, hi),
        mbps(bytes, lo),
        runs()
    );
    if let Some(mib) = peak_rss_mib() {
        println!("{name}: peak resident memory of the process so far {mib:.1} MiB (VmHWM)");
    }
    if wc.is_empty() {
        println!("{name}: wc -l not available, no floor");
        return;
    }
    let (wm, wlo, whi) = median_spread(wc);
    println!(
        "{name}: wc -l median {:.3} s = {:.0} MB/s (runs {:.0}-{:.0} MB/s); doctor takes {:.1}x wc -l",
        wm.as_secs_f64(),
        mbps(bytes, wm),
        mbps(bytes, whi),
        mbps(bytes, wlo),
        m.as_secs_f64() / wm.as_secs_f64()
    );
}

fn main() {
    let dir = std::env::temp_dir().join(format!("virq-doctor-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bytes = size_mb() << 20;
    let files: [(&str, PathBuf, Writer); 2] = [
        ("dbgview", dir.join("capture.log"), write_dbgview),
        (
            "proc_interrupts",
            dir.join("interrupts.txt"),
            write_proc_interrupts,
        ),
    ];
    for (_, path, write) in &files {
        write(path, bytes);
    }
    for (name, path, _) in &files {
        summary(name, path);
    }
    if std::env::var_os("VIRQ_BENCH_SUMMARY_ONLY").is_some() {
        std::fs::remove_dir_all(&dir).ok();
        return;
    }
    let mut c = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(20))
        .configure_from_args();
    let mut g = c.benchmark_group("doctor_parse");
    for (name, path, _) in &files {
        let len = std::fs::metadata(path).unwrap().len();
        g.throughput(Throughput::Bytes(len));
        g.bench_function(*name, |b| b.iter(|| parse(path)));
        g.bench_function(format!("{name}_wc_l"), |b| b.iter(|| wc_l(path)));
    }
    g.finish();
    c.final_summary();
    std::fs::remove_dir_all(&dir).ok();
}
