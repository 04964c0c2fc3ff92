//! x86 MSI address/data format and the MSI-X table the PCI bus driver programs.
//!
//! On x86 an MSI is a dword write to `0xFEExxxxx`: the address selects the destination local
//! APIC, the data selects the IDT vector, delivery mode and trigger. Windows 7 programs one
//! table entry per granted message (entry `n` carries message `n`), then sets MSI-X Enable and
//! clears the function mask. Table entries beyond the grant are pointed at message 0, as the
//! Windows PCI bus driver does by default.

use crate::arbiter::InterruptGrant;
use crate::resources::{AssignedResources, MessageNumber};
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// The fixed upper bits of every x86 MSI address.
pub const MSI_ADDRESS_BASE: u64 = 0xFEE0_0000;
const MSI_ADDRESS_WINDOW_MASK: u64 = 0xFFFF_FFFF_FFF0_0000;
const MSI_ADDRESS_DEST_SHIFT: u32 = 12;
const MSI_ADDRESS_RH: u64 = 1 << 3;
const MSI_ADDRESS_DM: u64 = 1 << 2;
const MSI_ADDRESS_RESERVED: u64 = 0x0000_0FF3;
const MSI_DATA_DELIVERY_SHIFT: u32 = 8;
const MSI_DATA_LEVEL_ASSERT: u32 = 1 << 14;
const MSI_DATA_TRIGGER_LEVEL: u32 = 1 << 15;
const MSI_DATA_RESERVED: u32 = 0xFFFF_3800;

/// MSI-X Message Control: MSI-X Enable.
pub const MSIX_CONTROL_ENABLE: u16 = 1 << 15;
/// MSI-X Message Control: Function Mask.
pub const MSIX_CONTROL_FUNCTION_MASK: u16 = 1 << 14;
/// MSI-X Message Control: Table Size field (N - 1).
pub const MSIX_CONTROL_TABLE_SIZE_MASK: u16 = 0x07FF;
/// Bytes per MSI-X table entry.
pub const MSIX_ENTRY_SIZE: u64 = 16;
/// Vector Control: the per-entry mask bit.
pub const MSIX_VECTOR_CONTROL_MASKED: u32 = 1;

/// APIC delivery mode (data bits 10:8).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryMode {
    /// Fixed (000b): the vector to the destination.
    Fixed,
    /// Lowest priority (001b): to the lowest-priority processor of the destination.
    LowestPriority,
    /// SMI (010b).
    Smi,
    /// NMI (100b).
    Nmi,
    /// INIT (101b).
    Init,
    /// ExtINT (111b).
    ExtInt,
    /// Encodings 3 and 6.
    Reserved(u8),
}

impl DeliveryMode {
    /// Decode data bits 10:8 (`bits` holds them in its low 3 bits).
    pub fn from_bits(bits: u8) -> Self {
        match bits & 7 {
            0 => Self::Fixed,
            1 => Self::LowestPriority,
            2 => Self::Smi,
            4 => Self::Nmi,
            5 => Self::Init,
            7 => Self::ExtInt,
            other => Self::Reserved(other),
        }
    }

    /// The 3-bit encoding of data bits 10:8.
    pub fn bits(self) -> u8 {
        match self {
            Self::Fixed => 0,
            Self::LowestPriority => 1,
            Self::Smi => 2,
            Self::Nmi => 4,
            Self::Init => 5,
            Self::ExtInt => 7,
            Self::Reserved(b) => b & 7,
        }
    }
}

/// Trigger mode (data bit 15).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TriggerMode {
    /// Edge-triggered (data bit 15 clear): what every MSI-X message is.
    Edge,
    /// Level-triggered (data bit 15 set).
    Level,
}

/// A decoded MSI: where it goes and what it says.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct MsiMessage {
    /// Destination APIC id (physical mode) or logical set (logical mode).
    pub destination: u8,
    /// Address bit 3, Redirection Hint.
    pub redirection_hint: bool,
    /// Address bit 2, Destination Mode: logical when set.
    pub logical_destination: bool,
    /// The IDT vector (data bits 7:0).
    pub vector: u8,
    /// Delivery mode (data bits 10:8).
    pub delivery_mode: DeliveryMode,
    /// Data bit 14; only meaningful for level-triggered messages.
    pub level_assert: bool,
    /// Trigger mode (data bit 15).
    pub trigger: TriggerMode,
}

