//! virq's split ring against rust-vmm's `virtio-queue` as the oracle.
//!
//! Both devices serve the same random guest-written rings, each over its own copy of the same
//! guest RAM (virq over its `VecMemory`, virtio-queue over `GuestMemoryMmap`): descriptor
//! tables whose entries have any flags (NEXT, WRITE, INDIRECT), any `next`, lengths up to 4 GiB
//! and addresses inside, across the end of or far outside RAM; indirect tables of any length;
//! available rings with heads beyond the queue size and indices up to a lap ahead; `used_event`
//! and `avail.flags` anywhere. Round after round the driver publishes more, and the two must
//! hand out the same chains (the same descriptors, broken at the same point), accept or refuse
//! the same used entries, leave byte-identical guest RAM (used ring, `used.idx`,
//! `avail_event`), and take the same notification decisions (virtio 1.2, 2.7.7.2 and 2.7.10;
//! `virtio-queue` leaves `VRING_AVAIL_F_NO_INTERRUPT` to its caller, so without EVENT_IDX the
//! oracle is that flag).

use proptest::prelude::*;
use virq_device::ring::{
    ChainError, Descriptor, RingError, RingPart, SplitQueue, UsedNotification, Virtqueue,
};
use virq_device::{Dma, GuestMemory, VecMemory};
use virtio_queue::{Queue, QueueOwnedT, QueueT};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

const RAM: usize = 0x1_0000;
const MAX: u16 = 16;
const DESC: u64 = 0x1000;
const AVAIL: u64 = 0x2000;
const USED: u64 = 0x3000;
/// Indirect tables live here, 0x400 bytes apart.
const TABLES: u64 = 0x4000;
const NEXT: u16 = 1;
const INDIRECT: u16 = 4;

/// One descriptor as a random driver writes it.
#[derive(Clone, Debug)]
struct RawDesc {
    addr: u64,
    len: u32,
    flags: u16,
    next: u16,
}

fn raw_desc(size: u16) -> impl Strategy<Value = RawDesc> {
    let addr = prop_oneof![
        4 => 0x8000u64..0x1_1000,
        2 => (0u64..4).prop_map(|t| TABLES + 0x400 * t),
        1 => Just(RAM as u64 - 8),
        1 => any::<u64>(),
        1 => (u64::MAX - 0x40)..=u64::MAX,
    ];
    let len = prop_oneof![
        4 => 0u32..0x200,
        2 => (0u32..8).prop_map(|n| 16 * n),
        1 => Just(15u32),
        1 => (u32::MAX - 0x100)..=u32::MAX,
        1 => any::<u32>(),
    ];
    let flags = prop_oneof![
        3 => Just(NEXT),
        2 => Just(0u16),
        2 => 0u16..8,
        1 => Just(INDIRECT),
        1 => any::<u16>(),
    ];
    (addr, len, flags, 0u16..(size + 2)).prop_map(|(addr, len, flags, next)| RawDesc {
        addr,
        len,
        flags,
        next,
    })
}

/// What the driver does before each device pass.
#[derive(Clone, Debug)]
struct Round {
    heads: Vec<u16>,
    /// Extra distance of `avail.idx` past the heads written (0 = exactly them).
    skew: u16,
    used_event: u16,
    avail_flags: u16,
    /// Used length the device reports for each chain.
    len: u32,
}

#[derive(Clone, Debug)]
struct Case {
    size: u16,
    event_idx: bool,
    start: u16,
    descs: Vec<RawDesc>,
    tables: Vec<Vec<RawDesc>>,
    rounds: Vec<Round>,
}

fn case() -> impl Strategy<Value = Case> {
    (0u32..=4).prop_flat_map(|log2| {
        let size = 1u16 << log2;
        let round = (
            prop::collection::vec(
                prop_oneof![8 => 0..size, 1 => size..(size + 4)],
                0..=(size as usize),
            ),
            prop_oneof![6 => Just(0u16), 1 => 1u16..4, 1 => any::<u16>()],
            any::<u16>(),
            0u16..4,
            any::<u32>(),
        )
            .prop_map(|(heads, skew, used_event, avail_flags, len)| Round {
                heads,
                skew,
                used_event,
                avail_flags,
                len,
            });
        (
            Just(size),
            any::<bool>(),
            prop_oneof![Just(0u16), Just(u16::MAX - 2), any::<u16>()],
            prop::collection::vec(raw_desc(size), size as usize),
            prop::collection::vec(prop::collection::vec(raw_desc(8), 0..8), 4),
            prop::collection::vec(round, 1..5),
        )
            .prop_map(|(size, event_idx, start, descs, tables, rounds)| Case {
                size,
                event_idx,
                start,
                descs,
                tables,
                rounds,
            })
    })
}

