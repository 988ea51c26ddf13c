//! The text index: which stretches of a tenant's records can contain a search text.
//!
//! Text search matches a substring of the `search` column (see `search.rs`). Scanning
//! that column grows with everything a tenant keeps, so the store also summarises it:
//! the tenant's records, in commit order (`seq`), are cut into *blocks*, and each block
//! keeps one bitmap of the byte trigrams its records' text contains, and of every
//! window of six digits in a row (a Bloom filter of [`BLOOM_BITS`] bits; each trigram or
//! window sets four bits, see [`Hashes`]). A record containing the needle contains every
//! trigram and digit window of the needle, so a block whose bitmap misses any of their
//! bits cannot hold a match. A search tests the tenant's bitmaps (about 0.5 bytes per
//! record, kept in memory as [`Bitmaps`], so that ruling blocks out reads no table and
//! costs microseconds however much the tenant keeps), keeps the blocks that may match,
//! and scans only those and the tenant's records not yet in a block (the *tail*). The
//! bitmaps only ever rule blocks out: the scan applies the same `contains` to what is
//! left, so answers are those of a full scan by construction.
//!
//! A block ends at [`BLOCK_RECORDS`] records, or earlier when a quarter of its bits are
//! set (text with many distinct trigrams gets smaller blocks, so a bitmap stays
//! selective), or when the tenant's oldest unindexed record is [`TAIL_SPAN`] commits
//! behind the newest (a quiet tenant's tail stays short in `seq`).
//!
//! Blocks are written by the writer thread, from records already committed, in
//! transactions of their own, one step at a time between groups. The index therefore
//! never delays an acknowledgement by more than one step, never disagrees with the
//! records after a crash (a block is written after the records it covers, and what no
//! block covers is the tail, which searches scan), and is rebuilt from the records where
//! it is missing: on open, everything after a tenant's last block is its tail, and a
//! file from before the index is indexed a step at a time while it serves.
//!
//! Retention deletes a block once every record in it is older than the cut-off. A block
//! retention only thinned keeps its bitmap: it may say "maybe" for a record that is
//! gone, never "no" for one that is there.

use std::{collections::HashMap, sync::Arc};

use duckdb::{
    Connection,
    arrow::{
        array::{Array, Int64Array, StringArray},
        record_batch::RecordBatch,
    },
    types::Value,
};
use parking_lot::RwLock;

use crate::{Error, Result};

/// Bits per block bitmap (32 KiB).
pub(crate) const BLOOM_BITS: usize = 1 << LOG2_BITS;
const LOG2_BITS: u32 = 18;

/// The most records in a block (a block may close earlier, see the module docs).
pub(crate) const BLOCK_RECORDS: usize = 65_536;

/// A tenant's records not in a block are indexed once the oldest of them is this many
/// commit sequence numbers behind the newest record stored.
pub(crate) const TAIL_SPAN: i64 = 4 * BLOCK_RECORDS as i64;

/// A block closes once this many of its bits are set.
const FULL_BITS: usize = BLOOM_BITS / 4;

/// A time window that overlaps at most this many blocks is not narrowed further.
const FEW_BLOCKS: usize = 2;

/// A search restricted by the index scans at most this many separate stretches; with
/// more, one scan of everything is about as fast.
const MAX_RANGES: usize = 48;

pub(crate) const DDL: &str = "
CREATE TABLE IF NOT EXISTS search_blocks (
    tenant  VARCHAR NOT NULL,
    seq_lo  BIGINT  NOT NULL,   -- the block's first and last record, by commit sequence
    seq_hi  BIGINT  NOT NULL,
    ts_lo   BIGINT  NOT NULL,   -- the oldest and newest record time in the block
    ts_hi   BIGINT  NOT NULL,
    records INTEGER NOT NULL,
    grams   BLOB    NOT NULL,   -- BLOOM_BITS bits, bit i in byte i / 8 at 1 << (i % 8)
    hashes  TINYINT             -- the bits each trigram sets (`Hashes`; 1 when null)
);
";

/// Adds `hashes` to a table from before it: its blocks were built with one bit each.
pub(crate) const ADD_HASHES: &str =
    "ALTER TABLE search_blocks ADD COLUMN IF NOT EXISTS hashes TINYINT DEFAULT 1";

/// How many bits each trigram and digit window sets in a block's bitmap.
///
/// Blocks from before [`Hashes::Four`] keep being read as they were written. With one
/// bit, a needle whose only rare part is one number (an order id among common words)
/// is let through by every block that sets that one bit by chance: 2 % of the blocks
/// at the usual 5 % fill. With four, by chance it takes all four: the fill rises to
/// about 20 % (a block still closes at a quarter), and about 0.2 % of blocks let it
/// through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Hashes {
    One = 1,
    Four = 4,
}

impl Hashes {
    fn of(stored: Option<i8>) -> Self {
        if stored == Some(4) {
            Self::Four
        } else {
            Self::One
        }
    }
}

/// A trigram's key: its three bytes. Digit windows' keys follow every trigram key.
fn trigram_key(gram: &[u8]) -> u64 {
    u64::from(gram[0]) << 16 | u64::from(gram[1]) << 8 | u64::from(gram[2])
}

/// Digits in a row from this many on also set bits per window of this many digits:
/// every digit trigram occurs in any large block, so trigrams alone cannot tell one
/// phone or order number from another.
const DIGIT_GRAM: usize = 6;

/// A window of [`DIGIT_GRAM`] digits' key.
fn digit_key(window: &[u8]) -> u64 {
    let value = window
        .iter()
        .fold(0u64, |k, d| k * 10 + u64::from(d - b'0'));
    value + (1 << 24)
}

