//! virq's virtio-pci modern device as a C library (`libvirq_capi.so`, `libvirq_capi.a`, header
//! `include/virq.h`), so a driver core written in C (or anything that calls C) links the device
//! directly and tests its bring-up, interrupts and I/O without a VM and without a socket.
//!
//! The caller owns guest RAM (a host pointer, a length and the guest-physical address of its
//! first byte) and forwards the accesses its driver makes: configuration-space cycles, and
//! memory accesses to the BARs its driver placed. The device answers as the virtio 1.2
//! specification says, reaches into the caller's RAM for its rings and buffers, and hands its
//! interrupts back through callbacks (an MSI-X message as address/data, the INTx level).
//!
//! # The caller's obligations
//! These are the conditions under which the library is sound; the header repeats them per
//! function.
//! - **Guest RAM** passed to `virq_device_create` stays valid for reads and writes, at the same
//!   host address, until `virq_device_destroy` returns. The device touches it only during a
//!   call into the library for that device (never on a thread of its own).
//! - **Pointers** passed in are either NULL where the documentation allows it, or valid for the
//!   stated number of bytes for the duration of the call. Nothing the library returns needs to
//!   be freed except the device itself (`virq_device_destroy`).
//! - **A device handle** comes from `virq_device_create` and is not used after
//!   `virq_device_destroy`. Calls on one device from several threads are serialised by the
//!   library (they block each other); callbacks run on the thread of the call that caused them.
//! - **Callbacks** return normally (no `longjmp`, no C++ exception through the library) and do
//!   not call into the device they were called for (such a call is refused with
//!   `VIRQ_STATUS_BUSY`); they may call into other devices.
//!
//! # What the library guarantees
//! - No Rust panic crosses the boundary: every entry point catches unwinding. A call that
//!   panicked (a bug in virq) returns `VIRQ_STATUS_PANICKED` and leaves the device poisoned:
//!   every later call on it returns `VIRQ_STATUS_POISONED`, and only `virq_device_destroy` works.
//! - Every refusal has its own `virq_status` code; `virq_strerror` names it and
//!   `virq_last_error` holds the detailed message of the last refusal on the calling thread.
//! - A hostile driver (any register write, any ring contents) cannot make the device panic,
//!   hang or allocate without bound: the device side is the same code the rest of virq runs.

// A C library: its entry points take raw pointers and call C function pointers, and guest RAM
// is the caller's buffer, so `unsafe` is this crate's job (the workspace denies it elsewhere).
// Every block carries its `SAFETY:` argument (clippy's `undocumented_unsafe_blocks`, denied
// workspace-wide).
#![allow(unsafe_code)]
#![deny(missing_docs)]

mod backends;
mod memory;

use std::cell::RefCell;
use std::ffi::{CStr, CString, c_char, c_void};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use virq_device::{DeviceError, InterruptSink, SnapshotError, TransportOptions, VirtioPciDevice};
use virq_events::{Clock, EventLog};

use backends::{Kind, SharedDisk};
use memory::{HostRam, RamError};

/// Alignment `ram` and `ram_gpa` of `virq_device_create` must both have: every naturally
/// aligned guest address up to 8 bytes is then naturally aligned on the host too (the split
/// ring's 16-bit atomics need it).
pub const VIRQ_RAM_ALIGN: u64 = 8;

/// The ABI this header describes; `virq_abi_version` returns it. It changes only when an
/// existing function, structure or constant changes meaning (additions keep it).
pub const VIRQ_ABI_VERSION: u32 = 1;

/// `virq_device_config.msix_table_size`: one entry per queue plus one for configuration.
pub const VIRQ_MSIX_DEFAULT: i32 = -1;
/// Largest MSI-X table (PCI 3.0, 6.8.2.3: Table Size is 11 bits).
pub const VIRQ_MSIX_MAX: i32 = 2048;

/// `virq_device_config.flags`: record the device's evidence (one JSON object per event), for
/// `virq_events_drain` or the `event` callback. Off, the device builds no event at all.
pub const VIRQ_FLAG_RECORD_EVENTS: u32 = 1 << 0;
/// `virq_device_config.flags`: do not offer VIRTIO_F_RING_EVENT_IDX.
pub const VIRQ_FLAG_NO_EVENT_IDX: u32 = 1 << 1;
/// `virq_device_config.flags`: do not offer VIRTIO_F_RING_INDIRECT_DESC.
pub const VIRQ_FLAG_NO_INDIRECT_DESC: u32 = 1 << 2;
/// `virq_device_config.flags`: do not offer VIRTIO_F_RING_RESET.
pub const VIRQ_FLAG_NO_RING_RESET: u32 = 1 << 3;
/// `virq_device_config.flags`: offer VIRTIO_F_NOTIFICATION_DATA.
pub const VIRQ_FLAG_NOTIFICATION_DATA: u32 = 1 << 4;
const KNOWN_FLAGS: u32 = VIRQ_FLAG_RECORD_EVENTS
    | VIRQ_FLAG_NO_EVENT_IDX
    | VIRQ_FLAG_NO_INDIRECT_DESC
    | VIRQ_FLAG_NO_RING_RESET
    | VIRQ_FLAG_NOTIFICATION_DATA;

/// virtio-blk disk size when `disk_sectors` is 0: 1 MiB.
pub const VIRQ_DEFAULT_DISK_SECTORS: u64 = 2048;
/// Largest virtio-blk disk (it is held in host memory): 1 GiB.
pub const VIRQ_MAX_DISK_SECTORS: u64 = 1 << 21;
/// Events kept for `virq_events_drain`; later ones are counted (`virq_events_dropped`) until
/// a drain empties the log.
pub const VIRQ_EVENT_CAPACITY: u32 = 1 << 20;

/// The device types (virtio 1.2, section 5: the value is the virtio device ID).
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VirqDeviceType {
    /// virtio-blk: 1..=64 request queues, a disk in host memory.
    Blk = 2,
    /// virtio-console: exactly 2 queues (receiveq, transmitq); output is kept by the device.
    Console = 3,
    /// virtio-rng: exactly 1 queue, a seeded deterministic entropy source.
    Rng = 4,
}

