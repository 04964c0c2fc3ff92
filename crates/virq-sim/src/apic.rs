//! Local APIC and IOAPIC semantics, just enough to make interrupt bugs behave as on hardware.
//!
//! What matters for the checklist: MSI address/data decode to a destination and a vector;
//! level-triggered IOAPIC pins with remote IRR that re-deliver after EOI while the line stays
//! high (so a driver that never reads ISR status really storms); priority by vector class.

use serde::{Deserialize, Serialize};

/// Base of the MSI address window (Intel SDM vol. 3, 11.11.1).
pub const MSI_ADDRESS_BASE: u64 = 0xFEE0_0000;
/// Number of IOAPIC pins.
pub const IOAPIC_PINS: usize = 24;

/// A decoded MSI message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MsiMessage {
    /// Destination ID (address bits 19:12): the local APIC ID the message targets.
    pub destination: u8,
    /// The IDT vector (data bits 7:0).
    pub vector: u8,
    /// Delivery mode (data bits 10:8): 0 = fixed, 1 = lowest priority; virtio uses fixed.
    pub delivery_mode: u8,
    /// Trigger mode (data bit 15); PCI MSI is edge, so a set bit is a misprogrammed message.
    pub level_triggered: bool,
}

/// Decode an x86 MSI: address 0xFEExxxxx with destination in bits 19:12, data with vector in
/// bits 7:0, delivery mode in 10:8 and trigger mode in bit 15. None if it is not an MSI.
pub fn decode_msi(address: u64, data: u32) -> Option<MsiMessage> {
    if address & 0xFFFF_FFFF_FFF0_0000 != MSI_ADDRESS_BASE {
        return None;
    }
    Some(MsiMessage {
        destination: ((address >> 12) & 0xFF) as u8,
        vector: (data & 0xFF) as u8,
        delivery_mode: ((data >> 8) & 0x7) as u8,
        level_triggered: data & (1 << 15) != 0,
    })
}

/// A 256-bit vector bitmap (IRR or ISR).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Bitmap([u64; 4]);

impl Bitmap {
    fn set(&mut self, v: u8) {
        self.0[v as usize / 64] |= 1 << (v % 64);
    }
    fn clear(&mut self, v: u8) {
        self.0[v as usize / 64] &= !(1 << (v % 64));
    }
    fn highest(&self) -> Option<u8> {
        (0..4).rev().find_map(|w| {
            let bits = self.0[w];
            (bits != 0).then(|| (w * 64 + 63 - bits.leading_zeros() as usize) as u8)
        })
    }
}

/// One CPU's local APIC: IRR, ISR and the processor priority they imply.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LocalApic {
    /// The APIC ID MSI destinations are matched against.
    pub id: u8,
    irr: Bitmap,
    isr: Bitmap,
}

impl LocalApic {
    /// A local APIC with this ID and nothing requested or in service.
    pub fn new(id: u8) -> Self {
        LocalApic {
            id,
            ..Self::default()
        }
    }

    /// Whether a fixed interrupt on `vector` is legal: vectors 0-15 are not, and are dropped.
    pub fn accepts(vector: u8) -> bool {
        vector >= 16
    }

    /// Latch a fixed interrupt. Vectors 0-15 are illegal for fixed delivery and dropped.
    pub fn accept(&mut self, vector: u8) -> bool {
        if !Self::accepts(vector) {
            return false;
        }
        self.irr.set(vector);
        true
    }

    /// Latch every vector whose bit is set in `bits`, word `word` of a 256-bit vector bitmap
    /// (vectors `64 * word ..`): [`LocalApic::accept`] for each at once, so 0-15 are dropped.
    #[inline]
    pub fn accept_word(&mut self, word: usize, bits: u64) {
        // Vectors 0-15 are the low 16 bits of word 0.
        let legal = if word == 0 { !0xFFFF } else { !0 };
        if let Some(w) = self.irr.0.get_mut(word) {
            *w |= bits & legal;
        }
    }

    /// The vector the CPU would take now: the highest requested whose priority class is above
    /// the class of the highest in service.
    pub fn deliverable(&self) -> Option<u8> {
        let want = self.irr.highest()?;
        match self.isr.highest() {
            Some(busy) if want >> 4 <= busy >> 4 => None,
            _ => Some(want),
        }
    }

    /// The CPU takes the interrupt: IRR -> ISR.
    pub fn acknowledge(&mut self) -> Option<u8> {
        let v = self.deliverable()?;
        self.irr.clear(v);
        self.isr.set(v);
        Some(v)
    }

    /// End of interrupt: retire the highest in-service vector.
    pub fn eoi(&mut self) -> Option<u8> {
        let v = self.isr.highest()?;
        self.isr.clear(v);
        Some(v)
    }

    /// The highest vector in service (ISR), which the next EOI retires.
    pub fn in_service(&self) -> Option<u8> {
        self.isr.highest()
    }

    /// Whether any vector is requested (IRR not empty), deliverable now or not.
    #[inline]
    pub fn has_requests(&self) -> bool {
        let [a, b, c, d] = self.irr.0;
        a | b | c | d != 0
    }
}

/// One IOAPIC redirection table entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Redirection {
    /// The IDT vector the pin sends.
    pub vector: u8,
    /// The destination local APIC ID (physical mode).
    pub destination: u8,
    /// Trigger mode: PCI INTx pins are level-triggered, ISA pins edge.
    pub level_triggered: bool,
    /// The entry's mask bit; set at reset until the OS programs the pin.
    pub masked: bool,
    /// Set when a level interrupt was sent and not yet EOI'd.
    pub remote_irr: bool,
}

