//! `virq serve`: virq's virtio-pci device behind a qtest-style line protocol.
//!
//! A client (a driver core under test, in any language) talks to a small PC over a byte
//! stream: port I/O reaches PCI configuration mechanism #1 at 0xCF8/0xCFC, memory accesses
//! reach guest RAM or the BARs the client itself placed, and every interrupt the device sends
//! comes back as an `IRQ` line before the reply of the request that caused it. The grammar is
//! in `docs/serve-protocol.md`; this crate is its only implementation.
//!
//! For clients that reach guest RAM through pointers, [`ServeOptions::memory_file`] backs
//! guest RAM with a file the client maps shared, `virq_dma_lines on` reports every range the
//! device wrote as a `DMA` line, and the server announces itself with [`READY_LINE`]. The
//! device touches RAM only while serving the request that triggers it (the protocol document
//! names those requests).
//!
//! ```
//! use virq_serve::{ServeOptions, Session};
//!
//! let mut s = Session::new(&ServeOptions::default()).unwrap();
//! // Vendor and device ID of 00:01.0 through mechanism #1.
//! assert_eq!(s.request("outl 0xcf8 0x80000800"), "OK\n");
//! assert_eq!(s.request("inl 0xcfc"), "OK 0x10421af4\n");
//! assert_eq!(s.request("bogus"), "FAIL unknown request \"bogus\"\n");
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod engine;
pub mod parse;
mod ram;
mod transport;

pub use engine::{DEVICE_SLOT, Irq, Session};
pub use parse::{MAX_BULK_LEN, MAX_LINE_LEN, ProtocolError, Request, Width, parse_request};
pub use transport::{READY_LINE, serve_stdio, serve_stream, serve_unix};

use thiserror::Error;

/// Guest RAM of a default machine: 64 MiB at guest-physical 0.
pub const DEFAULT_RAM_BYTES: u64 = 64 << 20;
/// Most guest RAM a machine may have, so the PCI hole at 0xC000_0000 stays free for BARs.
pub const MAX_RAM_BYTES: u64 = 0xC000_0000;
/// Size of the virtio-blk disk image (2048 sectors).
pub const DEFAULT_DISK_BYTES: u64 = 1 << 20;
/// Largest disk image (it is held in host memory).
pub const MAX_DISK_BYTES: u64 = 256 << 20;

/// The device type plugged at 00:01.0.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DeviceKind {
    /// virtio-blk (device ID 2) over an in-memory disk image.
    #[default]
    Blk,
    /// virtio-rng (device ID 4), one queue of entropy.
    Rng,
    /// virtio-console (device ID 3), receive and transmit queues.
    Console,
}

impl DeviceKind {
    /// The device type a `--device` name (`blk`, `rng`, `console`) means.
    pub fn from_name(name: &str) -> Option<DeviceKind> {
        match name {
            "blk" => Some(DeviceKind::Blk),
            "rng" => Some(DeviceKind::Rng),
            "console" => Some(DeviceKind::Console),
            _ => None,
        }
    }

    /// The `--device` name of this type.
    pub fn name(self) -> &'static str {
        match self {
            DeviceKind::Blk => "blk",
            DeviceKind::Rng => "rng",
            DeviceKind::Console => "console",
        }
    }
}

/// What the served machine looks like.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServeOptions {
    /// The device type at 00:01.0.
    pub device: DeviceKind,
    /// Request queues of virtio-blk (default 1). virtio-rng has exactly 1 queue and
    /// virtio-console exactly 2; asking those for another number is an error.
    pub queues: Option<u16>,
    /// MSI-X table size; `None` is 1 + number of queues, `Some(0)` removes MSI-X.
    pub msix_table: Option<u16>,
    /// Guest RAM at guest-physical 0, a multiple of 4 KiB up to [`MAX_RAM_BYTES`].
    pub ram_bytes: u64,
    /// virtio-blk disk size in bytes, a multiple of 512 up to [`MAX_DISK_BYTES`].
    pub disk_bytes: u64,
    /// Back guest RAM with this file, mapped shared, so a client that maps it too reaches
    /// guest RAM through plain pointers (`--memory-file`). Created if missing; zeroed and sized
    /// to `ram_bytes` whenever a machine is built.
    pub memory_file: Option<std::path::PathBuf>,
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            device: DeviceKind::Blk,
            queues: None,
            msix_table: None,
            ram_bytes: DEFAULT_RAM_BYTES,
            disk_bytes: DEFAULT_DISK_BYTES,
            memory_file: None,
        }
    }
}

/// Byte `offset` of the virtio-blk disk image: `(37 * sector + offset) mod 256`, so every
/// sector differs from its neighbours and a client can check data without a copy.
pub fn disk_byte(offset: u64) -> u8 {
    ((offset >> 9) as u8)
        .wrapping_mul(37)
        .wrapping_add(offset as u8)
}

/// Why a server could not start or stopped.
#[derive(Debug, Error)]
pub enum ServeError {
    /// The options contradict each other or exceed a limit.
    #[error("invalid options: {0}")]
    Options(String),
    /// The simulated machine could not be built.
    #[error("machine: {0}")]
    Machine(#[from] virq_sim::MachineError),
    /// The device refused its configuration.
    #[error("device: {0}")]
    Device(#[from] virq_device::DeviceError),
    /// The virtio-blk configuration was refused.
    #[error("virtio-blk: {0}")]
    Block(#[from] virq_backends::BlockConfigError),
    /// The listening socket could not be set up.
    #[error("socket {path}: {source}")]
    Socket {
        /// Path of the socket.
        path: String,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The `--memory-file` could not be created, sized or mapped.
    #[error("memory file {path}: {reason}")]
    MemoryFile {
        /// The file.
        path: String,
        /// What failed.
        reason: String,
    },
    /// The `--ready-fd` descriptor could not be reopened or written.
    #[error("--ready-fd {fd}: {reason}")]
    ReadyFd {
        /// The descriptor number.
        fd: u32,
        /// What failed.
        reason: String,
    },
    /// Reading a request or writing a reply failed.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
}
