//! A small KVM VMM that boots a real Linux kernel against virq's virtio-pci devices.
//!
//! The strongest evidence that the device side is right is a driver nobody here wrote: Linux's
//! `virtio_pci`. This crate hosts the same [`virq_device::VirtioPciDevice`]s as the simulated
//! machine (virtio-blk with an MBR disk, virtio-rng, virtio-console) on KVM:
//!
//! - PCI configuration mechanism #1 at 0xCF8/0xCFC with a host bridge at 00:00.0 and
//!   firmware-style BAR assignment from 0xC000_0000; MMIO exits go to the devices;
//! - an Intel MP table (no ACPI) so Linux finds the IOAPIC and each slot's INTx routing
//!   (IOAPIC input 16 + n, level, active high);
//! - MSI-X through `KVM_SIGNAL_MSI` with the address/data of the device's own table entry,
//!   INTx through `KVM_IRQ_LINE` on the in-kernel IOAPIC;
//! - a 16550 serial console (vm-superio), a clean exit (reboot through the keyboard
//!   controller, triple fault, or `panic=-1`) and a wall-clock limit;
//! - one vCPU, or two ([`GuestConfig::cpus`]): each on its own thread, both in the MP table,
//!   the second started by Linux with INIT/SIPI through KVM's in-kernel local APIC, so that
//!   virtio-blk with two request queues ([`GuestConfig::blk_queues`]) gets one per CPU.
//!
//! [`run_linux_guest`] boots the kernel once in a [`GuestMode`] and returns a [`GuestRun`]:
//! what Linux programmed (every `VectorWritten` event with its read-back), the messages per
//! MSI-X table entry or the INTx raises/lowers and ISR reads, the console logs as
//! `LogLine` events, and whether the kernel got its data (partition table, rng bytes, hvc
//! lines). Where `/dev/kvm` is missing or unusable it fails with [`KvmError::Unavailable`],
//! which callers must report as a skip, never as a pass.
//!
//! The guest is kernel-only: on hosts whose KVM emulates instructions in software, guest user
//! space does not run, so everything is judged from what the kernel does at boot and probe.
#![allow(unsafe_code)] // KVM ioctls, vCPU run areas and guest RAM mmap: the crate issue 15 exempts.
#![deny(missing_docs)]

mod boot;
pub mod disk;
mod irq;
pub mod kernel;
mod mptable;
mod serial;
mod vmm;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use thiserror::Error;
use virq_device::DeviceFaults;
use virq_events::{Event, EventKind, NO_VECTOR, Selector};

pub use kernel::guest_kernel;

/// Guest RAM of the KVM machine: one anonymous mapping, shared by KVM's memory slot, the
/// loader and the devices (which reach it through virq's `GuestMemory` for vm-memory).
pub type GuestRam = vm_memory::GuestMemoryMmap<()>;
pub use mptable::PciIntx;

/// Why a guest could not be run.
#[derive(Debug, Error)]
pub enum KvmError {
    /// `/dev/kvm` is absent or refuses the VM this crate needs: callers skip, loudly.
    #[error("KVM is not usable here: {0}")]
    Unavailable(String),
    /// A KVM ioctl failed after the VM was created (so KVM itself is usable): a real error.
    #[error("KVM ioctl {what} failed: {source}")]
    Kvm {
        /// The ioctl, by its KVM name (`KVM_SET_USER_MEMORY_REGION`, `KVM_CREATE_VCPU`, ...).
        what: &'static str,
        /// The errno KVM returned.
        #[source]
        source: kvm_ioctls::Error,
    },
    /// Guest RAM could not be mapped, or the loader could not write into it.
    #[error("guest memory ({what}): {reason}")]
    Memory {
        /// What was being mapped or written (`mmap`, `gdt`, `mp table`, ...).
        what: &'static str,
        /// The underlying error, as text.
        reason: String,
    },
    /// The kernel could not be built, opened or loaded (not a loadable `vmlinux`, or larger
    /// than guest RAM).
    #[error("kernel image: {0}")]
    Kernel(String),
    /// A virtio-pci device or its backend could not be built.
    #[error("device: {0}")]
    Device(String),
    /// The [`GuestConfig`] asks for something this VMM does not support (RAM size, CPU count,
    /// an overlong command line), or the devices' BARs or slots do not fit.
    #[error("configuration: {0}")]
    Config(String),
    /// A vCPU thread could not be started, signalled or joined.
    #[error("vCPU thread: {0}")]
    Thread(String),
}

