//! virtio-blk over an in-memory disk, two comparisons measured in the same run:
//!
//! * `blk/*`: 4 KiB reads and writes at queue depth 1 and 32 through `Block::process_queue`
//!   alone, against a `memcpy` of the same bytes (the physical limit). Each request is the
//!   usual three-descriptor chain (16-byte header, 4 KiB data, status byte), laid out once;
//!   every iteration the driver re-posts the depth's worth of heads and bumps the index.
//! * `notify/*`: one 4 KiB read per notify through the whole device (transport, ring, `Block`,
//!   used entry, interrupt decision, MSI-X message) against the same read served by bare
//!   `virtio-queue` over `vm-memory` (see `support/notify.rs`).

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group};

#[path = "support/notify.rs"]
mod notify;
use virq_backends::{Block, BlockConfig, MemoryStorage};
use virq_device::ring::{RingPart, SplitQueue};
use virq_device::{Dma, GuestMemory, VecMemory, VirtioBackend, Virtqueue};
use virq_spec::blk::{VIRTIO_BLK_T_IN, VIRTIO_BLK_T_OUT};
use virq_spec::ring::{VRING_DESC_F_NEXT, VRING_DESC_F_WRITE};

const BLOCK: usize = 4096;
const QUEUE_SIZE: u16 = 256;
const DESC: u64 = 0x1000;
const AVAIL: u64 = 0x2000;
const USED: u64 = 0x3000;
const HEADERS: u64 = 0x8000;
const STATUS: u64 = 0x9000;
const DATA: u64 = 0x10_0000;
const DISK: usize = 1 << 20;

struct Rig {
    mem: VecMemory,
    queue: SplitQueue,
    blk: Block<MemoryStorage>,
    avail_idx: u16,
    depth: u16,
}

fn desc(mem: &VecMemory, i: u16, addr: u64, len: u32, flags: u16, next: u16) {
    let mut d = [0u8; 16];
    d[0..8].copy_from_slice(&addr.to_le_bytes());
    d[8..12].copy_from_slice(&len.to_le_bytes());
    d[12..14].copy_from_slice(&flags.to_le_bytes());
    d[14..16].copy_from_slice(&next.to_le_bytes());
    mem.write(DESC + 16 * u64::from(i), &d).unwrap();
}

impl Rig {
    fn new(write: bool, depth: u16) -> Rig {
        let mem = VecMemory::new(4 << 20);
        let request = if write {
            VIRTIO_BLK_T_OUT
        } else {
            VIRTIO_BLK_T_IN
        };
        let data_flags = if write { 0 } else { VRING_DESC_F_WRITE };
        for r in 0..depth {
            let head = 3 * r;
            let header = HEADERS + 16 * u64::from(r);
            let mut h = [0u8; 16];
            h[0..4].copy_from_slice(&request.to_le_bytes());
            let sector = u64::from(r) * (BLOCK as u64 / 512);
            h[8..16].copy_from_slice(&sector.to_le_bytes());
            mem.write(header, &h).unwrap();
            let next = VRING_DESC_F_NEXT;
            desc(&mem, head, header, 16, next, head + 1);
            let data = DATA + (BLOCK as u64) * u64::from(r);
            desc(
                &mem,
                head + 1,
                data,
                BLOCK as u32,
                data_flags | next,
                head + 2,
            );
            let status = STATUS + u64::from(r);
            desc(&mem, head + 2, status, 1, VRING_DESC_F_WRITE, 0);
        }
        let mut queue = SplitQueue::new(QUEUE_SIZE).unwrap();
        queue.set_address(RingPart::DescriptorTable, DESC);
        queue.set_address(RingPart::AvailRing, AVAIL);
        queue.set_address(RingPart::UsedRing, USED);
        queue.validate(&mem).unwrap();
        queue.set_ready(true);
        let storage: Vec<u8> = (0..DISK).map(|i| (i * 7) as u8).collect();
        let blk = Block::new(
            MemoryStorage::from_bytes(storage),
            BlockConfig {
                queue_size: QUEUE_SIZE,
                ..BlockConfig::default()
            },
        )
        .unwrap();
        Rig {
            mem,
            queue,
            blk,
            avail_idx: 0,
            depth,
        }
    }

