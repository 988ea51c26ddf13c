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
//! whole.
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
//! A record stamped more than [`AHEAD`] past the writer's clock (a sender's clock gone
//! wrong) would lift the floor past live traffic. Such records are remembered apart,
//! for good, and left out of the floor; the file's newest time at open leaves them
//! out too, and their ids are read back instead. Past [`AHEAD_CAP`] of them nothing is
//! covered any more and every group is looked up in full: slower, never wrong.
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

/// Fingerprints per generation of span ids: spans arrive at most about as often as
/// records, and a generation of a quarter the size still covers minutes of traffic.
pub(crate) const SPAN_GENERATION: usize = (1 << 18) / 8 * 7;

/// How far past the writer's clock a record's time may be and still count toward the
/// floor: five minutes, in nanoseconds.
pub(crate) const AHEAD: i64 = 5 * 60 * 1_000_000_000;

/// The most records stamped further ahead than [`AHEAD`] that are remembered.
pub(crate) const AHEAD_CAP: usize = 100_000;

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
    /// The newest time tried so far, records further ahead than [`AHEAD`] aside.
    newest: i64,
    generation: usize,
    /// Records stamped further ahead than [`AHEAD`] when they were tried or when the
    /// file was opened; never dropped.
    ahead: Fingerprints,
    /// More than [`AHEAD_CAP`] such records: nothing is covered.
    overflowed: bool,
}

