//! The machine: KVM set-up, the PCI bus, port and MMIO dispatch, and the vCPU loop.

use std::collections::BTreeMap;
use std::fs::File;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Once};
use std::thread;
use std::time::{Duration, Instant};

use kvm_bindings::{KVM_MAX_CPUID_ENTRIES, KVM_PIT_SPEAKER_DUMMY, kvm_pit_config};
use kvm_ioctls::{Kvm, VcpuExit, VcpuFd, VmFd};
use linux_loader::loader::{KernelLoader, elf::Elf};
use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend};
use vm_superio::{Serial, Trigger};
use vmm_sys_util::eventfd::EventFd;
use vmm_sys_util::signal::{Killable, SIGRTMIN, register_signal_handler};

use virq_backends::{
    Block, BlockConfig, Console, ConsoleConfig, MemoryStorage, Rng, SeededEntropy,
};
use virq_device::pci_root::{HostBridge, PciRoot};
use virq_device::{TransportOptions, VirtioBackend, VirtioPciDevice};
use virq_events::{Clock, Event, EventKind, EventLog, EventSink};

use crate::irq::{IrqStats, KvmInterrupts};
use crate::serial::{LineLog, SerialOut};
use crate::{
    DeviceReport, GuestConfig, GuestData, GuestDevice, GuestExit, GuestRam, GuestRun, KvmError,
    Milestones, PciIntx, VcpuReport, boot, disk, mptable,
};

use virq_device::pci_root::CONFIG_DATA_PORT as CONFIG_DATA;
const COM1: u16 = 0x3F8;
const COM1_GSI: u32 = 4;
const KBD_STATUS: u16 = 0x64;
const CMOS_INDEX: u16 = 0x70;
const CMOS_DATA: u16 = 0x71;
/// Where BARs are placed, as firmware would (above RAM, below the IOAPIC).
pub const MMIO_BASE: u64 = 0xC000_0000;
const MMIO_LIMIT: u64 = 0xFEC0_0000;
const TSS_ADDR: usize = 0xFFFB_D000;
const IDENTITY_MAP_ADDR: u64 = 0xFFFB_C000;
/// Events each log keeps before it only counts (a storm must not exhaust memory).
const EVENT_CAPACITY: usize = 400_000;

/// Time since the VM was built, the clock every event log of a run shares.
#[derive(Clone, Copy)]
struct BootClock(Instant);

impl Clock for BootClock {
    fn now_ns(&self) -> u64 {
        self.0.elapsed().as_nanos() as u64
    }
}

/// The 16550's interrupt: an eventfd registered as irqfd on GSI 4.
struct IrqFdTrigger(EventFd);

impl Trigger for IrqFdTrigger {
    type E = std::io::Error;
    fn trigger(&self) -> std::io::Result<()> {
        self.0.write(1)
    }
}

/// What the VMM keeps beside each device on the bus.
struct Slot {
    device: GuestDevice,
    stats: Arc<IrqStats>,
    events: Arc<EventLog>,
}

struct Machine {
    /// Mechanism #1, the host bridge, the three devices and their BARs.
    pci: PciRoot,
    slots: Vec<Slot>,
    serial: Serial<IrqFdTrigger, vm_superio::serial::NoEvents, SerialOut>,
    cmos_index: u8,
    exit: Option<GuestExit>,
    exits: BTreeMap<&'static str, u64>,
}

fn kvm_err(what: &'static str) -> impl FnOnce(kvm_ioctls::Error) -> KvmError {
    move |source| KvmError::Kvm { what, source }
}

/// Open `/dev/kvm` and build a throw-away VM with an in-kernel irqchip.
pub fn probe() -> Result<(), KvmError> {
    let kvm = Kvm::new().map_err(|e| KvmError::Unavailable(format!("/dev/kvm: {e}")))?;
    let vm = kvm
        .create_vm()
        .map_err(|e| KvmError::Unavailable(format!("KVM_CREATE_VM: {e}")))?;
    vm.create_irq_chip()
        .map_err(|e| KvmError::Unavailable(format!("KVM_CREATE_IRQCHIP: {e}")))?;
    Ok(())
}

impl Machine {
    /// The device in `slot` (always plugged: the machine is built with all three).
    fn device(&self, slot: &Slot) -> &VirtioPciDevice {
        self.pci
            .device(slot.device.slot())
            .expect("every slot holds its device")
    }

