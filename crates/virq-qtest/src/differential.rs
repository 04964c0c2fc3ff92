//! The same interrupt-relevant access sequences against QEMU's device and virq's: vector
//! read-back (in range, at and past the table size, absent queue, after reset), MSI-X entry
//! and function masks with the PBA, INTx with ISR read-to-clear, PCI Status bit 3 and
//! Interrupt Disable. Every observation is a named value; any difference not listed in
//! [`DELIBERATE`] with its spec section fails.

use std::collections::BTreeMap;

use virq_guest::common_cfg::offset;
use virq_guest::{MsixCap, RegisterAccess, VirtioPciCaps, Width};

use crate::host::{Host, HostConfig, HostError, MAILBOX, MSG_DATA, Shared, TargetRegs};
use crate::pc::{COMMAND, COMMAND_INTX_DISABLE, STATUS, STATUS_INTERRUPT};
use crate::scenarios::Side;
use crate::target::{DeviceKind, DeviceSpec};

/// A difference virq makes on purpose: the observation, what each side shows, and why.
pub struct Deliberate {
    /// The observation's key (`vectors/absent-queue-2/queue_msix_vector`).
    pub key: &'static str,
    /// The spec section that allows both behaviours.
    pub section: &'static str,
    /// Why virq behaves as it does.
    pub reason: &'static str,
}

/// Every difference between QEMU 7.2 and virq that is a choice, not a bug.
pub const DELIBERATE: &[Deliberate] = &[
    Deliberate {
        key: "vectors/absent-queue-2/queue_msix_vector",
        section: "virtio 1.2, 4.1.4.3 (queue_size 0: queue unavailable)",
        reason: "virq stores nothing for a queue_select past num_queues and reads back NO_VECTOR, so a driver's read-back shows the refusal; QEMU keeps the vector for any of its 1024 queue slots",
    },
    Deliberate {
        key: "msix/config-change-entry-masked/isr",
        section: "virtio 1.2, 4.1.4.5.1",
        reason: "a configuration change sets only ISR bit 1 on virq; QEMU also sets bit 0 (queue), which the spec requires only for virtqueue notifications with MSI-X disabled",
    },
    Deliberate {
        key: "msix/config-change-function-masked/isr",
        section: "virtio 1.2, 4.1.4.5.1",
        reason: "as above: virq reports exactly the cause of the interrupt",
    },
    Deliberate {
        key: "intx/config-change/isr-read",
        section: "virtio 1.2, 4.1.4.5 (ISR bit 1: configuration change)",
        reason: "with INTx a configuration change reads 0x02 on virq (the cause) and 0x03 on QEMU; 0x03 makes a driver drain every queue for nothing",
    },
    Deliberate {
        key: "intx/interrupt-disable/isr-read",
        section: "virtio 1.2, 4.1.4.5 (ISR bit 1: configuration change)",
        reason: "as above, for the configuration change raised while Interrupt Disable was set",
    },
];

/// Observations of one side, by name, in a stable order.
pub type Observations = BTreeMap<String, u64>;

struct Probe {
    t: Shared,
    regs: TargetRegs,
    caps: VirtioPciCaps,
    obs: Observations,
    section: &'static str,
}

