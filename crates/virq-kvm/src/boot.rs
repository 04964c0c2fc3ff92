//! Guest memory layout and the 64-bit Linux boot protocol: zero page, e820 map, command line,
//! GDT, identity page tables and the vCPU's initial registers.

use kvm_bindings::{kvm_fpu, kvm_regs, kvm_segment, kvm_sregs};
use linux_loader::loader::bootparam::{boot_e820_entry, boot_params};
use vm_memory::{ByteValued, Bytes, GuestAddress};

use crate::KvmError;

pub const GDT_ADDR: u64 = 0x500;
pub const ZERO_PAGE_ADDR: u64 = 0x7000;
pub const BOOT_STACK: u64 = 0x8FF0;
pub const PML4_ADDR: u64 = 0x9000;
pub const PDPT_ADDR: u64 = 0xA000;
pub const PD_ADDR: u64 = 0xB000;
pub const CMDLINE_ADDR: u64 = 0x2_0000;
pub const CMDLINE_MAX: usize = 4096;
/// Start of the EBDA-like area at the top of base memory; the MP table goes here.
pub const EBDA_START: u64 = 0x9_FC00;
pub const HIMEM_START: u64 = 0x10_0000;
const BIOS_START: u64 = 0xF_0000;

const E820_RAM: u32 = 1;
const E820_RESERVED: u32 = 2;

/// `boot_params` as bytes for guest memory.
#[derive(Clone, Copy, Default)]
#[repr(transparent)]
struct ZeroPage(boot_params);

// SAFETY: `boot_params` is a `repr(C, packed)` structure of integers and arrays of integers
// (generated from the kernel's bootparam.h); every bit pattern is a valid value and it has no
// padding, which is what `ByteValued` requires.
unsafe impl ByteValued for ZeroPage {}

fn seg(selector: u16, type_: u8, l: u8, db: u8, s: u8) -> kvm_segment {
    kvm_segment {
        base: 0,
        limit: 0xFFFF_FFFF,
        selector,
        type_,
        present: 1,
        dpl: 0,
        db,
        s,
        l,
        g: 1,
        avl: 0,
        unusable: 0,
        padding: 0,
    }
}

/// Write the GDT, identity-mapped page tables (2 MiB pages over the first GiB), the command
/// line and the zero page with its e820 map.
pub fn setup_memory(mem: &crate::GuestRam, ram_bytes: u64, cmdline: &str) -> Result<(), KvmError> {
    let w = |what: &'static str, e: vm_memory::GuestMemoryError| KvmError::Memory {
        what,
        reason: e.to_string(),
    };
    // GDT: null, 64-bit code (0x08), data (0x10), TSS (0x18).
    let gdt: [u64; 4] = [
        0,
        0x00AF_9B00_0000_FFFF,
        0x00CF_9300_0000_FFFF,
        0x008F_8B00_0000_FFFF,
    ];
    for (i, e) in gdt.iter().enumerate() {
        mem.write_obj(*e, GuestAddress(GDT_ADDR + i as u64 * 8))
            .map_err(|e| w("gdt", e))?;
    }
    mem.write_obj(PDPT_ADDR | 0x3, GuestAddress(PML4_ADDR))
        .map_err(|e| w("pml4", e))?;
    mem.write_obj(PD_ADDR | 0x3, GuestAddress(PDPT_ADDR))
        .map_err(|e| w("pdpt", e))?;
    for i in 0..512u64 {
        // present | writable | page size (2 MiB)
        mem.write_obj((i << 21) | 0x83, GuestAddress(PD_ADDR + i * 8))
            .map_err(|e| w("pd", e))?;
    }

    if cmdline.len() + 1 > CMDLINE_MAX {
        return Err(KvmError::Config(format!(
            "command line of {} bytes is too long",
            cmdline.len()
        )));
    }
    let mut bytes = cmdline.as_bytes().to_vec();
    bytes.push(0);
    mem.write_slice(&bytes, GuestAddress(CMDLINE_ADDR))
        .map_err(|e| w("cmdline", e))?;

    let mut zp = ZeroPage::default();
    let p = &mut zp.0;
    p.hdr.type_of_loader = 0xFF;
    p.hdr.boot_flag = 0xAA55;
    p.hdr.header = 0x5372_6448; // "HdrS"
    p.hdr.version = 0x020F;
    p.hdr.cmd_line_ptr = CMDLINE_ADDR as u32;
    p.hdr.cmdline_size = cmdline.len() as u32;
    p.hdr.kernel_alignment = 0x0100_0000;
    let e820 = [
        (0, EBDA_START, E820_RAM),
        (EBDA_START, 0xA_0000 - EBDA_START, E820_RESERVED),
        (BIOS_START, HIMEM_START - BIOS_START, E820_RESERVED),
        (HIMEM_START, ram_bytes - HIMEM_START, E820_RAM),
    ];
    for (i, (addr, size, kind)) in e820.iter().enumerate() {
        p.e820_table[i] = boot_e820_entry {
            addr: *addr,
            size: *size,
            r#type: *kind,
        };
    }
    p.e820_entries = e820.len() as u8;
    mem.write_obj(zp, GuestAddress(ZERO_PAGE_ADDR))
        .map_err(|e| w("zero page", e))?;
    Ok(())
}

/// Long mode with paging, flat segments from the GDT above.
pub fn sregs(mut s: kvm_sregs) -> kvm_sregs {
    let code = seg(0x08, 0xB, 1, 0, 1);
    let data = seg(0x10, 0x3, 0, 1, 1);
    let mut tss = seg(0x18, 0xB, 0, 0, 0);
    tss.g = 0;
    tss.limit = 0xFFFF;
    s.cs = code;
    s.ds = data;
    s.es = data;
    s.fs = data;
    s.gs = data;
    s.ss = data;
    s.tr = tss;
    s.gdt.base = GDT_ADDR;
    s.gdt.limit = 4 * 8 - 1;
    s.idt.base = 0;
    s.idt.limit = 0;
    s.cr3 = PML4_ADDR;
    s.cr4 = 1 << 5; // PAE
    s.cr0 = (1 << 31) | 1; // PG | PE
    s.efer = (1 << 8) | (1 << 10); // LME | LMA
    s
}

/// Entry at the kernel's 64-bit entry point with the zero page in RSI.
pub fn regs(entry: u64) -> kvm_regs {
    kvm_regs {
        rip: entry,
        rsp: BOOT_STACK,
        rbp: BOOT_STACK,
        rsi: ZERO_PAGE_ADDR,
        rflags: 0x2,
        ..Default::default()
    }
}

/// x87 and SSE control words as after reset.
pub fn fpu() -> kvm_fpu {
    kvm_fpu {
        fcw: 0x37F,
        mxcsr: 0x1F80,
        ..Default::default()
    }
}
