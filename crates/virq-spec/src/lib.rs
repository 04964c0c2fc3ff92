//! One home for the numbers of the virtio 1.2 and PCI specifications that both the device
//! side (`virq-device`) and the guest driver core (`virq-guest`) use.
//!
//! The guest library must not depend on the device implementation (and the device knows
//! nothing of any driver), so the register layout they both speak lives here, in a crate with
//! no dependencies that builds everywhere, `wasm32-unknown-unknown` and `no_std` included.
//! Every value cites the section it comes from.
#![no_std]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

/// "No vector": an unmapped `msix_config` / `queue_msix_vector` (virtio 1.2, 4.1.5.1.2).
pub const NO_VECTOR: u16 = 0xFFFF;

/// PCI configuration header (PCI Local Bus 3.0, 6.1 and 6.2).
pub mod pci {
    /// Size of the conventional configuration space.
    pub const CONFIG_SPACE_SIZE: usize = 256;
    /// Size of the PCI Express extended configuration space.
    pub const EXTENDED_CONFIG_SIZE: usize = 4096;

    /// Vendor ID (PCI 3.0, 6.2.1).
    pub const VENDOR_ID: u16 = 0x00;
    /// Device ID (PCI 3.0, 6.2.1).
    pub const DEVICE_ID: u16 = 0x02;
    /// Command register (PCI 3.0, 6.2.2).
    pub const COMMAND: u16 = 0x04;
    /// Status register (PCI 3.0, 6.2.3).
    pub const STATUS: u16 = 0x06;
    /// Revision ID (PCI 3.0, 6.2.1).
    pub const REVISION_ID: u16 = 0x08;
    /// Programming interface, the low byte of the Class Code (PCI 3.0, 6.2.1).
    pub const CLASS_PROG_IF: u16 = 0x09;
    /// Cache Line Size (PCI 3.0, 6.2.4).
    pub const CACHE_LINE_SIZE: u16 = 0x0C;
    /// Header Type (PCI 3.0, 6.2.1).
    pub const HEADER_TYPE: u16 = 0x0E;
    /// Base Address Register 0; BAR n is at `BAR0 + 4 * n`.
    pub const BAR0: u16 = 0x10;
    /// Subsystem Vendor ID (PCI 3.0, 6.2.4).
    pub const SUBSYSTEM_VENDOR_ID: u16 = 0x2C;
    /// Subsystem ID (PCI 3.0, 6.2.4).
    pub const SUBSYSTEM_ID: u16 = 0x2E;
    /// Capabilities Pointer (PCI 3.0, 6.7).
    pub const CAPABILITIES_POINTER: u16 = 0x34;
    /// Interrupt Line: the routing firmware wrote, for the OS (PCI 3.0, 6.2.4).
    pub const INTERRUPT_LINE: u16 = 0x3C;
    /// Interrupt Pin: which INTx# pin the function uses, 0 for none (PCI 3.0, 6.2.4).
    pub const INTERRUPT_PIN: u16 = 0x3D;

    /// Command bit 0: the function decodes its I/O BARs.
    pub const COMMAND_IO_SPACE: u16 = 1 << 0;
    /// Command bit 1: the function decodes its memory BARs.
    pub const COMMAND_MEMORY_SPACE: u16 = 1 << 1;
    /// Command bit 2: the function may master the bus. Without it the function must not
    /// initiate any memory access: no DMA and no MSI-X write (6.2.2).
    pub const COMMAND_BUS_MASTER: u16 = 1 << 2;
    /// Command bit 10: the function must not assert INTx.
    pub const COMMAND_INTERRUPT_DISABLE: u16 = 1 << 10;
    /// Status bit 3: an INTx interrupt is pending in the function.
    pub const STATUS_INTERRUPT: u16 = 1 << 3;
    /// Status bit 4: a capability list starts at [`CAPABILITIES_POINTER`].
    pub const STATUS_CAPABILITIES_LIST: u16 = 1 << 4;

    /// Interrupt Pin value for INTA#.
    pub const INTERRUPT_PIN_INTA: u8 = 1;

    /// Capability ID of a vendor-specific capability (what virtio uses).
    pub const CAP_ID_VENDOR: u8 = 0x09;
    /// Capability ID of MSI-X.
    pub const CAP_ID_MSIX: u8 = 0x11;

    /// BAR bit 0: an I/O BAR.
    pub const BAR_IO: u32 = 1;
    /// BAR bits 2:1 = 10b: a 64-bit memory BAR.
    pub const BAR_MEM_64: u32 = 0b100;
    /// BAR bit 3: prefetchable memory.
    pub const BAR_PREFETCHABLE: u32 = 0b1000;
}

