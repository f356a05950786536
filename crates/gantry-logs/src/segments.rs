//! The log event store: append-only segment files per stream, indexed by time.
//!
//! A stream's events live in `DIR/<hex group>/<hex stream>/<first sequence>.seg`. Each record is
//! `[u32 payload length][u32 CRC-32 of the payload][i64 timestamp][i64 ingestion time][message]`,
//! little-endian. A segment is closed (and a new one started) when it passes [`SEGMENT_BYTES`] or
//! is older than [`SEGMENT_SPAN_MS`] of ingestion time, so retention can drop whole files. Each
//! segment's index (first sequence, event count, min/max timestamp, size) is kept in memory, built
//! by one scan when the store opens; a read by time range opens only the segments whose
//! [min, max] overlaps it.
//!
//! Durability: [`StreamLog::append`] writes the batch with one `write` and `fdatasync`s the file
//! before it returns, so an acknowledged PutLogEvents survives a crash. A new segment's directory
//! entry is fsynced when the segment is created. On open, a torn or corrupt tail (a short record
//! or a CRC mismatch, as a crash in the middle of a write leaves) is cut off the last segment.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

/// A segment is closed past this size.
pub const SEGMENT_BYTES: u64 = 8 << 20;
/// A segment is closed when its first event was ingested this long ago (one hour).
pub const SEGMENT_SPAN_MS: i64 = 3_600_000;
const HEADER: usize = 8;
const FIXED: usize = 16;

/// One stored event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// The event's position in its stream (0, 1, ...): the order it was ingested in.
    pub seq: u64,
    pub timestamp: i64,
    pub ingestion_time: i64,
    pub message: String,
}

/// What is known of one segment without reading it.
#[derive(Debug, Clone)]
pub struct SegmentIndex {
    pub path: PathBuf,
    pub first_seq: u64,
    pub count: u64,
    pub min_ts: i64,
    pub max_ts: i64,
    pub first_ingestion: i64,
    pub last_ingestion: i64,
    pub bytes: u64,
}

/// The events of one stream.
#[derive(Debug)]
pub struct StreamLog {
    dir: PathBuf,
    segments: Vec<SegmentIndex>,
    tail: Option<File>,
    next_seq: u64,
}

fn crc32(data: &[u8]) -> u32 {
    const TABLE: [u32; 256] = {
        let mut t = [0u32; 256];
        let mut i = 0;
        while i < 256 {
            let mut c = i as u32;
            let mut k = 0;
            while k < 8 {
                c = if c & 1 != 0 { 0xEDB8_8320 ^ (c >> 1) } else { c >> 1 };
                k += 1;
            }
            t[i] = c;
            i += 1;
        }
        t
    };
    let mut c = !0u32;
    for &b in data {
        c = TABLE[((c ^ b as u32) & 0xff) as usize] ^ (c >> 8);
    }
    !c
}

fn encode(out: &mut Vec<u8>, timestamp: i64, ingestion: i64, message: &str) {
    let len = (FIXED + message.len()) as u32;
    let start = out.len();
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&timestamp.to_le_bytes());
    out.extend_from_slice(&ingestion.to_le_bytes());
    out.extend_from_slice(message.as_bytes());
    let crc = crc32(&out[start + HEADER..]);
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

/// Decodes the records of `data`; returns them and the length of the valid prefix.
fn decode(data: &[u8], first_seq: u64) -> (Vec<Event>, usize) {
    let mut events = Vec::new();
    let valid = walk(data, first_seq, |seq, timestamp, ingestion_time, message| {
        events.push(Event { seq, timestamp, ingestion_time, message: message.to_string() })
    });
    (events, valid)
}