/// What every function returns. `VIRQ_STATUS_OK` is 0; everything else is a refusal that
/// changed nothing (except `VIRQ_STATUS_UNMAPPED`, which is an answer, and
/// `VIRQ_STATUS_PANICKED`). `virq_strerror` names each code.
#[repr(i32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VirqStatus {
    /// Success.
    Ok = 0,
    /// A pointer that must not be NULL was NULL.
    NullPointer = 1,
    /// An argument is outside its documented range (unknown device type or flag, a queue
    /// count the device type does not have, an MSI-X table size, a value wider than the
    /// access width).
    InvalidArgument = 2,
    /// An access width the register space does not have: configuration space takes 1, 2 or
    /// 4 bytes; BARs and MMIO take 1, 2, 4 or 8.
    BadWidth = 3,
    /// The access leaves the register space: past configuration offset 0xFFF (4 KiB, PCIe
    /// extended space included) or past the end of the BAR.
    OutOfRange = 4,
    /// The device has no BAR with this index.
    NoSuchBar = 5,
    /// No BAR of the device decodes this address (Memory Space off, the BAR unassigned, or
    /// the address outside every BAR): a read returns all ones, a write is dropped, as a
    /// master abort on a real bus. Not an error for a VMM that asks every device in turn.
    Unmapped = 6,
    /// The guest RAM description is unusable: NULL, length 0, wrapping past 2^64, or host
    /// pointer and guest-physical base not both 8-byte aligned.
    BadRam = 7,
    /// The caller's buffer is too small; the size it needs is reported through the length
    /// output.
    BufferTooSmall = 8,
    /// The device is already inside a call on this thread: a callback called back into the
    /// device it was called for.
    Busy = 9,
    /// An earlier call on this device panicked (a bug in virq); the device refuses everything
    /// but `virq_device_destroy`.
    Poisoned = 10,
    /// This call panicked inside the library (a bug in virq; `virq_last_error` has the
    /// message). The device is now poisoned.
    Panicked = 11,
    /// A virtio-blk disk operation on another device type.
    NotBlock = 12,
    /// The snapshot is not a JSON document of virq's snapshot format.
    SnapshotJson = 13,
    /// Restore refused: the snapshot has another number of queues.
    SnapshotQueueCount = 14,
    /// Restore refused: its configuration space is not 256 bytes.
    SnapshotConfigSpaceLength = 15,
    /// Restore refused: a read-only configuration bit (IDs, capability list, BAR size bits)
    /// differs from this device's.
    SnapshotReadOnlyConfig = 16,
    /// Restore refused: another MSI-X table size (or MSI-X where the device has none).
    SnapshotMsixTableSize = 17,
    /// Restore refused: the Pending Bit Array does not fit the table.
    SnapshotPbaShape = 18,
    /// Restore refused: negotiated features the device does not offer, or without VERSION_1.
    SnapshotFeatures = 19,
    /// Restore refused: `device_status` has DRIVER_OK without FEATURES_OK.
    SnapshotDeviceStatus = 20,
    /// Restore refused: ISR status has bits other than queue (0) and configuration (1).
    SnapshotIsrStatus = 21,
    /// Restore refused: a vector selector holds an index the table does not have.
    SnapshotVector = 22,
    /// Restore refused: a queue's maximum size differs from this device's.
    SnapshotQueueMaxSize = 23,
    /// Restore refused: a queue size that is not a power of two up to the maximum.
    SnapshotQueueSize = 24,
    /// Restore refused: an enabled queue's rings are not in this device's guest RAM or are
    /// misaligned.
    SnapshotQueueRings = 25,
    /// Restore refused: the device type's own state does not fit (another disk size, for
    /// example).
    SnapshotBackend = 26,
    /// Restore refused: a Pending Bit is set on an entry whose message could be sent now
    /// (MSI-X and Bus Master enabled, nothing masked), an interrupt nothing would deliver.
    SnapshotDeliverablePending = 27,
    /// Restore refused: a queue's notification waits for Bus Master Enable, which is set.
    SnapshotDeferredNotify = 28,
}

/// Where an MSI-X message goes: the device performs a DWORD write of `data` to `address`
/// (PCI 3.0, 6.8.3.3). Called during the access that made the device interrupt.
pub type VirqMsiFn = Option<unsafe extern "C" fn(user: *mut c_void, address: u64, data: u32)>;
/// The level of INTA# changed (`true`: asserted). Called only on changes, during the access
/// that changed it (a notify, the ISR read that clears the last bit, a Command write, a reset).
pub type VirqIntxFn = Option<unsafe extern "C" fn(user: *mut c_void, level: bool)>;
/// One recorded event as a JSON object (`virq_events::Event`), NUL-terminated, `len` bytes
/// without the NUL and without a newline. The text belongs to the library and is valid only
/// during the callback.
pub type VirqEventFn =
    Option<unsafe extern "C" fn(user: *mut c_void, json: *const c_char, len: usize)>;

/// The caller's callbacks; any may be NULL (that kind of output is then not delivered).
/// `user` is passed back unchanged to each of them.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct VirqCallbacks {
    /// The caller's context, handed back as the first argument of every callback.
    pub user: *mut c_void,
    /// Where MSI-X messages go; with NULL they are sent and lost.
    pub msi: VirqMsiFn,
    /// Where INTx level changes go; with NULL the level is kept but nobody is told.
    pub intx: VirqIntxFn,
    /// With it set, recorded events are delivered here at the end of the call that produced
    /// them, in order, and not kept for `virq_events_drain`. Setting it turns recording on.
    pub event: VirqEventFn,
}

/// How to build a device. Start from `virq_device_config_default` and change fields.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct VirqDeviceConfig {
    /// A `virq_device_type` value.
    pub device_type: u32,
    /// Virtqueues; 0 is the type's default (blk 1, console 2, rng 1). virtio-blk takes
    /// 1..=64 (more than one offers VIRTIO_BLK_F_MQ); console and rng only their own number.
    pub num_queues: u16,
    /// MSI-X table entries: `VIRQ_MSIX_DEFAULT` (1 + queues), 0 (no MSI-X capability: INTx
    /// only), or 1..=`VIRQ_MSIX_MAX`. A table smaller than 1 + queues is the classic
    /// "table too small" case: vector writes past it read back NO_VECTOR (0xFFFF).
    pub msix_table_size: i32,
    /// `VIRQ_FLAG_*` bits.
    pub flags: u32,
    /// virtio-blk disk size in 512-byte sectors, 1..=`VIRQ_MAX_DISK_SECTORS`; 0 is
    /// `VIRQ_DEFAULT_DISK_SECTORS`. Ignored by other types.
    pub disk_sectors: u64,
    /// virtio-blk initial contents, `disk_sectors * 512` bytes, copied at creation (the caller
    /// keeps ownership); NULL: a zeroed disk.
    pub disk_image: *const u8,
    /// virtio-rng's seed: the same seed gives the same bytes.
    pub rng_seed: u64,
    /// Name put in every event's `device` field (copied; NULL: none), for example the BDF the
    /// caller gave the function.
    pub name: *const c_char,
}

/// One device function: created by `virq_device_create`, freed by `virq_device_destroy`.
/// Opaque to C.
pub struct VirqDevice {
    inner: Mutex<Inner>,
    poisoned: AtomicBool,
    /// The calling thread's id while a call is inside the device, 0 otherwise: a callback
    /// that calls back into its own device is refused instead of deadlocking.
    owner: AtomicUsize,
}

struct Inner {
    dev: VirtioPciDevice,
    disk: Option<SharedDisk>,
    log: Option<Arc<EventLog>>,
    /// Events taken out of the log, serialised, not yet drained.
    lines: std::collections::VecDeque<CString>,
    callbacks: VirqCallbacks,
}

/// A refusal: its code and its message for `virq_last_error`.
struct Refusal(VirqStatus, String);

type Outcome = Result<(), Refusal>;

fn refuse(status: VirqStatus, message: impl Into<String>) -> Outcome {
    Err(Refusal(status, message.into()))
}

thread_local! {
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
    /// Its address identifies the thread (never 0).
    static THREAD_TAG: u8 = const { 0 };
}

fn thread_id() -> usize {
    THREAD_TAG.with(|t| t as *const u8 as usize)
}

fn set_last_error(message: &str) {
    let c = CString::new(message.replace('\0', " ")).unwrap_or_default();
    LAST_ERROR.with(|e| *e.borrow_mut() = c);
}

/// Record a refusal's message and return its code.
fn finish(outcome: Outcome) -> VirqStatus {
    match outcome {
        Ok(()) => VirqStatus::Ok,
        Err(Refusal(status, message)) => {
            set_last_error(&message);
            status
        }
    }
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    let what = payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".into());
    format!("virq panicked (a bug in virq; the device is now poisoned): {what}")
}

