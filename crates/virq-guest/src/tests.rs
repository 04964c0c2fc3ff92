//! Bring-up tests against the fake device: each asserts what the device or the evidence shows.

use crate::common_cfg::feature;
use crate::driver::{DriverConfig, DriverFaults, DriverState, InterruptGrant, VirtioPciDriver};
use crate::error::DriverError;
use crate::fake::{Cause, FakeDevice, FakeOp, FakeSpec, FakeState, SharedRam};
use crate::queue::{Buffer, UsedElem};
use crate::vectors::{PlanShape, VectorPolicy};
use crate::{GuestRamExt, VirtioPciCaps};
use std::sync::Arc;
use virq_events::{EventKind, EventLog, NO_VECTOR, Selector, SuppressReason};

const RAM_BASE: u64 = 0x10_0000;
const BUF: u64 = RAM_BASE + 0x8000;

struct Rig {
    dev: FakeDevice,
    ram: SharedRam,
    log: Arc<EventLog>,
    drv: VirtioPciDriver<FakeDevice, SharedRam>,
}

fn spec(queues: u16, table_size: u16, msix_enabled: bool) -> FakeSpec {
    FakeSpec {
        queues,
        queue_size: 8,
        table_size,
        offered: feature::VERSION_1 | feature::RING_EVENT_IDX | feature::RING_PACKED | 1,
        msix_enabled,
    }
}

/// A bring-up as a test describes it: the device model, the OS's grant, the driver's faults
/// and config, and what the device does differently. `build` wires them in a platform's order:
/// device first, then the capability parse, then the driver.
struct RigBuilder {
    spec: FakeSpec,
    messages: u16,
    faults: DriverFaults,
    config: Box<dyn FnOnce(&mut DriverConfig)>,
    device: Box<dyn FnOnce(&mut FakeState)>,
}

impl RigBuilder {
    /// `queues` queues, a `table`-entry MSI-X table and `messages` granted by the OS (0: the
    /// line, with MSI-X off).
    fn new(queues: u16, table: u16, messages: u16) -> Self {
        Self {
            spec: spec(queues, table, messages > 0),
            messages,
            faults: DriverFaults::default(),
            config: Box::new(|_| {}),
            device: Box::new(|_| {}),
        }
    }

    fn spec(mut self, change: impl FnOnce(&mut FakeSpec)) -> Self {
        change(&mut self.spec);
        self
    }

    /// Switches on the driver faults `switch_on` sets; every other fault stays off.
    fn faults(mut self, switch_on: impl FnOnce(&mut DriverFaults)) -> Self {
        switch_on(&mut self.faults);
        self
    }

    fn config(mut self, change: impl FnOnce(&mut DriverConfig) + 'static) -> Self {
        self.config = Box::new(change);
        self
    }

    fn device(mut self, change: impl FnOnce(&mut FakeState) + 'static) -> Self {
        self.device = Box::new(change);
        self
    }

    /// Without `event_idx` the driver wants only VERSION_1, so RING_EVENT_IDX is not negotiated.
    fn event_idx(self, event_idx: bool) -> Self {
        self.config(move |c| {
            if !event_idx {
                c.wanted_features = feature::VERSION_1;
            }
        })
    }

    /// Built and brought up; a bring-up error fails the test at the caller.
    #[track_caller]
    fn running(self) -> Rig {
        let mut rig = self.build();
        if let Err(err) = rig.drv.start() {
            panic!("bring-up failed: {err}");
        }
        rig
    }

    fn build(self) -> Rig {
        let ram = SharedRam::new(RAM_BASE, 0x10000);
        let mut dev = FakeDevice::new(self.spec, ram.clone());
        (self.device)(&mut dev.st());
        let caps = VirtioPciCaps::parse(&mut dev).unwrap();
        let mut config = DriverConfig::new(
            self.spec.queues,
            InterruptGrant::messages(self.messages),
            RAM_BASE,
            0x8000,
        );
        (self.config)(&mut config);
        let log = Arc::new(EventLog::new());
        let drv = VirtioPciDriver::new(dev.clone(), ram.clone(), caps, config)
            .with_sink(log.clone())
            .with_faults(self.faults);
        Rig { dev, ram, log, drv }
    }
}

/// A rig whose driver has been brought up (DRIVER_OK) without error.
fn running(queues: u16, table: u16, messages: u16) -> Rig {
    RigBuilder::new(queues, table, messages).running()
}

/// A device still finishing a reset: status reads 0x0F for five more polls.
fn slow_reset(st: &mut FakeState) {
    st.status = 0x0F;
    st.reset_delay_reads = 5;
}

impl Rig {
    /// One 4-byte buffer the driver wrote, made available on `queue`, kicked, and used by the
    /// device (nothing written back).
    fn submit_read_completed(&mut self, queue: u16, token: u64) {
        self.drv.add_buffers(queue, &[read_buf(4)], token).unwrap();
        self.drv.kick(queue).unwrap();
        self.dev.complete(queue, 0);
    }
}

fn vectors(dev: &FakeDevice) -> (u16, Vec<u16>) {
    let st = dev.st();
    (st.msix_config, st.queues.iter().map(|q| q.vector).collect())
}

fn read_buf(len: u32) -> Buffer {
    Buffer {
        addr: BUF,
        len,
        device_writes: false,
    }
}

fn write_buf(len: u32) -> Buffer {
    Buffer {
        addr: BUF + 0x1000,
        len,
        device_writes: true,
    }
}

