//! Guest memory as the device sees it: a small trait of virq's own, so a browser emulator on
//! `wasm32`, a flat `Vec<u8>` ([`VecMemory`]), a memory-bus adapter or rust-vmm's `vm-memory`
//! (feature `vm-memory`) can all back a device.
//!
//! Every access is bounds-checked and fails with a [`MemoryError`] instead of panicking: ring
//! addresses and buffer addresses come from the guest. The split ring needs four kinds of
//! access beyond plain copies (virtio 1.2, 2.7.13): an acquire load of `avail.idx`, a release
//! store of `used.idx`, and relaxed atomic 16-bit loads and stores of the fields the driver
//! and the device write concurrently (`avail.flags`, `used_event`, `avail_event`).
//!
//! Devices do not call the trait directly on the hot path: they take a [`Dma`] view for one
//! pass over a queue, which uses the memory's [`FlatRegion`] (when it is one flat region, the
//! common case) without a dynamic call per access. The split ring goes one step further: it
//! checks its three areas against the region once per pass and then reaches them through
//! [`FlatWindow`]s, where an access compares an offset with the area's length.

mod flat;
#[cfg(feature = "vm-memory")]
mod vm;

use thiserror::Error;

pub use flat::{FlatRegion, FlatWindow, VecMemory};

/// Why a guest-memory access failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Error)]
pub enum MemoryError {
    /// Some byte of the range is not guest RAM (or the range wraps the address space).
    #[error("{len} bytes at guest address {addr:#x} are not guest RAM")]
    OutOfRange {
        /// Guest-physical address of the first byte.
        addr: u64,
        /// Length of the access in bytes.
        len: u64,
    },
    /// An atomic access at an address its width does not divide.
    #[error("guest address {addr:#x} is not aligned for a {width}-byte atomic access")]
    Misaligned {
        /// Guest-physical address of the access.
        addr: u64,
        /// Width of the access in bytes.
        width: u8,
    },
}

impl MemoryError {
    pub(crate) fn range(addr: u64, len: usize) -> Self {
        MemoryError::OutOfRange {
            addr,
            len: len as u64,
        }
    }
}

/// Guest RAM as a device reaches it: bounds-checked copies and the atomic 16-bit accesses a
/// split virtqueue needs. Implementations are shared with the vCPUs (or the emulator's CPU
/// loop), hence `&self` for writes.
pub trait GuestMemory: Send + Sync {
    /// Copy `buf.len()` bytes at `addr` into `buf`.
    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), MemoryError>;

    /// Copy `data` to `addr`.
    fn write(&self, addr: u64, data: &[u8]) -> Result<(), MemoryError>;

    /// Whether all of `[addr, addr + len)` is guest RAM (an empty range always is).
    fn check_range(&self, addr: u64, len: u64) -> bool;

    /// A relaxed atomic little-endian 16-bit load (`avail.flags`, `used_event`): a field the
    /// driver may be writing at the same moment.
    fn load_u16(&self, addr: u64) -> Result<u16, MemoryError>;

    /// An acquire 16-bit load (`avail.idx`): everything the driver wrote before publishing the
    /// index is visible after it.
    fn load_acquire_u16(&self, addr: u64) -> Result<u16, MemoryError>;

    /// A relaxed atomic little-endian 16-bit store (`avail_event`).
    fn store_u16(&self, addr: u64, value: u16) -> Result<(), MemoryError>;

    /// A release 16-bit store (`used.idx`): the used entries written before it are visible to
    /// a driver that reads the index.
    fn store_release_u16(&self, addr: u64, value: u16) -> Result<(), MemoryError>;

    /// The whole memory as one flat host buffer, when it is one. The device then reaches
    /// guest RAM with plain pointer arithmetic and no call through this trait per access.
    fn flat_region(&self) -> Option<FlatRegion<'_>> {
        None
    }

    /// A little-endian `u16` (plain, not atomic).
    fn read_u16(&self, addr: u64) -> Result<u16, MemoryError> {
        let mut b = [0u8; 2];
        self.read(addr, &mut b)?;
        Ok(u16::from_le_bytes(b))
    }

    /// A little-endian `u32`.
    fn read_u32(&self, addr: u64) -> Result<u32, MemoryError> {
        let mut b = [0u8; 4];
        self.read(addr, &mut b)?;
        Ok(u32::from_le_bytes(b))
    }

    /// A little-endian `u64`.
    fn read_u64(&self, addr: u64) -> Result<u64, MemoryError> {
        let mut b = [0u8; 8];
        self.read(addr, &mut b)?;
        Ok(u64::from_le_bytes(b))
    }

    /// Store a little-endian `u16` (plain, not atomic).
    fn write_u16(&self, addr: u64, value: u16) -> Result<(), MemoryError> {
        self.write(addr, &value.to_le_bytes())
    }

    /// Store a little-endian `u32`.
    fn write_u32(&self, addr: u64, value: u32) -> Result<(), MemoryError> {
        self.write(addr, &value.to_le_bytes())
    }

    /// Store a little-endian `u64`.
    fn write_u64(&self, addr: u64, value: u64) -> Result<(), MemoryError> {
        self.write(addr, &value.to_le_bytes())
    }
}

