//! The two doors through which the driver core reaches a device: register access (PCI
//! configuration space and BAR-relative MMIO) and guest RAM (where the rings live).

use thiserror::Error;

/// Width of one register access in bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Width {
    /// 1 byte.
    U8 = 1,
    /// 2 bytes.
    U16 = 2,
    /// 4 bytes.
    U32 = 4,
    /// 8 bytes (MMIO only; the core never issues 8-byte configuration accesses).
    U64 = 8,
}

impl Width {
    /// Number of bytes the access covers.
    pub fn bytes(self) -> u64 {
        self as u64
    }
}

/// How the driver core touches a PCI function's registers.
///
/// Reads of a function that is gone should return all ones, as real PCI does; the core relies
/// on that to detect surprise removal (failure catalogue row 12).
pub trait RegisterAccess {
    /// PCI configuration read of `width` (1, 2 or 4 bytes) at `offset`.
    fn config_read(&mut self, offset: u16, width: Width) -> u32;
    /// PCI configuration write of `width` (1, 2 or 4 bytes) at `offset`.
    fn config_write(&mut self, offset: u16, width: Width, value: u32);
    /// MMIO read of `width` bytes at `offset` inside memory BAR `bar`.
    fn bar_read(&mut self, bar: u8, offset: u64, width: Width) -> u64;
    /// MMIO write of `width` bytes at `offset` inside memory BAR `bar`.
    fn bar_write(&mut self, bar: u8, offset: u64, width: Width, value: u64);
}

impl<T: RegisterAccess + ?Sized> RegisterAccess for &mut T {
    fn config_read(&mut self, offset: u16, width: Width) -> u32 {
        (**self).config_read(offset, width)
    }
    fn config_write(&mut self, offset: u16, width: Width, value: u32) {
        (**self).config_write(offset, width, value)
    }
    fn bar_read(&mut self, bar: u8, offset: u64, width: Width) -> u64 {
        (**self).bar_read(bar, offset, width)
    }
    fn bar_write(&mut self, bar: u8, offset: u64, width: Width, value: u64) {
        (**self).bar_write(bar, offset, width, value)
    }
}

impl<T: RegisterAccess + ?Sized> RegisterAccess for Box<T> {
    fn config_read(&mut self, offset: u16, width: Width) -> u32 {
        (**self).config_read(offset, width)
    }
    fn config_write(&mut self, offset: u16, width: Width, value: u32) {
        (**self).config_write(offset, width, value)
    }
    fn bar_read(&mut self, bar: u8, offset: u64, width: Width) -> u64 {
        (**self).bar_read(bar, offset, width)
    }
    fn bar_write(&mut self, bar: u8, offset: u64, width: Width, value: u64) {
        (**self).bar_write(bar, offset, width, value)
    }
}

/// A guest RAM access fell outside the memory the implementation backs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Error)]
#[error("guest RAM access of {len} bytes at {gpa:#x} is outside guest memory")]
pub struct RamError {
    /// Guest-physical address of the first byte.
    pub gpa: u64,
    /// Length of the access in bytes.
    pub len: u64,
}

/// Guest-physical memory as the driver sees it: the rings and the buffers they point at.
pub trait GuestRam {
    /// Copy `buf.len()` bytes starting at guest-physical address `gpa` into `buf`.
    ///
    /// `&mut self`: a real transport (a socket to an emulator, a DMA window, a cache) changes
    /// state when it reads, and should not need interior mutability to do so.
    fn read(&mut self, gpa: u64, buf: &mut [u8]) -> Result<(), RamError>;
    /// Copy `data` to guest-physical address `gpa`.
    fn write(&mut self, gpa: u64, data: &[u8]) -> Result<(), RamError>;
}

impl<T: GuestRam + ?Sized> GuestRam for &mut T {
    fn read(&mut self, gpa: u64, buf: &mut [u8]) -> Result<(), RamError> {
        (**self).read(gpa, buf)
    }
    fn write(&mut self, gpa: u64, data: &[u8]) -> Result<(), RamError> {
        (**self).write(gpa, data)
    }
}

/// Little-endian typed accessors on top of [`GuestRam`]; virtio rings are little-endian.
pub trait GuestRamExt: GuestRam {
    /// The little-endian 16-bit value at `gpa`.
    fn read_u16(&mut self, gpa: u64) -> Result<u16, RamError> {
        let mut b = [0u8; 2];
        self.read(gpa, &mut b)?;
        Ok(u16::from_le_bytes(b))
    }
    /// The little-endian 32-bit value at `gpa`.
    fn read_u32(&mut self, gpa: u64) -> Result<u32, RamError> {
        let mut b = [0u8; 4];
        self.read(gpa, &mut b)?;
        Ok(u32::from_le_bytes(b))
    }
    /// The little-endian 64-bit value at `gpa`.
    fn read_u64(&mut self, gpa: u64) -> Result<u64, RamError> {
        let mut b = [0u8; 8];
        self.read(gpa, &mut b)?;
        Ok(u64::from_le_bytes(b))
    }
    /// Write `v` little-endian at `gpa`.
    fn write_u16(&mut self, gpa: u64, v: u16) -> Result<(), RamError> {
        self.write(gpa, &v.to_le_bytes())
    }
    /// Write `v` little-endian at `gpa`.
    fn write_u32(&mut self, gpa: u64, v: u32) -> Result<(), RamError> {
        self.write(gpa, &v.to_le_bytes())
    }
    /// Write `v` little-endian at `gpa`.
    fn write_u64(&mut self, gpa: u64, v: u64) -> Result<(), RamError> {
        self.write(gpa, &v.to_le_bytes())
    }
}