impl RecentIds {
    /// Starts with nothing remembered but `ahead_stored`: `newest_stored` is the newest
    /// time in `logs` no further ahead than [`AHEAD`] (`i64::MIN` when there is none),
    /// and `ahead_stored` the ids of the records further ahead (at most
    /// [`AHEAD_CAP`] + 1 of them).
    pub(crate) fn new(newest_stored: i64, ahead_stored: &[Uuid], generation: usize) -> Self {
        let ahead: Fingerprints = ahead_stored.iter().map(fingerprint).collect();
        Self {
            overflowed: ahead.len() > AHEAD_CAP,
            ahead,
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
        !self.overflowed && min_ts > self.floor
    }

    /// Might `id` be stored? `false` is certain for records [`Self::covers`] admits.
    pub(crate) fn may_hold(&self, id: &Uuid) -> bool {
        let f = fingerprint(id);
        self.current.contains(&f) || self.previous.contains(&f) || self.ahead.contains(&f)
    }

    /// Remembers a group the writer tried to commit: its `n` ids with their times,
    /// the writer's clock reading `now`.
    ///
    /// A group that would overfill the current generation starts the next one, so a
    /// generation never grows past the room it was given.
    pub(crate) fn remember<'a>(
        &mut self,
        ids: impl IntoIterator<Item = (&'a Uuid, i64)>,
        n: usize,
        now: i64,
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
        let horizon = now.saturating_add(AHEAD);
        for (id, ts) in ids {
            if ts <= horizon {
                self.current.insert(fingerprint(id));
                self.newest = self.newest.max(ts);
            } else if self.ahead.len() < AHEAD_CAP {
                self.ahead.insert(fingerprint(id));
            } else if !self.overflowed {
                self.overflowed = true;
                tracing::warn!(
                    cap = AHEAD_CAP,
                    "More records stamped over five minutes ahead than remembered; every group is now looked up in storage for duplicates until restart."
                );
            }
        }
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

    /// A clock far enough on that no time in these tests is ahead of it.
    const LATE: i64 = i64::MAX;

    fn id(n: u32) -> Uuid {
        let mut h = callscope_model::RecordIdHasher::new();
        h.i64(i64::from(n));
        h.finish()
    }

    /// Remembers `ids`, all stamped `ts`, with the clock at `now`.
    fn remember(recent: &mut RecentIds, ids: &[Uuid], ts: i64, now: i64) {
        recent.remember(ids.iter().map(|i| (i, ts)), ids.len(), now);
    }

    #[test]
    fn a_group_newer_than_everything_stored_is_covered() {
        let recent = RecentIds::new(1_000, &[], 10);
        assert!(!recent.covers(1_000));
        assert!(recent.covers(1_001));
        assert!(!recent.may_hold(&id(1)));
    }

    #[test]
    fn an_empty_store_covers_everything() {
        assert!(RecentIds::new(i64::MIN, &[], 10).covers(i64::MIN + 1));
    }

    #[test]
    fn remembered_ids_are_held_for_two_generations_and_the_floor_follows() {
        let mut recent = RecentIds::new(0, &[], 4);
        // Generation 1 fills with times up to 10.
        remember(&mut recent, &[id(1), id(2)], 5, LATE);
        remember(&mut recent, &[id(3), id(4)], 10, LATE);
        assert_eq!(recent.floor(), 0);
        assert!(recent.may_hold(&id(1)) && recent.may_hold(&id(4)));
        // The next group doesn't fit: generation 2 begins, and generation 1 is kept.
        remember(&mut recent, &[id(5), id(6)], 15, LATE);
        assert!(recent.may_hold(&id(1)) && recent.may_hold(&id(5)));
        assert_eq!(recent.floor(), 0);
        assert!(recent.covers(1));
        remember(&mut recent, &[id(7), id(8)], 20, LATE);
        assert_eq!(
            recent.current.len(),
            4,
            "a generation holds no more than its room"
        );
        // Generation 3 begins: generation 1 goes, and with it the records up to 10.
        remember(&mut recent, &[id(9)], 25, LATE);
        assert!(!recent.may_hold(&id(1)) && !recent.may_hold(&id(4)));
        assert!(recent.may_hold(&id(5)) && recent.may_hold(&id(8)) && recent.may_hold(&id(9)));
        assert_eq!(recent.floor(), 10);
        assert!(!recent.covers(10));
        assert!(recent.covers(11));
    }

    #[test]
    fn a_group_larger_than_a_generation_still_lands_whole() {
        let mut recent = RecentIds::new(0, &[], 2);
        let ids: Vec<Uuid> = (1..=5).map(id).collect();
        remember(&mut recent, &ids, 7, LATE);
        assert!(ids.iter().all(|i| recent.may_hold(i)));
        assert_eq!(recent.floor(), 0);
    }

    #[test]
    fn a_late_group_lowers_nothing() {
        let mut recent = RecentIds::new(100, &[], 2);
        remember(&mut recent, &[id(1), id(2)], 50, LATE);
        // The newest time tried is still 100, so the floor can't drop below it.
        remember(&mut recent, &[id(3), id(4)], 60, LATE);
        remember(&mut recent, &[id(5), id(6)], 70, LATE);
        assert_eq!(recent.floor(), 100);
        assert!(!recent.covers(100));
    }

    #[test]
    fn records_far_ahead_of_the_clock_are_held_for_good_and_leave_the_floor_alone() {
        let now = 1_000_000_000_000;
        let far = now + 100 * AHEAD;
        let mut recent = RecentIds::new(0, &[id(100)], 2);
        assert!(recent.may_hold(&id(100)), "ids read back at open are held");
        remember(&mut recent, &[id(1)], far, now);
        // Live groups come and go; generations rotate several times.
        for n in 0..10 {
            remember(&mut recent, &[id(10 + n)], now + i64::from(n), now);
        }
        assert!(
            recent.floor() < now + 10,
            "the floor follows live traffic only"
        );
        assert!(recent.covers(now + 10));
        assert!(recent.may_hold(&id(1)) && recent.may_hold(&id(100)));
        // Just inside the horizon still counts as live.
        remember(&mut recent, &[id(50)], now + AHEAD, now);
        assert!(!recent.ahead.contains(&fingerprint(&id(50))));
    }

    #[test]
    fn too_many_records_ahead_turn_the_shortcut_off() {
        let many: Vec<Uuid> = (0..=u32::try_from(AHEAD_CAP).unwrap()).map(id).collect();
        let recent = RecentIds::new(0, &many, 4);
        assert!(!recent.covers(1));
    }
}
