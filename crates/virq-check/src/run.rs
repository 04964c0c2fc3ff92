//! One mode of the check: boot, start the device the Windows 7 way, bring the driver up, do
//! I/O, then judge the seven steps from the evidence.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;

use serde::Serialize;
use virq_backends::{
    Block, BlockConfig, Console, ConsoleConfig, MemoryStorage, Rng, SeededEntropy,
};
use virq_device::{TransportOptions, VirtioBackend, VirtioPciDevice};
use virq_events::{Event, EventKind, EventLog, Selector};
use virq_guest::{
    Buffer, DriverConfig, GuestRam, InterruptGrant as DriverGrant, RegisterAccess, VirtioPciCaps,
};
use virq_judge::{Overall, Subject};
use virq_sim::{CpuRun, GuestOs, Machine, run_cpu};
use virq_win7::resources::{ProcessorTopology, granted_message_total, message_descriptor_count};
use virq_win7::windbg::{self, DevnodeView, KernelObjects, MsixEntryView};
use virq_win7::{
    Arbiter, DbgPrint, DbgViewStyle, DebugPrintFilter, DeviceStartConfig, Inf, InfArch,
    InterruptGrant, MsixCapabilityInfo, PciDumpInput, VectorAllocator, WdfInterruptInfo,
    WdfInterrupts, render_pci,
};

use crate::adapters::{MachineRam, MachineRegs};
use crate::evidence::ModeLogs;
use crate::os::KmdfGlue;
use crate::{CheckError, CheckOptions, DeviceKind, Fault, InfChoice, Mode};

/// Guest RAM of the simulated machine.
const RAM_BYTES: u64 = 32 << 20;
/// Where the driver allocates its rings.
const RING_BASE: u64 = 0x10_0000;
const RING_LEN: u64 = 0x40_0000;
/// Where request headers, data and status bytes live.
const IO_BASE: u64 = 0x80_0000;
/// Bytes of I/O area per request.
const IO_STRIDE: u64 = 0x1000;
/// Size of the in-memory disk.
const DISK_BYTES: usize = 1 << 20;
/// Bytes the console driver sends per request, and the host input it must receive.
const CONSOLE_INPUT: &[u8] = b"virq host input\n";
/// The user-mode program that drives the known I/O: its `OutputDebugString` lines reach
/// DbgView with a `[PID]` prefix whatever the kernel's Debug Print Filter says.
const IO_PROGRAM: &str = "iogen.exe";
const IO_PROGRAM_PID: u32 = 2140;

/// What the sleep/resume showed: the selectors right after the reset of D0 entry, and what
/// `EvtDeviceD0Entry` wrote into them and read back.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PowerCycle {
    pub after_reset: Vec<(Selector, u16)>,
    /// (selector, value written, value read back).
    pub reprogrammed: Vec<(Selector, u16, u16)>,
    /// The bring-up in `EvtDeviceD0Entry` succeeded.
    pub resumed: bool,
}

/// Everything one mode's run produced.
#[derive(Clone, Debug, Serialize)]
pub struct ModeReport {
    /// The interrupt mode Windows gave the device.
    pub mode: Mode,
    /// What Windows granted and why (all requested, exactly one, or the line).
    pub grant: String,
    /// The sleep/resume (D0 exit, D0 entry with the device reset), when the run got that far.
    pub power: Option<PowerCycle>,
    /// The driver's lines the Debug Print Filter kept out of the capture.
    pub filtered_lines: u64,
    /// The worst of the judge's answers for the device in this run.
    pub overall: Overall,
    /// The judge's answers: the seven steps and every catalogue row.
    pub subject: Subject,
    /// The files a user would have after this run, and the device's record.
    pub logs: ModeLogs,
    /// Interrupts the CPU took (ISR invocations, message and line).
    pub interrupts: u64,
    /// An interrupt storm hit [`CheckOptions::interrupt_budget`] and the run stopped.
    pub budget_exhausted: bool,
    /// Requests the driver submitted.
    pub requests: u32,
    /// Requests the device completed, with the status (and data) the driver expects.
    pub completed: u32,
    /// The evidence the judge read (the files parsed, then the record): written by
    /// `virq check --events-dir` for `virq doctor`.
    pub events: Vec<Event>,
}

pub(crate) struct Io {
    token: u64,
    queue: u16,
    data: u64,
    len: u32,
    status: Option<u64>,
    expect: Option<Vec<u8>>,
}

