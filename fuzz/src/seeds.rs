//! The seed corpus: the conformance suite's scenarios (crates/virq-device/tests/conformance.rs,
//! crates/virq-backends/tests/*.rs) encoded in each harness's input format, so the fuzzer
//! starts from a device that is brought up, has MSI-X programmed and queues running.

use crate::cursor::Enc;
use crate::rings::{DATA_BASE, Setup, Step, ring_addrs};
use crate::transport::{BAR0_ADDR, BAR2_ADDR, Op};

const COMMON: u64 = BAR0_ADDR;
const NOTIFY: u64 = BAR0_ADDR + 0x1000;
const ISR: u64 = BAR0_ADDR + 0x2000;
const TABLE: u64 = BAR2_ADDR;
const PBA: u64 = BAR2_ADDR + 0x8000;
const RING: u64 = 0x1000;

/// (virtio_pci_cfg_cap offset, MSI-X capability offset) of a default device, found by
/// walking its capability list.
fn caps() -> (u16, u16) {
    let h = crate::transport::Harness::new(1, Default::default());
    let cfg = h.rig.dev.config_bytes();
    let (mut pci_cfg, mut msix) = (0, 0);
    let mut p = cfg[0x34] as usize;
    while p != 0 {
        match cfg[p] {
            0x11 => msix = p as u16,
            0x09 if cfg[p + 3] == 5 => pci_cfg = p as u16,
            _ => {}
        }
        p = cfg[p + 1] as usize;
    }
    assert!(
        pci_cfg != 0 && msix != 0,
        "default device has both capabilities"
    );
    (pci_cfg, msix)
}

fn w(addr: u64, width: usize, value: u64) -> Op {
    Op::MmioWrite { addr, width, value }
}

fn r(addr: u64, width: usize) -> Op {
    Op::MmioRead { addr, width }
}

fn cfgw(off: u16, width: usize, value: u32) -> Op {
    Op::CfgWrite { off, width, value }
}

fn ram(addr: u32, data: &[u8]) -> Op {
    Op::Ram {
        addr,
        data: data.to_vec(),
    }
}

/// Map BARs, negotiate VERSION_1 (| extra), optionally program and enable MSI-X, set up
/// queue 0 with a 16-entry ring at 0x1000 and enable it (Rig::setup in the conformance rig).
fn bring_up(msix: bool, extra_features: u64) -> Vec<Op> {
    let (_, msix_cap) = caps();
    let f = (1u64 << 32) | extra_features;
    let mut ops = vec![
        cfgw(0x10, 4, BAR0_ADDR as u32),
        cfgw(0x14, 4, 0),
        cfgw(0x18, 4, BAR2_ADDR as u32),
        cfgw(0x1C, 4, 0),
        cfgw(0x04, 2, 0x0006),
        w(COMMON + 0x14, 1, 0),
        w(COMMON + 0x14, 1, 1),
        w(COMMON + 0x14, 1, 3),
        w(COMMON + 0x08, 4, 0),
        w(COMMON + 0x0C, 4, f & 0xFFFF_FFFF),
        w(COMMON + 0x08, 4, 1),
        w(COMMON + 0x0C, 4, f >> 32),
        w(COMMON + 0x14, 1, 0x0B),
        r(COMMON + 0x14, 1),
    ];
    if msix {
        for i in 0..3u64 {
            ops.push(w(TABLE + 16 * i, 4, 0xFEE0_0000 | i << 12));
            ops.push(w(TABLE + 16 * i + 4, 4, 0));
            ops.push(w(TABLE + 16 * i + 8, 4, 0x4030 + i));
            ops.push(w(TABLE + 16 * i + 12, 4, 0));
        }
        ops.push(cfgw(msix_cap + 2, 2, 0x8000));
        ops.push(w(COMMON + 0x10, 2, 0));
    }
    ops.push(w(COMMON + 0x16, 2, 0));
    ops.push(w(COMMON + 0x18, 2, 16));
    ops.push(w(COMMON + 0x20, 8, RING));
    ops.push(w(COMMON + 0x28, 8, RING + 0x2000));
    ops.push(w(COMMON + 0x30, 8, RING + 0x4000));
    if msix {
        ops.push(w(COMMON + 0x1A, 2, 1));
    }
    ops.push(w(COMMON + 0x1C, 2, 1));
    ops.push(w(COMMON + 0x14, 1, 0x0F));
    ops
}

/// One single-descriptor chain at head `n` of the ring at 0x1000, made available.
fn push(n: u16) -> Vec<Op> {
    let mut desc = Vec::new();
    desc.extend_from_slice(&(0x8000u64 + n as u64 * 0x100).to_le_bytes());
    desc.extend_from_slice(&0x100u32.to_le_bytes());
    desc.extend_from_slice(&2u16.to_le_bytes());
    desc.extend_from_slice(&0u16.to_le_bytes());
    vec![
        ram((RING + 16 * n as u64) as u32, &desc),
        ram((RING + 0x2000 + 4 + 2 * n as u64) as u32, &n.to_le_bytes()),
        ram((RING + 0x2002) as u32, &(n + 1).to_le_bytes()),
    ]
}

