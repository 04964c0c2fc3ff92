//! KMDF-like interrupt objects: `WdfInterruptCreate`, `WdfInterruptGetInfo`, the connection
//! around power transitions, and the tables the simulated machine dispatches with.
//!
//! Two framework versions ([`KmdfVersion`]):
//! - **1.9**, Windows 7's inbox KMDF: objects are created in `EvtDriverDeviceAdd`, before the
//!   PnP manager assigns resources ([`WdfInterrupts::before_start`]); `WdfInterruptGetInfo`
//!   then reads zeros (`MessageSignaled=0 Vector=0`) until the start binds them
//!   ([`WdfInterrupts::start`], KMDF's `PnpMatchResources`): catalogue row 23.
//! - **1.11**: objects may be created in `EvtDevicePrepareHardware` with explicit raw and
//!   translated resources ([`WdfInterrupts::new`]), so a query right after create is real.
//!
//! Either way objects bind to interrupt resources in creation order, and an object's
//! `MessageNumber` is its creation index, set at create whether or not a resource exists: an
//! object beyond the grant reads `MessageNumber=<index> MessageSignaled=0 Vector=0` after
//! start and never fires (catalogue row 7). KMDF says nothing about it on DbgPrint; its only
//! message (for too *few* objects) goes to the in-flight recorder ([`WdfInterrupts::ifr`]).
//!
//! Around D0 exit and entry the framework disconnects and reconnects the interrupts
//! ([`WdfInterrupts::disconnect`], [`WdfInterrupts::connect`]): nothing is dispatched in between.
//! During a resource rebalance the resources are revoked and re-assigned; this model follows
//! the older frameworks that lost the message number too (info reads all zeros in between), so a
//! driver that re-queries instead of using the number it cached programs the wrong message
//! (catalogue row 6).

use crate::resources::{Affinity, AssignedResources, InterruptAssignment, MessageNumber};
use crate::vectors::Irql;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The framework version a driver runs on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum KmdfVersion {
    /// Windows 7's inbox framework: interrupt objects only in `EvtDriverDeviceAdd`.
    #[default]
    #[serde(rename = "1.9")]
    V1_9,
    /// Interrupt objects may be created in `EvtDevicePrepareHardware` with explicit resources.
    #[serde(rename = "1.11")]
    V1_11,
}

impl KmdfVersion {
    /// Both versions the model knows.
    pub const ALL: [KmdfVersion; 2] = [KmdfVersion::V1_9, KmdfVersion::V1_11];

    /// `1.9` or `1.11`.
    pub fn name(self) -> &'static str {
        match self {
            KmdfVersion::V1_9 => "1.9",
            KmdfVersion::V1_11 => "1.11",
        }
    }

    /// The version a `--kmdf` name (`1.9`, `1.11`) means.
    pub fn from_name(s: &str) -> Option<KmdfVersion> {
        Self::ALL.into_iter().find(|v| v.name() == s)
    }

    /// Whether interrupt objects are created in `EvtDevicePrepareHardware`, with resources.
    pub fn creates_in_prepare_hardware(self) -> bool {
        self == KmdfVersion::V1_11
    }
}

/// Handle of an interrupt object (its creation index).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct WdfInterruptId(pub usize);

/// `WDF_INTERRUPT_INFO`, the fields the checklist prints.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WdfInterruptInfo {
    /// `MessageSignaled`.
    pub message_signaled: bool,
    /// `MessageNumber`: the message's index in the grant (the MSI-X table entry).
    pub message_number: MessageNumber,
    /// `Vector`: the IDT vector.
    pub vector: u32,
    /// `Irql`.
    pub irql: Irql,
    /// `TargetProcessorSet`: the processors the interrupt may target.
    pub affinity: Affinity,
    /// `ShareDisposition == CmResourceShareShared` (a line interrupt).
    pub shared: bool,
}

impl WdfInterruptInfo {
    fn bound(index: usize, a: &InterruptAssignment) -> Self {
        Self {
            message_signaled: a.message_number.is_some(),
            message_number: index as MessageNumber,
            vector: u32::from(a.vector),
            irql: a.irql,
            affinity: a.affinity,
            shared: a.message_number.is_none(),
        }
    }

