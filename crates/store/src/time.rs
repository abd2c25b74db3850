//! Calendar arithmetic for the views (UTC, proleptic Gregorian) and the time bounds
//! users type (`--since 2003-11-25T13:00`, or epoch seconds).
//!
//! Everything is UTC: the seed's correlator printed local hours (CET), which made its
//! time view disagree with its own epoch stamps; a store shared between analysts in
//! different zones must not.

/// Days since 1970-01-01 of a civil date (Howard Hinnant's algorithm).
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The civil date (year, month 1–12, day 1–31) of a day number.
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// UTC calendar fields of an epoch second: (year, month, day, hour, minute, second).
pub fn utc_fields(secs: i64) -> (i64, u32, u32, u32, u32, u32) {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    (
        y,
        m,
        d,
        (rem / 3600) as u32,
        ((rem % 3600) / 60) as u32,
        (rem % 60) as u32,
    )
}

/// Parses a time bound: epoch seconds (`1069766913`, `1069766913.5`) or a UTC date and
/// time `YYYY-MM-DD[(T| )HH[:MM[:SS]]][Z]`. Returns microseconds since the epoch.
pub fn parse_time(s: &str) -> Result<i64, String> {
    let t = s.trim();
    if let Ok(v) = t.parse::<f64>() {
        if v.is_finite() {
            return Ok((v * 1e6).round() as i64);
        }
    }
    let bad = || format!("time '{s}': expected epoch seconds or YYYY-MM-DD[THH[:MM[:SS]]] (UTC)");
    let t = t.strip_suffix('Z').unwrap_or(t);
    let (date, clock) = match t.find(['T', ' ']) {
        Some(i) => (&t[..i], &t[i + 1..]),
        None => (t, ""),
    };
    let mut dp = date.split('-');
    let y: i64 = dp.next().and_then(|x| x.parse().ok()).ok_or_else(bad)?;
    let m: u32 = dp.next().and_then(|x| x.parse().ok()).ok_or_else(bad)?;
    let d: u32 = dp.next().and_then(|x| x.parse().ok()).ok_or_else(bad)?;
    if dp.next().is_some() || !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return Err(bad());
    }
    let mut hms = [0u32; 3];
    if !clock.is_empty() {
        for (i, part) in clock.split(':').enumerate() {
            if i >= 3 {
                return Err(bad());
            }
            hms[i] = part.parse().map_err(|_| bad())?;
        }
    }
    if hms[0] > 23 || hms[1] > 59 || hms[2] > 60 {
        return Err(bad());
    }
    let secs = days_from_civil(y, m, d) * 86_400
        + i64::from(hms[0]) * 3600
        + i64::from(hms[1]) * 60
        + i64::from(hms[2]);
    Ok(secs * 1_000_000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_stamp_is_2003_11_25_13_28_utc() {
        assert_eq!(utc_fields(1_069_766_913), (2003, 11, 25, 13, 28, 33));
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(civil_from_days(days_from_civil(2024, 2, 29)), (2024, 2, 29));
    }

    #[test]
    fn parse_time_accepts_epoch_and_dates() {
        assert_eq!(parse_time("1069766913").unwrap(), 1_069_766_913_000_000);
        assert_eq!(
            parse_time("2003-11-25T13:28:33Z").unwrap(),
            1_069_766_913_000_000
        );
        assert_eq!(parse_time("2003-11-25").unwrap(), 1_069_718_400_000_000);
        assert!(parse_time("2003-13-01").is_err());
        assert!(parse_time("yesterday").is_err());
    }
}
