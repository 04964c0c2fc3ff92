//! Hardened parsing of the PCI capability list of a virtio-pci modern function
//! (virtio 1.2 section 4.1.4) and of its MSI-X capability (PCI 3.0 section 6.8.2).
//!
//! Configuration space is device-controlled input: the walk is bounded, loops and pointers into
//! the standard header are rejected, and a malformed virtio capability is skipped (with the reason
//! kept in [`VirtioPciCaps::skipped`]) so a later valid one of the same type can still be used.

use crate::access::{RegisterAccess, Width};
use thiserror::Error;
use virq_spec::virtio_pci::cfg_type;

/// PCI Status register offset in configuration space.
pub const PCI_STATUS: u16 = virq_spec::pci::STATUS;
/// Status bit 4: the function implements a capability list.
pub const PCI_STATUS_CAP_LIST: u16 = virq_spec::pci::STATUS_CAPABILITIES_LIST;
/// Capabilities Pointer register offset.
pub const PCI_CAP_PTR: u16 = virq_spec::pci::CAPABILITIES_POINTER;
pub use virq_spec::pci::{CAP_ID_MSIX, CAP_ID_VENDOR};
/// Most capabilities a 256-byte configuration space can hold (dword-aligned, 0x40..=0xFC).
pub const MAX_CAPS: usize = 48;
pub use virq_spec::msix::CAP_LEN as MSIX_CAP_LEN;
pub use virq_spec::virtio_pci::{
    CAP_LEN as VIRTIO_CAP_LEN, COMMON_CFG_MIN_LEN, NOTIFY_CAP_LEN as VIRTIO_NOTIFY_CAP_LEN,
    PCI_CFG_CAP_LEN as VIRTIO_PCI_CFG_CAP_LEN,
};

/// `cfg_type` of a virtio vendor capability (virtio 1.2 section 4.1.4).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum VirtioCfgType {
    /// `VIRTIO_PCI_CAP_COMMON_CFG` (virtio 1.2, 4.1.4.3).
    Common = cfg_type::COMMON as isize,
    /// `VIRTIO_PCI_CAP_NOTIFY_CFG` (virtio 1.2, 4.1.4.4).
    Notify = cfg_type::NOTIFY as isize,
    /// `VIRTIO_PCI_CAP_ISR_CFG` (virtio 1.2, 4.1.4.5).
    Isr = cfg_type::ISR as isize,
    /// `VIRTIO_PCI_CAP_DEVICE_CFG` (virtio 1.2, 4.1.4.6).
    Device = cfg_type::DEVICE as isize,
    /// `VIRTIO_PCI_CAP_PCI_CFG`, the configuration-space access window (virtio 1.2, 4.1.4.9).
    PciCfg = cfg_type::PCI_CFG as isize,
}

impl VirtioCfgType {
    fn from_raw(v: u8) -> Option<Self> {
        Some(match v {
            cfg_type::COMMON => Self::Common,
            cfg_type::NOTIFY => Self::Notify,
            cfg_type::ISR => Self::Isr,
            cfg_type::DEVICE => Self::Device,
            cfg_type::PCI_CFG => Self::PciCfg,
            _ => return None,
        })
    }
}