/// The frame of every entry point that takes a device: NULL check, poison, re-entry, the
/// device's lock, the operation, event delivery, and no panic out.
fn with_device(dev: *const VirqDevice, op: impl FnOnce(&mut Inner) -> Outcome) -> VirqStatus {
    // SAFETY: the caller's obligation (crate docs): a non-NULL `dev` comes from
    // `virq_device_create` and was not destroyed, so it points to a live `VirqDevice`.
    let Some(d) = (unsafe { dev.as_ref() }) else {
        return finish(refuse(
            VirqStatus::NullPointer,
            "the device pointer is NULL",
        ));
    };
    if d.poisoned.load(Ordering::Acquire) {
        return finish(refuse(
            VirqStatus::Poisoned,
            "an earlier call on this device panicked; only virq_device_destroy works",
        ));
    }
    let me = thread_id();
    if d.owner.load(Ordering::Acquire) == me {
        return finish(refuse(
            VirqStatus::Busy,
            "called from inside a callback of the same device",
        ));
    }
    let result = catch_unwind(AssertUnwindSafe(|| {
        let mut inner = d.inner.lock().unwrap_or_else(|e| e.into_inner());
        d.owner.store(me, Ordering::Release);
        let outcome = op(&mut inner);
        inner.deliver_events();
        d.owner.store(0, Ordering::Release);
        outcome
    }));
    match result {
        Ok(outcome) => finish(outcome),
        Err(payload) => {
            d.poisoned.store(true, Ordering::Release);
            d.owner.store(0, Ordering::Release);
            finish(refuse(
                VirqStatus::Panicked,
                panic_message(payload.as_ref()),
            ))
        }
    }
}

/// Like [`with_device`] for calls without a device: only the panic frame.
fn guarded(op: impl FnOnce() -> Outcome) -> VirqStatus {
    match catch_unwind(AssertUnwindSafe(op)) {
        Ok(outcome) => finish(outcome),
        Err(payload) => finish(refuse(
            VirqStatus::Panicked,
            panic_message(payload.as_ref()),
        )),
    }
}

/// Store through an output pointer the caller vouched for, refusing NULL.
///
/// # Safety
/// `out` is NULL or valid for a write of `T`.
unsafe fn put<T>(out: *mut T, value: T, what: &str) -> Outcome {
    // SAFETY: the caller's contract: NULL or valid for writing a `T`.
    match unsafe { out.as_mut() } {
        Some(slot) => {
            *slot = value;
            Ok(())
        }
        None => refuse(VirqStatus::NullPointer, format!("{what} is NULL")),
    }
}

/// The interrupt callbacks as virq-device's [`InterruptSink`].
struct CallbackSink {
    user: UserPtr,
    msi: VirqMsiFn,
    intx: VirqIntxFn,
}

/// The caller's `user` pointer, handed back to its callbacks.
#[derive(Clone, Copy)]
struct UserPtr(*mut c_void);

// SAFETY: the library never dereferences `user`; it only passes it back to the caller's
// callbacks on the thread of the call into the device, which the caller's obligations (crate
// docs) allow.
unsafe impl Send for UserPtr {}
// SAFETY: as above.
unsafe impl Sync for UserPtr {}

impl InterruptSink for CallbackSink {
    fn msi(&self, address: u64, data: u32) {
        if let Some(f) = self.msi {
            // SAFETY: a function pointer the caller registered for exactly this signature; it
            // returns normally by the caller's obligations.
            unsafe { f(self.user.0, address, data) }
        }
    }

    fn set_intx(&self, level: bool) {
        if let Some(f) = self.intx {
            // SAFETY: as for `msi`.
            unsafe { f(self.user.0, level) }
        }
    }
}

/// Event time: nanoseconds since the device was created.
struct SinceCreation(Instant);

impl Clock for SinceCreation {
    fn now_ns(&self) -> u64 {
        self.0.elapsed().as_nanos() as u64
    }
}

impl Inner {
    /// Move recorded events out of the log into `lines`.
    fn collect_events(&mut self) {
        let Some(log) = &self.log else { return };
        if log.is_empty() {
            return;
        }
        for e in log.drain() {
            // An event always serialises; should it not, the line says why instead.
            let json = serde_json::to_string(&e)
                .unwrap_or_else(|err| format!("{{\"error\":{:?}}}", err.to_string()));
            self.lines.push_back(CString::new(json).unwrap_or_default());
        }
    }

    /// Hand new events to the `event` callback, when there is one.
    fn deliver_events(&mut self) {
        let Some(f) = self.callbacks.event else {
            return;
        };
        self.collect_events();
        for line in self.lines.drain(..) {
            // SAFETY: the caller registered `f` for this signature; `line` is a NUL-terminated
            // string of `len` bytes that lives until after the call.
            unsafe { f(self.callbacks.user, line.as_ptr(), line.as_bytes().len()) }
        }
    }
}

fn width_of(width: u32, allowed: &[u32]) -> Result<usize, Refusal> {
    if allowed.contains(&width) {
        Ok(width as usize)
    } else {
        Err(Refusal(
            VirqStatus::BadWidth,
            format!("width {width} is not one of {allowed:?} bytes"),
        ))
    }
}

/// `value` as `width` little-endian bytes, refusing a value that does not fit.
fn value_bytes(value: u64, width: usize) -> Result<[u8; 8], Refusal> {
    if width < 8 && value >> (8 * width) != 0 {
        return Err(Refusal(
            VirqStatus::InvalidArgument,
            format!("value {value:#x} does not fit in {width} bytes"),
        ));
    }
    Ok(value.to_le_bytes())
}

const CONFIG_WIDTHS: &[u32] = &[1, 2, 4];
const MEMORY_WIDTHS: &[u32] = &[1, 2, 4, 8];

// ------------------------------------------------------------------------------ entry points

/// The ABI version of the library actually loaded (`VIRQ_ABI_VERSION` of its header). A
/// caller compiled against another version should refuse to run.
#[unsafe(no_mangle)]
pub extern "C" fn virq_abi_version() -> u32 {
    // A constant: nothing here can unwind, so no frame is needed.
    VIRQ_ABI_VERSION
}

/// The name of a status code, for example `"VIRQ_STATUS_BAD_WIDTH: ..."` with a one-line
/// description. Never NULL; the string is static (do not free it). Unknown codes give
/// `"unknown virq_status"`.
#[unsafe(no_mangle)]
pub extern "C" fn virq_strerror(status: i32) -> *const c_char {
    catch_unwind(|| status_text(status))
        .unwrap_or(c"unknown virq_status")
        .as_ptr()
}