impl Probe {
    fn new(host_t: Shared) -> Result<Probe, HostError> {
        let mut regs = TargetRegs::new(host_t.clone());
        let caps = VirtioPciCaps::parse(&mut regs)?;
        Ok(Probe {
            t: host_t,
            regs,
            caps,
            obs: Observations::new(),
            section: "",
        })
    }
    fn note(&mut self, name: &str, value: u64) {
        self.obs.insert(format!("{}/{name}", self.section), value);
    }
    fn cc_read16(&mut self, off: u64) -> u16 {
        let c = self.caps.common;
        self.regs
            .bar_read(c.bar, u64::from(c.offset) + off, Width::U16) as u16
    }
    fn cc_write16(&mut self, off: u64, v: u16) {
        let c = self.caps.common;
        self.regs
            .bar_write(c.bar, u64::from(c.offset) + off, Width::U16, u64::from(v));
    }
    fn cc_write8(&mut self, off: u64, v: u8) {
        let c = self.caps.common;
        self.regs
            .bar_write(c.bar, u64::from(c.offset) + off, Width::U8, u64::from(v));
    }
    fn cc_read8(&mut self, off: u64) -> u8 {
        let c = self.caps.common;
        self.regs
            .bar_read(c.bar, u64::from(c.offset) + off, Width::U8) as u8
    }
    fn isr_read(&mut self) -> u8 {
        let i = self.caps.isr;
        self.regs.bar_read(i.bar, u64::from(i.offset), Width::U8) as u8
    }
    fn msix(&self) -> Result<MsixCap, HostError> {
        self.caps
            .msix
            .ok_or_else(|| HostError::Check("no MSI-X capability".into()))
    }
    fn table_entry(&self, entry: u16) -> Result<(u8, u64), HostError> {
        let m = self.msix()?;
        Ok((
            m.table_bir,
            u64::from(m.table_offset) + 16 * u64::from(entry),
        ))
    }
    fn set_entry_mask(&mut self, entry: u16, masked: bool) -> Result<(), HostError> {
        let (bar, at) = self.table_entry(entry)?;
        self.regs
            .bar_write(bar, at + 12, Width::U32, u64::from(masked));
        Ok(())
    }
    fn pba(&mut self) -> Result<u64, HostError> {
        let m = self.msix()?;
        Ok(self
            .regs
            .bar_read(m.pba_bir, u64::from(m.pba_offset), Width::U64))
    }
    fn control(&mut self) -> Result<u16, HostError> {
        let m = self.msix()?;
        Ok(m.read_control(&mut self.regs))
    }
    fn set_function_mask(&mut self, masked: bool) -> Result<(), HostError> {
        let m = self.msix()?;
        let c = m.read_control(&mut self.regs);
        let c = if masked {
            c | MsixCap::FUNCTION_MASK
        } else {
            c & !MsixCap::FUNCTION_MASK
        };
        self.regs
            .config_write(u16::from(m.cap_at) + 2, Width::U16, u32::from(c));
        Ok(())
    }
    /// Take message `m` from its mailbox: 1 if it arrived (and clear it), 0 if not.
    fn message(&mut self, m: u16) -> Result<u64, HostError> {
        let at = MAILBOX + 4 * u64::from(m);
        let mut t = self.t.borrow_mut();
        let got = t.pc.mem_read(at, 4)?;
        t.pc.mem_write(at, 4, 0)?;
        Ok(u64::from(got == u64::from(MSG_DATA | u32::from(m))))
    }
    fn line(&mut self) -> Result<u64, HostError> {
        let mut t = self.t.borrow_mut();
        t.pc.wire.request("endianness")?;
        Ok(u64::from(t.pc.wire.level(t.intx_irq)))
    }
    fn status_bit3(&mut self) -> u64 {
        u64::from(self.regs.config_read(STATUS, Width::U16) as u16 & STATUS_INTERRUPT != 0)
    }
    fn config_change(&mut self, n: &mut u64) -> Result<(), HostError> {
        *n += 1;
        let size = crate::target::DISK_BYTES * (1 + *n);
        self.t.borrow_mut().config_change(size)?;
        Ok(())
    }
}

fn spec() -> DeviceSpec {
    DeviceSpec::new(DeviceKind::Blk, 2, 3)
}

/// Vector read-back on a fresh function (MSI-X off, then on) and after a reset.
fn vectors(side: Side, obs: &mut Observations) -> Result<(), HostError> {
    let t: Shared = std::rc::Rc::new(std::cell::RefCell::new(side.target(spec())?));
    let mut p = Probe::new(t)?;
    p.section = "vectors";
    let table = p.msix()?.table_size;
    p.note("table-size", u64::from(table));
    let v = u64::from(p.cc_read16(offset::MSIX_CONFIG));
    p.note("power-on/msix_config", v);
    p.cc_write16(offset::QUEUE_SELECT, 0);
    let v = u64::from(p.cc_read16(offset::QUEUE_MSIX_VECTOR));
    p.note("power-on/queue0", v);
    for enabled in [false, true] {
        if enabled {
            let m = p.msix()?;
            m.set_enabled(&mut p.regs, true);
        }
        let tag = if enabled { "msix-on" } else { "msix-off" };
        for v in [0u16, table - 1, table, table + 1, 0x7FF, 0x1234, 0xFFFF] {
            p.cc_write16(offset::MSIX_CONFIG, v);
            let r = p.cc_read16(offset::MSIX_CONFIG);
            p.note(&format!("{tag}/msix_config-write-{v:#x}"), u64::from(r));
            p.cc_write16(offset::QUEUE_SELECT, 1);
            p.cc_write16(offset::QUEUE_MSIX_VECTOR, v);
            let r = p.cc_read16(offset::QUEUE_MSIX_VECTOR);
            p.note(&format!("{tag}/queue1-write-{v:#x}"), u64::from(r));
        }
    }
    p.cc_write16(offset::QUEUE_SELECT, 2);
    p.cc_write16(offset::QUEUE_MSIX_VECTOR, 1);
    let r = p.cc_read16(offset::QUEUE_MSIX_VECTOR);
    p.section = "vectors/absent-queue-2";
    p.note("queue_msix_vector", u64::from(r));
    p.section = "vectors";
    p.cc_write16(offset::MSIX_CONFIG, 1);
    p.cc_write16(offset::QUEUE_SELECT, 0);
    p.cc_write16(offset::QUEUE_MSIX_VECTOR, 2);
    p.cc_write8(offset::DEVICE_STATUS, 0);
    let v = u64::from(p.cc_read8(offset::DEVICE_STATUS));
    p.note("after-reset/device_status", v);
    let v = u64::from(p.cc_read16(offset::MSIX_CONFIG));
    p.note("after-reset/msix_config", v);
    for q in 0..2u16 {
        p.cc_write16(offset::QUEUE_SELECT, q);
        let v = u64::from(p.cc_read16(offset::QUEUE_MSIX_VECTOR));
        p.note(&format!("after-reset/queue{q}"), v);
    }
    let v = u64::from(p.control()? >> 15);
    p.note("after-reset/msix-enable-kept", v);
    obs.append(&mut p.obs);
    Ok(())
}

