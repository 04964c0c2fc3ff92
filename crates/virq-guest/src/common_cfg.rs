//! The virtio-pci modern `common_cfg` structure (virtio 1.2 section 4.1.4.3), device status
//! handling and feature negotiation (virtio 1.2 section 3.1.1).

use crate::access::{RegisterAccess, Width};
use crate::caps::CapRegion;
use crate::error::DriverError;
use virq_events::{EventKind, EventSink};

/// Field offsets inside the COMMON region.
pub mod offset {
    pub use virq_spec::common_cfg::*;
}

/// `device_status` bits (virtio 1.2 section 2.1).
pub mod status {
    pub use virq_spec::status::*;
}

/// Feature bits the core itself cares about (virtio 1.2 section 6).
pub mod feature {
    use virq_spec::features as f;

    /// `VIRTIO_F_INDIRECT_DESC` (bit 28): descriptors may point at indirect tables.
    pub const INDIRECT_DESC: u64 = f::RING_INDIRECT_DESC;
    pub use f::{
        ACCESS_PLATFORM, IN_ORDER, NOTIFICATION_DATA, RING_EVENT_IDX, RING_PACKED, RING_RESET,
        VERSION_1,
    };
    /// Features this core cannot drive (it only speaks split rings and plain 16-bit notifies),
    /// so they are never accepted even if wanted.
    pub const UNSUPPORTED: u64 = RING_PACKED | NOTIFICATION_DATA;
}

/// Typed access to `common_cfg` with the natural access width of every field
/// (virtio 1.2 section 4.1.3.1); 64-bit fields go as two 32-bit writes, low half first.
pub struct CommonCfg<'a, R: RegisterAccess + ?Sized> {
    regs: &'a mut R,
    region: CapRegion,
}

impl<'a, R: RegisterAccess + ?Sized> CommonCfg<'a, R> {
    /// Typed access to the `common_cfg` structure at `region` through `regs`.
    pub fn new(regs: &'a mut R, region: CapRegion) -> Self {
        Self { regs, region }
    }

    fn at(&self, off: u64) -> u64 {
        u64::from(self.region.offset) + off
    }

    /// Read the 8-bit field at `off` in `common_cfg`.
    pub fn read8(&mut self, off: u64) -> u8 {
        let at = self.at(off);
        self.regs.bar_read(self.region.bar, at, Width::U8) as u8
    }
    /// Read the 16-bit field at `off`.
    pub fn read16(&mut self, off: u64) -> u16 {
        let at = self.at(off);
        self.regs.bar_read(self.region.bar, at, Width::U16) as u16
    }
    /// Read the 32-bit field at `off`.
    pub fn read32(&mut self, off: u64) -> u32 {
        let at = self.at(off);
        self.regs.bar_read(self.region.bar, at, Width::U32) as u32
    }
    /// Write the 8-bit field at `off`.
    pub fn write8(&mut self, off: u64, v: u8) {
        let at = self.at(off);
        self.regs
            .bar_write(self.region.bar, at, Width::U8, u64::from(v))
    }
    /// Write the 16-bit field at `off`.
    pub fn write16(&mut self, off: u64, v: u16) {
        let at = self.at(off);
        self.regs
            .bar_write(self.region.bar, at, Width::U16, u64::from(v))
    }
    /// Write the 32-bit field at `off`.
    pub fn write32(&mut self, off: u64, v: u32) {
        let at = self.at(off);
        self.regs
            .bar_write(self.region.bar, at, Width::U32, u64::from(v))
    }
    /// Two 32-bit writes, low then high, as Windows and Linux drivers do.
    pub fn write64(&mut self, off: u64, v: u64) {
        self.write32(off, v as u32);
        self.write32(off + 4, (v >> 32) as u32);
    }

    /// `device_status` as the device reports it now.
    pub fn device_status(&mut self) -> u8 {
        self.read8(offset::DEVICE_STATUS)
    }

    /// Write `device_status` and record it as evidence (log format 5).
    pub fn set_device_status(&mut self, value: u8, sink: &dyn EventSink) {
        self.write8(offset::DEVICE_STATUS, value);
        sink.emit(EventKind::DeviceStatus { value });
    }

    /// OR `bits` into `device_status` (the driver only ever adds bits, except by reset).
    pub fn add_status(&mut self, bits: u8, sink: &dyn EventSink) -> Result<u8, DriverError> {
        let now = self.device_status();
        if now == 0xFF {
            return Err(DriverError::DeviceGone { status: now });
        }
        self.set_device_status(now | bits, sink);
        Ok(now | bits)
    }

