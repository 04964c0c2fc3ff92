//! A safe Rust face on the C API for the tests and the bench: a device over RAM this side
//! owns, its interrupts recorded, and a small virtio-blk driver that speaks to it only through
//! the exported `extern "C"` functions (what a C caller links).
#![allow(dead_code)]

use std::ffi::{CStr, c_char, c_void};
use std::sync::Mutex;

use virq_capi::*;
use virq_spec::common_cfg as common;
use virq_spec::{pci, ring, status};

pub const RAM_BYTES: usize = 1 << 20;
pub const BAR0: u64 = 0xE000_0000;
pub const BAR2: u64 = 0xE010_0000;
/// The transport layout virq's devices use by default (found through the capability list by
/// the C example; fixed here to keep the tests short).
pub const COMMON: u64 = BAR0;
pub const NOTIFY: u64 = BAR0 + 0x1000;
pub const NOTIFY_MULTIPLIER: u64 = 4;
pub const ISR: u64 = BAR0 + 0x2000;
pub const DEVICE_CFG: u64 = BAR0 + 0x3000;
pub const MSIX_TABLE: u64 = BAR2;
pub const MSIX_PBA: u64 = BAR2 + 0x8000;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Irq {
    Msi(u64, u32),
    Intx(bool),
}

/// What the callbacks saw, and what a callback does when called (for the re-entry tests).
#[derive(Default)]
pub struct Seen {
    pub irqs: Mutex<Vec<Irq>>,
    pub events: Mutex<Vec<String>>,
    /// Set by a test: the device, so that a callback can try to call back into it.
    pub reenter: Mutex<Option<usize>>,
    pub reentry_status: Mutex<Vec<VirqStatus>>,
}

unsafe extern "C" fn on_msi(user: *mut c_void, address: u64, data: u32) {
    // SAFETY: `user` is the `Seen` a `Dev` registered, alive as long as the device.
    let seen = unsafe { &*(user as *const Seen) };
    seen.irqs.lock().unwrap().push(Irq::Msi(address, data));
    if let Some(dev) = *seen.reenter.lock().unwrap() {
        let mut v = 0u64;
        // SAFETY: `dev` is the live device this callback belongs to.
        let s = unsafe { virq_mmio_read(dev as *mut VirqDevice, COMMON, 2, &mut v) };
        // SAFETY: as above.
        let d = unsafe { virq_device_destroy(dev as *mut VirqDevice) };
        seen.reentry_status.lock().unwrap().extend([s, d]);
    }
}

unsafe extern "C" fn on_intx(user: *mut c_void, level: bool) {
    // SAFETY: as in `on_msi`.
    let seen = unsafe { &*(user as *const Seen) };
    seen.irqs.lock().unwrap().push(Irq::Intx(level));
}

unsafe extern "C" fn on_event(user: *mut c_void, json: *const c_char, len: usize) {
    // SAFETY: as in `on_msi`.
    let seen = unsafe { &*(user as *const Seen) };
    // SAFETY: the library passes a NUL-terminated string of `len` bytes.
    let text = unsafe { CStr::from_ptr(json) }
        .to_str()
        .unwrap()
        .to_string();
    assert_eq!(text.len(), len);
    seen.events.lock().unwrap().push(text);
}

/// What a driver does to a device: configuration cycles, MMIO and stores into guest RAM.
/// The C API device ([`Dev`]) and the bench's Rust baseline both implement it, so the same
/// driver code drives both.
pub trait Bus {
    fn cfg_read(&self, offset: u16, width: u32) -> u32;
    fn cfg_write(&self, offset: u16, width: u32, value: u32);
    fn read(&self, addr: u64, width: u32) -> u64;
    fn write(&self, addr: u64, width: u32, value: u64);
    fn ram_write(&self, gpa: u64, data: &[u8]);
    fn ram_read(&self, gpa: u64, len: usize) -> Vec<u8>;

    fn ram_u16(&self, gpa: u64) -> u16 {
        u16::from_le_bytes(self.ram_read(gpa, 2).try_into().unwrap())
    }

