//! The lock-free front of an [`EventLog`](super::EventLog): where interrupt-path events land.
//!
//! A machine records three or four events per interrupt, and behind a mutex each cost two
//! locked instructions and about 140 more. Here an event of a kind that carries no heap data
//! is packed into three words, and a writer claims a slot of a pre-allocated [`Lane`] with one
//! `fetch_add`, fills it with plain stores and publishes it with a release store of its first
//! word. The log's lock is taken only when the lane is full, and by readers: both move the
//! lane's events, in claim order, into the log's storage ([`Lane::flush`]) before going on.
//!
//! Everything shared is an atomic, so any number of threads may write and read at once; a
//! single-threaded machine sees exactly the order, numbering and time stamps a locked log gave.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use super::{EventKind, InterruptCause, Rec, SuppressReason};

/// Slots per lane: a flush (one lock) every this many events at most.
pub(crate) const LANE_SLOTS: usize = 256;

/// A claim counter at or above this means "being flushed": writers that see it (or a full
/// lane) take the log's lock, which the flusher holds.
const CLOSED: usize = usize::MAX / 2;

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

/// One claimed event: `[head, time_ns, a, b]`. A zero head means not (yet) written.
#[derive(Default)]
struct Slot([AtomicU64; 4]);

impl Slot {
    /// Written by the writer that claimed it; the head goes last, with release, so whoever
    /// sees it also sees the rest.
    #[inline]
    fn fill(&self, time_ns: u64, p: Packed) {
        self.0[1].store(time_ns, Ordering::Relaxed);
        self.0[2].store(p.a, Ordering::Relaxed);
        self.0[3].store(p.b, Ordering::Relaxed);
        self.0[0].store(p.head, Ordering::Release);
    }

    /// The event, once its writer has published it, and the slot emptied for the next round.
    fn take(&self) -> (u64, Packed) {
        let mut spins = 0u32;
        let head = loop {
            let head = self.0[0].load(Ordering::Acquire);
            if head != 0 {
                break head;
            }
            // Claimed but not yet published: its writer is between a few plain stores (no
            // call, no lock), unless the OS preempted it.
            if spins < 64 {
                std::hint::spin_loop();
            } else {
                std::thread::yield_now();
            }
            spins += 1;
        };
        let time_ns = self.0[1].load(Ordering::Relaxed);
        let a = self.0[2].load(Ordering::Relaxed);
        let b = self.0[3].load(Ordering::Relaxed);
        self.0[0].store(0, Ordering::Relaxed);
        (time_ns, Packed { head, a, b })
    }
}

/// Pre-allocated slots and the count of those claimed since the last flush.
pub(crate) struct Lane {
    claimed: AtomicUsize,
    slots: Box<[Slot]>,
}

impl Lane {
    pub(crate) fn new() -> Lane {
        Lane {
            claimed: AtomicUsize::new(0),
            slots: (0..LANE_SLOTS).map(|_| Slot::default()).collect(),
        }
    }

    /// Append without a lock. Gives the event back when the lane is full or being flushed:
    /// the caller then takes the log's lock, flushes and stores it itself.
    #[inline]
    pub(crate) fn try_push(&self, time_ns: u64, p: Packed) -> Result<(), Packed> {
        // Acquire: the flusher's emptying of this slot (released by its reopening store)
        // comes before this writer's stores into it.
        let k = self.claimed.fetch_add(1, Ordering::Acquire);
        match self.slots.get(k) {
            Some(slot) => {
                slot.fill(time_ns, p);
                Ok(())
            }
            None => Err(p),
        }
    }

    /// Hand every claimed event, in claim order, to `store`. Only one flush runs at a time
    /// (the caller holds the log's lock); writers that arrive meanwhile are sent to that lock.
    pub(crate) fn flush(&self, mut store: impl FnMut(u64, Packed)) {
        /// Reopens the lane however the flush ends.
        struct Reopen<'a>(&'a AtomicUsize);
        impl Drop for Reopen<'_> {
            fn drop(&mut self) {
                // Release: the emptied slots are empty for every later claim.
                self.0.store(0, Ordering::Release);
            }
        }
        // AcqRel: claims made before the swap are flushed now; later ones see CLOSED.
        let claimed = self.claimed.swap(CLOSED, Ordering::AcqRel);
        if claimed >= CLOSED {
            // Only a flush closes the lane, under the lock, and it always reopens it.
            debug_assert!(false, "lane found closed");
            self.claimed.store(0, Ordering::Release);
            return;
        }
        let _reopen = Reopen(&self.claimed);
        for slot in self.slots.iter().take(claimed) {
            let (time_ns, p) = slot.take();
            store(time_ns, p);
        }
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
    fn a_full_lane_refuses_and_a_flush_empties_it_in_claim_order() {
        let lane = Lane::new();
        let p = |v: u8| Packed::of(EventKind::CpuInterrupt { vector: v }).unwrap();
        for i in 0..LANE_SLOTS {
            lane.try_push(i as u64, p(i as u8)).unwrap();
        }
        assert_eq!(lane.try_push(9, p(9)), Err(p(9)));
        let mut seen = Vec::new();
        lane.flush(|t, q| seen.push((t, q)));
        assert_eq!(seen.len(), LANE_SLOTS);
        assert!(
            seen.iter()
                .enumerate()
                .all(|(i, &(t, q))| t == i as u64 && q == p(i as u8))
        );
        lane.try_push(7, p(7)).unwrap();
        seen.clear();
        lane.flush(|t, q| seen.push((t, q)));
        assert_eq!(seen, vec![(7, p(7))]);
    }
}