/// Why an address/data pair is not a valid x86 MSI.
#[derive(Debug, Error, Clone, Copy, PartialEq, Eq)]
pub enum MsiDecodeError {
    /// The address is not in 0xFEE0_0000..=0xFEEF_FFFF.
    #[error("address {0:#x} is outside the 0xFEExxxxx interrupt window")]
    NotInterruptWindow(u64),
    /// Address bits the x86 MSI format reserves are set.
    #[error("address {0:#x} has reserved bits set")]
    AddressReserved(u64),
    /// Data bits the x86 MSI format reserves are set.
    #[error("data {0:#x} has reserved bits set")]
    DataReserved(u32),
}

impl MsiMessage {
    /// What Windows 7 programs: physical destination, fixed delivery, edge.
    pub fn fixed(destination: u8, vector: u8) -> Self {
        Self {
            destination,
            redirection_hint: false,
            logical_destination: false,
            vector,
            delivery_mode: DeliveryMode::Fixed,
            level_assert: false,
            trigger: TriggerMode::Edge,
        }
    }

    /// The Message Address this message is written to.
    pub fn address(&self) -> u64 {
        let mut a = MSI_ADDRESS_BASE | (u64::from(self.destination) << MSI_ADDRESS_DEST_SHIFT);
        if self.redirection_hint {
            a |= MSI_ADDRESS_RH;
        }
        if self.logical_destination {
            a |= MSI_ADDRESS_DM;
        }
        a
    }

    /// The Message Data written.
    pub fn data(&self) -> u32 {
        let mut d = u32::from(self.vector)
            | (u32::from(self.delivery_mode.bits()) << MSI_DATA_DELIVERY_SHIFT);
        if self.level_assert {
            d |= MSI_DATA_LEVEL_ASSERT;
        }
        if self.trigger == TriggerMode::Level {
            d |= MSI_DATA_TRIGGER_LEVEL;
        }
        d
    }

    /// Decode strictly: anything a Windows 7 x64 HAL would never write is an error, so the
    /// platform can report a device that scribbles on its table.
    pub fn decode(address: u64, data: u32) -> Result<Self, MsiDecodeError> {
        if address & MSI_ADDRESS_WINDOW_MASK != MSI_ADDRESS_BASE {
            return Err(MsiDecodeError::NotInterruptWindow(address));
        }
        if address & MSI_ADDRESS_RESERVED != 0 {
            return Err(MsiDecodeError::AddressReserved(address));
        }
        if data & MSI_DATA_RESERVED != 0 {
            return Err(MsiDecodeError::DataReserved(data));
        }
        Ok(Self {
            destination: ((address >> MSI_ADDRESS_DEST_SHIFT) & 0xFF) as u8,
            redirection_hint: address & MSI_ADDRESS_RH != 0,
            logical_destination: address & MSI_ADDRESS_DM != 0,
            vector: (data & 0xFF) as u8,
            delivery_mode: DeliveryMode::from_bits(((data >> MSI_DATA_DELIVERY_SHIFT) & 7) as u8),
            level_assert: data & MSI_DATA_LEVEL_ASSERT != 0,
            trigger: if data & MSI_DATA_TRIGGER_LEVEL != 0 {
                TriggerMode::Level
            } else {
                TriggerMode::Edge
            },
        })
    }
}

/// One MSI-X table entry as the bus driver writes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MsixTableEntry {
    /// Table entry index.
    pub entry: u16,
    /// The message this entry signals (entries past the grant alias message 0).
    pub message_number: MessageNumber,
    /// Message Address written to the entry.
    pub address: u64,
    /// Message Data written to the entry.
    pub data: u32,
    /// The entry's Mask Bit as the bus driver leaves it.
    pub masked: bool,
}

impl MsixTableEntry {
    /// Byte offset of this entry inside the table.
    pub fn table_offset(&self) -> u64 {
        u64::from(self.entry) * MSIX_ENTRY_SIZE
    }

    /// The 16 bytes (address low, address high, data, vector control), little-endian.
    pub fn to_bytes(&self) -> [u8; 16] {
        let mut b = [0u8; 16];
        b[0..4].copy_from_slice(&(self.address as u32).to_le_bytes());
        b[4..8].copy_from_slice(&((self.address >> 32) as u32).to_le_bytes());
        b[8..12].copy_from_slice(&self.data.to_le_bytes());
        let control = if self.masked {
            MSIX_VECTOR_CONTROL_MASKED
        } else {
            0
        };
        b[12..16].copy_from_slice(&control.to_le_bytes());
        b
    }
}