/// Why a capability list cannot be used at all.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum CapError {
    /// Vendor ID reads 0xFFFF: nothing answers at this address.
    #[error("configuration space reads all ones (vendor ID 0xffff): no function present")]
    DeviceAbsent,
    /// The function has no capability list, so it cannot be a modern virtio device.
    #[error("PCI Status {status:#06x} lacks bit 4 (Capabilities List)")]
    NoCapabilityList {
        /// The PCI Status register as read.
        status: u16,
    },
    #[error(
        "capability pointer {pointer:#04x} read at config offset {from:#04x} is outside 0x40..=0xfc"
    )]
    /// A capability pointer outside the capability area of configuration space.
    PointerOutOfRange {
        /// Configuration offset the pointer was read at.
        from: u16,
        /// The pointer.
        pointer: u8,
    },
    /// A next pointer leads back to a capability already walked.
    #[error("capability list loops back to {at:#04x}")]
    Loop {
        /// Offset of the capability seen twice.
        at: u8,
    },
    /// More capabilities than configuration space can hold: a corrupt list.
    #[error("capability list longer than {limit} entries")]
    TooManyCapabilities {
        /// The most the walk accepts.
        limit: usize,
    },
    /// A required virtio structure has no usable capability.
    #[error("no valid virtio {cfg_type:?} capability (skipped: {skipped:?})")]
    MissingCapability {
        /// The structure missing.
        cfg_type: VirtioCfgType,
        /// Capabilities of that type that were refused, with their defects.
        skipped: Vec<SkippedCap>,
    },
    /// A capability names a BAR number above 5.
    #[error("BAR {bar} does not exist (BARs are 0..=5)")]
    NoSuchBar {
        /// The BAR number.
        bar: u8,
    },
    /// The region is in an I/O BAR.
    #[error("BAR {bar} is an I/O BAR ({raw:#010x}); virtio-pci modern regions need memory BARs")]
    IoBar {
        /// The BAR number.
        bar: u8,
        /// The BAR register as read.
        raw: u32,
    },
    /// The BAR's memory type field is the reserved value.
    #[error("BAR {bar} has reserved memory type bits ({raw:#010x})")]
    ReservedBarType {
        /// The BAR number.
        bar: u8,
        /// The BAR register as read.
        raw: u32,
    },
    /// BAR 5 claims to be the low half of a 64-bit BAR.
    #[error("BAR {bar} claims to be 64-bit but is the last BAR")]
    Bar64InLastSlot {
        /// The BAR number.
        bar: u8,
    },
}

/// What is wrong with one capability that the parser skipped.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum CapDefect {
    /// `cap_len` is too short for the capability's fields.
    #[error("cap_len {cap_len} is shorter than the {needed} bytes this capability needs")]
    CapLenTooShort {
        /// `cap_len` as read.
        cap_len: u8,
        /// Bytes the capability type needs.
        needed: u8,
    },
    /// `cap_len` takes the capability past byte 0xFF.
    #[error("cap_len {cap_len} runs past the end of configuration space")]
    RunsPastConfigSpace {
        /// `cap_len` as read.
        cap_len: u8,
    },
    /// `bar` names no BAR (virtio 1.2, 4.1.4: the driver must ignore the capability).
    #[error("bar {bar} is reserved (only 0..=5 name BARs); ignored per virtio 1.2 4.1.4")]
    ReservedBar {
        /// The value of `bar`.
        bar: u8,
    },
    /// `offset + length` does not fit in 32 bits.
    #[error("offset {offset:#x} + length {length:#x} overflows 32 bits")]
    RegionOverflow {
        /// `offset` as read.
        offset: u32,
        /// `length` as read.
        length: u32,
    },
    /// The region is too short for the structure it describes.
    #[error("region length {length:#x} is shorter than the {needed:#x} bytes required")]
    RegionTooSmall {
        /// `length` as read.
        length: u32,
        /// Bytes the structure needs.
        needed: u32,
    },
    /// `notify_off_multiplier` breaks virtio 1.2, 4.1.4.4.
    #[error("notify_off_multiplier {multiplier} is neither 0 nor an even power of two")]
    BadNotifyMultiplier {
        /// The multiplier as read.
        multiplier: u32,
    },
    /// The MSI-X table or PBA BIR names no BAR.
    #[error("MSI-X {what} BIR {bir} is reserved (only 0..=5 name BARs)")]
    MsixBadBir {
        /// "table" or "PBA".
        what: &'static str,
        /// The BIR as read.
        bir: u8,
    },
}

/// A capability the parser saw but did not use, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SkippedCap {
    /// Configuration-space offset of the capability.
    pub at: u8,
    /// Capability ID.
    pub cap_id: u8,
    /// Raw `cfg_type` for virtio vendor capabilities.
    pub cfg_type: Option<u8>,
    /// Why it was skipped.
    pub defect: CapDefect,
}

