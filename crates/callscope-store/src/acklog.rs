//! The ack log: where a group of records is made durable before its senders are
//! acknowledged, so that DuckDB's commits, and the checkpoints that stall them, happen
//! after the acknowledgement instead of before it.
//!
//! The acceptor (`accept.rs`) turns each group into a [`Unit`]: exactly the rows the
//! group adds to each table (`logs` numbered with `seq`, `spans`, `call_metrics`, the
//! summaries' journal), appends it to the log, fsyncs, acknowledges, and hands the unit
//! to the writer, which appends units to DuckDB in large transactions and records in the
//! same transaction the last unit applied (`ack_log.applied`). On open, the units after
//! that number are applied again before anything is served, so a `kill -9` loses nothing
//! that was acknowledged, and applies nothing twice.
//!
//! # Files
//!
//! The log is a folder beside the database file (`callscope.duckdb.acklog/`) of segment
//! files named by number. A segment starts with a header (a magic and the store's id,
//! `ack_log.store_id`: a log left beside a different or re-created database file is set
//! aside, never applied to it), then entries:
//!
//! ```text
//! magic u32 | payload length u32 | CRC-32 of the payload u32 | payload
//! payload: unit number u64 | part count u8 | per part: table u8 | length u32 | Arrow IPC stream
//! ```
//!
//! All integers are little-endian. A torn or corrupt entry ends its segment: it was
//! never acknowledged (an entry is acknowledged only after its fsync, and an append that
//! failed is cut off the file before the next one is written). A segment is deleted once
//! every unit in it is applied; a new one starts past [`SEGMENT_BYTES`].

use std::{
    collections::VecDeque,
    fs::{File, OpenOptions},
    io::{Seek, SeekFrom, Write},
    path::{Path, PathBuf},
    sync::Arc,
};

use arrow_ipc::{reader::StreamReader, writer::StreamWriter};
use duckdb::arrow::{
    array::{ArrayRef, FixedSizeBinaryArray, Int64Array, StringArray, UInt8Array},
    datatypes::{DataType, Field, Schema},
    record_batch::RecordBatch,
};
use uuid::Uuid;

use crate::{Error, Result, timeline::MetricRow};

/// A segment grows to about this size before the next one starts.
pub(crate) const SEGMENT_BYTES: u64 = 64 << 20;

const SEGMENT_MAGIC: &[u8; 8] = b"CSACKLG1";
const HEADER_LEN: u64 = 8 + 16;
const ENTRY_MAGIC: u32 = 0x4C41_5343;
const ENTRY_HEADER: usize = 12;

/// The tables a unit adds rows to, and their tags in the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Table {
    Logs = 1,
    Spans = 2,
    CallMetrics = 3,
    CallJournal = 4,
    CountJournal = 5,
}

impl Table {
    /// Every table, in the order a unit's parts are appended.
    pub(crate) const ALL: [Table; 5] = [
        Table::Logs,
        Table::Spans,
        Table::CallMetrics,
        Table::CallJournal,
        Table::CountJournal,
    ];

    pub(crate) fn name(self) -> &'static str {
        match self {
            Table::Logs => "logs",
            Table::Spans => "spans",
            Table::CallMetrics => "call_metrics",
            Table::CallJournal => "call_journal",
            Table::CountJournal => "count_journal",
        }
    }

    fn from_tag(tag: u8) -> Option<Self> {
        Some(match tag {
            1 => Table::Logs,
            2 => Table::Spans,
            3 => Table::CallMetrics,
            4 => Table::CallJournal,
            5 => Table::CountJournal,
            _ => return None,
        })
    }
}

/// One acknowledged group: the rows it adds, table by table, in the order they are
/// appended.
#[derive(Debug)]
pub(crate) struct Unit {
    pub(crate) no: u64,
    pub(crate) parts: Vec<(Table, RecordBatch)>,
}

impl Unit {
    /// Records and spans in the unit (what the apply backlog is bounded by).
    pub(crate) fn records(&self) -> usize {
        self.parts
            .iter()
            .filter(|(t, _)| matches!(t, Table::Logs | Table::Spans))
            .map(|(_, b)| b.num_rows())
            .sum()
    }

