//! The driver's half of a split virtqueue (virtio 1.2, 2.7): descriptors, the available ring
//! and `used_event` written into guest memory the way a driver writes them, and the used ring
//! read back.
//!
//! [`Ring`] writes through any [`GuestMemory`]. The plain methods panic when guest memory
//! refuses an access (a test's rings are where it put them); the `try_` ones return the error,
//! for fuzz targets whose ring addresses come from the input.

use crate::backend::{BackendError, Processed, VirtioBackend};
use crate::memory::{Dma, GuestMemory, MemoryError, VecMemory};
use crate::ring::{Descriptor, RingPart, SplitQueue, Virtqueue};
use virq_spec::ring::{
    AVAIL_ELEM_SIZE, AVAIL_HEADER, DESC_SIZE, USED_ELEM_SIZE, USED_HEADER, VRING_DESC_F_INDIRECT,
    VRING_DESC_F_NEXT, VRING_DESC_F_WRITE, avail_ring_len, used_ring_len,
};

/// `VIRTQ_DESC_F_NEXT`.
pub const NEXT: u16 = VRING_DESC_F_NEXT;
/// `VIRTQ_DESC_F_WRITE`.
pub const WRITE: u16 = VRING_DESC_F_WRITE;
/// `VIRTQ_DESC_F_INDIRECT`.
pub const INDIRECT: u16 = VRING_DESC_F_INDIRECT;

/// Where the three parts of one queue live in guest memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RingAddrs {
    /// Descriptor table (`queue_desc`).
    pub desc: u64,
    /// Available ring (`queue_driver`).
    pub avail: u64,
    /// Used ring (`queue_device`).
    pub used: u64,
}

impl RingAddrs {
    /// The spread layout of the device's tests: descriptors at `base`, the available ring at
    /// `base + 0x2000`, the used ring at `base + 0x4000` (room for 512 entries each).
    pub const fn spread(base: u64) -> Self {
        RingAddrs {
            desc: base,
            avail: base + 0x2000,
            used: base + 0x4000,
        }
    }

    /// The compact layout of the backends' tests: the available ring right after the
    /// descriptor table, the used ring at `base + USED_RING_OFFSET`.
    pub const fn compact(base: u64, size: u16) -> Self {
        RingAddrs {
            desc: base,
            avail: base + DESC_SIZE * size as u64,
            used: base + USED_RING_OFFSET,
        }
    }
}

/// Offset of the used ring from a queue's base address in [`RingAddrs::compact`].
pub const USED_RING_OFFSET: u64 = 0x1000;

/// One buffer of a chain as the driver describes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Buf {
    /// Guest-physical address.
    pub addr: u64,
    /// Length in bytes.
    pub len: u32,
    /// Device-writable (`VIRTQ_DESC_F_WRITE`).
    pub writable: bool,
}

/// A device-readable buffer.
pub fn r(addr: u64, len: u32) -> Buf {
    Buf {
        addr,
        len,
        writable: false,
    }
}

/// A device-writable buffer.
pub fn w(addr: u64, len: u32) -> Buf {
    Buf {
        addr,
        len,
        writable: true,
    }
}

/// The 16 little-endian bytes of `struct virtq_desc`.
pub fn desc_bytes(d: Descriptor) -> [u8; 16] {
    let mut raw = [0u8; 16];
    raw[0..8].copy_from_slice(&d.addr.to_le_bytes());
    raw[8..12].copy_from_slice(&d.len.to_le_bytes());
    raw[12..14].copy_from_slice(&d.flags.to_le_bytes());
    raw[14..16].copy_from_slice(&d.next.to_le_bytes());
    raw
}

/// Write one descriptor (`struct virtq_desc`) at `at`.
pub fn write_desc(mem: &dyn GuestMemory, at: u64, addr: u64, len: u32, flags: u16, next: u16) {
    let d = Descriptor {
        addr,
        len,
        flags,
        next,
    };
    mem.write(at, &desc_bytes(d)).unwrap();
}