/// The MSI-X capability, table and Pending Bit Array (PCI Local Bus 3.0, 6.8.2).
pub mod msix {
    /// Length of the MSI-X capability structure.
    pub const CAP_LEN: u8 = 12;
    /// Message Control bit 15: MSI-X Enable.
    pub const CONTROL_ENABLE: u16 = 1 << 15;
    /// Message Control bit 14: Function Mask.
    pub const CONTROL_FUNCTION_MASK: u16 = 1 << 14;
    /// Message Control bits 10:0: Table Size - 1.
    pub const CONTROL_TABLE_SIZE: u16 = 0x7FF;
    /// Largest table the capability can describe (an 11-bit Table Size field).
    pub const MAX_TABLE_SIZE: u16 = 2048;
    /// Size of one table entry in bytes.
    pub const ENTRY_SIZE: u64 = 16;
    /// Vector Control bit 0: the entry is masked.
    pub const VECTOR_CONTROL_MASK: u32 = 1;
    /// Table and PBA offsets keep the BAR indicator (BIR) in their low 3 bits.
    pub const BIR_MASK: u32 = 0x7;
}

/// The virtio-pci modern transport (virtio 1.2, 4.1).
pub mod virtio_pci {
    /// PCI vendor ID of virtio devices (4.1.2).
    pub const VENDOR_ID: u16 = 0x1AF4;
    /// Modern device IDs are 0x1040 + the virtio device ID (4.1.2).
    pub const DEVICE_ID_BASE: u16 = 0x1040;
    /// A non-transitional device has Revision ID 1 or higher (4.1.2.1).
    pub const MODERN_REVISION: u8 = 1;

    /// `sizeof(struct virtio_pci_cap)` (4.1.4).
    pub const CAP_LEN: u8 = 16;
    /// `sizeof(struct virtio_pci_notify_cap)`: the cap plus `notify_off_multiplier` (4.1.4.4).
    pub const NOTIFY_CAP_LEN: u8 = 20;
    /// `sizeof(struct virtio_pci_cfg_cap)`: the cap plus the `pci_cfg_data` window (4.1.4.9).
    pub const PCI_CFG_CAP_LEN: u8 = 20;
    /// Offset of `pci_cfg_data` in `struct virtio_pci_cfg_cap`.
    pub const PCI_CFG_DATA: u8 = 16;

    /// Size of `struct virtio_pci_common_cfg` including `queue_reset` (virtio 1.2).
    pub const COMMON_CFG_LEN: u64 = 0x3C;
    /// Smallest `common_cfg` that holds every virtio 1.0 field (through `queue_device`).
    pub const COMMON_CFG_MIN_LEN: u32 = 0x38;

    /// ISR status bit 0: a queue interrupt (4.1.4.5).
    pub const ISR_QUEUE: u8 = 1;
    /// ISR status bit 1: a configuration change interrupt (4.1.4.5).
    pub const ISR_CONFIG: u8 = 2;

    /// `cfg_type` values of `struct virtio_pci_cap` (4.1.4).
    pub mod cfg_type {
        /// `VIRTIO_PCI_CAP_COMMON_CFG`: common configuration (4.1.4.3).
        pub const COMMON: u8 = 1;
        /// `VIRTIO_PCI_CAP_NOTIFY_CFG`: notifications (4.1.4.4).
        pub const NOTIFY: u8 = 2;
        /// `VIRTIO_PCI_CAP_ISR_CFG`: the ISR status byte (4.1.4.5).
        pub const ISR: u8 = 3;
        /// `VIRTIO_PCI_CAP_DEVICE_CFG`: device-specific configuration (4.1.4.6).
        pub const DEVICE: u8 = 4;
        /// `VIRTIO_PCI_CAP_PCI_CFG`: the configuration-space access window (4.1.4.9).
        pub const PCI_CFG: u8 = 5;
    }
}

