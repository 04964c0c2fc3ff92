//! Target `config_bar`: arbitrary configuration-space, BAR, MMIO and guest-RAM accesses of
//! every width (legal and not) against a `VirtioPciDevice` with a `NullBackend` in one of the
//! toolkit's named BAR layouts, plus host events (configuration change, reset,
//! snapshot/restore). The device is built with the device's test toolkit
//! (`virq_device::testing::Rig`), event log attached.
//!
//! Checked after every access:
//! - INTA# is exactly "an ISR bit is set, MSI-X is off and Command bit 10 is clear", the sink
//!   saw the same level, and Status bit 3 is "an ISR bit is set and MSI-X is off";
//! - every message sent went to an unmasked entry of an enabled, unmasked, bus-mastering
//!   function, and no Pending Bit is left set whose message could be sent now (a lost
//!   interrupt);
//! - every vector selector reads NO_VECTOR or an index inside the table;
//! - one access completes at most (number of queues x 256) chains;
//! - a snapshot survives a JSON round trip and restores into a fresh device unchanged.

use virq_device::testing::{NullBackend, RecordingSink, Rig, layouts};
use virq_device::{
    DeviceError, DeviceSnapshot, GuestMemory, NO_VECTOR, TransportOptions, VecMemory,
    VirtioPciDevice,
};

use crate::cursor::{Cursor, Enc, width, width_code};

/// Guest RAM of the harness: small, so random ring addresses often land in it.
pub const RAM_SIZE: usize = 64 * 1024;
/// Where seeds place the BARs (any address works; the fuzzer programs its own).
pub use virq_device::testing::{BAR0_ADDR, BAR2_ADDR};
/// Most operations one input may run, to keep each execution short.
const MAX_OPS: usize = 4096;

/// One thing a guest or the host does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    CfgRead {
        off: u16,
        width: usize,
    },
    CfgWrite {
        off: u16,
        width: usize,
        value: u32,
    },
    BarRead {
        bar: u8,
        off: u16,
        width: usize,
    },
    BarWrite {
        bar: u8,
        off: u16,
        width: usize,
        value: u64,
    },
    MmioRead {
        addr: u64,
        width: usize,
    },
    MmioWrite {
        addr: u64,
        width: usize,
        value: u64,
    },
    Ram {
        addr: u32,
        data: Vec<u8>,
    },
    /// 0 config change, 1 process queue (h >> 3), 2 poll backend, 3 reset,
    /// 4 snapshot -> JSON -> restore into a fresh device, 5 read ISR.
    Host(u8),
    /// A snapshot of the device, edited (a snapshot from elsewhere is hostile input), restored
    /// into a fresh device: refused with a typed error and nothing changed, or accepted and
    /// carried on with. Encoded as a host byte `h % 6 == 4` with `h >= 0x80`.
    Restore(Vec<Edit>),
}

/// One edit of a snapshot before a hostile restore: `field` picks what (see
/// [`Edit::apply`]), `value` what it becomes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Edit {
    pub field: u8,
    pub value: u64,
}

/// The array `key` of a snapshot's MSI-X state, when there is one.
fn msix_part<'a>(
    snap: &'a mut serde_json::Value,
    key: &str,
) -> Option<&'a mut Vec<serde_json::Value>> {
    snap.get_mut("msix")?.get_mut(key)?.as_array_mut()
}

/// The host byte an [`Op::Restore`] is encoded with.
const RESTORE_HOST: u8 = 0x82;
/// Most edits one hostile restore makes.
const MAX_EDITS: u8 = 8;