/// The bits a key sets (Fibonacci hashing: the top bits of a product with an odd
/// constant spread neighbouring keys apart). `Hashes::One` is the layout of the first
/// blocks, kept bit for bit so that their bitmaps read as they were written;
/// `Hashes::Four` derives its four bits from two such hashes (`a + i * b`).
fn key_bits(key: u64, hashes: Hashes) -> impl Iterator<Item = usize> {
    let top = |product: u64| (product >> (64 - LOG2_BITS)) as usize;
    let (first, step, count) = match hashes {
        Hashes::One if key < 1 << 24 => {
            let product = (key as u32).wrapping_mul(0x9E37_79B1);
            ((product >> (32 - LOG2_BITS)) as usize, 0, 1)
        }
        Hashes::One => (top(key.wrapping_mul(0x9E37_79B9_7F4A_7C15)), 0, 1),
        // An odd step visits four distinct bits.
        Hashes::Four => (
            top(key.wrapping_mul(0x9E37_79B9_7F4A_7C15)),
            top(key.wrapping_mul(0xC2B2_AE3D_27D4_EB4F)) | 1,
            4,
        ),
    };
    (0..count).map(move |i| first.wrapping_add(i * step) & (BLOOM_BITS - 1))
}

/// Every bit `text` sets: its trigrams', and its digit windows'.
fn bits_of(text: &[u8], hashes: Hashes) -> impl Iterator<Item = usize> + '_ {
    let digits = text
        .split(|b| !b.is_ascii_digit())
        .filter(|run| run.len() >= DIGIT_GRAM)
        .flat_map(|run| run.windows(DIGIT_GRAM).map(digit_key));
    text.windows(3)
        .map(trigram_key)
        .chain(digits)
        .flat_map(move |key| key_bits(key, hashes))
}

/// The bitmap of one block being built.
struct Bloom {
    bits: Vec<u8>,
    set: usize,
}

impl Bloom {
    fn new() -> Self {
        Self {
            bits: vec![0; BLOOM_BITS / 8],
            set: 0,
        }
    }

    fn add(&mut self, text: &[u8]) {
        for b in bits_of(text, Hashes::Four) {
            let byte = &mut self.bits[b / 8];
            let mask = 1 << (b % 8);
            if *byte & mask == 0 {
                *byte |= mask;
                self.set += 1;
            }
        }
    }
}

/// Does a block's bitmap hold every bit in `needle_bits`?
fn may_contain(grams: &[u8], needle_bits: &[usize]) -> bool {
    needle_bits.iter().all(|&b| {
        grams
            .get(b / 8)
            .is_some_and(|byte| byte & (1 << (b % 8)) != 0)
    })
}

/// The bits a needle's trigrams and digit windows set, in each layout.
pub(crate) struct NeedleBits {
    one: Vec<usize>,
    four: Vec<usize>,
}

impl NeedleBits {
    fn of(&self, hashes: Hashes) -> &[usize] {
        match hashes {
            Hashes::One => &self.one,
            Hashes::Four => &self.four,
        }
    }
}

/// The bits of the needle, or `None` for a needle shorter than a trigram (which the
/// index cannot narrow).
pub(crate) fn needle_bits(needle: &str) -> Option<NeedleBits> {
    let bytes = needle.as_bytes();
    if bytes.len() < 3 {
        return None;
    }
    let bits = |hashes| {
        let mut bits: Vec<usize> = bits_of(bytes, hashes).collect();
        bits.sort_unstable();
        bits.dedup();
        bits
    };
    Some(NeedleBits {
        one: bits(Hashes::One),
        four: bits(Hashes::Four),
    })
}

/// A tenant's records committed but not yet in a block.
#[derive(Debug, Clone, Copy)]
struct Pending {
    /// No unindexed record of the tenant has a smaller `seq`.
    first_seq: i64,
    records: u64,
}

/// The writer's side of the index: what each tenant has waiting, and the steps that
/// turn it into blocks.
pub(crate) struct TextIndex {
    block_records: usize,
    pending: HashMap<String, Pending>,
    /// The newest `seq` noted.
    newest: i64,
    /// What searches test: kept equal to `search_blocks` by this side.
    bitmaps: Arc<Bitmaps>,
    /// The bytes of bitmap `bitmaps` holds.
    memory: u64,
}

