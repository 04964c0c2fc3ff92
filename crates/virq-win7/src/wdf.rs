//! KMDF-like interrupt objects: `WdfInterruptCreate`, `WdfInterruptGetInfo`, and the tables the
//! simulated machine dispatches with.
//!
//! The framework binds interrupt objects to the device's interrupt resources in creation
//! order: object `k` gets the `k`-th message (or the line). Objects beyond the granted
//! resources exist but have nothing behind them: their info reads `Vector = 0` and they never
//! fire (catalogue row 7). During a rebalance the resources are released and re-assigned; info
//! queried in between is zeroed, so a driver that re-queries instead of using the number it
//! cached at creation programs the wrong message (catalogue row 6).

use crate::resources::{Affinity, AssignedResources, InterruptAssignment, MessageNumber};
use crate::vectors::Irql;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Handle of an interrupt object (its creation index).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct WdfInterruptId(pub usize);

/// `WDF_INTERRUPT_INFO`, the fields the checklist prints.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WdfInterruptInfo {
    pub message_signaled: bool,
    pub message_number: MessageNumber,
    pub vector: u32,
    pub irql: Irql,
    pub affinity: Affinity,
    /// `ShareDisposition == CmResourceShareShared` (a line interrupt).
    pub shared: bool,
}

impl WdfInterruptInfo {
    fn from_assignment(a: &InterruptAssignment) -> Self {
        Self {
            message_signaled: a.message_number.is_some(),
            message_number: a.message_number.unwrap_or(0),
            vector: u32::from(a.vector),
            irql: a.irql,
            affinity: a.affinity,
            shared: a.message_number.is_none(),
        }
    }
}

/// A framework complaint about objects and resources not matching.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FrameworkWarning {
    pub object: WdfInterruptId,
    /// Interrupt resources the device has.
    pub resources: u32,
    pub text: String,
}

/// Where a driver takes the message number it writes into virtio's vector selectors.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MessageNumberSource {
    /// The number recorded when the object was created (the fix of row 6).
    #[default]
    CachedAtCreation,
    /// `WdfInterruptGetInfo` at the moment of programming.
    ReQuery,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct ObjectState {
    cached: Option<WdfInterruptInfo>,
    bound: Option<InterruptAssignment>,
}

/// The interrupt objects of one device.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WdfInterrupts {
    assignments: Vec<InterruptAssignment>,
    objects: Vec<ObjectState>,
    released: bool,
    warnings: Vec<FrameworkWarning>,
}

impl WdfInterrupts {
    /// The interrupt side of a device whose resources are `resources`.
    pub fn new(resources: &AssignedResources) -> Self {
        Self {
            assignments: resources.interrupts.clone(),
            ..Self::default()
        }
    }

    fn resource_count(&self) -> u32 {
        self.assignments.len() as u32
    }

    fn warn_unbound(&mut self, id: WdfInterruptId) {
        let resources = self.resource_count();
        self.warnings.push(FrameworkWarning {
            object: id,
            resources,
            text: format!(
                "WDF: interrupt object {} has no interrupt resource ({} assigned); it is not connected and will never fire",
                id.0, resources
            ),
        });
    }

    /// `WdfInterruptCreate`: a new object bound to the next unclaimed resource, if any.
    pub fn create(&mut self) -> WdfInterruptId {
        let id = WdfInterruptId(self.objects.len());
        let bound = if self.released {
            None
        } else {
            self.assignments.get(id.0).copied()
        };
        self.objects.push(ObjectState {
            cached: bound.as_ref().map(WdfInterruptInfo::from_assignment),
            bound,
        });
        if bound.is_none() && !self.released {
            self.warn_unbound(id);
        }
        id
    }

    /// One object per granted message (or one for the line): the right way.
    pub fn create_per_resource(&mut self) -> Vec<WdfInterruptId> {
        (self.objects.len()..self.assignments.len())
            .map(|_| self.create())
            .collect()
    }

    /// Number of objects created.
    pub fn len(&self) -> usize {
        self.objects.len()
    }

    pub fn is_empty(&self) -> bool {
        self.objects.is_empty()
    }