/// The same bytes written into both memories.
struct Both {
    ours: VecMemory,
    oracle: GuestMemoryMmap<()>,
}

impl Both {
    fn write(&self, addr: u64, bytes: &[u8]) {
        self.ours.write(addr, bytes).unwrap();
        self.oracle.write_slice(bytes, GuestAddress(addr)).unwrap();
    }
    fn desc(&self, at: u64, d: &RawDesc) {
        let mut b = [0u8; 16];
        b[..8].copy_from_slice(&d.addr.to_le_bytes());
        b[8..12].copy_from_slice(&d.len.to_le_bytes());
        b[12..14].copy_from_slice(&d.flags.to_le_bytes());
        b[14..].copy_from_slice(&d.next.to_le_bytes());
        self.write(at, &b);
    }
    fn same_ram(&self) -> bool {
        let mut theirs = vec![0u8; RAM];
        self.oracle
            .read_slice(&mut theirs, GuestAddress(0))
            .unwrap();
        self.ours.to_vec() == theirs
    }
}

/// A chain as one side saw it: the descriptors in order and whether it ended properly.
type Walk = (Vec<(u64, u32, u16, u16)>, bool);

fn our_walk(chain: virq_device::DescriptorChain<'_>) -> Walk {
    let mut descs = Vec::new();
    for d in chain {
        match d {
            Ok(Descriptor {
                addr,
                len,
                flags,
                next,
            }) => descs.push((addr, len, flags, next)),
            Err(_) => return (descs, false),
        }
    }
    let ok = !descs.is_empty();
    (descs, ok)
}

fn oracle_walk(chain: virtio_queue::DescriptorChain<&GuestMemoryMmap<()>>) -> Walk {
    let descs: Vec<_> = chain
        .map(|d| (d.addr().0, d.len(), d.flags(), d.next()))
        .collect();
    let ok = descs.last().is_some_and(|d| d.2 & NEXT == 0);
    (descs, ok)
}

fn run(c: &Case) -> Result<(), TestCaseError> {
    let mem = Both {
        ours: VecMemory::new(RAM),
        oracle: GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), RAM)]).unwrap(),
    };
    for (i, d) in c.descs.iter().enumerate() {
        mem.desc(DESC + 16 * i as u64, d);
    }
    for (t, table) in c.tables.iter().enumerate() {
        for (i, d) in table.iter().enumerate() {
            mem.desc(TABLES + 0x400 * t as u64 + 16 * i as u64, d);
        }
    }
    mem.write(AVAIL + 2, &c.start.to_le_bytes());

    let mut ours = SplitQueue::new(MAX).unwrap();
    ours.set_size(c.size).unwrap();
    ours.set_address(RingPart::DescriptorTable, DESC);
    ours.set_address(RingPart::AvailRing, AVAIL);
    ours.set_address(RingPart::UsedRing, USED);
    ours.set_next_avail(c.start);
    ours.set_next_used(c.start);
    ours.set_event_idx(c.event_idx);
    ours.validate(&mem.ours).unwrap();
    ours.set_ready(true);

    let mut oracle = Queue::new(MAX).unwrap();
    oracle.try_set_size(c.size).unwrap();
    oracle
        .try_set_desc_table_address(GuestAddress(DESC))
        .unwrap();
    oracle
        .try_set_avail_ring_address(GuestAddress(AVAIL))
        .unwrap();
    oracle
        .try_set_used_ring_address(GuestAddress(USED))
        .unwrap();
    oracle.set_next_avail(c.start);
    oracle.set_next_used(c.start);
    oracle.set_event_idx(c.event_idx);
    oracle.set_ready(true);
    prop_assert!(oracle.is_valid(&mem.oracle));

    let mut idx = c.start;
    for (r, round) in c.rounds.iter().enumerate() {
        for &h in &round.heads {
            mem.write(AVAIL + 4 + 2 * u64::from(idx % c.size), &h.to_le_bytes());
            idx = idx.wrapping_add(1);
        }
        let published = idx.wrapping_add(round.skew);
        mem.write(AVAIL + 2, &published.to_le_bytes());
        mem.write(AVAIL, &round.avail_flags.to_le_bytes());
        let used_event = AVAIL + 4 + 2 * u64::from(c.size);
        mem.write(used_event, &round.used_event.to_le_bytes());

        let mut vq = Virtqueue::new(&mut ours, Dma::new(&mem.ours));
        // One pass: at most a queue's worth of chains, as the backends take them.
        for n in 0..c.size {
            let theirs = oracle.iter(&mem.oracle);
            let mine = vq.pop();
            let (their_chain, my_chain) = match (theirs, mine) {
                (
                    Err(virtio_queue::Error::InvalidAvailRingIndex),
                    Err(RingError::AvailIndex { .. }),
                ) => {
                    return Ok(());
                }
                (Ok(mut it), Ok(mine)) => (it.next(), mine),
                (t, m) => {
                    prop_assert!(false, "round {r} pop {n}: oracle {t:?}, virq {m:?}");
                    unreachable!()
                }
            };
            let (their_chain, my_chain) = match (their_chain, my_chain) {
                (None, None) => break,
                (Some(t), Some(m)) => (t, m),
                (t, m) => {
                    prop_assert!(
                        false,
                        "round {r} pop {n}: oracle chain {}, virq chain {}",
                        t.is_some(),
                        m.is_some()
                    );
                    unreachable!()
                }
            };
            let head = their_chain.head_index();
            prop_assert_eq!(my_chain.head_index(), head);
            let my_walk = our_walk(my_chain);
            let their_walk = oracle_walk(their_chain);
            prop_assert_eq!(&my_walk, &their_walk, "round {} chain {}", r, n);
            let len = round.len.wrapping_add(u32::from(n));
            let t = oracle.add_used(&mem.oracle, head, len);
            let m = vq.add_used(head, len);
            prop_assert_eq!(t.is_ok(), m.is_ok(), "add_used({}): {:?} {:?}", head, t, m);
            if m.is_err() {
                let refused_head = matches!(m, Err(RingError::UsedHead { .. }));
                prop_assert!(refused_head, "{:?}", m);
                return Ok(());
            }
        }
        let theirs = oracle.needs_notification(&mem.oracle).unwrap();
        let mine = vq.used_notification().unwrap();
        let expect = if c.event_idx {
            theirs
        } else {
            round.avail_flags & 1 == 0
        };
        prop_assert_eq!(
            mine == UsedNotification::Send,
            expect,
            "round {} decision",
            r
        );
        prop_assert_eq!(
            vq.enable_notification().unwrap(),
            oracle.enable_notification(&mem.oracle).unwrap(),
            "round {} re-arm",
            r
        );
        prop_assert_eq!(ours.next_avail(), oracle.next_avail());
        prop_assert_eq!(ours.next_used(), oracle.next_used());
        prop_assert!(mem.same_ram(), "round {}: guest RAM differs", r);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(if cfg!(miri) { 8 } else { 2048 }))]

    #[test]
    fn virq_ring_matches_virtio_queue(c in case()) {
        run(&c)?;
    }
}