/// How interrupts are set up for this boot.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum GuestMode {
    /// MSI-X with a table of 1 + queues on every device: Linux uses a vector per queue.
    MsixPerQueue,
    /// MSI-X tables too small for a vector per queue: virtio-console (2 queues) gets a
    /// 2-entry table, so Linux shares one vector between its queues; virtio-blk and virtio-rng
    /// get a 1-entry table, too small even for sharing (config + queues needs 2), so Linux
    /// falls back to INTx on them.
    MsixSmallTable,
    /// `pci=nomsi`: Linux uses the INTx pins (IOAPIC, level) on every device.
    Intx,
}

impl GuestMode {
    /// Every mode.
    pub const ALL: [GuestMode; 3] = [
        GuestMode::MsixPerQueue,
        GuestMode::MsixSmallTable,
        GuestMode::Intx,
    ];

    /// The kebab-case name used on command lines and in reports.
    pub fn name(self) -> &'static str {
        match self {
            GuestMode::MsixPerQueue => "msix-per-queue",
            GuestMode::MsixSmallTable => "msix-small-table",
            GuestMode::Intx => "intx",
        }
    }

    /// The mode with this [`GuestMode::name`].
    pub fn from_name(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.name() == s)
    }

    /// MSI-X table size given to `device` in this mode (`None`: 1 + queues).
    pub fn msix_table_size(self, device: GuestDevice) -> Option<u16> {
        match (self, device) {
            (GuestMode::MsixSmallTable, GuestDevice::Console) => Some(2),
            (GuestMode::MsixSmallTable, _) => Some(1),
            _ => None,
        }
    }
}

/// The devices on the guest's PCI bus, in slot order (slot 1, 2, 3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum GuestDevice {
    /// virtio-blk (device ID 2) at 00:01.0, with an MBR disk: its partition-table read is the
    /// boot's proof that block I/O completed by interrupt.
    Blk,
    /// virtio-rng (device ID 4) at 00:02.0: one request queue the kernel's hwrng core reads
    /// entropy through.
    Rng,
    /// virtio-console (device ID 3) at 00:03.0: receive and transmit queues, `hvc0`.
    Console,
}

impl GuestDevice {
    /// Every device, in slot order.
    pub const ALL: [GuestDevice; 3] = [GuestDevice::Blk, GuestDevice::Rng, GuestDevice::Console];

    /// The device's name as Linux's driver calls it (`virtio-blk`, ...).
    pub fn name(self) -> &'static str {
        match self {
            GuestDevice::Blk => "virtio-blk",
            GuestDevice::Rng => "virtio-rng",
            GuestDevice::Console => "virtio-console",
        }
    }

    /// PCI device number on bus 0.
    pub fn slot(self) -> u8 {
        match self {
            GuestDevice::Blk => 1,
            GuestDevice::Rng => 2,
            GuestDevice::Console => 3,
        }
    }

    /// `00:0N.0`.
    pub fn bdf(self) -> String {
        format!("00:{:02x}.0", self.slot())
    }

    /// IOAPIC input (= GSI) its INTA# is wired to.
    pub fn gsi(self) -> u32 {
        15 + u32::from(self.slot())
    }
}