/// [`GuestMemory`] for a handle to a memory (`Arc<M>`, `&M`): every access is the memory's.
macro_rules! forward_guest_memory {
    ($($handle:tt)*) => {
        impl<M: GuestMemory + ?Sized> GuestMemory for $($handle)* {
            fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), MemoryError> {
                (**self).read(addr, buf)
            }
            fn write(&self, addr: u64, data: &[u8]) -> Result<(), MemoryError> {
                (**self).write(addr, data)
            }
            fn check_range(&self, addr: u64, len: u64) -> bool {
                (**self).check_range(addr, len)
            }
            fn load_u16(&self, addr: u64) -> Result<u16, MemoryError> {
                (**self).load_u16(addr)
            }
            fn load_acquire_u16(&self, addr: u64) -> Result<u16, MemoryError> {
                (**self).load_acquire_u16(addr)
            }
            fn store_u16(&self, addr: u64, value: u16) -> Result<(), MemoryError> {
                (**self).store_u16(addr, value)
            }
            fn store_release_u16(&self, addr: u64, value: u16) -> Result<(), MemoryError> {
                (**self).store_release_u16(addr, value)
            }
            fn flat_region(&self) -> Option<FlatRegion<'_>> {
                (**self).flat_region()
            }
        }
    };
}

forward_guest_memory!(std::sync::Arc<M>);
// A borrowed memory is the memory (drivers in tests and fuzz targets hold `&dyn GuestMemory`).
forward_guest_memory!(&M);

/// Implements [`GuestMemory`] for a type that is one flat region of guest RAM, given as its
/// inherent method `fn region(&self) -> FlatRegion<'_>`: every access is the region's
/// bounds-checked copy or atomic, and [`GuestMemory::flat_region`] hands the region out so the
/// device's fast path is taken. [`VecMemory`] is built this way, and so is the C API's memory
/// over a caller's buffer.
#[macro_export]
macro_rules! flat_guest_memory {
    ($ty:ty) => {
        impl $crate::GuestMemory for $ty {
            #[inline]
            fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), $crate::MemoryError> {
                self.region().read(addr, buf)
            }

            #[inline]
            fn write(&self, addr: u64, data: &[u8]) -> Result<(), $crate::MemoryError> {
                self.region().write(addr, data)
            }

            #[inline]
            fn check_range(&self, addr: u64, len: u64) -> bool {
                self.region().contains(addr, len)
            }

            #[inline]
            fn load_u16(&self, addr: u64) -> Result<u16, $crate::MemoryError> {
                self.region()
                    .checked_load_u16(addr, ::std::sync::atomic::Ordering::Relaxed)
            }

            #[inline]
            fn load_acquire_u16(&self, addr: u64) -> Result<u16, $crate::MemoryError> {
                self.region()
                    .checked_load_u16(addr, ::std::sync::atomic::Ordering::Acquire)
            }

            #[inline]
            fn store_u16(&self, addr: u64, value: u16) -> Result<(), $crate::MemoryError> {
                self.region()
                    .checked_store_u16(addr, value, ::std::sync::atomic::Ordering::Relaxed)
            }

            #[inline]
            fn store_release_u16(&self, addr: u64, value: u16) -> Result<(), $crate::MemoryError> {
                self.region()
                    .checked_store_u16(addr, value, ::std::sync::atomic::Ordering::Release)
            }

            #[inline]
            fn flat_region(&self) -> Option<$crate::FlatRegion<'_>> {
                Some(self.region())
            }
        }
    };
}

/// The device's window on guest memory for one pass of work: device-initiated memory access.
///
/// The transport hands one out only while PCI Bus Master Enable is set (PCI 3.0, 6.2.2), so
/// holding a `Dma` is what "the function may master the bus" means in code. Accesses inside
/// the memory's [`FlatRegion`] are plain bounds-checked pointer operations; anything else goes
/// through the [`GuestMemory`] trait object.
#[derive(Clone, Copy)]
pub struct Dma<'a> {
    flat: Option<FlatRegion<'a>>,
    mem: &'a dyn GuestMemory,
}

impl std::fmt::Debug for Dma<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dma")
            .field("flat", &self.flat)
            .finish_non_exhaustive()
    }
}

impl<'a> Dma<'a> {
    /// A view of `mem`, asking it once for its flat region.
    #[inline]
    pub fn new(mem: &'a dyn GuestMemory) -> Self {
        Dma {
            flat: mem.flat_region(),
            mem,
        }
    }