/// Run one mode.
pub fn run_mode(opts: &CheckOptions, mode: Mode) -> Result<ModeReport, CheckError> {
    let fault = opts.inject;
    let machine_err = |e: &dyn std::fmt::Display| CheckError::Machine(e.to_string());

    // ---- the machine and the device ---------------------------------------------------
    let mut machine = Machine::with_cpus(RAM_BYTES, 2).map_err(|e| machine_err(&e))?;
    let slot = machine.next_slot();
    let (backend, disk) = build_backend(opts)?;
    let num_queues = backend.num_queues();
    let table = match (opts.msix_table, fault) {
        (Some(t), _) => t,
        (None, Some(Fault::DeviceSmallMsixTable)) => num_queues,
        // Row 26 in INTx mode: a device without MSI-X, so the line is all Windows can give.
        (None, Some(Fault::ModeFromInf)) if mode == Mode::Intx => 0,
        (None, _) => num_queues + 1,
    };
    let options = TransportOptions {
        msix_table_size: Some(table),
        ..TransportOptions::default()
    };
    let device = VirtioPciDevice::new(
        backend,
        machine.ram().clone(),
        machine.interrupt_sink_for_slot(slot),
        options,
    )
    .map_err(|e| CheckError::Options(e.to_string()))?;
    let mut device = device;
    device.set_faults(fault.map(Fault::device_faults).unwrap_or_default());
    machine.plug(device).map_err(|e| machine_err(&e))?;
    machine
        .firmware_assign_resources()
        .map_err(|e| machine_err(&e))?;
    let device_log = machine.events();
    let clock = machine.clock().clone();
    let ram = MachineRam(machine.ram().clone());
    let machine = Rc::new(RefCell::new(machine));
    let mut regs = MachineRegs::new(machine.clone(), slot);

    // ---- PnP: INF policy, the device's capability, the arbiter's grant ---------------------
    let (inf_text, install) = inf_for(opts, mode, fault);
    let settings = Inf::parse(&inf_text)
        .and_then(|inf| inf.interrupt_settings(&install, InfArch::Amd64))
        .map_err(|e| CheckError::Options(format!("INF: {e}")))?;
    let caps = VirtioPciCaps::parse(&mut regs)
        .map_err(|e| CheckError::Machine(format!("capability walk failed: {e}")))?;
    let line_irq = regs.config_read(0x3C, virq_guest::Width::U8);
    let bars: Vec<(u64, u64, bool)> = {
        let m = machine.borrow();
        let dev = m.device(slot).expect("plugged");
        dev.bar_defs()
            .iter()
            .map(|b| (dev.bar_address(b.index).unwrap_or(0), b.size, false))
            .collect()
    };
    let limit = match mode {
        Mode::MsixEnough => opts.granted.unwrap_or(u32::MAX),
        Mode::MsixFewer => opts.granted.unwrap_or(1),
        Mode::Intx => u32::MAX,
    };
    let arbiter = Arbiter {
        platform_limit: limit,
        msi_enabled: fault != Some(Fault::PlatformMsiDisabled),
    };
    let start_cfg = DeviceStartConfig {
        policy: settings.policy,
        affinity_policy: settings.affinity.and_then(|a| a.device_policy),
        msix: caps.msix.map(|m| MsixCapabilityInfo {
            table_size: m.table_size,
        }),
        requested: 0,
        line_irq,
        bars,
        topology: ProcessorTopology::uniform(2),
        interrupt_disable_with_messages: opts.msi_interrupt_disable,
        ..DeviceStartConfig::default()
    };

    // ---- DbgView, through the machine's Debug Print Filter ---------------------------------
    let filter = match fault {
        Some(Fault::PrintsFiltered) => DebugPrintFilter::windows_default(),
        _ => opts.print_filter,
    };
    let mut dbg = DbgPrint::new(DbgViewStyle::default())
        .with_filter(filter)
        .with_clock(&clock);

    // ---- EvtDriverDeviceAdd: on KMDF 1.9 the interrupt objects, before any resource --------
    let kmdf = opts.kmdf;
    // As many objects as the driver can use (config plus a message per queue): the grant is
    // not known yet. The faulty driver of row 7 creates one more.
    let wanted_objects =
        1 + usize::from(num_queues) + usize::from(fault == Some(Fault::ExtraInterruptObject));
    dbg.text(format!(
        "virqblk: EvtDriverDeviceAdd (KMDF {})",
        kmdf.name()
    ));
    let mut wdf = WdfInterrupts::before_start();
    // What WdfInterruptGetInfo said right after each WdfInterruptCreate (the checklist's print).
    let mut pre_start: Vec<WdfInterruptInfo> = Vec::new();
    if !kmdf.creates_in_prepare_hardware() {
        for id in wdf.create_many(wanted_objects) {
            let info = wdf.get_info(id);
            dbg.interrupt_connected(&info);
            pre_start.push(info);
        }
    }

    // ---- PnP start: the arbiter's grant, vectors, resources --------------------------------
    let mut allocator = VectorAllocator::default();
    let start = virq_win7::start_device(&start_cfg, &arbiter, &mut allocator)
        .map_err(|e| CheckError::Machine(format!("device start: {e}")))?;

    // ---- the PCI bus driver programs MSI-X (or the HAL the IOAPIC pin) ---------------------
    if let (Some(msix), true) = (caps.msix, start.msix.set_enable) {
        program_msix_table(&mut regs, &msix, &start.msix);
        // The bus driver updates Message Control with a read-modify-write of the capability's
        // first dword, a legal access that a device must decode (catalogue row 16).
        let cap_at = u16::from(msix.cap_at);
        let header = regs.config_read(cap_at, virq_guest::Width::U32);
        let control = start.msix.message_control((header >> 16) as u16);
        regs.config_write(
            cap_at,
            virq_guest::Width::U32,
            (header & 0xFFFF) | (u32::from(control) << 16),
        );
    }
    if start.interrupt_disable {
        let command = regs.config_read(0x04, virq_guest::Width::U16);
        regs.config_write(
            0x04,
            virq_guest::Width::U16,
            command | u32::from(virq_win7::pnp::COMMAND_INTERRUPT_DISABLE),
        );
    }
    if let InterruptGrant::Line { .. } = start.resources.grant {
        if let Some(a) = start.resources.interrupts.first() {
            machine
                .borrow_mut()
                .ioapic_program(Machine::intx_pin(slot), a.vector, true);
        }
    }

    // ---- EvtDevicePrepareHardware: the resources, the interrupt objects' information -------
    let translated = &start.resources.translated;
    dbg.text("virqblk: EvtDevicePrepareHardware 00:01.0 VEN_1AF4".to_string());
    dbg.resources(translated);
    if kmdf.creates_in_prepare_hardware() {
        // KMDF 1.11: one object per interrupt descriptor, with its resources; the query right
        // after create is real.
        wdf = WdfInterrupts::new(&start.resources);
        let mut ids = wdf.create_per_resource();
        if fault == Some(Fault::ExtraInterruptObject) {
            ids.push(wdf.create());
        }
        for id in &ids {
            dbg.interrupt_connected(&wdf.get_info(*id));
        }
    } else {
        // KMDF 1.9: the start handed the resources to the objects in creation order; the
        // driver asks again now. An object left without a resource is not used: its work
        // runs on message 0 (or the line). The driver of row 7 uses every object it made; the
        // driver of row 23 asked only before start.
        wdf.start(&start.resources);
        if fault != Some(Fault::PreStartInterruptInfo) {
            let on = if start.resources.grant.is_message() {
                "message 0"
            } else {
                "the line"
            };
            for id in wdf.ids().collect::<Vec<_>>() {
                let info = wdf.get_info(id);
                if info.has_resource() || fault == Some(Fault::ExtraInterruptObject) {
                    dbg.interrupt_connected(&info);
                } else {
                    dbg.text(format!(
                        "virqblk: interrupt object {} has no interrupt resource: not used, its work runs on {on}",
                        id.0
                    ));
                }
            }
        }
    }
    // The plan's input: the messages the driver believes it has.
    let descriptors = message_descriptor_count(translated) as u16;
    let messages = descriptors;
    let driver_messages = match fault {
        // Zeros from before start: MessageSignaled=0 everywhere, so "a line".
        Some(Fault::PreStartInterruptInfo) if !pre_start.is_empty() => {
            pre_start.iter().filter(|i| i.message_signaled).count() as u16
        }
        // The translated MessageCount (the Group, 0), at least one since the flag says MSI.
        Some(Fault::TranslatedMessageCount) if descriptors > 0 => {
            (granted_message_total(translated) as u16).max(1)
        }
        // Messages because the INF asks for them, whatever the resources are.
        Some(Fault::ModeFromInf) if settings.policy.msi_supported => descriptors.max(1),
        _ => descriptors,
    };
    let apic_vectors: Vec<u32> = start
        .resources
        .interrupts
        .iter()
        .map(|a| u32::from(a.vector))
        .collect();
    let driver_log = Arc::new(EventLog::new().with_clock(Box::new(clock.clone())));
    let mut config = DriverConfig::new(
        num_queues,
        DriverGrant::messages(driver_messages).with_apic_vectors(apic_vectors.clone()),
        RING_BASE,
        RING_LEN,
    );
    config.max_queue_size = 64;
    config.policy = opts.policy;
    if fault == Some(Fault::UncheckedMessageId) {
        // Per-message state sized from the first raw descriptor's MessageCount: 1 for MSI-X.
        config.mapped_messages = start
            .resources
            .raw
            .iter()
            .find_map(|d| d.message_count())
            .map(|c| c as u16);
    }
    let mut driver = virq_guest::VirtioPciDriver::new(regs, ram.clone(), caps, config)
        .with_sink(driver_log.clone())
        .with_faults(fault.map(Fault::driver_faults).unwrap_or_default());

    // ---- EvtDeviceD0Entry: the bring-up; KMDF connects the interrupts after it -------------
    let start_result = driver.start();
    print_driver_evidence(&mut dbg, &driver_log.snapshot(), &apic_vectors);
    let mut printed = driver_log.len();
    if let Err(e) = &start_result {
        dbg.error(format!("virqblk: bring-up failed: {e}"));
    }

    // ---- I/O whose completions must arrive as interrupts ----------------------------------
    let mut glue = KmdfGlue::new(driver, wdf);
    glue.line_as_message = driver_messages > 0 && !start.resources.grant.is_message();
    dbg.from_elsewhere(format!(
        "[{IO_PROGRAM_PID}] {IO_PROGRAM}: {} read(s) per queue",
        opts.requests_per_queue
    ));
    let mut ios = Vec::new();
    let mut run = CpuRun::default();
    // A panic in the driver's ISR or DPC is the machine's bugcheck: the run stops there.
    let mut bugcheck: Option<String> = None;
    // Selectors written during a rebalance: (selector, value written, the object's message).
    let mut rebalance_writes: Vec<(Selector, u16, u32)> = Vec::new();
    // Read-backs from a removed device are all ones; take them while it is still there.
    let mut read_backs_before_removal = None;
    // What the sleep/resume showed.
    let mut power: Option<PowerCycle> = None;
    if start_result.is_ok() {
        // One request per queue per round, each round run to quiescence, so every round's
        // completions must arrive as their own interrupts.
        for round in 0..opts.requests_per_queue {
            ios.extend(submit_round(opts, &mut glue, &ram, disk.as_deref(), round));
            let r = cpu(&machine, &mut glue, opts.interrupt_budget, &mut bugcheck);
            flush_isr_samples(&mut dbg, &mut glue);
            run.interrupts += r.interrupts;
            run.dpc_rounds += r.dpc_rounds;
            if r.budget_exhausted {
                run.budget_exhausted = true;
                break;
            }
        }
        if fault == Some(Fault::RebalanceRequery) && messages > 0 && !run.budget_exhausted {
            // A resource rebalance: Windows stops the device, takes its interrupt resources
            // back, starts it with new ones (new IDT vectors, the same message numbers) and
            // the bus driver reprograms the table. This driver then asks WdfInterruptGetInfo
            // for each object's MessageNumber in the middle of it instead of using the number
            // it cached at creation (catalogue row 6).
            dbg.text(
                "virqblk: resource rebalance (stop, new interrupt resources, start)".to_string(),
            );
            glue.wdf.begin_rebalance();
            let requeried: Vec<u32> = glue
                .wdf
                .ids()
                .map(|id| {
                    glue.wdf
                        .message_number_for_programming(id, virq_win7::MessageNumberSource::ReQuery)
                        .unwrap_or(0)
                })
                .collect();
            let again = virq_win7::start_device(&start_cfg, &arbiter, &mut allocator)
                .map_err(|e| CheckError::Machine(format!("restart after rebalance: {e}")))?;
            let caps = glue.driver.caps().clone();
            if let Some(msix) = caps.msix {
                program_msix_table(glue.driver.regs_mut(), &msix, &again.msix);
            }
            glue.wdf.complete_rebalance(&again.resources);
            let plan = glue.driver.plan().cloned();
            if let Some(plan) = plan {
                let mut cc = virq_guest::CommonCfg::new(glue.driver.regs_mut(), caps.common);
                for (selector, message) in plan.selectors() {
                    let Some(m) = message else { continue };
                    let value = requeried.get(usize::from(m.0)).copied().unwrap_or(0) as u16;
                    let read = match selector {
                        Selector::MsixConfig => {
                            cc.write16(virq_guest::common_cfg::offset::MSIX_CONFIG, value);
                            cc.read16(virq_guest::common_cfg::offset::MSIX_CONFIG)
                        }
                        Selector::Queue(q) => {
                            cc.select_queue(q);
                            cc.write16(virq_guest::common_cfg::offset::QUEUE_MSIX_VECTOR, value);
                            cc.read16(virq_guest::common_cfg::offset::QUEUE_MSIX_VECTOR)
                        }
                    };
                    match selector {
                        Selector::MsixConfig => dbg.msix_config(value, read, u32::from(m.0)),
                        Selector::Queue(q) => dbg.queue_vector(q, value, read, u32::from(m.0)),
                    }
                    rebalance_writes.push((selector, value, u32::from(m.0)));
                }
            }
            ios.extend(submit_round(
                opts,
                &mut glue,
                &ram,
                disk.as_deref(),
                opts.requests_per_queue + 2,
            ));
            let r = cpu(&machine, &mut glue, opts.interrupt_budget, &mut bugcheck);
            flush_isr_samples(&mut dbg, &mut glue);
            run.interrupts += r.interrupts;
            run.budget_exhausted |= r.budget_exhausted;
        }
        if fault == Some(Fault::SurpriseRemovalClaimed) && !run.budget_exhausted {
            // The device disappears with a completion's interrupt already latched.
            submit_round(
                opts,
                &mut glue,
                &ram,
                disk.as_deref(),
                opts.requests_per_queue,
            );
            read_backs_before_removal = Some(glue.driver.verify_vectors());
            machine.borrow_mut().surprise_remove(slot);
            dbg.text("virqblk: device surprise-removed".to_string());
            let r = cpu(&machine, &mut glue, opts.interrupt_budget, &mut bugcheck);
            run.interrupts += r.interrupts;
            run.budget_exhausted |= r.budget_exhausted;
        } else if !run.budget_exhausted {
            // A sleep and resume (S3: the device to D3 and back), with a request in flight.
            // KMDF disconnects the interrupts before EvtDeviceD0Exit, where the driver stops
            // the device; the device comes back reset, so EvtDeviceD0Entry must bring it up
            // again and program and read back every vector (checklist 3.4, catalogue row 27)
            // before KMDF reconnects the interrupts. One more round then proves the interrupts
            // still arrive. The request's completion is lost to the reset: not counted.
            //
            // On the way down the OS holds the function's messages off (MSI-X Function Mask), so
            // the in-flight request's completion waits in the PBA; it must not survive the
            // reset of D0 entry (catalogue row 30). On a line the completion leaves the line
            // asserted, and the reset must lower it (row 19). Then pci.sys
            // takes the function off the bus (Command bit 2 clear) just as one more request's
            // notify arrives: the device must not touch memory for it (row 29).
            let msix_cap = glue.driver.caps().msix.map(|m| u16::from(m.cap_at));
            dbg.from_elsewhere(format!(
                "[{IO_PROGRAM_PID}] {IO_PROGRAM}: system sleep (S3)"
            ));
            glue.wdf.disconnect();
            let mask = messages > 0;
            if mask {
                hold_interrupts(&machine, slot, msix_cap, true, true);
            }
            submit_round(
                opts,
                &mut glue,
                &ram,
                disk.as_deref(),
                opts.requests_per_queue,
            );
            dbg.d0_exit(3);
            set_bus_master(&machine, slot, false);
            submit_round(
                opts,
                &mut glue,
                &ram,
                disk.as_deref(),
                opts.requests_per_queue + 3,
            );
            let _ = glue.driver.quiesce();
            let since = driver_log.snapshot().split_off(printed);
            printed += since.len();
            print_driver_evidence(&mut dbg, &since, &apic_vectors);
            dbg.d0_entry(3);
            set_bus_master(&machine, slot, true);
            // Checklist 3.3: the device was reset; every selector reads 0xFFFF until the driver
            // programs it again.
            let after_reset = glue.driver.verify_vectors();
            for r in &after_reset {
                dbg.text(match r.selector {
                    Selector::MsixConfig => {
                        format!("VIRTIO: msix_config read=0x{:04x} after reset", r.read_back)
                    }
                    Selector::Queue(q) => format!(
                        "VIRTIO: queue={q} queue_msix_vector read=0x{:04x} after reset",
                        r.read_back
                    ),
                });
            }
            let resumed = glue.driver.resume();
            let since = driver_log.snapshot().split_off(printed);
            print_driver_evidence(&mut dbg, &since, &apic_vectors);
            if let Err(e) = &resumed {
                dbg.error(format!("virqblk: resume failed: {e}"));
            }
            glue.wdf.connect();
            if mask {
                hold_interrupts(&machine, slot, msix_cap, true, false);
            }
            power = Some(PowerCycle {
                after_reset: after_reset
                    .iter()
                    .map(|r| (r.selector, r.read_back))
                    .collect(),
                reprogrammed: since
                    .iter()
                    .filter_map(|e| match e.kind {
                        EventKind::VectorWritten {
                            selector,
                            written,
                            read_back,
                        } => Some((selector, written, read_back)),
                        _ => None,
                    })
                    .collect(),
                resumed: resumed.is_ok(),
            });
            dbg.from_elsewhere(format!("[{IO_PROGRAM_PID}] {IO_PROGRAM}: resumed"));
            let r = cpu(&machine, &mut glue, opts.interrupt_budget, &mut bugcheck);
            run.interrupts += r.interrupts;
            run.budget_exhausted |= r.budget_exhausted;
            if !run.budget_exhausted {
                ios.extend(submit_round(
                    opts,
                    &mut glue,
                    &ram,
                    disk.as_deref(),
                    opts.requests_per_queue + 1,
                ));
                let r = cpu(&machine, &mut glue, opts.interrupt_budget, &mut bugcheck);
                run.interrupts += r.interrupts;
                run.budget_exhausted |= r.budget_exhausted;
            }
        }
        if !run.budget_exhausted && fault != Some(Fault::SurpriseRemovalClaimed) {
            // The host changes the device's configuration (a disk resize) while the OS has the
            // function's interrupts held off (MSI-X Function Mask, or Command bit 10 for INTx,
            // as around a power transition). Nothing may reach the CPU until they are let go;
            // then the driver must see the change through the config vector (or ISR bit 1).
            let msix_cap = glue.driver.caps().msix.map(|m| u16::from(m.cap_at));
            hold_interrupts(&machine, slot, msix_cap, messages > 0, true);
            dbg.text("virqblk: interrupts held off by the OS".to_string());
            if let Some(dev) = machine.borrow_mut().device_mut(slot) {
                dev.config_changed();
            }
            let r = cpu(&machine, &mut glue, opts.interrupt_budget, &mut bugcheck);
            run.interrupts += r.interrupts;
            run.budget_exhausted |= r.budget_exhausted;
            hold_interrupts(&machine, slot, msix_cap, messages > 0, false);
            dbg.text("virqblk: interrupts let go".to_string());
            let r = cpu(&machine, &mut glue, opts.interrupt_budget, &mut bugcheck);
            run.interrupts += r.interrupts;
            run.budget_exhausted |= r.budget_exhausted;
        }
    }
    if run.budget_exhausted {
        dbg.error(format!(
            "virqblk: interrupt storm: {} interrupts without the line going low",
            run.interrupts
        ));
    }

    flush_isr_samples(&mut dbg, &mut glue);
    if let Some(what) = &bugcheck {
        // What virq check says of the machine, not a DbgPrint: no filter applies.
        dbg.from_elsewhere(format!(
            "BUGCHECK: the driver crashed in the ISR for MessageID={}: {what}",
            glue.last_dispatched
                .map_or("?".to_string(), |m| m.to_string())
        ));
    }

    // ---- the evidence after the I/O: read-backs, counters, !pci ---------------------------
    let read_backs = match read_backs_before_removal {
        Some(r) => r,
        None if start_result.is_ok() => glue.driver.verify_vectors(),
        None => Vec::new(),
    };
    // Checklist 3.1/3.2: every selector read back while running, as the driver logs it.
    for r in &read_backs {
        dbg.text(match r.selector {
            Selector::MsixConfig => format!("VIRTIO: msix_config read=0x{:04x}", r.read_back),
            Selector::Queue(q) => {
                format!(
                    "VIRTIO: queue={q} queue_msix_vector read=0x{:04x}",
                    r.read_back
                )
            }
        });
    }
    // The driver prints the counters of the plan it believes in.
    let counters = glue.driver.counter_summary();
    if driver_messages > 0 {
        for (m, c) in counters.messages.iter().enumerate() {
            dbg.counters_message(
                m as u32,
                c.isr,
                c.dpc,
                counters.last_message_id.unwrap_or(0),
            );
        }
    } else {
        dbg.counters_intx(
            counters.intx.isr,
            counters.intx.dpc,
            counters.last_isr_status.unwrap_or(0),
        );
    }
    // Checklist 7: the known events the counters are compared with.
    let done = completed_per_queue(&glue, &ios, &ram);
    for (queue, (submitted, completed)) in &done {
        dbg.text(virq_win7::dbgprint::format_io_line(
            *queue, *submitted, *completed,
        ));
    }
    let completed: u32 = done.values().map(|d| d.1).sum();
    let (config_bytes, table_view, pba) = {
        let m = machine.borrow();
        let dev = m.device(slot).expect("plugged");
        let (table_view, pba) = dev.msix().map_or((Vec::new(), Vec::new()), |x| {
            (
                x.table
                    .iter()
                    .map(|e| MsixEntryView {
                        address: e.address,
                        data: e.data,
                        masked: e.masked(),
                    })
                    .collect(),
                x.pba.clone(),
            )
        });
        (dev.config_bytes(), table_view, pba)
    };
    // ---- WinDbg: what a user with a kernel debugger reads (checklist 1.3) -----------------
    let objects = KernelObjects::for_start(slot, 0);
    let mut pci_dump = render_pci(&PciDumpInput {
        bus: 0,
        device: slot,
        function: 0,
        config: &config_bytes,
    });
    if let Some(loc) = windbg::pci::msix_location(&config_bytes) {
        pci_dump.push_str(&windbg::dd::render_msix(&loc, &table_view, &pba));
    }
    let pcitree = {
        let mut m = machine.borrow_mut();
        let function = |slot: u8, config: &[u8]| windbg::pcitree::PciTreeFunction {
            device: slot,
            function: 0,
            vendor_id: u16::from_le_bytes([config[0], config[1]]),
            device_id: u16::from_le_bytes([config[2], config[3]]),
            base_class: config[0x0B],
            sub_class: config[0x0A],
            devext: KernelObjects::for_start(slot, 0).pdo_ext,
        };
        let mut bridge = [0u8; 16];
        m.config_read(0, 0, 0, 0, &mut bridge);
        windbg::pcitree::render_pcitree(
            0,
            objects.bus_fdo_ext,
            &[function(0, &bridge), function(slot, &config_bytes)],
        )
    };
    let resources = &start.resources;
    let mut irp_text = windbg::irp::render_start_irp(&objects, r"\Driver\virqblk");
    irp_text.push_str(&windbg::dt::render_start_stack_location(
        windbg::irp::stack_location(objects.irp, windbg::irp::START_IRP_STACKS),
        objects.raw_list,
        objects.translated_list,
    ));
    let mut dt_text = windbg::dt::render_resource_list(objects.raw_list, &resources.raw);
    dt_text.push_str(&windbg::dt::render_resource_list(
        objects.translated_list,
        &resources.translated,
    ));
    let mut devnode = windbg::render_devnode(&DevnodeView {
        devnode: objects.devnode,
        pdo: objects.pdo,
        instance_path: "PCI\\VEN_1AF4&DEV_1042&SUBSYS_11001AF4&REV_01\\3&13c0b0c5&0&08",
        service: "virqblk",
        raw_list: objects.raw_list,
        raw: &resources.raw,
        translated_list: objects.translated_list,
        translated: &resources.translated,
    });
    devnode.push_str(&windbg::render_cmreslist(
        objects.translated_list,
        &resources.translated,
    ));
    let bdf = format!("00:{slot:02x}.0");
    let record: Vec<Event> = device_log
        .snapshot()
        .into_iter()
        .map(|mut e| {
            e.device = Some(bdf.clone());
            e
        })
        .collect();
    let logs = ModeLogs {
        dbgview: dbg.capture.render(),
        pcitree,
        irp: irp_text,
        dt: dt_text,
        pci: pci_dump,
        devnode,
        inf: inf_text.clone(),
        record,
    };
    let events = logs
        .evidence()
        .map_err(|e| CheckError::Machine(e.to_string()))?;
    let mut judgement = logs
        .judge()
        .map_err(|e| CheckError::Machine(e.to_string()))?;
    if judgement.subjects.len() != 1 {
        return Err(CheckError::Machine(format!(
            "the run's files describe {} devices or starts, expected one",
            judgement.subjects.len()
        )));
    }
    let subject = judgement.subjects.remove(0);
    Ok(ModeReport {
        mode,
        grant: start.decision.describe(),
        power,
        filtered_lines: dbg.dropped,
        overall: subject.overall(),
        subject,
        logs,
        interrupts: run.interrupts,
        budget_exhausted: run.budget_exhausted,
        requests: ios.len() as u32,
        completed,
        events,
    })
}