/// The OS side of message delivery: only messages it granted (and so programmed) arrive.
fn deliver_messages(rig: &mut Rig, granted: u16) -> Vec<UsedElem> {
    let sent = std::mem::take(&mut rig.dev.st().sent);
    let mut out = Vec::new();
    for entry in sent.into_iter().filter(|e| *e < granted) {
        if rig.drv.isr_message(u32::from(entry)) {
            out.extend(rig.drv.dpc(Some(u32::from(entry))).unwrap().completions);
        }
    }
    out
}

/// A level-triggered line: the ISR re-runs while the line stays high, up to `budget` times.
fn service_line(rig: &mut Rig, budget: u32) -> (u32, Vec<UsedElem>) {
    let mut runs = 0;
    let mut out = Vec::new();
    while rig.dev.st().line && runs < budget {
        runs += 1;
        if rig.drv.isr_intx() {
            out.extend(rig.drv.dpc(None).unwrap().completions);
        }
    }
    (runs, out)
}

fn position(history: &[FakeOp], pred: impl Fn(&FakeOp) -> bool) -> Option<usize> {
    history.iter().position(pred)
}

fn rposition(history: &[FakeOp], pred: impl Fn(&FakeOp) -> bool) -> Option<usize> {
    history.iter().rposition(pred)
}

/// Checklist 3.3: the vector plan holds (every queue_msix_vector written and read back)
/// before any queue_enable, so no queue runs on a vector the device may still refuse.
#[track_caller]
fn assert_no_queue_enabled_before_the_last_vector_write(history: &[FakeOp]) {
    let last_vec = rposition(history, |o| matches!(o, FakeOp::QueueVector { .. }))
        .expect("a queue vector was written");
    let first_enable = position(history, |o| matches!(o, FakeOp::QueueEnable { .. }))
        .expect("a queue was enabled");
    assert!(
        last_vec < first_enable,
        "queue_enable at op {first_enable} before the last vector write at op {last_vec}: {history:?}"
    );
}

#[test]
fn bring_up_orders_reset_features_vectors_enable_driver_ok_virtio_1_2_3_1_1() {
    let r = running(2, 3, 3);
    assert_eq!(r.drv.state(), DriverState::Running);
    let st = r.dev.st();
    assert_eq!(st.status, 0x0F, "ACKNOWLEDGE|DRIVER|FEATURES_OK|DRIVER_OK");
    assert_eq!(
        st.driver_features,
        feature::VERSION_1 | feature::RING_EVENT_IDX,
        "packed rings and unwanted bit 0 are not accepted"
    );
    let h = &st.history;
    let reset = rposition(h, |o| *o == FakeOp::Reset).unwrap();
    let first_vec = position(h, |o| matches!(o, FakeOp::MsixConfig { .. })).unwrap();
    let last_vec = rposition(h, |o| matches!(o, FakeOp::QueueVector { .. })).unwrap();
    let first_enable = position(h, |o| matches!(o, FakeOp::QueueEnable { .. })).unwrap();
    let driver_ok = position(h, |o| matches!(o, FakeOp::Status(s) if s & 4 != 0)).unwrap();
    assert!(reset < first_vec && last_vec < first_enable && first_enable < driver_ok);
    for (i, q) in st.queues.iter().enumerate() {
        let ours = r.drv.queue(i as u16).unwrap().rings();
        assert_eq!(
            (q.desc, q.driver, q.device),
            (ours.desc, ours.avail, ours.used)
        );
        assert_eq!(q.desc % 16, 0);
        assert_eq!(q.driver % 2, 0);
        assert_eq!(q.device % 4, 0);
        assert!(q.enabled);
        assert_eq!(q.size, 8);
    }
    drop(st);
    assert_eq!(vectors(&r.dev), (0, vec![1, 2]));
    assert_eq!(r.drv.plan().unwrap().shape, PlanShape::PerQueue);
    let written = r.log.count(|e| matches!(e, EventKind::VectorWritten { written, read_back, .. } if written == read_back));
    assert_eq!(written, 3);
    assert_eq!(
        r.log
            .count(|e| matches!(e, EventKind::FeaturesNegotiated { ok: true, .. })),
        1
    );
    assert_eq!(r.log.count(|e| *e == EventKind::DeviceReset), 1);
}

#[test]
fn features_ok_refused_fails_with_failed_status_virtio_1_2_3_1_1_step_6() {
    let mut r = RigBuilder::new(1, 2, 2)
        .device(|st| st.refuse_features_ok = true)
        .build();
    let err = r.drv.start().unwrap_err();
    assert!(
        matches!(err, DriverError::FeaturesOkRefused { .. }),
        "{err}"
    );
    assert!(err.to_string().contains("FEATURES_OK"));
    assert_eq!(r.drv.state(), DriverState::Failed);
    let st = r.dev.st();
    assert_ne!(st.status & 0x80, 0, "FAILED set");
    assert_eq!(st.status & 4, 0, "never DRIVER_OK");
    assert!(!st.queues[0].enabled);
}

