//! A small disk image with an MBR partition table, so the guest's block layer reads sector 0
//! at probe and prints `vda: vda1`.

/// Sector size the MBR layout is expressed in.
pub const SECTOR: usize = 512;
/// First sector of the single partition (1 MiB aligned, as partitioning tools do).
pub const FIRST_LBA: u32 = 2048;

/// A disk of `bytes` (rounded up to whole sectors, at least 2 MiB) with one Linux partition
/// (type 0x83) from sector 2048 to the end. The partition's first sector holds a marker
/// string so a reader can tell the data came through.
pub fn mbr_image(bytes: usize) -> Vec<u8> {
    let bytes = bytes.max(2 << 20).div_ceil(SECTOR) * SECTOR;
    let sectors = (bytes / SECTOR) as u32;
    let mut img = vec![0u8; bytes];
    // Disk signature at 0x1B8.
    img[0x1B8..0x1BC].copy_from_slice(&0x5649_5251u32.to_le_bytes());
    let e = &mut img[0x1BE..0x1CE];
    e[0] = 0x00; // not bootable
    // CHS fields are ignored by Linux when LBA fields are set; use the "beyond CHS" marker.
    e[1..4].copy_from_slice(&[0xFE, 0xFF, 0xFF]);
    e[4] = 0x83; // Linux
    e[5..8].copy_from_slice(&[0xFE, 0xFF, 0xFF]);
    e[8..12].copy_from_slice(&FIRST_LBA.to_le_bytes());
    e[12..16].copy_from_slice(&(sectors - FIRST_LBA).to_le_bytes());
    img[510] = 0x55;
    img[511] = 0xAA;
    let marker = b"virq-kvm partition 1";
    let at = FIRST_LBA as usize * SECTOR;
    img[at..at + marker.len()].copy_from_slice(marker);
    img
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_partition_to_the_end() {
        let img = mbr_image(8 << 20);
        assert_eq!(img.len(), 8 << 20);
        assert_eq!(&img[510..512], &[0x55, 0xAA]);
        assert_eq!(img[0x1BE + 4], 0x83);
        let start = u32::from_le_bytes(img[0x1C6..0x1CA].try_into().unwrap());
        let len = u32::from_le_bytes(img[0x1CA..0x1CE].try_into().unwrap());
        assert_eq!(start + len, (8 << 20) / 512);
    }
}