impl TextIndex {
    /// What `conn`'s records have waiting: for every tenant, its records after its last
    /// block. `block_records` 0 turns the index off (nothing is built; searches then
    /// scan, as they do for any tail).
    ///
    /// `bitmaps` is loaded with every block the file holds.
    pub(crate) fn open(
        conn: &Connection,
        block_records: usize,
        bitmaps: Arc<Bitmaps>,
    ) -> Result<Self> {
        let mut index = Self {
            block_records: block_records.min(BLOCK_RECORDS),
            pending: HashMap::new(),
            newest: 0,
            bitmaps,
            memory: 0,
        };
        if index.block_records == 0 {
            return Ok(index);
        }
        index.memory = index.bitmaps.load(conn)?;
        let mut stmt = conn.prepare(
            "SELECT l.tenant, count(*), min(l.seq), max(l.seq) FROM logs l
             LEFT JOIN (SELECT tenant, max(seq_hi) AS hi FROM search_blocks GROUP BY tenant) b
                    ON b.tenant = l.tenant
             WHERE l.seq > coalesce(b.hi, -1)
             GROUP BY l.tenant",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, i64>(2)?,
                r.get::<_, i64>(3)?,
            ))
        })?;
        for row in rows {
            let (tenant, n, first_seq, last) = row?;
            index.newest = index.newest.max(last);
            index.pending.insert(
                tenant,
                Pending {
                    first_seq,
                    records: u64::try_from(n).unwrap_or(0),
                },
            );
        }
        Ok(index)
    }

    /// Notes records just committed (batches in `logs`' layout, `seq` filled in).
    pub(crate) fn note(&mut self, batches: &[RecordBatch]) {
        if self.block_records == 0 {
            return;
        }
        for b in batches {
            let (Some(tenants), Some(seqs)) = (
                b.column_by_name("tenant")
                    .and_then(|c| c.as_any().downcast_ref::<StringArray>()),
                b.column_by_name("seq")
                    .and_then(|c| c.as_any().downcast_ref::<Int64Array>()),
            ) else {
                continue;
            };
            for i in 0..b.num_rows() {
                let seq = seqs.value(i);
                self.newest = self.newest.max(seq);
                let tenant = tenants.value(i);
                match self.pending.get_mut(tenant) {
                    Some(p) => p.records += 1,
                    None => {
                        self.pending.insert(
                            tenant.to_owned(),
                            Pending {
                                first_seq: seq,
                                records: 1,
                            },
                        );
                    }
                }
            }
        }
    }

    /// The tenant whose records should become a block next, if any.
    fn due(&self) -> Option<(&str, Pending)> {
        if self.block_records == 0 {
            return None;
        }
        self.pending
            .iter()
            .filter(|(_, p)| {
                p.records >= self.block_records as u64
                    || (p.records > 0 && self.newest - p.first_seq >= TAIL_SPAN)
            })
            .min_by_key(|(_, p)| p.first_seq)
            .map(|(t, p)| (t.as_str(), *p))
    }

    /// Is a step waiting to run?
    pub(crate) fn is_due(&self) -> bool {
        self.due().is_some()
    }

    /// The bytes of bitmap held in memory for searches.
    pub(crate) fn memory_bytes(&self) -> u64 {
        self.memory
    }

    /// Records committed and not yet in a block, over all tenants.
    pub(crate) fn pending_records(&self) -> u64 {
        self.pending.values().map(|p| p.records).sum()
    }

    /// Writes the blocks for up to one block's worth of the most overdue tenant's
    /// records, in one transaction. Returns how many records it indexed.
    pub(crate) fn step(&mut self, conn: &Connection) -> Result<u64> {
        let Some((tenant, p)) = self.due() else {
            return Ok(0);
        };
        let tenant = tenant.to_owned();
        let limit = self.block_records;
        // A bounded stretch of `seq`, so a step over a large backlog (a file from before
        // the index) reads one stretch, not everything after it.
        let bound = p
            .first_seq
            .saturating_add(16 * i64::try_from(limit).unwrap_or(i64::MAX / 32));
        let mut stmt = conn.prepare_cached(
            "SELECT seq, ts, search FROM logs WHERE tenant = ? AND seq BETWEEN ? AND ? \
             ORDER BY seq LIMIT ?",
        )?;
        let rows = stmt.query_map(
            duckdb::params![
                tenant,
                p.first_seq,
                bound,
                i64::try_from(limit).unwrap_or(i64::MAX)
            ],
            |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, Option<String>>(2)?,
                ))
            },
        )?;
        let mut blocks = Vec::new();
        let mut open: Option<Block> = None;
        let mut read = 0u64;
        let mut last_seq = p.first_seq - 1;
        for row in rows {
            let (seq, ts, text) = row?;
            read += 1;
            last_seq = seq;
            let block = open.get_or_insert_with(|| Block::starting(seq, ts));
            block.push(seq, ts, text.as_deref().unwrap_or("").as_bytes());
            if block.bloom.set >= FULL_BITS {
                blocks.extend(open.take());
            }
        }
        // The rest becomes a block too: the read stopped at a full block, or the tenant
        // has no more records than these (the step runs only when it is due either way).
        blocks.extend(open.take());
        if blocks.is_empty() {
            if bound >= self.newest {
                // Nothing left (retention took it): the tenant has nothing waiting.
                self.pending.remove(&tenant);
            } else {
                self.pending.insert(
                    tenant,
                    Pending {
                        first_seq: bound + 1,
                        ..p
                    },
                );
            }
            return Ok(0);
        }
        conn.execute_batch("BEGIN TRANSACTION")?;
        let written = (|| {
            let mut insert =
                conn.prepare_cached(
                "INSERT INTO search_blocks (tenant, seq_lo, seq_hi, ts_lo, ts_hi, records, grams, hashes) \
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            )?;
            for b in &blocks {
                insert.execute(duckdb::params_from_iter([
                    Value::Text(tenant.clone()),
                    Value::BigInt(b.seq_lo),
                    Value::BigInt(b.seq_hi),
                    Value::BigInt(b.ts_lo),
                    Value::BigInt(b.ts_hi),
                    Value::Int(i32::try_from(b.records).unwrap_or(i32::MAX)),
                    Value::Blob(b.bloom.bits.clone()),
                    Value::TinyInt(Hashes::Four as i8),
                ]))?;
            }
            conn.execute_batch("COMMIT")
        })();
        if let Err(e) = written {
            let _ = conn.execute_batch("ROLLBACK");
            return Err(Error::from(e));
        }
        // After the commit: the memory holds what `search_blocks` holds, so a step that
        // failed leaves nothing behind that the next one would add again.
        self.memory += (blocks.len() * BLOOM_BITS / 8) as u64;
        self.bitmaps.extend(
            &tenant,
            blocks
                .into_iter()
                .map(|b| Summary {
                    seq_lo: b.seq_lo,
                    seq_hi: b.seq_hi,
                    ts_lo: b.ts_lo,
                    ts_hi: b.ts_hi,
                    records: i64::try_from(b.records).unwrap_or(i64::MAX),
                    grams: b.bloom.bits.into_boxed_slice(),
                    hashes: Hashes::Four,
                })
                .collect(),
        );
        let left = p.records.saturating_sub(read);
        if left == 0 {
            self.pending.remove(&tenant);
        } else {
            self.pending.insert(
                tenant,
                Pending {
                    first_seq: last_seq + 1,
                    records: left,
                },
            );
        }
        Ok(read)
    }

    /// Forgets what a purge deleted: tenants are counted again from the records left.
    pub(crate) fn reload(&mut self, conn: &Connection) -> Result<()> {
        *self = Self::open(conn, self.block_records, self.bitmaps.clone())?;
        Ok(())
    }
}

