//! virq-guest hosted on a [`Target`]: the two doors (register access and guest RAM) over
//! qtest, the bus driver's part (MSI-X table entries that land in guest RAM), and the
//! interrupt controller's part (watching the line and the message mailboxes, calling the
//! driver's ISRs and DPCs).

use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use thiserror::Error;
use virq_guest::{
    Buffer, DriverConfig, DriverError, GuestRam, InterruptGrant, ModeChange, PlatformHooks,
    RamError, RegisterAccess, UsedElem, VectorPolicy, VirtioPciCaps, VirtioPciDriver, Width,
};

use crate::target::{Target, TargetError};
use crate::wire::WireError;

/// Where the rings live.
pub const RING_BASE: u64 = 0x10_0000;
/// Bytes of the ring region from [`RING_BASE`].
pub const RING_LEN: u64 = 0x10_0000;
/// MSI-X message `m` is a DWORD write of `MSG_DATA | m` to `MAILBOX + 4 * m`, in guest RAM.
pub const MAILBOX: u64 = 0x30_0000;
/// The Message Data pattern of the mailboxes; the low byte is the message number.
pub const MSG_DATA: u32 = 0x5A00;
/// Request areas: one 4 KiB page per token (modulo 256).
pub const IO_BASE: u64 = 0x40_0000;

/// A target shared by the driver's two doors and the harness.
pub type Shared = Rc<RefCell<Target>>;

/// Register access over qtest. A failed request reads all ones (what a gone function reads)
/// and is kept in `errors` for the harness.
pub struct TargetRegs {
    t: Shared,
    /// Requests that failed, in order, with the reason.
    pub errors: Rc<RefCell<Vec<String>>>,
}

fn ones(width: Width) -> u64 {
    if width == Width::U64 {
        u64::MAX
    } else {
        (1u64 << (8 * width.bytes())) - 1
    }
}

impl TargetRegs {
    /// Register access to `t`'s function.
    pub fn new(t: Shared) -> Self {
        TargetRegs {
            t,
            errors: Rc::new(RefCell::new(Vec::new())),
        }
    }

    fn note(&self, e: WireError) {
        self.errors.borrow_mut().push(e.to_string());
    }
}

impl RegisterAccess for TargetRegs {
    fn config_read(&mut self, offset: u16, width: Width) -> u32 {
        let r = {
            let mut t = self.t.borrow_mut();
            let bdf = t.bdf;
            t.pc.cfg_read(bdf, offset, width.bytes() as u8)
        };
        r.unwrap_or_else(|e| {
            self.note(e);
            ones(width) as u32
        })
    }
    fn config_write(&mut self, offset: u16, width: Width, value: u32) {
        let r = {
            let mut t = self.t.borrow_mut();
            let bdf = t.bdf;
            t.pc.cfg_write(bdf, offset, width.bytes() as u8, value)
        };
        if let Err(e) = r {
            self.note(e);
        }
    }
    fn bar_read(&mut self, bar: u8, offset: u64, width: Width) -> u64 {
        let r = {
            let mut t = self.t.borrow_mut();
            match t.bars.get(usize::from(bar)).copied().filter(|b| *b != 0) {
                Some(base) => t.pc.mem_read(base + offset, width.bytes() as u8).map(Some),
                None => Ok(None),
            }
        };
        match r {
            Ok(Some(v)) => v,
            Ok(None) => ones(width),
            Err(e) => {
                self.note(e);
                ones(width)
            }
        }
    }
    fn bar_write(&mut self, bar: u8, offset: u64, width: Width, value: u64) {
        let r = {
            let mut t = self.t.borrow_mut();
            match t.bars.get(usize::from(bar)).copied().filter(|b| *b != 0) {
                Some(base) => t.pc.mem_write(base + offset, width.bytes() as u8, value),
                None => Ok(()),
            }
        };
        if let Err(e) = r {
            self.note(e);
        }
    }
}

/// Guest RAM over qtest's bulk `read`/`write`.
pub struct TargetRam {
    t: Shared,
}

