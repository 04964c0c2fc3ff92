//! The whole OS-side start of one PCI function, in the order Windows 7 does it:
//! INF policy -> arbiter grant -> vectors and CM resources -> PCI bus driver programs MSI-X.

use crate::arbiter::{
    Arbiter, GrantDecision, GrantRequest, InterruptGrant, LineReason, MsixCapabilityInfo,
    OneMessageReason,
};
use crate::inf::{InfPolicy, IrqDevicePolicy};
use crate::msi::{MsixProgramError, MsixProgramming, UnusedEntryPolicy, program_msix};
use crate::resources::{
    AssignedResources, MessageDescriptorLayout, ProcessorTopology, ResourceBuilder,
};
use crate::vectors::{VectorAllocator, VectorError};
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// PCI Command bit 10, Interrupt Disable.
pub const COMMAND_INTERRUPT_DISABLE: u16 = 1 << 10;

/// Everything the OS knows about a function when it starts it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceStartConfig {
    /// The INF's interrupt-management keys.
    pub policy: InfPolicy,
    /// `Affinity Policy\DevicePolicy` from the INF, when set.
    pub affinity_policy: Option<IrqDevicePolicy>,
    /// The function's MSI-X capability; `None` when it has none.
    pub msix: Option<MsixCapabilityInfo>,
    /// Messages asked for; 0 asks for the whole table.
    pub requested: u32,
    /// The line interrupt's IRQ (GSI) the function's INTA# is routed to.
    pub line_irq: u32,
    /// Memory BARs as `(address, length, prefetchable)`.
    pub bars: Vec<(u64, u64, bool)>,
    /// The processors the interrupts may target.
    pub topology: ProcessorTopology,
    /// How the message interrupts appear in the CM resource lists.
    pub layout: MessageDescriptorLayout,
    /// What the bus driver writes into table entries beyond the grant.
    pub unused_entries: UnusedEntryPolicy,
    /// pci.sys sets Command bit 10 (Interrupt Disable) when the function starts with message
    /// interrupts. A published `!pci` dump shows it (`InterruptDis`); whether Windows 7 itself
    /// does is unverified, so it is a switch, off by default.
    pub interrupt_disable_with_messages: bool,
}

/// The outcome of a start.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceStart {
    /// What was granted and why (after any fallback for want of vectors).
    pub decision: GrantDecision,
    /// The raw and translated CM resource lists the driver's `EvtDevicePrepareHardware` gets.
    pub resources: AssignedResources,
    /// What the bus driver writes into the MSI-X table and Message Control.
    pub msix: MsixProgramming,
    /// Command bit 10 as the bus driver leaves it: set only with message interrupts and
    /// [`DeviceStartConfig::interrupt_disable_with_messages`].
    pub interrupt_disable: bool,
}