/// What to boot and how.
#[derive(Clone, Debug)]
pub struct GuestConfig {
    /// The uncompressed `vmlinux` (see [`guest_kernel`]).
    pub kernel: PathBuf,
    /// How interrupts are set up (MSI-X table sizes, `pci=nomsi`).
    pub mode: GuestMode,
    /// Also `console=hvc0`: every kernel line after virtio-console's probe goes through the
    /// device (many interrupts).
    pub hvc_console: bool,
    /// Guest RAM in MiB (16..=3072; 128 or less keeps boot fast on emulating KVMs).
    pub ram_mib: u32,
    /// Wall-clock limit for the whole boot.
    pub time_limit: Duration,
    /// Size of the virtio-blk disk (it gets an MBR with one partition).
    pub disk_bytes: usize,
    /// Device-side faults to inject into one device.
    pub faults: Option<(GuestDevice, DeviceFaults)>,
    /// Appended to the kernel command line.
    pub extra_cmdline: String,
    /// Seed of virtio-rng's entropy source.
    pub rng_seed: u64,
    /// Offer VIRTIO_F_RING_EVENT_IDX (on, as in `TransportOptions::default()`). Linux then
    /// kicks only past the `avail_event` the device publishes after each pass.
    pub event_idx: bool,
    /// vCPUs, 1 or 2 (the guest kernel is built with `CONFIG_NR_CPUS=2`): each is a KVM vCPU
    /// on its own thread, listed in the MP table; Linux starts the second with INIT/SIPI
    /// through KVM's in-kernel local APIC.
    pub cpus: u8,
    /// virtio-blk request queues (1 to 64; more than one offers VIRTIO_BLK_F_MQ). Linux uses
    /// at most one per CPU.
    pub blk_queues: u16,
    /// A diagnostic: kick every vCPU out of KVM_RUN this often and record where the guest
    /// was (`VcpuReport::rip_samples`), to see where a stuck guest spins.
    pub rip_sample_interval: Option<Duration>,
}

impl GuestConfig {
    /// One vCPU, 128 MiB, an 8 MiB disk, one blk queue, EVENT_IDX on, 150 s limit, no faults.
    pub fn new(kernel: impl Into<PathBuf>, mode: GuestMode) -> Self {
        GuestConfig {
            kernel: kernel.into(),
            mode,
            hvc_console: false,
            ram_mib: 128,
            time_limit: Duration::from_secs(150),
            disk_bytes: 8 << 20,
            faults: None,
            extra_cmdline: String::new(),
            rng_seed: 0x5649_5251,
            event_idx: true,
            cpus: 1,
            blk_queues: 1,
            rip_sample_interval: None,
        }
    }

    /// The kernel command line this configuration boots with.
    pub fn cmdline(&self) -> String {
        let mut c = String::from(
            "console=ttyS0 reboot=k panic=-1 no_timer_check noxsave \
             clearcpuid=cx16,popcnt,xsave,avx,avx2,avx512f,bmi1,bmi2,movbe,sse4_1,sse4_2,aes,\
             pclmulqdq,rdrand,rdseed,fsgsbase,smap,erms,fsrm,adx,sha_ni",
        );
        if self.cpus > 1 {
            // Two vCPUs reading kvm-clock contend on its `last_value` (no stable-TSC flag on
            // this machine's software KVM); each emulated retry costs microseconds, and the
            // boot starved in timekeeping. The TSC alone is cheap and enough for a boot.
            c.push_str(" no-kvmclock tsc=reliable");
        }
        if self.mode == GuestMode::Intx {
            c.push_str(" pci=nomsi");
        }
        if self.hvc_console {
            c.push_str(" console=hvc0");
        }
        if !self.extra_cmdline.is_empty() {
            c.push(' ');
            c.push_str(&self.extra_cmdline);
        }
        c
    }
}

/// How the guest stopped.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum GuestExit {
    /// The guest wrote 0xFE to port 0x64 (`reboot=k`, after `panic=-1`).
    Reboot,
    /// Triple fault (`KVM_EXIT_SHUTDOWN`).
    Shutdown,
    /// `KVM_EXIT_SYSTEM_EVENT` of this type.
    SystemEvent {
        /// `kvm_run.system_event.type` (`KVM_SYSTEM_EVENT_SHUTDOWN`, `_RESET`, `_CRASH`).
        event: u32,
    },
    /// The wall-clock limit ran out.
    TimeLimit,
    /// KVM could not go on (for example an instruction its emulator does not know).
    Failed {
        /// The exit reason or ioctl error, as text.
        reason: String,
    },
}

