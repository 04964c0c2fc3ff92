//! The contract between the transport and a device type (blk, rng, console, ...).
//!
//! The transport owns everything interrupt-related; a backend only turns available
//! descriptor chains into used ones. It never signals an interrupt itself: it reports how many
//! chains it completed and the transport decides (suppression, ISR bit, MSI-X or INTx).

use thiserror::Error;

use crate::ring::{RingError, Virtqueue};

/// What went wrong while a backend processed a queue.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum BackendError {
    /// The ring itself is corrupt (for example an available index more than the queue size
    /// ahead): the device cannot go on and must set DEVICE_NEEDS_RESET (virtio 1.2, 2.1.2).
    #[error("virtqueue {queue} is corrupt: {error}")]
    RingCorrupt {
        /// The queue whose rings are bad (its `queue_select` index).
        queue: u16,
        /// What the ring walk found wrong.
        #[source]
        error: RingError,
    },
    /// The backend's snapshot could not be restored.
    #[error("backend state does not fit this device: {0}")]
    BadSnapshot(String),
}

/// Outcome of one pass over a queue.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Processed {
    /// Descriptor chains moved to the used ring in this pass.
    pub used: u16,
}

/// A virtio device type behind the virtio-pci transport.
pub trait VirtioBackend: Send {
    /// Short name for logs ("virtio-blk").
    fn name(&self) -> &'static str;

    /// The virtio device ID (virtio 1.2, section 5): 2 block, 3 console, 4 entropy.
    fn device_id(&self) -> u16;

    /// Device-type feature bits (bits 0-23); the transport adds its own (VERSION_1, ...).
    fn device_features(&self) -> u64;

    /// Number of virtqueues this device exposes.
    fn num_queues(&self) -> u16;

    /// Largest queue size the device supports for `queue` (a power of two).
    fn queue_max_size(&self, _queue: u16) -> u16 {
        256
    }

    /// Size in bytes of the device-specific configuration structure.
    fn config_len(&self) -> usize;

    /// Read device-specific configuration at `offset`. Bytes beyond `config_len` read as 0.
    fn read_config(&self, offset: u64, data: &mut [u8]);

    /// Write device-specific configuration. Returns true when the write changed
    /// configuration the driver must be told about (the transport bumps `config_generation`).
    fn write_config(&mut self, _offset: u64, _data: &[u8]) -> bool {
        false
    }

    /// The driver set DRIVER_OK with these negotiated features.
    fn activate(&mut self, _features: u64) {}

    /// Device reset: forget every in-flight request and negotiated state.
    fn reset(&mut self);

    /// Consume available chains of queue `queue_index` and publish used ones, at most
    /// `queue.size()` of them. `queue` carries the guest memory the chains' buffers live in;
    /// the transport lends it only while the function may master the bus.
    fn process_queue(
        &mut self,
        queue_index: u16,
        queue: &mut Virtqueue<'_>,
    ) -> Result<Processed, BackendError>;

    /// Backend state for snapshot / restore.
    fn snapshot(&self) -> serde_json::Value;

    /// Restore state produced by [`VirtioBackend::snapshot`].
    fn restore(&mut self, state: &serde_json::Value) -> Result<(), BackendError>;

    /// Host-side work is waiting on `queue` (console input, for example): the transport
    /// should process it without a guest notify.
    fn has_pending_input(&self, _queue: u16) -> bool {
        false
    }

    /// Whether [`VirtioBackend::has_pending_input`] can ever be true for this backend. A
    /// device type whose queues only ever move on a guest notify (a disk) answers false, and
    /// the transport then skips asking each queue every time the platform polls. Asked once,
    /// when the device is built.
    fn takes_host_input(&self) -> bool {
        true
    }
}

impl BackendError {
    /// A corrupt ring of queue `queue`.
    pub fn corrupt(queue: u16, error: RingError) -> Self {
        BackendError::RingCorrupt { queue, error }
    }
}
