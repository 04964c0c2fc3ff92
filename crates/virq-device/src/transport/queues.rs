//! Processing a queue: the Bus Master gate (catalogue row 29), the backend's pass over the
//! ring, EVENT_IDX re-arming, and the used-buffer interrupt decision.
//!
//! **Notifications while Bus Master Enable is clear.** A function whose Command bit 2 is 0
//! must not initiate memory accesses (PCI 3.0, 6.2.2): no ring read, no used-ring write, no
//! data transfer, no MSI-X write. The notify itself is a write *to* the device, which it
//! accepts as long as Memory Space decoding is on, so the device remembers it: the queue is
//! marked deferred and processed when bus mastering is enabled again. Dropping it instead
//! would lose the request for good, because a driver does not notify twice for the same
//! buffers (with EVENT_IDX it may not notify again at all until the device moves
//! `avail_event`). Bus mastering is off while firmware or an OS quiesces the function
//! (shutdown, kexec, unload); such a driver resets the device before it runs again, and a reset
//! forgets deferred notifications like everything else.

use virq_events::{EventKind, InterruptCause, SuppressReason};

use super::{Fault, VirtioPciDevice};
use crate::memory::Dma;
use crate::ring::{UsedNotification, Virtqueue};
use crate::status;

/// Backend passes one notify may trigger when EVENT_IDX keeps finding new buffers.
const MAX_PASSES_PER_NOTIFY: usize = 4;

impl VirtioPciDevice {
    /// Process `queue` as if the driver had notified it (host-side input arrived).
    pub fn process_queue(&mut self, queue: u16) {
        self.serve_queue(queue);
    }

    /// [`VirtioPciDevice::process_queue`], inlined into the notify path so a driver's notify
    /// costs one call frame, not two.
    #[inline(always)]
    pub(super) fn serve_queue(&mut self, queue: u16) {
        let live = self.device_status & status::DRIVER_OK != 0
            && self.device_status & status::DEVICE_NEEDS_RESET == 0;
        let may_dma = self.bus_master_enabled() || self.fault(Fault::DmaWhileBusMasterDisabled);
        let Some(slot) = self.queues.get_mut(queue as usize) else {
            return;
        };
        if !live || !slot.queue.ready() {
            return;
        }
        if !may_dma {
            slot.notify_deferred = true;
            return;
        }
        slot.notify_deferred = false;
        let mut vq = Virtqueue::new(&mut slot.queue, Dma::new(self.mem.as_ref()));
        // With VIRTIO_F_EVENT_IDX the driver notifies only when its avail index passes the
        // `avail_event` the device published (virtio 1.2, 2.7.10), so after each pass the device
        // must publish how far it got; if buffers arrived meanwhile, it goes round again. The
        // passes are bounded so one notify never does more than a few queues' worth of work.
        let mut used: u16 = 0;
        for _ in 0..MAX_PASSES_PER_NOTIFY {
            match self.backend.process_queue(queue, &mut vq) {
                Ok(p) => used = used.saturating_add(p.used),
                Err(_) => {
                    self.needs_reset(Some(queue));
                    return;
                }
            }
            if !vq.state().event_idx_enabled() || !vq.enable_notification().unwrap_or(false) {
                break;
            }
        }
        if used == 0 {
            return;
        }
        let decision = vq.used_notification();
        self.events
            .emit_with(|| EventKind::UsedPublished { queue, count: used });
        self.used_interrupt(queue, decision.unwrap_or(UsedNotification::Send));
    }

    /// Benchmark hook, not a stable API: run the used-buffer interrupt decision for `queue`
    /// (EVENT_IDX or `VRING_AVAIL_F_NO_INTERRUPT` suppression, ISR bit, vector lookup, MSI-X
    /// mask and PBA, message) as if the backend had just published used buffers. A queue
    /// index the device does not have is ignored.
    #[doc(hidden)]
    pub fn bench_used_interrupt(&mut self, queue: u16) {
        let Some(slot) = self.queues.get_mut(queue as usize) else {
            return;
        };
        let decision = Virtqueue::new(&mut slot.queue, Dma::new(self.mem.as_ref()))
            .used_notification()
            .unwrap_or(UsedNotification::Send);
        self.used_interrupt(queue, decision);
    }

    /// Process every ready queue that has host input waiting.
    #[inline]
    pub fn poll_backend(&mut self) {
        if !self.polls_backend {
            return;
        }
        for q in 0..self.queues.len() as u16 {
            if self.backend.has_pending_input(q) {
                self.process_queue(q);
            }
        }
    }

    pub(super) fn process_all_ready(&mut self) {
        for q in 0..self.queues.len() as u16 {
            self.process_queue(q);
        }
    }

    /// Bus Master Enable is back: serve the notifications that waited for it.
    pub(super) fn resume_deferred_queues(&mut self) {
        for q in 0..self.queues.len() as u16 {
            if self.queues[q as usize].notify_deferred {
                self.process_queue(q);
            }
        }
    }

    /// Act on the used-buffer decision (virtio 1.2, 2.7.7.2 and 2.7.10).
    fn used_interrupt(&mut self, queue: u16, decision: UsedNotification) {
        let reason = match decision {
            UsedNotification::Send => {
                self.signal(InterruptCause::Queue(queue));
                return;
            }
            UsedNotification::SuppressedByEventIdx => SuppressReason::EventIdx,
            UsedNotification::SuppressedByFlag => SuppressReason::AvailNoInterrupt,
        };
        let vector = self.queues[queue as usize].msix_vector;
        self.events.emit(EventKind::InterruptSuppressed {
            cause: InterruptCause::Queue(queue),
            vector,
            reason,
        });
    }
}