fn status_text(status: i32) -> &'static CStr {
    use VirqStatus as S;
    let all = [
        (S::Ok, c"VIRQ_STATUS_OK: success"),
        (
            S::NullPointer,
            c"VIRQ_STATUS_NULL_POINTER: a required pointer was NULL",
        ),
        (
            S::InvalidArgument,
            c"VIRQ_STATUS_INVALID_ARGUMENT: an argument is outside its range",
        ),
        (
            S::BadWidth,
            c"VIRQ_STATUS_BAD_WIDTH: an access width the register space does not have",
        ),
        (
            S::OutOfRange,
            c"VIRQ_STATUS_OUT_OF_RANGE: the access leaves the register space",
        ),
        (
            S::NoSuchBar,
            c"VIRQ_STATUS_NO_SUCH_BAR: the device has no such BAR",
        ),
        (
            S::Unmapped,
            c"VIRQ_STATUS_UNMAPPED: no BAR decodes the address (reads all ones)",
        ),
        (
            S::BadRam,
            c"VIRQ_STATUS_BAD_RAM: unusable guest RAM description",
        ),
        (
            S::BufferTooSmall,
            c"VIRQ_STATUS_BUFFER_TOO_SMALL: the buffer is too small",
        ),
        (
            S::Busy,
            c"VIRQ_STATUS_BUSY: a callback called back into its own device",
        ),
        (
            S::Poisoned,
            c"VIRQ_STATUS_POISONED: an earlier call panicked; destroy the device",
        ),
        (
            S::Panicked,
            c"VIRQ_STATUS_PANICKED: the call panicked inside virq (a bug)",
        ),
        (
            S::NotBlock,
            c"VIRQ_STATUS_NOT_BLOCK: not a virtio-blk device",
        ),
        (
            S::SnapshotJson,
            c"VIRQ_STATUS_SNAPSHOT_JSON: not a virq snapshot document",
        ),
        (
            S::SnapshotQueueCount,
            c"VIRQ_STATUS_SNAPSHOT_QUEUE_COUNT: another number of queues",
        ),
        (
            S::SnapshotConfigSpaceLength,
            c"VIRQ_STATUS_SNAPSHOT_CONFIG_SPACE_LENGTH: configuration space not 256 bytes",
        ),
        (
            S::SnapshotReadOnlyConfig,
            c"VIRQ_STATUS_SNAPSHOT_READ_ONLY_CONFIG: a read-only configuration bit differs",
        ),
        (
            S::SnapshotMsixTableSize,
            c"VIRQ_STATUS_SNAPSHOT_MSIX_TABLE_SIZE: another MSI-X table size",
        ),
        (
            S::SnapshotPbaShape,
            c"VIRQ_STATUS_SNAPSHOT_PBA_SHAPE: the Pending Bit Array does not fit the table",
        ),
        (
            S::SnapshotFeatures,
            c"VIRQ_STATUS_SNAPSHOT_FEATURES: negotiated features not offered",
        ),
        (
            S::SnapshotDeviceStatus,
            c"VIRQ_STATUS_SNAPSHOT_DEVICE_STATUS: DRIVER_OK without FEATURES_OK",
        ),
        (
            S::SnapshotIsrStatus,
            c"VIRQ_STATUS_SNAPSHOT_ISR_STATUS: ISR bits other than 0 and 1",
        ),
        (
            S::SnapshotVector,
            c"VIRQ_STATUS_SNAPSHOT_VECTOR: a vector the table does not have",
        ),
        (
            S::SnapshotQueueMaxSize,
            c"VIRQ_STATUS_SNAPSHOT_QUEUE_MAX_SIZE: another queue maximum size",
        ),
        (
            S::SnapshotQueueSize,
            c"VIRQ_STATUS_SNAPSHOT_QUEUE_SIZE: a queue size the maximum does not allow",
        ),
        (
            S::SnapshotQueueRings,
            c"VIRQ_STATUS_SNAPSHOT_QUEUE_RINGS: an enabled queue's rings are unusable here",
        ),
        (
            S::SnapshotBackend,
            c"VIRQ_STATUS_SNAPSHOT_BACKEND: the device type's state does not fit",
        ),
        (
            S::SnapshotDeliverablePending,
            c"VIRQ_STATUS_SNAPSHOT_DELIVERABLE_PENDING: a Pending Bit whose message could be sent",
        ),
        (
            S::SnapshotDeferredNotify,
            c"VIRQ_STATUS_SNAPSHOT_DEFERRED_NOTIFY: a notification waiting on a set Bus Master Enable",
        ),
    ];
    all.iter()
        .find(|(s, _)| *s as i32 == status)
        .map_or(c"unknown virq_status", |(_, text)| text)
}

/// The message of the most recent refusal on the calling thread (a call that did not return
/// `VIRQ_STATUS_OK`), or `""` if there was none. Never NULL. The string belongs to the library
/// and stays valid until the next call into the library on this thread.
#[unsafe(no_mangle)]
pub extern "C" fn virq_last_error() -> *const c_char {
    catch_unwind(|| LAST_ERROR.with(|e| e.borrow().as_ptr())).unwrap_or(c"".as_ptr())
}

/// A configuration for `device_type` with every default: the type's own queue count,
/// `VIRQ_MSIX_DEFAULT`, no flags, a 1 MiB zeroed disk for blk, seed 0, no name.
/// An unknown `device_type` is kept and refused by `virq_device_create`.
#[unsafe(no_mangle)]
pub extern "C" fn virq_device_config_default(device_type: u32) -> VirqDeviceConfig {
    // A struct literal of constants: nothing here can unwind, so no frame is needed.
    VirqDeviceConfig {
        device_type,
        num_queues: 0,
        msix_table_size: VIRQ_MSIX_DEFAULT,
        flags: 0,
        disk_sectors: 0,
        disk_image: std::ptr::null(),
        rng_seed: 0,
        name: std::ptr::null(),
    }
}

/// Build a device function over the caller's guest RAM.
///
/// `ram` (`ram_len` bytes) is guest RAM from guest-physical `ram_gpa`; both `ram` and
/// `ram_gpa` are 8-byte aligned. The caller keeps ownership of it and must keep it valid until
/// `virq_device_destroy` returns; the device reads and writes it (rings, buffers) only during
/// calls into the library for this device, and only while the driver has set Bus Master
/// Enable. `callbacks` is copied (NULL: no callbacks). On success `*out` is the new device,
/// which the caller frees with `virq_device_destroy`; on failure `*out` is NULL.
///
/// After creation the function is as after power-on: BARs unassigned (0), Command 0, no
/// vector assigned. The caller (its firmware or driver) sizes and places the BARs.
///
/// Errors: `VIRQ_STATUS_NULL_POINTER` (`config` or `out`), `VIRQ_STATUS_BAD_RAM`,
/// `VIRQ_STATUS_INVALID_ARGUMENT` (type, queues, MSI-X size, flags, disk size).
///
/// # Safety
/// `config` and `out` are NULL or valid; `config->disk_image` is NULL or readable for
/// `disk_sectors * 512` bytes; `config->name` is NULL or a NUL-terminated string; `callbacks`
/// is NULL or valid; `ram` stays valid as described above.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn virq_device_create(
    config: *const VirqDeviceConfig,
    ram: *mut c_void,
    ram_len: usize,
    ram_gpa: u64,
    callbacks: *const VirqCallbacks,
    out: *mut *mut VirqDevice,
) -> VirqStatus {
    guarded(|| {
        // SAFETY: `out` is NULL or valid for writes (this function's contract).
        unsafe { put(out, std::ptr::null_mut(), "out") }?;
        // SAFETY: `config` is NULL or valid for reads (this function's contract).
        let Some(config) = (unsafe { config.as_ref() }) else {
            return refuse(VirqStatus::NullPointer, "config is NULL");
        };
        // SAFETY: `callbacks` is NULL or valid for reads (this function's contract).
        let callbacks = unsafe { callbacks.as_ref() }
            .copied()
            .unwrap_or(VirqCallbacks {
                user: std::ptr::null_mut(),
                msi: None,
                intx: None,
                event: None,
            });
        let Some(host) = NonNull::new(ram.cast::<u8>()) else {
            return refuse(VirqStatus::BadRam, "ram is NULL");
        };
        // SAFETY: the caller keeps `ram..ram + ram_len` valid for reads and writes until
        // `virq_device_destroy`, which drops the device (and this memory) before returning,
        // and reaches it only through C pointers (this function's contract).
        let ram = unsafe { HostRam::new(host, ram_len, ram_gpa) }.map_err(|e| {
            Refusal(
                VirqStatus::BadRam,
                match e {
                    RamError::Empty => "ram_len is 0".to_string(),
                    RamError::Wraps => {
                        format!("{ram_len:#x} bytes at {ram_gpa:#x} wrap the address space")
                    }
                    RamError::Misaligned => format!(
                        "ram ({:p}) and ram_gpa ({ram_gpa:#x}) must both be 8-byte aligned",
                        host.as_ptr()
                    ),
                },
            )
        })?;
        // SAFETY: forwarded contract of `config` fields (this function's contract).
        let device = unsafe { build_device(config, ram, &callbacks) }?;
        let boxed = Box::new(device);
        // SAFETY: `out` is valid for writes (checked non-NULL by the first `put`).
        unsafe { put(out, Box::into_raw(boxed), "out") }
    })
}

