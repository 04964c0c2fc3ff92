//! virq's device side: a spec-exact virtio-pci modern transport with MSI-X and INTx.
//!
//! The crate knows nothing about any operating system or platform. A VMM (or virq's simulated
//! machine, or its KVM machine) hands it guest memory and an [`InterruptSink`], then forwards
//! configuration-space and BAR accesses; the device answers exactly as the virtio 1.2
//! specification and PCI Local Bus 3.0 say, and records what it did as
//! [`virq_events::Event`]s for the doctor.
//!
//! # Embedding in a VMM
//! ```
//! use std::sync::{Arc, Mutex};
//! use virq_device::{InterruptSink, TransportOptions, VirtioPciDevice};
//! use virq_device::testing::NullBackend;
//! use vm_memory::{GuestAddress, GuestMemoryMmap};
//!
//! /// Where MSI-X messages and the INTx level go: KVM_SIGNAL_MSI / KVM_IRQ_LINE in a real VMM.
//! #[derive(Default)]
//! struct Irqs { msis: Mutex<Vec<(u64, u32)>>, line: Mutex<bool> }
//! impl InterruptSink for Irqs {
//!     fn msi(&self, address: u64, data: u32) { self.msis.lock().unwrap().push((address, data)); }
//!     fn set_intx(&self, level: bool) { *self.line.lock().unwrap() = level; }
//! }
//!
//! let ram = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 1 << 20)]).unwrap();
//! let irqs = Arc::new(Irqs::default());
//! let mut dev = VirtioPciDevice::new(
//!     Box::new(NullBackend::new(2)), ram, irqs.clone(), TransportOptions::default(),
//! ).unwrap();
//!
//! // The platform's PCI bus forwards configuration cycles...
//! let mut id = [0u8; 4];
//! dev.config_read(0, &mut id);
//! assert_eq!(u32::from_le_bytes(id), 0x1040_1AF4 + (0xFF << 16)); // 1AF4:1040+id
//! // ...assigns BAR0 and enables memory decoding...
//! dev.config_write(0x10, &0xC000_0000u32.to_le_bytes());
//! dev.config_write(0x14, &0u32.to_le_bytes());
//! dev.config_write(0x04, &0x0006u16.to_le_bytes());
//! // ...and routes MMIO exits: msix_config is at BAR0 + 0x10, 0xFFFF after power-on.
//! let mut v = [0u8; 2];
//! assert!(dev.mmio_read(0xC000_0010, &mut v));
//! assert_eq!(u16::from_le_bytes(v), 0xFFFF);
//! ```

pub mod backend;
pub mod device;
pub mod layout;
pub mod msix;
pub mod pci;
pub mod testing;

pub use backend::{BackendError, GuestMemory, Processed, VirtioBackend};
pub use device::{
    DeviceError, DeviceFaults, DeviceSnapshot, QueueSnapshot, TransportOptions, VirtioPciDevice,
    cfg_type, common,
};
pub use layout::{Layout, LayoutError, Region};
pub use virq_events::NO_VECTOR;

/// The only way interrupts leave the device: the platform turns these into APIC messages
/// (`KVM_SIGNAL_MSI`, a simulated LAPIC) or an IOAPIC pin level.
pub trait InterruptSink: Send + Sync {
    /// Deliver an MSI-X message: a DWORD write of `data` to `address`.
    fn msi(&self, address: u64, data: u32);
    /// Set the level of the function's INTx pin (INTA#). Called only on changes.
    fn set_intx(&self, level: bool);
}

/// Transport feature bits (virtio 1.2, section 6), as masks.
pub mod features {
    use virtio_bindings::virtio_config as c;
    use virtio_bindings::virtio_ring as r;

    pub const RING_INDIRECT_DESC: u64 = 1 << r::VIRTIO_RING_F_INDIRECT_DESC;
    pub const RING_EVENT_IDX: u64 = 1 << r::VIRTIO_RING_F_EVENT_IDX;
    pub const VERSION_1: u64 = 1 << c::VIRTIO_F_VERSION_1;
    pub const NOTIFICATION_DATA: u64 = 1 << c::VIRTIO_F_NOTIFICATION_DATA;
    pub const RING_RESET: u64 = 1 << c::VIRTIO_F_RING_RESET;
}

/// `device_status` bits (virtio 1.2, 2.1).
pub mod status {
    use virtio_bindings::virtio_config as c;

    pub const ACKNOWLEDGE: u8 = c::VIRTIO_CONFIG_S_ACKNOWLEDGE as u8;
    pub const DRIVER: u8 = c::VIRTIO_CONFIG_S_DRIVER as u8;
    pub const DRIVER_OK: u8 = c::VIRTIO_CONFIG_S_DRIVER_OK as u8;
    pub const FEATURES_OK: u8 = c::VIRTIO_CONFIG_S_FEATURES_OK as u8;
    pub const DEVICE_NEEDS_RESET: u8 = c::VIRTIO_CONFIG_S_NEEDS_RESET as u8;
    pub const FAILED: u8 = c::VIRTIO_CONFIG_S_FAILED as u8;
}

#[cfg(test)]
pub(crate) mod test_util;