/// Entry mask and function mask with the PBA, around configuration changes on message 0.
fn masks(side: Side, obs: &mut Observations) -> Result<(), HostError> {
    let h = Host::start(
        side.target(spec())?,
        &HostConfig {
            queues: 2,
            messages: 3,
            policy: virq_guest::VectorPolicy::Checklist,
            event_idx: true,
        },
    )?;
    let mut p = Probe::new(h.t.clone())?;
    let mut n = 0;
    p.section = "msix/config-change-unmasked";
    p.config_change(&mut n)?;
    let v = p.message(0)?;
    p.note("message0", v);
    let v = p.pba()?;
    p.note("pba", v);
    p.isr_read();

    p.section = "msix/config-change-entry-masked";
    p.set_entry_mask(0, true)?;
    p.config_change(&mut n)?;
    let v = p.message(0)?;
    p.note("message0", v);
    let v = p.pba()?;
    p.note("pba", v);
    let v = u64::from(p.isr_read());
    p.note("isr", v);
    let v = p.line()?;
    p.note("line", v);
    p.set_entry_mask(0, false)?;
    let v = p.message(0)?;
    p.note("unmask/message0", v);
    let v = p.pba()?;
    p.note("unmask/pba", v);

    p.section = "msix/config-change-function-masked";
    p.set_function_mask(true)?;
    p.config_change(&mut n)?;
    let v = p.message(0)?;
    p.note("message0", v);
    let v = p.pba()?;
    p.note("pba", v);
    let v = u64::from(p.isr_read());
    p.note("isr", v);
    p.set_function_mask(false)?;
    let v = p.message(0)?;
    p.note("unmask/message0", v);
    let v = p.pba()?;
    p.note("unmask/pba", v);

    p.section = "msix/pba-read-only";
    let m = p.msix()?;
    p.regs
        .bar_write(m.pba_bir, u64::from(m.pba_offset), Width::U64, u64::MAX);
    let v = p.pba()?;
    p.note("pba", v);
    obs.append(&mut p.obs);
    drop(h);
    Ok(())
}

