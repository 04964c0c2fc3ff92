//! The simulated Windows 7 machine.
//!
//! * `machine/io_interrupt`: one block read per cycle, all the way round: the driver posts it
//!   and notifies (MMIO), the device serves it and sends its MSI-X message, the LAPIC takes
//!   it, the KMDF dispatcher finds the interrupt object by IDT vector, the driver's ISR runs
//!   with its MessageID, EOI, then the DPC drains the used ring. One interrupt per cycle.
//! * `machine/config_interrupt`: a host configuration change per cycle: message -> ISR ->
//!   DPC (which reads `config_generation` back over MMIO and drains the queues routed to the
//!   config message). No I/O.
//! * `check/*`: `virq check` wall time per mode (`run_check` with one mode), and all three.
//!
//! The machine records its evidence (event logs) as `virq check` does. After criterion's groups
//! (`cargo bench` only) a same-run summary prints interrupts per second (median and spread);
//! `VIRQ_BENCH_PATH=io` or `VIRQ_BENCH_PATH=config` limits it to one path (for a profiler).

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group};
use virq_backends::{Block, BlockConfig, MemoryStorage};
use virq_check::adapters::{MachineRam, MachineRegs};
use virq_check::{CheckOptions, Mode, run_check};
use virq_device::TransportOptions;
use virq_guest::{
    Buffer, DriverConfig, InterruptGrant as DriverGrant, RegisterAccess, UsedElem, VirtioPciCaps,
    VirtioPciDriver, Width,
};
use virq_sim::{GuestOs, Machine, run_cpu};
use virq_win7::resources::ProcessorTopology;
use virq_win7::{
    Arbiter, DeviceStartConfig, Inf, InfArch, MsixCapabilityInfo, VectorAllocator, WdfInterrupts,
};

const RAM_BYTES: u64 = 32 << 20;
const RING_BASE: u64 = 0x10_0000;
const RING_LEN: u64 = 0x40_0000;
const IO: u64 = 0x80_0000;

const INF: &str = "[Version]\nSignature = \"$WINDOWS NT$\"\nClass = SCSIAdapter\nProvider = virq\n\n\
[Manufacturer]\nvirq = Models, NTamd64\n\n\
[Models.NTamd64]\n\"virq virtio-blk\" = blk_inst, PCI\\VEN_1AF4&DEV_1042\n\n\
[blk_inst.NTamd64]\nCopyFiles = blk_files\n\n\
[blk_inst.NTamd64.HW]\nAddReg = blk_msi\n\n\
[blk_msi]\nHKR, \"Interrupt Management\\MessageSignaledInterruptProperties\", MSISupported, 0x00010001, 1\n\n\
[blk_files]\nvirqblk.sys\n";

type Driver = VirtioPciDriver<MachineRegs, MachineRam>;

/// What `virq check`'s KMDF glue does on the simulated CPU, reduced to the interrupt path.
struct Glue {
    driver: Driver,
    wdf: WdfInterrupts,
    dpcs: VecDeque<Option<u32>>,
    /// Reused completion buffer (what `virq check`'s glue appends to).
    used: Vec<UsedElem>,
    completions: u64,
    isrs: u64,
}

impl GuestOs for Glue {
    fn interrupt(&mut self, vector: u8) {
        if let Some((_, Some(message_id))) = self.wdf.dispatch(u32::from(vector)) {
            self.isrs += 1;
            if self.driver.isr_message(message_id) && !self.dpcs.contains(&Some(message_id)) {
                self.dpcs.push_back(Some(message_id));
            }
        }
    }

    fn run_dpcs(&mut self) -> bool {
        if self.dpcs.is_empty() {
            return false;
        }
        while let Some(m) = self.dpcs.pop_front() {
            self.driver.dpc_into(m, &mut self.used).expect("dpc");
            self.completions += self.used.len() as u64;
            self.used.clear();
        }
        true
    }
}

/// A booted machine with a virtio-blk device, started the Windows 7 way with a message per
/// queue plus config, and the reference driver running.
struct Rig {
    machine: Rc<RefCell<Machine>>,
    slot: u8,
    glue: Glue,
    token: u64,
}

