//! The `| json` and `| unpack` parser stages.
//!
//! Why a module of its own: it owns Loki's JSON-to-label rules. Plain
//! `| json` flattens nested objects into `outer_inner` labels, keeps
//! numbers as written, turns booleans into `true`/`false`, and skips arrays
//! and nulls. `| json a="x.y[0]"` instead extracts chosen paths; a nested
//! object or array is then kept as raw JSON text, and a missing path gives
//! an empty label. A line that is not JSON gets `__error__="JSONParserErr"`
//! (details in `__error_details__`) and is not dropped.

use crate::query::logql::labels::{Labels, sanitize_label_name};
use crate::query::logql::pipeline::json_scan::{MAX_DEPTH, Next, Reader, Scalar, unescape};
use crate::query::logql::pipeline::set_extracted;

/// The error Loki records for a line its JSON parsers cannot read.
pub(crate) const JSON_PARSER_ERR: &str = "JSONParserErr";

/// One step of a `| json label="path"` expression.
#[derive(Debug, Clone, PartialEq)]
enum Segment {
    Key(String),
    Index(usize),
}

/// A parsed extraction path such as `request.headers["User-Agent"]` or `servers[0]`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct JsonPath(Vec<Segment>);

impl JsonPath {
    /// Parses a path: `a.b`, `a[0]`, `a["b c"]`, `["a"]`.
    ///
    /// # Errors
    /// Unbalanced brackets, an empty field, a bad index.
    pub(crate) fn parse(s: &str) -> Result<JsonPath, String> {
        let mut segs = Vec::new();
        let mut rest = s;
        let mut expect_field = true;
        while !rest.is_empty() {
            if let Some(after) = rest.strip_prefix('[') {
                let (seg, after) = bracket(after).ok_or_else(|| format!("invalid JSON path {s:?}"))?;
                segs.push(seg);
                rest = after;
                expect_field = false;
                continue;
            }
            if !expect_field {
                rest = rest
                    .strip_prefix('.')
                    .ok_or_else(|| format!("invalid JSON path {s:?}"))?;
            }
            let end = rest
                .find(|c: char| matches!(c, '.' | '[' | ']' | '"') || c.is_whitespace())
                .unwrap_or(rest.len());
            if end == 0 {
                return Err(format!("invalid JSON path {s:?}"));
            }
            segs.push(Segment::Key(rest.get(..end).unwrap_or("").to_string()));
            rest = rest.get(end..).unwrap_or("");
            expect_field = false;
        }
        if segs.is_empty() {
            return Err("empty JSON path".into());
        }
        Ok(JsonPath(segs))
    }
}

/// Reads `0]` or `"key"]` after a `[`.
fn bracket(s: &str) -> Option<(Segment, &str)> {
    if let Some(quoted) = s.strip_prefix('"') {
        let mut key = String::new();
        let mut chars = quoted.char_indices();
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => key.push(chars.next()?.1),
                '"' => {
                    let after = quoted.get(i + 1..)?.strip_prefix(']')?;
                    return Some((Segment::Key(key), after));
                }
                c => key.push(c),
            }
        }
        return None;
    }
    let end = s.find(']')?;
    let index = s.get(..end)?.trim().parse().ok()?;
    Some((Segment::Index(index), s.get(end + 1..)?))
}

/// The `json` stage, in flattening or extraction form.
#[derive(Debug, Clone)]
pub struct JsonParser {
    /// `None` for plain `| json`; otherwise `(label, path)` pairs.
    fields: Option<Vec<(String, JsonPath)>>,
}

impl JsonParser {
    pub(crate) fn flatten() -> Self {
        JsonParser { fields: None }
    }

    pub(crate) fn extract(fields: Vec<(String, JsonPath)>) -> Self {
        JsonParser { fields: Some(fields) }
    }

    pub(crate) fn process(&self, line: &[u8], labels: &mut Labels, stream: &Labels) {
        match &self.fields {
            None => {
                let mut prefix = String::new();
                let mut r = Reader::new(line);
                let res = r
                    .begin_object()
                    .and_then(|()| flatten(&mut r, &mut prefix, labels, stream, 0));
                if let Err(e) = res {
                    labels.set_error(JSON_PARSER_ERR, &e);
                }
            }
            Some(fields) => extract_all(fields, line, labels, stream),
        }
    }
}