#[test]
fn device_without_version_1_and_driver_without_version_1_are_refused() {
    let mut r = RigBuilder::new(1, 2, 2)
        .spec(|s| s.offered = feature::RING_EVENT_IDX)
        .build();
    assert!(matches!(
        r.drv.start(),
        Err(DriverError::DeviceLacksVersion1 { .. })
    ));
    let mut r = RigBuilder::new(1, 2, 2)
        .config(|c| c.wanted_features = feature::RING_EVENT_IDX)
        .build();
    assert!(matches!(
        r.drv.start(),
        Err(DriverError::WantedLacksVersion1 { .. })
    ));
}

#[test]
fn reset_waits_for_status_zero_and_times_out_virtio_1_2_4_1_4_3_2() {
    let r = RigBuilder::new(1, 2, 2).device(slow_reset).running();
    assert_eq!(r.drv.state(), DriverState::Running);
    let mut r = RigBuilder::new(1, 2, 2)
        .config(|c| c.reset_poll_limit = 3)
        .device(slow_reset)
        .build();
    assert_eq!(
        r.drv.start(),
        Err(DriverError::ResetTimeout {
            polls: 3,
            last_status: 0x0F
        })
    );
}

#[test]
fn vector_plan_end_to_end_for_every_message_count() {
    for messages in 0..=4u16 {
        let r = running(2, 3, messages);
        let expect = match messages {
            0 => (NO_VECTOR, vec![NO_VECTOR, NO_VECTOR]),
            1 | 2 => (0, vec![0, 0]),
            _ => (0, vec![1, 2]),
        };
        assert_eq!(vectors(&r.dev), expect, "messages {messages}");
        if messages == 0 {
            assert_eq!(
                r.log
                    .count(|e| matches!(e, EventKind::VectorWritten { .. })),
                0
            );
        }
    }
}

#[test]
fn refused_per_queue_vector_falls_back_to_message_0_checklist_3_3() {
    let mut r = RigBuilder::new(2, 3, 3)
        .device(|st| st.refuse_vectors_from = Some(1))
        .running();
    assert_eq!(r.drv.plan().unwrap().shape, PlanShape::AllOnZero);
    assert_eq!(vectors(&r.dev), (0, vec![0, 0]));
    let events = r.log.snapshot();
    let refused = events
        .iter()
        .position(|e| {
            e.kind
                == EventKind::VectorWritten {
                    selector: Selector::Queue(0),
                    written: 1,
                    read_back: NO_VECTOR,
                }
        })
        .expect("refusal recorded");
    let enabled = events
        .iter()
        .position(|e| matches!(e.kind, EventKind::QueueEnabled { .. }))
        .unwrap();
    assert!(refused < enabled);
    // Everything works on the shared message afterwards.
    r.drv.add_buffers(1, &[read_buf(4)], 9).unwrap();
    assert!(r.drv.kick(1).unwrap());
    r.dev.complete(1, 0);
    assert_eq!(r.dev.st().sent, vec![0]);
    let done = deliver_messages(&mut r, 3);
    assert_eq!(done.len(), 1);
    assert_eq!(done[0].token, 9);
}

/// Row 21: the OS grants 3 messages but the table has 1 entry. The driver must try the
/// per-queue plan first (config 0, queues 1 and 2), see queue 0's read-back come back
/// NO_VECTOR (virtio 1.2 4.1.4.3: the device refuses a vector it cannot map), and only then
/// fall back to everything on message 0, without a reset and before enabling a queue. A
/// driver that always shares message 0 ends in the same place but never writes vector 1.
#[test]
fn table_smaller_than_grant_falls_back_catalogue_row_21() {
    let r = running(2, 1, 3);
    assert_eq!(r.drv.plan().unwrap().shape, PlanShape::AllOnZero);
    assert_eq!(vectors(&r.dev), (0, vec![0, 0]));
    // Every selector write as the device saw it: per-queue tried, refused at queue 0, then
    // the fallback over every selector.
    let h = r.dev.st().history.clone();
    let writes: Vec<FakeOp> = h
        .iter()
        .filter(|o| matches!(o, FakeOp::MsixConfig { .. } | FakeOp::QueueVector { .. }))
        .cloned()
        .collect();
    let qv = |queue, written, stored| FakeOp::QueueVector {
        queue,
        written,
        stored,
    };
    let config = FakeOp::MsixConfig {
        written: 0,
        stored: 0,
    };
    assert_eq!(
        writes,
        vec![
            config.clone(),
            qv(0, 1, NO_VECTOR),
            config,
            qv(0, 0, 0),
            qv(1, 0, 0),
        ],
        "{h:?}"
    );
    let refused = position(&h, |o| *o == qv(0, 1, NO_VECTOR)).unwrap();
    assert!(
        !h[refused..].contains(&FakeOp::Reset),
        "fell back without reset"
    );
    assert_no_queue_enabled_before_the_last_vector_write(&h);
    // The driver's own evidence: each write with what it read back.
    let evidence: Vec<(Selector, u16, u16)> = r
        .log
        .snapshot()
        .into_iter()
        .filter_map(|e| match e.kind {
            EventKind::VectorWritten {
                selector,
                written,
                read_back,
            } => Some((selector, written, read_back)),
            _ => None,
        })
        .collect();
    assert_eq!(
        evidence,
        vec![
            (Selector::MsixConfig, 0, 0),
            (Selector::Queue(0), 1, NO_VECTOR),
            (Selector::MsixConfig, 0, 0),
            (Selector::Queue(0), 0, 0),
            (Selector::Queue(1), 0, 0),
        ]
    );
}