/// Check `config` and build the device.
///
/// # Safety
/// `config.disk_image` and `config.name` as `virq_device_create` requires.
unsafe fn build_device(
    config: &VirqDeviceConfig,
    ram: HostRam,
    callbacks: &VirqCallbacks,
) -> Result<VirqDevice, Refusal> {
    let invalid = |m: String| Refusal(VirqStatus::InvalidArgument, m);
    if config.flags & !KNOWN_FLAGS != 0 {
        return Err(invalid(format!(
            "unknown flags {:#x}",
            config.flags & !KNOWN_FLAGS
        )));
    }
    let queues = config.num_queues;
    let fixed = |name: &str, n: u16| {
        if queues == 0 || queues == n {
            Ok(())
        } else {
            Err(invalid(format!(
                "{name} has exactly {n} queue(s), not {queues}"
            )))
        }
    };
    let kind = match config.device_type {
        t if t == VirqDeviceType::Blk as u32 => {
            let sectors = match config.disk_sectors {
                0 => VIRQ_DEFAULT_DISK_SECTORS,
                n if n <= VIRQ_MAX_DISK_SECTORS => n,
                n => {
                    return Err(invalid(format!(
                        "disk_sectors {n} is more than {VIRQ_MAX_DISK_SECTORS}"
                    )));
                }
            };
            let len = (sectors * 512) as usize;
            let bytes = if config.disk_image.is_null() {
                vec![0; len]
            } else {
                // SAFETY: `disk_image` is readable for `disk_sectors * 512` bytes (the
                // contract of `virq_device_create`); it is copied, not kept.
                unsafe { std::slice::from_raw_parts(config.disk_image, len) }.to_vec()
            };
            Kind::Blk {
                queues: queues.max(1),
                disk: SharedDisk::new(bytes),
            }
        }
        t if t == VirqDeviceType::Rng as u32 => {
            fixed("virtio-rng", 1)?;
            Kind::Rng {
                seed: config.rng_seed,
            }
        }
        t if t == VirqDeviceType::Console as u32 => {
            fixed("virtio-console", 2)?;
            Kind::Console
        }
        t => return Err(invalid(format!("unknown device type {t}"))),
    };
    let msix_table_size = match config.msix_table_size {
        VIRQ_MSIX_DEFAULT => None,
        n if (0..=VIRQ_MSIX_MAX).contains(&n) => Some(n as u16),
        n => {
            return Err(invalid(format!(
                "msix_table_size {n} is not VIRQ_MSIX_DEFAULT, 0 or 1..={VIRQ_MSIX_MAX}"
            )));
        }
    };
    let name = if config.name.is_null() {
        None
    } else {
        // SAFETY: a non-NULL `name` is a NUL-terminated string (the contract of
        // `virq_device_create`); it is copied.
        Some(
            unsafe { CStr::from_ptr(config.name) }
                .to_string_lossy()
                .into_owned(),
        )
    };
    let f = config.flags;
    let options = TransportOptions {
        msix_table_size,
        event_idx: f & VIRQ_FLAG_NO_EVENT_IDX == 0,
        indirect_desc: f & VIRQ_FLAG_NO_INDIRECT_DESC == 0,
        ring_reset: f & VIRQ_FLAG_NO_RING_RESET == 0,
        notification_data: f & VIRQ_FLAG_NOTIFICATION_DATA != 0,
        ..TransportOptions::default()
    };
    let backend = backends::build(&kind).map_err(invalid)?;
    let sink = Arc::new(CallbackSink {
        user: UserPtr(callbacks.user),
        msi: callbacks.msi,
        intx: callbacks.intx,
    });
    let mut dev =
        VirtioPciDevice::new(backend, ram, sink, options).map_err(|e| invalid(e.to_string()))?;
    let log = (f & VIRQ_FLAG_RECORD_EVENTS != 0 || callbacks.event.is_some()).then(|| {
        let mut log = EventLog::new()
            .with_clock(Box::new(SinceCreation(Instant::now())))
            .with_capacity_limit(VIRQ_EVENT_CAPACITY as usize);
        if let Some(name) = name {
            log = log.with_device(name);
        }
        Arc::new(log)
    });
    if let Some(log) = &log {
        dev.set_event_sink(log.clone());
    }
    Ok(VirqDevice {
        inner: Mutex::new(Inner {
            dev,
            disk: match kind {
                Kind::Blk { disk, .. } => Some(disk),
                _ => None,
            },
            log,
            lines: Default::default(),
            callbacks: *callbacks,
        }),
        poisoned: AtomicBool::new(false),
        owner: AtomicUsize::new(0),
    })
}

/// Free a device (NULL is accepted and does nothing). The caller's guest RAM is no longer
/// touched once this returns and may then be freed. Events not drained are lost.
///
/// Errors: `VIRQ_STATUS_BUSY` when called from inside one of the device's own callbacks (the
/// device is then not freed).
///
/// # Safety
/// `dev` is NULL or a device from `virq_device_create` not yet destroyed; it must not be used
/// after this returns `VIRQ_STATUS_OK`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn virq_device_destroy(dev: *mut VirqDevice) -> VirqStatus {
    guarded(|| {
        if dev.is_null() {
            return Ok(());
        }
        // SAFETY: a non-NULL `dev` points to a live device (this function's contract).
        let d = unsafe { &*dev };
        if d.owner.load(Ordering::Acquire) == thread_id() {
            return refuse(
                VirqStatus::Busy,
                "virq_device_destroy called from inside a callback of the same device",
            );
        }
        // SAFETY: `dev` came from `Box::into_raw` in `virq_device_create` and the caller
        // gives it up here (this function's contract).
        drop(unsafe { Box::from_raw(dev) });
        Ok(())
    })
}