/// A copy of the disk contents, to check reads against.
type Disk = Vec<u8>;

/// The backend and, for blk, a copy of the disk contents to check reads against.
fn build_backend(
    opts: &CheckOptions,
) -> Result<(Box<dyn VirtioBackend>, Option<Disk>), CheckError> {
    Ok(match opts.device {
        DeviceKind::Blk => {
            let disk: Vec<u8> = (0..DISK_BYTES).map(|i| disk_byte(i as u64)).collect();
            let blk = Block::new(
                MemoryStorage::from_bytes(disk.clone()),
                BlockConfig {
                    num_queues: opts.queues,
                    ..BlockConfig::default()
                },
            )
            .map_err(|e| CheckError::Options(e.to_string()))?;
            (Box::new(blk), Some(disk))
        }
        DeviceKind::Rng => (Box::new(Rng::new(SeededEntropy::new(0x5EED))), None),
        DeviceKind::Console => {
            let mut c = Console::new(ConsoleConfig::default());
            c.push_input(CONSOLE_INPUT);
            (Box::new(c), None)
        }
    })
}

/// Disk contents: each sector is recognisable by its number.
fn disk_byte(offset: u64) -> u8 {
    let sector = offset / 512;
    (sector as u8) ^ (offset as u8).wrapping_mul(7) ^ 0x5A
}

