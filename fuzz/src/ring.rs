//! Target `ring`: virq's split virtqueue alone (`virq_device::ring`), without a transport or a
//! backend. The driver's half is the device toolkit's `Ring` writing into guest RAM; the
//! device's half is a validated `SplitQueue` driven through `Virtqueue` (pop, walk, add_used,
//! the notification decisions) in whatever order the input says.
//!
//! Checked after every step:
//! - a chain walk ends, after at most queue size + 65536 descriptors (one direct chain, one
//!   indirect table) and one error; the lengths it yields never sum past 2^32 - 1;
//! - at most (avail.idx - next_avail) chains pop, and never more than the queue size ahead;
//! - `add_used` that succeeds leaves `used.idx` = the device's next_used in memory and the
//!   element it wrote readable as (head, len);
//! - with EVENT_IDX, `enable_notification` publishes `avail_event` = next_avail.

use virq_device::ring::{Descriptor, RingPart, SplitQueue};
use virq_device::testing::{Ring, RingAddrs};
use virq_device::{Dma, GuestMemory, VecMemory, Virtqueue};

use crate::cursor::{Cursor, Enc};

/// Guest RAM of the harness.
pub const RAM_SIZE: usize = 64 * 1024;
/// Canonical ring placement (room for 256 entries each).
pub const CANONICAL: RingAddrs = RingAddrs {
    desc: 0x0000,
    avail: 0x1000,
    used: 0x2000,
};
const MAX_OPS: usize = 1024;

/// How the queue is set up.
#[derive(Clone, Debug, Default)]
pub struct Header {
    /// log2 of the queue size (clamped to 8).
    pub size_log2: u8,
    pub event_idx: bool,
    /// Ring addresses from the input (`raw`) instead of [`CANONICAL`].
    pub raw: Option<RingAddrs>,
    /// The device reaches RAM through a memory that offers no flat region (the path a VMM's
    /// own memory type, or `virq serve`'s recording one, takes).
    pub no_flat: bool,
}

/// Guest RAM without a flat region: every access goes through the `GuestMemory` calls.
struct NoFlat<'a>(&'a VecMemory);

impl GuestMemory for NoFlat<'_> {
    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), virq_device::MemoryError> {
        self.0.read(addr, buf)
    }
    fn write(&self, addr: u64, data: &[u8]) -> Result<(), virq_device::MemoryError> {
        self.0.write(addr, data)
    }
    fn check_range(&self, addr: u64, len: u64) -> bool {
        self.0.check_range(addr, len)
    }
    fn load_u16(&self, addr: u64) -> Result<u16, virq_device::MemoryError> {
        self.0.load_u16(addr)
    }
    fn load_acquire_u16(&self, addr: u64) -> Result<u16, virq_device::MemoryError> {
        self.0.load_acquire_u16(addr)
    }
    fn store_u16(&self, addr: u64, value: u16) -> Result<(), virq_device::MemoryError> {
        self.0.store_u16(addr, value)
    }
    fn store_release_u16(&self, addr: u64, value: u16) -> Result<(), virq_device::MemoryError> {
        self.0.store_release_u16(addr, value)
    }
}

impl Header {
    pub fn decode(c: &mut Cursor<'_>) -> Header {
        let flags = c.u8();
        let size_log2 = c.u8();
        let raw = (flags & 2 != 0).then(|| RingAddrs {
            desc: u64::from(c.u32()),
            avail: u64::from(c.u32()),
            used: u64::from(c.u32()),
        });
        Header {
            size_log2,
            event_idx: flags & 1 != 0,
            raw,
            no_flat: flags & 4 != 0,
        }
    }

    pub fn encode(&self, e: &mut Enc) {
        let flags =
            self.event_idx as u8 | (self.raw.is_some() as u8) << 1 | (self.no_flat as u8) << 2;
        e.u8(flags).u8(self.size_log2);
        if let Some(a) = self.raw {
            e.u32(a.desc as u32).u32(a.avail as u32).u32(a.used as u32);
        }
    }
}

