//! A qtest client of virq's own.
//!
//! It drives two devices through one protocol: QEMU's virtio-pci modern devices (a passive
//! q35 PC under `-qtest stdio`, the CPU halted on a BIOS of HLT bytes, so the harness plays
//! firmware, bus driver and interrupt controller) and virq's device behind an in-process
//! `virq serve` session, which speaks the same protocol. On both it hosts `virq-guest`
//! ([`host`]) and runs the scenarios of [`scenarios`].

#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod differential;
pub mod host;
pub mod pc;
pub mod scenarios;
pub mod target;
pub mod wire;

pub use host::{Host, HostConfig, HostError};
pub use target::{DeviceKind, DeviceSpec, Target, TargetError};
