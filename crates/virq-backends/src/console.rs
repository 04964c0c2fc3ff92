//! virtio-console (virtio 1.2, 5.3) with a single port and no VIRTIO_CONSOLE_F_MULTIPORT:
//! queue 0 is receiveq (host to guest), queue 1 is transmitq (guest to host).
//!
//! Both directions are bounded on the host side so neither a chatty guest nor a chatty host
//! can grow memory without limit: excess bytes are dropped and counted.

use std::collections::VecDeque;
use std::fmt;

use serde::{Deserialize, Serialize};
use virq_device::{BackendError, Dma, Processed, VirtioBackend, Virtqueue};

use crate::blk::read_config_bytes;
use crate::chain::{self, ChainBuffers};

/// virtio device ID of a console (virtio 1.2, 5).
pub const VIRTIO_ID_CONSOLE: u16 = 3;
/// Feature bit: `cols` and `rows` in the configuration are valid (5.3.3).
pub const VIRTIO_CONSOLE_F_SIZE: u32 = 0;
/// Feature bit: the driver may write single characters to `emerg_wr` (5.3.3).
pub const VIRTIO_CONSOLE_F_EMERG_WRITE: u32 = 2;
/// `struct virtio_console_config`: le16 cols, le16 rows, le32 max_nr_ports, le32 emerg_wr.
pub const CONSOLE_CONFIG_LEN: usize = 12;
/// Offset of `emerg_wr` in the configuration.
const EMERG_WR_OFFSET: u64 = 8;
/// receiveq: the device fills these buffers with host input.
pub const RECEIVEQ: u16 = 0;
/// transmitq: the device drains these buffers into the host output.
pub const TRANSMITQ: u16 = 1;
/// Longest line handed to the line callback; longer lines arrive in pieces.
pub const MAX_LINE: usize = 4096;
/// Most bytes read from one transmit chain. A hostile driver can describe up to 4 GiB in one
/// chain by repeating a buffer; beyond this the bytes are counted as dropped without being read,
/// so one chain cannot keep the host copying.
pub const MAX_TRANSMIT_PER_CHAIN: u64 = 1024 * 1024;
/// Bytes are copied between guest buffers and host queues in pieces of this size.
const CHUNK_LEN: usize = 4096;

/// How a console presents itself and how much it buffers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsoleConfig {
    /// Terminal size as (cols, rows); `Some` offers VIRTIO_CONSOLE_F_SIZE.
    pub size: Option<(u16, u16)>,
    /// Most guest output kept for [`Console::take_output`] before bytes are dropped.
    pub output_limit: usize,
    /// Most host input waiting for receive buffers before bytes are refused.
    pub input_limit: usize,
    /// Largest size of both queues (a power of two).
    pub queue_size: u16,
}

impl Default for ConsoleConfig {
    fn default() -> Self {
        Self {
            size: None,
            output_limit: 1024 * 1024,
            input_limit: 64 * 1024,
            queue_size: 256,
        }
    }
}

/// What the device has done, for the host and as test evidence.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsoleCounters {
    /// receiveq chains completed.
    pub rx_chains: u64,
    /// Input bytes delivered to the guest.
    pub rx_bytes: u64,
    /// transmitq chains completed.
    pub tx_chains: u64,
    /// Output bytes taken from the guest (kept or dropped).
    pub tx_bytes: u64,
    /// Output bytes dropped because the host buffer was full.
    pub output_dropped: u64,
    /// Input bytes refused because the input queue was full.
    pub input_dropped: u64,
    /// Characters written through `emerg_wr`.
    pub emergency_writes: u64,
    /// Chains that loop, exceed the queue size or reference unreadable descriptors.
    pub broken_chains: u64,
    /// Chains with a buffer outside guest RAM.
    pub bad_buffers: u64,
    /// Device resets seen.
    pub resets: u64,
}

/// Called with each complete line of guest output (without the newline).
pub type LineCallback = Box<dyn FnMut(&[u8]) + Send>;

