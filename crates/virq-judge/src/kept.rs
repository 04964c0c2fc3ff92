//! Bounded lists: the judge keeps every piece of evidence a rule needs wherever it appears in a
//! file, but never an unbounded number of them. A list past its bound keeps its first and last
//! items and counts what it let go, so a rule can answer "cannot tell" instead of guessing.

use std::collections::VecDeque;

/// The first `head` and the last `tail` items pushed, with the count of everything pushed.
#[derive(Clone, Debug)]
pub struct Kept<T> {
    head: Vec<T>,
    tail: VecDeque<T>,
    head_cap: usize,
    tail_cap: usize,
    total: u64,
}

impl<T> Kept<T> {
    pub fn new(head_cap: usize, tail_cap: usize) -> Self {
        Kept {
            head: Vec::new(),
            tail: VecDeque::new(),
            head_cap,
            tail_cap,
            total: 0,
        }
    }

    pub fn push(&mut self, item: T) {
        self.total += 1;
        if self.head.len() < self.head_cap {
            self.head.push(item);
            return;
        }
        if self.tail_cap == 0 {
            return;
        }
        if self.tail.len() == self.tail_cap {
            self.tail.pop_front();
        }
        self.tail.push_back(item);
    }

    /// Everything kept, in push order (the head, then the tail).
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = &T> + Clone {
        self.head.iter().chain(self.tail.iter())
    }

    pub fn first(&self) -> Option<&T> {
        self.head.first()
    }

    pub fn last(&self) -> Option<&T> {
        self.tail.back().or_else(|| self.head.last())
    }

    /// An empty list with the same bounds.
    pub fn empty_like(&self) -> Self {
        Kept::new(self.head_cap, self.tail_cap)
    }

    /// Counts items let go elsewhere (when two lists are merged).
    pub fn add_dropped(&mut self, n: u64) {
        self.total += n;
    }

    pub fn last_mut(&mut self) -> Option<&mut T> {
        if self.tail.is_empty() {
            self.head.last_mut()
        } else {
            self.tail.back_mut()
        }
    }

    pub fn is_empty(&self) -> bool {
        self.total == 0
    }

    /// How many were pushed but not kept.
    pub fn dropped(&self) -> u64 {
        self.total - (self.head.len() + self.tail.len()) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_head_and_tail_and_counts_the_rest() {
        let mut k = Kept::new(3, 2);
        for i in 0..10 {
            k.push(i);
        }
        assert_eq!(k.iter().copied().collect::<Vec<_>>(), vec![0, 1, 2, 8, 9]);
        assert_eq!(k.dropped(), 5);
        assert_eq!((k.first(), k.last()), (Some(&0), Some(&9)));
        let mut small = Kept::new(3, 2);
        small.push(7);
        assert_eq!(small.last(), Some(&7));
        assert_eq!(small.dropped(), 0);
    }
}