    /// Post `depth` requests, then let the device serve them in one pass.
    fn round(&mut self) {
        for r in 0..self.depth {
            let slot = u64::from(self.avail_idx % QUEUE_SIZE);
            self.mem.store_u16(AVAIL + 4 + 2 * slot, 3 * r).unwrap();
            self.avail_idx = self.avail_idx.wrapping_add(1);
        }
        self.mem
            .store_release_u16(AVAIL + 2, self.avail_idx)
            .unwrap();
        let mut vq = Virtqueue::new(&mut self.queue, Dma::new(&self.mem));
        let p = self.blk.process_queue(0, &mut vq).unwrap();
        debug_assert_eq!(p.used, self.depth);
    }

    fn check(&mut self) {
        self.round();
        let c = self.blk.counters();
        assert_eq!(c.status_ok, u64::from(self.depth), "{c:?}");
        let mut s = [0xFFu8];
        self.mem.read(STATUS, &mut s).unwrap();
        assert_eq!(s[0], 0);
    }
}

/// Copy `bytes` between two host buffers: what moving the data costs at the least.
struct Memcpy {
    src: Vec<u8>,
    dst: Vec<u8>,
}

impl Memcpy {
    fn new(bytes: usize) -> Self {
        Memcpy {
            src: (0..bytes).map(|i| i as u8).collect(),
            dst: vec![0; bytes],
        }
    }
    fn round(&mut self) {
        black_box(&mut self.dst).copy_from_slice(black_box(&self.src));
    }
}

const CASES: [(&str, bool, u16); 4] = [
    ("read_4k_qd1", false, 1),
    ("read_4k_qd32", false, 32),
    ("write_4k_qd1", true, 1),
    ("write_4k_qd32", true, 32),
];

fn blk(c: &mut Criterion) {
    for (name, write, depth) in CASES {
        let mut g = c.benchmark_group("blk");
        g.throughput(Throughput::Bytes((BLOCK * depth as usize) as u64));
        let mut rig = Rig::new(write, depth);
        rig.check();
        g.bench_function(name, |b| b.iter(|| rig.round()));
        let mut m = Memcpy::new(BLOCK * depth as usize);
        g.bench_function(format!("memcpy_{}k", 4 * depth), |b| b.iter(|| m.round()));
        g.finish();
    }
}

fn notify_read(c: &mut Criterion) {
    let mut g = c.benchmark_group("notify");
    g.throughput(Throughput::Bytes(BLOCK as u64));
    let mut bare = notify::Bare::new();
    bare.check();
    g.bench_function("bare_virtio_queue_read_4k", |b| b.iter(|| bare.cycle()));
    let mut dev = notify::Device::new(VecMemory::new(notify::RAM));
    dev.check();
    g.bench_function("virq_read_4k", |b| b.iter(|| dev.cycle()));
    let mut mmap = notify::Device::new(mmap_ram());
    mmap.check();
    g.bench_function("virq_read_4k_mmap", |b| b.iter(|| mmap.cycle()));
    g.finish();
}

fn mmap_ram() -> vm_memory::GuestMemoryMmap<()> {
    vm_memory::GuestMemoryMmap::from_ranges(&[(vm_memory::GuestAddress(0), notify::RAM)]).unwrap()
}