/// Guest output as the host sees it: a bounded byte buffer plus optional line splitting.
struct OutputSink {
    bytes: VecDeque<u8>,
    limit: usize,
    line: Vec<u8>,
    on_line: Option<LineCallback>,
}

impl OutputSink {
    /// Take `data`, keeping what fits and returning how many bytes were dropped.
    fn accept(&mut self, data: &[u8]) -> u64 {
        let room = self.limit.saturating_sub(self.bytes.len());
        let kept = room.min(data.len());
        self.bytes.extend(&data[..kept]);
        if let Some(on_line) = self.on_line.as_mut() {
            for &byte in data {
                if byte == b'\n' {
                    on_line(&self.line);
                    self.line.clear();
                } else {
                    if self.line.len() == MAX_LINE {
                        on_line(&self.line);
                        self.line.clear();
                    }
                    self.line.push(byte);
                }
            }
        }
        (data.len() - kept) as u64
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct ConsoleSnapshot {
    device: String,
    config: ConsoleConfig,
    input: Vec<u8>,
    output: Vec<u8>,
    partial_line: Vec<u8>,
    acked_features: u64,
    counters: ConsoleCounters,
}

/// A single-port virtio console.
pub struct Console {
    config: ConsoleConfig,
    input: VecDeque<u8>,
    output: OutputSink,
    acked_features: u64,
    chain: ChainBuffers,
    chunk: Vec<u8>,
    counters: ConsoleCounters,
}

impl fmt::Debug for Console {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Console")
            .field("config", &self.config)
            .field("pending_input", &self.input.len())
            .field("pending_output", &self.output.bytes.len())
            .field("counters", &self.counters)
            .finish_non_exhaustive()
    }
}

impl Console {
    /// A console as configured; a zero `queue_size` or one that is not a power of two falls
    /// back to 256.
    pub fn new(mut config: ConsoleConfig) -> Self {
        if !config.queue_size.is_power_of_two() || config.queue_size > 32768 {
            config.queue_size = 256;
        }
        Self {
            chain: ChainBuffers::with_capacity(usize::from(config.queue_size)),
            output: OutputSink {
                bytes: VecDeque::new(),
                limit: config.output_limit,
                line: Vec::new(),
                on_line: None,
            },
            config,
            input: VecDeque::new(),
            acked_features: 0,
            chunk: vec![0; CHUNK_LEN],
            counters: ConsoleCounters::default(),
        }
    }

    /// Queue host input for the guest; returns how many bytes were accepted (the rest did
    /// not fit the input limit and is counted as dropped).
    pub fn push_input(&mut self, data: &[u8]) -> usize {
        let room = self.config.input_limit.saturating_sub(self.input.len());
        let accepted = room.min(data.len());
        self.input.extend(&data[..accepted]);
        self.counters.input_dropped += (data.len() - accepted) as u64;
        accepted
    }

    /// Host input not yet delivered to the guest.
    pub fn pending_input(&self) -> usize {
        self.input.len()
    }

    /// Take everything the guest has written so far.
    pub fn take_output(&mut self) -> Vec<u8> {
        self.output.bytes.drain(..).collect()
    }

    /// Also receive guest output line by line (lines longer than [`MAX_LINE`] are split).
    pub fn set_line_callback(&mut self, on_line: LineCallback) {
        self.output.on_line = Some(on_line);
    }

    /// Change the terminal size. Returns true when the configuration changed, in which case
    /// the transport must bump `config_generation` and send a configuration change
    /// notification. Without VIRTIO_CONSOLE_F_SIZE offered there is nothing to change.
    pub fn set_size(&mut self, cols: u16, rows: u16) -> bool {
        match self.config.size {
            Some(size) if size != (cols, rows) => {
                self.config.size = Some((cols, rows));
                true
            }
            _ => false,
        }
    }