/// A block being filled.
struct Block {
    seq_lo: i64,
    seq_hi: i64,
    ts_lo: i64,
    ts_hi: i64,
    records: usize,
    bloom: Bloom,
}

impl Block {
    fn starting(seq: i64, ts: i64) -> Self {
        Self {
            seq_lo: seq,
            seq_hi: seq,
            ts_lo: ts,
            ts_hi: ts,
            records: 0,
            bloom: Bloom::new(),
        }
    }

    fn push(&mut self, seq: i64, ts: i64, text: &[u8]) {
        self.seq_hi = seq;
        self.ts_lo = self.ts_lo.min(ts);
        self.ts_hi = self.ts_hi.max(ts);
        self.records += 1;
        self.bloom.add(text);
    }
}

/// Where a text search has to look: `logs` rows of the tenant in these `seq` ranges
/// (inclusive; `None` as the end means "and everything after").
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Narrowed {
    pub(crate) ranges: Vec<(i64, Option<i64>)>,
    /// The records in the blocks kept (the tail's are not counted).
    pub(crate) records: i64,
}

impl Narrowed {
    /// The condition on `logs` for the first range, e.g. ` AND seq >= 30`: what a
    /// single range adds to a search's `WHERE` (a union would hide the scan from
    /// DuckDB's top-N, which narrows its `ts` bound inside a plain scan).
    pub(crate) fn condition(&self) -> String {
        match self.ranges.first() {
            Some((lo, Some(hi))) => format!(" AND seq BETWEEN {lo} AND {hi}"),
            Some((lo, None)) => format!(" AND seq >= {lo}"),
            None => String::new(),
        }
    }

    /// The `FROM` source for several ranges: one scan per range, so each is pruned by
    /// the row groups' `seq` statistics (a disjunction of ranges in one scan is not).
    pub(crate) fn source(&self) -> String {
        let parts: Vec<String> = self
            .ranges
            .iter()
            .map(|(lo, hi)| match hi {
                Some(hi) => {
                    format!("SELECT rowid AS rid, * FROM logs WHERE seq BETWEEN {lo} AND {hi}")
                }
                None => format!("SELECT rowid AS rid, * FROM logs WHERE seq >= {lo}"),
            })
            .collect();
        format!("({}) AS logs", parts.join(" UNION ALL "))
    }
}

/// One block as searches test it.
struct Summary {
    seq_lo: i64,
    seq_hi: i64,
    ts_lo: i64,
    ts_hi: i64,
    records: i64,
    grams: Box<[u8]>,
    hashes: Hashes,
}

/// Every tenant's blocks, in `seq` order, with their bitmaps: `search_blocks` in memory.
///
/// The writer keeps it equal to the table: it loads it when the index is opened (and
/// after retention or a reopen), and adds a step's blocks once their transaction has
/// committed. A search may therefore see a block that its snapshot of `logs` was taken
/// before: that block covers only records committed before it, which the snapshot either
/// has (and the bitmap describes) or does not have at all, so ruling it out is still
/// right. A search that does not yet see a block scans its records as tail.
#[derive(Default)]
pub(crate) struct Bitmaps {
    tenants: RwLock<HashMap<String, Vec<Summary>>>,
}

impl Bitmaps {
    /// Replaces what is held with the blocks of `conn`'s file; returns the bytes of
    /// bitmap now held.
    fn load(&self, conn: &Connection) -> Result<u64> {
        let mut tenants: HashMap<String, Vec<Summary>> = HashMap::new();
        let mut stmt = conn.prepare(
            "SELECT tenant, seq_lo, seq_hi, ts_lo, ts_hi, records, grams, hashes
             FROM search_blocks ORDER BY tenant, seq_lo",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                Summary {
                    seq_lo: r.get(1)?,
                    seq_hi: r.get(2)?,
                    ts_lo: r.get(3)?,
                    ts_hi: r.get(4)?,
                    records: r.get(5)?,
                    grams: r.get::<_, Vec<u8>>(6)?.into_boxed_slice(),
                    hashes: Hashes::of(r.get(7)?),
                },
            ))
        })?;
        let mut bytes = 0;
        for row in rows {
            let (tenant, block) = row?;
            bytes += block.grams.len() as u64;
            tenants.entry(tenant).or_default().push(block);
        }
        *self.tenants.write() = tenants;
        Ok(bytes)
    }

    /// Adds blocks just committed for `tenant` (they follow its others in `seq`).
    fn extend(&self, tenant: &str, blocks: Vec<Summary>) {
        let mut tenants = self.tenants.write();
        tenants.entry(tenant.to_owned()).or_default().extend(blocks);
    }
}

