//! Conformance suite for the virtio-pci modern transport.
//!
//! One test per normative behaviour. Every test drives the device only through PCI
//! configuration cycles, MMIO at the programmed BAR addresses (or `bar_read`/`bar_write`
//! where the BAR address is irrelevant) and guest-RAM writes for the rings, and checks what
//! a guest or the platform could observe: read-backs, MSI-X messages, the INTx level,
//! PCI Status bit 3 and the device's recorded events.
//!
//! Failure catalogue rows 14-22 (device side) each have at least one test named `rowNN_...`.

use virq_device::testing::*;
use virq_device::{TransportOptions, cfg_type, common as cc, features, status};
use virq_events::{EventKind, InterruptCause, NO_VECTOR, Selector, SuppressReason};

// =====================================================================================
// PCI configuration header
// =====================================================================================

/// virtio 1.2, 4.1.2: vendor ID 0x1AF4 and a modern device ID of 0x1040 + the virtio device ID.
#[test]
fn vendor_id_is_1af4_and_device_id_is_0x1040_plus_virtio_id() {
    for (id, expect) in [(2u16, 0x1042u16), (4, 0x1044), (0xFF, 0x113F)] {
        let mut r = Rig::with_backend(
            Box::new(TestBackend::new(1, id, 0, 256)),
            TransportOptions::default(),
        );
        assert_eq!(r.cfg16(0x00), 0x1AF4);
        assert_eq!(r.cfg16(0x02), expect);
        assert_eq!(r.cfg32(0x00), 0x1AF4 | (expect as u32) << 16);
    }
}

/// virtio 1.2, 4.1.2.1: a non-transitional device has a PCI Revision ID of 1 or higher (we
/// present exactly 1).
#[test]
fn revision_id_is_1() {
    let mut r = Rig::new(1);
    assert_eq!(r.cfg8(0x08), 1);
}

/// PCI 3.0, 6.2.1 and 6.2.4: header type 0 (single function), Interrupt Pin INTA# (1), no
/// I/O BARs and no expansion ROM.
#[test]
fn header_type_0_interrupt_pin_inta_and_no_rom() {
    let mut r = Rig::new(2);
    assert_eq!(r.cfg8(0x0E), 0x00);
    assert_eq!(r.cfg8(0x3D), 1);
    r.cfg_write(0x30, 4, 0xFFFF_FFFF);
    assert_eq!(r.cfg32(0x30), 0, "expansion ROM BAR is not implemented");
}

/// PCI 3.0, 6.2.2: header fields the device owns (IDs, revision, class code, header type,
/// subsystem IDs, capability pointer, interrupt pin) are read-only.
#[test]
fn read_only_header_fields_ignore_writes() {
    let mut r = Rig::new(2);
    let before = r.dev.config_bytes();
    for (off, width) in [
        (0x00u16, 4usize),
        (0x08, 4),
        (0x0E, 1),
        (0x2C, 4),
        (0x34, 1),
        (0x3D, 1),
    ] {
        r.cfg_write(off, width, 0xFFFF_FFFF);
        r.cfg_write(off, width, 0);
        r.cfg_write(off, width, 0x5A5A_5A5A);
    }
    let after = r.dev.config_bytes();
    for off in [
        0x00, 0x01, 0x02, 0x03, 0x08, 0x09, 0x0A, 0x0B, 0x0E, 0x2C, 0x2D, 0x2E, 0x2F,
    ]
    .into_iter()
    .chain([0x34, 0x3D])
    {
        assert_eq!(after[off], before[off], "byte {off:#x} changed");
    }
    assert_eq!(r.cfg16(0x00), 0x1AF4);
    assert_eq!(r.cfg8(0x08), 1);
}

/// PCI 3.0, 6.2.3: Status has no bits a write can set; in particular the capability-list bit
/// stays 1 and Interrupt Status stays 0 with nothing pending.
#[test]
fn status_register_ignores_writes() {
    let mut r = Rig::new(2);
    assert_eq!(r.cfg16(CFG_STATUS), STATUS_CAP_LIST);
    r.cfg_write(CFG_STATUS, 2, 0xFFFF);
    assert_eq!(r.cfg16(CFG_STATUS), STATUS_CAP_LIST);
    r.cfg_write(CFG_STATUS, 2, 0);
    assert_eq!(r.cfg16(CFG_STATUS), STATUS_CAP_LIST);
}

/// PCI 3.0, 6.2.2: Command bits that the function does not implement are hardwired to 0;
/// I/O Space (bit 0) is 0 because the function has no I/O BARs. Memory Space, Bus Master,
/// Parity, SERR# and Interrupt Disable are read/write.
#[test]
fn command_register_writable_bits() {
    let mut r = Rig::new(2);
    assert_eq!(r.command(), 0, "Command powers on as 0");
    r.set_command(0xFFFF);
    assert_eq!(r.command(), 0x0546);
    r.set_command(0);
    assert_eq!(r.command(), 0);
}

/// PCI 3.0, 6.7: Status bit 4 says a capability list exists, 0x34 points at its first entry;
/// entries are dword aligned, above the header, and the chain ends with a 0 pointer.
#[test]
fn capability_list_bit_pointer_and_chain() {
    let mut r = Rig::new(2);
    assert_ne!(r.cfg16(CFG_STATUS) & STATUS_CAP_LIST, 0);
    let first = r.cfg8(0x34);
    assert_eq!(first, 0x40);
    let caps = r.caps();
    let ids: Vec<u8> = caps.iter().map(|c| c.1).collect();
    assert_eq!(
        ids,
        vec![
            CAP_VENDOR, CAP_VENDOR, CAP_VENDOR, CAP_VENDOR, CAP_VENDOR, CAP_MSIX
        ]
    );
    for (off, _) in &caps {
        assert_eq!(off % 4, 0, "capability at {off:#x} not dword aligned");
        assert!(*off >= 0x40 && *off < 0x100);
    }
    let last = caps.last().unwrap().0;
    assert_eq!(r.cfg8(last + 1), 0);
}

/// virtio 1.2, 4.1.4: each `virtio_pci_cap` names its structure (cfg_type), the BAR, and an
/// offset/length inside it; NOTIFY carries `notify_off_multiplier` (cap_len 20) and
/// PCI_CFG carries `pci_cfg_data` (cap_len 20).
#[test]
fn virtio_capabilities_have_correct_fields() {
    let mut r = Rig::new(2);
    // (cfg_type, cap_len, bar, offset, length)
    let expect = [
        (cfg_type::COMMON, 16u8, 0u8, 0x0000u32, 0x1000u32),
        (cfg_type::NOTIFY, 20, 0, 0x1000, 0x1000),
        (cfg_type::ISR, 16, 0, 0x2000, 0x1000),
        (cfg_type::DEVICE, 16, 0, 0x3000, 0x1000),
        (cfg_type::PCI_CFG, 20, 0, 0, 0),
    ];
    for (ty, len, bar, offset, length) in expect {
        let c = r.virtio_cap(ty);
        assert_eq!(r.cfg8(c), CAP_VENDOR);
        assert_eq!(r.cfg8(c + 2), len, "cap_len of cfg_type {ty}");
        assert_eq!(r.cfg8(c + 3), ty);
        assert_eq!(r.cfg8(c + 4), bar, "bar of cfg_type {ty}");
        assert_eq!(r.cfg32(c + 8), offset, "offset of cfg_type {ty}");
        assert_eq!(r.cfg32(c + 12), length, "length of cfg_type {ty}");
    }
    // The common structure must be large enough for every field incl. queue_reset.
    let c = r.virtio_cap(cfg_type::COMMON);
    assert!(r.cfg32(c + 12) >= 0x3C);
    // Every capability's region lies inside an implemented BAR.
    let n = r.virtio_cap(cfg_type::NOTIFY);
    assert_eq!(r.cfg32(n + 16), 4, "notify_off_multiplier");
}

/// virtio 1.2, 4.1.4.4: a queue's notification address is cap.offset + queue_notify_off *
/// notify_off_multiplier; the multiplier is 0 or an even power of two.
#[test]
fn notify_off_multiplier_and_queue_notify_off_locate_each_queue() {
    let mut r = Rig::new(3);
    let n = r.virtio_cap(cfg_type::NOTIFY);
    let mult = r.cfg32(n + 16);
    assert!(mult == 0 || (mult.is_power_of_two() && mult >= 2));
    let rings = r.bring_up(&Setup::msix());
    for q in 0..3u16 {
        r.select_queue(q);
        assert_eq!(r.common16(cc::QUEUE_NOTIFY_OFF), q);
    }
    let mut rings = rings;
    for q in [2u16, 0, 1] {
        rings[q as usize].push();
        let addr = NOTIFY + q as u64 * mult as u64;
        r.wr(addr, 2, q as u64);
        assert_eq!(rings[q as usize].used_idx(), 1, "queue {q}");
    }
    let kicked: Vec<u16> = r
        .events()
        .into_iter()
        .filter_map(|e| match e {
            EventKind::QueueNotify { queue } => Some(queue),
            _ => None,
        })
        .collect();
    assert_eq!(kicked, vec![2, 0, 1]);
}

