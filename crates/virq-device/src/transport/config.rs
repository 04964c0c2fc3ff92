//! Configuration cycles (PCI 3.0, 6.1-6.2): the Command register's edges (Memory Space,
//! Bus Master, Interrupt Disable), Status bit 3, MSI-X Message Control (PCI 3.0, 6.8.2.3) and
//! the `virtio_pci_cfg_cap` window (virtio 1.2, 4.1.4.9).

use virq_events::EventKind;

use super::{Fault, VirtioPciDevice};
use crate::msix;
use crate::pci;

impl VirtioPciDevice {
    /// A configuration read of 1, 2 or 4 bytes at `offset`. Offsets 0x100..0x1000 (PCIe
    /// extended space, no extended capabilities) read 0; anything beyond, or other widths,
    /// read all ones, as a master abort does.
    pub fn config_read(&mut self, offset: u16, data: &mut [u8]) {
        let off = offset as usize;
        if !matches!(data.len(), 1 | 2 | 4) || off + data.len() > pci::EXTENDED_CONFIG_SIZE {
            data.fill(0xFF);
            return;
        }
        if off + data.len() > pci::CONFIG_SPACE_SIZE {
            data.fill(0);
            return;
        }
        let data_off = self.caps.pci_cfg_data();
        if off < data_off + 4 && off + data.len() > data_off {
            self.pci_cfg_window_read();
        }
        let status = self.status_register().to_le_bytes();
        for (i, b) in data.iter_mut().enumerate() {
            let o = off + i;
            *b = match o {
                pci::STATUS => status[0],
                o if o == pci::STATUS + 1 => status[1],
                _ => self.config.byte(o),
            };
        }
    }

    /// A configuration write of 1, 2 or 4 bytes at `offset`; read-only bits keep their value
    /// and writes outside the 256-byte space are ignored.
    pub fn config_write(&mut self, offset: u16, data: &[u8]) {
        let off = offset as usize;
        if !matches!(data.len(), 1 | 2 | 4) || off + data.len() > pci::CONFIG_SPACE_SIZE {
            return;
        }
        let old_command = self.config.command();
        let msix_control = self.caps.msix_control();
        let old_control = msix_control.map(|c| self.config.u16_at(c));
        for (i, b) in data.iter().enumerate() {
            self.config.write_byte_masked(off + i, *b);
        }
        if let (Some(c), Some(old)) = (msix_control, old_control)
            && self.fault(Fault::IgnoreDwordMsixControlWrite)
            && data.len() == 4
            && off <= c
            && c < off + 4
        {
            self.config.set_u16(c, old);
        }
        self.rebuild_windows();
        let command = self.config.command();
        if command != old_command {
            self.command_changed(old_command, command);
        }
        if let (Some(c), Some(old)) = (msix_control, old_control) {
            let new = self.config.u16_at(c);
            if new != old {
                self.msix_control_changed(new);
            }
        }
        let data_off = self.caps.pci_cfg_data();
        if off < data_off + 4 && off + data.len() > data_off {
            self.pci_cfg_window_write();
        }
    }

    /// A Command write changed something. Bus Master Enable going on releases what waited
    /// for it: messages held in the PBA, then the queues notified meanwhile (row 29).
    fn command_changed(&mut self, old: u16, command: u16) {
        self.events.emit(EventKind::PciCommand { value: command });
        let bus_master = command & pci::COMMAND_BUS_MASTER != 0;
        if let Some(m) = self.msix.as_mut() {
            m.bus_master = bus_master;
            m.deliver_pending(self.sink.as_ref(), self.events.as_ref());
        }
        self.forget_delivered_sources();
        self.update_intx();
        if bus_master && old & pci::COMMAND_BUS_MASTER == 0 {
            self.resume_deferred_queues();
        }
    }

    /// Status: the capability-list bit is static; bit 3 is the INTx pending state, which is
    /// the OR of the ISR bits while MSI-X is off (virtio 1.2, 4.1.4.5.1).
    pub(super) fn status_register(&self) -> u16 {
        let mut s = self.config.u16_at(pci::STATUS) & !pci::STATUS_INTERRUPT;
        if self.intx_pending() && !self.fault(Fault::IgnoreInterruptDisable) {
            s |= pci::STATUS_INTERRUPT;
        }
        s
    }

    /// Message Control changed: MSI-X Enable or Function Mask moved. Unmasking delivers what
    /// is pending; enabling MSI-X takes the function off INTx.
    fn msix_control_changed(&mut self, control: u16) {
        let Some(m) = self.msix.as_mut() else { return };
        let was = (m.enabled, m.function_masked);
        m.enabled = control & msix::CONTROL_ENABLE != 0;
        m.function_masked = control & msix::CONTROL_FUNCTION_MASK != 0;
        if (m.enabled, m.function_masked) == was {
            return;
        }
        self.events.emit(EventKind::MsixControl {
            enabled: m.enabled,
            function_masked: m.function_masked,
        });
        m.deliver_pending(self.sink.as_ref(), self.events.as_ref());
        self.forget_delivered_sources();
        self.update_intx();
    }

    /// The `virtio_pci_cfg_cap` window (virtio 1.2, 4.1.4.9): a read of `pci_cfg_data`
    /// performs a BAR read of `cap.length` bytes at `cap.bar` + `cap.offset`.
    fn pci_cfg_window_read(&mut self) {
        let Some((bar, offset, len)) = self.pci_cfg_window() else {
            return;
        };
        let mut buf = [0u8; 4];
        self.bar_read(bar, offset, &mut buf[..len]);
        let data_off = self.caps.pci_cfg_data();
        for (i, b) in buf.iter().enumerate() {
            self.config.set_byte(data_off + i, *b);
        }
    }

    fn pci_cfg_window_write(&mut self) {
        let Some((bar, offset, len)) = self.pci_cfg_window() else {
            return;
        };
        let data_off = self.caps.pci_cfg_data();
        let mut buf = [0u8; 4];
        for (i, b) in buf.iter_mut().enumerate() {
            *b = self.config.byte(data_off + i);
        }
        self.bar_write(bar, offset, &buf[..len]);
    }

    /// The window's target, if the driver set a legal one: length 1, 2 or 4, offset aligned to
    /// the length (virtio 1.2, 4.1.4.9.1); anything else is ignored.
    fn pci_cfg_window(&self) -> Option<(u8, u64, usize)> {
        let c = self.caps.pci_cfg;
        let bar = self.config.byte(c + 4);
        let offset = self.config.u32_at(c + 8) as u64;
        let len = self.config.u32_at(c + 12) as usize;
        (matches!(len, 1 | 2 | 4) && offset % len as u64 == 0).then_some((bar, offset, len))
    }
}