impl Edit {
    /// Edit `snap` (a [`DeviceSnapshot`] as its JSON value, so the edit can also break what
    /// the type would not let a Rust caller build). Edits reach every field: queue count,
    /// configuration bytes, the MSI-X table and PBA, every register, every queue's fields, the
    /// backend's state, and the JSON text itself.
    pub fn apply(&self, snap: &mut serde_json::Value) {
        use serde_json::{Value, json};
        let v = self.value;
        let small = |n: usize| if n == 0 { 0 } else { (v >> 48) as usize % n };
        // An earlier edit of the JSON text may have left anything: only an object is edited
        // field by field (and indexing anything else would panic in serde_json).
        if !snap.is_object() {
            return;
        }
        match self.field % 20 {
            0 => {
                let Some(q) = snap["queues"].as_array_mut() else {
                    return;
                };
                if v & 1 == 0 {
                    q.pop();
                } else if let Some(last) = q.last().cloned() {
                    q.push(last);
                }
            }
            1 => {
                if let Some(c) = snap["config_space"].as_array_mut() {
                    c.resize(v as usize % 300, json!(0));
                }
            }
            2 => {
                if let Some(c) = snap["config_space"].as_array_mut()
                    && !c.is_empty()
                {
                    let n = c.len();
                    c[small(n)] = json!(v as u8);
                }
            }
            3 => match v % 3 {
                0 => snap["msix"] = Value::Null,
                _ => {
                    if let Some(t) = msix_part(snap, "table") {
                        let n = (v >> 8) as usize % 70;
                        t.resize(n, json!({"address": 0, "data": 0, "vector_control": 1}));
                    }
                }
            },
            4 => {
                if let Some(p) = msix_part(snap, "pba") {
                    let i = small(p.len() + 1);
                    if i == p.len() {
                        p.push(json!(v & 0xFFFF));
                    } else {
                        p[i] = json!(v & 0xFFFF_FFFF_FFFF);
                    }
                }
            }
            5 => {
                if let Some(t) = msix_part(snap, "table")
                    && !t.is_empty()
                {
                    let i = small(t.len());
                    let key =
                        ["address", "data", "vector_control"][usize::from((v >> 40) as u8 % 3)];
                    if t[i].is_object() {
                        t[i][key] = json!(v & 0xFFFF_FFFF);
                    }
                }
            }
            6 => {
                if snap["msix"].is_object() {
                    snap["msix"]["enabled"] = json!(v & 1 != 0);
                    snap["msix"]["function_masked"] = json!(v & 2 != 0);
                    snap["msix"]["bus_master"] = json!(v & 4 != 0);
                }
            }
            7 => snap["device_feature_select"] = json!(v as u32),
            8 => snap["driver_feature_select"] = json!(v as u32),
            9 => snap["driver_features"] = json!(v),
            10 => snap["msix_config"] = json!(v as u16),
            11 => snap["config_msix_pending"] = json!(v & 1 != 0),
            12 => snap["device_status"] = json!(v as u8),
            13 => snap["config_generation"] = json!(v as u8),
            14 => snap["queue_select"] = json!(v as u16),
            15 => snap["isr_status"] = json!(v as u8),
            16 => snap["line"] = json!(v & 1 != 0),
            17 => {
                let Some(q) = snap["queues"].as_array_mut() else {
                    return;
                };
                if q.is_empty() {
                    return;
                }
                let i = small(q.len());
                let q = &mut q[i];
                if !q.is_object() {
                    return;
                }
                let (b, w16, w64) = (v & 1 != 0, json!(v as u16), json!(v & 0xFFFF_FFFF));
                match (v >> 40) as u8 % 14 {
                    0 => q["max_size"] = w16,
                    1 => q["size"] = w16,
                    2 => q["ready"] = json!(b),
                    3 => q["next_avail"] = w16,
                    4 => q["next_used"] = w16,
                    5 => q["event_idx_enabled"] = json!(b),
                    6 => q["desc_table"] = w64,
                    7 => q["avail_ring"] = w64,
                    8 => q["used_ring"] = w64,
                    9 => q["msix_vector"] = w16,
                    10 => q["reset_pending"] = json!(b),
                    11 => q["msix_pending"] = json!(b),
                    12 => q["notify_deferred"] = json!(b),
                    _ => q["signalled_used"] = if b { Value::Null } else { w16 },
                }
            }
            18 => {
                snap["backend"] = match v % 4 {
                    0 => Value::Null,
                    1 => json!(v >> 2),
                    2 => json!({"completed": v >> 2}),
                    _ => json!({"completed": "many"}),
                }
            }
            _ => {
                // A byte of the JSON text: what parses is restored, what does not is refused by
                // serde before the device sees it.
                let mut text = serde_json::to_vec(snap).expect("a value serialises");
                let n = text.len();
                text[small(n)] = (v >> 8) as u8;
                *snap = serde_json::from_slice(&text).unwrap_or(Value::Null);
            }
        }
    }
}

