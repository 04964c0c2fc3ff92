//! Portable guest-side core of a virtio-pci *modern* driver, centred on getting interrupts right.
//!
//! It does the bring-up the interrupt checklist describes, against any device reachable through
//! [`RegisterAccess`] and any memory reachable through [`GuestRam`]:
//!
//! 1. [`VirtioPciCaps::parse`]: a hardened walk of the PCI capability list (virtio 1.2 4.1.4).
//! 2. Feature negotiation (virtio 1.2 3.1.1) with the FEATURES_OK check.
//! 3. Split-ring queues ([`SplitQueue`]) in a caller-supplied RAM region.
//! 4. A [`VectorPlan`] for the granted messages (per-queue, shared, all on 0, INTx).
//! 5. Programming `msix_config` / `queue_msix_vector` with read-back, falling back when the
//!    device answers 0xFFFF, re-applied after every reset ([`VirtioPciDriver::quiesce`] /
//!    [`VirtioPciDriver::resume`]); queues are enabled only after the whole plan is accepted.
//! 6. INTx and message ISRs, DPCs, and per-message counters (checklist 5.4); per-queue drains
//!    and polling ([`VirtioPciDriver::drain_queue`], [`VirtioPciDriver::poll`]); queue
//!    interrupts turned off and on without stranding a completion
//!    ([`VirtioPciDriver::enable_queue_interrupts`], virtio 1.2 2.7.14).
//! 7. Device-specific configuration read consistently across `config_generation`
//!    ([`VirtioPciDriver::read_device_config`], virtio 1.2 2.5.1).
//!
//! A host implements [`RegisterAccess`], [`GuestRam`] and, to learn of mode changes the driver
//! makes itself (MSI-X turned off, a line interrupt needed), [`PlatformHooks`].
//!
//! Every step leaves [`virq_events::EventKind`] evidence in an optional sink, and
//! [`DriverFaults`] reproduces the driver-side rows of the failure catalogue on demand.
//!
//! The core knows nothing of any OS: the OS half (who grants how many messages, which APIC
//! vector backs each) arrives as an [`InterruptGrant`]. If the same sink also receives the
//! device model's events, transport facts such as `VectorWritten` appear once from each side.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod access;
pub mod caps;
pub mod common_cfg;
pub mod driver;
pub mod error;
pub mod queue;
pub mod vectors;

#[cfg(test)]
mod fake;
#[cfg(test)]
mod tests;

pub use access::{
    AllocError, GuestRam, GuestRamExt, RamError, RegisterAccess, RingAllocator, VecRam, Width,
};
pub use caps::{
    BarAddress, CapDefect, CapError, CapRegion, MsixCap, NotifyRegion, SkippedCap, VirtioCfgType,
    VirtioPciCaps, read_bar_address,
};
pub use common_cfg::{CommonCfg, Negotiated, negotiate_features};
pub use driver::{
    CONFIG_READ_ATTEMPTS, Counters, DeviceConfig, DpcOutcome, DriverConfig, DriverFaults,
    DriverState, InterruptGrant, MessageCounters, ModeChange, NoHooks, PlatformHooks,
    VectorReadBack, VirtioPciDriver,
};
pub use error::DriverError;
pub use queue::{Buffer, NotifyAddress, QueueError, RingAddresses, SplitQueue, UsedElem};
pub use vectors::{MessageNumber, PlanShape, VectorPlan, VectorPolicy};