impl Default for Redirection {
    fn default() -> Self {
        Redirection {
            vector: 0,
            destination: 0,
            level_triggered: false,
            masked: true,
            remote_irr: false,
        }
    }
}

/// The IOAPIC: pin levels and redirection entries.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IoApic {
    /// The redirection table, one entry per input pin.
    pub entries: [Redirection; IOAPIC_PINS],
    /// Each input pin's current level (true = asserted), kept so an EOI can re-send a level
    /// interrupt whose line is still high.
    pub levels: [bool; IOAPIC_PINS],
}

impl Default for IoApic {
    fn default() -> Self {
        IoApic {
            entries: [Redirection::default(); IOAPIC_PINS],
            levels: [false; IOAPIC_PINS],
        }
    }
}

impl IoApic {
    /// Set a pin's level. Returns the vector to send to the LAPIC, if the change sends one.
    pub fn set_level(&mut self, pin: usize, level: bool) -> Option<u8> {
        let was = std::mem::replace(self.levels.get_mut(pin)?, level);
        let e = &mut self.entries[pin];
        if !level || e.masked {
            return None;
        }
        if e.level_triggered {
            if e.remote_irr {
                return None;
            }
            e.remote_irr = true;
            Some(e.vector)
        } else if !was {
            Some(e.vector)
        } else {
            None
        }
    }

    /// An EOI for `vector` reached the IOAPIC: clear remote IRR, and re-send at once for every
    /// level pin that is still asserted. This is what turns a missed ISR-status read into a
    /// storm.
    pub fn eoi(&mut self, vector: u8) -> Vec<u8> {
        let mut again = Vec::new();
        for pin in 0..IOAPIC_PINS {
            let e = &mut self.entries[pin];
            if e.level_triggered && e.remote_irr && e.vector == vector {
                e.remote_irr = false;
                if self.levels[pin] && !e.masked {
                    e.remote_irr = true;
                    again.push(e.vector);
                }
            }
        }
        again
    }

    /// Program a pin (what the OS's HAL does when it connects a line interrupt).
    pub fn program(&mut self, pin: usize, vector: u8, level_triggered: bool) -> Option<u8> {
        let e = self.entries.get_mut(pin)?;
        e.vector = vector;
        e.level_triggered = level_triggered;
        e.masked = false;
        e.remote_irr = false;
        let level = self.levels[pin];
        // A line already high when unmasked is delivered now.
        if level {
            self.levels[pin] = false;
            return self.set_level(pin, true);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn msi_decode_takes_destination_and_vector() {
        let m = decode_msi(0xFEE0_1000, 0x4062).unwrap();
        assert_eq!(m.destination, 1);
        assert_eq!(m.vector, 0x62);
        assert_eq!(m.delivery_mode, 0);
        assert!(decode_msi(0x1000, 0x62).is_none());
    }

    #[test]
    fn level_pin_redelivers_after_eoi_while_high() {
        let mut io = IoApic::default();
        io.program(16, 0x71, true);
        assert_eq!(io.set_level(16, true), Some(0x71));
        assert_eq!(io.set_level(16, true), None, "remote IRR holds it");
        assert_eq!(io.eoi(0x71), vec![0x71], "still high: storm");
        io.set_level(16, false);
        assert_eq!(io.eoi(0x71), Vec::<u8>::new());
        assert!(!io.entries[16].remote_irr);
    }

    #[test]
    fn a_word_of_vectors_is_latched_like_one_accept_each() {
        let mut by_word = LocalApic::default();
        let mut one_by_one = LocalApic::default();
        for (w, bits) in [(0usize, 0x8000_0000_0001_FFFFu64), (2, 1 << 49 | 1 << 3)] {
            by_word.accept_word(w, bits);
            for bit in 0..64 {
                if bits & 1 << bit != 0 {
                    one_by_one.accept((w * 64 + bit) as u8);
                }
            }
        }
        assert_eq!(by_word, one_by_one);
        // 0-15 dropped; 16 and 63 kept; 0xB1 (2 * 64 + 49) is the highest.
        assert_eq!(by_word.acknowledge(), Some(0xB1));
        assert_eq!(
            by_word.acknowledge(),
            None,
            "0x83 is a lower class than 0xB1"
        );
        by_word.eoi();
        assert_eq!(by_word.acknowledge(), Some(0x83));
        by_word.eoi();
        assert_eq!(by_word.acknowledge(), Some(63));
        by_word.eoi();
        assert_eq!(by_word.acknowledge(), Some(16));
        by_word.eoi();
        assert!(!by_word.has_requests());
    }

    #[test]
    fn lapic_priority_blocks_same_class() {
        let mut l = LocalApic::default();
        l.accept(0x61);
        assert_eq!(l.acknowledge(), Some(0x61));
        l.accept(0x62);
        assert_eq!(l.deliverable(), None, "same class as the one in service");
        l.accept(0x81);
        assert_eq!(l.acknowledge(), Some(0x81));
        assert_eq!(l.eoi(), Some(0x81));
        assert_eq!(l.eoi(), Some(0x61));
        assert_eq!(l.acknowledge(), Some(0x62));
    }
}