/// The stretches of `tenant`'s records that may contain `needle` (already lower-cased),
/// within `[from, to]`; `None` when the index cannot narrow the search enough to be
/// worth it (a short needle, or most blocks may match).
pub(crate) fn narrow(
    bitmaps: &Bitmaps,
    tenant: &str,
    needle: &str,
    (from, to): (Option<i64>, Option<i64>),
) -> Option<Narrowed> {
    let bits = needle_bits(needle)?;
    let (from, to) = (from.unwrap_or(i64::MIN), to.unwrap_or(i64::MAX));
    let tenants = bitmaps.tenants.read();
    let blocks = tenants.get(tenant)?;
    let mut ranges: Vec<(i64, Option<i64>)> = Vec::new();
    let (mut total, mut kept) = (0i64, 0i64);
    let mut last_hi = -1i64;
    let mut previous_kept = false;
    let (mut in_time_blocks, mut kept_blocks) = (0, 0);
    // Records of blocks in the time window that were ruled out, from the first block
    // kept on: what one stretch from there to the end would scan in vain.
    let mut skipped = 0i64;
    for b in blocks {
        // Only the bitmaps of blocks in the time window are tested.
        let in_time = b.ts_hi >= from && b.ts_lo <= to;
        let keep = in_time && may_contain(&b.grams, bits.of(b.hashes));
        total += b.records;
        in_time_blocks += usize::from(in_time);
        last_hi = last_hi.max(b.seq_hi);
        if keep {
            kept += b.records;
            kept_blocks += 1;
            match ranges.last_mut() {
                // The block right after a kept one extends its range.
                Some((_, Some(end))) if previous_kept => *end = b.seq_hi,
                _ => ranges.push((b.seq_lo, Some(b.seq_hi))),
            }
        } else if in_time && !ranges.is_empty() {
            skipped += b.records;
        }
        previous_kept = keep;
    }
    drop(tenants);
    // A time window within a few blocks already confines the scan to about that much
    // (row groups are pruned by time), and the plan for a plain scan serves it better.
    let windowed = from != i64::MIN || to != i64::MAX;
    if total == 0 || (windowed && in_time_blocks <= FEW_BLOCKS) {
        return None;
    }
    // Nothing the time window reaches was ruled out: the plain plan scans the same.
    if windowed && kept_blocks == in_time_blocks {
        return None;
    }
    // The tail: whatever no block covers yet.
    match ranges.last_mut() {
        Some((_, end)) if previous_kept => *end = None,
        _ => ranges.push((last_hi + 1, None)),
    }
    if ranges.len() > MAX_RANGES || kept * 2 > total {
        return None;
    }
    // Blocks outside the time window cost nothing in one stretch (row groups are pruned
    // by time): when few in the window were ruled out, one stretch beats a union.
    if ranges.len() > 1 && skipped <= kept {
        ranges = vec![(ranges[0].0, None)];
    }
    Some(Narrowed {
        ranges,
        records: kept,
    })
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, HashSet};

    use callscope_model::{Category, Level, LogRecord, RecordIdHasher, TenantRecord, Timestamp};
    use callscope_query::{Order, SearchFilter, SearchQuery};

    use super::*;
    use crate::{Store, StoreConfig};

    const T0: i64 = 1_790_000_000_000_000_000;

    /// A small deterministic generator (xorshift64*), so a failure can be replayed.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
        fn pick<'a>(&mut self, v: &[&'a str]) -> &'a str {
            v[self.below(v.len())]
        }
    }

    const WORDS: &[&str] = &[
        "order",
        "Shipped",
        "timeout",
        "CRM",
        "lookup",
        "transfer",
        "caller",
        "said",
        "über",
        "Straße",
        "ORD-",
        "+1 (555) 010-",
        "refund",
        "hello",
        "agent",
        "tool",
        "failed",
        "ok",
        "don't",
        "#42",
        "e-mail",
        "ÉCOLE",
    ];

    fn text(rng: &mut Rng) -> String {
        let n = 1 + rng.below(6);
        let mut words: Vec<String> = (0..n).map(|_| rng.pick(WORDS).to_owned()).collect();
        match rng.below(4) {
            0 => words.push(format!("{}", rng.below(100_000))),
            1 => words.push(format!("ORD-{:06}", rng.below(1_000_000))),
            2 => words.push(format!("+1555{:07}", rng.below(10_000_000))),
            _ => {}
        }
        words.join(if rng.below(2) == 0 { " " } else { ", " })
    }

    fn record(rng: &mut Rng, tenant: &str, n: i64) -> TenantRecord {
        let mut h = RecordIdHasher::new();
        h.str(tenant).i64(n);
        let events = [
            "AGENT_MESSAGE_SENT",
            "USER_MESSAGE_RECEIVED",
            "INTEGRATION_TOOL_FAILED",
        ];
        TenantRecord {
            tenant: tenant.into(),
            record: LogRecord {
                id: h.finish(),
                timestamp: Timestamp(T0 + n * 1_000_000 + i64::try_from(rng.below(500)).unwrap()),
                level: [Level::Info, Level::Warning, Level::Error][rng.below(3)],
                category: Category::Agent,
                event: events[rng.below(events.len())].into(),
                call_id: format!("call-{}", n / 50),
                agent_id: None,
                trace_id: None,
                span_id: None,
                // Some records carry no text at all.
                data: (rng.below(10) != 0).then(|| {
                    serde_json::from_value(serde_json::json!({"message": text(rng), "n": n}))
                        .unwrap()
                }),
            },
        }
    }

    /// What `search_text` means, written out: the needle, trimmed and lower-cased, is a
    /// substring of one of the record's data values (strings lower-cased, numbers as
    /// written).
    fn matches(r: &LogRecord, needle: &str) -> bool {
        let needle = needle.trim().to_lowercase();
        r.data.as_ref().is_some_and(|d| {
            d.values().any(|v| match v {
                serde_json::Value::String(s) => s.to_lowercase().contains(&needle),
                other => other.to_string().contains(&needle),
            })
        })
    }

    async fn open(dir: &std::path::Path, block: usize) -> Store {
        Store::open(&StoreConfig {
            path: dir.join("calls.duckdb"),
            text_index_block_records: block,
            ..StoreConfig::default()
        })
        .unwrap()
    }

    /// Waits until the writer has turned every full block's worth into blocks.
    async fn indexed(store: &Store, block: usize) {
        // The index notes records when the writer applies them, which may be just
        // after their acknowledgement: a read waits for that.
        store.read(|_| Ok(())).await.unwrap();
        for _ in 0..500 {
            if store.metrics().text_index_pending() < 2 * block as u64 {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        panic!(
            "the index did not catch up: {}",
            store.metrics().text_index_pending()
        );
    }

    async fn blocks(store: &Store, tenant: &'static str) -> i64 {
        store
            .read(move |c| {
                Ok(c.query_row(
                    "SELECT count(*) FROM search_blocks WHERE tenant = ?",
                    [tenant],
                    |r| r.get(0),
                )?)
            })
            .await
            .unwrap()
    }

    /// The first page of `size` records containing `needle`, in `order`.
    fn text_query(needle: &str, order: Order, size: u64) -> SearchQuery {
        SearchQuery {
            filter: SearchFilter {
                text: Some(needle.into()),
                ..SearchFilter::default()
            },
            order,
            page: 0,
            size,
        }
    }

    /// The blocks searches test for `tenant` (those in memory) are those in
    /// `search_blocks`, once the writer has no step under way.
    async fn held_as_stored(store: &Store, tenant: &'static str) {
        let bitmaps = store.inner.bitmaps.as_deref().expect("the index is on");
        let held = || {
            let tenants = bitmaps.tenants.read();
            tenants.get(tenant).map_or(Vec::new(), |b| {
                b.iter().map(|b| (b.seq_lo, b.seq_hi)).collect::<Vec<_>>()
            })
        };
        let mut stored = Vec::new();
        for _ in 0..100 {
            stored = store
                .read(move |c| {
                    let mut stmt = c.prepare(
                        "SELECT seq_lo, seq_hi FROM search_blocks WHERE tenant = ? ORDER BY seq_lo",
                    )?;
                    let rows = stmt.query_map([tenant], |r| Ok((r.get(0)?, r.get(1)?)))?;
                    Ok(rows.collect::<duckdb::Result<Vec<(i64, i64)>>>()?)
                })
                .await
                .unwrap();
            // The gauge counts every tenant's blocks; these tests' other tenant has its
            // blocks in the sum too.
            let all: i64 = store
                .read(|c| Ok(c.query_row("SELECT count(*) FROM search_blocks", [], |r| r.get(0))?))
                .await
                .unwrap();
            let gauge = store.metrics().text_index_memory();
            if held() == stored && gauge == all as u64 * (BLOOM_BITS / 8) as u64 {
                return;
            }
            // A step committed between the two reads: ask again.
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        panic!(
            "in memory {:?}, stored {stored:?}, gauge {}",
            held(),
            store.metrics().text_index_memory()
        );
    }

    async fn narrowed(store: &Store, tenant: &'static str, needle: String) -> Option<Narrowed> {
        // What the writer has committed is in the bitmaps once a read has waited for it.
        store.read(|_| Ok(())).await.unwrap();
        let bitmaps = store.inner.bitmaps.as_deref().expect("the index is on");
        narrow(bitmaps, tenant, &needle.to_lowercase(), (None, None))
    }

    /// Random records and needles: every search's matches, page and counts are what a
    /// brute-force pass over the records gives, whether the index narrows the search or
    /// not; and the index does narrow most of them.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn indexed_searches_match_a_brute_force_scan() {
        let seed = std::env::var("CALLSCOPE_TEST_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0x5EED_CA11);
        eprintln!("seed {seed} (CALLSCOPE_TEST_SEED)");
        let mut rng = Rng(seed);
        let dir = tempfile::tempdir().unwrap();
        let block = 32;
        let store = open(dir.path(), block).await;
        let mut all: Vec<TenantRecord> = Vec::new();
        let mut n = 0;
        while n < 4_000 {
            let size = 1 + rng.below(200);
            let batch: Vec<TenantRecord> = (0..size)
                .map(|i| {
                    let tenant = if (n + i) % 7 == 0 { "globex" } else { "acme" };
                    record(&mut rng, tenant, i64::try_from(n + i).unwrap())
                })
                .collect();
            store.append(batch.clone()).await.unwrap();
            all.extend(batch);
            n += size;
        }
        // A retry stores nothing new and changes no answer.
        store.append(all[..100].to_vec()).await.unwrap();
        indexed(&store, block).await;
        assert!(blocks(&store, "acme").await > 50);
        assert!(blocks(&store, "globex").await > 5);
        held_as_stored(&store, "acme").await;
        held_as_stored(&store, "globex").await;

        let mut needles: Vec<String> = vec![
            "zzz-not-there".into(),
            "TIMEOUT".into(),
            "ord-".into(),
            "straße".into(),
            "ÜBER".into(),
            "  Shipped  ".into(),
            "ok".into(),
            "(555) 010-".into(),
            "don't".into(),
        ];
        for _ in 0..40 {
            // A piece of a stored value: present somewhere, in a few blocks.
            let r = &all[rng.below(all.len())].record;
            if let Some(serde_json::Value::String(m)) =
                r.data.as_ref().and_then(|d| d.get("message"))
            {
                let chars: Vec<char> = m.chars().collect();
                let from = rng.below(chars.len());
                let len = 1 + rng.below(12.min(chars.len() - from));
                needles.push(chars[from..from + len].iter().collect());
            }
            needles.push(format!("{}", rng.below(100_000)));
        }
        let mut narrowed_some = 0;
        for needle in &needles {
            if needle.trim().is_empty() {
                continue;
            }
            if narrowed(&store, "acme", needle.trim().to_owned())
                .await
                .is_some()
            {
                narrowed_some += 1;
            }
            for tenant in ["acme", "globex"] {
                let window = if rng.below(2) == 0 {
                    (None, None)
                } else {
                    let a = T0 + i64::try_from(rng.below(4_000)).unwrap() * 1_000_000;
                    (Some(a), Some(a + 1_500 * 1_000_000))
                };
                let level = (rng.below(3) == 0).then_some(Level::Error);
                let order = if rng.below(2) == 0 {
                    Order::Asc
                } else {
                    Order::Desc
                };
                let (page, size) = (rng.below(3) as u64, [1u64, 7, 50][rng.below(3)]);
                let filter = SearchFilter {
                    text: Some(needle.clone()),
                    from: window.0.map(Timestamp),
                    to: window.1.map(Timestamp),
                    levels: level.into_iter().collect(),
                    ..SearchFilter::default()
                };
                let got = store
                    .search(
                        tenant,
                        SearchQuery {
                            filter,
                            order,
                            page,
                            size,
                        },
                    )
                    .await
                    .unwrap();
                let mut expect: Vec<&LogRecord> = all
                    .iter()
                    .filter(|r| r.tenant == tenant)
                    .map(|r| &r.record)
                    .filter(|r| window.0.is_none_or(|a| r.timestamp.0 >= a))
                    .filter(|r| window.1.is_none_or(|b| r.timestamp.0 <= b))
                    .filter(|r| level.is_none_or(|l| r.level == l))
                    .filter(|r| matches(r, needle))
                    .collect();
                let mut seen = HashSet::new();
                expect.retain(|r| seen.insert(r.id));
                expect.sort_by_key(|r| (r.timestamp, r.id));
                if order == Order::Desc {
                    expect.reverse();
                }
                let what = format!(
                    "{tenant} {needle:?} {window:?} {level:?} {order:?} page {page} size {size}"
                );
                assert_eq!(got.total_count, expect.len() as u64, "{what}");
                let mut events: BTreeMap<String, u64> = BTreeMap::new();
                for r in &expect {
                    *events.entry(r.event.clone()).or_default() += 1;
                }
                assert_eq!(got.event_counts, events, "{what}");
                let page_ids: Vec<_> = expect
                    .iter()
                    .skip((page * size) as usize)
                    .take(size as usize)
                    .map(|r| r.id)
                    .collect();
                let got_ids: Vec<_> = got.records.iter().map(|r| r.id).collect();
                assert_eq!(got_ids, page_ids, "{what}");
            }
        }
        assert!(
            narrowed_some * 2 > needles.len(),
            "the index narrowed only {narrowed_some} of {} needles",
            needles.len()
        );
        store.shutdown().await.unwrap();
    }

    /// A crash can leave records no block covers (blocks are written after their
    /// records). On open they are the tail: found by every search, and indexed again.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn records_without_blocks_are_searched_and_indexed_after_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let mut rng = Rng(7);
        let records: Vec<TenantRecord> = (0..600).map(|n| record(&mut rng, "acme", n)).collect();
        let count = |store: &Store, needle: &'static str| {
            let store = store.clone();
            async move {
                store
                    .search("acme", text_query(needle, Order::Desc, 10))
                    .await
                    .unwrap()
                    .total_count
            }
        };
        let expect = records
            .iter()
            .filter(|r| matches(&r.record, "timeout"))
            .count() as u64;
        {
            let store = open(dir.path(), 16).await;
            store.append(records.clone()).await.unwrap();
            indexed(&store, 16).await;
            assert!(blocks(&store, "acme").await >= 30);
            assert_eq!(count(&store, "timeout").await, expect);
            // What a crash between the records' commit and their blocks leaves.
            store
                .read(|c| {
                    c.execute_batch(
                        "DELETE FROM search_blocks WHERE seq_lo > (SELECT min(seq_lo) + 200 FROM search_blocks)",
                    )?;
                    Ok(())
                })
                .await
                .unwrap();
            assert_eq!(count(&store, "timeout").await, expect);
            store.shutdown().await.unwrap();
        }
        let store = open(dir.path(), 16).await;
        assert_eq!(count(&store, "timeout").await, expect);
        indexed(&store, 16).await;
        let again = blocks(&store, "acme").await;
        assert!(again >= 30, "indexed again");
        held_as_stored(&store, "acme").await;
        assert_eq!(count(&store, "timeout").await, expect);
        assert!(
            narrowed(&store, "acme", "zzz-not-there".into())
                .await
                .is_some()
        );
        store.shutdown().await.unwrap();
    }

    /// A file whose blocks were built with one bit per trigram (`Hashes::One`, before
    /// `Hashes::Four`) answers exactly, beside blocks of the new layout, and the old blocks
    /// still rule needles out.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn blocks_of_both_layouts_answer_exactly() {
        let dir = tempfile::tempdir().unwrap();
        let mut rng = Rng(23);
        let records: Vec<TenantRecord> = (0..900).map(|n| record(&mut rng, "acme", n)).collect();
        {
            let store = open(dir.path(), 16).await;
            store.append(records.clone()).await.unwrap();
            indexed(&store, 16).await;
            held_as_stored(&store, "acme").await;
            // Every other block becomes what a build before `Hashes::Four` wrote.
            store
                .read(|c| {
                    let blocks: Vec<(i64, i64)> = c
                        .prepare("SELECT seq_lo, seq_hi FROM search_blocks ORDER BY seq_lo")?
                        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
                        .collect::<duckdb::Result<_>>()?;
                    for (lo, hi) in blocks.into_iter().step_by(2) {
                        let mut grams = vec![0u8; BLOOM_BITS / 8];
                        let texts: Vec<Option<String>> = c
                            .prepare("SELECT search FROM logs WHERE seq BETWEEN ? AND ?")?
                            .query_map([lo, hi], |r| r.get(0))?
                            .collect::<duckdb::Result<_>>()?;
                        for text in texts.iter().flatten() {
                            for bit in bits_of(text.as_bytes(), Hashes::One) {
                                grams[bit / 8] |= 1 << (bit % 8);
                            }
                        }
                        c.execute(
                            "UPDATE search_blocks SET grams = ?, hashes = 1 WHERE seq_lo = ?",
                            duckdb::params![grams, lo],
                        )?;
                    }
                    Ok(())
                })
                .await
                .unwrap();
            store.shutdown().await.unwrap();
        }
        let store = open(dir.path(), 16).await;
        held_as_stored(&store, "acme").await;
        let layouts: Vec<i64> =
            store
                .read(|c| {
                    Ok(c.prepare(
                        "SELECT count(*) FROM search_blocks GROUP BY hashes ORDER BY hashes",
                    )?
                    .query_map([], |r| r.get(0))?
                    .collect::<duckdb::Result<_>>()?)
                })
                .await
                .unwrap();
        assert!(
            layouts.len() == 2 && layouts.iter().all(|n| *n > 5),
            "{layouts:?}"
        );
        for needle in [
            "timeout",
            "ord-",
            "shipped",
            "zzz-not-there",
            "(555) 010-",
            "über",
        ] {
            let got = store
                .search("acme", text_query(needle, Order::Asc, 100))
                .await
                .unwrap();
            let expect: Vec<_> = records
                .iter()
                .filter(|r| matches(&r.record, needle))
                .map(|r| r.record.id)
                .collect();
            assert_eq!(got.total_count, expect.len() as u64, "{needle}");
            let mut got_ids: Vec<_> = got.records.iter().map(|r| r.id).collect();
            let mut expect = expect;
            expect.truncate(100);
            got_ids.sort();
            expect.sort();
            assert_eq!(got_ids, expect, "{needle}");
        }
        // Blocks of both layouts rule out a needle none of them holds.
        let absent = narrowed(&store, "acme", "zzz-not-there".into()).await;
        assert_eq!(absent.map(|n| n.records), Some(0));
        store.shutdown().await.unwrap();
    }

    /// Retention drops the blocks whose records are all gone, and searches stay exact.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn retention_removes_blocks_with_their_records() {
        let dir = tempfile::tempdir().unwrap();
        let mut rng = Rng(11);
        let records: Vec<TenantRecord> = (0..800).map(|n| record(&mut rng, "acme", n)).collect();
        let store = open(dir.path(), 16).await;
        store.append(records.clone()).await.unwrap();
        indexed(&store, 16).await;
        let before = blocks(&store, "acme").await;
        let cut = T0 + 400 * 1_000_000;
        store.purge_before(Timestamp(cut)).await.unwrap();
        let after = blocks(&store, "acme").await;
        assert!(after < before && after > 0, "{before} -> {after}");
        held_as_stored(&store, "acme").await;
        let oldest: i64 = store
            .read(|c| Ok(c.query_row("SELECT min(ts_hi) FROM search_blocks", [], |r| r.get(0))?))
            .await
            .unwrap();
        assert!(oldest >= cut);
        let got = store
            .search("acme", text_query("order", Order::Asc, 5))
            .await
            .unwrap();
        let expect = records
            .iter()
            .filter(|r| r.record.timestamp.0 >= cut && matches(&r.record, "order"))
            .count() as u64;
        assert_eq!(got.total_count, expect);
        store.shutdown().await.unwrap();
    }

    #[test]
    fn a_bitmap_holds_every_trigram_of_what_it_was_given() {
        let text = "order ord-424242 shipped\nsecond value".as_bytes();
        let mut b = Bloom::new();
        b.add(text);
        // A block of the first layout, as files from before `Hashes::Four` hold them.
        let mut one = vec![0u8; BLOOM_BITS / 8];
        for bit in bits_of(text, Hashes::One) {
            one[bit / 8] |= 1 << (bit % 8);
        }
        for needle in [
            "ord-42",
            "424242 sh",
            "d\nsec",
            "shipped",
            "order",
            "2424",
            "424242",
        ] {
            let bits = needle_bits(needle).unwrap();
            assert!(may_contain(&b.bits, bits.of(Hashes::Four)), "{needle}");
            assert!(
                may_contain(&one, bits.of(Hashes::One)),
                "{needle} (one hash)"
            );
        }
        // Not a proof of absence for every needle (it is a Bloom filter), but these miss.
        for needle in ["timeout", "zzz", "qqqq", "ord-424243"] {
            let bits = needle_bits(needle).unwrap();
            assert!(!may_contain(&b.bits, bits.of(Hashes::Four)), "{needle}");
            assert!(
                !may_contain(&one, bits.of(Hashes::One)),
                "{needle} (one hash)"
            );
        }
    }

    /// The first layout's bits are those its blocks were written with (a change would
    /// make every existing block rule out needles it holds).
    #[test]
    fn blocks_of_the_first_layout_read_as_written() {
        let one = |text: &str| bits_of(text.as_bytes(), Hashes::One).collect::<Vec<_>>();
        assert_eq!(one("ord"), [71_277]);
        assert_eq!(one("rd-"), [176_238]);
        assert_eq!(one("424242"), [181_237, 245_886, 181_237, 245_886, 183_514]);
        assert_eq!(bits_of(b"ord", Hashes::Four).count(), 4);
    }

    #[test]
    fn needles_shorter_than_a_trigram_are_not_narrowed() {
        let count = |needle: &str| needle_bits(needle).map(|b| (b.one.len(), b.four.len()));
        assert!(needle_bits("ab").is_none());
        assert!(needle_bits("").is_none());
        assert_eq!(count("abc"), Some((1, 4)));
        // Multi-byte characters count by bytes: two of them are four bytes, two trigrams.
        assert_eq!(count("éé"), Some((2, 8)));
        // Six digits in a row add a window of their own.
        assert_eq!(count("12345"), Some((3, 12)));
        assert_eq!(count("123456"), Some((5, 20)));
        assert_eq!(count("a123456"), Some((6, 24)));
    }

    #[test]
    fn ranges_become_one_union_of_scans() {
        let n = Narrowed {
            ranges: vec![(1, Some(10)), (30, None)],
            records: 10,
        };
        assert_eq!(
            n.source(),
            "(SELECT rowid AS rid, * FROM logs WHERE seq BETWEEN 1 AND 10 UNION ALL \
             SELECT rowid AS rid, * FROM logs WHERE seq >= 30) AS logs"
        );
        assert_eq!(n.condition(), " AND seq BETWEEN 1 AND 10");
    }
}
