//! Scenarios run on QEMU's devices and on virq's, each asserting what a driver observes.

use virq_guest::{Buffer, PlanShape, VectorPolicy};

use crate::host::{Host, HostConfig, HostError, Wiring};
use crate::target::{DeviceKind, DeviceSpec, Target, TargetError};

/// Which side a scenario runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    /// QEMU's virtio-pci device, under `-qtest`.
    Qemu,
    /// virq's device, in-process behind `virq_serve`.
    Virq,
}

impl Side {
    /// A machine on this side with the device `spec`.
    pub fn target(self, spec: DeviceSpec) -> Result<Target, TargetError> {
        match self {
            Side::Qemu => Target::qemu(spec),
            Side::Virq => Target::virq(spec),
        }
    }
}

/// Interrupts of a queue turned off and on again (virtio 1.2, 2.7.7 and 2.7.10), on a
/// virtio-blk with one queue: while off, a completion must raise no interrupt; on re-enabling,
/// the completion that arrived meanwhile must be collected (the re-check of 2.7.14), and the
/// next request must complete by interrupt again. `messages` 0 is INTx.
pub fn interrupts_off_on(side: Side, messages: u16, event_idx: bool) -> Result<(), HostError> {
    let target = side.target(DeviceSpec::new(DeviceKind::Blk, 1, 2))?;
    let mut h = Host::start(
        target,
        &HostConfig {
            queues: 1,
            messages,
            policy: VectorPolicy::Checklist,
            event_idx,
        },
    )?;
    let q = 0;
    // A first request completes by interrupt.
    h.blk_read(q, 1, 1)?;
    h.wait_tokens(q, &[1])?;
    h.check_blk_read(1, 1)?;

    // Off: the device publishes the completion but must not interrupt.
    h.drv.disable_queue_interrupts(q)?;
    h.blk_read(q, 2, 2)?;
    h.wait_used_idx(q, 2)?;
    if h.interrupt_waiting()? {
        return Err(HostError::Check(
            "an interrupt arrived for a queue whose interrupts are off (virtio 1.2, 2.7.7)".into(),
        ));
    }

    // On: what arrived meanwhile is collected right here (no interrupt will announce it).
    let mut problems = Vec::new();
    let mut done = Vec::new();
    h.drv.enable_queue_interrupts(q, &mut done)?;
    h.completions.extend(done);
    if !h.completed(2) {
        problems.push(
            "token 2 stranded: completed by the device while interrupts were off, not collected on re-enabling (virtio 1.2, 2.7.14)"
                .to_string(),
        );
    }
    // The next request must complete by interrupt.
    h.blk_read(q, 3, 3)?;
    if let Err(e) = h.wait_tokens(q, &[3]) {
        problems.push(format!("next request hangs: {e}"));
    }
    if problems.is_empty() {
        h.check_blk_read(2, 2)?;
        h.check_blk_read(3, 3)?;
        Ok(())
    } else {
        Err(HostError::Check(problems.join("; ")))
    }
}

/// The interrupt mode a scenario asks the OS side for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Enough messages for config plus every queue.
    PerQueue,
    /// Two messages, Linux's ladder: config on 0, every queue on 1.
    Shared,
    /// One message for everything.
    Single,
    /// A line interrupt granted from the start.
    Intx,
    /// Messages granted, but the device's table is too small for any message plan: the
    /// driver turns MSI-X off and tells the platform through its hook.
    LadderToIntx,
}

impl Mode {
    /// The name the report prints for the mode.
    pub fn name(self) -> &'static str {
        match self {
            Mode::PerQueue => "msix-per-queue",
            Mode::Shared => "msix-shared",
            Mode::Single => "msix-single",
            Mode::Intx => "intx",
            Mode::LadderToIntx => "msix-refused-to-intx",
        }
    }
}

/// Every mode a device kind is run in (a one-queue device has no shared rung of its own).
pub fn modes(kind: DeviceKind) -> &'static [Mode] {
    match kind {
        DeviceKind::Blk => &[
            Mode::PerQueue,
            Mode::Shared,
            Mode::Single,
            Mode::Intx,
            Mode::LadderToIntx,
        ],
        DeviceKind::Console => &[Mode::PerQueue, Mode::Shared, Mode::Single, Mode::Intx],
        DeviceKind::Rng => &[Mode::PerQueue, Mode::Single, Mode::Intx],
    }
}

/// What one scenario showed.
#[derive(Clone, Debug)]
pub struct Outcome {
    /// Which side it ran on.
    pub side: Side,
    /// The device type.
    pub kind: DeviceKind,
    /// The interrupt mode.
    pub mode: Mode,
    /// The vector plan the driver ended on.
    pub plan: PlanShape,
    /// Interrupts delivered to the driver.
    pub interrupts: u64,
    /// Chains completed.
    pub completions: usize,
    /// The checks that passed, in order.
    pub checks: Vec<&'static str>,
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:<4} {:<14} {:<20} ok  plan={:?} interrupts={} completions={} [{}]",
            match self.side {
                Side::Qemu => "qemu",
                Side::Virq => "virq",
            },
            self.kind.name(),
            self.mode.name(),
            self.plan,
            self.interrupts,
            self.completions,
            self.checks.join(", ")
        )
    }
}