/// Field offsets in `struct virtio_pci_common_cfg` (virtio 1.2, 4.1.4.3).
pub mod common_cfg {
    /// `device_feature_select` (le32): which 32 bits `device_feature` shows.
    pub const DEVICE_FEATURE_SELECT: u64 = 0x00;
    /// `device_feature` (le32, read-only): 32 feature bits the device offers.
    pub const DEVICE_FEATURE: u64 = 0x04;
    /// `driver_feature_select` (le32): which 32 bits `driver_feature` takes.
    pub const DRIVER_FEATURE_SELECT: u64 = 0x08;
    /// `driver_feature` (le32): 32 feature bits the driver accepts.
    pub const DRIVER_FEATURE: u64 = 0x0C;
    /// `config_msix_vector`, `msix_config` in the spec text (le16): the configuration-change vector.
    pub const MSIX_CONFIG: u64 = 0x10;
    /// `num_queues` (le16, read-only): the most virtqueues the device supports.
    pub const NUM_QUEUES: u64 = 0x12;
    /// `device_status` (u8): the status bits of 2.1; writing 0 resets the device.
    pub const DEVICE_STATUS: u64 = 0x14;
    /// `config_generation` (u8, read-only): changes when device configuration changes.
    pub const CONFIG_GENERATION: u64 = 0x15;
    /// `queue_select` (le16): the queue the `queue_*` fields below refer to.
    pub const QUEUE_SELECT: u64 = 0x16;
    /// `queue_size` (le16): entries of the selected queue; the device's maximum after reset.
    pub const QUEUE_SIZE: u64 = 0x18;
    /// `queue_msix_vector` (le16): the selected queue's MSI-X vector.
    pub const QUEUE_MSIX_VECTOR: u64 = 0x1A;
    /// `queue_enable` (le16): 1 enables the selected queue.
    pub const QUEUE_ENABLE: u64 = 0x1C;
    /// `queue_notify_off` (le16, read-only): the queue's notify offset, in multiplier units.
    pub const QUEUE_NOTIFY_OFF: u64 = 0x1E;
    /// `queue_desc` (le64): guest-physical address of the descriptor table.
    pub const QUEUE_DESC: u64 = 0x20;
    /// `queue_driver` (le64): guest-physical address of the available ring (driver area).
    pub const QUEUE_DRIVER: u64 = 0x28;
    /// `queue_device` (le64): guest-physical address of the used ring (device area).
    pub const QUEUE_DEVICE: u64 = 0x30;
    /// `queue_notify_data` (le16, read-only): the value to notify with when
    /// VIRTIO_F_NOTIF_CONFIG_DATA is negotiated.
    pub const QUEUE_NOTIF_CONFIG_DATA: u64 = 0x38;
    /// `queue_reset` (le16): 1 resets the selected queue (VIRTIO_F_RING_RESET).
    pub const QUEUE_RESET: u64 = 0x3A;
}

/// `device_status` bits (virtio 1.2, 2.1).
pub mod status {
    /// ACKNOWLEDGE: the guest found the device.
    pub const ACKNOWLEDGE: u8 = 1;
    /// DRIVER: the guest knows how to drive it.
    pub const DRIVER: u8 = 2;
    /// DRIVER_OK: the driver is set up and ready to drive the device.
    pub const DRIVER_OK: u8 = 4;
    /// FEATURES_OK: the driver accepted the features; the device keeps it only if it agrees.
    pub const FEATURES_OK: u8 = 8;
    /// DEVICE_NEEDS_RESET: the device hit an error it cannot recover from.
    pub const DEVICE_NEEDS_RESET: u8 = 64;
    /// FAILED: the driver gave up on the device.
    pub const FAILED: u8 = 128;
}

/// Transport feature bits (virtio 1.2, 6), as masks.
pub mod features {
    /// VIRTIO_F_INDIRECT_DESC (28): indirect descriptor tables.
    pub const RING_INDIRECT_DESC: u64 = 1 << 28;
    /// VIRTIO_F_EVENT_IDX (29): `used_event` / `avail_event` suppress notifications.
    pub const RING_EVENT_IDX: u64 = 1 << 29;
    /// VIRTIO_F_VERSION_1 (32): a virtio 1.x device, not a legacy one.
    pub const VERSION_1: u64 = 1 << 32;
    /// VIRTIO_F_ACCESS_PLATFORM (33): the device's DMA goes through a platform IOMMU.
    pub const ACCESS_PLATFORM: u64 = 1 << 33;
    /// VIRTIO_F_RING_PACKED (34): packed virtqueues.
    pub const RING_PACKED: u64 = 1 << 34;
    /// VIRTIO_F_IN_ORDER (35): buffers are used in the order they were made available.
    pub const IN_ORDER: u64 = 1 << 35;
    /// VIRTIO_F_NOTIFICATION_DATA (38): notifications carry the next available position.
    pub const NOTIFICATION_DATA: u64 = 1 << 38;
    /// VIRTIO_F_RING_RESET (40): queues can be reset one at a time (`queue_reset`).
    pub const RING_RESET: u64 = 1 << 40;
}