/// PCI 3.0, 6.8.2: the MSI-X capability (ID 0x11) has Message Control with Table Size N-1
/// and Enable/Function Mask clear at power-on, and Table/PBA offset+BIR dwords.
#[test]
fn msix_capability_fields() {
    let mut r = Rig::new(2);
    let c = r.msix_cap().expect("MSI-X capability");
    assert_eq!(r.cfg8(c), 0x11);
    assert_eq!(
        r.cfg16(c + 2),
        2,
        "table size 3 encoded as 2, enable and mask clear"
    );
    assert_eq!(r.cfg32(c + 4), 0x0000_0002, "table at BAR2 offset 0");
    assert_eq!(r.cfg32(c + 8), 0x0000_8002, "PBA at BAR2 offset 0x8000");
}

/// Failure catalogue row 21 / virtio 1.2, 4.1.5.1.2: the default table has one entry for the
/// configuration vector plus one per queue.
#[test]
fn row21_msix_table_size_is_one_plus_queues_by_default() {
    for queues in [1u16, 2, 4, 7, 16] {
        let mut r = Rig::new(queues);
        assert_eq!(r.table_size(), queues + 1, "{queues} queues");
        assert_eq!(r.dev.msix().unwrap().table_size(), queues + 1);
    }
}

/// PCI 3.0, 6.8.2.3: Table Size is read-only; only Enable and Function Mask are writable.
#[test]
fn msix_message_control_table_size_is_read_only() {
    let mut r = Rig::new(2);
    let c = r.msix_cap().unwrap();
    r.cfg_write(c + 2, 2, 0x3FFF);
    assert_eq!(r.cfg16(c + 2), 2);
    r.cfg_write(c + 4, 4, 0xFFFF_FFFF);
    r.cfg_write(c + 8, 4, 0);
    assert_eq!(r.cfg32(c + 4), 2);
    assert_eq!(r.cfg32(c + 8), 0x8002);
}

/// PCI 3.0, 6.2.5.1: writing all ones to a 64-bit memory BAR pair and reading back yields the
/// size mask; type bits (64-bit, non-prefetchable) are read-only; unimplemented BARs read 0.
#[test]
fn bar_size_probing_for_64_bit_bars() {
    let mut r = Rig::new(2);
    assert_eq!(r.cfg32(0x10), 0x4, "BAR0: 64-bit memory, address 0");
    assert_eq!(r.cfg32(0x18), 0x4, "BAR2: 64-bit memory, address 0");
    for off in (0x10..=0x24).step_by(4) {
        r.cfg_write(off, 4, 0xFFFF_FFFF);
    }
    assert_eq!(r.cfg32(0x10), 0xFFFF_C004);
    assert_eq!(r.cfg32(0x14), 0xFFFF_FFFF);
    assert_eq!(r.cfg32(0x18), 0xFFFF_0004);
    assert_eq!(r.cfg32(0x1C), 0xFFFF_FFFF);
    assert_eq!(r.cfg32(0x20), 0, "BAR4 not implemented");
    assert_eq!(r.cfg32(0x24), 0, "BAR5 not implemented");
    let size0 = !(((r.cfg32(0x14) as u64) << 32) | (r.cfg32(0x10) & !0xF) as u64) + 1;
    let size2 = !(((r.cfg32(0x1C) as u64) << 32) | (r.cfg32(0x18) & !0xF) as u64) + 1;
    assert_eq!((size0, size2), (0x4000, 0x1_0000));
    let defs: Vec<(u8, u64)> = r.dev.bar_defs().iter().map(|b| (b.index, b.size)).collect();
    assert_eq!(defs, vec![(0, 0x4000), (2, 0x1_0000)]);
    // A 64-bit address above 4 GiB round-trips and the type bits stay put.
    r.cfg_write(0x10, 4, 0x0000_4000);
    r.cfg_write(0x14, 4, 0x0000_0012);
    assert_eq!(r.cfg32(0x10), 0x0000_4004);
    assert_eq!(r.dev.bar_address(0), Some(0x12_0000_4000));
    r.cfg_write(0x10, 4, 0x0000_4FFF);
    assert_eq!(
        r.cfg32(0x10),
        0x0000_4004,
        "address bits below the size are 0"
    );
}

/// PCI 3.0, 6.2.2: with Command.MemorySpace clear the function decodes no memory BAR; with
/// it set, accesses inside the BARs are claimed and accesses outside are not.
#[test]
fn command_memory_space_gates_bar_decode() {
    let mut r = Rig::new(2);
    r.cfg_write(0x10, 4, BAR0_ADDR as u32);
    r.cfg_write(0x14, 4, 0);
    r.cfg_write(0x18, 4, BAR2_ADDR as u32);
    r.cfg_write(0x1C, 4, 0);
    let mut b = [0u8; 2];
    assert!(!r.dev.mmio_read(COMMON + cc::MSIX_CONFIG, &mut b));
    assert!(!r.dev.mmio_write(COMMON + cc::DEVICE_STATUS, &[1]));
    r.set_command(CMD_MEMORY);
    assert_eq!(r.rd(COMMON + cc::MSIX_CONFIG, 2), 0xFFFF);
    assert_eq!(r.device_status(), 0, "the undecoded write had no effect");
    assert_eq!(r.rd(TABLE + 12, 4), 1, "BAR2 decodes the MSI-X table");
    assert!(!r.dev.mmio_read(BAR0_ADDR + 0x4000, &mut b), "past BAR0");
    assert!(!r.dev.mmio_read(BAR0_ADDR - 2, &mut b), "below BAR0");
    assert!(!r.dev.mmio_read(BAR2_ADDR + 0x1_0000, &mut b), "past BAR2");
    r.set_command(0);
    assert!(!r.dev.mmio_read(COMMON + cc::MSIX_CONFIG, &mut b));
}

/// PCI 3.0, 6.1 / 3.2.2.3.2: configuration accesses of 1, 2 and 4 bytes may start at any byte;
/// a wide read returns exactly the bytes the single-byte reads return.
#[test]
fn config_reads_of_every_width_at_every_offset_agree_with_byte_reads() {
    let mut r = Rig::new(2);
    r.map_bars();
    let bytes: Vec<u8> = (0..256u16).map(|o| r.cfg8(o)).collect();
    for off in 0..256usize {
        for width in [2usize, 4] {
            if off + width > 256 {
                continue;
            }
            let mut expect = [0u8; 4];
            expect[..width].copy_from_slice(&bytes[off..off + width]);
            assert_eq!(
                r.cfg_read(off as u16, width),
                u32::from_le_bytes(expect),
                "width {width} at {off:#x}"
            );
        }
    }
}

/// PCI 3.0, 6.1: writes of every width at odd offsets update exactly the writable bytes they
/// cover (Interrupt Line is writable, Interrupt Pin and the reserved bytes next to it are not).
#[test]
fn config_writes_of_every_width_at_odd_offsets() {
    let mut r = Rig::new(2);
    // 32-bit write at 0x3B covers reserved 0x3B, Interrupt Line 0x3C, Pin 0x3D, Min_Gnt 0x3E.
    r.cfg_write(0x3B, 4, 0xEEDD_CCBB);
    assert_eq!(r.cfg8(0x3B), 0);
    assert_eq!(r.cfg8(0x3C), 0xCC);
    assert_eq!(r.cfg8(0x3D), 1);
    assert_eq!(r.cfg8(0x3E), 0);
    // 16-bit write at 0x3D (odd): Pin and Min_Gnt, both read-only.
    r.cfg_write(0x3D, 2, 0xFFFF);
    assert_eq!(r.cfg16(0x3C), 0x01CC);
    // 8-bit write at 0x0D (Latency Timer, hardwired 0) and 0x0C (Cache Line Size, writable).
    r.cfg_write(0x0D, 1, 0x40);
    r.cfg_write(0x0C, 1, 0x10);
    assert_eq!(r.cfg16(0x0C), 0x0010);
    // 16-bit write at 0x05 (odd: Command high byte + Status low byte) sets Interrupt Disable.
    r.cfg_write(0x05, 2, 0xFF04);
    assert_eq!(r.command(), CMD_INTX_DISABLE);
    assert_eq!(r.cfg16(CFG_STATUS), STATUS_CAP_LIST);
    // 32-bit write at 0x03 (odd): Device ID high byte is read-only, Command bytes writable,
    // Status low byte read-only.
    r.cfg_write(0x03, 4, 0xFF04_0600);
    assert_eq!(r.command(), CMD_INTX_DISABLE | CMD_MEMORY | CMD_BUS_MASTER);
    assert_eq!(r.cfg16(0x02), 0x113F);
}

/// PCI Express 7.2.2 (extended space): 0x100..0xFFF exists but holds no extended capability,
/// so it reads 0 at every width.
#[test]
fn extended_config_space_reads_zero() {
    let mut r = Rig::new(2);
    for (off, w) in [
        (0x100u16, 1usize),
        (0x100, 2),
        (0x100, 4),
        (0x101, 1),
        (0x103, 2),
        (0x1FF, 1),
        (0x800, 4),
        (0xFFC, 4),
        (0xFFE, 2),
        (0xFFF, 1),
    ] {
        assert_eq!(r.cfg_read(off, w), 0, "width {w} at {off:#x}");
    }
}

/// PCI 3.0, 6.1: a read that no function claims completes with all ones (master abort):
/// offsets at or beyond 4 KiB, and widths other than 1, 2 and 4.
#[test]
fn config_reads_beyond_4k_or_of_width_3_return_all_ones() {
    let mut r = Rig::new(2);
    for (off, w) in [
        (0x1000u16, 1usize),
        (0x1000, 2),
        (0x1000, 4),
        (0x1001, 2),
        (0xFFFF, 1),
    ] {
        let mut b = [0u8; 4];
        r.dev.config_read(off, &mut b[..w]);
        assert!(b[..w].iter().all(|&x| x == 0xFF), "width {w} at {off:#x}");
    }
    for w in [3usize, 5, 8, 0] {
        let mut b = vec![0u8; w];
        r.dev.config_read(0, &mut b);
        assert!(b.iter().all(|&x| x == 0xFF), "width {w}");
    }
    // A dword straddling the 4 KiB end is not a legal access either.
    let mut b = [0u8; 4];
    r.dev.config_read(0xFFE, &mut b);
    assert_eq!(b, [0xFF; 4]);
}

