//! A deterministic simulated PC for the interrupt chain.
//!
//! Guest RAM, a PCI bus reached through configuration mechanism #1 (ports 0xCF8/0xCFC) with a
//! host bridge at 00:00.0, firmware-style BAR assignment, one CPU with a local APIC, an IOAPIC
//! with level-triggered PCI pins, and a virtual clock. The guest OS model runs on it through
//! [`GuestOs`]: the machine takes interrupts, the OS runs its ISR at the vector's priority,
//! EOIs, then runs DPCs. Nothing depends on wall time, so the same inputs give the same
//! event log.

pub mod apic;

use std::cell::RefCell;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use thiserror::Error;
use virq_device::pci_root::{HostBridge, PciRoot, PciRootError};
use virq_device::{InterruptSink, VecMemory, VirtioPciDevice};
use virq_events::{Clock, EventKind, EventLog, EventSink};

use apic::{IoApic, LocalApic, decode_msi};

pub use virq_device::pci_root::{CONFIG_ADDRESS_PORT, CONFIG_DATA_PORT};
/// Where firmware starts placing 64-bit memory BARs.
pub const MMIO_BASE: u64 = 0xC000_0000;
/// Where the BAR window ends: the IOAPIC sits above.
const MMIO_LIMIT: u64 = 0xFEC0_0000;
/// First IOAPIC pin used for PCI INTx (pins 0-15 are ISA).
pub const PCI_INTX_FIRST_PIN: usize = 16;

/// The machine's virtual clock in nanoseconds; every access and interrupt advances it by a
/// fixed cost so runs are reproducible.
#[derive(Debug, Default, Clone)]
pub struct VirtualClock(Arc<AtomicU64>);

impl VirtualClock {
    pub fn advance(&self, ns: u64) {
        self.0.fetch_add(ns, Ordering::Relaxed);
    }
}