#[test]
fn device_refusing_every_vector_is_an_error_and_no_queue_is_enabled() {
    let mut r = RigBuilder::new(2, 3, 3)
        .device(|st| st.refuse_vectors_from = Some(0))
        .build();
    let err = r.drv.start().unwrap_err();
    assert_eq!(
        err,
        DriverError::DeviceRefusesVectors {
            selector: Selector::MsixConfig,
            written: 0,
            read_back: NO_VECTOR,
            plans_tried: 2
        }
    );
    assert!(err.to_string().starts_with("device refuses MSI-X vectors"));
    let st = r.dev.st();
    assert_eq!(st.queues.len(), 2);
    assert!(st.queues.iter().all(|q| !q.enabled), "catalogue row 10");
    assert_ne!(st.status & 0x80, 0);
}

#[test]
fn linux_ladder_goes_shared_then_intx() {
    let r = RigBuilder::new(2, 3, 3)
        .config(|c| c.policy = VectorPolicy::LinuxLadder)
        .device(|st| st.refuse_vectors_from = Some(2))
        .running();
    assert_eq!(r.drv.plan().unwrap().shape, PlanShape::SharedQueues);
    assert_eq!(vectors(&r.dev), (0, vec![1, 1]));

    let mut r = RigBuilder::new(2, 3, 3)
        .config(|c| c.policy = VectorPolicy::LinuxLadder)
        .device(|st| st.refuse_vectors_from = Some(0))
        .running();
    assert!(r.drv.plan().unwrap().is_intx());
    assert_eq!(vectors(&r.dev), (NO_VECTOR, vec![NO_VECTOR, NO_VECTOR]));
    assert_eq!(r.dev.st().config.bytes[0x9B] & 0x80, 0, "MSI-X turned off");
    // Now the line works.
    r.submit_read_completed(0, 1);
    let (runs, done) = service_line(&mut r, 10);
    assert_eq!((runs, done.len()), (1, 1));
}

#[test]
fn vectors_are_reprogrammed_after_every_reset_checklist_3_4() {
    let mut r = running(2, 3, 3);
    r.drv.add_buffers(0, &[read_buf(4)], 5).unwrap();
    let lost = r.drv.quiesce().unwrap();
    assert_eq!(lost, vec![5]);
    assert_eq!(r.drv.state(), DriverState::Quiesced);
    assert_eq!(vectors(&r.dev), (NO_VECTOR, vec![NO_VECTOR, NO_VECTOR]));
    assert!(matches!(
        r.drv.add_buffers(0, &[read_buf(4)], 6),
        Err(DriverError::NotRunning { .. })
    ));
    r.drv.resume().unwrap();
    assert_eq!(vectors(&r.dev), (0, vec![1, 2]));
    let check = r.drv.verify_vectors();
    assert_eq!(check.len(), 3, "msix_config and two queues");
    assert!(check.iter().all(|v| v.ok()));
    let events = r.log.snapshot();
    let last_reset = events
        .iter()
        .rposition(|e| e.kind == EventKind::DeviceReset)
        .unwrap();
    let rewritten = events[last_reset..]
        .iter()
        .filter(|e| matches!(e.kind, EventKind::VectorWritten { written, read_back, .. } if written == read_back))
        .count();
    assert_eq!(rewritten, 3);
    // The queue works after resume, from a clean ring.
    r.drv
        .add_buffers(1, &[read_buf(4), write_buf(64)], 8)
        .unwrap();
    r.drv.kick(1).unwrap();
    r.dev.complete(1, 64);
    let done = deliver_messages(&mut r, 3);
    assert_eq!(done.len(), 1);
    assert_eq!((done[0].token, done[0].len), (8, 64));
}

#[test]
fn queue_round_trip_on_its_own_message_with_counters_checklist_5_4() {
    let mut r = running(2, 3, 3);
    r.ram.clone().write_u32(BUF, 0xABCD).expect("buffer memory");
    r.drv
        .add_buffers(1, &[read_buf(4), write_buf(16)], 42)
        .unwrap();
    assert!(r.drv.kick(1).unwrap());
    assert_eq!(r.dev.st().notifications, vec![1]);
    assert_eq!(r.dev.complete(1, 16), 1);
    assert_eq!(r.dev.st().sent, vec![2], "queue 1 -> message 2");
    let done = deliver_messages(&mut r, 3);
    assert_eq!(
        done,
        vec![UsedElem {
            queue: 1,
            token: 42,
            head: 0,
            len: 16
        }]
    );
    assert_eq!(r.drv.queue(1).unwrap().num_free(), 8);
    let c = r.drv.counter_summary();
    assert_eq!((c.messages[2].isr, c.messages[2].dpc), (1, 1));
    assert_eq!((c.messages[0].isr, c.messages[1].isr), (0, 0));
    assert_eq!(c.last_message_id, Some(2));
    assert_eq!(
        r.log.count(|e| matches!(
            e,
            EventKind::CounterSummary {
                message: Some(2),
                isr_count: 1,
                dpc_count: 1
            }
        )),
        1
    );
    assert_eq!(
        r.log.count(|e| *e
            == EventKind::DpcRan {
                message_id: Some(2),
                completions: 1
            }),
        1
    );
    // A config change arrives on message 0 and is noticed through config_generation.
    r.dev.config_change();
    assert_eq!(r.dev.st().sent, vec![0]);
    let sent = std::mem::take(&mut r.dev.st().sent);
    assert!(r.drv.isr_message(u32::from(sent[0])));
    assert!(r.drv.dpc(Some(0)).unwrap().config_changed);
}