/// PCI 3.0, 6.1: writes to unimplemented space, and writes of illegal widths, are dropped.
#[test]
fn config_writes_out_of_range_or_of_odd_width_are_ignored() {
    let mut r = Rig::new(2);
    let before = r.dev.config_bytes();
    r.cfg_write(0x100, 4, 0xFFFF_FFFF);
    r.cfg_write(0xFFC, 4, 0xFFFF_FFFF);
    r.dev.config_write(0x1000, &[0xFF; 4]);
    r.dev.config_write(0xFF, &[0xFF; 2]);
    r.dev.config_write(0x04, &[0xFF; 3]); // width 3 at Command
    r.dev.config_write(0x04, &[0xFF; 8]);
    assert_eq!(r.dev.config_bytes(), before);
    assert_eq!(r.cfg32(0x100), 0);
    assert_eq!(r.command(), 0);
}

// =====================================================================================
// Common configuration: features, status, reset
// =====================================================================================

/// virtio 1.2, 4.1.4.3: `device_feature` is a 32-bit window selected by
/// `device_feature_select`; words 0 and 1 hold bits 0-63, higher selectors read 0. The
/// register is read-only.
#[test]
fn device_feature_window_is_64_bit_and_higher_selectors_read_0() {
    let mut r = Rig::new(2);
    r.map_bars();
    r.set_common32(cc::DEVICE_FEATURE_SELECT, 0);
    // INDIRECT_DESC (28) | EVENT_IDX (29)
    assert_eq!(r.common32(cc::DEVICE_FEATURE), 0x3000_0000);
    r.set_common32(cc::DEVICE_FEATURE_SELECT, 1);
    // VERSION_1 (32) | RING_RESET (40)
    assert_eq!(r.common32(cc::DEVICE_FEATURE), 0x0000_0101);
    for sel in [2u32, 3, 0x8000_0000, 0xFFFF_FFFF] {
        r.set_common32(cc::DEVICE_FEATURE_SELECT, sel);
        assert_eq!(r.common32(cc::DEVICE_FEATURE_SELECT), sel);
        assert_eq!(r.common32(cc::DEVICE_FEATURE), 0, "select {sel:#x}");
    }
    r.set_common32(cc::DEVICE_FEATURE_SELECT, 0);
    r.set_common32(cc::DEVICE_FEATURE, 0xFFFF_FFFF);
    assert_eq!(r.common32(cc::DEVICE_FEATURE), 0x3000_0000, "read-only");
    assert_eq!(r.device_features(), r.dev.device_features());
}

/// virtio 1.2, 4.1.4.3: device-type feature bits appear in the window beside the transport's.
#[test]
fn device_type_features_are_offered_with_version_1() {
    let mut r = Rig::with_backend(
        Box::new(TestBackend::new(1, 4, 0x5, 256)),
        TransportOptions {
            event_idx: false,
            indirect_desc: false,
            ring_reset: false,
            ..TransportOptions::default()
        },
    );
    r.map_bars();
    assert_eq!(r.device_features(), 0x5 | features::VERSION_1);
}

/// virtio 1.2, 4.1.4.3: `driver_feature` round-trips both 32-bit words selected by
/// `driver_feature_select`; selectors >= 2 read 0 and their writes are dropped.
#[test]
fn driver_feature_window_round_trips_and_higher_selectors_read_0() {
    let mut r = Rig::new(2);
    r.map_bars();
    r.write_driver_features(features::VERSION_1 | features::RING_EVENT_IDX);
    assert_eq!(
        r.driver_features(),
        features::VERSION_1 | features::RING_EVENT_IDX
    );
    r.set_common32(cc::DRIVER_FEATURE_SELECT, 2);
    r.set_common32(cc::DRIVER_FEATURE, 0xFFFF_FFFF);
    assert_eq!(r.common32(cc::DRIVER_FEATURE), 0);
    assert_eq!(
        r.driver_features(),
        features::VERSION_1 | features::RING_EVENT_IDX
    );
}

/// virtio 1.2, 2.2.1 and 3.1.1 step 6: the device leaves FEATURES_OK clear when the driver
/// accepted a feature the device did not offer.
#[test]
fn features_ok_refused_for_unoffered_feature() {
    let mut r = Rig::new(2);
    r.map_bars();
    assert!(!r.negotiate(features::VERSION_1 | 1));
    assert_eq!(r.device_status(), status::ACKNOWLEDGE | status::DRIVER);
    assert!(!r.negotiate(features::VERSION_1 | features::NOTIFICATION_DATA));
    assert_eq!(
        r.count(|e| matches!(e, EventKind::FeaturesNegotiated { ok: false, .. })),
        2
    );
}

/// virtio 1.2, 6.1: a modern device may refuse to operate without VIRTIO_F_VERSION_1; this one
/// leaves FEATURES_OK clear.
#[test]
fn features_ok_refused_without_version_1() {
    let mut r = Rig::new(2);
    r.map_bars();
    assert!(!r.negotiate(features::RING_EVENT_IDX));
    assert!(!r.negotiate(0));
    assert_eq!(r.device_status() & status::FEATURES_OK, 0);
}

/// virtio 1.2, 3.1.1 step 5: a subset of the offered features that includes VERSION_1 is
/// accepted and FEATURES_OK reads back set.
#[test]
fn features_ok_accepted_for_offered_subset() {
    let mut r = Rig::new(2);
    r.map_bars();
    let f = features::VERSION_1 | features::RING_EVENT_IDX | features::RING_RESET;
    assert!(r.negotiate(f));
    assert_eq!(
        r.device_status(),
        status::ACKNOWLEDGE | status::DRIVER | status::FEATURES_OK
    );
    assert_eq!(r.dev.driver_features(), f);
    assert_eq!(
        r.count(|e| matches!(e, EventKind::FeaturesNegotiated { ok: true, accepted, .. } if *accepted == f)),
        1
    );
}

/// virtio 1.2, 3.1.1: once FEATURES_OK is set the negotiated features are fixed; later writes
/// to `driver_feature` do not change them.
#[test]
fn driver_features_frozen_after_features_ok() {
    let mut r = Rig::new(2);
    r.map_bars();
    let f = features::VERSION_1 | features::RING_EVENT_IDX;
    assert!(r.negotiate(f));
    r.write_driver_features(features::VERSION_1 | features::RING_INDIRECT_DESC);
    assert_eq!(r.driver_features(), f);
    r.write_driver_features(0);
    assert_eq!(r.dev.driver_features(), f);
}

/// virtio 1.2, 2.1.1: the driver never clears status bits except by writing 0; the device
/// keeps what it has when a write would clear one.
#[test]
fn device_status_bits_are_not_cleared_without_reset() {
    let mut r = Rig::new(2);
    r.map_bars();
    r.set_device_status(status::ACKNOWLEDGE | status::DRIVER);
    r.set_device_status(status::ACKNOWLEDGE);
    assert_eq!(r.device_status(), status::ACKNOWLEDGE | status::DRIVER);
}

/// virtio 1.2, 4.1.4.3.1 / 2.4: writing 0 to `device_status` resets the device: status reads
/// 0, every vector selector reads NO_VECTOR, every `queue_enable` reads 0, queue sizes return
/// to the maximum, ISR status is 0 and the INTx line is low.
#[test]
fn writing_zero_to_device_status_resets_the_device() {
    let mut r = Rig::new(3);
    let mut rings = r.bring_up(&Setup::intx());
    for q in 0..3 {
        r.set_queue_vector(q, q);
    }
    r.set_common16(cc::MSIX_CONFIG, 2);
    rings[1].push();
    r.kick(1);
    assert!(r.sink.line());
    r.set_common16(cc::QUEUE_SELECT, 2);
    r.set_common32(cc::DEVICE_FEATURE_SELECT, 1);

    r.set_device_status(0);

    assert_eq!(r.device_status(), 0);
    assert_eq!(r.msix_config(), NO_VECTOR);
    assert!(!r.sink.line());
    assert!(!r.status_int());
    assert_eq!(r.isr(), 0);
    assert_eq!(r.common32(cc::DEVICE_FEATURE_SELECT), 0);
    assert_eq!(r.dev.driver_features(), 0);
    for q in 0..3 {
        assert_eq!(r.queue_vector(q), NO_VECTOR, "queue {q}");
        assert_eq!(r.common16(cc::QUEUE_ENABLE), 0, "queue {q}");
        assert_eq!(r.common16(cc::QUEUE_SIZE), 256, "queue {q}");
        assert_eq!(r.common16(cc::QUEUE_RESET), 0, "queue {q}");
    }
    assert_eq!(r.count(|e| matches!(e, EventKind::DeviceReset)), 2);
}

/// virtio 1.2, 4.1.4.3: `num_queues` reports how many queues the device has.
#[test]
fn num_queues_reports_the_queue_count() {
    for n in [1u16, 3, 8] {
        let mut r = Rig::new(n);
        r.map_bars();
        assert_eq!(r.common16(cc::NUM_QUEUES), n);
    }
}

