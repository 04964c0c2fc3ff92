//! The device-side rows of the failure catalogue (14-22, 29, 30) reproduced on demand with
//! [`DeviceFaults`]. Each fault test shows the symptom the catalogue describes; the matching
//! conformance test (rows 29 and 30: `tests/bus_master_and_pending.rs`) shows it cannot happen
//! with the fault off.
//!
//! Built only with the `fault-injection` feature (`cargo test --workspace` enables it through
//! the crates that inject faults); `tests/fault_injection_off.rs` says so when it is off.
#![cfg(feature = "fault-injection")]

use virq_device::DeviceFaults;
use virq_device::testing::*;
use virq_events::{EventKind, InterruptCause, NO_VECTOR};

/// A rig whose device has the faults `switch_on` sets, every other fault off.
fn rig_with(queues: u16, switch_on: impl FnOnce(&mut DeviceFaults)) -> Rig {
    let mut faults = DeviceFaults::default();
    switch_on(&mut faults);
    let mut r = Rig::new(queues);
    r.dev.set_faults(faults);
    r
}

/// The driver makes one buffer available on `queue` and notifies; the device uses it.
fn use_one_buffer(r: &mut Rig, rings: &mut [Ring], queue: u16) {
    rings[usize::from(queue)].push();
    r.kick(queue);
}

/// Row 29 with the fault on: with Command bit 2 clear the device still reads the ring and
/// publishes the used entry (guest memory written while bus mastering is off); only the
/// message waits in the PBA. Events: PciCommand (bit 2 clear), QueueNotify, UsedPublished,
/// InterruptSuppressed (BusMasterDisabled), PendingSet.
#[test]
fn fault_row29_uses_the_rings_while_bus_master_is_off() {
    let mut r = rig_with(1, |f| f.dma_while_bus_master_disabled = true);
    let mut rings = r.bring_up(&Setup::msix());
    r.sink.take_messages();
    let cmd = r.command();
    r.set_command(cmd & !CMD_BUS_MASTER);
    rings[0].push();
    let ram_before = r.mem.to_vec();
    r.kick(0);
    assert_ne!(
        r.mem.to_vec(),
        ram_before,
        "guest RAM written without bus mastering"
    );
    assert_eq!(rings[0].used_idx(), 1);
    assert!(r.sink.messages().is_empty());
    assert_eq!(r.pba(0), 0b10);
    let events = r.events();
    let off = events
        .iter()
        .rposition(|e| matches!(e, EventKind::PciCommand { value } if value & CMD_BUS_MASTER == 0))
        .unwrap();
    assert!(
        events[off..]
            .iter()
            .any(|e| matches!(e, EventKind::UsedPublished { queue: 0, count: 1 })),
        "the catalogue's proof: used ring advanced while Command bit 2 = 0"
    );
    r.set_command(cmd | CMD_BUS_MASTER);
    assert_eq!(r.sink.messages(), vec![msg(1)]);
}

/// Row 30 with the fault on: the message a queue left pending survives a reset and is
/// delivered as a stale interrupt when the re-initialised driver unmasks the entry; the same
/// after the queue is moved to another vector.
#[test]
fn fault_row30_delivers_a_stale_pending_message_after_reset_and_reroute() {
    let faults = |f: &mut DeviceFaults| f.keep_stale_pending_bits = true;
    let mut r = rig_with(1, faults);
    let mut rings = r.bring_up(&Setup::msix());
    r.sink.take_messages();
    r.mask_entry(1, true);
    use_one_buffer(&mut r, &mut rings, 0);
    r.set_device_status(0);
    assert_eq!(r.pba(0), 0b10, "the Pending Bit survived the reset");
    assert_eq!(
        r.count(|e| matches!(e, EventKind::PendingCleared { .. })),
        0
    );
    r.bring_up(&Setup::msix());
    r.mask_entry(1, false);
    assert_eq!(r.sink.take_messages(), vec![msg(1)], "stale interrupt");
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

    let mut r = rig_with(1, faults);
    let mut rings = r.bring_up(&Setup::msix());
    r.sink.take_messages();
    r.mask_entry(1, true);
    use_one_buffer(&mut r, &mut rings, 0);
    r.set_queue_vector(0, 0);
    assert_eq!(r.pba(0), 0b10, "the Pending Bit survived the re-route");
    r.mask_entry(1, false);
    assert_eq!(r.sink.take_messages(), vec![msg(1)]);
}

/// Row 14 with the fault on: MSI-X is enabled and still the pin goes high.
#[test]
fn fault_row14_raises_intx_while_msix_is_enabled() {
    let mut r = rig_with(1, |f| f.intx_while_msix_enabled = true);
    let mut rings = r.bring_up(&Setup::msix());
    use_one_buffer(&mut r, &mut rings, 0);
    assert!(r.dev.msix_enabled());
    assert!(
        r.sink.line(),
        "the catalogue's proof: Enable = 1 and the line high"
    );
    assert!(!r.sink.messages().is_empty(), "and the message too");
}

