//! A PCI type-0 configuration space with BARs, a capability list and INTx bookkeeping.
//!
//! The space is modelled as bytes plus a per-byte write mask, so every access width at every
//! offset decomposes into byte updates and needs no special cases; registers whose value is
//! derived from device state (Status bit 3) are patched in on read.

use serde::{Deserialize, Serialize};

use virq_spec::pci as spec;

pub use virq_spec::pci::{
    CAP_ID_MSIX, CAP_ID_VENDOR, COMMAND_BUS_MASTER, COMMAND_INTERRUPT_DISABLE,
    COMMAND_MEMORY_SPACE, CONFIG_SPACE_SIZE, EXTENDED_CONFIG_SIZE, INTERRUPT_PIN_INTA,
    STATUS_CAPABILITIES_LIST, STATUS_INTERRUPT,
};

// Header offsets as indices into the configuration bytes.
/// Vendor ID (PCI 3.0, 6.2.1), as an index into the configuration bytes.
pub const VENDOR_ID: usize = spec::VENDOR_ID as usize;
/// Device ID (PCI 3.0, 6.2.1).
pub const DEVICE_ID: usize = spec::DEVICE_ID as usize;
/// Command register (PCI 3.0, 6.2.2).
pub const COMMAND: usize = spec::COMMAND as usize;
/// Status register (PCI 3.0, 6.2.3).
pub const STATUS: usize = spec::STATUS as usize;
/// Revision ID (PCI 3.0, 6.2.1).
pub const REVISION_ID: usize = spec::REVISION_ID as usize;
/// Programming interface byte, the low byte of the Class Code (PCI 3.0, 6.2.1).
pub const CLASS_PROG_IF: usize = spec::CLASS_PROG_IF as usize;
/// Cache Line Size (PCI 3.0, 6.2.4).
pub const CACHE_LINE_SIZE: usize = spec::CACHE_LINE_SIZE as usize;
/// Header Type (PCI 3.0, 6.2.1).
pub const HEADER_TYPE: usize = spec::HEADER_TYPE as usize;
/// Base Address Register 0; BAR n is at `BAR0 + 4 * n` (PCI 3.0, 6.2.5.1).
pub const BAR0: usize = spec::BAR0 as usize;
/// Subsystem Vendor ID (PCI 3.0, 6.2.4).
pub const SUBSYSTEM_VENDOR_ID: usize = spec::SUBSYSTEM_VENDOR_ID as usize;
/// Subsystem ID (PCI 3.0, 6.2.4).
pub const SUBSYSTEM_ID: usize = spec::SUBSYSTEM_ID as usize;
/// Capabilities Pointer (PCI 3.0, 6.7).
pub const CAPABILITIES_POINTER: usize = spec::CAPABILITIES_POINTER as usize;
/// Interrupt Line: written by firmware, read by the OS, unused by the device (PCI 3.0, 6.2.4).
pub const INTERRUPT_LINE: usize = spec::INTERRUPT_LINE as usize;
/// Interrupt Pin: 1 for INTA#, 0 for none (PCI 3.0, 6.2.4).
pub const INTERRUPT_PIN: usize = spec::INTERRUPT_PIN as usize;

/// Writable Command bits: memory space, bus master, parity, SERR#, interrupt disable.
/// I/O space stays hardwired to 0 because the function has no I/O BARs.
const COMMAND_WRITABLE: u16 =
    COMMAND_MEMORY_SPACE | COMMAND_BUS_MASTER | (1 << 6) | (1 << 8) | COMMAND_INTERRUPT_DISABLE;

/// Memory BAR kinds the transport uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum BarKind {
    /// A 32-bit memory BAR.
    Memory32,
    /// A 64-bit memory BAR, taking two BAR slots.
    Memory64 {
        /// The Prefetchable bit (bit 3 of the BAR).
        prefetchable: bool,
    },
}

/// A BAR this function implements: its index and power-of-two size.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BarDef {
    /// BAR number (0..=5; a 64-bit BAR also takes the next slot).
    pub index: u8,
    /// Size in bytes, a power of two; the size probe reads back its mask.
    pub size: u64,
    /// 32- or 64-bit memory BAR.
    pub kind: BarKind,
}

/// Identity of the function, written once at construction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PciIdentity {
    /// Vendor ID (0x1AF4 for virtio, virtio 1.2, 4.1.2).
    pub vendor_id: u16,
    /// Device ID (0x1040 + virtio device ID for a modern device, virtio 1.2, 4.1.2).
    pub device_id: u16,
    /// Revision ID (1 or more for a modern-only device).
    pub revision_id: u8,
    /// Class Code: base class, subclass and programming interface, 24 bits.
    pub class_code: u32,
    /// Subsystem Vendor ID.
    pub subsystem_vendor_id: u16,
    /// Subsystem ID.
    pub subsystem_id: u16,
}

