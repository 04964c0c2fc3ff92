//! The reference driver's KMDF glue on the simulated CPU: the interrupt dispatcher finds the
//! interrupt object behind an IDT vector, calls the driver's ISR with the object's
//! MessageID, queues a DPC when the ISR claims the interrupt, and runs DPCs once no
//! interrupt is pending. While KMDF has the interrupts disconnected (between D0 exit and D0
//! entry) nothing is dispatched: an interrupt then counts as unexpected.

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
    /// The driver believes it runs on messages although KMDF connected a line (catalogue row
    /// 26): the line's ISR is the driver's message ISR, which never reads ISR status.
    pub line_as_message: bool,
}

/// One sampled ISR invocation.
pub(crate) struct IsrSample {
    pub message_id: Option<u32>,
    pub isr_status: Option<u8>,
    pub claimed: bool,
}

impl KmdfGlue {
    fn sample(&mut self, message_id: Option<u32>, claimed: bool, isr_status: Option<u8>) {
        let n = self.isr_calls.entry(message_id).or_insert(0);
        *n += 1;
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
            line_as_message: false,
        }
    }
}

impl GuestOs for KmdfGlue {
    fn interrupt(&mut self, vector: u8) {
        match self.wdf.dispatch(u32::from(vector)) {
            Some((_, Some(message_id))) => {
                self.last_dispatched = Some(message_id);
                let claimed = self.driver.isr_message(message_id);
                self.sample(Some(message_id), claimed, None);
                if claimed && !self.dpcs.contains(&Some(message_id)) {
                    self.dpcs.push_back(Some(message_id));
                }
            }
            Some((_, None)) if self.line_as_message => {
                // KMDF passes MessageID 0 with MessageSignaled = 0; this driver takes it for
                // message 0 and runs its message ISR.
                self.last_dispatched = Some(0);
                let claimed = self.driver.isr_message(0);
                self.sample(None, claimed, None);
                if claimed && !self.dpcs.contains(&Some(0)) {
                    self.dpcs.push_back(Some(0));
                }
            }
            Some((_, None)) => {
                let claimed = self.driver.isr_intx();
                let status = self.driver.last_isr_read();
                self.sample(None, claimed, status);
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
