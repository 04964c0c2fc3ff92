//! Targets `queues_blk`, `queues_rng`, `queues_console`: a driver brings the device up with
//! valid or invalid queue set-ups (sizes, ring addresses, features, MSI-X or INTx), then the
//! input writes arbitrary descriptors, available entries, indices and raw guest RAM and
//! notifies, resets and masks in any order.
//!
//! The driver is the device's test toolkit (`virq_device::testing`): its `Rig` brings the
//! device up, its `Ring` writes descriptors and available entries (the `try_` forms, since
//! the input picks the addresses).
//!
//! Checked after every step, on top of the transport's interrupt invariants
//! ([`crate::transport::check_interrupts`]):
//! - one step publishes at most "queue size" used elements per queue;
//! - every used element the device publishes names a head inside the queue;
//! - while DEVICE_NEEDS_RESET is set no used element is published.

use std::sync::Arc;

use virq_backends::{
    Block, BlockConfig, Console, ConsoleConfig, FileStorage, MemoryStorage, Rng, SeededEntropy,
};
use virq_device::ring::Descriptor;
use virq_device::testing::{RecordingSink, Rig, Ring, RingAddrs};
use virq_device::{
    GuestMemory, TransportOptions, VecMemory, VirtioBackend, common, features, status,
};

use crate::cursor::{Cursor, Enc};
use crate::transport::check_interrupts;

/// Guest RAM: rings for two queues below 0x6000, data buffers above 0x8000.
pub const RAM_SIZE: usize = 64 * 1024;
/// Where buffers of the seed requests live.
pub const DATA_BASE: u64 = 0x8000;
const MAX_OPS: usize = 2048;

/// Canonical ring addresses of queue `q`: (descriptors, available, used).
pub fn ring_addrs(q: u16) -> (u64, u64, u64) {
    let base = q as u64 * 0x3000;
    (base, base + 0x1000, base + 0x2000)
}

/// The header that says how the driver sets the device up.
#[derive(Clone, Debug, Default)]
pub struct Setup {
    pub msix: bool,
    pub event_idx: bool,
    pub indirect: bool,
    /// Take queue sizes and ring addresses from `queues` verbatim.
    pub raw: bool,
    /// Leave queue 0 disabled.
    pub skip_enable_q0: bool,
    /// Never set DRIVER_OK.
    pub no_driver_ok: bool,
    /// virtio-blk: also run every step on a twin whose disk is a file (`FileStorage`), which
    /// must do exactly what the in-memory disk does.
    pub file_twin: bool,
    /// virtio-blk: the disk is read-only (both twins).
    pub read_only: bool,
    /// Per queue: (size, desc, avail, used); used only when `raw`.
    pub queues: Vec<(u16, u64, u64, u64)>,
    /// Queue size when not `raw` (log2, clamped to 8).
    pub size_log2: u8,
    /// Console input typed before the device starts.
    pub console_input: Vec<u8>,
}

impl Setup {
    pub const NUM_RAW_QUEUES: usize = 2;

    pub fn decode(c: &mut Cursor<'_>) -> Setup {
        let flags = c.u8();
        let mut s = Setup {
            msix: flags & 1 != 0,
            event_idx: flags & 2 != 0,
            indirect: flags & 4 != 0,
            raw: flags & 8 != 0,
            skip_enable_q0: flags & 16 != 0,
            no_driver_ok: flags & 32 != 0,
            file_twin: flags & 64 != 0,
            read_only: flags & 128 != 0,
            size_log2: c.u8(),
            ..Setup::default()
        };
        if s.raw {
            for _ in 0..Self::NUM_RAW_QUEUES {
                s.queues.push((c.u16(), c.u64(), c.u64(), c.u64()));
            }
        }
        let n = c.u8() as usize;
        s.console_input = c.bytes(n).to_vec();
        s
    }

