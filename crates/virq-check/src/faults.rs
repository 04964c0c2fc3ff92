//! Named fault switches, one per row of the failure catalogue that the simulated machine can
//! reproduce, each mapped onto the layer that owns the bug.

use serde::{Deserialize, Serialize};
use virq_device::DeviceFaults;
use virq_guest::DriverFaults;

/// A fault to inject into a check run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Fault {
    /// Row 1: the INTx ISR never reads the virtio ISR status register.
    IntxNoIsrRead,
    /// Row 2: vectors programmed before the last reset and never again.
    VectorsBeforeReset,
    /// Row 3: the APIC `Vector` written instead of the `MessageNumber`.
    ApicVector,
    /// Row 4: per-queue vectors assumed whatever the grant.
    AssumePerQueue,
    /// Row 5: `msix_config` left at 0xFFFF while queues use MSI-X.
    ConfigVectorUnset,
    /// Row 6: after a resource rebalance the driver re-queries WdfInterruptGetInfo mid-way
    /// and programs the numbers it gets instead of the ones it cached at creation.
    RebalanceRequery,
    /// Row 7: one interrupt object more than the messages granted.
    ExtraInterruptObject,
    /// Row 8: per-message state sized from the first CM descriptor's `MessageCount` (1 on
    /// Windows, which lists MSI-X messages one descriptor each) and indexed without a bound
    /// check: the ISR for message 1 crashes the machine.
    UncheckedMessageId,
    /// Row 9: message 0 treated as "not a message interrupt".
    MessageZeroNotMessage,
    /// Row 10: queues enabled before every vector read back right. Shown against a device
    /// whose table is smaller than it advertises, so one per-queue vector is refused.
    EnableBeforeVerified,
    /// Row 11: the INTx ISR says "not mine" without reading ISR status.
    SharedLineNotMine,
    /// Row 12: the device is surprise-removed with an interrupt latched, and the INTx ISR
    /// takes the all-ones ISR status it then reads as real causes.
    SurpriseRemovalClaimed,
    /// Row 13: the INF's MSI keys sit outside the `.HW` AddReg.
    InfKeysMisplaced,
    /// Row 23 (KMDF 1.9): the driver queries `WdfInterruptGetInfo` only right after
    /// `WdfInterruptCreate` in `EvtDriverDeviceAdd`, reads zeros, and plans for a line while
    /// messages are granted. On KMDF 1.11 the objects have resources when created: no effect.
    PreStartInterruptInfo,
    /// Row 24: the message count is read from the translated descriptor's `MessageCount` (the
    /// Group on x64, 0): the driver takes one message and shares everything on it.
    TranslatedMessageCount,
    /// Row 25: the Debug Print Filter is left at Windows 7's default, so every INFO-level print
    /// is dropped and the capture holds none of the driver's lines.
    PrintsFiltered,
    /// Row 26: the interrupt mode is chosen from the INF's `MSISupported`, not the resources.
    /// Shown in INTx mode on a device without MSI-X (a line is all Windows can grant): the
    /// driver programs vectors on the line, the device refuses them, and the start fails.
    ModeFromInf,
    /// Row 27: vectors programmed only in `EvtDevicePrepareHardware`; after the sleep/resume the
    /// device, reset on D0 entry, runs with every selector at 0xFFFF.
    VectorsLostOnD0Entry,
    /// Row 28: message interrupts off platform-wide (ACPI FADT, chipset errata): a right INF
    /// on a device with MSI-X gets a line.
    PlatformMsiDisabled,
    /// Row 14 (device): INTx raised while MSI-X is enabled.
    DeviceIntxWithMsix,
    /// Row 15 (device): messages are sent through the Function Mask (or a masked entry).
    DeviceIgnoresMsixMasks,
    /// Row 16 (device): a 32-bit write of Message Control is ignored, so MSI-X never enables.
    DeviceIgnoresDwordMsixControl,
    /// Row 17 (device): a reset leaves the vector selectors as they were.
    DeviceKeepsVectorsAcrossReset,
    /// Row 18 (device): an index beyond the table is stored as written. Shown with a driver
    /// that writes the APIC Vector (row 3), whose mistake the device then hides.
    DeviceAcceptsOutOfRangeVector,
    /// Row 19 (device): a reset leaves INTx asserted.
    DeviceIntxStuckAfterReset,
    /// Row 20 (device): INTx ignores Command bit 10 (and Status bit 3 never shows it).
    DeviceIgnoresInterruptDisable,
    /// Row 21 (device): the MSI-X table has fewer entries than 1 + queues.
    DeviceSmallMsixTable,
    /// Row 22 (device): reading ISR status does not clear it.
    DeviceIsrNotCleared,
    /// Row 29 (device): the device keeps using its rings while Bus Master Enable is clear.
    /// Shown with a request that races the power-down: the OS has turned bus mastering off
    /// when the driver's last notify arrives.
    DeviceDmaWhileBusMasterOff,
    /// Row 30 (device): a Pending Bit survives the device reset and is delivered as a stale
    /// interrupt. Shown across the sleep/resume: a completion pends on the masked function,
    /// the device is reset at D0 entry, and the OS unmasks.
    DeviceStalePendingBit,
}

