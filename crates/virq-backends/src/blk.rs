//! virtio-blk (virtio 1.2, 5.2): a disk made of a [`BlockStorage`].
//!
//! Every request queue is served the same way. Requests are checked before any byte moves:
//! a request the device cannot honour completes with VIRTIO_BLK_S_IOERR or
//! VIRTIO_BLK_S_UNSUPP in its status byte, and a chain without a writable status byte
//! completes with used length 0 so the driver at least gets its descriptors back.

use serde::{Deserialize, Serialize};
use thiserror::Error;
use virq_device::{BackendError, Dma, Processed, VirtioBackend, Virtqueue};
use virq_spec::blk::{
    VIRTIO_BLK_F_BLK_SIZE, VIRTIO_BLK_F_FLUSH, VIRTIO_BLK_F_MQ, VIRTIO_BLK_F_RO,
    VIRTIO_BLK_F_SEG_MAX, VIRTIO_BLK_ID_BYTES, VIRTIO_BLK_S_IOERR, VIRTIO_BLK_S_OK,
    VIRTIO_BLK_S_UNSUPP, VIRTIO_BLK_T_FLUSH, VIRTIO_BLK_T_GET_ID, VIRTIO_BLK_T_IN,
    VIRTIO_BLK_T_OUT,
};

use crate::chain::{self, ChainBuffers};
use crate::storage::BlockStorage;

/// virtio device ID of a block device (virtio 1.2, 5).
pub const VIRTIO_ID_BLOCK: u16 = 2;
/// virtio-blk addresses storage in 512-byte sectors whatever `blk_size` says (5.2.6).
pub const SECTOR_SIZE: u64 = 512;
/// Length of the serial returned by VIRTIO_BLK_T_GET_ID (5.2.6).
pub const SERIAL_LEN: usize = VIRTIO_BLK_ID_BYTES as usize;
/// `struct virtio_blk_config` up to and including `num_queues` (5.2.4); later fields belong to
/// features this device does not offer.
pub const BLOCK_CONFIG_LEN: usize = 36;

/// The request header: le32 type, le32 reserved, le64 sector (5.2.6).
const HEADER_LEN: u64 = 16;
/// Host bounce buffer for data moving between guest RAM and storage, allocated once.
const BOUNCE_LEN: usize = 64 * 1024;
/// Most request queues a device may be configured with.
pub const MAX_QUEUES: u16 = 64;

/// How a block device presents itself to the driver.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockConfig {
    /// Request queues; more than one offers VIRTIO_BLK_F_MQ.
    pub num_queues: u16,
    /// Largest size of every request queue (a power of two).
    pub queue_size: u16,
    /// Advertised maximum number of data segments per request (`seg_max`).
    pub seg_max: u32,
    /// Advertised logical block size (`blk_size`); sectors stay 512 bytes.
    pub blk_size: u32,
    /// Answer to VIRTIO_BLK_T_GET_ID, at most 20 bytes, zero-padded.
    pub serial: String,
}

impl Default for BlockConfig {
    fn default() -> Self {
        Self {
            num_queues: 1,
            queue_size: 256,
            seg_max: 254,
            blk_size: 512,
            serial: "virq-blk".to_string(),
        }
    }
}

/// A [`BlockConfig`] the device cannot honour.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum BlockConfigError {
    /// `num_queues` out of range.
    #[error("num_queues must be 1..={MAX_QUEUES}, got {0}")]
    NumQueues(u16),
    /// `queue_size` is not a valid split-ring size.
    #[error("queue_size must be a power of two in 1..=32768, got {0}")]
    QueueSize(u16),
    /// `seg_max` of 0: no request could be made.
    #[error("seg_max must be at least 1")]
    SegMax,
    /// `blk_size` is not a power of two of at least 512 bytes.
    #[error("blk_size must be a power of two of at least 512, got {0}")]
    BlkSize(u32),
    /// The serial does not fit VIRTIO_BLK_T_GET_ID's 20 bytes.
    #[error("serial is {0} bytes, at most 20 fit")]
    SerialTooLong(usize),
}

