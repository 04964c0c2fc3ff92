//! A hostile guest against the transport: corrupt rings, illegal queue set-ups, notifies and
//! resets at the wrong time, MSI-X table and vector selector writes while messages are
//! pending. Every test drives the device the way a guest does (configuration cycles, MMIO,
//! guest RAM) and checks what the spec asks for: DEVICE_NEEDS_RESET with exactly one
//! configuration interrupt, an ignored access, or a message delivered exactly once; and that
//! one notify never completes more chains than the queue holds.
//!
//! Backend-level cases (descriptor loops, chains longer than the queue, lengths past 4 GiB,
//! buffers straddling the end of RAM, error status in the request) are in
//! crates/virq-backends/tests/hostile_device.rs.

use virq_device::testing::*;
use virq_device::{common as cc, status};
use virq_events::{EventKind, InterruptCause, NO_VECTOR, SuppressReason};

// ------------------------------------------------------------------------ helpers

/// The buffer every descriptor of these tests describes: 0x100 device-writable bytes.
const BUF: u64 = 0x9_0000;

/// Chains the NullBackend completed so far.
fn completed(r: &Rig) -> u64 {
    r.dev.backend().snapshot()["completed"].as_u64().unwrap()
}

fn needs_reset(r: &mut Rig) -> bool {
    r.device_status() & status::DEVICE_NEEDS_RESET != 0
}

fn needs_reset_events(r: &Rig) -> usize {
    r.count(|e| matches!(e, EventKind::NeedsReset { .. }))
}

/// Every descriptor of `ring` describes [`BUF`], device-writable; no chain is available yet.
fn describe_buf_everywhere(ring: &Ring) {
    for i in 0..ring.size {
        ring.set_desc(i, BUF, 0x100, WRITE, 0);
    }
}

/// A device with one queue brought up by `setup`, the 16 descriptors of its ring written.
fn one_queue_rig(setup: &Setup) -> (Rig, Ring) {
    let mut r = Rig::new(1);
    let ring = r.bring_up(setup).remove(0);
    describe_buf_everywhere(&ring);
    (r, ring)
}

/// One queue with MSI-X: config -> entry 0, queue 0 -> entry 1.
fn msix_rig() -> (Rig, Ring) {
    one_queue_rig(&Setup::msix())
}

fn intx_rig() -> (Rig, Ring) {
    one_queue_rig(&Setup::intx())
}

/// virtio 1.2, 4.1.4.3 and 2.1.2: the selected queue's rings are unusable, so enabling it
/// fails: queue_enable reads back 0, DEVICE_NEEDS_RESET is set and, the driver being live,
/// one configuration change message goes out on msix_config's entry 0.
#[track_caller]
fn assert_queue_enable_refused_with_needs_reset(r: &mut Rig) {
    r.set_common16(cc::QUEUE_ENABLE, 1);
    assert_eq!(r.common16(cc::QUEUE_ENABLE), 0, "queue_enable read-back");
    assert!(needs_reset(r), "DEVICE_NEEDS_RESET");
    assert_eq!(
        r.sink.take_messages(),
        vec![msg(0)],
        "one configuration change message"
    );
}

// ------------------------------------------------------------------------ corrupt rings

/// virtio 1.2, 2.7.13.3 and 2.1.2: an available index more than the queue size ahead of the
/// device's position is a corrupt ring. The device completes nothing, sets
/// DEVICE_NEEDS_RESET and sends one configuration change message; later notifies are
/// ignored and send nothing more.
#[test]
fn avail_index_far_ahead_sets_needs_reset_with_one_config_message() {
    let (mut r, mut ring) = msix_rig();
    ring.set_avail_idx(0x8000);
    r.kick(0);
    assert!(needs_reset(&mut r));
    assert_eq!(completed(&r), 0);
    assert_eq!(ring.used_idx(), 0);
    assert_eq!(r.sink.take_messages(), vec![msg(0)], "one config message");
    for _ in 0..3 {
        r.kick(0);
    }
    assert!(r.sink.messages().is_empty(), "no message after the first");
    assert_eq!(completed(&r), 0);
    assert_eq!(needs_reset_events(&r), 1);
    assert_eq!(r.isr(), 2, "ISR bit 1: configuration change");
}

