//! One flat host buffer holding guest RAM: the fast path of every [`Dma`](super::Dma), and
//! [`VecMemory`], the simplest guest memory there is.
//!
//! This is the only place in the device crate that touches guest RAM through raw pointers,
//! the way a VMM touches an `mmap`ed guest: the bytes are shared with the guest's CPUs, so the
//! device never forms a Rust reference to them, only copies in and out and atomic accesses.

// The one module of virq-device allowed `unsafe`: guest RAM is host memory shared with the
// guest, reached through raw pointers like a VMM's mmap (no safe API gives copies and atomics
// on such memory without forming references). Every block carries its `SAFETY:` argument.
#![allow(unsafe_code)]

use std::marker::PhantomData;
use std::ptr::NonNull;
use std::sync::Arc;
use std::sync::atomic::{AtomicU16, Ordering};

use super::MemoryError;

/// A contiguous range of guest-physical addresses backed by one host buffer.
#[derive(Clone, Copy)]
pub struct FlatRegion<'a> {
    /// Guest-physical address of the first byte.
    start: u64,
    host: NonNull<u8>,
    len: usize,
    /// Borrowed from the memory that owns the buffer, which stays mapped while this lives.
    _memory: PhantomData<&'a ()>,
}

impl std::fmt::Debug for FlatRegion<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FlatRegion")
            .field("start", &format_args!("{:#x}", self.start))
            .field("len", &format_args!("{:#x}", self.len))
            .finish()
    }
}

impl<'a> FlatRegion<'a> {
    /// Describe `len` bytes at host address `host` as guest RAM starting at guest-physical
    /// `start`.
    ///
    /// # Safety
    /// For the lifetime `'a`, `host..host + len` must be one live allocation or mapping that is
    /// valid for reads and writes, and nothing may hold a Rust reference (`&`/`&mut`) into it:
    /// every access, by the device or anyone else, goes through raw pointers or atomics (as
    /// with guest RAM shared with vCPUs). `start + len` must not overflow.
    pub unsafe fn new(start: u64, host: NonNull<u8>, len: usize) -> Self {
        debug_assert!(start.checked_add(len as u64).is_some());
        FlatRegion {
            start,
            host,
            len,
            _memory: PhantomData,
        }
    }

    /// Guest-physical address of the first byte.
    pub fn start(&self) -> u64 {
        self.start
    }

    /// Size in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// The region holds no byte.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Offset of `[addr, addr + len)` in the buffer, when the region holds all of it.
    #[inline(always)]
    fn offset(&self, addr: u64, len: usize) -> Option<usize> {
        if len == 0 {
            // An empty range is always accessible and touches nothing.
            return Some(0);
        }
        let off = addr.checked_sub(self.start)?;
        let off = usize::try_from(off).ok()?;
        // Room after `off`, then the length: two compare-and-branch pairs.
        let room = self.len.checked_sub(off)?;
        (len <= room).then_some(off)
    }

    /// Whether the region holds all of `[addr, addr + len)`.
    #[inline]
    pub fn contains(&self, addr: u64, len: u64) -> bool {
        usize::try_from(len).is_ok_and(|len| self.offset(addr, len).is_some())
    }

