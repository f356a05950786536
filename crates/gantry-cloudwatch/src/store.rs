//! The metric store: CloudWatch's time series, in memory and on disk under `DATA_DIR/metrics`.
//!
//! A series is a metric (account, region, namespace, name, dimensions) with one unit. Its
//! datapoints are kept only as per-bucket statistics ([`Stats`]) in four tiers, CloudWatch's
//! roll-ups: 1-second buckets for 3 hours (high-resolution datapoints only), 60-second buckets
//! for 15 days, 5-minute buckets for 63 days and 1-hour buckets for 455 days. Every datapoint goes
//! into each tier it belongs to when it arrives (so a roll-up is exact, not re-derived), and
//! [`Store::sweep`] drops buckets past their tier's retention.
//!
//! Durability: [`Store::put`] appends the request's datapoints to the write-ahead log
//! (`wal.log`: records `[u32 length][u32 CRC-32][JSON]`) and `fdatasync`s it before the datapoints
//! are applied in memory and the request is acknowledged, so an acknowledged PutMetricData
//! survives `kill -9`. [`Store::checkpoint`] (every 10 minutes, and when the log passes 64 MiB)
//! writes every series to `snapshot.json` (written, fsynced, renamed, directory fsynced) and then
//! empties the log. On open the snapshot is read and the log replayed; a torn or corrupt tail
//! record (a crash mid-write) is cut off. Puts hold the log's lock while they apply, so a
//! checkpoint, which takes it too, sees every logged datapoint applied.

use crate::sketch::{Stat, Stats};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, RwLock};

/// A tier: its bucket width and how long its buckets are kept, in seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tier {
    pub resolution: i64,
    pub retention: i64,
}

/// CloudWatch's retention schedule.
pub const TIERS: [Tier; 4] = [
    Tier { resolution: 1, retention: 3 * 3600 },
    Tier { resolution: 60, retention: 15 * 86_400 },
    Tier { resolution: 300, retention: 63 * 86_400 },
    Tier { resolution: 3600, retention: 455 * 86_400 },
];

/// The log is checkpointed once it passes this size.
pub const WAL_CHECKPOINT_BYTES: u64 = 64 << 20;

/// Where a metric lives: account, region, namespace, name.
pub type MetricName = (String, String, String, String);
/// Dimensions sorted by name, then the unit.
pub type SeriesId = (Vec<(String, String)>, String);

/// A value a datapoint carries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum PointValue {
    /// (value, count) pairs: a `Value` is one pair with count 1.
    #[serde(rename = "v")]
    Values(Vec<(f64, f64)>),
    #[serde(rename = "s")]
    Set { count: f64, sum: f64, min: f64, max: f64 },
}

/// One datapoint as stored in the log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Point {
    #[serde(rename = "m")]
    pub metric: MetricName,
    #[serde(rename = "d")]
    pub dims: Vec<(String, String)>,
    #[serde(rename = "u")]
    pub unit: String,
    /// Milliseconds since the epoch.
    #[serde(rename = "t")]
    pub ts_ms: i64,
    /// StorageResolution 1.
    #[serde(rename = "h")]
    pub high_res: bool,
    #[serde(rename = "x")]
    pub value: PointValue,
}

/// One series' buckets per tier, keyed by bucket start (epoch seconds).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Series {
    pub tiers: [BTreeMap<i64, Stats>; 4],
    /// When a datapoint last arrived for it (ingestion time, ms): ListMetrics' recency.
    pub last_put_ms: i64,
    /// Whether it ever had high-resolution datapoints.
    pub high_res: bool,
}

