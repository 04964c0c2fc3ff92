//! The guest bring-up library's two doors, opened onto the simulated machine: register
//! accesses become configuration cycles through ports 0xCF8/0xCFC and MMIO at the BAR
//! addresses firmware assigned; guest RAM is the machine's RAM.

use std::cell::RefCell;
use std::rc::Rc;

use virq_device::{GuestMemory, VecMemory};
use virq_guest::{GuestRam, RamError, RegisterAccess, Width};
use virq_sim::{CONFIG_ADDRESS_PORT, CONFIG_DATA_PORT, Machine};

/// Register access to the function in `slot` of a shared machine.
#[derive(Clone)]
pub struct MachineRegs {
    machine: Rc<RefCell<Machine>>,
    slot: u8,
}

impl MachineRegs {
    /// Configuration cycles (0xCF8/0xCFC) and BAR accesses to 00:`slot`.0 of `machine`.
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
        // One borrow for the BAR lookup and the write (a notify is on every request's path).
        let mut m = self.machine.borrow_mut();
        let Some(base) = m.device(self.slot).and_then(|d| d.bar_address(bar)) else {
            return;
        };
        let n = width.bytes() as usize;
        m.mmio_write(base + offset, &value.to_le_bytes()[..n]);
    }
}

/// The machine's RAM as the driver sees it (the same memory the device uses).
#[derive(Clone)]
pub struct MachineRam(pub VecMemory);

impl GuestRam for MachineRam {
    /// One bounds check and a copy: the machine's RAM is one flat buffer.
    #[inline]
    fn read(&mut self, gpa: u64, buf: &mut [u8]) -> Result<(), RamError> {
        GuestMemory::read(&self.0, gpa, buf).map_err(|_| RamError {
            gpa,
            len: buf.len() as u64,
        })
    }

    #[inline]
    fn write(&mut self, gpa: u64, data: &[u8]) -> Result<(), RamError> {
        GuestMemory::write(&self.0, gpa, data).map_err(|_| RamError {
            gpa,
            len: data.len() as u64,
        })
    }
}