/// A split virtqueue the test driver owns in guest memory.
///
/// The driver keeps its own copy of `avail.idx` (as a real driver does) and publishes it with
/// release ordering after the ring entry; [`Ring::resync_avail`] reloads it when something
/// else (a fuzz input writing raw RAM) may have changed the index in memory.
#[derive(Clone, Debug)]
pub struct Ring<M = VecMemory> {
    /// The queue index this ring belongs to.
    pub queue: u16,
    /// Queue size (entries).
    pub size: u16,
    /// Descriptor table address.
    pub desc: u64,
    /// Available ring address.
    pub avail: u64,
    /// Used ring address.
    pub used: u64,
    next_avail: u16,
    next_desc: u16,
    mem: M,
}

impl<M: GuestMemory + Clone> Ring<M> {
    /// A fresh ring of `size` entries in the [`RingAddrs::spread`] layout at `base`, its
    /// 0x6000 bytes zeroed: flags 0, idx 0, `used_event` 0 and no stale used entries.
    pub fn new(mem: &M, queue: u16, size: u16, base: u64) -> Self {
        let ring = Ring::at(mem.clone(), queue, size, RingAddrs::spread(base));
        mem.write(base, &vec![0u8; 0x6000]).unwrap();
        ring
    }
}

impl<M: GuestMemory> Ring<M> {
    /// A ring at `addrs`, as it already is in memory (nothing written); the driver's
    /// `avail.idx` starts at 0.
    pub fn at(mem: M, queue: u16, size: u16, addrs: RingAddrs) -> Self {
        Ring {
            queue,
            size,
            desc: addrs.desc,
            avail: addrs.avail,
            used: addrs.used,
            next_avail: 0,
            next_desc: 0,
            mem,
        }
    }

    /// A ring at `addrs` with its available and used rings zeroed.
    pub fn zeroed(mem: M, queue: u16, size: u16, addrs: RingAddrs) -> Self {
        let ring = Ring::at(mem, queue, size, addrs);
        ring.mem
            .write(ring.avail, &vec![0u8; avail_ring_len(size) as usize])
            .unwrap();
        ring.mem
            .write(ring.used, &vec![0u8; used_ring_len(size) as usize])
            .unwrap();
        ring
    }

    /// The memory the ring lives in.
    pub fn memory(&self) -> &M {
        &self.mem
    }

    /// The addresses of the three parts.
    pub fn addrs(&self) -> RingAddrs {
        RingAddrs {
            desc: self.desc,
            avail: self.avail,
            used: self.used,
        }
    }

    /// The slot of entry `i` modulo the queue size (a zero size counts as 1).
    fn slot(&self, i: u16) -> u64 {
        u64::from(i % self.size.max(1))
    }

    // ------------------------------------------------------------------ descriptors

    /// Write descriptor `index` (taken modulo the queue size) of the table.
    pub fn try_set_desc(&self, index: u16, d: Descriptor) -> Result<(), MemoryError> {
        let at = self.desc.wrapping_add(DESC_SIZE * self.slot(index));
        self.mem.write(at, &desc_bytes(d))
    }

    /// Write descriptor `index` of the table.
    pub fn set_desc(&self, index: u16, addr: u64, len: u32, flags: u16, next: u16) {
        let d = Descriptor {
            addr,
            len,
            flags,
            next,
        };
        self.try_set_desc(index, d).unwrap();
    }

    /// Write a chain into the next free descriptors (in table order, wrapping) and make it
    /// available; returns its head.
    pub fn add_chain(&mut self, bufs: &[Buf]) -> u16 {
        assert!(!bufs.is_empty(), "a chain has at least one buffer");
        let head = self.next_desc;
        for (i, buf) in bufs.iter().enumerate() {
            let index = (head + i as u16) % self.size;
            let last = i + 1 == bufs.len();
            let mut flags = if buf.writable { WRITE } else { 0 };
            if !last {
                flags |= NEXT;
            }
            self.set_desc(index, buf.addr, buf.len, flags, (index + 1) % self.size);
        }
        self.next_desc = (head + bufs.len() as u16) % self.size;
        self.make_available(head);
        head
    }

