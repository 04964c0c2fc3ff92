//! A hostile guest against each backend behind the real transport: the guest programs the
//! device through configuration cycles and MMIO (the device toolkit's `Rig`) and builds its rings in RAM, then hands over chains that loop,
//! outgrow the queue, add up past 4 GiB or point outside (or across the end of) guest RAM.
//! The spec's answers: an error status in the request where there is a status byte to write
//! (virtio 1.2, 5.2.6), used length 0 where there is none, DEVICE_NEEDS_RESET with one
//! configuration interrupt for a corrupt ring (2.1.2); and one notify never completes more
//! chains than the queue holds.

use std::sync::Arc;

use virq_backends::console::{RECEIVEQ, TRANSMITQ};
use virq_backends::{Block, BlockConfig, Console, MemoryStorage, Rng, SeededEntropy};
use virq_device::testing::*;
use virq_device::{GuestMemory, TransportOptions, VecMemory, VirtioBackend, features, status};
use virq_spec::blk::{VIRTIO_BLK_S_IOERR, VIRTIO_BLK_T_IN};

/// Queue size of every ring here.
const SIZE: u16 = RING_SIZE;

/// The device behind the toolkit's rig, brought up with MSI-X (config on entry 0, queue q on
/// entry q + 1) and INDIRECT_DESC, every queue of `SIZE` entries enabled; the methods name
/// queues by index.
struct Guest {
    r: Rig,
    rings: Vec<Ring>,
    sink: Arc<RecordingSink>,
    mem: VecMemory,
}

impl Guest {
    fn new(backend: Box<dyn VirtioBackend>) -> Guest {
        let mut r = Rig::on_memory(backend, TransportOptions::default(), guest_memory());
        let rings = r.bring_up(&Setup {
            features: features::VERSION_1 | features::RING_INDIRECT_DESC,
            ..Setup::msix()
        });
        assert_eq!(r.dev.device_status() & status::DEVICE_NEEDS_RESET, 0);
        let (sink, mem) = (r.sink.clone(), r.mem.clone());
        Guest {
            r,
            rings,
            sink,
            mem,
        }
    }

    fn desc(&self, q: u16, i: u16, addr: u64, len: u32, flags: u16, next: u16) {
        self.rings[q as usize].set_desc(i, addr, len, flags, next);
    }

    fn publish(&mut self, q: u16, heads: &[u16]) {
        self.rings[q as usize].publish(heads);
    }

    fn kick(&mut self, q: u16) {
        self.r.kick(q);
    }

    fn used_idx(&self, q: u16) -> u16 {
        self.rings[q as usize].used_idx()
    }

    fn used(&self, q: u16, i: u16) -> (u32, u32) {
        self.rings[q as usize].used_elem(i)
    }

    fn byte(&self, addr: u64) -> u8 {
        guest_byte(&self.mem, addr)
    }

    fn needs_reset(&self) -> bool {
        self.r.dev.device_status() & status::DEVICE_NEEDS_RESET != 0
    }

    fn counter(&self, name: &str) -> u64 {
        self.r.dev.backend().snapshot()["counters"][name]
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