impl Op {
    pub fn decode(c: &mut Cursor<'_>) -> Op {
        match c.u8() % 8 {
            0 => Op::CfgRead {
                off: c.u16(),
                width: width(c.u8()),
            },
            1 => Op::CfgWrite {
                off: c.u16(),
                width: width(c.u8()),
                value: c.u32(),
            },
            2 => Op::BarRead {
                bar: c.u8(),
                off: c.u16(),
                width: width(c.u8()),
            },
            3 => Op::BarWrite {
                bar: c.u8(),
                off: c.u16(),
                width: width(c.u8()),
                value: c.u64(),
            },
            4 => Op::MmioRead {
                addr: c.u64(),
                width: width(c.u8()),
            },
            5 => Op::MmioWrite {
                addr: c.u64(),
                width: width(c.u8()),
                value: c.u64(),
            },
            6 => {
                let addr = c.u32();
                let n = c.u8() as usize;
                Op::Ram {
                    addr,
                    data: c.bytes(n).to_vec(),
                }
            }
            _ => match c.u8() {
                h if h % 6 == 4 && h >= 0x80 => {
                    let n = c.u8() % (MAX_EDITS + 1);
                    Op::Restore(
                        (0..n)
                            .map(|_| Edit {
                                field: c.u8(),
                                value: c.u64(),
                            })
                            .collect(),
                    )
                }
                h => Op::Host(h),
            },
        }
    }

    pub fn encode(&self, e: &mut Enc) {
        match self {
            Op::CfgRead { off, width } => e.u8(0).u16(*off).u8(width_code(*width)),
            Op::CfgWrite { off, width, value } => {
                e.u8(1).u16(*off).u8(width_code(*width)).u32(*value)
            }
            Op::BarRead { bar, off, width } => e.u8(2).u8(*bar).u16(*off).u8(width_code(*width)),
            Op::BarWrite {
                bar,
                off,
                width,
                value,
            } => e
                .u8(3)
                .u8(*bar)
                .u16(*off)
                .u8(width_code(*width))
                .u64(*value),
            Op::MmioRead { addr, width } => e.u8(4).u64(*addr).u8(width_code(*width)),
            Op::MmioWrite { addr, width, value } => {
                e.u8(5).u64(*addr).u8(width_code(*width)).u64(*value)
            }
            Op::Ram { addr, data } => {
                assert!(data.len() < 256);
                e.u8(6).u32(*addr).u8(data.len() as u8).bytes(data)
            }
            Op::Host(h) => {
                assert!(h % 6 != 4 || *h < 0x80, "host byte {h} encodes a restore");
                e.u8(7).u8(*h)
            }
            Op::Restore(edits) => {
                assert!(edits.len() <= MAX_EDITS as usize);
                e.u8(7).u8(RESTORE_HOST).u8(edits.len() as u8);
                for edit in edits {
                    e.u8(edit.field).u64(edit.value);
                }
                e
            }
        };
    }
}

