//! Regions and global routing: region state, scaling modes, tenant
//! compliance, workload routing, job routing and risk, all pure functions
//! over plain data (time is always an argument, in Unix milliseconds).
//!
//! The store keeps the inputs current; the server and the engine call these
//! functions and record their values. Compliance is a hard filter applied
//! before any score, weight, fallback, failover or ejection logic.

pub mod compliance;
pub mod jobs;
pub mod mode;
pub mod risk;
pub mod routing;
pub mod snapshot;
pub mod state;

/// FNV-1a 64-bit hash of `bytes` (offset basis `0xcbf29ce484222325`, prime
/// `0x100000001b3`): a fixed, documented algorithm so that shard keys and
/// weighted picks are stable across releases and machines.
#[must_use]
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::fnv1a64;

    #[test]
    fn fnv1a64_matches_reference_vectors() {
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
    }
}