/// A region inside a memory BAR described by a virtio capability.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CapRegion {
    /// Configuration-space offset of the capability that described it.
    pub cap_at: u8,
    /// BAR number (`virtio_pci_cap.bar`).
    pub bar: u8,
    /// Offset of the structure in the BAR (`virtio_pci_cap.offset`).
    pub offset: u32,
    /// Length of the structure in bytes (`virtio_pci_cap.length`).
    pub length: u32,
}

/// The notification region and how queue notify offsets scale inside it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NotifyRegion {
    /// Where the notification structure lies (`virtio_pci_notify_cap.cap`).
    pub region: CapRegion,
    /// `notify_off_multiplier`: a queue's notify address is `offset + queue_notify_off *
    /// notify_off_multiplier`.
    pub notify_off_multiplier: u32,
}

/// The MSI-X capability (PCI 3.0 section 6.8.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MsixCap {
    /// Configuration-space offset of the capability.
    pub cap_at: u8,
    /// Message Control as read during parsing.
    pub message_control: u16,
    /// Number of table entries: `(message_control & 0x7FF) + 1`.
    pub table_size: u16,
    /// BAR holding the table (Table BIR, low 3 bits of the Table Offset/BIR register).
    pub table_bir: u8,
    /// Offset of the table in that BAR (the register with its BIR bits cleared).
    pub table_offset: u32,
    /// BAR holding the PBA (PBA BIR).
    pub pba_bir: u8,
    /// Offset of the PBA in that BAR.
    pub pba_offset: u32,
}

impl MsixCap {
    /// Message Control bit 15.
    pub const ENABLE: u16 = virq_spec::msix::CONTROL_ENABLE;
    /// Message Control bit 14.
    pub const FUNCTION_MASK: u16 = virq_spec::msix::CONTROL_FUNCTION_MASK;

    /// Read the live Message Control register.
    pub fn read_control(&self, regs: &mut impl RegisterAccess) -> u16 {
        regs.config_read(u16::from(self.cap_at) + 2, Width::U16) as u16
    }

    /// Whether MSI-X is enabled right now (a `!pci` "MSI-X Enable" check).
    pub fn is_enabled(&self, regs: &mut impl RegisterAccess) -> bool {
        self.read_control(regs) & Self::ENABLE != 0
    }

    /// Set or clear MSI-X Enable with a 16-bit write, as the bus driver would when the driver
    /// falls back to INTx (the device must then stop using messages).
    pub fn set_enabled(&self, regs: &mut impl RegisterAccess, enabled: bool) {
        let control = self.read_control(regs);
        let control = if enabled {
            control | Self::ENABLE
        } else {
            control & !Self::ENABLE
        };
        regs.config_write(u16::from(self.cap_at) + 2, Width::U16, u32::from(control));
    }
}

/// Everything the driver core needs from configuration space.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VirtioPciCaps {
    /// The common configuration structure.
    pub common: CapRegion,
    /// The notification structure and its multiplier.
    pub notify: NotifyRegion,
    /// The ISR status byte.
    pub isr: CapRegion,
    /// Device-specific configuration; some device types have none.
    pub device: Option<CapRegion>,
    /// Configuration-space offset of the VIRTIO_PCI_CAP_PCI_CFG capability.
    pub pci_cfg: Option<u8>,
    /// The MSI-X capability; `None` for a function with INTx only.
    pub msix: Option<MsixCap>,
    /// Capabilities seen but not used, with the reason.
    pub skipped: Vec<SkippedCap>,
    /// Number of capabilities walked.
    pub walked: usize,
}

/// A memory BAR's base address as the function reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BarAddress {
    /// The base address, the BAR's flag bits cleared.
    pub address: u64,
    /// Type field 0b10: the BAR spans two slots.
    pub is_64bit: bool,
    /// The Prefetchable bit.
    pub prefetchable: bool,
}