/// The device shape an input starts with: bits 0-1 queues - 1, bits 2-3 the MSI-X table
/// size option, bits 4-6 the BAR layout (an index into `testing::layouts()`, modulo their
/// number; 0, the default layout, for every seed written before layouts were fuzzed); bit 7
/// set, a layout and queue count read from the input instead (`decode_layout`).
pub fn decode_shape(b: u8) -> TransportOptions {
    let table = match (b >> 2) & 3 {
        0 => None,
        1 => Some(0),
        2 => Some(1),
        _ => Some(3),
    };
    let all = layouts();
    TransportOptions {
        msix_table_size: table,
        layout: all[usize::from(b >> 4 & 7) % all.len()].1,
        ..TransportOptions::default()
    }
}

/// Queues of the device an input starts with (bits 0-1 of the shape byte, plus 1).
pub fn decode_queues(b: u8) -> u16 {
    u16::from(b & 3) + 1
}

pub struct Harness {
    pub rig: Rig,
    queues: u16,
    msgs_seen: usize,
}

impl Harness {
    pub fn new(queues: u16, options: TransportOptions) -> Harness {
        let rig = Rig::on_memory(
            Box::new(NullBackend::new(queues)),
            options,
            VecMemory::new(RAM_SIZE),
        );
        Harness {
            rig,
            queues,
            msgs_seen: 0,
        }
    }

    fn completed(&self) -> u64 {
        self.rig.dev.backend().snapshot()["completed"]
            .as_u64()
            .expect("NullBackend snapshot has completed")
    }

    pub fn apply(&mut self, op: &Op) {
        let before = self.completed();
        let mut buf = [0u8; 16];
        let options = self.rig.options();
        let dev = &mut self.rig.dev;
        match op {
            Op::CfgRead { off, width } => {
                dev.config_read(*off, &mut buf[..*width]);
                let o = *off as usize;
                if !matches!(width, 1 | 2 | 4) || o + width > 4096 {
                    assert!(buf[..*width].iter().all(|&b| b == 0xFF), "master abort");
                } else if o >= 256 {
                    assert!(buf[..*width].iter().all(|&b| b == 0), "extended space");
                }
            }
            Op::CfgWrite { off, width, value } => {
                let mut w = [0u8; 9];
                w[..4].copy_from_slice(&value.to_le_bytes());
                dev.config_write(*off, &w[..*width]);
            }
            Op::BarRead { bar, off, width } => {
                dev.bar_read(*bar, *off as u64, &mut buf[..*width]);
                if *width > 8 {
                    assert!(buf[..*width].iter().all(|&b| b == 0));
                }
            }
            Op::BarWrite {
                bar,
                off,
                width,
                value,
            } => {
                let v = value.to_le_bytes();
                let mut w = [0u8; 9];
                w[..8].copy_from_slice(&v);
                dev.bar_write(*bar, *off as u64, &w[..*width]);
            }
            Op::MmioRead { addr, width } => {
                dev.mmio_read(*addr, &mut buf[..*width]);
            }
            Op::MmioWrite { addr, width, value } => {
                let mut w = [0u8; 9];
                w[..8].copy_from_slice(&value.to_le_bytes());
                dev.mmio_write(*addr, &w[..*width]);
            }
            Op::Ram { addr, data } => {
                let _ = self.rig.mem.write(*addr as u64, data);
            }
            Op::Host(h) => match h % 6 {
                0 => dev.config_changed(),
                1 => dev.process_queue((h >> 3) as u16),
                2 => dev.poll_backend(),
                3 => dev.reset(),
                4 => self.snapshot_round_trip(),
                _ => {
                    let isr = options.layout.isr;
                    dev.bar_read(isr.bar, isr.offset, &mut buf[..1]);
                }
            },
            Op::Restore(edits) => {
                // The backend's count comes from the snapshot: no chain count to bound.
                self.hostile_restore(edits);
                self.check();
                return;
            }
        }
        let done = self.completed().saturating_sub(before);
        assert!(
            done <= self.queues as u64 * 256,
            "{done} chains completed by one access ({op:?})"
        );
        self.check();
    }