/// The INF the reference driver ships with for this mode (and fault).
fn inf_for(opts: &CheckOptions, mode: Mode, fault: Option<Fault>) -> (String, String) {
    let keys = match (&opts.inf, mode) {
        (InfChoice::Text { text, install }, _) => return (text.clone(), install.clone()),
        // Row 26's driver ships the MSI INF in every mode.
        (InfChoice::Auto, Mode::Intx) if fault == Some(Fault::ModeFromInf) => Some(None),
        (InfChoice::LineOnly, _) | (InfChoice::Auto, Mode::Intx) => None,
        (InfChoice::Msi { limit }, _) => Some(*limit),
        (InfChoice::Auto, _) => Some(None),
    };
    (
        reference_inf(keys, fault == Some(Fault::InfKeysMisplaced)),
        "virqblk_inst".into(),
    )
}

/// The reference driver's INF: MSI keys under the `.HW` AddReg (or, for catalogue row 13,
/// wrongly under the install section's own AddReg).
pub fn reference_inf(msi: Option<Option<u32>>, misplaced: bool) -> String {
    let mut keys = String::new();
    if let Some(limit) = msi {
        keys.push_str(
            "HKR, \"Interrupt Management\\MessageSignaledInterruptProperties\", MSISupported, 0x00010001, 1\n",
        );
        if let Some(l) = limit {
            keys.push_str(&format!(
                "HKR, \"Interrupt Management\\MessageSignaledInterruptProperties\", MessageNumberLimit, 0x00010001, {l}\n"
            ));
        }
    }
    let (install_addreg, hw_addreg) = if misplaced {
        ("AddReg = virqblk_msi\n", "")
    } else {
        ("", "AddReg = virqblk_msi\n")
    };
    format!(
        "; virq reference driver INF (generated by virq check)\n\
         [Version]\nSignature = \"$WINDOWS NT$\"\nClass = SCSIAdapter\nProvider = virq\n\n\
         [Manufacturer]\nvirq = Models, NTamd64\n\n\
         [Models.NTamd64]\n\"virq virtio-blk\" = virqblk_inst, PCI\\VEN_1AF4&DEV_1042\n\n\
         [virqblk_inst.NTamd64]\nCopyFiles = virqblk_files\n{install_addreg}\n\
         [virqblk_inst.NTamd64.HW]\n{hw_addreg}\n\
         [virqblk_msi]\n{keys}\n\
         [virqblk_files]\nvirqblk.sys\n"
    )
}

