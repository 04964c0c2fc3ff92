//! The bring-up itself: negotiation, queues, the vector plan with read-back and fallback,
//! quiesce/resume, INTx and message ISRs, DPCs and the checklist's counters.

use crate::access::{GuestRam, RegisterAccess, RingAllocator, Width};
use crate::caps::VirtioPciCaps;
use crate::common_cfg::{CommonCfg, Negotiated, feature, negotiate_features, offset, status};
use crate::error::DriverError;
use crate::queue::{Buffer, MAX_QUEUE_SIZE, NotifyAddress, RingAddresses, SplitQueue, UsedElem};
use crate::vectors::{MessageNumber, VectorPlan, VectorPolicy};
use std::sync::Arc;
use virq_events::{EventKind, EventSink, NO_VECTOR, NullSink, Selector};

pub use virq_spec::virtio_pci::{ISR_CONFIG, ISR_QUEUE};

/// What the OS granted: `messages` MSI-X messages (0 = INTx), and for evidence and for the
/// row 3 fault, the APIC vector behind each message (index = MessageNumber).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct InterruptGrant {
    /// MSI-X messages granted; 0 means the line interrupt.
    pub messages: u16,
    /// The APIC vector behind each message, indexed by MessageNumber (may be empty).
    pub apic_vectors: Vec<u32>,
}

impl InterruptGrant {
    /// A grant of no messages: the device is driven on INTx.
    pub fn intx() -> Self {
        Self::default()
    }
    /// A grant of `messages` MSI-X messages, APIC vectors unknown.
    pub fn messages(messages: u16) -> Self {
        Self {
            messages,
            apic_vectors: Vec::new(),
        }
    }
    /// The same grant, with the APIC vector of each message for the evidence.
    pub fn with_apic_vectors(mut self, apic_vectors: Vec<u32>) -> Self {
        self.apic_vectors = apic_vectors;
        self
    }
}

/// What the caller wants from the device.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DriverConfig {
    /// Features the driver can use; must include VIRTIO_F_VERSION_1.
    pub wanted_features: u64,
    /// Queues to set up (0..queues).
    pub queues: u16,
    /// Queues are shrunk to the largest power of two not above this and the device's size.
    pub max_queue_size: u16,
    /// What the OS granted.
    pub grant: InterruptGrant,
    /// How vectors are chosen and what happens when the device refuses them.
    pub policy: VectorPolicy,
    /// Guest-physical region the rings are allocated in.
    pub ring_base: u64,
    /// Length of the ring region in bytes.
    pub ring_len: u64,
    /// Reads of `device_status` to wait for a reset to finish.
    pub reset_poll_limit: u32,
    /// Per-message state entries (counters) the driver allocates; `None`: one per granted
    /// message. A driver that sizes this from the first CM descriptor's `MessageCount` gets 1
    /// on Windows, which lists MSI-X messages one descriptor each (catalogue row 8).
    pub mapped_messages: Option<u16>,
}

impl DriverConfig {
    /// A config for `queues` queues over the grant, with rings in `ring_len` bytes from
    /// `ring_base`; VERSION_1 and EVENT_IDX wanted, queues capped at 256 entries.
    pub fn new(queues: u16, grant: InterruptGrant, ring_base: u64, ring_len: u64) -> Self {
        Self {
            wanted_features: feature::VERSION_1 | feature::RING_EVENT_IDX,
            queues,
            max_queue_size: 256,
            grant,
            policy: VectorPolicy::Checklist,
            ring_base,
            ring_len,
            reset_poll_limit: 1000,
            mapped_messages: None,
        }
    }
}

/// Driver-side faults from the failure catalogue, each reproducing its row's symptom for real.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DriverFaults {
    /// Row 1: the INTx ISR claims the interrupt without reading ISR status, so the level
    /// line never deasserts and the ISR storms.
    pub skip_isr_status_read: bool,
    /// Row 2: vectors are programmed (and verified) before the reset of the bring-up, and not
    /// again after it, nor on resume; they read 0xFFFF while running.
    pub program_vectors_before_reset: bool,
    /// Row 3: the APIC `Vector` of each message is written instead of its `MessageNumber`
    /// (needs [`InterruptGrant::apic_vectors`]).
    pub write_apic_vector_instead_of_message_number: bool,
    /// Row 4: config on message 0 and queue i on message i + 1 whatever the grant, and no
    /// fallback when a read-back fails.
    pub assume_per_queue_vectors: bool,
    /// Row 5: `msix_config` is never written (stays 0xFFFF) while queues use messages.
    pub leave_config_vector_unset: bool,
    /// Row 8: the message ISR indexes its per-message counters without a bound check
    /// (a message ID beyond the grant panics, the Rust form of a bugcheck).
    pub skip_message_id_bound_check: bool,
    /// Row 9: message ID 0 is taken as "not a message interrupt" and left unclaimed.
    pub message_zero_means_not_message: bool,
    /// Row 10: each queue is enabled right after its own vector write, before the whole plan
    /// is verified, and the fallback re-programs without a reset.
    pub enable_queues_before_vectors_verified: bool,
    /// Row 11: on a shared line the INTx ISR answers "not mine" without reading ISR status.
    pub return_not_mine_without_reading_isr: bool,
    /// Row 12: an ISR status of 0xFF (surprise removal) is treated as real causes, so DPCs
    /// run against a gone device.
    pub treat_all_ones_isr_as_ours: bool,
    /// Row 27: vectors are programmed only at the first start (a Windows driver that does it
    /// in `EvtDevicePrepareHardware` only); a resume after a reset (`EvtDeviceD0Entry`) brings
    /// the device back without them, and they read 0xFFFF.
    pub skip_vectors_on_resume: bool,
}