fn kick() -> Op {
    w(NOTIFY, 2, 0)
}

fn encode_ops(shape: u8, ops: &[Op]) -> Vec<u8> {
    let mut e = Enc::default();
    e.u8(shape);
    for op in ops {
        op.encode(&mut e);
    }
    e.0
}

/// Seeds for `config_bar`: (name, bytes).
pub fn config_bar() -> Vec<(String, Vec<u8>)> {
    // shape: 1 queue, default table (None) = 0; 2 queues = 1; no MSI-X = 0b0100.
    let (pci_cfg, msix_cap) = caps();
    let mut seeds = Vec::new();
    let mut ops = bring_up(true, 0);
    ops.extend(push(0));
    ops.push(kick());
    ops.push(r(PBA, 8));
    seeds.push(("msix_used_notification".to_string(), encode_ops(0, &ops)));

    let mut ops = bring_up(false, 0);
    ops.extend(push(0));
    ops.push(kick());
    ops.push(Op::CfgRead { off: 6, width: 2 });
    ops.push(r(ISR, 1));
    ops.push(Op::CfgRead { off: 6, width: 2 });
    seeds.push(("intx_isr_read_lowers_line".to_string(), encode_ops(0, &ops)));

    // Row 15: a masked entry collects a Pending Bit, unmasking delivers it once.
    let mut ops = bring_up(true, 0);
    ops.push(w(TABLE + 16 + 12, 4, 1));
    ops.extend(push(0));
    ops.push(kick());
    ops.push(r(PBA, 8));
    ops.push(w(TABLE + 16 + 12, 4, 0));
    ops.push(r(PBA, 8));
    seeds.push(("row15_entry_mask_pending".to_string(), encode_ops(0, &ops)));

    // Function mask, then a config change, then unmask.
    let mut ops = bring_up(true, 0);
    ops.push(cfgw(msix_cap + 2, 2, 0xC000));
    ops.push(Op::Host(0));
    ops.push(cfgw(msix_cap + 2, 2, 0x8000));
    seeds.push((
        "function_mask_config_change".to_string(),
        encode_ops(0, &ops),
    ));

    // Snapshot / restore with a Pending Bit and an in-flight chain.
    let mut ops = bring_up(true, 0);
    ops.push(w(TABLE + 16 + 12, 4, 1));
    ops.extend(push(0));
    ops.push(kick());
    ops.extend(push(1));
    ops.push(Op::Host(4));
    ops.push(kick());
    ops.push(w(TABLE + 16 + 12, 4, 0));
    seeds.push(("snapshot_midflight".to_string(), encode_ops(0, &ops)));

    // INTx with Interrupt Disable toggled while the line is high.
    let mut ops = bring_up(false, 0);
    ops.push(Op::Host(0));
    ops.push(cfgw(0x04, 2, 0x0406));
    ops.push(cfgw(0x04, 2, 0x0006));
    ops.push(Op::Host(4));
    ops.push(Op::Host(3));
    seeds.push(("intx_disable_and_reset".to_string(), encode_ops(0, &ops)));

    // Every width at the interesting config offsets, and a 32-bit write of Message Control
    // at the capability start (row 16).
    let mut ops = Vec::new();
    for off in [
        0u16,
        4,
        6,
        0x10,
        0x34,
        0x3C,
        msix_cap,
        msix_cap + 2,
        0xFE,
        0x100,
        0xFFF,
    ] {
        for width in [1, 2, 4, 8, 3] {
            ops.push(Op::CfgRead { off, width });
        }
    }
    ops.push(cfgw(msix_cap, 4, 0x8000_0000));
    ops.push(cfgw(0x10, 4, 0xFFFF_FFFF));
    ops.push(Op::CfgRead {
        off: 0x10,
        width: 4,
    });
    seeds.push(("config_widths".to_string(), encode_ops(0b0101, &ops)));

    // The virtio_pci_cfg_cap window: BAR0 offset 0x14 (device_status), length 1.
    let mut ops = bring_up(false, 0);
    ops.push(cfgw(pci_cfg + 4, 1, 0));
    ops.push(cfgw(pci_cfg + 8, 4, 0x14));
    ops.push(cfgw(pci_cfg + 12, 4, 1));
    ops.push(Op::CfgRead {
        off: pci_cfg + 16,
        width: 4,
    });
    ops.push(cfgw(pci_cfg + 16, 1, 0));
    seeds.push(("pci_cfg_window".to_string(), encode_ops(0, &ops)));

    // Queue reset (VIRTIO_F_RING_RESET) and vector selectors rewritten mid-run.
    let mut ops = bring_up(true, 1 << 40);
    ops.extend(push(0));
    ops.push(w(COMMON + 0x1A, 2, 7));
    ops.push(kick());
    ops.push(w(COMMON + 0x3A, 2, 1));
    ops.push(r(COMMON + 0x3A, 2));
    seeds.push(("queue_reset_and_vectors".to_string(), encode_ops(1, &ops)));

    // Hostile restores: a snapshot edited so each of restore's refusals is met once, then
    // edits a device could have made itself (accepted), from a device mid-flight (MSI-X on,
    // entry 1 masked with its Pending Bit set, a chain in flight).
    let mut ops = bring_up(true, 0);
    ops.push(w(TABLE + 16 + 12, 4, 1));
    ops.extend(push(0));
    ops.push(kick());
    let at = |i: u64| i << 48;
    let queue = |sub: u64, v: u64| edit(17, (sub << 40) | v);
    for edits in [
        vec![edit(0, 0)],                             // QueueCount
        vec![edit(0, 1)],                             // QueueCount (one more)
        vec![edit(1, 200)],                           // ConfigSpaceLength
        vec![edit(2, at(0) | 0x12)],                  // ReadOnlyConfig: Vendor ID
        vec![edit(3, 0)],                             // MsixTableSize: MSI-X gone
        vec![edit(3, 2 | 5 << 8)],                    // MsixTableSize: 5 entries
        vec![edit(4, at(1) | 1)],                     // PbaShape: a second word
        vec![edit(4, at(0) | 1 << 40)],               // PbaShape: a bit past the table
        vec![edit(9, 1)],                             // Features: no VERSION_1
        vec![edit(12, 0x04)],                         // DeviceStatus: DRIVER_OK alone
        vec![edit(15, 0x80)],                         // IsrStatus
        vec![edit(10, 50)],                           // Vector: msix_config
        vec![queue(9, 50)],                           // Vector: queue 0
        vec![queue(0, 64)],                           // QueueMaxSize
        vec![queue(1, 3)],                            // QueueSize
        vec![queue(6, 0x1001)],                       // QueueRings: misaligned table
        vec![queue(6, 0xFFFF_0000)],                  // QueueRings: outside RAM
        vec![edit(18, 0)],                            // the backend refuses
        vec![edit(19, at(0) | 0x78 << 8)],            // not JSON any more
        vec![],                                       // accepted as taken
        vec![edit(16, 1), edit(6, 0)],                // line and MSI-X copies follow registers
        vec![edit(5, (1 << 40) | 0x2000)],            // entry data rewritten
        vec![queue(3, 1), queue(13, 1), edit(11, 1)], // indices, no signalled_used
        vec![edit(14, 7), edit(7, 1), edit(8, 1), edit(13, 9)],
        vec![edit(5, at(1) | 2 << 40)], // entry 1 unmasked, its Pending Bit set
        vec![queue(12, 1)],             // a notification waiting, Bus Master on
    ] {
        ops.push(Op::Restore(edits));
    }
    ops.push(w(TABLE + 16 + 12, 4, 0));
    ops.extend(push(1));
    ops.push(kick());
    seeds.push(("hostile_restores".to_string(), encode_ops(0, &ops)));

    // Layouts from the input (shape bit 7): the default layout spelled out, brought up with
    // MSI-X and a chain completed; then layouts the device refuses (BAR 1, a misaligned table,
    // overlapping regions, a 3 multiplier, no queues).
    let default_layout = [0, 0, 0, 0, 1, 0, 0, 2, 0, 0, 3, 0, 0, 1, 0, 1, 8, 1u8];
    let mut bytes = vec![0x80];
    bytes.extend(default_layout);
    let mut ops = bring_up(true, 0);
    ops.extend(push(0));
    ops.push(kick());
    bytes.extend(&encode_ops(0, &ops)[1..]);
    seeds.push(("layout_from_input".to_string(), bytes));
    for (i, (at, value)) in [(0, 0x81), (14, 0x10), (4, 0), (12, 6), (17, 0)]
        .into_iter()
        .enumerate()
    {
        let mut bytes = vec![0x80];
        let mut layout = default_layout;
        layout[at] = value;
        bytes.extend(layout);
        seeds.push((format!("layout_refused_{i}"), bytes));
    }

    // INTx: a restore that claims the line is up without an ISR bit, and one with an ISR bit.
    let mut ops = bring_up(false, 0);
    ops.push(Op::Restore(vec![edit(16, 1)]));
    ops.push(Op::Restore(vec![edit(15, 1)]));
    ops.push(Op::Restore(vec![edit(15, 2), edit(16, 0)]));
    ops.push(r(ISR, 1));
    seeds.push(("hostile_restores_intx".to_string(), encode_ops(0, &ops)));
    seeds
}

