//! MSI-X table, Pending Bit Array and the delivery rule (PCI Local Bus 3.0, section 6.8.2).
//!
//! A message is sent only while MSI-X is enabled, the function is unmasked and the entry is
//! unmasked. A message that comes due while masked sets its Pending Bit and is sent when the
//! mask clears; delivery clears the bit. The table belongs to PCI, so a virtio reset leaves it
//! alone.

use serde::{Deserialize, Serialize};
use virq_events::{EventKind, EventSink, InterruptCause, SuppressReason};

use crate::InterruptSink;

pub use virq_spec::msix::{
    CONTROL_ENABLE, CONTROL_FUNCTION_MASK, CONTROL_TABLE_SIZE, ENTRY_SIZE, MAX_TABLE_SIZE,
    VECTOR_CONTROL_MASK,
};

/// One MSI-X table entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MsixEntry {
    /// Message Address (table entry DWORDs 0 and 1, PCI 3.0, 6.8.2.7/6.8.2.8).
    pub address: u64,
    /// Message Data (table entry DWORD 2, PCI 3.0, 6.8.2.9).
    pub data: u32,
    /// Vector Control (table entry DWORD 3, PCI 3.0, 6.8.2.10): bit 0 is the per-vector Mask Bit.
    pub vector_control: u32,
}

impl Default for MsixEntry {
    /// Entries come out of reset masked (PCI 3.0, 6.8.2.9).
    fn default() -> Self {
        MsixEntry {
            address: 0,
            data: 0,
            vector_control: VECTOR_CONTROL_MASK,
        }
    }
}

impl MsixEntry {
    /// Whether the entry's Mask Bit is set: a message due on it is held in the PBA.
    pub fn masked(&self) -> bool {
        self.vector_control & VECTOR_CONTROL_MASK != 0
    }
}

/// What [`Msix::fire`] did with a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fired {
    /// Written to the sink.
    Sent,
    /// Held: its Pending Bit is set until the mask clears.
    Pending,
    /// The entry does not exist.
    Dropped,
}

/// The MSI-X state of a function.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Msix {
    /// The MSI-X table, one entry per vector (the capability's Table Size + 1 entries).
    pub table: Vec<MsixEntry>,
    /// Pending bits, 64 entries per word as the PBA lays them out.
    pub pba: Vec<u64>,
    /// MSI-X Enable (Message Control bit 15): without it the function may not send MSI-X.
    pub enabled: bool,
    /// Function Mask (Message Control bit 14): masks every vector at once, whatever its Mask Bit.
    pub function_masked: bool,
    /// PCI Command bit 2: without bus mastering the function cannot write the message, so
    /// a due message waits in the PBA until Bus Master Enable is set.
    #[serde(default = "bus_master_default")]
    pub bus_master: bool,
}

fn bus_master_default() -> bool {
    true
}

impl Msix {
    /// A disabled, unmasked function with `table_size` zeroed entries (clamped to 1..=2048), and
    /// Bus Master Enable clear as after reset.
    pub fn new(table_size: u16) -> Self {
        let n = table_size.clamp(1, MAX_TABLE_SIZE) as usize;
        Msix {
            table: vec![MsixEntry::default(); n],
            pba: vec![0; n.div_ceil(64)],
            enabled: false,
            function_masked: false,
            bus_master: false,
        }
    }

    /// Number of table entries.
    pub fn table_size(&self) -> u16 {
        self.table.len() as u16
    }

    /// Size of the table in bytes (16 per entry), as the BAR must hold it.
    pub fn table_bytes(&self) -> u64 {
        self.table.len() as u64 * ENTRY_SIZE
    }

    /// Size of the PBA in bytes: one bit per entry, rounded up to whole QWORDs.
    pub fn pba_bytes(&self) -> u64 {
        self.pba.len() as u64 * 8
    }

    /// Whether `entry`'s Pending Bit is set (false for an entry that does not exist).
    pub fn is_pending(&self, entry: u16) -> bool {
        let e = entry as usize;
        e < self.table.len() && self.pba[e / 64] & (1 << (e % 64)) != 0
    }

    fn set_pending(&mut self, entry: u16, on: bool) {
        let e = entry as usize;
        let bit = 1u64 << (e % 64);
        if on {
            self.pba[e / 64] |= bit;
        } else {
            self.pba[e / 64] &= !bit;
        }
    }

