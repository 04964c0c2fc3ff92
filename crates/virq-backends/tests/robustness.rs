//! Hostile rings: every backend must finish each pass in bounded time, complete at most
//! "queue size" chains, and report a corrupt ring instead of guessing (virtio 1.2, 2.1.2 and
//! 2.7).

use proptest::prelude::*;
use virq_backends::console::{RECEIVEQ, TRANSMITQ};
use virq_backends::{Block, BlockConfig, Console, MemoryStorage, Rng, SeededEntropy};
use virq_device::ring::{RingError, RingPart};
use virq_device::testing::*;
use virq_device::{BackendError, VirtioBackend};
use virq_spec::blk::VIRTIO_BLK_T_IN;
use vm_memory::{GuestAddress, GuestMemoryMmap};

/// Every backend with every queue it serves, console input waiting so receiveq is live.
fn all_backends() -> Vec<(Box<dyn VirtioBackend>, u16)> {
    let mut console = Console::default();
    console.push_input(&[b'i'; 1000]);
    let mut console_tx = Console::default();
    console_tx.push_input(b"x");
    vec![
        (
            Box::new(Block::new(MemoryStorage::new(64 * 512), BlockConfig::default()).unwrap()),
            0,
        ),
        (Box::new(Rng::new(SeededEntropy::new(5))), 0),
        (Box::new(console), RECEIVEQ),
        (Box::new(console_tx), TRANSMITQ),
    ]
}

/// A chain whose last descriptor points back at its first: 0 -> 1 -> 0 -> ...
#[test]
fn descriptor_loop_completes_with_len_0_2_7_5_3_1() {
    for (mut backend, index) in all_backends() {
        let mem = guest_memory();
        let mut tq = TestQueue::new(&mem, 0, 16);
        tq.set_desc(0, DATA_BASE, 16, NEXT, 1);
        tq.set_desc(1, DATA_BASE + 0x100, 16, NEXT | WRITE, 0);
        tq.make_available(0);
        let processed = tq.process(backend.as_mut(), index).unwrap();
        assert_eq!(processed.used, 1, "{}", backend.name());
        assert_eq!(tq.used(0), (0, 0), "{}", backend.name());
        let snap = backend.snapshot();
        assert_eq!(snap["counters"]["broken_chains"], 1, "{}", backend.name());
    }
}

/// An indirect table longer than the queue size (forbidden by 2.7.5.3.1) is cut off.
#[test]
fn over_long_indirect_chain_is_cut_off_2_7_5_3_1() {
    for (mut backend, index) in all_backends() {
        let mem = guest_memory();
        let mut tq = TestQueue::new(&mem, 0, 8);
        let bufs: Vec<Buf> = (0..32)
            .map(|i| w(DATA_BASE + 0x1000 + i * 0x10, 0x10))
            .collect();
        tq.add_indirect_chain(DATA_BASE + 0x10000, &bufs);
        let processed = tq.process(backend.as_mut(), index).unwrap();
        assert_eq!(processed.used, 1, "{}", backend.name());
        assert_eq!(tq.used(0).1, 0, "{}", backend.name());
        assert!(
            read_guest(&mem, DATA_BASE + 0x1000, 0x200)
                .iter()
                .all(|&b| b == 0),
            "{} wrote into a chain it rejected",
            backend.name()
        );
    }
}

/// A chain exactly as long as the queue is legal and served.
#[test]
fn chain_as_long_as_the_queue_is_served() {
    let mem = guest_memory();
    let mut tq = TestQueue::new(&mem, 0, 8);
    let mut rng = Rng::new(SeededEntropy::new(1));
    let bufs: Vec<Buf> = (0..8).map(|i| w(DATA_BASE + i * 0x10, 0x10)).collect();
    tq.add_chain(&bufs);
    tq.process(&mut rng, 0).unwrap();
    assert_eq!(tq.used(0).1, 128);
}

