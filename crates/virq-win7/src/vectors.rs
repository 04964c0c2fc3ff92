//! An x64 APIC/IDT vector allocator in the spirit of the Windows 7 HAL.
//!
//! Device interrupts get IDT vectors in the `0x5x`-`0xBx` priority classes only: the upper
//! nibble of a vector is its APIC priority class and, on x64, its IRQL (`DIRQL = vector >>
//! 4`), so a device runs at IRQL 5-11. The classes above belong to the system (`0xC1` the
//! broadcast call, `0xD1` the clock at CLOCK_LEVEL 13, `0xE1` the IPI, `0xFD`-`0xFF` profile,
//! perf and spurious): a window reaching into them is refused. The allocator deals vectors
//! round-robin across priority classes, highest class first, so consecutive messages land on
//! different IRQLs and the numbers look nothing like the 0-based `MessageNumber` the same
//! message carries (catalogue row 3).

use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use thiserror::Error;

/// An IDT vector.
pub type IdtVector = u8;
/// An interrupt request level.
pub type Irql = u8;

/// Lowest device vector of the default window (class 5: IRQL 5).
pub const DEFAULT_LOWEST_VECTOR: IdtVector = 0x50;
/// Highest device vector of the default window (class 0xB: IRQL 11).
pub const DEFAULT_HIGHEST_VECTOR: IdtVector = 0xBF;
/// The highest IRQL a device interrupt runs at on Windows 7 x64 (the `0xBx` class).
pub const MAX_DEVICE_IRQL: Irql = 11;
/// Vectors the x64 HAL keeps for itself: the broadcast call (`0xC1`), the clock (`0xD1`,
/// CLOCK_LEVEL 13), the IPI (`0xE1`), profile, perf and spurious (`0xFD`-`0xFF`).
pub const SYSTEM_VECTORS: [IdtVector; 6] = [0xC1, 0xD1, 0xE1, 0xFD, 0xFE, 0xFF];

/// Whether a vector lies in the classes Windows hands to devices (`0x50..=0xBF`).
pub const fn is_device_vector(vector: IdtVector) -> bool {
    vector >= DEFAULT_LOWEST_VECTOR && vector <= DEFAULT_HIGHEST_VECTOR
}

/// IRQL a device interrupt on `vector` runs at (x64: the APIC priority class).
pub const fn irql_for_vector(vector: IdtVector) -> Irql {
    vector >> 4
}

/// One vector handed out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct AllocatedVector {
    /// The IDT vector.
    pub vector: IdtVector,
    /// Its IRQL (the vector's priority class).
    pub irql: Irql,
}

/// Why the allocator refused.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum VectorError {
    /// Fewer free vectors than asked for.
    #[error("no free IDT vectors: {requested} requested, {available} available")]
    Exhausted {
        /// Vectors asked for.
        requested: usize,
        /// Vectors free.
        available: usize,
    },
    /// Freeing a vector that was not handed out.
    #[error("vector {vector:#04x} is not allocated")]
    NotAllocated {
        /// The vector.
        vector: IdtVector,
    },
    /// A vector outside the allocator's window.
    #[error("vector {vector:#04x} is outside the device window")]
    OutOfRange {
        /// The vector.
        vector: IdtVector,
    },
    /// A window with no vector in it.
    #[error("empty vector window {lowest:#04x}..={highest:#04x}")]
    EmptyWindow {
        /// First vector of the window.
        lowest: IdtVector,
        /// Last vector of the window.
        highest: IdtVector,
    },
    #[error(
        "vector window {lowest:#04x}..={highest:#04x} leaves the device classes 0x50..=0xbf (IRQL 5-11)"
    )]
    /// A window reaching below 0x50 or above 0xBF, where device interrupts do not live.
    OutsideDeviceClasses {
        /// First vector of the window.
        lowest: IdtVector,
        /// Last vector of the window.
        highest: IdtVector,
    },
}

/// Deterministic vector allocator over a window of IDT vectors.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VectorAllocator {
    order: Vec<IdtVector>,
    used: BTreeSet<IdtVector>,
}

impl Default for VectorAllocator {
    fn default() -> Self {
        Self::new(DEFAULT_LOWEST_VECTOR, DEFAULT_HIGHEST_VECTOR).expect("default window is valid")
    }
}

impl VectorAllocator {
    /// An allocator over `lowest..=highest`, which must lie in the device classes.
    pub fn new(lowest: IdtVector, highest: IdtVector) -> Result<Self, VectorError> {
        if lowest > highest {
            return Err(VectorError::EmptyWindow { lowest, highest });
        }
        if !is_device_vector(lowest) || !is_device_vector(highest) {
            return Err(VectorError::OutsideDeviceClasses { lowest, highest });
        }
        let mut order = Vec::new();
        // Offset 0 of each class goes last: the HAL keeps the class base for itself first.
        let offsets = (1..16u8).chain(std::iter::once(0));
        for offset in offsets {
            for class in (lowest >> 4..=highest >> 4).rev() {
                let v = (class << 4) | offset;
                if (lowest..=highest).contains(&v) {
                    order.push(v);
                }
            }
        }
        Ok(Self {
            order,
            used: BTreeSet::new(),
        })
    }