fn edit(field: u8, value: u64) -> crate::transport::Edit {
    crate::transport::Edit { field, value }
}

fn encode_rings(setup: &Setup, steps: &[Step]) -> Vec<u8> {
    let mut e = Enc::default();
    setup.encode(&mut e);
    for s in steps {
        s.encode(&mut e);
    }
    e.0
}

fn desc(queue: u8, index: u16, addr: u64, len: u32, flags: u16, next: u16) -> Step {
    Step::Desc {
        queue,
        index,
        addr,
        len,
        flags,
        next,
    }
}

const NEXT: u16 = 1;
const WRITE: u16 = 2;
const INDIRECT: u16 = 4;

fn setup(msix: bool, size_log2: u8) -> Setup {
    Setup {
        msix,
        event_idx: false,
        indirect: true,
        size_log2,
        ..Setup::default()
    }
}

/// Header, data, status: a virtio-blk request of `kind` at `sector` (5.2.6).
fn blk_request(kind: u32, sector: u64, data_len: u32, data_flags: u16) -> Vec<Step> {
    let mut header = Vec::new();
    header.extend_from_slice(&kind.to_le_bytes());
    header.extend_from_slice(&0u32.to_le_bytes());
    header.extend_from_slice(&sector.to_le_bytes());
    let mut steps = vec![Step::Ram {
        addr: DATA_BASE as u16,
        data: header,
    }];
    if data_len > 0 {
        steps.push(desc(0, 0, DATA_BASE, 16, NEXT, 1));
        steps.push(desc(
            0,
            1,
            DATA_BASE + 0x100,
            data_len,
            NEXT | data_flags,
            2,
        ));
    } else {
        steps.push(desc(0, 0, DATA_BASE, 16, NEXT, 2));
    }
    steps.push(desc(0, 2, DATA_BASE + 0x80, 1, WRITE, 0));
    steps.push(Step::Avail { queue: 0, head: 0 });
    steps.push(Step::Kick { queue: 0 });
    steps
}