    /// An object without resources: zeros, but its creation index.
    fn unbound(index: usize) -> Self {
        Self {
            message_number: index as MessageNumber,
            ..Self::default()
        }
    }

    /// Whether the info describes a resource (a vector) at all.
    pub fn has_resource(&self) -> bool {
        self.vector != 0
    }
}

/// The framework's in-flight recorder entry for too few interrupt objects (`!wdflogdump`).
pub const IFR_NOT_ENOUGH_OBJECTS: &str = "Not enough interrupt objects created by WDFDEVICE";

/// Where a driver takes the message number it writes into virtio's vector selectors.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MessageNumberSource {
    /// The number recorded when the object first had its resources (the fix of row 6).
    #[default]
    CachedAtCreation,
    /// `WdfInterruptGetInfo` at the moment of programming.
    ReQuery,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct ObjectState {
    /// The info as the driver recorded it when the object first had resources.
    cached: Option<WdfInterruptInfo>,
    bound: Option<InterruptAssignment>,
}

/// The interrupt objects of one device.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WdfInterrupts {
    assignments: Vec<InterruptAssignment>,
    started: bool,
    objects: Vec<ObjectState>,
    released: bool,
    connected: bool,
    ifr: Vec<String>,
}

impl Default for WdfInterrupts {
    fn default() -> Self {
        Self::before_start()
    }
}

impl WdfInterrupts {
    /// A started device with `resources`: each `create` binds the next resource (KMDF 1.11,
    /// objects created in `EvtDevicePrepareHardware` for the descriptors in order).
    pub fn new(resources: &AssignedResources) -> Self {
        Self {
            assignments: resources.interrupts.clone(),
            started: true,
            ..Self::before_start()
        }
    }

    /// A device not started yet (KMDF 1.9, `EvtDriverDeviceAdd`): objects created now have no
    /// resources, and `get_info` reads zeros until [`WdfInterrupts::start`].
    pub fn before_start() -> Self {
        Self {
            assignments: Vec::new(),
            started: false,
            objects: Vec::new(),
            released: false,
            connected: true,
            ifr: Vec::new(),
        }
    }

    fn bind(&mut self, i: usize) {
        let bound = if self.started && !self.released {
            self.assignments.get(i).copied()
        } else {
            None
        };
        let o = &mut self.objects[i];
        o.bound = bound;
        if o.cached.is_none() {
            o.cached = bound.map(|a| WdfInterruptInfo::bound(i, &a));
        }
    }

    /// `IRP_MN_START_DEVICE`: the framework hands the resources to the objects in creation
    /// order (KMDF's `PnpMatchResources`); objects beyond them stay without.
    pub fn start(&mut self, resources: &AssignedResources) {
        self.assignments = resources.interrupts.clone();
        self.started = true;
        self.released = false;
        for i in 0..self.objects.len() {
            self.bind(i);
        }
        if self.objects.len() < self.assignments.len() {
            self.ifr.push(IFR_NOT_ENOUGH_OBJECTS.to_string());
        }
    }

    /// `WdfInterruptCreate`: a new object, bound to the next unclaimed resource if the device
    /// has started. Its `MessageNumber` is its creation index.
    pub fn create(&mut self) -> WdfInterruptId {
        let id = WdfInterruptId(self.objects.len());
        self.objects.push(ObjectState {
            cached: None,
            bound: None,
        });
        self.bind(id.0);
        id
    }

    /// One object per interrupt resource (a message each, or the line): the right way once
    /// the resources are known.
    pub fn create_per_resource(&mut self) -> Vec<WdfInterruptId> {
        (self.objects.len()..self.assignments.len())
            .map(|_| self.create())
            .collect()
    }

    /// `n` objects at once (KMDF 1.9: as many as the driver can use, before the grant is known).
    pub fn create_many(&mut self, n: usize) -> Vec<WdfInterruptId> {
        (0..n).map(|_| self.create()).collect()
    }

    /// Number of objects created.
    pub fn len(&self) -> usize {
        self.objects.len()
    }

