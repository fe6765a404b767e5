//! Parsing of duration and byte-size text, in the three dialects LogQL mixes:
//! Prometheus durations (`[1h30m]` ranges), Go durations (`1.5s` in label
//! values and filters) and go-humanize byte sizes (`20KB`, `20 KiB`).
//!
//! Why a module of its own: the lexer, label filters and `unwrap` all need
//! the same conversions, and Loki's exact rules (which units, fractions or
//! not, whether a space may separate the unit) differ per dialect.
//! Every function returns `None` on bad or overflowing input; none panics.

/// Nanoseconds per millisecond.
pub const NS_PER_MS: i64 = 1_000_000;
/// Nanoseconds per second.
pub const NS_PER_SEC: i64 = 1_000_000_000;
const NS_PER_MIN: i64 = 60 * NS_PER_SEC;
const NS_PER_HOUR: i64 = 60 * NS_PER_MIN;
const NS_PER_DAY: i64 = 24 * NS_PER_HOUR;

/// Splits `s` at the end of its leading run of chars satisfying `pred`.
fn split_run(s: &str, pred: impl Fn(char) -> bool) -> (&str, &str) {
    let end = s.find(|c: char| !pred(c)).unwrap_or(s.len());
    (s.get(..end).unwrap_or(""), s.get(end..).unwrap_or(""))
}

/// A Prometheus duration such as `5m`, `1h30m`, `250ms`, `2d`, `1w`, `1y`,
/// in nanoseconds. Integers only; units must appear in descending order and
/// at most once each, as Prometheus' `model.ParseDuration` requires.
pub fn parse_prometheus_duration(s: &str) -> Option<i64> {
    const UNITS: [(&str, i64); 7] = [
        ("y", 365 * NS_PER_DAY),
        ("w", 7 * NS_PER_DAY),
        ("d", NS_PER_DAY),
        ("h", NS_PER_HOUR),
        ("m", NS_PER_MIN),
        ("s", NS_PER_SEC),
        ("ms", NS_PER_MS),
    ];
    if s == "0" {
        return Some(0);
    }
    if s.is_empty() {
        return None;
    }
    let mut rest = s;
    let mut total: i64 = 0;
    let mut next_unit = 0;
    while !rest.is_empty() {
        let (digits, after) = split_run(rest, |c| c.is_ascii_digit());
        let (unit, after) = split_run(after, |c| c.is_ascii_alphabetic());
        let n: i64 = digits.parse().ok()?;
        let idx = UNITS.iter().position(|(u, _)| *u == unit)?;
        if idx < next_unit {
            return None;
        }
        next_unit = idx + 1;
        let (_, mult) = UNITS.get(idx)?;
        total = total.checked_add(n.checked_mul(*mult)?)?;
        rest = after;
    }
    Some(total)
}

/// A Go `time.ParseDuration` duration such as `1.5s`, `-2m30s`, `100us`,
/// in nanoseconds.
pub fn parse_go_duration(s: &str) -> Option<i64> {
    let (negative, mut rest) = match s.as_bytes().first() {
        Some(b'-') => (true, s.get(1..)?),
        Some(b'+') => (false, s.get(1..)?),
        _ => (false, s),
    };
    if rest == "0" {
        return Some(0);
    }
    if rest.is_empty() {
        return None;
    }
    let mut total: f64 = 0.0;
    let mut exact: i64 = 0;
    while !rest.is_empty() {
        let (int, after) = split_run(rest, |c| c.is_ascii_digit());
        let (frac, after) = match after.strip_prefix('.') {
            Some(a) => split_run(a, |c| c.is_ascii_digit()),
            None => ("", after),
        };
        if int.is_empty() && frac.is_empty() {
            return None;
        }
        let (unit, after) = split_run(after, |c| !c.is_ascii_digit() && c != '.');
        let mult = match unit {
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => NS_PER_MS,
            "s" => NS_PER_SEC,
            "m" => NS_PER_MIN,
            "h" => NS_PER_HOUR,
            _ => return None,
        };
        let whole: i64 = if int.is_empty() { 0 } else { int.parse().ok()? };
        exact = exact.checked_add(whole.checked_mul(mult)?)?;
        if !frac.is_empty() {
            let f: f64 = format!("0.{frac}").parse().ok()?;
            total += f * mult as f64;
        }
        rest = after;
    }
    let value = exact.checked_add(total.round() as i64)?;
    Some(if negative { -value } else { value })
}

/// A duration literal as the LogQL lexer reads it: Prometheus syntax first
/// (so `1d` and `1w` work), then Go syntax (so `1.5s` works).
pub fn parse_duration_literal(s: &str) -> Option<i64> {
    parse_prometheus_duration(s).or_else(|| parse_go_duration(s))
}

