//! LogQL: the lexer alone, the parser with a print-back check, and a
//! parsed query evaluated over a small fixed store.
//!
//! "Printed back": a query's tokens written again with other whitespace
//! (single spaces, newlines, `#` comments) between them, wherever the
//! lexer says tokens meet, must parse to the same tree. Spaces are not
//! added between two characters that may both belong to a bare topic name
//! (`web.access-log`), since the parser reads those from the raw text.

use std::ops::ControlFlow;
use std::sync::OnceLock;

use logpost_collector::query::logql::{
    Direction, Entry, EntrySource, EvalError, EvalOptions, Expr, Labels, LogExpr, Value, eval_instant_with, eval_logs,
    eval_range_with, parse, token_spans,
};

/// The lexer on its own: spans non-empty, in order, on character
/// boundaries, and only whitespace or comments between them.
pub fn lex(data: &[u8]) {
    let Ok(src) = std::str::from_utf8(data) else { return };
    let Ok(spans) = token_spans(src) else { return };
    let mut end = 0;
    for span in &spans {
        assert!(span.start < span.end, "empty token at byte {}", span.start);
        assert!(span.start >= end, "token at {} overlaps the one before", span.start);
        assert!(
            src.get(span.clone()).is_some(),
            "token {span:?} is not on character boundaries"
        );
        let gap = src.get(end..span.start).unwrap_or_default();
        assert!(
            is_trivia(gap),
            "{gap:?} between tokens is neither whitespace nor a comment"
        );
        end = span.end;
    }
    assert!(
        is_trivia(src.get(end..).unwrap_or_default()),
        "text after the last token"
    );
}

/// Whitespace and `#` comments (to the end of a line) only.
fn is_trivia(text: &str) -> bool {
    let mut in_comment = false;
    text.chars().all(|c| {
        if in_comment {
            in_comment = c != '\n';
            true
        } else if c == '#' {
            in_comment = true;
            true
        } else {
            c.is_whitespace()
        }
    })
}

/// Parses; a query that parses, printed back with other whitespace,
/// parses to the same tree.
pub fn parse_and_print(data: &[u8]) {
    let Some((&style, text)) = data.split_first() else {
        return;
    };
    let Ok(src) = std::str::from_utf8(text) else { return };
    let parsed = parse(src);
    if let Err(e) = &parsed {
        assert!(
            e.pos <= src.len(),
            "error position {} past the query's end {}",
            e.pos,
            src.len()
        );
        return;
    }
    let Some(again) = respaced(src, style) else { return };
    let first = format!("{parsed:?}");
    match parse(&again) {
        Ok(tree) => assert_eq!(
            first,
            format!("{:?}", Ok::<_, ()>(tree)),
            "{src:?} and {again:?} parse differently"
        ),
        Err(e) => panic!("{src:?} parses but {again:?} does not: {e}"),
    }
}

/// `src` with the trivia between tokens replaced by `style`'s separator.
fn respaced(src: &str, style: u8) -> Option<String> {
    let spans = token_spans(src).ok()?;
    let sep = match style % 4 {
        0 => " ",
        1 => "\n",
        2 => " # a comment\n",
        _ => "\t ",
    };
    let mut out = String::with_capacity(src.len() * 2);
    let mut prev_end: Option<usize> = None;
    for span in spans {
        let token = src.get(span.clone())?;
        if let Some(end) = prev_end {
            let before = src.get(..end)?.chars().next_back();
            let after = token.chars().next();
            if before.is_some_and(is_topic_char) && after.is_some_and(is_topic_char) {
                out.push_str(src.get(end..span.start)?);
            } else {
                out.push_str(sep);
            }
        }
        out.push_str(token);
        prev_end = Some(span.end);
    }
    Some(out)
}

/// Characters of a bare topic name (the lexer's `is_topic_char`).
fn is_topic_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')
}

/// Nanoseconds in a second.
const S: i64 = 1_000_000_000;
/// The store's first entry: 2023-11-14T22:13:20Z.
const T0: i64 = 1_700_000_000 * S;

struct OwnedEntry {
    timestamp_ns: i64,
    labels: Labels,
    metadata: Option<Labels>,
    line: Vec<u8>,
}

