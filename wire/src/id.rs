//! 64-bit, time-sortable ids ("snowflakes"), written as strings in JSON.
//!
//! Layout (most significant first): 42 bits of milliseconds since [`EPOCH_MS`],
//! 10 bits of node id, 12 bits of per-millisecond sequence. Ids from one node are
//! strictly increasing; ids from different nodes are ordered by time to the millisecond.

use std::fmt;
use std::str::FromStr;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// 2026-01-01T00:00:00Z in Unix milliseconds: the zero of the id clock.
pub const EPOCH_MS: u64 = 1_767_225_600_000;

/// An object id. Serialized as a decimal string so JavaScript never rounds it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Id(pub i64);

impl Id {
    /// The Unix time in milliseconds encoded in this id.
    pub fn timestamp_ms(self) -> u64 {
        ((self.0 as u64) >> 22) + EPOCH_MS
    }

    /// The smallest id that could have been made at `unix_ms` (useful for time-range queries).
    pub fn min_at(unix_ms: u64) -> Id {
        Id((unix_ms.saturating_sub(EPOCH_MS) << 22) as i64)
    }
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Why a string is not an id.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("not a valid id: expected a positive 64-bit decimal number")]
pub struct ParseIdError;

impl FromStr for Id {
    type Err = ParseIdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.is_empty() || s.len() > 19 || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(ParseIdError);
        }
        match s.parse::<i64>() {
            Ok(v) if v > 0 => Ok(Id(v)),
            _ => Err(ParseIdError),
        }
    }
}

impl Serialize for Id {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Id {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        /// Accepts the canonical string form; also integers that JSON can carry exactly.
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Id;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an id as a decimal string")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Id, E> {
                v.parse().map_err(E::custom)
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Id, E> {
                if v == 0 || v > (1u64 << 53) {
                    return Err(E::custom(ParseIdError));
                }
                Ok(Id(v as i64))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Id, E> {
                if v <= 0 || v > (1i64 << 53) {
                    return Err(E::custom(ParseIdError));
                }
                Ok(Id(v))
            }
        }
        d.deserialize_any(V)
    }
}

impl utoipa::PartialSchema for Id {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::schema::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .pattern(Some("^[0-9]{1,19}$"))
            .description(Some("64-bit time-sortable id, as a decimal string"))
            .examples(["123456789012345678"])
            .into()
    }
}

impl utoipa::ToSchema for Id {}

/// Makes ids for one node. Cheap to share behind an `Arc`.
#[derive(Debug)]
pub struct IdGenerator {
    node: u64,
    state: Mutex<(u64, u64)>,
}

impl IdGenerator {
    /// A generator for node `node` (only the low 10 bits are used).
    pub fn new(node: u16) -> Self {
        Self {
            node: u64::from(node) & 0x3ff,
            state: Mutex::new((0, 0)),
        }
    }

    /// The next id: strictly greater than every id this generator made before.
    pub fn next(&self) -> Id {
        self.next_block(1)
    }

    /// Reserves `n` consecutive ids (1–4096; others are clamped) and returns the last: the
    /// block is `last - n + 1 ..= last`, of one millisecond, all greater than every id this
    /// generator made before and never made again.
    pub fn next_block(&self, n: u64) -> Id {
        let n = n.clamp(1, 0x1000);
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(EPOCH_MS)
            .saturating_sub(EPOCH_MS);
        let mut st = match self.state.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        let (last_ms, seq) = *st;
        let (ms, seq) = if now > last_ms {
            (now, n - 1)
        } else if seq + n <= 0xfff {
            (last_ms, seq + n)
        } else {
            // Sequence exhausted in this millisecond: borrow the next one.
            (last_ms + 1, n - 1)
        };
        *st = (ms, seq);
        Id(((ms << 22) | (self.node << 12) | seq) as i64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_increase_and_roundtrip_as_strings() {
        let g = IdGenerator::new(3);
        let mut prev = g.next();
        for _ in 0..10_000 {
            let id = g.next();
            assert!(id > prev);
            prev = id;
        }
        let json = serde_json::to_string(&prev).unwrap();
        assert_eq!(json, format!("\"{}\"", prev.0));
        let back: Id = serde_json::from_str(&json).unwrap();
        assert_eq!(back, prev);
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        assert!(prev.timestamp_ms().abs_diff(now) < 5_000);
    }

    #[test]
    fn blocks_are_consecutive_disjoint_and_increasing() {
        let g = IdGenerator::new(5);
        let mut prev = g.next().0;
        for k in 0..5_000u64 {
            let n = 1 + k % 64;
            let last = g.next_block(n).0;
            let first = last - (n as i64 - 1);
            assert!(first > prev, "block {first}..={last} overlaps {prev}");
            // One millisecond and this node throughout: the block is this generator's own.
            assert_eq!(first >> 22, last >> 22);
            assert_eq!((first >> 12) & 0x3ff, 5);
            prev = last;
        }
    }

    #[test]
    fn bad_ids_are_rejected() {
        for s in ["", "0", "-1", "abc", "1e3", "99999999999999999999", " 1"] {
            assert!(s.parse::<Id>().is_err(), "{s:?}");
        }
        assert!(serde_json::from_str::<Id>("9007199254740993").is_err());
        assert!(serde_json::from_str::<Id>("1.5").is_err());
        assert!(serde_json::from_str::<Id>("null").is_err());
    }
}