#[test]
fn intx_isr_reads_status_first_and_deasserts_checklist_4_1() {
    let mut r = running(2, 3, 0);
    r.drv.add_buffers(0, &[read_buf(4)], 1).unwrap();
    r.drv.add_buffers(1, &[write_buf(4)], 2).unwrap();
    r.drv.kick(0).unwrap();
    r.drv.kick(1).unwrap();
    r.dev.complete(0, 0);
    r.dev.complete(1, 4);
    assert!(r.dev.st().line);
    let (runs, done) = service_line(&mut r, 100);
    assert_eq!(runs, 1, "one ISR deasserts the line");
    assert_eq!(done.len(), 2);
    assert!(!r.dev.st().line);
    assert_eq!(r.dev.st().isr_reads, 1);
    assert!(!r.drv.isr_intx(), "ISR status 0: not ours");
    let c = r.drv.counter_summary();
    assert_eq!((c.intx.isr, c.intx.dpc, c.not_ours), (2, 1, 1));
    assert_eq!(c.last_isr_status, Some(0));
    assert_eq!(
        r.log.count(|e| matches!(
            e,
            EventKind::CounterSummary {
                message: None,
                isr_count: 2,
                ..
            }
        )),
        1
    );
    r.dev.config_change();
    assert!(r.drv.isr_intx());
    assert_eq!(r.drv.counters().last_isr_status, Some(2));
    assert!(r.drv.dpc(None).unwrap().config_changed);
}

#[test]
fn interrupt_suppression_no_interrupt_flag_and_event_idx_virtio_1_2_2_7_10() {
    for event_idx in [false, true] {
        let mut r = RigBuilder::new(1, 2, 2).event_idx(event_idx).running();
        assert_eq!(r.drv.queue(0).unwrap().event_idx(), event_idx);
        r.drv.disable_queue_interrupts(0).unwrap();
        r.submit_read_completed(0, 1);
        let reason = if event_idx {
            SuppressReason::EventIdx
        } else {
            SuppressReason::AvailNoInterrupt
        };
        assert_eq!(r.dev.st().suppressed, vec![(Cause::Queue(0), reason)]);
        assert!(r.dev.st().sent.is_empty());
        let mut done = Vec::new();
        assert_eq!(
            r.drv.enable_queue_interrupts(0, &mut done).unwrap(),
            1,
            "the waiting entry is collected on re-enabling"
        );
        assert_eq!(done[0].token, 1);
        r.submit_read_completed(0, 2);
        let st = r.dev.st();
        assert_eq!(
            st.sent,
            vec![1],
            "event_idx {event_idx}: {:?}",
            st.suppressed
        );
    }
}

#[test]
fn queue_size_is_shrunk_to_a_power_of_two_and_errors_are_named() {
    let r = RigBuilder::new(1, 2, 2)
        .spec(|s| s.queue_size = 300)
        .running();
    assert_eq!(r.dev.st().queues[0].size, 256);
    let mut r = RigBuilder::new(1, 2, 2).spec(|s| s.queue_size = 0).build();
    assert_eq!(
        r.drv.start(),
        Err(DriverError::QueueUnavailable { queue: 0 })
    );
    let mut r = RigBuilder::new(1, 2, 2).config(|c| c.queues = 3).build();
    assert_eq!(
        r.drv.start(),
        Err(DriverError::NotEnoughQueues {
            wanted: 3,
            available: 1
        })
    );
}

// ---- failure catalogue rows reproduced by DriverFaults -----------------------------------

fn faulty(queues: u16, table: u16, messages: u16, faults: impl FnOnce(&mut DriverFaults)) -> Rig {
    RigBuilder::new(queues, table, messages)
        .faults(faults)
        .build()
}

#[test]
fn row_1_skipping_isr_status_read_storms() {
    let faults = |f: &mut DriverFaults| f.skip_isr_status_read = true;
    let mut r = RigBuilder::new(1, 2, 0).faults(faults).running();
    r.submit_read_completed(0, 1);
    let (runs, _) = service_line(&mut r, 1000);
    assert_eq!(runs, 1000, "line never deasserts");
    assert!(r.dev.st().line);
    assert_eq!(r.dev.st().isr_reads, 0);
    assert_eq!(
        r.log.count(|e| matches!(
            e,
            EventKind::IsrRan {
                isr_status: None,
                claimed: true,
                ..
            }
        )),
        1000
    );
}

#[test]
fn row_2_vectors_programmed_before_reset_read_0xffff_while_running() {
    let faults = |f: &mut DriverFaults| f.program_vectors_before_reset = true;
    let mut r = RigBuilder::new(2, 3, 3).faults(faults).running();
    let h = r.dev.st().history.clone();
    let last_reset = rposition(&h, |o| *o == FakeOp::Reset).unwrap();
    let last_vec = rposition(&h, |o| matches!(o, FakeOp::QueueVector { .. })).unwrap();
    assert!(last_vec < last_reset);
    assert_eq!(vectors(&r.dev), (NO_VECTOR, vec![NO_VECTOR, NO_VECTOR]));
    let check = r.drv.verify_vectors();
    assert_eq!(check.len(), 3, "msix_config and two queues");
    assert!(check.iter().all(|v| !v.ok() && v.read_back == NO_VECTOR));
    r.submit_read_completed(0, 1);
    assert!(r.dev.st().sent.is_empty());
    assert_eq!(
        r.dev.st().suppressed,
        vec![(Cause::Queue(0), SuppressReason::NoVector)]
    );
    assert!(deliver_messages(&mut r, 3).is_empty());
    let counters = r.drv.counters();
    assert!(!counters.messages.is_empty());
    assert!(counters.messages.iter().all(|c| c.isr == 0));
    // Without the fault a quiesce/resume restores them; with it resume leaves them lost.
    r.drv.quiesce().unwrap();
    r.drv.resume().unwrap();
    assert_eq!(vectors(&r.dev).0, NO_VECTOR);
}