/// One step of the driver or the device.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// Driver: write descriptor `index`.
    Desc {
        index: u16,
        addr: u64,
        len: u32,
        flags: u16,
        next: u16,
    },
    /// Driver: make `head` available.
    Avail { head: u16 },
    /// Driver: store `avail.idx`.
    AvailIdx { idx: u16 },
    /// Driver: raw bytes anywhere in RAM (indirect tables, or corruption).
    Ram { addr: u16, data: Vec<u8> },
    /// Device: pop up to `n` chains and walk each.
    Pop { n: u8 },
    /// Device: complete the `which`-th popped chain (or, past the end, head `which` as is).
    Used { which: u16, len: u32 },
    /// Device: `enable_notification`.
    Enable,
    /// Device: the used-buffer interrupt decision.
    Decide,
    /// Driver: `avail.flags` and `used_event`.
    Suppress { flags: u16, used_event: u16 },
}

impl Op {
    pub fn decode(c: &mut Cursor<'_>) -> Op {
        match c.u8() % 9 {
            0 => Op::Desc {
                index: c.u16(),
                addr: c.u64(),
                len: c.u32(),
                flags: c.u16(),
                next: c.u16(),
            },
            1 => Op::Avail { head: c.u16() },
            2 => Op::AvailIdx { idx: c.u16() },
            3 => {
                let addr = c.u16();
                let n = c.u8() as usize;
                Op::Ram {
                    addr,
                    data: c.bytes(n).to_vec(),
                }
            }
            4 => Op::Pop { n: c.u8() },
            5 => Op::Used {
                which: c.u16(),
                len: c.u32(),
            },
            6 => Op::Enable,
            7 => Op::Decide,
            _ => Op::Suppress {
                flags: c.u16(),
                used_event: c.u16(),
            },
        }
    }

    pub fn encode(&self, e: &mut Enc) {
        match self {
            Op::Desc {
                index,
                addr,
                len,
                flags,
                next,
            } => e
                .u8(0)
                .u16(*index)
                .u64(*addr)
                .u32(*len)
                .u16(*flags)
                .u16(*next),
            Op::Avail { head } => e.u8(1).u16(*head),
            Op::AvailIdx { idx } => e.u8(2).u16(*idx),
            Op::Ram { addr, data } => {
                assert!(data.len() < 256);
                e.u8(3).u16(*addr).u8(data.len() as u8).bytes(data)
            }
            Op::Pop { n } => e.u8(4).u8(*n),
            Op::Used { which, len } => e.u8(5).u16(*which).u32(*len),
            Op::Enable => e.u8(6),
            Op::Decide => e.u8(7),
            Op::Suppress { flags, used_event } => e.u8(8).u16(*flags).u16(*used_event),
        };
    }
}

/// Walk one chain to its end; returns the number of items it yielded.
fn walk(chain: virq_device::DescriptorChain<'_>, size: u16) -> usize {
    let limit = usize::from(size) + 65_536 + 1;
    let mut items = 0usize;
    let mut total = 0u64;
    let mut errors = 0;
    for d in chain {
        items += 1;
        assert!(items <= limit, "chain walk does not end ({items} items)");
        match d {
            Ok(d) => {
                assert_eq!(errors, 0, "a descriptor after the chain's error");
                total += u64::from(d.len);
                assert!(total <= u64::from(u32::MAX), "lengths past 2^32 - 1");
            }
            Err(_) => errors += 1,
        }
    }
    assert!(errors <= 1, "{errors} errors from one chain");
    items
}

