//! A Bloom filter over (Kafka partition, message key) pairs: the processor's memory of which keys the store may
//! hold (processors/recent_keys.py), so that the messageId lookup asks the store only about those. No false
//! negatives; at its capacity ~0.1 % false positives, 2 bytes per pair. Blocked: the 7 probes of a pair fall
//! in one 512-bit block (one cache line), so a lookup costs one memory access per pair, not seven.

use pyo3::buffer::PyBuffer;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

use crate::buffer_slice as slice;

const BITS_PER_PAIR: u64 = 16;
const PROBES: usize = 7; // 9 bits each (a position in the block) from one 64-bit hash
const BLOCK_WORDS: usize = 8; // 512 bits

/// splitmix64's finalizer: message keys are already uniform (MD5), this spreads the partition into them too.
#[inline]
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn same_length(partitions: &[u16], keys: &[u64]) -> PyResult<()> {
    if partitions.len() != keys.len() {
        return Err(PyValueError::new_err("partitions and keys differ in length"));
    }
    Ok(())
}

#[pyclass(module = "eventpipe._explode")]
pub struct KeyFilter {
    words: Vec<u64>,
    count: usize,
    capacity: usize,
}

impl KeyFilter {
    /// The pair's block (its first word) and its bit in each of the block's words: a multiply-shift picks
    /// the block, a second hash the 7 positions in it.
    #[inline]
    fn probes(&self, partition: u16, key: u64) -> (usize, [u64; BLOCK_WORDS]) {
        let h1 = mix(key ^ (partition as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15));
        let blocks = (self.words.len() / BLOCK_WORDS) as u128;
        let block = ((h1 as u128 * blocks) >> 64) as usize * BLOCK_WORDS;
        let h2 = mix(h1 ^ 0xd6e8_feb8_6659_fd93);
        let mut bits = [0u64; BLOCK_WORDS];
        for i in 0..PROBES {
            let b = (h2 >> (9 * i)) & 511;
            bits[(b >> 6) as usize] |= 1u64 << (b & 63);
        }
        (block, bits)
    }

    #[inline]
    fn may_hold(&self, partition: u16, key: u64) -> bool {
        let (block, bits) = self.probes(partition, key);
        let words = &self.words[block..block + BLOCK_WORDS];
        words.iter().zip(bits).all(|(w, b)| w & b == b)
    }
}

#[pymethods]
impl KeyFilter {
    #[new]
    fn new(capacity: usize) -> Self {
        let capacity = capacity.max(1024);
        let blocks = (capacity as u64 * BITS_PER_PAIR).div_ceil(512) as usize;
        KeyFilter { words: vec![0; blocks * BLOCK_WORDS], count: 0, capacity }
    }

    /// Add the pairs of rows ``start..`` until the filter holds its capacity; return the first row not added.
    fn add(&mut self, partitions: PyBuffer<u16>, keys: PyBuffer<u64>, start: usize) -> PyResult<usize> {
        let (ps, ks) = (slice(&partitions), slice(&keys));
        same_length(ps, ks)?;
        let end = ks.len().min(start + (self.capacity - self.count));
        for i in start.min(end)..end {
            let (block, bits) = self.probes(ps[i], ks[i]);
            for (w, b) in self.words[block..block + BLOCK_WORDS].iter_mut().zip(bits) {
                *w |= b;
            }
        }
        self.count += end.saturating_sub(start);
        Ok(end)
    }

    /// Set ``mask[i]`` to 1 for each row whose pair may have been added; a row left alone was certainly not.
    fn mark(&self, partitions: PyBuffer<u16>, keys: PyBuffer<u64>, mask: PyBuffer<u8>) -> PyResult<()> {
        let (ps, ks) = (slice(&partitions), slice(&keys));
        same_length(ps, ks)?;
        if mask.readonly() || mask.item_count() != ks.len() {
            return Err(PyValueError::new_err("mask must be a writable buffer of one byte per row"));
        }
        let out = unsafe { std::slice::from_raw_parts_mut(mask.buf_ptr() as *mut u8, ks.len()) };
        for i in 0..ks.len() {
            if out[i] == 0 && self.may_hold(ps[i], ks[i]) {
                out[i] = 1;
            }
        }
        Ok(())
    }

    #[getter]
    fn count(&self) -> usize {
        self.count
    }

    #[getter]
    fn capacity(&self) -> usize {
        self.capacity
    }

    #[getter]
    fn nbytes(&self) -> usize {
        self.words.len() * 8
    }
}

/// ``(p,k),(p,k),…``: the (partition, key) pairs of the rows whose ``mask`` byte is set, as a ClickHouse tuple
/// list (digits, commas and parentheses only) for ``(kafka_partition, key) IN (…)``.
#[pyfunction]
pub fn pairs_literal(partitions: PyBuffer<u16>, keys: PyBuffer<u64>, mask: PyBuffer<u8>) -> PyResult<String> {
    let (ps, ks, m) = (slice(&partitions), slice(&keys), slice(&mask));
    same_length(ps, ks)?;
    if ks.len() != m.len() {
        return Err(PyValueError::new_err("keys and mask differ in length"));
    }
    let mut out = String::new();
    for i in (0..ks.len()).filter(|&i| m[i] != 0) {
        if !out.is_empty() {
            out.push(',');
        }
        out.push_str(&format!("({},{})", ps[i], ks[i]));
    }
    Ok(out)
}