/// Calls `f(seq, timestamp, ingestion time, message)` for each valid record of `data`, without
/// copying the messages; returns the length of the valid prefix.
fn walk(data: &[u8], first_seq: u64, mut f: impl FnMut(u64, i64, i64, &str)) -> usize {
    let mut at = 0;
    let mut seq = first_seq;
    while data.len() - at >= HEADER {
        let len = u32::from_le_bytes(data[at..at + 4].try_into().unwrap_or_default()) as usize;
        let crc = u32::from_le_bytes(data[at + 4..at + 8].try_into().unwrap_or_default());
        if len < FIXED || data.len() - at - HEADER < len {
            break;
        }
        let payload = &data[at + HEADER..at + HEADER + len];
        if crc32(payload) != crc {
            break;
        }
        let Ok(message) = std::str::from_utf8(&payload[FIXED..]) else { break };
        f(
            seq,
            i64::from_le_bytes(payload[0..8].try_into().unwrap_or_default()),
            i64::from_le_bytes(payload[8..16].try_into().unwrap_or_default()),
            message,
        );
        seq += 1;
        at += HEADER + len;
    }
    at
}

/// Every event of the stream in `dir`, in ingestion order, reading its segments without
/// changing them (another process may be appending: a torn tail is simply not read).
pub fn read_only(dir: &Path) -> io::Result<Vec<Event>> {
    let mut names: Vec<(u64, PathBuf)> = fs::read_dir(dir)?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let p = e.path();
            let seq = p.file_name()?.to_str()?.strip_suffix(".seg")?.parse().ok()?;
            Some((seq, p))
        })
        .collect();
    names.sort();
    let mut out = Vec::new();
    for (first_seq, path) in names {
        let mut data = Vec::new();
        match File::open(&path) {
            Ok(mut f) => f.read_to_end(&mut data)?,
            // Removed by retention meanwhile.
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        out.extend(decode(&data, first_seq).0);
    }
    Ok(out)
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

impl StreamLog {
    /// Opens (or creates) the stream in `dir`, indexing its segments and cutting a torn tail.
    pub fn open(dir: PathBuf) -> io::Result<StreamLog> {
        fs::create_dir_all(&dir)?;
        let mut names: Vec<(u64, PathBuf)> = fs::read_dir(&dir)?
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let p = e.path();
                let seq = p.file_name()?.to_str()?.strip_suffix(".seg")?.parse().ok()?;
                Some((seq, p))
            })
            .collect();
        names.sort();
        let mut segments = Vec::new();
        let last = names.len().saturating_sub(1);
        for (i, (first_seq, path)) in names.into_iter().enumerate() {
            let mut data = Vec::new();
            File::open(&path)?.read_to_end(&mut data)?;
            let (events, valid) = decode(&data, first_seq);
            if valid < data.len() {
                if i == last {
                    tracing::warn!(path = %path.display(), kept = valid, dropped = data.len() - valid,
                        "cutting the torn tail of a log segment");
                    let f = OpenOptions::new().write(true).open(&path)?;
                    f.set_len(valid as u64)?;
                    f.sync_all()?;
                } else {
                    tracing::warn!(path = %path.display(), "a log segment has a corrupt record; reading up to it");
                }
            }
            if events.is_empty() {
                fs::remove_file(&path)?;
                continue;
            }
            segments.push(index_of(path, first_seq, &events, valid as u64));
        }
        let next_seq = segments.last().map_or(0, |s| s.first_seq + s.count);
        Ok(StreamLog { dir, segments, tail: None, next_seq })
    }

    pub fn segments(&self) -> &[SegmentIndex] {
        &self.segments
    }

    /// The number of events stored.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Appends `events` (timestamp, message) ingested at `now`, durably: when this returns `Ok`,
    /// the events are on disk.
    pub fn append(&mut self, events: &[(i64, &str)], now: i64) -> io::Result<()> {
        if events.is_empty() {
            return Ok(());
        }
        let roll = match self.segments.last() {
            None => true,
            Some(s) => s.bytes >= SEGMENT_BYTES || now - s.first_ingestion >= SEGMENT_SPAN_MS,
        };
        if roll {
            let path = self.dir.join(format!("{:020}.seg", self.next_seq));
            let f = OpenOptions::new().create(true).append(true).open(&path)?;
            sync_dir(&self.dir)?;
            self.tail = Some(f);
            self.segments.push(SegmentIndex {
                path,
                first_seq: self.next_seq,
                count: 0,
                min_ts: i64::MAX,
                max_ts: i64::MIN,
                first_ingestion: now,
                last_ingestion: now,
                bytes: 0,
            });
        }
        let seg = self.segments.last_mut().ok_or_else(|| io::Error::other("no tail segment"))?;
        if self.tail.is_none() {
            self.tail = Some(OpenOptions::new().append(true).open(&seg.path)?);
        }
        let mut buf = Vec::with_capacity(events.iter().map(|(_, m)| m.len() + HEADER + FIXED).sum());
        for (ts, msg) in events {
            encode(&mut buf, *ts, now, msg);
            seg.min_ts = seg.min_ts.min(*ts);
            seg.max_ts = seg.max_ts.max(*ts);
        }
        let tail = self.tail.as_mut().ok_or_else(|| io::Error::other("no tail segment"))?;
        let written = tail.write_all(&buf).and_then(|()| tail.sync_data());
        if let Err(e) = written {
            // What was written may be torn: cut it back so the next append starts clean.
            self.tail = None;
            if let Ok(f) = OpenOptions::new().write(true).open(&seg.path) {
                let _ = f.set_len(seg.bytes);
            }
            return Err(e);
        }
        seg.count += events.len() as u64;
        seg.bytes += buf.len() as u64;
        seg.last_ingestion = now;
        self.next_seq += events.len() as u64;
        Ok(())
    }

    /// The events whose timestamp is in `[start, end)`, in ingestion order (segments outside the
    /// range are not read).
    pub fn read(&self, start: i64, end: i64) -> io::Result<Vec<Event>> {
        let mut out = Vec::new();
        for s in &self.segments {
            if s.max_ts < start || s.min_ts >= end || s.count == 0 {
                continue;
            }
            let mut data = Vec::with_capacity(s.bytes as usize);
            File::open(&s.path)?.take(s.bytes).read_to_end(&mut data)?;
            let (events, _) = decode(&data, s.first_seq);
            out.extend(events.into_iter().filter(|e| e.timestamp >= start && e.timestamp < end));
        }
        Ok(out)
    }

    /// Calls `f(seq, timestamp, ingestion time, message)` for the events whose timestamp is in
    /// `[start, end)`, in ingestion order, without copying messages that `f` does not keep.
    pub fn scan(&self, start: i64, end: i64, mut f: impl FnMut(u64, i64, i64, &str)) -> io::Result<()> {
        let mut data = Vec::new();
        for s in &self.segments {
            if s.max_ts < start || s.min_ts >= end || s.count == 0 {
                continue;
            }
            data.clear();
            File::open(&s.path)?.take(s.bytes).read_to_end(&mut data)?;
            walk(&data, s.first_seq, |seq, ts, ing, m| {
                if ts >= start && ts < end {
                    f(seq, ts, ing, m)
                }
            });
        }
        Ok(())
    }

    /// Removes the segments whose every event is older than `cutoff`; returns how many.
    pub fn expire(&mut self, cutoff: i64) -> io::Result<usize> {
        let before = self.segments.len();
        let mut kept = Vec::with_capacity(before);
        let last = before.saturating_sub(1);
        for (i, s) in std::mem::take(&mut self.segments).into_iter().enumerate() {
            if s.max_ts < cutoff {
                if i == last {
                    self.tail = None;
                }
                fs::remove_file(&s.path)?;
            } else {
                kept.push(s);
            }
        }
        self.segments = kept;
        Ok(before - self.segments.len())
    }

    /// Bytes stored.
    pub fn stored_bytes(&self) -> u64 {
        self.segments.iter().map(|s| s.bytes).sum()
    }

    /// The earliest and latest event timestamps and the last ingestion time.
    pub fn times(&self) -> Option<(i64, i64, i64)> {
        let first = self.segments.iter().filter(|s| s.count > 0).map(|s| s.min_ts).min()?;
        let last = self.segments.iter().filter(|s| s.count > 0).map(|s| s.max_ts).max()?;
        let ingested = self.segments.iter().map(|s| s.last_ingestion).max()?;
        Some((first, last, ingested))
    }

    /// Removes the stream's files.
    pub fn destroy(self) -> io::Result<()> {
        drop(self.tail);
        match fs::remove_dir_all(&self.dir) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
}