    /// Signal `entry` for `cause`. The caller has checked that MSI-X is enabled and the
    /// entry index is in range. `events` is generic so a caller that records nothing can pass
    /// [`virq_events::NullSink`] and pay for no event at all.
    #[inline]
    pub fn fire<E: EventSink + ?Sized>(
        &mut self,
        entry: u16,
        cause: InterruptCause,
        sink: &dyn InterruptSink,
        events: &E,
    ) -> Fired {
        let Some(e) = self.table.get(entry as usize).copied() else {
            return Fired::Dropped;
        };
        let reason = if !self.bus_master {
            Some(SuppressReason::BusMasterDisabled)
        } else if self.function_masked {
            Some(SuppressReason::FunctionMasked)
        } else if e.masked() {
            Some(SuppressReason::EntryMasked)
        } else {
            None
        };
        match reason {
            Some(reason) => {
                events.emit(EventKind::InterruptSuppressed {
                    cause,
                    vector: entry,
                    reason,
                });
                if !self.is_pending(entry) {
                    self.set_pending(entry, true);
                    events.emit(EventKind::PendingSet { entry });
                }
                Fired::Pending
            }
            None => {
                sink.msi(e.address, e.data);
                events.emit(EventKind::MessageSent {
                    cause,
                    entry,
                    address: e.address,
                    data: e.data,
                });
                Fired::Sent
            }
        }
    }

    /// Clear the Pending Bit of `entry` without sending its message: the events behind it
    /// were satisfied some other way (PCIe 6.1.4.5). Returns whether it was set.
    pub fn clear_pending_bit(&mut self, entry: u16) -> bool {
        if !self.is_pending(entry) {
            return false;
        }
        self.set_pending(entry, false);
        true
    }

    /// Every entry whose Pending Bit is set, in ascending order.
    pub fn pending_entries(&self) -> impl Iterator<Item = u16> + '_ {
        self.pba.iter().enumerate().flat_map(|(word, &bits)| {
            (0..64u16)
                .filter(move |b| bits & (1 << b) != 0)
                .map(move |b| word as u16 * 64 + b)
        })
    }

    /// Send every pending message whose mask is now clear (after an unmask or an enable).
    pub fn deliver_pending(&mut self, sink: &dyn InterruptSink, events: &dyn EventSink) {
        if !self.enabled || self.function_masked || !self.bus_master {
            return;
        }
        for word in 0..self.pba.len() {
            let mut bits = self.pba[word];
            while bits != 0 {
                let bit = bits.trailing_zeros() as usize;
                bits &= bits - 1;
                let entry = (word * 64 + bit) as u16;
                let e = self.table[entry as usize];
                if e.masked() {
                    continue;
                }
                self.set_pending(entry, false);
                events.emit(EventKind::PendingCleared { entry });
                sink.msi(e.address, e.data);
                events.emit(EventKind::MessageSent {
                    cause: InterruptCause::PendingDelivery,
                    entry,
                    address: e.address,
                    data: e.data,
                });
            }
        }
    }

    /// Read from the table region. Only aligned 4- and 8-byte accesses are defined
    /// (PCI 3.0, 6.8.2); anything else reads as zero.
    pub fn table_read(&self, offset: u64, data: &mut [u8]) {
        data.fill(0);
        if !aligned_dword_or_qword(offset, data.len()) || offset >= self.table_bytes() {
            return;
        }
        for (i, chunk) in data.chunks_mut(4).enumerate() {
            let off = offset + 4 * i as u64;
            if let Some(v) = self.table_dword(off) {
                chunk.copy_from_slice(&v.to_le_bytes());
            }
        }
    }

    fn table_dword(&self, off: u64) -> Option<u32> {
        let e = self.table.get((off / ENTRY_SIZE) as usize)?;
        Some(match off % ENTRY_SIZE {
            0 => e.address as u32,
            4 => (e.address >> 32) as u32,
            8 => e.data,
            _ => e.vector_control,
        })
    }

    /// Write to the table region; returns the entry touched when a write took effect.
    pub fn table_write(
        &mut self,
        offset: u64,
        data: &[u8],
        sink: &dyn InterruptSink,
        events: &dyn EventSink,
    ) {
        if !aligned_dword_or_qword(offset, data.len()) || offset >= self.table_bytes() {
            return;
        }
        let idx = (offset / ENTRY_SIZE) as usize;
        for (i, chunk) in data.chunks(4).enumerate() {
            let off = offset + 4 * i as u64;
            let v = u32::from_le_bytes(chunk.try_into().unwrap());
            let Some(e) = self.table.get_mut((off / ENTRY_SIZE) as usize) else {
                continue;
            };
            match off % ENTRY_SIZE {
                0 => e.address = (e.address & !0xFFFF_FFFF) | v as u64,
                4 => e.address = (e.address & 0xFFFF_FFFF) | ((v as u64) << 32),
                8 => e.data = v,
                // Bits 31:1 of Vector Control are reserved and read as zero.
                _ => e.vector_control = v & VECTOR_CONTROL_MASK,
            }
        }
        let e = self.table[idx];
        events.emit(EventKind::MsixEntry {
            entry: idx as u16,
            address: e.address,
            data: e.data,
            masked: e.masked(),
        });
        if !e.masked() && self.is_pending(idx as u16) {
            self.deliver_pending(sink, events);
        }
    }

    /// Read from the PBA region (read-only; aligned 4- and 8-byte accesses).
    pub fn pba_read(&self, offset: u64, data: &mut [u8]) {
        data.fill(0);
        if !aligned_dword_or_qword(offset, data.len()) {
            return;
        }
        for (i, chunk) in data.chunks_mut(4).enumerate() {
            let off = offset + 4 * i as u64;
            if let Some(word) = self.pba.get((off / 8) as usize) {
                let v = if off % 8 == 0 {
                    *word as u32
                } else {
                    (*word >> 32) as u32
                };
                chunk.copy_from_slice(&v.to_le_bytes());
            }
        }
    }
}

