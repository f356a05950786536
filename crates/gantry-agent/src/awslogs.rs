//! The awslogs log driver: a container's stdout and stderr shipped to CloudWatch Logs
//! (PutLogEvents on the control plane, signed like the agent's other calls), as the ECS agent's
//! awslogs driver does.
//!
//! The container logs to the engine as usual (json-file), and a shipper per container follows
//! that log: lines become events (one per line, or per `awslogs-multiline-pattern` /
//! `awslogs-datetime-format` match), batched for at most [`FLUSH_INTERVAL`] (so a line shows up
//! within a second) or [`BATCH_EVENTS`] events. The engine's timestamp of the last shipped line
//! is saved after each acknowledged batch (`LOGS_DIR/awslogs/CONTAINER_ID`), so a restarted agent
//! resumes after it: no line lost, none shipped twice. A batch is announced in that file before
//! it is sent (its last line, size and order-free digest); an agent killed between sending it
//! and saving its acknowledgement finds it there and asks the stream whether its last events
//! are that batch, so the batch is sent again only if it did not land.
//!
//! `mode`: the container never waits for the shipper (its output goes to the engine's log
//! first). In `blocking` mode (the default) the shipper stops reading while the API is
//! unreachable and retries, so nothing is dropped; in `non-blocking` mode it keeps reading and
//! drops the oldest lines beyond `max-buffer-size` (default 1m), as Docker's ring buffer does.

use crate::client::{ClientError, ControlClient};
use crate::runtime::Runtime;
use regex::Regex;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// A batch is sent at the latest this long after its first line arrived.
pub const FLUSH_INTERVAL: std::time::Duration = std::time::Duration::from_millis(200);
/// A batch is sent when it has this many events.
pub const BATCH_EVENTS: usize = 1000;
/// ... or this many bytes (with PutLogEvents' 26 bytes per event).
pub const BATCH_BYTES: usize = 512 * 1024;
/// A multiline event is held at most this long for its next line.
pub const MULTILINE_HOLD: std::time::Duration = std::time::Duration::from_secs(1);
/// The largest event CloudWatch takes (longer lines are split).
pub const MAX_EVENT_BYTES: usize = 256 * 1024 - 26;

/// The options of a container's `logConfiguration` with `logDriver: awslogs`.
#[derive(Debug, Clone)]
pub struct Options {
    pub group: String,
    pub region: Option<String>,
    pub stream: String,
    pub create_group: bool,
    pub start: Option<Regex>,
    pub blocking: bool,
    pub max_buffer: usize,
}

/// What ECS answers for a container whose awslogs options are wrong or whose group is missing.
pub fn start_error(detail: &str) -> String {
    format!(
        "CannotStartContainerError: Error response from daemon: failed to initialize logging driver: {detail}"
    )
}

impl Options {
    /// Reads the driver's options. The stream is `PREFIX/CONTAINER/TASK_ID` with
    /// `awslogs-stream-prefix`, else the container's engine ID (Docker's default).
    pub fn parse(
        opts: &BTreeMap<String, String>,
        container: &str,
        task_id: &str,
        container_id: &str,
    ) -> Result<Options, String> {
        for k in opts.keys() {
            let known = [
                "awslogs-group",
                "awslogs-region",
                "awslogs-stream-prefix",
                "awslogs-create-group",
                "awslogs-datetime-format",
                "awslogs-multiline-pattern",
                "awslogs-endpoint",
                "awslogs-credentials-endpoint",
                "mode",
                "max-buffer-size",
                "tag",
            ];
            if !known.contains(&k.as_str()) {
                return Err(format!("unknown log opt '{k}' for awslogs log driver"));
            }
        }
        let group =
            opts.get("awslogs-group").cloned().ok_or("must specify a value for log opt 'awslogs-group'")?;
        let stream = match opts.get("awslogs-stream-prefix") {
            Some(p) => format!("{p}/{container}/{task_id}"),
            None => container_id.to_string(),
        };
        let create_group = match opts.get("awslogs-create-group").map(String::as_str) {
            None => false,
            Some(v) => parse_bool(v).ok_or_else(|| format!("invalid value for awslogs-create-group: {v}"))?,
        };
        if opts.contains_key("awslogs-datetime-format") && opts.contains_key("awslogs-multiline-pattern") {
            return Err("you cannot configure log opt 'awslogs-datetime-format' and 'awslogs-multiline-pattern' at the same time".into());
        }
        let start = match (opts.get("awslogs-datetime-format"), opts.get("awslogs-multiline-pattern")) {
            (Some(f), _) => Some(
                Regex::new(&format!("^{}", strftime_regex(f)))
                    .map_err(|e| format!("awslogs-datetime-format '{f}': {e}"))?,
            ),
            (None, Some(p)) => Some(
                Regex::new(&format!("^{p}")).map_err(|e| format!("awslogs-multiline-pattern '{p}': {e}"))?,
            ),
            _ => None,
        };
        let blocking = match opts.get("mode").map(String::as_str) {
            None | Some("blocking") => true,
            Some("non-blocking") => false,
            Some(m) => return Err(format!("logger: logging mode not supported: {m}")),
        };
        let max_buffer = match opts.get("max-buffer-size") {
            None => 1 << 20,
            Some(s) if !blocking => {
                parse_size(s).ok_or_else(|| format!("could not parse max-buffer-size {s}"))?
            }
            Some(_) => {
                return Err(
                    "logger: max-buffer-size option is only supported with 'mode=non-blocking'".into()
                );
            }
        };
        Ok(Options {
            group,
            region: opts.get("awslogs-region").cloned(),
            stream,
            create_group,
            start,
            blocking,
            max_buffer,
        })
    }
}

