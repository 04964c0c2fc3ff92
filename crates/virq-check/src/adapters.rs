//! The guest bring-up library's two doors, opened onto the simulated machine: register
//! accesses become configuration cycles through ports 0xCF8/0xCFC and MMIO at the BAR
//! addresses firmware assigned; guest RAM is the machine's RAM.

use std::cell::RefCell;
use std::rc::Rc;

use std::sync::atomic::Ordering;
use virq_guest::{GuestRam, RamError, RegisterAccess, Width};
use virq_sim::{CONFIG_ADDRESS_PORT, CONFIG_DATA_PORT, Machine};

use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend};

/// Register access to the function in `slot` of a shared machine.
#[derive(Clone)]
pub struct MachineRegs {
    machine: Rc<RefCell<Machine>>,
    slot: u8,
}

impl MachineRegs {
    pub fn new(machine: Rc<RefCell<Machine>>, slot: u8) -> Self {
        MachineRegs { machine, slot }
    }

    fn bar_base(&self, bar: u8) -> Option<u64> {
        self.machine.borrow().device(self.slot)?.bar_address(bar)
    }
}

impl RegisterAccess for MachineRegs {
    fn config_read(&mut self, offset: u16, width: Width) -> u32 {
        let mut m = self.machine.borrow_mut();
        let addr = 0x8000_0000u32 | ((self.slot as u32) << 11) | (offset as u32 & 0xFC);
        m.port_write(CONFIG_ADDRESS_PORT, &addr.to_le_bytes());
        let mut b = [0u8; 4];
        let n = width.bytes() as usize;
        m.port_read(CONFIG_DATA_PORT + (offset & 3), &mut b[..n]);
        u32::from_le_bytes(b)
    }

    fn config_write(&mut self, offset: u16, width: Width, value: u32) {
        let mut m = self.machine.borrow_mut();
        let addr = 0x8000_0000u32 | ((self.slot as u32) << 11) | (offset as u32 & 0xFC);
        m.port_write(CONFIG_ADDRESS_PORT, &addr.to_le_bytes());
        let n = width.bytes() as usize;
        m.port_write(CONFIG_DATA_PORT + (offset & 3), &value.to_le_bytes()[..n]);
    }

    fn bar_read(&mut self, bar: u8, offset: u64, width: Width) -> u64 {
        let Some(base) = self.bar_base(bar) else {
            return u64::MAX;
        };
        let mut b = [0u8; 8];
        let n = width.bytes() as usize;
        self.machine
            .borrow_mut()
            .mmio_read(base + offset, &mut b[..n]);
        u64::from_le_bytes(b)
    }

    fn bar_write(&mut self, bar: u8, offset: u64, width: Width, value: u64) {
        let Some(base) = self.bar_base(bar) else {
            return;
        };
        let n = width.bytes() as usize;
        self.machine
            .borrow_mut()
            .mmio_write(base + offset, &value.to_le_bytes()[..n]);
    }
}

/// The machine's RAM as the driver sees it (the same mapping the device uses).
#[derive(Clone)]
pub struct MachineRam(pub virq_device::GuestMemory);

impl MachineRam {
    /// Ring fields are 1, 2, 4 or 8 bytes: one region lookup and one naturally aligned load of
    /// the bytes as they lie in RAM, instead of vm-memory's generic slice iterator. `None` when
    /// the access is not of that shape (unaligned, another size, outside RAM): the caller then
    /// takes the general path, so errors are reported exactly as before.
    #[inline]
    fn read_small(&self, gpa: u64, buf: &mut [u8]) -> Option<()> {
        let (region, at) = self.0.to_region_addr(GuestAddress(gpa))?;
        match buf.len() {
            1 => buf[0] = region.load::<u8>(at, Ordering::Acquire).ok()?,
            2 => buf.copy_from_slice(
                &region
                    .load::<u16>(at, Ordering::Acquire)
                    .ok()?
                    .to_ne_bytes(),
            ),
            4 => buf.copy_from_slice(
                &region
                    .load::<u32>(at, Ordering::Acquire)
                    .ok()?
                    .to_ne_bytes(),
            ),
            8 => buf.copy_from_slice(
                &region
                    .load::<u64>(at, Ordering::Acquire)
                    .ok()?
                    .to_ne_bytes(),
            ),
            _ => return None,
        }
        Some(())
    }

    /// The store counterpart of [`MachineRam::read_small`].
    #[inline]
    fn write_small(&self, gpa: u64, data: &[u8]) -> Option<()> {
        let (region, at) = self.0.to_region_addr(GuestAddress(gpa))?;
        match *data {
            [b] => region.store(b, at, Ordering::Release).ok(),
            [a, b] => region
                .store(u16::from_ne_bytes([a, b]), at, Ordering::Release)
                .ok(),
            [a, b, c, d] => region
                .store(u32::from_ne_bytes([a, b, c, d]), at, Ordering::Release)
                .ok(),
            [a, b, c, d, e, f, g, h] => region
                .store(
                    u64::from_ne_bytes([a, b, c, d, e, f, g, h]),
                    at,
                    Ordering::Release,
                )
                .ok(),
            _ => None,
        }
    }
}

impl GuestRam for MachineRam {
    fn read(&mut self, gpa: u64, buf: &mut [u8]) -> Result<(), RamError> {
        if self.read_small(gpa, buf).is_some() {
            return Ok(());
        }
        self.0
            .read_slice(buf, GuestAddress(gpa))
            .map_err(|_| RamError {
                gpa,
                len: buf.len() as u64,
            })
    }

    fn write(&mut self, gpa: u64, data: &[u8]) -> Result<(), RamError> {
        if self.write_small(gpa, data).is_some() {
            return Ok(());
        }
        self.0
            .write_slice(data, GuestAddress(gpa))
            .map_err(|_| RamError {
                gpa,
                len: data.len() as u64,
            })
    }
}