/// The same corruption with INTx: ISR bit 1 and the line go up once, and a read of ISR
/// status lowers the line for good (no further notification while the device waits for a
/// reset).
#[test]
fn avail_index_far_ahead_with_intx_raises_config_interrupt_once() {
    let (mut r, mut ring) = intx_rig();
    ring.set_avail_idx(17);
    r.kick(0);
    assert!(needs_reset(&mut r));
    assert!(r.sink.line());
    assert_eq!(r.sink.raises(), 1);
    assert_eq!(r.isr(), 2);
    assert!(!r.sink.line());
    r.kick(0);
    assert_eq!(r.sink.raises(), 1);
    assert_eq!(ring.used_idx(), 0);
}

/// An available index exactly the queue size ahead is legal: one notify completes the 16
/// chains and no more, a second notify completes nothing.
#[test]
fn one_notify_completes_at_most_the_queue_size() {
    let (mut r, mut ring) = msix_rig();
    let heads: Vec<u16> = (0..ring.size).collect();
    ring.publish(&heads);
    r.kick(0);
    assert_eq!(completed(&r), ring.size as u64);
    assert_eq!(ring.used_idx(), ring.size);
    assert!(!needs_reset(&mut r));
    r.kick(0);
    assert_eq!(completed(&r), ring.size as u64);
    // 17 more in one go is a corrupt ring, not 17 completions.
    ring.publish(&(0..17).map(|i| i % ring.size).collect::<Vec<_>>());
    r.kick(0);
    assert_eq!(completed(&r), ring.size as u64);
    assert!(needs_reset(&mut r));
}

/// The available index wrapping past 0xFFFF is not corruption: the device serves the chains
/// published across the wrap.
#[test]
fn avail_index_wrap_is_served() {
    let mut r = Rig::new(1);
    let mut ring = r.setup(&Setup::msix()).remove(0);
    describe_buf_everywhere(&ring);
    // Start both sides just before the wrap: the driver's idx and the used idx it expects.
    let snap = {
        let mut s = r.dev.snapshot();
        s.queues[0].next_avail = 0xFFFC;
        s.queues[0].next_used = 0xFFFC;
        s
    };
    r.dev.restore(&snap).unwrap();
    ring.set_avail_idx(0xFFFC);
    r.driver_ok();
    ring.publish(&[0, 1, 2, 3, 4, 5, 6, 7]);
    assert_eq!(ring.avail_idx(), 4);
    r.kick(0);
    assert_eq!(completed(&r), 8);
    assert_eq!(ring.used_idx(), 4);
    assert!(!needs_reset(&mut r));
}

/// A head index beyond the queue size (virtio 1.2, 2.7.6: heads are descriptor indices) is a
/// corrupt ring: the chain is neither completed nor silently dropped, the device sets
/// DEVICE_NEEDS_RESET and tells the driver. (Regression: the NullBackend used to count such
/// a head as completed while publishing nothing.)
#[test]
fn head_index_beyond_queue_size_is_a_corrupt_ring() {
    let (mut r, mut ring) = msix_rig();
    ring.publish(&[3, ring.size + 4]);
    r.kick(0);
    assert!(needs_reset(&mut r));
    assert_eq!(ring.used_idx(), 1, "the good chain before it is returned");
    assert_eq!(completed(&r), 1);
    assert_eq!(r.sink.take_messages(), vec![msg(0)]);
}

// ------------------------------------------------------------------------ queue set-up