    /// Write an indirect table at `table_addr` holding `bufs`, and make a one-descriptor
    /// chain pointing at it available; returns its head.
    pub fn add_indirect_chain(&mut self, table_addr: u64, bufs: &[Buf]) -> u16 {
        for (i, buf) in bufs.iter().enumerate() {
            let last = i + 1 == bufs.len();
            let mut flags = if buf.writable { WRITE } else { 0 };
            if !last {
                flags |= NEXT;
            }
            let at = table_addr + DESC_SIZE * i as u64;
            write_desc(&self.mem, at, buf.addr, buf.len, flags, i as u16 + 1);
        }
        let head = self.next_desc;
        self.set_desc(head, table_addr, 16 * bufs.len() as u32, INDIRECT, 0);
        self.next_desc = (head + 1) % self.size;
        self.make_available(head);
        head
    }

    /// Make one single-descriptor chain available: descriptor `avail.idx % size`, a 256-byte
    /// device-writable buffer of its own. Returns the head.
    pub fn push(&mut self) -> u16 {
        let head = self.next_avail % self.size;
        let buf = 0xC_0000 + (u64::from(self.queue) << 12) + u64::from(head) * 0x100;
        self.set_desc(head, buf, 0x100, WRITE, 0);
        self.make_available(head);
        head
    }

    // ------------------------------------------------------------- available ring

    /// The `avail.idx` the driver publishes next.
    pub fn next_avail(&self) -> u16 {
        self.next_avail
    }

    /// Put `head` in the next available slot, then publish `avail.idx + 1` with release
    /// ordering (virtio 1.2, 2.7.13).
    pub fn try_make_available(&mut self, head: u16) -> Result<(), MemoryError> {
        let slot = self
            .avail
            .wrapping_add(AVAIL_HEADER + AVAIL_ELEM_SIZE * self.slot(self.next_avail));
        self.mem.write_u16(slot, head)?;
        self.try_set_avail_idx(self.next_avail.wrapping_add(1))
    }

    /// Put `head` in the next available slot and publish it.
    pub fn make_available(&mut self, head: u16) {
        self.try_make_available(head).unwrap();
    }

    /// Put `heads` in the next available slots (in order), then publish them all at once.
    pub fn publish(&mut self, heads: &[u16]) {
        let mut idx = self.next_avail;
        for &h in heads {
            let slot = self.avail + AVAIL_HEADER + AVAIL_ELEM_SIZE * self.slot(idx);
            self.mem.write_u16(slot, h).unwrap();
            idx = idx.wrapping_add(1);
        }
        self.set_avail_idx(idx);
    }

    /// Store `avail.idx` (release ordering) and remember it.
    pub fn try_set_avail_idx(&mut self, idx: u16) -> Result<(), MemoryError> {
        self.mem
            .store_release_u16(self.avail.wrapping_add(2), idx)?;
        self.next_avail = idx;
        Ok(())
    }

    /// Store `avail.idx` and remember it.
    pub fn set_avail_idx(&mut self, idx: u16) {
        self.try_set_avail_idx(idx).unwrap();
    }

    /// `avail.idx` as it is in memory.
    pub fn avail_idx(&self) -> u16 {
        self.mem.load_acquire_u16(self.avail + 2).unwrap()
    }

    /// Take the driver's `avail.idx` from memory again; false when memory refuses the read
    /// (the copy is left as it was).
    pub fn resync_avail(&mut self) -> bool {
        match self.mem.read_u16(self.avail.wrapping_add(2)) {
            Ok(idx) => {
                self.next_avail = idx;
                true
            }
            Err(_) => false,
        }
    }

    /// Store `avail.flags` (bit 0 is VRING_AVAIL_F_NO_INTERRUPT).
    pub fn try_set_avail_flags(&self, flags: u16) -> Result<(), MemoryError> {
        self.mem.write_u16(self.avail, flags)
    }

