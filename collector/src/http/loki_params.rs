//! Query-string parameters of Loki's read API, parsed as Loki parses them.
//!
//! Why a module of its own: Grafana and logcli send times as nanosecond
//! integers, float seconds or RFC 3339, steps as durations or float
//! seconds, and `match[]` repeated; every Loki handler needs the same
//! reading of them, with errors that name the parameter.

use std::collections::HashMap;

use super::error::ApiError;
use crate::query::logql::{Direction, parse_prometheus_duration};

const NS_PER_S: i64 = 1_000_000_000;
/// Loki's default window when `start` is missing: one hour before `end`.
const DEFAULT_WINDOW_NS: i64 = 3600 * NS_PER_S;

/// Decoded query-string pairs; a name may repeat (`match[]`).
#[derive(Debug, Default)]
pub struct Params {
    values: HashMap<String, Vec<String>>,
    /// Names with a value that decoded to invalid UTF-8: the value (read
    /// lossily) up to its first bad byte, and that byte's offset.
    bad_utf8: HashMap<String, (String, usize)>,
}

impl Params {
    /// Parses a raw query string (`a=1&b=%20x`, `+` is a space).
    pub fn parse(raw: Option<&str>) -> Params {
        let mut params = Params::default();
        for pair in raw.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let (name, value) = (decode(k), decode_bytes(v));
            let text = match String::from_utf8(value) {
                Ok(text) => text,
                Err(e) => {
                    let at = e.utf8_error().valid_up_to();
                    let lossy = String::from_utf8_lossy(e.as_bytes()).into_owned();
                    let prefix = String::from_utf8_lossy(e.as_bytes().get(..at).unwrap_or_default()).into_owned();
                    params.bad_utf8.entry(name.clone()).or_insert((prefix, at));
                    lossy
                }
            };
            params.values.entry(name).or_default().push(text);
        }
        params
    }

    /// Refuses a parameter whose value is not UTF-8, as Loki's parser
    /// refuses such a query (`invalid UTF-8 encoding`), with the place.
    ///
    /// # Errors
    /// 400 naming the parameter and the byte.
    pub fn check_utf8(&self, name: &str) -> Result<(), ApiError> {
        match self.bad_utf8.get(name) {
            None => Ok(()),
            Some((prefix, at)) => {
                let e = crate::query::logql::ParseError::at(prefix, *at, "invalid UTF-8 encoding");
                Err(ApiError::bad_request(format!("invalid parameter {name:?}: {e}")))
            }
        }
    }

    /// The last value of `name`, if given and not empty.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.values
            .get(name)
            .and_then(|v| v.last())
            .map(String::as_str)
            .filter(|s| !s.is_empty())
    }

    /// Every value of `name`.
    pub fn all(&self, name: &str) -> &[String] {
        self.values.get(name).map_or(&[], Vec::as_slice)
    }

    /// `query`, required.
    ///
    /// # Errors
    /// 400 when missing.
    pub fn query(&self) -> Result<&str, ApiError> {
        self.check_utf8("query")?;
        self.get("query")
            .ok_or_else(|| ApiError::bad_request("missing required parameter \"query\""))
    }

    /// `[start, end]` in ns: `end` defaults to now, `start` to an hour before it.
    ///
    /// # Errors
    /// 400 for an unreadable time or `end` before `start`.
    pub fn range(&self, now_ns: i64) -> Result<(i64, i64), ApiError> {
        let end = self.time("end")?.unwrap_or(now_ns);
        let start = self.time("start")?.unwrap_or(end.saturating_sub(DEFAULT_WINDOW_NS));
        if end < start {
            return Err(ApiError::bad_request(format!(
                "invalid time range: end ({end}) is before start ({start})"
            )));
        }
        Ok((start, end))
    }

    /// A time parameter in ns.
    ///
    /// # Errors
    /// 400 naming the parameter.
    pub fn time(&self, name: &str) -> Result<Option<i64>, ApiError> {
        self.get(name)
            .map(|v| {
                parse_time(v).ok_or_else(|| {
                    ApiError::bad_request(format!(
                        "invalid parameter \"{name}\": cannot parse {v:?} as a timestamp \
                         (nanoseconds, float seconds or RFC 3339)"
                    ))
                })
            })
            .transpose()
    }

    /// `limit` (default `default`).
    ///
    /// # Errors
    /// 400 for a non-number.
    pub fn limit(&self, default: usize) -> Result<usize, ApiError> {
        match self.get("limit") {
            None => Ok(default),
            Some(v) => v
                .parse()
                .map_err(|_| ApiError::bad_request(format!("invalid parameter \"limit\": {v:?} is not a count"))),
        }
    }

    /// `direction`: `forward` or `backward` (default), any case.
    ///
    /// # Errors
    /// 400 for anything else.
    pub fn direction(&self) -> Result<Direction, ApiError> {
        match self.get("direction").map(str::to_ascii_lowercase).as_deref() {
            None | Some("backward") => Ok(Direction::Backward),
            Some("forward") => Ok(Direction::Forward),
            Some(other) => Err(ApiError::bad_request(format!(
                "invalid parameter \"direction\": {other:?} (use forward or backward)"
            ))),
        }
    }

    /// `step` in ns; Loki's default gives about 250 points over the range.
    ///
    /// # Errors
    /// 400 for an unreadable or non-positive step.
    pub fn step(&self, start: i64, end: i64) -> Result<i64, ApiError> {
        let Some(v) = self.get("step") else {
            let secs = ((end - start) / NS_PER_S / 250).max(1);
            return Ok(secs * NS_PER_S);
        };
        let ns = match v.parse::<f64>() {
            Ok(secs) => (secs * 1e9) as i64,
            Err(_) => parse_prometheus_duration(v).ok_or_else(|| {
                ApiError::bad_request(format!(
                    "invalid parameter \"step\": {v:?} is neither seconds nor a duration such as 15s"
                ))
            })?,
        };
        if ns <= 0 {
            return Err(ApiError::bad_request(format!(
                "invalid parameter \"step\": {v:?}: zero or negative query resolution step widths are not accepted"
            )));
        }
        Ok(ns)
    }
}