impl Rig {
    fn new() -> Rig {
        let mut machine = Machine::with_cpus(RAM_BYTES, 1).unwrap();
        let blk = Block::new(MemoryStorage::new(1 << 20), BlockConfig::default()).unwrap();
        let slot = machine
            .plug_backend(Box::new(blk), TransportOptions::default())
            .unwrap();
        machine.firmware_assign_resources().unwrap();
        let ram = MachineRam(machine.ram().clone());
        let machine = Rc::new(RefCell::new(machine));
        let mut regs = MachineRegs::new(machine.clone(), slot);

        let settings = Inf::parse(INF)
            .and_then(|inf| inf.interrupt_settings("blk_inst", InfArch::Amd64))
            .unwrap();
        let caps = VirtioPciCaps::parse(&mut regs).unwrap();
        let msix = caps.msix.expect("MSI-X capability");
        let bars: Vec<(u64, u64, bool)> = {
            let m = machine.borrow();
            let dev = m.device(slot).unwrap();
            dev.bar_defs()
                .iter()
                .map(|b| (dev.bar_address(b.index).unwrap_or(0), b.size, false))
                .collect()
        };
        let start_cfg = DeviceStartConfig {
            policy: settings.policy,
            msix: Some(MsixCapabilityInfo {
                table_size: msix.table_size,
            }),
            line_irq: regs.config_read(0x3C, Width::U8),
            bars,
            topology: ProcessorTopology::uniform(1),
            ..DeviceStartConfig::default()
        };
        let start = virq_win7::start_device(
            &start_cfg,
            &Arbiter::with_platform_limit(u32::MAX),
            &mut VectorAllocator::default(),
        )
        .unwrap();
        assert!(start.msix.set_enable, "MSI-X granted");
        for e in &start.msix.entries {
            let off = u64::from(msix.table_offset) + e.table_offset();
            for (i, dword) in e.to_bytes().chunks(4).enumerate() {
                let v = u32::from_le_bytes(dword.try_into().unwrap());
                regs.bar_write(msix.table_bir, off + 4 * i as u64, Width::U32, u64::from(v));
            }
        }
        let cap_at = u16::from(msix.cap_at);
        let header = regs.config_read(cap_at, Width::U32);
        let control = start.msix.message_control((header >> 16) as u16);
        regs.config_write(
            cap_at,
            Width::U32,
            (header & 0xFFFF) | (u32::from(control) << 16),
        );

        let mut wdf = WdfInterrupts::new(&start.resources);
        wdf.create_per_resource();
        let messages = start.resources.interrupts.len() as u16;
        let vectors = start
            .resources
            .interrupts
            .iter()
            .map(|a| u32::from(a.vector))
            .collect();
        let mut config = DriverConfig::new(
            1,
            DriverGrant::messages(messages).with_apic_vectors(vectors),
            RING_BASE,
            RING_LEN,
        );
        config.max_queue_size = 64;
        let mut driver = VirtioPciDriver::new(regs, ram, caps, config);
        driver.start().unwrap();
        let mut rig = Rig {
            machine,
            slot,
            glue: Glue {
                driver,
                wdf,
                dpcs: VecDeque::new(),
                used: Vec::new(),
                completions: 0,
                isrs: 0,
            },
            token: 0,
        };
        // Proof that both cycles go all the way round before anything is timed.
        rig.io_cycle();
        rig.config_cycle();
        assert_eq!(rig.glue.completions, 1);
        assert_eq!(rig.glue.isrs, 2);
        rig
    }

    /// One 512-byte read, from the driver's post to its completion in the DPC.
    fn io_cycle(&mut self) -> u64 {
        self.token += 1;
        let bufs = [
            Buffer {
                addr: IO,
                len: 16,
                device_writes: false,
            },
            Buffer {
                addr: IO + 0x200,
                len: 512,
                device_writes: true,
            },
            Buffer {
                addr: IO + 0x800,
                len: 1,
                device_writes: true,
            },
        ];
        self.glue.driver.add_buffers(0, &bufs, self.token).unwrap();
        self.glue.driver.notify(0).unwrap();
        run_cpu(&self.machine, &mut self.glue, 1_000).interrupts
    }