impl Fault {
    /// Every fault, in catalogue-row order.
    pub const ALL: [Fault; 30] = [
        Fault::IntxNoIsrRead,
        Fault::VectorsBeforeReset,
        Fault::ApicVector,
        Fault::AssumePerQueue,
        Fault::ConfigVectorUnset,
        Fault::RebalanceRequery,
        Fault::ExtraInterruptObject,
        Fault::UncheckedMessageId,
        Fault::MessageZeroNotMessage,
        Fault::EnableBeforeVerified,
        Fault::SharedLineNotMine,
        Fault::SurpriseRemovalClaimed,
        Fault::InfKeysMisplaced,
        Fault::PreStartInterruptInfo,
        Fault::TranslatedMessageCount,
        Fault::PrintsFiltered,
        Fault::ModeFromInf,
        Fault::VectorsLostOnD0Entry,
        Fault::PlatformMsiDisabled,
        Fault::DeviceIntxWithMsix,
        Fault::DeviceIgnoresMsixMasks,
        Fault::DeviceIgnoresDwordMsixControl,
        Fault::DeviceKeepsVectorsAcrossReset,
        Fault::DeviceAcceptsOutOfRangeVector,
        Fault::DeviceIntxStuckAfterReset,
        Fault::DeviceIgnoresInterruptDisable,
        Fault::DeviceSmallMsixTable,
        Fault::DeviceIsrNotCleared,
        Fault::DeviceDmaWhileBusMasterOff,
        Fault::DeviceStalePendingBit,
    ];