    pub fn encode(&self, e: &mut Enc) {
        let flags = self.msix as u8
            | (self.event_idx as u8) << 1
            | (self.indirect as u8) << 2
            | (self.raw as u8) << 3
            | (self.skip_enable_q0 as u8) << 4
            | (self.no_driver_ok as u8) << 5
            | (self.file_twin as u8) << 6
            | (self.read_only as u8) << 7;
        e.u8(flags).u8(self.size_log2);
        if self.raw {
            assert_eq!(self.queues.len(), Self::NUM_RAW_QUEUES);
            for &(size, d, a, u) in &self.queues {
                e.u16(size).u64(d).u64(a).u64(u);
            }
        }
        assert!(self.console_input.len() < 256);
        e.u8(self.console_input.len() as u8)
            .bytes(&self.console_input);
    }

    fn queue(&self, q: u16) -> (u16, u64, u64, u64) {
        if self.raw
            && let Some(v) = self.queues.get(q as usize)
        {
            return *v;
        }
        let (d, a, u) = ring_addrs(q);
        (1 << self.size_log2.min(8), d, a, u)
    }
}

/// A driver step after set-up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    Ram {
        addr: u16,
        data: Vec<u8>,
    },
    Kick {
        queue: u8,
    },
    Desc {
        queue: u8,
        index: u16,
        addr: u64,
        len: u32,
        flags: u16,
        next: u16,
    },
    /// Put `head` in the next available slot and publish it (avail.idx + 1).
    Avail {
        queue: u8,
        head: u16,
    },
    /// Write avail.idx directly.
    AvailIdx {
        queue: u8,
        idx: u16,
    },
    /// Write 0 to device_status and set the device up again.
    Reset,
    /// Host-side polling (console input).
    Poll,
    /// 0 read ISR, 1 function mask, 2 function unmask, 3 mask entry, 4 unmask entry,
    /// 5 queue_reset, 6 config change, 7 avail.flags / used_event, 8 write byte `arg >> 8` at
    /// device-configuration offset `arg & 0x3F` (virtio-console's `emerg_wr` at 8), 9 read
    /// the device configuration at offset `arg & 0x3F`, width 1 << (arg >> 8 & 3).
    Misc {
        what: u8,
        arg: u16,
    },
}

impl Step {
    pub fn decode(c: &mut Cursor<'_>) -> Step {
        match c.u8() % 8 {
            0 => {
                let addr = c.u16();
                let n = c.u8() as usize;
                Step::Ram {
                    addr,
                    data: c.bytes(n).to_vec(),
                }
            }
            1 => Step::Kick { queue: c.u8() },
            2 => Step::Desc {
                queue: c.u8(),
                index: c.u16(),
                addr: c.u64(),
                len: c.u32(),
                flags: c.u16(),
                next: c.u16(),
            },
            3 => Step::Avail {
                queue: c.u8(),
                head: c.u16(),
            },
            4 => Step::AvailIdx {
                queue: c.u8(),
                idx: c.u16(),
            },
            5 => Step::Reset,
            6 => Step::Poll,
            _ => Step::Misc {
                what: c.u8(),
                arg: c.u16(),
            },
        }
    }

    pub fn encode(&self, e: &mut Enc) {
        match self {
            Step::Ram { addr, data } => {
                assert!(data.len() < 256);
                e.u8(0).u16(*addr).u8(data.len() as u8).bytes(data)
            }
            Step::Kick { queue } => e.u8(1).u8(*queue),
            Step::Desc {
                queue,
                index,
                addr,
                len,
                flags,
                next,
            } => e
                .u8(2)
                .u8(*queue)
                .u16(*index)
                .u64(*addr)
                .u32(*len)
                .u16(*flags)
                .u16(*next),
            Step::Avail { queue, head } => e.u8(3).u8(*queue).u16(*head),
            Step::AvailIdx { queue, idx } => e.u8(4).u8(*queue).u16(*idx),
            Step::Reset => e.u8(5),
            Step::Poll => e.u8(6),
            Step::Misc { what, arg } => e.u8(7).u8(*what).u16(*arg),
        };
    }
}