    /// Vectors still free.
    pub fn available(&self) -> usize {
        self.order.len() - self.used.len()
    }

    /// Every vector of the window, in the order they are dealt.
    pub fn order(&self) -> &[IdtVector] {
        &self.order
    }

    /// Whether `vector` is handed out.
    pub fn is_allocated(&self, vector: IdtVector) -> bool {
        self.used.contains(&vector)
    }

    /// The next free vector in dealing order.
    pub fn allocate(&mut self) -> Result<AllocatedVector, VectorError> {
        let vector = self
            .order
            .iter()
            .copied()
            .find(|v| !self.used.contains(v))
            .ok_or(VectorError::Exhausted {
                requested: 1,
                available: 0,
            })?;
        self.used.insert(vector);
        Ok(AllocatedVector {
            vector,
            irql: irql_for_vector(vector),
        })
    }

    /// `count` vectors or none at all.
    pub fn allocate_many(&mut self, count: usize) -> Result<Vec<AllocatedVector>, VectorError> {
        let available = self.available();
        if count > available {
            return Err(VectorError::Exhausted {
                requested: count,
                available,
            });
        }
        (0..count).map(|_| self.allocate()).collect()
    }

    /// Mark a vector as taken by someone else (another device, a fixed system vector).
    pub fn reserve(&mut self, vector: IdtVector) -> Result<(), VectorError> {
        if !self.order.contains(&vector) {
            return Err(VectorError::OutOfRange { vector });
        }
        self.used.insert(vector);
        Ok(())
    }

    /// Give a vector back (device stop, rebalance).
    pub fn free(&mut self, vector: IdtVector) -> Result<(), VectorError> {
        if self.used.remove(&vector) {
            Ok(())
        } else {
            Err(VectorError::NotAllocated { vector })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deals_across_priority_classes_highest_first() {
        let mut a = VectorAllocator::default();
        let got: Vec<_> = a
            .allocate_many(4)
            .unwrap()
            .iter()
            .map(|v| (v.vector, v.irql))
            .collect();
        assert_eq!(got, [(0xB1, 0xB), (0xA1, 0xA), (0x91, 0x9), (0x81, 0x8)]);
    }

    #[test]
    fn vectors_are_distinct_and_exhaust_cleanly() {
        let mut a = VectorAllocator::default();
        assert_eq!(a.available(), 0xBF - 0x50 + 1);
        let all = a.allocate_many(a.available()).unwrap();
        let set: BTreeSet<_> = all.iter().map(|v| v.vector).collect();
        assert_eq!(set.len(), all.len());
        assert!(set.iter().all(|v| (0x50..=0xBF).contains(v)));
        assert!(all.iter().all(|v| v.irql == v.vector >> 4));
        // No device IRQL above 11, no system vector, whatever was dealt.
        assert!(all.iter().all(|v| (5..=MAX_DEVICE_IRQL).contains(&v.irql)));
        assert!(SYSTEM_VECTORS.iter().all(|s| !set.contains(s)));
        assert_eq!(
            a.allocate(),
            Err(VectorError::Exhausted {
                requested: 1,
                available: 0
            })
        );
    }

    #[test]
    fn allocate_many_is_all_or_nothing_and_free_reuses() {
        let mut a = VectorAllocator::new(0x50, 0x53).unwrap();
        a.allocate().unwrap();
        assert_eq!(
            a.allocate_many(4),
            Err(VectorError::Exhausted {
                requested: 4,
                available: 3
            })
        );
        assert_eq!(a.available(), 3);
        let v = a.allocate().unwrap().vector;
        a.free(v).unwrap();
        assert_eq!(a.allocate().unwrap().vector, v);
        assert_eq!(
            a.free(0x99),
            Err(VectorError::NotAllocated { vector: 0x99 })
        );
    }

    #[test]
    fn reserve_and_window_errors() {
        let mut a = VectorAllocator::default();
        a.reserve(0xB1).unwrap();
        assert_eq!(a.allocate().unwrap().vector, 0xA1);
        assert_eq!(
            a.reserve(0x20),
            Err(VectorError::OutOfRange { vector: 0x20 })
        );
        assert_eq!(
            a.reserve(0xD1),
            Err(VectorError::OutOfRange { vector: 0xD1 })
        );
        assert!(VectorAllocator::new(0x60, 0x50).is_err());
        // The clock's class, and the exception vectors below 0x50, are not a device's.
        for (lo, hi) in [(0x50, 0xD1), (0x30, 0x5F), (0xC0, 0xCF)] {
            assert_eq!(
                VectorAllocator::new(lo, hi),
                Err(VectorError::OutsideDeviceClasses {
                    lowest: lo,
                    highest: hi
                })
            );
        }
    }
}
