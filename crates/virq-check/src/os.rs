//! The reference driver's KMDF glue on the simulated CPU: the interrupt dispatcher finds the
//! interrupt object behind an IDT vector, calls the driver's ISR with the object's
//! MessageID, queues a DPC when the ISR claims the interrupt, and runs DPCs once no
//! interrupt is pending.

use std::collections::VecDeque;

use virq_guest::{UsedElem, VirtioPciDriver};
use virq_sim::GuestOs;
use virq_win7::WdfInterrupts;

use crate::adapters::{MachineRam, MachineRegs};

pub(crate) type Driver = VirtioPciDriver<MachineRegs, MachineRam>;

pub(crate) struct KmdfGlue {
    pub driver: Driver,
    pub wdf: WdfInterrupts,
    dpcs: VecDeque<Option<u32>>,
    pub completions: Vec<UsedElem>,
    /// Interrupts on a vector no object is connected to.
    pub unexpected: u64,
    /// DPCs that failed (the driver reported an error).
    pub dpc_errors: Vec<String>,
    /// Configuration changes a DPC noticed.
    pub config_changes_seen: u32,
}

impl KmdfGlue {
    pub fn new(driver: Driver, wdf: WdfInterrupts) -> Self {
        KmdfGlue {
            driver,
            wdf,
            dpcs: VecDeque::new(),
            completions: Vec::new(),
            unexpected: 0,
            dpc_errors: Vec::new(),
            config_changes_seen: 0,
        }
    }
}

impl GuestOs for KmdfGlue {
    fn interrupt(&mut self, vector: u8) {
        match self.wdf.dispatch(u32::from(vector)) {
            Some((_, Some(message_id))) => {
                if self.driver.isr_message(message_id) && !self.dpcs.contains(&Some(message_id)) {
                    self.dpcs.push_back(Some(message_id));
                }
            }
            Some((_, None)) => {
                if self.driver.isr_intx() && !self.dpcs.contains(&None) {
                    self.dpcs.push_back(None);
                }
            }
            None => self.unexpected += 1,
        }
    }

    fn run_dpcs(&mut self) -> bool {
        if self.dpcs.is_empty() {
            return false;
        }
        while let Some(message) = self.dpcs.pop_front() {
            match self.driver.dpc(message) {
                Ok(out) => {
                    self.config_changes_seen += u32::from(out.config_changed);
                    self.completions.extend(out.completions);
                }
                Err(e) => self.dpc_errors.push(e.to_string()),
            }
        }
        true
    }
}
