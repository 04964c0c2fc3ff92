//! CM resource descriptors, raw and translated, as the PnP manager hands them to a driver.
//!
//! A Rust model of `CM_PARTIAL_RESOURCE_DESCRIPTOR`: a type, a share disposition, flags and
//! the `u` union, here an enum so that only the member that means something exists. The one
//! fact a driver must check is `Flags & CM_RESOURCE_INTERRUPT_MESSAGE` (checklist 1.2).
//!
//! For MSI-X, Windows lists one interrupt descriptor per message
//! ([`MessageDescriptorLayout::PerMessage`], each `MessageCount = 1`); for MSI it lists a single
//! descriptor whose `MessageCount` is the whole grant ([`MessageDescriptorLayout::Single`]).
//! Consumers count messages with [`granted_message_total`], which is right for both.

use crate::arbiter::InterruptGrant;
use crate::inf::IrqDevicePolicy;
use crate::vectors::{IdtVector, Irql, VectorAllocator, VectorError};
use serde::{Deserialize, Serialize};

/// The 0-based message index; for MSI-X also the table entry index virtio wants.
pub type MessageNumber = u32;
/// `u.MessageInterrupt.Raw.MessageCount`.
pub type MessageCount = u32;
/// `KAFFINITY`: one bit per processor.
pub type Affinity = u64;

/// `CmResourceTypeMemory`.
pub const CM_RESOURCE_TYPE_MEMORY: u8 = 3;
/// `CmResourceTypeInterrupt`.
pub const CM_RESOURCE_TYPE_INTERRUPT: u8 = 2;

/// Interrupt flag: level-triggered (the value 0, i.e. no LATCHED bit).
pub const CM_RESOURCE_INTERRUPT_LEVEL_SENSITIVE: u16 = 0;
/// Interrupt flag: edge-triggered.
pub const CM_RESOURCE_INTERRUPT_LATCHED: u16 = 1;
/// Interrupt flag: message-signalled (MSI/MSI-X), the bit the checklist looks for.
pub const CM_RESOURCE_INTERRUPT_MESSAGE: u16 = 2;
/// Interrupt flag: the descriptor carries an affinity policy.
pub const CM_RESOURCE_INTERRUPT_POLICY_INCLUDED: u16 = 4;

/// Memory flag: read/write (the value 0).
pub const CM_RESOURCE_MEMORY_READ_WRITE: u16 = 0;
/// Memory flag: prefetchable BAR.
pub const CM_RESOURCE_MEMORY_PREFETCHABLE: u16 = 4;

/// `CM_RESOURCE_TYPE` values this model uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[repr(u8)]
pub enum CmResourceType {
    Interrupt = CM_RESOURCE_TYPE_INTERRUPT,
    Memory = CM_RESOURCE_TYPE_MEMORY,
}

/// `CM_SHARE_DISPOSITION`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[repr(u8)]
pub enum ShareDisposition {
    Undetermined = 0,
    DeviceExclusive = 1,
    DriverExclusive = 2,
    Shared = 3,
}

/// `u.Interrupt` (also the shape of `u.MessageInterrupt.Translated`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CmInterrupt {
    pub level: u32,
    pub vector: u32,
    pub affinity: Affinity,
}

/// `u.MessageInterrupt.Raw`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CmMessageInterruptRaw {
    pub message_count: MessageCount,
    pub vector: u32,
    pub affinity: Affinity,
}

/// `u.MessageInterrupt`: both halves kept (in C they overlay each other).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CmMessageInterrupt {
    pub raw: CmMessageInterruptRaw,
    pub translated: CmInterrupt,
}

/// `u.Memory`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CmMemory {
    pub start: u64,
    pub length: u64,
}

/// The `u` union, reduced to the member the type and flags select.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CmDescriptorData {
    Interrupt(CmInterrupt),
    MessageInterrupt(CmMessageInterrupt),
    Memory(CmMemory),
}

/// `CM_PARTIAL_RESOURCE_DESCRIPTOR`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CmPartialResourceDescriptor {
    pub resource_type: CmResourceType,
    pub share_disposition: ShareDisposition,
    pub flags: u16,
    pub u: CmDescriptorData,
}

impl CmPartialResourceDescriptor {
    /// A memory descriptor for a BAR (raw and translated are the same on x64).
    pub fn memory(start: u64, length: u64, prefetchable: bool) -> Self {
        Self {
            resource_type: CmResourceType::Memory,
            share_disposition: ShareDisposition::DeviceExclusive,
            flags: if prefetchable {
                CM_RESOURCE_MEMORY_PREFETCHABLE
            } else {
                CM_RESOURCE_MEMORY_READ_WRITE
            },
            u: CmDescriptorData::Memory(CmMemory { start, length }),
        }
    }

