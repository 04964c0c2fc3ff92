//! Where the virtio structures and the MSI-X table live in the BARs.
//!
//! Emulators differ here (QEMU, cloud-hypervisor and others each pick their own), and drivers
//! must find everything through the capability list, so every placement is configurable and
//! validated once at construction.

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// A window in a BAR.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Region {
    /// BAR number (0, 2 or 4), as in `virtio_pci_cap.bar` (virtio 1.2, 4.1.4).
    pub bar: u8,
    /// Offset of the window within the BAR (`virtio_pci_cap.offset`).
    pub offset: u64,
    /// Length of the window in bytes (`virtio_pci_cap.length`).
    pub length: u64,
}

impl Region {
    /// The window of `length` bytes at `offset` in BAR `bar`.
    pub const fn new(bar: u8, offset: u64, length: u64) -> Self {
        Region {
            bar,
            offset,
            length,
        }
    }

    /// Offset of `(bar, offset)` inside this region, if it falls in it.
    #[inline]
    pub fn contains(&self, bar: u8, offset: u64, len: usize) -> Option<u64> {
        if bar != self.bar || offset < self.offset {
            return None;
        }
        let rel = offset - self.offset;
        (rel.checked_add(len as u64)? <= self.length).then_some(rel)
    }

    fn end(&self) -> u64 {
        self.offset + self.length
    }

    fn overlaps(&self, other: &Region) -> bool {
        self.bar == other.bar && self.offset < other.end() && other.offset < self.end()
    }
}

/// Placement of every structure the capability list points at.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Layout {
    /// The common configuration structure (`VIRTIO_PCI_CAP_COMMON_CFG`, virtio 1.2, 4.1.4.3).
    pub common: Region,
    /// The notification structure (`VIRTIO_PCI_CAP_NOTIFY_CFG`, virtio 1.2, 4.1.4.4).
    pub notify: Region,
    /// `notify_off_multiplier` (virtio 1.2, 4.1.4.4): 0 or an even power of two.
    pub notify_off_multiplier: u32,
    /// The ISR status byte (`VIRTIO_PCI_CAP_ISR_CFG`, virtio 1.2, 4.1.4.5).
    pub isr: Region,
    /// The device-specific configuration (`VIRTIO_PCI_CAP_DEVICE_CFG`, virtio 1.2, 4.1.4.6).
    pub device: Region,
    /// MSI-X table (BAR and offset; the length follows from the table size).
    pub msix_table_bar: u8,
    /// Offset of the MSI-X table in `msix_table_bar` (8-byte aligned: the low 3 bits of the
    /// capability's Table Offset/BIR hold the BAR).
    pub msix_table_offset: u64,
    /// MSI-X PBA (BAR and offset; the length follows from the table size).
    pub msix_pba_bar: u8,
    /// Offset of the PBA in `msix_pba_bar` (8-byte aligned, as for the table).
    pub msix_pba_offset: u64,
}

impl Default for Layout {
    /// BAR0 (64-bit, 16 KiB): common 0x0000, notify 0x1000 (multiplier 4), ISR 0x2000, device
    /// 0x3000. MSI-X table at BAR2 offset 0 and PBA at BAR2 0x8000, so the table never shares
    /// a page with queue registers and a 2048-entry table still fits.
    fn default() -> Self {
        Layout {
            common: Region::new(0, 0x0000, 0x1000),
            notify: Region::new(0, 0x1000, 0x1000),
            notify_off_multiplier: 4,
            isr: Region::new(0, 0x2000, 0x1000),
            device: Region::new(0, 0x3000, 0x1000),
            msix_table_bar: 2,
            msix_table_offset: 0,
            msix_pba_bar: 2,
            msix_pba_offset: 0x8000,
        }
    }
}

