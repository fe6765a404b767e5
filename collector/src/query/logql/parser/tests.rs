//! Every syntax form the parser accepts, and where it reports errors.

use super::*;
use crate::query::logql::ast::{Conversion, Grouping};
use crate::query::logql::labels::Labels;
use crate::query::logql::pipeline::{LabelFilter, LineFilterOp, Stage};
use crate::query::logql::selector::MatchOp;

fn log(q: &str) -> LogExpr {
    match parse(q).unwrap_or_else(|e| panic!("{q}: {e}")) {
        Expr::Log(l) => l,
        Expr::Metric(m) => panic!("{q}: expected a log query, got {m:?}"),
    }
}

fn metric(q: &str) -> MetricExpr {
    match parse(q).unwrap_or_else(|e| panic!("{q}: {e}")) {
        Expr::Metric(m) => m,
        Expr::Log(l) => panic!("{q}: expected a metric query, got {l:?}"),
    }
}

fn err(q: &str) -> ParseError {
    match parse(q) {
        Ok(e) => panic!("{q} should not parse, got {e:?}"),
        Err(e) => e,
    }
}

fn stage_kinds(q: &str) -> Vec<&'static str> {
    log(q)
        .pipeline
        .stages()
        .iter()
        .map(|s| match s {
            Stage::LineFilter(_) => "line_filter",
            Stage::Json(_) => "json",
            Stage::Logfmt(_) => "logfmt",
            Stage::Regexp(_) => "regexp",
            Stage::Pattern(_) => "pattern",
            Stage::Unpack(_) => "unpack",
            Stage::LabelFilter(_) => "label_filter",
            Stage::LineFormat(_) => "line_format",
            Stage::LabelFormat(_) => "label_format",
            Stage::Drop(_) => "drop",
            Stage::Keep(_) => "keep",
            Stage::Decolorize(_) => "decolorize",
        })
        .collect()
}

/// Whether the single label filter of `q` passes `pairs`.
fn filter_passes(q: &str, pairs: &[(&str, &str)]) -> bool {
    let l = log(q);
    let [Stage::LabelFilter(f)] = l.pipeline.stages() else {
        panic!("{q}: expected one label filter");
    };
    let mut labels: Labels = pairs.iter().copied().collect();
    f.process(&mut labels)
}

// ----- selectors ----------------------------------------------------------