    /// Copy out `buf.len()` bytes at `addr`.
    #[inline]
    pub fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), MemoryError> {
        let off = self
            .offset(addr, buf.len())
            .ok_or(MemoryError::range(addr, buf.len()))?;
        // SAFETY: `offset` proved `off + buf.len() <= self.len`, so the source lies inside the
        // buffer `new`'s contract keeps valid for 'a; `buf` is a distinct Rust allocation.
        unsafe { copy(self.host.as_ptr().add(off), buf.as_mut_ptr(), buf.len()) };
        Ok(())
    }

    /// `N` bytes at `addr`, or `None` outside the region.
    #[inline(always)]
    pub fn read_array<const N: usize>(&self, addr: u64) -> Option<[u8; N]> {
        let off = self.offset(addr, N)?;
        // SAFETY: `off + N <= self.len` (checked above) inside the buffer valid for 'a;
        // `[u8; N]` has alignment 1, and `read_unaligned` creates no reference to guest RAM.
        Some(unsafe {
            self.host
                .as_ptr()
                .add(off)
                .cast::<[u8; N]>()
                .read_unaligned()
        })
    }

    /// Copy `data` to `addr`.
    #[inline]
    pub fn write(&self, addr: u64, data: &[u8]) -> Result<(), MemoryError> {
        let off = self
            .offset(addr, data.len())
            .ok_or(MemoryError::range(addr, data.len()))?;
        // SAFETY: `off + data.len() <= self.len` inside the writable buffer valid for 'a;
        // `data` is a Rust slice and cannot overlap guest RAM (nobody holds references to it).
        unsafe { copy(data.as_ptr(), self.host.as_ptr().add(off), data.len()) };
        Ok(())
    }

    /// The 16-bit atomic at `addr`, when it is inside the region and 2-byte aligned.
    #[inline(always)]
    fn atomic_u16(&self, addr: u64) -> Option<&'a AtomicU16> {
        let off = self.offset(addr, 2)?;
        // SAFETY: pointer arithmetic only: `off + 2 <= self.len`, inside the buffer.
        let p = unsafe { self.host.as_ptr().add(off) };
        // SAFETY: `p..p + 2` lies inside the buffer that `new`'s contract keeps valid for
        // reads and writes for 'a and free of Rust references.
        unsafe { atomic_u16_at(p) }
    }

    /// Atomic little-endian 16-bit load; `order` is `Relaxed` or `Acquire`. `None` outside
    /// the region or when misaligned.
    #[inline(always)]
    pub fn load_u16(&self, addr: u64, order: Ordering) -> Option<u16> {
        self.atomic_u16(addr).map(|a| load_le_u16(a, order))
    }

    /// Atomic little-endian 16-bit store; `order` is `Relaxed` or `Release`. False outside
    /// the region or when misaligned.
    #[inline(always)]
    pub fn store_u16(&self, addr: u64, value: u16, order: Ordering) -> bool {
        self.atomic_u16(addr)
            .map(|a| store_le_u16(a, value, order))
            .is_some()
    }

    /// [`load_u16`](Self::load_u16) with the refusal as a [`MemoryError`] (misaligned or out
    /// of range), as [`GuestMemory`](super::GuestMemory) reports it: every flat memory's atomics in one place.
    #[inline(always)]
    pub fn checked_load_u16(&self, addr: u64, order: Ordering) -> Result<u16, MemoryError> {
        self.load_u16(addr, order)
            .ok_or_else(|| atomic_error(self, addr))
    }

    /// [`store_u16`](Self::store_u16) with the refusal as a [`MemoryError`].
    #[inline(always)]
    pub fn checked_store_u16(
        &self,
        addr: u64,
        value: u16,
        order: Ordering,
    ) -> Result<(), MemoryError> {
        if self.store_u16(addr, value, order) {
            Ok(())
        } else {
            Err(atomic_error(self, addr))
        }
    }
}

impl<'a> FlatRegion<'a> {
    /// The `len` bytes at `addr` as a [`FlatWindow`], when the region holds all of them: the
    /// range is checked once, and an access inside the window costs one comparison after that.
    #[inline]
    pub fn window(&self, addr: u64, len: u64) -> Option<FlatWindow<'a>> {
        let len = usize::try_from(len).ok()?;
        let off = self.offset(addr, len)?;
        // SAFETY: pointer arithmetic only: `offset` proved `off + len <= self.len` (or `len`
        // is 0 and `off` is 0), so the result stays inside the buffer or one past its end.
        let host = unsafe { self.host.add(off) };
        Some(FlatWindow {
            host,
            len,
            _memory: PhantomData,
        })
    }
}

/// A range of a [`FlatRegion`] already known to be guest RAM (a ring area or a descriptor
/// table for one pass over a queue). Accesses take an offset into the window and are still
/// bounds-checked, against the window's length only.
#[derive(Clone, Copy)]
pub struct FlatWindow<'a> {
    host: NonNull<u8>,
    len: usize,
    _memory: PhantomData<&'a ()>,
}

impl std::fmt::Debug for FlatWindow<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FlatWindow")
            .field("len", &format_args!("{:#x}", self.len))
            .finish_non_exhaustive()
    }
}

impl<'a> FlatWindow<'a> {
    /// Size of the window in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// The window holds no byte.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Host pointer to `n` bytes at `off`, when the window holds them.
    #[inline(always)]
    fn at(&self, off: usize, n: usize) -> Option<*mut u8> {
        if off > self.len.checked_sub(n)? {
            return None;
        }
        // SAFETY: pointer arithmetic only: `off + n <= self.len`, inside the window, which
        // lies inside the region's buffer (`FlatRegion::window`).
        Some(unsafe { self.host.as_ptr().add(off) })
    }

