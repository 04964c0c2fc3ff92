//! A hostile guest against each backend behind the real transport: the guest programs the
//! device through BAR writes and builds its rings in RAM, then hands over chains that loop,
//! outgrow the queue, add up past 4 GiB or point outside (or across the end of) guest RAM.
//! The spec's answers: an error status in the request where there is a status byte to write
//! (virtio 1.2, 5.2.6), used length 0 where there is none, DEVICE_NEEDS_RESET with one
//! configuration interrupt for a corrupt ring (2.1.2); and one notify never completes more
//! chains than the queue holds.

mod common;

use std::sync::Arc;

use common::{DATA_BASE, INDIRECT, MEM_SIZE, NEXT, WRITE, guest_memory};
use virq_backends::console::{RECEIVEQ, TRANSMITQ};
use virq_backends::{Block, BlockConfig, Console, MemoryStorage, Rng, SeededEntropy};
use virq_device::testing::RecordingSink;
use virq_device::{
    GuestMemory, TransportOptions, VecMemory, VirtioBackend, VirtioPciDevice, common as cc,
    features, status,
};
use virq_spec::blk::{VIRTIO_BLK_S_IOERR, VIRTIO_BLK_T_IN};

const SIZE: u16 = 16;
/// Rings of queue q: descriptors, available ring, used ring.
fn rings(q: u16) -> (u64, u64, u64) {
    let base = 0x1_0000 + q as u64 * 0x8000;
    (base, base + 0x2000, base + 0x4000)
}
/// MSI-X message of entry i.
fn msg(i: u16) -> (u64, u32) {
    (0xFEE0_0000 | (i as u64) << 12, 0x4030 + i as u32)
}

struct Guest {
    dev: VirtioPciDevice,
    sink: Arc<RecordingSink>,
    mem: VecMemory,
}

impl Guest {
    /// Bring the device up with MSI-X: config on entry 0, queue q on entry q + 1, every queue
    /// of `SIZE` entries enabled.
    fn new(backend: Box<dyn VirtioBackend>) -> Guest {
        let mem = guest_memory();
        let sink = Arc::new(RecordingSink::new());
        let mut dev = VirtioPciDevice::new(
            backend,
            mem.clone(),
            sink.clone(),
            TransportOptions::default(),
        )
        .unwrap();
        dev.config_write(0x04, &0x0006u16.to_le_bytes());
        let mut g = Guest { dev, sink, mem };
        g.status(status::ACKNOWLEDGE);
        g.status(status::ACKNOWLEDGE | status::DRIVER);
        let f = features::VERSION_1 | features::RING_INDIRECT_DESC;
        g.common(cc::DRIVER_FEATURE_SELECT, &0u32.to_le_bytes());
        g.common(cc::DRIVER_FEATURE, &(f as u32).to_le_bytes());
        g.common(cc::DRIVER_FEATURE_SELECT, &1u32.to_le_bytes());
        g.common(cc::DRIVER_FEATURE, &((f >> 32) as u32).to_le_bytes());
        g.status(status::ACKNOWLEDGE | status::DRIVER | status::FEATURES_OK);
        let n = g.dev.msix().unwrap().table_size();
        for i in 0..n {
            let (addr, data) = msg(i);
            g.dev.bar_write(2, 16 * i as u64, &addr.to_le_bytes());
            g.dev.bar_write(2, 16 * i as u64 + 8, &data.to_le_bytes());
            g.dev.bar_write(2, 16 * i as u64 + 12, &0u32.to_le_bytes());
        }
        let cfg = g.dev.config_bytes();
        let mut cap = cfg[0x34] as usize;
        while cfg[cap] != 0x11 {
            cap = cfg[cap + 1] as usize;
        }
        g.dev.config_write(cap as u16 + 2, &0x8000u16.to_le_bytes());
        g.common(cc::MSIX_CONFIG, &0u16.to_le_bytes());
        for q in 0..g.dev.num_queues() {
            let (d, a, u) = rings(q);
            g.mem.write(d, &[0u8; 0x6000]).unwrap();
            g.common(cc::QUEUE_SELECT, &q.to_le_bytes());
            g.common(cc::QUEUE_SIZE, &SIZE.to_le_bytes());
            g.common(cc::QUEUE_DESC, &d.to_le_bytes());
            g.common(cc::QUEUE_DRIVER, &a.to_le_bytes());
            g.common(cc::QUEUE_DEVICE, &u.to_le_bytes());
            g.common(cc::QUEUE_MSIX_VECTOR, &(q + 1).to_le_bytes());
            g.common(cc::QUEUE_ENABLE, &1u16.to_le_bytes());
        }
        g.status(status::ACKNOWLEDGE | status::DRIVER | status::FEATURES_OK | status::DRIVER_OK);
        assert_eq!(g.dev.device_status() & status::DEVICE_NEEDS_RESET, 0);
        g
    }

