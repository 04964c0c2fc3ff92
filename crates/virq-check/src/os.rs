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
    /// ISR invocations to print (log format line 8): the first 8 per message or line, then
    /// every 4096th, so a storm cannot flood the capture, and every one that read 0xFF.
    pub isr_samples: Vec<IsrSample>,
    isr_calls: std::collections::BTreeMap<Option<u32>, u64>,
    /// The message the dispatcher last handed to an ISR (what a crash dump would show).
    pub last_dispatched: Option<u32>,
}

/// One sampled ISR invocation.
pub(crate) struct IsrSample {
    pub message_id: Option<u32>,
    pub isr_status: Option<u8>,
    pub claimed: bool,
}

impl KmdfGlue {
    fn sample(&mut self, message_id: Option<u32>, claimed: bool) {
        let n = self.isr_calls.entry(message_id).or_insert(0);
        *n += 1;
        let isr_status = match message_id {
            None => self.driver.last_isr_read(),
            Some(_) => None,
        };
        // An all-ones status (the device is gone) is always worth its line.
        if *n <= 8 || *n % 4096 == 0 || isr_status == Some(0xFF) {
            self.isr_samples.push(IsrSample {
                message_id,
                isr_status,
                claimed,
            });
        }
    }
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
            isr_samples: Vec::new(),
            isr_calls: Default::default(),
            last_dispatched: None,
        }
    }
}

impl GuestOs for KmdfGlue {
    fn interrupt(&mut self, vector: u8) {
        match self.wdf.dispatch(u32::from(vector)) {
            Some((_, Some(message_id))) => {
                self.last_dispatched = Some(message_id);
                let claimed = self.driver.isr_message(message_id);
                self.sample(Some(message_id), claimed);
                if claimed && !self.dpcs.contains(&Some(message_id)) {
                    self.dpcs.push_back(Some(message_id));
                }
            }
            Some((_, None)) => {
                let claimed = self.driver.isr_intx();
                self.sample(None, claimed);
                if claimed && !self.dpcs.contains(&None) {
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
            // Straight into the completion list: no vector per DPC.
            match self.driver.dpc_into(message, &mut self.completions) {
                Ok(config_changed) => self.config_changes_seen += u32::from(config_changed),
                Err(e) => self.dpc_errors.push(e.to_string()),
            }
        }
        true
    }
}