/// virtio 1.2, 4.1.3.1 and 4.1.4.3: common_cfg fields are accessed at their natural width;
/// 32-bit accesses spanning two 16-bit fields are not a way to write either of them.
#[test]
fn common_cfg_writes_at_the_wrong_width_are_ignored() {
    let mut r = Rig::new(2);
    r.map_bars();
    r.wr(COMMON + cc::MSIX_CONFIG, 4, 1); // msix_config + num_queues
    assert_eq!(r.msix_config(), NO_VECTOR);
    r.wr(COMMON + cc::DEVICE_STATUS, 2, 1); // device_status + config_generation
    assert_eq!(r.device_status(), 0);
    r.wr(COMMON + cc::QUEUE_SELECT, 1, 1);
    assert_eq!(r.common16(cc::QUEUE_SELECT), 0);
    // Reads of any width are assembled from the fields they cover.
    assert_eq!(r.rd(COMMON + cc::MSIX_CONFIG, 4), 0x0002_FFFF);
    assert_eq!(r.rd(COMMON + cc::NUM_QUEUES + 1, 1), 0);
}

/// virtio 1.2, 4.1.4.3: `num_queues`, `config_generation` and `queue_notify_off` are read-only
/// for the driver; writes to them change nothing.
#[test]
fn common_cfg_read_only_fields_ignore_writes() {
    let mut r = Rig::new(3);
    r.map_bars();
    r.set_common16(cc::NUM_QUEUES, 9);
    assert_eq!(r.common16(cc::NUM_QUEUES), 3);
    r.wr(COMMON + cc::CONFIG_GENERATION, 1, 0x77);
    assert_eq!(r.rd(COMMON + cc::CONFIG_GENERATION, 1), 0);
    r.select_queue(2);
    r.set_common16(cc::QUEUE_NOTIFY_OFF, 0);
    assert_eq!(r.common16(cc::QUEUE_NOTIFY_OFF), 2);
}

// =====================================================================================
// Common configuration: queues
// =====================================================================================

/// virtio 1.2, 4.1.4.3: on reset `queue_size` holds the maximum size the device supports.
#[test]
fn queue_size_reads_maximum_at_power_on() {
    let mut r = Rig::with_backend(
        Box::new(TestBackend::new(2, 4, 0, 64)),
        TransportOptions::default(),
    );
    r.map_bars();
    for q in 0..2 {
        r.select_queue(q);
        assert_eq!(r.common16(cc::QUEUE_SIZE), 64);
        assert_eq!(r.common16(cc::QUEUE_ENABLE), 0);
    }
}

/// virtio 1.2, 4.1.4.3: `queue_size` reads 0 for a queue that does not exist; such a
/// selection takes no configuration (writes are dropped) and its vector reads NO_VECTOR.
#[test]
fn queue_select_out_of_range_reads_size_0_and_ignores_writes() {
    let mut r = Rig::new(2);
    r.map_bars();
    for sel in [2u16, 3, 0x7FFF, 0xFFFF] {
        r.select_queue(sel);
        assert_eq!(r.common16(cc::QUEUE_SELECT), sel);
        r.set_common16(cc::QUEUE_SIZE, 8);
        r.set_common16(cc::QUEUE_MSIX_VECTOR, 1);
        r.wr(COMMON + cc::QUEUE_DESC, 8, 0x1_0000);
        r.set_common16(cc::QUEUE_ENABLE, 1);
        assert_eq!(r.common16(cc::QUEUE_SIZE), 0);
        assert_eq!(r.common16(cc::QUEUE_MSIX_VECTOR), NO_VECTOR);
        assert_eq!(r.common16(cc::QUEUE_ENABLE), 0);
        assert_eq!(r.common16(cc::QUEUE_NOTIFY_OFF), 0);
        assert_eq!(r.rd(COMMON + cc::QUEUE_DESC, 8), 0);
    }
    for q in 0..2 {
        r.select_queue(q);
        assert_eq!(r.common16(cc::QUEUE_SIZE), 256, "queue {q} untouched");
        assert_eq!(r.common16(cc::QUEUE_MSIX_VECTOR), NO_VECTOR);
        assert_eq!(r.rd(COMMON + cc::QUEUE_DESC, 8), 0);
    }
    assert_eq!(
        r.count(
            |e| matches!(e, EventKind::VectorWritten { read_back, .. } if *read_back != NO_VECTOR)
        ),
        0
    );
}

/// virtio 1.2, 2.7 and 4.1.4.3.2: the driver may shrink `queue_size` to a smaller power of two;
/// the device takes it.
#[test]
fn queue_size_accepts_a_smaller_power_of_two() {
    let mut r = Rig::new(1);
    r.map_bars();
    r.select_queue(0);
    for size in [128u16, 1, 2, 256, 16] {
        r.set_common16(cc::QUEUE_SIZE, size);
        assert_eq!(r.common16(cc::QUEUE_SIZE), size);
    }
}

/// virtio 1.2, 2.7: split queue sizes are powers of two no larger than the maximum; a value
/// that is not, or 0, is not stored (the read-back shows the refusal).
#[test]
fn queue_size_ignores_non_power_of_two_too_large_and_zero() {
    let mut r = Rig::new(1);
    r.map_bars();
    r.select_queue(0);
    r.set_common16(cc::QUEUE_SIZE, 64);
    for bad in [100u16, 3, 255, 512, 0x8000, 0] {
        r.set_common16(cc::QUEUE_SIZE, bad);
        assert_eq!(r.common16(cc::QUEUE_SIZE), 64, "size {bad}");
    }
}

/// virtio 1.2, 4.1.3.1: 64-bit fields may be written as one 64-bit access or as two 32-bit
/// halves (low then high, or high then low), and read either way.
#[test]
fn queue_addresses_written_as_32_bit_halves_or_64_bit() {
    let mut r = Rig::new(1);
    r.map_bars();
    r.select_queue(0);
    r.set_common32(cc::QUEUE_DESC, 0x0004_0000);
    r.set_common32(cc::QUEUE_DESC + 4, 0x0000_0001);
    assert_eq!(r.rd(COMMON + cc::QUEUE_DESC, 8), 0x1_0004_0000);
    r.set_common32(cc::QUEUE_DRIVER + 4, 0x0000_0002);
    r.set_common32(cc::QUEUE_DRIVER, 0x0000_2002);
    assert_eq!(r.rd(COMMON + cc::QUEUE_DRIVER, 8), 0x2_0000_2002);
    r.wr(COMMON + cc::QUEUE_DEVICE, 8, 0x3_0000_3004);
    assert_eq!(r.common32(cc::QUEUE_DEVICE), 0x0000_3004);
    assert_eq!(r.common32(cc::QUEUE_DEVICE + 4), 0x0000_0003);
    // Rewriting only the low half keeps the high half.
    r.set_common32(cc::QUEUE_DEVICE, 0x0000_5000);
    assert_eq!(r.rd(COMMON + cc::QUEUE_DEVICE, 8), 0x3_0000_5000);
}

/// virtio 1.2, 4.1.4.3 and 2.1.2: enabling a queue whose rings do not lie in guest RAM makes the
/// device unusable: queue_enable stays 0 and DEVICE_NEEDS_RESET is set; once DRIVER_OK is
/// set the device also sends a configuration change notification (ISR bit 1, msix_config).
#[test]
fn queue_enable_with_rings_outside_ram_sets_needs_reset_and_notifies() {
    let mut r = Rig::setting_up_last_queue(2);
    r.wr(COMMON + cc::QUEUE_DESC, 8, 0x1_0000_0000);
    r.set_common16(cc::QUEUE_ENABLE, 1);
    assert_eq!(r.common16(cc::QUEUE_ENABLE), 0);
    assert_ne!(r.device_status() & status::DEVICE_NEEDS_RESET, 0);
    assert_eq!(r.sink.take_messages(), vec![msg(0)]);
    assert_eq!(r.isr(), 2);
    assert_eq!(
        r.count(|e| matches!(e, EventKind::NeedsReset { queue: Some(1) })),
        1
    );
    // The driver's acknowledgement write keeps the bit; only a reset clears it.
    let s = r.device_status();
    r.set_device_status(s & !status::DEVICE_NEEDS_RESET);
    assert_ne!(r.device_status() & status::DEVICE_NEEDS_RESET, 0);
    r.set_device_status(0);
    assert_eq!(r.device_status(), 0);
}

/// virtio 1.2, 2.1.2: before DRIVER_OK the device sets DEVICE_NEEDS_RESET without sending a
/// notification.
#[test]
fn queue_enable_outside_ram_before_driver_ok_is_silent() {
    let mut r = Rig::new(1);
    r.setup(&Setup {
        queues: Some(vec![]),
        ..Setup::msix()
    });
    r.select_queue(0);
    r.wr(COMMON + cc::QUEUE_DRIVER, 8, RAM_SIZE - 4);
    r.set_common16(cc::QUEUE_ENABLE, 1);
    assert_eq!(r.common16(cc::QUEUE_ENABLE), 0);
    assert_ne!(r.device_status() & status::DEVICE_NEEDS_RESET, 0);
    assert!(r.sink.messages().is_empty());
    assert_eq!(r.isr(), 0);
}

