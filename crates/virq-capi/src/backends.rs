//! The device types the C API builds, and the virtio-blk disk the host side can read back.

// Plain Rust over virq-backends: none of the crate's FFI reaches here.
#![forbid(unsafe_code)]

use std::sync::{Arc, Mutex};

use virq_backends::{
    Block, BlockConfig, BlockStorage, Console, ConsoleConfig, Rng, SeededEntropy, StorageError,
};
use virq_device::VirtioBackend;

/// A virtio-blk image in host memory, shared between the device and the C API so that a test
/// can check what its driver wrote without going through the driver again.
#[derive(Clone, Debug, Default)]
pub struct SharedDisk(Arc<Mutex<Vec<u8>>>);

impl SharedDisk {
    pub fn new(bytes: Vec<u8>) -> Self {
        SharedDisk(Arc::new(Mutex::new(bytes)))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<u8>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Copy `buf.len()` bytes at `offset` out of the image; false when they do not fit.
    pub fn read(&self, offset: u64, buf: &mut [u8]) -> bool {
        self.read_at(offset, buf).is_ok()
    }
}

impl BlockStorage for SharedDisk {
    fn len(&self) -> u64 {
        self.lock().len() as u64
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), StorageError> {
        let bytes = self.lock();
        let range = range(offset, buf.len(), bytes.len())?;
        buf.copy_from_slice(&bytes[range]);
        Ok(())
    }

    fn write_at(&mut self, offset: u64, data: &[u8]) -> Result<(), StorageError> {
        let mut bytes = self.lock();
        let range = range(offset, data.len(), bytes.len())?;
        bytes[range].copy_from_slice(data);
        Ok(())
    }

    fn flush(&mut self) -> Result<(), StorageError> {
        Ok(())
    }

    fn is_read_only(&self) -> bool {
        false
    }
}

/// `offset..offset + len` inside an image of `size` bytes.
fn range(offset: u64, len: usize, size: usize) -> Result<std::ops::Range<usize>, StorageError> {
    usize::try_from(offset)
        .ok()
        .and_then(|start| Some(start..start.checked_add(len)?))
        .filter(|r| r.end <= size)
        .ok_or(StorageError::OutOfRange {
            offset,
            len,
            size: size as u64,
        })
}

/// What kind of device to build, already checked.
pub enum Kind {
    Blk { queues: u16, disk: SharedDisk },
    Rng { seed: u64 },
    Console,
}

/// The backend for `kind`; fails with the reason when the backend refuses its configuration.
pub fn build(kind: &Kind) -> Result<Box<dyn VirtioBackend>, String> {
    Ok(match kind {
        Kind::Blk { queues, disk } => Box::new(
            Block::new(
                disk.clone(),
                BlockConfig {
                    num_queues: *queues,
                    ..BlockConfig::default()
                },
            )
            .map_err(|e| e.to_string())?,
        ),
        Kind::Rng { seed } => Box::new(Rng::new(SeededEntropy::new(*seed))),
        Kind::Console => Box::new(Console::new(ConsoleConfig::default())),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shared_image_is_the_devices_image() {
        let disk = SharedDisk::new(vec![0; 1024]);
        let mut writer = disk.clone();
        writer.write_at(510, &[7, 8, 9]).unwrap();
        let mut b = [0u8; 3];
        assert!(disk.read(510, &mut b));
        assert_eq!(b, [7, 8, 9]);
        assert!(!disk.read(1022, &mut b), "past the end");
        assert!(writer.write_at(u64::MAX, &[1]).is_err());
        assert_eq!(disk.len(), 1024);
    }
}