    /// `N` bytes at `off`, or `None` past the end of the window.
    #[inline(always)]
    pub fn read_array<const N: usize>(&self, off: usize) -> Option<[u8; N]> {
        let p = self.at(off, N)?;
        // SAFETY: `p..p + N` lies inside the buffer the region's contract keeps valid for 'a;
        // `[u8; N]` has alignment 1, and `read_unaligned` creates no reference to guest RAM.
        Some(unsafe { p.cast::<[u8; N]>().read_unaligned() })
    }

    /// The 16 bytes at `off` as one little-endian value (a descriptor), or `None` past the
    /// end of the window.
    #[inline(always)]
    pub fn read_u128(&self, off: usize) -> Option<u128> {
        let p = self.at(off, 16)?;
        // SAFETY: as for `read_array`: 16 bytes inside the buffer valid for 'a, read without
        // alignment and without a reference.
        Some(u128::from_le(unsafe { p.cast::<u128>().read_unaligned() }))
    }

    /// Copy `data` to `off`; false past the end of the window.
    #[inline(always)]
    pub fn write(&self, off: usize, data: &[u8]) -> bool {
        let Some(p) = self.at(off, data.len()) else {
            return false;
        };
        // SAFETY: `p..p + data.len()` lies inside the writable buffer valid for 'a; `data` is a
        // Rust slice and cannot overlap guest RAM (nobody holds references to it).
        unsafe { copy(data.as_ptr(), p, data.len()) };
        true
    }

    /// The 16-bit atomic at `off`, when the window holds it and it is 2-byte aligned.
    #[inline(always)]
    fn atomic_u16(&self, off: usize) -> Option<&'a AtomicU16> {
        let p = self.at(off, 2)?;
        // SAFETY: `p..p + 2` lies inside the window, inside the region's buffer, which the
        // region's contract keeps valid for reads and writes for 'a and free of references.
        unsafe { atomic_u16_at(p) }
    }

    /// Atomic little-endian 16-bit load (`Relaxed` or `Acquire`, as
    /// [`FlatRegion::load_u16`]); `None` past the end or misaligned.
    #[inline(always)]
    pub fn load_u16(&self, off: usize, order: Ordering) -> Option<u16> {
        self.atomic_u16(off).map(|a| load_le_u16(a, order))
    }

    /// Atomic little-endian 16-bit store (`Relaxed` or `Release`, as
    /// [`FlatRegion::store_u16`]); false past the end or misaligned.
    #[inline(always)]
    pub fn store_u16(&self, off: usize, value: u16, order: Ordering) -> bool {
        self.atomic_u16(off)
            .map(|a| store_le_u16(a, value, order))
            .is_some()
    }
}

/// The two bytes at `p` as an atomic, when `p` is 2-byte aligned.
///
/// # Safety
/// `p..p + 2` must be valid for reads and writes for `'a` and reached only through raw
/// pointers or atomics while `'a` lasts (the contract of [`FlatRegion::new`]).
#[inline(always)]
unsafe fn atomic_u16_at<'a>(p: *mut u8) -> Option<&'a AtomicU16> {
    if (p as usize) % std::mem::align_of::<AtomicU16>() != 0 {
        return None;
    }
    // SAFETY: `p` is aligned for `AtomicU16` and, by this function's contract, valid for 'a
    // and never behind a Rust reference, so treating the two bytes as an atomic conflicts
    // with nothing.
    Some(unsafe { AtomicU16::from_ptr(p.cast::<u16>()) })
}

/// A little-endian load from a ring field; any order but `Acquire` (or `SeqCst`) is relaxed.
#[inline(always)]
fn load_le_u16(a: &AtomicU16, order: Ordering) -> u16 {
    let order = match order {
        Ordering::Acquire | Ordering::SeqCst => order,
        _ => Ordering::Relaxed,
    };
    u16::from_le(a.load(order))
}

/// A little-endian store to a ring field; any order but `Release` (or `SeqCst`) is relaxed.
#[inline(always)]
fn store_le_u16(a: &AtomicU16, value: u16, order: Ordering) {
    let order = match order {
        Ordering::Release | Ordering::SeqCst => order,
        _ => Ordering::Relaxed,
    };
    a.store(value.to_le(), order);
}