    /// The unit's `logs` batches, numbered.
    pub(crate) fn logs(&self) -> impl Iterator<Item = &RecordBatch> {
        self.parts
            .iter()
            .filter(|(t, _)| *t == Table::Logs)
            .map(|(_, b)| b)
    }

    /// The whole entry, header included, built in one buffer.
    fn encode(&self) -> Result<Vec<u8>> {
        let mut entry = Vec::with_capacity(4096);
        entry.extend_from_slice(&[0; ENTRY_HEADER]);
        entry.extend_from_slice(&self.no.to_le_bytes());
        let count = u8::try_from(self.parts.len())
            .map_err(|_| Error::Corrupt("a unit of more than 255 parts".into()))?;
        entry.push(count);
        for (table, batch) in &self.parts {
            entry.push(*table as u8);
            let at = entry.len();
            entry.extend_from_slice(&[0; 4]);
            {
                let mut w =
                    StreamWriter::try_new(&mut entry, &batch.schema()).map_err(|e| ipc(&e))?;
                w.write(batch).map_err(|e| ipc(&e))?;
                w.finish().map_err(|e| ipc(&e))?;
            }
            let len = u32::try_from(entry.len() - at - 4)
                .map_err(|_| Error::Corrupt("a part over 4 GiB".into()))?;
            entry[at..at + 4].copy_from_slice(&len.to_le_bytes());
        }
        let len = u32::try_from(entry.len() - ENTRY_HEADER)
            .map_err(|_| Error::Corrupt("a unit over 4 GiB".into()))?;
        let crc = crc32fast::hash(&entry[ENTRY_HEADER..]);
        entry[..4].copy_from_slice(&ENTRY_MAGIC.to_le_bytes());
        entry[4..8].copy_from_slice(&len.to_le_bytes());
        entry[8..12].copy_from_slice(&crc.to_le_bytes());
        Ok(entry)
    }

    fn decode(payload: &[u8]) -> Result<Unit> {
        let bad = || Error::Corrupt("an ack log entry that does not parse".into());
        let no = u64::from_le_bytes(
            payload
                .get(..8)
                .ok_or_else(bad)?
                .try_into()
                .map_err(|_| bad())?,
        );
        let count = *payload.get(8).ok_or_else(bad)?;
        let mut at = 9;
        let mut parts = Vec::with_capacity(usize::from(count));
        for _ in 0..count {
            let table = Table::from_tag(*payload.get(at).ok_or_else(bad)?).ok_or_else(bad)?;
            let len = u32::from_le_bytes(
                payload
                    .get(at + 1..at + 5)
                    .ok_or_else(bad)?
                    .try_into()
                    .map_err(|_| bad())?,
            ) as usize;
            at += 5;
            let bytes = payload.get(at..at + len).ok_or_else(bad)?;
            at += len;
            let reader = StreamReader::try_new(bytes, None).map_err(|e| ipc(&e))?;
            for batch in reader {
                parts.push((table, batch.map_err(|e| ipc(&e))?));
            }
        }
        Ok(Unit { no, parts })
    }
}

fn ipc(e: &duckdb::arrow::error::ArrowError) -> Error {
    Error::Corrupt(format!("ack log entry: {e}"))
}

/// `call_metrics` rows as a batch for the appender (ids as Arrow UUIDs, as `logs` has
/// them).
pub(crate) fn metrics_batch(rows: &[&MetricRow]) -> Result<RecordBatch> {
    let uuid_meta = std::collections::HashMap::from([(
        "ARROW:extension:name".to_owned(),
        "arrow.uuid".to_owned(),
    )]);
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::FixedSizeBinary(16), false).with_metadata(uuid_meta),
        Field::new("call_key", DataType::Utf8, false),
        Field::new("ts", DataType::Int64, false),
        Field::new("kind", DataType::UInt8, false),
        Field::new("turn", DataType::Int64, true),
        Field::new("end_to_end_ms", DataType::Int64, true),
        Field::new("llm_input_tokens", DataType::Int64, true),
        Field::new("llm_output_tokens", DataType::Int64, true),
        Field::new("tts_characters", DataType::Int64, true),
        Field::new("stt_us", DataType::Int64, true),
    ]));
    let ids = FixedSizeBinaryArray::try_from_iter(rows.iter().map(|m| m.id.into_bytes()))
        .map_err(|e| Error::Corrupt(e.to_string()))?;
    let opt = |f: fn(&MetricRow) -> Option<i64>| -> ArrayRef {
        Arc::new(rows.iter().map(|m| f(m)).collect::<Int64Array>())
    };
    let columns: Vec<ArrayRef> = vec![
        Arc::new(ids),
        Arc::new(StringArray::from_iter_values(
            rows.iter().map(|m| m.call_key.as_str()),
        )),
        Arc::new(Int64Array::from_iter_values(rows.iter().map(|m| m.ts))),
        Arc::new(UInt8Array::from_iter_values(rows.iter().map(|m| m.kind))),
        opt(|m| m.turn),
        opt(|m| m.end_to_end_ms),
        opt(|m| m.llm_input_tokens),
        opt(|m| m.llm_output_tokens),
        opt(|m| m.tts_characters),
        opt(|m| m.stt_us),
    ];
    RecordBatch::try_new(schema, columns).map_err(|e| Error::Corrupt(e.to_string()))
}