#[test]
fn selector_operators_and_strings() {
    let l = log(r#"{a="1", b!="2", c=~"x.*", d!~`y\d`, e="q\"t\\"}"#);
    let got: Vec<(&str, MatchOp, &str)> = l
        .selector
        .matchers
        .iter()
        .map(|m| (m.name.as_str(), m.op, m.value.as_str()))
        .collect();
    assert_eq!(
        got,
        vec![
            ("a", MatchOp::Eq, "1"),
            ("b", MatchOp::Neq, "2"),
            ("c", MatchOp::Re, "x.*"),
            ("d", MatchOp::Nre, r"y\d"),
            ("e", MatchOp::Eq, "q\"t\\"),
        ]
    );
    assert!(l.pipeline.is_empty());
}

#[test]
fn selector_regexes_are_anchored() {
    let l = log(r#"{app=~"api|web"}"#);
    let m = &l.selector.matchers[0];
    assert!(m.matches(Some("web")));
    assert!(!m.matches(Some("web2")));
}

#[test]
fn empty_compatible_selectors_are_refused() {
    for q in [r#"{a=~".*"}"#, r#"{a=""}"#, "{}", r#"{a!="x"}"#, r#"{a=~".*", b!~"y"}"#] {
        let e = err(q);
        assert!(
            e.message
                .starts_with("queries require at least one regexp or equality matcher"),
            "{q}: {e}"
        );
        assert_eq!((e.line, e.col), (1, 1), "{q}");
    }
    let e = err(r#"sum(count_over_time({a=~".*"}[1m]))"#);
    assert_eq!(e.col, 21);
}

#[test]
fn topic_matchers_are_exempt() {
    for q in [
        r#"{topic=~".*"}"#,
        r#"{topic!="x"}"#,
        r#"{topic=""}"#,
        r#"{topic=~".*", a=""}"#,
    ] {
        log(q);
    }
}

#[test]
fn bare_topic_names() {
    let topic = |q: &str| {
        let l = log(q);
        let m = &l.selector.matchers[0];
        assert_eq!(
            (l.selector.matchers.len(), m.name.as_str(), m.op),
            (1, "topic", MatchOp::Eq)
        );
        m.value.clone()
    };
    assert_eq!(topic("corpus"), "corpus");
    assert_eq!(topic(r#"corpus |= "x""#), "corpus");
    assert_eq!(topic("web.access-log_2 | json"), "web.access-log_2");
    assert_eq!(topic(r#"2024-logs |= "x""#), "2024-logs");
    assert_eq!(topic("_private"), "_private");
    // Keywords are only keywords where they are used as such.
    assert_eq!(topic(r#"sum |= "x""#), "sum");
    assert_eq!(topic("json | json"), "json");
    assert_eq!(stage_kinds(r#"corpus |= "x" | logfmt"#), ["line_filter", "logfmt"]);
    let m = metric(r#"sum(rate(my-topic |= "x" [1m]))"#);
    let MetricExpr::Vector(v) = m else { panic!() };
    let MetricExpr::Range(r) = *v.inner else { panic!() };
    assert_eq!(r.range.log.selector.matchers[0].value, "my-topic");
    assert!(matches!(metric("count_over_time(corpus[5m])"), MetricExpr::Range(_)));
    // Numbers stay numbers.
    assert!(matches!(metric("5 - 3"), MetricExpr::Binary(_)));
}

// ----- line filters and parsers ---------------------------------------------

#[test]
fn line_filters_all_operators_chained() {
    let l = log(r#"{a="b"} |= "x" != "y" |~ "(?i)z+" !~ `w\d` |> "<_> foo <_>" !> "<_> bar""#);
    let ops: Vec<LineFilterOp> = l
        .pipeline
        .stages()
        .iter()
        .map(|s| match s {
            Stage::LineFilter(f) => f.op(),
            other => panic!("{other:?}"),
        })
        .collect();
    use LineFilterOp::*;
    assert_eq!(ops, vec![Contains, NotContains, Regex, NotRegex, Pattern, NotPattern]);
    let p = &l.pipeline;
    assert!(p.process(b"1 foo x ZZ", &mut Labels::new()).is_some());
    assert!(p.process(b"1 foo x y ZZ", &mut Labels::new()).is_none());
    assert!(p.process(b"1 foo x ZZ w1", &mut Labels::new()).is_none());
}

#[test]
fn line_filter_or() {
    let l = log(r#"{a="b"} |= "error" or "warn" or `fatal`"#);
    assert_eq!(l.pipeline.stages().len(), 1);
    for (line, pass) in [("an error", true), ("warn!", true), ("fatal", true), ("info", false)] {
        assert_eq!(
            l.pipeline.process(line.as_bytes(), &mut Labels::new()).is_some(),
            pass,
            "{line}"
        );
    }
}

#[test]
fn parser_stages() {
    assert_eq!(
        stage_kinds(
            r#"{a="b"} | json | logfmt | logfmt --strict --keep-empty | regexp "(?P<x>\\d+)" | pattern "<a> <_>" | unpack"#
        ),
        ["json", "logfmt", "logfmt", "regexp", "pattern", "unpack"]
    );
    assert_eq!(
        stage_kinds(r#"{a="b"} | json first="servers[0]", ua="request.headers[\"User-Agent\"]", level"#),
        ["json"]
    );
    assert_eq!(stage_kinds(r#"{a="b"} | logfmt --strict lvl="level", msg"#), ["logfmt"]);
    assert_eq!(stage_kinds(r#"{a="b"} | JSON | LOGFMT"#), ["json", "logfmt"]);
}

#[test]
fn format_stages() {
    assert_eq!(
        stage_kinds(
            r#"{a="b"} | line_format "{{.a}} {{ .b | ToUpper }}" | label_format x=y, z="{{.a}}" | drop a, b="x" | keep c | decolorize"#
        ),
        ["line_format", "label_format", "drop", "keep", "decolorize"]
    );
}

// ----- label filters ------------------------------------------------------------

#[test]
fn label_filter_types() {
    let q = |f: &str| format!(r#"{{a="b"}} | {f}"#);
    assert!(filter_passes(&q("status >= 400"), &[("status", "503")]));
    assert!(!filter_passes(&q("status < 400"), &[("status", "503")]));
    assert!(filter_passes(&q("status = 503"), &[("status", "503")]));
    assert!(filter_passes(&q("status == 503"), &[("status", "503.0")]));
    assert!(filter_passes(&q("status != 200"), &[("status", "503")]));
    assert!(filter_passes(&q("temp > -5"), &[("temp", "-1")]));
    assert!(filter_passes(&q("ratio <= 0.5"), &[("ratio", "0.25")]));
    assert!(filter_passes(&q(r#"level = "error""#), &[("level", "error")]));
    assert!(filter_passes(&q(r#"level == "error""#), &[("level", "error")]));
    assert!(filter_passes(&q(r#"level =~ "err.*""#), &[("level", "error")]));
    assert!(!filter_passes(&q(r#"level =~ "err""#), &[("level", "error")]));
    assert!(filter_passes(&q(r#"level !~ "info|debug""#), &[("level", "error")]));
    assert!(filter_passes(&q("duration > 10s"), &[("duration", "1m")]));
    assert!(filter_passes(&q("duration >= 250ms"), &[("duration", "0.25s")]));
    assert!(filter_passes(&q("latency < 1.5s"), &[("latency", "1s")]));
    assert!(filter_passes(&q("size > 20KB"), &[("size", "20KiB")]));
    assert!(!filter_passes(&q("size > 20KiB"), &[("size", "20KiB")]));
    assert!(filter_passes(&q(r#"__error__ = """#), &[]));
}

#[test]
fn label_filter_precedence() {
    // Loki evaluates left to right: (x or y) and z.
    let q = r#"{a="b"} | x="1" or y="1" and z="1""#;
    assert!(!filter_passes(q, &[("x", "1")]));
    assert!(filter_passes(q, &[("x", "1"), ("z", "1")]));
    assert!(filter_passes(q, &[("y", "1"), ("z", "1")]));
    assert!(!filter_passes(q, &[("z", "1")]));
    let q = r#"{a="b"} | x="1" or (y="1" and z="1")"#;
    assert!(filter_passes(q, &[("x", "1")]));
    assert!(!filter_passes(q, &[("y", "1")]));
    assert!(filter_passes(q, &[("y", "1"), ("z", "1")]));
    // Loki's documented equivalences.
    let a = r#"{a="b"} | d >= 20ms or s == 20KB and m!~"2..""#;
    let b = r#"{a="b"} | d >= 20ms or s == 20KB | m!~"2..""#;
    for labels in [
        vec![("d", "30ms"), ("s", "1KB"), ("m", "200")],
        vec![("d", "30ms"), ("s", "1KB"), ("m", "500")],
        vec![("d", "1ms"), ("s", "20KB"), ("m", "500")],
    ] {
        let one = filter_passes(a, &labels);
        let l = log(b);
        let mut ls: Labels = labels.iter().copied().collect();
        assert_eq!(one, l.pipeline.process(b"", &mut ls).is_some(), "{labels:?}");
    }
    // `,` and juxtaposition mean `and`.
    for q in [
        r#"{a="b"} | x="1", y="1""#,
        r#"{a="b"} | x="1" y="1""#,
        r#"{a="b"} | x="1" AND y="1""#,
    ] {
        assert!(filter_passes(q, &[("x", "1"), ("y", "1")]), "{q}");
        assert!(!filter_passes(q, &[("x", "1")]), "{q}");
    }
    let l = log(r#"{a="b"} | x="1" or y > 2 | z="3""#);
    assert!(matches!(
        &l.pipeline.stages()[0],
        Stage::LabelFilter(LabelFilter::Or(_, _))
    ));
    assert_eq!(l.pipeline.stages().len(), 2);
    assert_eq!(stage_kinds(r#"{a="b"} | json = "x""#), ["label_filter"]);
}

// ----- metric queries -----------------------------------------------------------

#[test]
fn range_aggregations_and_ranges() {
    for (q, range_s) in [
        (r#"count_over_time({a="b"}[5m])"#, 300),
        (r#"rate({a="b"} |= "x" [1h30m])"#, 5400),
        (r#"bytes_over_time({a="b"}[30s])"#, 30),
        (r#"bytes_rate({a="b"} | json [1d])"#, 86_400),
        (r#"absent_over_time({a="b"}[1m])"#, 60),
    ] {
        let MetricExpr::Range(r) = metric(q) else { panic!("{q}") };
        assert_eq!(r.range.range_ns, range_s * 1_000_000_000, "{q}");
    }
    let MetricExpr::Range(r) = metric(r#"count_over_time({a="b"}[250ms])"#) else {
        panic!()
    };
    assert_eq!(r.range.range_ns, 250_000_000);
}

#[test]
fn log_range_forms() {
    for q in [
        r#"count_over_time({a="b"} | json [5m])"#,
        r#"count_over_time({a="b"}[5m] | json)"#,
        r#"count_over_time(({a="b"} | json)[5m])"#,
        r#"count_over_time(({a="b"} | json [5m]))"#,
        r#"count_over_time({a="b"} | json [5m] offset 1h)"#,
        r#"sum_over_time({a="b"} | json | unwrap x [5m])"#,
        r#"sum_over_time({a="b"}[5m] | json | unwrap x)"#,
        r#"sum_over_time(({a="b"} | json | unwrap x)[5m])"#,
    ] {
        let MetricExpr::Range(r) = metric(q) else { panic!("{q}") };
        assert_eq!(r.range.range_ns, 300_000_000_000, "{q}");
        assert_eq!(r.range.log.pipeline.stages().len(), 1, "{q}");
    }
    let MetricExpr::Range(r) = metric(r#"count_over_time({a="b"}[5m] offset -30s)"#) else {
        panic!()
    };
    assert_eq!(r.range.offset_ns, -30_000_000_000);
}

#[test]
fn unwrap_forms() {
    let unwrap = |q: &str| match metric(q) {
        MetricExpr::Range(r) => r.range.unwrap.unwrap_or_else(|| panic!("{q}: no unwrap")),
        other => panic!("{q}: {other:?}"),
    };
    let u = unwrap(r#"sum_over_time({a="b"} | logfmt | unwrap latency_ms [1m])"#);
    assert_eq!((u.label.as_str(), u.conversion), ("latency_ms", Conversion::Float));
    let u = unwrap(r#"avg_over_time({a="b"} | logfmt | unwrap duration(took) [1m])"#);
    assert_eq!((u.label.as_str(), u.conversion), ("took", Conversion::Duration));
    let u = unwrap(r#"max_over_time({a="b"} | logfmt | unwrap duration_seconds(took) [1m])"#);
    assert_eq!(u.conversion, Conversion::Duration);
    let u = unwrap(r#"min_over_time({a="b"} | logfmt | unwrap bytes(size) | __error__="" [1m])"#);
    assert_eq!(
        (u.label.as_str(), u.conversion, u.post_filters.len()),
        ("size", Conversion::Bytes, 1)
    );
    let MetricExpr::Range(r) = metric(r#"quantile_over_time(0.99, {a="b"} | logfmt | unwrap x [1m]) by (path)"#) else {
        panic!()
    };
    assert_eq!((r.op, r.param), (RangeOp::Quantile, Some(0.99)));
    assert_eq!(r.grouping.map(|g| g.labels), Some(vec!["path".to_string()]));
    for f in [
        "stddev_over_time",
        "stdvar_over_time",
        "first_over_time",
        "last_over_time",
        "rate",
    ] {
        metric(&format!(r#"{f}({{a="b"}} | logfmt | unwrap x [1m])"#));
    }
}

#[test]
fn range_aggregation_validation() {
    let msg = |q: &str| err(q).message;
    assert_eq!(
        msg(r#"sum_over_time({a="b"}[1m])"#),
        "invalid aggregation sum_over_time without unwrap"
    );
    assert_eq!(
        msg(r#"count_over_time({a="b"} | unwrap x [1m])"#),
        "invalid aggregation count_over_time with unwrap"
    );
    assert_eq!(
        msg(r#"quantile_over_time({a="b"} | unwrap x [1m])"#),
        "parameter required for operation quantile_over_time"
    );
    assert_eq!(
        msg(r#"rate(0.5, {a="b"}[1m])"#),
        "parameter 0.5 not supported for operation rate"
    );
    assert_eq!(
        msg(r#"count_over_time({a="b"}[1m]) by (x)"#),
        "grouping not allowed for count_over_time aggregation"
    );
    assert_eq!(
        msg(r#"sum_over_time({a="b"} | unwrap x [1m]) by (x)"#),
        "grouping not allowed for sum_over_time aggregation"
    );
    assert!(msg(r#"count_over_time({a="b"})"#).contains("expected a range like [5m]"));
    assert!(msg("rate_counter({a=\"b\"} | unwrap x [1m])").contains("not supported"));
}

#[test]
fn vector_aggregations() {
    for q in [
        r#"sum(rate({a="b"}[1m]))"#,
        r#"sum by (x, y) (rate({a="b"}[1m]))"#,
        r#"sum(rate({a="b"}[1m])) by (x)"#,
        r#"avg without (x) (rate({a="b"}[1m]))"#,
        r#"max(rate({a="b"}[1m])) without ()"#,
        r#"topk(3, rate({a="b"}[1m]))"#,
        r#"bottomk by (x) (3, rate({a="b"}[1m]))"#,
        r#"count(min(stddev(stdvar(rate({a="b"}[1m])))))"#,
        r#"sort_desc(sum by (x) (rate({a="b"}[1m])))"#,
        r#"SUM BY (x) (COUNT_OVER_TIME({a="b"}[1m]))"#,
    ] {
        assert!(matches!(metric(q), MetricExpr::Vector(_)), "{q}");
    }
    let MetricExpr::Vector(v) = metric(r#"sum without (a, b) (rate({a="b"}[1m]))"#) else {
        panic!()
    };
    assert_eq!(
        v.grouping,
        Some(Grouping {
            without: true,
            labels: vec!["a".into(), "b".into()]
        })
    );
    let msg = |q: &str| err(q).message;
    assert_eq!(
        msg(r#"topk(rate({a="b"}[1m]))"#),
        "parameter required for operation topk"
    );
    assert!(msg(r#"topk(0, rate({a="b"}[1m]))"#).contains("positive integer"));
    assert!(msg(r#"topk(1.5, rate({a="b"}[1m]))"#).contains("positive integer"));
    assert_eq!(
        msg(r#"sum(2, rate({a="b"}[1m]))"#),
        "parameter 2 not supported for operation sum"
    );
    assert!(msg(r#"sum({a="b"})"#).contains("expects a metric expression"));
    assert!(msg("sum(1)").contains("expects a vector"));
    assert_eq!(msg(r#"sum by (a) (rate({a="b"}[1m])) by (b)"#), "grouping given twice");
}

#[test]
fn binary_operators_precedence_and_modifiers() {
    let MetricExpr::Binary(b) = metric("1 + 2 * 3") else {
        panic!()
    };
    assert_eq!(b.op, BinaryOp::Add);
    assert!(matches!(&b.rhs, MetricExpr::Binary(r) if r.op == BinaryOp::Mul));
    let MetricExpr::Binary(b) = metric("2 ^ 3 ^ 2") else {
        panic!()
    };
    assert!(matches!(&b.rhs, MetricExpr::Binary(r) if r.op == BinaryOp::Pow));
    let MetricExpr::Binary(b) = metric("1 - 2 - 3") else {
        panic!()
    };
    assert!(matches!(&b.lhs, MetricExpr::Binary(l) if l.op == BinaryOp::Sub));
    let MetricExpr::Binary(b) = metric(r#"rate({a="b"}[1m]) > bool 5 or vector(1)"#) else {
        panic!()
    };
    assert_eq!(b.op, BinaryOp::Or);
    assert!(matches!(&b.lhs, MetricExpr::Binary(l) if l.return_bool && l.op == BinaryOp::Gt));
    let MetricExpr::Binary(b) = metric(r#"rate({a="b"}[1m]) / on (x, y) group_left (z) rate({a="c"}[1m])"#) else {
        panic!()
    };
    assert_eq!(
        b.matching,
        VectorMatching {
            on: true,
            labels: vec!["x".into(), "y".into()],
            card: Cardinality::ManyToOne,
            include: vec!["z".into()]
        }
    );
    let MetricExpr::Binary(b) = metric(r#"rate({a="b"}[1m]) * ignoring(x) group_right rate({a="c"}[1m])"#) else {
        panic!()
    };
    assert_eq!((b.matching.on, b.matching.card), (false, Cardinality::OneToMany));
    assert!(matches!(metric("vector(1)+vector(1)"), MetricExpr::Binary(_)));
    assert!(matches!(metric("-1"), MetricExpr::Literal(v) if v == -1.0));
    assert!(matches!(metric("(((1)))"), MetricExpr::Literal(_)));
    for op in [
        "==", "!=", ">", ">=", "<", "<=", "+", "-", "*", "/", "%", "^", "and", "or", "unless",
    ] {
        metric(&format!(r#"rate({{a="b"}}[1m]) {op} rate({{a="c"}}[1m])"#));
    }
}

#[test]
fn binary_operator_errors() {
    let msg = |q: &str| err(q).message;
    // Loki: "syntax error: unexpected bool"; here `bool` reads as a topic first.
    err("bool 1 > 1 > bool 1");
    assert!(msg("1 and 2").contains("set operator \"and\" not allowed"));
    assert!(msg(r#"rate({a="b"}[1m]) or 1"#).contains("not allowed in binary scalar expression"));
    assert_eq!(
        msg(r#"rate({a="b"}[1m]) + bool 1"#),
        "bool modifier can only be used on comparison operators"
    );
    assert!(msg(r#"{a="b"} + 1"#).contains("cannot be applied to a log query"));
    assert!(msg(r#"rate({a="b"}[1m]) and on(x) group_left rate({a="b"}[1m])"#).contains("no grouping allowed"));
}

#[test]
fn label_replace_and_vector() {
    assert!(matches!(
        metric(r#"label_replace(rate({a="b"}[1m]), "dst", "$1", "src", "(.*)")"#),
        MetricExpr::LabelReplace(_)
    ));
    assert!(matches!(metric("vector(-2.5)"), MetricExpr::VectorLiteral(v) if v == -2.5));
    assert!(
        err(r#"label_replace(rate({a="b"}[1m]), "1dst", "$1", "src", "(.*)")"#)
            .message
            .contains("destination")
    );
    let e = err(r#"label_replace(rate({a="b"}[1m]), "d", "$1", "s", "(")"#);
    assert_eq!(e.col, 50);
}

#[test]
fn comments_and_whitespace() {
    log("{a=\"b\"} # trailing comment\n |= \"x\"\n# another\n");
}

mod errors;
mod loki_parity;