    fn count(&mut self, kind: &'static str) {
        *self.exits.entry(kind).or_insert(0) += 1;
    }

    /// A configuration access reached a function through the data ports.
    fn count_config(&mut self, port: u16) {
        if (CONFIG_DATA..=0xCFF).contains(&port) && self.pci.config_address() & (1 << 31) != 0 {
            self.count("pci-config");
        }
    }

    fn pio_in(&mut self, port: u16, data: &mut [u8]) {
        self.count("pio");
        data.fill(0xFF);
        self.count_config(port);
        if self.pci.port_read(port, data) {
            return;
        }
        match port {
            p if (COM1..COM1 + 8).contains(&p) => {
                for b in data.iter_mut() {
                    *b = self.serial.read((p - COM1) as u8);
                }
            }
            // No keyboard controller data; status "nothing to read, input buffer empty".
            0x60 | KBD_STATUS => data.fill(0),
            CMOS_DATA => {
                // An RTC that reads all zero: no update in progress, midnight, 2000-00-00.
                let _ = self.cmos_index;
                data.fill(0);
            }
            _ => {}
        }
    }

    fn pio_out(&mut self, port: u16, data: &[u8]) {
        self.count("pio");
        self.count_config(port);
        if self.pci.port_write(port, data) {
            return;
        }
        match port {
            p if (COM1..COM1 + 8).contains(&p) => {
                for b in data {
                    let _ = self.serial.write((p - COM1) as u8, *b);
                }
            }
            KBD_STATUS if data.first() == Some(&0xFE) => self.exit = Some(GuestExit::Reboot),
            CMOS_INDEX => self.cmos_index = data.first().copied().unwrap_or(0) & 0x7F,
            _ => {}
        }
    }

    fn mmio_read(&mut self, addr: u64, data: &mut [u8]) {
        self.count("mmio");
        if !self.pci.mmio_read(addr, data) {
            self.count("mmio-unclaimed");
            data.fill(0xFF);
        }
    }

    fn mmio_write(&mut self, addr: u64, data: &[u8]) {
        self.count("mmio");
        if !self.pci.mmio_write(addr, data) {
            self.count("mmio-unclaimed");
        }
    }

    /// What firmware does: place every memory BAR naturally aligned from [`MMIO_BASE`], write
    /// Interrupt Line (the device's GSI), enable memory decoding and bus mastering.
    fn assign_resources(&mut self) -> Result<(), KvmError> {
        let gsi = |slot: u8| {
            GuestDevice::ALL
                .iter()
                .find(|d| d.slot() == slot)
                .map_or(0, |d| d.gsi() as u8)
        };
        self.pci
            .assign_resources(MMIO_BASE..MMIO_LIMIT, gsi, &mut || {})
            .map_err(|e| KvmError::Config(e.to_string()))?;
        Ok(())
    }
}

fn build_device(
    which: GuestDevice,
    config: &GuestConfig,
    mem: &GuestRam,
    vm: &Arc<VmFd>,
    clock: BootClock,
    hvc: &LineLog,
) -> Result<(VirtioPciDevice, Slot), KvmError> {
    let backend: Box<dyn VirtioBackend> = match which {
        GuestDevice::Blk => Box::new(
            Block::new(
                MemoryStorage::from_bytes(disk::mbr_image(config.disk_bytes)),
                BlockConfig {
                    num_queues: config.blk_queues,
                    ..BlockConfig::default()
                },
            )
            .map_err(|e| KvmError::Device(e.to_string()))?,
        ),
        GuestDevice::Rng => Box::new(Rng::new(SeededEntropy::new(config.rng_seed))),
        GuestDevice::Console => {
            let mut c = Console::new(ConsoleConfig::default());
            let hvc = hvc.clone();
            c.set_line_callback(Box::new(move |line| hvc.push_line(line)));
            Box::new(c)
        }
    };
    let sink = Arc::new(KvmInterrupts::new(vm.clone(), which.gsi()));
    let stats = sink.stats.clone();
    let options = TransportOptions {
        msix_table_size: config.mode.msix_table_size(which),
        event_idx: config.event_idx,
        ..TransportOptions::default()
    };
    let mut pci = VirtioPciDevice::new(backend, mem.clone(), sink, options)
        .map_err(|e| KvmError::Device(e.to_string()))?;
    let events = Arc::new(
        EventLog::new()
            .with_clock(Box::new(clock))
            .with_device(which.bdf())
            .with_capacity_limit(EVENT_CAPACITY),
    );
    pci.set_event_sink(events.clone());
    if let Some((d, faults)) = config.faults
        && d == which
    {
        pci.set_faults(faults);
    }
    events.emit(EventKind::IntxRouted {
        pin: 1,
        irq: which.gsi(),
    });
    Ok((
        pci,
        Slot {
            device: which,
            stats,
            events,
        },
    ))
}