    /// Store `avail.flags`.
    pub fn set_avail_flags(&self, flags: u16) {
        self.mem.store_u16(self.avail, flags).unwrap();
    }

    /// Store `used_event`, the word after the available ring (VIRTIO_F_EVENT_IDX).
    pub fn try_set_used_event(&self, v: u16) -> Result<(), MemoryError> {
        let at = self
            .avail
            .wrapping_add(AVAIL_HEADER + AVAIL_ELEM_SIZE * u64::from(self.size));
        self.mem.write_u16(at, v)
    }

    /// Store `used_event`.
    pub fn set_used_event(&self, v: u16) {
        let at = self.avail + AVAIL_HEADER + AVAIL_ELEM_SIZE * u64::from(self.size);
        self.mem.store_u16(at, v).unwrap();
    }

    // ------------------------------------------------------------------ used ring

    /// `used.idx` as the device last published it.
    pub fn used_idx(&self) -> u16 {
        self.mem.load_acquire_u16(self.used + 2).unwrap()
    }

    /// Used ring element `i` (modulo the size): (id, len).
    pub fn used_elem(&self, i: u16) -> (u32, u32) {
        self.try_used_elem(i).unwrap()
    }

    /// Used ring element `i`, or the error memory gave.
    pub fn try_used_elem(&self, i: u16) -> Result<(u32, u32), MemoryError> {
        let at = self
            .used
            .wrapping_add(USED_HEADER + USED_ELEM_SIZE * self.slot(i));
        Ok((
            self.mem.read_u32(at)?,
            self.mem.read_u32(at.wrapping_add(4))?,
        ))
    }

    /// `avail_event`, the word after the used ring (VIRTIO_F_EVENT_IDX).
    pub fn avail_event(&self) -> u16 {
        let at = self.used + USED_HEADER + USED_ELEM_SIZE * u64::from(self.size);
        self.mem.read_u16(at).unwrap()
    }
}

/// A ring in guest memory together with the device's [`SplitQueue`] for it: the ring alone,
/// without a transport, for backends and the ring's own fuzz target.
pub struct TestQueue<'a> {
    /// The guest memory.
    pub mem: &'a dyn GuestMemory,
    /// The device's state of the queue.
    pub queue: SplitQueue,
    /// Queue size (entries).
    pub size: u16,
    /// The driver's side.
    pub ring: Ring<&'a dyn GuestMemory>,
}

impl<'a> TestQueue<'a> {
    /// A ready queue of `size` entries in the [`RingAddrs::compact`] layout at `base`.
    pub fn new(mem: &'a dyn GuestMemory, base: u64, size: u16) -> Self {
        Self::at(mem, RingAddrs::compact(base, size), size)
    }

    /// A ready queue of `size` entries at `addrs`, its available and used rings zeroed.
    pub fn at(mem: &'a dyn GuestMemory, addrs: RingAddrs, size: u16) -> Self {
        let mut queue = SplitQueue::new(size).unwrap();
        queue.set_address(RingPart::DescriptorTable, addrs.desc);
        queue.set_address(RingPart::AvailRing, addrs.avail);
        queue.set_address(RingPart::UsedRing, addrs.used);
        queue.set_ready(true);
        TestQueue {
            mem,
            queue,
            size,
            ring: Ring::zeroed(mem, 0, size, addrs),
        }
    }

    /// Write descriptor `index` of the table.
    pub fn set_desc(&self, index: u16, addr: u64, len: u32, flags: u16, next: u16) {
        self.ring.set_desc(index, addr, len, flags, next);
    }

    /// Make `head` available.
    pub fn make_available(&mut self, head: u16) {
        self.ring.make_available(head);
    }

    /// `avail.idx` as it is in memory.
    pub fn avail_idx(&self) -> u16 {
        self.ring.avail_idx()
    }

    /// Store `avail.idx`.
    pub fn set_avail_idx(&mut self, idx: u16) {
        self.ring.set_avail_idx(idx);
    }

    /// Write a chain into the next free descriptors and make it available; returns its head.
    pub fn add_chain(&mut self, bufs: &[Buf]) -> u16 {
        self.ring.add_chain(bufs)
    }