#[test]
fn avail_index_far_ahead_is_ring_corrupt_2_7_13() {
    for (mut backend, index) in all_backends() {
        let mem = guest_memory();
        let mut tq = TestQueue::new(&mem, 0, 16);
        tq.set_avail_idx(17);
        let err = tq.process(backend.as_mut(), index).unwrap_err();
        assert!(
            matches!(err, BackendError::RingCorrupt { queue, .. } if queue == index),
            "{}: {err}",
            backend.name()
        );
        assert_eq!(tq.used_idx(), 0);
    }
}

#[test]
fn head_index_beyond_queue_size_is_ring_corrupt() {
    for (mut backend, index) in all_backends() {
        let mem = guest_memory();
        let mut tq = TestQueue::new(&mem, 0, 16);
        tq.make_available(40);
        let err = tq.process(backend.as_mut(), index).unwrap_err();
        assert!(
            matches!(err, BackendError::RingCorrupt { .. }),
            "{}",
            backend.name()
        );
    }
}

#[test]
fn used_ring_outside_ram_is_ring_corrupt() {
    let mem = guest_memory();
    let mut tq = TestQueue::new(&mem, 0, 16);
    tq.add_chain(&[w(DATA_BASE, 8)]);
    // Used ring at 4 GiB, far outside the 4 MiB of guest RAM.
    tq.queue.set_address(RingPart::UsedRing, 1 << 32);
    let mut rng = Rng::new(SeededEntropy::new(1));
    let err = tq.process(&mut rng, 0).unwrap_err();
    assert!(matches!(err, BackendError::RingCorrupt { .. }));
}

#[test]
fn available_ring_entry_outside_ram_is_ring_corrupt() {
    let mem = guest_memory();
    let mut tq = TestQueue::new(&mem, 0, 16);
    // flags and idx are the last 4 bytes of RAM; the ring entries lie beyond it.
    let avail = MEM_SIZE - 4;
    tq.queue.set_address(RingPart::AvailRing, avail);
    write_guest(&mem, avail + 2, &1u16.to_le_bytes());
    let mut rng = Rng::new(SeededEntropy::new(1));
    let err = tq.process(&mut rng, 0).unwrap_err();
    assert!(
        matches!(
            &err,
            BackendError::RingCorrupt {
                error: RingError::Memory {
                    part: RingPart::AvailRing,
                    ..
                },
                ..
            }
        ),
        "{err}"
    );
    // An empty ring there is fine: nothing is available.
    write_guest(&mem, avail + 2, &0u16.to_le_bytes());
    assert_eq!(tq.process(&mut rng, 0).unwrap().used, 0);
}

/// A full ring is drained in exactly one pass of "queue size" chains; later chains wait for
/// the next pass.
#[test]
fn one_pass_never_exceeds_the_queue_size() {
    let mem = guest_memory();
    let mut tq = TestQueue::new(&mem, 0, 4);
    let mut rng = Rng::new(SeededEntropy::new(1));
    for i in 0..4 {
        tq.add_chain(&[w(DATA_BASE + i * 0x10, 4)]);
    }
    assert_eq!(tq.process(&mut rng, 0).unwrap().used, 4);
    for i in 0..3 {
        tq.add_chain(&[w(DATA_BASE + i * 0x10, 4)]);
    }
    assert_eq!(tq.process(&mut rng, 0).unwrap().used, 3);
    assert_eq!(tq.used_idx(), 7);
}

/// Block requests larger than the bounce buffer move in pieces and still land correctly.
#[test]
fn large_block_read_crosses_the_bounce_buffer() {
    let mem = guest_memory();
    let mut tq = TestQueue::new(&mem, 0, 16);
    let image: Vec<u8> = pattern(512 * 512, 77);
    let mut blk = Block::new(
        MemoryStorage::from_bytes(image.clone()),
        BlockConfig::default(),
    )
    .unwrap();
    let mut header = [0u8; 16];
    header[0..4].copy_from_slice(&VIRTIO_BLK_T_IN.to_le_bytes());
    header[8..16].copy_from_slice(&3u64.to_le_bytes());
    write_guest(&mem, DATA_BASE, &header);
    let len = 200 * 512;
    tq.add_chain(&[
        r(DATA_BASE, 16),
        w(DATA_BASE + 0x1000, len),
        w(DATA_BASE + 0x100, 1),
    ]);
    tq.process(&mut blk, 0).unwrap();
    assert_eq!(tq.used(0).1, len + 1);
    assert_eq!(guest_byte(&mem, DATA_BASE + 0x100), 0);
    assert_eq!(
        read_guest(&mem, DATA_BASE + 0x1000, len as usize),
        &image[3 * 512..3 * 512 + len as usize]
    );
}