/// The KMDF glue's prints after bring-up: every `device_status` write (checklist 3.4) and
/// every vector written with its read-back and the message intended (checklist 5.3).
fn print_driver_evidence(dbg: &mut DbgPrint<'_>, events: &[Event], apic_vectors: &[u32]) {
    for e in events {
        match &e.kind {
            EventKind::DeviceStatus { value } => dbg.device_status(*value),
            EventKind::QueueEnabled { queue, size } => dbg.queue_enable(*queue, *size),
            EventKind::VectorWritten {
                selector,
                written,
                read_back,
            } => {
                // The message the write was meant for, as the driver saw it at that moment: the
                // message whose APIC vector it wrote by mistake (row 3), or the value itself.
                let intended = apic_vectors
                    .iter()
                    .position(|v| *v == u32::from(*written))
                    .map_or(u32::from(*written), |m| m as u32);
                match selector {
                    Selector::MsixConfig => dbg.msix_config(*written, *read_back, intended),
                    Selector::Queue(q) => dbg.queue_vector(*q, *written, *read_back, intended),
                }
            }
            _ => {}
        }
    }
}

/// The PCI bus driver writes the table entries of a grant (address, data, mask) through the
/// table's BAR.
fn program_msix_table(
    regs: &mut MachineRegs,
    msix: &virq_guest::MsixCap,
    programming: &virq_win7::MsixProgramming,
) {
    for e in &programming.entries {
        let off = u64::from(msix.table_offset) + e.table_offset();
        for (i, dword) in e.to_bytes().chunks(4).enumerate() {
            let v = u32::from_le_bytes(dword.try_into().expect("4 bytes"));
            regs.bar_write(
                msix.table_bir,
                off + 4 * i as u64,
                virq_guest::Width::U32,
                u64::from(v),
            );
        }
    }
}