fn flatten(
    r: &mut Reader<'_>,
    prefix: &mut String,
    labels: &mut Labels,
    stream: &Labels,
    depth: usize,
) -> Result<(), String> {
    if depth > MAX_DEPTH {
        return Err(format!("JSON nested deeper than {MAX_DEPTH} levels"));
    }
    let mut first = true;
    while let Some(raw_key) = r.next_key(&mut first)? {
        let key = unescape(raw_key).unwrap_or_default();
        match r.next_value()? {
            Next::Object => {
                let saved = prefix.len();
                if !prefix.is_empty() {
                    prefix.push('_');
                }
                prefix.push_str(&sanitize_label_name(&key, saved == 0));
                r.begin_object()?;
                flatten(r, prefix, labels, stream, depth + 1)?;
                prefix.truncate(saved);
            }
            Next::Array => r.skip_value()?,
            Next::Scalar(Scalar::Null) => {}
            Next::Scalar(s) => {
                let name = if prefix.is_empty() {
                    sanitize_label_name(&key, true)
                } else {
                    format!("{prefix}_{}", sanitize_label_name(&key, false))
                };
                set_extracted(labels, stream, &name, scalar_text(s));
            }
        }
    }
    Ok(())
}

fn scalar_text(s: Scalar<'_>) -> String {
    match s {
        Scalar::Str(raw) => unescape(raw).unwrap_or_default(),
        Scalar::Num(n) => String::from_utf8_lossy(n).into_owned(),
        Scalar::Bool(b) => b.to_string(),
        Scalar::Null => String::new(),
    }
}

fn extract_all(fields: &[(String, JsonPath)], line: &[u8], labels: &mut Labels, stream: &Labels) {
    if line.is_empty() {
        return;
    }
    // Loki checks only the first byte before trying the paths.
    if !matches!(line.first(), Some(b'"' | b'{' | b'[')) {
        labels.set_error(JSON_PARSER_ERR, "");
        return;
    }
    for (name, path) in fields {
        match extract(line, path) {
            Ok(Some(value)) => set_extracted(labels, stream, name, value),
            Ok(None) => {
                if !labels.contains(name) {
                    labels.insert(name.as_str(), "");
                }
            }
            Err(e) => labels.set_error(JSON_PARSER_ERR, &e),
        }
    }
}

/// The value at `path`, as label text; `None` when the path does not exist.
fn extract(line: &[u8], path: &JsonPath) -> Result<Option<String>, String> {
    let mut r = Reader::new(line);
    for seg in &path.0 {
        let found = match seg {
            Segment::Key(want) => {
                if r.next_value()? != Next::Object {
                    return Ok(None);
                }
                r.begin_object()?;
                let mut first = true;
                let mut found = false;
                while let Some(raw) = r.next_key(&mut first)? {
                    if unescape(raw).as_deref() == Some(want.as_str()) {
                        found = true;
                        break;
                    }
                    r.skip_value()?;
                }
                found
            }
            Segment::Index(want) => {
                if r.next_value()? != Next::Array {
                    return Ok(None);
                }
                r.begin_array()?;
                let mut first = true;
                let mut i = 0;
                let mut found = false;
                while r.next_element(&mut first)? {
                    if i == *want {
                        found = true;
                        break;
                    }
                    r.skip_value()?;
                    i += 1;
                }
                found
            }
        };
        if !found {
            return Ok(None);
        }
    }
    r.ws();
    let start = r.pos();
    Ok(Some(match r.next_value()? {
        Next::Scalar(s) => scalar_text(s),
        Next::Object | Next::Array => {
            r.skip_value()?;
            String::from_utf8_lossy(r.bytes_from(start)).into_owned()
        }
    }))
}

/// The `unpack` stage: a JSON object of strings (as written by Promtail's
/// `pack` stage) becomes labels, and its `_entry` key becomes the line.
#[derive(Debug, Clone, Default)]
pub struct UnpackParser;