/// Configuration space bytes, write masks and BAR definitions.
#[derive(Clone, Debug)]
pub struct ConfigSpace {
    bytes: [u8; CONFIG_SPACE_SIZE],
    write_mask: [u8; CONFIG_SPACE_SIZE],
    bars: Vec<BarDef>,
    /// Last capability added, to chain the next one.
    last_cap: Option<u8>,
    /// First free byte for the next capability.
    next_cap_offset: usize,
}

impl ConfigSpace {
    /// A header-type-0 space with identity `id`, no BARs and an empty capability list.
    pub fn new(id: PciIdentity) -> Self {
        let mut cs = ConfigSpace {
            bytes: [0; CONFIG_SPACE_SIZE],
            write_mask: [0; CONFIG_SPACE_SIZE],
            bars: Vec::new(),
            last_cap: None,
            next_cap_offset: 0x40,
        };
        cs.set_u16(VENDOR_ID, id.vendor_id);
        cs.set_u16(DEVICE_ID, id.device_id);
        cs.bytes[REVISION_ID] = id.revision_id;
        cs.bytes[CLASS_PROG_IF] = id.class_code as u8;
        cs.bytes[CLASS_PROG_IF + 1] = (id.class_code >> 8) as u8;
        cs.bytes[CLASS_PROG_IF + 2] = (id.class_code >> 16) as u8;
        cs.bytes[HEADER_TYPE] = 0x00;
        cs.set_u16(SUBSYSTEM_VENDOR_ID, id.subsystem_vendor_id);
        cs.set_u16(SUBSYSTEM_ID, id.subsystem_id);
        cs.bytes[INTERRUPT_PIN] = INTERRUPT_PIN_INTA;
        cs.set_mask_u16(COMMAND, COMMAND_WRITABLE);
        cs.write_mask[CACHE_LINE_SIZE] = 0xFF;
        cs.write_mask[INTERRUPT_LINE] = 0xFF;
        cs
    }

    /// Declare a memory BAR. Its address bits below `size` read as 0, so writing all ones
    /// and reading back yields the size mask (PCI Local Bus 3.0, 6.2.5.1).
    pub fn add_bar(&mut self, bar: BarDef) {
        debug_assert!(bar.size.is_power_of_two() && bar.size >= 16);
        let off = BAR0 + 4 * bar.index as usize;
        let addr_mask = !(bar.size - 1);
        match bar.kind {
            BarKind::Memory32 => {
                self.set_mask_u32(off, (addr_mask as u32) & !0xF);
            }
            BarKind::Memory64 { prefetchable } => {
                let flags = spec::BAR_MEM_64
                    | if prefetchable {
                        spec::BAR_PREFETCHABLE
                    } else {
                        0
                    };
                self.set_u32(off, flags);
                self.set_mask_u32(off, (addr_mask as u32) & !0xF);
                self.set_mask_u32(off + 4, (addr_mask >> 32) as u32);
            }
        }
        self.bars.push(bar);
    }

    /// The BARs added so far, in order.
    pub fn bars(&self) -> &[BarDef] {
        &self.bars
    }

    /// The address a BAR is currently programmed with.
    pub fn bar_address(&self, index: u8) -> Option<u64> {
        let bar = self.bars.iter().find(|b| b.index == index)?;
        Some(self.bar_base(bar))
    }

    /// The address `bar` (one of [`ConfigSpace::bars`]) is currently programmed with.
    #[inline]
    pub(crate) fn bar_base(&self, bar: &BarDef) -> u64 {
        let off = BAR0 + 4 * bar.index as usize;
        let low = (self.u32_at(off) & !0xF) as u64;
        match bar.kind {
            BarKind::Memory32 => low,
            BarKind::Memory64 { .. } => low | ((self.u32_at(off + 4) as u64) << 32),
        }
    }

    /// Append a capability with `body` (bytes after ID and next pointer). Returns its offset.
    /// `writable` gives write masks for the body bytes (same length, or empty for read-only).
    pub fn add_capability(&mut self, id: u8, body: &[u8], writable: &[u8]) -> u8 {
        let offset = self.next_cap_offset;
        let len = 2 + body.len();
        assert!(
            offset + len <= CONFIG_SPACE_SIZE,
            "capability list overflows"
        );
        self.bytes[offset] = id;
        self.bytes[offset + 1] = 0;
        self.bytes[offset + 2..offset + len].copy_from_slice(body);
        for (i, m) in writable.iter().enumerate() {
            self.write_mask[offset + 2 + i] = *m;
        }
        match self.last_cap {
            None => {
                self.bytes[CAPABILITIES_POINTER] = offset as u8;
                let status = self.u16_at(STATUS) | STATUS_CAPABILITIES_LIST;
                self.set_u16(STATUS, status);
            }
            Some(prev) => self.bytes[prev as usize + 1] = offset as u8,
        }
        self.last_cap = Some(offset as u8);
        // Keep every capability dword-aligned (PCI 3.0, 6.7: pointers are dword aligned).
        self.next_cap_offset = (offset + len + 3) & !3;
        offset as u8
    }