/// Seeds for `queues_blk`, `queues_rng` and `queues_console`: (target, name, bytes).
pub fn rings() -> Vec<(&'static str, String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut add = |target: &'static str, name: &str, setup: &Setup, steps: &[Step]| {
        out.push((target, name.to_string(), encode_rings(setup, steps)));
    };

    // virtio-blk (crates/virq-backends/tests/blk.rs): read, write, flush, get_id, unsupported.
    add(
        "queues_blk",
        "read",
        &setup(true, 4),
        &blk_request(0, 1, 512, WRITE),
    );
    add(
        "queues_blk",
        "write",
        &setup(false, 4),
        &blk_request(1, 2, 512, 0),
    );
    add(
        "queues_blk",
        "flush",
        &setup(true, 3),
        &blk_request(4, 0, 0, 0),
    );
    add(
        "queues_blk",
        "get_id",
        &setup(true, 4),
        &blk_request(8, 0, 20, WRITE),
    );
    add(
        "queues_blk",
        "unsupported",
        &setup(true, 4),
        &blk_request(99, 0, 0, 0),
    );
    add(
        "queues_blk",
        "beyond_capacity",
        &setup(true, 4),
        &blk_request(0, 1 << 40, 512, WRITE),
    );
    // The same requests with a file-backed twin that must behave as the memory disk does:
    // a write then a read of it back, a flush, beyond the end; and on a read-only disk.
    let twin = |read_only: bool| Setup {
        file_twin: true,
        read_only,
        ..setup(true, 4)
    };
    let mut write_read = blk_request(1, 2, 512, 0);
    write_read.push(Step::Ram {
        addr: DATA_BASE as u16 + 0x10,
        data: b"virq".to_vec(),
    });
    write_read.extend(blk_request(1, 3, 512, 0));
    write_read.extend(blk_request(0, 2, 1024, WRITE));
    write_read.extend(blk_request(4, 0, 0, 0));
    write_read.extend(blk_request(0, 1 << 40, 512, WRITE));
    add("queues_blk", "file_twin", &twin(false), &write_read);
    add(
        "queues_blk",
        "file_twin_read_only",
        &twin(true),
        &write_read,
    );
    add(
        "queues_blk",
        "read_only_write",
        &Setup {
            read_only: true,
            ..setup(false, 4)
        },
        &blk_request(1, 2, 512, 0),
    );

    // Two 4 GiB - 1 writable buffers: lengths that sum past 4 GiB.
    let mut steps = blk_request(0, 0, 512, WRITE);
    steps.insert(3, desc(0, 1, DATA_BASE + 0x100, u32::MAX, NEXT | WRITE, 3));
    steps.insert(4, desc(0, 3, 0x1_0000_0000, u32::MAX, NEXT | WRITE, 2));
    add("queues_blk", "lengths_past_4g", &setup(true, 4), &steps);
    // Descriptor loop 0 -> 1 -> 0 (robustness.rs).
    let looped = [
        desc(0, 0, DATA_BASE, 16, NEXT, 1),
        desc(0, 1, DATA_BASE + 0x100, 16, NEXT | WRITE, 0),
        Step::Avail { queue: 0, head: 0 },
        Step::Kick { queue: 0 },
    ];
    add("queues_blk", "descriptor_loop", &setup(true, 4), &looped);
    add("queues_rng", "descriptor_loop", &setup(true, 4), &looped);
    add(
        "queues_console",
        "descriptor_loop",
        &setup(true, 4),
        &looped,
    );
    // The available index far ahead of the ring (2.7.13): DEVICE_NEEDS_RESET.
    let ahead = [
        Step::AvailIdx {
            queue: 0,
            idx: 0x8000,
        },
        Step::Kick { queue: 0 },
        Step::Kick { queue: 0 },
        Step::Misc { what: 0, arg: 0 },
    ];
    add("queues_blk", "avail_far_ahead", &setup(false, 4), &ahead);
    add("queues_rng", "avail_far_ahead", &setup(true, 4), &ahead);
    // Rings outside RAM / misaligned / size not a power of two.
    let (d, a, u) = ring_addrs(0);
    let bad = Setup {
        msix: true,
        raw: true,
        queues: vec![
            (16, 0xFFF0, a, u),
            (3, d + 1, 0x1_0000_0000, u64::MAX - 0xF),
        ],
        ..Setup::default()
    };
    add(
        "queues_blk",
        "bad_rings",
        &bad,
        &[Step::Kick { queue: 0 }, Step::Kick { queue: 1 }],
    );
    // Queue 0 never enabled, notified anyway; then a reset and a proper run.
    let disabled = Setup {
        skip_enable_q0: true,
        ..setup(true, 4)
    };
    let mut steps = vec![Step::Kick { queue: 0 }, Step::Reset];
    steps.extend(blk_request(0, 3, 512, WRITE));
    add("queues_blk", "disabled_then_reset", &disabled, &steps);

    // virtio-rng: one writable buffer, then an indirect table.
    let rng_one = [
        desc(0, 0, DATA_BASE, 64, WRITE, 0),
        Step::Avail { queue: 0, head: 0 },
        Step::Kick { queue: 0 },
    ];
    add("queues_rng", "one_buffer", &setup(true, 4), &rng_one);
    let mut table = Vec::new();
    for i in 0..4u64 {
        table.extend_from_slice(&(DATA_BASE + 0x100 + 0x40 * i).to_le_bytes());
        table.extend_from_slice(&0x40u32.to_le_bytes());
        table.extend_from_slice(&(WRITE | if i < 3 { NEXT } else { 0 }).to_le_bytes());
        table.extend_from_slice(&(i as u16 + 1).to_le_bytes());
    }
    let indirect = [
        Step::Ram {
            addr: DATA_BASE as u16,
            data: table,
        },
        desc(0, 0, DATA_BASE, 64, INDIRECT, 0),
        Step::Avail { queue: 0, head: 0 },
        Step::Kick { queue: 0 },
        Step::Misc { what: 3, arg: 1 },
        Step::Avail { queue: 0, head: 0 },
        Step::Kick { queue: 0 },
        Step::Misc { what: 4, arg: 1 },
    ];
    add(
        "queues_rng",
        "indirect_and_mask",
        &setup(true, 4),
        &indirect,
    );
    add("queues_rng", "intx", &setup(false, 2), &rng_one);

    // virtio-console: input waiting for a receive buffer; a transmit buffer.
    let console = Setup {
        console_input: b"hello\n".to_vec(),
        ..setup(true, 4)
    };
    let steps = [
        desc(0, 0, DATA_BASE, 64, WRITE, 0),
        Step::Avail { queue: 0, head: 0 },
        Step::Kick { queue: 0 },
        Step::Poll,
        Step::Ram {
            addr: DATA_BASE as u16 + 0x200,
            data: b"out\n".to_vec(),
        },
        desc(1, 0, DATA_BASE + 0x200, 4, 0, 0),
        Step::Avail { queue: 1, head: 0 },
        Step::Kick { queue: 1 },
    ];
    add("queues_console", "rx_tx", &console, &steps);
    add("queues_console", "tx_intx", &setup(false, 4), &steps[4..]);
    // The device configuration: every field read at each width, emerg_wr written (output
    // before and after DRIVER_OK, a newline ending the line), and a transmit buffer with a
    // line longer than the line callback keeps.
    let mut config: Vec<Step> = (0..12u16)
        .flat_map(|off| {
            (0..4u16).map(move |w| Step::Misc {
                what: 9,
                arg: off | w << 8,
            })
        })
        .collect();
    for &b in b"emerg\n" {
        config.push(Step::Misc {
            what: 8,
            arg: 8 | u16::from(b) << 8,
        });
    }
    config.push(Step::Ram {
        addr: DATA_BASE as u16 + 0x1000,
        data: vec![b'x'; 255],
    });
    for i in 0..20u16 {
        config.push(desc(1, i, DATA_BASE + 0x1000, 255, NEXT, i + 1));
    }
    config.push(desc(1, 20, DATA_BASE + 0x200, 4, 0, 0));
    config.push(Step::Avail { queue: 1, head: 0 });
    config.push(Step::Kick { queue: 1 });
    add(
        "queues_console",
        "config_and_long_line",
        &setup(true, 5),
        &config,
    );
    add("queues_blk", "config", &setup(true, 4), &config[..48]);
    add("queues_rng", "config", &setup(true, 4), &config[..48]);
    out
}

