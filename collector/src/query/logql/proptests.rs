//! Property tests: nothing a user or a log line can send makes the crate
//! panic, and parse errors always point inside the query.

use proptest::prelude::*;

use crate::query::logql::{Expr, Labels, parse};

/// Fragments that make random input look like LogQL, so the generator
/// reaches deep into the grammar instead of failing on the first byte.
const FRAGMENTS: &[&str] = &[
    "{",
    "}",
    "(",
    ")",
    "[5m]",
    "[1h30m]",
    "[",
    "]",
    ",",
    "=",
    "!=",
    "=~",
    "!~",
    "==",
    ">",
    ">=",
    "<",
    "<=",
    "|",
    "|=",
    "|~",
    "|>",
    "!>",
    "+",
    "-",
    "*",
    "/",
    "%",
    "^",
    "app",
    "topic",
    "corpus",
    "\"x\"",
    "\"a|b\"",
    "\"(\"",
    "`raw`",
    "\"",
    "`",
    "5",
    "1.5",
    "-2",
    "10s",
    "250ms",
    "20KB",
    "json",
    "logfmt",
    "--strict",
    "regexp",
    "\"(?P<a>.)\"",
    "pattern",
    "\"<a> <_>\"",
    "unpack",
    "line_format",
    "\"{{.a}}\"",
    "\"{{ .a | ToUpper }}\"",
    "label_format",
    "drop",
    "keep",
    "unwrap",
    "duration",
    "bytes",
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "bool",
    "and",
    "or",
    "unless",
    "offset",
    "sum",
    "count",
    "topk",
    "rate",
    "count_over_time",
    "sum_over_time",
    "quantile_over_time",
    "vector",
    "label_replace",
    "__error__",
    " ",
    "\n",
    "#",
    "é",
    "\\",
];

fn queryish() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(FRAGMENTS), 0..40).prop_map(|v| v.join(""))
}

fn check_parse(q: &str) {
    if let Err(e) = parse(q) {
        assert!(e.pos <= q.len(), "{q:?}: pos {} beyond end", e.pos);
        assert!(e.line >= 1 && e.col >= 1);
        assert!(!e.message.is_empty());
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn parse_never_panics_on_arbitrary_strings(q in any::<String>()) {
        check_parse(&q);
    }

    #[test]
    fn parse_never_panics_on_queryish_strings(q in queryish()) {
        check_parse(&q);
    }

    #[test]
    fn pipelines_never_panic_on_arbitrary_lines(line in prop::collection::vec(any::<u8>(), 0..200)) {
        let q = r#"{app="a"} |~ "." | json | logfmt --strict | regexp "(?P<r>\\w+)" | pattern "<p> <_>" | unpack | status > 3 or size < 2KB | duration >= 1s | line_format "{{.r | upper}}{{ __line__ }}" | label_format x=p | drop r | decolorize"#;
        let Ok(Expr::Log(l)) = parse(q) else { panic!("query must parse") };
        let mut labels: Labels = [("app", "a")].into_iter().collect();
        let _ = l.pipeline.process(&line, &mut labels);
    }

    #[test]
    fn json_like_lines_never_panic(line in "[{}\\[\\]\":,a-z0-9 .\\\\-]{0,80}") {
        let Ok(Expr::Log(l)) = parse(r#"{app="a"} | json | json x="a.b[0]" | unpack"#) else { panic!() };
        let mut labels = Labels::new();
        let _ = l.pipeline.process(line.as_bytes(), &mut labels);
    }

    #[test]
    fn unit_parsers_never_panic(s in "[0-9.,a-zA-Zµ+ -]{0,20}") {
        let _ = crate::query::logql::parse_bytes(&s);
        let _ = crate::query::logql::parse_go_duration(&s);
        let _ = crate::query::logql::parse_prometheus_duration(&s);
    }

    #[test]
    fn templates_never_panic(t in "[{}.a-z|\" -]{0,30}") {
        if let Ok(t) = crate::query::logql::Template::parse(&t) {
            let labels: Labels = [("a", "x")].into_iter().collect();
            let _ = t.render(&labels, b"line");
        }
    }
}
