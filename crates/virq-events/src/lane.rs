//! The lock-free front of an [`EventLog`](super::EventLog): where interrupt-path events land.
//!
//! A machine records three or four events per interrupt, and behind a mutex each cost two
//! locked instructions and about 140 more. Here an event of a kind that carries no heap data
//! is packed into three words and written into a ring of pre-allocated slots, the [`Lane`],
//! with plain stores and a release store of the write count: no lock and no locked
//! instruction. The lane has one producer, the first thread that records an inline event (a
//! simulated machine's CPU loop, say); every other thread takes the log's lock as before. The
//! lock holder moves the lane's events into the log's storage before it reads or appends
//! ([`Lane::flush`]), so the log keeps the order of the calls:
//!
//! * the owner's events among themselves: the ring is FIFO;
//! * an owner's event that happened before another thread's: the other thread's flush sees
//!   it (the write count is released after the slot and acquired by the flush);
//! * another thread's event that happened before an owner's: it is already in the storage
//!   when the owner's lands in the ring, and the ring is appended after.
//!
//! Everything shared is an atomic, so this is sound for any number of threads.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use super::{EventKind, InterruptCause, Rec, SuppressReason};

/// Slots per lane: the owner takes the lock (to flush) once per this many events at most
/// when nobody reads in between.
pub(crate) const LANE_SLOTS: usize = 256;

/// This thread's number for lane ownership: never 0, never reused (unlike a thread's
/// address), so "the owner is me" cannot be true of two live threads.
fn thread_number() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    thread_local! {
        static NUMBER: Cell<u64> = const { Cell::new(0) };
    }
    NUMBER.with(|n| {
        if n.get() == 0 {
            n.set(NEXT.fetch_add(1, Ordering::Relaxed));
        }
        n.get()
    })
}

/// An event of an inline kind as three words. `head` holds a nonzero tag in its low byte,
/// which is also what marks a [`Slot`] as written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Packed {
    head: u64,
    a: u64,
    b: u64,
}

const QUEUE_NOTIFY: u64 = 1;
const USED_PUBLISHED: u64 = 2;
const CONFIG_CHANGED: u64 = 3;
const ISR_READ: u64 = 4;
const MESSAGE_SENT: u64 = 5;
const INTERRUPT_SUPPRESSED: u64 = 6;
const PENDING_SET: u64 = 7;
const PENDING_CLEARED: u64 = 8;
const LINE_RAISED: u64 = 9;
const LINE_LOWERED: u64 = 10;
const CPU_INTERRUPT: u64 = 11;
const ISR_RAN: u64 = 12;
const DPC_RAN: u64 = 13;

fn cause_bits(cause: InterruptCause) -> u64 {
    match cause {
        InterruptCause::Queue(q) => u64::from(q),
        InterruptCause::ConfigChange => 1 << 16,
        InterruptCause::PendingDelivery => 2 << 16,
    }
}

fn cause_of(bits: u64) -> InterruptCause {
    match (bits >> 16) & 3 {
        0 => InterruptCause::Queue(bits as u16),
        1 => InterruptCause::ConfigChange,
        _ => InterruptCause::PendingDelivery,
    }
}

fn reason_bits(reason: SuppressReason) -> u64 {
    match reason {
        SuppressReason::NoVector => 0,
        SuppressReason::EntryMasked => 1,
        SuppressReason::FunctionMasked => 2,
        SuppressReason::InterruptDisable => 3,
        SuppressReason::AvailNoInterrupt => 4,
        SuppressReason::EventIdx => 5,
        SuppressReason::NotLive => 6,
        SuppressReason::BusMasterDisabled => 7,
    }
}

fn reason_of(bits: u64) -> SuppressReason {
    match bits & 7 {
        0 => SuppressReason::NoVector,
        1 => SuppressReason::EntryMasked,
        2 => SuppressReason::FunctionMasked,
        3 => SuppressReason::InterruptDisable,
        4 => SuppressReason::AvailNoInterrupt,
        5 => SuppressReason::EventIdx,
        6 => SuppressReason::NotLive,
        _ => SuppressReason::BusMasterDisabled,
    }
}

