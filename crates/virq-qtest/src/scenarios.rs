//! Scenarios run on QEMU's devices and on virq's, each asserting what a driver observes.

use virq_guest::VectorPolicy;
use virq_guest::vectors::MessageNumber;

use crate::host::{Host, HostConfig, HostError, Wiring};
use crate::target::{DeviceKind, DeviceSpec, Target, TargetError};

/// Which side a scenario runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    Qemu,
    Virq,
}

impl Side {
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
    h.drv.set_queue_interrupts(q, false)?;
    h.blk_read(q, 2, 2)?;
    h.wait_used_idx(q, 2)?;
    if h.interrupt_waiting()? {
        return Err(HostError::Check(
            "an interrupt arrived for a queue whose interrupts are off (virtio 1.2, 2.7.7)".into(),
        ));
    }

    // On: completions that arrived meanwhile announce no interrupt, so drain them now.
    let mut problems = Vec::new();
    if h.drv.set_queue_interrupts(q, true)? {
        let message = match h.wiring {
            Wiring::Line => None,
            Wiring::Messages { .. } => h
                .drv
                .plan()
                .and_then(|p| p.queues[usize::from(q)])
                .map(|MessageNumber(m)| u32::from(m)),
        };
        let mut done = Vec::new();
        h.drv.dpc_into(message, &mut done)?;
        h.completions.extend(done);
    } else {
        problems.push("re-enabling did not report the waiting completion".to_string());
    }
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