fn parse_bool(v: &str) -> Option<bool> {
    match v {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Some(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Some(false),
        _ => None,
    }
}

/// Docker's sizes: `1024`, `32k`, `25m`, `1g` (binary units, case-insensitive, optional `b`).
pub fn parse_size(s: &str) -> Option<usize> {
    let t = s.trim().to_ascii_lowercase();
    let t = t.strip_suffix('b').unwrap_or(&t).strip_suffix('i').unwrap_or(&t);
    let (num, mult) = match t.chars().last()? {
        'k' => (&t[..t.len() - 1], 1 << 10),
        'm' => (&t[..t.len() - 1], 1 << 20),
        'g' => (&t[..t.len() - 1], 1 << 30),
        _ => (t, 1),
    };
    let n: f64 = num.trim().parse().ok()?;
    (n >= 0.0).then_some((n * mult as f64) as usize)
}

/// Docker's translation of an strftime format to the regex that finds an event's first line.
pub fn strftime_regex(fmt: &str) -> String {
    let mut out = String::new();
    let mut chars = fmt.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push_str(&regex::escape(&c.to_string()));
            continue;
        }
        let Some(d) = chars.next() else { break };
        out.push_str(match d {
            'a' => r"(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun)",
            'A' => r"(?:Monday|Tuesday|Wednesday|Thursday|Friday|Saturday|Sunday)",
            'b' => r"(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)",
            'B' => {
                r"(?:January|February|March|April|May|June|July|August|September|October|November|December)"
            }
            'd' => r"(?:0[1-9]|[1,2][0-9]|3[0,1])",
            'e' => r"(?:[1-9]|[1,2][0-9]|3[0,1])",
            'H' => r"(?:[0,1][0-9]|2[0-3])",
            'I' => r"(?:0[0-9]|1[0-2])",
            'j' => r"(?:0[0-9][1-9]|[1,2][0-9][0-9]|3[0-5][0-9]|36[0-6])",
            'm' => r"(?:0[1-9]|1[0-2])",
            'M' => r"[0-5][0-9]",
            'L' => r"\.[0-9]{3}",
            'f' => r"(?:\.|,)[0-9]{6}",
            'p' => r"[A,P]M",
            'S' => r"[0-5][0-9]",
            'y' => r"\d{2}",
            'Y' => r"\d{4}",
            'z' => r"[+-]\d{4}",
            'Z' => r"[A-Z]{1,4}T",
            'T' => r"(?:[0,1][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]",
            'F' => r"\d{4}-(?:0[1-9]|1[0-2])-(?:0[1-9]|[1,2][0-9]|3[0,1])",
            '%' => "%",
            _ => "",
        });
    }
    out
}

