//! Raising an interrupt for a source (a queue or the configuration): the ISR bit, then one
//! MSI-X message on the source's vector or the INTx pin, never both. And the Pending Bits a
//! source leaves behind (catalogue row 30): a message held in the PBA belongs to the source
//! that caused it, and is withdrawn when that source stops using the entry (its selector is
//! re-routed or set to NO_VECTOR, or the device resets), because the event behind it no
//! longer exists for that entry (PCIe 6.1.4.5; virtio 1.2, 2.4.1 and 4.1.5.1.2.1).

use virq_events::{EventKind, InterruptCause, NO_VECTOR, NullSink, SuppressReason};
use virq_spec::virtio_pci::{ISR_CONFIG, ISR_QUEUE};

use super::common_cfg::Source;
use super::{Fault, VirtioPciDevice};
use crate::msix::Fired;
use crate::pci;
use crate::status;

impl VirtioPciDevice {
    /// Raise an interrupt for `cause`: set the ISR bit, then a message on the source's vector
    /// (MSI-X on) or the INTx pin (MSI-X off). Never both.
    pub(super) fn signal(&mut self, cause: InterruptCause) {
        let (bit, vector) = match cause {
            InterruptCause::Queue(q) => (
                ISR_QUEUE,
                self.queues
                    .get(q as usize)
                    .map_or(NO_VECTOR, |s| s.msix_vector),
            ),
            _ => (ISR_CONFIG, self.msix_config),
        };
        self.isr_status |= bit;
        if self.fault(Fault::IgnoreMsixMasks)
            && let Some(m) = self.msix.as_ref()
            && let Some(e) = m.table.get(vector as usize)
            && (!m.enabled || m.function_masked || e.masked())
        {
            self.sink.msi(e.address, e.data);
            self.events.emit(EventKind::MessageSent {
                cause,
                entry: vector,
                address: e.address,
                data: e.data,
            });
            return;
        }
        if self.fault(Fault::IntxWhileMsixEnabled) {
            self.update_intx();
        }
        match self.msix.as_mut() {
            Some(m) if m.enabled => {
                if vector == NO_VECTOR {
                    self.events.emit(EventKind::InterruptSuppressed {
                        cause,
                        vector,
                        reason: SuppressReason::NoVector,
                    });
                    return;
                }
                // Monomorphised on NullSink while recording is off: no event call at all.
                let fired = match &self.events.0 {
                    Some(events) => m.fire(vector, cause, self.sink.as_ref(), events.as_ref()),
                    None => m.fire(vector, cause, self.sink.as_ref(), &NullSink),
                };
                if fired == Fired::Pending {
                    self.mark_pending(cause);
                }
            }
            _ => {
                if self.config.command() & pci::COMMAND_INTERRUPT_DISABLE != 0 && !self.line {
                    self.events.emit(EventKind::InterruptSuppressed {
                        cause,
                        vector,
                        reason: SuppressReason::InterruptDisable,
                    });
                }
                self.update_intx();
            }
        }
    }

    /// The host changed device configuration (a disk resize, a link change): bump
    /// `config_generation` and send a configuration change interrupt (virtio 1.2, 4.1.4.3.1).
    pub fn config_changed(&mut self) {
        self.config_generation = self.config_generation.wrapping_add(1);
        self.events.emit(EventKind::ConfigChanged {
            generation: self.config_generation,
        });
        if self.device_status & status::DRIVER_OK != 0 {
            self.signal(InterruptCause::ConfigChange);
        }
    }

    /// Enter DEVICE_NEEDS_RESET (virtio 1.2, 2.1.2): stop using queues and tell a live driver
    /// with a configuration change interrupt.
    pub(super) fn needs_reset(&mut self, queue: Option<u16>) {
        if self.device_status & status::DEVICE_NEEDS_RESET != 0 {
            return;
        }
        self.device_status |= status::DEVICE_NEEDS_RESET;
        self.events.emit(EventKind::NeedsReset { queue });
        if self.device_status & status::DRIVER_OK != 0 {
            self.signal(InterruptCause::ConfigChange);
        }
    }

    /// The message for `cause` is now held in its entry's Pending Bit.
    fn mark_pending(&mut self, cause: InterruptCause) {
        match cause {
            InterruptCause::Queue(q) => {
                if let Some(slot) = self.queues.get_mut(q as usize) {
                    slot.msix_pending = true;
                }
            }
            _ => self.config_msix_pending = true,
        }
    }

    /// `source` stopped using entry `old`: if it left a message pending there and no other
    /// source has one waiting on the same entry, clear the Pending Bit (PCIe 6.1.4.5).
    pub(super) fn release_pending(&mut self, source: Source, old: u16) {
        let had = match source {
            Source::Config => std::mem::take(&mut self.config_msix_pending),
            Source::Queue(q) => self
                .queues
                .get_mut(q as usize)
                .is_some_and(|s| std::mem::take(&mut s.msix_pending)),
        };
        if !had || old == NO_VECTOR || self.fault(Fault::KeepStalePendingBits) {
            return;
        }
        let shared = (self.config_msix_pending && self.msix_config == old)
            || self
                .queues
                .iter()
                .any(|s| s.msix_pending && s.msix_vector == old);
        if shared {
            return;
        }
        if let Some(m) = self.msix.as_mut()
            && m.clear_pending_bit(old)
        {
            self.events.emit(EventKind::PendingCleared { entry: old });
        }
    }

    /// Device reset: no source exists any more, so every Pending Bit the device set is
    /// withdrawn (virtio 1.2, 2.4.1: no notification after a reset).
    pub(super) fn withdraw_all_pending(&mut self) {
        self.config_msix_pending = false;
        for slot in &mut self.queues {
            slot.msix_pending = false;
        }
        if self.fault(Fault::KeepStalePendingBits) {
            return;
        }
        let Some(m) = self.msix.as_mut() else { return };
        let pending: Vec<u16> = m.pending_entries().collect();
        for entry in pending {
            m.clear_pending_bit(entry);
            self.events.emit(EventKind::PendingCleared { entry });
        }
    }

    /// After messages may have been delivered from the PBA: a source whose entry is no longer
    /// pending has nothing waiting any more.
    pub(super) fn forget_delivered_sources(&mut self) {
        let Some(m) = self.msix.as_ref() else { return };
        if self.config_msix_pending && !m.is_pending(self.msix_config) {
            self.config_msix_pending = false;
        }
        for slot in &mut self.queues {
            if slot.msix_pending && !m.is_pending(slot.msix_vector) {
                slot.msix_pending = false;
            }
        }
    }
}