/// Row 15 with the fault on: a masked entry still gets its message, no PBA bit.
#[test]
fn fault_row15_sends_messages_through_a_masked_entry() {
    let mut r = rig_with(1, |f| f.ignore_msix_masks = true);
    let mut rings = r.bring_up(&Setup::msix());
    r.mask_entry(1, true);
    r.sink.take_messages();
    use_one_buffer(&mut r, &mut rings, 0);
    assert_eq!(r.sink.messages(), vec![msg(1)]);
    assert_eq!(r.pba(0), 0);
}

/// Row 16 with the fault on: a dword write at the capability start leaves Enable at 0; a
/// 16-bit write still works.
#[test]
fn fault_row16_ignores_a_dword_write_of_message_control() {
    let mut r = rig_with(1, |f| f.ignore_dword_msix_control_write = true);
    r.map_bars();
    let cap = r.msix_cap().expect("MSI-X capability");
    let dword = r.cfg32(cap);
    r.cfg_write(cap, 4, dword | 0x8000_0000);
    assert!(!r.dev.msix_enabled());
    assert_eq!(r.msix_control() & 0x8000, 0);
    r.cfg_write(cap + 2, 2, 0x8000);
    assert!(r.dev.msix_enabled());
}

/// Row 17 with the fault on: the selectors survive a reset instead of reading 0xFFFF.
#[test]
fn fault_row17_keeps_vectors_across_reset() {
    let mut r = rig_with(2, |f| f.keep_vectors_across_reset = true);
    r.bring_up(&Setup::msix());
    assert_eq!(r.msix_config(), 0);
    r.set_device_status(0);
    assert_eq!(r.msix_config(), 0, "stale routing after reset");
    assert_eq!(r.queue_vector(1), 2);
}

/// Row 18 with the fault on: an index beyond the table reads back unchanged, and the source
/// stays silent.
#[test]
fn fault_row18_accepts_an_out_of_range_vector() {
    let mut r = rig_with(1, |f| f.accept_out_of_range_vectors = true);
    let mut rings = r.bring_up(&Setup::msix());
    r.set_queue_vector(0, 0xE1);
    assert_eq!(r.queue_vector(0), 0xE1, "the driver believes routing works");
    r.sink.take_messages();
    use_one_buffer(&mut r, &mut rings, 0);
    assert!(r.sink.messages().is_empty(), "but no message is ever sent");
}

/// Row 19 with the fault on: a reset with the line high leaves it high with ISR status 0.
#[test]
fn fault_row19_leaves_intx_asserted_across_reset() {
    let mut r = rig_with(1, |f| f.intx_stays_high_on_reset = true);
    let mut rings = r.bring_up(&Setup::intx());
    use_one_buffer(&mut r, &mut rings, 0);
    assert!(r.sink.line());
    r.set_device_status(0);
    assert!(r.sink.line(), "line high after reset");
    assert_eq!(r.isr(), 0, "with ISR status 0");
    assert!(r.sink.line(), "and reading it does not help");
}

/// Row 20 with the fault on: Command bit 10 does not gate the pin and Status bit 3 lies.
#[test]
fn fault_row20_ignores_interrupt_disable() {
    let mut r = rig_with(1, |f| f.ignore_interrupt_disable = true);
    let mut rings = r.bring_up(&Setup::intx());
    let cmd = r.command();
    r.set_command(cmd | CMD_INTX_DISABLE);
    use_one_buffer(&mut r, &mut rings, 0);
    assert!(r.sink.line(), "line high while Command bit 10 = 1");
    assert!(
        !r.status_int(),
        "Status bit 3 disagrees with the pending state"
    );
}

/// Row 22 with the fault on: two ISR reads both return the cause and the line stays high.
#[test]
fn fault_row22_isr_read_does_not_clear() {
    let mut r = rig_with(1, |f| f.isr_not_cleared_on_read = true);
    let mut rings = r.bring_up(&Setup::intx());
    use_one_buffer(&mut r, &mut rings, 0);
    assert_eq!(r.isr(), 1);
    assert_eq!(r.isr(), 1);
    assert!(r.sink.line());
}

/// With every fault off the same sequences behave: no fault leaks into the default device.
#[test]
fn default_faults_are_all_off() {
    let r = Rig::new(1);
    assert_eq!(r.dev.faults(), DeviceFaults::default());
    let mut r = Rig::new(1);
    r.bring_up(&Setup::msix());
    r.set_queue_vector(0, 0xE1);
    assert_eq!(r.queue_vector(0), NO_VECTOR);
}

/// A table smaller than advertised: the capability says 3 entries but index 2 is refused.
#[test]
fn fault_table_smaller_than_advertised_refuses_high_indices() {
    let mut r = Rig::new(2);
    r.bring_up(&Setup::msix());
    r.dev.set_faults(DeviceFaults {
        vectors_accepted_below: Some(2),
        ..Default::default()
    });

    assert_eq!(r.table_size(), 3);
    r.set_queue_vector(0, 1);
    r.set_queue_vector(1, 2);
    assert_eq!(r.queue_vector(0), 1);
    assert_eq!(r.queue_vector(1), NO_VECTOR);
}
