//! An Intel MultiProcessor Specification 1.4 table: how Linux finds the IOAPIC and the PCI
//! INTx routing without ACPI.
//!
//! The table is built as bytes (every structure is little-endian and packed), so no `unsafe`
//! is needed: a floating pointer structure, then a configuration table header followed by
//! processor, bus, I/O APIC, I/O interrupt and local interrupt entries (MP spec 1.4, chapter 4).

/// Local APIC base address every x86 CPU starts with.
pub const LAPIC_ADDRESS: u32 = 0xFEE0_0000;
/// The in-kernel IOAPIC's MMIO base.
pub const IOAPIC_ADDRESS: u32 = 0xFEC0_0000;
/// Most CPUs a table lists (the guest kernel is built with `CONFIG_NR_CPUS=2`; the APIC IDs
/// 0..cpus and the IOAPIC's ID after them must stay distinct).
pub const MAX_CPUS: u8 = 2;
/// Bus IDs.
pub const BUS_PCI: u8 = 0;
pub const BUS_ISA: u8 = 1;

const ENTRY_PROCESSOR: u8 = 0;
const ENTRY_BUS: u8 = 1;
const ENTRY_IOAPIC: u8 = 2;
const ENTRY_IO_INTERRUPT: u8 = 3;
const ENTRY_LOCAL_INTERRUPT: u8 = 4;

const INT_TYPE_INT: u8 = 0;
const INT_TYPE_NMI: u8 = 1;
const INT_TYPE_EXTINT: u8 = 3;

/// Interrupt flags: polarity in bits 0-1, trigger mode in bits 2-3 (0 = conforms to the bus).
const FLAGS_CONFORMING: u16 = 0;
const POLARITY_ACTIVE_HIGH: u16 = 0b01;
const TRIGGER_LEVEL: u16 = 0b11 << 2;

/// One PCI function's INTx wiring: device number on bus 0, its pin (0 = INTA#) and the IOAPIC
/// input it is wired to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PciIntx {
    /// PCI device number on bus 0.
    pub slot: u8,
    /// Interrupt pin, 0 = INTA# (the MP table's 0-based encoding, unlike the config register).
    pub pin: u8,
    /// The IOAPIC input (INTIN#) the pin is wired to; equal to the GSI with one IOAPIC.
    pub ioapic_pin: u8,
}

fn checksum(bytes: &[u8]) -> u8 {
    bytes
        .iter()
        .fold(0u8, |a, b| a.wrapping_add(*b))
        .wrapping_neg()
}

/// The IOAPIC's ID in a table listing `cpus` processors: the first ID after theirs (MP spec
/// 1.4, 4.3.3: APIC IDs are unique across local and I/O APICs).
pub fn ioapic_id(cpus: u8) -> u8 {
    cpus
}