extern "C" fn kick_handler(_: libc::c_int, _: *mut libc::siginfo_t, _: *mut libc::c_void) {}

fn kick_signal() -> libc::c_int {
    SIGRTMIN() + 3
}

static SIGNAL_INIT: Once = Once::new();

/// Everything the vCPU thread hands back.
struct Outcome {
    machine: Machine,
    vcpus: Vec<VcpuReport>,
    exit: GuestExit,
    stopped: Duration,
    clock: BootClock,
    serial: LineLog,
    serial_events: Arc<EventLog>,
    hvc: LineLog,
    hvc_events: Arc<EventLog>,
}

pub fn run(config: &GuestConfig) -> Result<GuestRun, KvmError> {
    if !(16..=3072).contains(&config.ram_mib) {
        return Err(KvmError::Config(format!(
            "ram_mib {} is outside 16..=3072",
            config.ram_mib
        )));
    }
    if !(1..=mptable::MAX_CPUS).contains(&config.cpus) {
        return Err(KvmError::Config(format!(
            "cpus {} is outside 1..={}",
            config.cpus,
            mptable::MAX_CPUS
        )));
    }
    let mut sig_err = None;
    SIGNAL_INIT.call_once(|| {
        if let Err(e) = register_signal_handler(kick_signal(), kick_handler) {
            sig_err = Some(e);
        }
    });
    if let Some(e) = sig_err {
        return Err(KvmError::Thread(format!("signal handler: {e}")));
    }
    probe()?;

    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicBool::new(false));
    let cfg = config.clone();
    let (stop2, done2) = (stop.clone(), done.clone());
    let handle = thread::Builder::new()
        .name("virq-kvm".into())
        .spawn(move || {
            let r = boot_and_run(&cfg, stop2);
            done2.store(true, Ordering::SeqCst);
            r
        })
        .map_err(|e| KvmError::Thread(e.to_string()))?;

    let started = Instant::now();
    while !done.load(Ordering::SeqCst) {
        // The limit ran out, or another vCPU ended the run while this one sits in KVM_RUN.
        if started.elapsed() >= config.time_limit || stop.load(Ordering::SeqCst) {
            stop.store(true, Ordering::SeqCst);
            // The vCPU may be inside KVM_RUN with nothing to exit for; a signal interrupts
            // it. Repeat until it notices (a signal that lands between runs is lost).
            let _ = handle.kill(kick_signal());
        }
        thread::sleep(Duration::from_millis(20));
    }
    let outcome = handle
        .join()
        .map_err(|_| KvmError::Thread("the vCPU thread panicked".into()))??;
    Ok(report(config, outcome))
}

