//! The device's [`InterruptSink`] on KVM: MSI-X messages through `KVM_SIGNAL_MSI`, the INTx
//! pin through `KVM_IRQ_LINE` on the in-kernel IOAPIC, with timing kept for the report.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use kvm_bindings::kvm_msi;
use kvm_ioctls::VmFd;
use virq_device::InterruptSink;

/// What one device's interrupts cost and how often they went out.
#[derive(Debug, Default)]
pub struct IrqStats {
    pub msi_signalled: AtomicU64,
    /// `KVM_SIGNAL_MSI` returned 0 (the message was blocked: masked at the LAPIC) or failed.
    pub msi_not_delivered: AtomicU64,
    /// When the first of those was signalled: an SMP Linux software-disables its local APIC
    /// once it panics, so messages after that instant go nowhere by the guest's choice.
    pub msi_first_not_delivered: Mutex<Option<Instant>>,
    pub msi_ioctl_ns: AtomicU64,
    pub line_raised: AtomicU64,
    pub line_lowered: AtomicU64,
    pub line_ioctl_ns: AtomicU64,
    /// Wall time between each raise and the lower that follows it (the guest's interrupt entry
    /// and handler up to its read of ISR status), summed.
    pub line_high_ns: AtomicU64,
    /// Individual raise-to-lower latencies, for medians (bounded).
    pub line_high_samples: Mutex<Vec<u64>>,
    pub ioctl_errors: AtomicU64,
}

/// Most raise-to-lower samples kept per device.
const MAX_SAMPLES: usize = 100_000;

/// The sink one device function gets: its INTx pin is wired to IOAPIC input `gsi`.
pub struct KvmInterrupts {
    vm: Arc<VmFd>,
    gsi: u32,
    raised_at: Mutex<Option<Instant>>,
    pub stats: Arc<IrqStats>,
}

impl KvmInterrupts {
    pub fn new(vm: Arc<VmFd>, gsi: u32) -> Self {
        KvmInterrupts {
            vm,
            gsi,
            raised_at: Mutex::new(None),
            stats: Arc::new(IrqStats::default()),
        }
    }
}

impl KvmInterrupts {
    fn not_delivered(&self, at: Instant) {
        self.stats.msi_not_delivered.fetch_add(1, Ordering::Relaxed);
        let mut first = self
            .stats
            .msi_first_not_delivered
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        first.get_or_insert(at);
    }
}

impl InterruptSink for KvmInterrupts {
    fn msi(&self, address: u64, data: u32) {
        let msi = kvm_msi {
            address_lo: address as u32,
            address_hi: (address >> 32) as u32,
            data,
            ..Default::default()
        };
        let start = Instant::now();
        let result = self.vm.signal_msi(msi);
        self.stats
            .msi_ioctl_ns
            .fetch_add(start.elapsed().as_nanos() as u64, Ordering::Relaxed);
        self.stats.msi_signalled.fetch_add(1, Ordering::Relaxed);
        match result {
            Ok(n) if n > 0 => {}
            Ok(_) => self.not_delivered(start),
            Err(_) => {
                self.not_delivered(start);
                self.stats.ioctl_errors.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    fn set_intx(&self, level: bool) {
        let start = Instant::now();
        if self.vm.set_irq_line(self.gsi, level).is_err() {
            self.stats.ioctl_errors.fetch_add(1, Ordering::Relaxed);
        }
        let now = Instant::now();
        self.stats
            .line_ioctl_ns
            .fetch_add((now - start).as_nanos() as u64, Ordering::Relaxed);
        let mut raised = self.raised_at.lock().unwrap_or_else(|e| e.into_inner());
        if level {
            self.stats.line_raised.fetch_add(1, Ordering::Relaxed);
            *raised = Some(now);
        } else {
            self.stats.line_lowered.fetch_add(1, Ordering::Relaxed);
            if let Some(t) = raised.take() {
                let ns = (now - t).as_nanos() as u64;
                self.stats.line_high_ns.fetch_add(ns, Ordering::Relaxed);
                let mut s = self
                    .stats
                    .line_high_samples
                    .lock()
                    .unwrap_or_else(|e| e.into_inner());
                if s.len() < MAX_SAMPLES {
                    s.push(ns);
                }
            }
        }
    }
}