/// Read memory BAR `bar` (32- or 64-bit) without sizing it (sizing writes all ones and would
/// disturb a live function).
pub fn read_bar_address(regs: &mut impl RegisterAccess, bar: u8) -> Result<BarAddress, CapError> {
    if bar > 5 {
        return Err(CapError::NoSuchBar { bar });
    }
    let at = 0x10 + 4 * u16::from(bar);
    let raw = regs.config_read(at, Width::U32);
    if raw & 1 != 0 {
        return Err(CapError::IoBar { bar, raw });
    }
    let prefetchable = raw & 0x8 != 0;
    match (raw >> 1) & 0x3 {
        0b00 => Ok(BarAddress {
            address: u64::from(raw & !0xF),
            is_64bit: false,
            prefetchable,
        }),
        0b10 => {
            if bar == 5 {
                return Err(CapError::Bar64InLastSlot { bar });
            }
            let high = regs.config_read(at + 4, Width::U32);
            Ok(BarAddress {
                address: (u64::from(high) << 32) | u64::from(raw & !0xF),
                is_64bit: true,
                prefetchable,
            })
        }
        _ => Err(CapError::ReservedBarType { bar, raw }),
    }
}

fn cfg8(regs: &mut impl RegisterAccess, at: u16) -> u8 {
    regs.config_read(at, Width::U8) as u8
}

fn cfg32(regs: &mut impl RegisterAccess, at: u16) -> u32 {
    regs.config_read(at, Width::U32)
}

impl VirtioPciCaps {
    /// Walk the capability list and pick, for each virtio `cfg_type`, the first capability that is
    /// valid (virtio 1.2 section 4.1.4: the driver should use the first one it can use).
    pub fn parse(regs: &mut impl RegisterAccess) -> Result<Self, CapError> {
        if regs.config_read(0x00, Width::U16) == 0xFFFF {
            return Err(CapError::DeviceAbsent);
        }
        let status = regs.config_read(PCI_STATUS, Width::U16) as u16;
        if status & PCI_STATUS_CAP_LIST == 0 {
            return Err(CapError::NoCapabilityList { status });
        }

        let mut common = None;
        let mut notify = None;
        let mut isr = None;
        let mut device = None;
        let mut pci_cfg = None;
        let mut msix = None;
        let mut skipped = Vec::new();
        let mut visited = [false; 256];
        let mut walked = 0usize;

        let mut from = PCI_CAP_PTR;
        let mut raw = cfg8(regs, PCI_CAP_PTR);
        loop {
            // The low two bits of every pointer are reserved (PCI 3.0 section 6.7).
            let at = raw & 0xFC;
            if at == 0 {
                break;
            }
            if !(0x40..=0xFC).contains(&at) {
                return Err(CapError::PointerOutOfRange { from, pointer: raw });
            }
            if visited[usize::from(at)] {
                return Err(CapError::Loop { at });
            }
            visited[usize::from(at)] = true;
            walked += 1;
            if walked > MAX_CAPS {
                return Err(CapError::TooManyCapabilities { limit: MAX_CAPS });
            }
            let at16 = u16::from(at);
            let cap_id = cfg8(regs, at16);
            match cap_id {
                CAP_ID_VENDOR => {
                    let cfg_type = cfg8(regs, at16 + 3);
                    match parse_vendor_cap(regs, at, cfg_type) {
                        Ok(Some(found)) => match found {
                            Found::Common(r) if common.is_none() => common = Some(r),
                            Found::Notify(n) if notify.is_none() => notify = Some(n),
                            Found::Isr(r) if isr.is_none() => isr = Some(r),
                            Found::Device(r) if device.is_none() => device = Some(r),
                            Found::PciCfg if pci_cfg.is_none() => pci_cfg = Some(at),
                            _ => {}
                        },
                        Ok(None) => {}
                        Err(defect) => skipped.push(SkippedCap {
                            at,
                            cap_id,
                            cfg_type: Some(cfg_type),
                            defect,
                        }),
                    }
                }
                CAP_ID_MSIX if msix.is_none() => match parse_msix(regs, at) {
                    Ok(m) => msix = Some(m),
                    Err(defect) => skipped.push(SkippedCap {
                        at,
                        cap_id,
                        cfg_type: None,
                        defect,
                    }),
                },
                _ => {}
            }
            from = at16 + 1;
            raw = cfg8(regs, from);
        }

        let missing = |cfg_type, skipped: &Vec<SkippedCap>| CapError::MissingCapability {
            cfg_type,
            skipped: skipped.clone(),
        };
        let common = common.ok_or_else(|| missing(VirtioCfgType::Common, &skipped))?;
        let notify = notify.ok_or_else(|| missing(VirtioCfgType::Notify, &skipped))?;
        let isr = isr.ok_or_else(|| missing(VirtioCfgType::Isr, &skipped))?;
        Ok(Self {
            common,
            notify,
            isr,
            device,
            pci_cfg,
            msix,
            skipped,
            walked,
        })
    }
}