fn boot_and_run(config: &GuestConfig, stop: Arc<AtomicBool>) -> Result<Outcome, KvmError> {
    let kvm = Kvm::new().map_err(|e| KvmError::Unavailable(format!("/dev/kvm: {e}")))?;
    let vm = Arc::new(kvm.create_vm().map_err(kvm_err("KVM_CREATE_VM"))?);
    vm.set_tss_address(TSS_ADDR)
        .map_err(kvm_err("KVM_SET_TSS_ADDR"))?;
    vm.set_identity_map_address(IDENTITY_MAP_ADDR)
        .map_err(kvm_err("KVM_SET_IDENTITY_MAP_ADDR"))?;
    vm.create_irq_chip()
        .map_err(kvm_err("KVM_CREATE_IRQCHIP"))?;
    vm.create_pit2(kvm_pit_config {
        flags: KVM_PIT_SPEAKER_DUMMY,
        ..Default::default()
    })
    .map_err(kvm_err("KVM_CREATE_PIT2"))?;

    let ram_bytes = u64::from(config.ram_mib) << 20;
    let mem = GuestRam::from_ranges(&[(GuestAddress(0), ram_bytes as usize)]).map_err(|e| {
        KvmError::Memory {
            what: "mmap",
            reason: e.to_string(),
        }
    })?;
    let host = mem
        .get_host_address(GuestAddress(0))
        .map_err(|e| KvmError::Memory {
            what: "host address",
            reason: e.to_string(),
        })?;
    let region = kvm_bindings::kvm_userspace_memory_region {
        slot: 0,
        flags: 0,
        guest_phys_addr: 0,
        memory_size: ram_bytes,
        userspace_addr: host as u64,
    };
    // SAFETY: `host` is the start of one anonymous mapping of `ram_bytes` owned by `mem`,
    // which lives (in the devices and in this function) until after the VM fd is closed at the
    // end of this function; the region does not overlap another slot.
    unsafe { vm.set_user_memory_region(region) }.map_err(kvm_err("KVM_SET_USER_MEMORY_REGION"))?;

    // The kernel, its command line, zero page, page tables and GDT.
    let mut image = File::open(&config.kernel)
        .map_err(|e| KvmError::Kernel(format!("cannot open {}: {e}", config.kernel.display())))?;
    let loaded = Elf::load(
        &mem,
        None,
        &mut image,
        Some(GuestAddress(boot::HIMEM_START)),
    )
    .map_err(|e| KvmError::Kernel(format!("{}: {e}", config.kernel.display())))?;
    if loaded.kernel_end > ram_bytes {
        return Err(KvmError::Kernel(
            "the kernel does not fit in guest RAM".into(),
        ));
    }
    let cmdline = config.cmdline();
    boot::setup_memory(&mem, ram_bytes, &cmdline)?;
    let intx: Vec<PciIntx> = GuestDevice::ALL
        .iter()
        .map(|d| PciIntx {
            slot: d.slot(),
            pin: 0,
            ioapic_pin: d.gsi() as u8,
        })
        .collect();
    let table = mptable::build(boot::EBDA_START as u32, config.cpus, &intx);
    mem.write_slice(&table, GuestAddress(boot::EBDA_START))
        .map_err(|e| KvmError::Memory {
            what: "mp table",
            reason: e.to_string(),
        })?;

    // The vCPUs: CPUID as KVM supports it with each one's APIC ID. The bootstrap processor
    // (vCPU 0) starts in long mode at the kernel's entry with LINT0/LINT1 set up; the others
    // wait in KVM's in-kernel local APIC for the INIT/SIPI Linux sends them.
    let cpuid = kvm
        .get_supported_cpuid(KVM_MAX_CPUID_ENTRIES)
        .map_err(kvm_err("KVM_GET_SUPPORTED_CPUID"))?;
    let mut vcpus = Vec::with_capacity(config.cpus as usize);
    for id in 0..config.cpus {
        let vcpu = vm
            .create_vcpu(u64::from(id))
            .map_err(kvm_err("KVM_CREATE_VCPU"))?;
        let mut own = cpuid.clone();
        set_apic_id(&mut own, id);
        vcpu.set_cpuid2(&own).map_err(kvm_err("KVM_SET_CPUID2"))?;
        vcpus.push(vcpu);
    }
    let bsp = &vcpus[0];
    setup_lapic(bsp)?;
    let sregs = bsp.get_sregs().map_err(kvm_err("KVM_GET_SREGS"))?;
    bsp.set_sregs(&boot::sregs(sregs))
        .map_err(kvm_err("KVM_SET_SREGS"))?;
    bsp.set_regs(&boot::regs(loaded.kernel_load.0))
        .map_err(kvm_err("KVM_SET_REGS"))?;
    bsp.set_fpu(&boot::fpu()).map_err(kvm_err("KVM_SET_FPU"))?;

    // Consoles and devices, all on one clock.
    let clock = BootClock(Instant::now());
    let log = |name: &str| {
        Arc::new(
            EventLog::new()
                .with_clock(Box::new(clock))
                .with_device(name)
                .with_capacity_limit(EVENT_CAPACITY),
        )
    };
    let serial_events = log("ttyS0");
    let hvc_events = log("hvc0");
    let serial_lines = LineLog::new(serial_events.clone());
    let hvc_lines = LineLog::new(hvc_events.clone());
    let com1_irq = EventFd::new(libc::EFD_NONBLOCK).map_err(|e| KvmError::Thread(e.to_string()))?;
    vm.register_irqfd(&com1_irq, COM1_GSI)
        .map_err(kvm_err("KVM_IRQFD"))?;
    let mut machine = Machine {
        pci: PciRoot::new(HostBridge::REDHAT),
        slots: Vec::new(),
        serial: Serial::new(IrqFdTrigger(com1_irq), SerialOut(serial_lines.clone())),
        cmos_index: 0,
        exit: None,
        exits: BTreeMap::new(),
    };
    for d in GuestDevice::ALL {
        let (pci, slot) = build_device(d, config, &mem, &vm, clock, &hvc_lines)?;
        machine
            .pci
            .plug_at(d.slot(), pci)
            .map_err(|e| KvmError::Config(e.to_string()))?;
        machine.slots.push(slot);
    }
    machine.assign_resources()?;

    // One thread per vCPU, all serving exits on the one machine; this thread coordinates:
    // it waits for the end (a guest exit on any vCPU, or the caller's stop), kicks the vCPUs
    // for RIP samples when asked, then stops and joins them.
    let shared = Arc::new(Shared {
        machine: Mutex::new(machine),
        exit: Mutex::new(None),
    });
    let sampling = config.rip_sample_interval;
    let mut threads = Vec::with_capacity(vcpus.len());
    for (id, mut vcpu) in vcpus.into_iter().enumerate() {
        let (vcpu_shared, vcpu_stop) = (shared.clone(), stop.clone());
        let spawned = thread::Builder::new()
            .name(format!("virq-kvm-vcpu{id}"))
            .spawn(move || {
                let (exits, samples) =
                    run_vcpu(&mut vcpu, &vcpu_shared, &vcpu_stop, sampling.is_some());
                vcpu_report(&vcpu, id as u8, exits, samples)
            });
        match spawned {
            Ok(h) => threads.push(h),
            Err(e) => {
                stop.store(true, Ordering::SeqCst);
                stop_threads(threads);
                return Err(KvmError::Thread(e.to_string()));
            }
        }
    }
    let mut next_sample = sampling.map(|i| Instant::now() + i);
    while !stop.load(Ordering::SeqCst) && !threads.iter().any(|h| h.is_finished()) {
        thread::sleep(Duration::from_millis(10));
        if let (Some(at), Some(interval)) = (next_sample.as_mut(), sampling)
            && Instant::now() >= *at
        {
            for h in &threads {
                let _ = h.kill(kick_signal());
            }
            *at += interval;
        }
    }
    stop.store(true, Ordering::SeqCst);
    let vcpus = stop_threads(threads);
    let stopped = clock.0.elapsed();
    let shared = Arc::into_inner(shared)
        .ok_or_else(|| KvmError::Thread("a vCPU thread still holds the machine".into()))?;
    let exit = lock(&shared.exit).take().unwrap_or(GuestExit::TimeLimit);
    let machine = shared
        .machine
        .into_inner()
        .unwrap_or_else(|e| e.into_inner());
    Ok(Outcome {
        machine,
        vcpus,
        exit,
        stopped,
        clock,
        serial: serial_lines,
        serial_events,
        hvc: hvc_lines,
        hvc_events,
    })
}

