//! The compact form of the event kinds a machine records on its interrupt path: three words,
//! no heap data. The log stores them this way (32 bytes with the time stamp), and its lock-free
//! lane carries them as plain atomics.

use std::num::NonZeroU64;

use super::{EventKind, InterruptCause, SuppressReason};

/// An event of an inline kind as three words. `head` holds the kind's tag (never 0) in its
/// low byte, so an `Option<Packed>` or an enum holding a `Packed` costs no extra word.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Packed {
    head: NonZeroU64,
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
    /// `kind` packed; `None` when it is not an inline kind (it carries heap data, or is rare
    /// enough to be boxed). Every inline kind is plain data: dropping or forgetting one after
    /// packing it is the same.
    #[inline(always)]
    pub(crate) fn of(kind: &EventKind) -> Option<Packed> {
        let (head, a, b) = match *kind {
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
            _ => return None,
        };
        // Every tag above is nonzero, so the head is.
        let head = NonZeroU64::new(head).unwrap_or(NonZeroU64::MAX);
        Some(Packed { head, a, b })
    }

    /// The three words, for a lane slot.
    pub(crate) fn words(self) -> [u64; 3] {
        [self.head.get(), self.a, self.b]
    }

    /// Back from [`Packed::words`]; `None` for a head of 0 (not an event).
    pub(crate) fn from_words([head, a, b]: [u64; 3]) -> Option<Packed> {
        Some(Packed {
            head: NonZeroU64::new(head)?,
            a,
            b,
        })
    }

    /// The kind again. A `Packed` comes from [`Packed::of`] (or its words), so the tag is
    /// one of its own.
    pub(crate) fn kind(&self) -> EventKind {
        let Packed { head, a, b } = *self;
        let head = head.get();
        let f = head >> 8;
        match head & 0xFF {
            QUEUE_NOTIFY => EventKind::QueueNotify { queue: f as u16 },
            USED_PUBLISHED => EventKind::UsedPublished {
                queue: f as u16,
                count: (f >> 16) as u16,
            },
            CONFIG_CHANGED => EventKind::ConfigChanged {
                generation: f as u8,
            },
            ISR_READ => EventKind::IsrRead { value: f as u8 },
            MESSAGE_SENT => EventKind::MessageSent {
                cause: cause_of(f >> 16),
                entry: f as u16,
                address: a,
                data: b as u32,
            },
            INTERRUPT_SUPPRESSED => EventKind::InterruptSuppressed {
                cause: cause_of(f >> 16),
                vector: f as u16,
                reason: reason_of(f >> 40),
            },
            PENDING_SET => EventKind::PendingSet { entry: f as u16 },
            PENDING_CLEARED => EventKind::PendingCleared { entry: f as u16 },
            LINE_RAISED => EventKind::LineRaised { pin: f as u8 },
            LINE_LOWERED => EventKind::LineLowered { pin: f as u8 },
            CPU_INTERRUPT => EventKind::CpuInterrupt { vector: f as u8 },
            ISR_RAN => EventKind::IsrRan {
                message_id: opt_u32_of(a),
                claimed: f & 1 != 0,
                isr_status: opt_u8_of(f >> 8),
            },
            _ => EventKind::DpcRan {
                message_id: opt_u32_of(a),
                completions: f as u32,
            },
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
            let p = Packed::of(&kind).expect("an inline kind packs");
            assert_eq!(Packed::from_words(p.words()), Some(p));
            assert_eq!(p.kind(), kind);
        }
    }

    #[test]
    fn kinds_with_heap_data_do_not_pack() {
        assert_eq!(Packed::of(&EventKind::LogLine { text: "x".into() }), None);
        assert_eq!(Packed::of(&EventKind::DeviceReset), None);
        assert_eq!(Packed::from_words([0, 1, 2]), None);
    }
}
