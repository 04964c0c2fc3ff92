//! virtio-rng behaviour against virtio 1.2 section 5.4.

use virq_backends::rng::DEFAULT_REQUEST_CAP;
use virq_backends::{EntropySource, OsEntropy, Rng, SeededEntropy};
use virq_device::testing::*;
use virq_device::{BackendError, VirtioBackend};

/// The reference stream for a seed, cut however the test likes.
fn reference(seed: u64, len: usize) -> Vec<u8> {
    let mut source = SeededEntropy::new(seed);
    let mut out = vec![0; len];
    source.fill(&mut out).unwrap();
    out
}

#[test]
fn device_identity_5_4() {
    let rng = Rng::new(SeededEntropy::new(1));
    assert_eq!(rng.device_id(), 4);
    assert_eq!(rng.num_queues(), 1);
    assert_eq!(rng.config_len(), 0);
    assert_eq!(rng.device_features(), 0);
}

#[test]
fn seeded_source_is_splitmix64() {
    // SplitMix64 from state 0: the first output is the published reference value.
    let mut source = SeededEntropy::new(0);
    assert_eq!(source.next_u64(), 0xE220_A839_7B1D_CDAF);
    assert_eq!(source.next_u64(), 0x6E78_9E6A_A1B9_65F4);
    // Byte stream = little-endian outputs, independent of how it is cut.
    let whole = reference(0, 24);
    assert_eq!(&whole[..8], &0xE220_A839_7B1D_CDAFu64.to_le_bytes());
    let mut cut = SeededEntropy::new(0);
    let mut pieces = vec![0u8; 24];
    let (a, rest) = pieces.split_at_mut(3);
    let (b, c) = rest.split_at_mut(10);
    cut.fill(a).unwrap();
    cut.fill(b).unwrap();
    cut.fill(c).unwrap();
    assert_eq!(pieces, whole);
}

#[test]
fn fills_every_writable_buffer_with_the_deterministic_stream_5_4_6() {
    let mem = guest_memory();
    let mut tq = TestQueue::new(&mem, 0, 16);
    let mut rng = Rng::new(SeededEntropy::new(42));
    // Chain 1: two writable pieces (13 + 100 bytes); chain 2: 4096 bytes; a readable
    // descriptor in front is ignored (the device only writes).
    let h1 = tq.add_chain(&[w(DATA_BASE, 13), w(DATA_BASE + 0x100, 100)]);
    let h2 = tq.add_chain(&[r(DATA_BASE + 0x8000, 64), w(DATA_BASE + 0x1000, 4096)]);
    assert_eq!(tq.process(&mut rng, 0).unwrap().used, 2);
    assert_eq!(tq.used(0), (u32::from(h1), 113));
    assert_eq!(tq.used(1), (u32::from(h2), 4096));

    let expected = reference(42, 113 + 4096);
    let mut got = read_guest(&mem, DATA_BASE, 13);
    got.extend(read_guest(&mem, DATA_BASE + 0x100, 100));
    got.extend(read_guest(&mem, DATA_BASE + 0x1000, 4096));
    assert_eq!(got, expected);
    assert_eq!(rng.counters().bytes, 4209);
    assert_eq!(rng.counters().requests, 2);
}

#[test]
fn bytes_per_request_are_capped() {
    let mem = guest_memory();
    let mut tq = TestQueue::new(&mem, 0, 16);
    let mut rng = Rng::new(SeededEntropy::new(7));
    let big = 2 * DEFAULT_REQUEST_CAP;
    tq.add_chain(&[w(DATA_BASE, big)]);
    tq.process(&mut rng, 0).unwrap();
    assert_eq!(tq.used(0).1, DEFAULT_REQUEST_CAP);
    assert_eq!(
        read_guest(&mem, DATA_BASE, DEFAULT_REQUEST_CAP as usize),
        reference(7, DEFAULT_REQUEST_CAP as usize)
    );
    // Beyond the cap the buffer is untouched.
    assert!(
        read_guest(&mem, DATA_BASE + u64::from(DEFAULT_REQUEST_CAP), 4096)
            .iter()
            .all(|&b| b == 0)
    );
    assert_eq!(rng.counters().capped, 1);

    let mut small = Rng::new(SeededEntropy::new(7)).with_request_cap(10);
    tq.add_chain(&[w(DATA_BASE, 100)]);
    tq.process(&mut small, 0).unwrap();
    assert_eq!(tq.used(1).1, 10);
}

