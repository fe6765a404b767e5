//! Whole pipelines, parsed from queries and run over realistic lines.

use std::borrow::Cow;

use super::*;
use crate::query::logql::ast::Expr;
use crate::query::logql::parser::parse;

fn pipeline(q: &str) -> Pipeline {
    match parse(q).unwrap_or_else(|e| panic!("{q}: {e}")) {
        Expr::Log(l) => l.pipeline,
        Expr::Metric(_) => panic!("{q} is a metric query"),
    }
}

fn stream() -> Labels {
    [("app", "api"), ("topic", "web")].into_iter().collect()
}

/// Runs `q` over `line` with the stream labels; `(line, labels)` or `None`.
fn run(q: &str, line: &str) -> Option<(String, String)> {
    let p = pipeline(q);
    let mut labels = stream();
    let out = p.process(line.as_bytes(), &mut labels)?;
    Some((String::from_utf8_lossy(&out).into_owned(), labels.to_string()))
}

const NGINX: &str =
    r#"10.0.0.7 - - [10/Oct/2023:13:55:36 +0000] "GET /api/v1/users?id=7 HTTP/1.1" 503 1234 "-" "curl/8.4""#;
const JSON: &str = r#"{"ts":"2024-05-01T10:00:00Z","level":"error","req":{"method":"POST","path":"/pay","headers":{"x-id":"abc"}},"status":502,"latency_ms":1250.5,"retry":true,"tags":["a"]}"#;
const LOGFMT: &str =
    r#"ts=2024-05-01T10:00:00Z level=warn msg="slow request \"pay\"" duration=1.5s size=20KiB status=499"#;