    pub fn ids(&self) -> impl Iterator<Item = WdfInterruptId> + '_ {
        (0..self.objects.len()).map(WdfInterruptId)
    }

    /// `WdfInterruptGetInfo`: zeroed when the object has no resource (now).
    pub fn get_info(&self, id: WdfInterruptId) -> WdfInterruptInfo {
        self.objects
            .get(id.0)
            .and_then(|o| o.bound.as_ref())
            .map(WdfInterruptInfo::from_assignment)
            .unwrap_or_default()
    }

    /// The info as the driver recorded it right after `WdfInterruptCreate`.
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

    /// Framework warnings so far (objects beyond the resources).
    pub fn warnings(&self) -> &[FrameworkWarning] {
        &self.warnings
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
        self.assignments = resources.interrupts.clone();
        self.released = false;
        for i in 0..self.objects.len() {
            let bound = self.assignments.get(i).copied();
            self.objects[i].bound = bound;
            if bound.is_none() {
                self.warn_unbound(WdfInterruptId(i));
            }
        }
    }

    /// `MessageNumber -> object`, for message interrupts that are connected now.
    pub fn objects_by_message(&self) -> BTreeMap<MessageNumber, WdfInterruptId> {
        self.ids()
            .filter_map(|id| {
                let a = self.objects[id.0].bound?;
                Some((a.message_number?, id))
            })
            .collect()
    }

    /// `Vector -> MessageNumber`, for message interrupts that are connected now.
    pub fn message_by_vector(&self) -> BTreeMap<u32, MessageNumber> {
        self.objects
            .iter()
            .filter_map(|o| {
                let a = o.bound?;
                Some((u32::from(a.vector), a.message_number?))
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
    /// (`None` for the line).
    pub fn dispatch(&self, vector: u32) -> Option<(WdfInterruptId, Option<MessageNumber>)> {
        self.ids().find_map(|id| {
            let a = self.objects[id.0].bound?;
            (u32::from(a.vector) == vector).then_some((id, a.message_number))
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
            [(0, 0xD1, 0xD), (1, 0xC1, 0xC), (2, 0xB1, 0xB)]
        );
        assert!(w.warnings().is_empty());
        let by_msg = w.objects_by_message();
        assert_eq!(by_msg[&2], WdfInterruptId(2));
        let by_vec = w.message_by_vector();
        assert_eq!(by_vec[&0xC1], 1);
        assert_eq!(w.dispatch(0xB1), Some((WdfInterruptId(2), Some(2))));
        assert_eq!(w.dispatch(0x99), None);
        assert_eq!(w.line_object(), None);
    }

    #[test]
    fn object_beyond_the_grant_has_vector_zero_and_a_warning() {
        let mut alloc = VectorAllocator::default();
        let mut w = WdfInterrupts::new(&messages(2, &mut alloc));
        let ids: Vec<_> = (0..3).map(|_| w.create()).collect();
        let extra = w.get_info(ids[2]);
        assert_eq!(extra.vector, 0);
        assert_eq!(
            crate::dbgprint::format_wdfint_line(&extra),
            "WDFINT: MessageSignaled=0 MessageNumber=0 Vector=0 Irql=0 Affinity=0x0"
        );
        assert!(!extra.message_signaled);
        assert_eq!(w.warnings().len(), 1);
        assert_eq!(w.warnings()[0].object, WdfInterruptId(2));
        assert_eq!(
            w.warnings()[0].text,
            "WDF: interrupt object 2 has no interrupt resource (2 assigned); it is not connected and will never fire"
        );
        assert_eq!(w.objects_by_message().len(), 2);
        assert_eq!(w.message_by_vector().len(), 2);
    }

    #[test]
    fn line_object_is_not_message_signaled() {
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
            (0, 0xD1, 0xD)
        );
        assert_eq!(w.line_object(), Some((0xD1, id)));
        assert_eq!(w.dispatch(0xD1), Some((id, None)));
        assert!(w.objects_by_message().is_empty());
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
        assert!(w.warnings().is_empty());
    }

    #[test]
    fn rebalance_to_fewer_messages_unbinds_extra_objects() {
        let mut alloc = VectorAllocator::default();
        let mut w = WdfInterrupts::new(&messages(3, &mut alloc));
        let ids = w.create_per_resource();
        w.begin_rebalance();
        w.complete_rebalance(&messages(1, &mut alloc));
        assert_eq!(w.get_info(ids[1]).vector, 0);
        assert_eq!(w.get_info(ids[0]).message_number, 0);
        assert_eq!(w.warnings().len(), 2);
    }
}
