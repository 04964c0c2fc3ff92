//! Throughput through the C API, with the Rust API as the same-run baseline.
//!
//! The same device (virtio-blk, MSI-X per queue, default transport options) and the same
//! driver code (`tests/common`) run twice: once through the exported `extern "C"` functions (a
//! C caller's path: NULL and poison checks, re-entry guard, the device's lock, `catch_unwind`,
//! width checks) and once through `VirtioPciDevice`'s own methods. Three paths:
//!
//! * `config_read`: a 4-byte configuration read (Vendor/Device ID);
//! * `mmio_read`: a 2-byte MMIO read of `msix_config`, decoded against the BARs;
//! * `blk_request`: the driver re-posts a one-sector virtio-blk read (descriptors, available
//!   ring) and writes the notify register; the device walks the chain, copies 512 bytes into
//!   guest RAM, publishes the used entry and sends the MSI-X message (to no callback on the C
//!   side, to `NullInterruptSink` on the Rust side).
//!
//! After criterion's groups (under `cargo bench` only), a same-run summary alternates C and
//! Rust in short rounds and prints the median ns per access, the `[min..max]` over rounds, the
//! C / Rust ratio and the machine's load average.
// Calling the exported `extern "C"` functions is unsafe, as it is for a C caller.
#![allow(unsafe_code)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::cell::RefCell;
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use criterion::{Criterion, criterion_group};
use virq_backends::{Block, BlockConfig, MemoryStorage};
use virq_capi::*;
use virq_device::testing::NullInterruptSink;
use virq_device::{GuestMemory, TransportOptions, VecMemory, VirtioPciDevice};

/// The baseline: the device through its Rust API, over a `VecMemory` of the same size.
struct RustRig {
    dev: RefCell<VirtioPciDevice>,
    ram: VecMemory,
}

impl RustRig {
    fn new() -> Self {
        let ram = VecMemory::new(RAM_BYTES);
        let backend = Block::new(
            MemoryStorage::from_bytes(disk_image(2048)),
            BlockConfig::default(),
        )
        .unwrap();
        let dev = VirtioPciDevice::new(
            Box::new(backend),
            ram.clone(),
            Arc::new(NullInterruptSink),
            TransportOptions::default(),
        )
        .unwrap();
        RustRig {
            dev: RefCell::new(dev),
            ram,
        }
    }
}

impl Bus for RustRig {
    fn cfg_read(&self, offset: u16, width: u32) -> u32 {
        let mut b = [0u8; 4];
        self.dev
            .borrow_mut()
            .config_read(offset, &mut b[..width as usize]);
        u32::from_le_bytes(b)
    }
    fn cfg_write(&self, offset: u16, width: u32, value: u32) {
        self.dev
            .borrow_mut()
            .config_write(offset, &value.to_le_bytes()[..width as usize]);
    }
    fn read(&self, addr: u64, width: u32) -> u64 {
        let mut b = [0u8; 8];
        assert!(
            self.dev
                .borrow_mut()
                .mmio_read(addr, &mut b[..width as usize])
        );
        u64::from_le_bytes(b)
    }
    fn write(&self, addr: u64, width: u32, value: u64) {
        assert!(
            self.dev
                .borrow_mut()
                .mmio_write(addr, &value.to_le_bytes()[..width as usize])
        );
    }
    fn ram_write(&self, gpa: u64, data: &[u8]) {
        self.ram.write(gpa, data).unwrap();
    }
    fn ram_read(&self, gpa: u64, len: usize) -> Vec<u8> {
        let mut v = vec![0; len];
        self.ram.read(gpa, &mut v).unwrap();
        v
    }
}

/// A live blk device on either side, with its driver.
fn live<B: Bus>(bus: &B) -> BlkDriver {
    bus.place_bars();
    bus.program_entry(0, 0xFEE0_0000, 0x41);
    bus.program_entry(1, 0xFEE0_0000, 0x42);
    bus.enable_msix();
    BlkDriver::bring_up(bus, Some((0, 1)))
}

fn c_device() -> Dev {
    let image = disk_image(2048);
    let cfg = VirqDeviceConfig {
        disk_sectors: 2048,
        disk_image: image.as_ptr(),
        ..config(VirqDeviceType::Blk)
    };
    // No callbacks: the baseline's sink (NullInterruptSink) does nothing either, and the
    // tests' recording callbacks would time a Mutex and a growing Vec, not the library.
    Dev::with(
        &cfg,
        Wants {
            irqs: false,
            events_callback: false,
        },
    )
    .unwrap()
}

/// The C path of each access, calling the exported functions directly (no assert per call).
fn c_config_read(d: &Dev) -> u32 {
    let mut v = 0;
    // SAFETY: a live device and a valid output.
    unsafe { virq_config_read(d.raw, 0, 4, &mut v) };
    v
}

