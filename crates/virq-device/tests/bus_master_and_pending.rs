//! Catalogue rows 29 and 30, as the specification wants them.
//!
//! Row 29, Bus Master Enable (PCI Local Bus 3.0, 6.2.2, Command bit 2: "a value of 0 disables
//! the device from generating PCI accesses"): while it is clear the device initiates no memory
//! access at all, neither ring reads nor used-ring writes nor data transfers nor MSI-X
//! writes. A notify that arrives meanwhile is remembered and served when bus mastering comes
//! back; a reset forgets it. INTx is a pin, not a bus access, and keeps working.
//!
//! Row 30, stale Pending Bits (PCIe Base 6.1.4.5: a Pending bit whose interrupt events were
//! satisfied is cleared, "to avoid sending a spurious interrupt message later"; virtio 1.2,
//! 2.4.1: no notification after a reset; 4.1.5.1.2.1: a device supports unmapping any event):
//! the message a source left pending is withdrawn when the device resets and when the source
//! stops using the entry, but not while another source still waits on it.
//!
//! `tests/device_faults.rs` shows the same sequences with the faults that restore the old
//! behaviour (`dma_while_bus_master_disabled`, `keep_stale_pending_bits`).

use virq_device::testing::*;
use virq_device::{common as cc, features, status};
use virq_events::{EventKind, InterruptCause, NO_VECTOR, SuppressReason};

/// Position of the first event matching `pred` in the device's log.
fn position(r: &Rig, pred: impl Fn(&EventKind) -> bool) -> Option<usize> {
    r.events().iter().position(pred)
}

// ------------------------------------------------------------------------------- row 29

/// PCI 3.0, 6.2.2: with Command bit 2 clear a notify reads no ring, writes no used entry and
/// sends no message; guest RAM is byte-for-byte what the driver left. Setting bit 2 serves
/// the remembered notify: the used entry and the message follow the Command write.
#[test]
fn row29_notify_without_bus_master_touches_no_memory_and_is_served_once_it_is_back() {
    let mut r = Rig::new(1);
    let mut rings = r.bring_up(&Setup::msix());
    r.sink.take_messages();
    let cmd = r.command();
    r.set_command(cmd & !CMD_BUS_MASTER);
    rings[0].push();
    let ram_before = r.mem.to_vec();
    r.kick(0);
    assert_eq!(r.mem.to_vec(), ram_before, "no byte of guest RAM changed");
    assert_eq!(rings[0].used_idx(), 0);
    assert!(r.sink.messages().is_empty());
    assert_eq!(r.pba(0), 0, "nothing was due, so nothing is pending");
    assert_eq!(r.dev.deferred_queues().collect::<Vec<_>>(), vec![0]);
    assert_eq!(r.count(|e| matches!(e, EventKind::UsedPublished { .. })), 0);

    r.set_command(cmd | CMD_BUS_MASTER);
    assert_eq!(rings[0].used_idx(), 1, "served once bus mastering is back");
    assert_eq!(r.sink.take_messages(), vec![msg(1)]);
    assert_eq!(r.dev.deferred_queues().count(), 0);
    let enabled = position(
        &r,
        |e| matches!(e, EventKind::PciCommand { value } if value & CMD_BUS_MASTER != 0),
    );
    let used = position(&r, |e| {
        matches!(e, EventKind::UsedPublished { queue: 0, count: 1 })
    });
    let sent = position(&r, |e| {
        matches!(
            e,
            EventKind::MessageSent {
                cause: InterruptCause::Queue(0),
                entry: 1,
                ..
            }
        )
    });
    assert!(enabled < used && used < sent, "{:?}", r.events());
    // Served exactly once: a second enable edge finds nothing deferred.
    r.set_command(cmd & !CMD_BUS_MASTER);
    r.set_command(cmd | CMD_BUS_MASTER);
    assert_eq!(rings[0].used_idx(), 1);
    assert!(r.sink.messages().is_empty());
}

