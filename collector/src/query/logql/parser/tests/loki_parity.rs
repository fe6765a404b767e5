//! Issue 32: what Loki's parser accepts and how it reads it (`ip()`
//! filters, comparisons of scalars, pattern filters without a literal,
//! `label_replace` to an empty label), what it refuses (hex literals,
//! `ip()` with other operators), and messages that name the problem.

use super::*;

/// Whether the line filters of `q` pass `line`.
fn line_passes(q: &str, line: &str) -> bool {
    log(q).pipeline.process(line.as_bytes(), &mut Labels::new()).is_some()
}

#[test]
fn issue_32_ip_line_filters() {
    assert_eq!(
        stage_kinds(r#"{foo="bar"} |= ip("123.123.123.123") |= "baz" != ip("10.0.0.0/8")"#),
        ["line_filter", "line_filter", "line_filter"]
    );
    let q = r#"{app="foo"} |= ip("192.168.0.0/16")"#;
    assert!(line_passes(q, "GET / from 192.168.4.2"));
    assert!(!line_passes(q, "GET / from 10.0.0.1"));
    let q = r#"{app="foo"} != ip("10.0.0.1-10.0.0.9")"#;
    assert!(line_passes(q, "peer 10.0.0.10"));
    assert!(!line_passes(q, "peer 10.0.0.9"));
    let q = r#"{app="foo"} |= "special" or ip("10.0.0.0/8") or "special2""#;
    assert!(line_passes(q, "x special2") && line_passes(q, "10.2.3.4") && !line_passes(q, "11.2.3.4"));
    // `!=` with `or`: none of them, as Loki reads a negated chain.
    let q = r#"{app="foo"} != ip("127.0.0.1") or "foo""#;
    assert!(line_passes(q, "bar 127.0.0.2") && !line_passes(q, "127.0.0.1") && !line_passes(q, "foo"));
    let q = r#"{app="foo"} |= ip("::1")"#;
    assert!(line_passes(q, "remote ::1 said") && !line_passes(q, "remote ::11 said"));
    // Whitespace as Loki's tests write it.
    log(
        r#"{ foo = "bar" , ip="foo"}|logfmt|= ip("127.0.0.1")|ip="2.3.4.5"|ip="abc"|ipaddr=ip("4.5.6.7")|ip=ip("6.7.8.9")"#,
    );
}

#[test]
fn issue_32_ip_label_filters() {
    let q = r#"{foo="bar"} | logfmt | addr = ip("1.2.3.4/24")"#;
    assert!(filter_passes(
        r#"{a="b"} | addr = ip("1.2.3.4/24")"#,
        &[("addr", "1.2.3.200")]
    ));
    assert!(!filter_passes(
        r#"{a="b"} | addr = ip("1.2.3.4/24")"#,
        &[("addr", "1.2.4.1")]
    ));
    assert!(filter_passes(
        r#"{a="b"} | addr != ip("1.2.3.4/24")"#,
        &[("addr", "1.2.4.1")]
    ));
    assert_eq!(stage_kinds(q), ["logfmt", "label_filter"]);
    // Loki's grammar has ip() after = and != only.
    for op in [">=", ">", "<=", "<", "=="] {
        let e = err(&format!(r#"{{foo="bar"}} | logfmt | addr{op}ip("1.2.3.4")"#));
        assert!(
            e.message.starts_with("ip() label filters take = or != only"),
            "{op}: {e}"
        );
    }
}

#[test]
fn issue_32_ip_errors_are_loki_runtime_errors_here() {
    // Loki parses these but refuses to run them: logpost refuses them at once.
    let e = err(r#"{app="foo"} |~ ip("127.0.0.1") or "foo""#);
    assert!(e.message.starts_with("ip: invalid operation"), "{e}");
    assert_eq!(e.col, 16);
    let e = err(r#"{app="foo"} |= ip("1.2.3")"#);
    assert_eq!(e.message, r#"ip: invalid pattern: "1.2.3""#);
    let e = err(r#"{app="foo"} | logfmt | addr = ip("")"#);
    assert_eq!(e.message, r#"ip: invalid pattern: """#);
    // Inside `and`/`or` Loki lets a bad pattern pass nothing, and so do we.
    let q = r#"{app="foo"} | json | source = ip("") or user = "me""#;
    assert!(filter_passes_after_json(q, &[("user", "me")]));
    assert!(!filter_passes_after_json(q, &[("source", "1.2.3.4")]));
}

/// Whether the label filter after `| json` in `q` passes `pairs`.
fn filter_passes_after_json(q: &str, pairs: &[(&str, &str)]) -> bool {
    let l = log(q);
    let [Stage::Json(_), Stage::LabelFilter(f)] = l.pipeline.stages() else {
        panic!("{q}: expected json and a label filter");
    };
    let mut labels: Labels = pairs.iter().copied().collect();
    f.process(&mut labels)
}

#[test]
fn issue_32_scalar_comparisons_need_no_bool() {
    for q in ["1 > 1", "1 == 1", "1 > 1 > bool 1", "2 <= 3", "(1 != 2)"] {
        assert!(metric(q).is_scalar(), "{q}");
    }
    // A comparison of scalars is a scalar, so this is a scalar-vector comparison.
    assert!(!metric(r#"1 > bool 1 > count_over_time({foo="bar"}[1m])"#).is_scalar());
}

#[test]
fn issue_32_pattern_filters_without_literals() {
    for q in [
        r#"{foo="bar"} |> """#,
        r#"{foo="bar"} |> "<_>""#,
        r#"{foo="bar"} |> "<_>" !> "<_> <_>""#,
        r#"{ns="dev"} !> """#,
    ] {
        assert_eq!(stage_kinds(q).first(), Some(&"line_filter"), "{q}");
    }
    assert!(line_passes(r#"{a="b"} |> "<_>""#, "x"));
    assert!(!line_passes(r#"{a="b"} |> "<_>""#, ""));
    assert!(line_passes(r#"{a="b"} !> """#, "x"));
    assert!(!line_passes(r#"{a="b"} !> """#, ""));
    let e = err(r#"{a="b"} |> "<_> <ip>""#);
    assert_eq!(e.message, "named captures are not allowed: found '<ip>'");
}

#[test]
fn issue_32_label_replace_to_an_empty_label() {
    assert!(matches!(
        metric(r#"label_replace(sum by (a) (count_over_time({a=~".+"}[3s])), "", "", "", "")"#),
        MetricExpr::LabelReplace(_)
    ));
}

#[test]
fn issue_32_hex_literals_are_refused() {
    // Loki: "unable to parse literal as a float: strconv.ParseFloat: parsing "0x10": invalid syntax".
    let e = err(r#"{app="foo"} | logfmt | status_code > 0x10"#);
    assert_eq!(
        e.message,
        r#"unable to parse literal "0x10" as a float: hexadecimal numbers are not supported"#
    );
    assert_eq!(e.col, 38);
    assert!(err("0x10 + 1").message.starts_with("unable to parse literal \"0x10\""));
    assert!(err("1 + -0x10").message.starts_with("unable to parse literal \"0x10\""));
    // A topic whose name starts like one is still a topic.
    assert_eq!(log(r#"0x1f-logs |= "x""#).selector.matchers[0].value, "0x1f-logs");
}

#[test]
fn issue_32_unknown_functions_name_themselves() {
    let e = err(r#"coutn_over_time({app="foo"}[5m])"#);
    assert_eq!(
        e.message,
        r#"unknown function "coutn_over_time"; did you mean count_over_time?"#
    );
    assert_eq!((e.line, e.col), (1, 1));
    let e = err(r#"sum(rte({app="foo"}[5m]))"#);
    assert_eq!(e.message, r#"unknown function "rte"; did you mean rate?"#);
    assert_eq!(e.col, 5);
    let e = err(r#"summ by (app) (rate({app="foo"}[5m]))"#);
    assert_eq!(e.message, r#"unknown function "summ"; did you mean sum?"#);
    assert_eq!(
        err(r#"frobnicate({app="foo"})"#).message,
        r#"unknown function "frobnicate""#
    );
    // Known to Loki, not supported here: said by name.
    let e = err(r#"approx_topk(2, count_over_time({foo="bar"}[5h]))"#);
    assert!(e.message.starts_with("approx_topk is not supported"), "{e}");
    let e = err(r#"rate_counter({foo="bar"} | unwrap x [5m])"#);
    assert!(e.message.starts_with("rate_counter is not supported"), "{e}");
}

#[test]
fn issue_32_unknown_stages_name_themselves() {
    let e = err(r#"{app="foo"} | distinct level"#);
    assert!(
        e.message
            .starts_with(r#"unknown pipeline stage "distinct"; a stage is a parser"#),
        "{e}"
    );
    assert_eq!(e.col, 15);
    let e = err(r#"{app="foo"} | jsno"#);
    assert!(
        e.message
            .starts_with(r#"unknown pipeline stage "jsno"; did you mean json?"#),
        "{e}"
    );
    let e = err(r#"{app="foo"} | ip("1.2.3.4")"#);
    assert!(e.message.starts_with("ip() is not a stage"), "{e}");
}

#[test]
fn issue_32_subqueries_say_so() {
    let e = err(r#"count_over_time({app="foo"}[10m:1m])"#);
    assert!(e.message.starts_with("subqueries ([10m:1m]) are not supported"), "{e}");
    assert_eq!(e.col, 28);
    let e = err(r#"max_over_time(rate({app="foo"}[1m])[10m:1m])"#);
    assert!(e.message.starts_with("max_over_time takes a log query"), "{e}");
    assert!(e.message.contains("subquery"), "{e}");
    assert_eq!(e.col, 15);
}
