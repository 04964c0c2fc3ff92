//! virtio-blk behaviour against virtio 1.2 section 5.2, observed through guest memory, the used
//! ring, the backing store and the device counters.

use virq_backends::blk::{BLOCK_CONFIG_LEN, SERIAL_LEN};
use virq_backends::{
    Block, BlockConfig, BlockConfigError, BlockStorage, FileStorage, MemoryStorage,
};
use virq_device::testing::*;
use virq_device::{BackendError, GuestMemory, VirtioBackend};
use virq_spec::blk::{
    VIRTIO_BLK_F_BLK_SIZE, VIRTIO_BLK_F_FLUSH, VIRTIO_BLK_F_MQ, VIRTIO_BLK_F_RO,
    VIRTIO_BLK_F_SEG_MAX, VIRTIO_BLK_S_IOERR, VIRTIO_BLK_S_OK, VIRTIO_BLK_S_UNSUPP,
    VIRTIO_BLK_T_FLUSH, VIRTIO_BLK_T_GET_ID, VIRTIO_BLK_T_IN, VIRTIO_BLK_T_OUT,
};

const DISK_SECTORS: u64 = 64;
const HDR: u64 = DATA_BASE;
const DATA: u64 = DATA_BASE + 0x1000;
const STATUS: u64 = DATA_BASE + 0x800;
/// A status value the device never writes, to prove it wrote one.
const POISON: u8 = 0xEE;

fn disk() -> Block<MemoryStorage> {
    Block::new(
        MemoryStorage::new((DISK_SECTORS * 512) as usize),
        BlockConfig::default(),
    )
    .unwrap()
}

fn write_header(mem: &dyn GuestMemory, addr: u64, request_type: u32, sector: u64) {
    let mut header = [0u8; 16];
    header[0..4].copy_from_slice(&request_type.to_le_bytes());
    header[8..16].copy_from_slice(&sector.to_le_bytes());
    write_guest(mem, addr, &header);
}

/// Queue a request with the classic three-part layout and a poisoned status byte.
fn submit(
    tq: &mut TestQueue<'_>,
    request_type: u32,
    sector: u64,
    data: Option<Buf>,
    status: u64,
) -> u16 {
    write_header(tq.mem, HDR, request_type, sector);
    write_guest(tq.mem, status, &[POISON]);
    let mut bufs = vec![r(HDR, 16)];
    bufs.extend(data);
    bufs.push(w(status, 1));
    tq.add_chain(&bufs)
}

/// Run one pass and return (head, used len) of the single completion.
fn complete_one(tq: &mut TestQueue<'_>, blk: &mut Block<MemoryStorage>) -> (u32, u32) {
    let before = tq.used_idx();
    let processed = tq.process(blk, 0).unwrap();
    assert_eq!(processed.used, 1);
    assert_eq!(tq.used_idx(), before.wrapping_add(1));
    tq.used(before)
}

#[test]
fn config_space_layout_matches_5_2_4() {
    let blk = Block::new(
        MemoryStorage::new(1024 * 1024 + 100),
        BlockConfig {
            num_queues: 4,
            seg_max: 77,
            blk_size: 4096,
            ..BlockConfig::default()
        },
    )
    .unwrap();
    assert_eq!(blk.device_id(), 2);
    assert_eq!(blk.config_len(), BLOCK_CONFIG_LEN);
    // capacity counts whole 512-byte sectors; the trailing 100 bytes are not addressable.
    assert_eq!(config_u64(&blk, 0, 8), 2048);
    assert_eq!(config_u64(&blk, 12, 4), 77);
    assert_eq!(config_u64(&blk, 20, 4), 4096);
    assert_eq!(config_u64(&blk, 34, 2), 4);
    // Fields of features not offered, and bytes past the structure, read as zero.
    assert_eq!(config_u64(&blk, 8, 4), 0);
    assert_eq!(config_u64(&blk, 36, 8), 0);
    assert_eq!(config_u64(&blk, u64::MAX, 8), 0);
    // Unaligned partial read of capacity's second byte.
    let mut byte = [0u8; 1];
    blk.read_config(1, &mut byte);
    assert_eq!(byte[0], (2048u64 >> 8) as u8);
}

