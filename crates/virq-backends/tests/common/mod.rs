//! Driver-side helpers: guest RAM and split rings built the way a driver would.

#![allow(dead_code)]

use virq_device::ring::{RingPart, SplitQueue};
use virq_device::{Dma, GuestMemory, VecMemory, VirtioBackend, Virtqueue};
use virq_spec::ring::{VRING_DESC_F_INDIRECT, VRING_DESC_F_NEXT, VRING_DESC_F_WRITE};

/// Guest RAM size used by most tests.
pub const MEM_SIZE: u64 = 0x40_0000;
/// Where request buffers start (rings live below).
pub const DATA_BASE: u64 = 0x10_0000;

pub const NEXT: u16 = VRING_DESC_F_NEXT;
pub const WRITE: u16 = VRING_DESC_F_WRITE;
pub const INDIRECT: u16 = VRING_DESC_F_INDIRECT;

/// 4 MiB of guest RAM at address 0.
pub fn guest_memory() -> VecMemory {
    VecMemory::new(MEM_SIZE as usize)
}

/// One buffer of a chain as the driver describes it.
#[derive(Clone, Copy, Debug)]
pub struct Buf {
    pub addr: u64,
    pub len: u32,
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

/// Offset of the used ring from a queue's base address (the descriptor table starts at the
/// base and the available ring follows it).
pub const USED_RING_OFFSET: u64 = 0x1000;

/// A split virtqueue in guest RAM, written the way a driver writes it, plus the device's
/// [`SplitQueue`] for it.
pub struct TestQueue<'a> {
    pub mem: &'a dyn GuestMemory,
    pub queue: SplitQueue,
    pub size: u16,
    desc: u64,
    avail: u64,
    next_desc: u16,
}

impl<'a> TestQueue<'a> {
    /// A ready queue of `size` entries whose rings start at `base`.
    pub fn new(mem: &'a dyn GuestMemory, base: u64, size: u16) -> Self {
        let avail = base + 16 * u64::from(size);
        let used = base + USED_RING_OFFSET;
        let mut queue = SplitQueue::new(size).unwrap();
        queue.set_address(RingPart::DescriptorTable, base);
        queue.set_address(RingPart::AvailRing, avail);
        queue.set_address(RingPart::UsedRing, used);
        queue.set_ready(true);
        mem.write(avail, &vec![0u8; 6 + 2 * usize::from(size)])
            .unwrap();
        mem.write(used, &vec![0u8; 6 + 8 * usize::from(size)])
            .unwrap();
        Self {
            mem,
            queue,
            size,
            desc: base,
            avail,
            next_desc: 0,
        }
    }

    /// Write descriptor `index` of the table.
    pub fn set_desc(&self, index: u16, addr: u64, len: u32, flags: u16, next: u16) {
        write_desc(
            self.mem,
            self.desc + 16 * u64::from(index),
            addr,
            len,
            flags,
            next,
        );
    }

    /// Make `head` available (store into the avail ring and bump its index).
    pub fn make_available(&self, head: u16) {
        let idx = self.avail_idx();
        let slot = self.avail + 4 + 2 * u64::from(idx % self.size);
        self.mem.write_u16(slot, head).unwrap();
        self.set_avail_idx(idx.wrapping_add(1));
    }

    pub fn avail_idx(&self) -> u16 {
        self.mem.load_acquire_u16(self.avail + 2).unwrap()
    }

    pub fn set_avail_idx(&self, idx: u16) {
        self.mem.store_release_u16(self.avail + 2, idx).unwrap();
    }

    /// Write a chain into the next free descriptors and make it available; returns its head.
    pub fn add_chain(&mut self, bufs: &[Buf]) -> u16 {
        assert!(!bufs.is_empty());
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

    /// Write an indirect table at `table_addr` holding `bufs`, and make a one-descriptor chain
    /// pointing at it available.
    pub fn add_indirect_chain(&mut self, table_addr: u64, bufs: &[Buf]) -> u16 {
        for (i, buf) in bufs.iter().enumerate() {
            let last = i + 1 == bufs.len();
            let mut flags = if buf.writable { WRITE } else { 0 };
            if !last {
                flags |= NEXT;
            }
            let at = table_addr + 16 * i as u64;
            write_desc(self.mem, at, buf.addr, buf.len, flags, i as u16 + 1);
        }
        let head = self.next_desc;
        self.set_desc(head, table_addr, 16 * bufs.len() as u32, INDIRECT, 0);
        self.next_desc = (head + 1) % self.size;
        self.make_available(head);
        head
    }

    /// The used ring's index as the device published it.
    pub fn used_idx(&self) -> u16 {
        self.mem.load_acquire_u16(self.used_ring() + 2).unwrap()
    }

    fn used_ring(&self) -> u64 {
        self.queue.used_ring()
    }

    /// Used element `i` as (descriptor id, length).
    pub fn used(&self, i: u16) -> (u32, u32) {
        let elem = self.used_ring() + 4 + 8 * u64::from(i % self.size);
        (
            self.mem.read_u32(elem).unwrap(),
            self.mem.read_u32(elem + 4).unwrap(),
        )
    }

    /// Run one pass of `backend` over this queue as queue `index`.
    pub fn process(
        &mut self,
        backend: &mut dyn VirtioBackend,
        index: u16,
    ) -> Result<virq_device::Processed, virq_device::BackendError> {
        let mut vq = Virtqueue::new(&mut self.queue, Dma::new(self.mem));
        backend.process_queue(index, &mut vq)
    }
}

/// Write one descriptor (`struct virtq_desc`) at `at`.
pub fn write_desc(mem: &dyn GuestMemory, at: u64, addr: u64, len: u32, flags: u16, next: u16) {
    let mut d = [0u8; 16];
    d[0..8].copy_from_slice(&addr.to_le_bytes());
    d[8..12].copy_from_slice(&len.to_le_bytes());
    d[12..14].copy_from_slice(&flags.to_le_bytes());
    d[14..16].copy_from_slice(&next.to_le_bytes());
    mem.write(at, &d).unwrap();
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

/// Read a little-endian configuration field.
pub fn config_u64(backend: &dyn VirtioBackend, offset: u64, width: usize) -> u64 {
    let mut buf = [0u8; 8];
    backend.read_config(offset, &mut buf[..width]);
    u64::from_le_bytes(buf)
}
