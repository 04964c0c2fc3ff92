//! CM resource descriptors, raw and translated, as the PnP manager hands them to a driver.
//!
//! A Rust model of `CM_PARTIAL_RESOURCE_DESCRIPTOR`: a type, a share disposition, flags and
//! the `u` union. The one fact a driver must check is `Flags & CM_RESOURCE_INTERRUPT_MESSAGE`
//! (checklist 1.2).
//!
//! For MSI-X, Windows lists one interrupt descriptor per message
//! ([`MessageDescriptorLayout::PerMessage`], each raw `MessageCount = 1`); for multi-message
//! MSI it lists a single descriptor whose raw `MessageCount` is the whole grant
//! ([`MessageDescriptorLayout::Single`]).
//!
//! `u.MessageInterrupt` is a union of `Raw` (`Group`, `MessageCount`, `Vector`, `Affinity`)
//! and `Translated` (`Level`, `Group`, `Vector`, `Affinity`), with 16-bit `Level`, `Group`
//! and `MessageCount` on x64 (processor groups). A message descriptor here holds the half its
//! list carries ([`CmMessageInterrupt`]); reading the other half's field reads the overlaid
//! bytes, as in C. So the *translated* descriptor's `MessageCount` is its `Group`, 0 on an
//! ordinary machine (catalogue row 24): count messages with [`message_descriptor_count`] or
//! [`granted_message_total`] over the raw list.
//!
//! Assigned interrupt flags are `CM_RESOURCE_INTERRUPT_LATCHED | CM_RESOURCE_INTERRUPT_MESSAGE`
//! (0x3) for messages and 0 for a line: `CM_RESOURCE_INTERRUPT_POLICY_INCLUDED` belongs to
//! requirement lists, never to assigned resources.

use crate::arbiter::InterruptGrant;
use crate::inf::IrqDevicePolicy;
use crate::vectors::{IdtVector, Irql, VectorAllocator, VectorError};
use serde::{Deserialize, Serialize};

/// The 0-based message index; for MSI-X also the table entry index virtio wants.
pub type MessageNumber = u32;
/// `u.MessageInterrupt.Raw.MessageCount` (a USHORT in the x64 headers).
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
/// Interrupt flag of *requirement* lists: the descriptor carries an affinity policy. Never in
/// assigned resources.
pub const CM_RESOURCE_INTERRUPT_POLICY_INCLUDED: u16 = 4;

/// Memory flag: read/write (the value 0).
pub const CM_RESOURCE_MEMORY_READ_WRITE: u16 = 0;
/// Memory flag: prefetchable BAR.
pub const CM_RESOURCE_MEMORY_PREFETCHABLE: u16 = 4;

/// `CM_RESOURCE_TYPE` values this model uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[repr(u8)]
pub enum CmResourceType {
    /// `CmResourceTypeInterrupt` (2), line or message.
    Interrupt = CM_RESOURCE_TYPE_INTERRUPT,
    /// `CmResourceTypeMemory` (3), a memory BAR.
    Memory = CM_RESOURCE_TYPE_MEMORY,
}

/// `CM_SHARE_DISPOSITION`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[repr(u8)]
pub enum ShareDisposition {
    /// `CmResourceShareUndetermined` (0).
    Undetermined = 0,
    /// `CmResourceShareDeviceExclusive` (1): what a message interrupt and a BAR get.
    DeviceExclusive = 1,
    /// `CmResourceShareDriverExclusive` (2).
    DriverExclusive = 2,
    /// `CmResourceShareShared` (3): a line interrupt other functions may share.
    Shared = 3,
}

/// `u.Interrupt`, and the shape of `u.MessageInterrupt.Translated`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CmInterrupt {
    /// `Level`: the IRQ (raw list) or IRQL (translated list).
    pub level: u32,
    /// Processor group of `affinity` (0 on a machine with at most 64 processors).
    pub group: u16,
    /// `Vector`: the IRQ (raw list) or IDT vector (translated list).
    pub vector: u32,
    /// `Affinity`: the processors the interrupt may target (`KAFFINITY`).
    pub affinity: Affinity,
}

/// `u.MessageInterrupt.Raw`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CmMessageInterruptRaw {
    /// `Group`: processor group of `affinity`.
    pub group: u16,
    /// `MessageCount`: messages this descriptor stands for.
    pub message_count: MessageCount,
    /// `Vector`: the raw vector of the first message.
    pub vector: u32,
    /// `Affinity`.
    pub affinity: Affinity,
}