/// `copy_nonoverlapping` that moves the sizes of ring fields and descriptors (1, 2, 4, 8 and 16
/// bytes) with one load and one store instead of a call into `memcpy`: most guest-memory
/// accesses of a virtqueue are that small.
///
/// # Safety
/// As for `copy_nonoverlapping`: `src` readable and `dst` writable for `len` bytes, the two
/// ranges disjoint (no alignment is needed).
#[inline(always)]
unsafe fn copy(src: *const u8, dst: *mut u8, len: usize) {
    macro_rules! fixed {
        ($n:literal) => {
            // SAFETY: the caller's contract for exactly `$n` bytes; `[u8; N]` has alignment 1.
            unsafe {
                dst.cast::<[u8; $n]>()
                    .write_unaligned(src.cast::<[u8; $n]>().read_unaligned())
            }
        };
    }
    match len {
        1 => fixed!(1),
        2 => fixed!(2),
        4 => fixed!(4),
        8 => fixed!(8),
        16 => fixed!(16),
        // SAFETY: the caller's contract.
        _ => unsafe { std::ptr::copy_nonoverlapping(src, dst, len) },
    }
}

/// The error of a failed atomic access at `addr`.
fn atomic_error(region: &FlatRegion<'_>, addr: u64) -> MemoryError {
    if region.contains(addr, 2) && addr % 2 != 0 {
        MemoryError::Misaligned { addr, width: 2 }
    } else {
        MemoryError::range(addr, 2)
    }
}

/// The host buffer behind a [`VecMemory`]: allocated as `u64`s so every naturally aligned
/// guest address is naturally aligned on the host too.
struct Buffer {
    start: u64,
    ptr: NonNull<u64>,
    words: usize,
    len: usize,
}

// SAFETY: the buffer is a heap allocation owned by this value and reached only through raw
// pointers, copies and atomics (see `FlatRegion::new`), exactly like guest RAM a VMM shares
// with vCPU threads; moving or sharing the owner between threads is as sound as that.
unsafe impl Send for Buffer {}
// SAFETY: as above: `&Buffer` hands out nothing but the raw pointer.
unsafe impl Sync for Buffer {}

impl Drop for Buffer {
    fn drop(&mut self) {
        let slice = std::ptr::slice_from_raw_parts_mut(self.ptr.as_ptr(), self.words);
        // SAFETY: `ptr`/`words` came from `Box::into_raw` of a `Box<[u64]>` of that length in
        // `VecMemory::from_vec`, and this is the only place that frees it.
        drop(unsafe { Box::from_raw(slice) });
    }
}

/// Guest RAM in one host buffer (a `Vec<u8>`), starting at guest-physical `start`.
///
/// Clones share the buffer, the way a VMM's memory handle is shared by the devices and the
/// CPUs: what one clone writes, every other clone reads. It builds for every target, including
/// `wasm32-unknown-unknown`.
#[derive(Clone)]
pub struct VecMemory {
    buffer: Arc<Buffer>,
}

impl std::fmt::Debug for VecMemory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VecMemory")
            .field("start", &format_args!("{:#x}", self.buffer.start))
            .field("len", &format_args!("{:#x}", self.buffer.len))
            .finish()
    }
}

impl VecMemory {
    /// `len` zero bytes of guest RAM at guest-physical 0.
    pub fn new(len: usize) -> Self {
        Self::zeroed(0, len)
    }

    /// `len` zero bytes of guest RAM at guest-physical `start`. The zeroed allocation is
    /// left to the host allocator, which maps big buffers lazily.
    ///
    /// # Panics
    /// If `start + len` overflows the guest address space.
    pub fn zeroed(start: u64, len: usize) -> Self {
        assert!(
            start.checked_add(len as u64).is_some(),
            "guest RAM of {len:#x} bytes at {start:#x} wraps the address space"
        );
        let words = len.div_ceil(8);
        let raw = Box::into_raw(vec![0u64; words].into_boxed_slice());
        // `Box::into_raw` never returns null; an empty slice gives a dangling, aligned pointer.
        let ptr = NonNull::new(raw.cast::<u64>()).expect("Box::into_raw is never null");
        VecMemory {
            buffer: Arc::new(Buffer {
                start,
                ptr,
                words,
                len,
            }),
        }
    }

    /// Guest RAM at guest-physical `start` holding `bytes`.
    ///
    /// # Panics
    /// If `start + bytes.len()` overflows the guest address space.
    pub fn from_vec(start: u64, bytes: Vec<u8>) -> Self {
        let mem = Self::zeroed(start, bytes.len());
        // The whole buffer is this memory's own range, so the copy cannot fail.
        let _ = mem.region().write(start, &bytes);
        mem
    }