    /// `num_queues`: the most queues the device offers.
    pub fn num_queues(&mut self) -> u16 {
        self.read16(offset::NUM_QUEUES)
    }

    /// `config_generation`: compare before and after reading device configuration.
    pub fn config_generation(&mut self) -> u8 {
        self.read8(offset::CONFIG_GENERATION)
    }

    /// Write `queue_select`: the `queue_*` fields that follow are this queue's.
    pub fn select_queue(&mut self, queue: u16) {
        self.write16(offset::QUEUE_SELECT, queue);
    }

    /// Read the 64-bit feature set offered by the device through `device_feature_select` 0/1.
    pub fn device_features(&mut self) -> u64 {
        self.write32(offset::DEVICE_FEATURE_SELECT, 0);
        let low = self.read32(offset::DEVICE_FEATURE);
        self.write32(offset::DEVICE_FEATURE_SELECT, 1);
        let high = self.read32(offset::DEVICE_FEATURE);
        (u64::from(high) << 32) | u64::from(low)
    }

    /// Write the accepted features through `driver_feature_select` 0/1.
    pub fn set_driver_features(&mut self, accepted: u64) {
        self.write32(offset::DRIVER_FEATURE_SELECT, 0);
        self.write32(offset::DRIVER_FEATURE, accepted as u32);
        self.write32(offset::DRIVER_FEATURE_SELECT, 1);
        self.write32(offset::DRIVER_FEATURE, (accepted >> 32) as u32);
    }

    /// Reset: write 0, then wait for `device_status` to read 0 (virtio 1.2 section 4.1.4.3.2),
    /// polling at most `poll_limit` times. A read of 0xFF means the function is gone.
    pub fn reset(&mut self, poll_limit: u32, sink: &dyn EventSink) -> Result<(), DriverError> {
        self.set_device_status(0, sink);
        let mut last = 0xFF;
        for _ in 0..poll_limit.max(1) {
            last = self.device_status();
            if last == 0 {
                sink.emit(EventKind::DeviceReset);
                return Ok(());
            }
            if last == 0xFF {
                return Err(DriverError::DeviceGone { status: last });
            }
        }
        Err(DriverError::ResetTimeout {
            polls: poll_limit.max(1),
            last_status: last,
        })
    }
}

/// The outcome of feature negotiation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Negotiated {
    /// The device's `device_feature` bits.
    pub offered: u64,
    /// The bits the driver wrote back in `driver_feature` and the device kept with FEATURES_OK.
    pub accepted: u64,
}

impl Negotiated {
    /// Whether every bit of `bit` was accepted.
    pub fn has(&self, bit: u64) -> bool {
        self.accepted & bit == bit
    }
}

/// Steps 1-6 of virtio 1.2 section 3.1.1: reset, ACKNOWLEDGE, DRIVER, read the device's features,
/// write the intersection with `wanted`, set FEATURES_OK and confirm the device kept it.
///
/// On any failure after ACKNOWLEDGE the caller should set FAILED (the driver does).
pub fn negotiate_features<R: RegisterAccess + ?Sized>(
    cc: &mut CommonCfg<'_, R>,
    wanted: u64,
    reset_poll_limit: u32,
    sink: &dyn EventSink,
) -> Result<Negotiated, DriverError> {
    if wanted & feature::VERSION_1 == 0 {
        return Err(DriverError::WantedLacksVersion1 { wanted });
    }
    cc.reset(reset_poll_limit, sink)?;
    cc.add_status(status::ACKNOWLEDGE, sink)?;
    cc.add_status(status::DRIVER, sink)?;
    let offered = cc.device_features();
    if offered & feature::VERSION_1 == 0 {
        sink.emit(EventKind::FeaturesNegotiated {
            offered,
            accepted: 0,
            ok: false,
        });
        return Err(DriverError::DeviceLacksVersion1 { offered });
    }
    let accepted = offered & wanted & !feature::UNSUPPORTED;
    cc.set_driver_features(accepted);
    cc.add_status(status::FEATURES_OK, sink)?;
    let now = cc.device_status();
    let ok = now != 0xFF && now & status::FEATURES_OK != 0;
    sink.emit(EventKind::FeaturesNegotiated {
        offered,
        accepted,
        ok,
    });
    if now == 0xFF {
        return Err(DriverError::DeviceGone { status: now });
    }
    if !ok {
        return Err(DriverError::FeaturesOkRefused {
            accepted,
            status: now,
        });
    }
    Ok(Negotiated { offered, accepted })
}