/// Where the driver is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DriverState {
    /// Built, not brought up yet.
    Idle,
    /// DRIVER_OK is set and interrupts are connected.
    Running,
    /// Reset by [`VirtioPciDriver::quiesce`] (a power transition); `resume` brings it back.
    Quiesced,
    /// Bring-up failed; FAILED was set in `device_status`.
    Failed,
    /// ISR status or `device_status` read all ones.
    Removed,
}

/// ISR and DPC counts of one message (or of the INTx line).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MessageCounters {
    /// ISR (MSI-X message routine or INTx ISR) invocations.
    pub isr: u64,
    /// DPC invocations.
    pub dpc: u64,
}

/// Checklist section 5.4: counters, not prints.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Indexed by MessageNumber, one per granted message.
    pub messages: Vec<MessageCounters>,
    /// The INTx line's counts.
    pub intx: MessageCounters,
    /// The MessageID of the last message ISR.
    pub last_message_id: Option<u32>,
    /// ISR status as the last INTx ISR read it (read-to-clear).
    pub last_isr_status: Option<u8>,
    /// Message ISRs refused because the ID was beyond the granted messages (row 8).
    pub unmapped_message_ids: u64,
    /// INTx ISRs that read 0 (not ours) or 0xFF (gone).
    pub not_ours: u64,
}

/// One selector as read back while running.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VectorReadBack {
    /// The selector read back: `msix_config` or a queue's `queue_msix_vector`.
    pub selector: Selector,
    /// The value the plan intended (`NO_VECTOR` for INTx or an unrouted source).
    pub expected: u16,
    /// What the device returned.
    pub read_back: u16,
}

impl VectorReadBack {
    /// The device kept the vector the plan wrote.
    pub fn ok(&self) -> bool {
        self.expected == self.read_back
    }
}

/// What a DPC did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DpcOutcome {
    /// Chains the device completed, taken from the used rings.
    pub completions: Vec<UsedElem>,
    /// The ISR saw a configuration change (ISR bit 1 or the `msix_config` message).
    pub config_changed: bool,
}

struct VectorFailure {
    selector: Selector,
    written: u16,
    read_back: u16,
}

/// A change of interrupt mode the driver made itself, which the platform must follow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ModeChange {
    /// The device refused every message plan of the ladder, so the driver cleared MSI-X
    /// Enable (PCI 3.0, 6.8.2.3): the function interrupts through INTA# from now on. The
    /// platform disconnects its message interrupts and connects (and unmasks) the line.
    MsixOffLineNeeded {
        /// Message plans the device refused first.
        plans_tried: usize,
    },
}

/// What a host implements besides the two doors: how it learns of interrupt-mode changes the
/// driver makes on its own, without inspecting [`VirtioPciDriver::plan`].
pub trait PlatformHooks {
    /// Called once per change, right after the driver made it and before the bring-up goes on
    /// (so before DRIVER_OK: no interrupt can be missed while the platform rewires).
    fn interrupt_mode_changed(&mut self, change: ModeChange);
}

/// A platform that needs no notice (it grants INTx only, or checks the plan itself).
#[derive(Clone, Copy, Debug, Default)]
pub struct NoHooks;

impl PlatformHooks for NoHooks {
    fn interrupt_mode_changed(&mut self, _change: ModeChange) {}
}

impl<T: PlatformHooks + ?Sized> PlatformHooks for &mut T {
    fn interrupt_mode_changed(&mut self, change: ModeChange) {
        (**self).interrupt_mode_changed(change)
    }
}

impl<T: PlatformHooks + ?Sized> PlatformHooks for Box<T> {
    fn interrupt_mode_changed(&mut self, change: ModeChange) {
        (**self).interrupt_mode_changed(change)
    }
}

/// Most passes [`VirtioPciDriver::read_device_config`] makes before giving up on a device
/// whose `config_generation` keeps moving.
pub const CONFIG_READ_ATTEMPTS: u32 = 64;

/// Typed reads of the device-specific configuration, with the access widths virtio 1.2,
/// 4.1.3.1 requires; handed to the closure of [`VirtioPciDriver::read_device_config`].
pub struct DeviceConfig<'a, R: RegisterAccess> {
    regs: &'a mut R,
    region: crate::caps::CapRegion,
}

