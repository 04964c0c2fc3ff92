//! The protocol engine: a machine, the device at 00:01.0, and the execution of requests.

use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use virq_backends::{
    Block, BlockConfig, Console, ConsoleConfig, MemoryStorage, Rng, SeededEntropy,
};
use virq_device::{GuestMemory, InterruptSink, TransportOptions, VirtioBackend, VirtioPciDevice};
use virq_sim::Machine;

use crate::parse::{ProtocolError, Request, Width, is_blank, parse_request};
use crate::ram::{DeviceRam, DmaLog, map_memory_file};
use crate::{DeviceKind, MAX_DISK_BYTES, MAX_RAM_BYTES, ServeError, ServeOptions, disk_byte};

/// PCI slot (device number on bus 0) of the served function: BDF 00:01.0.
pub const DEVICE_SLOT: u8 = 1;

/// An interrupt the device sent, in the order it sent them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Irq {
    /// An MSI-X message: a DWORD write of `data` to `address`.
    Msi {
        /// Message Address of the MSI-X table entry.
        address: u64,
        /// Message Data of the entry.
        data: u32,
    },
    /// INTA# went high; the number is the GSI it is wired to.
    Raise(u32),
    /// INTA# went low.
    Lower(u32),
}

/// What the device did during a request, reported before its reply: interrupts (`IRQ`
/// lines) and the ranges of guest RAM it wrote (`DMA` lines), in the order it did them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Notice {
    Irq(Irq),
    Dma { addr: u64, len: u64 },
}

/// The device's [`InterruptSink`] and [`DmaLog`]: queues every notice for the next reply
/// and, like a bus write would, stores an MSI-X message's data when its address is guest RAM.
struct Outbox {
    pending: Mutex<Vec<Notice>>,
    ram: Arc<dyn GuestMemory>,
    ram_size: u64,
    gsi: u32,
    /// `virq_dma_lines`: the device's writes to RAM are recorded.
    dma: Arc<AtomicBool>,
}

impl Outbox {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Notice>> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn take(&self, into: &mut Vec<Notice>) {
        into.append(&mut self.lock());
    }
}

impl DmaLog for Outbox {
    /// Adjacent writes in a row (a descriptor's data, then the next) become one range; a write
    /// inside the range just reported adds nothing.
    fn wrote(&self, addr: u64, len: u64) {
        let mut pending = self.lock();
        if let Some(Notice::Dma { addr: a, len: l }) = pending.last_mut() {
            let end = *a + *l;
            if addr == end {
                *l += len;
                return;
            }
            if addr >= *a && addr + len <= end {
                return;
            }
        }
        pending.push(Notice::Dma { addr, len });
    }
}

impl InterruptSink for Outbox {
    fn msi(&self, address: u64, data: u32) {
        if address
            .checked_add(4)
            .is_some_and(|end| end <= self.ram_size)
            && self.ram.write(address, &data.to_le_bytes()).is_ok()
            && self.dma.load(Ordering::Relaxed)
        {
            self.wrote(address, 4);
        }
        self.lock().push(Notice::Irq(Irq::Msi { address, data }));
    }

    fn set_intx(&self, level: bool) {
        self.lock().push(Notice::Irq(if level {
            Irq::Raise(self.gsi)
        } else {
            Irq::Lower(self.gsi)
        }));
    }
}

/// What a successful request answers.
enum Reply {
    Ok,
    Value(u64, Width),
    Bytes(Vec<u8>),
    Text(String),
    Events(Vec<virq_events::Event>),
}

/// One client's machine: guest RAM at 0, PCI mechanism #1 with a host bridge at 00:00.0 and
/// the device at 00:01.0, BARs unassigned until the client places them.
pub struct Session {
    options: ServeOptions,
    machine: Machine,
    /// Guest RAM: the machine's own, or the mapping of `--memory-file`.
    ram: Arc<dyn GuestMemory>,
    outbox: Arc<Outbox>,
    /// Notices drained for the reply being written (kept to reuse its allocation).
    scratch: Vec<Notice>,
    msi_lines: bool,
    requests: u64,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("options", &self.options)
            .field("requests", &self.requests)
            .finish_non_exhaustive()
    }
}