impl<T: GuestRam + ?Sized> GuestRamExt for T {}

/// A flat block of guest RAM held in a `Vec`, for simulations and tests.
#[derive(Clone, Debug)]
pub struct VecRam {
    base: u64,
    bytes: Vec<u8>,
}

impl VecRam {
    /// `len` zeroed bytes starting at guest-physical address `base`.
    pub fn new(base: u64, len: usize) -> Self {
        Self {
            base,
            bytes: vec![0; len],
        }
    }

    fn range(&self, gpa: u64, len: usize) -> Result<std::ops::Range<usize>, RamError> {
        let err = RamError {
            gpa,
            len: len as u64,
        };
        let start = gpa.checked_sub(self.base).ok_or(err)?;
        let start = usize::try_from(start).map_err(|_| err)?;
        let end = start.checked_add(len).ok_or(err)?;
        if end > self.bytes.len() {
            return Err(err);
        }
        Ok(start..end)
    }
}

impl GuestRam for VecRam {
    fn read(&mut self, gpa: u64, buf: &mut [u8]) -> Result<(), RamError> {
        let r = self.range(gpa, buf.len())?;
        buf.copy_from_slice(&self.bytes[r]);
        Ok(())
    }
    fn write(&mut self, gpa: u64, data: &[u8]) -> Result<(), RamError> {
        let r = self.range(gpa, data.len())?;
        self.bytes[r].copy_from_slice(data);
        Ok(())
    }
}

/// The caller-supplied ring region ran out, or an alignment was not a power of two.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Error)]
pub enum AllocError {
    #[error(
        "ring region exhausted: {size} bytes aligned to {align} do not fit ({free} bytes left)"
    )]
    /// The region has no room left for the allocation.
    Exhausted {
        /// Bytes asked for.
        size: u64,
        /// Alignment asked for.
        align: u64,
        /// Bytes left in the region.
        free: u64,
    },
    /// An alignment that is not a power of two.
    #[error("alignment {align} is not a power of two")]
    BadAlign {
        /// The alignment asked for.
        align: u64,
    },
}

/// Bump allocator over a caller-supplied guest-physical region (`base`, `len`) for ring memory.
///
/// Rings are allocated once per queue and reused across resets, so nothing is ever freed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RingAllocator {
    base: u64,
    len: u64,
    used: u64,
}

impl RingAllocator {
    /// An allocator over `len` bytes of guest-physical memory from `base`, nothing allocated yet.
    pub fn new(base: u64, len: u64) -> Self {
        Self { base, len, used: 0 }
    }

    /// Allocate `size` bytes aligned to `align` (a power of two).
    pub fn alloc(&mut self, size: u64, align: u64) -> Result<u64, AllocError> {
        if !align.is_power_of_two() {
            return Err(AllocError::BadAlign { align });
        }
        let free = self.len - self.used;
        let exhausted = AllocError::Exhausted { size, align, free };
        let cursor = self.base.checked_add(self.used).ok_or(exhausted)?;
        let start = cursor.checked_add(align - 1).ok_or(exhausted)? & !(align - 1);
        let end = start.checked_add(size).ok_or(exhausted)?;
        if end > self.base + self.len {
            return Err(exhausted);
        }
        self.used = end - self.base;
        Ok(start)
    }

    /// Bytes handed out so far (including alignment padding).
    pub fn used(&self) -> u64 {
        self.used
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ring_allocator_honours_alignment_and_bounds() {
        let mut a = RingAllocator::new(0x1001, 0x100);
        let d = a.alloc(16, 16).unwrap();
        assert_eq!(d, 0x1010);
        let av = a.alloc(3, 2).unwrap();
        assert_eq!(av, 0x1020);
        let u = a.alloc(8, 4).unwrap();
        assert_eq!(u, 0x1024);
        assert!(matches!(
            a.alloc(0x1000, 4),
            Err(AllocError::Exhausted { .. })
        ));
        assert_eq!(a.alloc(4, 3), Err(AllocError::BadAlign { align: 3 }));
    }

    #[test]
    fn vec_ram_rejects_out_of_range_access() {
        let mut ram = VecRam::new(0x1000, 16);
        ram.write_u32(0x100c, 0xdead_beef).unwrap();
        assert_eq!(ram.read_u32(0x100c).unwrap(), 0xdead_beef);
        assert!(ram.write_u32(0x100d, 0).is_err());
        assert!(ram.read_u16(0xfff).is_err());
        assert!(ram.read_u64(u64::MAX - 2).is_err());
    }
}