/// PCI 3.0, 6.2.2 and 6.8.2: an MSI-X message is a memory write, so a configuration change
/// without Bus Master Enable waits in the PBA and is sent once bit 2 is set again.
#[test]
fn row29_message_due_without_bus_master_waits_in_the_pba() {
    let mut r = Rig::new(1);
    r.bring_up(&Setup::msix());
    r.sink.take_messages();
    let cmd = r.command();
    r.set_command(cmd & !CMD_BUS_MASTER);
    r.dev.config_changed();
    assert!(r.sink.messages().is_empty());
    assert_eq!(r.pba(0), 1);
    assert_eq!(
        r.count(|e| matches!(
            e,
            EventKind::InterruptSuppressed {
                reason: SuppressReason::BusMasterDisabled,
                ..
            }
        )),
        1
    );
    r.set_command(cmd | CMD_BUS_MASTER);
    assert_eq!(r.sink.messages(), vec![msg(0)]);
    assert_eq!(r.pba(0), 0);
}

/// PCI 3.0, 2.2.6 and 6.2.2: INTx is a sideband pin, not a bus access; a configuration change
/// raises the line with Bus Master Enable clear.
#[test]
fn row29_intx_needs_no_bus_mastering() {
    let mut r = Rig::new(1);
    r.bring_up(&Setup::intx());
    let cmd = r.command();
    r.set_command(cmd & !CMD_BUS_MASTER);
    r.dev.config_changed();
    assert!(r.sink.line());
    assert_eq!(r.isr(), 2);
    assert!(!r.sink.line());
}

/// virtio 1.2, 3.1.1 step 8 with PCI 3.0, 6.2.2: buffers the driver made available before
/// DRIVER_OK are not fetched while bus mastering is off; they are once it is on.
#[test]
fn row29_driver_ok_without_bus_master_defers_the_first_pass() {
    let mut r = Rig::new(1);
    let mut rings = r.setup(&Setup::msix());
    rings[0].push();
    let cmd = r.command();
    r.set_command(cmd & !CMD_BUS_MASTER);
    r.driver_ok();
    assert_eq!(r.device_status() & status::DRIVER_OK, status::DRIVER_OK);
    assert_eq!(rings[0].used_idx(), 0);
    r.set_command(cmd | CMD_BUS_MASTER);
    assert_eq!(rings[0].used_idx(), 1);
}

/// virtio 1.2, 2.4: a reset forgets a notify that waited for Bus Master Enable, like all other
/// device state; enabling bus mastering afterwards reads no ring.
#[test]
fn row29_reset_forgets_a_deferred_notify() {
    let mut r = Rig::new(1);
    let mut rings = r.bring_up(&Setup::msix());
    let cmd = r.command();
    r.set_command(cmd & !CMD_BUS_MASTER);
    rings[0].push();
    r.kick(0);
    assert_eq!(r.dev.deferred_queues().count(), 1);
    r.set_device_status(0);
    assert_eq!(r.dev.deferred_queues().count(), 0);
    r.set_command(cmd | CMD_BUS_MASTER);
    assert_eq!(rings[0].used_idx(), 0);
}

// ------------------------------------------------------------------------------- row 30

/// PCIe 6.1.4.5 and virtio 1.2, 2.4.1: the queue's message pending on a masked entry is
/// withdrawn by a device reset: PendingSet, DeviceReset, PendingCleared, and unmasking the
/// entry after the driver set the device up again sends nothing.
#[test]
fn row30_reset_withdraws_the_pending_message() {
    let mut r = Rig::new(1);
    let mut rings = r.bring_up(&Setup::msix());
    r.sink.take_messages();
    r.mask_entry(1, true);
    rings[0].push();
    r.kick(0);
    assert_eq!(r.pba(0), 0b10);
    r.set_device_status(0);
    assert_eq!(r.pba(0), 0);
    let events = r.events();
    let set = events
        .iter()
        .position(|e| matches!(e, EventKind::PendingSet { entry: 1 }))
        .unwrap();
    assert!(
        matches!(
            events[set + 1..],
            [
                EventKind::DeviceStatus { value: 0 },
                EventKind::DeviceReset,
                EventKind::PendingCleared { entry: 1 },
                ..
            ]
        ),
        "{events:?}"
    );
    r.bring_up(&Setup::msix());
    r.mask_entry(1, false);
    assert!(r.sink.messages().is_empty(), "no stale interrupt");
    assert_eq!(
        r.count(|e| matches!(
            e,
            EventKind::MessageSent {
                cause: InterruptCause::PendingDelivery,
                ..
            }
        )),
        0
    );
}