fn opt_u32_bits(v: Option<u32>) -> u64 {
    v.map_or(0, |v| 1 << 32 | u64::from(v))
}

fn opt_u32_of(bits: u64) -> Option<u32> {
    (bits >> 32 & 1 != 0).then_some(bits as u32)
}

fn opt_u8_bits(v: Option<u8>) -> u64 {
    v.map_or(0, |v| 0x100 | u64::from(v))
}

fn opt_u8_of(bits: u64) -> Option<u8> {
    (bits & 0x100 != 0).then_some(bits as u8)
}

impl Packed {
    /// `kind` packed, or given back when it is not an inline kind (it carries heap data, or
    /// is rare enough to be boxed).
    #[inline]
    pub(crate) fn of(kind: EventKind) -> Result<Packed, EventKind> {
        let (head, a, b) = match kind {
            EventKind::QueueNotify { queue } => (QUEUE_NOTIFY | u64::from(queue) << 8, 0, 0),
            EventKind::UsedPublished { queue, count } => (
                USED_PUBLISHED | u64::from(queue) << 8 | u64::from(count) << 24,
                0,
                0,
            ),
            EventKind::ConfigChanged { generation } => {
                (CONFIG_CHANGED | u64::from(generation) << 8, 0, 0)
            }
            EventKind::IsrRead { value } => (ISR_READ | u64::from(value) << 8, 0, 0),
            EventKind::MessageSent {
                cause,
                entry,
                address,
                data,
            } => (
                MESSAGE_SENT | u64::from(entry) << 8 | cause_bits(cause) << 24,
                address,
                u64::from(data),
            ),
            EventKind::InterruptSuppressed {
                cause,
                vector,
                reason,
            } => (
                INTERRUPT_SUPPRESSED
                    | u64::from(vector) << 8
                    | cause_bits(cause) << 24
                    | reason_bits(reason) << 48,
                0,
                0,
            ),
            EventKind::PendingSet { entry } => (PENDING_SET | u64::from(entry) << 8, 0, 0),
            EventKind::PendingCleared { entry } => (PENDING_CLEARED | u64::from(entry) << 8, 0, 0),
            EventKind::LineRaised { pin } => (LINE_RAISED | u64::from(pin) << 8, 0, 0),
            EventKind::LineLowered { pin } => (LINE_LOWERED | u64::from(pin) << 8, 0, 0),
            EventKind::CpuInterrupt { vector } => (CPU_INTERRUPT | u64::from(vector) << 8, 0, 0),
            EventKind::IsrRan {
                message_id,
                claimed,
                isr_status,
            } => (
                ISR_RAN | u64::from(claimed) << 8 | opt_u8_bits(isr_status) << 16,
                opt_u32_bits(message_id),
                0,
            ),
            EventKind::DpcRan {
                message_id,
                completions,
            } => (
                DPC_RAN | u64::from(completions) << 8,
                opt_u32_bits(message_id),
                0,
            ),
            other => return Err(other),
        };
        Ok(Packed { head, a, b })
    }

    /// The stored form. Only [`Packed::of`] makes a `Packed`, so the tag is one of its own.
    pub(crate) fn unpack(self) -> Rec {
        let Packed { head, a, b } = self;
        let f = head >> 8;
        match head & 0xFF {
            QUEUE_NOTIFY => Rec::QueueNotify(f as u16),
            USED_PUBLISHED => Rec::UsedPublished(f as u16, (f >> 16) as u16),
            CONFIG_CHANGED => Rec::ConfigChanged(f as u8),
            ISR_READ => Rec::IsrRead(f as u8),
            MESSAGE_SENT => Rec::MessageSent(cause_of(f >> 16), f as u16, a, b as u32),
            INTERRUPT_SUPPRESSED => {
                Rec::InterruptSuppressed(cause_of(f >> 16), f as u16, reason_of(f >> 40))
            }
            PENDING_SET => Rec::PendingSet(f as u16),
            PENDING_CLEARED => Rec::PendingCleared(f as u16),
            LINE_RAISED => Rec::LineRaised(f as u8),
            LINE_LOWERED => Rec::LineLowered(f as u8),
            CPU_INTERRUPT => Rec::CpuInterrupt(f as u8),
            ISR_RAN => Rec::IsrRan(opt_u32_of(a), f & 1 != 0, opt_u8_of(f >> 8)),
            _ => Rec::DpcRan(opt_u32_of(a), f as u32),
        }
    }
}