/// One `VectorWritten` event: what Linux wrote into a selector and what it read back.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VectorWrite {
    /// `msix_config` or a queue's `queue_msix_vector`.
    pub selector: Selector,
    /// The MSI-X table entry Linux wrote.
    pub written: u16,
    /// What the device held afterwards: Linux reads every selector back and abandons that
    /// MSI-X layout (falling back to fewer vectors or INTx) when it reads `0xFFFF`.
    pub read_back: u16,
}

/// One device's side of the run.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DeviceReport {
    /// Which device.
    pub device: GuestDevice,
    /// Its bus/device/function (`00:01.0`), the tag on its events.
    pub bdf: String,
    /// IOAPIC input of its INTA#.
    pub gsi: u32,
    /// MSI-X table size offered (0: no MSI-X).
    pub msix_table_size: u16,
    /// MSI-X Enable when the guest stopped.
    pub msix_enabled: bool,
    /// `msix_config` when the guest stopped.
    pub msix_config: u16,
    /// Each queue's `queue_msix_vector` when the guest stopped, by queue index.
    pub queue_vectors: Vec<u16>,
    /// `device_status` when the guest stopped (DRIVER_OK = 0x04 once probe succeeded).
    pub device_status: u8,
    /// Every selector write, in order.
    pub vector_writes: Vec<VectorWrite>,
    /// MSI-X messages sent, per table entry.
    pub messages_per_entry: BTreeMap<u16, u64>,
    /// Messages the device held back (selector 0xFFFF, masked entry, ...).
    pub suppressed: u64,
    /// Times INTA# went high (each a `KVM_IRQ_LINE` to level 1).
    pub line_raised: u64,
    /// Times INTA# went low (each a `KVM_IRQ_LINE` to level 0).
    pub line_lowered: u64,
    /// Reads of the ISR status register (read-to-clear; Linux's INTx handler reads it).
    pub isr_reads: u64,
    /// ISR reads that returned 0 (the interrupt was not this device's).
    pub isr_reads_zero: u64,
    /// Driver notifications (kicks) over all queues.
    pub queue_notifies: u64,
    /// Used buffers published over all queues.
    pub used_published: u64,
    /// `KVM_SIGNAL_MSI` calls.
    pub msi_signalled: u64,
    /// `KVM_SIGNAL_MSI` calls that returned 0 (no local APIC accepted the message, as after
    /// an SMP Linux software-disables its APIC on panic) or failed.
    pub msi_not_delivered: u64,
    /// Seconds since boot of the first message KVM did not deliver.
    #[serde(default)]
    pub msi_first_not_delivered_s: Option<f64>,
    /// Mean wall time of the `KVM_SIGNAL_MSI` ioctl, ns.
    pub msi_ioctl_mean_ns: Option<u64>,
    /// Mean wall time of a `KVM_IRQ_LINE` ioctl, ns.
    pub line_ioctl_mean_ns: Option<u64>,
    /// INTx raise to the lower that follows (guest interrupt entry + handler up to the ISR
    /// read), mean and median, ns.
    pub line_high_mean_ns: Option<u64>,
    /// The median of the same raise-to-lower times, ns (robust to a stalled vCPU).
    pub line_high_median_ns: Option<u64>,
    /// The backend's own counters (its snapshot's `counters`).
    pub counters: serde_json::Value,
    /// The faults injected into this device, if it was the one [`GuestConfig::faults`] named.
    pub faults: Option<DeviceFaults>,
}

impl DeviceReport {
    /// MSI-X messages sent over all table entries.
    pub fn messages_sent(&self) -> u64 {
        self.messages_per_entry.values().sum()
    }

    /// Interrupts the device signalled in either form.
    pub fn interrupts(&self) -> u64 {
        self.messages_sent() + self.line_raised
    }

    /// The last value written to `selector`, as read back.
    pub fn last_read_back(&self, selector: Selector) -> Option<u16> {
        self.vector_writes
            .iter()
            .rev()
            .find(|w| w.selector == selector)
            .map(|w| w.read_back)
    }

    fn counter(&self, name: &str) -> u64 {
        self.counters
            .get(name)
            .and_then(serde_json::Value::as_u64)
            .unwrap_or(0)
    }
}