/// virtio 1.2, 4.1.4.3.2: the driver must not write 0 to queue_enable; the device keeps the
/// queue enabled (queue_reset is the way to stop one).
#[test]
fn queue_enable_zero_write_is_ignored() {
    let mut r = Rig::new(1);
    r.bring_up(&Setup::msix());
    r.select_queue(0);
    r.set_common16(cc::QUEUE_ENABLE, 0);
    assert_eq!(r.common16(cc::QUEUE_ENABLE), 1);
}

/// virtio 1.2, 4.1.4.3.2: queue fields are configured before the queue is enabled; while it is
/// enabled the device keeps the configuration it started with.
#[test]
fn enabled_queue_configuration_is_frozen() {
    let mut r = Rig::new(1);
    let rings = r.bring_up(&Setup::msix());
    r.select_queue(0);
    r.set_common16(cc::QUEUE_SIZE, 4);
    r.wr(COMMON + cc::QUEUE_DESC, 8, 0x8_0000);
    assert_eq!(r.common16(cc::QUEUE_SIZE), RING_SIZE);
    assert_eq!(r.rd(COMMON + cc::QUEUE_DESC, 8), rings[0].desc);
}

/// virtio 1.2, 4.1.4.3.1 (VIRTIO_F_RING_RESET): writing 1 to queue_reset resets that queue
/// only; once the reset completed the device presents 0 in both queue_reset and queue_enable,
/// and the queue can be set up and enabled again, starting from ring index 0.
#[test]
fn queue_reset_resets_one_queue_and_reads_back_zero_when_done() {
    let mut r = Rig::new(2);
    let mut rings = r.bring_up(&Setup {
        features: features::VERSION_1 | features::RING_RESET,
        ..Setup::msix()
    });
    rings[0].push();
    rings[0].push();
    r.kick(0);
    assert_eq!(rings[0].used_idx(), 2);
    r.sink.take_messages();

    r.select_queue(0);
    r.set_common16(cc::QUEUE_RESET, 1);
    assert_eq!(r.common16(cc::QUEUE_RESET), 0, "reset completed");
    assert_eq!(r.common16(cc::QUEUE_ENABLE), 0);
    assert_eq!(r.common16(cc::QUEUE_SIZE), 256);
    assert_eq!(r.common16(cc::QUEUE_MSIX_VECTOR), NO_VECTOR);
    assert_eq!(
        r.count(|e| matches!(e, EventKind::QueueReset { queue: 0 })),
        1
    );
    // A kick of the reset queue does nothing.
    rings[0].push();
    r.kick(0);
    assert_eq!(rings[0].used_idx(), 2);
    // The other queue is untouched.
    r.select_queue(1);
    assert_eq!(r.common16(cc::QUEUE_ENABLE), 1);
    assert_eq!(r.common16(cc::QUEUE_MSIX_VECTOR), 2);
    assert_eq!(r.common16(cc::QUEUE_RESET), 0);
    rings[1].push();
    r.kick(1);
    assert_eq!(rings[1].used_idx(), 1);
    assert_eq!(r.sink.take_messages(), vec![msg(2)]);

    // Re-enable queue 0 on a fresh ring.
    let mut fresh = r.configure_queue(0, 0x6_0000);
    r.set_queue_vector(0, 1);
    r.enable_queue(0);
    assert_eq!(r.common16(cc::QUEUE_ENABLE), 1);
    assert_eq!(r.common16(cc::QUEUE_RESET), 0);
    fresh.push();
    r.kick(0);
    assert_eq!(fresh.used_idx(), 1);
    assert_eq!(fresh.used_elem(0), (0, 0));
    assert_eq!(r.sink.take_messages(), vec![msg(1)]);
}

/// virtio 1.2, 4.1.4.3: queue_reset exists only with VIRTIO_F_RING_RESET; without it the field
/// reads 0 and writing it does not reset anything.
#[test]
fn queue_reset_inert_without_ring_reset_feature() {
    let mut r = Rig::with_options(
        1,
        TransportOptions {
            ring_reset: false,
            ..TransportOptions::default()
        },
    );
    r.bring_up(&Setup::msix());
    assert_eq!(r.device_features() & features::RING_RESET, 0);
    r.select_queue(0);
    r.set_common16(cc::QUEUE_RESET, 1);
    assert_eq!(r.common16(cc::QUEUE_RESET), 0);
    assert_eq!(r.common16(cc::QUEUE_ENABLE), 1);
    assert_eq!(r.common16(cc::QUEUE_MSIX_VECTOR), 1);
}

// =====================================================================================
// Notifications and used buffers
// =====================================================================================

/// virtio 1.2, 4.1.5.2: the driver notifies by writing the queue index at the queue's notify
/// address; 16-bit and 32-bit writes are both notifications.
#[test]
fn notify_with_16_and_32_bit_writes() {
    let mut r = Rig::new(2);
    let mut rings = r.bring_up(&Setup::msix());
    rings[1].push();
    r.kick_width(1, 2);
    assert_eq!(rings[1].used_idx(), 1);
    rings[1].push();
    r.kick_width(1, 4);
    assert_eq!(rings[1].used_idx(), 2);
    // A byte write is not a notification.
    rings[1].push();
    r.kick_width(1, 1);
    assert_eq!(rings[1].used_idx(), 2);
    assert_eq!(
        r.count(|e| matches!(e, EventKind::QueueNotify { queue: 1 })),
        2
    );
    assert_eq!(r.sink.messages(), vec![msg(2), msg(2)]);
}

/// virtio 1.2, 3.1.2: the device must not consume buffers or send used buffer notifications
/// before DRIVER_OK; what was made available earlier is processed once DRIVER_OK is set.
#[test]
fn no_used_buffers_before_driver_ok() {
    let mut r = Rig::new(1);
    let mut rings = r.setup(&Setup::msix());
    rings[0].push();
    r.kick(0);
    assert_eq!(rings[0].used_idx(), 0);
    assert!(r.sink.messages().is_empty());
    assert_eq!(r.isr(), 0);
    r.driver_ok();
    assert_eq!(rings[0].used_idx(), 1);
    assert_eq!(rings[0].used_elem(0), (0, 0));
    assert_eq!(r.sink.messages(), vec![msg(1)]);
}

/// virtio 1.2, 4.1.5.1.2 / 4.1.4.5: with MSI-X enabled a used buffer notification is the
/// message of the table entry the queue's `queue_msix_vector` names.
#[test]
fn used_buffer_notification_uses_the_queue_vector_entry() {
    let mut r = Rig::new(3);
    let mut rings = r.bring_up(&Setup::msix());
    r.set_queue_vector(2, 1); // queue 2 shares entry 1
    rings[2].push();
    r.kick(2);
    rings[0].push();
    r.kick(0);
    assert_eq!(r.sink.messages(), vec![msg(1), msg(1)]);
    let sent: Vec<(InterruptCause, u16)> = r
        .events()
        .into_iter()
        .filter_map(|e| match e {
            EventKind::MessageSent { cause, entry, .. } => Some((cause, entry)),
            _ => None,
        })
        .collect();
    assert_eq!(
        sent,
        vec![(InterruptCause::Queue(2), 1), (InterruptCause::Queue(0), 1)]
    );
    assert!(!r.sink.line());
}

/// virtio 1.2, 2.7.7.2: without VIRTIO_F_EVENT_IDX, VRING_AVAIL_F_NO_INTERRUPT in avail.flags
/// asks the device not to notify; buffers are still used.
#[test]
fn avail_no_interrupt_flag_suppresses_used_notifications() {
    let mut r = Rig::new(1);
    let mut rings = r.bring_up(&Setup::msix());
    rings[0].set_avail_flags(1);
    rings[0].push();
    r.kick(0);
    assert_eq!(rings[0].used_idx(), 1);
    assert!(r.sink.messages().is_empty());
    assert_eq!(
        r.count(|e| matches!(
            e,
            EventKind::InterruptSuppressed {
                reason: SuppressReason::AvailNoInterrupt,
                ..
            }
        )),
        1
    );
    rings[0].set_avail_flags(0);
    rings[0].push();
    r.kick(0);
    assert_eq!(r.sink.messages(), vec![msg(1)]);
}

/// virtio 1.2, 2.7.7.2 / 2.7.10: with VIRTIO_F_EVENT_IDX the device notifies only when used.idx
/// moves past `used_event`, and ignores avail.flags.
#[test]
fn event_idx_used_event_suppresses_until_reached() {
    let mut r = Rig::new(1);
    let mut rings = r.bring_up(&Setup {
        features: features::VERSION_1 | features::RING_EVENT_IDX,
        ..Setup::msix()
    });
    rings[0].set_used_event(2);
    let mut sent = Vec::new();
    for _ in 0..3 {
        rings[0].push();
        r.kick(0);
        sent.push(r.sink.take_messages().len());
    }
    assert_eq!(sent, vec![0, 0, 1], "notify only when used.idx passes 2");
    assert_eq!(rings[0].used_idx(), 3);
    assert_eq!(
        r.count(|e| matches!(
            e,
            EventKind::InterruptSuppressed {
                reason: SuppressReason::EventIdx,
                ..
            }
        )),
        2
    );
    // NO_INTERRUPT is ignored once EVENT_IDX is negotiated.
    rings[0].set_avail_flags(1);
    rings[0].set_used_event(3);
    rings[0].push();
    r.kick(0);
    assert_eq!(r.sink.take_messages(), vec![msg(1)]);
}

