//! Property tests: random sequences of configuration and BAR accesses of every width, notifies,
//! ISR reads, resets, configuration changes and full driver bring-ups. The device must never
//! panic, and after every single step the interrupt invariants of the failure catalogue
//! (rows 14-22) must hold.

use proptest::prelude::*;
use virq_device::testing::*;
use virq_device::{TransportOptions, common as cc, features, status};
use virq_events::NO_VECTOR;

#[derive(Clone, Debug)]
enum Op {
    CfgRead {
        off: u16,
        width: usize,
    },
    CfgWrite {
        off: u16,
        width: usize,
        value: u32,
    },
    Bar0Read {
        off: u64,
        width: usize,
    },
    Bar0Write {
        off: u64,
        width: usize,
        value: u64,
    },
    Bar2Read {
        off: u64,
        width: usize,
    },
    Bar2Write {
        off: u64,
        width: usize,
        value: u64,
    },
    Notify {
        queue: u16,
        width: usize,
    },
    IsrRead,
    Reset,
    ConfigChanged,
    /// A complete, well-behaved driver bring-up (MSI-X or INTx), with its own rings.
    BringUp {
        msix: bool,
        event_idx: bool,
    },
    /// Make a chain available on a helper ring and notify its queue.
    Kick {
        queue: u16,
    },
    SetCommand {
        intx_disable: bool,
    },
    SetMsixControl {
        enable: bool,
        mask: bool,
        dword: bool,
    },
    MaskEntry {
        entry: u16,
        masked: bool,
    },
    SetVector {
        queue: Option<u16>,
        vector: u16,
    },
    /// Reset a queue, point its descriptor table outside RAM and enable it (DEVICE_NEEDS_RESET).
    EnableBadQueue {
        queue: u16,
    },
}

fn width_cfg() -> impl Strategy<Value = usize> {
    prop_oneof![4 => Just(1usize), 4 => Just(2), 4 => Just(4), 1 => Just(3)]
}

fn width_bar() -> impl Strategy<Value = usize> {
    prop_oneof![3 => Just(1usize), 3 => Just(2), 3 => Just(4), 3 => Just(8), 1 => Just(3)]
}

fn value64() -> impl Strategy<Value = u64> {
    prop_oneof![
        any::<u64>(),
        0u64..4,
        Just(0xFFFF),
        Just(0x8000),
        Just(0xC000),
        Just(u64::MAX),
        0u64..0x2_0000,
    ]
}

fn op() -> impl Strategy<Value = Op> {
    let cfg_off = prop_oneof![
        0u16..0x40,
        // Vendor capabilities, the PCI_CFG window and the MSI-X capability.
        0x40u16..0xB0,
        Just(0x04u16),
        0x100u16..0x110,
        0xFF8u16..0x1008,
    ];
    let bar0_off = prop_oneof![
        0u64..0x40,
        0x1000u64..0x1010,
        0x2000u64..0x2008,
        0x3000u64..0x3008,
        0u64..0x4010,
    ];
    let bar2_off = prop_oneof![0u64..0x50, 0x8000u64..0x8010, 0u64..0x1_0010];
    prop_oneof![
        2 => (cfg_off.clone(), width_cfg()).prop_map(|(off, width)| Op::CfgRead { off, width }),
        4 => (cfg_off, width_cfg(), any::<u32>())
            .prop_map(|(off, width, value)| Op::CfgWrite { off, width, value }),
        3 => (bar0_off.clone(), width_bar()).prop_map(|(off, width)| Op::Bar0Read { off, width }),
        5 => (bar0_off, width_bar(), value64())
            .prop_map(|(off, width, value)| Op::Bar0Write { off, width, value }),
        2 => (bar2_off.clone(), width_bar()).prop_map(|(off, width)| Op::Bar2Read { off, width }),
        3 => (bar2_off, width_bar(), value64())
            .prop_map(|(off, width, value)| Op::Bar2Write { off, width, value }),
        2 => (0u16..4, prop_oneof![Just(2usize), Just(4), Just(1)])
            .prop_map(|(queue, width)| Op::Notify { queue, width }),
        3 => Just(Op::IsrRead),
        1 => Just(Op::Reset),
        2 => Just(Op::ConfigChanged),
        2 => (any::<bool>(), any::<bool>())
            .prop_map(|(msix, event_idx)| Op::BringUp { msix, event_idx }),
        5 => (0u16..4).prop_map(|queue| Op::Kick { queue }),
        2 => any::<bool>().prop_map(|intx_disable| Op::SetCommand { intx_disable }),
        3 => (any::<bool>(), any::<bool>(), any::<bool>())
            .prop_map(|(enable, mask, dword)| Op::SetMsixControl { enable, mask, dword }),
        2 => (0u16..5, any::<bool>()).prop_map(|(entry, masked)| Op::MaskEntry { entry, masked }),
        2 => (prop::option::of(0u16..4), prop_oneof![0u16..5, Just(NO_VECTOR), any::<u16>()])
            .prop_map(|(queue, vector)| Op::SetVector { queue, vector }),
        1 => (0u16..4).prop_map(|queue| Op::EnableBadQueue { queue }),
    ]
}