fn build_backend(o: &ServeOptions) -> Result<Box<dyn VirtioBackend>, ServeError> {
    let fixed = |name: &str, n: u16| match o.queues {
        Some(q) if q != n => Err(ServeError::Options(format!(
            "{name} has exactly {n} queue(s), not {q}"
        ))),
        _ => Ok(()),
    };
    Ok(match o.device {
        DeviceKind::Blk => {
            if o.disk_bytes == 0 || o.disk_bytes % 512 != 0 || o.disk_bytes > MAX_DISK_BYTES {
                return Err(ServeError::Options(format!(
                    "disk size {:#x} must be a non-zero multiple of 512 up to {MAX_DISK_BYTES:#x}",
                    o.disk_bytes
                )));
            }
            let disk = (0..o.disk_bytes).map(disk_byte).collect();
            Box::new(Block::new(
                MemoryStorage::from_bytes(disk),
                BlockConfig {
                    num_queues: o.queues.unwrap_or(1),
                    ..BlockConfig::default()
                },
            )?)
        }
        DeviceKind::Rng => {
            fixed("virtio-rng", 1)?;
            Box::new(Rng::new(SeededEntropy::new(0x5EED)))
        }
        DeviceKind::Console => {
            fixed("virtio-console", 2)?;
            Box::new(Console::new(ConsoleConfig::default()))
        }
    })
}

impl Session {
    /// A fresh machine as `options` describe; fails on options the device cannot honour.
    pub fn new(options: &ServeOptions) -> Result<Session, ServeError> {
        let ram = options.ram_bytes;
        if ram == 0 || ram % 4096 != 0 || ram > MAX_RAM_BYTES {
            return Err(ServeError::Options(format!(
                "RAM size {ram:#x} must be a non-zero multiple of 4 KiB up to {MAX_RAM_BYTES:#x}"
            )));
        }
        if options.msix_table.is_some_and(|n| n > 2048) {
            return Err(ServeError::Options(
                "the MSI-X table holds at most 2048 entries".into(),
            ));
        }
        // With a memory file the machine's own RAM is not used: keep it minimal.
        let mut machine = Machine::new(if options.memory_file.is_some() {
            4096
        } else {
            ram
        })?;
        let guest_ram: Arc<dyn GuestMemory> = match &options.memory_file {
            Some(path) => Arc::new(map_memory_file(path, ram)?),
            None => Arc::new(machine.ram().clone()),
        };
        let slot = machine.next_slot();
        debug_assert_eq!(slot, DEVICE_SLOT);
        let dma = Arc::new(AtomicBool::new(false));
        let outbox = Arc::new(Outbox {
            pending: Mutex::new(Vec::new()),
            ram: guest_ram.clone(),
            ram_size: ram,
            gsi: Machine::intx_pin(slot) as u32,
            dma: dma.clone(),
        });
        let device = VirtioPciDevice::new(
            build_backend(options)?,
            DeviceRam {
                ram: guest_ram.clone(),
                record: dma,
                log: outbox.clone(),
            },
            outbox.clone(),
            TransportOptions {
                msix_table_size: options.msix_table,
                ..TransportOptions::default()
            },
        )?;
        machine.plug(device)?;
        Ok(Session {
            options: options.clone(),
            machine,
            ram: guest_ram,
            outbox,
            scratch: Vec::new(),
            msi_lines: true,
            requests: 0,
        })
    }

    /// The options the machine was built with.
    pub fn options(&self) -> &ServeOptions {
        &self.options
    }

    /// The simulated machine (for embedding tests that want to look inside). Its own `ram()`
    /// is guest RAM only without a memory file; [`Session::ram`] always is.
    pub fn machine(&self) -> &Machine {
        &self.machine
    }

    /// The served device.
    pub fn device(&self) -> &VirtioPciDevice {
        self.machine
            .device(DEVICE_SLOT)
            .expect("the device is plugged at construction")
    }

    /// Guest RAM as the client reaches it with `read`/`write` (and through a memory file).
    pub fn ram(&self) -> &dyn GuestMemory {
        self.ram.as_ref()
    }

    /// The GSI INTA# of the device is wired to (the N of `IRQ raise N`).
    pub fn intx_gsi(&self) -> u32 {
        self.outbox.gsi
    }

    /// Whether `DMA` lines are written (`virq_dma_lines`).
    pub fn dma_lines(&self) -> bool {
        self.outbox.dma.load(Ordering::Relaxed)
    }

    /// Requests answered so far (blank lines are not requests).
    pub fn requests(&self) -> u64 {
        self.requests
    }