/// Whether the kernel got its data.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct GuestData {
    /// The block layer read the partition table: ` vda: vda1` in the log.
    pub partition_table_read: bool,
    /// VIRTIO_BLK_T_IN requests virtio-blk served.
    pub blk_reads: u64,
    /// Entropy bytes the guest took from virtio-rng.
    pub rng_bytes: u64,
    /// Lines the guest wrote to hvc0.
    pub hvc_lines: usize,
    /// "nobody cared" (an interrupt nobody claimed 99,900 times in 100,000).
    pub nobody_cared: bool,
    /// The kernel's `virtio_pci` / `virtio_blk` / `virtio_console` / `hwrng` lines.
    pub virtio_lines: Vec<String>,
    /// Lines reporting errors from the drivers (probe failures, "nobody cared", timeouts).
    pub error_lines: Vec<String>,
}

/// Seconds since boot at which things were first seen.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Milestones {
    /// The kernel's first console line: the loader and early boot worked.
    pub first_serial_s: Option<f64>,
    /// The first console line naming virtio: PCI enumeration found the devices.
    pub first_virtio_probe_s: Option<f64>,
    /// ` vda: vda1`: a virtio-blk read completed, by interrupt.
    pub partition_table_s: Option<f64>,
    /// `Kernel panic - not syncing` (the kernel-only guest's end: no root file system).
    #[serde(default)]
    pub panic_s: Option<f64>,
    /// Boot to verdict: the guest stopped (or the limit ran out).
    pub stopped_s: f64,
}

/// Everything one boot produced.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct GuestRun {
    /// The interrupt setup this boot used.
    pub mode: GuestMode,
    /// vCPUs the guest was given.
    #[serde(default = "one_cpu")]
    pub cpus: u8,
    /// Whether the kernel also logged to `hvc0` ([`GuestConfig::hvc_console`]).
    pub hvc_console: bool,
    /// The kernel command line booted.
    pub cmdline: String,
    /// How the guest stopped.
    pub exit: GuestExit,
    /// When the boot reached each stage.
    pub milestones: Milestones,
    /// One report per [`GuestDevice`], in slot order.
    pub devices: Vec<DeviceReport>,
    /// Whether the kernel got its data.
    pub data: GuestData,
    /// Everything the kernel wrote to the 16550 (`ttyS0`).
    pub serial_log: String,
    /// Everything the kernel wrote to virtio-console's port (`hvc0`).
    pub hvc_log: String,
    /// Devices' events (tagged with their BDF), the serial log (`ttyS0`) and the hvc log
    /// (`hvc0`) as `LogLine`s, merged in time order on one clock.
    pub events: Vec<Event>,
    /// VM exits handled in user space, by kind.
    pub exits: BTreeMap<String, u64>,
    /// The events the logs could not keep (capacity limit).
    pub events_dropped: u64,
    /// Each vCPU as it was when the run stopped.
    #[serde(default)]
    pub vcpus: Vec<VcpuReport>,
}

/// One vCPU when the run stopped: how many exits it handled and where it was, so that a run
/// whose application processor never came up says where it stood.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VcpuReport {
    /// The vCPU index, which is also its local APIC ID (0 = bootstrap processor).
    pub id: u8,
    /// Exits to user space this vCPU's thread handled (port I/O, MMIO, interruptions).
    pub exits: u64,
    /// `KVM_GET_MP_STATE`: 0 runnable, 1 uninitialized (waiting for INIT), 2 INIT received
    /// (waiting for SIPI), 3 halted, 4 SIPI received.
    pub mp_state: u32,
    /// Instruction pointer (`KVM_GET_REGS`).
    pub rip: u64,
    /// Code segment selector (`KVM_GET_SREGS`); after SIPI an AP runs in real mode with
    /// CS = vector << 8, so this says whether and where it started.
    pub cs_selector: u16,
    /// Code segment base.
    pub cs_base: u64,
    /// CR0: PE and PG tell real, protected and paged mode apart.
    pub cr0: u64,
    /// EFER: LMA set once the vCPU is in long mode.
    pub efer: u64,
    /// With [`GuestConfig::rip_sample_interval`]: the guest RIPs seen most often when the
    /// vCPU was kicked, as (RIP, times), most frequent first (at most 16).
    #[serde(default)]
    pub rip_samples: Vec<(u64, u64)>,
}