    /// Place BAR0 and (with MSI-X) BAR2, then Memory Space and Bus Master on.
    fn place_bars(&self) {
        let bar = |i: u16| pci::BAR0 + 4 * i;
        self.cfg_write(bar(0), 4, BAR0 as u32);
        self.cfg_write(bar(1), 4, 0);
        self.cfg_write(bar(2), 4, BAR2 as u32);
        self.cfg_write(bar(3), 4, 0);
        self.cfg_write(
            pci::COMMAND,
            2,
            u32::from(pci::COMMAND_MEMORY_SPACE | pci::COMMAND_BUS_MASTER),
        );
    }

    /// Point MSI-X table entry `entry` at `address`/`data`, unmasked.
    fn program_entry(&self, entry: u64, address: u64, data: u32) {
        let e = MSIX_TABLE + 16 * entry;
        self.write(e, 8, address);
        self.write(e + 8, 4, u64::from(data));
        self.write(e + 12, 4, 0);
    }

    /// MSI-X Enable in Message Control (the capability is found through the list).
    fn enable_msix(&self) {
        let cap = self
            .find_cap(pci::CAP_ID_MSIX)
            .expect("an MSI-X capability");
        let control = self.cfg_read(cap + 2, 2);
        self.cfg_write(
            cap + 2,
            2,
            control | u32::from(virq_spec::msix::CONTROL_ENABLE),
        );
    }

    fn find_cap(&self, id: u8) -> Option<u16> {
        let mut at = self.cfg_read(pci::CAPABILITIES_POINTER, 1) as u16;
        while at != 0 {
            if self.cfg_read(at, 1) as u8 == id {
                return Some(at);
            }
            at = self.cfg_read(at + 1, 1) as u16;
        }
        None
    }
}

/// A device over 1 MiB of RAM at guest-physical 0 that this side allocated.
pub struct Dev {
    pub raw: *mut VirqDevice,
    ram: *mut u64,
    pub seen: Box<Seen>,
}

/// Callbacks to install.
#[derive(Clone, Copy)]
pub struct Wants {
    pub irqs: bool,
    pub events_callback: bool,
}

impl Default for Wants {
    fn default() -> Self {
        Wants {
            irqs: true,
            events_callback: false,
        }
    }
}

pub fn config(device_type: VirqDeviceType) -> VirqDeviceConfig {
    virq_device_config_default(device_type as u32)
}

pub fn last_error() -> String {
    // SAFETY: the library returns a NUL-terminated string valid until the next call.
    unsafe { CStr::from_ptr(virq_last_error()) }
        .to_string_lossy()
        .into_owned()
}

impl Dev {
    pub fn new(cfg: &VirqDeviceConfig) -> Result<Dev, VirqStatus> {
        Self::with(cfg, Wants::default())
    }

    pub fn with(cfg: &VirqDeviceConfig, wants: Wants) -> Result<Dev, VirqStatus> {
        let ram = Box::into_raw(vec![0u64; RAM_BYTES / 8].into_boxed_slice()).cast::<u64>();
        let seen = Box::<Seen>::default();
        let callbacks = VirqCallbacks {
            user: (&*seen as *const Seen).cast_mut().cast::<c_void>(),
            msi: wants.irqs.then_some(on_msi as _),
            intx: wants.irqs.then_some(on_intx as _),
            event: wants.events_callback.then_some(on_event as _),
        };
        let mut raw = std::ptr::null_mut();
        // SAFETY: `ram` is an 8-aligned allocation of RAM_BYTES freed only in `Drop` after the
        // device is destroyed; `cfg`, `callbacks` and `raw` are valid for the call.
        let s = unsafe { virq_device_create(cfg, ram.cast(), RAM_BYTES, 0, &callbacks, &mut raw) };
        let dev = Dev { raw, ram, seen };
        if s == VirqStatus::Ok {
            Ok(dev)
        } else {
            assert!(dev.raw.is_null(), "*out is NULL after a failed create");
            Err(s)
        }
    }