fn index_of(path: PathBuf, first_seq: u64, events: &[Event], bytes: u64) -> SegmentIndex {
    SegmentIndex {
        path,
        first_seq,
        count: events.len() as u64,
        min_ts: events.iter().map(|e| e.timestamp).min().unwrap_or(i64::MAX),
        max_ts: events.iter().map(|e| e.timestamp).max().unwrap_or(i64::MIN),
        first_ingestion: events.first().map_or(0, |e| e.ingestion_time),
        last_ingestion: events.last().map_or(0, |e| e.ingestion_time),
        bytes,
    }
}

/// A name as a directory name: its bytes in hex (log group names hold `/`, stream names almost
/// anything).
pub fn dir_name(name: &str) -> String {
    name.bytes().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("gantry-logs-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn appends_survive_reopen_and_reads_skip_segments() {
        let d = tmp("reopen");
        let mut log = StreamLog::open(d.clone()).unwrap();
        log.append(&[(1000, "a"), (2000, "b")], 10).unwrap();
        // An hour later a new segment starts.
        log.append(&[(5_000_000, "c")], 10 + SEGMENT_SPAN_MS).unwrap();
        assert_eq!(log.segments().len(), 2);
        drop(log);
        let log = StreamLog::open(d.clone()).unwrap();
        assert_eq!(log.next_seq(), 3);
        let all: Vec<_> = log.read(0, i64::MAX).unwrap().into_iter().map(|e| (e.seq, e.message)).collect();
        assert_eq!(all, vec![(0, "a".into()), (1, "b".into()), (2, "c".into())]);
        let late = log.read(4_000_000, i64::MAX).unwrap();
        assert_eq!(late.len(), 1);
        assert_eq!(late[0].message, "c");
        // end is exclusive
        assert_eq!(log.read(1000, 2000).unwrap().len(), 1);
        log.destroy().unwrap();
    }

    #[test]
    fn a_torn_tail_is_cut_and_appends_continue() {
        let d = tmp("torn");
        let mut log = StreamLog::open(d.clone()).unwrap();
        log.append(&[(1, "one"), (2, "two")], 5).unwrap();
        let path = log.segments()[0].path.clone();
        drop(log);
        let whole = fs::read(&path).unwrap();
        // A crash in the middle of a third record: a header and part of its payload.
        let mut torn = whole.clone();
        encode(&mut torn, 3, 5, "three");
        torn.truncate(whole.len() + 13);
        fs::write(&path, &torn).unwrap();
        let mut log = StreamLog::open(d.clone()).unwrap();
        assert_eq!(fs::read(&path).unwrap().len(), whole.len());
        assert_eq!(log.next_seq(), 2);
        log.append(&[(4, "four")], 6).unwrap();
        drop(log);
        let log = StreamLog::open(d.clone()).unwrap();
        let msgs: Vec<_> = log.read(0, i64::MAX).unwrap().into_iter().map(|e| e.message).collect();
        assert_eq!(msgs, vec!["one", "two", "four"]);
        log.destroy().unwrap();
    }

    #[test]
    fn a_corrupt_record_ends_the_valid_prefix() {
        let mut buf = Vec::new();
        encode(&mut buf, 1, 1, "good");
        let good = buf.len();
        encode(&mut buf, 2, 2, "flipped");
        let n = buf.len();
        buf[n - 1] ^= 0x20;
        let (events, valid) = decode(&buf, 7);
        assert_eq!(valid, good);
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].seq, 7);
    }

    #[test]
    fn expiry_removes_whole_segments() {
        let d = tmp("expire");
        let mut log = StreamLog::open(d.clone()).unwrap();
        log.append(&[(100, "old")], 100).unwrap();
        log.append(&[(100 + SEGMENT_SPAN_MS, "new")], 100 + SEGMENT_SPAN_MS).unwrap();
        assert_eq!(log.expire(150).unwrap(), 1);
        assert_eq!(log.segments().len(), 1);
        let msgs: Vec<_> = log.read(0, i64::MAX).unwrap().into_iter().map(|e| e.message).collect();
        assert_eq!(msgs, vec!["new"]);
        log.destroy().unwrap();
    }
}
