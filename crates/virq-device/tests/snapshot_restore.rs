//! Restore refuses what does not fit, before it changes anything.
//!
//! A snapshot is input from outside the device (a file, a migration stream), so restore checks
//! it against the device it goes into and refuses with a [`SnapshotError`] naming the field:
//! one test per refusal below, each also checking that the refused device is exactly as it was
//! (state and RAM). What is checked follows the specification: negotiated features a subset of
//! the offered ones (virtio 1.2, 2.2.1 and 3.1.1), DRIVER_OK only after FEATURES_OK (3.1.1),
//! ISR bits 0 and 1 only (4.1.4.5), vectors below the table size or NO_VECTOR (4.1.5.1.2.1),
//! queue sizes a power of two up to the maximum (2.7, 4.1.4.3.2), enabled rings aligned and in
//! RAM (2.7.2), read-only configuration bits of this very function (PCI 3.0, 6.2), an MSI-X
//! table and PBA of its size (PCI 3.0, 6.8.2), no Pending Bit on an entry the function would
//! have sent at once (6.8.2.10), no notification waiting for a Bus Master Enable that is set
//! (6.2.2).

use virq_device::testing::*;
use virq_device::{DeviceError, DeviceSnapshot, SnapshotError, TransportOptions, features, status};
use virq_events::{NO_VECTOR, Selector};

/// A live MSI-X device with two queues, and its snapshot.
fn live() -> (Rig, DeviceSnapshot) {
    let mut r = Rig::new(2);
    let mut rings = r.bring_up(&Setup::msix());
    rings[0].push();
    r.kick(0);
    let snap = r.dev.snapshot();
    (r, snap)
}

/// Restore `bad` into a fresh device like the one `live` built; the refusal must leave it
/// untouched. Returns the error.
fn refused(bad: &DeviceSnapshot) -> SnapshotError {
    refused_by(Rig::new(2), bad)
}

fn refused_by(mut r: Rig, bad: &DeviceSnapshot) -> SnapshotError {
    r.map_bars();
    let before = r.dev.snapshot();
    let ram = r.mem.to_vec();
    let err = match r.dev.restore(bad) {
        Err(DeviceError::Snapshot(e)) => e,
        other => panic!("expected a snapshot refusal, got {other:?}"),
    };
    assert_eq!(
        r.dev.snapshot(),
        before,
        "a refused restore changed the device"
    );
    assert_eq!(r.mem.to_vec(), ram);
    assert!(r.sink.messages().is_empty());
    err
}

#[test]
fn a_devices_own_snapshot_restores() {
    let (r, snap) = live();
    let mut fresh = Rig::new(2);
    fresh.dev.restore(&snap).unwrap();
    assert_eq!(fresh.dev.snapshot(), snap);
    assert!(r.dev.validate_snapshot(&snap).is_ok());
}

#[test]
fn refuses_another_number_of_queues() {
    let (_, snap) = live();
    let err = refused_by(Rig::new(3), &snap);
    assert!(
        matches!(
            err,
            SnapshotError::QueueCount {
                snapshot: 2,
                device: 3
            }
        ),
        "{err}"
    );
}

#[test]
fn refuses_a_configuration_space_of_the_wrong_length() {
    let (_, mut snap) = live();
    snap.config_space.truncate(64);
    assert!(matches!(
        refused(&snap),
        SnapshotError::ConfigSpaceLength(64)
    ));
}

/// PCI 3.0, 6.2: the IDs, the class, the BAR size bits and the capability list are read-only;
/// a space that differs there belongs to another function.
#[test]
fn refuses_read_only_configuration_bits_of_another_function() {
    let (_, mut snap) = live();
    snap.config_space[0x02] ^= 0x01; // device ID
    let err = refused(&snap);
    assert!(
        matches!(err, SnapshotError::ReadOnlyConfig { offset: 0x02, .. }),
        "{err}"
    );
    let (_, mut snap) = live();
    snap.config_space[0x10] |= 0x10; // BAR0 bit 4: below the 16 KiB size, reads 0
    assert!(matches!(
        refused(&snap),
        SnapshotError::ReadOnlyConfig { offset: 0x10, .. }
    ));
}

/// PCI 3.0, 6.8.2: the table has the capability's size, or none without the capability.
#[test]
fn refuses_an_msix_table_of_another_size() {
    let (_, mut snap) = live();
    let m = snap.msix.as_mut().unwrap();
    m.table.push(m.table[0]);
    assert!(matches!(
        refused(&snap),
        SnapshotError::MsixTableSize {
            snapshot: Some(4),
            device: Some(3)
        }
    ));
    let (_, mut snap) = live();
    snap.msix = None;
    assert!(matches!(
        refused(&snap),
        SnapshotError::MsixTableSize {
            snapshot: None,
            device: Some(3)
        }
    ));
}