fn queues_of(kind: DeviceKind) -> u16 {
    match kind {
        DeviceKind::Blk | DeviceKind::Console => 2,
        DeviceKind::Rng => 1,
    }
}

/// Queues whose requests the device completes without host input.
fn io_queues(kind: DeviceKind) -> &'static [u16] {
    match kind {
        DeviceKind::Blk => &[0, 1],
        DeviceKind::Rng => &[0],
        // transmitq0; receiveq0 only completes on host input.
        DeviceKind::Console => &[1],
    }
}

const CONSOLE_TEXT: &[u8] = b"virq-guest says hello\n";

fn submit(h: &mut Host, kind: DeviceKind, queue: u16, token: u64) -> Result<(), HostError> {
    match kind {
        DeviceKind::Blk => h.blk_read(queue, token % 2048, token),
        DeviceKind::Rng => {
            let area = crate::host::io_area(token);
            h.t.borrow_mut().pc.ram_write(area, &[0u8; 64])?;
            h.submit(
                queue,
                &[Buffer {
                    addr: area,
                    len: 64,
                    device_writes: true,
                }],
                token,
            )
        }
        DeviceKind::Console => {
            let area = crate::host::io_area(token);
            h.t.borrow_mut().pc.ram_write(area, CONSOLE_TEXT)?;
            h.submit(
                queue,
                &[Buffer {
                    addr: area,
                    len: CONSOLE_TEXT.len() as u32,
                    device_writes: false,
                }],
                token,
            )
        }
    }
}

fn check(h: &mut Host, kind: DeviceKind, token: u64) -> Result<(), HostError> {
    let done = h
        .completion(token)
        .ok_or_else(|| HostError::Check(format!("token {token} not completed")))?;
    match kind {
        DeviceKind::Blk => h.check_blk_read(token % 2048, token),
        DeviceKind::Rng if done.len == 0 || done.len > 64 => Err(HostError::Check(format!(
            "virtio-rng wrote {} bytes into a 64-byte buffer",
            done.len
        ))),
        _ => Ok(()),
    }
}

/// One round: a request on every I/O queue, each completed by interrupt and checked.
fn round(h: &mut Host, kind: DeviceKind, token: &mut u64) -> Result<(), HostError> {
    let mut tokens = Vec::new();
    for &q in io_queues(kind) {
        *token += 1;
        submit(h, kind, q, *token)?;
        tokens.push((q, *token));
    }
    for &(q, t) in &tokens {
        h.wait_tokens(q, &[t])?;
        check(h, kind, t)?;
    }
    Ok(())
}

fn setup(kind: DeviceKind, mode: Mode) -> (DeviceSpec, HostConfig, PlanShape) {
    let queues = queues_of(kind);
    let table = queues + 1;
    let (table, messages, policy, plan) = match mode {
        Mode::PerQueue => (table, table, VectorPolicy::Checklist, PlanShape::PerQueue),
        Mode::Shared => (table, 2, VectorPolicy::LinuxLadder, PlanShape::SharedQueues),
        Mode::Single => (table, 1, VectorPolicy::Checklist, PlanShape::AllOnZero),
        Mode::Intx => (table, 0, VectorPolicy::Checklist, PlanShape::Intx),
        Mode::LadderToIntx => (1, 2, VectorPolicy::LinuxLadder, PlanShape::Intx),
    };
    (
        DeviceSpec::new(kind, queues, table),
        HostConfig {
            queues,
            messages,
            policy,
            event_idx: true,
        },
        plan,
    )
}