/// Device shapes: queue count and MSI-X table size (None = 1 + queues, Some(0) = no MSI-X).
fn shape() -> impl Strategy<Value = (u16, Option<u16>)> {
    (
        1u16..4,
        prop_oneof![4 => Just(None), 1 => Just(Some(1u16)), 1 => Just(Some(0u16))],
    )
}

struct State {
    rig: Rig,
    rings: Vec<Ring>,
}

/// A driver bring-up that tolerates any table size (vectors clamp to the table).
fn bring_up(st: &mut State, msix: bool, event_idx: bool) {
    let rig = &mut st.rig;
    rig.map_bars();
    let mut f = features::VERSION_1;
    if event_idx {
        f |= features::RING_EVENT_IDX;
    }
    assert!(rig.negotiate(f), "a valid feature set is accepted");
    let msix = msix && rig.msix_cap().is_some();
    let table = if rig.msix_cap().is_some() {
        rig.table_size()
    } else {
        0
    };
    if msix {
        for i in 0..table {
            rig.program_entry(i, false);
        }
        rig.set_msix_control(0x8000);
        rig.set_common16(cc::MSIX_CONFIG, 0);
    }
    let n = rig.common16(cc::NUM_QUEUES);
    st.rings.clear();
    for q in 0..n {
        let ring = rig.configure_queue(q, Rig::ring_base(q));
        if msix {
            rig.set_queue_vector(q, (q + 1).min(table - 1));
        }
        rig.enable_queue(q);
        st.rings.push(ring);
    }
    let s = rig.device_status();
    rig.set_device_status(s | status::DRIVER_OK);
}

fn apply(st: &mut State, op: &Op) {
    let msix_cap = st.rig.msix_cap();
    let dev = &mut st.rig.dev;
    match *op {
        Op::CfgRead { off, width } => {
            let mut b = vec![0u8; width];
            dev.config_read(off, &mut b);
        }
        Op::CfgWrite { off, width, value } => {
            let bytes = value.to_le_bytes();
            let mut data = bytes.to_vec();
            data.resize(width, 0);
            dev.config_write(off, &data);
        }
        Op::Bar0Read { off, width } => {
            let mut b = vec![0u8; width];
            dev.bar_read(0, off, &mut b);
        }
        Op::Bar0Write { off, width, value } => {
            let mut data = value.to_le_bytes().to_vec();
            data.resize(width, 0);
            dev.bar_write(0, off, &data);
        }
        Op::Bar2Read { off, width } => {
            let mut b = vec![0u8; width];
            dev.bar_read(2, off, &mut b);
        }
        Op::Bar2Write { off, width, value } => {
            let mut data = value.to_le_bytes().to_vec();
            data.resize(width, 0);
            dev.bar_write(2, off, &data);
        }
        Op::Notify { queue, width } => {
            let data = (queue as u32).to_le_bytes();
            dev.bar_write(0, 0x1000 + 4 * queue as u64, &data[..width]);
        }
        Op::IsrRead => {
            let mut b = [0u8; 1];
            dev.bar_read(0, 0x2000, &mut b);
        }
        Op::Reset => dev.bar_write(0, cc::DEVICE_STATUS, &[0]),
        Op::ConfigChanged => dev.config_changed(),
        Op::BringUp { msix, event_idx } => bring_up(st, msix, event_idx),
        Op::Kick { queue } => {
            if let Some(ring) = st.rings.get_mut(queue as usize) {
                ring.push();
            }
            dev.bar_write(0, 0x1000 + 4 * queue as u64, &queue.to_le_bytes());
        }
        Op::SetCommand { intx_disable } => {
            let mut b = [0u8; 2];
            dev.config_read(CFG_COMMAND, &mut b);
            let mut cmd = u16::from_le_bytes(b);
            if intx_disable {
                cmd |= CMD_INTX_DISABLE;
            } else {
                cmd &= !CMD_INTX_DISABLE;
            }
            dev.config_write(CFG_COMMAND, &cmd.to_le_bytes());
        }
        Op::SetMsixControl {
            enable,
            mask,
            dword,
        } => {
            if let Some(c) = msix_cap {
                let ctl = (enable as u16) << 15 | (mask as u16) << 14;
                if dword {
                    let v = (ctl as u32) << 16 | CAP_MSIX as u32;
                    dev.config_write(c, &v.to_le_bytes());
                } else {
                    dev.config_write(c + 2, &ctl.to_le_bytes());
                }
            }
        }
        Op::MaskEntry { entry, masked } => {
            dev.bar_write(2, 16 * entry as u64 + 12, &(masked as u32).to_le_bytes());
        }
        Op::SetVector { queue, vector } => match queue {
            None => dev.bar_write(0, cc::MSIX_CONFIG, &vector.to_le_bytes()),
            Some(q) => {
                dev.bar_write(0, cc::QUEUE_SELECT, &q.to_le_bytes());
                dev.bar_write(0, cc::QUEUE_MSIX_VECTOR, &vector.to_le_bytes());
            }
        },
        Op::EnableBadQueue { queue } => {
            dev.bar_write(0, cc::QUEUE_SELECT, &queue.to_le_bytes());
            dev.bar_write(0, cc::QUEUE_RESET, &1u16.to_le_bytes());
            dev.bar_write(0, cc::QUEUE_DESC, &0x1_0000_0000u64.to_le_bytes());
            dev.bar_write(0, cc::QUEUE_ENABLE, &1u16.to_le_bytes());
        }
    }
}