    pub fn is_interrupt(&self) -> bool {
        self.resource_type == CmResourceType::Interrupt
    }

    /// The check of checklist 1.2.
    pub fn is_message(&self) -> bool {
        self.is_interrupt() && self.flags & CM_RESOURCE_INTERRUPT_MESSAGE != 0
    }

    /// `Raw.MessageCount` for message descriptors, `None` otherwise.
    pub fn message_count(&self) -> Option<MessageCount> {
        match self.u {
            CmDescriptorData::MessageInterrupt(m) if self.is_message() => Some(m.raw.message_count),
            _ => None,
        }
    }

    /// Level, Vector, Affinity as a driver reads them from a *translated* interrupt
    /// descriptor (`u.Interrupt` or `u.MessageInterrupt.Translated`).
    pub fn interrupt_fields(&self) -> Option<CmInterrupt> {
        match self.u {
            CmDescriptorData::Interrupt(i) => Some(i),
            CmDescriptorData::MessageInterrupt(m) => Some(m.translated),
            CmDescriptorData::Memory(_) => None,
        }
    }
}

/// Messages granted according to a descriptor list: the sum of `MessageCount` over message
/// descriptors (correct for the per-message and the single-descriptor layouts).
pub fn granted_message_total(descriptors: &[CmPartialResourceDescriptor]) -> MessageCount {
    descriptors.iter().filter_map(|d| d.message_count()).sum()
}

/// How message interrupts appear in the lists.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MessageDescriptorLayout {
    /// One descriptor per message with `MessageCount = 1` (what Windows does for MSI-X).
    #[default]
    PerMessage,
    /// One descriptor with `MessageCount = count` (what Windows does for MSI).
    Single,
}

/// The processors interrupts may target; processor `i` has local APIC id `apic_ids[i]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessorTopology {
    pub apic_ids: Vec<u8>,
}

impl ProcessorTopology {
    /// `count` processors with APIC ids `0..count` (at most 64, one KAFFINITY word).
    pub fn uniform(count: u8) -> Self {
        Self {
            apic_ids: (0..count.clamp(1, 64)).collect(),
        }
    }

    pub fn count(&self) -> usize {
        self.apic_ids.len().clamp(1, 64)
    }

    /// Affinity with every processor set.
    pub fn all_mask(&self) -> Affinity {
        match self.count() {
            64 => u64::MAX,
            n => (1u64 << n) - 1,
        }
    }

    /// Physical destination for an affinity: the APIC id of its lowest processor.
    pub fn destination(&self, affinity: Affinity) -> u8 {
        let cpu = if affinity == 0 {
            0
        } else {
            affinity.trailing_zeros() as usize
        };
        self.apic_ids.get(cpu).copied().unwrap_or(0)
    }
}

impl Default for ProcessorTopology {
    fn default() -> Self {
        Self::uniform(1)
    }
}

/// One connected interrupt source as the OS sees it: which message, which vector, where.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InterruptAssignment {
    /// `Some(n)` for message `n`, `None` for the line interrupt.
    pub message_number: Option<MessageNumber>,
    pub vector: IdtVector,
    pub irql: Irql,
    pub affinity: Affinity,
    /// Local APIC id the MSI address targets (physical destination mode).
    pub dest_apic_id: u8,
}

/// What the PnP manager passes with `IRP_MN_START_DEVICE`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AssignedResources {
    /// The grant actually assigned (may be smaller than the arbiter's if vectors ran short).
    pub grant: InterruptGrant,
    pub raw: Vec<CmPartialResourceDescriptor>,
    pub translated: Vec<CmPartialResourceDescriptor>,
    /// One per message (in `MessageNumber` order) or one for the line.
    pub interrupts: Vec<InterruptAssignment>,
}

impl AssignedResources {
    /// Give the vectors back to the allocator (device removal or stop for rebalance).
    pub fn release(&self, allocator: &mut VectorAllocator) -> Result<(), VectorError> {
        self.interrupts
            .iter()
            .try_for_each(|i| allocator.free(i.vector))
    }
}

/// Builds [`AssignedResources`] from a grant, the vector allocator and the BARs.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourceBuilder {
    pub topology: ProcessorTopology,
    /// From the INF's `Affinity Policy\DevicePolicy`; `None` is the machine default.
    pub affinity_policy: Option<IrqDevicePolicy>,
    pub layout: MessageDescriptorLayout,
}

impl ResourceBuilder {
    fn affinity_for(&self, index: usize) -> Affinity {
        let n = self.topology.count();
        match self.affinity_policy {
            Some(IrqDevicePolicy::SpreadMessagesAcrossAllProcessors) => 1u64 << (index % n),
            Some(IrqDevicePolicy::OneCloseProcessor) => 1,
            _ => self.topology.all_mask(),
        }
    }

