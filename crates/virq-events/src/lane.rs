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

use super::compact::Packed;

/// Slots per lane: the owner takes the lock (to flush) once per this many events at most
/// when nobody reads in between.
pub(crate) const LANE_SLOTS: usize = 256;

/// This thread's number for lane ownership: never 0, never reused (unlike a thread's
/// address), so "the owner is me" cannot be true of two live threads.
#[inline(always)]
fn thread_number() -> u64 {
    match NUMBER.with(Cell::get) {
        0 => first_thread_number(),
        n => n,
    }
}

thread_local! {
    static NUMBER: Cell<u64> = const { Cell::new(0) };
}

/// A thread's first [`thread_number`]: once per thread, out of the append's way.
#[cold]
#[inline(never)]
fn first_thread_number() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    NUMBER.with(|c| c.set(n));
    n
}

/// One event in the ring: `[head, time_ns, a, b]`.
#[derive(Default)]
pub(crate) struct Slot([AtomicU64; 4]);

impl Slot {
    /// The event a written slot holds, with its time stamp.
    #[inline(always)]
    pub(crate) fn event(&self) -> (u64, Packed) {
        let [head, time_ns, a, b] = &self.0;
        let words = [
            head.load(Ordering::Relaxed),
            a.load(Ordering::Relaxed),
            b.load(Ordering::Relaxed),
        ];
        // Every slot before the write count holds the words of a `Packed` (`try_push`), whose
        // head is never 0; an event is never skipped here, so none goes uncounted.
        let p = Packed::from_words(words).expect("a written slot holds a packed event");
        (time_ns.load(Ordering::Relaxed), p)
    }
}

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
    #[inline(always)]
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
    #[inline(always)]
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
        let [head, a, b] = p.words();
        slot[0].store(head, Ordering::Relaxed);
        slot[1].store(time_ns, Ordering::Relaxed);
        slot[2].store(a, Ordering::Relaxed);
        slot[3].store(b, Ordering::Relaxed);
        // Release: whoever sees the new count sees the slot.
        self.written.store(w.wrapping_add(1), Ordering::Release);
        Ok(())
    }

    /// Hand the events written and not yet flushed, oldest first, to `absorb`; they are
    /// gone from the lane afterwards, whether `absorb` took them all or not. The caller holds
    /// the log's lock, so flushes never overlap.
    pub(crate) fn flush(&self, absorb: impl FnOnce(Pending<'_>)) {
        let end = self.written.load(Ordering::Acquire);
        // Only flushes write `flushed`, one at a time under the log's lock.
        let at = self.flushed.load(Ordering::Relaxed);
        if at != end {
            // The producer never runs more than the ring ahead of the flushes (`try_push`).
            let n = end.wrapping_sub(at).min(LANE_SLOTS);
            let start = at % LANE_SLOTS;
            let first = n.min(LANE_SLOTS - start);
            absorb(Pending {
                runs: [&self.slots[start..start + first], &self.slots[..n - first]],
            });
            // Release: the slots were read before the producer may write them again.
            self.flushed.store(end, Ordering::Release);
        }
    }
}

/// The events a flush hands over, oldest first, with their time stamps: the written slots
/// not yet flushed, as the two runs of the ring they occupy (the second is empty unless they
/// wrap), so the log can copy them in bulk.
pub(crate) struct Pending<'a> {
    runs: [&'a [Slot]; 2],
}

impl<'a> Pending<'a> {
    /// How many events there are.
    pub(crate) fn len(&self) -> usize {
        self.runs[0].len() + self.runs[1].len()
    }

    /// The slots, oldest first, in two runs.
    pub(crate) fn into_runs(self) -> [&'a [Slot]; 2] {
        self.runs
    }
}

impl Iterator for Pending<'_> {
    type Item = (u64, Packed);

    #[inline]
    fn next(&mut self) -> Option<(u64, Packed)> {
        if self.runs[0].is_empty() {
            self.runs.swap(0, 1);
        }
        let (slot, rest) = self.runs[0].split_first()?;
        self.runs[0] = rest;
        Some(slot.event())
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.len(), Some(self.len()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::EventKind;

    #[test]
    fn a_full_lane_refuses_and_a_flush_empties_it_in_order() {
        let lane = Lane::new();
        let p = |v: u8| Packed::of(&EventKind::CpuInterrupt { vector: v }).unwrap();
        let mut seen = Vec::new();
        // Twice round the ring, so slots are reused.
        for round in 0..3u64 {
            for i in 0..LANE_SLOTS {
                lane.try_push(round + i as u64, p(i as u8)).unwrap();
            }
            assert_eq!(lane.try_push(9, p(9)), Err(p(9)), "full");
            seen.clear();
            lane.flush(|events| seen.extend(events));
            assert_eq!(seen.len(), LANE_SLOTS);
            assert!(
                seen.iter()
                    .enumerate()
                    .all(|(i, &(t, q))| t == round + i as u64 && q == p(i as u8))
            );
        }
        lane.try_push(7, p(7)).unwrap();
        seen.clear();
        lane.flush(|events| seen.extend(events));
        lane.flush(|events| seen.extend(events));
        assert_eq!(seen, vec![(7, p(7))], "flushed once");
    }

    #[test]
    fn only_the_first_thread_to_push_writes_the_lane() {
        let lane = Lane::new();
        let p = Packed::of(&EventKind::CpuInterrupt { vector: 0x41 }).unwrap();
        lane.try_push(1, p).unwrap();
        std::thread::scope(|s| {
            s.spawn(|| assert_eq!(lane.try_push(2, p), Err(p), "another thread"));
        });
        lane.try_push(3, p).unwrap();
        let mut seen = Vec::new();
        lane.flush(|events| seen.extend(events.map(|(t, _)| t)));
        assert_eq!(seen, vec![1, 3]);
    }
}