    fn common(&mut self, off: u64, data: &[u8]) {
        self.dev.bar_write(0, off, data);
    }

    fn status(&mut self, s: u8) {
        self.common(cc::DEVICE_STATUS, &[s]);
    }

    fn desc(&self, q: u16, i: u16, addr: u64, len: u32, flags: u16, next: u16) {
        let at = rings(q).0 + 16 * i as u64;
        let mut raw = [0u8; 16];
        raw[..8].copy_from_slice(&addr.to_le_bytes());
        raw[8..12].copy_from_slice(&len.to_le_bytes());
        raw[12..14].copy_from_slice(&flags.to_le_bytes());
        raw[14..].copy_from_slice(&next.to_le_bytes());
        self.mem.write(at, &raw).unwrap();
    }

    fn avail_idx(&self, q: u16) -> u16 {
        self.mem.read_u16(rings(q).1 + 2).unwrap()
    }

    fn publish(&self, q: u16, heads: &[u16]) {
        let a = rings(q).1;
        let mut idx = self.avail_idx(q);
        for &h in heads {
            let slot = a + 4 + 2 * (idx % SIZE) as u64;
            self.mem.write_u16(slot, h).unwrap();
            idx = idx.wrapping_add(1);
        }
        self.mem.store_release_u16(a + 2, idx).unwrap();
    }

    fn kick(&mut self, q: u16) {
        self.dev
            .bar_write(0, 0x1000 + 4 * q as u64, &q.to_le_bytes());
    }

    fn used_idx(&self, q: u16) -> u16 {
        self.mem.load_acquire_u16(rings(q).2 + 2).unwrap()
    }

    fn used(&self, q: u16, i: u16) -> (u32, u32) {
        let at = rings(q).2 + 4 + 8 * (i % SIZE) as u64;
        (
            self.mem.read_u32(at).unwrap(),
            self.mem.read_u32(at + 4).unwrap(),
        )
    }

    fn byte(&self, addr: u64) -> u8 {
        common::guest_byte(&self.mem, addr)
    }

    fn needs_reset(&self) -> bool {
        self.dev.device_status() & status::DEVICE_NEEDS_RESET != 0
    }

    fn counter(&self, name: &str) -> u64 {
        self.dev.backend().snapshot()["counters"][name]
            .as_u64()
            .unwrap_or_else(|| panic!("counter {name}"))
    }
}

fn block() -> Box<dyn VirtioBackend> {
    Box::new(Block::new(MemoryStorage::new(64 * 512), BlockConfig::default()).unwrap())
}

/// Every backend with the queue it serves; console input waiting so receiveq is live.
fn all() -> Vec<(Box<dyn VirtioBackend>, u16)> {
    let mut rx = Console::default();
    rx.push_input(&[b'i'; 4096]);
    vec![
        (block(), 0),
        (Box::new(Rng::new(SeededEntropy::new(3))), 0),
        (Box::new(rx), RECEIVEQ),
        (Box::new(Console::default()), TRANSMITQ),
    ]
}

/// A virtio-blk read header at DATA_BASE.
fn blk_header(g: &Guest, sector: u64) {
    let mut h = [0u8; 16];
    h[..4].copy_from_slice(&VIRTIO_BLK_T_IN.to_le_bytes());
    h[8..].copy_from_slice(&sector.to_le_bytes());
    g.mem.write(DATA_BASE, &h).unwrap();
}

const STATUS_AT: u64 = DATA_BASE + 0x80;