    pub fn try_read(&self, addr: u64, width: u32) -> (VirqStatus, u64) {
        let mut v = 0;
        // SAFETY: a live device and a valid output.
        let s = unsafe { virq_mmio_read(self.raw, addr, width, &mut v) };
        (s, v)
    }

    pub fn try_write(&self, addr: u64, width: u32, value: u64) -> VirqStatus {
        // SAFETY: a live device.
        unsafe { virq_mmio_write(self.raw, addr, width, value) }
    }

    pub fn take_irqs(&self) -> Vec<Irq> {
        std::mem::take(&mut self.seen.irqs.lock().unwrap())
    }
}

impl Bus for Dev {
    fn cfg_read(&self, offset: u16, width: u32) -> u32 {
        let mut v = 0;
        // SAFETY: a live device and a valid output.
        let s = unsafe { virq_config_read(self.raw, offset, width, &mut v) };
        assert_eq!(s, VirqStatus::Ok, "{}", last_error());
        v
    }

    fn cfg_write(&self, offset: u16, width: u32, value: u32) {
        // SAFETY: a live device.
        let s = unsafe { virq_config_write(self.raw, offset, width, value) };
        assert_eq!(s, VirqStatus::Ok, "{}", last_error());
    }

    fn read(&self, addr: u64, width: u32) -> u64 {
        let (s, v) = self.try_read(addr, width);
        assert_eq!(s, VirqStatus::Ok, "{}", last_error());
        v
    }

    fn write(&self, addr: u64, width: u32, value: u64) {
        let s = self.try_write(addr, width, value);
        assert_eq!(s, VirqStatus::Ok, "{}", last_error());
    }

    /// Guest RAM as the driver sees it (through raw pointers: the device shares it).
    fn ram_write(&self, gpa: u64, data: &[u8]) {
        assert!(gpa as usize + data.len() <= RAM_BYTES);
        // SAFETY: inside the RAM_BYTES allocation; nothing holds a reference into it.
        unsafe {
            std::ptr::copy_nonoverlapping(
                data.as_ptr(),
                self.ram.cast::<u8>().add(gpa as usize),
                data.len(),
            )
        }
    }

    fn ram_read(&self, gpa: u64, len: usize) -> Vec<u8> {
        assert!(gpa as usize + len <= RAM_BYTES);
        let mut v = vec![0u8; len];
        // SAFETY: inside the RAM_BYTES allocation; nothing holds a reference into it.
        unsafe {
            std::ptr::copy_nonoverlapping(
                self.ram.cast::<u8>().add(gpa as usize),
                v.as_mut_ptr(),
                len,
            )
        }
        v
    }
}

impl Drop for Dev {
    fn drop(&mut self) {
        // SAFETY: the device came from `virq_device_create` (or is NULL) and is not used again.
        let s = unsafe { virq_device_destroy(self.raw) };
        assert_eq!(s, VirqStatus::Ok);
        // SAFETY: the allocation from `Box::into_raw` in `with`, freed once, after the device
        // that used it is gone.
        drop(unsafe { Box::from_raw(std::ptr::slice_from_raw_parts_mut(self.ram, RAM_BYTES / 8)) });
    }
}

/// Where the one queue of [`BlkDriver`] lives in guest RAM.
pub const DESC: u64 = 0x1_0000;
pub const AVAIL: u64 = 0x1_1000;
pub const USED: u64 = 0x1_2000;
pub const HEADER: u64 = 0x2_0000;
pub const DATA: u64 = 0x2_1000;
pub const STATUS: u64 = 0x2_2000;
pub const QUEUE_SIZE: u16 = 16;

/// A virtio-blk driver for queue 0, just enough for the tests: features, one queue, a
/// three-descriptor request (header, data, status) re-posted at descriptor 0.
pub struct BlkDriver {
    pub avail_idx: u16,
}