/// PCI 3.0, 6.8.2.10: one Pending Bit per entry; none for entries the table lacks.
#[test]
fn refuses_a_pba_that_does_not_match_the_table() {
    let (_, mut snap) = live();
    snap.msix.as_mut().unwrap().pba[0] |= 1 << 3;
    assert!(matches!(
        refused(&snap),
        SnapshotError::PbaShape { entries: 3, .. }
    ));
    let (_, mut snap) = live();
    snap.msix.as_mut().unwrap().pba.push(0);
    assert!(matches!(refused(&snap), SnapshotError::PbaShape { .. }));
}

/// PCI 3.0, 6.8.2.10: a function that may send (MSI-X Enable and Bus Master Enable set,
/// Function Mask clear) sends a message on an unmasked entry at once, so it never holds that
/// entry's Pending Bit; restoring one would keep an interrupt nothing delivers. With the entry
/// masked the same bit is a message waiting for the unmask, restored and then delivered. Found
/// by the `config_bar` fuzz target's hostile restores.
#[test]
fn refuses_a_pending_bit_the_function_would_have_sent() {
    let (_, mut snap) = live();
    let m = snap.msix.as_mut().unwrap();
    assert!(m.enabled && !m.function_masked && m.bus_master && !m.table[1].masked());
    m.pba[0] |= 1 << 1;
    assert!(matches!(
        refused(&snap),
        SnapshotError::DeliverablePending { entry: 1 }
    ));

    snap.msix.as_mut().unwrap().table[1].vector_control = 1;
    let mut fresh = Rig::new(2);
    fresh.dev.restore(&snap).unwrap();
    assert!(fresh.dev.msix().unwrap().is_pending(1));
    assert!(fresh.sink.messages().is_empty());
    fresh.mask_entry(1, false);
    assert_eq!(fresh.sink.messages(), vec![msg(1)]);
    assert!(!fresh.dev.msix().unwrap().is_pending(1));

    // Function Mask set in the snapshot's Message Control: the bit may wait, whatever the
    // entry's mask.
    let (mut r, _) = live();
    let cap = r.msix_cap().unwrap() as usize;
    let mut snap = r.dev.snapshot();
    snap.config_space[cap + 3] |= 0x40;
    snap.msix.as_mut().unwrap().pba[0] |= 1 << 1;
    Rig::new(2).dev.restore(&snap).unwrap();
}

/// PCI 3.0, 6.2.2: a notification waits only while Bus Master Enable is clear, and is served
/// the moment it is set; a snapshot of a live device with Bus Master Enable set and a
/// notification still waiting would keep the driver's buffers waiting for good. With Bus
/// Master Enable clear the same notification restores, and setting it serves the queue. Found
/// by the `config_bar` fuzz target's hostile restores.
#[test]
fn refuses_a_notification_waiting_for_bus_master_enable_while_it_is_set() {
    let (_, mut snap) = live();
    assert_ne!(snap.config_space[4] & 0x04, 0);
    snap.queues[1].notify_deferred = true;
    assert!(matches!(
        refused(&snap),
        SnapshotError::DeferredNotify { queue: 1 }
    ));

    snap.config_space[4] &= !0x04;
    let mut fresh = Rig::new(2);
    fresh.dev.restore(&snap).unwrap();
    assert_eq!(fresh.dev.deferred_queues().collect::<Vec<_>>(), [1]);
    fresh.set_command(u16::from(snap.config_space[4]) | 0x04);
    assert_eq!(fresh.dev.deferred_queues().count(), 0);
}

/// virtio 1.2, 2.2.1 and 3.1.1: with FEATURES_OK set the driver's features are a subset of the
/// offered ones and include VERSION_1.
#[test]
fn refuses_negotiated_features_the_device_does_not_offer() {
    let (_, mut snap) = live();
    snap.driver_features |= features::NOTIFICATION_DATA;
    assert!(matches!(refused(&snap), SnapshotError::Features { .. }));
    let (_, mut snap) = live();
    snap.driver_features &= !features::VERSION_1;
    assert!(matches!(refused(&snap), SnapshotError::Features { .. }));
    // Before FEATURES_OK the register may hold anything the driver wrote.
    let (_, mut snap) = live();
    snap.device_status = status::ACKNOWLEDGE | status::DRIVER;
    snap.driver_features |= features::NOTIFICATION_DATA;
    for q in &mut snap.queues {
        q.ready = false;
    }
    Rig::new(2).dev.restore(&snap).unwrap();
}

/// virtio 1.2, 3.1.1: DRIVER_OK only after FEATURES_OK.
#[test]
fn refuses_driver_ok_without_features_ok() {
    let (_, mut snap) = live();
    snap.device_status &= !status::FEATURES_OK;
    assert!(matches!(refused(&snap), SnapshotError::DeviceStatus(_)));
}

/// virtio 1.2, 4.1.4.5: ISR status has a queue bit and a configuration bit, nothing else.
#[test]
fn refuses_isr_bits_that_do_not_exist() {
    let (_, mut snap) = live();
    snap.isr_status = 0x05;
    assert!(matches!(refused(&snap), SnapshotError::IsrStatus(0x05)));
}