/// Seeds for `serve_request`: the first byte picks the device (0 blk, 1 rng, 2 console).
pub fn serve() -> Vec<(String, Vec<u8>)> {
    let session = "\
outl 0xcf8 0x80000800
inl 0xcfc
outl 0xcf8 0x80000810
outl 0xcfc 0xc0000000
outl 0xcf8 0x80000804
outw 0xcfc 0x0006
readb 0xc0000014
writeb 0xc0000014 0x1
writeq 0x1000 0x0123456789abcdef
readq 0x1000
write 0x2000 4 0xdeadbeef
read 0x2000 4
memset 0x3000 16 0xff
virq_config_change
virq_info
virq_events 0
virq_msi_lines off
virq_reset
irq_intercept_in ioapic
bogus 1 2 3
readl 0xffffffffffffffff
write 0xfffffffffffffff0 32 0x00
";
    let mut out = Vec::new();
    for device in 0..3u8 {
        let mut b = vec![device];
        b.extend_from_slice(session.as_bytes());
        out.push((format!("session_{device}"), b));
        let mut b = vec![device];
        b.extend_from_slice(serve_driver(device).as_bytes());
        out.push((format!("driver_{device}"), b));
    }
    out
}

/// A driver's whole conversation with `virq serve` (device 0 blk, 1 rng, 2 console): BARs and
/// Command through 0xcf8/0xcfc, the MSI-X table (entry 2 aimed at guest RAM), MSI-X Enable,
/// the virtio status dance, queue 0 on rings in the session's 64 KiB of RAM, one request
/// (a blk read, an rng or console receive buffer) with `DMA` lines on, then the ISR, a
/// configuration change, a masked entry's Pending Bit, Bus Master Enable off and on around a
/// notify, `IRQ msi` lines off, the events; then after `virq_reset` the same over INTx.
fn serve_driver(device: u8) -> String {
    const BAR0: u64 = 0xC000_0000;
    const BAR2: u64 = 0xC001_0000;
    const DESC: u64 = 0x4000;
    const AVAIL: u64 = 0x5000;
    const USED: u64 = 0x6000;
    let cfg = |off: u16| format!("outl 0xcf8 {:#x}\n", 0x8000_0800u32 | u32::from(off));
    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    let desc = |i: u64, addr: u64, len: u32, flags: u16, next: u16| {
        let mut b = addr.to_le_bytes().to_vec();
        b.extend(len.to_le_bytes());
        b.extend(flags.to_le_bytes());
        b.extend(next.to_le_bytes());
        format!("write {:#x} 16 0x{}\n", DESC + 16 * i, hex(&b))
    };
    // The request: virtio-blk reads sector 0 (header, data, status); rng and console get one
    // writable buffer.
    let chain = if device == 0 {
        let header = [0u8; 16];
        format!(
            "write 0x8000 16 0x{}\n{}{}{}",
            hex(&header),
            desc(0, 0x8000, 16, 1, 1),
            desc(1, 0x8200, 512, 3, 2),
            desc(2, 0x8400, 1, 2, 0)
        )
    } else {
        desc(0, 0x8000, 64, 2, 0)
    };
    let avail = |idx: u16| {
        format!(
            "write {:#x} 4 0x0000{}\nwrite {:#x} 2 0x{}\n",
            AVAIL,
            hex(&idx.to_le_bytes()),
            AVAIL + 2 + 2 * u64::from(idx),
            "0000"
        )
    };
    let (_, msix_cap) = caps();
    let bring_up = |msix: bool| {
        let mut t = String::new();
        t += &cfg(0x10);
        t += &format!("outl 0xcfc {BAR0:#x}\n");
        t += &cfg(0x14);
        t += "outl 0xcfc 0x0\n";
        t += &cfg(0x18);
        t += &format!("outl 0xcfc {BAR2:#x}\n");
        t += &cfg(0x1C);
        t += "outl 0xcfc 0x0\n";
        t += &cfg(0x04);
        t += "outw 0xcfc 0x6\n";
        if msix {
            for i in 0..3u64 {
                let e = BAR2 + 16 * i;
                let target = if i == 1 {
                    0x9000
                } else {
                    0xFEE0_0000 | i << 12
                };
                t += &format!("writel {e:#x} {target:#x}\nwritel {:#x} 0x0\n", e + 4);
                t += &format!(
                    "writel {:#x} {:#x}\nwritel {:#x} 0x0\n",
                    e + 8,
                    0x4030 + i,
                    e + 12
                );
            }
            t += &cfg(msix_cap & !3);
            t += "outl 0xcfc 0x80000011\n";
        }
        for status in [0, 1, 3] {
            t += &format!("writeb {:#x} {status:#x}\n", BAR0 + 0x14);
        }
        t += &format!("writel {:#x} 0x1\nwritel {:#x} 0x1\n", BAR0 + 8, BAR0 + 0xC);
        t += &format!("writeb {:#x} 0xb\nreadb {:#x}\n", BAR0 + 0x14, BAR0 + 0x14);
        let (config_vector, queue_vector) = if msix { (0, 1) } else { (0xFFFF, 0xFFFF) };
        t += &format!("writew {:#x} {config_vector:#x}\n", BAR0 + 0x10);
        t += &format!(
            "writew {:#x} 0x0\nwritew {:#x} 0x10\n",
            BAR0 + 0x16,
            BAR0 + 0x18
        );
        t += &format!(
            "writeq {:#x} {DESC:#x}\nwriteq {:#x} {AVAIL:#x}\nwriteq {:#x} {USED:#x}\n",
            BAR0 + 0x20,
            BAR0 + 0x28,
            BAR0 + 0x30
        );
        t += &format!("writew {:#x} {queue_vector:#x}\n", BAR0 + 0x1A);
        t += &format!(
            "writew {:#x} 0x1\nwriteb {:#x} 0xf\n",
            BAR0 + 0x1C,
            BAR0 + 0x14
        );
        t
    };
    let kick = format!("writew {:#x} 0x0\n", BAR0 + 0x1000);
    let mut t = String::from("virq_dma_lines on\n");
    t += &bring_up(true);
    t += &chain;
    t += &avail(1);
    t += &kick;
    t += &format!("read {USED:#x} 16\nreadb {:#x}\n", BAR0 + 0x2000);
    t += "virq_config_change\n";
    // Entry 1 masked: the next completion waits in the PBA until the unmask.
    t += &format!("writel {:#x} 0x1\n", BAR2 + 16 + 12);
    t += &avail(2);
    t += &kick;
    t += &format!(
        "readq {:#x}\nwritel {:#x} 0x0\n",
        BAR2 + 0x8000,
        BAR2 + 16 + 12
    );
    // Bus Master Enable off: the notify waits for it.
    t += &cfg(0x04);
    t += "outw 0xcfc 0x2\n";
    t += &avail(3);
    t += &kick;
    t += "outw 0xcfc 0x6\n";
    t += "virq_msi_lines off\n";
    t += &avail(4);
    t += &kick;
    t += "virq_msi_lines on\nvirq_events 0\nvirq_reset\n";
    t += &bring_up(false);
    t += &chain;
    t += &avail(1);
    t += &kick;
    t += &format!("readb {:#x}\n", BAR0 + 0x2000);
    t += &cfg(0x04);
    t += "outw 0xcfc 0x406\nvirq_config_change\noutw 0xcfc 0x6\n";
    t += &format!(
        "readb {:#x}\nvirq_dma_lines off\nvirq_dma_lines maybe\n",
        BAR0 + 0x2000
    );
    t
}