    /// Handle one request line (without its newline): write the `IRQ` lines it caused, then
    /// its reply. Blank lines produce nothing. Only errors of `out` are returned.
    pub fn handle_line(&mut self, line: &[u8], out: &mut impl Write) -> io::Result<()> {
        if is_blank(line) {
            return Ok(());
        }
        self.requests += 1;
        let result = parse_request(line).and_then(|r| self.execute(r));
        self.write_irqs(out)?;
        match result {
            Ok(reply) => write_reply(reply, out),
            Err(e) => writeln!(out, "FAIL {e}"),
        }
    }

    /// Answer a request refused before it could be parsed (a line over the length limit).
    pub fn refuse(&mut self, error: &ProtocolError, out: &mut impl Write) -> io::Result<()> {
        self.requests += 1;
        writeln!(out, "FAIL {error}")
    }

    /// Convenience for tests and embedders: the full text answered to one line.
    pub fn request(&mut self, line: &str) -> String {
        let mut out = Vec::new();
        // Writing to a Vec cannot fail.
        let _ = self.handle_line(line.as_bytes(), &mut out);
        String::from_utf8_lossy(&out).into_owned()
    }

    fn write_irqs(&mut self, out: &mut impl Write) -> io::Result<()> {
        self.outbox.take(&mut self.scratch);
        for notice in self.scratch.drain(..) {
            match notice {
                Notice::Irq(Irq::Msi { address, data }) if self.msi_lines => {
                    writeln!(out, "IRQ msi {address:#x} {data:#x}")?
                }
                Notice::Irq(Irq::Msi { .. }) => {}
                Notice::Irq(Irq::Raise(n)) => writeln!(out, "IRQ raise {n}")?,
                Notice::Irq(Irq::Lower(n)) => writeln!(out, "IRQ lower {n}")?,
                Notice::Dma { addr, len } => writeln!(out, "DMA {addr:#x} {len:#x}")?,
            }
        }
        Ok(())
    }

    fn ram_size(&self) -> u64 {
        self.options.ram_bytes
    }

    /// A bulk access of `len` (> 0) bytes at `addr` must lie in guest RAM.
    fn ram_range(&self, addr: u64, len: u64) -> Result<(), ProtocolError> {
        let last = addr
            .checked_add(len - 1)
            .ok_or(ProtocolError::Wraps { addr, len })?;
        if last >= self.ram_size() {
            return Err(ProtocolError::NotRam {
                addr,
                len,
                ram_size: self.ram_size(),
            });
        }
        Ok(())
    }

    /// Whether a sized access is RAM (true) or MMIO (false); straddling the end is refused.
    /// The top of the address space is reachable: only its last byte has to exist.
    fn is_ram(&self, addr: u64, width: Width) -> Result<bool, ProtocolError> {
        let len = width.bytes() as u64;
        let last = addr
            .checked_add(len - 1)
            .ok_or(ProtocolError::Wraps { addr, len })?;
        if last < self.ram_size() {
            Ok(true)
        } else if addr < self.ram_size() {
            Err(ProtocolError::StraddlesRam {
                addr,
                len: width.bytes(),
            })
        } else {
            Ok(false)
        }
    }