    /// Evidence of what the device did.
    pub fn counters(&self) -> &ConsoleCounters {
        &self.counters
    }

    /// The configuration, including the current size.
    pub fn config(&self) -> &ConsoleConfig {
        &self.config
    }

    fn config_bytes(&self) -> [u8; CONSOLE_CONFIG_LEN] {
        let mut cfg = [0u8; CONSOLE_CONFIG_LEN];
        if let Some((cols, rows)) = self.config.size {
            cfg[0..2].copy_from_slice(&cols.to_le_bytes());
            cfg[2..4].copy_from_slice(&rows.to_le_bytes());
        }
        // max_nr_ports is only meaningful with MULTIPORT; report the one port there is.
        cfg[4..8].copy_from_slice(&1u32.to_le_bytes());
        cfg
    }

    /// Fill one receive buffer from host input; returns the bytes written.
    fn receive(&mut self, chain: chain::Chain<'_>, mem: &Dma<'_>, max_descriptors: u16) -> u32 {
        self.chain.load(chain, max_descriptors);
        if !self.chain.is_complete() {
            self.counters.broken_chains += 1;
            return 0;
        }
        let want = self.chain.writable_len().min(self.input.len() as u64);
        let deliverable = self.chain.writable_prefix_in_ram(mem, 0, want);
        if deliverable < want {
            self.counters.bad_buffers += 1;
        }
        let mut done = 0u64;
        while done < deliverable {
            let n = (deliverable - done).min(self.chunk.len() as u64) as usize;
            for (slot, byte) in self.chunk[..n].iter_mut().zip(self.input.iter()) {
                *slot = *byte;
            }
            if self.chain.write(mem, done, &self.chunk[..n]).is_err() {
                self.counters.bad_buffers += 1;
                break;
            }
            // Input leaves the queue only once it is in guest memory.
            self.input.drain(..n);
            done += n as u64;
        }
        self.counters.rx_bytes += done;
        chain::used_len(done)
    }

    /// Drain one transmit buffer into the host output; the device writes nothing back.
    fn transmit(&mut self, chain: chain::Chain<'_>, mem: &Dma<'_>, max_descriptors: u16) {
        self.chain.load(chain, max_descriptors);
        if !self.chain.is_complete() {
            self.counters.broken_chains += 1;
            return;
        }
        if !self.chain.all_in_ram() {
            self.counters.bad_buffers += 1;
            return;
        }
        let total = self.chain.readable_len().min(MAX_TRANSMIT_PER_CHAIN);
        let skipped = self.chain.readable_len() - total;
        self.counters.output_dropped += skipped;
        self.counters.tx_bytes += skipped;
        let mut done = 0u64;
        while done < total {
            let n = (total - done).min(self.chunk.len() as u64) as usize;
            if self.chain.read(mem, done, &mut self.chunk[..n]).is_err() {
                self.counters.bad_buffers += 1;
                break;
            }
            self.counters.output_dropped += self.output.accept(&self.chunk[..n]);
            self.counters.tx_bytes += n as u64;
            done += n as u64;
        }
    }
}

impl Default for Console {
    fn default() -> Self {
        Self::new(ConsoleConfig::default())
    }
}

impl VirtioBackend for Console {
    fn name(&self) -> &'static str {
        "virtio-console"
    }

    fn device_id(&self) -> u16 {
        VIRTIO_ID_CONSOLE
    }

    fn device_features(&self) -> u64 {
        let mut features = 1 << VIRTIO_CONSOLE_F_EMERG_WRITE;
        if self.config.size.is_some() {
            features |= 1 << VIRTIO_CONSOLE_F_SIZE;
        }
        features
    }

    fn num_queues(&self) -> u16 {
        2
    }

    fn queue_max_size(&self, _queue: u16) -> u16 {
        self.config.queue_size
    }

    fn config_len(&self) -> usize {
        CONSOLE_CONFIG_LEN
    }