/// A byte size as go-humanize's `ParseBytes` reads it: a number (commas
/// allowed, fractions allowed), optional spaces, then an optional unit, case
/// insensitive: `B`, `KB`/`K` (1000), `KiB`/`Ki` (1024), up to `EB`/`EiB`.
pub fn parse_bytes(s: &str) -> Option<u64> {
    let (num, unit) = split_run(s, |c| c.is_ascii_digit() || c == '.' || c == ',');
    let num = num.replace(',', "");
    let value: f64 = num.parse().ok()?;
    let unit = unit.trim().to_ascii_lowercase();
    let (base, power): (f64, i32) = match unit.as_str() {
        "" | "b" => (1.0, 0),
        "k" | "kb" => (1000.0, 1),
        "ki" | "kib" => (1024.0, 1),
        "m" | "mb" => (1000.0, 2),
        "mi" | "mib" => (1024.0, 2),
        "g" | "gb" => (1000.0, 3),
        "gi" | "gib" => (1024.0, 3),
        "t" | "tb" => (1000.0, 4),
        "ti" | "tib" => (1024.0, 4),
        "p" | "pb" => (1000.0, 5),
        "pi" | "pib" => (1024.0, 5),
        "e" | "eb" => (1000.0, 6),
        "ei" | "eib" => (1024.0, 6),
        _ => return None,
    };
    let bytes = value * base.powi(power);
    // u64::MAX as f64 rounds up to 2^64, so `<` keeps the cast in range.
    if !bytes.is_finite() || bytes < 0.0 || bytes >= u64::MAX as f64 {
        return None;
    }
    Some(bytes as u64)
}

/// Converts nanoseconds to (fractional) seconds.
pub fn ns_to_secs(ns: i64) -> f64 {
    ns as f64 / NS_PER_SEC as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prometheus_durations() {
        assert_eq!(parse_prometheus_duration("5m"), Some(300 * NS_PER_SEC));
        assert_eq!(parse_prometheus_duration("1h30m"), Some(5400 * NS_PER_SEC));
        assert_eq!(parse_prometheus_duration("250ms"), Some(250 * NS_PER_MS));
        assert_eq!(parse_prometheus_duration("1d"), Some(86_400 * NS_PER_SEC));
        assert_eq!(parse_prometheus_duration("0"), Some(0));
        assert_eq!(parse_prometheus_duration("30m1h"), None);
        assert_eq!(parse_prometheus_duration("1.5m"), None);
        assert_eq!(parse_prometheus_duration(""), None);
        assert_eq!(parse_prometheus_duration("5"), None);
        assert_eq!(parse_prometheus_duration("99999999999y"), None);
    }

    #[test]
    fn go_durations() {
        assert_eq!(parse_go_duration("1.5s"), Some(1_500 * NS_PER_MS));
        assert_eq!(parse_go_duration("-2m30s"), Some(-150 * NS_PER_SEC));
        assert_eq!(parse_go_duration("100us"), Some(100_000));
        assert_eq!(parse_go_duration("1h0.5m"), Some(3630 * NS_PER_SEC));
        assert_eq!(parse_go_duration(".5s"), Some(500 * NS_PER_MS));
        assert_eq!(parse_go_duration("0"), Some(0));
        assert_eq!(parse_go_duration("1d"), None);
        assert_eq!(parse_go_duration("s"), None);
        assert_eq!(parse_go_duration("12"), None);
        assert_eq!(parse_go_duration(""), None);
    }

    #[test]
    fn literal_prefers_prometheus_then_go() {
        assert_eq!(parse_duration_literal("1w"), Some(7 * 86_400 * NS_PER_SEC));
        assert_eq!(parse_duration_literal("1.5s"), Some(1_500 * NS_PER_MS));
    }

    #[test]
    fn humanize_bytes() {
        assert_eq!(parse_bytes("20KB"), Some(20_000));
        assert_eq!(parse_bytes("20KiB"), Some(20_480));
        assert_eq!(parse_bytes("20 kib"), Some(20_480));
        assert_eq!(parse_bytes("1.5MB"), Some(1_500_000));
        assert_eq!(parse_bytes("1,024"), Some(1024));
        assert_eq!(parse_bytes("42"), Some(42));
        assert_eq!(parse_bytes("5B"), Some(5));
        assert_eq!(parse_bytes("5XB"), None);
        assert_eq!(parse_bytes("-5"), None);
        assert_eq!(parse_bytes("KB"), None);
        assert_eq!(parse_bytes("99999EB"), None);
    }
}