/// pci.sys takes the function off the bus (D3) or puts it back (D0): PCI Command bit 2, Bus
/// Master Enable, by a configuration write.
fn set_bus_master(machine: &RefCell<Machine>, slot: u8, on: bool) {
    let mut m = machine.borrow_mut();
    let mut b = [0u8; 2];
    m.config_read(0, slot, 0, 0x04, &mut b);
    let v = u16::from_le_bytes(b);
    let v = if on { v | 0x4 } else { v & !0x4 };
    m.config_write(0, slot, 0, 0x04, &v.to_le_bytes());
}

/// The OS holds the function's interrupts off (or lets them go): MSI-X Function Mask in
/// message mode, PCI Command bit 10 (Interrupt Disable) in line mode, by configuration writes.
fn hold_interrupts(
    machine: &RefCell<Machine>,
    slot: u8,
    msix_cap: Option<u16>,
    message_mode: bool,
    hold: bool,
) {
    let mut m = machine.borrow_mut();
    let (offset, bit) = match (message_mode, msix_cap) {
        (true, Some(cap)) => (cap + 2, 1u16 << 14),
        _ => (0x04, 1u16 << 10),
    };
    let mut b = [0u8; 2];
    m.config_read(0, slot, 0, offset, &mut b);
    let v = u16::from_le_bytes(b);
    let v = if hold { v | bit } else { v & !bit };
    m.config_write(0, slot, 0, offset, &v.to_le_bytes());
}

