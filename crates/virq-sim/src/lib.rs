//! A deterministic simulated PC for the interrupt chain.
//!
//! Guest RAM, a PCI bus reached through configuration mechanism #1 (ports 0xCF8/0xCFC) with a
//! host bridge at 00:00.0, firmware-style BAR assignment, one CPU with a local APIC, an IOAPIC
//! with level-triggered PCI pins, and a virtual clock. The guest OS model runs on it through
//! [`GuestOs`]: the machine takes interrupts, the OS runs its ISR at the vector's priority,
//! EOIs, then runs DPCs. Nothing depends on wall time, so the same inputs give the same
//! event log.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod apic;

use std::cell::RefCell;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use thiserror::Error;
use virq_device::pci_root::{HostBridge, PciRoot, PciRootError};
use virq_device::{InterruptSink, TransportOptions, VecMemory, VirtioBackend, VirtioPciDevice};
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
    /// Move the clock forward by `ns`, the fixed cost of an access or an interrupt.
    ///
    /// Only the machine moves its clock, from methods that hold it exclusively (`&mut`), so
    /// there is one writer at a time and a load and a store do what a locked `fetch_add`
    /// would, without the locked instruction on every access; logs on other threads still
    /// read it atomically.
    fn advance(&self, ns: u64) {
        let now = self.0.load(Ordering::Relaxed);
        self.0.store(now.wrapping_add(ns), Ordering::Relaxed);
    }
}

impl Clock for VirtualClock {
    fn now_ns(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }

    fn counter(&self) -> Option<Arc<AtomicU64>> {
        Some(self.0.clone())
    }
}

/// Costs charged to the virtual clock.
const CONFIG_ACCESS_NS: u64 = 200;
const MMIO_ACCESS_NS: u64 = 100;
const INTERRUPT_NS: u64 = 1_000;

/// Vectors devices have sent to one local APIC that its CPU has not yet latched into IRR:
/// a bit per vector, set with one atomic OR (like a posted-interrupt descriptor), so an MSI
/// takes no lock and the CPU finds "nothing sent" with four loads.
#[derive(Debug, Default)]
struct Posted([AtomicU64; 4]);

impl Posted {
    fn post(&self, vector: u8) {
        // Release: what the device wrote before its message (the used ring) is visible to
        // the CPU that takes the vector.
        self.0[usize::from(vector / 64)].fetch_or(1 << (vector % 64), Ordering::Release);
    }

    /// Whether any vector is posted and not latched yet: four loads and no write.
    #[inline(always)]
    fn any(&self) -> bool {
        let [w0, w1, w2, w3] = &self.0;
        w0.load(Ordering::Relaxed)
            | w1.load(Ordering::Relaxed)
            | w2.load(Ordering::Relaxed)
            | w3.load(Ordering::Relaxed)
            != 0
    }

    /// Move every posted vector into `lapic`'s IRR.
    #[inline]
    fn latch_into(&self, lapic: &mut LocalApic) {
        // Nothing posted, the common case when the CPU looks: four loads and one branch.
        if !self.any() {
            return;
        }
        for (w, word) in self.0.iter().enumerate() {
            if word.load(Ordering::Relaxed) == 0 {
                continue;
            }
            lapic.accept_word(w, word.swap(0, Ordering::Acquire));
        }
    }
}

/// Interrupt controller state shared between the machine and device sinks. The local APICs
/// themselves (IRR, ISR, what is in service) belong to the CPU side, [`Machine`]; devices only
/// post to them.
#[derive(Debug)]
struct Controllers {
    /// Per local APIC (APIC ID = index).
    posted: Box<[Posted]>,
    /// Level-triggered lines and their redirection entries.
    ioapic: Mutex<IoApic>,
    /// Whether some IOAPIC entry has remote IRR set, so an EOI of an edge-triggered vector
    /// (every MSI) skips the IOAPIC. Written under the `ioapic` lock.
    remote_irr: AtomicBool,
    /// MSI writes that did not decode as an interrupt (a bad table entry).
    stray_msi: AtomicU64,
}

/// The sink a device on this machine sends interrupts to.
#[derive(Debug)]
pub struct DeviceInterrupts {
    controllers: Arc<Controllers>,
    pin: usize,
}

impl Controllers {
    fn new(cpus: usize) -> Self {
        Controllers {
            posted: (0..cpus).map(|_| Posted::default()).collect(),
            ioapic: Mutex::new(IoApic::default()),
            remote_irr: AtomicBool::new(false),
            stray_msi: AtomicU64::new(0),
        }
    }