fn one_cpu() -> u8 {
    1
}

impl GuestRun {
    /// The report of device `d` (every run reports all three).
    pub fn device(&self, d: GuestDevice) -> &DeviceReport {
        self.devices
            .iter()
            .find(|r| r.device == d)
            .expect("every run reports every device")
    }

    /// A checklist-style text summary, one block per device.
    pub fn summary(&self) -> String {
        use std::fmt::Write as _;
        let mut s = String::new();
        let _ = writeln!(
            s,
            "== linux-kvm {}{}{}: {:?} after {:.1} s (first serial {}, virtio probe {}, partition table {})",
            self.mode.name(),
            if self.hvc_console { " +hvc0" } else { "" },
            if self.cpus > 1 {
                format!(" ({} vCPUs)", self.cpus)
            } else {
                String::new()
            },
            self.exit,
            self.milestones.stopped_s,
            fmt_s(self.milestones.first_serial_s),
            fmt_s(self.milestones.first_virtio_probe_s),
            fmt_s(self.milestones.partition_table_s),
        );
        for d in &self.devices {
            let vec = |v: u16| {
                if v == NO_VECTOR {
                    "0xffff".to_string()
                } else {
                    v.to_string()
                }
            };
            let _ = writeln!(
                s,
                "  {} {} (MSI-X table {}, INTA# -> GSI {}): MSI-X {}, msix_config={}, queue vectors [{}]",
                d.bdf,
                d.device.name(),
                d.msix_table_size,
                d.gsi,
                if d.msix_enabled {
                    "enabled"
                } else {
                    "disabled"
                },
                vec(d.msix_config),
                d.queue_vectors
                    .iter()
                    .map(|v| vec(*v))
                    .collect::<Vec<_>>()
                    .join(", "),
            );
            for w in &d.vector_writes {
                let _ = writeln!(
                    s,
                    "    wrote {:?} = {} read back {}",
                    w.selector,
                    vec(w.written),
                    vec(w.read_back)
                );
            }
            let _ = writeln!(
                s,
                "    messages per entry {:?} (KVM_SIGNAL_MSI {}, {} not delivered); INTx raised {} lowered {}; ISR reads {} ({} zero); notifies {}; used {}",
                d.messages_per_entry,
                d.msi_signalled,
                d.msi_not_delivered,
                d.line_raised,
                d.line_lowered,
                d.isr_reads,
                d.isr_reads_zero,
                d.queue_notifies,
                d.used_published
            );
        }
        let _ = writeln!(
            s,
            "  data: partition table read {}, blk reads {}, rng bytes {}, hvc lines {}, nobody cared {}",
            self.data.partition_table_read,
            self.data.blk_reads,
            self.data.rng_bytes,
            self.data.hvc_lines,
            self.data.nobody_cared
        );
        for l in &self.data.error_lines {
            let _ = writeln!(s, "  error: {l}");
        }
        if self.vcpus.len() > 1 {
            for v in &self.vcpus {
                let _ = writeln!(
                    s,
                    "  vcpu {}: {} exits; at stop mp_state {} rip {:#x} cs {:#x} (base {:#x}) cr0 {:#x} efer {:#x}",
                    v.id, v.exits, v.mp_state, v.rip, v.cs_selector, v.cs_base, v.cr0, v.efer
                );
                for (rip, n) in &v.rip_samples {
                    let _ = writeln!(s, "    sampled at rip {rip:#x} {n} times");
                }
            }
        }
        s
    }
}

fn fmt_s(v: Option<f64>) -> String {
    v.map_or_else(|| "-".to_string(), |v| format!("{v:.1} s"))
}

