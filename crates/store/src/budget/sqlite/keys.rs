//! The SQLite ledger's idempotency keys, in memory.
//!
//! On SQLite one process writes the ledger (the budget writer thread), so
//! instead of a unique index on (region, transaction type, key), whose random
//! keys cost a B-tree page write and a probe per spend, the writer keeps a
//! map per region from a hash of (transaction type, key) to the entry's
//! sequence number, and reads the entry itself only when a key is seen
//! again (a retry).
//!
//! # Why it is exact
//!
//! - **The map never runs ahead of the ledger.** Each region's map records
//!   `next_seq`: it holds the keys of exactly the region's entries below it.
//!   Entries are added only after the batch that wrote them committed; a
//!   batch that rolls back leaves the map as it was.
//! - **Nor behind it.** Every batch reads each region's budget row under
//!   SQLite's write lock before it looks up a key; if the row's `next_seq`
//!   is past the map's (another process or connection appended entries),
//!   the missing entries are read from the ledger through the
//!   `(region_id, seq)` index first. So a second server on the same file
//!   cannot make this one charge a key twice.
//! - **The ledger only grows.** Entries are never updated or deleted and a
//!   region id (UUIDv7) is never reused; no region is ever deleted. A
//!   region's entries below the indexed `next_seq` are therefore the ones
//!   indexed. A ledger found shorter than what was indexed (a database
//!   restored under a running server) is indexed afresh; one replaced by a
//!   ledger at least as long is not detected, so a restore needs a restart.
//! - **A hash is only a hint.** A hit reads the entry by its sequence number
//!   and compares the type and key; two keys with one hash mark the hash
//!   ambiguous, and an ambiguous hash is looked up by a scan of the region's
//!   entries. A 64-bit hash makes that a once-in-many-lifetimes event, and
//!   it is slow, never wrong.
//!
//! # Cost
//!
//! 16 to 40 bytes of memory per keyed ledger entry (a hash table of
//! 16-byte slots at most 7/8 full, doubling), so 400 MB at most for ten
//! million keyed spends, and at start a scan of the ledger's keyed entries,
//! logged with its duration. Measured with one million keyed entries (a
//! 266 MB database): indexed in 1.15 s, and the server's resident memory
//! was 117 MB against 17 MB when empty. Up to 64 MB of that difference is
//! the writer's SQLite page cache, which the scan fills.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};

use rusqlite::{params, Connection, OptionalExtension};

use crate::budget::batch::{NewTx, Prior};

/// The value of a hash that two different keys share: look it up by scan.
const AMBIGUOUS: i64 = -1;

/// Every region's idempotency keys, hashed by `S` (tests choose a hasher
/// under which every key collides).
pub(super) struct KeyIndex<S = RandomState> {
    hasher: S,
    regions: HashMap<String, RegionKeys>,
}

/// One region's keys.
struct RegionKeys {
    /// The keys of every entry with a smaller sequence number are indexed,
    /// and of no other.
    next_seq: i64,
    /// Hash of (transaction type, key) → the entry's sequence number, or
    /// [`AMBIGUOUS`].
    seqs: HashMap<u64, i64>,
}

impl RegionKeys {
    fn empty() -> RegionKeys {
        RegionKeys {
            next_seq: 1,
            seqs: HashMap::new(),
        }
    }

    fn insert(&mut self, hash: u64, seq: i64) {
        let slot = self.seqs.entry(hash).or_insert(seq);
        if *slot != seq {
            *slot = AMBIGUOUS;
        }
    }
}

/// What [`KeyIndex::load`] found.
pub(super) struct Loaded {
    /// Regions with a budget row.
    pub(super) regions: usize,
    /// Keyed ledger entries indexed.
    pub(super) keys: usize,
}

impl KeyIndex {
    /// An index of nothing: every region is read from the ledger when a
    /// batch first touches it.
    pub(super) fn new() -> KeyIndex {
        KeyIndex::with_hasher(RandomState::new())
    }
}

impl<S: BuildHasher> KeyIndex<S> {
    /// An index of nothing that hashes with `hasher`.
    pub(super) fn with_hasher(hasher: S) -> KeyIndex<S> {
        KeyIndex {
            hasher,
            regions: HashMap::new(),
        }
    }

    fn hash(&self, kind: &str, key: &str) -> u64 {
        self.hasher.hash_one((kind, key))
    }

    /// Indexes every region's keyed entries, from one read snapshot.
    pub(super) fn load(&mut self, conn: &mut Connection) -> rusqlite::Result<Loaded> {
        let tx = conn.transaction()?;
        let regions: Vec<(String, i64)> = tx
            .prepare("SELECT region_id, next_seq FROM region_budgets")?
            .query_map([], |r| Ok((r.get("region_id")?, r.get("next_seq")?)))?
            .collect::<rusqlite::Result<_>>()?;
        self.regions.clear();
        let mut keys = 0;
        for (rid, next_seq) in &regions {
            keys += self.sync(&tx, rid, *next_seq)?;
        }
        tx.commit()?;
        Ok(Loaded {
            regions: regions.len(),
            keys,
        })
    }