impl BlkDriver {
    /// Features and queue 0 through FEATURES_OK and DRIVER_OK; `vectors` gives `msix_config`
    /// and queue 0's selector (None: leave them at NO_VECTOR, as in INTx mode).
    pub fn bring_up(dev: &impl Bus, vectors: Option<(u16, u16)>) -> BlkDriver {
        let st = |v: u8| dev.write(COMMON + common::DEVICE_STATUS, 1, u64::from(v));
        st(0);
        st(status::ACKNOWLEDGE);
        st(status::ACKNOWLEDGE | status::DRIVER);
        dev.write(COMMON + common::DRIVER_FEATURE_SELECT, 4, 1);
        dev.write(COMMON + common::DRIVER_FEATURE, 4, 1); // VERSION_1
        dev.write(COMMON + common::DRIVER_FEATURE_SELECT, 4, 0);
        dev.write(COMMON + common::DRIVER_FEATURE, 4, 0);
        st(status::ACKNOWLEDGE | status::DRIVER | status::FEATURES_OK);
        if let Some((config, _)) = vectors {
            dev.write(COMMON + common::MSIX_CONFIG, 2, u64::from(config));
        }
        dev.write(COMMON + common::QUEUE_SELECT, 2, 0);
        dev.write(COMMON + common::QUEUE_SIZE, 2, u64::from(QUEUE_SIZE));
        if let Some((_, q)) = vectors {
            dev.write(COMMON + common::QUEUE_MSIX_VECTOR, 2, u64::from(q));
        }
        dev.write(COMMON + common::QUEUE_DESC, 8, DESC);
        dev.write(COMMON + common::QUEUE_DRIVER, 8, AVAIL);
        dev.write(COMMON + common::QUEUE_DEVICE, 8, USED);
        dev.write(COMMON + common::QUEUE_ENABLE, 2, 1);
        st(status::ACKNOWLEDGE | status::DRIVER | status::FEATURES_OK | status::DRIVER_OK);
        BlkDriver { avail_idx: 0 }
    }

    /// Post one request of `kind` (0 read, 1 write) for `sector` with 512 bytes at DATA.
    pub fn post(&mut self, dev: &impl Bus, kind: u32, sector: u64) {
        let mut header = Vec::new();
        header.extend_from_slice(&kind.to_le_bytes());
        header.extend_from_slice(&0u32.to_le_bytes());
        header.extend_from_slice(&sector.to_le_bytes());
        dev.ram_write(HEADER, &header);
        let data_flags = if kind == 0 {
            ring::VRING_DESC_F_WRITE
        } else {
            0
        };
        let desc = |addr: u64, len: u32, flags: u16, next: u16| {
            let mut d = addr.to_le_bytes().to_vec();
            d.extend_from_slice(&len.to_le_bytes());
            d.extend_from_slice(&flags.to_le_bytes());
            d.extend_from_slice(&next.to_le_bytes());
            d
        };
        let mut table = desc(HEADER, 16, ring::VRING_DESC_F_NEXT, 1);
        table.extend(desc(DATA, 512, data_flags | ring::VRING_DESC_F_NEXT, 2));
        table.extend(desc(STATUS, 1, ring::VRING_DESC_F_WRITE, 0));
        dev.ram_write(DESC, &table);
        dev.ram_write(STATUS, &[0xFF]);
        let slot = AVAIL + 4 + 2 * u64::from(self.avail_idx % QUEUE_SIZE);
        dev.ram_write(slot, &0u16.to_le_bytes());
        self.avail_idx = self.avail_idx.wrapping_add(1);
        dev.ram_write(AVAIL + 2, &self.avail_idx.to_le_bytes());
    }

    /// Notify queue 0 (its notify offset is 0).
    pub fn kick(&self, dev: &impl Bus) {
        dev.write(NOTIFY, 2, 0);
    }

    /// `used.idx`.
    pub fn used_idx(dev: &impl Bus) -> u16 {
        dev.ram_u16(USED + 2)
    }
}

/// The byte at `offset` of the test disks: differs from sector to sector.
pub fn disk_byte(offset: u64) -> u8 {
    ((offset >> 9) as u8)
        .wrapping_mul(37)
        .wrapping_add(offset as u8)
}

pub fn disk_image(sectors: u64) -> Vec<u8> {
    (0..sectors * 512).map(disk_byte).collect()
}