/// virtio 1.2, 4.1.5.1.2.1 and PCIe 6.1.4.5: `queue_msix_vector` set to NO_VECTOR unmaps the
/// queue; the message it left pending goes with it (VectorWritten, then PendingCleared).
#[test]
fn row30_unmapping_a_queue_withdraws_its_pending_message() {
    let mut r = Rig::new(1);
    let mut rings = r.bring_up(&Setup::msix());
    r.sink.take_messages();
    r.mask_entry(1, true);
    rings[0].push();
    r.kick(0);
    r.set_queue_vector(0, NO_VECTOR);
    assert_eq!(r.pba(0), 0);
    let written = position(&r, |e| {
        matches!(
            e,
            EventKind::VectorWritten {
                written: NO_VECTOR,
                ..
            }
        )
    });
    let cleared = position(&r, |e| matches!(e, EventKind::PendingCleared { entry: 1 }));
    assert!(written < cleared, "{:?}", r.events());
    r.mask_entry(1, false);
    assert!(r.sink.messages().is_empty());
}

/// PCIe 6.1.4.5: a Pending bit stays while some source still has its event waiting. Queue 0
/// and the configuration share entry 0; moving the queue away leaves the configuration's
/// message pending, delivered once on unmask; writing the same vector again changes nothing.
#[test]
fn row30_a_shared_entry_keeps_the_message_another_source_waits_for() {
    let mut r = Rig::new(1);
    let mut rings = r.bring_up(&Setup::msix());
    r.sink.take_messages();
    r.set_queue_vector(0, 0);
    r.mask_entry(0, true);
    r.dev.config_changed();
    rings[0].push();
    r.kick(0);
    assert_eq!(r.pba(0), 0b1);
    r.set_common16(cc::MSIX_CONFIG, 0);
    assert_eq!(
        r.pba(0),
        0b1,
        "same vector written again: still routed there"
    );
    r.set_queue_vector(0, 1);
    assert_eq!(r.pba(0), 0b1, "the configuration still waits on entry 0");
    assert_eq!(
        r.count(|e| matches!(e, EventKind::PendingCleared { .. })),
        0
    );
    r.mask_entry(0, false);
    assert_eq!(r.sink.take_messages(), vec![msg(0)]);
    // Now the configuration moves away too: nothing is left to withdraw.
    r.mask_entry(0, true);
    r.set_common16(cc::MSIX_CONFIG, 1);
    assert_eq!(r.pba(0), 0);
    assert_eq!(
        r.count(|e| matches!(e, EventKind::PendingCleared { .. })),
        1
    );
}

/// virtio 1.2, 4.1.4.3.1 (VIRTIO_F_RING_RESET): a queue reset unmaps the queue's vector and
/// withdraws the message it left pending.
#[test]
fn row30_queue_reset_withdraws_the_queues_pending_message() {
    let mut r = Rig::new(2);
    let mut rings = r.bring_up(&Setup {
        features: features::VERSION_1 | features::RING_RESET,
        ..Setup::msix()
    });
    r.sink.take_messages();
    r.mask_entry(1, true);
    rings[0].push();
    r.kick(0);
    assert_eq!(r.pba(0), 0b10);
    r.select_queue(0);
    r.set_common16(cc::QUEUE_RESET, 1);
    assert_eq!(r.queue_vector(0), NO_VECTOR);
    assert_eq!(r.pba(0), 0);
    r.mask_entry(1, false);
    assert!(r.sink.messages().is_empty());
}