/// Which backend a target runs.
#[derive(Clone, Copy, Debug)]
pub enum Kind {
    Blk,
    Rng,
    Console,
}

/// The disk size of the virtio-blk targets.
const DISK_BYTES: u64 = 64 * 512;

/// The file behind the file-backed twin: one per process (in /dev/shm where there is one, so
/// that a flush costs no disk write), emptied and sized again for every input.
fn disk_file() -> std::fs::File {
    use std::sync::OnceLock;
    static FILE: OnceLock<std::fs::File> = OnceLock::new();
    let file = FILE.get_or_init(|| {
        let dir = std::path::Path::new("/dev/shm");
        let dir = if dir.is_dir() {
            dir.to_path_buf()
        } else {
            std::env::temp_dir()
        };
        let path = dir.join(format!("virq-fuzz-disk-{}", std::process::id()));
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .expect("a scratch file for the file-backed disk");
        // Unlinked at once: the open file lives as long as the process.
        let _ = std::fs::remove_file(&path);
        file
    });
    file.set_len(0).expect("truncate the scratch disk");
    file.set_len(DISK_BYTES).expect("size the scratch disk");
    file.try_clone().expect("a handle on the scratch disk")
}

fn backend(kind: Kind, setup: &Setup, file: bool) -> Box<dyn VirtioBackend> {
    let config = BlockConfig {
        num_queues: 2,
        ..BlockConfig::default()
    };
    match kind {
        Kind::Blk if file => Box::new(
            Block::new(
                FileStorage::from_file(disk_file(), setup.read_only).expect("a file disk"),
                config,
            )
            .unwrap(),
        ),
        Kind::Blk => Box::new(
            Block::new(
                MemoryStorage::new(DISK_BYTES as usize).read_only(setup.read_only),
                config,
            )
            .unwrap(),
        ),
        Kind::Rng => Box::new(Rng::new(SeededEntropy::new(7))),
        Kind::Console => {
            let mut c = Console::new(ConsoleConfig::default());
            c.push_input(&setup.console_input);
            // Lines handed to the embedder never hold a newline nor pass MAX_LINE bytes.
            c.set_line_callback(Box::new(|line: &[u8]| {
                assert!(
                    line.len() <= virq_backends::console::MAX_LINE,
                    "{} bytes",
                    line.len()
                );
                assert!(!line.contains(&b'\n'), "a newline inside a line");
            }));
            Box::new(c)
        }
    }
}

pub struct Driver {
    pub rig: Rig,
    setup: Setup,
    msix_cap: Option<u16>,
    msgs_seen: usize,
    /// The device's state after the last step (what the next step starts from).
    last: Option<virq_device::DeviceSnapshot>,
}

impl Driver {
    pub fn new(kind: Kind, setup: Setup) -> Driver {
        Self::with_disk(kind, setup, false)
    }

    /// A driver whose virtio-blk disk is a file (`file`) or memory.
    pub fn with_disk(kind: Kind, setup: Setup, file: bool) -> Driver {
        let rig = Rig::build(
            backend(kind, &setup, file),
            TransportOptions::default(),
            VecMemory::new(RAM_SIZE),
            Arc::new(RecordingSink::new()),
            true,
        );
        let mut d = Driver {
            rig,
            setup,
            msix_cap: None,
            msgs_seen: 0,
            last: None,
        };
        d.msix_cap = d.rig.msix_cap();
        d.bring_up();
        d
    }

    fn common_write(&mut self, off: u64, bytes: &[u8]) {
        self.rig.dev.bar_write(0, off, bytes);
    }