    /// The switch's name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Fault::IntxNoIsrRead => "intx-no-isr-read",
            Fault::VectorsBeforeReset => "vectors-before-reset",
            Fault::ApicVector => "apic-vector",
            Fault::AssumePerQueue => "assume-per-queue",
            Fault::ConfigVectorUnset => "config-vector-unset",
            Fault::RebalanceRequery => "rebalance-requery",
            Fault::ExtraInterruptObject => "extra-interrupt-object",
            Fault::UncheckedMessageId => "unchecked-message-id",
            Fault::MessageZeroNotMessage => "message-zero-not-message",
            Fault::EnableBeforeVerified => "enable-before-verified",
            Fault::SharedLineNotMine => "shared-line-not-mine",
            Fault::SurpriseRemovalClaimed => "surprise-removal-claimed",
            Fault::InfKeysMisplaced => "inf-keys-misplaced",
            Fault::PreStartInterruptInfo => "pre-start-interrupt-info",
            Fault::TranslatedMessageCount => "translated-message-count",
            Fault::PrintsFiltered => "prints-filtered",
            Fault::ModeFromInf => "mode-from-inf",
            Fault::VectorsLostOnD0Entry => "vectors-lost-on-d0-entry",
            Fault::PlatformMsiDisabled => "platform-msi-disabled",
            Fault::DeviceIntxWithMsix => "device-intx-with-msix",
            Fault::DeviceIgnoresMsixMasks => "device-ignores-msix-masks",
            Fault::DeviceIgnoresDwordMsixControl => "device-ignores-dword-msix-control",
            Fault::DeviceKeepsVectorsAcrossReset => "device-keeps-vectors-across-reset",
            Fault::DeviceAcceptsOutOfRangeVector => "device-accepts-out-of-range-vector",
            Fault::DeviceIntxStuckAfterReset => "device-intx-stuck-after-reset",
            Fault::DeviceIgnoresInterruptDisable => "device-ignores-interrupt-disable",
            Fault::DeviceSmallMsixTable => "device-small-msix-table",
            Fault::DeviceIsrNotCleared => "device-isr-not-cleared",
            Fault::DeviceDmaWhileBusMasterOff => "device-dma-while-bus-master-off",
            Fault::DeviceStalePendingBit => "device-stale-pending-bit",
        }
    }

    /// Whether the fault sits on the device side (catalogue rows 14-22, 29, 30).
    pub fn is_device(self) -> bool {
        self.name().starts_with("device-")
    }

    /// Row of `../shared/failure-catalogue.md`.
    pub fn catalogue_row(self) -> u8 {
        match self {
            Fault::IntxNoIsrRead => 1,
            Fault::VectorsBeforeReset => 2,
            Fault::ApicVector => 3,
            Fault::AssumePerQueue => 4,
            Fault::ConfigVectorUnset => 5,
            Fault::RebalanceRequery => 6,
            Fault::ExtraInterruptObject => 7,
            Fault::UncheckedMessageId => 8,
            Fault::MessageZeroNotMessage => 9,
            Fault::EnableBeforeVerified => 10,
            Fault::SharedLineNotMine => 11,
            Fault::SurpriseRemovalClaimed => 12,
            Fault::InfKeysMisplaced => 13,
            Fault::PreStartInterruptInfo => 23,
            Fault::TranslatedMessageCount => 24,
            Fault::PrintsFiltered => 25,
            Fault::ModeFromInf => 26,
            Fault::VectorsLostOnD0Entry => 27,
            Fault::PlatformMsiDisabled => 28,
            Fault::DeviceIntxWithMsix => 14,
            Fault::DeviceIgnoresMsixMasks => 15,
            Fault::DeviceIgnoresDwordMsixControl => 16,
            Fault::DeviceKeepsVectorsAcrossReset => 17,
            Fault::DeviceAcceptsOutOfRangeVector => 18,
            Fault::DeviceIntxStuckAfterReset => 19,
            Fault::DeviceIgnoresInterruptDisable => 20,
            Fault::DeviceSmallMsixTable => 21,
            Fault::DeviceIsrNotCleared => 22,
            Fault::DeviceDmaWhileBusMasterOff => 29,
            Fault::DeviceStalePendingBit => 30,
        }
    }

    /// The fault a `--inject` name means.
    pub fn from_name(name: &str) -> Option<Fault> {
        Fault::ALL.into_iter().find(|f| f.name() == name)
    }

    /// The driver-core switches this fault turns on.
    pub fn driver_faults(self) -> DriverFaults {
        let mut f = DriverFaults::default();
        match self {
            Fault::IntxNoIsrRead => f.skip_isr_status_read = true,
            Fault::VectorsBeforeReset => f.program_vectors_before_reset = true,
            Fault::ApicVector | Fault::DeviceAcceptsOutOfRangeVector => {
                f.write_apic_vector_instead_of_message_number = true
            }
            Fault::AssumePerQueue => f.assume_per_queue_vectors = true,
            Fault::ConfigVectorUnset => f.leave_config_vector_unset = true,
            Fault::MessageZeroNotMessage => f.message_zero_means_not_message = true,
            Fault::UncheckedMessageId => f.skip_message_id_bound_check = true,
            Fault::EnableBeforeVerified => f.enable_queues_before_vectors_verified = true,
            Fault::SharedLineNotMine => f.return_not_mine_without_reading_isr = true,
            Fault::SurpriseRemovalClaimed => f.treat_all_ones_isr_as_ours = true,
            Fault::VectorsLostOnD0Entry => f.skip_vectors_on_resume = true,
            _ => {}
        }
        f
    }

    /// The device-side switches this fault turns on.
    pub fn device_faults(self) -> DeviceFaults {
        let mut f = DeviceFaults::default();
        match self {
            Fault::DeviceIntxWithMsix => f.intx_while_msix_enabled = true,
            Fault::DeviceIgnoresMsixMasks => f.ignore_msix_masks = true,
            Fault::DeviceIgnoresDwordMsixControl => f.ignore_dword_msix_control_write = true,
            Fault::DeviceKeepsVectorsAcrossReset => f.keep_vectors_across_reset = true,
            Fault::DeviceAcceptsOutOfRangeVector => f.accept_out_of_range_vectors = true,
            Fault::DeviceIntxStuckAfterReset => f.intx_stays_high_on_reset = true,
            Fault::DeviceIsrNotCleared => f.isr_not_cleared_on_read = true,
            Fault::DeviceDmaWhileBusMasterOff => f.dma_while_bus_master_disabled = true,
            Fault::DeviceStalePendingBit => f.keep_stale_pending_bits = true,
            Fault::DeviceIgnoresInterruptDisable => f.ignore_interrupt_disable = true,
            Fault::EnableBeforeVerified => f.vectors_accepted_below = Some(2),
            _ => {}
        }
        f
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_fault_has_a_unique_name_and_row_and_round_trips() {
        let mut names = std::collections::HashSet::new();
        let mut rows = std::collections::HashSet::new();
        for f in Fault::ALL {
            assert!(names.insert(f.name()));
            assert!(rows.insert(f.catalogue_row()));
            assert_eq!(Fault::from_name(f.name()), Some(f));
        }
        assert_eq!(Fault::from_name("no-such-fault"), None);
        // Every driver and OS row, 1-13 and 23-28, is injectable.
        let driver: Vec<u8> = Fault::ALL
            .iter()
            .filter(|f| !f.is_device())
            .map(|f| f.catalogue_row())
            .collect();
        let want: Vec<u8> = (1..=13).chain(23..=28).collect();
        assert_eq!(driver, want);
    }
}
