//! The Windows 7 half of the virtio-pci interrupt chain, as deterministic data-model code.
//!
//! Nothing here touches a real Windows or a real device. Each module is one link the
//! bring-up checklist asks a developer to prove, modelled closely enough that the simulated
//! machine can drive a device with it and the doctor can read its output:
//!
//! | link | module | checklist / catalogue |
//! |---|---|---|
//! | INF `MSISupported` / `MessageNumberLimit` in the `.HW` AddReg | [`inf`] | row 13 |
//! | PnP arbiter: all messages, exactly one, or the line, and why | [`arbiter`] | 1.1, rows 4, 13, 28 |
//! | APIC/IDT vectors in the 0x5x-0xBx classes, IRQL = vector >> 4 | [`vectors`] | 2, row 3 |
//! | raw and translated `CM_PARTIAL_RESOURCE_DESCRIPTOR`s | [`resources`] | 1.2, row 24 |
//! | MSI address/data, MSI-X table programming, Enable | [`msi`] | 1.3 |
//! | KMDF 1.9 / 1.11 interrupt objects, `WdfInterruptGetInfo`, D0 connect | [`wdf`] | 2.1, rows 6, 7, 23, 27 |
//! | DbgPrint lines, the Debug Print Filter, DbgView captures, events | [`dbgprint`] | 5, row 25, `docs/log-formats.md` |
//! | `!pcitree`, `!pci`, `!dd`, `!devnode`, `!cmreslist`, `!irp`, `dt` as WinDbg prints them | [`windbg`] | 1.3, rows 4, 13, 24, 26, 28 |
//! | all of the above in start order | [`pnp`] | |
//!
//! What Windows 7 does is written down, with its sources, in `shared/windows7-facts.md`; this
//! crate follows it. Details no published capture settles are switches, with the documented
//! behaviour as default: pci.sys setting Command bit 10 with message interrupts
//! ([`pnp::DeviceStartConfig::interrupt_disable_with_messages`], off), a request above 910
//! messages per function getting one message ([`arbiter::MAX_MESSAGES_PER_FUNCTION`]), and
//! the older frameworks' loss of the message number across a rebalance ([`wdf`]).
//!
//! # Modelling choices
//! - Grants are all the messages requested, exactly one, or the line, with the reason recorded
//!   ([`arbiter::GrantReason`]): no partial grants.
//! - Device vectors come only from the `0x50..=0xBF` classes (IRQL 5-11); a vector window
//!   reaching a system vector (0xC1, 0xD1, 0xE1, 0xFD-0xFF) is refused.
//! - For MSI-X Windows lists one interrupt descriptor per message with raw `MessageCount = 1`
//!   ([`resources::MessageDescriptorLayout::PerMessage`], the default); the MSI-style single
//!   descriptor with `MessageCount = N` is available. The translated descriptor's
//!   `MessageCount` overlays `Group` and reads 0: count message descriptors
//!   ([`resources::message_descriptor_count`]) or sum the raw list's `MessageCount`
//!   ([`resources::granted_message_total`]).
//! - Message descriptors carry `CM_RESOURCE_INTERRUPT_LATCHED | CM_RESOURCE_INTERRUPT_MESSAGE`
//!   (0x3); `CM_RESOURCE_INTERRUPT_POLICY_INCLUDED` belongs to requirement lists and is never
//!   in assigned resources. Line descriptors are level-sensitive (0x0) and shared.
//! - KMDF 1.9 (Windows 7's inbox framework, the default) creates interrupt objects in
//!   `EvtDriverDeviceAdd`, and `WdfInterruptGetInfo` reads zeros before start; 1.11 creates
//!   them in `EvtDevicePrepareHardware` with explicit resources. An object's `MessageNumber` is
//!   its creation index; KMDF prints nothing about objects beyond the grant.
//! - The MSI address is physical-destination `0xFEE00000 | apic_id << 12` for the lowest
//!   processor of the message's affinity; data is the IDT vector with fixed delivery, edge.
//! - MSI-X table entries past the grant are programmed with message 0 (the Windows bus
//!   driver's default), so a vector selector index below the table size but beyond the grant
//!   lands on message 0 instead of reading back `0xFFFF`. [`msi::UnusedEntryPolicy`] switches
//!   this off.
//!
//! # WinDbg text
//! [`windbg`] writes what WinDbg prints on a Windows 7 x64 target for the commands of checklist
//! section 1.3 (`!pcitree`, `!pci`, `!irp`, `dt nt!_CM_RESOURCE_LIST`) and the ones people add
//! (`!devnode`, `!cmreslist`, `!dd`/`!dq` of the MSI-X table), one module per command with its
//! reader beside its writer. Layout details no published capture settles are listed as
//! unverified in each module and in `docs/log-formats.md`.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod arbiter;
pub mod dbgprint;
pub mod inf;
pub mod msi;
pub mod pnp;
pub mod resources;
pub mod vectors;
pub mod wdf;
pub mod windbg;

pub use arbiter::{
    Arbiter, GrantDecision, GrantReason, GrantRequest, InterruptGrant, LineReason,
    MsixCapabilityInfo, OneMessageReason,
};
pub use dbgprint::{
    DbgLevel, DbgPrint, DbgViewCapture, DbgViewStyle, DbgViewTime, DebugPrintFilter,
};
pub use inf::{Inf, InfArch, InfError, InfInterruptSettings, InfPolicy, VIRTIO_BLK_SAMPLE_INF};
pub use msi::{MsiMessage, MsixProgramming, MsixTableEntry, UnusedEntryPolicy, program_msix};
pub use pnp::{DeviceStart, DeviceStartConfig, StartError, start_device};
pub use resources::{
    AssignedResources, CM_RESOURCE_INTERRUPT_LATCHED, CM_RESOURCE_INTERRUPT_LEVEL_SENSITIVE,
    CM_RESOURCE_INTERRUPT_MESSAGE, CM_RESOURCE_INTERRUPT_POLICY_INCLUDED,
    CmPartialResourceDescriptor, MessageCount, MessageNumber, ResourceBuilder,
};
pub use vectors::{VectorAllocator, VectorError};
pub use wdf::{KmdfVersion, MessageNumberSource, WdfInterruptId, WdfInterruptInfo, WdfInterrupts};
pub use windbg::{KernelObjects, PciDumpInput, parse_pci_dump, render_devnode, render_pci};