/// What the device has done, for the host and as test evidence. Counts only grow; a device
/// reset does not clear them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockCounters {
    /// VIRTIO_BLK_T_IN requests seen.
    pub reads: u64,
    /// VIRTIO_BLK_T_OUT requests seen.
    pub writes: u64,
    /// VIRTIO_BLK_T_FLUSH requests seen.
    pub flushes: u64,
    /// VIRTIO_BLK_T_GET_ID requests seen.
    pub get_ids: u64,
    /// Requests of any other type.
    pub other_types: u64,
    /// Completions with VIRTIO_BLK_S_OK.
    pub status_ok: u64,
    /// Completions with VIRTIO_BLK_S_IOERR (the reasons below add up to this).
    pub status_ioerr: u64,
    /// Completions with VIRTIO_BLK_S_UNSUPP.
    pub status_unsupp: u64,
    /// IOERR: sector range beyond capacity (or overflowing).
    pub ioerr_out_of_range: u64,
    /// IOERR: data length not a multiple of 512.
    pub ioerr_unaligned_len: u64,
    /// IOERR: fewer than 16 device-readable bytes for the header.
    pub ioerr_short_header: u64,
    /// IOERR: write to a read-only disk.
    pub ioerr_read_only: u64,
    /// IOERR: a buffer outside guest RAM.
    pub ioerr_bad_buffer: u64,
    /// IOERR: the storage itself failed.
    pub ioerr_storage: u64,
    /// Chains completed with used length 0 because no status byte could be written.
    pub no_status: u64,
    /// Chains that loop, exceed the queue size or reference unreadable descriptors.
    pub broken_chains: u64,
    /// Bytes copied from storage to the guest.
    pub bytes_read: u64,
    /// Bytes copied from the guest to storage.
    pub bytes_written: u64,
    /// Chains completed, per request queue.
    pub completed_per_queue: Vec<u64>,
    /// Device resets seen.
    pub resets: u64,
}

/// Why a request failed with VIRTIO_BLK_S_IOERR.
#[derive(Debug, Clone, Copy)]
enum IoErr {
    OutOfRange,
    UnalignedLen,
    ShortHeader,
    ReadOnly,
    BadBuffer,
    Storage,
}

/// How a request ended, with the bytes the device wrote before the status byte.
#[derive(Debug, Clone, Copy)]
enum Outcome {
    Ok(u64),
    IoErr(IoErr, u64),
    Unsupp,
}

/// Persisted form of a block device: configuration and evidence, never the disk contents
/// (the image lives in its own storage).
#[derive(Debug, Serialize, Deserialize)]
struct BlockSnapshot {
    device: String,
    config: BlockConfig,
    capacity_sectors: u64,
    read_only: bool,
    acked_features: u64,
    counters: BlockCounters,
}

/// A virtio-blk device over storage `S`.
pub struct Block<S> {
    storage: S,
    config: BlockConfig,
    serial: [u8; SERIAL_LEN],
    acked_features: u64,
    chain: ChainBuffers,
    bounce: Vec<u8>,
    counters: BlockCounters,
}

impl<S: BlockStorage> Block<S> {
    /// A block device serving `storage` as configured.
    pub fn new(storage: S, config: BlockConfig) -> Result<Self, BlockConfigError> {
        if config.num_queues == 0 || config.num_queues > MAX_QUEUES {
            return Err(BlockConfigError::NumQueues(config.num_queues));
        }
        if !config.queue_size.is_power_of_two() || config.queue_size > 32768 {
            return Err(BlockConfigError::QueueSize(config.queue_size));
        }
        if config.seg_max == 0 {
            return Err(BlockConfigError::SegMax);
        }
        if !config.blk_size.is_power_of_two() || config.blk_size < 512 {
            return Err(BlockConfigError::BlkSize(config.blk_size));
        }
        let serial_bytes = config.serial.as_bytes();
        if serial_bytes.len() > SERIAL_LEN {
            return Err(BlockConfigError::SerialTooLong(serial_bytes.len()));
        }
        let mut serial = [0u8; SERIAL_LEN];
        serial[..serial_bytes.len()].copy_from_slice(serial_bytes);
        let counters = BlockCounters {
            completed_per_queue: vec![0; usize::from(config.num_queues)],
            ..BlockCounters::default()
        };
        Ok(Self {
            storage,
            chain: ChainBuffers::with_capacity(usize::from(config.queue_size)),
            config,
            serial,
            acked_features: 0,
            bounce: vec![0; BOUNCE_LEN],
            counters,
        })
    }