#[test]
fn feature_bits_follow_configuration_5_2_3() {
    let base =
        (1u64 << VIRTIO_BLK_F_SEG_MAX) | (1 << VIRTIO_BLK_F_BLK_SIZE) | (1 << VIRTIO_BLK_F_FLUSH);
    assert_eq!(disk().device_features(), base);

    let mq = Block::new(
        MemoryStorage::new(4096),
        BlockConfig {
            num_queues: 2,
            ..BlockConfig::default()
        },
    )
    .unwrap();
    assert_eq!(mq.device_features(), base | (1 << VIRTIO_BLK_F_MQ));
    assert_eq!(mq.num_queues(), 2);

    let ro = Block::new(
        MemoryStorage::new(4096).read_only(true),
        BlockConfig::default(),
    )
    .unwrap();
    assert_eq!(ro.device_features(), base | (1 << VIRTIO_BLK_F_RO));
    // Only bits 0..24 are device-type bits.
    assert_eq!(ro.device_features() >> 24, 0);
}

#[test]
fn invalid_configurations_are_refused() {
    let cfg = |f: fn(&mut BlockConfig)| {
        let mut c = BlockConfig::default();
        f(&mut c);
        Block::new(MemoryStorage::new(512), c).err()
    };
    assert_eq!(
        cfg(|c| c.num_queues = 0),
        Some(BlockConfigError::NumQueues(0))
    );
    assert_eq!(
        cfg(|c| c.queue_size = 100),
        Some(BlockConfigError::QueueSize(100))
    );
    assert_eq!(
        cfg(|c| c.blk_size = 256),
        Some(BlockConfigError::BlkSize(256))
    );
    assert_eq!(
        cfg(|c| c.serial = "x".repeat(21)),
        Some(BlockConfigError::SerialTooLong(21))
    );
    assert_eq!(cfg(|c| c.seg_max = 0), Some(BlockConfigError::SegMax));
}

#[test]
fn write_then_read_round_trip_5_2_6() {
    let mem = guest_memory();
    let mut tq = TestQueue::new(&mem, 0, 16);
    let mut blk = disk();
    let payload = pattern(1024, 7);

    write_guest(&mem, DATA, &payload);
    let head = submit(&mut tq, VIRTIO_BLK_T_OUT, 3, Some(r(DATA, 1024)), STATUS);
    assert_eq!(complete_one(&mut tq, &mut blk), (u32::from(head), 1));
    assert_eq!(guest_byte(&mem, STATUS), VIRTIO_BLK_S_OK as u8);
    assert_eq!(&blk.storage().as_bytes()[3 * 512..5 * 512], &payload[..]);
    // Neighbouring sectors untouched.
    assert!(blk.storage().as_bytes()[..3 * 512].iter().all(|&b| b == 0));
    assert!(blk.storage().as_bytes()[5 * 512..].iter().all(|&b| b == 0));

    let back = DATA + 0x10000;
    write_guest(&mem, back, &[0u8; 1024]);
    let head = submit(&mut tq, VIRTIO_BLK_T_IN, 3, Some(w(back, 1024)), STATUS);
    // Used length: 1024 data bytes plus the status byte the device wrote.
    assert_eq!(complete_one(&mut tq, &mut blk), (u32::from(head), 1025));
    assert_eq!(guest_byte(&mem, STATUS), VIRTIO_BLK_S_OK as u8);
    assert_eq!(read_guest(&mem, back, 1024), payload);

    let c = blk.counters();
    assert_eq!((c.reads, c.writes, c.status_ok), (1, 1, 2));
    assert_eq!((c.bytes_read, c.bytes_written), (1024, 1024));
}

#[test]
fn any_layout_header_data_status_split_differently_2_7_4() {
    let mem = guest_memory();
    let mut tq = TestQueue::new(&mem, 0, 16);
    let mut blk = disk();
    let payload = pattern(1536, 3);
    blk.storage_mut().write_at(512, &payload).unwrap();

    // Header split in two descriptors; data in three odd pieces, the last one also carrying
    // the status byte.
    write_header(&mem, HDR, VIRTIO_BLK_T_IN, 1);
    let a = DATA;
    let b = DATA + 0x4000;
    let c = DATA + 0x8000;
    tq.add_chain(&[
        r(HDR, 5),
        r(HDR + 5, 11),
        w(a, 100),
        w(b, 1000),
        w(c, 436 + 1),
    ]);
    let (_, len) = complete_one(&mut tq, &mut blk);
    assert_eq!(len, 1537);
    let mut got = read_guest(&mem, a, 100);
    got.extend(read_guest(&mem, b, 1000));
    got.extend(read_guest(&mem, c, 436));
    assert_eq!(got, payload);
    assert_eq!(guest_byte(&mem, c + 436), VIRTIO_BLK_S_OK as u8);
}

