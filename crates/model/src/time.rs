//! Packet time. Every time in tunnelwatch's decode, flow and detect stages comes from a
//! packet (or a flow export), never from a clock, so replaying an input gives identical
//! output.

use std::fmt;

/// A point in packet time: nanoseconds since the Unix epoch (may be negative for
/// broken captures; ordering is still total).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Timestamp(pub i64);

impl Timestamp {
    /// Nanoseconds in one second.
    pub const NANOS_PER_SEC: i64 = 1_000_000_000;

    /// The latest time there is (after every packet: the end of input).
    pub const MAX: Timestamp = Timestamp(i64::MAX);

    /// The earliest time there is (before every packet).
    pub const MIN: Timestamp = Timestamp(i64::MIN);

    /// Builds a timestamp from whole seconds and a nanosecond fraction.
    pub fn from_secs_nanos(secs: i64, nanos: u32) -> Self {
        Timestamp(
            secs.saturating_mul(Self::NANOS_PER_SEC)
                .saturating_add(i64::from(nanos)),
        )
    }

    /// Builds a timestamp from seconds (used for configuration values and tests).
    pub fn from_secs_f64(secs: f64) -> Self {
        Timestamp((secs * 1e9).round() as i64)
    }

    /// Nanoseconds since the epoch.
    pub fn as_nanos(self) -> i64 {
        self.0
    }

    /// Whole microseconds since the epoch (truncated towards negative infinity).
    pub fn as_micros(self) -> i64 {
        self.0.div_euclid(1000)
    }

    /// Seconds since the epoch at microsecond precision, as flow records print it.
    ///
    /// Microseconds are exact in an `f64` until the year 2106, and the shortest
    /// round-trip printing of such a value is the six-decimal form, so JSON output stays
    /// byte-stable.
    pub fn as_secs_f64_micros(self) -> f64 {
        self.as_micros() as f64 / 1e6
    }

    /// Adds a duration in nanoseconds, saturating.
    pub fn add_nanos(self, nanos: i64) -> Self {
        Timestamp(self.0.saturating_add(nanos))
    }

    /// `self - earlier` in nanoseconds (saturating).
    pub fn nanos_since(self, earlier: Timestamp) -> i64 {
        self.0.saturating_sub(earlier.0)
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let micros = self.as_micros();
        write!(
            f,
            "{}.{:06}",
            micros.div_euclid(1_000_000),
            micros.rem_euclid(1_000_000)
        )
    }
}

impl serde::Serialize for Timestamp {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(self.as_secs_f64_micros())
    }
}

impl<'de> serde::Deserialize<'de> for Timestamp {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // Records print microseconds; rounding there (not to nanoseconds) gives back
        // the exact microsecond, which `secs * 1e9` truncated could miss by one.
        let secs = f64::deserialize(d)?;
        Ok(Timestamp(
            ((secs * 1e6).round() as i64).saturating_mul(1000),
        ))
    }
}

/// Converts a duration in nanoseconds to seconds at microsecond precision.
pub(crate) fn nanos_to_secs_micros(nanos: i64) -> f64 {
    nanos.div_euclid(1000) as f64 / 1e6
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_pads_microseconds() {
        assert_eq!(
            Timestamp::from_secs_nanos(12, 3_000).to_string(),
            "12.000003"
        );
        assert_eq!(Timestamp(-1).to_string(), "-1.999999");
    }

    #[test]
    fn json_round_trip_keeps_the_microsecond() {
        // 1795318008.770114 came back as ...770113 when parsed to nanoseconds.
        for micros in [1_795_318_008_770_114_i64, 1_700_000_000_123_456, 0, 999_999] {
            for k in 0..1000 {
                let t = Timestamp((micros + k * 7919) * 1000);
                let back: Timestamp =
                    serde_json::from_str(&serde_json::to_string(&t).unwrap()).unwrap();
                assert_eq!(back.as_micros(), t.as_micros(), "{t}");
            }
        }
    }

    #[test]
    fn micros_print_exactly_in_json() {
        let t = Timestamp::from_secs_nanos(1_700_000_000, 123_456_789);
        let s = serde_json::to_string(&t.as_secs_f64_micros()).unwrap();
        assert_eq!(s, "1700000000.123456");
    }
}
