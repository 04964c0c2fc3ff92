//! Stand-in device types: enough of a backend that only the transport (or the ring) is under
//! test.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::backend::{BackendError, Processed, VirtioBackend};
use crate::ring::Virtqueue;

/// A device type with `n` queues that completes every chain with used length 0, without
/// reading its descriptors.
#[derive(Debug)]
pub struct NullBackend {
    queues: u16,
    completed: u64,
}

impl NullBackend {
    /// A device of type 0xFF with `queues` queues.
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
            *b = usize::try_from(offset)
                .ok()
                .and_then(|o| o.checked_add(i))
                .and_then(|at| cfg.get(at))
                .copied()
                .unwrap_or(0);
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

/// A [`NullBackend`] with a chosen device ID, feature bits and queue maximum.
#[derive(Debug)]
pub struct TestBackend {
    inner: NullBackend,
    /// The virtio device ID it presents.
    pub id: u16,
    /// Device-type feature bits it offers.
    pub features: u64,
    /// Largest queue size of every queue.
    pub max_size: u16,
    /// What it answers to [`VirtioBackend::takes_host_input`] (true, the trait's default).
    pub host_input: bool,
    /// How often the transport asked [`VirtioBackend::has_pending_input`] (it never has any):
    /// a platform's polling, counted.
    pub input_asks: Arc<AtomicU64>,
}

impl TestBackend {
    /// `queues` queues of at most `max_size` entries, device ID `id`, offering `features`.
    pub fn new(queues: u16, id: u16, features: u64, max_size: u16) -> Self {
        TestBackend {
            inner: NullBackend::new(queues),
            id,
            features,
            max_size,
            host_input: true,
            input_asks: Arc::default(),
        }
    }
}

impl VirtioBackend for TestBackend {
    fn name(&self) -> &'static str {
        "test"
    }
    fn device_id(&self) -> u16 {
        self.id
    }
    fn device_features(&self) -> u64 {
        self.features
    }
    fn num_queues(&self) -> u16 {
        self.inner.num_queues()
    }
    fn queue_max_size(&self, _queue: u16) -> u16 {
        self.max_size
    }
    fn config_len(&self) -> usize {
        self.inner.config_len()
    }
    fn read_config(&self, offset: u64, data: &mut [u8]) {
        self.inner.read_config(offset, data)
    }
    fn reset(&mut self) {
        self.inner.reset()
    }
    fn process_queue(
        &mut self,
        queue_index: u16,
        queue: &mut Virtqueue<'_>,
    ) -> Result<Processed, BackendError> {
        self.inner.process_queue(queue_index, queue)
    }
    fn snapshot(&self) -> serde_json::Value {
        self.inner.snapshot()
    }
    fn restore(&mut self, state: &serde_json::Value) -> Result<(), BackendError> {
        self.inner.restore(state)
    }
    fn has_pending_input(&self, _queue: u16) -> bool {
        self.input_asks.fetch_add(1, Ordering::Relaxed);
        false
    }
    fn takes_host_input(&self) -> bool {
        self.host_input
    }
}

/// A one-queue device type that pops every available chain, walks its descriptors and
/// completes it with used length 0: the least a real backend does, for the hot-path
/// benchmark and the allocation test.
#[derive(Debug, Default)]
pub struct WalkingBackend {
    /// Chains completed so far.
    pub completed: u64,
}

impl VirtioBackend for WalkingBackend {
    fn name(&self) -> &'static str {
        "walking"
    }
    fn device_id(&self) -> u16 {
        0xFF
    }
    fn device_features(&self) -> u64 {
        0
    }
    fn num_queues(&self) -> u16 {
        1
    }
    fn config_len(&self) -> usize {
        0
    }
    fn read_config(&self, _offset: u64, _data: &mut [u8]) {}
    fn reset(&mut self) {}
    #[inline]
    fn process_queue(
        &mut self,
        queue_index: u16,
        queue: &mut Virtqueue<'_>,
    ) -> Result<Processed, BackendError> {
        let corrupt = |e| BackendError::corrupt(queue_index, e);
        let budget = queue.size();
        let mut used = 0u16;
        while used < budget {
            let Some(chain) = queue.pop().map_err(corrupt)? else {
                break;
            };
            let head = chain.head_index();
            let mut bytes = 0u64;
            for desc in chain {
                bytes += u64::from(desc.map_or(0, |d| d.len));
            }
            std::hint::black_box(bytes);
            queue.add_used(head, 0).map_err(corrupt)?;
            used += 1;
        }
        self.completed += u64::from(used);
        Ok(Processed { used })
    }
    fn snapshot(&self) -> serde_json::Value {
        serde_json::Value::Null
    }
    fn restore(&mut self, _state: &serde_json::Value) -> Result<(), BackendError> {
        Ok(())
    }
}

/// A little-endian field of `backend`'s device-specific configuration, `width` bytes wide.
pub fn config_u64(backend: &dyn VirtioBackend, offset: u64, width: usize) -> u64 {
    let mut buf = [0u8; 8];
    backend.read_config(offset, &mut buf[..width]);
    u64::from_le_bytes(buf)
}