    /// virtio 1.2, 3.1.1, with whatever queue set-up the input chose.
    fn bring_up(&mut self) {
        let r = &mut self.rig;
        r.map_bars();
        let mut f = features::VERSION_1;
        if self.setup.event_idx {
            f |= features::RING_EVENT_IDX;
        }
        if self.setup.indirect {
            f |= features::RING_INDIRECT_DESC;
        }
        // Whether FEATURES_OK stuck is the device's business: the driver carries on.
        r.negotiate(f);
        let msix = self.setup.msix && self.msix_cap.is_some();
        if msix {
            r.enable_msix();
        }
        for q in 0..r.dev.num_queues() {
            let (size, desc, avail, used) = self.setup.queue(q);
            r.program_queue(q, size, RingAddrs { desc, avail, used });
            if msix {
                r.set_queue_vector(q, q + 1);
            }
            if !(q == 0 && self.setup.skip_enable_q0) {
                r.enable_queue(q);
            }
        }
        if !self.setup.no_driver_ok {
            r.set_device_status(
                status::ACKNOWLEDGE | status::DRIVER | status::FEATURES_OK | status::DRIVER_OK,
            );
        }
    }

    fn queue_of(&self, q: u8) -> u16 {
        q as u16 % self.rig.dev.num_queues()
    }

    /// The driver's side of queue `q` where the device (in state `now`) holds it.
    fn live_ring<'m>(
        mem: &'m VecMemory,
        now: &virq_device::DeviceSnapshot,
        q: u16,
    ) -> Ring<&'m VecMemory> {
        let qs = &now.queues[q as usize];
        let addrs = RingAddrs {
            desc: qs.desc_table,
            avail: qs.avail_ring,
            used: qs.used_ring,
        };
        Ring::at(mem, q, qs.size, addrs)
    }

    pub fn step(&mut self, step: &Step) {
        // The state after the last step is the state before this one.
        let before = self
            .last
            .take()
            .expect("taken after set-up and after every step");
        let was_broken = before.device_status & status::DEVICE_NEEDS_RESET != 0;
        let mut buf = [0u8; 1];
        // Guest memory refusing a write of the driver is the input's business, not a bug.
        match step {
            Step::Ram { addr, data } => {
                let _ = self.rig.mem.write(*addr as u64, data);
            }
            Step::Kick { queue } => {
                // notify_off_multiplier 4: queue q at notify + 4q; 16-bit write of q.
                let q = *queue as u16;
                self.rig
                    .dev
                    .bar_write(0, 0x1000 + 4 * q as u64, &q.to_le_bytes());
            }
            Step::Desc {
                queue,
                index,
                addr,
                len,
                flags,
                next,
            } => {
                let d = Descriptor {
                    addr: *addr,
                    len: *len,
                    flags: *flags,
                    next: *next,
                };
                let _ = Self::live_ring(&self.rig.mem, &before, self.queue_of(*queue))
                    .try_set_desc(*index, d);
            }
            Step::Avail { queue, head } => {
                let mut ring = Self::live_ring(&self.rig.mem, &before, self.queue_of(*queue));
                ring.resync_avail();
                let _ = ring.try_make_available(*head);
            }
            Step::AvailIdx { queue, idx } => {
                let _ = Self::live_ring(&self.rig.mem, &before, self.queue_of(*queue))
                    .try_set_avail_idx(*idx);
            }
            Step::Reset => {
                self.bring_up();
            }
            Step::Poll => self.rig.dev.poll_backend(),
            Step::Misc { what, arg } => match what % 10 {
                0 => self.rig.dev.bar_read(0, 0x2000, &mut buf),
                1 | 2 => {
                    if let Some(cap) = self.msix_cap {
                        let ctl: u16 = if what % 10 == 1 { 0xC000 } else { 0x8000 };
                        self.rig.dev.config_write(cap + 2, &ctl.to_le_bytes());
                    }
                }
                3 | 4 => {
                    let n = self.rig.dev.msix().map_or(1, |m| m.table_size());
                    let e = (*arg % n) as u64 * 16;
                    let masked = (what % 10 == 3) as u32;
                    self.rig.dev.bar_write(2, e + 12, &masked.to_le_bytes());
                }
                5 => {
                    let q = self.queue_of(*arg as u8);
                    self.common_write(common::QUEUE_SELECT, &q.to_le_bytes());
                    self.common_write(common::QUEUE_RESET, &1u16.to_le_bytes());
                }
                6 => self.rig.dev.config_changed(),
                8 | 9 => {
                    let device = self.rig.options().layout.device;
                    let off = device.offset + u64::from(arg & 0x3F);
                    if what % 10 == 8 {
                        self.rig.dev.bar_write(device.bar, off, &[(arg >> 8) as u8]);
                    } else {
                        let width = 1usize << (arg >> 8 & 3);
                        let before = self.rig.dev.config_generation();
                        let mut value = [0u8; 8];
                        self.rig.dev.bar_read(device.bar, off, &mut value[..width]);
                        assert_eq!(self.rig.dev.config_generation(), before);
                    }
                }
                _ => {
                    let ring = Self::live_ring(&self.rig.mem, &before, self.queue_of(*arg as u8));
                    let _ = ring.try_set_avail_flags(arg >> 8 & 1);
                    let _ = ring.try_set_used_event(arg >> 9);
                }
            },
        }
        let after = self.rig.dev.snapshot();
        let resets = match step {
            Step::Reset => true,
            Step::Misc { what, .. } => what % 10 == 5,
            _ => false,
        };
        if !resets && before.device_status & status::DRIVER_OK != 0 {
            for (q, (b, a)) in before.queues.iter().zip(&after.queues).enumerate() {
                if b.next_used == a.next_used && b.size == a.size {
                    continue;
                }
                let published = a.next_used.wrapping_sub(b.next_used);
                assert!(
                    !was_broken,
                    "queue {q}: {published} used elements while DEVICE_NEEDS_RESET"
                );
                assert!(
                    published <= a.size,
                    "queue {q}: {published} used elements in one step, size {}",
                    a.size
                );
                // The last element published: backends write guest buffers (which a hostile
                // guest may point at the used ring) only before publishing it.
                if published > 0 && !matches!(step, Step::Ram { .. }) {
                    let pos = a.next_used.wrapping_sub(1) % a.size.max(1);
                    let at = a.used_ring.wrapping_add(4 + 8 * pos as u64);
                    if let Ok(id) = self.rig.mem.read_u32(at) {
                        assert!(id < a.size as u32, "queue {q}: used id {id} >= {}", a.size);
                    }
                }
            }
        }
        check_interrupts(&self.rig.dev, &self.rig.sink, &mut self.msgs_seen);
        self.last = Some(after);
    }
}