/// The invariants that must hold after every step.
fn check(st: &mut State, before_msgs: usize, op: &Op) -> Result<(), TestCaseError> {
    let rig = &mut st.rig;
    let msix_on = rig.dev.msix_enabled();
    let line = rig.dev.intx_level();
    let cfg = rig.dev.config_bytes();
    let command = u16::from_le_bytes([cfg[4], cfg[5]]);
    let pci_status = u16::from_le_bytes([cfg[6], cfg[7]]);
    let isr = rig.dev.isr_status();

    // The sink sees exactly the level the device presents, and each change once.
    prop_assert_eq!(rig.sink.line(), line, "sink line vs intx_level");
    prop_assert_eq!(rig.sink.raises() - rig.sink.lowers(), line as u64);
    // Row 14: MSI-X enabled => the pin is never asserted.
    if msix_on {
        prop_assert!(!line, "line high with MSI-X enabled");
    }
    // Rows 20/22: a high line needs MSI-X off, Interrupt Disable clear and an ISR bit set.
    if line {
        prop_assert!(!msix_on);
        prop_assert_eq!(
            command & CMD_INTX_DISABLE,
            0,
            "line high with Command bit 10"
        );
        prop_assert_ne!(isr, 0, "line high with ISR 0");
    }
    // Row 20: Status bit 3 is the OR of the ISR bits while MSI-X is off.
    prop_assert_eq!(
        pci_status & STATUS_INTERRUPT != 0,
        isr != 0 && !msix_on,
        "Status bit 3"
    );
    prop_assert_ne!(pci_status & STATUS_CAP_LIST, 0);

    // Rows 17/18: every selector is NO_VECTOR or a valid table index.
    let table = rig.dev.msix().map_or(0, |m| m.table_size());
    let ok = |v: u16| v == NO_VECTOR || v < table;
    prop_assert!(
        ok(rig.dev.msix_config()),
        "msix_config {:#x}",
        rig.dev.msix_config()
    );
    let mut b = [0u8; 2];
    rig.dev.bar_read(0, cc::MSIX_CONFIG, &mut b);
    prop_assert_eq!(u16::from_le_bytes(b), rig.dev.msix_config());
    for q in 0..rig.dev.num_queues() {
        let v = rig.dev.queue_msix_vector(q).unwrap();
        prop_assert!(ok(v), "queue {} vector {:#x}", q, v);
    }

    // Post-conditions of the steps that have one.
    match op {
        // Rows 17/19: a reset leaves status 0, ISR 0, the pin low and every selector NO_VECTOR.
        Op::Reset => {
            prop_assert_eq!(rig.dev.device_status(), 0);
            prop_assert_eq!(isr, 0);
            prop_assert!(!line);
            prop_assert_eq!(rig.dev.msix_config(), NO_VECTOR);
            for q in 0..rig.dev.num_queues() {
                prop_assert_eq!(rig.dev.queue_msix_vector(q), Some(NO_VECTOR));
            }
        }
        // Row 22: the ISR read cleared every bit and so deasserted the pin.
        Op::IsrRead => {
            prop_assert_eq!(isr, 0);
            prop_assert!(!line);
        }
        _ => {}
    }

    // PBA: bits only for existing entries; a pending entry is held back by a mask (or by
    // MSI-X being off, or by Bus Master Enable being clear); the PBA as read through BAR2
    // matches.
    if let Some(m) = rig.dev.msix().cloned() {
        for (w, word) in m.pba.iter().enumerate() {
            for bit in 0..64 {
                if word >> bit & 1 == 0 {
                    continue;
                }
                let e = w * 64 + bit;
                prop_assert!(e < table as usize, "PBA bit {} beyond table {}", e, table);
                prop_assert!(
                    !m.enabled || m.function_masked || !m.bus_master || m.table[e].masked(),
                    "entry {} pending while deliverable",
                    e
                );
            }
        }
        let mut pba = [0u8; 8];
        rig.dev.bar_read(2, 0x8000, &mut pba);
        prop_assert_eq!(u64::from_le_bytes(pba), m.pba[0]);

        // Row 15: a message leaves only while MSI-X is enabled and the function unmasked, and
        // it is the content of an unmasked table entry.
        let msgs = rig.sink.messages();
        if msgs.len() > before_msgs {
            prop_assert!(
                m.enabled && !m.function_masked,
                "message while disabled/masked"
            );
            if !matches!(op, Op::BringUp { .. }) {
                for (addr, data) in &msgs[before_msgs..] {
                    prop_assert!(
                        m.table
                            .iter()
                            .any(|e| !e.masked() && e.address == *addr && e.data == *data),
                        "message {:#x}/{:#x} matches no unmasked entry",
                        addr,
                        data
                    );
                }
            }
        }
    } else {
        prop_assert_eq!(rig.sink.messages().len(), 0, "message without MSI-X");
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Any sequence of accesses keeps the interrupt invariants after every step.
    #[test]
    fn interrupt_invariants_hold_after_every_step(
        (queues, table) in shape(),
        ops in prop::collection::vec(op(), 1..80),
    ) {
        let rig = Rig::with_options(queues, TransportOptions {
            msix_table_size: table,
            ..TransportOptions::default()
        });
        let mut st = State { rig, rings: Vec::new() };
        check(&mut st, 0, &Op::IsrRead)?;
        for op in &ops {
            let before = st.rig.sink.messages().len();
            apply(&mut st, op);
            check(&mut st, before, op)?;
        }
    }

    /// Widening a configuration read never changes what the bytes say, whatever was written
    /// before (the space is byte-decoded at every offset and width).
    #[test]
    fn config_reads_are_byte_consistent_after_random_writes(
        writes in prop::collection::vec((0u16..0x100, width_cfg(), any::<u32>()), 0..40),
        off in 0u16..0xFD,
    ) {
        let mut rig = Rig::new(2);
        for (o, w, v) in writes {
            // Keep the PCI_CFG window out of it: its data reads have BAR side effects.
            let pci_cfg = rig.virtio_cap(virq_device::cfg_type::PCI_CFG);
            if o + w as u16 > pci_cfg && o < pci_cfg + 20 {
                continue;
            }
            let mut data = v.to_le_bytes().to_vec();
            data.resize(w, 0);
            rig.dev.config_write(o, &data);
        }
        let pci_cfg = rig.virtio_cap(virq_device::cfg_type::PCI_CFG);
        prop_assume!(off + 4 <= pci_cfg + 16 || off >= pci_cfg + 20);
        let bytes: Vec<u8> = (off..off + 4).map(|o| rig.cfg8(o)).collect();
        prop_assert_eq!(rig.cfg16(off), u16::from_le_bytes([bytes[0], bytes[1]]));
        prop_assert_eq!(rig.cfg32(off), u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]));
        // Read-only identity never moves.
        prop_assert_eq!(rig.cfg32(0), 0x113F_1AF4);
        prop_assert_eq!(rig.cfg8(0x34), 0x40);
    }

    /// Any vector value written to any selector reads back as itself when the table has that
    /// entry and as NO_VECTOR otherwise (catalogue row 18).
    #[test]
    fn vector_read_back_is_value_or_no_vector(
        queues in 1u16..5,
        table in prop::option::of(1u16..8),
        writes in prop::collection::vec((prop::option::of(0u16..6), any::<u16>()), 1..30),
    ) {
        let mut rig = Rig::with_options(queues, TransportOptions {
            msix_table_size: table,
            ..TransportOptions::default()
        });
        let size = table.unwrap_or(queues + 1);
        for (q, v) in writes {
            let expect = if v < size { v } else { NO_VECTOR };
            match q {
                None => {
                    rig.dev.bar_write(0, cc::MSIX_CONFIG, &v.to_le_bytes());
                    let mut b = [0u8; 2];
                    rig.dev.bar_read(0, cc::MSIX_CONFIG, &mut b);
                    prop_assert_eq!(u16::from_le_bytes(b), expect);
                }
                Some(q) => {
                    rig.dev.bar_write(0, cc::QUEUE_SELECT, &q.to_le_bytes());
                    rig.dev.bar_write(0, cc::QUEUE_MSIX_VECTOR, &v.to_le_bytes());
                    let mut b = [0u8; 2];
                    rig.dev.bar_read(0, cc::QUEUE_MSIX_VECTOR, &mut b);
                    let expect = if q < queues { expect } else { NO_VECTOR };
                    prop_assert_eq!(u16::from_le_bytes(b), expect);
                }
            }
        }
    }
}