impl GuestRam for TargetRam {
    fn read(&mut self, gpa: u64, buf: &mut [u8]) -> Result<(), RamError> {
        self.t
            .borrow_mut()
            .pc
            .ram_read(gpa, buf)
            .map_err(|_| RamError {
                gpa,
                len: buf.len() as u64,
            })
    }
    fn write(&mut self, gpa: u64, data: &[u8]) -> Result<(), RamError> {
        self.t
            .borrow_mut()
            .pc
            .ram_write(gpa, data)
            .map_err(|_| RamError {
                gpa,
                len: data.len() as u64,
            })
    }
}

/// virq-guest's driver on a qtest target, wired as [`Wiring`] says.
pub type Driver = VirtioPciDriver<TargetRegs, TargetRam, Wiring>;

/// How the platform currently takes the function's interrupts. It is also the platform hook:
/// when the driver turns MSI-X off, the platform rewires to the line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wiring {
    /// `granted` MSI-X messages, each landing in its mailbox.
    Messages {
        /// Messages granted.
        granted: u16,
    },
    /// The line (INTA#) at the interrupt controller's input.
    Line,
}

impl PlatformHooks for Wiring {
    fn interrupt_mode_changed(&mut self, change: ModeChange) {
        if let ModeChange::MsixOffLineNeeded { .. } = change {
            *self = Wiring::Line;
        }
    }
}

