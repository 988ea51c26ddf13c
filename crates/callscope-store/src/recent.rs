//! The ids the writer committed lately, so that a group of new records can skip the
//! look-up in `logs`.
//!
//! A record's id is derived from its content, its time included, so a record and its
//! retry share a time. The writer keeps two generations of id fingerprints (the
//! current one and the one before it) and a *floor*: every stored record with a time
//! above the floor has its fingerprint in one of the two. A group whose records are all
//! newer than the floor needs the table only for the ids whose fingerprints are
//! present, which for live traffic is none, or only the retries. A group that reaches
//! below the floor (a late batch, an old export replayed) is looked up in the table
//! whole, as before.
//!
//! Why the floor holds:
//! - At open it is the newest time stored, and both generations are empty.
//! - Every group the writer tries to commit, committed or not (a commit that reported
//!   an error may still have been durable), has its ids added to the current
//!   generation. A fingerprint present for a record not stored only costs a look-up.
//! - When the current generation is full it becomes the previous one, and the floor
//!   becomes the newest time tried before that generation began: every record tried
//!   since then is in one of the two generations.
//!
//! A record stamped far in the future (a sender's clock gone wrong) raises the floor
//! past live traffic once its generation is dropped, and, because it is the newest
//! time stored, at every open after that: every group is then looked up in full, as
//! before these fingerprints existed. That is slower, never wrong.
//!
//! Purges delete records and leave their fingerprints, which again only costs a
//! look-up. Records written to `logs` other than through the writer (SQL lent by
//! `Store::read`) are not covered; nothing in callscope does that while serving.

use std::{
    collections::HashSet,
    hash::{BuildHasherDefault, Hasher},
};

use uuid::Uuid;

/// Fingerprints per generation: 2^20 buckets at hashbrown's 7/8 load, 9 MiB each.
pub(crate) const GENERATION: usize = (1 << 20) / 8 * 7;

/// Ids are SHA-256 derived, so their bits need no further hashing.
#[derive(Default, Clone, Copy)]
pub(crate) struct PassThrough(u64);

impl Hasher for PassThrough {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.0 = self.0.rotate_left(29) ^ u64::from_le_bytes(word);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

type Fingerprints = HashSet<u64, BuildHasherDefault<PassThrough>>;

fn fingerprint(id: &Uuid) -> u64 {
    let (hi, lo) = id.as_u64_pair();
    hi ^ lo
}

/// The fingerprints of the ids the writer tried to commit lately.
pub(crate) struct RecentIds {
    current: Fingerprints,
    previous: Fingerprints,
    /// Every stored record newer than this has its fingerprint in `current` or
    /// `previous`.
    floor: i64,
    /// The newest time tried before `current` began: the next floor.
    current_floor: i64,
    /// The newest time tried so far.
    newest: i64,
    generation: usize,
}

impl RecentIds {
    /// Starts with nothing remembered; `newest_stored` is the newest time in `logs`
    /// (`i64::MIN` when it is empty).
    pub(crate) fn new(newest_stored: i64, generation: usize) -> Self {
        Self {
            current: Fingerprints::with_capacity_and_hasher(
                generation,
                BuildHasherDefault::default(),
            ),
            previous: Fingerprints::default(),
            floor: newest_stored,
            current_floor: newest_stored,
            newest: newest_stored,
            generation: generation.max(1),
        }
    }

    /// Can a group whose oldest record is at `min_ts` be checked against these
    /// fingerprints alone?
    pub(crate) fn covers(&self, min_ts: i64) -> bool {
        min_ts > self.floor
    }

    /// Might `id` be stored? `false` is certain for records [`Self::covers`] admits.
    pub(crate) fn may_hold(&self, id: &Uuid) -> bool {
        let f = fingerprint(id);
        self.current.contains(&f) || self.previous.contains(&f)
    }

    /// Remembers a group the writer tried to commit: its `n` ids and its newest time.
    ///
    /// A group that would overfill the current generation starts the next one, so a
    /// generation never grows past the room it was given.
    pub(crate) fn remember<'a>(
        &mut self,
        ids: impl IntoIterator<Item = &'a Uuid>,
        n: usize,
        max_ts: i64,
    ) {
        if !self.current.is_empty() && self.current.len() + n > self.generation {
            // The oldest generation is freed before the next one is allocated.
            self.previous = std::mem::take(&mut self.current);
            self.current = Fingerprints::with_capacity_and_hasher(
                self.generation,
                BuildHasherDefault::default(),
            );
            self.floor = self.current_floor;
            self.current_floor = self.newest;
        }
        for id in ids {
            self.current.insert(fingerprint(id));
        }
        self.newest = self.newest.max(max_ts);
    }

    /// The floor, for tests.
    #[cfg(test)]
    pub(crate) fn floor(&self) -> i64 {
        self.floor
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u32) -> Uuid {
        let mut h = callscope_model::RecordIdHasher::new();
        h.i64(i64::from(n));
        h.finish()
    }

    #[test]
    fn a_group_newer_than_everything_stored_is_covered() {
        let recent = RecentIds::new(1_000, 10);
        assert!(!recent.covers(1_000));
        assert!(recent.covers(1_001));
        assert!(!recent.may_hold(&id(1)));
    }

    #[test]
    fn an_empty_store_covers_everything() {
        assert!(RecentIds::new(i64::MIN, 10).covers(i64::MIN + 1));
    }

    #[test]
    fn remembered_ids_are_held_for_two_generations_and_the_floor_follows() {
        let mut recent = RecentIds::new(0, 4);
        // Generation 1 fills with times up to 10.
        recent.remember(&[id(1), id(2)], 2, 5);
        recent.remember(&[id(3), id(4)], 2, 10);
        assert_eq!(recent.floor(), 0);
        assert!(recent.may_hold(&id(1)) && recent.may_hold(&id(4)));
        // The next group doesn't fit: generation 2 begins, and generation 1 is kept.
        recent.remember(&[id(5), id(6)], 2, 15);
        assert!(recent.may_hold(&id(1)) && recent.may_hold(&id(5)));
        assert_eq!(recent.floor(), 0);
        assert!(recent.covers(1));
        recent.remember(&[id(7), id(8)], 2, 20);
        assert_eq!(
            recent.current.len(),
            4,
            "a generation holds no more than its room"
        );
        // Generation 3 begins: generation 1 goes, and with it the records up to 10.
        recent.remember(&[id(9)], 1, 25);
        assert!(!recent.may_hold(&id(1)) && !recent.may_hold(&id(4)));
        assert!(recent.may_hold(&id(5)) && recent.may_hold(&id(8)) && recent.may_hold(&id(9)));
        assert_eq!(recent.floor(), 10);
        assert!(!recent.covers(10));
        assert!(recent.covers(11));
    }

    #[test]
    fn a_group_larger_than_a_generation_still_lands_whole() {
        let mut recent = RecentIds::new(0, 2);
        let ids: Vec<Uuid> = (1..=5).map(id).collect();
        recent.remember(&ids, ids.len(), 7);
        assert!(ids.iter().all(|i| recent.may_hold(i)));
        assert_eq!(recent.floor(), 0);
    }

    #[test]
    fn a_late_group_lowers_nothing() {
        let mut recent = RecentIds::new(100, 2);
        recent.remember(&[id(1), id(2)], 2, 50);
        // The newest time tried is still 100, so the floor can't drop below it.
        recent.remember(&[id(3), id(4)], 2, 60);
        recent.remember(&[id(5), id(6)], 2, 70);
        assert_eq!(recent.floor(), 100);
        assert!(!recent.covers(100));
    }
}