    /// Write an indirect table holding `bufs` and make a chain pointing at it available.
    pub fn add_indirect_chain(&mut self, table_addr: u64, bufs: &[Buf]) -> u16 {
        self.ring.add_indirect_chain(table_addr, bufs)
    }

    /// `used.idx` as the device published it (read where the device's queue says the used
    /// ring is, which a test may have moved).
    pub fn used_idx(&self) -> u16 {
        self.mem
            .load_acquire_u16(self.queue.used_ring() + 2)
            .unwrap()
    }

    /// Used element `i` as (descriptor id, length).
    pub fn used(&self, i: u16) -> (u32, u32) {
        let elem = self.queue.used_ring() + USED_HEADER + USED_ELEM_SIZE * u64::from(i % self.size);
        (
            self.mem.read_u32(elem).unwrap(),
            self.mem.read_u32(elem + 4).unwrap(),
        )
    }

    /// The device's view of the queue for one pass.
    pub fn virtqueue(&mut self) -> Virtqueue<'_> {
        Virtqueue::new(&mut self.queue, Dma::new(self.mem))
    }

    /// Run one pass of `backend` over this queue as queue `index`.
    pub fn process(
        &mut self,
        backend: &mut dyn VirtioBackend,
        index: u16,
    ) -> Result<Processed, BackendError> {
        let mut vq = Virtqueue::new(&mut self.queue, Dma::new(self.mem));
        backend.process_queue(index, &mut vq)
    }
}

/// Guest RAM size of [`guest_memory`]: room for request buffers above [`DATA_BASE`].
pub const MEM_SIZE: u64 = 0x40_0000;
/// Where request buffers start in [`guest_memory`] (rings live below).
pub const DATA_BASE: u64 = 0x10_0000;

/// Guest RAM without a flat region: every access goes through the [`GuestMemory`] trait, so
/// the device takes its [`Dma`] path (a memory-bus adapter's case), to compare with the flat
/// fast path over the same bytes.
pub struct NotFlat(pub VecMemory);

impl GuestMemory for NotFlat {
    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), MemoryError> {
        self.0.read(addr, buf)
    }
    fn write(&self, addr: u64, data: &[u8]) -> Result<(), MemoryError> {
        self.0.write(addr, data)
    }
    fn check_range(&self, addr: u64, len: u64) -> bool {
        self.0.check_range(addr, len)
    }
    fn load_u16(&self, addr: u64) -> Result<u16, MemoryError> {
        self.0.load_u16(addr)
    }
    fn load_acquire_u16(&self, addr: u64) -> Result<u16, MemoryError> {
        self.0.load_acquire_u16(addr)
    }
    fn store_u16(&self, addr: u64, value: u16) -> Result<(), MemoryError> {
        self.0.store_u16(addr, value)
    }
    fn store_release_u16(&self, addr: u64, value: u16) -> Result<(), MemoryError> {
        self.0.store_release_u16(addr, value)
    }
}

/// 4 MiB of guest RAM at address 0, for tests that move real data (the backends').
pub fn guest_memory() -> VecMemory {
    VecMemory::new(MEM_SIZE as usize)
}

/// Read `len` bytes of guest RAM.
pub fn read_guest(mem: &dyn GuestMemory, addr: u64, len: usize) -> Vec<u8> {
    let mut buf = vec![0; len];
    mem.read(addr, &mut buf).unwrap();
    buf
}

/// Write bytes into guest RAM.
pub fn write_guest(mem: &dyn GuestMemory, addr: u64, data: &[u8]) {
    mem.write(addr, data).unwrap();
}

/// Read one guest byte.
pub fn guest_byte(mem: &dyn GuestMemory, addr: u64) -> u8 {
    let mut b = [0u8];
    mem.read(addr, &mut b).unwrap();
    b[0]
}

/// A recognisable, position-dependent byte pattern.
pub fn pattern(len: usize, salt: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(salt) ^ ((i >> 8) as u8))
        .collect()
}