/// The chains the property is about, pinned: a loop, a nested indirect table and a walk past
/// 2^32 - 1 bytes break at the same descriptor in both (virtio 1.2, 2.7.5.2, 2.7.5.3.1).
#[test]
fn hand_written_broken_chains_agree_with_the_oracle() {
    let d = |addr, len, flags, next| RawDesc {
        addr,
        len,
        flags,
        next,
    };
    let round = |heads: Vec<u16>| Round {
        heads,
        skew: 0,
        used_event: 0,
        avail_flags: 0,
        len: 7,
    };
    let loop_case = Case {
        size: 4,
        event_idx: true,
        start: u16::MAX,
        descs: vec![
            d(0x8000, 8, NEXT, 1),
            d(0x8000, 8, NEXT, 2),
            d(0x8000, 8, NEXT, 0),
            d(TABLES, 32, INDIRECT, 0),
        ],
        tables: vec![
            vec![d(0x9000, 8, NEXT, 1), d(TABLES, 16, INDIRECT, 0)],
            vec![],
            vec![],
            vec![],
        ],
        rounds: vec![round(vec![0, 3]), round(vec![3])],
    };
    run(&loop_case).unwrap();
    let too_large = Case {
        descs: vec![
            d(0x8000, u32::MAX, NEXT, 1),
            d(0x8000, 1, 0, 0),
            d(0x8000, 0, 0, 0),
            d(u64::MAX - 8, 16, INDIRECT, 0),
        ],
        rounds: vec![round(vec![0, 2, 3])],
        ..loop_case
    };
    run(&too_large).unwrap();
    // And virq names what broke.
    let mem = VecMemory::new(RAM);
    let mut q = SplitQueue::new(4).unwrap();
    q.set_address(RingPart::DescriptorTable, DESC);
    q.set_address(RingPart::AvailRing, AVAIL);
    q.set_address(RingPart::UsedRing, USED);
    q.set_ready(true);
    let both = Both {
        ours: mem.clone(),
        oracle: GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), RAM)]).unwrap(),
    };
    both.desc(DESC, &d(u64::MAX - 8, 16, INDIRECT, 0));
    mem.write_u16(AVAIL + 2, 1).unwrap();
    let mut vq = Virtqueue::new(&mut q, Dma::new(&mem));
    let walk: Vec<_> = vq.pop().unwrap().unwrap().collect();
    assert!(matches!(
        walk[..],
        [Err(ChainError::Unreadable { index: 0, .. })]
    ));
}