/// Two RAM regions with a hole between them, so random buffers hit RAM, the hole and the end
/// (and the ring takes its path for memory that is not one flat region).
fn holey_memory() -> GuestMemoryMmap {
    GuestMemoryMmap::from_ranges(&[
        (GuestAddress(0), 0x1_0000),
        (GuestAddress(0x2_0000), 0x1_0000),
    ])
    .unwrap()
}

#[derive(Debug, Clone)]
struct RandomRing {
    size_log2: u32,
    descs: Vec<(u64, u32, u16, u16)>,
    avail: Vec<u16>,
    avail_idx: u16,
    next_avail: u16,
}

fn random_ring() -> impl Strategy<Value = RandomRing> {
    (0u32..=5).prop_flat_map(|size_log2| {
        let size = 1u16 << size_log2;
        let desc = (
            prop_oneof![
                0x1000u64..0x3_1000,
                Just(0x1_0000 - 8),
                Just(0x3_0000 - 4),
                any::<u64>()
            ],
            prop_oneof![0u32..0x200, 0u32..0x2_0000, any::<u32>()],
            0u16..8,
            0u16..(2 * size),
        );
        (
            Just(size_log2),
            prop::collection::vec(desc, usize::from(size)),
            prop::collection::vec(0u16..(2 * size), usize::from(size)),
            any::<u16>(),
            any::<u16>(),
        )
            .prop_map(
                |(size_log2, descs, avail, avail_idx, next_avail)| RandomRing {
                    size_log2,
                    descs,
                    avail,
                    avail_idx,
                    next_avail,
                },
            )
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// Arbitrary descriptor tables and available rings: no panic, at most "queue size" chains
    /// per pass, the used index moves by exactly the reported count, and failure is only ever
    /// RingCorrupt.
    #[test]
    fn random_rings_never_panic_or_overrun(ring in random_ring(), small_index in any::<bool>()) {
        for (mut backend, index) in all_backends() {
            let mem = holey_memory();
            let size = 1u16 << ring.size_log2;
            let mut tq = TestQueue::new(&mem, 0, size);
            for (i, &(addr, len, flags, next)) in ring.descs.iter().enumerate() {
                tq.set_desc(i as u16, addr, len, flags, next);
            }
            for &head in &ring.avail {
                tq.make_available(head);
            }
            // Either a plausible index (at most one lap ahead) or a fully random one.
            let next_avail = ring.next_avail;
            let avail_idx = if small_index {
                next_avail.wrapping_add(ring.avail_idx % (size + 1))
            } else {
                ring.avail_idx
            };
            tq.queue.set_next_avail(next_avail);
            tq.queue.set_next_used(next_avail);
            tq.set_avail_idx(avail_idx);
            // Several passes: each is bounded on its own, and the ring may still hold work.
            for _ in 0..3 {
                let used_before = tq.queue.next_used();
                match tq.process(backend.as_mut(), index) {
                    Ok(processed) => {
                        prop_assert!(processed.used <= size);
                        let used_now = tq.queue.next_used();
                        prop_assert_eq!(used_now.wrapping_sub(used_before), processed.used);
                    }
                    Err(BackendError::RingCorrupt { queue, .. }) => {
                        prop_assert_eq!(queue, index);
                        break;
                    }
                    Err(other) => prop_assert!(false, "unexpected error {}", other),
                }
            }
        }
    }
}