/// What table entries beyond the grant get.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UnusedEntryPolicy {
    /// Program them with message 0's address/data, unmasked (the Windows default).
    #[default]
    AliasMessageZero,
    /// Leave them untouched (masked since reset).
    LeaveMasked,
}

/// The bus driver's whole MSI-X programming step.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MsixProgramming {
    /// Entries to write, in entry order.
    pub entries: Vec<MsixTableEntry>,
    /// Set MSI-X Enable after the entries are written.
    pub set_enable: bool,
    /// Clear the function mask after the entries are written.
    pub clear_function_mask: bool,
}

impl MsixProgramming {
    /// Nothing to do: a line grant leaves MSI-X disabled.
    pub fn disabled() -> Self {
        Self {
            entries: Vec::new(),
            set_enable: false,
            clear_function_mask: false,
        }
    }

    /// Message Control after the step, from its value before (table size bits kept).
    pub fn message_control(&self, before: u16) -> u16 {
        let mut c = before;
        if self.set_enable {
            c |= MSIX_CONTROL_ENABLE;
        }
        if self.clear_function_mask {
            c &= !MSIX_CONTROL_FUNCTION_MASK;
        }
        c
    }
}

/// Why the bus driver cannot program the table.
#[derive(Debug, Error, Clone, Copy, PartialEq, Eq)]
pub enum MsixProgramError {
    /// The grant does not fit the table.
    #[error("{granted} messages granted but the MSI-X table has {table_size} entries")]
    MoreMessagesThanEntries {
        /// Messages granted.
        granted: u32,
        /// Entries in the MSI-X table.
        table_size: u16,
    },
}