    /// One configuration change interrupt, from the host's change to the DPC.
    fn config_cycle(&mut self) -> u64 {
        self.machine
            .borrow_mut()
            .device_mut(self.slot)
            .unwrap()
            .config_changed();
        run_cpu(&self.machine, &mut self.glue, 1_000).interrupts
    }
}

fn machine(c: &mut Criterion) {
    let mut g = c.benchmark_group("machine");
    g.throughput(Throughput::Elements(1));
    let mut rig = Rig::new();
    g.bench_function("io_interrupt", |b| b.iter(|| rig.io_cycle()));
    let mut rig = Rig::new();
    g.bench_function("config_interrupt", |b| b.iter(|| rig.config_cycle()));
    g.finish();
}

fn options(modes: &[Mode]) -> CheckOptions {
    CheckOptions {
        modes: modes.to_vec(),
        ..CheckOptions::default()
    }
}

fn check(c: &mut Criterion) {
    let mut g = c.benchmark_group("check");
    g.sample_size(10);
    for mode in Mode::ALL {
        let o = options(&[mode]);
        assert!(run_check(&o).unwrap().all_hold());
        g.bench_function(mode.name(), |b| b.iter(|| run_check(&o).unwrap()));
    }
    let o = options(&Mode::ALL);
    g.bench_function("all_modes", |b| b.iter(|| run_check(&o).unwrap()));
    g.finish();
}

fn stats(v: &mut [f64]) -> (f64, f64, f64) {
    v.sort_by(|a, b| a.total_cmp(b));
    (v[v.len() / 2], v[0], v[v.len() - 1])
}

fn same_run_summary() {
    const ROUNDS: usize = 31;
    const CYCLES: u32 = 5_000;
    // `VIRQ_BENCH_PATH=io` or `=config` times one path alone (for a profiler).
    let only = match std::env::var("VIRQ_BENCH_PATH").as_deref() {
        Ok("io") => Some(true),
        Ok("config") => Some(false),
        _ => None,
    };
    let mut io = Rig::new();
    let mut cfg = Rig::new();
    let (mut t_io, mut t_cfg) = (Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        for (rig, out, io_path) in [(&mut io, &mut t_io, true), (&mut cfg, &mut t_cfg, false)] {
            if only.is_some_and(|o| o != io_path) {
                continue;
            }
            let t = Instant::now();
            let mut interrupts = 0;
            for _ in 0..CYCLES {
                interrupts += if io_path {
                    rig.io_cycle()
                } else {
                    rig.config_cycle()
                };
            }
            assert_eq!(interrupts, u64::from(CYCLES), "one interrupt per cycle");
            out.push(t.elapsed().as_nanos() as f64 / f64::from(CYCLES));
        }
    }
    let mut wall = Vec::new();
    for _ in 0..9 {
        let t = Instant::now();
        assert!(run_check(&options(&Mode::ALL)).unwrap().all_hold());
        wall.push(t.elapsed().as_secs_f64() * 1e3);
    }
    println!();
    println!("same-run summary ({ROUNDS} rounds of {CYCLES} cycles; median [min..max])");
    for (name, v) in [
        ("block read -> MSI-X -> ISR -> DPC drain", &mut t_io),
        ("config change -> MSI-X -> ISR -> DPC", &mut t_cfg),
    ] {
        if v.is_empty() {
            println!("  {name:<40} not run (VIRQ_BENCH_PATH limits the summary to the other path)");
            continue;
        }
        let (m, lo, hi) = stats(v);
        println!(
            "  {name:<40} {:>6.2} M interrupts/s [{:.2}..{:.2}]  {m:.0} ns each",
            1e3 / m,
            1e3 / hi,
            1e3 / lo
        );
    }
    let (m, lo, hi) = stats(&mut wall);
    println!("  virq check, all three modes              {m:>6.2} ms [{lo:.2}..{hi:.2}]");
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = machine, check
}

fn main() {
    benches();
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--bench") && !args.iter().any(|a| a == "--profile-time") {
        same_run_summary();
    }
    Criterion::default().configure_from_args().final_summary();
}