/// Run the CPU unless the machine already bugchecked; a panic in the driver becomes the
/// bugcheck (its message kept for the report) instead of taking the tool down.
fn cpu(
    machine: &RefCell<Machine>,
    os: &mut dyn GuestOs,
    budget: u64,
    bugcheck: &mut Option<String>,
) -> CpuRun {
    if bugcheck.is_some() {
        return CpuRun::default();
    }
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        run_cpu(machine, os, budget)
    })) {
        Ok(run) => run,
        Err(payload) => {
            let what = payload
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "driver panic".to_string());
            *bugcheck = Some(what);
            CpuRun::default()
        }
    }
}

/// Print the ISR invocations the glue sampled (log format line 8).
fn flush_isr_samples(dbg: &mut DbgPrint<'_>, glue: &mut KmdfGlue) {
    for s in glue.isr_samples.drain(..) {
        dbg.isr_sample(s.message_id, s.isr_status, s.claimed);
    }
}

/// Post one request of the device's kind on every queue, then notify each queue.
fn submit_round(
    opts: &CheckOptions,
    glue: &mut KmdfGlue,
    ram: &MachineRam,
    disk: Option<&[u8]>,
    round: u16,
) -> Vec<Io> {
    let mut ios = Vec::new();
    let mut ram = ram.clone();
    let queues: Vec<u16> = match opts.device {
        DeviceKind::Blk => (0..opts.queues).collect(),
        DeviceKind::Rng => vec![0],
        // The receive queue gets one buffer, in the first round, for the host's input.
        DeviceKind::Console if round == 0 => vec![0, 1],
        DeviceKind::Console => vec![1],
    };
    for (n, &q) in queues.iter().enumerate() {
        let slot = u64::from(round) * 64 + n as u64;
        let base = IO_BASE + slot * IO_STRIDE;
        let token = slot + 1;
        let (bufs, io) = match opts.device {
            DeviceKind::Blk => {
                let sector = u64::from(q) * 64 + u64::from(round);
                let mut header = [0u8; 16];
                header[8..].copy_from_slice(&sector.to_le_bytes());
                let _ = ram.write(base, &header);
                let _ = ram.write(base + 0x800, &[0xFF]);
                let start = (sector * 512) as usize;
                let expect = disk
                    .and_then(|d| d.get(start..start + 512))
                    .map(<[u8]>::to_vec);
                (
                    vec![
                        Buffer {
                            addr: base,
                            len: 16,
                            device_writes: false,
                        },
                        Buffer {
                            addr: base + 0x200,
                            len: 512,
                            device_writes: true,
                        },
                        Buffer {
                            addr: base + 0x800,
                            len: 1,
                            device_writes: true,
                        },
                    ],
                    Io {
                        token,
                        queue: q,
                        data: base + 0x200,
                        len: 513,
                        status: Some(base + 0x800),
                        expect,
                    },
                )
            }
            DeviceKind::Rng => (
                vec![Buffer {
                    addr: base,
                    len: 64,
                    device_writes: true,
                }],
                Io {
                    token,
                    queue: q,
                    data: base,
                    len: 64,
                    status: None,
                    expect: None,
                },
            ),
            DeviceKind::Console if q == 0 => (
                vec![Buffer {
                    addr: base,
                    len: 64,
                    device_writes: true,
                }],
                Io {
                    token,
                    queue: q,
                    data: base,
                    len: CONSOLE_INPUT.len() as u32,
                    status: None,
                    expect: Some(CONSOLE_INPUT.to_vec()),
                },
            ),
            DeviceKind::Console => {
                let line = format!("virq console line {round}\n");
                let _ = ram.write(base, line.as_bytes());
                (
                    vec![Buffer {
                        addr: base,
                        len: line.len() as u32,
                        device_writes: false,
                    }],
                    Io {
                        token,
                        queue: q,
                        data: base,
                        len: 0,
                        status: None,
                        expect: None,
                    },
                )
            }
        };
        if glue.driver.add_buffers(q, &bufs, token).is_ok() {
            ios.push(io);
        }
    }
    for &q in &queues {
        let _ = glue.driver.notify(q);
    }
    ios
}