impl Series {
    fn apply(&mut self, p: &Point, now_ms: i64) {
        let secs = p.ts_ms.div_euclid(1000);
        for (i, tier) in TIERS.iter().enumerate() {
            if i == 0 && !p.high_res {
                continue;
            }
            let bucket = secs - secs.rem_euclid(tier.resolution);
            let stats = self.tiers[i].entry(bucket).or_insert_with(Stats::empty);
            match &p.value {
                PointValue::Values(vs) => {
                    for &(v, n) in vs {
                        stats.add_value(v, n);
                    }
                }
                PointValue::Set { count, sum, min, max } => stats.add_set(*count, *sum, *min, *max),
            }
        }
        self.high_res |= p.high_res;
        self.last_put_ms = self.last_put_ms.max(now_ms);
    }
}

/// Every series, by metric then dimensions and unit.
#[derive(Debug, Default)]
pub struct Data {
    pub metrics: BTreeMap<MetricName, BTreeMap<SeriesId, Series>>,
}

impl Data {
    fn apply(&mut self, points: &[Point], now_ms: i64) {
        for p in points {
            let series = match self.metrics.get_mut(&p.metric) {
                Some(m) => m,
                None => self.metrics.entry(p.metric.clone()).or_default(),
            };
            let id = (p.dims.clone(), p.unit.clone());
            series.entry(id).or_default().apply(p, now_ms);
        }
    }
}

#[derive(Serialize, Deserialize)]
struct SnapshotSeries {
    metric: MetricName,
    dims: Vec<(String, String)>,
    unit: String,
    series: Series,
}

struct Wal {
    file: File,
    bytes: u64,
}

/// The store.
pub struct Store {
    dir: PathBuf,
    wal: Mutex<Wal>,
    data: RwLock<Data>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("dir", &self.dir).finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

pub(crate) fn crc32(data: &[u8]) -> u32 {
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

fn encode_record(payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 8);
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32(payload).to_le_bytes());
    out.extend_from_slice(payload);
    out
}

/// Writes `data` to `path` atomically and durably.
pub(crate) fn write_atomic(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().ok_or_else(|| std::io::Error::other("no parent"))?;
    fs::create_dir_all(dir)?;
    let tmp = path.with_extension("tmp");
    let mut f = File::create(&tmp)?;
    f.write_all(data)?;
    f.sync_all()?;
    fs::rename(&tmp, path)?;
    File::open(dir)?.sync_all()
}

impl Store {
    /// Opens the store in `dir`: the snapshot, then the log replayed over it.
    pub fn open(dir: PathBuf, now_ms: i64) -> std::io::Result<Store> {
        fs::create_dir_all(&dir)?;
        let mut data = Data::default();
        let snap = dir.join("snapshot.json");
        if snap.exists() {
            let bytes = fs::read(&snap)?;
            let all: Vec<SnapshotSeries> = serde_json::from_slice(&bytes)
                .map_err(|e| std::io::Error::other(format!("{} is unreadable: {e}", snap.display())))?;
            for s in all {
                data.metrics.entry(s.metric).or_default().insert((s.dims, s.unit), s.series);
            }
        }
        let wal_path = dir.join("wal.log");
        let mut raw = Vec::new();
        if wal_path.exists() {
            File::open(&wal_path)?.read_to_end(&mut raw)?;
        }
        let mut at = 0usize;
        while at + 8 <= raw.len() {
            let len = u32::from_le_bytes(raw[at..at + 4].try_into().unwrap_or_default()) as usize;
            let crc = u32::from_le_bytes(raw[at + 4..at + 8].try_into().unwrap_or_default());
            let Some(payload) = raw.get(at + 8..at + 8 + len) else { break };
            if crc32(payload) != crc {
                break;
            }
            let Ok((ingested, points)) = serde_json::from_slice::<(i64, Vec<Point>)>(payload) else { break };
            data.apply(&points, ingested);
            at += 8 + len;
        }
        if at < raw.len() {
            tracing::warn!(path = %wal_path.display(), kept = at, dropped = raw.len() - at, "cut a torn tail off the metric log");
        }
        let file = OpenOptions::new().create(true).write(true).truncate(false).open(&wal_path)?;
        file.set_len(at as u64)?;
        file.sync_all()?;
        File::open(&dir)?.sync_all()?;
        let mut file = file;
        use std::io::Seek;
        file.seek(std::io::SeekFrom::End(0))?;
        let store = Store { dir, wal: Mutex::new(Wal { file, bytes: at as u64 }), data: RwLock::new(data) };
        store.sweep(now_ms);
        Ok(store)
    }

