//! virtio-rng, the entropy device (virtio 1.2, 5.4): one request queue whose device-writable
//! buffers are filled from an [`EntropySource`].

use serde::{Deserialize, Serialize};
use virq_device::{BackendError, Dma, Processed, VirtioBackend, Virtqueue};

use crate::chain::{self, ChainBuffers};
use crate::entropy::EntropySource;

/// virtio device ID of an entropy device (virtio 1.2, 5).
pub const VIRTIO_ID_ENTROPY: u16 = 4;
/// Default most bytes handed out per request, so one request with a huge buffer cannot keep
/// the host busy (5.4.6 lets the device return fewer bytes than the buffer holds).
pub const DEFAULT_REQUEST_CAP: u32 = 64 * 1024;
/// Largest queue size offered.
pub const RNG_QUEUE_SIZE: u16 = 256;
/// Entropy is produced and copied in pieces of this size.
const CHUNK_LEN: usize = 4096;

/// What the device has done, for the host and as test evidence.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RngCounters {
    /// Chains completed.
    pub requests: u64,
    /// Entropy bytes written into guest buffers.
    pub bytes: u64,
    /// Requests whose buffers were larger than the per-request cap.
    pub capped: u64,
    /// Chains that loop, exceed the queue size or reference unreadable descriptors.
    pub broken_chains: u64,
    /// Requests cut short by a buffer outside guest RAM.
    pub bad_buffers: u64,
    /// Requests cut short because the entropy source failed.
    pub source_errors: u64,
    /// Device resets seen.
    pub resets: u64,
}

#[derive(Debug, Serialize, Deserialize)]
struct RngSnapshot {
    device: String,
    source_kind: String,
    source_state: serde_json::Value,
    request_cap: u32,
    acked_features: u64,
    counters: RngCounters,
}

/// A virtio-rng device drawing from `E`.
pub struct Rng<E> {
    source: E,
    request_cap: u32,
    acked_features: u64,
    chain: ChainBuffers,
    chunk: Vec<u8>,
    counters: RngCounters,
}

impl<E: EntropySource> Rng<E> {
    /// An entropy device with the default per-request cap.
    pub fn new(source: E) -> Self {
        Self {
            source,
            request_cap: DEFAULT_REQUEST_CAP,
            acked_features: 0,
            chain: ChainBuffers::with_capacity(usize::from(RNG_QUEUE_SIZE)),
            chunk: vec![0; CHUNK_LEN],
            counters: RngCounters::default(),
        }
    }

    /// Hand out at most `cap` bytes per request (at least 1).
    pub fn with_request_cap(mut self, cap: u32) -> Self {
        self.request_cap = cap.max(1);
        self
    }

    /// The entropy source.
    pub fn source(&self) -> &E {
        &self.source
    }

    /// Evidence of what the device did.
    pub fn counters(&self) -> &RngCounters {
        &self.counters
    }

    /// Fill one chain and return the bytes written.
    fn serve(&mut self, chain: chain::Chain<'_>, mem: &Dma<'_>, max_descriptors: u16) -> u32 {
        self.chain.load(chain, max_descriptors);
        if !self.chain.is_complete() {
            self.counters.broken_chains += 1;
            return 0;
        }
        let available = self.chain.writable_len();
        let cap = u64::from(self.request_cap);
        if available > cap {
            self.counters.capped += 1;
        }
        let want = available.min(cap);
        // Only the part before a buffer outside guest RAM is handed over, checked before drawing
        // entropy so a deterministic stream neither wastes nor skips bytes.
        let deliverable = self.chain.writable_prefix_in_ram(mem, 0, want);
        if deliverable < want {
            self.counters.bad_buffers += 1;
        }
        let mut done = 0u64;
        while done < deliverable {
            let n = (deliverable - done).min(self.chunk.len() as u64) as usize;
            let piece = &mut self.chunk[..n];
            if self.source.fill(piece).is_err() {
                self.counters.source_errors += 1;
                break;
            }
            if self.chain.write(mem, done, piece).is_err() {
                self.counters.bad_buffers += 1;
                break;
            }
            done += n as u64;
        }
        self.counters.bytes += done;
        chain::used_len(done)
    }
}

impl<E: EntropySource + 'static> VirtioBackend for Rng<E> {
    fn name(&self) -> &'static str {
        "virtio-rng"
    }

    fn device_id(&self) -> u16 {
        VIRTIO_ID_ENTROPY
    }

    /// Entropy is handed out only against buffers the driver posts.
    fn takes_host_input(&self) -> bool {
        false
    }

    fn device_features(&self) -> u64 {
        0
    }

    fn num_queues(&self) -> u16 {
        1
    }

    fn queue_max_size(&self, _queue: u16) -> u16 {
        RNG_QUEUE_SIZE
    }

    /// The entropy device has no configuration structure (5.4.4).
    fn config_len(&self) -> usize {
        0
    }

    fn read_config(&self, _offset: u64, data: &mut [u8]) {
        data.fill(0);
    }

    fn activate(&mut self, features: u64) {
        self.acked_features = features;
    }

    fn reset(&mut self) {
        self.acked_features = 0;
        self.counters.resets += 1;
    }

    fn process_queue(
        &mut self,
        queue_index: u16,
        queue: &mut Virtqueue<'_>,
    ) -> Result<Processed, BackendError> {
        if queue_index != 0 {
            return Ok(Processed::default());
        }
        let budget = queue.size();
        let mem = &queue.memory();
        let mut used = 0u16;
        while used < budget {
            let Some(chain) = chain::pop_chain(queue_index, queue)? else {
                break;
            };
            let head = chain.head_index();
            let len = self.serve(chain, mem, budget);
            chain::publish(queue_index, queue, head, len)?;
            used += 1;
            self.counters.requests += 1;
        }
        Ok(Processed { used })
    }

    fn snapshot(&self) -> serde_json::Value {
        let snapshot = RngSnapshot {
            device: self.name().to_string(),
            source_kind: self.source.kind().to_string(),
            source_state: self.source.state(),
            request_cap: self.request_cap,
            acked_features: self.acked_features,
            counters: self.counters.clone(),
        };
        serde_json::to_value(snapshot).unwrap_or(serde_json::Value::Null)
    }

    fn restore(&mut self, state: &serde_json::Value) -> Result<(), BackendError> {
        let snapshot: RngSnapshot = serde_json::from_value(state.clone())
            .map_err(|e| BackendError::BadSnapshot(e.to_string()))?;
        if snapshot.device != self.name() {
            return Err(BackendError::BadSnapshot(format!(
                "snapshot of {} restored into {}",
                snapshot.device,
                self.name()
            )));
        }
        if snapshot.source_kind != self.source.kind() {
            return Err(BackendError::BadSnapshot(format!(
                "entropy source {} restored into {}",
                snapshot.source_kind,
                self.source.kind()
            )));
        }
        self.source
            .restore_state(&snapshot.source_state)
            .map_err(|e| BackendError::BadSnapshot(e.to_string()))?;
        self.request_cap = snapshot.request_cap.max(1);
        self.acked_features = snapshot.acked_features;
        self.counters = snapshot.counters;
        Ok(())
    }
}