/// Loki's timestamp rule: a number with a `.` is float seconds; an integer
/// of up to 10 digits is seconds, a longer one nanoseconds; else RFC 3339.
pub fn parse_time(v: &str) -> Option<i64> {
    if v.contains('.')
        && let Ok(secs) = v.parse::<f64>()
    {
        return secs.is_finite().then_some((secs * 1e9) as i64);
    }
    if let Ok(n) = v.parse::<i64>() {
        return Some(if v.trim_start_matches('-').len() <= 10 {
            n.saturating_mul(NS_PER_S)
        } else {
            n
        });
    }
    parse_rfc3339(v)
}

/// `2024-05-01T12:00:00.123456789Z` or with a `+02:00` offset, in ns.
pub fn parse_rfc3339(v: &str) -> Option<i64> {
    let b = v.as_bytes();
    let num = |r: std::ops::Range<usize>| -> Option<i64> { v.get(r)?.parse().ok() };
    if b.len() < 20 || b.get(4) != Some(&b'-') || b.get(7) != Some(&b'-') || !matches!(b.get(10), Some(b'T' | b't')) {
        return None;
    }
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, s) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || s > 60 {
        return None;
    }
    let mut rest = v.get(19..)?;
    let mut frac_ns = 0i64;
    if let Some(r) = rest.strip_prefix('.') {
        let digits = r.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        let frac = r.get(..digits.min(9))?;
        frac_ns = frac.parse::<i64>().ok()? * 10i64.pow(9 - frac.len() as u32);
        rest = r.get(digits..)?;
    }
    let offset_s = match rest {
        "Z" | "z" => 0,
        _ => {
            let sign = match rest.as_bytes().first() {
                Some(b'+') => 1,
                Some(b'-') => -1,
                _ => return None,
            };
            let (oh, om) = rest.get(1..)?.split_once(':')?;
            sign * (oh.parse::<i64>().ok()? * 3600 + om.parse::<i64>().ok()? * 60)
        }
    };
    let days = days_from_civil(y, mo, d);
    let secs = days * 86_400 + h * 3600 + mi * 60 + s - offset_s;
    secs.checked_mul(NS_PER_S)?.checked_add(frac_ns)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Percent-decoding of one query-string component, read lossily.
fn decode(s: &str) -> String {
    String::from_utf8_lossy(&decode_bytes(s)).into_owned()
}

/// Percent-decoding of one query-string component, as bytes.
fn decode_bytes(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        match c {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = s.get(i + 1..i + 3).and_then(|h| u8::from_str_radix(h, 16).ok());
                if let Some(v) = hex {
                    out.push(v);
                    i += 2;
                } else {
                    out.push(b'%');
                }
            }
            _ => out.push(c),
        }
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_as_loki_reads_them() {
        assert_eq!(parse_time("1700000000"), Some(1_700_000_000 * NS_PER_S));
        assert_eq!(parse_time("1700000000000000000"), Some(1_700_000_000 * NS_PER_S));
        assert_eq!(parse_time("1700000000.5"), Some(1_700_000_000 * NS_PER_S + 500_000_000));
        assert_eq!(parse_time("2023-11-14T22:13:20Z"), Some(1_700_000_000 * NS_PER_S));
        assert_eq!(
            parse_time("2023-11-14T23:13:20.25+01:00"),
            Some(1_700_000_000 * NS_PER_S + 250_000_000)
        );
        assert_eq!(parse_time("yesterday"), None);
        assert_eq!(parse_time("2023-13-14T22:13:20Z"), None);
    }

    #[test]
    fn params_decode_and_repeat() {
        let p = Params::parse(Some("match%5B%5D=%7Ba%3D%22b%22%7D&match[]=x&limit=5&q=a+b"));
        assert_eq!(p.all("match[]"), &["{a=\"b\"}".to_string(), "x".to_string()]);
        assert_eq!(p.limit(1).unwrap(), 5);
        assert_eq!(p.get("q"), Some("a b"));
        assert!(Params::parse(Some("start=10&end=5")).range(0).is_err());
        assert_eq!(Params::parse(Some("step=15s")).step(0, 1).unwrap(), 15 * NS_PER_S);
        assert_eq!(Params::parse(None).step(0, 1000 * NS_PER_S).unwrap(), 4 * NS_PER_S);
    }

    #[test]
    fn issue_32_invalid_utf8_query_is_refused_with_its_place() {
        // Loki's parser_test.go: {app=~"\xa0\xa1"} is "invalid UTF-8 encoding".
        let p = Params::parse(Some("query=%7Bapp%3D~%22%A0%A1%22%7D&limit=5"));
        let e = p.query().unwrap_err();
        assert_eq!(e.status.as_u16(), 400);
        assert_eq!(
            e.message,
            "invalid parameter \"query\": parse error at line 1, col 8: invalid UTF-8 encoding"
        );
        assert!(p.check_utf8("limit").is_ok());
        assert_eq!(Params::parse(Some("query=%C3%A9")).query().unwrap(), "é");
    }
}
