//! Driver-side helpers: guest RAM and split rings built the way a driver would.

#![allow(dead_code)]

use virq_device::{GuestMemory, VirtioBackend};
use virtio_bindings::bindings::virtio_ring::{
    VRING_DESC_F_INDIRECT, VRING_DESC_F_NEXT, VRING_DESC_F_WRITE,
};
use virtio_queue::desc::{RawDescriptor, split::Descriptor};
use virtio_queue::mock::MockSplitQueue;
use virtio_queue::{Queue, QueueT};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

/// Guest RAM size used by most tests.
pub const MEM_SIZE: u64 = 0x40_0000;
/// Where request buffers start (rings live below).
pub const DATA_BASE: u64 = 0x10_0000;

pub const NEXT: u16 = VRING_DESC_F_NEXT as u16;
pub const WRITE: u16 = VRING_DESC_F_WRITE as u16;
pub const INDIRECT: u16 = VRING_DESC_F_INDIRECT as u16;

/// 4 MiB of guest RAM at address 0.
pub fn guest_memory() -> GuestMemory {
    GuestMemoryMmap::from_ranges(&[(GuestAddress(0), MEM_SIZE as usize)]).unwrap()
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

/// Offset of the used ring from a queue's base address.
///
/// `MockSplitQueue` 0.18 places the used ring right after `avail.end()`, which counts ring
/// elements rather than bytes, so the used ring overlaps the second half of the available
/// ring. The queue therefore keeps the mock's descriptor table and available ring but gets its
/// used ring here, clear of both.
pub const USED_RING_OFFSET: u64 = 0x1000;

/// A split virtqueue in guest RAM plus the device's `Queue` for it.
pub struct TestQueue<'a> {
    pub mem: &'a GuestMemory,
    mock: MockSplitQueue<'a, GuestMemory>,
    pub queue: Queue,
    pub size: u16,
    next_desc: u16,
}

impl<'a> TestQueue<'a> {
    /// A ready queue of `size` entries whose rings start at `base`.
    pub fn new(mem: &'a GuestMemory, base: u64, size: u16) -> Self {
        let mock = MockSplitQueue::create(mem, GuestAddress(base), size);
        let mut queue: Queue = mock.create_queue().unwrap();
        let used = base + USED_RING_OFFSET;
        queue.set_used_ring_address(Some(used as u32), Some((used >> 32) as u32));
        mem.write_slice(&vec![0u8; 6 + 8 * usize::from(size)], GuestAddress(used))
            .unwrap();
        Self {
            mem,
            mock,
            queue,
            size,
            next_desc: 0,
        }
    }

    /// Write descriptor `index` of the table.
    pub fn set_desc(&self, index: u16, addr: u64, len: u32, flags: u16, next: u16) {
        let desc = Descriptor::new(addr, len, flags, next);
        self.mock
            .desc_table()
            .store(index, RawDescriptor::from(desc))
            .unwrap();
    }

    /// Make `head` available (store into the avail ring and bump its index).
    pub fn make_available(&self, head: u16) {
        let idx = self.avail_idx();
        self.mock
            .avail()
            .ring()
            .ref_at(usize::from(idx % self.size))
            .unwrap()
            .store(head);
        self.set_avail_idx(idx.wrapping_add(1));
    }

    pub fn avail_idx(&self) -> u16 {
        self.mock.avail().idx().load()
    }

    pub fn set_avail_idx(&self, idx: u16) {
        self.mock.avail().idx().store(idx);
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
            let desc = Descriptor::new(buf.addr, buf.len, flags, i as u16 + 1);
            self.mem
                .write_obj(desc, GuestAddress(table_addr + 16 * i as u64))
                .unwrap();
        }
        let head = self.next_desc;
        self.set_desc(head, table_addr, 16 * bufs.len() as u32, INDIRECT, 0);
        self.next_desc = (head + 1) % self.size;
        self.make_available(head);
        head
    }

    /// The used ring's index as the device published it.
    pub fn used_idx(&self) -> u16 {
        self.mem
            .read_obj::<u16>(GuestAddress(self.used_ring() + 2))
            .unwrap()
    }

    fn used_ring(&self) -> u64 {
        self.queue.used_ring()
    }

    /// Used element `i` as (descriptor id, length).
    pub fn used(&self, i: u16) -> (u32, u32) {
        let elem = self.used_ring() + 4 + 8 * u64::from(i % self.size);
        let id: u32 = self.mem.read_obj(GuestAddress(elem)).unwrap();
        let len: u32 = self.mem.read_obj(GuestAddress(elem + 4)).unwrap();
        (id, len)
    }

    /// Run one pass of `backend` over this queue as queue `index`.
    pub fn process(
        &mut self,
        backend: &mut dyn VirtioBackend,
        index: u16,
    ) -> Result<virq_device::Processed, virq_device::BackendError> {
        backend.process_queue(index, &mut self.queue, self.mem)
    }
}

/// Read `len` bytes of guest RAM.
pub fn read_guest(mem: &GuestMemory, addr: u64, len: usize) -> Vec<u8> {
    let mut buf = vec![0; len];
    mem.read_slice(&mut buf, GuestAddress(addr)).unwrap();
    buf
}

/// Write bytes into guest RAM.
pub fn write_guest(mem: &GuestMemory, addr: u64, data: &[u8]) {
    mem.write_slice(data, GuestAddress(addr)).unwrap();
}

/// Read one guest byte.
pub fn guest_byte(mem: &GuestMemory, addr: u64) -> u8 {
    mem.read_obj(GuestAddress(addr)).unwrap()
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

/// Does the queue report the size the test built it with.
pub fn queue_size(q: &Queue) -> u16 {
    q.size()
}