/// One read per notify: the whole virq device against bare virtio-queue, interleaved.
fn notify_summary() {
    const ROUNDS: usize = 201;
    const CYCLES: u32 = 5_000;
    let mut bare = notify::Bare::new();
    let mut dev = notify::Device::new(VecMemory::new(notify::RAM));
    let mut mmap = notify::Device::new(mmap_ram());
    bare.check();
    dev.check();
    mmap.check();
    let (mut t_bare, mut t_dev, mut t_mmap, mut r_dev, mut r_mmap) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        let b = per_round(CYCLES, || bare.cycle());
        let d = per_round(CYCLES, || dev.cycle());
        let m = per_round(CYCLES, || mmap.cycle());
        t_bare.push(b);
        t_dev.push(d);
        t_mmap.push(m);
        r_dev.push(d / b);
        r_mmap.push(m / b);
    }
    dev.check();
    mmap.check();
    println!();
    println!(
        "one 4 KiB read per notify ({ROUNDS} interleaved rounds of {CYCLES}; median [min..max])"
    );
    let min = |v: &[f64]| v.iter().copied().fold(f64::INFINITY, f64::min);
    let best = min(&t_dev) / min(&t_bare);
    for (name, v, unit) in [
        (
            "bare virtio-queue + vm-memory read",
            &mut t_bare,
            "ns/request",
        ),
        (
            "virq device (VecMemory), notify -> MSI-X",
            &mut t_dev,
            "ns/request",
        ),
        ("virq device (GuestMemoryMmap)", &mut t_mmap, "ns/request"),
        ("ratio virq / bare", &mut r_dev, "x"),
        ("ratio virq(mmap) / bare", &mut r_mmap, "x"),
    ] {
        let (m, lo, hi) = median_min_max(v);
        println!("  {name:<42} {m:>8.2} {unit:<10} [{lo:.2}..{hi:.2}]");
    }
    println!("  ratio of the fastest rounds: {best:.2}x");
}

fn per_round(iters: u32, mut f: impl FnMut()) -> f64 {
    let t = Instant::now();
    for _ in 0..iters {
        f();
    }
    t.elapsed().as_nanos() as f64 / f64::from(iters)
}

fn median_min_max(v: &mut [f64]) -> (f64, f64, f64) {
    v.sort_by(|a, b| a.total_cmp(b));
    (v[v.len() / 2], v[0], v[v.len() - 1])
}

/// Each case and its memcpy alternate in short rounds, so both see the same noise.
fn same_run_summary() {
    const ROUNDS: usize = 61;
    println!();
    println!("same-run summary ({ROUNDS} interleaved rounds; median [min..max])");
    for (name, write, depth) in CASES {
        let mut rig = Rig::new(write, depth);
        let mut m = Memcpy::new(BLOCK * depth as usize);
        let iters = 20_000 / u32::from(depth);
        let (mut t_blk, mut t_cpy, mut ratio) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..ROUNDS {
            let b = per_round(iters, || rig.round());
            let c = per_round(iters, || m.round());
            t_blk.push(b);
            t_cpy.push(c);
            ratio.push(b / c);
        }
        let d = f64::from(depth);
        let bytes = BLOCK as f64 * d;
        let (b, bmin, bmax) = median_min_max(&mut t_blk);
        let (c, _, _) = median_min_max(&mut t_cpy);
        let (r, rmin, rmax) = median_min_max(&mut ratio);
        // ns per round -> requests/s and MB/s (10^6 bytes).
        let rps = |ns: f64| d * 1e9 / ns;
        let mbs = |ns: f64| bytes * 1e3 / ns;
        println!(
            "  {name:<14} {:>9.0} req/s [{:.0}..{:.0}]  {:>7.0} MB/s [{:.0}..{:.0}]  {:.0} ns/req",
            rps(b),
            rps(bmax),
            rps(bmin),
            mbs(b),
            mbs(bmax),
            mbs(bmin),
            b / d
        );
        println!(
            "  {:<14} {:>7.0} MB/s memcpy of the same bytes; blk takes {r:.2}x its time [{rmin:.2}..{rmax:.2}]",
            "",
            mbs(c)
        );
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = blk, notify_read
}

fn main() {
    benches();
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--bench") && !args.iter().any(|a| a == "--profile-time") {
        same_run_summary();
        notify_summary();
    }
    Criterion::default().configure_from_args().final_summary();
}
