//! Errors of the bring-up, each naming exactly what the device or the caller got wrong.

use crate::access::{AllocError, RamError};
use crate::caps::CapError;
use crate::driver::DriverState;
use crate::queue::QueueError;
use thiserror::Error;
use virq_events::Selector;

/// Why a bring-up or an operation of the driver core failed.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum DriverError {
    /// Capability parsing failed.
    #[error(transparent)]
    Caps(#[from] CapError),
    /// A queue operation failed.
    #[error(transparent)]
    Queue(#[from] QueueError),
    /// Guest RAM refused an access.
    #[error(transparent)]
    Ram(#[from] RamError),
    /// The ring region ran out.
    #[error(transparent)]
    Alloc(#[from] AllocError),
    /// `device_status` reads 0xFF: the function is gone (surprise removal).
    #[error("device_status reads {status:#04x}: the function is gone (surprise removal)")]
    DeviceGone {
        /// The value read.
        status: u8,
    },
    /// The device did not finish a reset (`device_status` back to 0) in the allowed reads.
    #[error("device_status still {last_status:#04x} after {polls} reads following reset")]
    ResetTimeout {
        /// Reads made.
        polls: u32,
        /// The last value read.
        last_status: u8,
    },
    /// The caller's wanted features lack VIRTIO_F_VERSION_1.
    #[error("wanted features {wanted:#x} lack VIRTIO_F_VERSION_1 (bit 32)")]
    WantedLacksVersion1 {
        /// The wanted set.
        wanted: u64,
    },
    /// The device does not offer VIRTIO_F_VERSION_1: it is not a modern device.
    #[error("device offers features {offered:#x} without VIRTIO_F_VERSION_1: not a modern device")]
    DeviceLacksVersion1 {
        /// The offered set.
        offered: u64,
    },
    #[error(
        "device cleared FEATURES_OK (status {status:#04x}) for accepted features {accepted:#x}"
    )]
    /// FEATURES_OK did not stick: the device refused the accepted features (virtio 1.2, 3.1.1).
    FeaturesOkRefused {
        /// Features written.
        accepted: u64,
        /// `device_status` read back.
        status: u8,
    },
    /// The device has fewer queues than the driver needs.
    #[error("driver wants {wanted} queues, device has num_queues = {available}")]
    NotEnoughQueues {
        /// Queues wanted.
        wanted: u16,
        /// `num_queues`.
        available: u16,
    },
    /// `queue_size` reads 0: the queue does not exist.
    #[error("queue {queue} is unavailable (queue_size reads 0)")]
    QueueUnavailable {
        /// The queue.
        queue: u16,
    },
    /// `queue_size` differs from before the reset (a device must not do that).
    #[error("queue {queue} size changed across reset from {before} to {now}")]
    QueueSizeChanged {
        /// The queue.
        queue: u16,
        /// The size before.
        before: u16,
        /// The size now.
        now: u16,
    },
    #[error(
        "queue {queue}: queue_notify_off {notify_off} puts the notify address at {offset:#x}, outside the NOTIFY region"
    )]
    /// `queue_notify_off` puts the notify address outside the notification structure.
    NotifyOutOfRange {
        /// The queue.
        queue: u16,
        /// `queue_notify_off` as read.
        notify_off: u16,
        /// The resulting offset in the BAR.
        offset: u64,
    },
    #[error(
        "device refuses MSI-X vectors: {selector:?} written {written:#06x} read back {read_back:#06x} after {plans_tried} plan(s)"
    )]
    /// Every rung of the vector ladder was refused (read back differently from what was written).
    DeviceRefusesVectors {
        /// The selector of the last refusal.
        selector: Selector,
        /// The vector written.
        written: u16,
        /// What it read back as (`VIRTIO_MSI_NO_VECTOR` on refusal).
        read_back: u16,
        /// Plans tried before giving up.
        plans_tried: usize,
    },
    /// The grant lacks the APIC vector of a message the evidence needs.
    #[error("no APIC vector supplied for MessageNumber {message}")]
    MissingApicVector {
        /// The MessageNumber.
        message: u16,
    },
    /// The queue was never set up.
    #[error("no queue {queue} is set up")]
    NoSuchQueue {
        /// The queue.
        queue: u16,
    },
    /// The device has no `VIRTIO_PCI_CAP_DEVICE_CFG` structure.
    #[error("the device has no device-specific configuration structure")]
    NoDeviceConfig,
    #[error(
        "device configuration read of {len} bytes at {offset:#x} is misaligned or outside its {length:#x}-byte structure"
    )]
    /// A device configuration access that is misaligned or outside the structure.
    DeviceConfigRange {
        /// Offset asked for.
        offset: u32,
        /// Width in bytes.
        len: u32,
        /// Length of the structure.
        length: u32,
    },
    /// `config_generation` never held still across a read (virtio 1.2, 4.1.4.3.1).
    #[error("config_generation changed on each of {attempts} consistent-read attempts")]
    ConfigGenerationUnstable {
        /// Reads tried.
        attempts: u32,
    },
    /// The operation needs a running driver.
    #[error("operation needs a running device, state is {state:?}")]
    NotRunning {
        /// The state it is in.
        state: DriverState,
    },
}