/// `u.MessageInterrupt`: the half this descriptor's list carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CmMessageInterrupt {
    /// In the raw list (`AllocatedResources`, KMDF's `ResourcesRaw`).
    Raw(CmMessageInterruptRaw),
    /// In the translated list (`AllocatedResourcesTranslated`, `ResourcesTranslated`).
    Translated(CmInterrupt),
}

/// `u.Memory`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CmMemory {
    /// `Start`: physical address of the BAR.
    pub start: u64,
    /// `Length` in bytes.
    pub length: u64,
}

/// The `u` union, reduced to the member the type and flags select.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CmDescriptorData {
    /// `u.Interrupt`: a line interrupt.
    Interrupt(CmInterrupt),
    /// `u.MessageInterrupt`: a message-signaled interrupt (`CM_RESOURCE_INTERRUPT_MESSAGE`).
    MessageInterrupt(CmMessageInterrupt),
    /// `u.Memory`: a memory range.
    Memory(CmMemory),
}

/// `CM_PARTIAL_RESOURCE_DESCRIPTOR`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CmPartialResourceDescriptor {
    /// `Type`.
    pub resource_type: CmResourceType,
    /// `ShareDisposition`.
    pub share_disposition: ShareDisposition,
    /// `Flags` (`CM_RESOURCE_INTERRUPT_*` or `CM_RESOURCE_MEMORY_*`).
    pub flags: u16,
    /// `u`, the member `Type` and `Flags` select.
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

    /// A line or message interrupt descriptor.
    pub fn is_interrupt(&self) -> bool {
        self.resource_type == CmResourceType::Interrupt
    }

    /// The check of checklist 1.2.
    pub fn is_message(&self) -> bool {
        self.is_interrupt() && self.flags & CM_RESOURCE_INTERRUPT_MESSAGE != 0
    }

    /// What a driver reads from `u.MessageInterrupt.Raw.MessageCount` on a message descriptor
    /// (`None` otherwise): the count on a raw descriptor; on a translated one the bytes of
    /// `Translated.Group`, 0 on an ordinary x64 machine.
    pub fn message_count(&self) -> Option<MessageCount> {
        match self.u {
            CmDescriptorData::MessageInterrupt(CmMessageInterrupt::Raw(r)) if self.is_message() => {
                Some(r.message_count)
            }
            CmDescriptorData::MessageInterrupt(CmMessageInterrupt::Translated(t))
                if self.is_message() =>
            {
                Some(MessageCount::from(t.group))
            }
            _ => None,
        }
    }

    /// The evidence this descriptor is, read from the list it sits in (`raw`: the raw list):
    /// the fields a resource dump shows, with `MessageCount` as the bytes of
    /// `u.MessageInterrupt.Raw.MessageCount` read (the overlaid `Group` on a translated one).
    /// `None` for anything but an interrupt.
    pub fn assigned_event(&self, raw: bool) -> Option<virq_events::EventKind> {
        if !self.is_interrupt() {
            return None;
        }
        let f = self.interrupt_fields()?;
        let message = self.is_message();
        Some(virq_events::EventKind::ResourceAssigned {
            mode: if message {
                virq_events::InterruptMode::Message
            } else {
                virq_events::InterruptMode::Intx
            },
            message_count: if message {
                self.message_count().unwrap_or(0)
            } else {
                0
            },
            level: f.level,
            vector: f.vector,
            affinity: f.affinity,
            flags: self.flags,
            raw,
        })
    }

    /// Level, Group, Vector, Affinity as a driver reads them through `u.Interrupt` (the shape
    /// of `u.MessageInterrupt.Translated`). Meaningful on a translated descriptor; on a raw
    /// message descriptor `Level` reads the raw `Group` and `Group` the raw `MessageCount`.
    pub fn interrupt_fields(&self) -> Option<CmInterrupt> {
        match self.u {
            CmDescriptorData::Interrupt(i) => Some(i),
            CmDescriptorData::MessageInterrupt(CmMessageInterrupt::Translated(t)) => Some(t),
            CmDescriptorData::MessageInterrupt(CmMessageInterrupt::Raw(r)) => Some(CmInterrupt {
                level: u32::from(r.group),
                group: u16::try_from(r.message_count).unwrap_or(u16::MAX),
                vector: r.vector,
                affinity: r.affinity,
            }),
            CmDescriptorData::Memory(_) => None,
        }
    }
}

/// Descriptors with `CM_RESOURCE_INTERRUPT_MESSAGE` in a list: the messages granted for MSI-X
/// (one descriptor per message), in the raw or the translated list.
pub fn message_descriptor_count(descriptors: &[CmPartialResourceDescriptor]) -> u32 {
    descriptors.iter().filter(|d| d.is_message()).count() as u32
}

