//! Memory accesses: decoding a bus address against the programmed BARs (while Command bit 1
//! is set) and routing a BAR offset to its register block.

use super::VirtioPciDevice;
use crate::layout::Region;
use crate::pci;

/// The kind of BAR region an access hit, resolved once per access.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Target {
    Common(u64),
    Notify(u64),
    Isr(u64),
    Device(u64),
    MsixTable(u64),
    MsixPba(u64),
}

impl VirtioPciDevice {
    /// Decode a guest-physical MMIO address against the programmed BARs (only while the
    /// Command register's Memory Space bit is set). Returns (BAR index, offset).
    pub fn decode_mmio(&self, addr: u64, len: usize) -> Option<(u8, u64)> {
        self.windows.iter().find_map(|&(index, base, size)| {
            if addr < base {
                return None;
            }
            let off = addr - base;
            (off.checked_add(len as u64)? <= size).then_some((index, off))
        })
    }

    /// Recompute [`VirtioPciDevice::decode_mmio`]'s windows from Command and the BARs: none
    /// while Memory Space is off, and none for a BAR still at address 0.
    pub(super) fn rebuild_windows(&mut self) {
        self.windows.clear();
        if self.config.command() & pci::COMMAND_MEMORY_SPACE == 0 {
            return;
        }
        for b in self.config.bars() {
            let base = self.config.bar_base(b);
            if base != 0 {
                self.windows.push((b.index, base, b.size));
            }
        }
    }

    /// A guest MMIO read at a bus address; false when no BAR decodes it.
    pub fn mmio_read(&mut self, addr: u64, data: &mut [u8]) -> bool {
        match self.decode_mmio(addr, data.len()) {
            Some((bar, off)) => {
                self.bar_read(bar, off, data);
                true
            }
            None => false,
        }
    }

    /// A guest MMIO write at a bus address; false when no BAR decodes it.
    pub fn mmio_write(&mut self, addr: u64, data: &[u8]) -> bool {
        match self.decode_mmio(addr, data.len()) {
            Some((bar, off)) => {
                self.bar_write(bar, off, data);
                true
            }
            None => false,
        }
    }

    #[inline(always)]
    fn target(&self, bar: u8, offset: u64, len: usize) -> Option<Target> {
        let l = &self.layout;
        if let Some(o) = l.notify.contains(bar, offset, len) {
            return Some(Target::Notify(o));
        }
        if let Some(o) = l.common.contains(bar, offset, len) {
            return Some(Target::Common(o));
        }
        if let Some(o) = l.isr.contains(bar, offset, len) {
            return Some(Target::Isr(o));
        }
        if let Some(o) = l.device.contains(bar, offset, len) {
            return Some(Target::Device(o));
        }
        let m = self.msix.as_ref()?;
        let table = Region::new(l.msix_table_bar, l.msix_table_offset, m.table_bytes());
        if let Some(o) = table.contains(bar, offset, len) {
            return Some(Target::MsixTable(o));
        }
        let pba = Region::new(l.msix_pba_bar, l.msix_pba_offset, m.pba_bytes());
        pba.contains(bar, offset, len).map(Target::MsixPba)
    }

    /// A read of `data.len()` bytes at `offset` in BAR `bar`. Unmapped bytes read 0.
    pub fn bar_read(&mut self, bar: u8, offset: u64, data: &mut [u8]) {
        data.fill(0);
        if data.is_empty() || data.len() > 8 {
            return;
        }
        match self.target(bar, offset, data.len()) {
            Some(Target::Common(o)) => self.common_read(o, data),
            Some(Target::Isr(o)) => {
                if o == 0 {
                    data[0] = self.isr_read();
                }
            }
            Some(Target::Device(o)) => {
                if o < self.backend.config_len() as u64 {
                    self.backend.read_config(o, data);
                }
            }
            Some(Target::MsixTable(o)) => {
                if let Some(m) = &self.msix {
                    m.table_read(o, data)
                }
            }
            Some(Target::MsixPba(o)) => {
                if let Some(m) = &self.msix {
                    m.pba_read(o, data)
                }
            }
            Some(Target::Notify(_)) | None => {}
        }
    }

    /// A write of `data.len()` bytes at `offset` in BAR `bar`. Unmapped bytes are ignored.
    pub fn bar_write(&mut self, bar: u8, offset: u64, data: &[u8]) {
        if data.is_empty() || data.len() > 8 {
            return;
        }
        match self.target(bar, offset, data.len()) {
            Some(Target::Notify(o)) => self.notify_write(o, data),
            Some(Target::Common(o)) => self.common_write(o, data),
            Some(Target::Device(o)) => {
                if o < self.backend.config_len() as u64 && self.backend.write_config(o, data) {
                    self.config_changed();
                }
            }
            Some(Target::MsixTable(o)) => {
                if let Some(m) = self.msix.as_mut() {
                    m.table_write(o, data, self.sink.as_ref(), self.events.as_ref());
                    self.forget_delivered_sources();
                }
            }
            // ISR status ignores writes (virtio 1.2, 4.1.4.5); the PBA is read-only.
            Some(Target::Isr(_)) | Some(Target::MsixPba(_)) | None => {}
        }
    }
}
