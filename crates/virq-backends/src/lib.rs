//! virtio device backends for virq: block (virtio 1.2, 5.2), console (5.3) and entropy (5.4).
//!
//! Each backend implements [`virq_device::VirtioBackend`]: it turns available descriptor chains
//! into used ones and nothing else. Interrupt decisions stay with the transport, so no backend
//! ever asks whether the driver needs a notification.
//!
//! Shared guarantees, each backed by tests:
//! - one `process_queue` call completes at most "queue size" chains, and each chain is cut off
//!   after "queue size" descriptors, so loops and hostile rings cannot hang the host;
//! - a corrupt available ring is reported as [`virq_device::BackendError::RingCorrupt`];
//! - counters record what happened, for the host and for tests.
//!
//! Backends work on virq's own split ring ([`virq_device::Virtqueue`]) and reach guest memory
//! only through the [`virq_device::Dma`] view the transport lends them, so the crate builds for
//! `wasm32-unknown-unknown`; only [`FileStorage`] (positioned file I/O) is unix-only.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod blk;
mod chain;
pub mod console;
pub mod entropy;
pub mod rng;
pub mod storage;

pub use blk::{Block, BlockConfig, BlockConfigError, BlockCounters, VIRTIO_ID_BLOCK};
pub use console::{Console, ConsoleConfig, ConsoleCounters, LineCallback, VIRTIO_ID_CONSOLE};
pub use entropy::{EntropyError, EntropySource, OsEntropy, SeededEntropy};
pub use rng::{Rng, RngCounters, VIRTIO_ID_ENTROPY};
#[cfg(unix)]
pub use storage::FileStorage;
pub use storage::{BlockStorage, MemoryStorage, StorageError};