/// Row 27: the first start programs and reads back every vector; a resume after the reset of
/// a power transition brings the device back to DRIVER_OK without them (virtio 1.2 4.1.5.1.2:
/// a reset leaves every selector at VIRTIO_MSI_NO_VECTOR).
#[test]
fn row_27_vectors_only_at_first_start_are_lost_across_a_resume() {
    let faults = |f: &mut DriverFaults| f.skip_vectors_on_resume = true;
    let mut r = RigBuilder::new(2, 3, 3).faults(faults).running();
    assert_eq!(vectors(&r.dev), (0, vec![1, 2]));
    r.drv.quiesce().unwrap();
    assert_eq!(vectors(&r.dev), (NO_VECTOR, vec![NO_VECTOR, NO_VECTOR]));
    r.drv.resume().unwrap();
    assert_eq!(r.drv.state(), DriverState::Running);
    assert_eq!(vectors(&r.dev), (NO_VECTOR, vec![NO_VECTOR, NO_VECTOR]));
    let check = r.drv.verify_vectors();
    assert_eq!(check.len(), 3, "msix_config and two queues");
    assert!(check.iter().all(|v| !v.ok()));
    // The same driver without the fault programs them again on resume.
    let mut ok = running(2, 3, 3);
    ok.drv.quiesce().unwrap();
    ok.drv.resume().unwrap();
    assert_eq!(vectors(&ok.dev), (0, vec![1, 2]));
}

#[test]
fn row_3_apic_vector_written_instead_of_message_number() {
    let faults = |f: &mut DriverFaults| f.write_apic_vector_instead_of_message_number = true;
    let mut r = RigBuilder::new(2, 3, 3)
        .faults(faults)
        .config(|c| c.grant = InterruptGrant::messages(3).with_apic_vectors(vec![0xE1, 0x93, 0xA2]))
        .build();
    let err = r.drv.start().unwrap_err();
    assert_eq!(
        err,
        DriverError::DeviceRefusesVectors {
            selector: Selector::MsixConfig,
            written: 0xE1,
            read_back: NO_VECTOR,
            plans_tried: 2
        }
    );
    assert!(
        r.log.count(|e| matches!(
            e,
            EventKind::VectorWritten {
                written: 0xE1,
                read_back: NO_VECTOR,
                ..
            }
        )) >= 1
    );
    let mut r = faulty(2, 3, 3, faults);
    assert_eq!(
        r.drv.start(),
        Err(DriverError::MissingApicVector { message: 0 })
    );
}

#[test]
fn row_4_assuming_per_queue_vectors_loses_queue_interrupts() {
    let faults = |f: &mut DriverFaults| f.assume_per_queue_vectors = true;
    // The device's table has 3 entries but the OS granted only 2 messages.
    let mut r = RigBuilder::new(2, 3, 2).faults(faults).running();
    assert_eq!(vectors(&r.dev), (0, vec![1, 2]));
    r.submit_read_completed(1, 7);
    assert_eq!(r.dev.st().sent, vec![2]);
    assert!(
        deliver_messages(&mut r, 2).is_empty(),
        "message 2 was never granted"
    );
    assert_eq!(r.drv.queue(1).unwrap().in_flight(), 1);
    // Same grant without the fault: everything on message 0, and the completion arrives.
    let mut r = running(2, 3, 2);
    r.submit_read_completed(1, 7);
    assert_eq!(deliver_messages(&mut r, 2).len(), 1);
    // A table smaller than the plan: with the fault init fails instead of falling back.
    let mut r = faulty(2, 2, 2, faults);
    assert!(matches!(
        r.drv.start(),
        Err(DriverError::DeviceRefusesVectors {
            selector: Selector::Queue(1),
            written: 2,
            plans_tried: 1,
            ..
        })
    ));
}

#[test]
fn row_5_config_vector_left_unset_misses_config_changes() {
    let faults = |f: &mut DriverFaults| f.leave_config_vector_unset = true;
    let mut r = RigBuilder::new(2, 3, 3).faults(faults).running();
    assert_eq!(vectors(&r.dev), (NO_VECTOR, vec![1, 2]));
    r.dev.config_change();
    assert!(r.dev.st().sent.is_empty());
    assert_eq!(
        r.dev.st().suppressed,
        vec![(Cause::Config, SuppressReason::NoVector)]
    );
    let check = r.drv.verify_vectors();
    assert!(!check[0].ok() && check[0].selector == Selector::MsixConfig);
    assert!(check.len() > 1, "the queues were checked too");
    assert!(check[1..].iter().all(|v| v.ok()));
}