/// Why a start failed.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum StartError {
    /// No IDT vector was left for the grant.
    #[error(transparent)]
    Vectors(#[from] VectorError),
    /// The MSI-X table could not be programmed for the grant.
    #[error(transparent)]
    Msix(#[from] MsixProgramError),
}

/// Start a function: decide, allocate, describe, program. Messages the vectors cannot cover
/// fall back to exactly one message, then to the line; no vector even for the line fails the
/// start.
pub fn start_device(
    cfg: &DeviceStartConfig,
    arbiter: &Arbiter,
    allocator: &mut VectorAllocator,
) -> Result<DeviceStart, StartError> {
    let mut decision = arbiter.decide(&GrantRequest {
        policy: cfg.policy,
        msix: cfg.msix,
        requested: cfg.requested,
        line_irq: cfg.line_irq,
    });
    let builder = ResourceBuilder {
        topology: cfg.topology.clone(),
        affinity_policy: cfg.affinity_policy,
        layout: cfg.layout,
    };
    let resources = loop {
        match builder.build(decision.grant, allocator, &cfg.bars) {
            Ok(r) => break r,
            Err(VectorError::Exhausted { .. }) => match decision.grant {
                InterruptGrant::Messages { count } if count > 1 => {
                    decision = decision.fall_back_to_one(OneMessageReason::VectorsShort);
                }
                InterruptGrant::Messages { .. } => {
                    decision =
                        decision.fall_back_to_line(cfg.line_irq, LineReason::AllocationFailed);
                }
                InterruptGrant::Line { .. } => {
                    return Err(VectorError::Exhausted {
                        requested: 1,
                        available: 0,
                    }
                    .into());
                }
            },
            Err(e) => return Err(e.into()),
        }
    };
    let table_size = cfg.msix.map_or(0, |m| m.table_size);
    let msix = match program_msix(&resources, table_size, cfg.unused_entries) {
        Ok(p) => p,
        Err(e) => {
            resources.release(allocator)?;
            return Err(e.into());
        }
    };
    let interrupt_disable = cfg.interrupt_disable_with_messages && resources.grant.is_message();
    Ok(DeviceStart {
        decision,
        resources,
        msix,
        interrupt_disable,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arbiter::GrantReason;
    use crate::dbgprint::{DbgPrint, DbgViewStyle};
    use crate::inf::{Inf, InfArch, VIRTIO_BLK_SAMPLE_INF, VIRTIO_BLK_SAMPLE_INSTALL};
    use crate::resources::{granted_message_total, message_descriptor_count};
    use crate::vectors::{MAX_DEVICE_IRQL, SYSTEM_VECTORS, is_device_vector};
    use crate::wdf::WdfInterrupts;
    use proptest::prelude::*;

    fn sample_config() -> DeviceStartConfig {
        let settings = Inf::parse(VIRTIO_BLK_SAMPLE_INF)
            .unwrap()
            .interrupt_settings(VIRTIO_BLK_SAMPLE_INSTALL, InfArch::Amd64)
            .unwrap();
        DeviceStartConfig {
            policy: settings.policy,
            affinity_policy: settings.affinity.and_then(|a| a.device_policy),
            msix: Some(MsixCapabilityInfo { table_size: 2 }),
            requested: 0,
            line_irq: 11,
            bars: vec![(0xFE00_0000, 0x4000, false)],
            topology: ProcessorTopology::uniform(2),
            ..Default::default()
        }
    }

    /// The chain from the sample INF to the checklist's prints, for virtio-blk (1 queue): the
    /// translated MessageCount prints the Group (0), the flags carry no POLICY_INCLUDED.
    #[test]
    fn sample_inf_to_prints() {
        let cfg = sample_config();
        let mut alloc = VectorAllocator::default();
        let start = start_device(&cfg, &Arbiter::default(), &mut alloc).unwrap();
        assert_eq!(start.resources.grant, InterruptGrant::Messages { count: 2 });
        assert_eq!(start.decision.reason, GrantReason::AllRequested);
        assert_eq!(granted_message_total(&start.resources.raw), 2);
        assert_eq!(message_descriptor_count(&start.resources.translated), 2);
        assert_eq!(start.msix.entries.len(), 2);
        assert_eq!(start.msix.entries[1].address, 0xFEE0_1000);
        assert!(!start.interrupt_disable);
        let mut p = DbgPrint::new(DbgViewStyle::bare());
        p.resources(&start.resources.translated);
        let mut w = WdfInterrupts::new(&start.resources);
        for id in w.create_per_resource() {
            p.interrupt_connected(&w.get_info(id));
        }
        assert_eq!(
            p.capture.texts(),
            [
                "INT: MSI/MSI-X Level=11 Vector=177 Affinity=0x1 MessageCount=0 Flags=0x3",
                "INT: MSI/MSI-X Level=10 Vector=161 Affinity=0x2 MessageCount=0 Flags=0x3",
                "WDFINT: MessageSignaled=1 MessageNumber=0 Vector=177 Irql=11 Affinity=0x1",
                "WDFINT: MessageSignaled=1 MessageNumber=1 Vector=161 Irql=10 Affinity=0x2",
            ]
        );
    }

    #[test]
    fn misplaced_inf_keys_give_a_line_and_no_msix_programming() {
        let cfg = DeviceStartConfig {
            policy: InfPolicy::line_only(),
            ..sample_config()
        };
        let mut alloc = VectorAllocator::default();
        let start = start_device(&cfg, &Arbiter::default(), &mut alloc).unwrap();
        assert_eq!(
            start.decision.line_reason(),
            Some(LineReason::InfDisallowsMsi)
        );
        assert_eq!(start.resources.grant, InterruptGrant::Line { irq: 11 });
        assert!(!start.msix.set_enable && start.msix.entries.is_empty());
    }

    #[test]
    fn platform_limit_one_gives_one_message_and_aliases_the_rest() {
        let cfg = DeviceStartConfig {
            policy: InfPolicy::msi(None),
            msix: Some(MsixCapabilityInfo { table_size: 3 }),
            ..sample_config()
        };
        let mut alloc = VectorAllocator::default();
        let start = start_device(&cfg, &Arbiter::with_platform_limit(2), &mut alloc).unwrap();
        assert_eq!(
            start.decision.one_message_reason(),
            Some(OneMessageReason::PlatformLimit)
        );
        assert_eq!(start.resources.grant, InterruptGrant::Messages { count: 1 });
        assert!(start.msix.entries.iter().all(|e| e.message_number == 0));
        assert_eq!(start.msix.entries.len(), 3);
    }

    /// Vectors short for the request: exactly one message; none even for one: the line.
    #[test]
    fn vector_shortage_falls_back_to_one_message_then_to_the_line() {
        let cfg = DeviceStartConfig {
            policy: InfPolicy::msi(None),
            msix: Some(MsixCapabilityInfo { table_size: 4 }),
            ..sample_config()
        };
        let mut alloc = VectorAllocator::new(0x50, 0x52).unwrap();
        let first = start_device(&cfg, &Arbiter::default(), &mut alloc).unwrap();
        assert_eq!(first.resources.grant, InterruptGrant::Messages { count: 1 });
        assert_eq!(
            first.decision.one_message_reason(),
            Some(OneMessageReason::VectorsShort)
        );
        assert_eq!(first.decision.requested, 4);
        // Two vectors left: still not four. Take one more away and the next start gets one.
        alloc.allocate().unwrap();
        let second = start_device(&cfg, &Arbiter::default(), &mut alloc).unwrap();
        assert_eq!(
            second.resources.grant,
            InterruptGrant::Messages { count: 1 }
        );
        // Nothing left for a message: the line, which needs a vector too.
        let mut empty = VectorAllocator::new(0x50, 0x50).unwrap();
        empty.allocate().unwrap();
        assert_eq!(
            start_device(&cfg, &Arbiter::default(), &mut empty),
            Err(StartError::Vectors(VectorError::Exhausted {
                requested: 1,
                available: 0
            }))
        );
        let mut one = VectorAllocator::new(0x50, 0x50).unwrap();
        let cfg_big = DeviceStartConfig {
            msix: Some(MsixCapabilityInfo { table_size: 1 }),
            ..cfg.clone()
        };
        // One vector: one message of one requested, the whole request.
        let s = start_device(&cfg_big, &Arbiter::default(), &mut one).unwrap();
        assert_eq!(s.decision.reason, GrantReason::AllRequested);
        s.resources.release(&mut one).unwrap();
    }

    #[test]
    fn message_allocation_failing_altogether_gives_the_line() {
        // A decision for one message that no vector can carry, then the line that can.
        let cfg = DeviceStartConfig {
            policy: InfPolicy::msi(None),
            msix: Some(MsixCapabilityInfo { table_size: 1 }),
            ..sample_config()
        };
        let mut alloc = VectorAllocator::new(0x50, 0x50).unwrap();
        let decision = Arbiter::default().decide(&crate::arbiter::GrantRequest {
            policy: cfg.policy,
            msix: cfg.msix,
            requested: 0,
            line_irq: 11,
        });
        let d = decision.fall_back_to_line(11, LineReason::AllocationFailed);
        assert_eq!(d.grant, InterruptGrant::Line { irq: 11 });
        assert!(
            d.describe().contains("allocation failed"),
            "{}",
            d.describe()
        );
        let s = start_device(&cfg, &Arbiter::msi_disabled(), &mut alloc).unwrap();
        assert_eq!(
            s.decision.line_reason(),
            Some(LineReason::PlatformMsiDisabled)
        );
    }

    #[test]
    fn interrupt_disable_is_set_with_messages_only_when_switched_on() {
        let on = DeviceStartConfig {
            interrupt_disable_with_messages: true,
            ..sample_config()
        };
        let mut alloc = VectorAllocator::default();
        assert!(
            start_device(&on, &Arbiter::default(), &mut alloc)
                .unwrap()
                .interrupt_disable
        );
        let line = DeviceStartConfig {
            policy: InfPolicy::line_only(),
            ..on
        };
        assert!(
            !start_device(&line, &Arbiter::default(), &mut alloc)
                .unwrap()
                .interrupt_disable
        );
    }

    proptest! {
        /// For any INF, table, platform limit and prior vector use: the grant is all requested,
        /// one, or the line; no device IRQL above 11 and no system vector is handed out.
        #[test]
        fn every_start_grants_all_one_or_a_line_on_device_vectors(
            msi in any::<bool>(),
            limit in proptest::option::of(1u32..20),
            table in 0u16..64,
            platform in 0u32..80,
            platform_msi in any::<bool>(),
            used in 0usize..112,
        ) {
            let cfg = DeviceStartConfig {
                policy: if msi { InfPolicy::msi(limit) } else { InfPolicy::line_only() },
                msix: (table > 0).then_some(MsixCapabilityInfo { table_size: table }),
                ..sample_config()
            };
            let mut alloc = VectorAllocator::default();
            for _ in 0..used {
                alloc.allocate().unwrap();
            }
            let arbiter = Arbiter { platform_limit: platform, msi_enabled: platform_msi };
            match start_device(&cfg, &arbiter, &mut alloc) {
                Ok(s) => {
                    match s.resources.grant {
                        InterruptGrant::Messages { count } => {
                            prop_assert!(count == 1 || count == s.decision.requested);
                            prop_assert_eq!(s.resources.messages_granted(), count);
                        }
                        InterruptGrant::Line { irq } => prop_assert_eq!(irq, 11),
                    }
                    for i in &s.resources.interrupts {
                        prop_assert!(is_device_vector(i.vector));
                        prop_assert!(i.irql <= MAX_DEVICE_IRQL && i.irql >= 5);
                        prop_assert_eq!(i.irql, i.vector >> 4);
                        prop_assert!(!SYSTEM_VECTORS.contains(&i.vector));
                    }
                    for d in &s.resources.translated {
                        prop_assert_eq!(d.flags & crate::resources::CM_RESOURCE_INTERRUPT_POLICY_INCLUDED, 0);
                        if let Some(t) = d.interrupt_fields().filter(|_| d.is_interrupt()) {
                            prop_assert!(t.level <= u32::from(MAX_DEVICE_IRQL));
                        }
                    }
                }
                // Only when not even the line has a vector.
                Err(e) => prop_assert_eq!(used, 112, "{}", e),
            }
        }
    }
}
