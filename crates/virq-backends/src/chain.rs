//! Shared queue plumbing: popping chains with corruption detection, publishing used entries, and
//! a reusable view of one chain as two flat byte streams.
//!
//! Since virtio 1.0 a device must not assume any particular framing of a request across
//! descriptors (virtio 1.2, 2.7.4), so every backend sees a chain as "the device-readable bytes"
//! followed by "the device-writable bytes", however the driver split them.

use thiserror::Error;
use virq_device::ring::{DescriptorChain, RingError, Virtqueue};
use virq_device::{BackendError, Dma};

/// A chain as virq's split ring hands it out.
pub(crate) type Chain<'m> = DescriptorChain<'m>;

/// One non-empty guest buffer of a chain.
#[derive(Clone, Copy, Debug)]
struct Segment {
    addr: u64,
    len: u32,
}

/// Why bytes could not be moved between the host and a chain's buffers.
#[derive(Debug, Error, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ChainIoError {
    /// A buffer of the chain is not (entirely) guest RAM.
    #[error("chain buffer lies outside guest RAM")]
    OutsideGuestRam,
    /// The access runs past the end of the chain's readable or writable bytes.
    #[error("access runs past the end of the chain")]
    BeyondChain,
}

/// The descriptors of one chain, kept in vectors that are reused from request to request so
/// that serving a request does not allocate.
#[derive(Debug)]
pub(crate) struct ChainBuffers {
    readable: Vec<Segment>,
    writable: Vec<Segment>,
    readable_len: u64,
    writable_len: u64,
    all_in_ram: bool,
    complete: bool,
}

impl ChainBuffers {
    /// Scratch space for chains of up to `descriptors` buffers without reallocating.
    pub(crate) fn with_capacity(descriptors: usize) -> Self {
        Self {
            readable: Vec::with_capacity(descriptors),
            writable: Vec::with_capacity(descriptors),
            readable_len: 0,
            writable_len: 0,
            all_in_ram: true,
            complete: false,
        }
    }

    /// Walk `chain`, accepting at most `max_descriptors` descriptors.
    ///
    /// A chain is complete only when the walk reached a descriptor without NEXT. A loop, a
    /// chain longer than its table (forbidden by virtio 1.2, 2.7.5.3.1 for indirect tables and
    /// impossible for direct ones), more than `max_descriptors` descriptors, a NEXT pointing
    /// at an unreadable descriptor or past 2^32 - 1 bytes all leave it incomplete.
    #[inline(always)]
    pub(crate) fn load(&mut self, chain: Chain<'_>, max_descriptors: u16) {
        self.readable.clear();
        self.writable.clear();
        self.readable_len = 0;
        self.writable_len = 0;
        self.all_in_ram = true;
        self.complete = false;

        let mem = chain.memory();
        let mut seen: u16 = 0;
        for desc in chain {
            let Ok(desc) = desc else {
                return;
            };
            if seen >= max_descriptors {
                return;
            }
            seen += 1;
            if desc.len == 0 {
                continue;
            }
            let segment = Segment {
                addr: desc.addr,
                len: desc.len,
            };
            if !mem.check_range(segment.addr, u64::from(segment.len)) {
                self.all_in_ram = false;
            }
            if desc.is_write_only() {
                self.writable_len += u64::from(segment.len);
                self.writable.push(segment);
            } else {
                self.readable_len += u64::from(segment.len);
                self.readable.push(segment);
            }
        }
        self.complete = seen > 0;
    }

    /// The chain ended properly (see [`ChainBuffers::load`]).
    pub(crate) fn is_complete(&self) -> bool {
        self.complete
    }

    /// Every buffer of the chain lies entirely in guest RAM.
    pub(crate) fn all_in_ram(&self) -> bool {
        self.all_in_ram
    }

    /// Total device-readable bytes.
    pub(crate) fn readable_len(&self) -> u64 {
        self.readable_len
    }

    /// Total device-writable bytes.
    pub(crate) fn writable_len(&self) -> u64 {
        self.writable_len
    }

    /// Guest address of the last device-writable byte (where a virtio-blk status goes), when
    /// the chain has one. Buffers are kept only when non-empty ([`ChainBuffers::load`]), so it
    /// is the last byte of the last writable buffer; `None` also when that address would
    /// overflow.
    pub(crate) fn last_writable_byte(&self) -> Option<u64> {
        let last = self.writable.last()?;
        last.addr.checked_add(u64::from(last.len).checked_sub(1)?)
    }

    /// How many of the `len` writable bytes at `offset` lie in guest RAM before the first
    /// buffer that does not.
    pub(crate) fn writable_prefix_in_ram(&self, mem: &Dma<'_>, offset: u64, len: u64) -> u64 {
        let mut good = 0u64;
        let mut stopped = false;
        // The stream may end before `len`; the prefix counted so far is still the answer.
        let _ = for_each_piece(&self.writable, offset, len, |addr, piece| {
            if !stopped && mem.check_range(addr, piece as u64) {
                good += piece as u64;
            } else {
                stopped = true;
            }
            Ok(())
        });
        good
    }

