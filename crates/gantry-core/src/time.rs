//! Injected time and identifiers. Nothing in Gantry reads the system clock or draws random bits
//! except through these traits, so tests run on a fixed clock and seeded IDs and replay exactly.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

/// Milliseconds since the Unix epoch. ECS reports timestamps as epoch seconds with a fraction;
/// [`Timestamp::as_epoch_seconds`] gives that form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timestamp(pub i64);

impl Timestamp {
    pub fn as_epoch_seconds(self) -> f64 {
        self.0 as f64 / 1000.0
    }
    pub fn from_epoch_seconds(s: f64) -> Self {
        Timestamp((s * 1000.0).round() as i64)
    }
}

/// A [`Timestamp`] in a stored record or on the wire: ECS's form, epoch seconds with a fraction
/// (`#[serde(with = "gantry_core::time::epoch_seconds")]`; `epoch_seconds::option` for an
/// `Option<Timestamp>`). Seconds written from milliseconds read back as the same milliseconds.
pub mod epoch_seconds {
    use super::Timestamp;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(t: &Timestamp, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(t.as_epoch_seconds())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Timestamp, D::Error> {
        f64::deserialize(d).map(Timestamp::from_epoch_seconds)
    }

    /// The same for an optional timestamp (absent or `null` is `None`).
    pub mod option {
        use super::Timestamp;
        use serde::{Deserialize, Deserializer, Serializer};

        pub fn serialize<S: Serializer>(t: &Option<Timestamp>, s: S) -> Result<S::Ok, S::Error> {
            match t {
                Some(t) => s.serialize_some(&t.as_epoch_seconds()),
                None => s.serialize_none(),
            }
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Timestamp>, D::Error> {
            Option::<f64>::deserialize(d).map(|s| s.map(Timestamp::from_epoch_seconds))
        }
    }
}

/// The source of "now".
pub trait Clock: Send + Sync {
    fn now(&self) -> Timestamp;
}

/// The wall clock.
#[derive(Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        let d = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        Timestamp(d.as_millis() as i64)
    }
}

/// A clock that moves only when told to.
#[derive(Debug, Default)]
pub struct FixedClock(AtomicI64);

impl FixedClock {
    pub fn new(at: Timestamp) -> Self {
        FixedClock(AtomicI64::new(at.0))
    }
    pub fn advance_ms(&self, ms: i64) {
        self.0.fetch_add(ms, Ordering::SeqCst);
    }
}

impl Clock for FixedClock {
    fn now(&self) -> Timestamp {
        Timestamp(self.0.load(Ordering::SeqCst))
    }
}

/// A UUID's 36 characters (hex digits and dashes), as [`IdGen::uuid_text`] writes them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UuidText([u8; 36]);

impl UuidText {
    pub fn as_str(&self) -> &str {
        // Hex digits and dashes: always UTF-8 (`from_utf8` checks 36 ASCII bytes quickly).
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

/// The source of identifiers: UUIDs (request IDs, container instance IDs) and the 32-hex-digit
/// IDs ECS gives tasks.
pub trait IdGen: Send + Sync {
    /// 128 fresh bits.
    fn next_u128(&self) -> u128;

    /// A version-4 UUID in its usual text form.
    fn uuid(&self) -> String {
        self.uuid_text().as_str().to_string()
    }

    /// [`uuid`](Self::uuid)'s text on the stack: every request gets one as its ID, and needs no
    /// allocation for it.
    fn uuid_text(&self) -> UuidText {
        let mut b = self.next_u128().to_be_bytes();
        b[6] = (b[6] & 0x0f) | 0x40;
        b[8] = (b[8] & 0x3f) | 0x80;
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        // Where each byte's two digits go: the dashes are at 8, 13, 18 and 23.
        const AT: [usize; 16] = [0, 2, 4, 6, 9, 11, 14, 16, 19, 21, 24, 26, 28, 30, 32, 34];
        let mut text = [b'-'; 36];
        for (x, at) in b.iter().zip(AT) {
            text[at] = DIGITS[(x >> 4) as usize];
            text[at + 1] = DIGITS[(x & 15) as usize];
        }
        UuidText(text)
    }

    /// 32 lowercase hex digits, as ECS task and container-instance IDs are.
    fn hex_id(&self) -> String {
        hex(&self.next_u128().to_be_bytes())
    }

    /// A [`hex_id`](Self::hex_id) whose first 12 digits are `now` in milliseconds (the other 20
    /// are fresh bits): IDs made one after the other sort, and so are stored, next to each
    /// other. Tasks get these: the store then appends new task records instead of writing all
    /// over its file.
    fn ordered_hex_id(&self, now: Timestamp) -> String {
        let fresh = self.next_u128() & ((1u128 << 80) - 1);
        let time = (now.0.max(0) as u128) & 0xffff_ffff_ffff;
        hex(&((time << 80) | fresh).to_be_bytes())
    }
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 15) as usize] as char);
    }
    s
}