pub fn run(kind: Kind, data: &[u8]) {
    let mut c = Cursor::new(data);
    let setup = Setup::decode(&mut c);
    let twin = matches!(kind, Kind::Blk) && setup.file_twin;
    let mut file = twin.then(|| Driver::with_disk(kind, setup.clone(), true));
    let mut d = Driver::new(kind, setup);
    for d in std::iter::once(&mut d).chain(file.as_mut()) {
        check_interrupts(&d.rig.dev, &d.rig.sink, &mut d.msgs_seen);
        d.last = Some(d.rig.dev.snapshot());
    }
    for _ in 0..MAX_OPS {
        if c.is_empty() {
            break;
        }
        let step = Step::decode(&mut c);
        d.step(&step);
        if let Some(f) = file.as_mut() {
            f.step(&step);
            // A file disk and a memory disk are the same disk to the device and the guest.
            assert_eq!(
                f.rig.mem.to_vec(),
                d.rig.mem.to_vec(),
                "guest RAM after {step:?}"
            );
            assert_eq!(f.rig.sink.messages(), d.rig.sink.messages(), "messages");
            assert_eq!(f.rig.sink.line(), d.rig.sink.line(), "INTx");
            assert_eq!(f.rig.dev.snapshot(), d.rig.dev.snapshot(), "device state");
        }
    }
}

pub fn run_blk(data: &[u8]) {
    run(Kind::Blk, data)
}

pub fn run_rng(data: &[u8]) {
    run(Kind::Rng, data)
}

pub fn run_console(data: &[u8]) {
    run(Kind::Console, data)
}