    /// Snapshot, JSON round trip, restore into a fresh device with a fresh sink, carry on
    /// with the restored device.
    fn snapshot_round_trip(&mut self) {
        let snap = self.rig.dev.snapshot();
        let json = serde_json::to_string(&snap).expect("snapshot serialises");
        let back: DeviceSnapshot = serde_json::from_str(&json).expect("snapshot deserialises");
        assert_eq!(back, snap, "JSON round trip changed the snapshot");
        let mut fresh = self.fresh_rig();
        fresh
            .dev
            .restore(&back)
            .expect("a device's own snapshot restores");
        assert_eq!(
            fresh.dev.snapshot(),
            snap,
            "restore is not the inverse of snapshot"
        );
        assert_eq!(fresh.sink.line(), snap.line, "restored INTx level");
        assert!(fresh.sink.messages().is_empty(), "restore sent a message");
        self.rig = fresh;
        self.msgs_seen = 0;
    }

    /// Restore an edited snapshot into a fresh device. Refused: the error is typed
    /// (`DeviceError::Snapshot` or the backend's refusal) and the fresh device is exactly as
    /// it was built. Accepted: the device carries on from it (the interrupt invariants are
    /// checked after this step like after any other), its snapshot restores into another
    /// fresh device unchanged, and the transport registers are the snapshot's.
    fn hostile_restore(&mut self, edits: &[Edit]) {
        let mut value = serde_json::to_value(self.rig.dev.snapshot()).expect("serialises");
        for e in edits {
            e.apply(&mut value);
        }
        let Ok(snap) = serde_json::from_value::<DeviceSnapshot>(value) else {
            return;
        };
        let mut fresh = self.fresh_rig();
        let built = fresh.dev.snapshot();
        match fresh.dev.restore(&snap) {
            Err(e) => {
                assert!(
                    matches!(e, DeviceError::Snapshot(_) | DeviceError::Backend(_)),
                    "restore refused with {e:?}"
                );
                assert!(!e.to_string().is_empty());
                assert_eq!(
                    fresh.dev.snapshot(),
                    built,
                    "a refused restore changed the device ({e})"
                );
                assert!(!fresh.sink.line() && fresh.sink.messages().is_empty());
                assert!(
                    fresh.dev.validate_snapshot(&snap).is_err()
                        || matches!(e, DeviceError::Backend(_))
                );
            }
            Ok(()) => {
                let dev = &fresh.dev;
                // Status bit 3 is not stored: it reads the function's interrupt state.
                let mut cfg = dev.config_bytes();
                cfg[6] &= !0x08;
                let mut want = snap.config_space.clone();
                want[6] &= !0x08;
                assert_eq!(cfg[..], want[..], "configuration space");
                assert_eq!(
                    (dev.device_status(), dev.isr_status(), dev.msix_config()),
                    (snap.device_status, snap.isr_status, snap.msix_config),
                    "registers"
                );
                assert_eq!(dev.driver_features(), snap.driver_features);
                assert_eq!(dev.config_generation(), snap.config_generation);
                for (q, s) in snap.queues.iter().enumerate() {
                    assert_eq!(dev.queue_msix_vector(q as u16), Some(s.msix_vector));
                }
                assert!(fresh.sink.messages().is_empty(), "restore sent a message");
                let again = fresh.dev.snapshot();
                let mut other = self.fresh_rig();
                other
                    .dev
                    .restore(&again)
                    .expect("a restored device's own snapshot restores");
                assert_eq!(other.dev.snapshot(), again, "restore is not idempotent");
                self.rig = fresh;
                self.msgs_seen = 0;
            }
        }
    }

    fn fresh_rig(&self) -> Rig {
        Rig::on_memory(
            Box::new(NullBackend::new(self.queues)),
            self.rig.options(),
            self.rig.mem.clone(),
        )
    }

    pub fn check(&mut self) {
        check_interrupts(&self.rig.dev, &self.rig.sink, &mut self.msgs_seen);
        self.check_host_view();
    }

