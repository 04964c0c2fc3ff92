//! The device side as a browser emulator embeds it: guest RAM is a plain `Vec<u8>`
//! ([`VecMemory`]), the PC's PCI root is virq's own ([`PciRoot`]), and the guest reaches the
//! virtio-blk function only through port I/O at 0xCF8/0xCFC, MMIO and RAM. Nothing here needs
//! the operating system (no mmap, no file, no thread): this is the code that builds for
//! `wasm32-unknown-unknown` in `.ci/run`.

use std::sync::{Arc, Mutex};

use virq_backends::{Block, BlockConfig, MemoryStorage};
use virq_device::pci_root::{CONFIG_ADDRESS_PORT, CONFIG_DATA_PORT, HostBridge, PciRoot};
use virq_device::{
    GuestMemory, InterruptSink, TransportOptions, VecMemory, VirtioPciDevice, common, features,
    status,
};
use virq_spec::blk::{VIRTIO_BLK_S_OK, VIRTIO_BLK_T_IN};
use virq_spec::ring::{VRING_DESC_F_NEXT, VRING_DESC_F_WRITE};

/// The emulator's interrupt controller: here, a list of MSI writes.
#[derive(Default)]
struct Lapic(Mutex<Vec<(u64, u32)>>);

impl InterruptSink for Lapic {
    fn msi(&self, address: u64, data: u32) {
        self.0.lock().unwrap().push((address, data));
    }
    fn set_intx(&self, _level: bool) {}
}

const RING: u64 = 0x1_0000;
const REQ: u64 = 0x2_0000;
const DATA: u64 = 0x3_0000;

fn cfg32(pci: &mut PciRoot, dev: u8, off: u16) -> u32 {
    let addr = 0x8000_0000u32 | u32::from(dev) << 11 | u32::from(off);
    pci.port_write(CONFIG_ADDRESS_PORT, &addr.to_le_bytes());
    let mut b = [0u8; 4];
    pci.port_read(CONFIG_DATA_PORT, &mut b);
    u32::from_le_bytes(b)
}

fn mmio(pci: &mut PciRoot, addr: u64, data: &[u8]) {
    assert!(pci.mmio_write(addr, data), "MMIO write at {addr:#x}");
}