impl<R: RegisterAccess> DeviceConfig<'_, R> {
    fn read(&mut self, offset: u32, width: Width) -> Result<u64, DriverError> {
        let len = width.bytes() as u32;
        if offset % len != 0
            || offset
                .checked_add(len)
                .is_none_or(|end| end > self.region.length)
        {
            return Err(DriverError::DeviceConfigRange {
                offset,
                len,
                length: self.region.length,
            });
        }
        let at = u64::from(self.region.offset) + u64::from(offset);
        Ok(self.regs.bar_read(self.region.bar, at, width))
    }
    /// The 8-bit device configuration field at `offset`.
    pub fn read_u8(&mut self, offset: u32) -> Result<u8, DriverError> {
        Ok(self.read(offset, Width::U8)? as u8)
    }
    /// The 16-bit device configuration field at `offset`.
    pub fn read_u16(&mut self, offset: u32) -> Result<u16, DriverError> {
        Ok(self.read(offset, Width::U16)? as u16)
    }
    /// The 32-bit device configuration field at `offset`.
    pub fn read_u32(&mut self, offset: u32) -> Result<u32, DriverError> {
        Ok(self.read(offset, Width::U32)? as u32)
    }
    /// A 64-bit field as two 32-bit reads, low half first (4.1.3.1); the generation loop
    /// around the closure makes the pair consistent.
    pub fn read_u64(&mut self, offset: u32) -> Result<u64, DriverError> {
        let low = self.read_u32(offset)?;
        let high = self.read_u32(offset + 4)?;
        Ok((u64::from(high) << 32) | u64::from(low))
    }
}

/// A virtio-pci modern driver core for one function.
pub struct VirtioPciDriver<R: RegisterAccess, M: GuestRam, P: PlatformHooks = NoHooks> {
    regs: R,
    ram: M,
    platform: P,
    /// The driver itself turned MSI-X off (ladder fallback): later bring-ups stay on INTx,
    /// the mode the platform was told to wire.
    msix_turned_off: bool,
    caps: VirtioPciCaps,
    config: DriverConfig,
    faults: DriverFaults,
    sink: Arc<dyn EventSink>,
    /// A sink was given ([`VirtioPciDriver::with_sink`]): until then the per-interrupt events
    /// are not even built (building and dropping an `EventKind` costs a call into its drop
    /// glue on every notify, ISR and DPC).
    recording: bool,
    state: DriverState,
    features: Option<Negotiated>,
    alloc: RingAllocator,
    queues: Vec<SplitQueue>,
    enabled: Vec<bool>,
    plan: Option<VectorPlan>,
    counters: Counters,
    pending_intx: u8,
    config_generation: u8,
    /// What the latest INTx ISR invocation read from ISR status (None: it did not read).
    last_isr_read: Option<u8>,
    /// A bring-up has reached DRIVER_OK before (later ones are resumes).
    started_once: bool,
}

impl<R: RegisterAccess, M: GuestRam> VirtioPciDriver<R, M, NoHooks> {
    /// A driver whose platform needs no notice of mode changes; see
    /// [`VirtioPciDriver::with_platform`].
    pub fn new(regs: R, ram: M, caps: VirtioPciCaps, config: DriverConfig) -> Self {
        let counters = Counters {
            messages: vec![
                MessageCounters::default();
                usize::from(config.mapped_messages.unwrap_or(config.grant.messages))
            ],
            ..Counters::default()
        };
        Self {
            regs,
            ram,
            platform: NoHooks,
            msix_turned_off: false,
            caps,
            alloc: RingAllocator::new(config.ring_base, config.ring_len),
            config,
            faults: DriverFaults::default(),
            sink: Arc::new(NullSink),
            recording: false,
            state: DriverState::Idle,
            features: None,
            queues: Vec::new(),
            enabled: Vec::new(),
            plan: None,
            counters,
            pending_intx: 0,
            config_generation: 0,
            last_isr_read: None,
            started_once: false,
        }
    }
}

impl<R: RegisterAccess, M: GuestRam, P: PlatformHooks> VirtioPciDriver<R, M, P> {
    /// Tell `platform` of every interrupt-mode change the driver makes ([`PlatformHooks`]).
    pub fn with_platform<Q: PlatformHooks>(self, platform: Q) -> VirtioPciDriver<R, M, Q> {
        VirtioPciDriver {
            regs: self.regs,
            ram: self.ram,
            platform,
            msix_turned_off: self.msix_turned_off,
            caps: self.caps,
            config: self.config,
            faults: self.faults,
            sink: self.sink,
            recording: self.recording,
            state: self.state,
            features: self.features,
            alloc: self.alloc,
            queues: self.queues,
            enabled: self.enabled,
            plan: self.plan,
            counters: self.counters,
            pending_intx: self.pending_intx,
            config_generation: self.config_generation,
            last_isr_read: self.last_isr_read,
            started_once: self.started_once,
        }
    }

    /// The platform (interrupt connection, evidence hooks) the driver was built with.
    pub fn platform(&self) -> &P {
        &self.platform
    }
    /// The platform, mutable.
    pub fn platform_mut(&mut self) -> &mut P {
        &mut self.platform
    }

    /// Send evidence to `sink`.
    pub fn with_sink(mut self, sink: Arc<dyn EventSink>) -> Self {
        self.sink = sink;
        self.recording = true;
        self
    }