/// Compute the table entries for the assigned messages.
pub fn program_msix(
    resources: &AssignedResources,
    table_size: u16,
    unused: UnusedEntryPolicy,
) -> Result<MsixProgramming, MsixProgramError> {
    let InterruptGrant::Messages { count } = resources.grant else {
        return Ok(MsixProgramming::disabled());
    };
    if count > u32::from(table_size) {
        return Err(MsixProgramError::MoreMessagesThanEntries {
            granted: count,
            table_size,
        });
    }
    let mut entries: Vec<MsixTableEntry> = resources
        .interrupts
        .iter()
        .enumerate()
        .map(|(i, a)| {
            let msg = MsiMessage::fixed(a.dest_apic_id, a.vector);
            MsixTableEntry {
                entry: i as u16,
                message_number: a.message_number.unwrap_or(i as MessageNumber),
                address: msg.address(),
                data: msg.data(),
                masked: false,
            }
        })
        .collect();
    let first = entries.first().copied();
    if let (UnusedEntryPolicy::AliasMessageZero, Some(first)) = (unused, first) {
        for entry in entries.len() as u16..table_size {
            entries.push(MsixTableEntry {
                entry,
                message_number: 0,
                ..first
            });
        }
    }
    Ok(MsixProgramming {
        entries,
        set_enable: true,
        clear_function_mask: true,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::ResourceBuilder;
    use crate::vectors::VectorAllocator;
    use proptest::prelude::*;

    #[test]
    fn fixed_edge_physical_encoding() {
        let m = MsiMessage::fixed(3, 0xB1);
        assert_eq!(m.address(), 0xFEE0_3000);
        assert_eq!(m.data(), 0xB1);
        let d = MsiMessage::decode(0xFEE0_3000, 0xB1).unwrap();
        assert_eq!(d, m);
        let level = MsiMessage::decode(0xFEE0_100C, 0xC451).unwrap();
        assert_eq!(level.destination, 1);
        assert!(level.redirection_hint && level.logical_destination);
        assert_eq!(level.delivery_mode, DeliveryMode::Nmi);
        assert_eq!(level.trigger, TriggerMode::Level);
        assert!(level.level_assert);
    }

    #[test]
    fn decode_rejects_non_msi() {
        assert_eq!(
            MsiMessage::decode(0x1000, 0x51),
            Err(MsiDecodeError::NotInterruptWindow(0x1000))
        );
        assert_eq!(
            MsiMessage::decode(0x1_FEE0_0000, 0x51),
            Err(MsiDecodeError::NotInterruptWindow(0x1_FEE0_0000))
        );
        assert_eq!(
            MsiMessage::decode(0xFEE0_0010, 0x51),
            Err(MsiDecodeError::AddressReserved(0xFEE0_0010))
        );
        assert_eq!(
            MsiMessage::decode(0xFEE0_0000, 0x1_0051),
            Err(MsiDecodeError::DataReserved(0x1_0051))
        );
    }

    proptest! {
        #[test]
        fn encode_decode_round_trip(
            destination in any::<u8>(),
            rh in any::<bool>(),
            dm in any::<bool>(),
            vector in any::<u8>(),
            delivery in 0u8..8,
            assert_bit in any::<bool>(),
            level in any::<bool>(),
        ) {
            let m = MsiMessage {
                destination,
                redirection_hint: rh,
                logical_destination: dm,
                vector,
                delivery_mode: DeliveryMode::from_bits(delivery),
                level_assert: assert_bit,
                trigger: if level { TriggerMode::Level } else { TriggerMode::Edge },
            };
            let back = MsiMessage::decode(m.address(), m.data()).unwrap();
            prop_assert_eq!(back, m);
            prop_assert_eq!(back.address(), m.address());
            prop_assert_eq!(back.data(), m.data());
            prop_assert_eq!(m.address() & 0xFFF0_0000, 0xFEE0_0000);
        }

        #[test]
        fn decode_then_encode_is_identity_on_valid_pairs(address in any::<u32>(), data in any::<u32>()) {
            if let Ok(m) = MsiMessage::decode(u64::from(address), data) {
                prop_assert_eq!(m.address(), u64::from(address));
                prop_assert_eq!(m.data(), data);
            }
        }
    }

    #[test]
    fn programs_one_entry_per_message_then_aliases_message_zero() {
        let mut alloc = VectorAllocator::default();
        let r = ResourceBuilder::default()
            .build(InterruptGrant::Messages { count: 2 }, &mut alloc, &[])
            .unwrap();
        let p = program_msix(&r, 4, UnusedEntryPolicy::default()).unwrap();
        let got: Vec<_> = p
            .entries
            .iter()
            .map(|e| (e.entry, e.message_number, e.address, e.data, e.masked))
            .collect();
        assert_eq!(
            got,
            [
                (0, 0, 0xFEE0_0000, 0xB1, false),
                (1, 1, 0xFEE0_0000, 0xA1, false),
                (2, 0, 0xFEE0_0000, 0xB1, false),
                (3, 0, 0xFEE0_0000, 0xB1, false),
            ]
        );
        assert!(p.set_enable && p.clear_function_mask);
        assert_eq!(p.message_control(0x4003), 0x8003);
        assert_eq!(p.entries[1].table_offset(), 16);
        assert_eq!(
            p.entries[1].to_bytes(),
            [
                0x00, 0x00, 0xE0, 0xFE, 0, 0, 0, 0, 0xA1, 0, 0, 0, 0, 0, 0, 0
            ]
        );
        let masked = program_msix(&r, 4, UnusedEntryPolicy::LeaveMasked).unwrap();
        assert_eq!(masked.entries.len(), 2);
    }

    #[test]
    fn line_grant_leaves_msix_disabled_and_oversize_grant_fails() {
        let mut alloc = VectorAllocator::default();
        let line = ResourceBuilder::default()
            .build(InterruptGrant::Line { irq: 5 }, &mut alloc, &[])
            .unwrap();
        let p = program_msix(&line, 4, UnusedEntryPolicy::default()).unwrap();
        assert_eq!(p, MsixProgramming::disabled());
        assert_eq!(p.message_control(0x0003), 0x0003);
        let msgs = ResourceBuilder::default()
            .build(InterruptGrant::Messages { count: 3 }, &mut alloc, &[])
            .unwrap();
        assert_eq!(
            program_msix(&msgs, 2, UnusedEntryPolicy::default()),
            Err(MsixProgramError::MoreMessagesThanEntries {
                granted: 3,
                table_size: 2
            })
        );
    }

    #[test]
    fn masked_entry_bytes_carry_the_mask_bit() {
        let e = MsixTableEntry {
            entry: 0,
            message_number: 0,
            address: 0x1_FEE0_1000,
            data: 0x51,
            masked: true,
        };
        let b = e.to_bytes();
        assert_eq!(&b[0..8], &[0x00, 0x10, 0xE0, 0xFE, 1, 0, 0, 0]);
        assert_eq!(b[12], 1);
    }
}