fn setup_lapic(vcpu: &VcpuFd) -> Result<(), KvmError> {
    const LVT_LINT0: usize = 0x350;
    const LVT_LINT1: usize = 0x360;
    const MODE_EXTINT: u32 = 0b111 << 8;
    const MODE_NMI: u32 = 0b100 << 8;
    let mut lapic = vcpu.get_lapic().map_err(kvm_err("KVM_GET_LAPIC"))?;
    let mut set = |reg: usize, mode: u32| {
        let mut b = [0u8; 4];
        for (i, x) in b.iter_mut().enumerate() {
            *x = lapic.regs[reg + i] as u8;
        }
        let v = (u32::from_le_bytes(b) & !(0b111 << 8)) | mode;
        for (i, x) in v.to_le_bytes().iter().enumerate() {
            lapic.regs[reg + i] = *x as libc::c_char;
        }
    };
    set(LVT_LINT0, MODE_EXTINT);
    set(LVT_LINT1, MODE_NMI);
    vcpu.set_lapic(&lapic).map_err(kvm_err("KVM_SET_LAPIC"))
}

/// What the vCPU threads share: the machine their exits are served on, and how the run ended
/// (the first vCPU to see an end records it).
struct Shared {
    machine: Mutex<Machine>,
    exit: Mutex<Option<GuestExit>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// KVM paravirtual features (CPUID 0x4000_0001 EAX) withheld from the guest: PV_UNHALT (bit
/// 7, PV spinlock kicks), PV_SEND_IPI (bit 11) and PV_SCHED_YIELD (bit 13). All three are
/// hypercalls Linux uses only with more than one CPU, and on this machine's software KVM
/// (kvm_pvm) a `vmcall` of KVM_HC_SEND_IPI never completes: an application processor that
/// sends its first IPI that way stops there, holding a lock the bootstrap processor then
/// spins on. Without them Linux sends IPIs through the local APIC's ICR, which KVM's in-kernel
/// APIC delivers.
const KVM_PV_FEATURES_WITHHELD: u32 = (1 << 7) | (1 << 11) | (1 << 13);

/// Leaf 1 EBX[31:24] and the x2APIC ID of leaves 0xB and 0x1F: the APIC ID `id` the vCPU's
/// in-kernel local APIC has (KVM gives vCPU n APIC ID n). And the KVM paravirtual features of
/// [`KVM_PV_FEATURES_WITHHELD`] cleared.
fn set_apic_id(cpuid: &mut kvm_bindings::CpuId, id: u8) {
    for e in cpuid.as_mut_slice() {
        match e.function {
            1 => e.ebx = (e.ebx & 0x00FF_FFFF) | u32::from(id) << 24,
            0xB | 0x1F => e.edx = u32::from(id),
            0x4000_0001 => e.eax &= !KVM_PV_FEATURES_WITHHELD,
            _ => {}
        }
    }
}

/// Kick every thread in `handles` out of KVM_RUN until it sees the stop flag, then join it.
fn stop_threads(handles: Vec<thread::JoinHandle<VcpuReport>>) -> Vec<VcpuReport> {
    let mut reports = Vec::new();
    for h in handles {
        while !h.is_finished() {
            let _ = h.kill(kick_signal());
            thread::sleep(Duration::from_millis(5));
        }
        reports.extend(h.join().ok());
    }
    reports
}

/// Where a stopped vCPU stands.
fn vcpu_report(vcpu: &VcpuFd, id: u8, exits: u64, samples: Vec<u64>) -> VcpuReport {
    let mut counts: BTreeMap<u64, u64> = BTreeMap::new();
    for rip in samples {
        *counts.entry(rip).or_insert(0) += 1;
    }
    let mut rip_samples: Vec<(u64, u64)> = counts.into_iter().collect();
    rip_samples.sort_by_key(|&(rip, n)| (std::cmp::Reverse(n), rip));
    rip_samples.truncate(16);
    let regs = vcpu.get_regs().unwrap_or_default();
    let sregs = vcpu.get_sregs().unwrap_or_default();
    VcpuReport {
        id,
        exits,
        mp_state: vcpu.get_mp_state().map_or(u32::MAX, |m| m.mp_state),
        rip: regs.rip,
        cs_selector: sregs.cs.selector,
        cs_base: sregs.cs.base,
        cr0: sregs.cr0,
        efer: sregs.efer,
        rip_samples,
    }
}

/// Run one vCPU until the guest stops (on any vCPU) or `stop` is set; returns the exits it
/// handled and, with `sample`, the guest RIP at every kick that interrupted KVM_RUN.
fn run_vcpu(
    vcpu: &mut VcpuFd,
    shared: &Shared,
    stop: &AtomicBool,
    sample: bool,
) -> (u64, Vec<u64>) {
    let mut exits = 0u64;
    let mut samples = Vec::new();
    loop {
        if stop.load(Ordering::SeqCst) {
            return (exits, samples);
        }
        exits += 1;
        let exit = match vcpu.run() {
            Ok(VcpuExit::IoIn(port, data)) => {
                let mut m = lock(&shared.machine);
                m.pio_in(port, data);
                m.exit.take()
            }
            Ok(VcpuExit::IoOut(port, data)) => {
                let mut m = lock(&shared.machine);
                m.pio_out(port, data);
                m.exit.take()
            }
            Ok(VcpuExit::MmioRead(addr, data)) => {
                lock(&shared.machine).mmio_read(addr, data);
                None
            }
            Ok(VcpuExit::MmioWrite(addr, data)) => {
                lock(&shared.machine).mmio_write(addr, data);
                None
            }
            Ok(VcpuExit::Hlt) => Some(GuestExit::Failed {
                reason: "HLT exit with an in-kernel irqchip".into(),
            }),
            Ok(VcpuExit::Shutdown) => Some(GuestExit::Shutdown),
            Ok(VcpuExit::SystemEvent(event, _)) => Some(GuestExit::SystemEvent { event }),
            Ok(VcpuExit::InternalError) => {
                let (suberror, data) = internal_error(vcpu);
                let insn = failed_instruction(suberror, &data);
                if insn.first() == Some(&0xCC) && inject_breakpoint(vcpu).is_ok() {
                    // KVM's emulator (software-assisted KVM) does not know `int3`; the kernel
                    // runs one at boot (its alternatives self-test) and expects #BP.
                    lock(&shared.machine).count("int3-injected");
                    None
                } else {
                    let rip = vcpu.get_regs().map(|r| r.rip).unwrap_or(0);
                    Some(GuestExit::Failed {
                        reason: format!(
                            "KVM_EXIT_INTERNAL_ERROR suberror {suberror} at rip {rip:#x}, \
                             instruction bytes {insn:02x?}, data {data:x?}"
                        ),
                    })
                }
            }
            Ok(VcpuExit::FailEntry(reason, cpu)) => Some(GuestExit::Failed {
                reason: format!("KVM_EXIT_FAIL_ENTRY reason {reason:#x} on cpu {cpu}"),
            }),
            Ok(other) => Some(GuestExit::Failed {
                reason: format!("unexpected exit {other:?}"),
            }),
            Err(e) if e.errno() == libc::EINTR || e.errno() == libc::EAGAIN => {
                if sample && let Ok(r) = vcpu.get_regs() {
                    samples.push(r.rip);
                } else {
                    lock(&shared.machine).count("interrupted");
                }
                None
            }
            Err(e) => Some(GuestExit::Failed {
                reason: format!("KVM_RUN: {e}"),
            }),
        };
        if let Some(e) = exit {
            lock(&shared.exit).get_or_insert(e);
            stop.store(true, Ordering::SeqCst);
            return (exits, samples);
        }
    }
}

/// The internal error's suberror and data words.
fn internal_error(vcpu: &mut VcpuFd) -> (u32, Vec<u64>) {
    let run = vcpu.get_kvm_run();
    // SAFETY: called only after KVM_RUN returned KVM_EXIT_INTERNAL_ERROR, for which the kernel
    // fills the `internal` member of the exit union (a plain struct of integers).
    let internal = unsafe { run.__bindgen_anon_1.internal };
    let n = (internal.ndata as usize).min(internal.data.len());
    (internal.suberror, internal.data[..n].to_vec())
}

/// For an emulation failure that carries instruction bytes (`flags` bit 0 in the first data
/// word, then a size byte and up to 15 bytes), those bytes.
fn failed_instruction(suberror: u32, data: &[u64]) -> Vec<u8> {
    if suberror != kvm_bindings::KVM_INTERNAL_ERROR_EMULATION
        || data.first().is_none_or(|f| f & 1 == 0)
    {
        return Vec::new();
    }
    let bytes: Vec<u8> = data[1..].iter().flat_map(|w| w.to_le_bytes()).collect();
    let Some((&size, rest)) = bytes.split_first() else {
        return Vec::new();
    };
    rest[..(size as usize).min(rest.len())].to_vec()
}

/// Execute `int3` for the guest: step over it and deliver #BP (a trap: the saved RIP is the
/// next instruction).
fn inject_breakpoint(vcpu: &VcpuFd) -> Result<(), kvm_ioctls::Error> {
    let mut regs = vcpu.get_regs()?;
    regs.rip += 1;
    vcpu.set_regs(&regs)?;
    let mut events = vcpu.get_vcpu_events()?;
    events.exception.injected = 1;
    events.exception.nr = 3;
    events.exception.has_error_code = 0;
    events.exception.pending = 0;
    vcpu.set_vcpu_events(&events)
}

fn median(mut v: Vec<u64>) -> Option<u64> {
    if v.is_empty() {
        return None;
    }
    v.sort_unstable();
    Some(v[v.len() / 2])
}

fn report(config: &GuestConfig, o: Outcome) -> GuestRun {
    let serial_log = o.serial.finish_text();
    let hvc_log = o.hvc.finish_text();
    let mut events: Vec<Event> = Vec::new();
    let mut dropped = o.serial_events.dropped() + o.hvc_events.dropped();
    for s in &o.machine.slots {
        dropped += s.events.dropped();
        events.extend(s.events.snapshot());
    }
    events.extend(o.serial_events.snapshot());
    events.extend(o.hvc_events.snapshot());
    events.sort_by_key(|e| e.time_ns.unwrap_or(0));
    for (i, e) in events.iter_mut().enumerate() {
        e.seq = i as u64;
    }

    let mut devices = Vec::new();
    for s in &o.machine.slots {
        let (vector_writes, messages_per_entry, c) = crate::summarize_device(s.device, &events);
        let st = &s.stats;
        let ld = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
        let mean = |total: u64, n: u64| (n > 0).then(|| total / n);
        let samples = st
            .line_high_samples
            .lock()
            .map(|v| v.clone())
            .unwrap_or_default();
        let line_ops = ld(&st.line_raised) + ld(&st.line_lowered);
        let pci = o.machine.device(s);
        devices.push(DeviceReport {
            device: s.device,
            bdf: s.device.bdf(),
            gsi: s.device.gsi(),
            msix_table_size: pci.msix().map_or(0, |m| m.table_size()),
            msix_enabled: pci.msix_enabled(),
            msix_config: pci.msix_config(),
            queue_vectors: (0..pci.num_queues())
                .map(|q| pci.queue_msix_vector(q).unwrap_or(virq_events::NO_VECTOR))
                .collect(),
            device_status: pci.device_status(),
            vector_writes,
            messages_per_entry,
            suppressed: c[0],
            line_raised: c[1],
            line_lowered: c[2],
            isr_reads: c[3],
            isr_reads_zero: c[4],
            queue_notifies: c[5],
            used_published: c[6],
            msi_signalled: ld(&st.msi_signalled),
            msi_not_delivered: ld(&st.msi_not_delivered),
            msi_first_not_delivered_s: st
                .msi_first_not_delivered
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .map(|t| t.saturating_duration_since(o.clock.0).as_secs_f64()),
            msi_ioctl_mean_ns: mean(ld(&st.msi_ioctl_ns), ld(&st.msi_signalled)),
            line_ioctl_mean_ns: mean(ld(&st.line_ioctl_ns), line_ops),
            line_high_mean_ns: mean(ld(&st.line_high_ns), samples.len() as u64),
            line_high_median_ns: median(samples),
            counters: pci
                .backend()
                .snapshot()
                .get("counters")
                .cloned()
                .unwrap_or(serde_json::Value::Null),
            faults: config
                .faults
                .filter(|(d, _)| *d == s.device)
                .map(|(_, f)| f),
        });
    }
    let data: GuestData = crate::guest_data(&devices, &serial_log, &hvc_log);

    let first_line = |pred: &dyn Fn(&str) -> bool| {
        events.iter().find_map(|e| match &e.kind {
            EventKind::LogLine { text } if pred(text) => e.time_ns.map(|t| t as f64 / 1e9),
            _ => None,
        })
    };
    let milestones = Milestones {
        first_serial_s: first_line(&|_| true),
        first_virtio_probe_s: first_line(&|t| t.contains("virtio")),
        partition_table_s: first_line(&|t| t.contains(" vda: vda1")),
        panic_s: first_line(&|t| t.contains("Kernel panic - not syncing")),
        stopped_s: o.stopped.as_secs_f64(),
    };
    GuestRun {
        mode: config.mode,
        cpus: config.cpus,
        hvc_console: config.hvc_console,
        cmdline: config.cmdline(),
        exit: o.exit,
        milestones,
        devices,
        data,
        serial_log,
        hvc_log,
        events,
        exits: o
            .machine
            .exits
            .iter()
            .map(|(k, v)| (k.to_string(), *v))
            .collect(),
        events_dropped: dropped,
        vcpus: o.vcpus,
    }
}
