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
    /// The BAR resolved last: (the machine's decode epoch then, BAR index, address). A
    /// driver's accesses mostly go to one BAR (a notify per request), and its address holds
    /// until the epoch moves, as a mapped BAR holds until resources change.
    last_bar: Option<(u64, u8, Option<u64>)>,
}

impl MachineRegs {
    /// Configuration cycles (0xCF8/0xCFC) and BAR accesses to 00:`slot`.0 of `machine`.
    pub fn new(machine: Rc<RefCell<Machine>>, slot: u8) -> Self {
        MachineRegs {
            machine,
            slot,
            last_bar: None,
        }
    }

    /// Where `bar` decodes now on `m` (the machine this adapter borrowed).
    #[inline]
    fn bar_base(
        last_bar: &mut Option<(u64, u8, Option<u64>)>,
        m: &Machine,
        slot: u8,
        bar: u8,
    ) -> Option<u64> {
        let epoch = m.decode_epoch();
        match *last_bar {
            Some((e, b, base)) if e == epoch && b == bar => base,
            _ => {
                let base = m.bar_address(slot, bar);
                *last_bar = Some((epoch, bar, base));
                base
            }
        }
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
        let mut m = self.machine.borrow_mut();
        let Some(base) = Self::bar_base(&mut self.last_bar, &m, self.slot, bar) else {
            return u64::MAX;
        };
        let mut b = [0u8; 8];
        let n = width.bytes() as usize;
        m.mmio_read(base + offset, &mut b[..n]);
        u64::from_le_bytes(b)
    }

    fn bar_write(&mut self, bar: u8, offset: u64, width: Width, value: u64) {
        // One borrow for the BAR lookup and the write (a notify is on every request's path).
        let mut m = self.machine.borrow_mut();
        let Some(base) = Self::bar_base(&mut self.last_bar, &m, self.slot, bar) else {
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

#[cfg(test)]
mod tests {
    use super::*;
    use virq_backends::{Block, BlockConfig, MemoryStorage};
    use virq_device::TransportOptions;

    /// `num_queues` in the common configuration structure at the start of BAR 0 (virtio 1.2,
    /// 4.1.4.3).
    const NUM_QUEUES: u64 = 0x12;
    const BAR0: u16 = 0x10;
    const COMMAND: u16 = 0x04;

    #[test]
    fn bar_accesses_follow_a_bar_moved_or_disabled_behind_the_adapters_back() {
        let mut m = Machine::new(1 << 20).unwrap();
        let blk = Block::new(MemoryStorage::new(4096), BlockConfig::default()).unwrap();
        let slot = m
            .plug_backend(Box::new(blk), TransportOptions::default())
            .unwrap();
        m.firmware_assign_resources().unwrap();
        let old = m.bar_address(slot, 0).unwrap();
        let m = Rc::new(RefCell::new(m));
        let mut regs = MachineRegs::new(m.clone(), slot);
        assert_eq!(regs.bar_read(0, NUM_QUEUES, Width::U16), 1);

        // The OS moves BAR 0 (PCI 3.0, 6.2.5.1) with its own configuration cycles.
        let new = old + 0x1000_0000;
        m.borrow_mut().cfg_write32(slot, BAR0, new as u32);
        assert_eq!(m.borrow().bar_address(slot, 0), Some(new));
        assert_eq!(regs.bar_read(0, NUM_QUEUES, Width::U16), 1);
        let mut at_old = [0u8; 2];
        m.borrow_mut().mmio_read(old + NUM_QUEUES, &mut at_old);
        assert_eq!(at_old, [0xFF; 2], "nothing decodes the old address");

        // Memory Space Enable cleared: the function decodes nothing, reads are all ones.
        let command = m.borrow_mut().cfg_read32(slot, COMMAND);
        m.borrow_mut().cfg_write32(slot, COMMAND, command & !0x2);
        assert_eq!(regs.bar_read(0, NUM_QUEUES, Width::U16), 0xFFFF);
        m.borrow_mut().cfg_write32(slot, COMMAND, command);
        assert_eq!(regs.bar_read(0, NUM_QUEUES, Width::U16), 1);
    }
}
