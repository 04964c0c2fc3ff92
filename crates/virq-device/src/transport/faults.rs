//! Device-side bugs from the failure catalogue, injectable so a driver or the doctor can be
//! shown what a broken device does.
//!
//! The spec path asks `self.fault(Fault::X)` at each point where a catalogue row deviates.
//! Without the `fault-injection` feature that question is a constant `false`, [`DeviceFaults`]
//! does not exist and the compiler removes every deviation: an embedder who does not ask for
//! faults gets only the specification.

#[cfg(feature = "fault-injection")]
use serde::{Deserialize, Serialize};

use super::VirtioPciDevice;

/// The points where a catalogue row deviates from the specification.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Fault {
    IntxWhileMsixEnabled,
    IgnoreMsixMasks,
    IgnoreDwordMsixControlWrite,
    KeepVectorsAcrossReset,
    AcceptOutOfRangeVectors,
    IntxStaysHighOnReset,
    IgnoreInterruptDisable,
    IsrNotClearedOnRead,
    DmaWhileBusMasterDisabled,
    KeepStalePendingBits,
}

/// Device-side bugs from the failure catalogue (rows 14-22, 29 and 30). All off by default;
/// a conformant device sets none.
#[cfg(feature = "fault-injection")]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceFaults {
    /// Row 14: INTx is raised even while MSI-X is enabled.
    pub intx_while_msix_enabled: bool,
    /// Row 15: messages are sent while MSI-X Enable is clear or the entry/function is masked.
    pub ignore_msix_masks: bool,
    /// Row 16: a 32-bit configuration write covering Message Control is ignored.
    pub ignore_dword_msix_control_write: bool,
    /// Row 17: a reset leaves the vector selectors as they were.
    pub keep_vectors_across_reset: bool,
    /// Row 18: vector indices beyond the table are stored as written.
    pub accept_out_of_range_vectors: bool,
    /// Row 19: a reset leaves INTx asserted (with ISR status 0) for good.
    pub intx_stays_high_on_reset: bool,
    /// Row 20: INTx ignores Command bit 10 and Status bit 3 never reports it.
    pub ignore_interrupt_disable: bool,
    /// Row 22: reading ISR status does not clear it.
    pub isr_not_cleared_on_read: bool,
    /// Row 29: the rings are processed and guest memory is written while Bus Master Enable is
    /// clear (only MSI-X messages wait for it).
    #[serde(default)]
    pub dma_while_bus_master_disabled: bool,
    /// Row 30: a Pending Bit survives a device reset and a re-route of its source, and is
    /// delivered later as a stale interrupt.
    #[serde(default)]
    pub keep_stale_pending_bits: bool,
    /// A table smaller than advertised: indices at or above this read back 0xFFFF although
    /// the capability's Table Size covers them (what drives a driver into its fallback).
    pub vectors_accepted_below: Option<u16>,
}

#[cfg(feature = "fault-injection")]
impl VirtioPciDevice {
    /// Turn device-side catalogue faults on (see [`DeviceFaults`]).
    pub fn set_faults(&mut self, faults: DeviceFaults) {
        self.faults = faults;
    }

    /// The device-side catalogue faults now on.
    pub fn faults(&self) -> DeviceFaults {
        self.faults
    }
}

impl VirtioPciDevice {
    /// Whether the catalogue fault `f` is on.
    #[inline(always)]
    pub(crate) fn fault(&self, f: Fault) -> bool {
        #[cfg(feature = "fault-injection")]
        {
            let d = &self.faults;
            match f {
                Fault::IntxWhileMsixEnabled => d.intx_while_msix_enabled,
                Fault::IgnoreMsixMasks => d.ignore_msix_masks,
                Fault::IgnoreDwordMsixControlWrite => d.ignore_dword_msix_control_write,
                Fault::KeepVectorsAcrossReset => d.keep_vectors_across_reset,
                Fault::AcceptOutOfRangeVectors => d.accept_out_of_range_vectors,
                Fault::IntxStaysHighOnReset => d.intx_stays_high_on_reset,
                Fault::IgnoreInterruptDisable => d.ignore_interrupt_disable,
                Fault::IsrNotClearedOnRead => d.isr_not_cleared_on_read,
                Fault::DmaWhileBusMasterDisabled => d.dma_while_bus_master_disabled,
                Fault::KeepStalePendingBits => d.keep_stale_pending_bits,
            }
        }
        #[cfg(not(feature = "fault-injection"))]
        {
            let _ = f;
            false
        }
    }

    /// The "table smaller than advertised" fault: vector indices at or above this are refused.
    #[inline(always)]
    pub(crate) fn vectors_accepted_below(&self) -> Option<u16> {
        #[cfg(feature = "fault-injection")]
        {
            self.faults.vectors_accepted_below
        }
        #[cfg(not(feature = "fault-injection"))]
        {
            None
        }
    }
}