#[test]
fn row_8_message_id_is_bound_checked() {
    let mut r = running(2, 3, 3);
    assert!(!r.drv.isr_message(3));
    assert!(!r.drv.isr_message(u32::MAX));
    assert_eq!(r.drv.counters().unmapped_message_ids, 2);
    let faults = |f: &mut DriverFaults| f.skip_message_id_bound_check = true;
    let mut r = RigBuilder::new(2, 3, 3).faults(faults).running();
    let crashed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| r.drv.isr_message(3)));
    assert!(crashed.is_err(), "unchecked index crashes");
}

#[test]
fn row_9_message_0_is_a_real_message() {
    let mut r = running(2, 3, 1);
    assert!(r.drv.isr_message(0));
    let faults = |f: &mut DriverFaults| f.message_zero_means_not_message = true;
    let mut r = RigBuilder::new(2, 3, 1).faults(faults).running();
    r.submit_read_completed(0, 1);
    assert!(deliver_messages(&mut r, 1).is_empty());
    assert_eq!(
        r.log.count(|e| *e
            == EventKind::IsrRan {
                message_id: Some(0),
                claimed: false,
                isr_status: None
            }),
        1
    );
}

#[test]
fn row_10_queue_enabled_before_vectors_verified() {
    let faults = |f: &mut DriverFaults| f.enable_queues_before_vectors_verified = true;
    let r = RigBuilder::new(2, 3, 3)
        .faults(faults)
        .device(|st| st.refuse_vectors_from = Some(1))
        .running();
    let h = r.dev.st().history.clone();
    let refused = position(&h, |o| {
        *o == FakeOp::QueueVector {
            queue: 0,
            written: 1,
            stored: NO_VECTOR,
        }
    })
    .unwrap();
    let enable = position(&h, |o| *o == FakeOp::QueueEnable { queue: 0 }).unwrap();
    let fallback = position(&h, |o| {
        *o == FakeOp::QueueVector {
            queue: 0,
            written: 0,
            stored: 0,
        }
    })
    .unwrap();
    assert!(refused < enable && enable < fallback, "{h:?}");
    assert!(
        !h[enable..fallback].contains(&FakeOp::Reset),
        "retried without reset"
    );
    // Without the fault no queue is enabled until the plan is accepted.
    let r = RigBuilder::new(2, 3, 3)
        .device(|st| st.refuse_vectors_from = Some(1))
        .running();
    let h = r.dev.st().history.clone();
    assert_no_queue_enabled_before_the_last_vector_write(&h);
}

#[test]
fn row_11_not_mine_without_reading_starves_the_shared_line() {
    let faults = |f: &mut DriverFaults| f.return_not_mine_without_reading_isr = true;
    let mut r = RigBuilder::new(1, 2, 0).faults(faults).running();
    r.submit_read_completed(0, 1);
    let (runs, done) = service_line(&mut r, 50);
    assert_eq!(runs, 50);
    assert!(done.is_empty());
    assert!(r.dev.st().line);
    assert_eq!(r.dev.st().isr_reads, 0);
}

#[test]
fn row_12_surprise_removal_all_ones_is_not_ours() {
    let mut r = running(1, 2, 0);
    r.dev.st().removed = true;
    assert!(!r.drv.isr_intx());
    assert_eq!(r.drv.state(), DriverState::Removed);
    assert_eq!(r.drv.counters().last_isr_status, Some(0xFF));
    assert_eq!(r.log.count(|e| matches!(e, EventKind::DpcRan { .. })), 0);
    assert!(matches!(
        r.drv.start(),
        Err(DriverError::DeviceGone { status: 0xFF })
    ));

    let faults = |f: &mut DriverFaults| f.treat_all_ones_isr_as_ours = true;
    let mut r = RigBuilder::new(1, 2, 0).faults(faults).running();
    r.dev.st().removed = true;
    assert!(r.drv.isr_intx(), "phantom interrupt claimed");
    let out = r.drv.dpc(None).unwrap();
    assert!(out.config_changed, "0xFF has the config bit too");
    assert_eq!(
        r.log.count(|e| *e
            == EventKind::IsrRan {
                message_id: None,
                claimed: true,
                isr_status: Some(0xFF)
            }),
        1
    );
    assert_eq!(
        r.log.count(|e| matches!(
            e,
            EventKind::DpcRan {
                message_id: None,
                ..
            }
        )),
        1
    );
}

#[test]
fn intx_queue_interrupts_off_and_on_strand_nothing_virtio_1_2_2_7_14() {
    for event_idx in [false, true] {
        let mut r = RigBuilder::new(1, 2, 0).event_idx(event_idx).running();
        r.drv.disable_queue_interrupts(0).unwrap();
        r.submit_read_completed(0, 1);
        assert!(!r.dev.st().line, "suppressed: the line stays low");
        // Re-enabling collects what arrived meanwhile, with no ISR read behind it.
        let mut done = Vec::new();
        r.drv.enable_queue_interrupts(0, &mut done).unwrap();
        assert_eq!(done.len(), 1, "event_idx {event_idx}: completion stranded");
        // The line DPC drains too, whatever the ISR recorded (nothing left here).
        assert!(r.drv.dpc(None).unwrap().completions.is_empty());
        // And the next completion interrupts again (used_event caught up with used.idx).
        r.submit_read_completed(0, 2);
        assert!(
            r.dev.st().line,
            "event_idx {event_idx}: device suppressed for good"
        );
        let (runs, done) = service_line(&mut r, 10);
        assert_eq!((runs, done.len()), (1, 1));
    }
}