    /// Send the event `kind` builds, on the paths every interrupt takes: not built at all while
    /// no sink was given.
    #[inline(always)]
    fn emit_hot(&self, kind: impl FnOnce() -> EventKind) {
        if self.recording {
            self.sink.emit(kind());
        }
    }

    /// Inject driver-side faults.
    pub fn with_faults(mut self, faults: DriverFaults) -> Self {
        self.faults = faults;
        self
    }

    /// Where the driver is in its life.
    pub fn state(&self) -> DriverState {
        self.state
    }
    /// The capabilities found at bring-up.
    pub fn caps(&self) -> &VirtioPciCaps {
        &self.caps
    }
    /// The negotiated features, once FEATURES_OK stuck.
    pub fn features(&self) -> Option<Negotiated> {
        self.features
    }
    /// The plan in force (the rung of the ladder the device accepted).
    pub fn plan(&self) -> Option<&VectorPlan> {
        self.plan.as_ref()
    }
    /// What the latest INTx ISR invocation read from ISR status, or None if it did not read
    /// (for the sampled `ISR:` print of checklist 5.4).
    pub fn last_isr_read(&self) -> Option<u8> {
        self.last_isr_read
    }
    /// ISR and DPC counts (checklist 5.4).
    pub fn counters(&self) -> &Counters {
        &self.counters
    }
    /// Queue `queue`, once set up.
    pub fn queue(&self, queue: u16) -> Option<&SplitQueue> {
        self.queues.get(usize::from(queue))
    }
    /// The register access, for a test or host to poke the device directly.
    pub fn regs_mut(&mut self) -> &mut R {
        &mut self.regs
    }
    /// Guest RAM, for buffers and to inspect what the device wrote.
    pub fn ram_mut(&mut self) -> &mut M {
        &mut self.ram
    }
    /// Give back the register access and guest RAM.
    pub fn into_parts(self) -> (R, M) {
        (self.regs, self.ram)
    }