/// virtio 1.2, 4.1.4.3.1 and 4.1.5.3: a configuration change bumps `config_generation`, sets
/// ISR bit 1 and sends the message of the entry `msix_config` names.
#[test]
fn config_change_bumps_generation_and_sends_msix_config_message() {
    let mut r = Rig::new(2);
    r.bring_up(&Setup::msix());
    let g0 = r.rd(COMMON + cc::CONFIG_GENERATION, 1) as u8;
    r.dev.config_changed();
    let g1 = r.rd(COMMON + cc::CONFIG_GENERATION, 1) as u8;
    assert_eq!(g1, g0.wrapping_add(1));
    assert_eq!(r.sink.messages(), vec![msg(0)]);
    assert_eq!(r.isr(), 2);
    assert_eq!(
        r.count(|e| matches!(
            e,
            EventKind::MessageSent {
                cause: InterruptCause::ConfigChange,
                entry: 0,
                ..
            }
        )),
        1
    );
    // Routed elsewhere, it follows the selector.
    r.set_common16(cc::MSIX_CONFIG, 2);
    r.dev.config_changed();
    assert_eq!(r.sink.messages(), vec![msg(0), msg(2)]);
}

/// virtio 1.2, 4.1.5.3: with MSI-X disabled a configuration change sets ISR bit 1 and asserts
/// INTx; reading ISR returns 2 and deasserts it.
#[test]
fn config_change_with_intx_raises_line_with_isr_bit_1() {
    let mut r = Rig::new(1);
    r.bring_up(&Setup::intx());
    r.dev.config_changed();
    assert!(r.sink.line());
    assert!(r.status_int());
    assert_eq!(r.isr(), 2);
    assert!(!r.sink.line());
    assert!(r.sink.messages().is_empty());
}

/// virtio 1.2, 4.1.4.3.1: `config_generation` changes with the configuration even before the
/// driver is live; this device only notifies once DRIVER_OK is set (no message before).
#[test]
fn config_generation_changes_before_driver_ok_without_notification() {
    let mut r = Rig::new(1);
    r.setup(&Setup::msix());
    r.dev.config_changed();
    assert_eq!(r.rd(COMMON + cc::CONFIG_GENERATION, 1), 1);
    assert!(r.sink.messages().is_empty());
    assert_eq!(r.isr(), 0);
}

/// virtio 1.2, 4.1.4.6: the device-specific structure reads the backend's configuration; bytes
/// past its length read 0.
#[test]
fn device_specific_configuration_is_readable() {
    let mut r = Rig::new(1);
    r.map_bars();
    assert_eq!(r.rd(DEVICE_CFG, 4), 0xC0FF_EE00);
    assert_eq!(r.rd(DEVICE_CFG + 2, 2), 0xC0FF);
    assert_eq!(r.rd(DEVICE_CFG + 4, 4), 0);
}

/// virtio 1.2, 4.1.4.9: the PCI_CFG capability is a window: a config read of pci_cfg_data reads
/// cap.length bytes at cap.offset of BAR cap.bar, a write writes them, even with memory
/// decoding off. Illegal windows (offset not a multiple of length) do nothing.
#[test]
fn pci_cfg_window_reads_and_writes_bar_registers() {
    let mut r = Rig::new(2);
    let c = r.virtio_cap(cfg_type::PCI_CFG);
    assert_eq!(r.command() & CMD_MEMORY, 0);
    r.cfg_write(c + 4, 1, 0); // bar
    r.cfg_write(c + 8, 4, cc::MSIX_CONFIG as u32); // offset
    r.cfg_write(c + 12, 4, 2); // length
    assert_eq!(r.cfg32(c + 16) & 0xFFFF, 0xFFFF, "msix_config at power-on");
    r.cfg_write(c + 16, 4, 1);
    assert_eq!(r.dev.msix_config(), 1);
    assert_eq!(r.cfg16(c + 16), 1);
    // num_queues through a 2-byte window.
    r.cfg_write(c + 8, 4, cc::NUM_QUEUES as u32);
    assert_eq!(r.cfg16(c + 16), 2);
    // A misaligned window is not executed.
    r.cfg_write(c + 8, 4, cc::MSIX_CONFIG as u32 + 1);
    r.cfg_write(c + 16, 4, 0xFFFF_FFFF);
    assert_eq!(r.dev.msix_config(), 1);
    // 4-byte window onto device_feature.
    r.cfg_write(c + 8, 4, cc::DEVICE_FEATURE as u32);
    r.cfg_write(c + 12, 4, 4);
    assert_eq!(r.cfg32(c + 16), 0x3000_0000);
}

/// virtio 1.2, 4.1.4.9 with 4.1.4.5: an ISR read through the PCI_CFG window is a real ISR read:
/// it returns the bits, clears them and deasserts INTx.
#[test]
fn pci_cfg_window_isr_read_clears_and_lowers_line() {
    let mut r = Rig::new(1);
    r.bring_up(&Setup::intx());
    r.dev.config_changed();
    assert!(r.sink.line());
    let c = r.virtio_cap(cfg_type::PCI_CFG);
    r.cfg_write(c + 4, 1, 0);
    r.cfg_write(c + 8, 4, 0x2000);
    r.cfg_write(c + 12, 4, 1);
    assert_eq!(r.cfg8(c + 16), 2);
    assert!(!r.sink.line());
    assert_eq!(r.cfg8(c + 16), 0);
}

// =====================================================================================
// MSI-X table and PBA
// =====================================================================================

/// PCI 3.0, 6.8.2.9: every table entry comes out of reset masked; the PBA is clear and MSI-X
/// is disabled and unmasked at the function level.
#[test]
fn msix_entries_masked_at_power_on() {
    let mut r = Rig::new(4);
    r.map_bars();
    for i in 0..5u64 {
        assert_eq!(r.rd(TABLE + 16 * i + 12, 4), 1, "entry {i}");
    }
    assert_eq!(r.pba(0), 0);
    assert_eq!(r.msix_control() & 0xC000, 0);
}

/// PCI 3.0, 6.8.2: the table takes aligned DWORD and QWORD accesses; reserved Vector Control
/// bits read 0; other widths and misaligned accesses are dropped and read 0.
#[test]
fn msix_table_dword_and_qword_accesses() {
    let mut r = Rig::new(2);
    r.map_bars();
    let e1 = TABLE + 16;
    r.wr(e1, 4, 0xFEE0_1000);
    r.wr(e1 + 4, 4, 0x0000_0001);
    r.wr(e1 + 8, 4, 0x0000_4041);
    r.wr(e1 + 12, 4, 0xFFFF_FFFE);
    assert_eq!(r.rd(e1, 4), 0xFEE0_1000);
    assert_eq!(r.rd(e1 + 4, 4), 1);
    assert_eq!(r.rd(e1, 8), 0x1_FEE0_1000);
    assert_eq!(r.rd(e1 + 8, 4), 0x4041);
    assert_eq!(r.rd(e1 + 12, 4), 0, "unmasked, reserved bits 0");
    let e2 = TABLE + 32;
    r.wr(e2, 8, 0x0000_0000_FEE0_2000);
    r.wr(e2 + 8, 8, 0x0000_0001_0000_4042);
    assert_eq!(r.rd(e2, 8), 0xFEE0_2000);
    assert_eq!(r.rd(e2 + 8, 8), 0x0000_0001_0000_4042);
    assert_eq!(r.rd(e2 + 12, 4), 1);
    // 2-byte and misaligned accesses are not decoded by the table.
    r.wr(e1, 2, 0xAAAA);
    r.wr(e1 + 2, 4, 0xBBBB_BBBB);
    r.wr(e1 + 4, 8, u64::MAX);
    assert_eq!(r.rd(e1, 8), 0x1_FEE0_1000);
    assert_eq!(r.rd(e1, 2), 0);
    assert_eq!(r.rd(e1 + 2, 4), 0);
}

/// PCI Local Bus 3.0, 6.8.2.10: Pending Bits are read-only; only the function sets one (a
/// message due while its entry is masked, 6.8.2.9) and clears it (on sending the message). A
/// write of zeros must not clear a set bit (the held message would be lost) and a write of
/// ones must not set a clear one (a message nobody raised).
#[test]
fn msix_pba_is_read_only() {
    let mut r = Rig::new(2);
    let mut rings = r.bring_up(&Setup::msix());
    // Queue 0's entry (1) masked and a buffer used: the device holds its message as pending.
    r.mask_entry(1, true);
    rings[0].push();
    r.kick(0);
    assert_eq!(r.pba(0), 0b010, "precondition: entry 1 pending");
    for (width, at) in [(8, PBA), (4, PBA), (4, PBA + 4), (2, PBA), (1, PBA)] {
        r.wr(at, width, 0);
        assert_eq!(r.pba(0), 0b010, "{width}-byte write of 0 at {at:#x}");
    }
    for (width, at) in [(8, PBA), (4, PBA), (4, PBA + 4)] {
        r.wr(at, width, u64::MAX >> (64 - 8 * width));
        assert_eq!(r.pba(0), 0b010, "{width}-byte write of ones at {at:#x}");
    }
    assert_eq!(
        r.count(|e| matches!(e, EventKind::PendingCleared { .. })),
        0
    );
    assert!(r.sink.messages().is_empty(), "{:?}", r.sink.messages());
    // The held message is still owed, and only it: unmasking sends it once.
    r.mask_entry(1, false);
    assert_eq!(r.sink.messages(), vec![msg(1)]);
    assert_eq!(r.pba(0), 0);
}