/// Seeds for `ring`: (name, bytes).
pub fn ring() -> Vec<(String, Vec<u8>)> {
    use crate::ring::{Header, Op};
    let encode = |h: &Header, ops: &[Op]| {
        let mut e = Enc::default();
        h.encode(&mut e);
        for op in ops {
            op.encode(&mut e);
        }
        e.0
    };
    let d = |index: u16, addr: u64, len: u32, flags: u16, next: u16| Op::Desc {
        index,
        addr,
        len,
        flags,
        next,
    };
    let plain = Header {
        size_log2: 4,
        ..Header::default()
    };
    let evidx = Header {
        event_idx: true,
        ..plain.clone()
    };
    let mut out = Vec::new();
    // A two-descriptor chain popped, walked and completed, then the interrupt decision.
    out.push((
        "chain_pop_used".to_string(),
        encode(
            &plain,
            &[
                d(0, 0x8000, 16, NEXT, 1),
                d(1, 0x9000, 512, WRITE, 0),
                Op::Avail { head: 0 },
                Op::Pop { n: 4 },
                Op::Used { which: 0, len: 512 },
                Op::Decide,
                Op::Enable,
            ],
        ),
    ));
    // An indirect table of three buffers written through RAM.
    let mut table = Vec::new();
    for i in 0..3u64 {
        table.extend_from_slice(&(0xA000 + 0x100 * i).to_le_bytes());
        table.extend_from_slice(&0x100u32.to_le_bytes());
        table.extend_from_slice(&(WRITE | if i < 2 { NEXT } else { 0 }).to_le_bytes());
        table.extend_from_slice(&(i as u16 + 1).to_le_bytes());
    }
    out.push((
        "indirect".to_string(),
        encode(
            &plain,
            &[
                Op::Ram {
                    addr: 0x5000,
                    data: table,
                },
                d(0, 0x5000, 48, INDIRECT, 0),
                Op::Avail { head: 0 },
                Op::Pop { n: 1 },
                Op::Used {
                    which: 0,
                    len: 0x300,
                },
            ],
        ),
    ));
    // EVENT_IDX: used_event crossed and not, avail_event published.
    out.push((
        "event_idx".to_string(),
        encode(
            &evidx,
            &[
                d(0, 0x8000, 1, 0, 0),
                Op::Suppress {
                    flags: 0,
                    used_event: 1,
                },
                Op::Avail { head: 0 },
                Op::Avail { head: 0 },
                Op::Pop { n: 2 },
                Op::Used { which: 0, len: 1 },
                Op::Decide,
                Op::Used { which: 1, len: 1 },
                Op::Decide,
                Op::Enable,
            ],
        ),
    ));
    // A loop, a head out of range, an index far ahead.
    out.push((
        "broken".to_string(),
        encode(
            &plain,
            &[
                d(0, 0x8000, 1, NEXT, 1),
                d(1, 0x8000, 1, NEXT, 0),
                Op::Avail { head: 0 },
                Op::Avail { head: 40 },
                Op::Pop { n: 2 },
                Op::Used { which: 1, len: 0 },
                Op::AvailIdx { idx: 0x8000 },
                Op::Pop { n: 1 },
            ],
        ),
    ));
    // Every seed again with the device reaching RAM through a memory without a flat region
    // (header flag bit 2).
    let no_flat: Vec<(String, Vec<u8>)> = out
        .iter()
        .map(|(name, bytes)| {
            let mut b = bytes.clone();
            b[0] |= 4;
            (format!("{name}_no_flat"), b)
        })
        .collect();
    out.extend(no_flat);
    out
}