    fn interrupt_flags(&self, base: u16) -> u16 {
        if self.affinity_policy.is_some() {
            base | CM_RESOURCE_INTERRUPT_POLICY_INCLUDED
        } else {
            base
        }
    }

    /// Allocate vectors and produce both lists. BARs are `(address, length, prefetchable)`
    /// and come first, as the PCI bus driver reports them. A message grant larger than the
    /// free vectors shrinks (never below 1); no free vector at all is an error.
    pub fn build(
        &self,
        grant: InterruptGrant,
        allocator: &mut VectorAllocator,
        bars: &[(u64, u64, bool)],
    ) -> Result<AssignedResources, VectorError> {
        let memory: Vec<_> = bars
            .iter()
            .map(|&(start, length, pf)| CmPartialResourceDescriptor::memory(start, length, pf))
            .collect();
        let mut raw = memory.clone();
        let mut translated = memory;
        let mut interrupts = Vec::new();
        let grant = match grant {
            InterruptGrant::Line { irq } => {
                let v = allocator.allocate()?;
                let affinity = self.affinity_for(0);
                let flags = self.interrupt_flags(CM_RESOURCE_INTERRUPT_LEVEL_SENSITIVE);
                let desc = |level: u32, vector: u32| CmPartialResourceDescriptor {
                    resource_type: CmResourceType::Interrupt,
                    share_disposition: ShareDisposition::Shared,
                    flags,
                    u: CmDescriptorData::Interrupt(CmInterrupt {
                        level,
                        vector,
                        affinity,
                    }),
                };
                raw.push(desc(irq, irq));
                translated.push(desc(u32::from(v.irql), u32::from(v.vector)));
                interrupts.push(InterruptAssignment {
                    message_number: None,
                    vector: v.vector,
                    irql: v.irql,
                    affinity,
                    dest_apic_id: self.topology.destination(affinity),
                });
                grant
            }
            InterruptGrant::Messages { count } => {
                let available = allocator.available();
                if available == 0 {
                    return Err(VectorError::Exhausted {
                        requested: count as usize,
                        available,
                    });
                }
                let count = (count.max(1) as usize).min(available);
                let vectors = allocator.allocate_many(count)?;
                for (i, v) in vectors.iter().enumerate() {
                    let affinity = self.affinity_for(i);
                    interrupts.push(InterruptAssignment {
                        message_number: Some(i as MessageNumber),
                        vector: v.vector,
                        irql: v.irql,
                        affinity,
                        dest_apic_id: self.topology.destination(affinity),
                    });
                }
                let flags = self
                    .interrupt_flags(CM_RESOURCE_INTERRUPT_LATCHED | CM_RESOURCE_INTERRUPT_MESSAGE);
                let desc = |message_count: MessageCount, a: &InterruptAssignment| {
                    let data = CmMessageInterrupt {
                        raw: CmMessageInterruptRaw {
                            message_count,
                            vector: u32::from(a.vector),
                            affinity: a.affinity,
                        },
                        translated: CmInterrupt {
                            level: u32::from(a.irql),
                            vector: u32::from(a.vector),
                            affinity: a.affinity,
                        },
                    };
                    CmPartialResourceDescriptor {
                        resource_type: CmResourceType::Interrupt,
                        share_disposition: ShareDisposition::DeviceExclusive,
                        flags,
                        u: CmDescriptorData::MessageInterrupt(data),
                    }
                };
                match self.layout {
                    MessageDescriptorLayout::PerMessage => {
                        for a in &interrupts {
                            raw.push(desc(1, a));
                            translated.push(desc(1, a));
                        }
                    }
                    MessageDescriptorLayout::Single => {
                        raw.push(desc(count as MessageCount, &interrupts[0]));
                        translated.push(desc(count as MessageCount, &interrupts[0]));
                    }
                }
                InterruptGrant::Messages {
                    count: count as u32,
                }
            }
        };
        Ok(AssignedResources {
            grant,
            raw,
            translated,
            interrupts,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BARS: &[(u64, u64, bool)] = &[(0xFE00_0000, 0x4000, false), (0xFE01_0000, 0x1000, false)];

    #[test]
    fn message_grant_sets_the_message_flag_per_message() {
        let mut alloc = VectorAllocator::default();
        let r = ResourceBuilder::default()
            .build(InterruptGrant::Messages { count: 3 }, &mut alloc, BARS)
            .unwrap();
        assert_eq!(r.translated.len(), 5);
        assert_eq!(r.translated[0].resource_type as u8, CM_RESOURCE_TYPE_MEMORY);
        assert_eq!(
            r.translated[0].u,
            CmDescriptorData::Memory(CmMemory {
                start: 0xFE00_0000,
                length: 0x4000
            })
        );
        let ints: Vec<_> = r.translated.iter().filter(|d| d.is_interrupt()).collect();
        assert_eq!(ints.len(), 3);
        for d in &ints {
            assert_eq!(d.resource_type as u8, CM_RESOURCE_TYPE_INTERRUPT);
            assert_eq!(
                d.flags,
                CM_RESOURCE_INTERRUPT_LATCHED | CM_RESOURCE_INTERRUPT_MESSAGE
            );
            assert_eq!(d.share_disposition, ShareDisposition::DeviceExclusive);
            assert_eq!(d.message_count(), Some(1));
        }
        assert_eq!(granted_message_total(&r.translated), 3);
        let t = ints[1].interrupt_fields().unwrap();
        assert_eq!((t.level, t.vector, t.affinity), (0xC, 0xC1, 1));
        assert_eq!(
            r.interrupts
                .iter()
                .map(|i| i.message_number)
                .collect::<Vec<_>>(),
            [Some(0), Some(1), Some(2)]
        );
    }

    #[test]
    fn single_layout_carries_the_whole_count() {
        let mut alloc = VectorAllocator::default();
        let b = ResourceBuilder {
            layout: MessageDescriptorLayout::Single,
            ..Default::default()
        };
        let r = b
            .build(InterruptGrant::Messages { count: 4 }, &mut alloc, &[])
            .unwrap();
        assert_eq!(r.translated.len(), 1);
        assert_eq!(r.translated[0].message_count(), Some(4));
        assert_eq!(r.raw[0].message_count(), Some(4));
        assert_eq!(granted_message_total(&r.translated), 4);
        assert_eq!(r.interrupts.len(), 4);
    }

    #[test]
    fn line_grant_lacks_the_message_flag() {
        let mut alloc = VectorAllocator::default();
        let r = ResourceBuilder::default()
            .build(InterruptGrant::Line { irq: 11 }, &mut alloc, BARS)
            .unwrap();
        let raw = r.raw.iter().find(|d| d.is_interrupt()).unwrap();
        let tr = r.translated.iter().find(|d| d.is_interrupt()).unwrap();
        assert!(!tr.is_message());
        assert_eq!(tr.flags & CM_RESOURCE_INTERRUPT_MESSAGE, 0);
        assert_eq!(tr.flags, CM_RESOURCE_INTERRUPT_LEVEL_SENSITIVE);
        assert_eq!(tr.message_count(), None);
        assert_eq!(tr.share_disposition, ShareDisposition::Shared);
        assert_eq!(
            raw.u,
            CmDescriptorData::Interrupt(CmInterrupt {
                level: 11,
                vector: 11,
                affinity: 1
            })
        );
        assert_eq!(
            tr.u,
            CmDescriptorData::Interrupt(CmInterrupt {
                level: 0xD,
                vector: 0xD1,
                affinity: 1
            })
        );
        assert_eq!(granted_message_total(&r.translated), 0);
    }

    #[test]
    fn short_on_vectors_shrinks_the_grant_then_fails() {
        let mut alloc = VectorAllocator::new(0x50, 0x51).unwrap();
        let r = ResourceBuilder::default()
            .build(InterruptGrant::Messages { count: 5 }, &mut alloc, &[])
            .unwrap();
        assert_eq!(r.grant, InterruptGrant::Messages { count: 2 });
        assert!(
            ResourceBuilder::default()
                .build(InterruptGrant::Messages { count: 1 }, &mut alloc, &[])
                .is_err()
        );
        r.release(&mut alloc).unwrap();
        assert_eq!(alloc.available(), 2);
    }

    #[test]
    fn spread_policy_spreads_and_marks_policy_included() {
        let mut alloc = VectorAllocator::default();
        let b = ResourceBuilder {
            topology: ProcessorTopology {
                apic_ids: vec![0, 2, 4],
            },
            affinity_policy: Some(IrqDevicePolicy::SpreadMessagesAcrossAllProcessors),
            layout: MessageDescriptorLayout::PerMessage,
        };
        let r = b
            .build(InterruptGrant::Messages { count: 4 }, &mut alloc, &[])
            .unwrap();
        let aff: Vec<_> = r
            .interrupts
            .iter()
            .map(|i| (i.affinity, i.dest_apic_id))
            .collect();
        assert_eq!(aff, [(1, 0), (2, 2), (4, 4), (1, 0)]);
        assert_ne!(
            r.translated[0].flags & CM_RESOURCE_INTERRUPT_POLICY_INCLUDED,
            0
        );
    }
}