#[test]
fn buffer_outside_ram_gets_only_the_bytes_before_it() {
    let mem = guest_memory();
    let mut tq = TestQueue::new(&mem, 0, 16);
    let mut rng = Rng::new(SeededEntropy::new(3));
    tq.add_chain(&[
        w(DATA_BASE, 50),
        w(MEM_SIZE + 0x1000, 50),
        w(DATA_BASE + 0x100, 50),
    ]);
    tq.add_chain(&[w(DATA_BASE + 0x200, 8)]);
    assert_eq!(tq.process(&mut rng, 0).unwrap().used, 2);
    assert_eq!(tq.used(0).1, 50);
    assert!(
        read_guest(&mem, DATA_BASE + 0x100, 50)
            .iter()
            .all(|&b| b == 0)
    );
    // No entropy was wasted: the next request continues the stream right after byte 50.
    let expected = reference(3, 58);
    assert_eq!(read_guest(&mem, DATA_BASE, 50), &expected[..50]);
    assert_eq!(read_guest(&mem, DATA_BASE + 0x200, 8), &expected[50..]);
    assert_eq!(rng.counters().bad_buffers, 1);
}

#[test]
fn chain_without_writable_buffers_is_returned_with_len_0() {
    let mem = guest_memory();
    let mut tq = TestQueue::new(&mem, 0, 16);
    let mut rng = Rng::new(SeededEntropy::new(3));
    tq.add_chain(&[r(DATA_BASE, 64)]);
    assert_eq!(tq.process(&mut rng, 0).unwrap().used, 1);
    assert_eq!(tq.used(0).1, 0);
}

#[test]
fn os_source_gives_plausibly_random_bytes() {
    let mem = guest_memory();
    let mut tq = TestQueue::new(&mem, 0, 16);
    let mut rng = Rng::new(OsEntropy::open().unwrap());
    tq.add_chain(&[w(DATA_BASE, 4096)]);
    tq.add_chain(&[w(DATA_BASE + 0x1000, 4096)]);
    assert_eq!(tq.process(&mut rng, 0).unwrap().used, 2);
    assert_eq!(tq.used(0).1, 4096);
    let a = read_guest(&mem, DATA_BASE, 4096);
    let b = read_guest(&mem, DATA_BASE + 0x1000, 4096);
    // Expected 16 zero bytes in 4096 uniform bytes; 64 is far in the tail.
    assert!(a.iter().filter(|&&x| x == 0).count() < 64);
    // Every byte value's count is far from degenerate, and the two buffers differ.
    let mut histogram = [0u32; 256];
    a.iter().for_each(|&x| histogram[usize::from(x)] += 1);
    assert!(histogram.iter().all(|&n| n < 64));
    assert_ne!(a, b);
    assert_eq!(rng.snapshot()["source_kind"], "os");
}

#[test]
fn snapshot_restore_continues_the_deterministic_stream() {
    let mem = guest_memory();
    let mut tq = TestQueue::new(&mem, 0, 16);
    let mut rng = Rng::new(SeededEntropy::new(99));
    tq.add_chain(&[w(DATA_BASE, 5)]);
    tq.process(&mut rng, 0).unwrap();
    let snap = rng.snapshot();

    tq.add_chain(&[w(DATA_BASE + 0x100, 21)]);
    tq.process(&mut rng, 0).unwrap();
    let first = read_guest(&mem, DATA_BASE + 0x100, 21);

    let mut restored = Rng::new(SeededEntropy::new(0));
    restored.restore(&snap).unwrap();
    assert_eq!(restored.counters().bytes, 5);
    tq.add_chain(&[w(DATA_BASE + 0x200, 21)]);
    tq.process(&mut restored, 0).unwrap();
    assert_eq!(read_guest(&mem, DATA_BASE + 0x200, 21), first);
    assert_eq!(first, &reference(99, 26)[5..]);

    // State of the wrong kind of source is refused.
    let mut os = Rng::new(OsEntropy::open().unwrap());
    assert!(matches!(
        os.restore(&snap),
        Err(BackendError::BadSnapshot(_))
    ));
    let mut bad = snap.clone();
    bad["source_state"]["spare"] = serde_json::json!([1, 2, 3, 4, 5, 6, 7, 8, 9]);
    assert!(matches!(
        restored.restore(&bad),
        Err(BackendError::BadSnapshot(_))
    ));
}
