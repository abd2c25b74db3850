//! Storage for the flow table: chunked slots and recycled boxes.
//!
//! A `Vec` of large slots doubles by copying everything it holds and touching fresh
//! memory twice its size; under 200k live flows that was a tenth of the packet thread.
//! Here slots live in fixed chunks that never move: growing adds one chunk, and a slot's
//! index stays its address for the table's life.
//!
//! Per-flow boxes (TCP and application state) are recycled by a [`Recycler`] instead of
//! going back to the allocator, which returns emptied pages to the kernel and then pays
//! a page fault and a page clear to get them back — a tenth of the packet thread on the
//! benchmark corpus, where flows start and end by the hundred thousand.

use std::ops::{Index, IndexMut};

/// Slots per chunk (a power of two).
const CHUNK_BITS: u32 = 10;
const CHUNK: usize = 1 << CHUNK_BITS;

/// Append-only chunked vector indexed by `usize`.
pub(crate) struct Slab<T> {
    chunks: Vec<Vec<T>>,
    len: usize,
}

impl<T> Default for Slab<T> {
    fn default() -> Self {
        Slab {
            chunks: Vec::new(),
            len: 0,
        }
    }
}

impl<T> Slab<T> {
    /// Appends a slot; returns its index.
    pub(crate) fn push(&mut self, v: T) -> usize {
        if self.len % CHUNK == 0 {
            self.chunks.push(Vec::with_capacity(CHUNK));
        }
        let i = self.len;
        // The last chunk has room: it was created with CHUNK capacity and holds len % CHUNK.
        if let Some(c) = self.chunks.last_mut() {
            c.push(v);
        }
        self.len += 1;
        i
    }

    /// The slot at `i`, if any.
    pub(crate) fn get(&self, i: usize) -> Option<&T> {
        self.chunks.get(i >> CHUNK_BITS)?.get(i & (CHUNK - 1))
    }

    /// The slot at `i`, if any.
    pub(crate) fn get_mut(&mut self, i: usize) -> Option<&mut T> {
        self.chunks
            .get_mut(i >> CHUNK_BITS)?
            .get_mut(i & (CHUNK - 1))
    }
}

impl<T> Index<usize> for Slab<T> {
    type Output = T;
    fn index(&self, i: usize) -> &T {
        &self.chunks[i >> CHUNK_BITS][i & (CHUNK - 1)]
    }
}

impl<T> IndexMut<usize> for Slab<T> {
    fn index_mut(&mut self, i: usize) -> &mut T {
        &mut self.chunks[i >> CHUNK_BITS][i & (CHUNK - 1)]
    }
}

/// A bounded stack of boxes for reuse; each comes back reset to its default.
pub(crate) struct Recycler<T> {
    free: Vec<Box<T>>,
    cap: usize,
}

impl<T: Default> Recycler<T> {
    /// Keeps at most `cap` boxes.
    pub(crate) fn new(cap: usize) -> Self {
        Recycler {
            free: Vec::new(),
            cap,
        }
    }

    /// A box holding `T::default()`.
    pub(crate) fn get(&mut self) -> Box<T> {
        self.free.pop().unwrap_or_default()
    }

    /// Takes a box back, resetting it (and dropping what it held) now.
    pub(crate) fn put(&mut self, mut b: Box<T>) {
        if self.free.len() < self.cap {
            *b = T::default();
            self.free.push(b);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recycled_boxes_come_back_reset_and_bounded() {
        let mut r: Recycler<Vec<u8>> = Recycler::new(1);
        let mut a = r.get();
        a.push(1);
        let addr = &*a as *const Vec<u8>;
        r.put(a);
        r.put(Box::new(vec![2]));
        let b = r.get();
        assert!(b.is_empty());
        assert_eq!(&*b as *const Vec<u8>, addr);
        assert!(r.get().is_empty());
    }

    #[test]
    fn indices_are_stable_across_chunks() {
        let mut s = Slab::default();
        for i in 0..3 * CHUNK + 5 {
            assert_eq!(s.push(i), i);
        }
        assert_eq!(s[CHUNK], CHUNK);
        s[2 * CHUNK + 1] = 7;
        assert_eq!(s.get(2 * CHUNK + 1), Some(&7));
        assert_eq!(s.get(3 * CHUNK + 5), None);
        assert_eq!(s.get_mut(3 * CHUNK + 4).map(|v| *v), Some(3 * CHUNK + 4));
    }
}
