//! Guest RAM of a served machine: a buffer of the server's own, or a file the client maps
//! shared (`--memory-file`); and the device's view of it, which records every range the device
//! writes while `virq_dma_lines` is on.

use std::fs::OpenOptions;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use virq_device::{FlatRegion, GuestMemory, MemoryError};
use vm_memory::{FileOffset, GuestAddress, GuestMemoryMmap};

use crate::ServeError;

/// Map `path` as `len` bytes of guest RAM at guest-physical 0, shared with every other mapping
/// of the file. The file is created if missing and its contents are zeroed (truncated, then
/// extended sparse), so each machine starts from zeroed RAM as without a file.
pub fn map_memory_file(path: &Path, len: u64) -> Result<GuestMemoryMmap<()>, ServeError> {
    let err = |reason: String| ServeError::MemoryFile {
        path: path.display().to_string(),
        reason,
    };
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(|e| err(e.to_string()))?;
    let meta = file.metadata().map_err(|e| err(e.to_string()))?;
    if !meta.is_file() {
        return Err(err("not a regular file".into()));
    }
    file.set_len(0).map_err(|e| err(e.to_string()))?;
    file.set_len(len).map_err(|e| err(e.to_string()))?;
    let size = usize::try_from(len).map_err(|_| err(format!("{len:#x} bytes do not fit")))?;
    // vm-memory maps a file region with MAP_SHARED: the client's mapping sees every byte.
    GuestMemoryMmap::from_ranges_with_files([(
        GuestAddress(0),
        size,
        Some(FileOffset::new(file, 0)),
    )])
    .map_err(|e| err(format!("mmap: {e}")))
}

/// Where the device's writes to guest RAM are reported: [`crate::engine`]'s outbox, which
/// turns them into `DMA` lines in order with the `IRQ` lines.
pub trait DmaLog: Send + Sync {
    fn wrote(&self, addr: u64, len: u64);
}

/// The device's view of guest RAM. Reads and writes go to `ram`; while `record` is set every
/// successful write (plain copies and the ring's 16-bit stores) is reported to `log`, and no
/// flat region is offered so that the device's fast path cannot bypass the record.
pub struct DeviceRam {
    pub ram: Arc<dyn GuestMemory>,
    pub record: Arc<AtomicBool>,
    pub log: Arc<dyn DmaLog>,
}

impl DeviceRam {
    fn note(
        &self,
        result: Result<(), MemoryError>,
        addr: u64,
        len: u64,
    ) -> Result<(), MemoryError> {
        if result.is_ok() && len > 0 && self.record.load(Ordering::Relaxed) {
            self.log.wrote(addr, len);
        }
        result
    }
}

impl GuestMemory for DeviceRam {
    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), MemoryError> {
        self.ram.read(addr, buf)
    }

    fn write(&self, addr: u64, data: &[u8]) -> Result<(), MemoryError> {
        self.note(self.ram.write(addr, data), addr, data.len() as u64)
    }

    fn check_range(&self, addr: u64, len: u64) -> bool {
        self.ram.check_range(addr, len)
    }

    fn load_u16(&self, addr: u64) -> Result<u16, MemoryError> {
        self.ram.load_u16(addr)
    }

    fn load_acquire_u16(&self, addr: u64) -> Result<u16, MemoryError> {
        self.ram.load_acquire_u16(addr)
    }

    fn store_u16(&self, addr: u64, value: u16) -> Result<(), MemoryError> {
        self.note(self.ram.store_u16(addr, value), addr, 2)
    }

    fn store_release_u16(&self, addr: u64, value: u16) -> Result<(), MemoryError> {
        self.note(self.ram.store_release_u16(addr, value), addr, 2)
    }

    fn flat_region(&self) -> Option<FlatRegion<'_>> {
        if self.record.load(Ordering::Relaxed) {
            None
        } else {
            self.ram.flat_region()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;
    use virq_device::VecMemory;

    #[derive(Default)]
    struct Log(Mutex<Vec<(u64, u64)>>);
    impl DmaLog for Log {
        fn wrote(&self, addr: u64, len: u64) {
            self.0.lock().unwrap().push((addr, len));
        }
    }

    #[test]
    fn writes_are_recorded_only_while_on_and_the_fast_path_is_withheld_then() {
        let log = Arc::new(Log::default());
        let record = Arc::new(AtomicBool::new(false));
        let ram = DeviceRam {
            ram: Arc::new(VecMemory::new(0x100)),
            record: record.clone(),
            log: log.clone(),
        };
        ram.write(0x10, &[1, 2, 3]).unwrap();
        assert!(ram.flat_region().is_some());
        record.store(true, Ordering::Relaxed);
        assert!(ram.flat_region().is_none());
        ram.write(0x20, &[4, 5]).unwrap();
        ram.store_release_u16(0x30, 7).unwrap();
        ram.store_u16(0x32, 8).unwrap();
        assert!(
            ram.write(0xFF, &[0, 0]).is_err(),
            "a failed write is not recorded"
        );
        ram.write(0x40, &[]).unwrap();
        assert_eq!(ram.read_u16(0x30).unwrap(), 7);
        assert_eq!(
            *log.0.lock().unwrap(),
            vec![(0x20, 2), (0x30, 2), (0x32, 2)]
        );
    }

    #[test]
    fn a_memory_file_is_shared_zeroed_and_sized() {
        let path = std::env::temp_dir().join(format!("virq-ram-unit-{}", std::process::id()));
        std::fs::write(&path, vec![0xAAu8; 8192]).unwrap();
        let ram = map_memory_file(&path, 0x4000).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 0x4000);
        assert_eq!(
            GuestMemory::read_u32(&ram, 0).unwrap(),
            0,
            "old contents zeroed"
        );
        GuestMemory::write(&ram, 0x1000, b"virq").unwrap();
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(&bytes[0x1000..0x1004], b"virq", "the write is in the file");
        assert!(GuestMemory::check_range(&ram, 0x3FFF, 1));
        assert!(!GuestMemory::check_range(&ram, 0x3FFF, 2));
        assert!(ram.flat_region().is_some(), "one region: the fast path");
        let dir = std::env::temp_dir();
        assert!(
            map_memory_file(&dir, 0x1000).is_err(),
            "a directory is refused"
        );
        std::fs::remove_file(&path).unwrap();
    }
}