/// Seeds for `judge`: the events the doctor reads from each of its test fixtures, as JSON
/// lines (at most 48 a fixture), and two fixtures' events interleaved as two sources.
pub fn judge() -> Vec<(String, Vec<u8>)> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../crates/virq-doctor/tests/fixtures");
    let mut names: Vec<_> = std::fs::read_dir(&dir)
        .expect("the doctor's fixtures")
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect();
    names.sort();
    let mut per_file = Vec::new();
    for name in &names {
        let bytes = std::fs::read(dir.join(name)).expect("a readable fixture");
        let Ok((events, _)) =
            virq_doctor::parse_to_vec(name, &bytes[..], virq_doctor::ParseLimits::default())
        else {
            continue;
        };
        if events.is_empty() {
            continue;
        }
        per_file.push((
            name.clone(),
            events.into_iter().take(48).collect::<Vec<_>>(),
        ));
    }
    let jsonl = |events: &[virq_events::Event]| {
        let mut out = Vec::new();
        for e in events {
            out.extend(serde_json::to_vec(e).expect("an event serialises"));
            out.push(b'\n');
        }
        out
    };
    let mut out: Vec<(String, Vec<u8>)> = per_file
        .iter()
        .map(|(name, events)| (format!("{name}.jsonl"), jsonl(events)))
        .collect();
    if per_file.len() >= 2 {
        let (a, b) = (&per_file[0].1, &per_file[1].1);
        let mixed: Vec<_> = a
            .iter()
            .zip(b)
            .flat_map(|(x, y)| [x.clone(), y.clone()])
            .collect();
        out.push(("two_sources_interleaved.jsonl".to_string(), jsonl(&mixed)));
    }
    out
}

