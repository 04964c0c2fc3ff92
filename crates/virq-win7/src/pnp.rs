//! The whole OS-side start of one PCI function, in the order Windows 7 does it:
//! INF policy -> arbiter grant -> vectors and CM resources -> PCI bus driver programs MSI-X.

use crate::arbiter::{Arbiter, GrantDecision, GrantRequest, MsixCapabilityInfo};
use crate::inf::{InfPolicy, IrqDevicePolicy};
use crate::msi::{MsixProgramError, MsixProgramming, UnusedEntryPolicy, program_msix};
use crate::resources::{
    AssignedResources, MessageDescriptorLayout, ProcessorTopology, ResourceBuilder,
};
use crate::vectors::{VectorAllocator, VectorError};
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Everything the OS knows about a function when it starts it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceStartConfig {
    pub policy: InfPolicy,
    pub affinity_policy: Option<IrqDevicePolicy>,
    pub msix: Option<MsixCapabilityInfo>,
    /// Messages asked for; 0 asks for the whole table.
    pub requested: u32,
    pub line_irq: u32,
    /// Memory BARs as `(address, length, prefetchable)`.
    pub bars: Vec<(u64, u64, bool)>,
    pub topology: ProcessorTopology,
    pub layout: MessageDescriptorLayout,
    pub unused_entries: UnusedEntryPolicy,
}

/// The outcome of a start.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceStart {
    /// What the arbiter decided (before vector shortage could shrink it).
    pub decision: GrantDecision,
    pub resources: AssignedResources,
    /// What the bus driver writes into the MSI-X table and Message Control.
    pub msix: MsixProgramming,
}

/// Why a start failed.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum StartError {
    #[error(transparent)]
    Vectors(#[from] VectorError),
    #[error(transparent)]
    Msix(#[from] MsixProgramError),
}

/// Start a function: decide, allocate, describe, program.
pub fn start_device(
    cfg: &DeviceStartConfig,
    arbiter: &Arbiter,
    allocator: &mut VectorAllocator,
) -> Result<DeviceStart, StartError> {
    let decision = arbiter.decide(&GrantRequest {
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
    let resources = builder.build(decision.grant, allocator, &cfg.bars)?;
    let table_size = cfg.msix.map_or(0, |m| m.table_size);
    let msix = match program_msix(&resources, table_size, cfg.unused_entries) {
        Ok(p) => p,
        Err(e) => {
            resources.release(allocator)?;
            return Err(e.into());
        }
    };
    Ok(DeviceStart {
        decision,
        resources,
        msix,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arbiter::{InterruptGrant, LineReason, MessageLimiter};
    use crate::dbgprint::{DbgPrint, DbgViewStyle};
    use crate::inf::{Inf, InfArch, VIRTIO_BLK_SAMPLE_INF, VIRTIO_BLK_SAMPLE_INSTALL};
    use crate::resources::granted_message_total;
    use crate::wdf::WdfInterrupts;
    use virq_events::{EventKind, EventLog};

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

    /// The chain from the sample INF to the checklist's prints, for virtio-blk (1 queue).
    #[test]
    fn sample_inf_to_prints() {
        let cfg = sample_config();
        let mut alloc = VectorAllocator::default();
        let start = start_device(&cfg, &Arbiter::default(), &mut alloc).unwrap();
        assert_eq!(start.resources.grant, InterruptGrant::Messages { count: 2 });
        assert_eq!(granted_message_total(&start.resources.translated), 2);
        assert_eq!(start.msix.entries.len(), 2);
        assert_eq!(start.msix.entries[1].address, 0xFEE0_1000);
        let log = EventLog::new();
        let mut p = DbgPrint::new(DbgViewStyle::bare()).with_sink(&log);
        p.resources(&start.resources.translated);
        let mut w = WdfInterrupts::new(&start.resources);
        for id in w.create_per_resource() {
            p.interrupt_connected(&w.get_info(id));
        }
        assert_eq!(
            p.capture.texts(),
            [
                "INT: MSI/MSI-X Level=13 Vector=209 Affinity=0x1 MessageCount=1 Flags=0x7",
                "INT: MSI/MSI-X Level=12 Vector=193 Affinity=0x2 MessageCount=1 Flags=0x7",
                "WDFINT: MessageSignaled=1 MessageNumber=0 Vector=209 Irql=13 Affinity=0x1",
                "WDFINT: MessageSignaled=1 MessageNumber=1 Vector=193 Irql=12 Affinity=0x2",
            ]
        );
        assert_eq!(
            log.count(|k| matches!(k, EventKind::ResourceAssigned { .. })),
            2
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
            start.decision.line_reason,
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
        let start = start_device(&cfg, &Arbiter::with_platform_limit(1), &mut alloc).unwrap();
        assert_eq!(
            start.decision.limited_by,
            Some(MessageLimiter::PlatformLimit)
        );
        assert_eq!(start.resources.grant, InterruptGrant::Messages { count: 1 });
        assert!(start.msix.entries.iter().all(|e| e.message_number == 0));
        assert_eq!(start.msix.entries.len(), 3);
    }
}