/// The sum of `MessageCount` over message descriptors. Right on the **raw** list, for both
/// layouts; on the translated list it sums the overlaid `Group` fields (0 on x64), the mistake
/// of catalogue row 24.
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
    /// Local APIC id of each processor, by processor number.
    pub apic_ids: Vec<u8>,
}

impl ProcessorTopology {
    /// `count` processors with APIC ids `0..count` (at most 64, one KAFFINITY word).
    pub fn uniform(count: u8) -> Self {
        Self {
            apic_ids: (0..count.clamp(1, 64)).collect(),
        }
    }

    /// Number of processors, 1 to 64.
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
    /// The IDT vector the OS connected.
    pub vector: IdtVector,
    /// The IRQL its ISR runs at.
    pub irql: Irql,
    /// The processors it may target.
    pub affinity: Affinity,
    /// Local APIC id the MSI address targets (physical destination mode).
    pub dest_apic_id: u8,
}

/// What the PnP manager passes with `IRP_MN_START_DEVICE`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AssignedResources {
    /// The grant assigned: all messages requested, exactly one, or the line.
    pub grant: InterruptGrant,
    /// `AllocatedResources` (KMDF's `ResourcesRaw`).
    pub raw: Vec<CmPartialResourceDescriptor>,
    /// `AllocatedResourcesTranslated` (KMDF's `ResourcesTranslated`).
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

    /// The messages granted, counted the right way (raw `MessageCount`).
    pub fn messages_granted(&self) -> u32 {
        granted_message_total(&self.raw)
    }
}