/// The file's side of the log: which store it is, and the last unit applied (updated in
/// the transaction that applies it).
pub(crate) const DDL: &str =
    "CREATE TABLE IF NOT EXISTS ack_log (store_id UUID NOT NULL, applied BIGINT NOT NULL);";

/// The store's id and the last unit applied; a file without them gets a new id.
pub(crate) fn state(conn: &duckdb::Connection) -> Result<(Uuid, u64)> {
    let row: Option<(String, i64)> = conn
        .query_row("SELECT store_id::VARCHAR, applied FROM ack_log", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .map(Some)
        .or_else(|e| match e {
            duckdb::Error::QueryReturnedNoRows => Ok(None),
            e => Err(e),
        })?;
    match row {
        Some((id, applied)) => Ok((
            crate::query::parse_id(&id)?,
            u64::try_from(applied).unwrap_or(0),
        )),
        None => {
            let id = Uuid::new_v4();
            conn.execute("INSERT INTO ack_log VALUES (?, 0)", [id.to_string()])?;
            Ok((id, 0))
        }
    }
}

/// A closed segment and the last unit it holds.
struct Segment {
    path: PathBuf,
    last_unit: u64,
}

/// The log's writing end: owned by the acceptor.
pub(crate) struct AckLog {
    dir: PathBuf,
    store_id: Uuid,
    /// The segment appends go to; created by the first append after a start or a
    /// rotation, so a store that never acknowledges from the log writes no file.
    current: Option<Current>,
    /// The last segment number used.
    number: u64,
    closed: VecDeque<Segment>,
}

/// The segment being appended to.
struct Current {
    file: File,
    path: PathBuf,
    /// Where the last acknowledged entry ends: an append that failed is cut back to it
    /// before the next one is written.
    good_len: u64,
    /// Did the last append fail (and the file may hold part of it)?
    torn: bool,
    /// The last unit in it (0 while it holds none).
    last: u64,
}

/// What [`AckLog::open`] found.
pub(crate) struct Opened {
    pub(crate) log: AckLog,
    /// The units after `applied`, in order, to apply before serving.
    pub(crate) replay: Vec<Unit>,
    /// The highest unit number in the log (or `applied`, if higher).
    pub(crate) last_unit: u64,
}

impl AckLog {
    /// The log's folder for the database file `db`.
    pub(crate) fn dir_for(db: &Path) -> PathBuf {
        let mut name = db.file_name().unwrap_or_default().to_os_string();
        name.push(".acklog");
        db.with_file_name(name)
    }

    /// Opens the log in `dir` for the store `store_id` and reads every segment it holds
    /// (none when there is no folder). Segments of another store are renamed aside.
    pub(crate) fn open(dir: &Path, store_id: Uuid, applied: u64) -> Result<Opened> {
        let io = |e: std::io::Error| Error::Unavailable(format!("the ack log: {e}"));
        let entries = match std::fs::read_dir(dir) {
            Ok(entries) => Some(entries),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(io(e)),
        };
        let mut numbered: Vec<(u64, PathBuf)> = entries
            .into_iter()
            .flatten()
            .filter_map(|e| {
                let path = e.ok()?.path();
                let n = path
                    .file_name()?
                    .to_str()?
                    .strip_suffix(".log")?
                    .parse()
                    .ok()?;
                Some((n, path))
            })
            .collect();
        numbered.sort();
        let mut replay = Vec::new();
        let mut closed = VecDeque::new();
        let mut last_unit = applied;
        let mut number = 0;
        for (n, path) in numbered {
            number = number.max(n);
            let bytes = std::fs::read(&path).map_err(io)?;
            if bytes.len() < HEADER_LEN as usize
                || &bytes[..8] != SEGMENT_MAGIC
                || bytes[8..24] != *store_id.as_bytes()
            {
                if bytes.len() <= HEADER_LEN as usize {
                    // A segment created but never written to (or its header torn).
                    let _ = std::fs::remove_file(&path);
                    continue;
                }
                let aside = path.with_extension("foreign");
                tracing::warn!(
                    segment = %path.display(),
                    "An ack log segment belongs to another database file; set aside, not applied."
                );
                std::fs::rename(&path, &aside).map_err(io)?;
                continue;
            }
            let mut at = HEADER_LEN as usize;
            let mut seg_last = 0;
            while let Some(header) = bytes.get(at..at + ENTRY_HEADER) {
                let word =
                    |i: usize| u32::from_le_bytes(header[i..i + 4].try_into().unwrap_or_default());
                let (magic, len, crc) = (word(0), word(4) as usize, word(8));
                let Some(payload) = bytes.get(at + ENTRY_HEADER..at + ENTRY_HEADER + len) else {
                    break;
                };
                if magic != ENTRY_MAGIC || crc32fast::hash(payload) != crc {
                    break;
                }
                let unit = match Unit::decode(payload) {
                    Ok(u) => u,
                    Err(e) => {
                        tracing::warn!(error = %e, segment = %path.display(), "An ack log entry does not parse; the rest of its segment is skipped.");
                        break;
                    }
                };
                at += ENTRY_HEADER + len;
                seg_last = unit.no;
                last_unit = last_unit.max(unit.no);
                if unit.no > applied {
                    replay.push(unit);
                }
            }
            if at < bytes.len() {
                tracing::warn!(
                    segment = %path.display(),
                    bytes = bytes.len() - at,
                    "The ack log ends in an entry that was never acknowledged; it is dropped."
                );
            }
            closed.push_back(Segment {
                path,
                last_unit: seg_last,
            });
        }
        Ok(Opened {
            log: AckLog {
                dir: dir.to_owned(),
                store_id,
                current: None,
                number,
                closed,
            },
            replay,
            last_unit,
        })
    }

    /// Appends `unit` and fsyncs it: once this returns `Ok`, the unit survives a crash.
    ///
    /// # Errors
    /// The write or the fsync failed; the unit must not be acknowledged.
    pub(crate) fn append(&mut self, unit: &Unit) -> Result<()> {
        let entry = unit.encode()?;
        let failed =
            |e: std::io::Error| Error::Unavailable(format!("writing the ack log failed: {e}"));
        if self.current.is_none() {
            let (file, path) =
                create_segment(&self.dir, self.number + 1, self.store_id).map_err(failed)?;
            self.number += 1;
            self.current = Some(Current {
                file,
                path,
                good_len: HEADER_LEN,
                torn: false,
                last: 0,
            });
        }
        let current = self.current.as_mut().ok_or(Error::Closed)?;
        current.append(&entry).map_err(failed)?;
        current.last = unit.no;
        if current.good_len >= SEGMENT_BYTES {
            self.rotate();
        }
        Ok(())
    }

    /// Closes the current segment: the next append starts the next one.
    fn rotate(&mut self) {
        if let Some(c) = self.current.take() {
            self.closed.push_back(Segment {
                path: c.path,
                last_unit: c.last,
            });
        }
    }

    /// Deletes the segments whose units are all applied; with `everything`, the current
    /// one too if all of it is (at shutdown, when nothing more is appended).
    pub(crate) fn release(&mut self, applied: u64, everything: bool) {
        while self.closed.front().is_some_and(|s| s.last_unit <= applied) {
            if let Some(s) = self.closed.pop_front()
                && let Err(e) = std::fs::remove_file(&s.path)
            {
                tracing::warn!(error = %e, segment = %s.path.display(), "Deleting an applied ack log segment failed.");
            }
        }
        if everything
            && self.closed.is_empty()
            && self.current.as_ref().is_none_or(|c| c.last <= applied)
        {
            // A clean shutdown leaves no log behind (the folder only if it is empty).
            if let Some(c) = self.current.take() {
                let _ = std::fs::remove_file(&c.path);
            }
            let _ = std::fs::remove_dir(&self.dir);
        }
    }
}

impl Current {
    fn append(&mut self, entry: &[u8]) -> std::io::Result<()> {
        if self.torn {
            self.file.set_len(self.good_len)?;
            self.file.sync_data()?;
            self.torn = false;
        }
        self.file.seek(SeekFrom::Start(self.good_len))?;
        let written = self
            .file
            .write_all(entry)
            .and_then(|()| self.file.sync_data());
        match written {
            Ok(()) => {
                self.good_len += entry.len() as u64;
                Ok(())
            }
            Err(e) => {
                // Cut the failed entry off now if the file system lets us, and before
                // the next append otherwise.
                self.torn = true;
                if self.file.set_len(self.good_len).is_ok() && self.file.sync_data().is_ok() {
                    self.torn = false;
                }
                Err(e)
            }
        }
    }
}

/// Creates segment `number` with its header, durably (the file and its folder entry).
fn create_segment(dir: &Path, number: u64, store_id: Uuid) -> std::io::Result<(File, PathBuf)> {
    std::fs::create_dir_all(dir)?;
    let path = dir.join(format!("{number:020}.log"));
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&path)?;
    file.write_all(SEGMENT_MAGIC)?;
    file.write_all(store_id.as_bytes())?;
    file.sync_all()?;
    File::open(dir)?.sync_all()?;
    Ok((file, path))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unit(no: u64, rows: i64) -> Unit {
        let schema = Arc::new(Schema::new(vec![Field::new("seq", DataType::Int64, true)]));
        let batch = RecordBatch::try_new(
            schema,
            vec![Arc::new(Int64Array::from_iter_values(0..rows)) as ArrayRef],
        )
        .unwrap();
        Unit {
            no,
            parts: vec![(Table::Logs, batch)],
        }
    }

    #[test]
    fn units_come_back_in_order_and_a_torn_tail_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let id = Uuid::new_v4();
        let mut log = AckLog::open(dir.path(), id, 0).unwrap().log;
        for no in 1..=3 {
            log.append(&unit(no, 10)).unwrap();
        }
        // Half an entry, as a crash mid-write leaves it.
        let half = unit(4, 10).encode().unwrap();
        let path = &log.current.as_ref().unwrap().path;
        let mut f = OpenOptions::new().append(true).open(path).unwrap();
        f.write_all(&half[..half.len() / 2]).unwrap();
        drop(log);

        let opened = AckLog::open(dir.path(), id, 1).unwrap();
        let got: Vec<u64> = opened.replay.iter().map(|u| u.no).collect();
        assert_eq!(got, vec![2, 3]);
        assert_eq!(opened.last_unit, 3);
        assert_eq!(opened.replay[1].records(), 10);
    }

    #[test]
    fn a_log_of_another_store_is_never_replayed() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = AckLog::open(dir.path(), Uuid::new_v4(), 0).unwrap().log;
        log.append(&unit(1, 5)).unwrap();
        drop(log);
        let opened = AckLog::open(dir.path(), Uuid::new_v4(), 0).unwrap();
        assert!(opened.replay.is_empty());
        assert!(std::fs::read_dir(dir.path()).unwrap().any(|e| {
            e.unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "foreign")
        }));
    }

    #[test]
    fn a_log_that_is_never_appended_to_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("calls.duckdb.acklog");
        let mut log = AckLog::open(&path, Uuid::new_v4(), 0).unwrap().log;
        log.release(0, true);
        assert!(!path.exists());
    }

    #[test]
    fn applied_segments_are_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let id = Uuid::new_v4();
        let mut log = AckLog::open(dir.path(), id, 0).unwrap().log;
        log.append(&unit(1, 5)).unwrap();
        log.rotate();
        log.append(&unit(2, 5)).unwrap();
        assert_eq!(log.closed.len(), 1);
        log.release(1, false);
        assert!(log.closed.is_empty());
        log.release(2, true);
        assert!(!dir.path().exists());
    }
}