    fn read_config(&self, offset: u64, data: &mut [u8]) {
        read_config_bytes(&self.config_bytes(), offset, data);
    }

    /// A write to `emerg_wr` emits its low byte as output, even before DRIVER_OK (5.3.3).
    fn write_config(&mut self, offset: u64, data: &[u8]) -> bool {
        match data.first() {
            Some(&byte) if offset == EMERG_WR_OFFSET => {
                self.counters.emergency_writes += 1;
                self.counters.output_dropped += self.output.accept(&[byte]);
            }
            _ => {}
        }
        false
    }

    fn activate(&mut self, features: u64) {
        self.acked_features = features;
    }

    /// Host-side buffers survive a reset: output was already produced and input was already
    /// typed; only negotiated state goes.
    fn reset(&mut self) {
        self.acked_features = 0;
        self.counters.resets += 1;
    }

    fn process_queue(
        &mut self,
        queue_index: u16,
        queue: &mut Virtqueue<'_>,
    ) -> Result<Processed, BackendError> {
        let budget = queue.size();
        let mem = &queue.memory();
        let mut used = 0u16;
        match queue_index {
            RECEIVEQ => {
                // Receive buffers are only taken when there is something to put in them.
                while used < budget && !self.input.is_empty() {
                    let Some(chain) = chain::pop_chain(queue_index, queue)? else {
                        break;
                    };
                    let head = chain.head_index();
                    let len = self.receive(chain, mem, budget);
                    chain::publish(queue_index, queue, head, len)?;
                    used += 1;
                    self.counters.rx_chains += 1;
                }
            }
            TRANSMITQ => {
                while used < budget {
                    let Some(chain) = chain::pop_chain(queue_index, queue)? else {
                        break;
                    };
                    let head = chain.head_index();
                    self.transmit(chain, mem, budget);
                    chain::publish(queue_index, queue, head, 0)?;
                    used += 1;
                    self.counters.tx_chains += 1;
                }
            }
            _ => {}
        }
        Ok(Processed { used })
    }

    fn snapshot(&self) -> serde_json::Value {
        let snapshot = ConsoleSnapshot {
            device: self.name().to_string(),
            config: self.config.clone(),
            input: self.input.iter().copied().collect(),
            output: self.output.bytes.iter().copied().collect(),
            partial_line: self.output.line.clone(),
            acked_features: self.acked_features,
            counters: self.counters.clone(),
        };
        serde_json::to_value(snapshot).unwrap_or(serde_json::Value::Null)
    }

    fn restore(&mut self, state: &serde_json::Value) -> Result<(), BackendError> {
        let snapshot: ConsoleSnapshot = serde_json::from_value(state.clone())
            .map_err(|e| BackendError::BadSnapshot(e.to_string()))?;
        if snapshot.device != self.name() {
            return Err(BackendError::BadSnapshot(format!(
                "snapshot of {} restored into {}",
                snapshot.device,
                self.name()
            )));
        }
        if snapshot.config.queue_size != self.config.queue_size
            || snapshot.config.size.is_some() != self.config.size.is_some()
        {
            return Err(BackendError::BadSnapshot(
                "console queue size or SIZE feature differs".to_string(),
            ));
        }
        if snapshot.input.len() > snapshot.config.input_limit
            || snapshot.output.len() > snapshot.config.output_limit
            || snapshot.partial_line.len() > MAX_LINE
        {
            return Err(BackendError::BadSnapshot(
                "console buffers exceed their limits".to_string(),
            ));
        }
        self.output.limit = snapshot.config.output_limit;
        self.config = snapshot.config;
        self.input = snapshot.input.into();
        self.output.bytes = snapshot.output.into();
        self.output.line = snapshot.partial_line;
        self.acked_features = snapshot.acked_features;
        self.counters = snapshot.counters;
        Ok(())
    }

    fn has_pending_input(&self, queue: u16) -> bool {
        queue == RECEIVEQ && !self.input.is_empty()
    }
}
