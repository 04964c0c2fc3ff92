//! The notify region (virtio 1.2, 4.1.4.4): which queue a driver's write names.

use virq_events::EventKind;

use super::VirtioPciDevice;

impl VirtioPciDevice {
    pub(super) fn notify_write(&mut self, offset: u64, data: &[u8]) {
        let value = match *data {
            [a, b] => u32::from(u16::from_le_bytes([a, b])),
            [a, b, c, d] => u32::from_le_bytes([a, b, c, d]),
            _ => return,
        };
        // With a multiplier each queue has its own address; with 0 they share one and the
        // written value names the queue (virtio 1.2, 4.1.4.4 and 4.1.5.2).
        let m = self.layout.notify_off_multiplier as u64;
        let queue = if m == 0 {
            value as u16
        } else {
            // The device's layout passed `Layout::validate` when it was built, which admits
            // only 0 or an even power of two: a mask and a shift, not a division per notify.
            if offset & (m - 1) != 0 {
                return;
            }
            (offset >> m.trailing_zeros()) as u16
        };
        if queue as usize >= self.queues.len() {
            return;
        }
        self.events.emit_with(|| EventKind::QueueNotify { queue });
        self.serve_queue(queue);
    }
}
