//! Reading a record's time from a parsed field: RFC 3339, Unix epochs, or
//! a strftime-style pattern (`%Y-%m-%d %H:%M:%S`, `%d/%b/%Y:%H:%M:%S %z`,
//! ...). Times without a zone are UTC. A value that does not parse leaves
//! the record with its read time.

/// How a timestamp field is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TimestampFormat {
    Rfc3339,
    UnixSeconds,
    UnixMillis,
    UnixMicros,
    UnixNanos,
    /// A strftime pattern: `%Y %m %d %H %M %S %f %z %b %e %j %T %F %%`.
    Pattern(String),
}

impl TimestampFormat {
    /// Parses the config's `timestamp_format`.
    ///
    /// # Errors
    /// A pattern using a directive this parser does not know.
    pub fn from_config(text: &str) -> Result<TimestampFormat, String> {
        Ok(match text {
            "rfc3339" | "iso8601" => TimestampFormat::Rfc3339,
            "unix" => TimestampFormat::UnixSeconds,
            "unix_ms" => TimestampFormat::UnixMillis,
            "unix_us" => TimestampFormat::UnixMicros,
            "unix_ns" => TimestampFormat::UnixNanos,
            pattern => {
                let mut chars = pattern.chars();
                while let Some(c) = chars.next() {
                    if c == '%' {
                        match chars.next() {
                            Some('Y' | 'm' | 'd' | 'H' | 'M' | 'S' | 'f' | 'z' | 'b' | 'e' | 'T' | 'F' | '%') => {}
                            other => {
                                return Err(format!(
                                    "unsupported directive %{} in timestamp format {pattern:?} (supported: %Y %m %d %H %M %S %f %z %b %e %T %F %%, or rfc3339, unix, unix_ms, unix_us, unix_ns)",
                                    other.map(String::from).unwrap_or_default()
                                ));
                            }
                        }
                    }
                }
                TimestampFormat::Pattern(pattern.to_owned())
            }
        })
    }

    /// Milliseconds since the epoch for `value`, if it parses.
    pub fn parse_ms(&self, value: &str) -> Option<i64> {
        let value = value.trim();
        match self {
            TimestampFormat::UnixSeconds => value.parse::<f64>().ok().map(|s| (s * 1000.0).round() as i64),
            TimestampFormat::UnixMillis => value.parse::<f64>().ok().map(|v| v.round() as i64),
            TimestampFormat::UnixMicros => value.parse::<i64>().ok().map(|v| v / 1000),
            TimestampFormat::UnixNanos => value.parse::<i64>().ok().map(|v| v / 1_000_000),
            TimestampFormat::Rfc3339 => parse_pattern("%Y-%m-%dT%H:%M:%S%f%z", &value.replacen(' ', "T", 1)),
            TimestampFormat::Pattern(p) => parse_pattern(p, value),
        }
    }
}

const MONTHS: [&str; 12] = [
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];

fn parse_pattern(pattern: &str, value: &str) -> Option<i64> {
    let pattern = pattern.replace("%T", "%H:%M:%S").replace("%F", "%Y-%m-%d");
    let (mut y, mut mo, mut d, mut h, mut mi, mut s, mut frac_ms, mut offset_s) =
        (1970i64, 1i64, 1i64, 0i64, 0i64, 0i64, 0i64, 0i64);
    let v = value.as_bytes();
    let mut i = 0;
    let mut p = pattern.chars().peekable();
    let digits = |i: &mut usize, max: usize| -> Option<i64> {
        let start = *i;
        while *i < v.len() && *i - start < max && v.get(*i)?.is_ascii_digit() {
            *i += 1;
        }
        if *i == start {
            None
        } else {
            std::str::from_utf8(v.get(start..*i)?).ok()?.parse().ok()
        }
    };
    while let Some(c) = p.next() {
        if c != '%' {
            if *v.get(i)? as char != c {
                return None;
            }
            i += 1;
            continue;
        }
        match p.next()? {
            'Y' => y = digits(&mut i, 4)?,
            'm' => mo = digits(&mut i, 2)?,
            'd' => d = digits(&mut i, 2)?,
            'e' => {
                if v.get(i) == Some(&b' ') {
                    i += 1;
                }
                d = digits(&mut i, 2)?;
            }
            'H' => h = digits(&mut i, 2)?,
            'M' => mi = digits(&mut i, 2)?,
            'S' => s = digits(&mut i, 2)?,
            'f' => {
                // Optional fraction: `.123`, `,123456` (ms precision kept).
                if matches!(v.get(i), Some(b'.' | b',')) {
                    i += 1;
                    let start = i;
                    let n = digits(&mut i, 9)?;
                    let len = (i - start) as u32;
                    frac_ms = if len >= 3 {
                        n / 10i64.pow(len - 3)
                    } else {
                        n * 10i64.pow(3 - len)
                    };
                }
            }
            'b' => {
                let name = std::str::from_utf8(v.get(i..i + 3)?).ok()?.to_ascii_lowercase();
                mo = MONTHS.iter().position(|m| *m == name)? as i64 + 1;
                i += 3;
            }
            'z' => match v.get(i) {
                Some(b'Z' | b'z') => i += 1,
                Some(&sign @ (b'+' | b'-')) => {
                    i += 1;
                    let hh = digits(&mut i, 2)?;
                    if v.get(i) == Some(&b':') {
                        i += 1;
                    }
                    let mm = digits(&mut i, 2)?;
                    offset_s = (hh * 3600 + mm * 60) * if sign == b'-' { -1 } else { 1 };
                }
                _ => {}
            },
            '%' => {
                if v.get(i) != Some(&b'%') {
                    return None;
                }
                i += 1;
            }
            _ => return None,
        }
    }
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || s > 60 {
        return None;
    }
    let days = days_from_civil(y, mo, d);
    Some((days * 86_400 + h * 3600 + mi * 60 + s - offset_s) * 1000 + frac_ms)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        let rfc = TimestampFormat::Rfc3339;
        assert_eq!(rfc.parse_ms("2023-11-14T22:13:20Z"), Some(1_700_000_000_000));
        assert_eq!(rfc.parse_ms("2023-11-14T22:13:20.123Z"), Some(1_700_000_000_123));
        assert_eq!(rfc.parse_ms("2023-11-15T00:13:20.5+02:00"), Some(1_700_000_000_500));
        assert_eq!(rfc.parse_ms("2023-11-14 22:13:20"), Some(1_700_000_000_000));
        assert_eq!(
            TimestampFormat::UnixSeconds.parse_ms("1700000000.25"),
            Some(1_700_000_000_250)
        );
        assert_eq!(
            TimestampFormat::UnixMillis.parse_ms("1700000000123"),
            Some(1_700_000_000_123)
        );
        let apache = TimestampFormat::from_config("%d/%b/%Y:%H:%M:%S %z").unwrap();
        assert_eq!(apache.parse_ms("14/Nov/2023:23:13:20 +0100"), Some(1_700_000_000_000));
        let syslog = TimestampFormat::from_config("%Y %b %e %T").unwrap();
        assert_eq!(syslog.parse_ms("2023 Nov 14 22:13:20"), Some(1_700_000_000_000));
        assert_eq!(rfc.parse_ms("not a time"), None);
        assert_eq!(rfc.parse_ms("2023-13-14T22:13:20Z"), None);
        assert!(TimestampFormat::from_config("%Q").is_err());
    }
}
