//! What a real-guest run must show, per mode: the judgement `virq check --guest linux-kvm`
//! prints and the integration tests assert, kept in one place.

use serde::Serialize;
use virq_events::NO_VECTOR;

use crate::{DeviceReport, GuestExit, GuestMode, GuestRun};

/// One expectation and whether the run met it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Expectation {
    /// Which device (BDF) it is about, or "guest".
    pub subject: String,
    pub holds: bool,
    pub detail: String,
}

fn expect(subject: &str, holds: bool, detail: impl Into<String>) -> Expectation {
    Expectation {
        subject: subject.to_string(),
        holds,
        detail: detail.into(),
    }
}

impl GuestRun {
    /// Every expectation of this run's mode.
    pub fn expectations(&self) -> Vec<Expectation> {
        let mut out = vec![
            expect(
                "guest",
                matches!(self.exit, GuestExit::Reboot | GuestExit::Shutdown),
                format!(
                    "the kernel ran to its end and stopped cleanly ({:?})",
                    self.exit
                ),
            ),
            expect(
                "guest",
                self.data.partition_table_read && self.data.blk_reads > 0,
                format!(
                    "virtio-blk: partition table read through interrupts ({} reads)",
                    self.data.blk_reads
                ),
            ),
            expect(
                "guest",
                self.data.rng_bytes > 0,
                format!("virtio-rng: {} entropy bytes taken", self.data.rng_bytes),
            ),
            expect(
                "guest",
                !self.data.nobody_cared,
                "no \"irq N: nobody cared\" in the kernel log",
            ),
        ];
        if self.hvc_console {
            out.push(expect(
                "guest",
                self.data.hvc_lines >= 5,
                format!(
                    "virtio-console: {} log lines through hvc0",
                    self.data.hvc_lines
                ),
            ));
        }
        for d in &self.devices {
            out.extend(device_expectations(self.mode, d));
        }
        out
    }

    /// True when every expectation holds.
    pub fn holds(&self) -> bool {
        self.expectations().iter().all(|e| e.holds)
    }
}

fn device_expectations(mode: GuestMode, d: &DeviceReport) -> Vec<Expectation> {
    let s = d.bdf.as_str();
    let readbacks = d.vector_writes.iter().all(|w| w.written == w.read_back);
    let mut out = vec![expect(
        s,
        readbacks,
        format!(
            "{} vector write(s), each read back as written",
            d.vector_writes.len()
        ),
    )];
    let all_none = d.msix_config == NO_VECTOR && d.queue_vectors.iter().all(|v| *v == NO_VECTOR);
    let table = d.msix_table_size;
    let in_table = |v: u16| v < table;
    // A device that completed nothing (the console without hvc0) owes no interrupt.
    let busy = d.used_published > 0;
    let intx_used = !d.msix_enabled
        && all_none
        && d.messages_sent() == 0
        && (!busy || (d.line_raised > 0 && d.line_lowered > 0 && d.isr_reads > 0));
    match mode {
        GuestMode::MsixPerQueue => {
            let mut vs = vec![d.msix_config];
            vs.extend(&d.queue_vectors);
            let mut distinct = vs.clone();
            distinct.sort_unstable();
            distinct.dedup();
            out.push(expect(
                s,
                d.msix_enabled && vs.iter().all(|v| in_table(*v)) && distinct.len() == vs.len(),
                format!(
                    "MSI-X enabled, a vector each: msix_config={} queues={:?} (table {table})",
                    d.msix_config, d.queue_vectors
                ),
            ));
            out.push(expect(
                s,
                (d.messages_sent() > 0 || !busy) && d.line_raised == 0,
                format!("{} MSI-X message(s), INTx never raised", d.messages_sent()),
            ));
        }
        GuestMode::MsixSmallTable => {
            let shared = d.msix_enabled
                && d.queue_vectors.iter().all(|v| in_table(*v))
                && d.queue_vectors.windows(2).all(|w| w[0] == w[1])
                && (d.messages_sent() > 0 || !busy);
            out.push(expect(
                s,
                shared || intx_used,
                if shared {
                    format!(
                        "table {table} too small for a vector each: queues share vector {:?}",
                        d.queue_vectors.first()
                    )
                } else {
                    format!(
                        "table {table} too small even to share: Linux fell back to INTx ({} raises)",
                        d.line_raised
                    )
                },
            ));
        }
        GuestMode::Intx => {
            out.push(expect(
                s,
                intx_used,
                format!(
                    "pci=nomsi: MSI-X off, every selector 0xFFFF, INTx raised {} lowered {} with {} ISR reads",
                    d.line_raised, d.line_lowered, d.isr_reads
                ),
            ));
        }
    }
    out
}