    /// The memory behind the view.
    pub fn memory(&self) -> &'a dyn GuestMemory {
        self.mem
    }

    /// `len` bytes at `addr` as a [`FlatWindow`] of the flat region, when there is one and it
    /// holds them all (see [`FlatRegion::window`]).
    #[inline]
    pub fn window(&self, addr: u64, len: u64) -> Option<FlatWindow<'a>> {
        self.flat.as_ref()?.window(addr, len)
    }

    /// See [`GuestMemory::read`].
    #[inline]
    pub fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), MemoryError> {
        if let Some(f) = &self.flat
            && f.read(addr, buf).is_ok()
        {
            return Ok(());
        }
        self.mem.read(addr, buf)
    }

    /// `N` bytes at `addr` (a descriptor, a request header).
    #[inline]
    pub fn read_array<const N: usize>(&self, addr: u64) -> Result<[u8; N], MemoryError> {
        if let Some(f) = &self.flat
            && let Some(v) = f.read_array::<N>(addr)
        {
            return Ok(v);
        }
        let mut b = [0u8; N];
        self.mem.read(addr, &mut b)?;
        Ok(b)
    }

    /// See [`GuestMemory::write`].
    #[inline]
    pub fn write(&self, addr: u64, data: &[u8]) -> Result<(), MemoryError> {
        if let Some(f) = &self.flat
            && f.write(addr, data).is_ok()
        {
            return Ok(());
        }
        self.mem.write(addr, data)
    }

    /// See [`GuestMemory::check_range`].
    #[inline]
    pub fn check_range(&self, addr: u64, len: u64) -> bool {
        if let Some(f) = &self.flat
            && f.contains(addr, len)
        {
            return true;
        }
        self.mem.check_range(addr, len)
    }

    /// See [`GuestMemory::load_u16`].
    #[inline]
    pub fn load_u16(&self, addr: u64) -> Result<u16, MemoryError> {
        match &self.flat {
            Some(f) => match f.load_u16(addr, std::sync::atomic::Ordering::Relaxed) {
                Some(v) => Ok(v),
                None => self.mem.load_u16(addr),
            },
            None => self.mem.load_u16(addr),
        }
    }

    /// See [`GuestMemory::load_acquire_u16`].
    #[inline]
    pub fn load_acquire_u16(&self, addr: u64) -> Result<u16, MemoryError> {
        match &self.flat {
            Some(f) => match f.load_u16(addr, std::sync::atomic::Ordering::Acquire) {
                Some(v) => Ok(v),
                None => self.mem.load_acquire_u16(addr),
            },
            None => self.mem.load_acquire_u16(addr),
        }
    }

    /// See [`GuestMemory::store_u16`].
    #[inline]
    pub fn store_u16(&self, addr: u64, value: u16) -> Result<(), MemoryError> {
        if let Some(f) = &self.flat
            && f.store_u16(addr, value, std::sync::atomic::Ordering::Relaxed)
        {
            return Ok(());
        }
        self.mem.store_u16(addr, value)
    }

    /// See [`GuestMemory::store_release_u16`].
    #[inline]
    pub fn store_release_u16(&self, addr: u64, value: u16) -> Result<(), MemoryError> {
        if let Some(f) = &self.flat
            && f.store_u16(addr, value, std::sync::atomic::Ordering::Release)
        {
            return Ok(());
        }
        self.mem.store_release_u16(addr, value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::NotFlat;

    fn both() -> [(VecMemory, Box<dyn GuestMemory>); 2] {
        let a = VecMemory::new(0x1000);
        let b = VecMemory::new(0x1000);
        [(a.clone(), Box::new(a)), (b.clone(), Box::new(NotFlat(b)))]
    }

    #[test]
    fn dma_reads_and_writes_through_both_paths_and_refuses_out_of_range() {
        for (ram, mem) in both() {
            let dma = Dma::new(mem.as_ref());
            dma.write(0xFF0, &[1, 2, 3, 4]).unwrap();
            let mut b = [0u8; 4];
            ram.read(0xFF0, &mut b).unwrap();
            assert_eq!(b, [1, 2, 3, 4]);
            assert_eq!(dma.read_array::<2>(0xFF2).unwrap(), [3, 4]);
            dma.store_release_u16(0x10, 0xBEEF).unwrap();
            assert_eq!(dma.load_acquire_u16(0x10).unwrap(), 0xBEEF);
            dma.store_u16(0x12, 7).unwrap();
            assert_eq!(dma.load_u16(0x12).unwrap(), 7);
            assert_eq!(ram.read_u32(0x10).unwrap(), 0x0007_BEEF);
            // The last byte is RAM, the one after is not; nor is a range that wraps.
            assert!(dma.check_range(0xFFF, 1));
            assert!(!dma.check_range(0xFFF, 2));
            assert!(!dma.check_range(u64::MAX, 2));
            assert!(dma.check_range(0x5000, 0));
            assert_eq!(
                dma.write(0xFFE, &[0; 4]),
                Err(MemoryError::OutOfRange {
                    addr: 0xFFE,
                    len: 4
                })
            );
            assert!(dma.read(u64::MAX - 1, &mut b).is_err());
            assert!(dma.read_array::<16>(0xFF8).is_err());
            assert!(dma.load_u16(0x1000).is_err());
            assert!(dma.store_release_u16(0x1000, 1).is_err());
            assert_eq!(
                dma.load_acquire_u16(0x11),
                Err(MemoryError::Misaligned {
                    addr: 0x11,
                    width: 2
                })
            );
            // Nothing outside the writes changed.
            assert_eq!(ram.read_u64(0xFF0).unwrap(), 0x0403_0201);
        }
    }
}
