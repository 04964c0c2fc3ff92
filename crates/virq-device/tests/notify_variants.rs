//! Notification variants the default layout does not exercise: a shared notify address
//! (`notify_off_multiplier` = 0), VIRTIO_F_NOTIFICATION_DATA, and host-side input that is
//! processed without a guest notify.

use virq_device::GuestMemory;
use virq_device::testing::*;
use virq_device::{Layout, TransportOptions, features};

fn rig_with_multiplier(queues: u16, multiplier: u32) -> Rig {
    Rig::with_options(
        queues,
        TransportOptions {
            layout: Layout {
                notify_off_multiplier: multiplier,
                ..Layout::default()
            },
            ..TransportOptions::default()
        },
    )
}

/// virtio 1.2, 4.1.4.4: with `notify_off_multiplier` = 0 every queue shares one notify
/// address, and the value written names the queue.
#[test]
fn multiplier_zero_shares_one_address_and_the_written_index_picks_the_queue() {
    let mut r = rig_with_multiplier(3, 0);
    let mut rings = r.bring_up(&Setup::msix());
    let a0 = r.notify_addr(0);
    let a2 = r.notify_addr(2);
    assert_eq!(a0, a2, "one address for all queues");
    r.sink.take_messages();
    rings[2].push();
    r.wr(a0, 2, 2);
    assert_eq!(rings[2].used_idx(), 1, "queue 2 was processed");
    assert_eq!(rings[0].used_idx(), 0);
    assert_eq!(
        r.sink.messages(),
        vec![msg(3)],
        "queue 2's vector is entry 3"
    );
    // A value naming a queue that does not exist is ignored.
    rings[1].push();
    r.wr(a0, 2, 7);
    assert_eq!(rings[1].used_idx(), 0);
}

/// virtio 1.2, 4.1.5.2: with VIRTIO_F_NOTIFICATION_DATA the driver writes 32 bits (queue
/// index in bits 0-15, the avail index in 16-31 for split rings); the queue is still the one
/// the address names.
#[test]
fn notification_data_32_bit_writes_kick_the_addressed_queue() {
    let mut r = Rig::with_options(
        2,
        TransportOptions {
            notification_data: true,
            ..TransportOptions::default()
        },
    );
    assert_ne!(
        r.dev.device_features() & features::NOTIFICATION_DATA,
        0,
        "offered"
    );
    let mut rings = r.bring_up(&Setup {
        features: features::VERSION_1 | features::NOTIFICATION_DATA,
        ..Setup::msix()
    });
    r.sink.take_messages();
    rings[1].push();
    let addr = r.notify_addr(1);
    r.wr(addr, 4, (1u64 << 16) | 1);
    assert_eq!(rings[1].used_idx(), 1);
    assert_eq!(r.sink.messages(), vec![msg(2)]);
}

/// virtio 1.2, 4.1.4.4: a notify write that is not at a queue's notify address (inside the
/// region, off the multiplier grid) is ignored.
#[test]
fn notify_off_the_multiplier_grid_is_ignored() {
    let mut r = Rig::new(2);
    let mut rings = r.bring_up(&Setup::msix());
    rings[1].push();
    let addr = r.notify_addr(1);
    r.wr(addr + 2, 2, 1);
    assert_eq!(rings[1].used_idx(), 0);
    r.wr(addr, 2, 1);
    assert_eq!(rings[1].used_idx(), 1);
}

/// virtio 1.2, 2.7.10: with VIRTIO_F_EVENT_IDX the device publishes `avail_event` (the word
/// after the used ring) so the driver knows to notify for the next buffer. A device that
/// never writes it leaves it at 0 and a Linux guest stops notifying after the first buffer
/// (found by the real-guest run on KVM).
#[test]
fn event_idx_device_publishes_avail_event_after_each_pass() {
    let mut r = Rig::new(1);
    let mut rings = r.bring_up(&Setup {
        features: features::VERSION_1 | features::RING_EVENT_IDX,
        ..Setup::msix()
    });
    let avail_event_at = rings[0].used + 4 + 8 * u64::from(rings[0].size);
    for n in 1..=3u16 {
        rings[0].push();
        r.kick(0);
        assert_eq!(rings[0].used_idx(), n);
        let avail_event = r.mem.load_u16(avail_event_at).unwrap();
        assert_eq!(
            avail_event, n,
            "the driver must be asked to notify for buffer {n}"
        );
    }
}