/// Builds [`AssignedResources`] from a grant, the vector allocator and the BARs.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourceBuilder {
    /// The processors the interrupts may target.
    pub topology: ProcessorTopology,
    /// From the INF's `Affinity Policy\DevicePolicy`; `None` is the machine default.
    pub affinity_policy: Option<IrqDevicePolicy>,
    /// How message interrupts appear in the lists.
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

    /// Allocate vectors and produce both lists. BARs are `(address, length, prefetchable)`
    /// and come first, as the PCI bus driver reports them. The grant is all or nothing: too few
    /// free vectors is an error, and the caller decides what to ask for instead
    /// ([`crate::pnp::start_device`] asks for one message, then the line).
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
        match grant {
            InterruptGrant::Line { irq } => {
                let v = allocator.allocate()?;
                let affinity = self.affinity_for(0);
                let desc = |level: u32, vector: u32| CmPartialResourceDescriptor {
                    resource_type: CmResourceType::Interrupt,
                    share_disposition: ShareDisposition::Shared,
                    flags: CM_RESOURCE_INTERRUPT_LEVEL_SENSITIVE,
                    u: CmDescriptorData::Interrupt(CmInterrupt {
                        level,
                        group: 0,
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
            }
            InterruptGrant::Messages { count } => {
                let count = count.max(1) as usize;
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
                let desc = |half: CmMessageInterrupt| CmPartialResourceDescriptor {
                    resource_type: CmResourceType::Interrupt,
                    share_disposition: ShareDisposition::DeviceExclusive,
                    flags: CM_RESOURCE_INTERRUPT_LATCHED | CM_RESOURCE_INTERRUPT_MESSAGE,
                    u: CmDescriptorData::MessageInterrupt(half),
                };
                let raw_half = |message_count: MessageCount, a: &InterruptAssignment| {
                    CmMessageInterrupt::Raw(CmMessageInterruptRaw {
                        group: 0,
                        message_count,
                        vector: u32::from(a.vector),
                        affinity: a.affinity,
                    })
                };
                let translated_half = |a: &InterruptAssignment| {
                    CmMessageInterrupt::Translated(CmInterrupt {
                        level: u32::from(a.irql),
                        group: 0,
                        vector: u32::from(a.vector),
                        affinity: a.affinity,
                    })
                };
                match self.layout {
                    MessageDescriptorLayout::PerMessage => {
                        for a in &interrupts {
                            raw.push(desc(raw_half(1, a)));
                            translated.push(desc(translated_half(a)));
                        }
                    }
                    MessageDescriptorLayout::Single => {
                        raw.push(desc(raw_half(count as MessageCount, &interrupts[0])));
                        translated.push(desc(translated_half(&interrupts[0])));
                    }
                }
            }
        }
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
        for list in [&r.raw, &r.translated] {
            let ints: Vec<_> = list.iter().filter(|d| d.is_interrupt()).collect();
            assert_eq!(ints.len(), 3);
            for d in &ints {
                assert_eq!(d.resource_type as u8, CM_RESOURCE_TYPE_INTERRUPT);
                // Assigned resources never carry POLICY_INCLUDED (requirement lists do).
                assert_eq!(
                    d.flags,
                    CM_RESOURCE_INTERRUPT_LATCHED | CM_RESOURCE_INTERRUPT_MESSAGE
                );
                assert_eq!(d.share_disposition, ShareDisposition::DeviceExclusive);
            }
        }
        assert_eq!(message_descriptor_count(&r.translated), 3);
        assert_eq!(granted_message_total(&r.raw), 3);
        assert_eq!(r.messages_granted(), 3);
        let t = r.translated[3].interrupt_fields().unwrap();
        assert_eq!((t.level, t.vector, t.affinity), (0xA, 0xA1, 1));
        assert_eq!(
            r.interrupts
                .iter()
                .map(|i| i.message_number)
                .collect::<Vec<_>>(),
            [Some(0), Some(1), Some(2)]
        );
    }

    /// On x64 the translated descriptor's `MessageCount` overlays `Translated.Group`: it reads
    /// the group (0), while the raw descriptor says 1. Summing it gives 0 messages (row 24).
    #[test]
    fn translated_message_count_reads_the_group() {
        let mut alloc = VectorAllocator::default();
        let r = ResourceBuilder::default()
            .build(InterruptGrant::Messages { count: 3 }, &mut alloc, &[])
            .unwrap();
        for (raw, tr) in r.raw.iter().zip(&r.translated) {
            assert_eq!(raw.message_count(), Some(1));
            assert_eq!(tr.message_count(), Some(0));
            assert_eq!(tr.interrupt_fields().unwrap().group, 0);
        }
        assert_eq!(granted_message_total(&r.translated), 0);
        // A descriptor whose affinity sits in processor group 1 reads MessageCount=1 there.
        let mut in_group_1 = r.translated[0];
        if let CmDescriptorData::MessageInterrupt(CmMessageInterrupt::Translated(t)) =
            &mut in_group_1.u
        {
            t.group = 1;
        }
        assert_eq!(in_group_1.message_count(), Some(1));
        // And the raw half read as `u.Interrupt`: Level is the raw Group, Group the count.
        let as_interrupt = r.raw[0].interrupt_fields().unwrap();
        assert_eq!((as_interrupt.level, as_interrupt.group), (0, 1));
    }

    #[test]
    fn single_layout_carries_the_whole_count_in_the_raw_list() {
        let mut alloc = VectorAllocator::default();
        let b = ResourceBuilder {
            layout: MessageDescriptorLayout::Single,
            ..Default::default()
        };
        let r = b
            .build(InterruptGrant::Messages { count: 4 }, &mut alloc, &[])
            .unwrap();
        assert_eq!(r.translated.len(), 1);
        assert_eq!(r.raw[0].message_count(), Some(4));
        assert_eq!(r.translated[0].message_count(), Some(0));
        assert_eq!(granted_message_total(&r.raw), 4);
        assert_eq!(message_descriptor_count(&r.translated), 1);
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
                group: 0,
                vector: 11,
                affinity: 1
            })
        );
        assert_eq!(
            tr.u,
            CmDescriptorData::Interrupt(CmInterrupt {
                level: 0xB,
                group: 0,
                vector: 0xB1,
                affinity: 1
            })
        );
        assert_eq!(granted_message_total(&r.raw), 0);
        assert_eq!(r.messages_granted(), 0);
    }

    /// All or nothing: a grant the free vectors cannot cover is refused whole.
    #[test]
    fn short_on_vectors_refuses_the_whole_grant() {
        let mut alloc = VectorAllocator::new(0x50, 0x51).unwrap();
        assert_eq!(
            ResourceBuilder::default().build(
                InterruptGrant::Messages { count: 5 },
                &mut alloc,
                &[]
            ),
            Err(VectorError::Exhausted {
                requested: 5,
                available: 2
            })
        );
        assert_eq!(alloc.available(), 2);
        let r = ResourceBuilder::default()
            .build(InterruptGrant::Messages { count: 2 }, &mut alloc, &[])
            .unwrap();
        assert!(
            ResourceBuilder::default()
                .build(InterruptGrant::Messages { count: 1 }, &mut alloc, &[])
                .is_err()
        );
        r.release(&mut alloc).unwrap();
        assert_eq!(alloc.available(), 2);
    }

    #[test]
    fn spread_policy_spreads_without_policy_included() {
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
        assert_eq!(
            r.translated[0].flags & CM_RESOURCE_INTERRUPT_POLICY_INCLUDED,
            0
        );
    }
}