/// The split virtqueue in guest memory (virtio 1.2, 2.7).
pub mod ring {
    /// Largest split-ring size (2.7).
    pub const MAX_QUEUE_SIZE: u16 = 32768;
    /// Descriptor continues via `next` (2.7.5).
    pub const VRING_DESC_F_NEXT: u16 = 1;
    /// Buffer is device write-only (2.7.5).
    pub const VRING_DESC_F_WRITE: u16 = 2;
    /// Buffer holds a table of indirect descriptors (2.7.5.3).
    pub const VRING_DESC_F_INDIRECT: u16 = 4;
    /// Driver does not want interrupts; meaningful only without EVENT_IDX (2.7.7).
    pub const VRING_AVAIL_F_NO_INTERRUPT: u16 = 1;
    /// Device does not want notifications; meaningful only without EVENT_IDX (2.7.10).
    pub const VRING_USED_F_NO_NOTIFY: u16 = 1;

    /// `sizeof(struct virtq_desc)`; also the descriptor table's alignment (2.7.5, 2.7.2).
    pub const DESC_SIZE: u64 = 16;
    /// Alignment of the available ring (2.7.2).
    pub const AVAIL_ALIGN: u64 = 2;
    /// Alignment of the used ring (2.7.2).
    pub const USED_ALIGN: u64 = 4;
    /// `flags` + `idx` ahead of the available ring's entries (2.7.6).
    pub const AVAIL_HEADER: u64 = 4;
    /// One available-ring entry: a le16 descriptor index.
    pub const AVAIL_ELEM_SIZE: u64 = 2;
    /// `flags` + `idx` ahead of the used ring's entries (2.7.8).
    pub const USED_HEADER: u64 = 4;
    /// One used-ring entry: le32 `id`, le32 `len`.
    pub const USED_ELEM_SIZE: u64 = 8;
    /// `used_event` / `avail_event` after the last ring entry (2.7.10).
    pub const EVENT_SUFFIX: u64 = 2;

    /// Bytes the descriptor table of a queue of `size` entries occupies.
    pub const fn desc_table_len(size: u16) -> u64 {
        DESC_SIZE * size as u64
    }
    /// Bytes the available ring (with `used_event`) occupies.
    pub const fn avail_ring_len(size: u16) -> u64 {
        AVAIL_HEADER + AVAIL_ELEM_SIZE * size as u64 + EVENT_SUFFIX
    }
    /// Bytes the used ring (with `avail_event`) occupies.
    pub const fn used_ring_len(size: u16) -> u64 {
        USED_HEADER + USED_ELEM_SIZE * size as u64 + EVENT_SUFFIX
    }
}

/// virtio-blk (virtio 1.2, 5.2): feature bit numbers, request types, status values.
pub mod blk {
    /// Maximum size of any single segment is in `size_max` (5.2.3).
    pub const VIRTIO_BLK_F_SIZE_MAX: u32 = 1;
    /// Maximum number of segments in a request is in `seg_max`.
    pub const VIRTIO_BLK_F_SEG_MAX: u32 = 2;
    /// Disk-style geometry specified in `geometry`.
    pub const VIRTIO_BLK_F_GEOMETRY: u32 = 4;
    /// Device is read-only.
    pub const VIRTIO_BLK_F_RO: u32 = 5;
    /// Block size of disk is in `blk_size`.
    pub const VIRTIO_BLK_F_BLK_SIZE: u32 = 6;
    /// Cache flush command support.
    pub const VIRTIO_BLK_F_FLUSH: u32 = 9;
    /// Device supports multiqueue; `num_queues` is valid.
    pub const VIRTIO_BLK_F_MQ: u32 = 12;

    /// Read (5.2.6).
    pub const VIRTIO_BLK_T_IN: u32 = 0;
    /// Write.
    pub const VIRTIO_BLK_T_OUT: u32 = 1;
    /// Flush.
    pub const VIRTIO_BLK_T_FLUSH: u32 = 4;
    /// Get the device ID string.
    pub const VIRTIO_BLK_T_GET_ID: u32 = 8;
    /// Length of the ID string VIRTIO_BLK_T_GET_ID returns.
    pub const VIRTIO_BLK_ID_BYTES: u32 = 20;

    /// Success (5.2.6).
    pub const VIRTIO_BLK_S_OK: u32 = 0;
    /// Device or driver error.
    pub const VIRTIO_BLK_S_IOERR: u32 = 1;
    /// Request unsupported by the device.
    pub const VIRTIO_BLK_S_UNSUPP: u32 = 2;
}
