//! Where the parser reports errors, its limits, and the helpers that
//! read queries for pruning.

use super::*;

#[test]
fn error_display_and_positions() {
    let e = err(r#"{app="api"} }"#);
    assert_eq!(
        e.to_string(),
        r#"parse error at line 1, col 13: unexpected "}", expected end of query"#
    );
    let e = err(r#"{app="api" |= "x""#);
    assert_eq!(
        (e.col, e.message.as_str()),
        (12, r#"unexpected "|=", expected "," or "}""#)
    );
    let e = err(r#"{app="api""#);
    assert_eq!(
        (e.col, e.message.as_str()),
        (11, r#"unexpected end of input, expected "," or "}""#)
    );
    let e = err(r#"{app="api}"#);
    assert_eq!((e.col, e.message.as_str()), (6, "unterminated string"));
    let e = err("{app=`api}");
    assert_eq!((e.col, e.message.as_str()), (6, "unterminated raw string"));
    let e = err("{app=\"api\"}\n  | json\n  | status >= }");
    assert_eq!((e.line, e.col, e.pos), (3, 15, 35));
    assert!(e.message.starts_with(r#"unexpected "}""#), "{e}");
    let e = err(r#"{app}"#);
    assert_eq!(
        (e.col, e.message.as_str()),
        (5, r#"unexpected "}", expected one of =, !=, =~, !~"#)
    );
    let e = err(r#"{app="a"} | json [5m]"#);
    assert!(e.message.starts_with("unexpected range"), "{e}");
    let e = err("");
    assert_eq!(e.message, "unexpected end of input, expected an expression");
}

#[test]
fn bad_regexes_point_at_their_string() {
    let e = err(r#"{app=~"a(b"}"#);
    assert_eq!(e.col, 7);
    assert!(e.message.starts_with(r#"invalid regex "a(b": "#), "{e}");
    let e = err(r#"{app="a"} |= "ok" |~ "x[""#);
    assert_eq!(e.col, 22);
    let e = err(r#"{app="a"} |~ "ok" or "(""#);
    assert_eq!(e.col, 22);
    let e = err(r#"{app="a"} | regexp "(\\d+)""#);
    assert!(e.message.contains("named capture"), "{e}");
    let e = err(r#"{app="a"} | level=~"(""#);
    assert_eq!(e.col, 20);
    assert_eq!(err(r#"{app="a"} | pattern "no captures""#).col, 21);
    assert!(
        err(r#"{app="a"} | line_format "{{ if .a }}""#)
            .message
            .starts_with("invalid line template")
    );
    assert!(err(r#"{app="a"} | json x="a[""#).message.contains("invalid JSON path"));
}

#[test]
fn misplaced_constructs() {
    assert!(
        err(r#"{app="a"} | unwrap x"#)
            .message
            .contains("unwrap is only allowed")
    );
    assert!(
        err(r#"{app="a"} | label_format a=b, a=c"#)
            .message
            .contains("multiple label name")
    );
    assert!(err(r#"{app="a"} | status > "x""#).message.contains("expected a number"));
    assert!(err(r#"{app="a"} | status =~ 5"#).message.contains("quoted regex"));
    assert!(err(r#"{app="a"} |"#).message.contains("pipeline stage"));
    assert!(err("'single'").message.contains("single-quoted"));
    assert!(
        err(r#"count_over_time({a="b"}[5m] offset x)"#)
            .message
            .contains("duration after offset")
    );
}

#[test]
fn nesting_and_size_limits() {
    let deep = format!("{}1{}", "(".repeat(MAX_DEPTH + 5), ")".repeat(MAX_DEPTH + 5));
    assert!(err(&deep).message.contains("nested deeper"));
    let ok = format!("{}1{}", "(".repeat(MAX_DEPTH - 2), ")".repeat(MAX_DEPTH - 2));
    metric(&ok);
    let long = vec!["1"; MAX_NODES + 2].join(" + ");
    assert!(err(&long).message.contains("more than"));
    let filters = vec![r#"a="1""#; MAX_NODES + 2].join(" and ");
    assert!(err(&format!(r#"{{a="b"}} | {filters}"#)).message.contains("more than"));
}

#[test]
fn deepest_query_parses_on_a_small_stack() {
    // Worker threads (tokio's default) have 2 MiB; debug builds use the most.
    let q = format!(
        "{}rate({{a=\"b\"}}[1m]){}",
        "sum(".repeat(MAX_DEPTH - 2),
        ")".repeat(MAX_DEPTH - 2)
    );
    let handle = std::thread::Builder::new()
        .stack_size(2 * 1024 * 1024)
        .spawn(move || parse(&q).is_ok())
        .unwrap();
    assert!(handle.join().unwrap());
}

#[test]
fn pruning_helpers_from_queries() {
    let l = log(r#"{topic=~"web|api", app="x", env=""} |= "needle""#);
    assert_eq!(l.selector.topics(), Some(vec!["api".to_string(), "web".to_string()]));
    assert_eq!(l.selector.required_equalities(), vec![("app", "x")]);
    assert_eq!(l.pipeline.required_literals(), vec![b"needle".to_vec()]);
    assert_eq!(log("corpus").selector.topics(), Some(vec!["corpus".to_string()]));
    assert_eq!(log(r#"{app="x"}"#).selector.topics(), None);
}

#[test]
fn columns_count_characters() {
    let e = err("{app=\"é\"} }");
    assert_eq!((e.col, e.pos), (11, 11));
}