    fn execute(&mut self, request: Request) -> Result<Reply, ProtocolError> {
        Ok(match request {
            Request::PortIn { width, port } => {
                let mut b = [0u8; 4];
                self.machine.port_read(port, &mut b[..width.bytes()]);
                Reply::Value(u32::from_le_bytes(b) as u64, width)
            }
            Request::PortOut { width, port, value } => {
                self.machine
                    .port_write(port, &value.to_le_bytes()[..width.bytes()]);
                Reply::Ok
            }
            Request::MemRead { width, addr } => {
                let mut b = [0u8; 8];
                let buf = &mut b[..width.bytes()];
                if self.is_ram(addr, width)? {
                    self.ram
                        .read(addr, buf)
                        .map_err(|_| ProtocolError::RamAccess(addr))?;
                } else {
                    self.machine.mmio_read(addr, buf);
                }
                Reply::Value(u64::from_le_bytes(b), width)
            }
            Request::MemWrite { width, addr, value } => {
                let bytes = value.to_le_bytes();
                let buf = &bytes[..width.bytes()];
                if self.is_ram(addr, width)? {
                    self.ram
                        .write(addr, buf)
                        .map_err(|_| ProtocolError::RamAccess(addr))?;
                } else {
                    self.machine.mmio_write(addr, buf);
                }
                Reply::Ok
            }
            Request::BulkRead { addr, len } => {
                if len == 0 {
                    return Ok(Reply::Bytes(Vec::new()));
                }
                self.ram_range(addr, len)?;
                let mut buf = vec![0u8; len as usize];
                self.ram
                    .read(addr, &mut buf)
                    .map_err(|_| ProtocolError::RamAccess(addr))?;
                Reply::Bytes(buf)
            }
            Request::BulkWrite { addr, data } => {
                if !data.is_empty() {
                    self.ram_range(addr, data.len() as u64)?;
                    self.ram
                        .write(addr, &data)
                        .map_err(|_| ProtocolError::RamAccess(addr))?;
                }
                Reply::Ok
            }
            Request::Memset { addr, len, byte } => {
                if len > 0 {
                    self.ram_range(addr, len)?;
                    let chunk = [byte; 4096];
                    let mut at = addr;
                    let end = addr + len;
                    while at < end {
                        let n = (end - at).min(chunk.len() as u64) as usize;
                        self.ram
                            .write(at, &chunk[..n])
                            .map_err(|_| ProtocolError::RamAccess(at))?;
                        at += n as u64;
                    }
                }
                Reply::Ok
            }
            Request::IrqIntercept => Reply::Ok,
            Request::Endianness => Reply::Text("little".into()),
            Request::Events { from } => {
                let mut events = self.machine.events().snapshot();
                events.retain(|e| e.seq >= from);
                Reply::Events(events)
            }
            Request::Reset => {
                let fresh = Session::new(&self.options)
                    .map_err(|e| ProtocolError::Rebuild(e.to_string()))?;
                let (msi_lines, dma_lines, requests) =
                    (self.msi_lines, self.dma_lines(), self.requests);
                *self = fresh;
                self.msi_lines = msi_lines;
                self.outbox.dma.store(dma_lines, Ordering::Relaxed);
                self.requests = requests;
                Reply::Ok
            }
            Request::Info => Reply::Text(self.info()),
            Request::ConfigChange => {
                if let Some(d) = self.machine.device_mut(DEVICE_SLOT) {
                    d.config_changed();
                }
                Reply::Ok
            }
            Request::MsiLines(on) => {
                self.msi_lines = on;
                Reply::Ok
            }
            Request::DmaLines(on) => {
                self.outbox.dma.store(on, Ordering::Relaxed);
                Reply::Ok
            }
        })
    }

    /// `virq_info`: `key=value` pairs describing the machine.
    fn info(&self) -> String {
        let d = self.device();
        let table = d.msix().map_or(0, |m| m.table_size());
        let mut s = format!(
            "device={} bdf=00:{:02x}.0 vendor=0x1af4 device_id={:#06x} queues={} msix_table={} \
             intx_gsi={} ram_base=0x0 ram_size={:#x}",
            self.options.device.name(),
            DEVICE_SLOT,
            0x1040 + d.backend().device_id(),
            d.num_queues(),
            table,
            self.intx_gsi(),
            self.ram_size(),
        );
        if self.options.device == DeviceKind::Blk {
            s.push_str(&format!(" disk_sectors={}", self.options.disk_bytes / 512));
        }
        s
    }
}

fn write_reply(reply: Reply, out: &mut impl Write) -> io::Result<()> {
    match reply {
        Reply::Ok => out.write_all(b"OK\n"),
        Reply::Value(v, w) => writeln!(out, "OK 0x{v:0digits$x}", digits = 2 * w.bytes()),
        Reply::Bytes(bytes) => {
            out.write_all(b"OK 0x")?;
            write_hex(&bytes, out)?;
            out.write_all(b"\n")
        }
        Reply::Text(t) => writeln!(out, "OK {t}"),
        Reply::Events(events) => {
            for e in &events {
                // An event always serialises; should it not, the line says so instead.
                match serde_json::to_string(e) {
                    Ok(json) => writeln!(out, "{json}")?,
                    Err(err) => writeln!(out, "{{\"error\":{:?}}}", err.to_string())?,
                }
            }
            writeln!(out, "OK {}", events.len())
        }
    }
}

fn write_hex(bytes: &[u8], out: &mut impl Write) -> io::Result<()> {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut buf = [0u8; 8192];
    for chunk in bytes.chunks(buf.len() / 2) {
        for (i, b) in chunk.iter().enumerate() {
            buf[2 * i] = DIGITS[(b >> 4) as usize];
            buf[2 * i + 1] = DIGITS[(b & 0xF) as usize];
        }
        out.write_all(&buf[..2 * chunk.len()])?;
    }
    Ok(())
}

#[cfg(test)]
mod tests;