    /// Logs `points` durably, then applies them. Returns whether the log wants a checkpoint.
    pub fn put(&self, points: &[Point], now_ms: i64) -> std::io::Result<bool> {
        if points.is_empty() {
            return Ok(false);
        }
        let payload = serde_json::to_vec(&(now_ms, points)).map_err(std::io::Error::other)?;
        let record = encode_record(&payload);
        let mut wal = lock(&self.wal);
        wal.file.write_all(&record)?;
        wal.file.sync_data()?;
        wal.bytes += record.len() as u64;
        self.data.write().unwrap_or_else(|p| p.into_inner()).apply(points, now_ms);
        Ok(wal.bytes >= WAL_CHECKPOINT_BYTES)
    }

    /// Writes every series to the snapshot, then empties the log.
    pub fn checkpoint(&self) -> std::io::Result<()> {
        let mut wal = lock(&self.wal);
        let bytes = {
            let data = self.read();
            let mut all = Vec::new();
            for (metric, series) in &data.metrics {
                for ((dims, unit), s) in series {
                    all.push(SnapshotSeries {
                        metric: metric.clone(),
                        dims: dims.clone(),
                        unit: unit.clone(),
                        series: s.clone(),
                    });
                }
            }
            serde_json::to_vec(&all).map_err(std::io::Error::other)?
        };
        write_atomic(&self.dir.join("snapshot.json"), &bytes)?;
        wal.file.set_len(0)?;
        use std::io::Seek;
        wal.file.seek(std::io::SeekFrom::Start(0))?;
        wal.file.sync_all()?;
        wal.bytes = 0;
        Ok(())
    }

    /// Forgets everything: an empty snapshot, an empty log.
    pub fn reset(&self) -> std::io::Result<()> {
        let _wal = lock(&self.wal);
        *self.data.write().unwrap_or_else(|p| p.into_inner()) = Data::default();
        drop(_wal);
        self.checkpoint()
    }

    /// Drops buckets past their tier's retention, and series left with none.
    pub fn sweep(&self, now_ms: i64) {
        let now = now_ms.div_euclid(1000);
        let mut data = self.data.write().unwrap_or_else(|p| p.into_inner());
        for series in data.metrics.values_mut() {
            for s in series.values_mut() {
                for (i, tier) in TIERS.iter().enumerate() {
                    let keep_from = now - tier.retention;
                    if s.tiers[i].first_key_value().is_some_and(|(&k, _)| k < keep_from) {
                        s.tiers[i] = s.tiers[i].split_off(&keep_from);
                    }
                }
            }
            series.retain(|_, s| s.tiers.iter().any(|t| !t.is_empty()));
        }
        data.metrics.retain(|_, s| !s.is_empty());
    }

    pub fn read(&self) -> std::sync::RwLockReadGuard<'_, Data> {
        self.data.read().unwrap_or_else(|p| p.into_inner())
    }
}

/// The tier a query reads: the finest that still holds `start` (CloudWatch's rule: data older
/// than 3 hours is available at 1 minute, older than 15 days at 5 minutes, older than 63 days at
/// 1 hour), whose resolution divides the period, and that the series has data in (standard-
/// resolution series have no 1-second tier).
pub fn tier_for(series: &Series, start_s: i64, period: i64, now_s: i64) -> usize {
    for (i, tier) in TIERS.iter().enumerate() {
        if i == 0 && !series.high_res {
            continue;
        }
        if start_s >= now_s - tier.retention && period % tier.resolution == 0 {
            return i;
        }
    }
    // Nothing divides the period (a 90 s period over 20-day-old data, or 30 s over a
    // standard-resolution series): the finest tier the series has that still holds the start,
    // else the coarsest. Its buckets count in the period they start in.
    let first = usize::from(!series.high_res);
    (first..TIERS.len()).find(|&i| start_s >= now_s - TIERS[i].retention).unwrap_or(TIERS.len() - 1)
}