#[test]
fn indirect_request_is_served_2_7_5_3() {
    let mem = guest_memory();
    let mut tq = TestQueue::new(&mem, 0, 16);
    let mut blk = disk();
    let payload = pattern(512, 9);
    write_guest(&mem, DATA, &payload);
    write_header(&mem, HDR, VIRTIO_BLK_T_OUT, 10);
    write_guest(&mem, STATUS, &[POISON]);
    tq.add_indirect_chain(DATA + 0x20000, &[r(HDR, 16), r(DATA, 512), w(STATUS, 1)]);
    assert_eq!(complete_one(&mut tq, &mut blk).1, 1);
    assert_eq!(guest_byte(&mem, STATUS), VIRTIO_BLK_S_OK as u8);
    assert_eq!(&blk.storage().as_bytes()[10 * 512..11 * 512], &payload[..]);
}

#[test]
fn flush_completes_ok_5_2_6() {
    let mem = guest_memory();
    let mut tq = TestQueue::new(&mem, 0, 16);
    let mut blk = disk();
    submit(&mut tq, VIRTIO_BLK_T_FLUSH, 0, None, STATUS);
    assert_eq!(complete_one(&mut tq, &mut blk).1, 1);
    assert_eq!(guest_byte(&mem, STATUS), VIRTIO_BLK_S_OK as u8);
    assert_eq!(blk.storage().flushes(), 1);
    assert_eq!(blk.counters().flushes, 1);
}

#[test]
fn get_id_returns_configured_serial_zero_padded_5_2_6() {
    let mem = guest_memory();
    let mut tq = TestQueue::new(&mem, 0, 16);
    let mut blk = Block::new(
        MemoryStorage::new(4096),
        BlockConfig {
            serial: "disk-0042".to_string(),
            ..BlockConfig::default()
        },
    )
    .unwrap();
    write_guest(&mem, DATA, &[0xAA; SERIAL_LEN]);
    submit(
        &mut tq,
        VIRTIO_BLK_T_GET_ID,
        0,
        Some(w(DATA, SERIAL_LEN as u32)),
        STATUS,
    );
    assert_eq!(complete_one(&mut tq, &mut blk).1, SERIAL_LEN as u32 + 1);
    let mut expected = [0u8; SERIAL_LEN];
    expected[..9].copy_from_slice(b"disk-0042");
    assert_eq!(read_guest(&mem, DATA, SERIAL_LEN), expected);
    assert_eq!(guest_byte(&mem, STATUS), VIRTIO_BLK_S_OK as u8);

    // A full 20-byte serial has no terminating NUL.
    let mut blk = Block::new(
        MemoryStorage::new(4096),
        BlockConfig {
            serial: "ABCDEFGHIJKLMNOPQRST".to_string(),
            ..BlockConfig::default()
        },
    )
    .unwrap();
    submit(
        &mut tq,
        VIRTIO_BLK_T_GET_ID,
        0,
        Some(w(DATA, SERIAL_LEN as u32)),
        STATUS,
    );
    complete_one(&mut tq, &mut blk);
    assert_eq!(read_guest(&mem, DATA, SERIAL_LEN), b"ABCDEFGHIJKLMNOPQRST");
}

#[test]
fn unknown_request_types_are_unsupp_5_2_6() {
    let mem = guest_memory();
    let mut tq = TestQueue::new(&mem, 0, 16);
    let mut blk = disk();
    // DISCARD (11) and WRITE_ZEROES (13) are not offered; 0xdead is nonsense.
    for t in [11u32, 13, 0xdead] {
        submit(&mut tq, t, 0, Some(r(DATA, 512)), STATUS);
        assert_eq!(complete_one(&mut tq, &mut blk).1, 1);
        assert_eq!(guest_byte(&mem, STATUS), VIRTIO_BLK_S_UNSUPP as u8);
    }
    assert_eq!(blk.counters().status_unsupp, 3);
    assert_eq!(blk.counters().other_types, 3);
    assert!(blk.storage().as_bytes().iter().all(|&b| b == 0));
}