/// virtio 1.2, 3.1.1 and 5.2.6: bring-up by config cycles and MMIO, then one 4 KiB read whose
/// data, status byte, used entry and MSI-X message all land where the spec says.
#[test]
fn a_block_read_over_a_plain_vec_guest_ram() {
    let ram = VecMemory::from_vec(0, vec![0u8; 1 << 20]);
    let disk: Vec<u8> = (0..64 * 1024).map(|i| (i * 13 + 7) as u8).collect();
    let blk = Block::new(
        MemoryStorage::from_bytes(disk.clone()),
        BlockConfig::default(),
    )
    .unwrap();
    let lapic = Arc::new(Lapic::default());
    let dev = VirtioPciDevice::new(
        Box::new(blk),
        ram.clone(),
        lapic.clone(),
        TransportOptions::default(),
    )
    .unwrap();
    let mut pci = PciRoot::new(HostBridge::I440FX);
    let slot = pci.plug(dev).unwrap();
    pci.assign_resources(0xC000_0000..0xFEC0_0000, |_| 11, &mut || {})
        .unwrap();
    assert_eq!(cfg32(&mut pci, slot, 0), 0x1042_1AF4, "virtio-blk, modern");
    let bar0 = u64::from(cfg32(&mut pci, slot, 0x10) & !0xF);
    let bar2 = u64::from(cfg32(&mut pci, slot, 0x18) & !0xF);

    // MSI-X: entry 1 for queue 0, then Enable (Message Control of the capability).
    mmio(&mut pci, bar2 + 16, &0xFEE0_0000u64.to_le_bytes());
    mmio(&mut pci, bar2 + 24, &0x41u32.to_le_bytes());
    mmio(&mut pci, bar2 + 28, &0u32.to_le_bytes());
    let mut cap = cfg32(&mut pci, slot, 0x34) as u8;
    while cfg32(&mut pci, slot, u16::from(cap)) & 0xFF != 0x11 {
        cap = (cfg32(&mut pci, slot, u16::from(cap)) >> 8) as u8;
    }
    let addr = 0x8000_0000u32 | u32::from(slot) << 11 | u32::from(cap);
    pci.port_write(CONFIG_ADDRESS_PORT, &addr.to_le_bytes());
    pci.port_write(CONFIG_DATA_PORT + 3, &[0x80]);

    // Negotiate VERSION_1, set up queue 0 (size 16) on vector 1.
    let st = bar0 + common::DEVICE_STATUS;
    mmio(&mut pci, st, &[status::ACKNOWLEDGE | status::DRIVER]);
    mmio(
        &mut pci,
        bar0 + common::DRIVER_FEATURE_SELECT,
        &1u32.to_le_bytes(),
    );
    let f = (features::VERSION_1 >> 32) as u32;
    mmio(&mut pci, bar0 + common::DRIVER_FEATURE, &f.to_le_bytes());
    let ok = status::ACKNOWLEDGE | status::DRIVER | status::FEATURES_OK;
    mmio(&mut pci, st, &[ok]);
    mmio(&mut pci, bar0 + common::QUEUE_SIZE, &16u16.to_le_bytes());
    mmio(&mut pci, bar0 + common::QUEUE_DESC, &RING.to_le_bytes());
    mmio(
        &mut pci,
        bar0 + common::QUEUE_DRIVER,
        &(RING + 0x100).to_le_bytes(),
    );
    mmio(
        &mut pci,
        bar0 + common::QUEUE_DEVICE,
        &(RING + 0x200).to_le_bytes(),
    );
    mmio(
        &mut pci,
        bar0 + common::QUEUE_MSIX_VECTOR,
        &1u16.to_le_bytes(),
    );
    mmio(&mut pci, bar0 + common::QUEUE_ENABLE, &1u16.to_le_bytes());
    mmio(&mut pci, st, &[ok | status::DRIVER_OK]);

    // The request: header (read sector 8), 4 KiB of data, status byte.
    let mut header = [0u8; 16];
    header[..4].copy_from_slice(&VIRTIO_BLK_T_IN.to_le_bytes());
    header[8..].copy_from_slice(&8u64.to_le_bytes());
    ram.write(REQ, &header).unwrap();
    ram.write(REQ + 16, &[0xEE]).unwrap();
    for (i, (addr, len, flags)) in [
        (REQ, 16, VRING_DESC_F_NEXT),
        (DATA, 4096, VRING_DESC_F_NEXT | VRING_DESC_F_WRITE),
        (REQ + 16, 1, VRING_DESC_F_WRITE),
    ]
    .into_iter()
    .enumerate()
    {
        let d = RING + 16 * i as u64;
        ram.write_u64(d, addr).unwrap();
        ram.write_u32(d + 8, len).unwrap();
        ram.write_u16(d + 12, flags).unwrap();
        ram.write_u16(d + 14, i as u16 + 1).unwrap();
    }
    ram.write_u16(RING + 0x104, 0).unwrap();
    ram.store_release_u16(RING + 0x102, 1).unwrap();
    mmio(&mut pci, bar0 + 0x1000, &0u16.to_le_bytes());

    let bytes = ram.to_vec();
    assert_eq!(
        &bytes[DATA as usize..DATA as usize + 4096],
        &disk[8 * 512..8 * 512 + 4096]
    );
    assert_eq!(u32::from(bytes[REQ as usize + 16]), VIRTIO_BLK_S_OK);
    assert_eq!(ram.read_u16(RING + 0x202).unwrap(), 1, "used.idx");
    assert_eq!(ram.read_u32(RING + 0x208).unwrap(), 4097, "used.len");
    assert_eq!(*lapic.0.lock().unwrap(), vec![(0xFEE0_0000, 0x41)]);
}
