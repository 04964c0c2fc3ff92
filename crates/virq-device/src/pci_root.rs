//! A PCI root as firmware leaves it, shared by every platform virq runs devices on (the
//! simulated PC and the KVM machine): configuration mechanism #1 at ports 0xCF8/0xCFC
//! (PCI Local Bus 3.0, 3.2.2.3.2), a host bridge at 00:00.0, the devices on bus 0, memory
//! decode across their BARs, and the firmware step that sizes every BAR, places it and turns
//! on decoding and bus mastering.

use std::ops::Range;

use thiserror::Error;
use virq_spec::pci as spec;

use crate::VirtioPciDevice;

/// The configuration address register (mechanism #1).
pub const CONFIG_ADDRESS_PORT: u16 = 0xCF8;
/// The first of the four configuration data ports.
pub const CONFIG_DATA_PORT: u16 = 0xCFC;
/// Bit 31 of the configuration address: the data ports reach configuration space.
const CONFIG_ENABLE: u32 = 1 << 31;
/// Device numbers on bus 0 (0 is the host bridge).
const DEVICES_PER_BUS: u8 = 32;

/// Identity of the host bridge at 00:00.0 (class 06/00), so bus scans that expect one find it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HostBridge {
    /// Vendor ID at 00:00.0.
    pub vendor_id: u16,
    /// Device ID at 00:00.0.
    pub device_id: u16,
}

impl HostBridge {
    /// Intel 440FX (8086:1237), the host bridge of QEMU's `pc` machine.
    pub const I440FX: HostBridge = HostBridge {
        vendor_id: 0x8086,
        device_id: 0x1237,
    };
    /// Red Hat's generic PCIe host bridge (1B36:0008).
    pub const REDHAT: HostBridge = HostBridge {
        vendor_id: 0x1B36,
        device_id: 0x0008,
    };

    fn read(&self, offset: u16, data: &mut [u8]) {
        let mut cfg = [0u8; 64];
        cfg[0..2].copy_from_slice(&self.vendor_id.to_le_bytes());
        cfg[2..4].copy_from_slice(&self.device_id.to_le_bytes());
        cfg[0x0A] = 0x00; // subclass: host bridge
        cfg[0x0B] = 0x06; // class: bridge
        for (i, b) in data.iter_mut().enumerate() {
            *b = cfg.get(offset as usize + i).copied().unwrap_or(0);
        }
    }
}

/// Why a device could not be plugged or its BARs placed.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum PciRootError {
    /// All 31 device numbers of bus 0 are taken.
    #[error("no free device number on bus 0")]
    BusFull,
    /// The requested device number is taken, or is 0 (the host bridge) or above 31.
    #[error("device number {0} is taken or not a device slot (1..=31)")]
    SlotUnavailable(u8),
    /// A BAR does not fit in the MMIO window left below the limit.
    #[error("BAR {bar} of 00:{slot:02x}.0 ({size:#x} bytes) does not fit below {limit:#x}")]
    BarSpace {
        /// Device number of the function on bus 0.
        slot: u8,
        /// BAR number.
        bar: u8,
        /// BAR size in bytes.
        size: u64,
        /// Top of the MMIO window.
        limit: u64,
    },
}

struct PciSlot {
    number: u8,
    device: VirtioPciDevice,
    /// Surprise-removed: gone from the bus, reads return all ones.
    removed: bool,
}

/// Bus 0 behind a host bridge, reached through mechanism #1 and MMIO.
pub struct PciRoot {
    host_bridge: HostBridge,
    slots: Vec<PciSlot>,
    config_address: u32,
}