/// A configuration-space read of `width` (1, 2 or 4) bytes at `offset` (0..0xFFF), as a
/// configuration cycle of the caller's bus (mechanism #1 or ECAM) delivers it; the value is
/// little-endian, in the low bytes of `*value`. Offsets 0x100..0xFFF (PCIe extended space)
/// read 0. Reading the `virtio_pci_cfg_cap` data window performs its BAR access.
///
/// Errors: `VIRQ_STATUS_NULL_POINTER`, `VIRQ_STATUS_BAD_WIDTH`, `VIRQ_STATUS_OUT_OF_RANGE`,
/// `VIRQ_STATUS_BUSY`, `VIRQ_STATUS_POISONED`, `VIRQ_STATUS_PANICKED`.
///
/// # Safety
/// `dev` is a live device; `value` is NULL or valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn virq_config_read(
    dev: *mut VirqDevice,
    offset: u16,
    width: u32,
    value: *mut u32,
) -> VirqStatus {
    with_device(dev, |d| {
        if value.is_null() {
            return refuse(VirqStatus::NullPointer, "value is NULL");
        }
        let w = config_access(offset, width)?;
        let mut b = [0u8; 4];
        d.dev.config_read(offset, &mut b[..w]);
        // SAFETY: `value` is valid for a write (this function's contract; NULL refused above).
        unsafe { put(value, u32::from_le_bytes(b), "value") }
    })
}

/// A configuration-space write of the low `width` (1, 2 or 4) bytes of `value` at `offset`
/// (0..0xFFF). Read-only bits keep their value (PCI 3.0, 6.1); writes past 0xFF are dropped.
/// A write may make the device interrupt (Command, MSI-X Message Control) or touch guest RAM
/// (Bus Master Enable releases notifications that waited for it); the callbacks run before
/// this returns.
///
/// Errors: `VIRQ_STATUS_BAD_WIDTH`, `VIRQ_STATUS_OUT_OF_RANGE`, `VIRQ_STATUS_INVALID_ARGUMENT`
/// (`value` wider than `width`), `VIRQ_STATUS_NULL_POINTER`, `VIRQ_STATUS_BUSY`,
/// `VIRQ_STATUS_POISONED`, `VIRQ_STATUS_PANICKED`.
///
/// # Safety
/// `dev` is a live device.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn virq_config_write(
    dev: *mut VirqDevice,
    offset: u16,
    width: u32,
    value: u32,
) -> VirqStatus {
    with_device(dev, |d| {
        let w = config_access(offset, width)?;
        let b = value_bytes(u64::from(value), w)?;
        d.dev.config_write(offset, &b[..w]);
        Ok(())
    })
}

fn config_access(offset: u16, width: u32) -> Result<usize, Refusal> {
    let w = width_of(width, CONFIG_WIDTHS)?;
    if usize::from(offset) + w > virq_device::pci::EXTENDED_CONFIG_SIZE {
        return Err(Refusal(
            VirqStatus::OutOfRange,
            format!("configuration access {offset:#x}+{w} passes 0xfff"),
        ));
    }
    Ok(w)
}

/// A memory read of `width` (1, 2, 4 or 8) bytes at bus address `address`, decoded against
/// the BARs the driver programmed (while Command bit 1, Memory Space, is set). The value is
/// little-endian in the low bytes of `*value`. Reading ISR status clears it and may lower
/// INTx (the `intx` callback runs before this returns).
///
/// Returns `VIRQ_STATUS_UNMAPPED` with `*value` all ones (of the width) when no BAR decodes
/// the address. Errors: `VIRQ_STATUS_NULL_POINTER`, `VIRQ_STATUS_BAD_WIDTH`,
/// `VIRQ_STATUS_BUSY`, `VIRQ_STATUS_POISONED`, `VIRQ_STATUS_PANICKED`.
///
/// # Safety
/// `dev` is a live device; `value` is NULL or valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn virq_mmio_read(
    dev: *mut VirqDevice,
    address: u64,
    width: u32,
    value: *mut u64,
) -> VirqStatus {
    with_device(dev, |d| {
        if value.is_null() {
            return refuse(VirqStatus::NullPointer, "value is NULL");
        }
        let w = width_of(width, MEMORY_WIDTHS)?;
        let mut b = [0u8; 8];
        let decoded = d.dev.mmio_read(address, &mut b[..w]);
        if !decoded {
            b[..w].fill(0xFF);
        }
        // SAFETY: `value` is valid for a write (this function's contract; NULL refused above).
        unsafe { put(value, u64::from_le_bytes(b), "value") }?;
        if decoded {
            Ok(())
        } else {
            refuse(
                VirqStatus::Unmapped,
                format!("no BAR decodes {address:#x}+{w}"),
            )
        }
    })
}

/// A memory write of the low `width` (1, 2, 4 or 8) bytes of `value` at bus address
/// `address`, decoded against the programmed BARs. This is where the device works: a notify
/// write processes the queue (reading and writing guest RAM, completing requests) and sends
/// the interrupts it causes through the callbacks before this returns; so do status writes
/// (DRIVER_OK, reset) and MSI-X table writes (unmasking delivers a pending message).
///
/// Returns `VIRQ_STATUS_UNMAPPED` (the write dropped) when no BAR decodes the address.
/// Errors: `VIRQ_STATUS_BAD_WIDTH`, `VIRQ_STATUS_INVALID_ARGUMENT` (`value` wider than
/// `width`), `VIRQ_STATUS_NULL_POINTER`, `VIRQ_STATUS_BUSY`, `VIRQ_STATUS_POISONED`,
/// `VIRQ_STATUS_PANICKED`.
///
/// # Safety
/// `dev` is a live device.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn virq_mmio_write(
    dev: *mut VirqDevice,
    address: u64,
    width: u32,
    value: u64,
) -> VirqStatus {
    with_device(dev, |d| {
        let w = width_of(width, MEMORY_WIDTHS)?;
        let b = value_bytes(value, w)?;
        if d.dev.mmio_write(address, &b[..w]) {
            Ok(())
        } else {
            refuse(
                VirqStatus::Unmapped,
                format!("no BAR decodes {address:#x}+{w}"),
            )
        }
    })
}

/// The BAR `bar` (index 0..5) of the function, as (`*size` bytes); its programmed address
/// goes to `*address` (0 while unassigned). For a VMM that decodes BARs itself and then uses
/// `virq_bar_read` / `virq_bar_write`. `address` may be NULL.
///
/// Errors: `VIRQ_STATUS_NO_SUCH_BAR`, `VIRQ_STATUS_NULL_POINTER` (`size`),
/// `VIRQ_STATUS_BUSY`, `VIRQ_STATUS_POISONED`, `VIRQ_STATUS_PANICKED`.
///
/// # Safety
/// `dev` is a live device; `size` and `address` are NULL or valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn virq_bar_info(
    dev: *mut VirqDevice,
    bar: u32,
    size: *mut u64,
    address: *mut u64,
) -> VirqStatus {
    with_device(dev, |d| {
        let size_of = bar_size(&d.dev, bar)?;
        // SAFETY: `size` is NULL or valid for a write (this function's contract).
        unsafe { put(size, size_of, "size") }?;
        if !address.is_null() {
            let at = d.dev.bar_address(bar as u8).unwrap_or(0);
            // SAFETY: `address` is non-NULL here and valid for a write (contract).
            unsafe { put(address, at, "address") }?;
        }
        Ok(())
    })
}

fn bar_size(dev: &VirtioPciDevice, bar: u32) -> Result<u64, Refusal> {
    dev.bar_defs()
        .iter()
        .find(|b| u32::from(b.index) == bar)
        .map(|b| b.size)
        .ok_or(Refusal(
            VirqStatus::NoSuchBar,
            format!("the device has no BAR {bar}"),
        ))
}

