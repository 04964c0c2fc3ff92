//! virq's device side: a spec-exact virtio-pci modern transport with MSI-X and INTx.
//!
//! The crate knows nothing about any operating system or platform, and builds for
//! `wasm32-unknown-unknown`. A VMM (or virq's simulated machine, or its KVM machine, or an
//! emulator in a browser) hands it guest memory ([`GuestMemory`]: its own small trait, with
//! [`VecMemory`] for a flat buffer and, with the `vm-memory` feature, rust-vmm's
//! `GuestMemoryMmap`) and an [`InterruptSink`], then forwards configuration-space and BAR
//! accesses; the device answers exactly as the virtio 1.2 specification and PCI Local Bus 3.0
//! say, and records what it did as [`virq_events::Event`]s for the doctor.
//!
//! # Where things are
//! | behaviour | file |
//! |---|---|
//! | vector read-back: an index the table lacks reads `NO_VECTOR`; reset returns every selector to it | `src/transport/common_cfg.rs` (`accept_vector`, `write_vector`, `reset`) |
//! | INTx level: computed in one place from ISR status, MSI-X Enable and Command bit 10 | `src/transport/isr.rs` (`update_intx`) |
//! | ISR status, read-to-clear | `src/transport/isr.rs` (`isr_read`) |
//! | Status bit 3, Command edges, Message Control, the `pci_cfg` window | `src/transport/config.rs` |
//! | raising an interrupt: ISR bit, then MSI-X or INTx, never both | `src/transport/interrupts.rs` (`signal`) |
//! | Pending Bits a source leaves behind, withdrawn on reset and re-route (row 30) | `src/transport/interrupts.rs` |
//! | Bus Master gate: no DMA while Command bit 2 is clear, deferred notifications (row 29) | `src/transport/queues.rs` |
//! | used-buffer interrupt decision (EVENT_IDX, NO_INTERRUPT, the store-load fence) | `src/ring.rs` (`used_notification`) |
//! | notify decoding | `src/transport/notify.rs` |
//! | BAR decode and routing | `src/transport/mmio.rs` |
//! | capability list and BARs at construction | `src/transport/caps.rs`, `src/layout.rs` |
//! | MSI-X table, PBA, masks, delivery on unmask | `src/msix.rs` |
//! | configuration bytes and write masks | `src/pci.rs` |
//! | split virtqueue: descriptor walk, indirect tables, used ring | `src/ring.rs` |
//! | guest memory: the trait, `VecMemory`, the flat fast path, vm-memory; [`flat_guest_memory!`] for your own one-buffer RAM | `src/memory/` |
//! | snapshot, validation, restore | `src/transport/snapshot.rs` |
//! | catalogue faults (feature `fault-injection`) | `src/transport/faults.rs` |
//! | PCI root: mechanism #1, host bridge, firmware BAR assignment | `src/pci_root.rs` |
//! | register numbers shared with the guest library | the `virq-spec` crate |
//! | the test toolkit: device builder, ring writer, sinks (feature `test-utils`) | `src/testing/` |
//!
//! # Features
//! - `vm-memory`: [`GuestMemory`] for `vm_memory::GuestMemoryMmap<()>` (native targets).
//! - `fault-injection`: `DeviceFaults` and `VirtioPciDevice::set_faults`, the device-side rows
//!   of the failure catalogue. Without it the deviations are compiled out.
//! - `test-utils`: the `testing` module, the toolkit every test, benchmark and fuzz target
//!   drives the device with (a device builder, a driver-side ring writer, recording sinks,
//!   stand-in backends). For dev-dependencies only.
//!
//! # Embedding in a VMM
//! ```
//! use std::sync::{Arc, Mutex};
//! use virq_device::{InterruptSink, TransportOptions, VecMemory, VirtioPciDevice};
//! use virq_device::testing::NullBackend; // a stand-in device type (feature `test-utils`)
//!
//! /// Where MSI-X messages and the INTx level go: KVM_SIGNAL_MSI / KVM_IRQ_LINE in a real VMM.
//! #[derive(Default)]
//! struct Irqs { msis: Mutex<Vec<(u64, u32)>>, line: Mutex<bool> }
//! impl InterruptSink for Irqs {
//!     fn msi(&self, address: u64, data: u32) { self.msis.lock().unwrap().push((address, data)); }
//!     fn set_intx(&self, level: bool) { *self.line.lock().unwrap() = level; }
//! }
//!
//! let ram = VecMemory::new(1 << 20);
//! let irqs = Arc::new(Irqs::default());
//! let mut dev = VirtioPciDevice::new(
//!     Box::new(NullBackend::new(2)), ram, irqs.clone(), TransportOptions::default(),
//! ).unwrap();
//!
//! // The platform's PCI bus forwards configuration cycles...
//! let mut id = [0u8; 4];
//! dev.config_read(0, &mut id);
//! assert_eq!(u32::from_le_bytes(id), 0x1040_1AF4 + (0xFF << 16)); // 1AF4:1040+id
//! // ...assigns BAR0 and enables memory decoding and bus mastering...
//! dev.config_write(0x10, &0xC000_0000u32.to_le_bytes());
//! dev.config_write(0x14, &0u32.to_le_bytes());
//! dev.config_write(0x04, &0x0006u16.to_le_bytes());
//! // ...and routes MMIO exits: msix_config is at BAR0 + 0x10, 0xFFFF after power-on.
//! let mut v = [0u8; 2];
//! assert!(dev.mmio_read(0xC000_0010, &mut v));
//! assert_eq!(u16::from_le_bytes(v), 0xFFFF);
//! ```

#![deny(missing_docs)]

pub mod backend;
pub mod layout;
pub mod memory;
pub mod msix;
pub mod pci;
pub mod pci_root;
pub mod ring;
#[cfg(any(test, feature = "test-utils"))]
pub mod testing;
mod transport;

pub use backend::{BackendError, Processed, VirtioBackend};
pub use layout::{Layout, LayoutError, Region};
pub use memory::{Dma, FlatRegion, FlatWindow, GuestMemory, MemoryError, VecMemory};
pub use ring::{DescriptorChain, SplitQueue, Virtqueue};
#[cfg(feature = "fault-injection")]
pub use transport::DeviceFaults;
pub use transport::{
    DeviceError, DeviceSnapshot, QueueSnapshot, SnapshotError, TransportOptions, VirtioPciDevice,
};
pub use virq_events::NO_VECTOR;
pub use virq_spec::common_cfg as common;
pub use virq_spec::virtio_pci::cfg_type;
pub use virq_spec::{features, status};

/// The only way interrupts leave the device: the platform turns these into APIC messages
/// (`KVM_SIGNAL_MSI`, a simulated LAPIC) or an IOAPIC pin level.
///
/// The device calls it from inside the access that caused the interrupt, holding no lock of
/// its own; `&self` so one sink can serve several devices.
pub trait InterruptSink: Send + Sync {
    /// Deliver an MSI-X message: a DWORD write of `data` to `address`.
    fn msi(&self, address: u64, data: u32);
    /// Set the level of the function's INTx pin (INTA#). Called only on changes.
    fn set_intx(&self, level: bool);
}