#[test]
fn sector_range_checks_with_overflow_5_2_6_1() {
    let mem = guest_memory();
    let mut tq = TestQueue::new(&mem, 0, 16);
    let mut blk = disk();

    // The last sector is addressable.
    submit(
        &mut tq,
        VIRTIO_BLK_T_IN,
        DISK_SECTORS - 1,
        Some(w(DATA, 512)),
        STATUS,
    );
    complete_one(&mut tq, &mut blk);
    assert_eq!(guest_byte(&mem, STATUS), VIRTIO_BLK_S_OK as u8);

    // One past the end, a range crossing the end, and sectors whose byte offset overflows.
    let cases = [
        (DISK_SECTORS, 512u32),
        (DISK_SECTORS - 1, 1024),
        (u64::MAX, 512),
        (u64::MAX / 512, 512),
        (u64::MAX / 512 - 1, 1024),
        // sector * 512 wraps to 0 and to 512: only checked multiplication catches these.
        (1u64 << 55, 512),
        ((1u64 << 55) + 1, 512),
        (1u64 << 63, 512),
    ];
    for (sector, len) in cases {
        write_guest(&mem, DATA, &vec![0x5A; len as usize]);
        submit(&mut tq, VIRTIO_BLK_T_IN, sector, Some(w(DATA, len)), STATUS);
        assert_eq!(complete_one(&mut tq, &mut blk).1, 1, "sector {sector}");
        assert_eq!(guest_byte(&mem, STATUS), VIRTIO_BLK_S_IOERR as u8);
        // No data was written into the guest buffer.
        assert!(
            read_guest(&mem, DATA, len as usize)
                .iter()
                .all(|&b| b == 0x5A)
        );

        submit(
            &mut tq,
            VIRTIO_BLK_T_OUT,
            sector,
            Some(r(DATA, len)),
            STATUS,
        );
        complete_one(&mut tq, &mut blk);
        assert_eq!(guest_byte(&mem, STATUS), VIRTIO_BLK_S_IOERR as u8);
    }
    assert_eq!(blk.counters().ioerr_out_of_range, 2 * cases.len() as u64);
    assert!(blk.storage().as_bytes().iter().all(|&b| b == 0));
}

#[test]
fn data_length_not_multiple_of_512_is_ioerr_5_2_6() {
    let mem = guest_memory();
    let mut tq = TestQueue::new(&mem, 0, 16);
    let mut blk = disk();
    write_guest(&mem, DATA, &[1u8; 700]);
    submit(&mut tq, VIRTIO_BLK_T_OUT, 0, Some(r(DATA, 700)), STATUS);
    complete_one(&mut tq, &mut blk);
    assert_eq!(guest_byte(&mem, STATUS), VIRTIO_BLK_S_IOERR as u8);
    submit(&mut tq, VIRTIO_BLK_T_IN, 0, Some(w(DATA, 100)), STATUS);
    assert_eq!(complete_one(&mut tq, &mut blk).1, 1);
    assert_eq!(guest_byte(&mem, STATUS), VIRTIO_BLK_S_IOERR as u8);
    assert_eq!(blk.counters().ioerr_unaligned_len, 2);
    assert!(blk.storage().as_bytes().iter().all(|&b| b == 0));
}

#[test]
fn header_shorter_than_16_bytes_is_ioerr_5_2_6() {
    let mem = guest_memory();
    let mut tq = TestQueue::new(&mem, 0, 16);
    let mut blk = disk();
    write_header(&mem, HDR, VIRTIO_BLK_T_IN, 0);
    write_guest(&mem, STATUS, &[POISON]);
    tq.add_chain(&[r(HDR, 8), w(DATA, 512), w(STATUS, 1)]);
    // Only the status byte was written.
    assert_eq!(complete_one(&mut tq, &mut blk).1, 1);
    assert_eq!(guest_byte(&mem, STATUS), VIRTIO_BLK_S_IOERR as u8);
    assert_eq!(blk.counters().ioerr_short_header, 1);
}