/// Device-side faults by name (kebab-case of the [`DeviceFaults`] field), for command lines.
pub fn device_fault(name: &str) -> Option<DeviceFaults> {
    let mut f = DeviceFaults::default();
    match name {
        "intx-while-msix-enabled" => f.intx_while_msix_enabled = true,
        "ignore-msix-masks" => f.ignore_msix_masks = true,
        "ignore-dword-msix-control-write" => f.ignore_dword_msix_control_write = true,
        "keep-vectors-across-reset" => f.keep_vectors_across_reset = true,
        "accept-out-of-range-vectors" => f.accept_out_of_range_vectors = true,
        "intx-stays-high-on-reset" => f.intx_stays_high_on_reset = true,
        "ignore-interrupt-disable" => f.ignore_interrupt_disable = true,
        "isr-not-cleared-on-read" => f.isr_not_cleared_on_read = true,
        "dma-while-bus-master-disabled" => f.dma_while_bus_master_disabled = true,
        "keep-stale-pending-bits" => f.keep_stale_pending_bits = true,
        _ => return None,
    }
    Some(f)
}

impl GuestDevice {
    /// The device named `virtio-blk` (or just `blk`), `virtio-rng`, `virtio-console`.
    pub fn from_name(s: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|d| d.name() == s || d.name().strip_prefix("virtio-") == Some(s))
    }
}

/// Boot the kernel once against virtio-blk, virtio-rng and virtio-console in `config.mode`
/// and report what happened. Blocks for up to `config.time_limit`.
pub fn run_linux_guest(config: &GuestConfig) -> Result<GuestRun, KvmError> {
    vmm::run(config)
}

/// Whether `/dev/kvm` can run a VM here; the error says why not (for a SKIP line).
pub fn kvm_available() -> Result<(), KvmError> {
    vmm::probe()
}

pub(crate) fn summarize_device(
    device: GuestDevice,
    events: &[Event],
) -> (Vec<VectorWrite>, BTreeMap<u16, u64>, [u64; 7]) {
    let mut writes = Vec::new();
    let mut per_entry = BTreeMap::new();
    // suppressed, raised, lowered, isr reads, isr zero, notifies, used
    let mut c = [0u64; 7];
    let bdf = device.bdf();
    for e in events.iter().filter(|e| e.device.as_deref() == Some(&bdf)) {
        match &e.kind {
            EventKind::VectorWritten {
                selector,
                written,
                read_back,
            } => writes.push(VectorWrite {
                selector: *selector,
                written: *written,
                read_back: *read_back,
            }),
            EventKind::MessageSent { entry, .. } => *per_entry.entry(*entry).or_insert(0) += 1,
            EventKind::InterruptSuppressed { .. } => c[0] += 1,
            EventKind::LineRaised { .. } => c[1] += 1,
            EventKind::LineLowered { .. } => c[2] += 1,
            EventKind::IsrRead { value } => {
                c[3] += 1;
                if *value == 0 {
                    c[4] += 1;
                }
            }
            EventKind::QueueNotify { .. } => c[5] += 1,
            EventKind::UsedPublished { count, .. } => c[6] += u64::from(*count),
            _ => {}
        }
    }
    (writes, per_entry, c)
}

pub(crate) fn guest_data(devices: &[DeviceReport], serial: &str, hvc: &str) -> GuestData {
    let all = || serial.lines().chain(hvc.lines());
    let find = |d: GuestDevice| devices.iter().find(|r| r.device == d);
    let virtio_words = ["virtio", "vda", "hwrng", "hvc", "random:"];
    let error_words = [
        "nobody cared",
        "Disabling IRQ",
        "probe with driver",
        "failed",
        "timeout",
        "timed out",
        "spurious",
        "error",
    ];
    GuestData {
        partition_table_read: all().any(|l| l.contains(" vda: vda1")),
        blk_reads: find(GuestDevice::Blk).map_or(0, |d| d.counter("reads")),
        rng_bytes: find(GuestDevice::Rng).map_or(0, |d| d.counter("bytes")),
        hvc_lines: hvc.lines().count(),
        nobody_cared: all().any(|l| l.contains("nobody cared")),
        virtio_lines: serial
            .lines()
            .filter(|l| virtio_words.iter().any(|w| l.contains(w)))
            .map(str::to_string)
            .collect(),
        error_lines: serial
            .lines()
            .filter(|l| error_words.iter().any(|w| l.contains(w)))
            .map(str::to_string)
            .collect(),
    }
}