impl Clock for VirtualClock {
    fn now_ns(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Costs charged to the virtual clock.
const CONFIG_ACCESS_NS: u64 = 200;
const MMIO_ACCESS_NS: u64 = 100;
const INTERRUPT_NS: u64 = 1_000;

/// Interrupt controller state shared between the machine and device sinks.
#[derive(Debug)]
struct Controllers {
    /// One local APIC per CPU, APIC ID = index. The CPUs take interrupts one at a time (the
    /// simulation is serial), which is all the interrupt chain needs.
    lapics: Vec<LocalApic>,
    /// CPUs with an interrupt in service, innermost last, so EOI goes to the right LAPIC.
    in_service: Vec<usize>,
    ioapic: IoApic,
    /// MSI writes that did not decode as an interrupt (a bad table entry).
    stray_msi: u64,
    /// False only when no LAPIC has a requested (IRR) vector, so the CPU can tell "nothing to
    /// take" without the lock. Set (under the lock) whenever a LAPIC latches a vector; cleared
    /// (under the lock) when an acknowledge leaves every IRR empty.
    requested: Arc<AtomicBool>,
}

/// The sink a device on this machine sends interrupts to.
#[derive(Debug)]
pub struct DeviceInterrupts {
    controllers: Arc<Mutex<Controllers>>,
    pin: usize,
}

impl Controllers {
    fn new(cpus: usize) -> Self {
        Controllers {
            lapics: (0..cpus.max(1))
                .map(|id| LocalApic::new(id as u8))
                .collect(),
            in_service: Vec::new(),
            ioapic: IoApic::default(),
            stray_msi: 0,
            requested: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Physical destination mode: APIC ID `dest`, or 0xFF for broadcast (taken by CPU 0).
    fn deliver(&mut self, dest: u8, vector: u8) -> bool {
        let cpu = if dest == 0xFF { 0 } else { dest as usize };
        let accepted = match self.lapics.get_mut(cpu) {
            Some(l) => l.accept(vector),
            None => false,
        };
        if accepted {
            self.requested.store(true, Ordering::Release);
        }
        accepted
    }

    /// Recompute [`Controllers::requested`] after IRR bits were cleared.
    fn update_requested(&self) {
        let any = self.lapics.iter().any(LocalApic::has_requests);
        self.requested.store(any, Ordering::Release);
    }
}

impl InterruptSink for DeviceInterrupts {
    fn msi(&self, address: u64, data: u32) {
        let mut c = self.controllers.lock().unwrap();
        let ok = match decode_msi(address, data) {
            Some(m) if m.delivery_mode <= 1 => c.deliver(m.destination, m.vector),
            _ => false,
        };
        if !ok {
            c.stray_msi += 1;
        }
    }

    fn set_intx(&self, level: bool) {
        let mut c = self.controllers.lock().unwrap();
        if let Some(v) = c.ioapic.set_level(self.pin, level) {
            let dest = c.ioapic.entries[self.pin].destination;
            c.deliver(dest, v);
        }
    }
}

/// Errors from machine construction.
#[derive(Debug, Error)]
pub enum MachineError {
    #[error("guest RAM of {0} bytes could not be mapped")]
    Ram(u64),
    #[error("no free PCI slot")]
    BusFull,
    #[error("BAR space exhausted: {0}")]
    BarSpace(#[source] PciRootError),
}

impl From<PciRootError> for MachineError {
    fn from(e: PciRootError) -> Self {
        match e {
            PciRootError::BarSpace { .. } => MachineError::BarSpace(e),
            PciRootError::BusFull | PciRootError::SlotUnavailable(_) => MachineError::BusFull,
        }
    }
}

/// The OS half that runs on the machine's CPU. It reaches the machine through its own
/// handle (see [`run_cpu`]), so a driver can keep register access across calls.
pub trait GuestOs {
    /// Run the interrupt service routine(s) connected to IDT `vector`.
    fn interrupt(&mut self, vector: u8);
    /// Run queued DPCs; return false when none were queued.
    fn run_dpcs(&mut self) -> bool;
}

/// What [`run_cpu`] did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct CpuRun {
    pub interrupts: u64,
    pub dpc_rounds: u64,
    /// True when the interrupt budget ran out (a storm).
    pub budget_exhausted: bool,
}

/// The simulated PC.
pub struct Machine {
    ram: VecMemory,
    /// Mechanism #1, the host bridge, the devices and their BARs.
    pci: PciRoot,
    controllers: Arc<Mutex<Controllers>>,
    /// The controllers' [`Controllers::requested`] flag, read without the lock.
    requested: Arc<AtomicBool>,
    clock: VirtualClock,
    events: Arc<EventLog>,
    next_mmio: u64,
    /// Interrupts delivered over the machine's life.
    delivered: u64,
}

impl std::fmt::Debug for Machine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Machine")
            .field("devices", &self.pci.devices().count())
            .field("delivered", &self.delivered)
            .finish_non_exhaustive()
    }
}

impl Machine {
    /// A one-CPU machine with `ram_bytes` of RAM at guest-physical 0 and an empty PCI bus.
    pub fn new(ram_bytes: u64) -> Result<Self, MachineError> {
        Self::with_cpus(ram_bytes, 1)
    }

    /// A machine with `cpus` local APICs (IDs 0..cpus).
    pub fn with_cpus(ram_bytes: u64, cpus: usize) -> Result<Self, MachineError> {
        let len = usize::try_from(ram_bytes).map_err(|_| MachineError::Ram(ram_bytes))?;
        let ram = VecMemory::new(len);
        let clock = VirtualClock::default();
        let events = Arc::new(
            EventLog::new()
                .with_clock(Box::new(clock.clone()))
                .with_capacity_limit(1 << 20),
        );
        let controllers = Controllers::new(cpus);
        let requested = controllers.requested.clone();
        Ok(Machine {
            ram,
            pci: PciRoot::new(HostBridge::I440FX),
            controllers: Arc::new(Mutex::new(controllers)),
            requested,
            clock,
            events,
            next_mmio: MMIO_BASE,
            delivered: 0,
        })
    }

    /// Guest RAM at guest-physical 0, shared with every device on the machine.
    pub fn ram(&self) -> &VecMemory {
        &self.ram
    }

    pub fn events(&self) -> Arc<EventLog> {
        self.events.clone()
    }

    pub fn clock(&self) -> &VirtualClock {
        &self.clock
    }

    /// Interrupts delivered to the CPU since the machine was built.
    pub fn interrupts_delivered(&self) -> u64 {
        self.delivered
    }

    /// MSI writes that did not decode to this CPU.
    pub fn stray_msi(&self) -> u64 {
        self.controllers.lock().unwrap().stray_msi
    }

    /// The interrupt sink for a device in `slot` (INTA# swizzled onto IOAPIC pin 16 + slot%8).
    pub fn interrupt_sink_for_slot(&self, slot: u8) -> Arc<DeviceInterrupts> {
        Arc::new(DeviceInterrupts {
            controllers: self.controllers.clone(),
            pin: Self::intx_pin(slot),
        })
    }

    /// IOAPIC pin INTA# of `slot` is wired to.
    pub fn intx_pin(slot: u8) -> usize {
        PCI_INTX_FIRST_PIN + (slot as usize % 8)
    }

    /// Plug a device (built with [`Machine::interrupt_sink_for_slot`]) into the next slot.
    /// Its events go to the machine's log.
    pub fn plug(&mut self, mut device: VirtioPciDevice) -> Result<u8, MachineError> {
        device.set_event_sink(self.events.clone());
        Ok(self.pci.plug(device)?)
    }

    /// The next free slot number (32 when the bus is full).
    pub fn next_slot(&self) -> u8 {
        self.pci.next_slot().unwrap_or(32)
    }

    pub fn device(&self, slot: u8) -> Option<&VirtioPciDevice> {
        self.pci.device(slot)
    }

    pub fn device_mut(&mut self, slot: u8) -> Option<&mut VirtioPciDevice> {
        self.pci.device_mut(slot)
    }

    /// Pull the device in `slot` out of the bus without warning (catalogue row 12): from now
    /// on its configuration space and BARs read all ones and its INTx pin is released. An
    /// interrupt the CPU already latched is still delivered, as on hardware.
    pub fn surprise_remove(&mut self, slot: u8) {
        if self.pci.surprise_remove(slot) {
            let mut c = self.controllers.lock().unwrap();
            let _ = c.ioapic.set_level(Self::intx_pin(slot), false);
        }
    }

    // ------------------------------------------------------------------ port I/O (CF8/CFC)

    /// Port input of 1, 2 or 4 bytes; ports nothing decodes read all ones.
    pub fn port_read(&mut self, port: u16, data: &mut [u8]) {
        self.clock.advance(CONFIG_ACCESS_NS);
        if !self.pci.port_read(port, data) {
            data.fill(0xFF);
        }
    }

    /// Port output of 1, 2 or 4 bytes.
    pub fn port_write(&mut self, port: u16, data: &[u8]) {
        self.clock.advance(CONFIG_ACCESS_NS);
        self.pci.port_write(port, data);
    }

    /// A configuration read addressed by bus/device/function (what mechanism #1 resolves to).
    /// Absent functions read all ones.
    pub fn config_read(&mut self, bus: u8, dev: u8, func: u8, offset: u16, data: &mut [u8]) {
        self.pci.config_read(bus, dev, func, offset, data);
    }

    pub fn config_write(&mut self, bus: u8, dev: u8, func: u8, offset: u16, data: &[u8]) {
        self.pci.config_write(bus, dev, func, offset, data);
    }

    // ------------------------------------------------------------------------ MMIO

    /// A CPU read of device memory; unclaimed addresses read all ones (master abort).
    pub fn mmio_read(&mut self, addr: u64, data: &mut [u8]) {
        self.clock.advance(MMIO_ACCESS_NS);
        if !self.pci.mmio_read(addr, data) {
            data.fill(0xFF);
        }
    }

    /// A CPU write to device memory; unclaimed addresses are dropped.
    pub fn mmio_write(&mut self, addr: u64, data: &[u8]) {
        self.clock.advance(MMIO_ACCESS_NS);
        self.pci.mmio_write(addr, data);
    }

    // ------------------------------------------------------------------------ firmware

    /// What BIOS does before the OS boots ([`PciRoot::assign_resources`]): size every BAR
    /// with the all-ones probe through mechanism #1, place it naturally aligned above
    /// [`MMIO_BASE`], route INTA# to its IOAPIC pin in Interrupt Line, and enable memory
    /// decoding and bus mastering. Each configuration access costs virtual time.
    pub fn firmware_assign_resources(&mut self) -> Result<(), MachineError> {
        let clock = self.clock.clone();
        self.next_mmio = self.pci.assign_resources(
            self.next_mmio..MMIO_LIMIT,
            |slot| Self::intx_pin(slot) as u8,
            &mut || clock.advance(CONFIG_ACCESS_NS),
        )?;
        Ok(())
    }

    /// 32-bit configuration read through ports 0xCF8/0xCFC.
    pub fn cfg_read32(&mut self, slot: u8, offset: u16) -> u32 {
        self.select(slot, offset);
        let mut b = [0u8; 4];
        self.port_read(CONFIG_DATA_PORT, &mut b);
        u32::from_le_bytes(b)
    }

    /// 32-bit configuration write through ports 0xCF8/0xCFC.
    pub fn cfg_write32(&mut self, slot: u8, offset: u16, v: u32) {
        self.select(slot, offset);
        self.port_write(CONFIG_DATA_PORT, &v.to_le_bytes());
    }

    fn select(&mut self, slot: u8, offset: u16) {
        let addr = 0x8000_0000u32 | ((slot as u32) << 11) | (offset as u32 & 0xFC);
        self.port_write(CONFIG_ADDRESS_PORT, &addr.to_le_bytes());
    }

    // ----------------------------------------------------------------- interrupt control

    /// Program IOAPIC `pin` to send `vector` (what the HAL does when a line interrupt is
    /// connected). PCI INTx is level-triggered.
    pub fn ioapic_program(&mut self, pin: usize, vector: u8, level_triggered: bool) {
        let mut c = self.controllers.lock().unwrap();
        if let Some(v) = c.ioapic.program(pin, vector, level_triggered) {
            let dest = c.ioapic.entries[pin].destination;
            c.deliver(dest, v);
        }
    }

    /// Whether an IOAPIC pin is asserted right now.
    pub fn ioapic_level(&self, pin: usize) -> bool {
        self.controllers
            .lock()
            .unwrap()
            .ioapic
            .levels
            .get(pin)
            .copied()
            .unwrap_or(false)
    }

    /// The CPU takes the highest deliverable interrupt, if any: host-side backend input is
    /// polled first, the clock advances and the interrupt is recorded. Returns None when
    /// nothing is deliverable.
    pub fn take_interrupt(&mut self) -> Option<u8> {
        for (_, device) in self.pci.present_mut() {
            device.poll_backend();
        }
        // Every IRR empty (the usual state between interrupts): nothing to take, no lock.
        // The flag is only written under the controllers lock, and a device on this machine
        // delivers through that lock, so a vector latched before this point is seen here.
        if !self.requested.load(Ordering::Acquire) {
            return None;
        }
        let vector = {
            let mut c = self.controllers.lock().unwrap();
            let taken = c
                .lapics
                .iter_mut()
                .enumerate()
                .find_map(|(i, l)| l.acknowledge().map(|v| (i, v)));
            c.update_requested();
            let (cpu, vector) = taken?;
            c.in_service.push(cpu);
            vector
        };
        self.delivered += 1;
        self.clock.advance(INTERRUPT_NS);
        self.events.emit(EventKind::CpuInterrupt { vector });
        Some(vector)
    }

    /// End of interrupt for the vector in service; level pins still asserted re-deliver.
    pub fn eoi(&mut self) {
        let mut c = self.controllers.lock().unwrap();
        let Some(cpu) = c.in_service.pop() else {
            return;
        };
        if let Some(v) = c.lapics[cpu].eoi() {
            // The EOI is broadcast to the IOAPIC; every re-sent level interrupt goes to the
            // destination its redirection entry names.
            for again in c.ioapic.eoi(v) {
                let dest = c
                    .ioapic
                    .entries
                    .iter()
                    .find(|e| e.vector == again)
                    .map_or(0, |e| e.destination);
                c.deliver(dest, again);
            }
        }
    }
}

/// Run the CPU until no interrupt is deliverable and no DPC is queued, or until `budget`
/// interrupts were taken. ISRs run at their vector's priority and each is followed by an EOI;
/// DPCs run only once no interrupt is pending (DISPATCH_LEVEL is below every device IRQL).
/// The machine is borrowed only between OS calls, so the OS may use it from inside them.
pub fn run_cpu(machine: &RefCell<Machine>, os: &mut dyn GuestOs, budget: u64) -> CpuRun {
    let mut run = CpuRun::default();
    loop {
        let next = machine.borrow_mut().take_interrupt();
        if let Some(vector) = next {
            if run.interrupts >= budget {
                run.budget_exhausted = true;
                let mut m = machine.borrow_mut();
                m.events.emit(EventKind::InterruptBudgetExhausted {
                    delivered: run.interrupts,
                });
                m.eoi();
                break;
            }
            run.interrupts += 1;
            os.interrupt(vector);
            machine.borrow_mut().eoi();
            continue;
        }
        if os.run_dpcs() {
            run.dpc_rounds += 1;
            continue;
        }
        break;
    }
    run
}

#[cfg(test)]
mod tests {
    use super::*;
    use virq_device::TransportOptions;
    use virq_device::testing::NullBackend;

    fn machine_with_device() -> (Machine, u8) {
        let mut m = Machine::new(1 << 20).unwrap();
        let slot = m.next_slot();
        let dev = VirtioPciDevice::new(
            Box::new(NullBackend::new(2)),
            m.ram().clone(),
            m.interrupt_sink_for_slot(slot),
            TransportOptions::default(),
        )
        .unwrap();
        m.plug(dev).unwrap();
        m.firmware_assign_resources().unwrap();
        (m, slot)
    }

    #[test]
    fn mechanism_1_finds_host_bridge_and_device_and_nothing_else() {
        let (mut m, slot) = machine_with_device();
        assert_eq!(m.cfg_read32(0, 0), 0x1237_8086);
        assert_eq!(m.cfg_read32(slot, 0) & 0xFFFF, 0x1AF4);
        assert_eq!(m.cfg_read32(9, 0), 0xFFFF_FFFF);
    }

    #[test]
    fn a_surprise_removed_device_reads_all_ones() {
        let (mut m, slot) = machine_with_device();
        let bar0 = m.device(slot).unwrap().bar_address(0).unwrap();
        m.surprise_remove(slot);
        assert_eq!(m.cfg_read32(slot, 0), 0xFFFF_FFFF);
        let mut isr = [0u8; 1];
        m.mmio_read(bar0 + 0x2000, &mut isr);
        assert_eq!(isr, [0xFF]);
    }

    #[test]
    fn firmware_places_bars_aligned_and_enables_decoding() {
        let (mut m, slot) = machine_with_device();
        let bar0 = m.device(slot).unwrap().bar_address(0).unwrap();
        let bar2 = m.device(slot).unwrap().bar_address(2).unwrap();
        assert_eq!(bar0, MMIO_BASE);
        assert_eq!(bar2 % 0x10000, 0);
        assert!(bar2 >= bar0 + 0x4000);
        // msix_config through the BAR: 0xFFFF after power-on.
        let mut v = [0u8; 2];
        m.mmio_read(bar0 + 0x10, &mut v);
        assert_eq!(u16::from_le_bytes(v), 0xFFFF);
        assert_eq!(
            m.cfg_read32(slot, 0x3C) & 0xFF,
            Machine::intx_pin(slot) as u32
        );
    }
}

#[cfg(test)]
mod storm_tests {
    use super::*;
    use virq_device::TransportOptions;
    use virq_device::testing::NullBackend;

    /// An OS with one line ISR on IOAPIC pin `pin`; it reads ISR status only if told to.
    struct LineOs<'a> {
        machine: &'a RefCell<Machine>,
        isr_addr: u64,
        reads_isr_status: bool,
        isr_runs: u64,
    }

    impl GuestOs for LineOs<'_> {
        fn interrupt(&mut self, _vector: u8) {
            self.isr_runs += 1;
            if self.reads_isr_status {
                let mut b = [0u8; 1];
                self.machine.borrow_mut().mmio_read(self.isr_addr, &mut b);
            }
        }
        fn run_dpcs(&mut self) -> bool {
            false
        }
    }