/// virtio 1.2, 4.1.5.1.2.1: a vector selector holds an entry of the table or NO_VECTOR.
#[test]
fn refuses_vectors_beyond_the_table() {
    let (_, mut snap) = live();
    snap.msix_config = 3;
    assert!(matches!(
        refused(&snap),
        SnapshotError::Vector {
            selector: Selector::MsixConfig,
            vector: 3,
            table_size: 3
        }
    ));
    let (_, mut snap) = live();
    snap.queues[1].msix_vector = 0x7FF;
    assert!(matches!(
        refused(&snap),
        SnapshotError::Vector {
            selector: Selector::Queue(1),
            ..
        }
    ));
    // Without MSI-X every selector reads NO_VECTOR.
    let options = TransportOptions {
        msix_table_size: Some(0),
        ..TransportOptions::default()
    };
    let mut r = Rig::with_options(2, options);
    r.bring_up(&Setup::intx());
    let mut snap = r.dev.snapshot();
    snap.queues[0].msix_vector = 0;
    let err = refused_by(Rig::with_options(2, options), &snap);
    assert!(
        matches!(err, SnapshotError::Vector { table_size: 0, .. }),
        "{err}"
    );
    snap.queues[0].msix_vector = NO_VECTOR;
    Rig::with_options(2, options).dev.restore(&snap).unwrap();
}

/// The queue's maximum is the device's, not the snapshot's.
#[test]
fn refuses_another_maximum_queue_size() {
    let (_, mut snap) = live();
    snap.queues[0].max_size = 1024;
    assert!(matches!(
        refused(&snap),
        SnapshotError::QueueMaxSize {
            queue: 0,
            snapshot: 1024,
            device: 256
        }
    ));
}

/// virtio 1.2, 2.7 and 4.1.4.3.2: a queue size is a power of two no larger than the maximum.
#[test]
fn refuses_queue_sizes_that_are_not_powers_of_two_or_too_large() {
    for size in [0u16, 3, 24, 512] {
        let (_, mut snap) = live();
        snap.queues[1].size = size;
        let err = refused(&snap);
        assert!(
            matches!(
                err,
                SnapshotError::QueueSize {
                    queue: 1,
                    max: 256,
                    ..
                }
            ),
            "size {size}: {err}"
        );
    }
}

/// virtio 1.2, 2.7.2: an enabled queue's rings are aligned and lie in guest RAM.
#[test]
fn refuses_enabled_queues_on_rings_this_device_cannot_use() {
    let (_, mut snap) = live();
    snap.queues[0].desc_table += 8;
    assert!(matches!(
        refused(&snap),
        SnapshotError::QueueRings { queue: 0, .. }
    ));
    let (_, mut snap) = live();
    snap.queues[1].used_ring = RAM_SIZE - 8;
    assert!(matches!(
        refused(&snap),
        SnapshotError::QueueRings { queue: 1, .. }
    ));
    // A disabled queue's addresses are only checked when it is enabled.
    let (_, mut snap) = live();
    snap.queues[1].ready = false;
    snap.queues[1].used_ring = RAM_SIZE - 8;
    Rig::new(2).dev.restore(&snap).unwrap();
}

/// The backend's own state is checked before the transport's is applied: a refusal there
/// leaves the transport untouched too.
#[test]
fn a_backend_refusal_changes_nothing() {
    let (_, mut snap) = live();
    snap.backend = serde_json::json!({ "nonsense": true });
    let mut r = Rig::new(2);
    let before = r.dev.snapshot();
    assert!(matches!(r.dev.restore(&snap), Err(DeviceError::Backend(_))));
    assert_eq!(r.dev.snapshot(), before);
}

/// Mid-flight state of rows 29 and 30 survives a restore: a notify waiting for Bus Master
/// Enable is served by the restored device once bit 2 is set, and the restored device still
/// knows whose Pending Bit is whose (a re-route withdraws it, PCIe 6.1.4.5).
#[test]
fn a_deferred_notify_and_a_pending_bits_owner_survive_restore() {
    let mut r = Rig::new(2);
    let mut rings = r.bring_up(&Setup::msix());
    r.sink.take_messages();
    r.mask_entry(2, true);
    rings[1].push();
    r.kick(1);
    assert_eq!(r.pba(0), 0b100);
    let cmd = r.command();
    r.set_command(cmd & !CMD_BUS_MASTER);
    rings[0].push();
    r.kick(0);
    let snap = r.dev.snapshot();

    let mut c = Rig::on_memory(
        Box::new(NullBackend::new(2)),
        TransportOptions::default(),
        r.mem.clone(),
    );
    c.dev.restore(&snap).unwrap();
    assert_eq!(c.dev.deferred_queues().collect::<Vec<_>>(), vec![0]);
    assert_eq!(rings[0].used_idx(), 0);
    c.set_command(cmd | CMD_BUS_MASTER);
    assert_eq!(
        rings[0].used_idx(),
        1,
        "the restored device served the deferred notify"
    );
    assert_eq!(c.sink.take_messages(), vec![msg(1)]);
    assert_eq!(c.pba(0), 0b100);
    c.set_queue_vector(1, 0);
    assert_eq!(c.pba(0), 0, "queue 1's pending message left with it");
}