/// virtio 1.2, 2.7 and 4.1.4.3: queue_size takes a power of two up to the maximum; 0, a
/// non-power of two or a size beyond the maximum is ignored (the read-back shows the
/// refusal), so the ring the device walks is never larger than the one the driver sized.
#[test]
fn queue_size_zero_or_not_a_power_of_two_is_refused() {
    let mut r = Rig::new(1);
    r.map_bars();
    assert!(r.negotiate(virq_device::features::VERSION_1));
    r.select_queue(0);
    let max = r.common16(cc::QUEUE_SIZE);
    assert_eq!(max, 256);
    r.set_common16(cc::QUEUE_SIZE, 8);
    for bad in [0u16, 3, 12, 255, 512, 0x8000, 0xFFFF] {
        r.set_common16(cc::QUEUE_SIZE, bad);
        assert_eq!(r.common16(cc::QUEUE_SIZE), 8, "size {bad} accepted");
    }
    // Bytes of the field written one at a time are not the field's width: ignored.
    r.wr(COMMON + cc::QUEUE_SIZE, 1, 4);
    assert_eq!(r.common16(cc::QUEUE_SIZE), 8);
}

/// Enabling a queue whose descriptor table was given a misaligned address (2.7: 16-byte
/// alignment) fails: queue_enable stays 0, DEVICE_NEEDS_RESET is set and, the driver being
/// live, one configuration change message goes out.
#[test]
fn enabling_a_queue_with_a_misaligned_ring_sets_needs_reset() {
    let mut r = Rig::setting_up_last_queue(2);
    r.wr(COMMON + cc::QUEUE_DESC, 8, 0x2_0008);
    assert_queue_enable_refused_with_needs_reset(&mut r);
}

/// A used ring that starts in RAM but straddles its end is as unusable as one outside it.
#[test]
fn ring_straddling_the_end_of_ram_sets_needs_reset() {
    let mut r = Rig::setting_up_last_queue(2);
    // 16 used elements need 6 + 8 * 16 bytes; start 64 bytes before the end.
    r.wr(COMMON + cc::QUEUE_DEVICE, 8, RAM_SIZE - 64);
    assert_queue_enable_refused_with_needs_reset(&mut r);
    assert_eq!(
        r.count(|e| matches!(e, EventKind::NeedsReset { queue: Some(1) })),
        1
    );
}

/// Enabling a queue whose ring addresses were never written: the rings would sit at guest
/// address 0, which virtio-queue treats as "not set up" and never serves. Rather than
/// accept the queue and leave every request hanging, the device refuses it like any other
/// unusable ring: queue_enable 0, DEVICE_NEEDS_RESET, one configuration change message.
#[test]
fn enabling_a_queue_with_unset_addresses_sets_needs_reset() {
    // Queue 1 is sized but its three ring addresses are back at their reset value, 0.
    let mut r = Rig::setting_up_last_queue(2);
    for field in [cc::QUEUE_DESC, cc::QUEUE_DRIVER, cc::QUEUE_DEVICE] {
        r.wr(COMMON + field, 8, 0);
    }
    assert_queue_enable_refused_with_needs_reset(&mut r);
}

/// virtio 1.2, 4.1.4.4: a notify for a queue that is not enabled does nothing: no chain is
/// completed, no interrupt, no DEVICE_NEEDS_RESET. Notifies of the wrong width, at an
/// address between two queues' notify addresses, or for a queue that does not exist are
/// ignored the same way.
#[test]
fn notify_on_a_disabled_or_missing_queue_is_ignored() {
    let mut r = Rig::new(2);
    let mut rings = r.bring_up(&Setup {
        queues: Some(vec![1]),
        ..Setup::msix()
    });
    r.sink.take_messages();
    describe_buf_everywhere(&rings[0]);
    rings[0].publish(&[0, 1, 2]);
    r.kick(0);
    r.kick_width(0, 4);
    let n0 = r.notify_addr(0);
    r.wr(n0, 1, 0);
    r.wr(n0 + 1, 2, 0);
    r.wr(n0 + 2, 2, 0);
    r.wr(n0, 8, 0);
    // Queue 7 does not exist: its notify address lies inside the notify region.
    r.wr(n0 + 4 * 7, 2, 7);
    assert_eq!(completed(&r), 0);
    assert_eq!(rings[0].used_idx(), 0);
    assert!(r.sink.messages().is_empty());
    assert!(!needs_reset(&mut r));
    assert_eq!(r.isr(), 0);
}