fn c_mmio_read(d: &Dev) -> u64 {
    let mut v = 0;
    // SAFETY: a live device and a valid output.
    unsafe { virq_mmio_read(d.raw, COMMON + 0x10, 2, &mut v) };
    v
}

fn rust_config_read(r: &RustRig) -> u32 {
    let mut b = [0u8; 4];
    r.dev.borrow_mut().config_read(0, &mut b);
    u32::from_le_bytes(b)
}

fn rust_mmio_read(r: &RustRig) -> u64 {
    let mut b = [0u8; 2];
    r.dev.borrow_mut().mmio_read(COMMON + 0x10, &mut b);
    u64::from(u16::from_le_bytes(b))
}

fn request<B: Bus>(bus: &B, drv: &mut BlkDriver) {
    drv.post(bus, 0, 3);
    drv.kick(bus);
}

fn capi(c: &mut Criterion) {
    let cdev = c_device();
    let mut cdrv = live(&cdev);
    let rust = RustRig::new();
    let mut rdrv = live(&rust);

    let mut g = c.benchmark_group("config_read");
    g.bench_function("rust", |b| b.iter(|| black_box(rust_config_read(&rust))));
    g.bench_function("c_api", |b| b.iter(|| black_box(c_config_read(&cdev))));
    g.finish();
    let mut g = c.benchmark_group("mmio_read");
    g.bench_function("rust", |b| b.iter(|| black_box(rust_mmio_read(&rust))));
    g.bench_function("c_api", |b| b.iter(|| black_box(c_mmio_read(&cdev))));
    g.finish();
    let mut g = c.benchmark_group("blk_request");
    g.bench_function("rust", |b| b.iter(|| request(&rust, &mut rdrv)));
    g.bench_function("c_api", |b| b.iter(|| request(&cdev, &mut cdrv)));
    g.finish();
    // The requests completed on both sides (the loops above cannot pass over nothing).
    assert_eq!(BlkDriver::used_idx(&cdev), cdrv.avail_idx);
    assert_eq!(BlkDriver::used_idx(&rust), rdrv.avail_idx);
}

/// ns per access of `f` over `n` calls.
fn round(n: u32, mut f: impl FnMut()) -> f64 {
    let t = Instant::now();
    for _ in 0..n {
        f();
    }
    t.elapsed().as_nanos() as f64 / f64::from(n)
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// Interleaved rounds of C and Rust, so both see the same machine load.
fn same_run_summary() {
    let cdev = c_device();
    let mut cdrv = live(&cdev);
    let rust = RustRig::new();
    let mut rdrv = live(&rust);
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "\nsame-run summary (201 interleaved rounds; load average {})",
        load.trim()
    );
    println!(
        "{:<12} {:>12} {:>22} {:>12} {:>22} {:>8} {:>14}",
        "path", "rust ns", "[min..max]", "c_api ns", "[min..max]", "ratio", "c_api M/s"
    );
    let paths: [(&str, u32); 3] = [
        ("config_read", 20_000),
        ("mmio_read", 20_000),
        ("blk_request", 2_000),
    ];
    for (name, n) in paths {
        let (mut r, mut c) = (Vec::new(), Vec::new());
        for _ in 0..201 {
            match name {
                "config_read" => {
                    r.push(round(n, || {
                        black_box(rust_config_read(&rust));
                    }));
                    c.push(round(n, || {
                        black_box(c_config_read(&cdev));
                    }));
                }
                "mmio_read" => {
                    r.push(round(n, || {
                        black_box(rust_mmio_read(&rust));
                    }));
                    c.push(round(n, || {
                        black_box(c_mmio_read(&cdev));
                    }));
                }
                _ => {
                    r.push(round(n, || request(&rust, &mut rdrv)));
                    c.push(round(n, || request(&cdev, &mut cdrv)));
                }
            }
        }
        let (rmin, rmax) = (
            r.iter().copied().fold(f64::MAX, f64::min),
            r.iter().copied().fold(0.0, f64::max),
        );
        let (cmin, cmax) = (
            c.iter().copied().fold(f64::MAX, f64::min),
            c.iter().copied().fold(0.0, f64::max),
        );
        let (rm, cm) = (median(&mut r), median(&mut c));
        println!(
            "{name:<12} {rm:>12.1} {:>22} {cm:>12.1} {:>22} {:>7.2}x {:>14.2}",
            format!("[{rmin:.1}..{rmax:.1}]"),
            format!("[{cmin:.1}..{cmax:.1}]"),
            cm / rm,
            1e3 / cm
        );
    }
    assert_eq!(BlkDriver::used_idx(&cdev), cdrv.avail_idx);
    assert_eq!(BlkDriver::used_idx(&rust), rdrv.avail_idx);
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = capi
}

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
    // `cargo test` runs benches once in test mode: the summary is for `cargo bench` only.
    if std::env::args().any(|a| a == "--bench") {
        same_run_summary();
    }
}