/// The engine's RFC 3339 timestamp (`2026-12-04T10:00:00.123456789Z`) as Unix nanoseconds.
pub fn parse_engine_time(s: &str) -> Option<i128> {
    let b = s.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || b[13] != b':' || b[16] != b':' {
        return None;
    }
    let n = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let days = gantry_core::civil::days_from_civil(n(0..4)?, n(5..7)? as u32, n(8..10)? as u32);
    let secs = days * 86_400 + n(11..13)? * 3600 + n(14..16)? * 60 + n(17..19)?;
    let mut rest = &s[19..];
    let mut nanos: i128 = 0;
    if let Some(frac) = rest.strip_prefix('.') {
        let digits: String = frac.chars().take_while(|c| c.is_ascii_digit()).collect();
        let mut padded = digits.clone();
        padded.truncate(9);
        while padded.len() < 9 {
            padded.push('0');
        }
        nanos = padded.parse().ok()?;
        rest = &frac[digits.len()..];
    }
    let offset: i64 = match rest {
        "Z" => 0,
        o if o.len() == 6 => {
            let sign = if o.starts_with('-') { -1 } else { 1 };
            sign * (o[1..3].parse::<i64>().ok()? * 3600 + o[4..6].parse::<i64>().ok()? * 60)
        }
        _ => return None,
    };
    Some((secs - offset) as i128 * 1_000_000_000 + nanos)
}

/// Turns lines into events: one per line, or with a start pattern, a matching line and the
/// lines up to the next match.
#[derive(Debug)]
pub struct Assembler {
    start: Option<Regex>,
    held: Option<(i64, String)>,
}

impl Assembler {
    pub fn new(start: Option<Regex>) -> Self {
        Assembler { start, held: None }
    }

    /// A line (without its newline) printed at `ms`; returns the events it completes.
    pub fn line(&mut self, ms: i64, text: &str, out: &mut Vec<(i64, String)>) {
        match &self.start {
            None => push_split(ms, text.to_string(), out),
            Some(re) => {
                if re.is_match(text) || self.held.is_none() {
                    if let Some((t, m)) = self.held.take() {
                        push_split(t, m, out);
                    }
                    self.held = Some((ms, text.to_string()));
                } else if let Some((_, m)) = &mut self.held {
                    m.push('\n');
                    m.push_str(text);
                }
            }
        }
    }

    /// Whether an event is held for its next line.
    pub fn holding(&self) -> bool {
        self.held.is_some()
    }

    /// Releases the held event.
    pub fn flush(&mut self, out: &mut Vec<(i64, String)>) {
        if let Some((t, m)) = self.held.take() {
            push_split(t, m, out);
        }
    }
}

fn push_split(ms: i64, mut text: String, out: &mut Vec<(i64, String)>) {
    if text.is_empty() {
        return;
    }
    while text.len() > MAX_EVENT_BYTES {
        let mut cut = MAX_EVENT_BYTES;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        let rest = text.split_off(cut);
        out.push((ms, std::mem::replace(&mut text, rest)));
    }
    out.push((ms, text));
}

/// Where a container's shipping position is saved.
pub fn position_path(logs_dir: &std::path::Path, container_id: &str) -> std::path::PathBuf {
    logs_dir.join("awslogs").join(container_id)
}

/// What a container's position file says: the engine time of the last line known to be in
/// CloudWatch, and the batch that was being sent when it was written, if any.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    /// Lines up to this engine time (ns) were acknowledged.
    pub committed: i128,
    /// A batch sent but not yet acknowledged: the engine time of its last line, its event
    /// count and the digest of its events ([`batch_digest`]).
    pub pending: Option<(i128, usize, u64)>,
}

impl Position {
    const START: Position = Position { committed: i128::MIN, pending: None };

    fn parse(s: &str) -> Option<Position> {
        let mut it = s.split_whitespace();
        let committed = it.next()?.parse().ok()?;
        let pending = match (it.next(), it.next(), it.next()) {
            (Some(a), Some(b), Some(c)) => Some((a.parse().ok()?, b.parse().ok()?, c.parse().ok()?)),
            _ => None,
        };
        Some(Position { committed, pending })
    }

    fn render(&self) -> String {
        match self.pending {
            None => self.committed.to_string(),
            Some((at, n, d)) => format!("{} {at} {n} {d}", self.committed),
        }
    }
}

/// A digest of a batch's events that does not depend on their order (the server returns them
/// sorted by timestamp): the wrapping sum of each event's FNV-1a hash of timestamp and message.
pub fn batch_digest<'a>(events: impl IntoIterator<Item = (i64, &'a str)>) -> u64 {
    events.into_iter().fold(0u64, |acc, (ts, m)| {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in ts.to_le_bytes().iter().chain(m.as_bytes()) {
            h = (h ^ *b as u64).wrapping_mul(0x0100_0000_01b3);
        }
        acc.wrapping_add(h)
    })
}

fn read_position(path: Option<&std::path::Path>) -> Position {
    path.and_then(|p| std::fs::read_to_string(p).ok())
        .and_then(|s| Position::parse(&s))
        .unwrap_or(Position::START)
}