    /// The configuration the device was built with.
    pub fn config(&self) -> &BlockConfig {
        &self.config
    }

    /// The backing store (to inspect an in-memory image, for example).
    pub fn storage(&self) -> &S {
        &self.storage
    }

    /// The backing store, for host-side changes while the guest is quiesced.
    pub fn storage_mut(&mut self) -> &mut S {
        &mut self.storage
    }

    /// Evidence of what the device did.
    pub fn counters(&self) -> &BlockCounters {
        &self.counters
    }

    /// Features the driver accepted at DRIVER_OK (0 before activation and after reset).
    pub fn acked_features(&self) -> u64 {
        self.acked_features
    }

    /// Capacity in 512-byte sectors; a trailing partial sector is not addressable.
    pub fn capacity_sectors(&self) -> u64 {
        self.storage.len() / SECTOR_SIZE
    }

    fn config_bytes(&self) -> [u8; BLOCK_CONFIG_LEN] {
        let mut cfg = [0u8; BLOCK_CONFIG_LEN];
        cfg[0..8].copy_from_slice(&self.capacity_sectors().to_le_bytes());
        // size_max (8..12) and geometry (16..20) stay 0: SIZE_MAX and GEOMETRY are not offered.
        cfg[12..16].copy_from_slice(&self.config.seg_max.to_le_bytes());
        cfg[20..24].copy_from_slice(&self.config.blk_size.to_le_bytes());
        // topology (24..32), writeback (32) and unused0 (33) stay 0.
        cfg[34..36].copy_from_slice(&self.config.num_queues.to_le_bytes());
        cfg
    }

    /// Serve one chain and return the used length.
    fn serve(&mut self, chain: chain::Chain<'_>, mem: &Dma<'_>, max_descriptors: u16) -> u32 {
        self.chain.load(chain, max_descriptors);
        if !self.chain.is_complete() {
            self.counters.broken_chains += 1;
            self.counters.no_status += 1;
            return 0;
        }
        // The status is the last device-writable byte (5.2.6); when every buffer was found in
        // guest RAM while loading, so was it.
        let status_addr = match self.chain.last_writable_byte() {
            Some(addr) if self.chain.all_in_ram() || mem.check_range(addr, 1) => addr,
            _ => {
                self.counters.no_status += 1;
                return 0;
            }
        };
        let status_offset = self.chain.writable_len() - 1;
        let outcome = self.execute(mem, status_offset);
        let (status, data_written) = match outcome {
            Outcome::Ok(n) => {
                self.counters.status_ok += 1;
                (VIRTIO_BLK_S_OK, n)
            }
            Outcome::IoErr(reason, n) => {
                self.counters.status_ioerr += 1;
                let c = &mut self.counters;
                match reason {
                    IoErr::OutOfRange => c.ioerr_out_of_range += 1,
                    IoErr::UnalignedLen => c.ioerr_unaligned_len += 1,
                    IoErr::ShortHeader => c.ioerr_short_header += 1,
                    IoErr::ReadOnly => c.ioerr_read_only += 1,
                    IoErr::BadBuffer => c.ioerr_bad_buffer += 1,
                    IoErr::Storage => c.ioerr_storage += 1,
                }
                (VIRTIO_BLK_S_IOERR, n)
            }
            Outcome::Unsupp => {
                self.counters.status_unsupp += 1;
                (VIRTIO_BLK_S_UNSUPP, 0)
            }
        };
        // Checked to be guest RAM above, so this cannot fail; stay defensive anyway.
        if mem.write(status_addr, &[status as u8]).is_err() {
            self.counters.no_status += 1;
            return chain::used_len(data_written);
        }
        chain::used_len(data_written + 1)
    }