/// Check a BAR access and return its width.
fn bar_access(dev: &VirtioPciDevice, bar: u32, offset: u64, width: u32) -> Result<usize, Refusal> {
    let w = width_of(width, MEMORY_WIDTHS)?;
    let size = bar_size(dev, bar)?;
    if offset.checked_add(w as u64).is_none_or(|end| end > size) {
        return Err(Refusal(
            VirqStatus::OutOfRange,
            format!("BAR {bar} access {offset:#x}+{w} passes its size {size:#x}"),
        ));
    }
    Ok(w)
}

/// A read of `width` (1, 2, 4 or 8) bytes at `offset` inside BAR `bar`, without address
/// decoding (the caller decoded it; Memory Space need not be set). Unimplemented bytes read 0.
/// Side effects as for `virq_mmio_read`.
///
/// Errors: `VIRQ_STATUS_NO_SUCH_BAR`, `VIRQ_STATUS_OUT_OF_RANGE`, `VIRQ_STATUS_BAD_WIDTH`,
/// `VIRQ_STATUS_NULL_POINTER`, `VIRQ_STATUS_BUSY`, `VIRQ_STATUS_POISONED`,
/// `VIRQ_STATUS_PANICKED`.
///
/// # Safety
/// `dev` is a live device; `value` is NULL or valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn virq_bar_read(
    dev: *mut VirqDevice,
    bar: u32,
    offset: u64,
    width: u32,
    value: *mut u64,
) -> VirqStatus {
    with_device(dev, |d| {
        if value.is_null() {
            return refuse(VirqStatus::NullPointer, "value is NULL");
        }
        let w = bar_access(&d.dev, bar, offset, width)?;
        let mut b = [0u8; 8];
        d.dev.bar_read(bar as u8, offset, &mut b[..w]);
        // SAFETY: `value` is valid for a write (this function's contract; NULL refused above).
        unsafe { put(value, u64::from_le_bytes(b), "value") }
    })
}

/// A write of the low `width` (1, 2, 4 or 8) bytes of `value` at `offset` inside BAR `bar`,
/// without address decoding. Side effects as for `virq_mmio_write`.
///
/// Errors: `VIRQ_STATUS_NO_SUCH_BAR`, `VIRQ_STATUS_OUT_OF_RANGE`, `VIRQ_STATUS_BAD_WIDTH`,
/// `VIRQ_STATUS_INVALID_ARGUMENT`, `VIRQ_STATUS_NULL_POINTER`, `VIRQ_STATUS_BUSY`,
/// `VIRQ_STATUS_POISONED`, `VIRQ_STATUS_PANICKED`.
///
/// # Safety
/// `dev` is a live device.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn virq_bar_write(
    dev: *mut VirqDevice,
    bar: u32,
    offset: u64,
    width: u32,
    value: u64,
) -> VirqStatus {
    with_device(dev, |d| {
        let w = bar_access(&d.dev, bar, offset, width)?;
        let b = value_bytes(value, w)?;
        d.dev.bar_write(bar as u8, offset, &b[..w]);
        Ok(())
    })
}

/// The host changed the device configuration (a disk resize, a link change):
/// `config_generation` moves and, once the driver set DRIVER_OK, a configuration change
/// interrupt is sent (`msix_config`'s vector, or ISR bit 1 and INTx; virtio 1.2, 4.1.4.3.1).
///
/// Errors: `VIRQ_STATUS_NULL_POINTER`, `VIRQ_STATUS_BUSY`, `VIRQ_STATUS_POISONED`,
/// `VIRQ_STATUS_PANICKED`.
///
/// # Safety
/// `dev` is a live device.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn virq_config_change(dev: *mut VirqDevice) -> VirqStatus {
    with_device(dev, |d| {
        d.dev.config_changed();
        Ok(())
    })
}

/// A device reset from the host side, the same as the driver writing 0 to `device_status`
/// (virtio 1.2, 2.4): every vector selector back to NO_VECTOR, queues disabled, ISR cleared,
/// INTx lowered, pending messages withdrawn. PCI state (BARs, Command, the MSI-X table and its
/// masks) is kept, as on a virtio reset.
///
/// Errors: `VIRQ_STATUS_NULL_POINTER`, `VIRQ_STATUS_BUSY`, `VIRQ_STATUS_POISONED`,
/// `VIRQ_STATUS_PANICKED`.
///
/// # Safety
/// `dev` is a live device.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn virq_device_reset(dev: *mut VirqDevice) -> VirqStatus {
    with_device(dev, |d| {
        d.dev.reset();
        Ok(())
    })
}

/// Write the device's snapshot (everything interrupt-relevant: configuration space, MSI-X
/// table and PBA, vector selectors, ISR, queues, the device type's state; not guest RAM and
/// not the disk image) into `buf` as a JSON document followed by a NUL byte.
/// `*len` receives the JSON's length without the NUL, also when the buffer is too small, so
/// a caller may ask first with `buf` NULL and `capacity` 0. The caller owns `buf`.
///
/// Errors: `VIRQ_STATUS_BUFFER_TOO_SMALL` (needs `*len + 1` bytes; nothing written),
/// `VIRQ_STATUS_NULL_POINTER` (`len`, or `buf` with a non-zero capacity),
/// `VIRQ_STATUS_BUSY`, `VIRQ_STATUS_POISONED`, `VIRQ_STATUS_PANICKED`.
///
/// # Safety
/// `dev` is a live device; `buf` is NULL or writable for `capacity` bytes; `len` is NULL or
/// valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn virq_snapshot(
    dev: *mut VirqDevice,
    buf: *mut c_char,
    capacity: usize,
    len: *mut usize,
) -> VirqStatus {
    with_device(dev, |d| {
        if len.is_null() {
            return refuse(VirqStatus::NullPointer, "len is NULL");
        }
        let json = serde_json::to_vec(&d.dev.snapshot())
            .map_err(|e| Refusal(VirqStatus::SnapshotJson, e.to_string()))?;
        // SAFETY: `len` is valid for a write (contract; NULL refused above).
        unsafe { put(len, json.len(), "len") }?;
        if capacity < json.len() + 1 {
            return refuse(
                VirqStatus::BufferTooSmall,
                format!(
                    "the snapshot needs {} bytes, the buffer holds {capacity}",
                    json.len() + 1
                ),
            );
        }
        if buf.is_null() {
            return refuse(VirqStatus::NullPointer, "buf is NULL");
        }
        // SAFETY: `buf` is writable for `capacity >= json.len() + 1` bytes (contract) and is
        // the caller's memory, disjoint from `json`.
        unsafe {
            std::ptr::copy_nonoverlapping(json.as_ptr(), buf.cast::<u8>(), json.len());
            *buf.add(json.len()) = 0;
        }
        Ok(())
    })
}

/// Restore a snapshot written by `virq_snapshot` of a device built with the same
/// configuration. The whole snapshot is checked against this device first; a refusal changes
/// nothing and names the first field that does not fit (`virq_last_error`). After a restore
/// the INTx level is re-announced through the `intx` callback if it changed; messages held in
/// the PBA stay pending until unmasked; notifications that waited for Bus Master Enable still
/// wait. `json` (`len` bytes, no NUL needed) stays the caller's.
///
/// Errors: `VIRQ_STATUS_SNAPSHOT_JSON` and every `VIRQ_STATUS_SNAPSHOT_*` refusal,
/// `VIRQ_STATUS_NULL_POINTER`, `VIRQ_STATUS_BUSY`, `VIRQ_STATUS_POISONED`,
/// `VIRQ_STATUS_PANICKED`.
///
/// # Safety
/// `dev` is a live device; `json` is NULL or readable for `len` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn virq_restore(
    dev: *mut VirqDevice,
    json: *const c_char,
    len: usize,
) -> VirqStatus {
    with_device(dev, |d| {
        if json.is_null() {
            return refuse(VirqStatus::NullPointer, "json is NULL");
        }
        // SAFETY: `json` is readable for `len` bytes (this function's contract) and stays
        // unchanged during the call.
        let text = unsafe { std::slice::from_raw_parts(json.cast::<u8>(), len) };
        let snap: virq_device::DeviceSnapshot = serde_json::from_slice(text)
            .map_err(|e| Refusal(VirqStatus::SnapshotJson, e.to_string()))?;
        d.dev.restore(&snap).map_err(restore_refusal)
    })
}

