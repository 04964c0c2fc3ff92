//! Guest RAM the C caller owns: a host pointer, a length and the guest-physical address of its
//! first byte, behind virq-device's [`GuestMemory`] trait.
//!
//! The device reaches it only through [`FlatRegion`] (bounds-checked copies and atomics), and
//! never forms a Rust reference into it: the caller's driver core reads and writes the same
//! bytes through its own pointers, as a guest's CPUs do with RAM a VMM shares with a device.

use std::ptr::NonNull;

use virq_device::FlatRegion;

use crate::VIRQ_RAM_ALIGN as RAM_ALIGN;

/// Why a RAM description is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RamError {
    Empty,
    Wraps,
    Misaligned,
}

/// The caller's guest RAM.
#[derive(Debug)]
pub struct HostRam {
    start: u64,
    host: NonNull<u8>,
    len: usize,
}

// SAFETY: `HostRam` holds only the address of the caller's buffer and touches it through
// `FlatRegion` (raw copies and atomics), never through references. The caller promised in
// `virq_device_create` that the buffer stays valid until `virq_device_destroy` and may be used
// from whichever thread calls into the device, as a VMM's guest RAM is shared with vCPUs.
unsafe impl Send for HostRam {}
// SAFETY: as above; `&HostRam` gives out nothing but copies and atomic accesses.
unsafe impl Sync for HostRam {}

impl HostRam {
    /// Describe `len` bytes at `host` as guest RAM from guest-physical `start`.
    ///
    /// # Safety
    /// `host..host + len` must stay valid for reads and writes for as long as the returned
    /// value lives, and nobody may hold a Rust reference into it (C pointers are fine).
    pub unsafe fn new(host: NonNull<u8>, len: usize, start: u64) -> Result<HostRam, RamError> {
        if len == 0 {
            return Err(RamError::Empty);
        }
        if start.checked_add(len as u64).is_none() {
            return Err(RamError::Wraps);
        }
        if (host.as_ptr() as u64) % RAM_ALIGN != 0 || start % RAM_ALIGN != 0 {
            return Err(RamError::Misaligned);
        }
        Ok(HostRam { start, host, len })
    }

    #[inline(always)]
    fn region(&self) -> FlatRegion<'_> {
        // SAFETY: `new`'s contract keeps `host..host + len` valid for reads and writes while
        // `self` lives, which the borrow of `self` covers, and free of Rust references;
        // `start + len` was checked not to overflow in `new`.
        unsafe { FlatRegion::new(self.start, self.host, self.len) }
    }
}

virq_device::flat_guest_memory!(HostRam);

#[cfg(test)]
mod tests {
    use super::*;
    use virq_device::{GuestMemory, MemoryError};

    /// `len` bytes at byte `offset` of `buf` as guest RAM from `start`.
    fn ram_in(buf: &mut [u64], offset: usize, len: usize, start: u64) -> Result<HostRam, RamError> {
        assert!(offset + len <= buf.len() * 8);
        let host = NonNull::new(buf.as_mut_ptr().cast::<u8>().wrapping_add(offset)).unwrap();
        // SAFETY: the range lies inside `buf` (asserted), which every test keeps alive and
        // leaves untouched while the returned value is in use.
        unsafe { HostRam::new(host, len, start) }
    }

    #[test]
    fn reads_and_writes_land_in_the_callers_buffer_at_its_guest_base() {
        let mut buf = vec![0u64; 4]; // 32 bytes, 8-aligned
        {
            let ram = ram_in(&mut buf, 0, 32, 0x1000).unwrap();
            ram.write(0x1008, &[1, 2, 3, 4]).unwrap();
            ram.store_release_u16(0x101E, 0xBEEF).unwrap();
            assert_eq!(ram.load_acquire_u16(0x101E).unwrap(), 0xBEEF);
            assert_eq!(ram.read_u32(0x1008).unwrap(), 0x0403_0201);
            assert!(ram.read(0xFFF, &mut [0]).is_err(), "below the base");
            assert_eq!(
                ram.write(0x101F, &[0, 0]),
                Err(MemoryError::OutOfRange {
                    addr: 0x101F,
                    len: 2
                })
            );
            assert_eq!(
                ram.load_u16(0x1001),
                Err(MemoryError::Misaligned {
                    addr: 0x1001,
                    width: 2
                })
            );
        }
        assert_eq!(buf[1], 0x0403_0201);
        assert_eq!(buf[3] >> 48, 0xBEEF);
    }

    #[test]
    fn unusable_descriptions_are_refused() {
        let mut buf = vec![0u64; 2];
        assert_eq!(ram_in(&mut buf, 0, 0, 0).unwrap_err(), RamError::Empty);
        assert_eq!(
            ram_in(&mut buf, 0, 16, u64::MAX - 8).unwrap_err(),
            RamError::Wraps
        );
        assert_eq!(
            ram_in(&mut buf, 0, 16, 4).unwrap_err(),
            RamError::Misaligned
        );
        assert_eq!(ram_in(&mut buf, 1, 8, 0).unwrap_err(), RamError::Misaligned);
        assert!(ram_in(&mut buf, 8, 8, 0x10).is_ok());
    }
}