    /// Brings region `rid`'s keys up to `next_seq`, the region's budget row
    /// as read under the write lock: reads the entries appended since
    /// (by another writer, or all of them at start) from the ledger.
    /// Returns how many keys it indexed.
    pub(super) fn sync(
        &mut self,
        conn: &Connection,
        rid: &str,
        next_seq: i64,
    ) -> rusqlite::Result<usize> {
        if !self.regions.contains_key(rid) {
            self.regions.insert(rid.to_string(), RegionKeys::empty());
        }
        let hasher = &self.hasher;
        let keys = self.regions.get_mut(rid).expect("inserted above");
        if keys.next_seq > next_seq {
            // The ledger is shorter than what was indexed: entries are
            // never deleted, so this is another database under the same
            // region id. Index it afresh.
            *keys = RegionKeys::empty();
        }
        let mut indexed = 0;
        if keys.next_seq < next_seq {
            let mut s = conn.prepare_cached(
                "SELECT seq, transaction_type, idempotency_key FROM region_budget_transactions WHERE region_id = ?1 AND seq >= ?2 AND seq < ?3 AND idempotency_key IS NOT NULL",
            )?;
            let mut rows = s.query(params![rid, keys.next_seq, next_seq])?;
            while let Some(r) = rows.next()? {
                let hash = hasher.hash_one((
                    r.get_ref("transaction_type")?.as_str()?,
                    r.get_ref("idempotency_key")?.as_str()?,
                ));
                keys.insert(hash, r.get("seq")?);
                indexed += 1;
            }
            keys.next_seq = next_seq;
        }
        Ok(indexed)
    }

    /// Forgets region `rid` (it has no budget row).
    pub(super) fn forget(&mut self, rid: &str) {
        self.regions.remove(rid);
    }

    /// The entry of region `rid` with transaction type `kind` and key `key`,
    /// if any: (key, type, what the first request got). The region must have
    /// been [`sync`](Self::sync)ed in this transaction.
    pub(super) fn prior(
        &self,
        conn: &Connection,
        rid: &str,
        kind: &str,
        key: &str,
    ) -> rusqlite::Result<Option<(String, String, Prior)>> {
        let Some(keys) = self.regions.get(rid) else {
            return Ok(None);
        };
        let row = |r: &rusqlite::Row<'_>| {
            Ok((
                r.get::<_, String>("idempotency_key")?,
                r.get::<_, String>("transaction_type")?,
                Prior {
                    id: r.get("id")?,
                    amount_cents: r.get("amount_cents")?,
                    balance_after_cents: r.get("balance_after_cents")?,
                    job_type: r.get("job_type")?,
                    refund_of: r.get("refund_of")?,
                    agency_id: r.get("agency_id")?,
                    description: r.get("description")?,
                },
            ))
        };
        const COLS: &str = "SELECT idempotency_key, transaction_type, id, amount_cents, balance_after_cents, job_type, refund_of, agency_id, description FROM region_budget_transactions";
        match keys.seqs.get(&self.hash(kind, key)) {
            None => Ok(None),
            Some(&AMBIGUOUS) => conn
                .prepare_cached(&format!(
                    "{COLS} WHERE region_id = ?1 AND transaction_type = ?2 AND idempotency_key = ?3"
                ))?
                .query_row(params![rid, kind, key], row)
                .optional(),
            Some(&seq) => {
                let found = conn
                    .prepare_cached(&format!("{COLS} WHERE region_id = ?1 AND seq = ?2"))?
                    .query_row(params![rid, seq], row)
                    .optional()?;
                // One key has this hash: if the entry is another key's,
                // this key has no entry.
                Ok(found.filter(|(k, t, _)| k == key && t == kind))
            }
        }
    }

    /// The keys of a batch about to commit: its new entries `txs` and each
    /// touched region's `next_seq` after it. [`committed`](Self::committed)
    /// records them once the commit succeeded.
    pub(super) fn stage<'a>(
        &self,
        txs: &[NewTx],
        next_seqs: impl Iterator<Item = (&'a str, i64)>,
    ) -> Staged {
        let mut staged = Vec::new();
        for (rid, next_seq) in next_seqs {
            let mine = || txs.iter().filter(|t| t.region_id == rid);
            let Some(first) = mine().map(|t| t.seq).min() else {
                continue;
            };
            let keyed = mine()
                .filter_map(|t| {
                    let key = t.idempotency_key.as_deref()?;
                    Some((self.hash(t.effect.kind.as_str(), key), t.seq))
                })
                .collect();
            staged.push(StagedRegion {
                region_id: rid.to_string(),
                first_seq: first,
                next_seq,
                keyed,
            });
        }
        Staged(staged)
    }

    /// Records a committed batch's keys. A region whose keys did not end
    /// where the batch's entries start is left to the next
    /// [`sync`](Self::sync).
    pub(super) fn committed(&mut self, staged: Staged) {
        for s in staged.0 {
            let Some(keys) = self.regions.get_mut(&s.region_id) else {
                continue;
            };
            if keys.next_seq != s.first_seq {
                continue;
            }
            for (hash, seq) in s.keyed {
                keys.insert(hash, seq);
            }
            keys.next_seq = s.next_seq;
        }
    }
}

/// A batch's keys between its statements and its commit.
pub(super) struct Staged(Vec<StagedRegion>);

/// One region's part of [`Staged`].
struct StagedRegion {
    region_id: String,
    /// The sequence number of the batch's first entry in the region.
    first_seq: i64,
    /// The region's `next_seq` after the batch.
    next_seq: i64,
    /// (hash of (type, key), seq) of each keyed entry.
    keyed: Vec<(u64, i64)>,
}
