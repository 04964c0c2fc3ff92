//! Where a virtio-blk device keeps its bytes.

#[cfg(unix)]
use std::fs::{File, OpenOptions};
#[cfg(unix)]
use std::os::unix::fs::FileExt;
#[cfg(unix)]
use std::path::Path;

use thiserror::Error;

/// Why a storage access failed; the block device turns every one into VIRTIO_BLK_S_IOERR.
#[derive(Debug, Error)]
pub enum StorageError {
    /// The access does not fit inside the image.
    #[error("access of {len} bytes at offset {offset} does not fit the {size}-byte image")]
    OutOfRange {
        /// Byte offset of the access in the image.
        offset: u64,
        /// Length of the access in bytes.
        len: usize,
        /// Size of the image in bytes.
        size: u64,
    },
    /// A write reached an image opened read-only.
    #[error("the image is read-only")]
    ReadOnly,
    /// The host file failed.
    #[error("image I/O failed: {0}")]
    Io(#[from] std::io::Error),
}

/// Byte-addressed backing store of a block device.
///
/// Offsets are in bytes so that the device, not the store, owns the sector arithmetic and its
/// overflow checks.
pub trait BlockStorage: Send {
    /// Size of the image in bytes.
    fn len(&self) -> u64;

    /// The image holds no bytes (a zero-capacity disk).
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Fill `buf` with the bytes at `offset`.
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), StorageError>;

    /// Store `data` at `offset`.
    fn write_at(&mut self, offset: u64, data: &[u8]) -> Result<(), StorageError>;

    /// Make completed writes durable (VIRTIO_BLK_T_FLUSH).
    fn flush(&mut self) -> Result<(), StorageError>;

    /// Writes are refused; the device then offers VIRTIO_BLK_F_RO.
    fn is_read_only(&self) -> bool;

    /// The whole image as one host slice, when it is one: reads then move each byte once,
    /// from the image straight into guest RAM, instead of through a bounce buffer.
    fn as_slice(&self) -> Option<&[u8]> {
        None
    }
}

/// Checks `[offset, offset + len)` against an image of `size` bytes without overflowing.
fn check_range(offset: u64, len: usize, size: u64) -> Result<(), StorageError> {
    let fits = u64::try_from(len)
        .ok()
        .and_then(|len| offset.checked_add(len))
        .is_some_and(|end| end <= size);
    if fits {
        Ok(())
    } else {
        Err(StorageError::OutOfRange { offset, len, size })
    }
}

/// An image held in host memory: fast, deterministic, and lost when dropped.
#[derive(Debug, Clone, Default)]
pub struct MemoryStorage {
    bytes: Vec<u8>,
    read_only: bool,
    flushes: u64,
}

impl MemoryStorage {
    /// A zero-filled writable image of `len` bytes.
    pub fn new(len: usize) -> Self {
        Self::from_bytes(vec![0; len])
    }

    /// A writable image with the given contents.
    pub fn from_bytes(bytes: Vec<u8>) -> Self {
        Self {
            bytes,
            read_only: false,
            flushes: 0,
        }
    }

    /// The same image, refusing (or accepting) writes.
    pub fn read_only(mut self, read_only: bool) -> Self {
        self.read_only = read_only;
        self
    }

    /// The current contents, for the host and for tests.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Flushes requested so far; a memory image has nothing to make durable.
    pub fn flushes(&self) -> u64 {
        self.flushes
    }
}

impl BlockStorage for MemoryStorage {
    fn len(&self) -> u64 {
        self.bytes.len() as u64
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), StorageError> {
        check_range(offset, buf.len(), self.len())?;
        // check_range proved offset + len <= bytes.len(), so these conversions are exact.
        let start = offset as usize;
        buf.copy_from_slice(&self.bytes[start..start + buf.len()]);
        Ok(())
    }

    fn write_at(&mut self, offset: u64, data: &[u8]) -> Result<(), StorageError> {
        if self.read_only {
            return Err(StorageError::ReadOnly);
        }
        check_range(offset, data.len(), self.len())?;
        let start = offset as usize;
        self.bytes[start..start + data.len()].copy_from_slice(data);
        Ok(())
    }

    fn flush(&mut self) -> Result<(), StorageError> {
        self.flushes += 1;
        Ok(())
    }

    fn is_read_only(&self) -> bool {
        self.read_only
    }

    fn as_slice(&self) -> Option<&[u8]> {
        Some(&self.bytes)
    }
}

/// An image in a host file, accessed with positioned I/O so no seek state is shared.
///
/// The size is fixed when the image is opened: the guest was told a capacity and must not see
/// it change under it because the file grew. Unix hosts only (positioned I/O); a browser
/// embedder brings its own [`BlockStorage`].
#[cfg(unix)]
#[derive(Debug)]
pub struct FileStorage {
    file: File,
    len: u64,
    read_only: bool,
}

#[cfg(unix)]
impl FileStorage {
    /// Open an existing image file.
    pub fn open(path: impl AsRef<Path>, read_only: bool) -> Result<Self, StorageError> {
        let file = OpenOptions::new().read(true).write(!read_only).open(path)?;
        Self::from_file(file, read_only)
    }

    /// Use an already opened file (which must be writable unless `read_only`).
    pub fn from_file(file: File, read_only: bool) -> Result<Self, StorageError> {
        let len = file.metadata()?.len();
        Ok(Self {
            file,
            len,
            read_only,
        })
    }
}

#[cfg(unix)]
impl BlockStorage for FileStorage {
    fn len(&self) -> u64 {
        self.len
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), StorageError> {
        check_range(offset, buf.len(), self.len)?;
        self.file.read_exact_at(buf, offset)?;
        Ok(())
    }

    fn write_at(&mut self, offset: u64, data: &[u8]) -> Result<(), StorageError> {
        if self.read_only {
            return Err(StorageError::ReadOnly);
        }
        check_range(offset, data.len(), self.len)?;
        self.file.write_all_at(data, offset)?;
        Ok(())
    }

    fn flush(&mut self) -> Result<(), StorageError> {
        if !self.read_only {
            self.file.sync_data()?;
        }
        Ok(())
    }

    fn is_read_only(&self) -> bool {
        self.read_only
    }
}
