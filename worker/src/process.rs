//! Process-level helper for `main`: the random suffix that makes consumer
//! names unique per process.

/// Eight random lowercase hex characters, different in every process, so
/// two pods (or two restarts of one pod) never share a consumer name.
pub fn unique_suffix() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    h.write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos()));
    format!("{:08x}", h.finish() as u32)
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