    /// Carry out a request whose device-writable data (before the status byte) is
    /// `data_in_len` bytes long.
    fn execute(&mut self, mem: &Dma<'_>, data_in_len: u64) -> Outcome {
        if self.chain.readable_len() < HEADER_LEN {
            return Outcome::IoErr(IoErr::ShortHeader, 0);
        }
        if !self.chain.all_in_ram() {
            return Outcome::IoErr(IoErr::BadBuffer, 0);
        }
        let Ok(header) = self.chain.read_array::<{ HEADER_LEN as usize }>(mem, 0) else {
            return Outcome::IoErr(IoErr::BadBuffer, 0);
        };
        // One little-endian 128-bit value: type in bits 0..32, sector in bits 64..128.
        let header = u128::from_le_bytes(header);
        let request_type = header as u32;
        let sector = (header >> 64) as u64;

        match request_type {
            VIRTIO_BLK_T_IN => {
                self.counters.reads += 1;
                self.read_sectors(mem, sector, data_in_len)
            }
            VIRTIO_BLK_T_OUT => {
                self.counters.writes += 1;
                let data_out_len = self.chain.readable_len() - HEADER_LEN;
                self.write_sectors(mem, sector, data_out_len)
            }
            VIRTIO_BLK_T_FLUSH => {
                self.counters.flushes += 1;
                match self.storage.flush() {
                    Ok(()) => Outcome::Ok(0),
                    Err(_) => Outcome::IoErr(IoErr::Storage, 0),
                }
            }
            VIRTIO_BLK_T_GET_ID => {
                self.counters.get_ids += 1;
                let n = data_in_len.min(SERIAL_LEN as u64) as usize;
                match self.chain.write(mem, 0, &self.serial[..n]) {
                    Ok(()) => Outcome::Ok(n as u64),
                    Err(_) => Outcome::IoErr(IoErr::BadBuffer, 0),
                }
            }
            _ => {
                self.counters.other_types += 1;
                Outcome::Unsupp
            }
        }
    }

    /// Byte offset of `len` bytes at `sector`, if the whole range lies within the capacity.
    fn byte_range(&self, sector: u64, len: u64) -> Result<u64, IoErr> {
        if len % SECTOR_SIZE != 0 {
            return Err(IoErr::UnalignedLen);
        }
        let capacity = self.capacity_sectors() * SECTOR_SIZE;
        sector
            .checked_mul(SECTOR_SIZE)
            .filter(|start| start.checked_add(len).is_some_and(|end| end <= capacity))
            .ok_or(IoErr::OutOfRange)
    }

    fn read_sectors(&mut self, mem: &Dma<'_>, sector: u64, len: u64) -> Outcome {
        let start = match self.byte_range(sector, len) {
            Ok(start) => start,
            Err(reason) => return Outcome::IoErr(reason, 0),
        };
        let mut done = 0u64;
        while done < len {
            let n = (len - done).min(self.bounce.len() as u64) as usize;
            // An image in host memory goes to the guest in one copy; anything else through
            // the bounce buffer.
            let piece: &[u8] = match self.storage.as_slice() {
                Some(image) => {
                    // byte_range proved start + len <= capacity <= image length.
                    let at = (start + done) as usize;
                    &image[at..at + n]
                }
                None => {
                    let piece = &mut self.bounce[..n];
                    if self.storage.read_at(start + done, piece).is_err() {
                        return Outcome::IoErr(IoErr::Storage, done);
                    }
                    piece
                }
            };
            if self.chain.write(mem, done, piece).is_err() {
                return Outcome::IoErr(IoErr::BadBuffer, done);
            }
            done += n as u64;
            self.counters.bytes_read += n as u64;
        }
        Outcome::Ok(len)
    }

    fn write_sectors(&mut self, mem: &Dma<'_>, sector: u64, len: u64) -> Outcome {
        // A read-only device must fail writes without touching data (5.2.6.2).
        if self.storage.is_read_only() {
            return Outcome::IoErr(IoErr::ReadOnly, 0);
        }
        let start = match self.byte_range(sector, len) {
            Ok(start) => start,
            Err(reason) => return Outcome::IoErr(reason, 0),
        };
        let mut done = 0u64;
        while done < len {
            let n = (len - done).min(self.bounce.len() as u64) as usize;
            let piece = &mut self.bounce[..n];
            if self.chain.read(mem, HEADER_LEN + done, piece).is_err() {
                return Outcome::IoErr(IoErr::BadBuffer, 0);
            }
            if self.storage.write_at(start + done, piece).is_err() {
                return Outcome::IoErr(IoErr::Storage, 0);
            }
            done += n as u64;
            self.counters.bytes_written += n as u64;
        }
        Outcome::Ok(0)
    }
}