    /// What the host-side API says agrees with the registers the guest sees: BAR addresses
    /// with the BAR registers, Bus Master Enable with Command bit 2, the offered features
    /// include VERSION_1 and hold every accepted one once FEATURES_OK is set,
    /// `config_generation` with the common configuration's register, and no notification
    /// waits for Bus Master Enable while it is set (it would wait for good).
    fn check_host_view(&mut self) {
        let dev = &self.rig.dev;
        let cfg = dev.config_bytes();
        let dword = |o: usize| u32::from_le_bytes([cfg[o], cfg[o + 1], cfg[o + 2], cfg[o + 3]]);
        for bar in dev.bar_defs() {
            let o = 0x10 + 4 * usize::from(bar.index);
            let lo = u64::from(dword(o) & !0xF);
            let want = if matches!(bar.kind, virq_device::pci::BarKind::Memory64 { .. }) {
                lo | u64::from(dword(o + 4)) << 32
            } else {
                lo
            };
            assert_eq!(dev.bar_address(bar.index), Some(want), "BAR {}", bar.index);
        }
        let command = u16::from_le_bytes([cfg[4], cfg[5]]);
        assert_eq!(
            dev.bus_master_enabled(),
            command & 4 != 0,
            "Bus Master Enable"
        );
        let live = dev.device_status()
            & (virq_device::status::DRIVER_OK | virq_device::status::DEVICE_NEEDS_RESET)
            == virq_device::status::DRIVER_OK;
        if dev.bus_master_enabled() && live {
            let waiting: Vec<u16> = dev.deferred_queues().collect();
            assert!(
                waiting.is_empty(),
                "queues {waiting:?} wait for Bus Master Enable, which is set"
            );
        }
        let offered = dev.device_features();
        assert!(offered & virq_device::features::VERSION_1 != 0);
        if dev.device_status() & virq_device::status::FEATURES_OK != 0 {
            assert_eq!(
                dev.driver_features() & !offered,
                0,
                "accepted features not offered"
            );
        }
        assert!(format!("{dev:?}").contains(&format!("device_status: {}", dev.device_status())));
        // Reading config_generation has no side effect (virtio 1.2, 4.1.4.3).
        let common = self.rig.options().layout.common;
        let mut generation = [0u8];
        let dev = &mut self.rig.dev;
        dev.bar_read(common.bar, common.offset + 0x15, &mut generation);
        assert_eq!(generation[0], dev.config_generation(), "config_generation");
    }
}

/// The interrupt invariants every state must satisfy (see the module docs). `msgs_seen` is
/// how many of the sink's messages were already checked.
pub fn check_interrupts(dev: &VirtioPciDevice, sink: &RecordingSink, msgs_seen: &mut usize) {
    let cfg = dev.config_bytes();
    let command = u16::from_le_bytes([cfg[4], cfg[5]]);
    let status = u16::from_le_bytes([cfg[6], cfg[7]]);
    let isr = dev.isr_status();
    let msix_on = dev.msix_enabled();
    let pending = isr != 0 && !msix_on;
    assert_eq!(dev.intx_level(), sink.line(), "sink and device disagree");
    assert_eq!(
        dev.intx_level(),
        pending && command & (1 << 10) == 0,
        "INTA# level (isr={isr:#x} msix={msix_on} command={command:#x})"
    );
    assert_eq!(status & (1 << 3) != 0, pending, "Status bit 3");

    let table_size = dev.msix().map_or(0, |m| m.table_size());
    let legal = |v: u16| v == NO_VECTOR || v < table_size;
    assert!(
        legal(dev.msix_config()),
        "msix_config {}",
        dev.msix_config()
    );
    for q in 0..dev.num_queues() {
        let v = dev.queue_msix_vector(q).unwrap();
        assert!(legal(v), "queue {q} vector {v}");
    }

    // Copy the record only when it grew: most accesses send nothing.
    let count = sink.message_count();
    let msgs = if count > *msgs_seen {
        sink.messages()
    } else {
        Vec::new()
    };
    let new = &msgs[(*msgs_seen).min(msgs.len())..];
    if !new.is_empty() {
        let m = dev.msix().expect("a message without MSI-X");
        assert!(
            m.enabled && !m.function_masked && m.bus_master,
            "message while MSI-X cannot send"
        );
        for msg in new {
            assert!(
                m.table
                    .iter()
                    .any(|e| !e.masked() && (e.address, e.data) == *msg),
                "message {msg:x?} matches no unmasked entry"
            );
        }
    }
    *msgs_seen = count;
    if let Some(m) = dev.msix()
        && m.enabled
        && !m.function_masked
        && m.bus_master
    {
        for (i, e) in m.table.iter().enumerate() {
            assert!(
                e.masked() || !m.is_pending(i as u16),
                "entry {i} is unmasked and deliverable but its Pending Bit stays set"
            );
        }
    }
}