/// Why a scenario could not run or what it found wrong.
#[derive(Debug, Error)]
pub enum HostError {
    /// The driver core refused or failed.
    #[error(transparent)]
    Driver(#[from] DriverError),
    /// The target could not be built.
    #[error(transparent)]
    Target(#[from] TargetError),
    /// The qtest wire failed.
    #[error(transparent)]
    Wire(#[from] WireError),
    /// The capability list could not be walked.
    #[error("capability walk: {0}")]
    Caps(#[from] virq_guest::CapError),
    /// A check of the scenario failed; the text says which.
    #[error("{0}")]
    Check(String),
    #[error(
        "queue {queue}: token(s) {tokens:?} not completed within {waited:?} (used.idx {used_idx}, {interrupts} interrupt(s) taken meanwhile)"
    )]
    /// Requests were not completed in time.
    Stranded {
        /// The queue.
        queue: u16,
        /// Tokens still outstanding.
        tokens: Vec<u64>,
        /// How long the host waited.
        waited: Duration,
        /// `used.idx` at the end.
        used_idx: u16,
        /// Interrupts taken while waiting.
        interrupts: u64,
    },
}

/// What a scenario asks of the bring-up.
#[derive(Clone, Debug)]
pub struct HostConfig {
    /// Queues to bring up.
    pub queues: u16,
    /// MSI-X messages the OS grants (0: a line interrupt).
    pub messages: u16,
    /// How vectors are chosen.
    pub policy: VectorPolicy,
    /// Negotiate VIRTIO_F_EVENT_IDX.
    pub event_idx: bool,
}

/// The driver on a target, with the platform's interrupt plumbing around it.
pub struct Host {
    /// The machine, shared with the driver's register and RAM access.
    pub t: Shared,
    /// The driver.
    pub drv: Driver,
    /// Chains completed so far, across all queues.
    pub completions: Vec<UsedElem>,
    /// Configuration changes the driver's DPCs noticed.
    pub config_changes: u32,
    /// Interrupts the platform delivered to an ISR (messages and line assertions).
    pub interrupts: u64,
    /// The register access's failed requests.
    pub regs_errors: Rc<RefCell<Vec<String>>>,
    timeout: Duration,
}

impl Host {
    /// The bus driver programs the MSI-X table for the grant and enables it, then the driver
    /// is brought up.
    pub fn start(target: Target, cfg: &HostConfig) -> Result<Host, HostError> {
        let timeout = if target.is_qemu() {
            Duration::from_secs(5)
        } else {
            Duration::from_millis(500)
        };
        let t: Shared = Rc::new(RefCell::new(target));
        let errors = Rc::new(RefCell::new(Vec::new()));
        let mut regs = TargetRegs {
            t: t.clone(),
            errors: errors.clone(),
        };
        let caps = VirtioPciCaps::parse(&mut regs)?;
        let wiring = if cfg.messages > 0 {
            let msix = caps
                .msix
                .ok_or_else(|| HostError::Check("no MSI-X capability".into()))?;
            program_msix(&t, &mut regs, &msix, cfg.messages)?;
            Wiring::Messages {
                granted: cfg.messages,
            }
        } else {
            Wiring::Line
        };
        let mut config = DriverConfig::new(
            cfg.queues,
            InterruptGrant::messages(cfg.messages),
            RING_BASE,
            RING_LEN,
        );
        config.policy = cfg.policy;
        config.max_queue_size = 64;
        if !cfg.event_idx {
            config.wanted_features = virq_guest::common_cfg::feature::VERSION_1;
        }
        let ram = TargetRam { t: t.clone() };
        let mut drv = VirtioPciDriver::new(regs, ram, caps, config).with_platform(wiring);
        drv.start()?;
        Ok(Host {
            t,
            drv,
            completions: Vec::new(),
            config_changes: 0,
            interrupts: 0,
            regs_errors: errors,
            timeout,
        })
    }

    /// One pass of the interrupt controller: every message found in its mailbox goes to the
    /// driver's message ISR (and DPC), and while the line is high the line ISR runs.
    pub fn service(&mut self) -> Result<u64, HostError> {
        let mut taken = 0;
        match self.wiring() {
            Wiring::Messages { granted } => {
                for m in 0..granted {
                    let at = MAILBOX + 4 * u64::from(m);
                    let got = self.t.borrow_mut().pc.mem_read(at, 4)? as u32;
                    if got == MSG_DATA | u32::from(m) {
                        self.t.borrow_mut().pc.mem_write(at, 4, 0)?;
                        taken += 1;
                        if self.drv.isr_message(u32::from(m)) {
                            let changed = self
                                .drv
                                .dpc_into(Some(u32::from(m)), &mut self.completions)?;
                            self.config_changes += u32::from(changed);
                        }
                    }
                }
            }
            Wiring::Line => {
                // A level-triggered input: the ISR runs while the line stays high (bounded,
                // so a driver that never deasserts shows up as a storm, not a hang).
                for _ in 0..64 {
                    let high = {
                        let mut t = self.t.borrow_mut();
                        // Any request lets pending IRQ lines arrive.
                        t.pc.wire.request("endianness")?;
                        t.pc.wire.level(t.intx_irq)
                    };
                    if !high {
                        break;
                    }
                    taken += 1;
                    if self.drv.isr_intx() {
                        let changed = self.drv.dpc_into(None, &mut self.completions)?;
                        self.config_changes += u32::from(changed);
                    }
                }
            }
        }
        self.interrupts += taken;
        Ok(taken)
    }

    /// The platform's wiring now (the driver's hook may have moved it to the line).
    pub fn wiring(&self) -> Wiring {
        *self.drv.platform()
    }

    /// Whether the chain of `token` completed.
    pub fn completed(&self, token: u64) -> bool {
        self.completions.iter().any(|c| c.token == token)
    }

    /// The completion of `token`, once it arrived.
    pub fn completion(&self, token: u64) -> Option<UsedElem> {
        self.completions.iter().copied().find(|c| c.token == token)
    }

    /// Service interrupts until every token in `tokens` completed, or fail as stranded.
    pub fn wait_tokens(&mut self, queue: u16, tokens: &[u64]) -> Result<(), HostError> {
        let start = Instant::now();
        let before = self.interrupts;
        loop {
            self.service()?;
            let missing: Vec<u64> = tokens
                .iter()
                .copied()
                .filter(|t| !self.completed(*t))
                .collect();
            if missing.is_empty() {
                return Ok(());
            }
            if start.elapsed() > self.timeout {
                return Err(HostError::Stranded {
                    queue,
                    tokens: missing,
                    waited: self.timeout,
                    used_idx: self.used_idx(queue)?,
                    interrupts: self.interrupts - before,
                });
            }
            if self.t.borrow().is_qemu() {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    }

    /// The device's `used.idx` of `queue`, read from guest RAM.
    pub fn used_idx(&mut self, queue: u16) -> Result<u16, HostError> {
        let used = self
            .drv
            .queue(queue)
            .ok_or(DriverError::NoSuchQueue { queue })?
            .rings()
            .used;
        Ok(self.t.borrow_mut().pc.mem_read(used + 2, 2)? as u16)
    }

    /// Wait (without taking interrupts) until the device has published `idx` on `queue`.
    pub fn wait_used_idx(&mut self, queue: u16, idx: u16) -> Result<(), HostError> {
        let start = Instant::now();
        loop {
            let now = self.used_idx(queue)?;
            if now == idx {
                return Ok(());
            }
            if start.elapsed() > self.timeout {
                return Err(HostError::Check(format!(
                    "queue {queue}: device never published used.idx {idx} (reads {now})"
                )));
            }
            if self.t.borrow().is_qemu() {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    }

    /// Whether an interrupt is waiting that nobody has taken (line high or a mailbox full).
    pub fn interrupt_waiting(&mut self) -> Result<bool, HostError> {
        let mut t = self.t.borrow_mut();
        t.pc.wire.request("endianness")?;
        if t.pc.wire.level(t.intx_irq) {
            return Ok(true);
        }
        if let Wiring::Messages { granted } = *self.drv.platform() {
            for m in 0..granted {
                if t.pc.mem_read(MAILBOX + 4 * u64::from(m), 4)? != 0 {
                    return Ok(true);
                }
            }
        }
        Ok(false)
    }

    /// Publish a request on `queue` and notify the device if it asks to be.
    pub fn submit(&mut self, queue: u16, bufs: &[Buffer], token: u64) -> Result<(), HostError> {
        self.drv.add_buffers(queue, bufs, token)?;
        self.drv.kick(queue)?;
        Ok(())
    }

    /// A virtio-blk read of one sector (virtio 1.2, 5.2.6): header, 512 data bytes, status.
    pub fn blk_read(&mut self, queue: u16, sector: u64, token: u64) -> Result<(), HostError> {
        let area = io_area(token);
        let mut header = [0u8; 16];
        header[8..16].copy_from_slice(&sector.to_le_bytes());
        {
            let mut t = self.t.borrow_mut();
            t.pc.ram_write(area, &header)?;
            t.pc.ram_write(area + 0x800, &[0xFF])?;
        }
        let bufs = [
            Buffer {
                addr: area,
                len: 16,
                device_writes: false,
            },
            Buffer {
                addr: area + 0x200,
                len: 512,
                device_writes: true,
            },
            Buffer {
                addr: area + 0x800,
                len: 1,
                device_writes: true,
            },
        ];
        self.submit(queue, &bufs, token)
    }

    /// Check a completed virtio-blk read: status 0 and the disk pattern of `sector`.
    pub fn check_blk_read(&mut self, sector: u64, token: u64) -> Result<(), HostError> {
        let area = io_area(token);
        let mut data = vec![0u8; 512];
        let mut status = [0u8; 1];
        {
            let mut t = self.t.borrow_mut();
            t.pc.ram_read(area + 0x200, &mut data)?;
            t.pc.ram_read(area + 0x800, &mut status)?;
        }
        if status[0] != 0 {
            return Err(HostError::Check(format!(
                "blk read of sector {sector}: status {}",
                status[0]
            )));
        }
        let expect: Vec<u8> = (0..512)
            .map(|i| virq_serve::disk_byte(sector * 512 + i))
            .collect();
        if data != expect {
            return Err(HostError::Check(format!(
                "blk read of sector {sector}: data differs from the disk"
            )));
        }
        Ok(())
    }
}

/// The request area of `token`.
pub fn io_area(token: u64) -> u64 {
    IO_BASE + (token % 256) * 0x1000
}

/// The PCI bus driver's part of an MSI-X start: table entries 0..messages get their mailbox
/// address and data, unmasked; mailboxes are cleared; MSI-X Enable is set in Message Control.
fn program_msix(
    t: &Shared,
    regs: &mut TargetRegs,
    msix: &virq_guest::MsixCap,
    messages: u16,
) -> Result<(), HostError> {
    let mut tgt = t.borrow_mut();
    let table = tgt.bars[usize::from(msix.table_bir)] + u64::from(msix.table_offset);
    for m in 0..messages.min(msix.table_size) {
        let entry = table + 16 * u64::from(m);
        let addr = MAILBOX + 4 * u64::from(m);
        tgt.pc.mem_write(entry, 4, addr & 0xFFFF_FFFF)?;
        tgt.pc.mem_write(entry + 4, 4, addr >> 32)?;
        tgt.pc
            .mem_write(entry + 8, 4, u64::from(MSG_DATA | u32::from(m)))?;
        tgt.pc.mem_write(entry + 12, 4, 0)?;
        tgt.pc.mem_write(addr, 4, 0)?;
    }
    drop(tgt);
    msix.set_enabled(regs, true);
    Ok(())
}
