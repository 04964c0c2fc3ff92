//! Where virtio-rng's bytes come from.

use std::fs::File;
use std::io::Read;
use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use thiserror::Error;

/// An entropy source failed or cannot take the given state.
#[derive(Debug, Error)]
pub enum EntropyError {
    /// Reading the host source failed.
    #[error("entropy source read failed: {0}")]
    Io(#[from] std::io::Error),
    /// A snapshot state does not belong to this kind of source.
    #[error("entropy source state does not fit: {0}")]
    BadState(String),
}

/// Supplies the bytes a virtio-rng device hands to the guest.
pub trait EntropySource: Send {
    /// Short name stored in snapshots so state is never restored into the wrong kind of source.
    fn kind(&self) -> &'static str;

    /// Fill all of `buf`.
    fn fill(&mut self, buf: &mut [u8]) -> Result<(), EntropyError>;

    /// Reproducible state for snapshots; a source without one returns `Value::Null`.
    fn state(&self) -> Value {
        Value::Null
    }

    /// Continue from a state produced by [`EntropySource::state`].
    fn restore_state(&mut self, _state: &Value) -> Result<(), EntropyError> {
        Ok(())
    }
}

/// Host randomness from `/dev/urandom`, for real guests.
#[derive(Debug)]
pub struct OsEntropy {
    file: File,
}

impl OsEntropy {
    /// Open `/dev/urandom`.
    pub fn open() -> Result<Self, EntropyError> {
        Self::from_path("/dev/urandom")
    }

    /// Read entropy from another character device or file.
    pub fn from_path(path: impl AsRef<Path>) -> Result<Self, EntropyError> {
        Ok(Self {
            file: File::open(path)?,
        })
    }
}

impl EntropySource for OsEntropy {
    fn kind(&self) -> &'static str {
        "os"
    }

    fn fill(&mut self, buf: &mut [u8]) -> Result<(), EntropyError> {
        self.file.read_exact(buf)?;
        Ok(())
    }
}

/// Snapshot form of [`SeededEntropy`].
#[derive(Debug, Serialize, Deserialize)]
struct SeededState {
    state: u64,
    spare: Vec<u8>,
}

/// A deterministic SplitMix64 stream, so simulated runs replay byte for byte.
///
/// The output is one continuous byte stream (the little-endian bytes of successive 64-bit
/// outputs) however it is cut into requests: bytes left over from a 64-bit output are kept
/// for the next call. Not cryptographically secure, and not meant to be.
#[derive(Debug, Clone)]
pub struct SeededEntropy {
    state: u64,
    spare: [u8; 8],
    spare_len: usize,
}

impl SeededEntropy {
    /// A stream determined entirely by `seed`.
    pub fn new(seed: u64) -> Self {
        Self {
            state: seed,
            spare: [0; 8],
            spare_len: 0,
        }
    }

    /// The next 64-bit output of the generator (ignores any spare bytes).
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

impl EntropySource for SeededEntropy {
    fn kind(&self) -> &'static str {
        "seeded"
    }

    fn fill(&mut self, buf: &mut [u8]) -> Result<(), EntropyError> {
        let mut at = 0;
        while at < buf.len() {
            if self.spare_len == 0 {
                self.spare = self.next_u64().to_le_bytes();
                self.spare_len = 8;
            }
            let offset = 8 - self.spare_len;
            let n = self.spare_len.min(buf.len() - at);
            buf[at..at + n].copy_from_slice(&self.spare[offset..offset + n]);
            self.spare_len -= n;
            at += n;
        }
        Ok(())
    }

    fn state(&self) -> Value {
        let state = SeededState {
            state: self.state,
            spare: self.spare[8 - self.spare_len..].to_vec(),
        };
        serde_json::to_value(state).unwrap_or(Value::Null)
    }

    fn restore_state(&mut self, state: &Value) -> Result<(), EntropyError> {
        let state: SeededState = serde_json::from_value(state.clone())
            .map_err(|e| EntropyError::BadState(e.to_string()))?;
        if state.spare.len() >= 8 {
            return Err(EntropyError::BadState(format!(
                "{} spare bytes, at most 7 possible",
                state.spare.len()
            )));
        }
        self.state = state.state;
        self.spare_len = state.spare.len();
        self.spare = [0; 8];
        self.spare[8 - self.spare_len..].copy_from_slice(&state.spare);
        Ok(())
    }
}