/// PCI 3.0, 6.8.2.9 and 6.8.2.10: a message due while its entry is masked sets the entry's
/// Pending Bit instead; unmasking sends it once and clears the bit.
#[test]
fn row15_entry_mask_sets_pba_and_delivers_on_unmask() {
    let mut r = Rig::new(2);
    let mut rings = r.bring_up(&Setup::msix());
    r.mask_entry(1, true);
    rings[0].push();
    r.kick(0);
    assert!(r.sink.messages().is_empty(), "masked entry sends nothing");
    assert_eq!(r.pba(0), 0b010);
    assert_eq!(
        r.count(|e| matches!(e, EventKind::PendingSet { entry: 1 })),
        1
    );
    r.mask_entry(1, false);
    assert_eq!(r.sink.messages(), vec![msg(1)]);
    assert_eq!(r.pba(0), 0);
    assert_eq!(
        r.count(|e| matches!(
            e,
            EventKind::MessageSent {
                cause: InterruptCause::PendingDelivery,
                entry: 1,
                ..
            }
        )),
        1
    );
    // Unmasking again sends nothing new.
    r.mask_entry(1, true);
    r.mask_entry(1, false);
    assert_eq!(r.sink.messages().len(), 1);
}

/// PCI 3.0, 6.8.2.3: with Function Mask set every due message becomes a Pending Bit; clearing
/// Function Mask delivers each pending (unmasked) entry and clears its bit.
#[test]
fn row15_function_mask_sets_pba_and_delivers_on_unmask() {
    let mut r = Rig::new(2);
    let mut rings = r.bring_up(&Setup::msix());
    r.set_msix_control(0xC000);
    rings[1].push();
    r.kick(1);
    r.dev.config_changed();
    assert!(r.sink.messages().is_empty());
    assert_eq!(r.pba(0), 0b101);
    assert_eq!(
        r.count(|e| matches!(
            e,
            EventKind::InterruptSuppressed {
                reason: SuppressReason::FunctionMasked,
                ..
            }
        )),
        2
    );
    // Reprogramming an unmasked, pending entry under Function Mask still sends nothing.
    r.program_entry(2, false);
    r.mask_entry(0, true);
    r.mask_entry(0, false);
    assert!(
        r.sink.messages().is_empty(),
        "Function Mask holds every entry"
    );
    assert_eq!(r.pba(0), 0b101);
    r.set_msix_control(0x8000);
    let mut got = r.sink.messages();
    got.sort();
    let mut want = vec![msg(0), msg(2)];
    want.sort();
    assert_eq!(got, want);
    assert_eq!(r.pba(0), 0);
    assert!(!r.sink.line());
}

/// PCI 3.0, 6.8.2.3: Message Control bit 15 enables MSI-X when written with a 16-bit access.
#[test]
fn msix_enable_through_16_bit_write() {
    let mut r = Rig::new(2);
    let c = r.msix_cap().unwrap();
    r.cfg_write(c + 2, 2, 0x8000);
    assert_eq!(r.cfg16(c + 2), 0x8002);
    assert!(r.dev.msix_enabled());
    assert_eq!(
        r.count(|e| matches!(
            e,
            EventKind::MsixControl {
                enabled: true,
                function_masked: false
            }
        )),
        1
    );
}

/// Failure catalogue row 16 / PCI 3.0, 6.8.2: a 32-bit configuration write at the capability
/// start covers Message Control in its upper half; Enable must take effect, the ID and next
/// pointer stay read-only.
#[test]
fn row16_msix_enable_through_32_bit_write_at_capability_start() {
    let mut r = Rig::new(2);
    let c = r.msix_cap().unwrap();
    let dw = r.cfg32(c);
    r.cfg_write(c, 4, dw | 0x8000_0000);
    assert!(r.dev.msix_enabled());
    assert_eq!(r.cfg32(c), dw | 0x8000_0000);
    r.cfg_write(c, 4, 0xFFFF_FFFF);
    assert_eq!(
        r.cfg32(c),
        dw | 0xC000_0000,
        "only Enable and Function Mask move"
    );
    r.cfg_write(c, 4, 0);
    assert!(!r.dev.msix_enabled());
    assert_eq!(r.cfg32(c), dw);
}

/// PCI 3.0, 6.8.2: a byte write to the Message Control high byte (an odd offset) toggles
/// Enable too.
#[test]
fn msix_enable_through_byte_write_at_odd_offset() {
    let mut r = Rig::new(2);
    let c = r.msix_cap().unwrap();
    r.cfg_write(c + 3, 1, 0x80);
    assert!(r.dev.msix_enabled());
    assert_eq!(r.cfg16(c + 2), 0x8002);
}

/// Failure catalogue row 15 / PCI 3.0, 6.8.2: no message leaves the device while MSI-X Enable
/// is clear, even with unmasked, programmed entries and vectors; the device uses INTx.
#[test]
fn row15_no_message_while_msix_disabled() {
    let mut r = Rig::new(2);
    let mut rings = r.bring_up(&Setup::intx());
    for i in 0..3 {
        r.program_entry(i, false);
    }
    r.set_common16(cc::MSIX_CONFIG, 0);
    r.set_queue_vector(0, 1);
    assert_eq!(
        r.queue_vector(0),
        1,
        "vectors are accepted with MSI-X disabled"
    );
    rings[0].push();
    r.kick(0);
    r.dev.config_changed();
    assert!(r.sink.messages().is_empty());
    assert_eq!(r.pba(0), 0);
    assert!(r.sink.line());
    assert_eq!(r.count(|e| matches!(e, EventKind::MessageSent { .. })), 0);
}

/// PCI 3.0, 6.8.2: the MSI-X table belongs to PCI, not to virtio; a virtio reset leaves
/// entries and Enable alone.
#[test]
fn msix_table_survives_virtio_reset() {
    let mut r = Rig::new(1);
    r.bring_up(&Setup::msix());
    r.set_device_status(0);
    assert_eq!(r.rd(TABLE + 16, 8), msg(1).0);
    assert_eq!(r.rd(TABLE + 24, 4), msg(1).1 as u64);
    assert_eq!(r.rd(TABLE + 28, 4), 0);
    assert!(r.dev.msix_enabled());
}

/// PCI 3.0, 6.8: with no MSI-X (table size 0 requested) the function has no MSI-X capability
/// and no MSI-X BAR; virtio vectors read NO_VECTOR and interrupts use INTx.
#[test]
fn without_msix_there_is_no_capability_and_vectors_read_no_vector() {
    let mut r = Rig::with_options(
        1,
        TransportOptions {
            msix_table_size: Some(0),
            ..TransportOptions::default()
        },
    );
    assert_eq!(r.msix_cap(), None);
    r.cfg_write(0x18, 4, 0xFFFF_FFFF);
    assert_eq!(r.cfg32(0x18), 0, "no BAR2");
    let mut rings = r.bring_up(&Setup::intx());
    r.set_common16(cc::MSIX_CONFIG, 0);
    assert_eq!(r.msix_config(), NO_VECTOR);
    r.set_queue_vector(0, 0);
    assert_eq!(r.queue_vector(0), NO_VECTOR);
    rings[0].push();
    r.kick(0);
    assert!(r.sink.line());
    assert_eq!(r.isr(), 1);
    assert!(!r.sink.line());
}

// =====================================================================================
// Vector selectors (catalogue rows 17, 18) and the no-vector rule
// =====================================================================================

/// Failure catalogue row 18 / virtio 1.2, 4.1.5.1.2: a vector index the table does not have is
/// stored as NO_VECTOR, so the driver's read-back shows the refusal.
#[test]
fn row18_vector_index_beyond_table_reads_back_no_vector() {
    let mut r = Rig::new(2);
    r.map_bars();
    for (written, expect) in [(3u16, NO_VECTOR), (0xE1, NO_VECTOR), (2, 2), (0, 0)] {
        r.set_common16(cc::MSIX_CONFIG, written);
        assert_eq!(r.msix_config(), expect, "msix_config <- {written:#x}");
        r.set_queue_vector(1, written);
        assert_eq!(r.queue_vector(1), expect, "queue 1 <- {written:#x}");
    }
    assert_eq!(
        r.count(|e| matches!(
            e,
            EventKind::VectorWritten {
                selector: Selector::Queue(1),
                written: 0xE1,
                read_back: NO_VECTOR
            }
        )),
        1
    );
    // A custom table of 1 entry takes only vector 0.
    let mut r = Rig::with_options(
        3,
        TransportOptions {
            msix_table_size: Some(1),
            ..TransportOptions::default()
        },
    );
    r.map_bars();
    assert_eq!(r.table_size(), 1);
    r.set_queue_vector(2, 1);
    assert_eq!(r.queue_vector(2), NO_VECTOR);
    r.set_queue_vector(2, 0);
    assert_eq!(r.queue_vector(2), 0);
}

/// Failure catalogue row 17 / virtio 1.2, 4.1.4.3.1 and 4.1.5.1.2: every vector selector reads
/// NO_VECTOR after power-on and after every reset.
#[test]
fn row17_selectors_are_no_vector_after_power_on_and_reset() {
    let mut r = Rig::new(4);
    r.map_bars();
    assert_eq!(r.msix_config(), NO_VECTOR);
    for q in 0..4 {
        assert_eq!(r.queue_vector(q), NO_VECTOR, "power-on, queue {q}");
    }
    r.bring_up(&Setup::msix());
    assert_eq!(r.queue_vector(3), 4);
    r.set_device_status(0);
    assert_eq!(r.msix_config(), NO_VECTOR);
    for q in 0..4 {
        assert_eq!(r.queue_vector(q), NO_VECTOR, "after reset, queue {q}");
    }
}