enum Found {
    Common(CapRegion),
    Notify(NotifyRegion),
    Isr(CapRegion),
    Device(CapRegion),
    PciCfg,
}

/// Validate one virtio vendor capability. `Ok(None)` means "not ours to use" (unknown
/// `cfg_type`), which the spec says to ignore silently.
fn parse_vendor_cap(
    regs: &mut impl RegisterAccess,
    at: u8,
    cfg_type: u8,
) -> Result<Option<Found>, CapDefect> {
    let Some(kind) = VirtioCfgType::from_raw(cfg_type) else {
        return Ok(None);
    };
    let at16 = u16::from(at);
    let cap_len = cfg8(regs, at16 + 2);
    let needed = match kind {
        VirtioCfgType::Notify => VIRTIO_NOTIFY_CAP_LEN,
        VirtioCfgType::PciCfg => VIRTIO_PCI_CFG_CAP_LEN,
        _ => VIRTIO_CAP_LEN,
    };
    if cap_len < needed {
        return Err(CapDefect::CapLenTooShort { cap_len, needed });
    }
    if at16 + u16::from(cap_len) > 0x100 {
        return Err(CapDefect::RunsPastConfigSpace { cap_len });
    }
    if kind == VirtioCfgType::PciCfg {
        // Its bar/offset/length are a window the driver programs, not a region to validate.
        return Ok(Some(Found::PciCfg));
    }
    let bar = cfg8(regs, at16 + 4);
    if bar > 5 {
        return Err(CapDefect::ReservedBar { bar });
    }
    let offset = cfg32(regs, at16 + 8);
    let length = cfg32(regs, at16 + 12);
    if offset.checked_add(length).is_none() {
        return Err(CapDefect::RegionOverflow { offset, length });
    }
    let needed_len = match kind {
        VirtioCfgType::Common => COMMON_CFG_MIN_LEN,
        VirtioCfgType::Notify => 2,
        VirtioCfgType::Isr => 1,
        _ => 0,
    };
    if length < needed_len {
        return Err(CapDefect::RegionTooSmall {
            length,
            needed: needed_len,
        });
    }
    let region = CapRegion {
        cap_at: at,
        bar,
        offset,
        length,
    };
    Ok(Some(match kind {
        VirtioCfgType::Common => Found::Common(region),
        VirtioCfgType::Isr => Found::Isr(region),
        VirtioCfgType::Device => Found::Device(region),
        VirtioCfgType::Notify => {
            let multiplier = cfg32(regs, at16 + 16);
            if multiplier != 0 && !(multiplier.is_power_of_two() && multiplier >= 2) {
                return Err(CapDefect::BadNotifyMultiplier { multiplier });
            }
            Found::Notify(NotifyRegion {
                region,
                notify_off_multiplier: multiplier,
            })
        }
        VirtioCfgType::PciCfg => unreachable!("handled above"),
    }))
}

