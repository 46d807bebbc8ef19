//! Shared code of the fuzz targets and of the seed-corpus generator (`examples/make_corpus.rs`).
//! Each module's `check`/`run` function panics exactly when a property is violated.

pub mod core;
pub mod kv;
pub mod storage;
pub mod wire;

/// A cursor over fuzz input that yields zeros once the input is exhausted.
pub struct Input<'a> {
    data: &'a [u8],
}

impl<'a> Input<'a> {
    /// A cursor over `data`.
    pub fn new(data: &'a [u8]) -> Self {
        Input { data }
    }

    /// Whether every byte was consumed.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// The next byte (0 when exhausted).
    pub fn u8(&mut self) -> u8 {
        match self.data.split_first() {
            Some((&b, rest)) => {
                self.data = rest;
                b
            }
            None => 0,
        }
    }

    /// A u64 biased towards small values: one byte below 0xF0 is the value itself; otherwise
    /// eight little-endian bytes follow.
    pub fn num(&mut self) -> u64 {
        let b = self.u8();
        if b < 0xF0 {
            return u64::from(b);
        }
        let mut v = [0u8; 8];
        for x in &mut v {
            *x = self.u8();
        }
        u64::from_le_bytes(v)
    }

    /// Up to `max` bytes, length first.
    pub fn bytes(&mut self, max: usize) -> Vec<u8> {
        let n = (self.u8() as usize) % (max + 1);
        let n = n.min(self.data.len());
        let (head, rest) = self.data.split_at(n);
        self.data = rest;
        head.to_vec()
    }
}

/// Writer counterpart of [`Input`], for the corpus generator.
#[derive(Default)]
pub struct Output(pub Vec<u8>);

impl Output {
    /// Appends one byte.
    pub fn u8(&mut self, b: u8) -> &mut Self {
        self.0.push(b);
        self
    }

    /// Appends a number in [`Input::num`]'s encoding.
    pub fn num(&mut self, v: u64) -> &mut Self {
        if v < 0xF0 {
            self.0.push(v as u8);
        } else {
            self.0.push(0xFF);
            self.0.extend_from_slice(&v.to_le_bytes());
        }
        self
    }

    /// Appends bytes in [`Input::bytes`]'s encoding (`b.len()` must not exceed the reader's max).
    pub fn bytes(&mut self, b: &[u8]) -> &mut Self {
        self.0.push(b.len() as u8);
        self.0.extend_from_slice(b);
        self
    }
}