    fn cc(&mut self) -> CommonCfg<'_, R> {
        CommonCfg::new(&mut self.regs, self.caps.common)
    }

    /// Full bring-up (virtio 1.2 section 3.1.1) through DRIVER_OK. On failure FAILED is set.
    pub fn start(&mut self) -> Result<(), DriverError> {
        let result = self.bring_up();
        self.finish(result)
    }

    /// Reset the device and forget in-flight chains; returns their tokens (they will never
    /// complete). Vectors are gone too: [`VirtioPciDriver::resume`] re-applies them.
    pub fn quiesce(&mut self) -> Result<Vec<u64>, DriverError> {
        let limit = self.config.reset_poll_limit;
        let sink = self.sink.clone();
        self.cc().reset(limit, &*sink).inspect_err(|e| {
            if matches!(e, DriverError::DeviceGone { .. }) {
                self.state = DriverState::Removed;
            }
        })?;
        self.enabled.iter_mut().for_each(|e| *e = false);
        self.pending_intx = 0;
        let mut lost = Vec::new();
        for q in &mut self.queues {
            lost.extend(q.init_rings(&mut self.ram)?);
        }
        self.state = DriverState::Quiesced;
        Ok(lost)
    }

    /// Bring the device back after [`VirtioPciDriver::quiesce`] (or any reset): renegotiate,
    /// rewrite the rings, re-apply the vector plan and verify it before DRIVER_OK.
    pub fn resume(&mut self) -> Result<(), DriverError> {
        self.start()
    }

    fn finish(&mut self, result: Result<(), DriverError>) -> Result<(), DriverError> {
        match &result {
            Ok(()) => {
                self.state = DriverState::Running;
                self.started_once = true;
            }
            Err(DriverError::DeviceGone { .. }) => self.state = DriverState::Removed,
            Err(_) => {
                let sink = self.sink.clone();
                let now = self.cc().device_status();
                if now != 0xFF {
                    self.cc().set_device_status(now | status::FAILED, &*sink);
                }
                self.state = DriverState::Failed;
            }
        }
        result
    }

    fn bring_up(&mut self) -> Result<(), DriverError> {
        let sink = self.sink.clone();
        let queues = self.config.queues;
        let ladder = self.ladder();
        if self.faults.program_vectors_before_reset {
            // Row 2: the vectors are written (and even verified) here, then lost to the reset.
            if let Some(first) = ladder.first().filter(|p| !p.is_intx()) {
                let _ = self.program_plan(first)?;
            }
            self.plan = ladder.first().cloned();
        }
        let limit = self.config.reset_poll_limit;
        let wanted = self.config.wanted_features;
        let neg = negotiate_features(
            &mut CommonCfg::new(&mut self.regs, self.caps.common),
            wanted,
            limit,
            &*sink,
        )?;
        self.features = Some(neg);
        self.enabled = vec![false; usize::from(queues)];
        self.pending_intx = 0;

        let available = self.cc().num_queues();
        if queues > available {
            return Err(DriverError::NotEnoughQueues {
                wanted: queues,
                available,
            });
        }
        for q in 0..queues {
            self.setup_queue(q, neg.has(feature::RING_EVENT_IDX))?;
        }
        let resume_without_vectors = self.faults.skip_vectors_on_resume && self.started_once;
        if !self.faults.program_vectors_before_reset && !resume_without_vectors {
            self.apply_vectors(&ladder)?;
        }
        for q in 0..queues {
            if !self.enabled[usize::from(q)] {
                self.enable_queue(q);
            }
        }
        self.config_generation = self.cc().config_generation();
        self.cc().add_status(status::DRIVER_OK, &*sink)?;
        Ok(())
    }

    fn ladder(&self) -> Vec<VectorPlan> {
        let messages = self.config.grant.messages;
        let queues = self.config.queues;
        if self.msix_turned_off {
            return vec![VectorPlan::intx(queues)];
        }
        if self.faults.assume_per_queue_vectors && messages > 0 {
            vec![VectorPlan::per_queue(queues)]
        } else {
            self.config.policy.ladder(messages, queues)
        }
    }

    /// Virtio 1.2 section 4.1.5.1.3: size, rings, notify offset; enabling comes later.
    fn setup_queue(&mut self, q: u16, event_idx: bool) -> Result<(), DriverError> {
        let notify = self.caps.notify;
        let mut cc = CommonCfg::new(&mut self.regs, self.caps.common);
        cc.select_queue(q);
        let max = cc.read16(offset::QUEUE_SIZE);
        if max == 0 {
            return Err(DriverError::QueueUnavailable { queue: q });
        }
        let limit = max
            .min(self.config.max_queue_size.max(1))
            .min(MAX_QUEUE_SIZE);
        // Split rings need a power of two (virtio 1.2 section 2.7): the largest not above limit.
        let size = 1u16 << (15 - limit.leading_zeros());
        if size != max {
            cc.write16(offset::QUEUE_SIZE, size);
        }
        let notify_off = cc.read16(offset::QUEUE_NOTIFY_OFF);
        let rel = u64::from(notify_off) * u64::from(notify.notify_off_multiplier);
        let at = u64::from(notify.region.offset) + rel;
        if rel + 2 > u64::from(notify.region.length) {
            return Err(DriverError::NotifyOutOfRange {
                queue: q,
                notify_off,
                offset: at,
            });
        }
        let notify_at = NotifyAddress {
            bar: notify.region.bar,
            offset: at,
        };
        let idx = usize::from(q);
        if let Some(existing) = self.queues.get(idx) {
            if existing.size() != size {
                return Err(DriverError::QueueSizeChanged {
                    queue: q,
                    before: existing.size(),
                    now: size,
                });
            }
            let rings = existing.rings();
            let wanted = existing.interrupts_enabled();
            self.queues[idx] = SplitQueue::new(q, size, rings, notify_at, event_idx);
            self.queues[idx].set_interrupts_wanted(wanted);
        } else {
            let (d, a, u) = SplitQueue::ring_bytes(size);
            let rings = RingAddresses {
                desc: self.alloc.alloc(d, 16)?,
                avail: self.alloc.alloc(a, 2)?,
                used: self.alloc.alloc(u, 4)?,
            };
            self.queues
                .push(SplitQueue::new(q, size, rings, notify_at, event_idx));
        }
        let rings = self.queues[idx].rings();
        cc.write64(offset::QUEUE_DESC, rings.desc);
        cc.write64(offset::QUEUE_DRIVER, rings.avail);
        cc.write64(offset::QUEUE_DEVICE, rings.used);
        self.queues[idx].init_rings(&mut self.ram)?;
        Ok(())
    }

    fn enable_queue(&mut self, q: u16) {
        let size = self.queues[usize::from(q)].size();
        let mut cc = self.cc();
        cc.select_queue(q);
        cc.write16(offset::QUEUE_ENABLE, 1);
        self.enabled[usize::from(q)] = true;
        self.sink.emit(EventKind::QueueEnabled { queue: q, size });
    }

    /// The value that goes into a selector for `message` (row 3 swaps in the APIC vector).
    fn selector_value(&self, message: MessageNumber) -> Result<u16, DriverError> {
        if self.faults.write_apic_vector_instead_of_message_number {
            let v = self
                .config
                .grant
                .apic_vectors
                .get(usize::from(message.0))
                .ok_or(DriverError::MissingApicVector { message: message.0 })?;
            Ok(u16::try_from(*v).unwrap_or(u16::MAX))
        } else {
            Ok(message.0)
        }
    }

    /// Write one selector and read it back (checklist 3.1/3.2, log formats 3 and 4).
    fn write_selector(&mut self, selector: Selector, value: u16) -> u16 {
        let mut cc = self.cc();
        let read_back = match selector {
            Selector::MsixConfig => {
                cc.write16(offset::MSIX_CONFIG, value);
                cc.read16(offset::MSIX_CONFIG)
            }
            Selector::Queue(q) => {
                cc.select_queue(q);
                cc.write16(offset::QUEUE_MSIX_VECTOR, value);
                cc.read16(offset::QUEUE_MSIX_VECTOR)
            }
        };
        self.sink.emit(EventKind::VectorWritten {
            selector,
            written: value,
            read_back,
        });
        read_back
    }

    /// Program one plan; the first selector whose read-back differs is the failure.
    fn program_plan(&mut self, plan: &VectorPlan) -> Result<Option<VectorFailure>, DriverError> {
        for (selector, message) in plan.selectors().collect::<Vec<_>>() {
            let Some(message) = message else { continue };
            if selector == Selector::MsixConfig && self.faults.leave_config_vector_unset {
                continue;
            }
            let written = self.selector_value(message)?;
            let read_back = self.write_selector(selector, written);
            if let Selector::Queue(q) = selector
                && self.faults.enable_queues_before_vectors_verified
                && self.enabled.get(usize::from(q)) == Some(&false)
            {
                self.enable_queue(q);
            }
            if read_back != written {
                return Ok(Some(VectorFailure {
                    selector,
                    written,
                    read_back,
                }));
            }
        }
        Ok(None)
    }

    /// Walk the ladder until the device accepts a plan (checklist 3.3, catalogue row 4).
    fn apply_vectors(&mut self, ladder: &[VectorPlan]) -> Result<(), DriverError> {
        let mut dirty = false;
        let mut last = None;
        for plan in ladder {
            if plan.is_intx() {
                if dirty {
                    // Undo a refused rung so no selector keeps a half-accepted message.
                    for (selector, _) in plan.selectors().collect::<Vec<_>>() {
                        self.write_selector(selector, NO_VECTOR);
                    }
                    if let Some(msix) = self.caps.msix {
                        msix.set_enabled(&mut self.regs, false);
                        let control = msix.read_control(&mut self.regs);
                        self.sink.emit(EventKind::MsixControl {
                            enabled: control & crate::caps::MsixCap::ENABLE != 0,
                            function_masked: control & crate::caps::MsixCap::FUNCTION_MASK != 0,
                        });
                        self.msix_turned_off = true;
                        self.platform
                            .interrupt_mode_changed(ModeChange::MsixOffLineNeeded {
                                plans_tried: ladder.len() - 1,
                            });
                    }
                }
                self.plan = Some(plan.clone());
                return Ok(());
            }
            dirty = true;
            match self.program_plan(plan)? {
                None => {
                    self.plan = Some(plan.clone());
                    return Ok(());
                }
                Some(failure) => last = Some(failure),
            }
        }
        self.plan = None;
        let f = last.expect("a ladder has at least one rung");
        Err(DriverError::DeviceRefusesVectors {
            selector: f.selector,
            written: f.written,
            read_back: f.read_back,
            plans_tried: ladder.len(),
        })
    }

    /// Read every selector back against the plan in force (checklist step 6), e.g. to prove
    /// vectors survived; emits `VectorRead` for each.
    pub fn verify_vectors(&mut self) -> Vec<VectorReadBack> {
        let Some(plan) = self.plan.clone() else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for (selector, message) in plan.selectors() {
            let expected = match message {
                Some(m) => self.selector_value(m).unwrap_or(NO_VECTOR),
                None => NO_VECTOR,
            };
            let mut cc = self.cc();
            let read_back = match selector {
                Selector::MsixConfig => cc.read16(offset::MSIX_CONFIG),
                Selector::Queue(q) => {
                    cc.select_queue(q);
                    cc.read16(offset::QUEUE_MSIX_VECTOR)
                }
            };
            self.sink.emit(EventKind::VectorRead {
                selector,
                value: read_back,
            });
            out.push(VectorReadBack {
                selector,
                expected,
                read_back,
            });
        }
        out
    }

    fn running(&self) -> Result<(), DriverError> {
        if self.state == DriverState::Running {
            Ok(())
        } else {
            Err(DriverError::NotRunning { state: self.state })
        }
    }

    fn queue_mut(&mut self, queue: u16) -> Result<&mut SplitQueue, DriverError> {
        self.queues
            .get_mut(usize::from(queue))
            .ok_or(DriverError::NoSuchQueue { queue })
    }

    /// Publish a descriptor chain on `queue`; returns its head index.
    pub fn add_buffers(
        &mut self,
        queue: u16,
        bufs: &[Buffer],
        token: u64,
    ) -> Result<u16, DriverError> {
        self.running()?;
        let q = self
            .queues
            .get_mut(usize::from(queue))
            .ok_or(DriverError::NoSuchQueue { queue })?;
        Ok(q.add(&mut self.ram, bufs, token)?)
    }

    /// Notify the device: a 16-bit write of the queue index at the queue's notify address.
    pub fn notify(&mut self, queue: u16) -> Result<(), DriverError> {
        let at = self.queue_mut(queue)?.notify_address();
        self.regs
            .bar_write(at.bar, at.offset, Width::U16, u64::from(queue));
        self.emit_hot(|| EventKind::QueueNotify { queue });
        Ok(())
    }

    /// Notify only if the device asked for it (EVENT_IDX / NO_NOTIFY); returns whether it did.
    pub fn kick(&mut self, queue: u16) -> Result<bool, DriverError> {
        let q = self
            .queues
            .get_mut(usize::from(queue))
            .ok_or(DriverError::NoSuchQueue { queue })?;
        let needed = q.needs_notify(&mut self.ram)?;
        if needed {
            self.notify(queue)?;
        }
        Ok(needed)
    }

    /// Ask the device not to interrupt for `queue` (virtio 1.2, 2.7.7): `VRING_AVAIL_F_NO_INTERRUPT`
    /// or, with EVENT_IDX, a `used_event` left behind. DPCs and drains then leave it off; the
    /// host collects completions with [`VirtioPciDriver::drain_queue`] or [`VirtioPciDriver::poll`].
    pub fn disable_queue_interrupts(&mut self, queue: u16) -> Result<(), DriverError> {
        let q = self
            .queues
            .get_mut(usize::from(queue))
            .ok_or(DriverError::NoSuchQueue { queue })?;
        Ok(q.disable_interrupts(&mut self.ram)?)
    }

    /// Ask for interrupts on `queue` again, and collect into `completions` what the device
    /// used meanwhile: no interrupt will announce those, so they are drained here, re-checking
    /// after re-arming until nothing slipped in between (virtio 1.2, 2.7.14). Returns how many
    /// were appended. Nothing is left for a later interrupt in any mode, EVENT_IDX or not.
    pub fn enable_queue_interrupts(
        &mut self,
        queue: u16,
        completions: &mut Vec<UsedElem>,
    ) -> Result<usize, DriverError> {
        let q = self
            .queues
            .get_mut(usize::from(queue))
            .ok_or(DriverError::NoSuchQueue { queue })?;
        q.enable_interrupts(&mut self.ram)?;
        Ok(q.drain(&mut self.ram, completions)?)
    }

    /// Collect `queue`'s used entries into `completions` without an interrupt (polling, or a
    /// platform that dispatches per queue): the same drain a DPC does, re-arming interrupts
    /// only if they are on for the queue. Counters and DPC evidence are untouched. Returns
    /// how many were appended.
    pub fn drain_queue(
        &mut self,
        queue: u16,
        completions: &mut Vec<UsedElem>,
    ) -> Result<usize, DriverError> {
        let q = self
            .queues
            .get_mut(usize::from(queue))
            .ok_or(DriverError::NoSuchQueue { queue })?;
        Ok(q.drain(&mut self.ram, completions)?)
    }

    /// [`VirtioPciDriver::drain_queue`] for every queue, in queue order.
    pub fn poll(&mut self, completions: &mut Vec<UsedElem>) -> Result<usize, DriverError> {
        let mut n = 0;
        for q in &mut self.queues {
            n += q.drain(&mut self.ram, completions)?;
        }
        Ok(n)
    }

    /// Read device-specific configuration consistently (virtio 1.2, 2.5.1 and 4.1.4.3.1):
    /// `read` runs between two reads of `config_generation` and again while they differ, so
    /// a multi-field or 64-bit value is never torn by a concurrent change. Returns `read`'s
    /// value and the generation it belongs to. Gives up after [`CONFIG_READ_ATTEMPTS`].
    pub fn read_device_config<T>(
        &mut self,
        mut read: impl FnMut(&mut DeviceConfig<'_, R>) -> Result<T, DriverError>,
    ) -> Result<(T, u8), DriverError> {
        let region = self.caps.device.ok_or(DriverError::NoDeviceConfig)?;
        for _ in 0..CONFIG_READ_ATTEMPTS {
            let before = self.cc().config_generation();
            let value = read(&mut DeviceConfig {
                regs: &mut self.regs,
                region,
            })?;
            let after = self.cc().config_generation();
            if before == after {
                return Ok((value, after));
            }
        }
        Err(DriverError::ConfigGenerationUnstable {
            attempts: CONFIG_READ_ATTEMPTS,
        })
    }

    /// The line-interrupt ISR: read ISR status first (read-to-clear deasserts the line),
    /// 0 = not ours, 0xFF = the device is gone. Returns whether the interrupt was ours; when it
    /// was, the caller queues [`VirtioPciDriver::dpc`] with `None`.
    pub fn isr_intx(&mut self) -> bool {
        self.counters.intx.isr += 1;
        self.last_isr_read = None;
        if self.faults.return_not_mine_without_reading_isr {
            self.sink.emit(EventKind::IsrRan {
                message_id: None,
                claimed: false,
                isr_status: None,
            });
            return false;
        }
        if self.faults.skip_isr_status_read {
            self.pending_intx |= ISR_QUEUE;
            self.sink.emit(EventKind::IsrRan {
                message_id: None,
                claimed: true,
                isr_status: None,
            });
            return true;
        }
        let isr = self.caps.isr;
        let value = self
            .regs
            .bar_read(isr.bar, u64::from(isr.offset), Width::U8) as u8;
        self.counters.last_isr_status = Some(value);
        self.last_isr_read = Some(value);
        let claimed = match value {
            0 => false,
            0xFF if !self.faults.treat_all_ones_isr_as_ours => {
                self.state = DriverState::Removed;
                false
            }
            v => {
                self.pending_intx |= v;
                true
            }
        };
        if !claimed {
            self.counters.not_ours += 1;
        }
        self.sink.emit(EventKind::IsrRan {
            message_id: None,
            claimed,
            isr_status: Some(value),
        });
        claimed
    }

    /// The message ISR for `message_id` (KMDF's MessageID). Message 0 is a message like any
    /// other (row 9); IDs beyond the grant are refused, not indexed (row 8).
    #[inline]
    pub fn isr_message(&mut self, message_id: u32) -> bool {
        // Checklist 5.4 counts every ISR entry for a mapped message, claimed or not, so the
        // counters show a message that fires but is refused (row 9).
        if self.faults.skip_message_id_bound_check {
            // Row 8: per-message state indexed without a bound check (a bugcheck on Windows).
            self.counters.messages[message_id as usize].isr += 1;
        } else if let Some(c) = self.counters.messages.get_mut(message_id as usize) {
            c.isr += 1;
        }
        if self.faults.message_zero_means_not_message && message_id == 0 {
            self.sink.emit(EventKind::IsrRan {
                message_id: Some(0),
                claimed: false,
                isr_status: None,
            });
            return false;
        }
        let mapped = self.counters.messages.len();
        if !self.faults.skip_message_id_bound_check
            && usize::try_from(message_id).map_or(true, |m| m >= mapped)
        {
            self.counters.unmapped_message_ids += 1;
            self.sink.emit(EventKind::IsrRan {
                message_id: Some(message_id),
                claimed: false,
                isr_status: None,
            });
            return false;
        }
        self.counters.last_message_id = Some(message_id);
        self.emit_hot(|| EventKind::IsrRan {
            message_id: Some(message_id),
            claimed: true,
            isr_status: None,
        });
        true
    }

    /// Deferred work for an interrupt the ISR claimed: drain the used rings of the queues routed
    /// to `message_id` (all queues for INTx, `None`) and notice configuration changes.
    pub fn dpc(&mut self, message_id: Option<u32>) -> Result<DpcOutcome, DriverError> {
        let mut out = DpcOutcome::default();
        out.config_changed = self.dpc_into(message_id, &mut out.completions)?;
        Ok(out)
    }

    /// [`VirtioPciDriver::dpc`] appending the completions to `completions` (a buffer the caller
    /// reuses, so a DPC does not allocate) and returning whether the configuration changed.
    /// Same reads, writes and events as `dpc`; on error nothing is appended.
    pub fn dpc_into(
        &mut self,
        message_id: Option<u32>,
        completions: &mut Vec<UsedElem>,
    ) -> Result<bool, DriverError> {
        let start = completions.len();
        let result = self.dpc_drain(message_id, completions);
        if result.is_err() {
            completions.truncate(start);
        }
        result
    }

    fn dpc_drain(
        &mut self,
        message_id: Option<u32>,
        completions: &mut Vec<UsedElem>,
    ) -> Result<bool, DriverError> {
        let start = completions.len();
        let config_changed = match message_id {
            None => {
                // Every queue, whatever the ISR recorded: a completion can be waiting without
                // ISR bit 0 (it arrived while the queue's interrupts were off, or before a
                // reset of the recorded state), and draining an empty ring costs one read.
                let pending = std::mem::take(&mut self.pending_intx);
                let config_changed = pending & ISR_CONFIG != 0;
                if config_changed {
                    self.config_generation = self.cc().config_generation();
                }
                for q in &mut self.queues {
                    q.drain(&mut self.ram, completions)?;
                }
                self.counters.intx.dpc += 1;
                config_changed
            }
            Some(m) => {
                let Some(slot) = usize::try_from(m)
                    .ok()
                    .filter(|&i| i < self.counters.messages.len())
                else {
                    return Ok(false);
                };
                let message = MessageNumber(m as u16);
                let mut config_changed = false;
                // Without a plan in force nothing is routed to any message.
                if let Some(plan) = &self.plan {
                    if plan.config == Some(message) {
                        let mut cc = CommonCfg::new(&mut self.regs, self.caps.common);
                        let now = cc.config_generation();
                        config_changed = now != self.config_generation;
                        if config_changed {
                            self.config_generation = cc.config_generation();
                        }
                    }
                    // The queues routed to this message, in queue order.
                    for (q, routed) in plan.queues.iter().enumerate() {
                        if *routed != Some(message) {
                            continue;
                        }
                        if let Some(queue) = self.queues.get_mut(q) {
                            queue.drain(&mut self.ram, completions)?;
                        }
                    }
                }
                self.counters.messages[slot].dpc += 1;
                config_changed
            }
        };
        self.emit_hot(|| EventKind::DpcRan {
            message_id,
            completions: (completions.len() - start) as u32,
        });
        Ok(config_changed)
    }

    /// Emit the checklist 5.4 summary (one `CounterSummary` per message, plus the line when in
    /// INTx mode) and return the counters.
    pub fn counter_summary(&self) -> Counters {
        for (m, c) in self.counters.messages.iter().enumerate() {
            self.sink.emit(EventKind::CounterSummary {
                message: Some(m as u32),
                isr_count: c.isr,
                dpc_count: c.dpc,
            });
        }
        if self.counters.messages.is_empty() || self.plan.as_ref().is_some_and(|p| p.is_intx()) {
            self.sink.emit(EventKind::CounterSummary {
                message: None,
                isr_count: self.counters.intx.isr,
                dpc_count: self.counters.intx.dpc,
            });
        }
        self.counters.clone()
    }
}