    /// Guest-physical address of the first byte.
    pub fn start(&self) -> u64 {
        self.buffer.start
    }

    /// Size in bytes.
    pub fn len(&self) -> usize {
        self.buffer.len
    }

    /// The memory holds no byte.
    pub fn is_empty(&self) -> bool {
        self.buffer.len == 0
    }

    /// A copy of every byte (for tests and snapshots of guest RAM).
    pub fn to_vec(&self) -> Vec<u8> {
        let mut v = vec![0; self.len()];
        // Reading the whole region cannot fail.
        let _ = self.region().read(self.start(), &mut v);
        v
    }

    #[inline(always)]
    fn region(&self) -> FlatRegion<'_> {
        // SAFETY: the buffer is a live allocation of at least `len` bytes owned by
        // `self.buffer`, which the borrow of `self` keeps alive; `VecMemory` never hands out
        // references into it; `start + len` was checked in `from_vec`.
        unsafe {
            FlatRegion::new(
                self.buffer.start,
                self.buffer.ptr.cast::<u8>(),
                self.buffer.len,
            )
        }
    }
}

crate::flat_guest_memory!(VecMemory);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::GuestMemory;

    #[test]
    fn clones_share_bytes_and_from_vec_keeps_contents_at_its_base() {
        let a = VecMemory::from_vec(0x1000, (0u8..=20).collect());
        let b = a.clone();
        assert_eq!(a.read_u16(0x1001).unwrap(), 0x0201);
        b.write(0x1014, &[0xAA]).unwrap();
        assert_eq!(a.to_vec()[20], 0xAA);
        assert_eq!(a.len(), 21);
        // Below the base and past the end are not RAM.
        assert!(a.read_u16(0xFFF).is_err());
        assert!(a.write(0x1014, &[0, 0]).is_err());
        assert!(!a.check_range(0x1000, 22));
        assert!(a.check_range(0x1000, 21));
    }

    #[test]
    fn a_window_is_checked_once_and_refuses_what_lies_past_it() {
        let m = VecMemory::from_vec(0x1000, (0u8..32).collect());
        let r = m.region();
        assert!(r.window(0x1010, 17).is_none(), "one byte past the region");
        assert!(r.window(0xFFF, 2).is_none(), "below the region");
        let w = r.window(0x1010, 16).unwrap();
        assert_eq!(w.len(), 16);
        assert_eq!(w.read_array::<2>(0), Some([16, 17]));
        assert_eq!(w.read_array::<2>(15), None);
        assert_eq!(
            w.read_u128(0),
            Some(u128::from_le_bytes(std::array::from_fn(|i| 16 + i as u8)))
        );
        assert_eq!(w.read_u128(1), None);
        assert!(w.store_u16(14, 0xBEEF, Ordering::Release));
        assert_eq!(w.load_u16(14, Ordering::Acquire), Some(0xBEEF));
        assert_eq!(m.read_u16(0x101E).unwrap(), 0xBEEF);
        assert!(!w.store_u16(15, 1, Ordering::Relaxed), "misaligned");
        assert_eq!(w.load_u16(16, Ordering::Relaxed), None, "past the window");
        assert!(w.write(12, &[9, 9]));
        assert!(!w.write(15, &[9, 9]));
        assert_eq!(m.to_vec()[28..30], [9, 9]);
        assert_eq!(m.to_vec()[31], 0xBE, "the refused write touched nothing");
    }

    #[test]
    fn an_empty_memory_refuses_every_access() {
        let m = VecMemory::new(0);
        assert!(m.is_empty());
        assert!(m.read(0, &mut [0]).is_err());
        assert!(m.read(0, &mut []).is_ok(), "an empty range is always RAM");
        assert!(m.load_u16(0).is_err());
        assert_eq!(m.to_vec(), Vec::<u8>::new());
    }

    #[test]
    fn atomic_accesses_are_little_endian_and_refuse_odd_addresses() {
        let m = VecMemory::new(16);
        m.store_release_u16(2, 0x1234).unwrap();
        assert_eq!(m.to_vec()[2..4], [0x34, 0x12]);
        assert_eq!(m.load_acquire_u16(2).unwrap(), 0x1234);
        assert_eq!(
            m.store_u16(3, 1),
            Err(MemoryError::Misaligned { addr: 3, width: 2 })
        );
        assert_eq!(
            m.load_u16(16),
            Err(MemoryError::OutOfRange { addr: 16, len: 2 })
        );
    }
}