#[test]
fn write_to_read_only_disk_is_ioerr_and_touches_nothing_5_2_6_2() {
    let mem = guest_memory();
    let mut tq = TestQueue::new(&mem, 0, 16);
    let mut blk = Block::new(
        MemoryStorage::from_bytes(vec![0x11; 4096]).read_only(true),
        BlockConfig::default(),
    )
    .unwrap();
    write_guest(&mem, DATA, &[0x22; 512]);
    submit(&mut tq, VIRTIO_BLK_T_OUT, 0, Some(r(DATA, 512)), STATUS);
    complete_one(&mut tq, &mut blk);
    assert_eq!(guest_byte(&mem, STATUS), VIRTIO_BLK_S_IOERR as u8);
    assert!(blk.storage().as_bytes().iter().all(|&b| b == 0x11));
    assert_eq!(blk.counters().ioerr_read_only, 1);

    // Reads still work.
    submit(&mut tq, VIRTIO_BLK_T_IN, 0, Some(w(DATA, 512)), STATUS);
    complete_one(&mut tq, &mut blk);
    assert_eq!(guest_byte(&mem, STATUS), VIRTIO_BLK_S_OK as u8);
    assert_eq!(read_guest(&mem, DATA, 512), vec![0x11; 512]);
}

#[test]
fn buffers_outside_or_straddling_guest_ram_are_ioerr() {
    let mem = guest_memory();
    let mut tq = TestQueue::new(&mem, 0, 16);
    let mut blk = disk();
    blk.storage_mut().write_at(0, &[0x77; 1024]).unwrap();

    let outside = MEM_SIZE + 0x1000;
    let straddling = MEM_SIZE - 256;
    let huge = u64::MAX - 100;
    for addr in [outside, straddling, huge] {
        submit(&mut tq, VIRTIO_BLK_T_IN, 0, Some(w(addr, 512)), STATUS);
        assert_eq!(complete_one(&mut tq, &mut blk).1, 1, "addr {addr:#x}");
        assert_eq!(guest_byte(&mem, STATUS), VIRTIO_BLK_S_IOERR as u8);

        submit(&mut tq, VIRTIO_BLK_T_OUT, 1, Some(r(addr, 512)), STATUS);
        complete_one(&mut tq, &mut blk);
        assert_eq!(guest_byte(&mem, STATUS), VIRTIO_BLK_S_IOERR as u8);
    }
    // The part of the straddling buffer inside RAM was not written by the failed reads.
    assert!(read_guest(&mem, straddling, 256).iter().all(|&b| b == 0));
    // A header outside RAM is also IOERR when the status byte is fine.
    write_guest(&mem, STATUS, &[POISON]);
    tq.add_chain(&[r(outside, 16), w(DATA, 512), w(STATUS, 1)]);
    complete_one(&mut tq, &mut blk);
    assert_eq!(guest_byte(&mem, STATUS), VIRTIO_BLK_S_IOERR as u8);

    assert_eq!(blk.counters().ioerr_bad_buffer, 7);
    assert_eq!(&blk.storage().as_bytes()[512..1024], &[0x77; 512][..]);
}

#[test]
fn no_writable_status_byte_completes_with_used_len_0() {
    let mem = guest_memory();
    let mut tq = TestQueue::new(&mem, 0, 16);
    let mut blk = disk();
    write_header(&mem, HDR, VIRTIO_BLK_T_OUT, 0);
    write_guest(&mem, DATA, &[0x33; 512]);

    // Only device-readable buffers: nowhere to put a status.
    let head = tq.add_chain(&[r(HDR, 16), r(DATA, 512)]);
    assert_eq!(complete_one(&mut tq, &mut blk), (u32::from(head), 0));
    // Status byte outside guest RAM.
    tq.add_chain(&[r(HDR, 16), r(DATA, 512), w(MEM_SIZE + 10, 1)]);
    assert_eq!(complete_one(&mut tq, &mut blk).1, 0);
    // Zero-length writable descriptor contributes no status byte either.
    tq.add_chain(&[r(HDR, 16), r(DATA, 512), w(STATUS, 0)]);
    assert_eq!(complete_one(&mut tq, &mut blk).1, 0);

    assert_eq!(blk.counters().no_status, 3);
    // Nothing was executed.
    assert_eq!(blk.counters().writes, 0);
    assert!(blk.storage().as_bytes().iter().all(|&b| b == 0));
}