pub fn run(data: &[u8]) {
    let mut c = Cursor::new(data);
    let header = Header::decode(&mut c);
    let size = 1u16 << header.size_log2.min(8);
    let addrs = header.raw.unwrap_or(CANONICAL);
    let ram = VecMemory::new(RAM_SIZE);
    let no_flat = NoFlat(&ram);
    // The driver's half writes `ram` directly; the device's half sees `mem`.
    let mem: &dyn GuestMemory = if header.no_flat { &no_flat } else { &ram };
    let mut q = SplitQueue::new(256).expect("256 is a queue size");
    q.set_size(size).expect("a power of two up to 256");
    q.set_address(RingPart::DescriptorTable, addrs.desc);
    q.set_address(RingPart::AvailRing, addrs.avail);
    q.set_address(RingPart::UsedRing, addrs.used);
    q.set_event_idx(header.event_idx);
    // The transport only ever runs a queue that passed validation (2.7.2): so does this.
    if q.validate(mem).is_err() {
        return;
    }
    q.set_ready(true);
    let mut ring = Ring::at(&ram, 0, size, addrs);
    let mut popped: Vec<u16> = Vec::new();
    for _ in 0..MAX_OPS {
        if c.is_empty() {
            break;
        }
        let op = Op::decode(&mut c);
        match &op {
            Op::Desc {
                index,
                addr,
                len,
                flags,
                next,
            } => {
                let d = Descriptor {
                    addr: *addr,
                    len: *len,
                    flags: *flags,
                    next: *next,
                };
                ring.try_set_desc(*index, d).expect("the table is in RAM");
            }
            Op::Avail { head } => {
                ring.resync_avail();
                ring.try_make_available(*head).expect("the ring is in RAM");
            }
            Op::AvailIdx { idx } => ring.try_set_avail_idx(*idx).expect("in RAM"),
            Op::Ram { addr, data } => {
                let _ = mem.write(u64::from(*addr), data);
            }
            Op::Pop { n } => {
                let mut vq = Virtqueue::new(&mut q, Dma::new(mem));
                for _ in 0..*n {
                    let before = vq.state().next_avail();
                    let avail = mem.read_u16(addrs.avail + 2).expect("in RAM");
                    match vq.pop() {
                        Ok(Some(chain)) => {
                            let waiting = avail.wrapping_sub(before);
                            assert!(
                                (1..=size).contains(&waiting),
                                "popped with {waiting} waiting (size {size})"
                            );
                            popped.push(chain.head_index());
                            walk(chain, size);
                            assert_eq!(vq.state().next_avail(), before.wrapping_add(1));
                        }
                        Ok(None) => {
                            assert_eq!(avail, before, "nothing popped with chains waiting");
                            break;
                        }
                        Err(_) => {
                            assert_eq!(vq.state().next_avail(), before, "an error moved on");
                            break;
                        }
                    }
                }
            }
            Op::Used { which, len } => {
                let head = popped.get(usize::from(*which)).copied().unwrap_or(*which);
                let mut vq = Virtqueue::new(&mut q, Dma::new(mem));
                let before = vq.state().next_used();
                if vq.add_used(head, *len).is_ok() {
                    let next = vq.state().next_used();
                    assert_eq!(next, before.wrapping_add(1));
                    assert_eq!(ring.used_idx(), next, "used.idx in memory");
                    assert_eq!(
                        ring.used_elem(before),
                        (u32::from(head), *len),
                        "the used element"
                    );
                }
            }
            Op::Enable => {
                let mut vq = Virtqueue::new(&mut q, Dma::new(mem));
                if vq.enable_notification().is_ok() && header.event_idx {
                    let next = vq.state().next_avail();
                    assert_eq!(ring.avail_event(), next, "avail_event");
                }
            }
            Op::Decide => {
                let mut vq = Virtqueue::new(&mut q, Dma::new(mem));
                let _ = vq.used_notification();
            }
            Op::Suppress { flags, used_event } => {
                ring.try_set_avail_flags(*flags).expect("in RAM");
                ring.try_set_used_event(*used_event).expect("in RAM");
            }
        }
    }
}