    /// `N` device-readable bytes starting at `offset` (a request header): one guest read when
    /// the first buffer holds them all, as it does for every driver that puts the header in a
    /// descriptor of its own.
    #[inline]
    pub(crate) fn read_array<const N: usize>(
        &self,
        mem: &Dma<'_>,
        offset: u64,
    ) -> Result<[u8; N], ChainIoError> {
        if let Some(addr) = first_segment_piece(&self.readable, offset, N) {
            return mem
                .read_array::<N>(addr)
                .map_err(|_| ChainIoError::OutsideGuestRam);
        }
        let mut buf = [0u8; N];
        self.read_pieces(mem, offset, &mut buf)?;
        Ok(buf)
    }

    /// Copy device-readable bytes starting at `offset` into `buf`.
    #[inline]
    pub(crate) fn read(
        &self,
        mem: &Dma<'_>,
        offset: u64,
        buf: &mut [u8],
    ) -> Result<(), ChainIoError> {
        if let Some(addr) = first_segment_piece(&self.readable, offset, buf.len()) {
            return mem
                .read(addr, buf)
                .map_err(|_| ChainIoError::OutsideGuestRam);
        }
        self.read_pieces(mem, offset, buf)
    }

    /// [`ChainBuffers::read`] across buffers.
    fn read_pieces(&self, mem: &Dma<'_>, offset: u64, buf: &mut [u8]) -> Result<(), ChainIoError> {
        let mut done = 0usize;
        for_each_piece(&self.readable, offset, buf.len() as u64, |addr, piece| {
            mem.read(addr, &mut buf[done..done + piece])
                .map_err(|_| ChainIoError::OutsideGuestRam)?;
            done += piece;
            Ok(())
        })
    }

    /// Copy `data` into the device-writable bytes starting at `offset`.
    #[inline]
    pub(crate) fn write(
        &self,
        mem: &Dma<'_>,
        offset: u64,
        data: &[u8],
    ) -> Result<(), ChainIoError> {
        if let Some(addr) = first_segment_piece(&self.writable, offset, data.len()) {
            return mem
                .write(addr, data)
                .map_err(|_| ChainIoError::OutsideGuestRam);
        }
        self.write_pieces(mem, offset, data)
    }

    /// [`ChainBuffers::write`] across buffers.
    fn write_pieces(&self, mem: &Dma<'_>, offset: u64, data: &[u8]) -> Result<(), ChainIoError> {
        let mut done = 0usize;
        for_each_piece(&self.writable, offset, data.len() as u64, |addr, piece| {
            mem.write(addr, &data[done..done + piece])
                .map_err(|_| ChainIoError::OutsideGuestRam)?;
            done += piece;
            Ok(())
        })
    }
}

/// The guest address of `len` bytes at `offset` of a segment stream when the first segment
/// holds all of them: the one-copy case of [`for_each_piece`], with the same result.
#[inline(always)]
fn first_segment_piece(segments: &[Segment], offset: u64, len: usize) -> Option<u64> {
    let first = segments.first()?;
    let end = offset.checked_add(len as u64)?;
    if end > u64::from(first.len) {
        return None;
    }
    first.addr.checked_add(offset)
}

/// Visit the guest pieces covering `len` bytes at `offset` of a segment stream, in order.
fn for_each_piece<F>(
    segments: &[Segment],
    offset: u64,
    len: u64,
    mut f: F,
) -> Result<(), ChainIoError>
where
    F: FnMut(u64, usize) -> Result<(), ChainIoError>,
{
    let mut skip = offset;
    let mut left = len;
    for segment in segments {
        if left == 0 {
            break;
        }
        let seg_len = u64::from(segment.len);
        if skip >= seg_len {
            skip -= seg_len;
            continue;
        }
        let piece = (seg_len - skip).min(left);
        let addr = segment
            .addr
            .checked_add(skip)
            .ok_or(ChainIoError::OutsideGuestRam)?;
        // A piece never exceeds one descriptor's u32 length, so it fits usize.
        f(addr, piece as usize)?;
        left -= piece;
        skip = 0;
    }
    if left == 0 {
        Ok(())
    } else {
        Err(ChainIoError::BeyondChain)
    }
}

/// Pop the next available chain of `queue`.
///
/// `Ok(None)` means nothing is available (or the queue is not live). A corrupt ring - an
/// available index more than the queue size ahead, or an available ring that is not readable
/// guest RAM - is reported as [`BackendError::RingCorrupt`] so the transport can set
/// DEVICE_NEEDS_RESET (virtio 1.2, 2.1.2).
#[inline]
pub(crate) fn pop_chain<'m>(
    queue_index: u16,
    queue: &mut Virtqueue<'m>,
) -> Result<Option<Chain<'m>>, BackendError> {
    queue.pop().map_err(|e| corrupt(queue_index, e))
}

/// Publish a used element for the chain headed by `head`.
#[inline]
pub(crate) fn publish(
    queue_index: u16,
    queue: &mut Virtqueue<'_>,
    head: u16,
    len: u32,
) -> Result<(), BackendError> {
    queue
        .add_used(head, len)
        .map_err(|e| corrupt(queue_index, e))
}

fn corrupt(queue: u16, error: RingError) -> BackendError {
    BackendError::corrupt(queue, error)
}

/// Saturating conversion for used lengths: a chain never yields more than 2^32 - 1 bytes
/// (the ring stops the walk before that), so saturation is only a safety net.
pub(crate) fn used_len(bytes: u64) -> u32 {
    u32::try_from(bytes).unwrap_or(u32::MAX)
}