    /// Physical destination mode: APIC ID `dest`, or 0xFF for broadcast (taken by CPU 0).
    /// False when no local APIC accepts it (no such ID, or an illegal vector).
    fn deliver(&self, dest: u8, vector: u8) -> bool {
        let cpu = if dest == 0xFF { 0 } else { usize::from(dest) };
        match self.posted.get(cpu) {
            Some(p) if LocalApic::accepts(vector) => {
                p.post(vector);
                true
            }
            _ => false,
        }
    }

    /// Run `f` on the locked IOAPIC, then republish [`Controllers::remote_irr`]. Vectors `f`
    /// returns are sent by the caller after this, so a CPU that takes one sees the flag.
    fn with_ioapic<R>(&self, f: impl FnOnce(&mut IoApic) -> R) -> R {
        let mut io = self.ioapic.lock().unwrap_or_else(|e| e.into_inner());
        let r = f(&mut io);
        let any = io.entries.iter().any(|e| e.remote_irr);
        self.remote_irr.store(any, Ordering::Release);
        r
    }
}

impl InterruptSink for DeviceInterrupts {
    fn msi(&self, address: u64, data: u32) {
        let ok = match decode_msi(address, data) {
            Some(m) if m.delivery_mode <= 1 => self.controllers.deliver(m.destination, m.vector),
            _ => false,
        };
        if !ok {
            self.controllers.stray_msi.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn set_intx(&self, level: bool) {
        let pin = self.pin;
        let sent = self.controllers.with_ioapic(|io| {
            io.set_level(pin, level)
                .map(|v| (io.entries[pin].destination, v))
        });
        if let Some((dest, v)) = sent {
            self.controllers.deliver(dest, v);
        }
    }
}

/// Errors from machine construction.
#[derive(Debug, Error)]
pub enum MachineError {
    /// The requested guest RAM size does not fit in this host's `usize`.
    #[error("guest RAM of {0} bytes could not be mapped")]
    Ram(u64),
    /// Device numbers 1-31 of bus 0 are all taken (0 is the host bridge).
    #[error("no free PCI slot")]
    BusFull,
    /// A device's BARs do not fit in the window below the IOAPIC.
    #[error("BAR space exhausted: {0}")]
    BarSpace(#[source] PciRootError),
    /// The device refused its construction options ([`Machine::plug_backend`]).
    #[error("the device could not be built: {0}")]
    Device(#[from] virq_device::DeviceError),
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
    /// Interrupts taken (each ran the OS's ISRs and was EOI'd).
    pub interrupts: u64,
    /// Times the OS ran queued DPCs with no interrupt pending.
    pub dpc_rounds: u64,
    /// True when the interrupt budget ran out (a storm).
    pub budget_exhausted: bool,
}

/// The simulated PC.
pub struct Machine {
    ram: VecMemory,
    /// Mechanism #1, the host bridge, the devices and their BARs.
    pci: PciRoot,
    controllers: Arc<Controllers>,
    /// One local APIC per CPU, APIC ID = index. The CPUs take interrupts one at a time (the
    /// simulation is serial), which is all the interrupt chain needs.
    lapics: Vec<LocalApic>,
    /// CPUs with an interrupt in service, innermost last, so EOI goes to the right LAPIC.
    in_service: Vec<usize>,
    clock: VirtualClock,
    events: Arc<EventLog>,
    next_mmio: u64,
    /// Interrupts delivered over the machine's life.
    delivered: u64,
    /// Some local APIC has a vector in IRR (latched but not taken, e.g. held back by the
    /// priority of one in service). IRR changes only in [`Machine::take_requested`], which
    /// brings this up to date.
    requested: bool,
    /// Bumped by everything that can move, hide or re-point a BAR: configuration writes (by
    /// port or direct), plugging, firmware assignment, surprise removal, and handing a device
    /// out mutably. A driver adapter that resolved a BAR address may keep it while this stays.
    decode_epoch: u64,
    /// Some plugged device's backend takes host-side input
    /// ([`VirtioBackend::takes_host_input`](virq_device::VirtioBackend::takes_host_input),
    /// asked once when it is plugged, as the device asks it once when it is built): only then
    /// does the CPU poll backends each time it looks for an interrupt.
    polls_backends: bool,
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
        let cpus = cpus.max(1);
        Ok(Machine {
            ram,
            pci: PciRoot::new(HostBridge::I440FX),
            controllers: Arc::new(Controllers::new(cpus)),
            lapics: (0..cpus).map(|id| LocalApic::new(id as u8)).collect(),
            in_service: Vec::new(),
            clock,
            events,
            next_mmio: MMIO_BASE,
            delivered: 0,
            requested: false,
            decode_epoch: 0,
            polls_backends: false,
        })
    }

    /// Guest RAM at guest-physical 0, shared with every device on the machine.
    pub fn ram(&self) -> &VecMemory {
        &self.ram
    }

    /// The machine's event log: the devices', the CPU's and the OS's events, in one order.
    pub fn events(&self) -> Arc<EventLog> {
        self.events.clone()
    }

    /// The virtual clock that stamps the log.
    pub fn clock(&self) -> &VirtualClock {
        &self.clock
    }

    /// Interrupts delivered to the CPU since the machine was built.
    pub fn interrupts_delivered(&self) -> u64 {
        self.delivered
    }

    /// MSI writes that did not decode to this CPU.
    pub fn stray_msi(&self) -> u64 {
        self.controllers.stray_msi.load(Ordering::Relaxed)
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
        let polls = device.backend().takes_host_input();
        let slot = self.pci.plug(device)?;
        self.decode_epoch += 1;
        self.polls_backends |= polls;
        Ok(slot)
    }

    /// Build a virtio-pci device of type `backend` over this machine's RAM, wired to the
    /// next slot's interrupt routes, and plug it in: what a platform does for each device it
    /// offers. Returns the slot.
    pub fn plug_backend(
        &mut self,
        backend: Box<dyn VirtioBackend>,
        options: TransportOptions,
    ) -> Result<u8, MachineError> {
        let slot = self.next_slot();
        let device = VirtioPciDevice::new(
            backend,
            self.ram().clone(),
            self.interrupt_sink_for_slot(slot),
            options,
        )?;
        self.plug(device)
    }

    /// The next free slot number (32 when the bus is full).
    pub fn next_slot(&self) -> u8 {
        self.pci.next_slot().unwrap_or(32)
    }

    /// The device plugged in `slot`, if any; a surprise-removed device stays reachable here so
    /// its state can still be inspected.
    pub fn device(&self, slot: u8) -> Option<&VirtioPciDevice> {
        self.pci.device(slot)
    }

    /// The device plugged in `slot`, for host-side actions (config changes, faults).
    pub fn device_mut(&mut self, slot: u8) -> Option<&mut VirtioPciDevice> {
        self.decode_epoch += 1;
        self.pci.device_mut(slot)
    }

    /// Changes whenever a BAR may have moved or stopped decoding (see
    /// [`Machine::bar_address`]); equal values mean every BAR address resolved in between
    /// still holds.
    #[inline]
    pub fn decode_epoch(&self) -> u64 {
        self.decode_epoch
    }

    /// Where BAR `bar` of the function in `slot` decodes now, if it exists.
    pub fn bar_address(&self, slot: u8, bar: u8) -> Option<u64> {
        self.pci.device(slot)?.bar_address(bar)
    }

    /// Pull the device in `slot` out of the bus without warning (catalogue row 12): from now
    /// on its configuration space and BARs read all ones and its INTx pin is released. An
    /// interrupt the CPU already latched is still delivered, as on hardware.
    pub fn surprise_remove(&mut self, slot: u8) {
        self.decode_epoch += 1;
        if self.pci.surprise_remove(slot) {
            let pin = Self::intx_pin(slot);
            // Lowering a line sends nothing.
            let _ = self.controllers.with_ioapic(|io| io.set_level(pin, false));
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
        self.decode_epoch += 1;
        self.pci.port_write(port, data);
    }

    /// A configuration read addressed by bus/device/function (what mechanism #1 resolves to).
    /// Absent functions read all ones.
    pub fn config_read(&mut self, bus: u8, dev: u8, func: u8, offset: u16, data: &mut [u8]) {
        self.pci.config_read(bus, dev, func, offset, data);
    }

    /// A configuration write addressed by bus/device/function; writes to absent functions are
    /// dropped.
    pub fn config_write(&mut self, bus: u8, dev: u8, func: u8, offset: u16, data: &[u8]) {
        self.decode_epoch += 1;
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
        self.decode_epoch += 1;
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
        let sent = self.controllers.with_ioapic(|io| {
            io.program(pin, vector, level_triggered)
                .map(|v| (io.entries[pin].destination, v))
        });
        if let Some((dest, v)) = sent {
            self.controllers.deliver(dest, v);
        }
    }

    /// Whether an IOAPIC pin is asserted right now.
    pub fn ioapic_level(&self, pin: usize) -> bool {
        self.controllers
            .with_ioapic(|io| io.levels.get(pin).copied().unwrap_or(false))
    }

    /// The CPU takes the highest deliverable interrupt, if any: host-side backend input is
    /// polled first, the clock advances and the interrupt is recorded. Returns None when
    /// nothing is deliverable.
    ///
    /// Most looks find nothing (the CPU looks again after every EOI and every DPC round), so
    /// that answer is inline and takes a few loads; taking an interrupt is out of line.
    #[inline]
    pub fn take_interrupt(&mut self) -> Option<u8> {
        if self.polls_backends {
            self.poll_backends();
        }
        if !self.any_requested() {
            return None;
        }
        self.take_requested()
    }

    /// Serve host-side input waiting at every present device's backend.
    fn poll_backends(&mut self) {
        for (_, device) in self.pci.present_mut() {
            device.poll_backend();
        }
    }

    /// Whether some CPU has a vector posted or requested (deliverable now or not): plain
    /// loads, four per CPU. (A machine-wide "something was posted" flag would make this one
    /// load, but clearing it safely against concurrent posts takes a locked instruction on
    /// every interrupt taken, which costs more time than the loads.)
    #[inline(always)]
    fn any_requested(&self) -> bool {
        self.requested || self.controllers.posted.iter().any(Posted::any)
    }

    /// [`Machine::take_interrupt`] once something is posted or requested.
    fn take_requested(&mut self) -> Option<u8> {
        // Every posted vector joins IRR; the first CPU with a deliverable vector acknowledges
        // it (IRR -> ISR).
        let mut taken = None;
        let mut requested = false;
        let posted = &self.controllers.posted;
        for (cpu, (lapic, posted)) in self.lapics.iter_mut().zip(posted.iter()).enumerate() {
            posted.latch_into(lapic);
            if taken.is_none() && lapic.has_requests() {
                taken = lapic.acknowledge().map(|v| (cpu, v));
            }
            requested |= lapic.has_requests();
        }
        self.requested = requested;
        let (cpu, vector) = taken?;
        self.in_service.push(cpu);
        self.delivered += 1;
        self.clock.advance(INTERRUPT_NS);
        self.events.emit(EventKind::CpuInterrupt { vector });
        Some(vector)
    }

    /// End of interrupt for the vector in service; level pins still asserted re-deliver.
    #[inline]
    pub fn eoi(&mut self) {
        let Some(cpu) = self.in_service.pop() else {
            return;
        };
        let Some(v) = self.lapics[cpu].eoi() else {
            return;
        };
        // The EOI is broadcast to the IOAPIC, where only an entry with remote IRR set can
        // act on it: none, for the edge-triggered vectors every MSI uses.
        if self.controllers.remote_irr.load(Ordering::Acquire) {
            self.ioapic_eoi(v);
        }
    }

    /// The IOAPIC's part of an EOI of `v`: every re-sent level interrupt goes to the
    /// destination its redirection entry names.
    #[cold]
    fn ioapic_eoi(&mut self, v: u8) {
        let again: Vec<(u8, u8)> = self.controllers.with_ioapic(|io| {
            io.eoi(v)
                .into_iter()
                .map(|again| {
                    let dest = io
                        .entries
                        .iter()
                        .find(|e| e.vector == again)
                        .map_or(0, |e| e.destination);
                    (dest, again)
                })
                .collect()
        });
        for (dest, vector) in again {
            self.controllers.deliver(dest, vector);
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
    use virq_device::testing::{NullBackend, TestBackend};

    fn machine_with_device() -> (Machine, u8) {
        let mut m = Machine::new(1 << 20).unwrap();
        let slot = m
            .plug_backend(Box::new(NullBackend::new(2)), TransportOptions::default())
            .unwrap();
        m.firmware_assign_resources().unwrap();
        (m, slot)
    }

    #[test]
    fn plug_backend_wires_the_slot_and_refuses_a_device_that_cannot_be_built() {
        let mut m = Machine::new(1 << 20).unwrap();
        let slot = m
            .plug_backend(Box::new(NullBackend::new(1)), TransportOptions::default())
            .unwrap();
        assert_eq!(m.cfg_read32(slot, 0) & 0xFFFF, 0x1AF4);
        assert_eq!(m.next_slot(), slot + 1);
        let refused = m.plug_backend(Box::new(NullBackend::new(0)), TransportOptions::default());
        assert!(
            matches!(
                refused,
                Err(MachineError::Device(virq_device::DeviceError::NoQueues))
            ),
            "{refused:?}"
        );
        assert_eq!(m.next_slot(), slot + 1, "nothing plugged");
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

    /// An MSI address for APIC ID `dest`, physical mode (Intel SDM vol. 3, 11.11.1).
    fn msi_to(dest: u8) -> u64 {
        apic::MSI_ADDRESS_BASE | u64::from(dest) << 12
    }

    #[test]
    fn an_msi_reaches_the_apic_it_names_and_the_cpu_takes_it_by_priority() {
        let mut m = Machine::with_cpus(1 << 20, 2).unwrap();
        let sink = m.interrupt_sink_for_slot(m.next_slot());
        sink.msi(msi_to(1), 0x61);
        sink.msi(msi_to(0), 0x51);
        sink.msi(msi_to(0), 0x81);
        // CPU 0 first, highest class first; then CPU 1's vector.
        assert_eq!(m.take_interrupt(), Some(0x81));
        m.eoi();
        assert_eq!(m.take_interrupt(), Some(0x51));
        m.eoi();
        assert_eq!(m.take_interrupt(), Some(0x61));
        m.eoi();
        assert_eq!(m.take_interrupt(), None);
        assert_eq!(m.interrupts_delivered(), 3);
        assert_eq!(m.stray_msi(), 0);
        let taken: Vec<_> = m.events().snapshot().into_iter().map(|e| e.kind).collect();
        assert_eq!(
            taken,
            [0x81, 0x51, 0x61].map(|vector| EventKind::CpuInterrupt { vector })
        );
    }

    #[test]
    fn a_vector_sent_twice_before_the_cpu_looks_is_one_request() {
        // IRR holds one bit per vector: a second message on a requested vector merges.
        let mut m = Machine::new(1 << 20).unwrap();
        let sink = m.interrupt_sink_for_slot(m.next_slot());
        sink.msi(msi_to(0), 0x41);
        sink.msi(msi_to(0), 0x41);
        assert_eq!(m.take_interrupt(), Some(0x41));
        m.eoi();
        assert_eq!(m.take_interrupt(), None);
        // Sent again after the CPU took it: a new request.
        sink.msi(msi_to(0), 0x41);
        assert_eq!(m.take_interrupt(), Some(0x41));
    }

    #[test]
    fn messages_no_apic_accepts_are_counted_as_stray_and_never_taken() {
        let mut m = Machine::with_cpus(1 << 20, 2).unwrap();
        let sink = m.interrupt_sink_for_slot(m.next_slot());
        sink.msi(msi_to(0), 0x0F); // vectors 0-15: illegal for fixed delivery
        sink.msi(msi_to(7), 0x41); // no APIC ID 7
        sink.msi(0x1000, 0x41); // not the MSI window
        sink.msi(msi_to(0), 0x41 | 3 << 8); // delivery mode 3 (reserved)
        assert_eq!(m.stray_msi(), 4);
        assert_eq!(m.take_interrupt(), None);
        // Broadcast goes to CPU 0.
        sink.msi(msi_to(0xFF), 0x42);
        assert_eq!(m.take_interrupt(), Some(0x42));
        assert_eq!(m.stray_msi(), 4);
    }

    #[test]
    fn a_vector_held_back_by_priority_is_taken_after_the_eoi() {
        // Intel SDM vol. 3, 11.8.3: a request whose priority class is not above the one in
        // service waits in IRR; it is not lost when the CPU finds nothing deliverable.
        let mut m = Machine::new(1 << 20).unwrap();
        let sink = m.interrupt_sink_for_slot(m.next_slot());
        sink.msi(msi_to(0), 0x61);
        assert_eq!(m.take_interrupt(), Some(0x61));
        sink.msi(msi_to(0), 0x62);
        assert_eq!(m.take_interrupt(), None, "same class as the one in service");
        assert_eq!(m.take_interrupt(), None, "still held, nothing new posted");
        m.eoi();
        assert_eq!(m.take_interrupt(), Some(0x62));
        m.eoi();
        assert_eq!(m.take_interrupt(), None);
        assert_eq!(m.interrupts_delivered(), 2);
    }

    #[test]
    fn backends_are_polled_at_every_look_only_when_they_take_host_input() {
        for host_input in [true, false] {
            let mut m = Machine::new(1 << 20).unwrap();
            let mut backend = TestBackend::new(2, 0x1042, 0, 256);
            backend.host_input = host_input;
            let asked = backend.input_asks.clone();
            m.plug_backend(Box::new(backend), TransportOptions::default())
                .unwrap();
            for _ in 0..3 {
                assert_eq!(m.take_interrupt(), None);
            }
            // Two queues asked at each of the three looks, or never.
            let expected = if host_input { 6 } else { 0 };
            assert_eq!(asked.load(Ordering::Relaxed), expected, "{host_input}");
        }
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
        let slot = m
            .plug_backend(Box::new(NullBackend::new(1)), TransportOptions::default())
            .unwrap();
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