    fn live_intx_machine() -> (RefCell<Machine>, u64) {
        let mut m = Machine::new(1 << 20).unwrap();
        let slot = m.next_slot();
        let dev = VirtioPciDevice::new(
            Box::new(NullBackend::new(1)),
            m.ram().clone(),
            m.interrupt_sink_for_slot(slot),
            TransportOptions::default(),
        )
        .unwrap();
        m.plug(dev).unwrap();
        m.firmware_assign_resources().unwrap();
        let bar0 = m.device(slot).unwrap().bar_address(0).unwrap();
        // ACKNOWLEDGE | DRIVER, VERSION_1, FEATURES_OK, DRIVER_OK.
        m.mmio_write(bar0 + 0x14, &[3]);
        m.mmio_write(bar0 + 0x08, &1u32.to_le_bytes());
        m.mmio_write(bar0 + 0x0C, &1u32.to_le_bytes());
        m.mmio_write(bar0 + 0x14, &[11]);
        m.mmio_write(bar0 + 0x14, &[15]);
        m.ioapic_program(Machine::intx_pin(slot), 0x71, true);
        m.device_mut(slot).unwrap().config_changed();
        (RefCell::new(m), bar0 + 0x2000)
    }

    #[test]
    fn intx_isr_without_isr_status_read_storms_until_the_budget() {
        let (m, isr_addr) = live_intx_machine();
        let mut os = LineOs {
            machine: &m,
            isr_addr,
            reads_isr_status: false,
            isr_runs: 0,
        };
        let run = run_cpu(&m, &mut os, 500);
        assert!(run.budget_exhausted);
        assert_eq!(os.isr_runs, 500);
        assert!(m.borrow().ioapic_level(Machine::intx_pin(1)));
    }

    #[test]
    fn intx_isr_that_reads_isr_status_runs_once_and_lowers_the_line() {
        let (m, isr_addr) = live_intx_machine();
        let mut os = LineOs {
            machine: &m,
            isr_addr,
            reads_isr_status: true,
            isr_runs: 0,
        };
        let run = run_cpu(&m, &mut os, 500);
        assert!(!run.budget_exhausted);
        assert_eq!(os.isr_runs, 1);
        assert!(!m.borrow().ioapic_level(Machine::intx_pin(1)));
    }
}