/// Two writable buffers of almost 4 GiB each: their lengths sum past 4 GiB, which virtio 1.2,
/// 2.7.5.2 forbids. The chain is cut where the sum overflows, so it is broken: it comes back
/// with used length 0, its status byte (behind the cut) untouched, no data moved, and the
/// device carries on (one queue message, no DEVICE_NEEDS_RESET).
#[test]
fn blk_lengths_summing_past_4_gib_are_a_broken_chain() {
    let mut g = Guest::new(block());
    blk_header(&g, 0);
    g.mem.write(STATUS_AT, &[0xAA]).unwrap();
    g.desc(0, 0, DATA_BASE, 16, NEXT, 1);
    g.desc(0, 1, 0x20_0000, 0xFFFF_FE00, NEXT | WRITE, 2);
    g.desc(0, 2, 0x1_0000_0000, 0xFFFF_FE00, NEXT | WRITE, 3);
    g.desc(0, 3, STATUS_AT, 1, WRITE, 0);
    g.publish(0, &[0]);
    g.kick(0);
    assert_eq!(g.used_idx(0), 1);
    assert_eq!(g.used(0, 0), (0, 0));
    assert_eq!(g.byte(STATUS_AT), 0xAA);
    assert_eq!(g.byte(0x20_0000), 0, "nothing read into the data buffer");
    assert_eq!(g.counter("broken_chains"), 1);
    assert_eq!(g.counter("bytes_read"), 0);
    assert_eq!(g.sink.take_messages(), vec![msg(1)]);
    assert!(!g.needs_reset());
}

/// Two buffers of almost 2 GiB each (legal in sum, far beyond RAM and the disk) before a
/// good status byte: VIRTIO_BLK_S_IOERR in the status byte, used length 1, nothing read.
#[test]
fn blk_huge_buffers_beyond_ram_fail_with_ioerr_status() {
    let mut g = Guest::new(block());
    blk_header(&g, 0);
    g.desc(0, 0, DATA_BASE, 16, NEXT, 1);
    g.desc(0, 1, 0x20_0000, 0x7FFF_FE00, NEXT | WRITE, 2);
    g.desc(0, 2, 0x1_0000_0000, 0x7FFF_FE00, NEXT | WRITE, 3);
    g.desc(0, 3, STATUS_AT, 1, WRITE, 0);
    g.publish(0, &[0]);
    g.kick(0);
    assert_eq!(g.used(0, 0), (0, 1));
    assert_eq!(g.byte(STATUS_AT), VIRTIO_BLK_S_IOERR as u8);
    assert_eq!(g.byte(0x20_0000), 0);
    assert_eq!(g.counter("status_ioerr"), 1);
    assert_eq!(g.counter("bytes_read"), 0);
    assert_eq!(g.sink.take_messages(), vec![msg(1)]);
    assert!(!g.needs_reset());
}

/// A data buffer that starts in RAM and runs past its end: VIRTIO_BLK_S_IOERR (bad buffer),
/// and not a byte written into the part that is RAM.
#[test]
fn blk_buffer_straddling_the_end_of_ram_fails_with_ioerr() {
    let mut g = Guest::new(block());
    blk_header(&g, 0);
    let start = MEM_SIZE - 256;
    g.desc(0, 0, DATA_BASE, 16, NEXT, 1);
    g.desc(0, 1, start, 512, NEXT | WRITE, 2);
    g.desc(0, 2, STATUS_AT, 1, WRITE, 0);
    g.publish(0, &[0]);
    g.kick(0);
    assert_eq!(g.used(0, 0), (0, 1));
    assert_eq!(g.byte(STATUS_AT), VIRTIO_BLK_S_IOERR as u8);
    assert_eq!(g.counter("ioerr_bad_buffer"), 1);
    assert_eq!(g.sink.take_messages(), vec![msg(1)]);
}

/// A status byte outside RAM: there is nowhere to report the outcome, so the chain comes
/// back with used length 0 (and the device carries on).
#[test]
fn blk_status_outside_ram_completes_with_len_0() {
    let mut g = Guest::new(block());
    blk_header(&g, 0);
    g.desc(0, 0, DATA_BASE, 16, NEXT, 1);
    g.desc(0, 1, DATA_BASE + 0x200, 512, NEXT | WRITE, 2);
    g.desc(0, 2, MEM_SIZE + 0x1000, 1, WRITE, 0);
    g.publish(0, &[0]);
    g.kick(0);
    assert_eq!(g.used(0, 0), (0, 0));
    assert_eq!(g.counter("no_status"), 1);
    assert!(!g.needs_reset());
    assert_eq!(g.sink.take_messages(), vec![msg(1)]);
}