impl std::fmt::Debug for PciRoot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PciRoot")
            .field("host_bridge", &self.host_bridge)
            .field(
                "slots",
                &self.slots.iter().map(|s| s.number).collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

impl PciRoot {
    /// An empty bus behind `host_bridge`.
    pub fn new(host_bridge: HostBridge) -> Self {
        PciRoot {
            host_bridge,
            slots: Vec::new(),
            config_address: 0,
        }
    }

    /// The lowest free device number.
    pub fn next_slot(&self) -> Option<u8> {
        (1..DEVICES_PER_BUS).find(|n| self.slots.iter().all(|s| s.number != *n))
    }

    /// Plug `device` into the lowest free slot and return its device number.
    pub fn plug(&mut self, device: VirtioPciDevice) -> Result<u8, PciRootError> {
        let number = self.next_slot().ok_or(PciRootError::BusFull)?;
        self.plug_at(number, device)?;
        Ok(number)
    }

    /// Plug `device` as device `number` of bus 0 (function 0).
    pub fn plug_at(&mut self, number: u8, device: VirtioPciDevice) -> Result<(), PciRootError> {
        if number == 0 || number >= DEVICES_PER_BUS || self.slots.iter().any(|s| s.number == number)
        {
            return Err(PciRootError::SlotUnavailable(number));
        }
        self.slots.push(PciSlot {
            number,
            device,
            removed: false,
        });
        self.slots.sort_by_key(|s| s.number);
        Ok(())
    }

    /// The device plugged as `number` (removed or not).
    pub fn device(&self, number: u8) -> Option<&VirtioPciDevice> {
        self.slots
            .iter()
            .find(|s| s.number == number)
            .map(|s| &s.device)
    }

    /// The device plugged as `number`, to drive or inspect it (removed or not).
    pub fn device_mut(&mut self, number: u8) -> Option<&mut VirtioPciDevice> {
        self.slots
            .iter_mut()
            .find(|s| s.number == number)
            .map(|s| &mut s.device)
    }

    /// Every plugged device with its number, in slot order.
    pub fn devices(&self) -> impl Iterator<Item = (u8, &VirtioPciDevice)> {
        self.slots.iter().map(|s| (s.number, &s.device))
    }

    /// Every plugged device still on the bus, mutable, in slot order.
    pub fn present_mut(&mut self) -> impl Iterator<Item = (u8, &mut VirtioPciDevice)> {
        self.slots
            .iter_mut()
            .filter(|s| !s.removed)
            .map(|s| (s.number, &mut s.device))
    }

    /// Pull device `number` off the bus without warning: from now on its configuration space
    /// and BARs read all ones. Returns whether it was there.
    pub fn surprise_remove(&mut self, number: u8) -> bool {
        match self.slots.iter_mut().find(|s| s.number == number) {
            Some(s) => {
                s.removed = true;
                true
            }
            None => false,
        }
    }

    /// The configuration address register as last written.
    pub fn config_address(&self) -> u32 {
        self.config_address
    }

    fn present(&mut self, number: u8) -> Option<&mut VirtioPciDevice> {
        self.slots
            .iter_mut()
            .find(|s| s.number == number && !s.removed)
            .map(|s| &mut s.device)
    }

    /// (bus, device, function, register) the data ports reach now, if enabled.
    fn config_target(&self) -> Option<(u8, u8, u8, u16)> {
        let a = self.config_address;
        (a & CONFIG_ENABLE != 0).then_some((
            (a >> 16) as u8,
            ((a >> 11) & 0x1F) as u8,
            ((a >> 8) & 0x7) as u8,
            (a & 0xFC) as u16,
        ))
    }

    /// A port read. Returns false for ports mechanism #1 does not own (the caller decides
    /// what they read); owned ports that reach nothing read all ones.
    pub fn port_read(&mut self, port: u16, data: &mut [u8]) -> bool {
        match port {
            CONFIG_ADDRESS_PORT if data.len() == 4 => {
                data.copy_from_slice(&self.config_address.to_le_bytes());
                true
            }
            CONFIG_DATA_PORT..=0xCFF => {
                data.fill(0xFF);
                if let Some((bus, dev, func, reg)) = self.config_target() {
                    self.config_read(bus, dev, func, reg + (port - CONFIG_DATA_PORT), data);
                }
                true
            }
            _ => false,
        }
    }

    /// A port write; false for ports mechanism #1 does not own.
    pub fn port_write(&mut self, port: u16, data: &[u8]) -> bool {
        match port {
            CONFIG_ADDRESS_PORT if data.len() == 4 => {
                self.config_address = u32::from_le_bytes([data[0], data[1], data[2], data[3]]);
                true
            }
            CONFIG_DATA_PORT..=0xCFF => {
                if let Some((bus, dev, func, reg)) = self.config_target() {
                    self.config_write(bus, dev, func, reg + (port - CONFIG_DATA_PORT), data);
                }
                true
            }
            _ => false,
        }
    }

    /// A configuration read by bus/device/function (what mechanism #1 resolves to). Absent
    /// functions read all ones.
    pub fn config_read(&mut self, bus: u8, dev: u8, func: u8, offset: u16, data: &mut [u8]) {
        data.fill(0xFF);
        if bus != 0 || func != 0 {
            return;
        }
        if dev == 0 {
            self.host_bridge.read(offset, data);
        } else if let Some(d) = self.present(dev) {
            d.config_read(offset, data);
        }
    }

    /// A configuration write by bus/device/function; the host bridge ignores writes.
    pub fn config_write(&mut self, bus: u8, dev: u8, func: u8, offset: u16, data: &[u8]) {
        if bus != 0 || func != 0 || dev == 0 {
            return;
        }
        if let Some(d) = self.present(dev) {
            d.config_write(offset, data);
        }
    }

    /// A CPU read of device memory; false when no BAR claims the address.
    pub fn mmio_read(&mut self, addr: u64, data: &mut [u8]) -> bool {
        self.present_mut().any(|(_, d)| d.mmio_read(addr, data))
    }

    /// A CPU write to device memory; false when no BAR claims the address.
    pub fn mmio_write(&mut self, addr: u64, data: &[u8]) -> bool {
        self.present_mut().any(|(_, d)| d.mmio_write(addr, data))
    }

    /// A 32-bit configuration read through the ports, as firmware does it.
    fn port_read32(&mut self, slot: u8, offset: u16, tick: &mut dyn FnMut()) -> u32 {
        self.select(slot, offset, tick);
        tick();
        let mut b = [0u8; 4];
        self.port_read(CONFIG_DATA_PORT, &mut b);
        u32::from_le_bytes(b)
    }

    fn port_write32(&mut self, slot: u8, offset: u16, v: u32, tick: &mut dyn FnMut()) {
        self.select(slot, offset, tick);
        tick();
        self.port_write(CONFIG_DATA_PORT, &v.to_le_bytes());
    }

    fn select(&mut self, slot: u8, offset: u16, tick: &mut dyn FnMut()) {
        tick();
        let addr = CONFIG_ENABLE | (u32::from(slot) << 11) | (u32::from(offset) & 0xFC);
        self.port_write(CONFIG_ADDRESS_PORT, &addr.to_le_bytes());
    }

    /// What firmware does before the OS boots, through mechanism #1: size every memory BAR
    /// with the all-ones probe (PCI 3.0, 6.2.5.1), place it naturally aligned in `window`,
    /// write Interrupt Line (`interrupt_line(slot)`), and set Memory Space and Bus Master
    /// Enable. `tick` runs before every port access, for platforms that charge time for them.
    /// Returns the first address above the last BAR placed.
    pub fn assign_resources(
        &mut self,
        window: Range<u64>,
        interrupt_line: impl Fn(u8) -> u8,
        tick: &mut dyn FnMut(),
    ) -> Result<u64, PciRootError> {
        let mut next = window.start;
        let numbers: Vec<u8> = self.slots.iter().map(|s| s.number).collect();
        for slot in numbers {
            let mut bar = 0u8;
            while bar < 6 {
                let off = spec::BAR0 + 4 * u16::from(bar);
                let orig = self.port_read32(slot, off, tick);
                self.port_write32(slot, off, 0xFFFF_FFFF, tick);
                let low = self.port_read32(slot, off, tick);
                self.port_write32(slot, off, orig, tick);
                let is64 = low & 0b110 == spec::BAR_MEM_64;
                if low == 0 || low & spec::BAR_IO != 0 {
                    bar += 1;
                    continue;
                }
                let mut mask = u64::from(low & !0xF);
                if is64 && bar < 5 {
                    let orig_hi = self.port_read32(slot, off + 4, tick);
                    self.port_write32(slot, off + 4, 0xFFFF_FFFF, tick);
                    let hi = self.port_read32(slot, off + 4, tick);
                    self.port_write32(slot, off + 4, orig_hi, tick);
                    mask |= u64::from(hi) << 32;
                } else {
                    mask |= 0xFFFF_FFFF_0000_0000;
                }
                let size = (!mask).wrapping_add(1);
                if size != 0 {
                    let base = next.div_ceil(size) * size;
                    if base.checked_add(size).is_none_or(|end| end > window.end) {
                        return Err(PciRootError::BarSpace {
                            slot,
                            bar,
                            size,
                            limit: window.end,
                        });
                    }
                    next = base + size;
                    self.port_write32(slot, off, base as u32, tick);
                    if is64 {
                        self.port_write32(slot, off + 4, (base >> 32) as u32, tick);
                    }
                }
                bar += if is64 { 2 } else { 1 };
            }
            self.config_write(0, slot, 0, spec::INTERRUPT_LINE, &[interrupt_line(slot)]);
            let command = self.port_read32(slot, spec::COMMAND, tick) as u16
                | spec::COMMAND_MEMORY_SPACE
                | spec::COMMAND_BUS_MASTER;
            self.config_write(0, slot, 0, spec::COMMAND, &command.to_le_bytes());
        }
        Ok(next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{NullBackend, NullInterruptSink};
    use crate::{TransportOptions, VecMemory};
    use std::sync::Arc;

    fn device() -> VirtioPciDevice {
        VirtioPciDevice::new(
            Box::new(NullBackend::new(1)),
            VecMemory::new(0x1000),
            Arc::new(NullInterruptSink),
            TransportOptions::default(),
        )
        .unwrap()
    }

    fn cfg32(root: &mut PciRoot, dev: u8, off: u16) -> u32 {
        let addr = CONFIG_ENABLE | (u32::from(dev) << 11) | u32::from(off);
        root.port_write(CONFIG_ADDRESS_PORT, &addr.to_le_bytes());
        let mut b = [0u8; 4];
        root.port_read(CONFIG_DATA_PORT, &mut b);
        u32::from_le_bytes(b)
    }

    /// PCI 3.0, 3.2.2.3.2 and 6.2.5.1: mechanism #1 reaches the host bridge and the device;
    /// firmware places both 64-bit BARs naturally aligned and enables decoding.
    #[test]
    fn mechanism_1_and_firmware_assignment() {
        let mut root = PciRoot::new(HostBridge::I440FX);
        assert_eq!(root.plug(device()), Ok(1));
        root.plug_at(5, device()).unwrap();
        assert_eq!(
            root.plug_at(5, device()),
            Err(PciRootError::SlotUnavailable(5))
        );
        assert_eq!(cfg32(&mut root, 0, 0), 0x1237_8086);
        assert_eq!(cfg32(&mut root, 1, 0) & 0xFFFF, 0x1AF4);
        assert_eq!(cfg32(&mut root, 9, 0), 0xFFFF_FFFF);
        let mut ticks = 0;
        let end = root
            .assign_resources(0xC000_0000..0xFEC0_0000, |s| 16 + s, &mut || ticks += 1)
            .unwrap();
        assert!(ticks > 0);
        // Slot 1: BAR0 (16 KiB) at the base, BAR2 (64 KiB) aligned after it; then slot 5.
        assert_eq!(root.device(1).unwrap().bar_address(0), Some(0xC000_0000));
        assert_eq!(root.device(1).unwrap().bar_address(2), Some(0xC001_0000));
        assert_eq!(root.device(5).unwrap().bar_address(0), Some(0xC002_0000));
        assert_eq!(end, 0xC004_0000);
        assert_eq!(cfg32(&mut root, 5, 0x3C) & 0xFF, 21);
        assert_eq!(cfg32(&mut root, 5, 0x04) & 0x6, 0x6);
        // msix_config through BAR0: 0xFFFF after power-on.
        let mut v = [0u8; 2];
        assert!(root.mmio_read(0xC002_0010, &mut v));
        assert_eq!(u16::from_le_bytes(v), 0xFFFF);
        assert!(!root.mmio_read(0xB000_0000, &mut v));
        // A removed device is gone from configuration space and from MMIO.
        assert!(root.surprise_remove(5));
        assert_eq!(cfg32(&mut root, 5, 0), 0xFFFF_FFFF);
        assert!(!root.mmio_read(0xC002_0010, &mut v));
    }

    #[test]
    fn a_window_too_small_is_refused() {
        let mut root = PciRoot::new(HostBridge::REDHAT);
        root.plug(device()).unwrap();
        assert_eq!(
            root.assign_resources(0xC000_0000..0xC000_2000, |_| 0, &mut || {}),
            Err(PciRootError::BarSpace {
                slot: 1,
                bar: 0,
                size: 0x4000,
                limit: 0xC000_2000
            })
        );
    }
}
