//! Configuration space as the function presents it from power-on: identity, BARs sized for the
//! layout, the virtio vendor capabilities (virtio 1.2, 4.1.4) and the MSI-X capability
//! (PCI 3.0, 6.8.2). Built once; only the write masks set here let the driver change it.

use virq_spec::virtio_pci::{self as vp, cfg_type};

use crate::layout::{Layout, Region};
use crate::msix;
use crate::pci::{BarDef, BarKind, CAP_ID_MSIX, CAP_ID_VENDOR, ConfigSpace, PciIdentity};

/// Where the capabilities sit in configuration space (fixed at construction).
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct CapOffsets {
    pub pci_cfg: usize,
    pub msix: Option<usize>,
}

impl CapOffsets {
    /// Offset of `pci_cfg_data`, the `virtio_pci_cfg_cap` window.
    pub fn pci_cfg_data(&self) -> usize {
        self.pci_cfg + usize::from(vp::PCI_CFG_DATA)
    }

    /// Offset of MSI-X Message Control.
    pub fn msix_control(&self) -> Option<usize> {
        self.msix.map(|c| c + 2)
    }
}

/// PCI class code for a virtio device type (virtio 1.2, 5: 1 network, 2 block, 3 console).
fn class_code_for(device_id: u16) -> u32 {
    match device_id {
        1 => 0x020000, // network controller
        2 => 0x018000, // mass storage, other
        3 => 0x078000, // simple communication, other
        _ => 0x00FF00, // unclassified
    }
}

/// Configuration space of a virtio device of type `device_id` with `layout` and an MSI-X
/// table of `table_size` entries (0: no MSI-X capability and no BAR used only by it).
pub(super) fn build(device_id: u16, layout: &Layout, table_size: u16) -> (ConfigSpace, CapOffsets) {
    let mut config = ConfigSpace::new(PciIdentity {
        vendor_id: vp::VENDOR_ID,
        device_id: vp::DEVICE_ID_BASE + device_id,
        revision_id: vp::MODERN_REVISION,
        class_code: class_code_for(device_id),
        subsystem_vendor_id: vp::VENDOR_ID,
        subsystem_id: 0x1100,
    });
    let with_msix = table_size > 0;
    let virtio_bars = [
        layout.common.bar,
        layout.notify.bar,
        layout.isr.bar,
        layout.device.bar,
    ];
    for (bar, size) in layout.bar_sizes(table_size.max(1)) {
        if !with_msix && !virtio_bars.contains(&bar) {
            continue;
        }
        config.add_bar(BarDef {
            index: bar,
            size,
            kind: BarKind::Memory64 {
                prefetchable: false,
            },
        });
    }
    let mut caps = CapOffsets::default();
    add_virtio_cap(&mut config, cfg_type::COMMON, layout.common, &[], &[]);
    add_virtio_cap(
        &mut config,
        cfg_type::NOTIFY,
        layout.notify,
        &layout.notify_off_multiplier.to_le_bytes(),
        &[],
    );
    add_virtio_cap(&mut config, cfg_type::ISR, layout.isr, &[], &[]);
    add_virtio_cap(&mut config, cfg_type::DEVICE, layout.device, &[], &[]);
    // virtio_pci_cfg_cap: bar, offset, length and pci_cfg_data are driver-writable.
    let mut pci_cfg_mask = [0u8; 18];
    pci_cfg_mask[2] = 0xFF; // bar
    pci_cfg_mask[6..18].fill(0xFF); // offset, length, pci_cfg_data
    caps.pci_cfg = add_virtio_cap(
        &mut config,
        cfg_type::PCI_CFG,
        Region::new(0, 0, 0),
        &[0; 4],
        &pci_cfg_mask,
    ) as usize;
    if with_msix {
        let control = (table_size - 1) & msix::CONTROL_TABLE_SIZE;
        let mut body = [0u8; 10];
        body[0..2].copy_from_slice(&control.to_le_bytes());
        body[2..6].copy_from_slice(
            &((layout.msix_table_offset as u32) | layout.msix_table_bar as u32).to_le_bytes(),
        );
        body[6..10].copy_from_slice(
            &((layout.msix_pba_offset as u32) | layout.msix_pba_bar as u32).to_le_bytes(),
        );
        // Only Enable (bit 15) and Function Mask (bit 14) are writable.
        let off = config.add_capability(CAP_ID_MSIX, &body, &[0x00, 0xC0]);
        caps.msix = Some(off as usize);
    }
    (config, caps)
}

/// Append a `struct virtio_pci_cap` (virtio 1.2, 4.1.4): cfg_type, bar, id, offset, length,
/// then `extra` (notify_off_multiplier or pci_cfg_data).
fn add_virtio_cap(
    config: &mut ConfigSpace,
    cfg_type: u8,
    region: Region,
    extra: &[u8],
    writable: &[u8],
) -> u8 {
    let cap_len = usize::from(vp::CAP_LEN) + extra.len();
    let mut body = Vec::with_capacity(cap_len - 2);
    body.push(cap_len as u8);
    body.push(cfg_type);
    body.push(region.bar);
    body.push(0); // id
    body.extend_from_slice(&[0, 0]); // padding
    body.extend_from_slice(&(region.offset as u32).to_le_bytes());
    body.extend_from_slice(&(region.length as u32).to_le_bytes());
    body.extend_from_slice(extra);
    config.add_capability(CAP_ID_VENDOR, &body, writable)
}