/// One event in the ring: `[head, time_ns, a, b]`.
#[derive(Default)]
struct Slot([AtomicU64; 4]);

/// A single-producer ring of slots, emptied by whoever holds the log's lock.
pub(crate) struct Lane {
    /// [`thread_number`] of the producer; 0 until the first inline event.
    owner: AtomicU64,
    /// Events written, ever (the producer's count; wraps).
    written: AtomicUsize,
    /// Events moved into the log's storage, ever (the lock holder's count; wraps).
    flushed: AtomicUsize,
    slots: Box<[Slot]>,
}

impl Lane {
    pub(crate) fn new() -> Lane {
        Lane {
            owner: AtomicU64::new(0),
            written: AtomicUsize::new(0),
            flushed: AtomicUsize::new(0),
            slots: (0..LANE_SLOTS).map(|_| Slot::default()).collect(),
        }
    }

    /// Whether this thread is the lane's producer (the first thread to ask becomes it).
    #[inline]
    fn owned_here(&self) -> bool {
        let me = thread_number();
        match self.owner.load(Ordering::Relaxed) {
            0 => self
                .owner
                .compare_exchange(0, me, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok(),
            owner => owner == me,
        }
    }

    /// Append without a lock. Gives the event back when this thread is not the producer or
    /// the ring is full: the caller then takes the log's lock and stores it there.
    #[inline]
    pub(crate) fn try_push(&self, time_ns: u64, p: Packed) -> Result<(), Packed> {
        if !self.owned_here() {
            return Err(p);
        }
        // Only this thread writes `written`.
        let w = self.written.load(Ordering::Relaxed);
        // Acquire: the flush that freed a slot has read it before it is written again.
        if w.wrapping_sub(self.flushed.load(Ordering::Acquire)) >= LANE_SLOTS {
            return Err(p);
        }
        let slot = &self.slots[w % LANE_SLOTS].0;
        slot[0].store(p.head, Ordering::Relaxed);
        slot[1].store(time_ns, Ordering::Relaxed);
        slot[2].store(p.a, Ordering::Relaxed);
        slot[3].store(p.b, Ordering::Relaxed);
        // Release: whoever sees the new count sees the slot.
        self.written.store(w.wrapping_add(1), Ordering::Release);
        Ok(())
    }

    /// Hand every event written and not yet flushed, oldest first, to `store`. The caller
    /// holds the log's lock, so flushes never overlap.
    pub(crate) fn flush(&self, mut store: impl FnMut(u64, Packed)) {
        let end = self.written.load(Ordering::Acquire);
        // Only flushes write `flushed`, one at a time under the log's lock.
        let mut at = self.flushed.load(Ordering::Relaxed);
        while at != end {
            let slot = &self.slots[at % LANE_SLOTS].0;
            let head = slot[0].load(Ordering::Relaxed);
            let time_ns = slot[1].load(Ordering::Relaxed);
            let a = slot[2].load(Ordering::Relaxed);
            let b = slot[3].load(Ordering::Relaxed);
            store(time_ns, Packed { head, a, b });
            at = at.wrapping_add(1);
        }
        // Release: the slots were read before the producer may write them again.
        self.flushed.store(end, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn every_inline_kind() -> Vec<EventKind> {
        let causes = [
            InterruptCause::Queue(0),
            InterruptCause::Queue(u16::MAX),
            InterruptCause::ConfigChange,
            InterruptCause::PendingDelivery,
        ];
        let reasons = [
            SuppressReason::NoVector,
            SuppressReason::EntryMasked,
            SuppressReason::FunctionMasked,
            SuppressReason::InterruptDisable,
            SuppressReason::AvailNoInterrupt,
            SuppressReason::EventIdx,
            SuppressReason::NotLive,
            SuppressReason::BusMasterDisabled,
        ];
        let mut kinds = vec![
            EventKind::QueueNotify { queue: u16::MAX },
            EventKind::UsedPublished {
                queue: 0xABCD,
                count: u16::MAX,
            },
            EventKind::ConfigChanged { generation: 0xFF },
            EventKind::IsrRead { value: 0 },
            EventKind::PendingSet { entry: 0x7FF },
            EventKind::PendingCleared { entry: 1 },
            EventKind::LineRaised { pin: 0xFF },
            EventKind::LineLowered { pin: 16 },
            EventKind::CpuInterrupt { vector: 0xEF },
        ];
        for cause in causes {
            kinds.push(EventKind::MessageSent {
                cause,
                entry: u16::MAX,
                address: u64::MAX,
                data: u32::MAX,
            });
            for reason in reasons {
                kinds.push(EventKind::InterruptSuppressed {
                    cause,
                    vector: 0xFFFF,
                    reason,
                });
            }
        }
        for message_id in [None, Some(0), Some(u32::MAX)] {
            for claimed in [false, true] {
                for isr_status in [None, Some(0), Some(0xFF)] {
                    kinds.push(EventKind::IsrRan {
                        message_id,
                        claimed,
                        isr_status,
                    });
                }
            }
            kinds.push(EventKind::DpcRan {
                message_id,
                completions: u32::MAX,
            });
        }
        kinds
    }

    #[test]
    fn every_inline_kind_packs_and_unpacks_to_itself_with_extreme_fields() {
        for kind in every_inline_kind() {
            let p = Packed::of(kind.clone()).expect("an inline kind packs");
            assert_ne!(p.head & 0xFF, 0, "a packed event marks its slot written");
            assert_eq!(p.unpack().inline_kind(), Some(kind));
        }
    }

    #[test]
    fn kinds_with_heap_data_are_given_back() {
        let kind = EventKind::LogLine { text: "x".into() };
        assert_eq!(Packed::of(kind.clone()), Err(kind));
        assert!(Packed::of(EventKind::DeviceReset).is_err());
    }

    #[test]
    fn a_full_lane_refuses_and_a_flush_empties_it_in_order() {
        let lane = Lane::new();
        let p = |v: u8| Packed::of(EventKind::CpuInterrupt { vector: v }).unwrap();
        let mut seen = Vec::new();
        // Twice round the ring, so slots are reused.
        for round in 0..3u64 {
            for i in 0..LANE_SLOTS {
                lane.try_push(round + i as u64, p(i as u8)).unwrap();
            }
            assert_eq!(lane.try_push(9, p(9)), Err(p(9)), "full");
            seen.clear();
            lane.flush(|t, q| seen.push((t, q)));
            assert_eq!(seen.len(), LANE_SLOTS);
            assert!(
                seen.iter()
                    .enumerate()
                    .all(|(i, &(t, q))| t == round + i as u64 && q == p(i as u8))
            );
        }
        lane.try_push(7, p(7)).unwrap();
        seen.clear();
        lane.flush(|t, q| seen.push((t, q)));
        lane.flush(|t, q| seen.push((t, q)));
        assert_eq!(seen, vec![(7, p(7))], "flushed once");
    }

    #[test]
    fn only_the_first_thread_to_push_writes_the_lane() {
        let lane = Lane::new();
        let p = Packed::of(EventKind::CpuInterrupt { vector: 0x41 }).unwrap();
        lane.try_push(1, p).unwrap();
        std::thread::scope(|s| {
            s.spawn(|| assert_eq!(lane.try_push(2, p), Err(p), "another thread"));
        });
        lane.try_push(3, p).unwrap();
        let mut seen = Vec::new();
        lane.flush(|t, _| seen.push(t));
        assert_eq!(seen, vec![1, 3]);
    }
}