/// Per queue: requests submitted, and those that completed through an interrupt with the
/// right length, status and data.
fn completed_per_queue(
    glue: &KmdfGlue,
    ios: &[Io],
    ram: &MachineRam,
) -> std::collections::BTreeMap<u16, (u32, u32)> {
    let mut out = std::collections::BTreeMap::new();
    for io in ios {
        let slot = out.entry(io.queue).or_insert((0u32, 0u32));
        slot.0 += 1;
        if io_completed(glue, io, ram) {
            slot.1 += 1;
        }
    }
    out
}

fn io_completed(glue: &KmdfGlue, io: &Io, ram: &MachineRam) -> bool {
    let Some(done) = glue
        .completions
        .iter()
        .find(|c| c.token == io.token && c.queue == io.queue)
    else {
        return false;
    };
    if let Some(status) = io.status {
        let mut s = [0xFFu8; 1];
        if virq_guest::GuestRam::read(&mut ram.clone(), status, &mut s).is_err() || s[0] != 0 {
            return false;
        }
    }
    if let Some(expect) = &io.expect {
        let mut got = vec![0u8; expect.len()];
        if virq_guest::GuestRam::read(&mut ram.clone(), io.data, &mut got).is_err()
            || &got != expect
        {
            return false;
        }
    }
    !(io.len > 0 && done.len < io.len)
}