#[test]
fn multiqueue_serves_every_request_queue_5_2_6() {
    let mem = guest_memory();
    let mut blk = Block::new(
        MemoryStorage::new(64 * 512),
        BlockConfig {
            num_queues: 4,
            ..BlockConfig::default()
        },
    )
    .unwrap();
    let mut queues: Vec<TestQueue<'_>> = (0..4u64)
        .map(|i| TestQueue::new(&mem, i * 0x4000, 16))
        .collect();
    for (i, tq) in queues.iter_mut().enumerate() {
        let i = i as u64;
        let hdr = DATA + i * 0x1000;
        let data = DATA + 0x10000 + i * 0x1000;
        let status = DATA + 0x20000 + i;
        write_guest(&mem, data, &[i as u8 + 1; 512]);
        write_guest(&mem, status, &[POISON]);
        write_header(&mem, hdr, VIRTIO_BLK_T_OUT, i);
        tq.add_chain(&[r(hdr, 16), r(data, 512), w(status, 1)]);
    }
    for (i, tq) in queues.iter_mut().enumerate() {
        assert_eq!(tq.process(&mut blk, i as u16).unwrap().used, 1);
        assert_eq!(tq.used_idx(), 1);
        assert_eq!(
            guest_byte(&mem, DATA + 0x20000 + i as u64),
            VIRTIO_BLK_S_OK as u8
        );
    }
    for i in 0..4usize {
        let sector = &blk.storage().as_bytes()[i * 512..(i + 1) * 512];
        assert!(sector.iter().all(|&b| b == i as u8 + 1));
    }
    assert_eq!(blk.counters().completed_per_queue, vec![1, 1, 1, 1]);
    // A queue index beyond num_queues is not served.
    let mut extra = TestQueue::new(&mem, 0x10000, 16);
    write_header(&mem, HDR, VIRTIO_BLK_T_FLUSH, 0);
    extra.add_chain(&[r(HDR, 16), w(STATUS, 1)]);
    assert_eq!(extra.process(&mut blk, 4).unwrap().used, 0);
    assert_eq!(extra.used_idx(), 0);
}

#[test]
fn one_pass_completes_every_available_request_in_order() {
    let mem = guest_memory();
    let mut tq = TestQueue::new(&mem, 0, 16);
    let mut blk = disk();
    for s in 0..8u64 {
        let status = STATUS + s;
        write_header(&mem, HDR + 16 * s, VIRTIO_BLK_T_FLUSH, 0);
        tq.add_chain(&[r(HDR + 16 * s, 16), w(status, 1)]);
    }
    assert_eq!(tq.process(&mut blk, 0).unwrap().used, 8);
    for i in 0..8u16 {
        assert_eq!(tq.used(i), (u32::from(i) * 2, 1));
    }
    // Nothing left: the next pass completes nothing.
    assert_eq!(tq.process(&mut blk, 0).unwrap().used, 0);
}

fn temp_image(name: &str, bytes: &[u8]) -> std::path::PathBuf {
    let path = std::env::temp_dir().join(format!(
        "virq-backends-{}-{}-{name}.img",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    ));
    std::fs::write(&path, bytes).unwrap();
    path
}