#[test]
fn nginx_with_pattern_and_numeric_filter() {
    let q = r#"{app="api"} |= "GET" | pattern `<ip> - - [<_>] "<method> <path> <_>" <status> <bytes> <_>` | status >= 500 | line_format "{{.method}} {{.path}} -> {{.status}}""#;
    let (line, labels) = run(q, NGINX).unwrap();
    assert_eq!(line, "GET /api/v1/users?id=7 -> 503");
    assert!(labels.contains(r#"ip="10.0.0.7""#), "{labels}");
    assert!(labels.contains(r#"bytes="1234""#), "{labels}");
    assert!(run(&q.replace(">= 500", "< 500"), NGINX).is_none());
}

#[test]
fn nested_json_with_filters_and_format() {
    let q = r#"{app="api"} | json | req_method="POST" and status >= 500 | latency_ms > 1000 | line_format "{{ .req_path }} {{ .level | ToUpper }} {{.req_headers_x_id}}""#;
    let (line, labels) = run(q, JSON).unwrap();
    assert_eq!(line, "/pay ERROR abc");
    assert!(labels.contains(r#"latency_ms="1250.5""#), "{labels}");
    assert!(labels.contains(r#"retry="true""#), "{labels}");
    assert!(!labels.contains("tags"), "arrays are skipped: {labels}");
    assert!(run(&q.replace("\"POST\"", "\"GET\""), JSON).is_none());
}

#[test]
fn json_extraction_form() {
    let q =
        r#"{app="api"} | json method="req.method", id="req.headers[\"x-id\"]", tag="tags[0]" | keep method, id, tag"#;
    let (_, labels) = run(q, JSON).unwrap();
    assert_eq!(labels, r#"{id="abc", method="POST", tag="a"}"#);
}

#[test]
fn logfmt_with_quotes_duration_and_bytes() {
    let q = r#"{app="api"} | logfmt | duration > 1s and size > 20KB | msg =~ "slow.*""#;
    let (line, labels) = run(q, LOGFMT).unwrap();
    assert_eq!(line, LOGFMT);
    assert!(labels.contains(r#"msg="slow request \"pay\"""#), "{labels}");
    assert!(run(&q.replace("> 1s", "> 2s"), LOGFMT).is_none());
    assert!(run(&q.replace("> 20KB", "> 20KiB"), LOGFMT).is_none());
}

#[test]
fn regexp_parser() {
    let q = r#"{app="api"} | regexp `(?P<ip>\S+) .* "(?P<method>\w+) (?P<path>[^ ]+)` | method = "GET""#;
    let (_, labels) = run(q, NGINX).unwrap();
    assert!(labels.contains(r#"path="/api/v1/users?id=7""#), "{labels}");
}

#[test]
fn parse_errors_mark_lines_and_can_be_filtered() {
    let (_, labels) = run(r#"{app="api"} | json"#, "plain text").unwrap();
    assert!(labels.contains(r#"__error__="JSONParserErr""#), "{labels}");
    assert!(run(r#"{app="api"} | json | __error__ = """#, "plain text").is_none());
    assert!(run(r#"{app="api"} | json | __error__ = """#, JSON).is_some());
    let (_, labels) = run(r#"{app="api"} | logfmt --strict"#, r#"a="open"#).unwrap();
    assert!(labels.contains(r#"__error__="LogfmtParserErr""#), "{labels}");
    let (_, labels) = run(r#"{app="api"} | logfmt | level > 5"#, "level=info").unwrap();
    assert!(labels.contains(r#"__error__="LabelFilterErr""#), "{labels}");
    let (_, labels) = run(r#"{app="api"} | json | drop __error__, __error_details__"#, "x").unwrap();
    assert_eq!(labels, stream().to_string());
}

#[test]
fn extracted_names_never_overwrite_stream_labels() {
    let (_, labels) = run(r#"{app="api"} | json"#, r#"{"app":"other","topic":"t"}"#).unwrap();
    assert_eq!(
        labels,
        r#"{app="api", app_extracted="other", topic="web", topic_extracted="t"}"#
    );
    // ...but label_format may, deliberately.
    let (_, labels) = run(r#"{app="api"} | label_format app="{{.topic}}-x""#, "").unwrap();
    assert!(labels.contains(r#"app="web-x""#), "{labels}");
}

#[test]
fn line_format_changes_what_later_filters_see() {
    let q = r#"{app="api"} | logfmt | line_format "{{.level}}" |= "warn""#;
    assert_eq!(run(q, LOGFMT).unwrap().0, "warn");
    assert!(run(&q.replace("|= \"warn\"", "|= \"slow\""), LOGFMT).is_none());
}

#[test]
fn label_format_drop_keep() {
    let q = r#"{app="api"} | logfmt | label_format lvl=level, summary="{{.status}}:{{.duration}}" | drop ts, msg | keep lvl, summary, app"#;
    let (_, labels) = run(q, LOGFMT).unwrap();
    assert_eq!(labels, r#"{app="api", lvl="warn", summary="499:1.5s"}"#);
}

#[test]
fn unpack_replaces_line() {
    let q = r#"{app="api"} | unpack | line_format "{{.pod}}: {{__line__}}""#;
    let (line, _) = run(q, r#"{"_entry":"hello","pod":"p-1"}"#).unwrap();
    assert_eq!(line, "p-1: hello");
}

#[test]
fn filters_work_on_invalid_utf8_and_parsers_read_lossily() {
    let p = pipeline(r#"{app="api"} |= "lvl=err" | logfmt"#);
    let mut labels = stream();
    let line = b"\xff\xfe lvl=err msg=\xc3(";
    let out = p.process(line, &mut labels).unwrap();
    assert_eq!(&*out, &line[..]);
    assert_eq!(labels.get("lvl"), Some("err"));
    assert_eq!(labels.get("msg"), Some(""));
}

#[test]
fn unchanged_lines_are_borrowed() {
    let p = pipeline(r#"{app="api"} |= "error" | json | status >= 500"#);
    let out = p.process(JSON.as_bytes(), &mut stream()).unwrap();
    assert!(matches!(out, Cow::Borrowed(_)));
    let p = pipeline(r#"{app="api"} | line_format "x""#);
    assert!(matches!(p.process(b"y", &mut stream()).unwrap(), Cow::Owned(_)));
}

#[test]
fn line_filters_only_and_required_literals() {
    let p = pipeline(r#"{app="api"} |= "a" |~ "b c" != "x" |~ "d.e" |= "a" |= "" |= "p" or "q""#);
    assert!(p.line_filters_only());
    assert_eq!(p.required_literals(), vec![b"a".to_vec(), b"b c".to_vec()]);
    let p = pipeline(r#"{app="api"} |= "a" | json |= "b" | line_format "{{.x}}" |= "c""#);
    assert!(!p.line_filters_only());
    assert_eq!(p.required_literals(), vec![b"a".to_vec(), b"b".to_vec()]);
    assert!(pipeline(r#"{app="api"}"#).line_filters_only());
    assert!(pipeline(r#"{app="api"} |~ "(?i)a""#).required_literals().is_empty());
}

#[test]
fn labels_untouched_by_filter_only_pipelines() {
    let p = pipeline(r#"{app="api"} |= "x""#);
    let before = stream();
    let mut labels = before.clone();
    assert!(p.process(b"x", &mut labels).is_some());
    assert_eq!(labels, before);
}

#[test]
fn decolorize_then_filter() {
    let (line, _) = run(r#"{app="api"} | decolorize |= "red text""#, "\x1b[31mred\x1b[0m text").unwrap();
    assert_eq!(line, "red text");
}

#[test]
fn leading_line_filters_and_the_stages_after_them() {
    let p = pipeline(r#"{app="api"} |= "error" != "debug" |~ "code=\\d+" | logfmt | code >= 500 |= "timeout""#);
    // The three filters before the parser, not the one after it.
    assert_eq!(p.leading_line_filters().count(), 3);
    for line in [
        "level=error code=503 msg=timeout",
        "level=error code=404 msg=timeout",
        "level=error code=503 msg=fine",
        "level=error code=x msg=timeout",
        "level=debug code=503 msg=timeout error",
        "nothing",
    ] {
        let passes_leading = p.leading_line_filters().all(|f| f.matches(line.as_bytes()));
        let mut full = stream();
        let expected = p.process(line.as_bytes(), &mut full);
        if passes_leading {
            let mut rest = stream();
            let got = p.process_after_leading_filters(line.as_bytes(), &mut rest);
            assert_eq!((got, rest), (expected.clone(), full.clone()), "{line}");
            let mut entry = stream();
            assert_eq!(p.process_entry(line.as_bytes(), &mut entry, true), expected, "{line}");
        } else {
            assert_eq!(expected, None, "{line}");
        }
        let mut entry = stream();
        assert_eq!(p.process_entry(line.as_bytes(), &mut entry, false), expected, "{line}");
    }
    // A filter after line_format sees the new line: not leading.
    let p = pipeline(r#"{app="api"} | line_format "x" |= "x""#);
    assert_eq!(p.leading_line_filters().count(), 0);
    assert!(p.process_after_leading_filters(b"y", &mut stream()).is_some());
}

/// Issue 28: thirty `line_format`s that each double the line asked for
/// 16 GiB. Under a line budget, the stage that would pass it keeps the
/// line as it was and marks it `TemplateFormatErr`; no stage ever makes
/// more than the budget.
#[test]
fn issue_28_templates_stay_within_the_line_budget() {
    let limits = crate::query::logql::Limits {
        max_line_bytes: 1 << 16,
        ..crate::query::logql::Limits::default()
    };
    let q = format!(
        "{{app=\"api\"}}{}",
        r#" | line_format "{{__line__}}{{__line__}}""#.repeat(30)
    );
    let Ok(Expr::Log(l)) = crate::query::logql::parse_with(&q, &limits) else {
        panic!("{q}")
    };
    let mut labels = stream();
    let out = l.pipeline.process(b"0123456789abcdef", &mut labels).unwrap();
    assert_eq!(out.len(), 1 << 16, "doubled up to the budget, not past it");
    assert_eq!(labels.get("__error__"), Some("TemplateFormatErr"));
    let details = labels.get("__error_details__").unwrap();
    assert!(
        details.contains("exceeds 65536 bytes (query.max_line_bytes)"),
        "{details}"
    );

    // label_format cannot pile labels up past the budget either.
    let q = format!(
        "{{app=\"api\"}} | label_format a=\"{{{{__line__}}}}\"{}",
        (0..20)
            .map(|i| format!(r#" | label_format b{i}="{{{{.a}}}}{{{{.a}}}}""#))
            .collect::<String>()
    );
    let Ok(Expr::Log(l)) = crate::query::logql::parse_with(&q, &limits) else {
        panic!("{q}")
    };
    let mut labels = stream();
    let line = "x".repeat(10_000);
    l.pipeline.process(line.as_bytes(), &mut labels).unwrap();
    let total: usize = labels.iter().map(|(k, v)| k.len() + v.len()).sum();
    assert!(total <= (1 << 16) + 200, "labels hold {total} bytes");
    assert_eq!(labels.get("__error__"), Some("TemplateFormatErr"));

    // Replace that would grow the text past the budget is refused before it runs.
    let q = r#"{app="api"} | line_format "{{ Replace __line__ \"a\" \"aaaaaaaaaaaaaaaa\" -1 }}""#;
    let Ok(Expr::Log(l)) = crate::query::logql::parse_with(q, &limits) else {
        panic!("{q}")
    };
    let mut labels = stream();
    let long = "a".repeat(10_000);
    let out = l.pipeline.process(long.as_bytes(), &mut labels).unwrap();
    assert_eq!(out.len(), 10_000, "unchanged");
    assert_eq!(labels.get("__error__"), Some("TemplateFormatErr"));
    // Within the budget, templates work as before.
    assert_eq!(
        run(r#"{app="api"} | line_format "{{__line__}}!""#, "hi").unwrap().0,
        "hi!"
    );
}

/// Issue 28: a query's regexes are compiled within a program size and a
/// count, named in the error.
#[test]
fn issue_28_regex_budgets() {
    let limits = crate::query::logql::Limits::default();
    let heavy = r#"{app="api"} |~ "\\w{200}""#;
    let err = crate::query::logql::parse_with(heavy, &limits).unwrap_err().to_string();
    assert!(err.contains("query.max_regex_bytes"), "{err}");
    let many = format!("{{app=\"api\"}}{}", r#" |~ "l.ne""#.repeat(33));
    let err = crate::query::logql::parse_with(&many, &limits).unwrap_err().to_string();
    assert!(err.contains("more than 32 regexes (query.max_regexes)"), "{err}");
    let fine = format!("{{app=\"api\"}}{}", r#" |~ "l.ne""#.repeat(32));
    assert!(crate::query::logql::parse_with(&fine, &limits).is_ok());
    // Plain literals are substring searches, not regexes: not counted.
    let literals = format!("{{app=\"api\"}}{}", r#" |~ "line""#.repeat(100));
    assert!(crate::query::logql::parse_with(&literals, &limits).is_ok());
}