/// virtio 1.2, 4.1.5.1.2 / 4.1.4.5: with MSI-X enabled, a source whose vector is NO_VECTOR
/// sends nothing: no message, no line.
#[test]
fn source_with_no_vector_is_silent() {
    let mut r = Rig::new(2);
    let mut rings = r.bring_up(&Setup::msix());
    r.set_queue_vector(0, NO_VECTOR);
    r.set_common16(cc::MSIX_CONFIG, NO_VECTOR);
    rings[0].push();
    r.kick(0);
    r.dev.config_changed();
    assert_eq!(rings[0].used_idx(), 1);
    assert!(r.sink.messages().is_empty());
    assert!(!r.sink.line());
    assert_eq!(r.sink.raises(), 0);
    let suppressed: Vec<InterruptCause> = r
        .events()
        .into_iter()
        .filter_map(|e| match e {
            EventKind::InterruptSuppressed {
                cause,
                vector: NO_VECTOR,
                reason: SuppressReason::NoVector,
            } => Some(cause),
            _ => None,
        })
        .collect();
    assert_eq!(
        suppressed,
        vec![InterruptCause::Queue(0), InterruptCause::ConfigChange]
    );
}

// =====================================================================================
// INTx, ISR status and PCI Status bit 3 (catalogue rows 14, 19, 20, 22)
// =====================================================================================

/// Failure catalogue row 14 / virtio 1.2, 4.1.4.5.1: with MSI-X enabled the device never
/// asserts INTx, whatever ISR holds and whatever Command bit 10 says; Status bit 3 stays 0.
#[test]
fn row14_msix_enabled_line_never_high_even_with_isr_bits() {
    let mut r = Rig::new(2);
    let mut rings = r.bring_up(&Setup::msix());
    r.set_queue_vector(0, NO_VECTOR);
    rings[0].push();
    r.kick(0);
    r.dev.config_changed();
    let cmd = r.command();
    r.set_command(cmd | CMD_INTX_DISABLE);
    r.set_command(cmd & !CMD_INTX_DISABLE);
    assert!(!r.sink.line());
    assert!(!r.dev.intx_level());
    assert!(!r.status_int());
    assert_eq!(r.sink.raises(), 0);
    assert_eq!(r.isr(), 3, "ISR still records both causes");
    assert_eq!(r.count(|e| matches!(e, EventKind::LineRaised { .. })), 0);
}

/// Failure catalogue row 14 / PCI 3.0, 6.8.2: enabling MSI-X while a line interrupt is pending
/// deasserts INTx at once.
#[test]
fn row14_enabling_msix_lowers_a_pending_line() {
    let mut r = Rig::new(1);
    let mut rings = r.bring_up(&Setup::intx());
    rings[0].push();
    r.kick(0);
    assert!(r.sink.line());
    r.set_msix_control(0x8000);
    assert!(!r.sink.line());
    assert!(!r.status_int());
    assert_eq!((r.sink.raises(), r.sink.lowers()), (1, 1));
}

/// Failure catalogue rows 20 and 22 / virtio 1.2, 4.1.4.5.1: with MSI-X disabled and Command
/// bit 10 clear, INTx is high while an ISR bit is set and Status bit 3 reports it; the ISR
/// read returns the bits, clears them and deasserts the line.
#[test]
fn row20_row22_intx_high_while_isr_set_low_after_isr_read() {
    let mut r = Rig::new(2);
    let mut rings = r.bring_up(&Setup::intx());
    assert!(!r.sink.line());
    assert!(!r.status_int());
    rings[1].push();
    r.kick(1);
    assert!(r.sink.line());
    assert!(r.dev.intx_level());
    assert!(r.status_int());
    assert_eq!(r.isr(), 1);
    assert!(!r.sink.line());
    assert!(!r.status_int());
    assert_eq!((r.sink.raises(), r.sink.lowers()), (1, 1));
    assert_eq!(
        r.events()
            .into_iter()
            .filter(|e| matches!(
                e,
                EventKind::LineRaised { pin: 1 } | EventKind::LineLowered { pin: 1 }
            ))
            .count(),
        2
    );
}

/// Failure catalogue row 22 / virtio 1.2, 4.1.4.5.1: ISR status is cleared by the read (a
/// second read returns 0) and writes neither clear nor set it.
#[test]
fn row22_isr_is_read_to_clear_and_ignores_writes() {
    let mut r = Rig::new(1);
    let mut rings = r.bring_up(&Setup::intx());
    rings[0].push();
    r.kick(0);
    r.wr(ISR, 1, 0);
    r.wr(ISR, 4, 0);
    assert!(r.sink.line(), "a write does not acknowledge");
    assert_eq!(r.isr(), 1);
    assert_eq!(r.isr(), 0);
    r.wr(ISR, 1, 0x3);
    assert_eq!(r.isr(), 0, "a write does not set bits");
    assert!(!r.sink.line());
    assert_eq!(r.sink.raises(), 1);
    assert_eq!(r.count(|e| matches!(e, EventKind::IsrRead { value: 1 })), 1);
}

/// Failure catalogue row 20 / PCI 3.0, 6.2.2 and 6.2.3: Command bit 10 keeps INTA# deasserted
/// while Status bit 3 still reports the pending interrupt; clearing bit 10 asserts it.
#[test]
fn row20_interrupt_disable_keeps_line_low_while_status_bit3_reports() {
    let mut r = Rig::new(1);
    let mut rings = r.bring_up(&Setup::intx());
    let cmd = r.command();
    r.set_command(cmd | CMD_INTX_DISABLE);
    rings[0].push();
    r.kick(0);
    assert!(!r.sink.line());
    assert!(!r.dev.intx_level());
    assert!(r.status_int(), "Status bit 3 reports the pending interrupt");
    assert_eq!(r.sink.raises(), 0);
    assert_eq!(
        r.count(|e| matches!(
            e,
            EventKind::InterruptSuppressed {
                reason: SuppressReason::InterruptDisable,
                ..
            }
        )),
        1
    );
    r.set_command(cmd);
    assert!(r.sink.line());
    r.set_command(cmd | CMD_INTX_DISABLE);
    assert!(!r.sink.line());
    assert!(r.status_int());
    assert_eq!(r.isr(), 1);
    assert!(!r.status_int());
    r.set_command(cmd);
    assert!(!r.sink.line(), "nothing pending any more");
    assert_eq!((r.sink.raises(), r.sink.lowers()), (1, 1));
}

/// Failure catalogue row 19 / virtio 1.2, 4.1.4.3.1: a device reset clears ISR status and so
/// deasserts INTx.
#[test]
fn row19_reset_lowers_the_line() {
    let mut r = Rig::new(1);
    let mut rings = r.bring_up(&Setup::intx());
    rings[0].push();
    r.kick(0);
    assert!(r.sink.line());
    r.set_device_status(0);
    assert!(!r.sink.line());
    assert!(!r.dev.intx_level());
    assert!(!r.status_int());
    assert_eq!(r.isr(), 0);
    assert_eq!(r.sink.lowers(), 1);
}

/// virtio 1.2, 4.1.4.5: the ISR status byte lives at offset 0 of the ISR region; a wider read
/// at offset 0 returns it in the low byte, other offsets read 0 without clearing.
#[test]
fn isr_region_layout() {
    let mut r = Rig::new(1);
    let mut rings = r.bring_up(&Setup::intx());
    rings[0].push();
    r.kick(0);
    assert_eq!(r.rd(ISR + 1, 1), 0);
    assert_eq!(r.rd(ISR + 4, 4), 0);
    assert!(r.sink.line());
    assert_eq!(r.rd(ISR, 4), 1);
    assert!(!r.sink.line());
}

/// NullBackend is the backend of every other test; this pins the used length it reports so the
/// used-ring assertions above mean what they say.
#[test]
fn null_backend_completes_chains_with_length_zero() {
    let mut r = Rig::with_backend(Box::new(NullBackend::new(1)), TransportOptions::default());
    let mut rings = r.bring_up(&Setup::msix());
    let h0 = rings[0].push();
    let h1 = rings[0].push();
    r.kick(0);
    assert_eq!(rings[0].used_idx(), 2);
    assert_eq!(rings[0].used_elem(0), (h0 as u32, 0));
    assert_eq!(rings[0].used_elem(1), (h1 as u32, 0));
    assert_eq!(
        r.sink.messages(),
        vec![msg(1)],
        "one notification for the batch"
    );
}

/// Failure catalogue row 19 applied to snapshot/restore: after a restore the level the sink
/// sees is the level the restored device presents, in both directions.
#[test]
fn row19_restore_leaves_sink_line_equal_to_device_level() {
    let mut r = Rig::new(1);
    let mut rings = r.bring_up(&Setup::intx());
    let quiet = r.dev.snapshot();
    rings[0].push();
    r.kick(0);
    let pending = r.dev.snapshot();
    assert!(r.sink.line());

    r.dev.restore(&quiet).unwrap();
    assert!(!r.dev.intx_level());
    assert!(!r.sink.line(), "restoring a quiet state must lower the pin");
    assert!(!r.status_int());

    r.dev.restore(&pending).unwrap();
    assert!(r.dev.intx_level());
    assert!(
        r.sink.line(),
        "restoring a pending state re-asserts the pin"
    );
    assert!(r.status_int());
    assert_eq!(r.sink.raises() - r.sink.lowers(), 1);
    assert_eq!(r.isr(), 1);
    assert!(!r.sink.line());
}