/// An `!pci` dump in virq's earlier layout, whose decoded MSI-X block lists the table entry by
/// entry (`Entry[n] Address:... Data:... Masked:... Pending:...`): no fixture has it.
const PCI_MSIX_ENTRY_LINES: &str = "\
0: kd> !pci 100 0 4 0

PCI Configuration Space (Segment:0000 Bus:00 Device:04 Function:00)
Common Header:
    00: VendorID       1af4      Red Hat, Inc.
    02: DeviceID       1042
    04: Command        0406      MemSpaceEn BusInitiate InterruptDis
    06: Status         0010      CapList
    10: BAR0           c0000004
    14: BAR1           00000000
    18: BAR2           c0010004
    1c: BAR3           00000000
    34: CapPtr         98
    98: CapID          11        MSI-X Capability
        MessageControl 8002  TableSize:3 FunctionMask:0 Enable:1
        Entry[0]  Address:00000000fee00000 Data:000000b1 Masked:0 Pending:0
        Entry[1]  Address:00000000fee01000 Data:000000c1 Masked:1 Pending:1
        Entry[2]  Address:00000000fee00000 Data:000000d1 Masked:no Pending:off
";

/// Seeds for `doctor_parse` beside the doctor's fixtures (which `scripts/fuzz.sh` passes as
/// they are): formats no fixture has.
pub fn doctor_parse() -> Vec<(String, Vec<u8>)> {
    // A kernel log whose second line passes the harness's 4096-byte line limit.
    let mut long = b"[    1.000000] virtio_pci 0000:00:04.0: enabling device\n".to_vec();
    long.extend(b"[    1.100000] virtio_pci 0000:00:04.0: ");
    long.extend(std::iter::repeat_n(b'x', 5000));
    long.extend(b"\n[    1.200000] virtio_blk virtio0: 1/0/0 default/read/poll queues\n");
    vec![
        (
            "pci_msix_entry_lines.txt".to_string(),
            PCI_MSIX_ENTRY_LINES.as_bytes().to_vec(),
        ),
        ("line_past_the_limit.log".to_string(), long),
    ]
}

/// Seeds for `win_text` beside the doctor's fixtures: the sample INF the Windows 7 model
/// installs from, and the driver's power prints (log format line 12) as the model writes them
/// and as a capture shows them (DbgView columns, a driver's prefix, KMDF's state names), which
/// no fixture has: without them the fuzzer never got past the reader's first check.
pub fn win_text() -> Vec<(String, Vec<u8>)> {
    use virq_win7::dbgprint::{format_d0_entry_line, format_d0_exit_line};
    let power = [
        format_d0_exit_line(3),
        format_d0_entry_line(3),
        "00000012\t0.51234567\tviostor: VIRTIO: EvtDeviceD0Entry PreviousState=WdfPowerDeviceD3Final"
            .to_string(),
        "00000013\t9.00000000\tVIRTIO: EvtDeviceD0Exit TargetState=d2.".to_string(),
        "VIRTIO: EvtDeviceD0Entry previousstate=D0Final,".to_string(),
    ];
    vec![
        (
            "pci_msix_entry_lines.txt".to_string(),
            PCI_MSIX_ENTRY_LINES.as_bytes().to_vec(),
        ),
        (
            "virtio_blk_sample.inf".to_string(),
            virq_win7::VIRTIO_BLK_SAMPLE_INF.as_bytes().to_vec(),
        ),
        (
            "power_prints.log".to_string(),
            power.join("\n").into_bytes(),
        ),
    ]
}