fn parse_msix(regs: &mut impl RegisterAccess, at: u8) -> Result<MsixCap, CapDefect> {
    let at16 = u16::from(at);
    if at16 + u16::from(MSIX_CAP_LEN) > 0x100 {
        return Err(CapDefect::RunsPastConfigSpace {
            cap_len: MSIX_CAP_LEN,
        });
    }
    let message_control = regs.config_read(at16 + 2, Width::U16) as u16;
    let table = cfg32(regs, at16 + 4);
    let pba = cfg32(regs, at16 + 8);
    let table_bir = (table & 0x7) as u8;
    let pba_bir = (pba & 0x7) as u8;
    if table_bir > 5 {
        return Err(CapDefect::MsixBadBir {
            what: "table",
            bir: table_bir,
        });
    }
    if pba_bir > 5 {
        return Err(CapDefect::MsixBadBir {
            what: "PBA",
            bir: pba_bir,
        });
    }
    Ok(MsixCap {
        cap_at: at,
        message_control,
        table_size: (message_control & virq_spec::msix::CONTROL_TABLE_SIZE) + 1,
        table_bir,
        table_offset: table & !0x7,
        pba_bir,
        pba_offset: pba & !0x7,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake::{ConfigSpace, ConfigSpaceBuilder};
    use proptest::prelude::*;

    fn good() -> ConfigSpaceBuilder {
        ConfigSpaceBuilder::standard()
    }

    #[test]
    fn parses_standard_layout_virtio_1_2_4_1_4() {
        let mut cs = good().build();
        let caps = VirtioPciCaps::parse(&mut cs).unwrap();
        assert_eq!(caps.common.bar, 0);
        assert_eq!(caps.common.offset, 0x0000);
        assert_eq!(caps.common.length, 0x40);
        assert_eq!(caps.notify.region.offset, 0x1000);
        assert_eq!(caps.notify.notify_off_multiplier, 4);
        assert_eq!(caps.isr.offset, 0x2000);
        assert_eq!(caps.device.unwrap().offset, 0x3000);
        assert!(caps.pci_cfg.is_some());
        let msix = caps.msix.unwrap();
        assert_eq!(msix.table_size, 3);
        assert_eq!(msix.table_bir, 2);
        assert_eq!(msix.table_offset, 0);
        assert_eq!(msix.pba_bir, 2);
        assert_eq!(msix.pba_offset, 0x800);
        assert!(caps.skipped.is_empty());
        assert_eq!(caps.walked, 6);
    }

    #[test]
    fn msix_table_size_is_low_11_bits_plus_one() {
        let mut cs = good().msix_table_size(2048).build();
        assert_eq!(
            VirtioPciCaps::parse(&mut cs)
                .unwrap()
                .msix
                .unwrap()
                .table_size,
            2048
        );
        let mut cs = good().msix_table_size(1).build();
        assert_eq!(
            VirtioPciCaps::parse(&mut cs)
                .unwrap()
                .msix
                .unwrap()
                .table_size,
            1
        );
    }

    #[test]
    fn status_bit_4_clear_means_no_list() {
        let mut cs = good().build();
        cs.bytes[0x06] &= !0x10;
        assert!(matches!(
            VirtioPciCaps::parse(&mut cs),
            Err(CapError::NoCapabilityList { .. })
        ));
    }

    #[test]
    fn absent_function_is_reported() {
        let mut cs = ConfigSpace {
            bytes: [0xFF; 256],
            reads: 0,
        };
        assert_eq!(VirtioPciCaps::parse(&mut cs), Err(CapError::DeviceAbsent));
    }

    #[test]
    fn loop_in_list_is_detected() {
        let mut cs = good().build();
        // Last capability (MSI-X at 0x98) points back at the first.
        cs.bytes[0x99] = 0x40;
        assert_eq!(
            VirtioPciCaps::parse(&mut cs),
            Err(CapError::Loop { at: 0x40 })
        );
        let mut cs = good().build();
        cs.bytes[0x41] = 0x40;
        assert_eq!(
            VirtioPciCaps::parse(&mut cs),
            Err(CapError::Loop { at: 0x40 })
        );
    }

    #[test]
    fn pointer_into_header_is_rejected() {
        let mut cs = good().build();
        cs.bytes[0x51] = 0x3C;
        assert_eq!(
            VirtioPciCaps::parse(&mut cs),
            Err(CapError::PointerOutOfRange {
                from: 0x51,
                pointer: 0x3C
            })
        );
        let mut cs = good().build();
        cs.bytes[0x34] = 0x10;
        assert_eq!(
            VirtioPciCaps::parse(&mut cs),
            Err(CapError::PointerOutOfRange {
                from: 0x34,
                pointer: 0x10
            })
        );
    }

    #[test]
    fn pointer_low_bits_are_masked() {
        let mut cs = good().build();
        cs.bytes[0x34] = 0x43;
        assert!(VirtioPciCaps::parse(&mut cs).is_ok());
    }

    #[test]
    fn truncated_common_cap_len_is_skipped_and_reported_missing() {
        let mut cs = good().build();
        cs.bytes[0x42] = 12;
        match VirtioPciCaps::parse(&mut cs) {
            Err(CapError::MissingCapability { cfg_type, skipped }) => {
                assert_eq!(cfg_type, VirtioCfgType::Common);
                assert_eq!(skipped.len(), 1);
                assert_eq!(skipped[0].at, 0x40);
                assert_eq!(
                    skipped[0].defect,
                    CapDefect::CapLenTooShort {
                        cap_len: 12,
                        needed: 16
                    }
                );
            }
            other => panic!("expected missing COMMON, got {other:?}"),
        }
    }

    #[test]
    fn truncated_notify_cap_needs_multiplier_bytes() {
        let mut cs = good().build();
        cs.bytes[0x52] = 16;
        let err = VirtioPciCaps::parse(&mut cs).unwrap_err();
        assert!(
            matches!(err, CapError::MissingCapability { cfg_type: VirtioCfgType::Notify, ref skipped }
                if skipped[0].defect == CapDefect::CapLenTooShort { cap_len: 16, needed: 20 }),
            "{err:?}"
        );
    }

    #[test]
    fn missing_common_is_an_error() {
        let mut cs = good().build();
        cs.bytes[0x34] = 0x50; // skip the COMMON cap at 0x40
        assert!(matches!(
            VirtioPciCaps::parse(&mut cs),
            Err(CapError::MissingCapability {
                cfg_type: VirtioCfgType::Common,
                ..
            })
        ));
    }

    #[test]
    fn first_valid_cap_of_a_type_wins_and_reserved_bar_is_ignored() {
        // A COMMON cap with bar 7 comes first, then a valid one at 0xB0 that points at BAR 4.
        let mut cs = good()
            .extra_vendor_cap(0xB0, 1, 4, 0x100, 0x40)
            .extra_vendor_cap(0xC0, 1, 0, 0x200, 0x40)
            .build();
        cs.bytes[0x44] = 7;
        let caps = VirtioPciCaps::parse(&mut cs).unwrap();
        assert_eq!(caps.common.bar, 4);
        assert_eq!(caps.common.cap_at, 0xB0);
        assert_eq!(caps.skipped.len(), 1);
        assert_eq!(caps.skipped[0].defect, CapDefect::ReservedBar { bar: 7 });
    }

    #[test]
    fn region_overflow_and_bad_multiplier_are_skipped() {
        let mut cs = good().build();
        cs.bytes[0x48..0x4C].copy_from_slice(&0xFFFF_FFF0u32.to_le_bytes());
        let err = VirtioPciCaps::parse(&mut cs).unwrap_err();
        assert!(
            matches!(err, CapError::MissingCapability { ref skipped, .. }
            if matches!(skipped[0].defect, CapDefect::RegionOverflow { .. }))
        );
        let mut cs = good().build();
        cs.bytes[0x60..0x64].copy_from_slice(&3u32.to_le_bytes());
        let err = VirtioPciCaps::parse(&mut cs).unwrap_err();
        assert!(
            matches!(err, CapError::MissingCapability { ref skipped, .. }
            if skipped[0].defect == CapDefect::BadNotifyMultiplier { multiplier: 3 })
        );
    }

    #[test]
    fn short_common_region_is_rejected() {
        let mut cs = good().build();
        cs.bytes[0x4C..0x50].copy_from_slice(&0x20u32.to_le_bytes());
        assert!(matches!(
            VirtioPciCaps::parse(&mut cs),
            Err(CapError::MissingCapability { cfg_type: VirtioCfgType::Common, ref skipped })
                if skipped[0].defect == CapDefect::RegionTooSmall { length: 0x20, needed: 0x38 }
        ));
    }

    #[test]
    fn cap_running_past_config_space_is_skipped() {
        let mut cs = good().extra_vendor_cap(0xF8, 4, 0, 0, 0).build();
        cs.bytes[0x78] = 9; // spoil the real DEVICE cap's bar so only the late one could match
        let caps = VirtioPciCaps::parse(&mut cs).unwrap();
        assert!(caps.device.is_none());
        assert!(caps.skipped.iter().any(|s| s.at == 0xF8
            && s.defect == CapDefect::RunsPastConfigSpace { cap_len: 16 }));
    }

    #[test]
    fn msix_reserved_bir_is_skipped() {
        let mut cs = good().build();
        cs.bytes[0x9C] = (cs.bytes[0x9C] & !7) | 6;
        let caps = VirtioPciCaps::parse(&mut cs).unwrap();
        assert!(caps.msix.is_none());
        assert_eq!(
            caps.skipped[0].defect,
            CapDefect::MsixBadBir {
                what: "table",
                bir: 6
            }
        );
    }

    #[test]
    fn bar_addresses_32_and_64_bit() {
        let mut cs = good().build();
        let b0 = read_bar_address(&mut cs, 0).unwrap();
        assert_eq!(
            b0,
            BarAddress {
                address: 0x0000_0001_FE00_0000,
                is_64bit: true,
                prefetchable: false
            }
        );
        let b2 = read_bar_address(&mut cs, 2).unwrap();
        assert_eq!(b2.address, 0xFE10_0000);
        assert!(!b2.is_64bit);
        cs.bytes[0x24..0x28].copy_from_slice(&0xC001u32.to_le_bytes());
        assert!(matches!(
            read_bar_address(&mut cs, 5),
            Err(CapError::IoBar { bar: 5, .. })
        ));
        cs.bytes[0x24..0x28].copy_from_slice(&0x4u32.to_le_bytes());
        assert_eq!(
            read_bar_address(&mut cs, 5),
            Err(CapError::Bar64InLastSlot { bar: 5 })
        );
        assert_eq!(
            read_bar_address(&mut cs, 6),
            Err(CapError::NoSuchBar { bar: 6 })
        );
    }

    proptest! {
        /// Random configuration space: the parser never panics and never reads without bound.
        #[test]
        fn parser_is_total_and_bounded(bytes in proptest::collection::vec(any::<u8>(), 256)) {
            let mut cs = ConfigSpace { bytes: bytes.try_into().unwrap(), reads: 0 };
            let _ = VirtioPciCaps::parse(&mut cs);
            // 3 header reads, then per capability at most 2 list reads + 8 field reads.
            prop_assert!(cs.reads <= 3 + MAX_CAPS * 10, "reads {}", cs.reads);
        }

        /// Random lists biased toward valid structure: status bit set and dword pointers.
        #[test]
        fn parser_is_total_on_plausible_lists(
            mut bytes in proptest::collection::vec(any::<u8>(), 256),
            ptrs in proptest::collection::vec(0x10u8..0x40, 48),
        ) {
            bytes[0] = 0xF4;
            bytes[1] = 0x1A;
            bytes[6] |= 0x10;
            bytes[0x34] = 0x40;
            for (i, p) in ptrs.iter().enumerate() {
                let at = 0x40 + 4 * i;
                if at + 1 < 256 {
                    bytes[at + 1] = p * 4;
                }
            }
            let mut cs = ConfigSpace { bytes: bytes.try_into().unwrap(), reads: 0 };
            let result = VirtioPciCaps::parse(&mut cs);
            prop_assert!(cs.reads <= 3 + MAX_CAPS * 10);
            if let Ok(caps) = result {
                prop_assert!(caps.walked <= MAX_CAPS);
                prop_assert!(caps.common.bar <= 5 && caps.common.length >= COMMON_CFG_MIN_LEN);
            }
        }
    }
}
