//! The platform half a passive PC needs from its harness: PCI configuration mechanism #1,
//! BAR sizing and placement (there is no firmware), guest RAM and MMIO, line levels.

use crate::wire::{Wire, WireError};

/// PCI configuration address port and data window (PCI Local Bus 3.0, 3.2.2.3.2).
pub const CONFIG_ADDRESS: u16 = 0xCF8;
/// PCI configuration data window; byte `n` of the dword at `CONFIG_DATA + n`.
pub const CONFIG_DATA: u16 = 0xCFC;
/// Command register bits.
pub const COMMAND: u16 = 0x04;
/// Command bit 1, Memory Space.
pub const COMMAND_MEMORY: u16 = 1 << 1;
/// Command bit 2, Bus Master.
pub const COMMAND_BUS_MASTER: u16 = 1 << 2;
/// Command bit 10, Interrupt Disable.
pub const COMMAND_INTX_DISABLE: u16 = 1 << 10;
/// Status bit 3: Interrupt Status.
pub const STATUS: u16 = 0x06;
/// Status bit 3, Interrupt Status: INTx pending in the function.
pub const STATUS_INTERRUPT: u16 = 1 << 3;

/// Bus/device/function of a PCI function on bus 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bdf {
    /// Device number.
    pub device: u8,
    /// Function number.
    pub function: u8,
}

impl Bdf {
    fn address(self, offset: u16) -> u32 {
        0x8000_0000
            | (u32::from(self.device) << 11)
            | (u32::from(self.function) << 8)
            | u32::from(offset & 0xFC)
    }
}

/// A passive PC reached over qtest.
pub struct Pc {
    /// The qtest connection.
    pub wire: Wire,
}

impl Pc {
    /// A PC over `wire`.
    pub fn new(wire: Wire) -> Self {
        Pc { wire }
    }

    /// A configuration read of `bytes` (1, 2 or 4) at `offset`, through 0xCF8/0xCFC.
    pub fn cfg_read(&mut self, bdf: Bdf, offset: u16, bytes: u8) -> Result<u32, WireError> {
        self.wire.request(&format!(
            "outl {CONFIG_ADDRESS:#x} {:#x}",
            bdf.address(offset)
        ))?;
        let port = CONFIG_DATA + (offset & 3);
        let op = match bytes {
            1 => "inb",
            2 => "inw",
            _ => "inl",
        };
        Ok(self.wire.value(&format!("{op} {port:#x}"))? as u32)
    }

    /// A configuration write of `bytes` (1, 2 or 4) at `offset`, through 0xCF8/0xCFC.
    pub fn cfg_write(
        &mut self,
        bdf: Bdf,
        offset: u16,
        bytes: u8,
        value: u32,
    ) -> Result<(), WireError> {
        self.wire.request(&format!(
            "outl {CONFIG_ADDRESS:#x} {:#x}",
            bdf.address(offset)
        ))?;
        let port = CONFIG_DATA + (offset & 3);
        let op = match bytes {
            1 => "outb",
            2 => "outw",
            _ => "outl",
        };
        self.wire.request(&format!("{op} {port:#x} {value:#x}"))?;
        Ok(())
    }

    /// A sized MMIO or RAM read of 1, 2, 4 or 8 bytes.
    pub fn mem_read(&mut self, addr: u64, bytes: u8) -> Result<u64, WireError> {
        let op = match bytes {
            1 => "readb",
            2 => "readw",
            4 => "readl",
            _ => "readq",
        };
        let v = self.wire.value(&format!("{op} {addr:#x}"))?;
        // QEMU pads every sized read to 64 bits; keep only the access width.
        Ok(if bytes >= 8 {
            v
        } else {
            v & ((1u64 << (8 * u32::from(bytes))) - 1)
        })
    }

    /// A sized MMIO or RAM write of 1, 2, 4 or 8 bytes.
    pub fn mem_write(&mut self, addr: u64, bytes: u8, value: u64) -> Result<(), WireError> {
        let op = match bytes {
            1 => "writeb",
            2 => "writew",
            4 => "writel",
            _ => "writeq",
        };
        self.wire.request(&format!("{op} {addr:#x} {value:#x}"))?;
        Ok(())
    }

    /// Bulk guest-RAM read.
    pub fn ram_read(&mut self, addr: u64, buf: &mut [u8]) -> Result<(), WireError> {
        if buf.is_empty() {
            return Ok(());
        }
        let line = format!("read {addr:#x} {:#x}", buf.len());
        let reply = self.wire.request(&line)?;
        let hex = reply.strip_prefix("0x").unwrap_or(&reply);
        if hex.len() != 2 * buf.len() {
            return Err(WireError::Malformed {
                request: line,
                reply,
            });
        }
        for (i, b) in buf.iter_mut().enumerate() {
            *b = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).map_err(|_| {
                WireError::Malformed {
                    request: line.clone(),
                    reply: reply.clone(),
                }
            })?;
        }
        Ok(())
    }

    /// Bulk guest-RAM write.
    pub fn ram_write(&mut self, addr: u64, data: &[u8]) -> Result<(), WireError> {
        if data.is_empty() {
            return Ok(());
        }
        let mut line = format!("write {addr:#x} {:#x} 0x", data.len());
        for b in data {
            line.push_str(&format!("{b:02x}"));
        }
        self.wire.request(&line)?;
        Ok(())
    }

    /// Size and place every memory BAR of `bdf` from `base` upwards (each aligned to its
    /// size), then turn on Memory Space and Bus Master: what firmware would have done.
    /// Returns the address of each BAR (0 where there is none).
    pub fn assign_bars(&mut self, bdf: Bdf, mut base: u64) -> Result<[u64; 6], WireError> {
        let mut out = [0u64; 6];
        let mut bar = 0u16;
        while bar < 6 {
            let at = 0x10 + 4 * bar;
            self.cfg_write(bdf, at, 4, 0xFFFF_FFFF)?;
            let probe = self.cfg_read(bdf, at, 4)?;
            if probe == 0 || probe & 1 != 0 {
                // Absent, or an I/O BAR (modern virtio has none the core uses).
                self.cfg_write(bdf, at, 4, 0)?;
                bar += 1;
                continue;
            }
            let is64 = (probe >> 1) & 3 == 2;
            let mut size_mask = u64::from(probe & !0xF);
            if is64 {
                self.cfg_write(bdf, at + 4, 4, 0xFFFF_FFFF)?;
                let high = self.cfg_read(bdf, at + 4, 4)?;
                size_mask |= u64::from(high) << 32;
            } else {
                size_mask |= 0xFFFF_FFFF_0000_0000;
            }
            let size = (!size_mask).wrapping_add(1);
            base = base.div_ceil(size) * size;
            self.cfg_write(bdf, at, 4, base as u32)?;
            if is64 {
                self.cfg_write(bdf, at + 4, 4, (base >> 32) as u32)?;
            }
            out[usize::from(bar)] = base;
            base += size;
            bar += if is64 { 2 } else { 1 };
        }
        let command = self.cfg_read(bdf, COMMAND, 2)? as u16;
        self.cfg_write(
            bdf,
            COMMAND,
            2,
            u32::from(command | COMMAND_MEMORY | COMMAND_BUS_MASTER),
        )?;
        Ok(out)
    }
}