fn aligned_dword_or_qword(offset: u64, len: usize) -> bool {
    matches!(len, 4 | 8) && offset % len as u64 == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;
    use virq_events::NullSink;

    #[derive(Default)]
    struct Recorder(Mutex<Vec<(u64, u32)>>);
    impl InterruptSink for Recorder {
        fn msi(&self, address: u64, data: u32) {
            self.0.lock().unwrap().push((address, data));
        }
        fn set_intx(&self, _level: bool) {}
    }

    #[test]
    fn entries_power_on_masked_and_pending_delivers_on_unmask() {
        let mut m = Msix::new(3);
        m.enabled = true;
        m.bus_master = true;
        let sink = Recorder::default();
        assert!(m.table.iter().all(|e| e.masked()));
        m.table_write(16, &0xFEE0_0000u32.to_le_bytes(), &sink, &NullSink);
        m.table_write(24, &0x41u32.to_le_bytes(), &sink, &NullSink);
        m.fire(1, InterruptCause::Queue(0), &sink, &NullSink);
        assert!(m.is_pending(1));
        assert!(sink.0.lock().unwrap().is_empty());
        m.table_write(28, &0u32.to_le_bytes(), &sink, &NullSink);
        assert!(!m.is_pending(1));
        assert_eq!(*sink.0.lock().unwrap(), vec![(0xFEE0_0000, 0x41)]);
    }

    #[test]
    fn qword_table_access_round_trips_and_odd_widths_are_ignored() {
        let mut m = Msix::new(2);
        m.table_write(
            16,
            &0x1_FEE0_1000u64.to_le_bytes(),
            &NullSinkSink,
            &NullSink,
        );
        let mut q = [0u8; 8];
        m.table_read(16, &mut q);
        assert_eq!(u64::from_le_bytes(q), 0x1_FEE0_1000);
        m.table_write(17, &[0xAA, 0xBB], &NullSinkSink, &NullSink);
        m.table_read(16, &mut q);
        assert_eq!(u64::from_le_bytes(q), 0x1_FEE0_1000);
        let mut w = [0u8; 2];
        m.table_read(16, &mut w);
        assert_eq!(w, [0, 0]);
    }

    struct NullSinkSink;
    impl InterruptSink for NullSinkSink {
        fn msi(&self, _: u64, _: u32) {}
        fn set_intx(&self, _: bool) {}
    }
}
