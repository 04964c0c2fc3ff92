//! Interrupt sinks: where a test's, a benchmark's or a fuzz target's interrupts go.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crate::InterruptSink;

/// A sink that remembers every message and every line change, so a test can assert what a
/// platform would have seen.
#[derive(Debug, Default)]
pub struct RecordingSink {
    messages: Mutex<Vec<(u64, u32)>>,
    line: AtomicBool,
    raises: AtomicU64,
    lowers: AtomicU64,
}

impl RecordingSink {
    /// An empty record, line low.
    pub fn new() -> Self {
        Self::default()
    }

    /// Messages delivered so far, as (address, data).
    pub fn messages(&self) -> Vec<(u64, u32)> {
        self.lock().clone()
    }

    /// Messages delivered so far, forgetting them.
    pub fn take_messages(&self) -> Vec<(u64, u32)> {
        std::mem::take(&mut *self.lock())
    }

    /// How many messages were delivered so far.
    pub fn message_count(&self) -> usize {
        self.lock().len()
    }

    /// The level of INTA# as last set.
    pub fn line(&self) -> bool {
        self.line.load(Ordering::SeqCst)
    }

    /// Times the line was set high.
    pub fn raises(&self) -> u64 {
        self.raises.load(Ordering::SeqCst)
    }

    /// Times the line was set low.
    pub fn lowers(&self) -> u64 {
        self.lowers.load(Ordering::SeqCst)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<(u64, u32)>> {
        // A test that panicked while holding the lock must not hide the record from others.
        self.messages.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl InterruptSink for RecordingSink {
    fn msi(&self, address: u64, data: u32) {
        self.lock().push((address, data));
    }
    fn set_intx(&self, level: bool) {
        self.line.store(level, Ordering::SeqCst);
        if level {
            self.raises.fetch_add(1, Ordering::SeqCst);
        } else {
            self.lowers.fetch_add(1, Ordering::SeqCst);
        }
    }
}

/// A sink that only counts, without allocating: for the hot path, where a recording sink's
/// growing list would be the only allocation measured.
#[derive(Debug, Default)]
pub struct CountingSink {
    messages: AtomicU64,
    line_changes: AtomicU64,
}

impl CountingSink {
    /// Messages delivered so far.
    pub fn messages(&self) -> u64 {
        self.messages.load(Ordering::Relaxed)
    }

    /// Line changes so far.
    pub fn line_changes(&self) -> u64 {
        self.line_changes.load(Ordering::Relaxed)
    }
}

impl InterruptSink for CountingSink {
    fn msi(&self, _address: u64, _data: u32) {
        self.messages.fetch_add(1, Ordering::Relaxed);
    }
    fn set_intx(&self, _level: bool) {
        self.line_changes.fetch_add(1, Ordering::Relaxed);
    }
}

/// A sink that drops everything (benchmarks, doc examples).
#[derive(Debug, Default, Clone, Copy)]
pub struct NullInterruptSink;

impl InterruptSink for NullInterruptSink {
    fn msi(&self, _address: u64, _data: u32) {}
    fn set_intx(&self, _level: bool) {}
}