/// The series' statistics per period in `[start, end)`, periods aligned to multiples of
/// `period` since the epoch.
pub fn aggregate(
    series: &Series,
    start_s: i64,
    end_s: i64,
    period: i64,
    now_s: i64,
    out: &mut BTreeMap<i64, Stats>,
) {
    let tier = tier_for(series, start_s, period, now_s);
    // A bucket coarser than the period (old data) counts if it starts in the period it holds.
    let widest = period.max(TIERS[tier].resolution);
    let first = start_s - start_s.rem_euclid(widest);
    for (&t, stats) in series.tiers[tier].range(first..end_s) {
        let p = t - t.rem_euclid(period);
        match out.get_mut(&p) {
            Some(s) => s.merge(stats),
            None => {
                out.insert(p, stats.clone());
            }
        }
    }
}

/// One statistic of the series per period in `[start, end)`, in time order: what [`aggregate`]
/// and [`Stats::stat`] give, without building a map of merged copies. The tier is read as one
/// ordered run; a period's buckets are consecutive in it, so a period that holds one bucket (a
/// period equal to the tier's resolution) is answered from the stored bucket itself, and only a
/// period of several buckets is merged, in the same order as [`aggregate`] merges them (the
/// sketch is merged only for a percentile). Periods starting before `start`'s period (coarse
/// buckets of old data) are left out, as GetMetricData leaves them out.
pub fn period_values(
    series: &Series,
    (start_s, end_s, period): (i64, i64, i64),
    now_s: i64,
    stat: &Stat,
    out: &mut Vec<(i64, f64)>,
) {
    let tier = tier_for(series, start_s, period, now_s);
    let widest = period.max(TIERS[tier].resolution);
    let first = start_s - start_s.rem_euclid(widest);
    let keep_from = start_s - start_s.rem_euclid(period);
    let buckets = &series.tiers[tier];
    out.reserve((((end_s - keep_from) / period + 1) as usize).min(buckets.len()));
    if period == TIERS[tier].resolution {
        // Each bucket is its own period (bucket starts are multiples of the resolution).
        for (&t, stats) in buckets.range(first..end_s) {
            if let Some(v) = stats.stat(stat) {
                out.push((t, v));
            }
        }
        return;
    }
    let percentile = matches!(stat, Stat::Percentile(_));
    let mut run = buckets.range(first..end_s).peekable();
    while let Some((&t, stats)) = run.next() {
        let p = t - t.rem_euclid(period);
        let mut merged: Option<Stats> = None;
        while let Some(&(&next, more)) = run.peek() {
            if next - next.rem_euclid(period) != p {
                break;
            }
            merged
                .get_or_insert_with(|| if percentile { stats.clone() } else { stats.scalars() })
                .merge(more);
            run.next();
        }
        if p < keep_from {
            continue;
        }
        if let Some(v) = merged.as_ref().unwrap_or(stats).stat(stat) {
            out.push((p, v));
        }
    }
}

/// How many datapoints in the log and snapshot, for tests and benchmarks.
pub fn series_count(data: &Data) -> usize {
    data.metrics.values().map(|s| s.len()).sum()
}

/// Groups a metric's series by dimensions (all units merged).
pub fn by_dims<'a>(
    series: &'a BTreeMap<SeriesId, Series>,
    dims: &[(String, String)],
    unit: Option<&str>,
) -> Vec<(&'a str, &'a Series)> {
    series
        .iter()
        .filter(|((d, u), _)| d.as_slice() == dims && unit.is_none_or(|w| w == u))
        .map(|((_, u), s)| (u.as_str(), s))
        .collect()
}