// ------------------------------------------------------------------------ reset mid-flight

/// virtio 1.2, 2.4, 2.4.1 and 4.1.4.3.1: a reset while chains are in flight (some completed,
/// some published but not yet notified, a message pending in the PBA): afterwards a notify
/// does nothing, ISR status is 0 and the vector selectors read NO_VECTOR. The message pending
/// for the old queue is withdrawn (PCIe 6.1.4.5: its cause is gone; 2.4.1: no notification
/// after a reset), so unmasking the entry sends nothing (catalogue row 30).
#[test]
fn reset_in_the_middle_of_processing() {
    let (mut r, mut ring) = msix_rig();
    r.mask_entry(1, true);
    ring.publish(&[0, 1, 2, 3]);
    r.kick(0);
    assert_eq!(completed(&r), 4);
    assert_eq!(r.pba(0), 1 << 1);
    ring.publish(&[4, 5, 6, 7]);
    r.set_device_status(0);
    assert_eq!(r.device_status(), 0);
    r.kick(0);
    assert_eq!(completed(&r), 0, "the backend was reset and serves nothing");
    assert_eq!(ring.used_idx(), 4);
    assert_eq!(r.msix_config(), NO_VECTOR);
    assert_eq!(r.queue_vector(0), NO_VECTOR);
    r.select_queue(0);
    assert_eq!(r.common16(cc::QUEUE_ENABLE), 0);
    assert_eq!(r.isr(), 0);
    assert!(r.sink.messages().is_empty());
    assert_eq!(r.pba(0), 0, "the reset withdrew the Pending Bit");
    assert_eq!(
        r.count(|e| matches!(e, EventKind::PendingCleared { entry: 1 })),
        1
    );
    r.mask_entry(1, false);
    assert!(r.sink.messages().is_empty(), "no stale message after reset");
}

/// The INTx side of a reset mid-flight: the line raised by a completion goes down with the
/// reset, and a notify of the old ring afterwards raises nothing.
#[test]
fn reset_mid_flight_lowers_intx_and_stays_quiet() {
    let (mut r, mut ring) = intx_rig();
    ring.publish(&[0, 1]);
    r.kick(0);
    assert!(r.sink.line());
    ring.publish(&[2, 3]);
    r.set_device_status(0);
    assert!(!r.sink.line());
    assert!(!r.status_int());
    r.kick(0);
    assert!(!r.sink.line());
    assert_eq!(r.sink.raises(), 1);
    assert_eq!(r.sink.lowers(), 1);
    assert_eq!(ring.used_idx(), 2);
}

// ------------------------------------------------------------------------ MSI-X races

/// PCI 3.0, 6.8.2.9: while a message is pending on a masked entry the driver rewrites the
/// entry's address and data; unmasking sends exactly one message, with the new contents.
#[test]
fn msix_table_rewritten_while_pending_sends_new_message_once() {
    let (mut r, mut ring) = msix_rig();
    r.mask_entry(1, true);
    ring.publish(&[0]);
    r.kick(0);
    assert_eq!(r.pba(0), 1 << 1);
    let e = TABLE + 16;
    r.wr(e, 4, 0xFEE0_5000);
    r.wr(e + 4, 4, 0);
    r.wr(e + 8, 4, 0x4099);
    assert!(r.sink.messages().is_empty(), "masked: nothing sent");
    assert_eq!(r.pba(0), 1 << 1);
    // One qword write of Message Data and Vector Control: new data and unmask together.
    r.wr(e + 8, 8, 0x4077);
    assert_eq!(r.sink.take_messages(), vec![(0xFEE0_5000, 0x4077)]);
    assert_eq!(r.pba(0), 0);
    r.wr(e + 12, 4, 0);
    assert!(r.sink.messages().is_empty());
}