    /// No interrupt object was created.
    pub fn is_empty(&self) -> bool {
        self.objects.is_empty()
    }

    /// The ids of every object created, in creation order.
    pub fn ids(&self) -> impl Iterator<Item = WdfInterruptId> + '_ {
        (0..self.objects.len()).map(WdfInterruptId)
    }

    /// Whether the device's resources have been handed to the objects.
    pub fn is_started(&self) -> bool {
        self.started
    }

    /// `WdfInterruptGetInfo`: the object's resource, or zeros with its creation index when it
    /// has none (before start, beyond the grant); all zeros while a rebalance has taken the
    /// resources back.
    pub fn get_info(&self, id: WdfInterruptId) -> WdfInterruptInfo {
        let Some(o) = self.objects.get(id.0) else {
            return WdfInterruptInfo::default();
        };
        if self.released {
            return WdfInterruptInfo::default();
        }
        match &o.bound {
            Some(a) => WdfInterruptInfo::bound(id.0, a),
            None => WdfInterruptInfo::unbound(id.0),
        }
    }

    /// The info as the driver recorded it when the object first had its resources.
    pub fn cached_info(&self, id: WdfInterruptId) -> Option<WdfInterruptInfo> {
        self.objects.get(id.0).and_then(|o| o.cached)
    }

    /// The message number a driver would program for this object; `None` when the object
    /// does not exist or (cached) was never message-signalled.
    pub fn message_number_for_programming(
        &self,
        id: WdfInterruptId,
        source: MessageNumberSource,
    ) -> Option<MessageNumber> {
        match source {
            MessageNumberSource::CachedAtCreation => {
                let info = self.cached_info(id)?;
                info.message_signaled.then_some(info.message_number)
            }
            // A re-querying driver takes whatever the info says, zeroed or not.
            MessageNumberSource::ReQuery => {
                (id.0 < self.objects.len()).then(|| self.get_info(id).message_number)
            }
        }
    }

    /// What the framework wrote to its in-flight recorder (never to DbgPrint).
    pub fn ifr(&self) -> &[String] {
        &self.ifr
    }

    /// D0 exit: the framework disconnects every interrupt; nothing is dispatched until
    /// [`WdfInterrupts::connect`].
    pub fn disconnect(&mut self) {
        self.connected = false;
    }

    /// D0 entry (after `EvtDeviceD0Entry` returns): the interrupts are connected again.
    pub fn connect(&mut self) {
        self.connected = true;
    }

    /// Whether the interrupts are connected (between D0 entry and D0 exit).
    pub fn is_connected(&self) -> bool {
        self.connected
    }

    /// `true` while a rebalance has released the resources.
    pub fn is_released(&self) -> bool {
        self.released
    }

    /// Stop for rebalance: resources are released; every object reads zeroed info.
    pub fn begin_rebalance(&mut self) {
        self.released = true;
        for o in &mut self.objects {
            o.bound = None;
        }
    }

    /// Restart with new resources: objects rebind in creation order; the cached numbers stay.
    pub fn complete_rebalance(&mut self, resources: &AssignedResources) {
        self.start(resources);
    }

    /// `MessageNumber -> object`, for message interrupts that are connected now.
    pub fn objects_by_message(&self) -> BTreeMap<MessageNumber, WdfInterruptId> {
        self.ids()
            .filter_map(|id| {
                let a = self.objects[id.0].bound?;
                a.message_number?;
                Some((id.0 as MessageNumber, id))
            })
            .collect()
    }

    /// `Vector -> MessageNumber`, for message interrupts that are connected now.
    pub fn message_by_vector(&self) -> BTreeMap<u32, MessageNumber> {
        self.objects
            .iter()
            .enumerate()
            .filter_map(|(i, o)| {
                let a = o.bound?;
                a.message_number?;
                Some((u32::from(a.vector), i as MessageNumber))
            })
            .collect()
    }

    /// The object on the line interrupt and its vector, if the device runs on INTx.
    pub fn line_object(&self) -> Option<(u32, WdfInterruptId)> {
        self.ids().find_map(|id| {
            let a = self.objects[id.0].bound?;
            a.message_number
                .is_none()
                .then_some((u32::from(a.vector), id))
        })
    }

    /// Which object an interrupt on `vector` runs, with the `MessageID` its ISR receives
    /// (the object's `MessageNumber`; `None` for the line, whose ISR gets ID 0 with
    /// `MessageSignaled = 0`). Nothing while disconnected.
    #[inline]
    pub fn dispatch(&self, vector: u32) -> Option<(WdfInterruptId, Option<MessageNumber>)> {
        if !self.connected {
            return None;
        }
        self.ids().find_map(|id| {
            let a = self.objects[id.0].bound?;
            (u32::from(a.vector) == vector)
                .then_some((id, a.message_number.map(|_| id.0 as MessageNumber)))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arbiter::InterruptGrant;
    use crate::resources::ResourceBuilder;
    use crate::vectors::VectorAllocator;

    fn messages(count: u32, alloc: &mut VectorAllocator) -> AssignedResources {
        ResourceBuilder::default()
            .build(InterruptGrant::Messages { count }, alloc, &[])
            .unwrap()
    }

    #[test]
    fn one_object_per_message_has_distinct_numbers_and_vectors() {
        let mut alloc = VectorAllocator::default();
        let mut w = WdfInterrupts::new(&messages(3, &mut alloc));
        let ids = w.create_per_resource();
        assert_eq!(ids.len(), 3);
        let infos: Vec<_> = ids.iter().map(|&id| w.get_info(id)).collect();
        assert!(infos.iter().all(|i| i.message_signaled && !i.shared));
        assert_eq!(
            infos
                .iter()
                .map(|i| (i.message_number, i.vector, i.irql))
                .collect::<Vec<_>>(),
            [(0, 0xB1, 0xB), (1, 0xA1, 0xA), (2, 0x91, 0x9)]
        );
        assert!(w.ifr().is_empty());
        let by_msg = w.objects_by_message();
        assert_eq!(by_msg[&2], WdfInterruptId(2));
        let by_vec = w.message_by_vector();
        assert_eq!(by_vec[&0xA1], 1);
        assert_eq!(w.dispatch(0x91), Some((WdfInterruptId(2), Some(2))));
        assert_eq!(w.dispatch(0x99), None);
        assert_eq!(w.line_object(), None);
    }

    /// KMDF 1.9: objects created in EvtDriverDeviceAdd read zeros (their creation index aside)
    /// until the start binds them in creation order.
    #[test]
    fn kmdf_1_9_info_before_start_reads_zeros() {
        let mut alloc = VectorAllocator::default();
        let mut w = WdfInterrupts::before_start();
        let ids = w.create_many(3);
        for (i, id) in ids.iter().enumerate() {
            let info = w.get_info(*id);
            assert_eq!(
                info,
                WdfInterruptInfo {
                    message_number: i as u32,
                    ..WdfInterruptInfo::default()
                }
            );
            assert!(!info.has_resource());
            assert_eq!(
                crate::dbgprint::format_wdfint_line(&info),
                format!("WDFINT: MessageSignaled=0 MessageNumber={i} Vector=0 Irql=0 Affinity=0x0")
            );
        }
        assert_eq!(w.dispatch(0xB1), None);
        w.start(&messages(3, &mut alloc));
        let after: Vec<_> = ids.iter().map(|&id| w.get_info(id)).collect();
        assert!(after.iter().all(|i| i.message_signaled && i.vector != 0));
        assert_eq!(after[1].message_number, 1);
        assert_eq!(w.dispatch(0xA1), Some((WdfInterruptId(1), Some(1))));
        assert!(w.ifr().is_empty());
    }

    /// An object beyond the grant: its creation index, no resource, and not one DbgPrint word
    /// from the framework.
    #[test]
    fn object_beyond_the_grant_reports_its_creation_index_and_nothing_else() {
        let mut alloc = VectorAllocator::default();
        let mut w = WdfInterrupts::before_start();
        let ids = w.create_many(3);
        w.start(&messages(2, &mut alloc));
        let extra = w.get_info(ids[2]);
        assert_eq!(
            crate::dbgprint::format_wdfint_line(&extra),
            "WDFINT: MessageSignaled=0 MessageNumber=2 Vector=0 Irql=0 Affinity=0x0"
        );
        assert!(w.ifr().is_empty(), "too many objects leaves no record");
        assert_eq!(w.objects_by_message().len(), 2);
        assert_eq!(w.message_by_vector().len(), 2);
        // Too few objects: the framework's only word, in its in-flight recorder.
        let mut few = WdfInterrupts::before_start();
        few.create();
        few.start(&messages(3, &mut alloc));
        assert_eq!(few.ifr(), [IFR_NOT_ENOUGH_OBJECTS]);
    }

    #[test]
    fn line_object_is_not_message_signaled_and_gets_id_zero() {
        let mut alloc = VectorAllocator::default();
        let r = ResourceBuilder::default()
            .build(InterruptGrant::Line { irq: 10 }, &mut alloc, &[])
            .unwrap();
        let mut w = WdfInterrupts::new(&r);
        let id = w.create();
        let info = w.get_info(id);
        assert!(!info.message_signaled && info.shared);
        assert_eq!(
            (info.message_number, info.vector, info.irql),
            (0, 0xB1, 0xB)
        );
        assert_eq!(w.line_object(), Some((0xB1, id)));
        assert_eq!(w.dispatch(0xB1), Some((id, None)));
        assert!(w.objects_by_message().is_empty());
    }

    #[test]
    fn disconnected_interrupts_are_not_dispatched() {
        let mut alloc = VectorAllocator::default();
        let mut w = WdfInterrupts::new(&messages(1, &mut alloc));
        let id = w.create();
        w.disconnect();
        assert!(!w.is_connected());
        assert_eq!(w.dispatch(0xB1), None);
        // The resources stay assigned across D0 exit/entry: the info does not change.
        assert!(w.get_info(id).message_signaled);
        w.connect();
        assert_eq!(w.dispatch(0xB1), Some((id, Some(0))));
    }

    #[test]
    fn rebalance_requery_loses_the_message_number_cache_keeps_it() {
        let mut alloc = VectorAllocator::default();
        let before = messages(3, &mut alloc);
        let mut w = WdfInterrupts::new(&before);
        let ids = w.create_per_resource();
        w.begin_rebalance();
        assert!(w.is_released());
        let q2 = ids[2];
        assert_eq!(w.get_info(q2), WdfInterruptInfo::default());
        assert_eq!(
            w.message_number_for_programming(q2, MessageNumberSource::ReQuery),
            Some(0)
        );
        assert_eq!(
            w.message_number_for_programming(q2, MessageNumberSource::CachedAtCreation),
            Some(2)
        );
        let after = messages(3, &mut alloc);
        before.release(&mut alloc).unwrap();
        w.complete_rebalance(&after);
        let info = w.get_info(q2);
        assert_eq!(info.message_number, 2);
        assert_ne!(info.vector, w.cached_info(q2).unwrap().vector);
        assert_eq!(w.dispatch(info.vector), Some((q2, Some(2))));
    }

    #[test]
    fn rebalance_to_fewer_messages_unbinds_extra_objects() {
        let mut alloc = VectorAllocator::default();
        let mut w = WdfInterrupts::new(&messages(3, &mut alloc));
        let ids = w.create_per_resource();
        w.begin_rebalance();
        w.complete_rebalance(&messages(1, &mut alloc));
        assert_eq!(w.get_info(ids[1]).vector, 0);
        assert_eq!(w.get_info(ids[1]).message_number, 1);
        assert_eq!(w.get_info(ids[0]).message_number, 0);
    }

    #[test]
    fn versions_by_name() {
        assert_eq!(KmdfVersion::default(), KmdfVersion::V1_9);
        assert_eq!(KmdfVersion::from_name("1.11"), Some(KmdfVersion::V1_11));
        assert_eq!(KmdfVersion::from_name("1.10"), None);
        assert!(KmdfVersion::V1_11.creates_in_prepare_hardware());
        assert!(!KmdfVersion::V1_9.creates_in_prepare_hardware());
    }
}