/// A BAR layout and queue count from the input (shape bit 7): region BARs, offsets and
/// lengths, the notify multiplier and the MSI-X table and PBA placement, legal or not. The
/// device must refuse what its layout rules refuse with the same typed error, refuse no
/// queues, and otherwise build (the input then runs on it).
fn decode_layout(
    c: &mut Cursor<'_>,
    mut options: TransportOptions,
) -> Option<(u16, TransportOptions)> {
    use virq_device::layout::Region;
    let bar = |b: u8| if b & 0x80 != 0 { b & 7 } else { (b % 3) * 2 };
    let offset = |f: u8| {
        u64::from(f & 0x0F) * 0x1000
            + if f & 0x10 != 0 { 4 } else { 0 }
            + if f & 0x20 != 0 { 1 << 32 } else { 0 }
    };
    const LENGTHS: [u64; 9] = [0x1000, 0x800, 0x40, 0x3C, 0x10, 2, 1, 0, 1 << 33];
    let region = |c: &mut Cursor<'_>| {
        let (b, f, l) = (c.u8(), c.u8(), c.u8());
        Region::new(bar(b), offset(f), LENGTHS[usize::from(l) % LENGTHS.len()])
    };
    let l = &mut options.layout;
    l.common = region(c);
    l.notify = region(c);
    l.isr = region(c);
    l.device = region(c);
    l.notify_off_multiplier = [4, 0, 2, 8, 16, 1, 3, 4096][usize::from(c.u8() % 8)];
    l.msix_table_bar = bar(c.u8());
    l.msix_table_offset = offset(c.u8());
    l.msix_pba_bar = bar(c.u8());
    l.msix_pba_offset = offset(c.u8());
    let queues = u16::from(c.u8() % 5);
    let table_size = options
        .msix_table_size
        .unwrap_or(queues.saturating_add(1))
        .max(1);
    let built = VirtioPciDevice::new(
        Box::new(NullBackend::new(queues)),
        VecMemory::new(16),
        std::sync::Arc::new(RecordingSink::new()),
        options,
    );
    match built {
        Err(DeviceError::NoQueues) => {
            assert_eq!(queues, 0);
            None
        }
        Err(DeviceError::Layout(e)) => {
            assert_eq!(Err(e), options.layout.validate(queues, table_size));
            None
        }
        Err(e) => panic!("a device refused with {e:?}"),
        Ok(_) => {
            assert!(queues > 0);
            assert_eq!(options.layout.validate(queues, table_size), Ok(()));
            Some((queues, options))
        }
    }
}

pub fn run(data: &[u8]) {
    let mut c = Cursor::new(data);
    let shape = c.u8();
    let (queues, options) = if shape & 0x80 != 0 {
        match decode_layout(&mut c, decode_shape(shape)) {
            Some(built) => built,
            None => return,
        }
    } else {
        (decode_queues(shape), decode_shape(shape))
    };
    let mut h = Harness::new(queues, options);
    for _ in 0..MAX_OPS {
        if c.is_empty() {
            break;
        }
        let op = Op::decode(&mut c);
        h.apply(&op);
    }
}