#[test]
fn file_backed_image_round_trip_and_flush() {
    let initial = pattern(16 * 512, 1);
    let path = temp_image("rw", &initial);
    let mem = guest_memory();
    let mut tq = TestQueue::new(&mem, 0, 16);
    let mut blk = Block::new(
        FileStorage::open(&path, false).unwrap(),
        BlockConfig::default(),
    )
    .unwrap();
    assert_eq!(config_u64(&blk, 0, 8), 16);

    // Read sector 2..4 from the file.
    write_header(&mem, HDR, VIRTIO_BLK_T_IN, 2);
    tq.add_chain(&[r(HDR, 16), w(DATA, 1024), w(STATUS, 1)]);
    assert_eq!(tq.process(&mut blk, 0).unwrap().used, 1);
    assert_eq!(guest_byte(&mem, STATUS), VIRTIO_BLK_S_OK as u8);
    assert_eq!(read_guest(&mem, DATA, 1024), &initial[1024..2048]);

    // Write sector 5, flush, and find the bytes in the file.
    let payload = pattern(512, 200);
    write_guest(&mem, DATA, &payload);
    write_header(&mem, HDR, VIRTIO_BLK_T_OUT, 5);
    tq.add_chain(&[r(HDR, 16), r(DATA, 512), w(STATUS, 1)]);
    write_header(&mem, HDR + 16, VIRTIO_BLK_T_FLUSH, 0);
    tq.add_chain(&[r(HDR + 16, 16), w(STATUS + 1, 1)]);
    assert_eq!(tq.process(&mut blk, 0).unwrap().used, 2);
    assert_eq!(guest_byte(&mem, STATUS), VIRTIO_BLK_S_OK as u8);
    assert_eq!(guest_byte(&mem, STATUS + 1), VIRTIO_BLK_S_OK as u8);
    drop(blk);
    let on_disk = std::fs::read(&path).unwrap();
    assert_eq!(&on_disk[5 * 512..6 * 512], &payload[..]);
    assert_eq!(&on_disk[..5 * 512], &initial[..5 * 512]);
    assert_eq!(on_disk.len(), initial.len());

    // Reopened read-only: RO feature offered, writes refused, file unchanged.
    let mut ro = Block::new(
        FileStorage::open(&path, true).unwrap(),
        BlockConfig::default(),
    )
    .unwrap();
    assert_ne!(ro.device_features() & (1 << VIRTIO_BLK_F_RO), 0);
    write_guest(&mem, DATA, &[0; 512]);
    write_header(&mem, HDR, VIRTIO_BLK_T_OUT, 0);
    tq.add_chain(&[r(HDR, 16), r(DATA, 512), w(STATUS, 1)]);
    assert_eq!(tq.process(&mut ro, 0).unwrap().used, 1);
    assert_eq!(guest_byte(&mem, STATUS), VIRTIO_BLK_S_IOERR as u8);
    drop(ro);
    assert_eq!(std::fs::read(&path).unwrap(), on_disk);
    std::fs::remove_file(&path).unwrap();
}

#[test]
fn snapshot_keeps_configuration_and_counters_not_contents() {
    let mem = guest_memory();
    let mut tq = TestQueue::new(&mem, 0, 16);
    let mut blk = disk();
    write_guest(&mem, DATA, &[9; 512]);
    submit(&mut tq, VIRTIO_BLK_T_OUT, 0, Some(r(DATA, 512)), STATUS);
    submit(&mut tq, 0xdead, 0, None, STATUS);
    tq.process(&mut blk, 0).unwrap();
    blk.activate(1 << VIRTIO_BLK_F_FLUSH);
    let snap = blk.snapshot();
    assert!(
        !snap.to_string().contains("[9,9,9"),
        "image contents leaked into snapshot"
    );

    let mut fresh = disk();
    fresh.restore(&snap).unwrap();
    assert_eq!(fresh.counters(), blk.counters());
    assert_eq!(fresh.acked_features(), 1 << VIRTIO_BLK_F_FLUSH);
    assert!(fresh.storage().as_bytes().iter().all(|&b| b == 0));

    // A different configuration or disk refuses the snapshot.
    let mut other = Block::new(
        MemoryStorage::new((DISK_SECTORS * 512) as usize),
        BlockConfig {
            serial: "other".to_string(),
            ..BlockConfig::default()
        },
    )
    .unwrap();
    assert!(matches!(
        other.restore(&snap),
        Err(BackendError::BadSnapshot(_))
    ));
    let mut bigger = Block::new(MemoryStorage::new(8192 * 512), BlockConfig::default()).unwrap();
    assert!(matches!(
        bigger.restore(&snap),
        Err(BackendError::BadSnapshot(_))
    ));
    assert!(matches!(
        fresh.restore(&serde_json::json!({"device": "virtio-rng"})),
        Err(BackendError::BadSnapshot(_))
    ));
}

#[test]
fn reset_forgets_negotiated_features_but_keeps_evidence() {
    let mut blk = disk();
    blk.activate(1 << VIRTIO_BLK_F_FLUSH);
    blk.reset();
    assert_eq!(blk.acked_features(), 0);
    assert_eq!(blk.counters().resets, 1);
    assert!(!blk.has_pending_input(0));
}