/// Writes the position (written to a temporary file and renamed, so a kill leaves the old or
/// the new one, never a torn one).
fn save_position(path: Option<&std::path::Path>, pos: Position) {
    let Some(p) = path else { return };
    let write = || -> std::io::Result<()> {
        if let Some(d) = p.parent() {
            std::fs::create_dir_all(d)?;
        }
        let tmp = p.with_extension("tmp");
        std::fs::write(&tmp, pos.render())?;
        std::fs::rename(&tmp, p)
    };
    if let Err(e) = write() {
        tracing::warn!(path = %p.display(), error = %e, "cannot save the awslogs position");
    }
}

/// Where shipping resumes after a restart. When the position file names a batch in flight (the
/// agent died between sending it and saving its acknowledgement), the stream's last events
/// tell whether it landed: if the last `count` events are that batch, shipping resumes after
/// it, else it is sent again. Asks until the API answers (a guess could lose or repeat lines).
async fn resume_point<C: ControlClient>(client: &C, region: &str, o: &Options, pos: Position) -> i128 {
    let Some((at, count, digest)) = pos.pending else { return pos.committed };
    let mut backoff = Duration::from_millis(100);
    loop {
        let req = serde_json::json!({
            "logGroupName": o.group, "logStreamName": o.stream,
            "startFromHead": false, "limit": count.max(1),
        });
        match client.logs(region, "GetLogEvents", req).await {
            Ok(page) => {
                let events = page["events"].as_array().cloned().unwrap_or_default();
                let landed = events.len() == count
                    && batch_digest(events.iter().map(|e| {
                        (e["timestamp"].as_i64().unwrap_or(0), e["message"].as_str().unwrap_or(""))
                    })) == digest;
                return if landed { at } else { pos.committed };
            }
            Err(ClientError::Api { kind, .. }) if kind == "ResourceNotFoundException" => {
                return pos.committed;
            }
            Err(e) => {
                tracing::warn!(group = %o.group, stream = %o.stream, error = %e, "awslogs: cannot check the last batch yet; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}

/// Creates the container's log group (with `awslogs-create-group`) and stream. The error is
/// the task's stopped reason, worded as ECS words it.
pub async fn prepare<C: ControlClient>(client: &C, region: &str, o: &Options) -> Result<(), String> {
    let exists = |e: &ClientError| matches!(e, ClientError::Api { kind, .. } if kind == "ResourceAlreadyExistsException");
    if o.create_group
        && let Err(e) =
            client.logs(region, "CreateLogGroup", serde_json::json!({"logGroupName": o.group})).await
        && !exists(&e)
    {
        return Err(start_error(&format!("failed to create Cloudwatch log group: {e}")));
    }
    match client
        .logs(
            region,
            "CreateLogStream",
            serde_json::json!({"logGroupName": o.group, "logStreamName": o.stream}),
        )
        .await
    {
        Ok(_) => Ok(()),
        Err(e) if exists(&e) => Ok(()),
        Err(e) => Err(start_error(&format!("failed to create Cloudwatch log stream: {e}"))),
    }
}

/// Ships a container's output until it stops (see the module's doc), resuming after the
/// position saved at `position`.
pub async fn ship<R: Runtime, C: ControlClient>(
    runtime: Arc<R>,
    client: Arc<C>,
    container_id: String,
    region: String,
    opts: Options,
    position: Option<std::path::PathBuf>,
) {
    use futures_util::StreamExt;
    use tokio::time::{Instant, sleep_until};
    let saved = read_position(position.as_deref());
    let resume = resume_point(&*client, &region, &opts, saved).await;
    let mut committed = resume;
    let since = if resume == i128::MIN { 0 } else { (resume / 1_000_000_000) as i64 };
    let mut lines = runtime.log_lines(&container_id, since);
    let mut asm = Assembler::new(opts.start.clone());
    let patterned = opts.start.is_some();
    // Events ready to send: (ms, message, the engine time of the last line they cover).
    let mut batch: std::collections::VecDeque<(i64, String, i128)> = Default::default();
    let mut bytes = 0usize;
    let mut first_at: Option<Instant> = None;
    let mut held_at: Option<Instant> = None;
    let mut last_fed: i128 = resume;
    let mut retry_at: Option<Instant> = None;
    let mut backoff = Duration::from_millis(100);
    let mut ended = false;
    let mut out = Vec::new();
    loop {
        let far = Instant::now() + Duration::from_secs(3600);
        let send_at = retry_at.or(first_at.map(|t| t + FLUSH_INTERVAL)).unwrap_or(far);
        let hold_until = held_at.map_or(far, |t| t + MULTILINE_HOLD);
        let can_read = !(ended || retry_at.is_some() && opts.blocking);
        let mut send_now = false;
        tokio::select! {
            line = lines.next(), if can_read => match line {
                None => ended = true,
                Some(Err(e)) => {
                    tracing::warn!(container = %container_id, error = %e, "awslogs: reading the container's output failed");
                    ended = true;
                }
                Some(Ok(l)) if l.time_ns <= resume => {}
                Some(Ok(l)) => {
                    let ms = (l.time_ns / 1_000_000) as i64;
                    let before = last_fed;
                    asm.line(ms, &l.text, &mut out);
                    last_fed = l.time_ns;
                    // Completed events cover the lines before this one (it starts the held
                    // event) or, without a pattern, this one too.
                    let covered = if patterned { before } else { l.time_ns };
                    if asm.holding() && held_at.is_none() || patterned && !out.is_empty() {
                        held_at = Some(Instant::now());
                    }
                    for (ms, m) in out.drain(..) {
                        bytes += m.len() + 26;
                        batch.push_back((ms, m, covered));
                    }
                }
            },
            _ = sleep_until(hold_until), if held_at.is_some() => {
                asm.flush(&mut out);
                held_at = None;
                for (ms, m) in out.drain(..) {
                    bytes += m.len() + 26;
                    batch.push_back((ms, m, last_fed));
                }
            }
            _ = sleep_until(send_at), if !batch.is_empty() => send_now = true,
        }
        if ended {
            asm.flush(&mut out);
            held_at = None;
            for (ms, m) in out.drain(..) {
                bytes += m.len() + 26;
                batch.push_back((ms, m, last_fed));
            }
        }
        if first_at.is_none() && !batch.is_empty() {
            first_at = Some(Instant::now());
        }
        // Non-blocking: while the API is away, the oldest lines beyond the buffer are dropped.
        if !opts.blocking && retry_at.is_some() {
            while bytes > opts.max_buffer
                && let Some((_, m, _)) = batch.pop_front()
            {
                bytes -= m.len() + 26;
            }
        }
        let full = batch.len() >= BATCH_EVENTS || bytes >= BATCH_BYTES;
        let due = retry_at.is_none_or(|t| Instant::now() >= t);
        if (send_now || full || ended) && due && !batch.is_empty() {
            let n = batch.len().min(BATCH_EVENTS);
            let mut events: Vec<(i64, &str)> =
                batch.iter().take(n).map(|(t, m, _)| (*t, m.as_str())).collect();
            events.sort_by_key(|e| e.0);
            let covered = batch.get(n - 1).map_or(last_fed, |e| e.2);
            // Written before the batch goes out: a restart then checks whether it landed.
            save_position(
                position.as_deref(),
                Position { committed, pending: Some((covered, n, batch_digest(events.iter().copied()))) },
            );
            let body = serde_json::json!({
                "logGroupName": opts.group,
                "logStreamName": opts.stream,
                "logEvents": events.iter().map(|(t, m)| serde_json::json!({"timestamp": t, "message": m})).collect::<Vec<_>>(),
            });
            match client.logs(&region, "PutLogEvents", body).await {
                Ok(_) => {
                    for (_, m, _) in batch.drain(..n) {
                        bytes -= m.len() + 26;
                    }
                    committed = covered;
                    save_position(position.as_deref(), Position { committed, pending: None });
                    retry_at = None;
                    backoff = Duration::from_millis(100);
                    first_at = if batch.is_empty() { None } else { Some(Instant::now()) };
                }
                Err(e) => {
                    tracing::warn!(container = %container_id, group = %opts.group, error = %e, "awslogs: PutLogEvents failed; retrying");
                    if matches!(&e, ClientError::Api { kind, .. } if kind == "ResourceNotFoundException") {
                        let _ = prepare(&*client, &region, &opts).await;
                    }
                    retry_at = Some(Instant::now() + backoff);
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                    if ended && backoff >= Duration::from_secs(5) {
                        tracing::warn!(container = %container_id, dropped = batch.len(), "awslogs: giving up on the stopped container's last lines");
                        return;
                    }
                }
            }
        }
        if ended && batch.is_empty() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
        kv.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn options_and_stream_names() {
        let o = Options::parse(
            &opts(&[
                ("awslogs-group", "/ecs/web"),
                ("awslogs-stream-prefix", "ecs"),
                ("awslogs-region", "us-east-1"),
            ]),
            "app",
            "abc123",
            "cid",
        )
        .unwrap();
        assert_eq!(o.stream, "ecs/app/abc123");
        assert!(o.blocking && !o.create_group);
        let o = Options::parse(
            &opts(&[("awslogs-group", "g"), ("awslogs-create-group", "true")]),
            "app",
            "t",
            "cid",
        )
        .unwrap();
        assert_eq!(o.stream, "cid");
        assert!(o.create_group);
        let o = Options::parse(
            &opts(&[("awslogs-group", "g"), ("mode", "non-blocking"), ("max-buffer-size", "25m")]),
            "app",
            "t",
            "c",
        )
        .unwrap();
        assert_eq!((o.blocking, o.max_buffer), (false, 25 << 20));
        for bad in [
            opts(&[]),
            opts(&[("awslogs-group", "g"), ("mode", "sometimes")]),
            opts(&[("awslogs-group", "g"), ("max-buffer-size", "1m")]),
            opts(&[("awslogs-group", "g"), ("awslogs-multiline-pattern", "("), ("mode", "blocking")]),
            opts(&[("awslogs-group", "g"), ("awslogs-bogus", "1")]),
        ] {
            assert!(Options::parse(&bad, "a", "t", "c").is_err(), "{bad:?}");
        }
    }

    #[test]
    fn engine_timestamps() {
        assert_eq!(parse_engine_time("1970-01-01T00:00:01.5Z"), Some(1_500_000_000));
        assert_eq!(parse_engine_time("2026-12-04T10:00:00.123456789Z"), Some(1_796_378_400_123_456_789));
        assert_eq!(parse_engine_time("1970-01-01T01:00:00+01:00"), Some(0));
        assert_eq!(parse_engine_time("nonsense"), None);
    }

    #[test]
    fn multiline_events() {
        let mut a =
            Assembler::new(Some(Regex::new(&format!("^{}", strftime_regex("%Y-%m-%d %H:%M:%S"))).unwrap()));
        let mut out = Vec::new();
        a.line(1, "2026-01-02 03:04:05 ERROR boom", &mut out);
        a.line(2, "  at frame 1", &mut out);
        a.line(3, "  at frame 2", &mut out);
        assert!(out.is_empty() && a.holding());
        a.line(4, "2026-01-02 03:04:06 INFO next", &mut out);
        assert_eq!(out, vec![(1, "2026-01-02 03:04:05 ERROR boom\n  at frame 1\n  at frame 2".to_string())]);
        a.flush(&mut out);
        assert_eq!(out[1], (4, "2026-01-02 03:04:06 INFO next".to_string()));
        let mut a = Assembler::new(Some(Regex::new("^INFO").unwrap()));
        let mut out = Vec::new();
        a.line(1, "INFO a", &mut out);
        a.line(2, "b", &mut out);
        a.flush(&mut out);
        assert_eq!(out, vec![(1, "INFO a\nb".to_string())]);
        // Without a pattern each line is an event; a huge line is split.
        let mut a = Assembler::new(None);
        let mut out = Vec::new();
        a.line(1, &"x".repeat(MAX_EVENT_BYTES + 5), &mut out);
        assert_eq!(out.iter().map(|(_, m)| m.len()).collect::<Vec<_>>(), vec![MAX_EVENT_BYTES, 5]);
    }

    #[test]
    fn positions_and_batch_digests() {
        for p in [
            Position { committed: 5, pending: None },
            Position { committed: -3, pending: Some((1_796_378_400_123_456_789, 1000, u64::MAX)) },
        ] {
            assert_eq!(Position::parse(&p.render()), Some(p));
        }
        // The one-number files of earlier agents still read.
        assert_eq!(Position::parse("42\n"), Some(Position { committed: 42, pending: None }));
        assert_eq!(Position::parse("x"), None);
        let a = batch_digest([(1, "a"), (2, "b")]);
        assert_eq!(a, batch_digest([(2, "b"), (1, "a")]));
        assert_ne!(a, batch_digest([(1, "a"), (2, "c")]));
        assert_ne!(a, batch_digest([(1, "a"), (3, "b")]));
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("1024"), Some(1024));
        assert_eq!(parse_size("32k"), Some(32 << 10));
        assert_eq!(parse_size("25m"), Some(25 << 20));
        assert_eq!(parse_size("1g"), Some(1 << 30));
        assert_eq!(parse_size("x"), None);
    }
}
