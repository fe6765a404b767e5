//! Parsing events into fields that become record headers: a regex's named
//! captures, a JSON object's top-level fields, or logfmt pairs. A parse
//! failure keeps the event whole (never dropped) and marks it with a
//! `logpost.parse_error` header naming the parser.

use std::collections::HashSet;

use logpost_shared::batch::HeaderSet;
use regex::bytes::Regex;

use super::timestamp::TimestampFormat;

/// Fields one event may contribute: a bound on headers per record.
pub const MAX_FIELDS: usize = 64;

/// How events are parsed.
#[derive(Debug, Clone)]
pub enum ParseFormat {
    Regex(Regex),
    Json,
    Logfmt,
}

impl ParseFormat {
    fn name(&self) -> &'static str {
        match self {
            ParseFormat::Regex(_) => "regex",
            ParseFormat::Json => "json",
            ParseFormat::Logfmt => "logfmt",
        }
    }
}

/// Parsing settings of one source.
#[derive(Debug, Clone)]
pub struct ParseConfig {
    pub format: ParseFormat,
    /// Only these fields become headers (all when `None`).
    pub fields: Option<HashSet<String>>,
    /// The field holding the record's time, and how it is written.
    pub timestamp: Option<(String, TimestampFormat)>,
}

/// What parsing one event gave.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Parsed {
    pub timestamp_ms: Option<i64>,
    pub failed: bool,
}

/// Parses `event` and appends the kept fields to `headers`.
pub fn parse(cfg: &ParseConfig, event: &[u8], headers: &mut HeaderSet) -> Parsed {
    let mut out = Parsed::default();
    let mut emit = |key: &str, value: &str, headers: &mut HeaderSet| {
        if let Some((field, format)) = &cfg.timestamp
            && field == key
        {
            out.timestamp_ms = format.parse_ms(value);
        }
        if headers.len() < MAX_FIELDS && cfg.fields.as_ref().is_none_or(|f| f.contains(key)) {
            headers.push(key, Some(value.as_bytes()));
        }
    };
    let ok = match &cfg.format {
        ParseFormat::Regex(re) => match re.captures(event) {
            Some(caps) => {
                for name in re.capture_names().flatten() {
                    if let Some(m) = caps.name(name) {
                        emit(name, &String::from_utf8_lossy(m.as_bytes()), headers);
                    }
                }
                true
            }
            None => false,
        },
        ParseFormat::Json => match serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(event) {
            Ok(map) => {
                for (k, v) in &map {
                    match v {
                        serde_json::Value::String(s) => emit(k, s, headers),
                        serde_json::Value::Null => {}
                        other => emit(k, &other.to_string(), headers),
                    }
                }
                true
            }
            Err(_) => false,
        },
        ParseFormat::Logfmt => logfmt(&String::from_utf8_lossy(event), |k, v| emit(k, v, headers)),
    };
    if !ok {
        out.failed = true;
        headers.push("logpost.parse_error", Some(cfg.format.name().as_bytes()));
    }
    out
}

/// Calls `f` for each `key=value` pair (values may be double-quoted, with
/// `\"` escapes); a bare `key` is `key=true`. False if no pair was found.
fn logfmt(line: &str, mut f: impl FnMut(&str, &str)) -> bool {
    let mut found = false;
    let mut rest = line.trim_start();
    while !rest.is_empty() {
        let key_end = rest.find(|c: char| c == '=' || c.is_whitespace()).unwrap_or(rest.len());
        let (key, tail) = rest.split_at(key_end);
        if key.is_empty() {
            rest = tail.get(1..).unwrap_or_default().trim_start();
            continue;
        }
        if let Some(after) = tail.strip_prefix('=') {
            if let Some(quoted) = after.strip_prefix('"') {
                let mut value = String::new();
                let mut chars = quoted.char_indices();
                let mut end = quoted.len();
                while let Some((i, c)) = chars.next() {
                    match c {
                        '\\' => {
                            if let Some((_, n)) = chars.next() {
                                value.push(n);
                            }
                        }
                        '"' => {
                            end = i + 1;
                            break;
                        }
                        c => value.push(c),
                    }
                }
                f(key, &value);
                rest = quoted.get(end..).unwrap_or_default().trim_start();
            } else {
                let v_end = after.find(char::is_whitespace).unwrap_or(after.len());
                f(key, after.get(..v_end).unwrap_or_default());
                rest = after.get(v_end..).unwrap_or_default().trim_start();
            }
        } else {
            f(key, "true");
            rest = tail.trim_start();
        }
        found = true;
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use logpost_shared::batch::{BatchBuilder, records_to_owned};
    use logpost_shared::compression::Compression;

    fn headers_of(h: &HeaderSet) -> Vec<(String, String)> {
        let mut b = BatchBuilder::new();
        b.append(0, None, Some(b"x"), &[h]);
        let frame = b.finish(Compression::None).unwrap();
        records_to_owned(&frame, 1 << 20).unwrap()[0]
            .headers
            .iter()
            .map(|h| (h.key.clone(), String::from_utf8(h.value.clone().unwrap()).unwrap()))
            .collect()
    }

    #[test]
    fn regex_json_logfmt() {
        let cfg = ParseConfig {
            format: ParseFormat::Regex(Regex::new(r"^(?P<ts>\S+) (?P<level>\w+) (?P<msg>.*)$").unwrap()),
            fields: Some(["level".to_owned()].into()),
            timestamp: Some(("ts".into(), TimestampFormat::Rfc3339)),
        };
        let mut h = HeaderSet::new();
        let p = parse(&cfg, b"2023-11-14T22:13:20Z ERROR disk full", &mut h);
        assert_eq!(
            p,
            Parsed {
                timestamp_ms: Some(1_700_000_000_000),
                failed: false
            }
        );
        assert_eq!(headers_of(&h), vec![("level".into(), "ERROR".into())]);

        let cfg = ParseConfig {
            format: ParseFormat::Json,
            fields: None,
            timestamp: None,
        };
        let mut h = HeaderSet::new();
        parse(
            &cfg,
            br#"{"level":"warn","status":503,"ok":false,"nested":{"a":1},"none":null}"#,
            &mut h,
        );
        assert_eq!(
            headers_of(&h),
            // JSON fields come in key order.
            vec![
                ("level".into(), "warn".into()),
                ("nested".into(), "{\"a\":1}".into()),
                ("ok".into(), "false".into()),
                ("status".into(), "503".into()),
            ]
        );

        let cfg = ParseConfig {
            format: ParseFormat::Logfmt,
            fields: None,
            timestamp: None,
        };
        let mut h = HeaderSet::new();
        parse(&cfg, br#"level=info msg="hello \"world\"" dur=12ms debug"#, &mut h);
        assert_eq!(
            headers_of(&h),
            vec![
                ("level".into(), "info".into()),
                ("msg".into(), "hello \"world\"".into()),
                ("dur".into(), "12ms".into()),
                ("debug".into(), "true".into())
            ]
        );
    }

    #[test]
    fn failures_are_marked_not_dropped() {
        let cfg = ParseConfig {
            format: ParseFormat::Json,
            fields: None,
            timestamp: None,
        };
        let mut h = HeaderSet::new();
        assert!(parse(&cfg, b"not json", &mut h).failed);
        assert_eq!(headers_of(&h), vec![("logpost.parse_error".into(), "json".into())]);
    }
}