/// Build the floating pointer structure and configuration table to be placed at guest
/// physical `base` (16-byte aligned, in one of the areas Linux scans: the EBDA, the last KiB
/// of base memory or 0xF0000-0xFFFFF), listing processors with APIC IDs `0..cpus` (CPU 0 the
/// bootstrap processor; the others application processors Linux starts with INIT/SIPI).
pub fn build(base: u32, cpus: u8, pci: &[PciIntx]) -> Vec<u8> {
    let cpus = cpus.clamp(1, MAX_CPUS);
    let ioapic_id = ioapic_id(cpus);
    let table_base = base + 16;
    let mut entries: Vec<u8> = Vec::new();
    let mut count: u16 = 0;

    // Processors (MP spec 1.4, 4.3.1): APIC ID, local APIC version 0x14, enabled (bit 0) and,
    // for CPU 0 only, bootstrap processor (bit 1), with the family/model signature of a
    // generic 64-bit CPU and the APIC + FPU feature flags.
    for id in 0..cpus {
        let mut cpu = [0u8; 20];
        cpu[0] = ENTRY_PROCESSOR;
        cpu[1] = id;
        cpu[2] = 0x14;
        cpu[3] = if id == 0 { 0b11 } else { 0b01 };
        cpu[4..8].copy_from_slice(&0x0000_0600u32.to_le_bytes());
        cpu[8..12].copy_from_slice(&((1u32 << 9) | 1).to_le_bytes());
        entries.extend_from_slice(&cpu);
        count += 1;
    }

    for (id, name) in [(BUS_PCI, b"PCI   "), (BUS_ISA, b"ISA   ")] {
        let mut bus = [0u8; 8];
        bus[0] = ENTRY_BUS;
        bus[1] = id;
        bus[2..8].copy_from_slice(name);
        entries.extend_from_slice(&bus);
        count += 1;
    }

    let mut ioapic = [0u8; 8];
    ioapic[0] = ENTRY_IOAPIC;
    ioapic[1] = ioapic_id;
    ioapic[2] = 0x11;
    ioapic[3] = 1; // enabled
    ioapic[4..8].copy_from_slice(&IOAPIC_ADDRESS.to_le_bytes());
    entries.extend_from_slice(&ioapic);
    count += 1;

    let io_int = |kind: u8, flags: u16, bus: u8, irq: u8, pin: u8| -> [u8; 8] {
        let mut e = [0u8; 8];
        e[0] = ENTRY_IO_INTERRUPT;
        e[1] = kind;
        e[2..4].copy_from_slice(&flags.to_le_bytes());
        e[4] = bus;
        e[5] = irq;
        e[6] = ioapic_id;
        e[7] = pin;
        e
    };
    // ISA IRQs 0-15 on IOAPIC inputs 0-15 (edge, active high: conforming to ISA).
    for irq in 0..16u8 {
        entries.extend_from_slice(&io_int(INT_TYPE_INT, FLAGS_CONFORMING, BUS_ISA, irq, irq));
        count += 1;
    }
    // PCI INTx: source bus IRQ = device << 2 | pin, level-triggered, active high (the
    // in-kernel IOAPIC sees the line level the VMM drives, not the inverted PCI signal).
    for p in pci {
        entries.extend_from_slice(&io_int(
            INT_TYPE_INT,
            POLARITY_ACTIVE_HIGH | TRIGGER_LEVEL,
            BUS_PCI,
            (p.slot << 2) | (p.pin & 3),
            p.ioapic_pin,
        ));
        count += 1;
    }

    // LINT0 = ExtINT (the 8259), LINT1 = NMI, for every local APIC.
    for (kind, lint) in [(INT_TYPE_EXTINT, 0u8), (INT_TYPE_NMI, 1u8)] {
        let mut e = [0u8; 8];
        e[0] = ENTRY_LOCAL_INTERRUPT;
        e[1] = kind;
        e[2..4].copy_from_slice(&FLAGS_CONFORMING.to_le_bytes());
        e[4] = BUS_ISA;
        e[5] = 0;
        e[6] = 0xFF;
        e[7] = lint;
        entries.extend_from_slice(&e);
        count += 1;
    }

    let mut header = [0u8; 44];
    header[0..4].copy_from_slice(b"PCMP");
    let len = (header.len() + entries.len()) as u16;
    header[4..6].copy_from_slice(&len.to_le_bytes());
    header[6] = 4; // spec revision 1.4
    header[8..16].copy_from_slice(b"VIRQ    ");
    header[16..28].copy_from_slice(b"KVM GUEST   ");
    header[34..36].copy_from_slice(&count.to_le_bytes());
    header[36..40].copy_from_slice(&LAPIC_ADDRESS.to_le_bytes());
    let mut table = header.to_vec();
    table.extend_from_slice(&entries);
    table[7] = checksum(&table);

    let mut floating = [0u8; 16];
    floating[0..4].copy_from_slice(b"_MP_");
    floating[4..8].copy_from_slice(&table_base.to_le_bytes());
    floating[8] = 1; // length in 16-byte units
    floating[9] = 4;
    // feature byte 1 = 0: a configuration table is present; byte 2 bit 7 = 0: no IMCR,
    // virtual wire mode.
    floating[10] = checksum(&floating);

    let mut out = floating.to_vec();
    out.extend_from_slice(&table);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const PCI: [PciIntx; 1] = [PciIntx {
        slot: 1,
        pin: 0,
        ioapic_pin: 16,
    }];

    fn sum(b: &[u8]) -> u8 {
        b.iter().fold(0u8, |a, b| a.wrapping_add(*b))
    }

    #[test]
    fn checksums_and_counts_hold() {
        let t = build(0x9FC00, 1, &PCI);
        assert_eq!(&t[0..4], b"_MP_");
        assert_eq!(sum(&t[..16]), 0);
        assert_eq!(u32::from_le_bytes(t[4..8].try_into().unwrap()), 0x9FC10);
        let table = &t[16..];
        assert_eq!(&table[0..4], b"PCMP");
        let len = u16::from_le_bytes([table[4], table[5]]) as usize;
        assert_eq!(len, table.len());
        assert_eq!(sum(table), 0);
        // 1 CPU + 2 buses + 1 IOAPIC + 16 ISA + 1 PCI + 2 local.
        assert_eq!(u16::from_le_bytes([table[34], table[35]]), 23);
        // The PCI entry: bus 0, IRQ = slot 1 << 2 | INTA, pin 16, level + active high.
        let pci_entry = &table[44 + 20 + 16 + 8 + 16 * 8..][..8];
        assert_eq!(pci_entry, &[3, 0, 0x0D, 0, 0, 4, 1, 16]);
    }

    /// MP spec 1.4, 4.3.1 and 4.3.3: one processor entry per CPU with distinct APIC IDs,
    /// exactly one bootstrap processor, and an IOAPIC ID no CPU has.
    #[test]
    fn two_cpus_get_two_processor_entries_and_the_ioapic_moves_past_them() {
        let t = build(0x9FC00, 2, &PCI);
        let table = &t[16..];
        assert_eq!(sum(table), 0);
        assert_eq!(u16::from_le_bytes([table[34], table[35]]), 24);
        let cpu = |i: usize| &table[44 + 20 * i..][..20];
        assert_eq!(
            (cpu(0)[0], cpu(0)[1], cpu(0)[3]),
            (ENTRY_PROCESSOR, 0, 0b11)
        );
        assert_eq!(
            (cpu(1)[0], cpu(1)[1], cpu(1)[3]),
            (ENTRY_PROCESSOR, 1, 0b01)
        );
        let ioapic = &table[44 + 40 + 16..][..8];
        assert_eq!((ioapic[0], ioapic[1]), (ENTRY_IOAPIC, 2));
        let pci_entry = &table[44 + 40 + 16 + 8 + 16 * 8..][..8];
        assert_eq!(pci_entry[6], 2, "I/O interrupts name the IOAPIC by its ID");
        // More CPUs than the kernel is built for are not listed.
        assert_eq!(build(0x9FC00, 8, &PCI), t);
    }
}