impl UnpackParser {
    /// Returns the new line when the object had an `_entry`.
    pub(crate) fn process(&self, line: &[u8], labels: &mut Labels, stream: &Labels) -> Option<Vec<u8>> {
        if line.is_empty() {
            return None;
        }
        let mut found: Vec<(String, String)> = Vec::new();
        let mut entry = None;
        let mut r = Reader::new(line);
        let res = (|| -> Result<(), String> {
            r.begin_object()?;
            let mut first = true;
            while let Some(raw) = r.next_key(&mut first)? {
                let key = unescape(raw).unwrap_or_default();
                match r.next_value()? {
                    Next::Scalar(Scalar::Str(v)) => {
                        let v = unescape(v).unwrap_or_default();
                        if key == "_entry" {
                            entry = Some(v);
                        } else {
                            found.push((sanitize_label_name(&key, true), v));
                        }
                    }
                    Next::Scalar(_) => {}
                    Next::Object | Next::Array => r.skip_value()?,
                }
            }
            Ok(())
        })();
        // Like Loki, a line that fails to parse adds no labels at all.
        if let Err(e) = res {
            labels.set_error(JSON_PARSER_ERR, &e);
            return None;
        }
        for (k, v) in found {
            set_extracted(labels, stream, &k, v);
        }
        entry.map(String::into_bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flat(line: &str, stream: &[(&str, &str)]) -> Labels {
        let stream: Labels = stream.iter().copied().collect();
        let mut labels = stream.clone();
        JsonParser::flatten().process(line.as_bytes(), &mut labels, &stream);
        labels
    }

    #[test]
    fn flattens_nested_objects() {
        let l = flat(
            r#"{"level":"error","status":500,"latency":1.50,"ok":false,"req":{"method":"GET","headers":{"User-Agent":"curl"}},"tags":["a","b"],"n":null}"#,
            &[],
        );
        assert_eq!(
            l.to_string(),
            r#"{latency="1.50", level="error", ok="false", req_headers_User_Agent="curl", req_method="GET", status="500"}"#
        );
    }

    #[test]
    fn collisions_with_stream_labels_get_suffix() {
        let l = flat(r#"{"app":"x","level":"info"}"#, &[("app", "api")]);
        assert_eq!(l.get("app"), Some("api"));
        assert_eq!(l.get("app_extracted"), Some("x"));
    }

    #[test]
    fn keys_are_sanitized() {
        let l = flat(r#"{"1st key":"a","a.b":{"c-d":"e"}}"#, &[]);
        assert_eq!(l.to_string(), r#"{_1st_key="a", a_b_c_d="e"}"#);
    }

    #[test]
    fn invalid_json_sets_error_and_keeps_earlier_labels() {
        let l = flat(r#"{"a":"1", "b": }"#, &[]);
        assert_eq!(l.get("a"), Some("1"));
        assert_eq!(l.get("__error__"), Some("JSONParserErr"));
        assert!(l.get("__error_details__").is_some());
        assert_eq!(flat("not json", &[]).get("__error__"), Some("JSONParserErr"));
        assert_eq!(flat("", &[]).get("__error__"), Some("JSONParserErr"));
        assert_eq!(flat("[1,2]", &[]).get("__error__"), Some("JSONParserErr"));
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_crash() {
        let line = "{\"a\":".repeat(10_000) + "1" + &"}".repeat(10_000);
        assert_eq!(flat(&line, &[]).get("__error__"), Some("JSONParserErr"));
    }

    #[test]
    fn paths_parse() {
        assert_eq!(
            JsonPath::parse(r#"a.b[0]["c d"]"#).unwrap(),
            JsonPath(vec![
                Segment::Key("a".into()),
                Segment::Key("b".into()),
                Segment::Index(0),
                Segment::Key("c d".into())
            ])
        );
        assert!(JsonPath::parse("a..b").is_err());
        assert!(JsonPath::parse("a[x]").is_err());
        assert!(JsonPath::parse("a[0").is_err());
        assert!(JsonPath::parse("").is_err());
    }

    #[test]
    fn extraction_form() {
        let fields = vec![
            (
                "ua".to_string(),
                JsonPath::parse(r#"req.headers["User-Agent"]"#).unwrap(),
            ),
            ("first".to_string(), JsonPath::parse("servers[0]").unwrap()),
            ("req".to_string(), JsonPath::parse("req").unwrap()),
            ("missing".to_string(), JsonPath::parse("nope.x").unwrap()),
            ("n".to_string(), JsonPath::parse("n").unwrap()),
        ];
        let p = JsonParser::extract(fields);
        let mut labels = Labels::new();
        p.process(
            br#"{"n": 1e3, "servers":["a","b"],"req":{"headers":{"User-Agent":"curl\/8"}}}"#,
            &mut labels,
            &Labels::new(),
        );
        assert_eq!(labels.get("ua"), Some("curl/8"));
        assert_eq!(labels.get("first"), Some("a"));
        assert_eq!(labels.get("req"), Some(r#"{"headers":{"User-Agent":"curl\/8"}}"#));
        assert_eq!(labels.get("missing"), Some(""));
        assert_eq!(labels.get("n"), Some("1e3"));
        let mut labels = Labels::new();
        p.process(b"plain text", &mut labels, &Labels::new());
        assert_eq!(labels.get("__error__"), Some("JSONParserErr"));
    }

    #[test]
    fn unpack_sets_labels_and_entry() {
        let stream: Labels = [("app", "api")].into_iter().collect();
        let mut labels = stream.clone();
        let line = UnpackParser.process(
            br#"{"_entry":"the line","app":"x","pod":"p-1","n":3}"#,
            &mut labels,
            &stream,
        );
        assert_eq!(line.as_deref(), Some(&b"the line"[..]));
        assert_eq!(labels.to_string(), r#"{app="api", app_extracted="x", pod="p-1"}"#);
        let mut labels = Labels::new();
        assert_eq!(
            UnpackParser.process(b"{\"a\":\"1\",", &mut labels, &Labels::new()),
            None
        );
        assert_eq!(
            labels.to_string(),
            r#"{__error__="JSONParserErr", __error_details__="unexpected end of JSON input, expecting a string"}"#
        );
    }
}