/// The fixed store: lines in the formats queries parse (logfmt, JSON,
/// Apache, plain), over three streams and two minutes.
fn store() -> &'static [OwnedEntry] {
    static STORE: OnceLock<Vec<OwnedEntry>> = OnceLock::new();
    STORE.get_or_init(|| {
        let lines: [&str; 8] = [
            r#"level=info msg="request done" status=200 duration=12ms bytes=512 path=/api/users"#,
            r#"level=error msg="upstream timeout" status=503 duration=1.5s bytes=0 path=/api/orders"#,
            r#"{"level":"warn","status":404,"msg":"not found","latency_ms":3.5,"user":{"id":7,"name":"ann"}}"#,
            r#"{"level":"info","status":200,"msg":"ok","latency_ms":0.25,"tags":["a","b"]}"#,
            r#"10.0.0.1 - - [14/Nov/2023:22:13:20 +0000] "GET /index.html HTTP/1.1" 200 1043"#,
            r#"192.168.1.20 - bob [14/Nov/2023:22:13:21 +0000] "POST /login HTTP/1.1" 401 17"#,
            "java.lang.IllegalStateException: boom\n\tat Foo.bar(Foo.java:12)",
            "\x1b[31mERROR\x1b[0m disk /dev/sda1 at 97% ::1 2001:db8::7",
        ];
        let streams: [&[(&str, &str)]; 3] = [
            &[("topic", "app"), ("app", "web"), ("env", "prod")],
            &[("topic", "app"), ("app", "api"), ("env", "dev")],
            &[("topic", "corpus"), ("source", "apache"), ("host", "web-03")],
        ];
        let mut out = Vec::new();
        for i in 0..48usize {
            let labels: Labels = streams[i % 3].iter().copied().collect();
            let metadata = (i % 5 == 0).then(|| [("trace_id", "abc123"), ("env", "meta")].into_iter().collect());
            out.push(OwnedEntry {
                timestamp_ns: T0 + i64::try_from(i).unwrap_or(0) * 2 * S + i64::try_from(i % 7).unwrap_or(0),
                labels,
                metadata,
                line: lines[i % lines.len()].as_bytes().to_vec(),
            });
        }
        out
    })
}

struct Store;

impl EntrySource for Store {
    fn scan(
        &mut self,
        log: &LogExpr,
        start_ns: i64,
        end_ns: i64,
        f: &mut dyn FnMut(Entry<'_>) -> ControlFlow<()>,
    ) -> Result<(), EvalError> {
        for e in store() {
            if e.timestamp_ns < start_ns || e.timestamp_ns >= end_ns || !log.selector.matches(&e.labels) {
                continue;
            }
            let entry = Entry {
                timestamp_ns: e.timestamp_ns,
                labels: e.labels.clone(),
                metadata: e.metadata.clone(),
                line: &e.line,
                leading_filters_passed: false,
            };
            if f(entry).is_break() {
                break;
            }
        }
        Ok(())
    }
}

/// Parses the query after a few bytes of parameters (window, step,
/// limit, direction) and evaluates it over the fixed store. Checks that
/// log results respect the limit, the window and the direction, and
/// that metric results lie on the step grid, each series in time order.
pub fn eval(data: &[u8]) {
    let Some((params, text)) = data.split_at_checked(4) else {
        return;
    };
    let Ok(src) = std::str::from_utf8(text) else { return };
    let Ok(expr) = parse(src) else { return };
    let [a, b, c, d] = [params[0], params[1], params[2], params[3]].map(i64::from);
    let start = T0 - 10 * S + a * S;
    let end = start + (b + 1) * S;
    let step = (c % 30 + 1) * S;
    let limit = usize::try_from(d % 64 + 1).unwrap_or(1);
    let opts = EvalOptions {
        max_series: 1000,
        max_steps: 300,
        ..EvalOptions::default()
    };
    match expr {
        Expr::Log(log) => {
            let direction = if d & 0x80 == 0 {
                Direction::Backward
            } else {
                Direction::Forward
            };
            let Ok(streams) = eval_logs(&log, start, end, limit, direction, &mut Store) else {
                return;
            };
            let total: usize = streams.iter().map(|s| s.entries.len()).sum();
            assert!(total <= limit, "{total} entries for a limit of {limit}");
            for s in &streams {
                for e in &s.entries {
                    assert!((start..end).contains(&e.timestamp_ns), "entry outside [start, end)");
                }
                let ordered = s.entries.windows(2).all(|w| match direction {
                    Direction::Backward => w[0].timestamp_ns >= w[1].timestamp_ns,
                    Direction::Forward => w[0].timestamp_ns <= w[1].timestamp_ns,
                });
                assert!(ordered, "entries of a stream out of {direction:?} order");
            }
        }
        Expr::Metric(metric) => {
            if let Ok(matrix) = eval_range_with(&metric, start, end, step, &mut Store, &opts) {
                for series in &matrix {
                    let mut last = None;
                    for &(t, _) in &series.points {
                        assert!(t >= start && t <= end, "point at {t} outside [{start}, {end}]");
                        assert_eq!((t - start) % step, 0, "point at {t} off the step grid");
                        assert!(last.is_none_or(|l| l < t), "points out of order or repeated");
                        last = Some(t);
                    }
                }
            }
            if let Ok(Value::Matrix(m)) = eval_instant_with(&metric, end, &mut Store, &opts) {
                assert!(m.len() <= opts.max_series, "more series than allowed");
            }
        }
    }
}
