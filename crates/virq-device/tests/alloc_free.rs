//! The notify -> pop -> complete -> publish -> decide -> MSI-X path allocates nothing: pinned
//! here with a counting global allocator (this file is its own test binary, so the allocator
//! sees only this test). Not timed: speed lives in `benches/hot_path.rs`.

use std::sync::Arc;

use virq_device::testing::CountingSink;

#[path = "../benches/support/mod.rs"]
mod support;
use support::*;

#[path = "../benches/support/alloc_counter.rs"]
mod alloc_counter;
use alloc_counter::{Counting, allocs};

#[global_allocator]
static GLOBAL: Counting = Counting;

const CYCLES: u64 = 10_000;

#[test]
fn the_counting_allocator_counts() {
    let before = allocs();
    let v = std::hint::black_box(vec![1u8; 64]);
    assert_eq!(allocs() - before, 1);
    drop(v);
}

#[test]
fn notify_to_message_allocates_nothing_per_cycle() {
    for event_idx in [false, true] {
        let sink = Arc::new(CountingSink::default());
        let mut live = Live::new(ram(), sink.clone(), event_idx);
        // Warm up (ring wrap included) before counting.
        for _ in 0..1_000 {
            live.cycle();
        }
        let before = allocs();
        for _ in 0..CYCLES {
            live.cycle();
        }
        let per_cycle = (allocs() - before) as f64 / CYCLES as f64;
        assert_eq!(per_cycle, 0.0, "event_idx={event_idx}");
        // Every cycle really went the whole way to a message.
        assert_eq!(sink.messages(), 1_000 + CYCLES, "event_idx={event_idx}");
    }
}

#[test]
fn interrupt_decision_allocates_nothing() {
    let sink = Arc::new(CountingSink::default());
    let mut live = Live::new(ram(), sink.clone(), false);
    let dev = &mut live.rig.dev;
    dev.config_changed();
    dev.bench_used_interrupt(0);
    let before = allocs();
    for _ in 0..CYCLES {
        dev.config_changed();
        dev.bench_used_interrupt(0);
    }
    assert_eq!(allocs() - before, 0);
    assert_eq!(sink.messages(), 2 + 2 * CYCLES);
}