impl<S: BlockStorage + 'static> VirtioBackend for Block<S> {
    fn name(&self) -> &'static str {
        "virtio-blk"
    }

    fn device_id(&self) -> u16 {
        VIRTIO_ID_BLOCK
    }

    /// A disk moves only when the driver posts a request.
    fn takes_host_input(&self) -> bool {
        false
    }

    fn device_features(&self) -> u64 {
        let mut features =
            (1 << VIRTIO_BLK_F_SEG_MAX) | (1 << VIRTIO_BLK_F_BLK_SIZE) | (1 << VIRTIO_BLK_F_FLUSH);
        if self.config.num_queues > 1 {
            features |= 1 << VIRTIO_BLK_F_MQ;
        }
        if self.storage.is_read_only() {
            features |= 1 << VIRTIO_BLK_F_RO;
        }
        features
    }

    fn num_queues(&self) -> u16 {
        self.config.num_queues
    }

    fn queue_max_size(&self, _queue: u16) -> u16 {
        self.config.queue_size
    }

    fn config_len(&self) -> usize {
        BLOCK_CONFIG_LEN
    }

    fn read_config(&self, offset: u64, data: &mut [u8]) {
        read_config_bytes(&self.config_bytes(), offset, data);
    }

    fn activate(&mut self, features: u64) {
        self.acked_features = features;
    }

    fn reset(&mut self) {
        // Requests never outlive one process_queue call, so only negotiated state remains.
        self.acked_features = 0;
        self.counters.resets += 1;
    }

    fn process_queue(
        &mut self,
        queue_index: u16,
        queue: &mut Virtqueue<'_>,
    ) -> Result<Processed, BackendError> {
        if queue_index >= self.config.num_queues {
            return Ok(Processed::default());
        }
        let budget = queue.size();
        let mem = &queue.memory();
        let mut used = 0u16;
        while used < budget {
            let Some(chain) = chain::pop_chain(queue_index, queue)? else {
                break;
            };
            let head = chain.head_index();
            let len = self.serve(chain, mem, budget);
            chain::publish(queue_index, queue, head, len)?;
            used += 1;
            self.counters.completed_per_queue[usize::from(queue_index)] += 1;
        }
        Ok(Processed { used })
    }

    fn snapshot(&self) -> serde_json::Value {
        let snapshot = BlockSnapshot {
            device: self.name().to_string(),
            config: self.config.clone(),
            capacity_sectors: self.capacity_sectors(),
            read_only: self.storage.is_read_only(),
            acked_features: self.acked_features,
            counters: self.counters.clone(),
        };
        serde_json::to_value(snapshot).unwrap_or(serde_json::Value::Null)
    }

    fn restore(&mut self, state: &serde_json::Value) -> Result<(), BackendError> {
        let snapshot: BlockSnapshot = serde_json::from_value(state.clone())
            .map_err(|e| BackendError::BadSnapshot(e.to_string()))?;
        if snapshot.device != self.name() {
            return Err(BackendError::BadSnapshot(format!(
                "snapshot of {} restored into {}",
                snapshot.device,
                self.name()
            )));
        }
        if snapshot.config != self.config {
            return Err(BackendError::BadSnapshot(
                "block configuration differs".to_string(),
            ));
        }
        if snapshot.capacity_sectors != self.capacity_sectors()
            || snapshot.read_only != self.storage.is_read_only()
        {
            return Err(BackendError::BadSnapshot(
                "backing image differs in capacity or writability".to_string(),
            ));
        }
        if snapshot.counters.completed_per_queue.len() != usize::from(self.config.num_queues) {
            return Err(BackendError::BadSnapshot(
                "per-queue counters do not match num_queues".to_string(),
            ));
        }
        self.acked_features = snapshot.acked_features;
        self.counters = snapshot.counters;
        Ok(())
    }
}

/// Copy `offset..` of a configuration structure into `data`; bytes beyond it read as 0.
pub(crate) fn read_config_bytes(config: &[u8], offset: u64, data: &mut [u8]) {
    for (i, byte) in data.iter_mut().enumerate() {
        *byte = offset
            .checked_add(i as u64)
            .and_then(|at| usize::try_from(at).ok())
            .and_then(|at| config.get(at).copied())
            .unwrap_or(0);
    }
}