/// Why a layout cannot be used.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum LayoutError {
    /// A BAR number other than 0, 2 or 4.
    #[error("BAR {0} must be 0, 2 or 4: every BAR is a 64-bit memory BAR using two slots")]
    BadBar(u8),
    /// The named region is empty or shorter than the bytes it must hold.
    #[error("{0} region is empty or too small (needs {1} bytes)")]
    TooSmall(&'static str, u64),
    /// Two regions share bytes of the same BAR.
    #[error("{a} and {b} overlap")]
    Overlap {
        /// One of the regions.
        a: &'static str,
        /// The other.
        b: &'static str,
    },
    /// `notify_off_multiplier` breaks virtio 1.2, 4.1.4.4.
    #[error("notify_off_multiplier {0} is neither 0 nor an even power of two")]
    BadMultiplier(u32),
    /// The named structure's offset is not 8-byte aligned.
    #[error("{0} offset {1:#x} is not 8-byte aligned (its low 3 bits hold the BIR)")]
    Misaligned(&'static str, u64),
    /// The notify region is too short for one notify address per queue.
    #[error("notify region of {have} bytes cannot hold {queues} queues at multiplier {mult}")]
    NotifyTooSmall {
        /// Bytes in the notify region.
        have: u64,
        /// Queues needing a notify address.
        queues: u16,
        /// `notify_off_multiplier`.
        mult: u32,
    },
    /// The MSI-X table size is outside what the capability's Table Size can say.
    #[error("MSI-X table size {0} is outside 1..=2048")]
    TableSize(u16),
    /// The named offset does not fit the capability's 32-bit offset field.
    #[error("{0} offset does not fit in 32 bits")]
    OffsetTooLarge(&'static str),
}

/// Size of the `virtio_pci_common_cfg` structure including `queue_reset` (virtio 1.2).
pub const COMMON_CFG_LEN: u64 = 0x3C;

impl Layout {
    /// The named regions, MSI-X table and PBA included, for a table of `table_size` entries.
    pub fn regions(&self, table_size: u16) -> [(&'static str, Region); 6] {
        let n = table_size as u64;
        [
            ("common", self.common),
            ("notify", self.notify),
            ("isr", self.isr),
            ("device", self.device),
            (
                "msix_table",
                Region::new(self.msix_table_bar, self.msix_table_offset, n * 16),
            ),
            (
                "msix_pba",
                Region::new(self.msix_pba_bar, self.msix_pba_offset, n.div_ceil(64) * 8),
            ),
        ]
    }

    /// Check the layout for a device with `num_queues` queues and an MSI-X table of
    /// `table_size` entries.
    pub fn validate(&self, num_queues: u16, table_size: u16) -> Result<(), LayoutError> {
        if !(1..=crate::msix::MAX_TABLE_SIZE).contains(&table_size) {
            return Err(LayoutError::TableSize(table_size));
        }
        let m = self.notify_off_multiplier;
        if m != 0 && (!m.is_power_of_two() || m == 1) {
            return Err(LayoutError::BadMultiplier(m));
        }
        let regions = self.regions(table_size);
        for (name, r) in regions {
            if r.bar > 4 || r.bar % 2 != 0 {
                return Err(LayoutError::BadBar(r.bar));
            }
            if r.offset > u32::MAX as u64 || r.length > u32::MAX as u64 {
                return Err(LayoutError::OffsetTooLarge(name));
            }
        }
        if self.common.length < COMMON_CFG_LEN {
            return Err(LayoutError::TooSmall("common", COMMON_CFG_LEN));
        }
        if self.isr.length < 1 {
            return Err(LayoutError::TooSmall("isr", 1));
        }
        if self.notify.length < 2 {
            return Err(LayoutError::TooSmall("notify", 2));
        }
        let need = (num_queues.saturating_sub(1) as u64) * m as u64 + 4;
        if m != 0 && self.notify.length < need {
            return Err(LayoutError::NotifyTooSmall {
                have: self.notify.length,
                queues: num_queues,
                mult: m,
            });
        }
        if self.msix_table_offset % 8 != 0 {
            return Err(LayoutError::Misaligned(
                "msix_table",
                self.msix_table_offset,
            ));
        }
        if self.msix_pba_offset % 8 != 0 {
            return Err(LayoutError::Misaligned("msix_pba", self.msix_pba_offset));
        }
        for (i, (a, ra)) in regions.iter().enumerate() {
            for (b, rb) in regions.iter().skip(i + 1) {
                if ra.length > 0 && rb.length > 0 && ra.overlaps(rb) {
                    return Err(LayoutError::Overlap { a, b });
                }
            }
        }
        Ok(())
    }

    /// Size of each BAR in use: the smallest power of two (at least 4 KiB) covering its regions.
    pub fn bar_sizes(&self, table_size: u16) -> Vec<(u8, u64)> {
        let mut sizes: Vec<(u8, u64)> = Vec::new();
        for (_, r) in self.regions(table_size) {
            let end = (r.offset + r.length).max(0x1000).next_power_of_two();
            match sizes.iter_mut().find(|(b, _)| *b == r.bar) {
                Some((_, s)) => *s = (*s).max(end),
                None => sizes.push((r.bar, end)),
            }
        }
        sizes.sort();
        sizes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_layout_is_valid_up_to_2048_entries() {
        let l = Layout::default();
        assert_eq!(l.validate(3, 3), Ok(()));
        assert_eq!(l.validate(64, 2048), Ok(()));
        assert_eq!(l.bar_sizes(3), vec![(0, 0x4000), (2, 0x10000)]);
    }

    #[test]
    fn overlapping_and_odd_layouts_are_refused() {
        let l = Layout {
            isr: Region::new(0, 0x0010, 4),
            ..Layout::default()
        };
        assert_eq!(
            l.validate(1, 2),
            Err(LayoutError::Overlap {
                a: "common",
                b: "isr"
            })
        );
        let l = Layout {
            notify_off_multiplier: 3,
            ..Layout::default()
        };
        assert_eq!(l.validate(1, 2), Err(LayoutError::BadMultiplier(3)));
        let l = Layout {
            device: Region::new(1, 0x3000, 0x1000),
            ..Layout::default()
        };
        assert_eq!(l.validate(1, 2), Err(LayoutError::BadBar(1)));
    }
}
