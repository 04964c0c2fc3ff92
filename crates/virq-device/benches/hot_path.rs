//! The device hot path, with its baseline in the same run.
//!
//! * `hot_path/*`: MMIO notify write -> pop a one-descriptor chain -> complete -> publish
//!   used -> interrupt decision -> MSI-X message to a no-op sink, the driver re-posting the
//!   buffer in guest RAM each cycle; `hot_path/bare_queue` is `virtio-queue` pop + add_used
//!   (and the same re-post) on `GuestMemoryMmap`, the only memory it takes. The transport runs
//!   over virq's own `VecMemory`, and with `--features vm-memory` also over the same
//!   `GuestMemoryMmap` as the baseline (`transport_msix_mmap`).
//! * `interrupt_decision/*`: ISR bit + selector lookup + mask/PBA check + message compose,
//!   through `config_changed()` and through the used-buffer decision with and without
//!   EVENT_IDX suppression.
//!
//! After criterion's groups (only under `cargo bench`, not in `cargo test`'s single pass) the
//! bench prints an interleaved same-run comparison (median and spread of ns per cycle, and the
//! transport / bare-queue ratio) and the heap allocations per cycle, counted by the global
//! allocator below on this thread.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group};
use virq_device::GuestMemory;
use virq_device::testing::{CountingSink, NullInterruptSink};

#[path = "support/mod.rs"]
mod support;
use support::*;

#[path = "support/alloc_counter.rs"]
mod alloc_counter;
use alloc_counter::{Counting, allocs};

#[global_allocator]
static GLOBAL: Counting = Counting;

fn rig_on<M: GuestMemory + Clone + 'static>(mem: M, event_idx: bool) -> Live<M> {
    Live::new(mem, Arc::new(NullInterruptSink), event_idx)
}

fn rig(event_idx: bool) -> Live {
    rig_on(ram(), event_idx)
}

fn hot_path(c: &mut Criterion) {
    let mut g = c.benchmark_group("hot_path");
    g.throughput(criterion::Throughput::Elements(1));

    let mem = mmap_ram();
    let (mut q, mut driver) = baseline_queue(&mem);
    g.bench_function("bare_queue", |b| {
        b.iter(|| baseline_cycle(&mut q, &mut driver, &mem))
    });

    #[cfg(feature = "vm-memory")]
    {
        let mut r = rig_on(mmap_ram(), false);
        g.bench_function("transport_msix_mmap", |b| b.iter(|| r.cycle()));
    }

    let mut r = rig(false);
    g.bench_function("transport_msix", |b| b.iter(|| r.cycle()));

    let mut r = rig(true);
    g.bench_function("transport_msix_event_idx", |b| b.iter(|| r.cycle()));
    g.finish();
}

fn interrupt_decision(c: &mut Criterion) {
    let mut g = c.benchmark_group("interrupt_decision");
    g.throughput(criterion::Throughput::Elements(1));

    let mut r = rig(false);
    g.bench_function("config_changed_msix", |b| {
        b.iter(|| black_box(&mut r.rig.dev).config_changed())
    });

    let mut r = rig(false);
    g.bench_function("used_msix", |b| {
        b.iter(|| black_box(&mut r.rig.dev).bench_used_interrupt(0))
    });

    let mut r = rig(true);
    r.cycle();
    g.bench_function("used_event_idx_suppressed", |b| {
        b.iter(|| black_box(&mut r.rig.dev).bench_used_interrupt(0))
    });
    g.finish();
}

/// Median, min and max of `samples` (ns per cycle).
fn stats(samples: &mut [f64]) -> (f64, f64, f64) {
    samples.sort_by(|a, b| a.total_cmp(b));
    (
        samples[samples.len() / 2],
        samples[0],
        samples[samples.len() - 1],
    )
}

fn time_per_cycle(cycles: u32, mut f: impl FnMut()) -> f64 {
    let t = Instant::now();
    for _ in 0..cycles {
        f();
    }
    t.elapsed().as_nanos() as f64 / f64::from(cycles)
}

/// The measured paths do what they claim: one message per cycle, none when suppressed.
fn verify_every_cycle_interrupts() {
    for event_idx in [false, true] {
        let sink = Arc::new(CountingSink::default());
        let mut live = Live::new(ram(), sink.clone(), event_idx);
        for _ in 0..1000 {
            live.cycle();
        }
        assert_eq!(sink.messages(), 1000);
        live.stop_rearming();
        for _ in 0..100 {
            live.cycle();
        }
        let expect = if event_idx { 1000 } else { 1100 };
        assert_eq!(sink.messages(), expect);
    }
}