/// Bring-up, I/O on every queue by interrupt, a queue's interrupts turned off and on under
/// EVENT_IDX, a reset with requests in flight (every selector 0xFFFF after it, the plan
/// re-applied and verified, I/O again), and for virtio-blk a configuration change.
pub fn run(side: Side, kind: DeviceKind, mode: Mode) -> Result<Outcome, HostError> {
    let (spec, cfg, want_plan) = setup(kind, mode);
    let mut h = Host::start(side.target(spec)?, &cfg)?;
    let mut checks = Vec::new();
    let plan = h.drv.plan().map(|p| p.shape);
    if plan != Some(want_plan) {
        return Err(HostError::Check(format!(
            "plan {plan:?}, expected {want_plan:?}"
        )));
    }
    let line = matches!(mode, Mode::Intx | Mode::LadderToIntx);
    if line != (h.wiring() == Wiring::Line) {
        return Err(HostError::Check(format!(
            "platform wiring {:?} after bring-up in mode {mode:?}",
            h.wiring()
        )));
    }
    if mode == Mode::LadderToIntx {
        checks.push("hook rewired to the line");
    }
    if let Some(bad) = h.drv.verify_vectors().into_iter().find(|v| !v.ok()) {
        return Err(HostError::Check(format!("vector read-back {bad:?}")));
    }
    checks.push("vectors read back");
    let mut token = 0u64;
    round(&mut h, kind, &mut token)?;
    checks.push("I/O by interrupt");

    // Interrupts of one queue off and on, EVENT_IDX negotiated (both devices offer it).
    let q = io_queues(kind)[0];
    h.drv.disable_queue_interrupts(q)?;
    token += 1;
    let off = token;
    let used = h.used_idx(q)?.wrapping_add(1);
    submit(&mut h, kind, q, off)?;
    h.wait_used_idx(q, used)?;
    if h.interrupt_waiting()? {
        return Err(HostError::Check(
            "interrupt for a queue whose interrupts are off (virtio 1.2, 2.7.10)".into(),
        ));
    }
    let mut done = Vec::new();
    h.drv.enable_queue_interrupts(q, &mut done)?;
    h.completions.extend(done);
    check(&mut h, kind, off).map_err(|e| HostError::Check(format!("after re-enabling: {e}")))?;
    round(&mut h, kind, &mut token)?;
    checks.push("interrupts off/on (EVENT_IDX)");

    // A reset with a request in flight on every I/O queue.
    let mut in_flight = Vec::new();
    for &q in io_queues(kind) {
        token += 1;
        submit(&mut h, kind, q, token)?;
        in_flight.push(token);
    }
    let mut lost = h.drv.quiesce()?;
    lost.sort();
    if lost != in_flight {
        return Err(HostError::Check(format!(
            "quiesce returned {lost:?}, in flight {in_flight:?}"
        )));
    }
    let after_reset = h.drv.verify_vectors();
    if let Some(bad) = after_reset
        .iter()
        .find(|v| v.read_back != virq_events::NO_VECTOR)
    {
        return Err(HostError::Check(format!(
            "after reset {bad:?} (virtio 1.2, 4.1.4.3.1: reset returns selectors to NO_VECTOR)"
        )));
    }
    h.drv.resume()?;
    if let Some(bad) = h.drv.verify_vectors().into_iter().find(|v| !v.ok()) {
        return Err(HostError::Check(format!("after resume {bad:?}")));
    }
    // Whatever the old interrupts left behind is not for the new rings.
    h.completions.clear();
    round(&mut h, kind, &mut token)?;
    checks.push("reset mid-flight, vectors re-applied");

    if kind == DeviceKind::Blk {
        let before = h.config_changes;
        let want =
            h.t.borrow_mut()
                .config_change(2 * crate::target::DISK_BYTES)?;
        let start = std::time::Instant::now();
        while h.config_changes == before {
            h.service()?;
            if start.elapsed() > std::time::Duration::from_secs(5) {
                return Err(HostError::Check(
                    "configuration change never noticed (virtio 1.2, 4.1.4.5)".into(),
                ));
            }
        }
        let (capacity, _) = h.drv.read_device_config(|c| c.read_u64(0))?;
        if capacity != want {
            return Err(HostError::Check(format!(
                "capacity {capacity} sectors after the change, expected {want}"
            )));
        }
        checks.push("config change, capacity re-read");
    }
    if kind == DeviceKind::Console {
        if let Some(out) = h.t.borrow_mut().console_output()? {
            if !out.windows(CONSOLE_TEXT.len()).any(|w| w == CONSOLE_TEXT) {
                return Err(HostError::Check(format!(
                    "console output {:?} lacks what the driver sent",
                    String::from_utf8_lossy(&out)
                )));
            }
            checks.push("host saw the console output");
        }
    }
    if let Some(e) = h.regs_errors.borrow().first() {
        return Err(HostError::Check(format!("register access failed: {e}")));
    }
    Ok(Outcome {
        side,
        kind,
        mode,
        plan: want_plan,
        interrupts: h.interrupts,
        completions: h.completions.len(),
        checks,
    })
}

/// Every mode of every device kind on `side`, one line each; the first failure is returned
/// with the scenario it happened in.
pub fn run_all(side: Side) -> Result<Vec<Outcome>, String> {
    let mut out = Vec::new();
    for kind in [DeviceKind::Blk, DeviceKind::Rng, DeviceKind::Console] {
        for &mode in modes(kind) {
            match run(side, kind, mode) {
                Ok(o) => {
                    println!("{o}");
                    out.push(o);
                }
                Err(e) => return Err(format!("{:?} {} {}: {e}", side, kind.name(), mode.name())),
            }
        }
    }
    Ok(out)
}