    /// All 256 configuration bytes as the driver would read them.
    pub fn bytes(&self) -> &[u8; CONFIG_SPACE_SIZE] {
        &self.bytes
    }

    /// The byte at `offset`.
    pub fn byte(&self, offset: usize) -> u8 {
        self.bytes[offset]
    }

    /// Set the byte at `offset`, bypassing the write mask (device-side writes such as status bits).
    pub fn set_byte(&mut self, offset: usize, value: u8) {
        self.bytes[offset] = value;
    }

    /// Apply a driver write of one byte through the write mask.
    pub fn write_byte_masked(&mut self, offset: usize, value: u8) {
        let mask = self.write_mask[offset];
        self.bytes[offset] = (self.bytes[offset] & !mask) | (value & mask);
    }

    /// The little-endian 16-bit value at `offset`.
    pub fn u16_at(&self, offset: usize) -> u16 {
        u16::from_le_bytes([self.bytes[offset], self.bytes[offset + 1]])
    }

    /// The little-endian 32-bit value at `offset`.
    pub fn u32_at(&self, offset: usize) -> u32 {
        u32::from_le_bytes(self.bytes[offset..offset + 4].try_into().unwrap())
    }

    /// Set the 16 bits at `offset`, bypassing the write mask.
    pub fn set_u16(&mut self, offset: usize, v: u16) {
        self.bytes[offset..offset + 2].copy_from_slice(&v.to_le_bytes());
    }

    /// Set the 32 bits at `offset`, bypassing the write mask.
    pub fn set_u32(&mut self, offset: usize, v: u32) {
        self.bytes[offset..offset + 4].copy_from_slice(&v.to_le_bytes());
    }

    fn set_mask_u16(&mut self, offset: usize, m: u16) {
        self.write_mask[offset..offset + 2].copy_from_slice(&m.to_le_bytes());
    }

    fn set_mask_u32(&mut self, offset: usize, m: u32) {
        self.write_mask[offset..offset + 4].copy_from_slice(&m.to_le_bytes());
    }

    /// The Command register (Memory Space, Bus Master, INTx Disable live here).
    pub fn command(&self) -> u16 {
        self.u16_at(COMMAND)
    }

    /// The first offset where `bytes` differs from this space in a bit the driver cannot
    /// write: such a space belongs to another device (a snapshot that does not fit).
    pub fn first_read_only_difference(&self, bytes: &[u8]) -> Option<usize> {
        (0..CONFIG_SPACE_SIZE.min(bytes.len()))
            .find(|&i| (self.bytes[i] ^ bytes[i]) & !self.write_mask[i] != 0)
    }

    /// Replace the raw bytes (snapshot restore); masks and BARs come from construction.
    pub fn restore_bytes(&mut self, bytes: &[u8]) -> bool {
        if bytes.len() != CONFIG_SPACE_SIZE {
            return false;
        }
        self.bytes.copy_from_slice(bytes);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn space() -> ConfigSpace {
        ConfigSpace::new(PciIdentity {
            vendor_id: 0x1AF4,
            device_id: 0x1042,
            revision_id: 1,
            class_code: 0x018000,
            subsystem_vendor_id: 0x1AF4,
            subsystem_id: 0x1100,
        })
    }

    #[test]
    fn bar64_size_probe_reads_back_the_size_mask() {
        let mut cs = space();
        cs.add_bar(BarDef {
            index: 0,
            size: 0x4000,
            kind: BarKind::Memory64 {
                prefetchable: false,
            },
        });
        for i in 0..8 {
            cs.write_byte_masked(BAR0 + i, 0xFF);
        }
        assert_eq!(cs.u32_at(BAR0), 0xFFFF_C004);
        assert_eq!(cs.u32_at(BAR0 + 4), 0xFFFF_FFFF);
    }

    #[test]
    fn capabilities_chain_and_set_status_bit_4() {
        let mut cs = space();
        let a = cs.add_capability(0x09, &[16, 1, 0, 0], &[]);
        let b = cs.add_capability(0x11, &[0, 0], &[]);
        assert_eq!(cs.byte(CAPABILITIES_POINTER), a);
        assert_eq!(cs.byte(a as usize + 1), b);
        assert_eq!(cs.byte(b as usize + 1), 0);
        assert_ne!(cs.u16_at(STATUS) & STATUS_CAPABILITIES_LIST, 0);
    }
}