fn restore_refusal(e: DeviceError) -> Refusal {
    use SnapshotError as E;
    use VirqStatus as S;
    let status = match &e {
        DeviceError::Snapshot(s) => match s {
            E::QueueCount { .. } => S::SnapshotQueueCount,
            E::ConfigSpaceLength(_) => S::SnapshotConfigSpaceLength,
            E::ReadOnlyConfig { .. } => S::SnapshotReadOnlyConfig,
            E::MsixTableSize { .. } => S::SnapshotMsixTableSize,
            E::PbaShape { .. } => S::SnapshotPbaShape,
            E::Features { .. } => S::SnapshotFeatures,
            E::DeviceStatus(_) => S::SnapshotDeviceStatus,
            E::IsrStatus(_) => S::SnapshotIsrStatus,
            E::Vector { .. } => S::SnapshotVector,
            E::QueueMaxSize { .. } => S::SnapshotQueueMaxSize,
            E::QueueSize { .. } => S::SnapshotQueueSize,
            E::QueueRings { .. } => S::SnapshotQueueRings,
            E::DeliverablePending { .. } => S::SnapshotDeliverablePending,
            E::DeferredNotify { .. } => S::SnapshotDeferredNotify,
        },
        DeviceError::Backend(_) => S::SnapshotBackend,
        DeviceError::Layout(_) | DeviceError::QueueSize { .. } | DeviceError::NoQueues => {
            S::InvalidArgument
        }
    };
    Refusal(status, e.to_string())
}

/// Move recorded events into `buf` as JSON lines (one `virq_events::Event` object per line,
/// each ending in `\n`), oldest first, as many whole lines as fit; the drained events are
/// removed. `*written` receives the bytes written (no NUL is added); `*remaining` (may be
/// NULL) the events still waiting. Without `VIRQ_FLAG_RECORD_EVENTS` (or with an `event`
/// callback, which takes every event) nothing is ever waiting. The caller owns `buf`.
///
/// Errors: `VIRQ_STATUS_BUFFER_TOO_SMALL` when not even the oldest line fits (`*written` then
/// holds the bytes that line needs), `VIRQ_STATUS_NULL_POINTER` (`written`, or `buf` with a
/// non-zero capacity), `VIRQ_STATUS_BUSY`, `VIRQ_STATUS_POISONED`, `VIRQ_STATUS_PANICKED`.
///
/// # Safety
/// `dev` is a live device; `buf` is NULL or writable for `capacity` bytes; `written` and
/// `remaining` are NULL or valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn virq_events_drain(
    dev: *mut VirqDevice,
    buf: *mut c_char,
    capacity: usize,
    written: *mut usize,
    remaining: *mut usize,
) -> VirqStatus {
    with_device(dev, |d| {
        if written.is_null() {
            return refuse(VirqStatus::NullPointer, "written is NULL");
        }
        if buf.is_null() && capacity > 0 {
            return refuse(VirqStatus::NullPointer, "buf is NULL");
        }
        d.collect_events();
        let mut at = 0usize;
        while let Some(line) = d.lines.front() {
            let bytes = line.as_bytes();
            if at + bytes.len() + 1 > capacity {
                break;
            }
            // SAFETY: `buf` is writable for `capacity` bytes (contract) and
            // `at + bytes.len() + 1 <= capacity`; the caller's buffer is disjoint from `line`.
            unsafe {
                let dst = buf.cast::<u8>().add(at);
                std::ptr::copy_nonoverlapping(bytes.as_ptr(), dst, bytes.len());
                *dst.add(bytes.len()) = b'\n';
            }
            at += bytes.len() + 1;
            d.lines.pop_front();
        }
        let needed = d.lines.front().map(|l| l.as_bytes().len() + 1);
        if !remaining.is_null() {
            // SAFETY: `remaining` is non-NULL and valid for a write (contract).
            unsafe { put(remaining, d.lines.len(), "remaining") }?;
        }
        match needed {
            Some(n) if at == 0 => {
                // SAFETY: `written` is valid for a write (contract; NULL refused above).
                unsafe { put(written, n, "written") }?;
                refuse(
                    VirqStatus::BufferTooSmall,
                    format!("the oldest event line needs {n} bytes, the buffer holds {capacity}"),
                )
            }
            // SAFETY: as above.
            _ => unsafe { put(written, at, "written") },
        }
    })
}

/// Events the log did not keep because `VIRQ_EVENT_CAPACITY` were waiting undrained.
///
/// Errors: `VIRQ_STATUS_NULL_POINTER`, `VIRQ_STATUS_BUSY`, `VIRQ_STATUS_POISONED`,
/// `VIRQ_STATUS_PANICKED`.
///
/// # Safety
/// `dev` is a live device; `dropped` is NULL or valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn virq_events_dropped(
    dev: *mut VirqDevice,
    dropped: *mut u64,
) -> VirqStatus {
    with_device(dev, |d| {
        let n = d.log.as_ref().map_or(0, |l| l.dropped());
        // SAFETY: `dropped` is NULL or valid for a write (this function's contract).
        unsafe { put(dropped, n, "dropped") }
    })
}

/// Copy `len` bytes of the virtio-blk disk at byte `offset` into `buf` (the caller's), to
/// check what a driver wrote without reading it back through the driver.
///
/// Errors: `VIRQ_STATUS_NOT_BLOCK`, `VIRQ_STATUS_OUT_OF_RANGE` (past the disk's end),
/// `VIRQ_STATUS_NULL_POINTER` (`buf` with a non-zero `len`), `VIRQ_STATUS_BUSY`,
/// `VIRQ_STATUS_POISONED`, `VIRQ_STATUS_PANICKED`.
///
/// # Safety
/// `dev` is a live device; `buf` is NULL or writable for `len` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn virq_disk_read(
    dev: *mut VirqDevice,
    offset: u64,
    buf: *mut u8,
    len: usize,
) -> VirqStatus {
    with_device(dev, |d| {
        let Some(disk) = &d.disk else {
            return refuse(VirqStatus::NotBlock, "the device is not virtio-blk");
        };
        if len == 0 {
            return Ok(());
        }
        if buf.is_null() {
            return refuse(VirqStatus::NullPointer, "buf is NULL");
        }
        let mut bytes = vec![0u8; len];
        if !disk.read(offset, &mut bytes) {
            return refuse(
                VirqStatus::OutOfRange,
                format!("{len} bytes at disk offset {offset:#x} pass the disk's end"),
            );
        }
        // SAFETY: `buf` is writable for `len` bytes (contract) and disjoint from `bytes`.
        unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), buf, len) };
        Ok(())
    })
}

#[cfg(test)]
mod tests;