/// Sixteen chains that each loop (0 -> 1 -> 0 ...) in a queue of 16, for every backend:
/// one notify completes exactly the 16 with used length 0 and sends one message; the next
/// notify completes nothing. Seventeen more in one go is a corrupt ring: DEVICE_NEEDS_RESET
/// and one configuration message, nothing completed.
#[test]
fn looping_chains_complete_once_each_and_work_per_notify_is_bounded() {
    for (backend, q) in all() {
        let name = backend.name();
        let mut g = Guest::new(backend);
        for i in 0..SIZE {
            let next = (i + 1) % SIZE;
            g.desc(q, i, DATA_BASE + 0x100 * i as u64, 16, NEXT | WRITE, next);
        }
        g.publish(q, &(0..SIZE).collect::<Vec<_>>());
        g.kick(q);
        assert_eq!(g.used_idx(q), SIZE, "{name}");
        for i in 0..SIZE {
            assert_eq!(g.used(q, i).1, 0, "{name}: chain {i} rejected with len 0");
        }
        assert_eq!(g.sink.take_messages(), vec![msg(q + 1)], "{name}");
        g.kick(q);
        assert_eq!(g.used_idx(q), SIZE, "{name}");
        assert_eq!(g.counter("broken_chains"), SIZE as u64, "{name}");
        g.publish(q, &(0..=SIZE).map(|i| i % SIZE).collect::<Vec<_>>());
        g.kick(q);
        assert_eq!(g.used_idx(q), SIZE, "{name}");
        assert!(g.needs_reset(), "{name}");
        assert_eq!(g.sink.take_messages(), vec![msg(0)], "{name}");
    }
}

/// An indirect table of 32 descriptors in a queue of 16 (virtio 1.2, 2.7.5.3.1 forbids more
/// than the queue size): the chain is refused with used length 0 and none of its buffers is
/// touched, for every backend.
#[test]
fn indirect_chain_longer_than_the_queue_is_refused() {
    for (backend, q) in all() {
        let name = backend.name();
        let mut g = Guest::new(backend);
        let table = DATA_BASE + 0x1_0000;
        for i in 0..32u64 {
            let mut raw = [0u8; 16];
            raw[..8].copy_from_slice(&(DATA_BASE + 0x2_0000 + 0x10 * i).to_le_bytes());
            raw[8..12].copy_from_slice(&0x10u32.to_le_bytes());
            let flags = WRITE | if i < 31 { NEXT } else { 0 };
            raw[12..14].copy_from_slice(&flags.to_le_bytes());
            raw[14..].copy_from_slice(&(i as u16 + 1).to_le_bytes());
            g.mem.write(table + 16 * i, &raw).unwrap();
        }
        g.desc(q, 0, table, 32 * 16, INDIRECT, 0);
        g.publish(q, &[0]);
        g.kick(q);
        assert_eq!(g.used_idx(q), 1, "{name}");
        assert_eq!(g.used(q, 0), (0, 0), "{name}");
        let mut buf = vec![0u8; 0x200];
        g.mem.read(DATA_BASE + 0x2_0000, &mut buf).unwrap();
        assert!(
            buf.iter().all(|&b| b == 0),
            "{name} wrote into a refused chain"
        );
        assert!(!g.needs_reset(), "{name}");
    }
}

/// A device-writable buffer straddling the end of RAM for the backends that fill buffers
/// (rng, console input): whatever they report as used lies in RAM, and the device goes on.
#[test]
fn fill_buffers_straddling_the_end_of_ram_never_report_bytes_outside_it() {
    let mut rx = Console::default();
    rx.push_input(&[b'i'; 1024]);
    for (backend, q) in [
        (
            Box::new(Rng::new(SeededEntropy::new(9))) as Box<dyn VirtioBackend>,
            0,
        ),
        (Box::new(rx), RECEIVEQ),
    ] {
        let name = backend.name();
        let mut g = Guest::new(backend);
        g.desc(q, 0, MEM_SIZE - 64, 256, WRITE, 0);
        g.publish(q, &[0]);
        g.kick(q);
        assert_eq!(g.used_idx(q), 1, "{name}");
        let (id, len) = g.used(q, 0);
        assert_eq!(id, 0);
        assert!(
            len <= 64,
            "{name}: used length {len} counts bytes outside RAM"
        );
        assert!(!g.needs_reset(), "{name}");
    }
}