/// A splitmix64 generator: deterministic from its seed. Production seeds it from the OS. Its
/// state only ever advances by a constant, so callers on many threads take their steps with one
/// atomic add each, and no two get the same one.
#[derive(Debug)]
pub struct SeededIds(AtomicU64);

impl SeededIds {
    pub fn new(seed: u64) -> Self {
        SeededIds(AtomicU64::new(seed))
    }

    /// Seeds from the operating system's entropy (falling back to the time and process ID).
    pub fn from_entropy() -> Self {
        let mut seed = [0u8; 8];
        let ok = std::fs::File::open("/dev/urandom")
            .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut seed))
            .is_ok();
        let seed = if ok {
            u64::from_le_bytes(seed)
        } else {
            SystemClock.now().0 as u64 ^ ((std::process::id() as u64) << 32)
        };
        SeededIds::new(seed)
    }

    fn next_u64(&self) -> u64 {
        const STEP: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut z = self.0.fetch_add(STEP, Ordering::Relaxed).wrapping_add(STEP);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

impl IdGen for SeededIds {
    fn next_u128(&self) -> u128 {
        ((self.next_u64() as u128) << 64) | self.next_u64() as u128
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
    struct At {
        #[serde(with = "epoch_seconds")]
        at: Timestamp,
        #[serde(default, with = "epoch_seconds::option", skip_serializing_if = "Option::is_none")]
        maybe: Option<Timestamp>,
    }

    #[test]
    fn timestamps_are_stored_as_epoch_seconds_and_read_back_exactly() {
        let a = At { at: Timestamp(1_796_334_293_524), maybe: Some(Timestamp(1_796_334_293_541)) };
        let json = serde_json::to_string(&a).unwrap();
        assert_eq!(json, r#"{"at":1796334293.524,"maybe":1796334293.541}"#);
        assert_eq!(serde_json::from_str::<At>(&json).unwrap(), a);
        let none: At = serde_json::from_str(r#"{"at":1.5}"#).unwrap();
        assert_eq!(none, At { at: Timestamp(1500), maybe: None });
        assert_eq!(serde_json::to_string(&none).unwrap(), r#"{"at":1.5}"#);
        assert!(serde_json::from_str::<At>(r#"{"at":"soon"}"#).is_err());
    }

    #[test]
    fn seeded_ids_replay() {
        let (a, b) = (SeededIds::new(7), SeededIds::new(7));
        assert_eq!(a.uuid(), b.uuid());
        assert_eq!(a.hex_id(), b.hex_id());
        assert_ne!(a.hex_id(), a.hex_id());
    }

    #[test]
    fn uuid_shape() {
        let u = SeededIds::new(1).uuid();
        assert_eq!(u.len(), 36);
        assert_eq!(&u[14..15], "4");
        assert!(u.char_indices().all(|(i, c)| (c == '-') == matches!(i, 8 | 13 | 18 | 23)), "{u}");
        assert!(matches!(&u[19..20], "8" | "9" | "a" | "b"));
        assert_eq!(SeededIds::new(1).uuid_text().as_str(), u, "the text on the stack is the same UUID");
        assert_eq!(SeededIds::new(1).hex_id().len(), 32);
    }

    #[test]
    fn ordered_ids_sort_by_time_and_stay_unique() {
        let ids = SeededIds::new(3);
        let t = Timestamp(1_795_389_246_330);
        let (a, b) = (ids.ordered_hex_id(t), ids.ordered_hex_id(t));
        assert_eq!((a.len(), &a[..12]), (32, "01a20589cb7a"));
        assert!(a.chars().all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
        assert_ne!(a, b, "the same millisecond still gives fresh IDs");
        assert_eq!(&a[..12], &b[..12]);
        let later = ids.ordered_hex_id(Timestamp(t.0 + 1));
        assert!(later > a && later > b, "{later} sorts after {a} and {b}");
        assert_eq!(SeededIds::new(3).ordered_hex_id(t), a, "replays");
    }

    #[test]
    fn timestamps_as_seconds() {
        assert_eq!(Timestamp(1_700_000_000_123).as_epoch_seconds(), 1_700_000_000.123);
        assert_eq!(Timestamp::from_epoch_seconds(1.5), Timestamp(1500));
        let c = FixedClock::new(Timestamp(10));
        c.advance_ms(5);
        assert_eq!(c.now(), Timestamp(15));
    }
}