/// Baseline and transport alternate in short rounds, so both see the same machine noise.
fn same_run_summary() {
    verify_every_cycle_interrupts();
    // Short rounds, many of them: a burst of load from another process spoils a few rounds
    // rather than shifting every figure.
    const ROUNDS: usize = 201;
    const CYCLES: u32 = 20_000;
    let mem = mmap_ram();
    let (mut q, mut bdriver) = baseline_queue(&mem);
    let mut plain = rig(false);
    let mut evidx = rig(true);
    #[cfg(feature = "vm-memory")]
    let mut on_mmap = rig_on(mmap_ram(), false);
    let mut decision = rig(false);
    let mut suppressed = rig(true);
    suppressed.cycle();

    let mut base = Vec::new();
    let mut tr = Vec::new();
    let mut tr_ev = Vec::new();
    let mut tr_mmap = Vec::new();
    let mut ratio = Vec::new();
    let mut ratio_ev = Vec::new();
    let mut ratio_mmap = Vec::new();
    let mut cfg = Vec::new();
    let mut used = Vec::new();
    let mut supp = Vec::new();
    for _ in 0..ROUNDS {
        let b = time_per_cycle(CYCLES, || baseline_cycle(&mut q, &mut bdriver, &mem));
        let t = time_per_cycle(CYCLES, || plain.cycle());
        let e = time_per_cycle(CYCLES, || evidx.cycle());
        #[cfg(feature = "vm-memory")]
        {
            let m = time_per_cycle(CYCLES, || on_mmap.cycle());
            tr_mmap.push(m);
            ratio_mmap.push(m / b);
        }
        cfg.push(time_per_cycle(CYCLES, || {
            black_box(&mut decision.rig.dev).config_changed()
        }));
        used.push(time_per_cycle(CYCLES, || {
            black_box(&mut decision.rig.dev).bench_used_interrupt(0)
        }));
        supp.push(time_per_cycle(CYCLES, || {
            black_box(&mut suppressed.rig.dev).bench_used_interrupt(0)
        }));
        base.push(b);
        tr.push(t);
        tr_ev.push(e);
        ratio.push(t / b);
        ratio_ev.push(e / b);
    }
    let min = |v: &[f64]| v.iter().copied().fold(f64::INFINITY, f64::min);
    let best_ratio = min(&tr) / min(&base);
    let best_ratio_ev = min(&tr_ev) / min(&base);
    println!();
    println!(
        "same-run summary ({ROUNDS} interleaved rounds of {CYCLES} cycles; median [min..max])"
    );
    let mut rows: Vec<(&str, &mut Vec<f64>, &str)> = vec![
        ("bare virtio-queue pop+add_used", &mut base, "ns/cycle"),
        ("transport, MSI-X", &mut tr, "ns/cycle"),
        ("transport, MSI-X, EVENT_IDX armed", &mut tr_ev, "ns/cycle"),
        ("ratio transport / bare", &mut ratio, "x"),
        ("ratio transport+EVENT_IDX / bare", &mut ratio_ev, "x"),
    ];
    if !tr_mmap.is_empty() {
        rows.push(("transport on GuestMemoryMmap", &mut tr_mmap, "ns/cycle"));
        rows.push(("ratio transport(mmap) / bare", &mut ratio_mmap, "x"));
    }
    rows.push(("decision: config_changed -> MSI-X", &mut cfg, "ns"));
    rows.push(("decision: used -> MSI-X", &mut used, "ns"));
    rows.push(("decision: used, EVENT_IDX suppressed", &mut supp, "ns"));
    for (name, s, unit) in rows {
        let (m, lo, hi) = stats(s);
        println!("  {name:<38} {m:>8.2} {unit:<8} [{lo:.2}..{hi:.2}]");
    }

    // Allocations per cycle, counted on this thread after warm-up.
    const N: u64 = 100_000;
    let count = |f: &mut dyn FnMut()| {
        for _ in 0..1_000 {
            f();
        }
        let before = allocs();
        for _ in 0..N {
            f();
        }
        (allocs() - before) as f64 / N as f64
    };
    let a_base = count(&mut || baseline_cycle(&mut q, &mut bdriver, &mem));
    let a_tr = count(&mut || plain.cycle());
    let a_ev = count(&mut || evidx.cycle());
    let a_cfg = count(&mut || decision.rig.dev.config_changed());
    println!(
        "  ratio of the fastest rounds (least disturbed): transport {best_ratio:.2}x, with EVENT_IDX {best_ratio_ev:.2}x"
    );
    println!("heap allocations per cycle ({N} cycles after warm-up)");
    println!("  bare virtio-queue                      {a_base}");
    println!("  transport, MSI-X                       {a_tr}");
    println!("  transport, MSI-X, EVENT_IDX armed      {a_ev}");
    println!("  decision: config_changed               {a_cfg}");
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = hot_path, interrupt_decision
}

fn main() {
    benches();
    // `cargo bench` passes --bench; `cargo test --benches` runs each benchmark once without it.
    // `--profile-time` (a profiler run) measures one benchmark alone.
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--bench") && !args.iter().any(|a| a == "--profile-time") {
        same_run_summary();
    }
    Criterion::default().configure_from_args().final_summary();
}
