//! Small, honest stand-ins for the outside world, for tests, docs and benchmarks.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crate::InterruptSink;
use crate::backend::{BackendError, Processed, VirtioBackend};
use crate::ring::Virtqueue;

/// A device type with `n` queues that completes every chain with used length 0. It stands
/// in for a real backend where only the transport is under test.
#[derive(Debug)]
pub struct NullBackend {
    queues: u16,
    completed: u64,
}

impl NullBackend {
    /// A backend offering `queues` virtqueues that has completed nothing yet.
    pub fn new(queues: u16) -> Self {
        NullBackend {
            queues,
            completed: 0,
        }
    }

    /// Chains completed since construction or reset.
    pub fn completed(&self) -> u64 {
        self.completed
    }
}

impl VirtioBackend for NullBackend {
    fn name(&self) -> &'static str {
        "null"
    }
    fn device_id(&self) -> u16 {
        0xFF
    }
    fn device_features(&self) -> u64 {
        0
    }
    fn num_queues(&self) -> u16 {
        self.queues
    }
    fn config_len(&self) -> usize {
        4
    }
    fn read_config(&self, offset: u64, data: &mut [u8]) {
        let cfg = 0xC0FF_EE00u32.to_le_bytes();
        for (i, b) in data.iter_mut().enumerate() {
            *b = cfg.get(offset as usize + i).copied().unwrap_or(0);
        }
    }
    fn reset(&mut self) {
        self.completed = 0;
    }
    fn process_queue(
        &mut self,
        queue_index: u16,
        queue: &mut Virtqueue<'_>,
    ) -> Result<Processed, BackendError> {
        let mut used = 0u16;
        while used < queue.size() {
            let Some(chain) = queue
                .pop()
                .map_err(|e| BackendError::corrupt(queue_index, e))?
            else {
                break;
            };
            // Whatever head the driver wrote is published as is: one that is not below the
            // queue size cannot be, and makes the ring corrupt.
            queue
                .add_used(chain.head_index(), 0)
                .map_err(|e| BackendError::corrupt(queue_index, e))?;
            used += 1;
            self.completed += 1;
        }
        Ok(Processed { used })
    }
    fn snapshot(&self) -> serde_json::Value {
        serde_json::json!({ "completed": self.completed })
    }
    fn restore(&mut self, state: &serde_json::Value) -> Result<(), BackendError> {
        self.completed = state["completed"]
            .as_u64()
            .ok_or_else(|| BackendError::BadSnapshot("missing completed".into()))?;
        Ok(())
    }
}

/// An interrupt sink that remembers every message and every line change.
#[derive(Debug, Default)]
pub struct RecordingSink {
    messages: Mutex<Vec<(u64, u32)>>,
    line: AtomicBool,
    raises: AtomicU64,
    lowers: AtomicU64,
}

impl RecordingSink {
    /// A sink that has recorded nothing, with the INTx line low.
    pub fn new() -> Self {
        Self::default()
    }
    /// Messages delivered so far, as (address, data).
    pub fn messages(&self) -> Vec<(u64, u32)> {
        self.messages.lock().unwrap().clone()
    }
    /// Messages delivered since the last take, as (address, data), and forget them.
    pub fn take_messages(&self) -> Vec<(u64, u32)> {
        std::mem::take(&mut *self.messages.lock().unwrap())
    }
    /// The INTx level now (true: asserted).
    pub fn line(&self) -> bool {
        self.line.load(Ordering::SeqCst)
    }
    /// How many times the INTx line went from low to high.
    pub fn raises(&self) -> u64 {
        self.raises.load(Ordering::SeqCst)
    }
    /// How many times the INTx line went from high to low.
    pub fn lowers(&self) -> u64 {
        self.lowers.load(Ordering::SeqCst)
    }
}

impl InterruptSink for RecordingSink {
    fn msi(&self, address: u64, data: u32) {
        self.messages.lock().unwrap().push((address, data));
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

/// A sink that drops everything (benchmarks).
#[derive(Debug, Default, Clone, Copy)]
pub struct NullInterruptSink;

impl InterruptSink for NullInterruptSink {
    fn msi(&self, _address: u64, _data: u32) {}
    fn set_intx(&self, _level: bool) {}
}