/// INTx: line, Status bit 3, ISR read-to-clear, Interrupt Disable, a queue completion.
fn intx(side: Side, obs: &mut Observations) -> Result<(), HostError> {
    let mut h = Host::start(
        side.target(spec())?,
        &HostConfig {
            queues: 2,
            messages: 0,
            policy: virq_guest::VectorPolicy::Checklist,
            event_idx: true,
        },
    )?;
    let mut p = Probe::new(h.t.clone())?;
    let mut n = 0;
    p.section = "intx/idle";
    let v = p.line()?;
    p.note("line", v);
    let v = p.status_bit3();
    p.note("status-bit3", v);

    p.section = "intx/config-change";
    p.config_change(&mut n)?;
    let v = p.line()?;
    p.note("line", v);
    let v = p.status_bit3();
    p.note("status-bit3", v);
    let v = u64::from(p.isr_read());
    p.note("isr-read", v);
    let v = p.line()?;
    p.note("after-read/line", v);
    let v = p.status_bit3();
    p.note("after-read/status-bit3", v);
    let v = u64::from(p.isr_read());
    p.note("after-read/isr-read-again", v);

    p.section = "intx/interrupt-disable";
    let cmd = p.regs.config_read(COMMAND, Width::U16) as u16;
    p.regs
        .config_write(COMMAND, Width::U16, u32::from(cmd | COMMAND_INTX_DISABLE));
    p.config_change(&mut n)?;
    let v = p.line()?;
    p.note("line", v);
    let v = p.status_bit3();
    p.note("status-bit3", v);
    p.regs
        .config_write(COMMAND, Width::U16, u32::from(cmd & !COMMAND_INTX_DISABLE));
    let v = p.line()?;
    p.note("enabled-again/line", v);
    let v = u64::from(p.isr_read());
    p.note("isr-read", v);
    let v = p.line()?;
    p.note("after-read/line", v);

    p.section = "intx/queue-completion";
    h.blk_read(0, 7, 1)?;
    h.wait_used_idx(0, 1)?;
    let v = p.line()?;
    p.note("line", v);
    let v = p.status_bit3();
    p.note("status-bit3", v);
    let v = u64::from(p.isr_read());
    p.note("isr-read", v);
    let v = p.line()?;
    p.note("after-read/line", v);

    p.section = "intx/reset-with-line-high";
    h.blk_read(1, 8, 2)?;
    h.wait_used_idx(1, 1)?;
    let v = p.line()?;
    p.note("line", v);
    p.cc_write8(offset::DEVICE_STATUS, 0);
    let v = p.line()?;
    p.note("after-reset/line", v);
    let v = u64::from(p.isr_read());
    p.note("after-reset/isr-read", v);
    obs.append(&mut p.obs);
    Ok(())
}

/// Run every sequence on `side`.
pub fn observe(side: Side) -> Result<Observations, HostError> {
    let mut obs = Observations::new();
    vectors(side, &mut obs)?;
    masks(side, &mut obs)?;
    intx(side, &mut obs)?;
    Ok(obs)
}

/// The comparison of QEMU's observations with virq's.
pub struct Comparison {
    /// Observations both sides made alike.
    pub same: usize,
    /// (key, qemu, virq, the listed reason).
    pub deliberate: Vec<(String, u64, u64, &'static Deliberate)>,
    /// (key, qemu, virq): differences nobody explained.
    pub unexplained: Vec<(String, Option<u64>, Option<u64>)>,
    /// Listed differences that did not occur (the list must stay true).
    pub stale: Vec<&'static str>,
}

/// Compare every observation of QEMU with virq's, sorting differences into deliberate (listed
/// in [`DELIBERATE`]), unexplained and stale entries of the list.
pub fn compare(qemu: &Observations, virq: &Observations) -> Comparison {
    let mut c = Comparison {
        same: 0,
        deliberate: Vec::new(),
        unexplained: Vec::new(),
        stale: Vec::new(),
    };
    let keys: std::collections::BTreeSet<&String> = qemu.keys().chain(virq.keys()).collect();
    for k in keys {
        match (qemu.get(k), virq.get(k)) {
            (Some(a), Some(b)) if a == b => c.same += 1,
            (Some(a), Some(b)) => match DELIBERATE.iter().find(|d| d.key == k) {
                Some(d) => c.deliberate.push((k.clone(), *a, *b, d)),
                None => c.unexplained.push((k.clone(), Some(*a), Some(*b))),
            },
            (a, b) => c.unexplained.push((k.clone(), a.copied(), b.copied())),
        }
    }
    for d in DELIBERATE {
        if !c.deliberate.iter().any(|(k, ..)| k == d.key) {
            c.stale.push(d.key);
        }
    }
    c
}

impl std::fmt::Display for Comparison {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "{} observations identical on QEMU and virq; {} deliberate difference(s):",
            self.same,
            self.deliberate.len()
        )?;
        for (k, q, v, d) in &self.deliberate {
            writeln!(
                f,
                "  {k}: qemu {q:#x}, virq {v:#x} [{}] {}",
                d.section, d.reason
            )?;
        }
        for (k, q, v) in &self.unexplained {
            writeln!(f, "  UNEXPLAINED {k}: qemu {q:x?}, virq {v:x?}")?;
        }
        for k in &self.stale {
            writeln!(f, "  STALE (listed, did not occur) {k}")?;
        }
        Ok(())
    }
}