/// With the function masked the entry itself may be unmasked and rewritten: no message
/// until Function Mask clears, then exactly one with the entry's contents at that time.
#[test]
fn msix_entry_rewritten_under_function_mask_sends_once_on_unmask() {
    let (mut r, mut ring) = msix_rig();
    let ctl = r.msix_control();
    r.set_msix_control(ctl | 0x4000);
    ring.publish(&[0, 1]);
    r.kick(0);
    assert_eq!(r.pba(0), 1 << 1);
    r.wr(TABLE + 16 + 8, 4, 0x4055);
    r.wr(TABLE + 16 + 12, 4, 0);
    assert!(r.sink.messages().is_empty());
    r.set_msix_control(ctl & !0x4000);
    assert_eq!(r.sink.take_messages(), vec![(msg(1).0, 0x4055)]);
    assert_eq!(r.pba(0), 0);
}

/// virtio 1.2, 4.1.5.1.2.1 with PCIe 6.1.4.5: if the driver moves the queue to another vector
/// while a message is pending on the old entry, the queue no longer uses that entry and its
/// pending message is withdrawn (unmasking the old entry sends nothing); new completions go to
/// the new vector at once (catalogue row 30).
#[test]
fn queue_vector_rewritten_while_a_message_is_pending() {
    let mut r = Rig::new(2);
    let mut rings = r.bring_up(&Setup::msix());
    describe_buf_everywhere(&rings[0]);
    r.sink.take_messages();
    r.mask_entry(1, true);
    rings[0].publish(&[0]);
    r.kick(0);
    assert_eq!(r.pba(0), 1 << 1);
    r.set_queue_vector(0, 2);
    assert_eq!(r.queue_vector(0), 2);
    assert_eq!(r.pba(0), 0, "the re-route withdrew the Pending Bit");
    rings[0].publish(&[1]);
    r.kick(0);
    assert_eq!(r.sink.take_messages(), vec![msg(2)]);
    r.mask_entry(1, false);
    assert!(
        r.sink.take_messages().is_empty(),
        "no stale message on entry 1"
    );
}

/// msix_config rewritten to NO_VECTOR while a configuration message is pending: the source is
/// unmapped (virtio 1.2, 4.1.5.1.2.1), so its pending message is withdrawn (PCIe 6.1.4.5) and
/// unmasking sends nothing; a configuration change after the rewrite sends nothing either but
/// still sets ISR bit 1.
#[test]
fn msix_config_cleared_while_pending() {
    let (mut r, _ring) = msix_rig();
    r.sink.take_messages();
    r.mask_entry(0, true);
    r.dev.config_changed();
    assert_eq!(r.pba(0), 1);
    r.set_common16(cc::MSIX_CONFIG, NO_VECTOR);
    r.dev.config_changed();
    assert!(r.sink.messages().is_empty());
    assert_eq!(
        r.count(|e| matches!(
            e,
            EventKind::InterruptSuppressed {
                cause: InterruptCause::ConfigChange,
                reason: SuppressReason::NoVector,
                ..
            }
        )),
        1
    );
    assert_eq!(r.pba(0), 0);
    r.mask_entry(0, false);
    assert!(r.sink.take_messages().is_empty());
    assert_eq!(r.isr(), 2);
}

/// The virtio_pci_cfg_cap window pointed at nonsense (a BAR the function does not have, an
/// unaligned offset, a length of 3 or 8) is ignored: pci_cfg_data does not change the device
/// and reads back what was written.
#[test]
fn pci_cfg_window_with_illegal_targets_is_ignored() {
    let (mut r, _ring) = msix_rig();
    let cap = r.virtio_cap(virq_device::cfg_type::PCI_CFG);
    let before = r.device_status();
    for (bar, offset, len) in [
        (5u32, 0x14u32, 1u32),
        (0, 0x15, 2),
        (0, 0x14, 3),
        (0, 0x10, 8),
    ] {
        r.cfg_write(cap + 4, 1, bar);
        r.cfg_write(cap + 8, 4, offset);
        r.cfg_write(cap + 12, 4, len);
        r.cfg_write(cap + 16, 4, 0);
        let _ = r.cfg32(cap + 16);
    }
    assert_eq!(r.device_status(), before);
    assert!(r.sink.messages().is_empty());
}
