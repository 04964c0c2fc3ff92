//! ISR status (virtio 1.2, 4.1.4.5) and the INTx level (PCI 3.0, 6.2.2-6.2.3): the level is
//! computed in one place from the state, never toggled.

use virq_events::EventKind;

use super::{Fault, VirtioPciDevice};
use crate::pci;

impl VirtioPciDevice {
    /// Read-to-clear ISR status; clearing the last bit lowers INTx (virtio 1.2, 4.1.4.5.1).
    pub(super) fn isr_read(&mut self) -> u8 {
        let v = self.isr_status;
        if !self.fault(Fault::IsrNotClearedOnRead) {
            self.isr_status = 0;
        }
        self.events.emit(EventKind::IsrRead { value: v });
        self.update_intx();
        v
    }

    /// An ISR bit is pending and INTx is the function's interrupt (MSI-X off).
    pub(super) fn intx_pending(&self) -> bool {
        self.isr_status != 0 && (!self.msix_enabled() || self.fault(Fault::IntxWhileMsixEnabled))
    }

    /// Drive INTA#: high while an ISR bit is pending, MSI-X is off and Command bit 10 is clear.
    pub(super) fn update_intx(&mut self) {
        let pending = self.intx_pending();
        let disabled = self.config.command() & pci::COMMAND_INTERRUPT_DISABLE != 0
            && !self.fault(Fault::IgnoreInterruptDisable);
        let level = (pending && !disabled) || self.intx_stuck;
        if level == self.line {
            return;
        }
        self.line = level;
        self.sink.set_intx(level);
        self.events.emit(if level {
            EventKind::LineRaised {
                pin: pci::INTERRUPT_PIN_INTA,
            }
        } else {
            EventKind::LineLowered {
                pin: pci::INTERRUPT_PIN_INTA,
            }
        });
    }
}