#[test]
fn drain_queue_polls_without_an_interrupt_and_keeps_interrupts_off() {
    for messages in [0u16, 2] {
        let mut r = running(2, 2, messages);
        r.drv.disable_queue_interrupts(1).unwrap();
        r.drv.add_buffers(1, &[read_buf(4)], 5).unwrap();
        r.drv.add_buffers(0, &[read_buf(4)], 6).unwrap();
        r.drv.kick(1).unwrap();
        r.drv.kick(0).unwrap();
        r.dev.complete(1, 0);
        let mut done = Vec::new();
        assert_eq!(r.drv.drain_queue(1, &mut done).unwrap(), 1);
        assert_eq!(done[0].token, 5);
        // Still off after the drain: the next completion is suppressed (virtio 1.2, 2.7.10).
        r.submit_read_completed(1, 7);
        assert_eq!(
            r.dev.st().suppressed.last(),
            Some(&(Cause::Queue(1), SuppressReason::EventIdx))
        );
        // Queue 0 (interrupts on) completes; its DPC shares message 0 (or the line) with
        // queue 1, and must not turn queue 1's interrupts back on.
        r.dev.complete(0, 0);
        let got = if messages == 0 {
            service_line(&mut r, 4).1
        } else {
            deliver_messages(&mut r, messages)
        };
        let tokens: Vec<u64> = got.iter().map(|c| c.token).collect();
        assert!(tokens.contains(&6) && tokens.contains(&7), "{tokens:?}");
        assert!(!r.drv.queue(1).unwrap().interrupts_enabled());
        let mut all = Vec::new();
        assert_eq!(r.drv.poll(&mut all).unwrap(), 0);
    }
}

#[test]
fn device_config_read_retries_while_config_generation_moves_virtio_1_2_2_5_1() {
    let mut r = running(1, 2, 2);
    r.dev.st().device_cfg[..8].copy_from_slice(&0x1_0000_0800u64.to_le_bytes());
    r.dev.st().device_cfg[8..12].copy_from_slice(&0xABCDu32.to_le_bytes());
    let gen0 = r.dev.st().config_generation;
    // Two reads race a change: the first two passes see the generation move.
    r.dev.st().generation_bumps_on_read = 2;
    let reads_before = r.dev.st().isr_reads;
    let ((capacity, word), generation) = r
        .drv
        .read_device_config(|c| Ok((c.read_u64(0)?, c.read_u32(8)?)))
        .unwrap();
    assert_eq!((capacity, word), (0x1_0000_0800, 0xABCD));
    assert_eq!(generation, gen0.wrapping_add(2));
    assert_eq!(r.dev.st().isr_reads, reads_before);
    // A device that never settles is an error, not a loop.
    r.dev.st().generation_bumps_on_read = u32::MAX;
    assert_eq!(
        r.drv.read_device_config(|c| c.read_u8(0)),
        Err(DriverError::ConfigGenerationUnstable {
            attempts: crate::CONFIG_READ_ATTEMPTS
        })
    );
    r.dev.st().generation_bumps_on_read = 0;
    // Widths and bounds of virtio 1.2, 4.1.3.1.
    assert!(matches!(
        r.drv.read_device_config(|c| c.read_u32(2)),
        Err(DriverError::DeviceConfigRange {
            offset: 2,
            len: 4,
            ..
        })
    ));
    assert!(matches!(
        r.drv.read_device_config(|c| c.read_u16(0x100)),
        Err(DriverError::DeviceConfigRange { .. })
    ));
}

/// A platform that records what the driver told it.
#[derive(Default)]
struct Recorded(Vec<crate::ModeChange>);

impl crate::PlatformHooks for Recorded {
    fn interrupt_mode_changed(&mut self, change: crate::ModeChange) {
        self.0.push(change);
    }
}

#[test]
fn ladder_fallback_to_intx_tells_the_platform_once_and_resume_stays_on_the_line() {
    let ram = SharedRam::new(RAM_BASE, 0x10000);
    let dev = FakeDevice::new(spec(2, 3, true), ram.clone());
    dev.st().refuse_vectors_from = Some(0);
    let mut probe = dev.clone();
    let caps = VirtioPciCaps::parse(&mut probe).unwrap();
    let mut config = DriverConfig::new(2, InterruptGrant::messages(3), RAM_BASE, 0x8000);
    config.policy = VectorPolicy::LinuxLadder;
    let mut drv =
        VirtioPciDriver::new(dev.clone(), ram, caps, config).with_platform(Recorded::default());
    drv.start().unwrap();
    assert_eq!(
        drv.platform().0,
        vec![crate::ModeChange::MsixOffLineNeeded { plans_tried: 2 }]
    );
    assert_eq!(
        dev.st().config.bytes[0x9B] & 0x80,
        0,
        "MSI-X Enable cleared"
    );
    // The device would now accept vectors, but the platform wired the line: stay there.
    dev.st().refuse_vectors_from = None;
    drv.quiesce().unwrap();
    drv.resume().unwrap();
    assert!(drv.plan().unwrap().is_intx());
    assert_eq!(drv.platform().0.len(), 1, "no second notice");
    assert_eq!(dev.st().msix_config, NO_VECTOR);
    drv.add_buffers(0, &[read_buf(4)], 1).unwrap();
    drv.kick(0).unwrap();
    dev.complete(0, 0);
    assert!(dev.st().line, "the completion interrupts on the line");
}
