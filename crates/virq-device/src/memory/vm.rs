//! rust-vmm's `vm-memory` behind virq's [`GuestMemory`] (feature `vm-memory`), for VMMs that
//! already hold a `GuestMemoryMmap` (virq's KVM machine does).
//!
//! Only the bitmap-less `GuestMemoryMmap<()>` is covered: the flat fast path writes guest RAM
//! directly and would bypass a dirty bitmap.

use std::ptr::NonNull;
use std::sync::atomic::Ordering;

use vm_memory::{
    Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryMmap, GuestMemoryRegion,
    MemoryRegionAddress,
};

use super::{FlatRegion, GuestMemory, MemoryError};

/// The error of a 16-bit atomic access at `addr` that vm-memory refused.
fn atomic_error(mem: &GuestMemoryMmap<()>, addr: u64) -> MemoryError {
    if addr % 2 != 0 && GuestMemory::check_range(mem, addr, 2) {
        MemoryError::Misaligned { addr, width: 2 }
    } else {
        MemoryError::range(addr, 2)
    }
}

fn load(mem: &GuestMemoryMmap<()>, addr: u64, order: Ordering) -> Result<u16, MemoryError> {
    mem.load::<u16>(GuestAddress(addr), order)
        .map(u16::from_le)
        .map_err(|_| atomic_error(mem, addr))
}

fn store(
    mem: &GuestMemoryMmap<()>,
    addr: u64,
    value: u16,
    order: Ordering,
) -> Result<(), MemoryError> {
    mem.store(value.to_le(), GuestAddress(addr), order)
        .map_err(|_| atomic_error(mem, addr))
}

impl GuestMemory for GuestMemoryMmap<()> {
    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), MemoryError> {
        self.read_slice(buf, GuestAddress(addr))
            .map_err(|_| MemoryError::range(addr, buf.len()))
    }

    fn write(&self, addr: u64, data: &[u8]) -> Result<(), MemoryError> {
        self.write_slice(data, GuestAddress(addr))
            .map_err(|_| MemoryError::range(addr, data.len()))
    }

    fn check_range(&self, addr: u64, len: u64) -> bool {
        if len == 0 {
            return true;
        }
        usize::try_from(len).is_ok_and(|len| {
            addr.checked_add(len as u64 - 1).is_some()
                && GuestMemoryBackend::check_range(self, GuestAddress(addr), len)
        })
    }

    fn load_u16(&self, addr: u64) -> Result<u16, MemoryError> {
        load(self, addr, Ordering::Relaxed)
    }

    fn load_acquire_u16(&self, addr: u64) -> Result<u16, MemoryError> {
        load(self, addr, Ordering::Acquire)
    }

    fn store_u16(&self, addr: u64, value: u16) -> Result<(), MemoryError> {
        store(self, addr, value, Ordering::Relaxed)
    }

    fn store_release_u16(&self, addr: u64, value: u16) -> Result<(), MemoryError> {
        store(self, addr, value, Ordering::Release)
    }

    // Hands vm-memory's mapping to the flat fast path as a raw pointer: the one unsafe step of
    // this module.
    #[allow(unsafe_code)]
    fn flat_region(&self) -> Option<FlatRegion<'_>> {
        if self.num_regions() != 1 {
            return None;
        }
        let region = self.iter().next()?;
        let len = usize::try_from(region.len()).ok()?;
        let host = NonNull::new(region.get_host_address(MemoryRegionAddress(0)).ok()?)?;
        region.start_addr().0.checked_add(len as u64)?;
        // SAFETY: `host` is the start of the region's mapping of `len` bytes, readable and
        // writable, which the borrow of `self` keeps mapped (regions are only unmapped when the
        // last `GuestMemoryMmap` holding them is dropped). vm-memory itself reaches it only
        // through volatile and atomic accesses, never Rust references, and so does virq.
        Some(unsafe { FlatRegion::new(region.start_addr().0, host, len) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_region_is_flat_and_both_paths_agree() {
        let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0x1000), 0x2000)]).unwrap();
        let flat = mem.flat_region().expect("one region");
        assert_eq!((flat.start(), flat.len()), (0x1000, 0x2000));
        mem.store_release_u16(0x1002, 0xCAFE).unwrap();
        assert_eq!(flat.load_u16(0x1002, Ordering::Acquire), Some(0xCAFE));
        flat.write(0x2FFE, &[1, 2]).unwrap();
        assert_eq!(GuestMemory::read_u16(&mem, 0x2FFE).unwrap(), 0x0201);
        assert!(GuestMemory::check_range(&mem, 0x2FFF, 1));
        assert!(!GuestMemory::check_range(&mem, 0x2FFF, 2));
        assert!(GuestMemory::read_u16(&mem, 0xFFF).is_err());
        assert_eq!(
            mem.load_u16(0x1003),
            Err(MemoryError::Misaligned {
                addr: 0x1003,
                width: 2
            })
        );
    }

    #[test]
    fn two_regions_are_not_flat_but_still_served() {
        let mem = GuestMemoryMmap::<()>::from_ranges(&[
            (GuestAddress(0), 0x1000),
            (GuestAddress(0x1000), 0x1000),
        ])
        .unwrap();
        assert!(mem.flat_region().is_none());
        GuestMemory::write(&mem, 0xFFE, &[1, 2, 3, 4]).unwrap();
        assert_eq!(GuestMemory::read_u32(&mem, 0xFFE).unwrap(), 0x0403_0201);
    }
}
