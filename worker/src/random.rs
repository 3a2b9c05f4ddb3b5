//! Process-random values, from the standard library's per-process
//! `RandomState` (no extra dependency): the suffix that makes consumer
//! names unique per process, and the seeds that keep workers' backoff
//! jitter out of lockstep.
//!
//! Nothing here is secret or cryptographic; it only has to differ between
//! processes and calls.

use std::hash::{BuildHasher, Hasher};

/// Eight random lowercase hex characters, different in every process, so
/// two pods (or two restarts of one pod) never share a consumer name.
pub fn unique_suffix() -> String {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    h.write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos()));
    format!("{:08x}", h.finish() as u32)
}

/// A fresh seed for backoff jitter, different per call.
pub fn jitter_seed() -> u64 {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos()));
    h.finish()
}

#[cfg(test)]
mod tests {
    #[test]
    fn suffixes_differ_and_are_name_safe() {
        let a = super::unique_suffix();
        let b = super::unique_suffix();
        assert_ne!(a, b);
        assert_eq!(a.len(), 8);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit()));
    }
}
