//! Random values for tokens, receipts and jitter, without a `rand`
//! dependency: std's per-process random hash keys (seeded by the OS), a
//! counter, the process id and the time, through SHA-256. Unpredictable
//! enough for OAuth `state`, queue receipts and throw-away demo secrets; not
//! for key material.

use sha2::{Digest, Sha256};
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};

fn block() -> [u8; 32] {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let mut seed = std::collections::hash_map::RandomState::new().build_hasher();
    seed.write_u64(n);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let mut h = Sha256::new();
    h.update(seed.finish().to_le_bytes());
    h.update(nanos.to_le_bytes());
    h.update(std::process::id().to_le_bytes());
    h.update(n.to_le_bytes());
    h.finalize().into()
}

/// `bytes` random bytes as lowercase hex (`2 × bytes` characters).
pub fn hex(bytes: usize) -> String {
    let mut out = String::with_capacity(bytes * 2);
    while out.len() < bytes * 2 {
        let want = (bytes * 2 - out.len()) / 2;
        let b = block();
        out.push_str(&hex::encode(&b[..want.min(32)]));
    }
    out
}

/// A random number in `0..=max`.
pub fn up_to(max: u64) -> u64 {
    if max == 0 {
        return 0;
    }
    let b = block();
    let n = u64::from_le_bytes(b[..8].try_into().expect("8 bytes"));
    n % (max + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_and_ranges() {
        assert_eq!(hex(16).len(), 32);
        assert_eq!(hex(40).len(), 80);
        assert!(hex(16).bytes().all(|b| b.is_ascii_hexdigit()));
        assert_ne!(hex(16), hex(16));
        assert_eq!(up_to(0), 0);
        assert!((0..200).all(|_| up_to(7) <= 7));
    }
}
