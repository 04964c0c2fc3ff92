//! Errors of the bring-up, each naming exactly what the device or the caller got wrong.

use crate::access::{AllocError, RamError};
use crate::caps::CapError;
use crate::driver::DriverState;
use crate::queue::QueueError;
use thiserror::Error;
use virq_events::Selector;

#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum DriverError {
    #[error(transparent)]
    Caps(#[from] CapError),
    #[error(transparent)]
    Queue(#[from] QueueError),
    #[error(transparent)]
    Ram(#[from] RamError),
    #[error(transparent)]
    Alloc(#[from] AllocError),
    #[error("device_status reads {status:#04x}: the function is gone (surprise removal)")]
    DeviceGone { status: u8 },
    #[error("device_status still {last_status:#04x} after {polls} reads following reset")]
    ResetTimeout { polls: u32, last_status: u8 },
    #[error("wanted features {wanted:#x} lack VIRTIO_F_VERSION_1 (bit 32)")]
    WantedLacksVersion1 { wanted: u64 },
    #[error("device offers features {offered:#x} without VIRTIO_F_VERSION_1: not a modern device")]
    DeviceLacksVersion1 { offered: u64 },
    #[error(
        "device cleared FEATURES_OK (status {status:#04x}) for accepted features {accepted:#x}"
    )]
    FeaturesOkRefused { accepted: u64, status: u8 },
    #[error("driver wants {wanted} queues, device has num_queues = {available}")]
    NotEnoughQueues { wanted: u16, available: u16 },
    #[error("queue {queue} is unavailable (queue_size reads 0)")]
    QueueUnavailable { queue: u16 },
    #[error("queue {queue} size changed across reset from {before} to {now}")]
    QueueSizeChanged { queue: u16, before: u16, now: u16 },
    #[error(
        "queue {queue}: queue_notify_off {notify_off} puts the notify address at {offset:#x}, outside the NOTIFY region"
    )]
    NotifyOutOfRange {
        queue: u16,
        notify_off: u16,
        offset: u64,
    },
    #[error(
        "device refuses MSI-X vectors: {selector:?} written {written:#06x} read back {read_back:#06x} after {plans_tried} plan(s)"
    )]
    DeviceRefusesVectors {
        selector: Selector,
        written: u16,
        read_back: u16,
        plans_tried: usize,
    },
    #[error("no APIC vector supplied for MessageNumber {message}")]
    MissingApicVector { message: u16 },
    #[error("no queue {queue} is set up")]
    NoSuchQueue { queue: u16 },
    #[error("the device has no device-specific configuration structure")]
    NoDeviceConfig,
    #[error(
        "device configuration read of {len} bytes at {offset:#x} is misaligned or outside its {length:#x}-byte structure"
    )]
    DeviceConfigRange { offset: u32, len: u32, length: u32 },
    #[error("config_generation changed on each of {attempts} consistent-read attempts")]
    ConfigGenerationUnstable { attempts: u32 },
    #[error("operation needs a running device, state is {state:?}")]
    NotRunning { state: DriverState },
}
