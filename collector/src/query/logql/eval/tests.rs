//! Metric and log evaluation against a small in-memory source, with every
//! expected value worked out by hand from the five lines below.

use super::testing::{FailingSource, MemSource, S};
use super::*;
use crate::query::logql::ast::Expr;
use crate::query::logql::parser::parse;

const L1: &str = "level=info status=200 took=10ms size=100B";
const L2: &str = "level=error status=500 took=250ms size=2KB";
const L3: &str = "level=info status=404 took=1s size=50B";
const L4: &str = "level=error status=503 took=2s size=4KB";
const L5: &str = "level=info status=200 took=5ms size=10B";

const API: &[(&str, &str)] = &[("app", "api"), ("topic", "web")];
const WEB: &[(&str, &str)] = &[("app", "web"), ("topic", "web")];

/// api logs at 1s, 2s, 4s; web logs at 3s, 5s.
fn source() -> MemSource {
    let mut s = MemSource::new();
    s.push(S, API, L1)
        .push(2 * S, API, L2)
        .push(3 * S, WEB, L3)
        .push(4 * S, API, L4)
        .push(5 * S, WEB, L5);
    s
}

fn metric(q: &str) -> MetricExpr {
    match parse(q).unwrap_or_else(|e| panic!("{q}: {e}")) {
        Expr::Metric(m) => m,
        Expr::Log(_) => panic!("{q} is a log query"),
    }
}

fn log_expr(q: &str) -> crate::query::logql::ast::LogExpr {
    match parse(q).unwrap_or_else(|e| panic!("{q}: {e}")) {
        Expr::Log(l) => l,
        Expr::Metric(_) => panic!("{q} is a metric query"),
    }
}

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs.iter().copied().collect()
}

/// `(labels rendered, value)` of an instant vector query.
fn instant_on(q: &str, t: i64, src: &mut MemSource) -> Vec<(String, f64)> {
    match eval_instant(&metric(q), t, src).unwrap_or_else(|e| panic!("{q}: {e}")) {
        Value::Vector(v) => v.into_iter().map(|s| (s.labels.to_string(), s.value)).collect(),
        other => panic!("{q}: expected a vector, got {other:?}"),
    }
}

fn instant(q: &str, t: i64) -> Vec<(String, f64)> {
    instant_on(q, t, &mut source())
}

fn by_app(pairs: &[(&str, f64)]) -> Vec<(String, f64)> {
    pairs
        .iter()
        .map(|(app, v)| (format!("{{app=\"{app}\"}}"), *v))
        .collect()
}

fn assert_close(got: &[(String, f64)], want: &[(String, f64)]) {
    assert_eq!(got.len(), want.len(), "got {got:?}, want {want:?}");
    for ((gl, gv), (wl, wv)) in got.iter().zip(want) {
        assert_eq!(gl, wl);
        assert!((gv - wv).abs() < 1e-9, "{gl}: got {gv}, want {wv}");
    }
}

const API_L: &str = r#"{app="api", topic="web"}"#;
const WEB_L: &str = r#"{app="web", topic="web"}"#;

#[test]
fn count_and_rate_at_an_instant() {
    let want = vec![(API_L.to_string(), 3.0), (WEB_L.to_string(), 2.0)];
    assert_eq!(instant(r#"count_over_time({topic="web"}[5s])"#, 5 * S), want);
    assert_close(
        &instant(r#"rate({topic="web"}[5s])"#, 5 * S),
        &[(API_L.to_string(), 0.6), (WEB_L.to_string(), 0.4)],
    );
    // The bare topic name is the same selector.
    assert_eq!(instant("count_over_time(web[5s])", 5 * S), want);
}

#[test]
fn bytes_count_line_lengths() {
    let api_bytes = (L1.len() + L2.len() + L4.len()) as f64;
    assert_eq!(
        instant(r#"bytes_over_time({app="api"}[5s])"#, 5 * S),
        vec![(API_L.to_string(), api_bytes)]
    );
    assert_close(
        &instant(r#"bytes_rate({app="api"}[5s])"#, 5 * S),
        &[(API_L.to_string(), api_bytes / 5.0)],
    );
    // Like Loki, bytes are counted on the line after the pipeline.
    assert_eq!(
        instant(r#"bytes_over_time({app="web"} | line_format "xy" [10s])"#, 10 * S),
        vec![(WEB_L.to_string(), 4.0)]
    );
}

#[test]
fn windows_are_left_open_right_closed() {
    let m = metric(r#"count_over_time({topic="web"}[2s])"#);
    let got = eval_range(&m, 2 * S, 5 * S, S, &mut source()).unwrap();
    assert_eq!(
        got,
        vec![
            Series {
                labels: labels(API),
                points: vec![(2 * S, 2.0), (3 * S, 1.0), (4 * S, 1.0), (5 * S, 1.0)],
            },
            Series {
                labels: labels(WEB),
                points: vec![(3 * S, 1.0), (4 * S, 1.0), (5 * S, 1.0)],
            },
        ]
    );
}

#[test]
fn steps_align_on_start() {
    let got = eval_range(&metric("vector(1)"), 0, 10 * S, 3 * S, &mut source()).unwrap();
    let times: Vec<i64> = got[0].points.iter().map(|p| p.0).collect();
    assert_eq!(times, vec![0, 3 * S, 6 * S, 9 * S]);
}

#[test]
fn results_do_not_depend_on_source_order() {
    let q = r#"first_over_time({topic="web"} | logfmt | unwrap status [10s]) by (app)"#;
    let mut rev = source();
    rev.reversed = true;
    assert_eq!(instant(q, 10 * S), by_app(&[("api", 200.0), ("web", 404.0)]));
    assert_eq!(
        instant_on(q, 10 * S, &mut rev),
        by_app(&[("api", 200.0), ("web", 404.0)])
    );
    let q = r#"last_over_time({topic="web"} | logfmt | unwrap status [10s]) by (app)"#;
    assert_eq!(
        instant_on(q, 10 * S, &mut rev),
        by_app(&[("api", 503.0), ("web", 200.0)])
    );
}

#[test]
fn vector_aggregations_group_by_and_without() {
    let inner = r#"count_over_time({topic="web"} | logfmt [10s])"#;
    let want = vec![
        (r#"{level="error"}"#.to_string(), 2.0),
        (r#"{level="info"}"#.to_string(), 3.0),
    ];
    assert_eq!(instant(&format!("sum by (level) ({inner})"), 10 * S), want);
    assert_eq!(instant(&format!("sum({inner}) by (level)"), 10 * S), want);
    assert_eq!(
        instant(
            &format!("sum without (app, topic, status, took, size) ({inner})"),
            10 * S
        ),
        want
    );
    assert_eq!(instant(&format!("sum({inner})"), 10 * S), vec![("{}".to_string(), 5.0)]);
    assert_eq!(
        instant(&format!("count({inner})"), 10 * S),
        vec![("{}".to_string(), 5.0)]
    );
}

#[test]
fn avg_min_max_stddev_count() {
    let per_app = r#"sum by (app) (count_over_time({topic="web"}[10s]))"#;
    let one = |op: &str| instant(&format!("{op}({per_app})"), 10 * S)[0].1;
    assert_eq!(one("avg"), 2.5);
    assert_eq!(one("min"), 2.0);
    assert_eq!(one("max"), 3.0);
    assert_eq!(one("count"), 2.0);
    assert_eq!(one("stddev"), 0.5);
    assert_eq!(one("stdvar"), 0.25);
}

#[test]
fn topk_bottomk_keep_full_labels_and_order() {
    let per_app = r#"sum by (app) (count_over_time({topic="web"}[10s]))"#;
    assert_eq!(instant(&format!("topk(1, {per_app})"), 10 * S), by_app(&[("api", 3.0)]));
    assert_eq!(
        instant(&format!("bottomk(1, {per_app})"), 10 * S),
        by_app(&[("web", 2.0)])
    );
    assert_eq!(
        instant(&format!("topk(5, {per_app})"), 10 * S),
        by_app(&[("api", 3.0), ("web", 2.0)])
    );
    // Per group: the busiest level of each app, full labels kept.
    let got = instant(
        r#"topk by (app) (1, sum by (app, level) (count_over_time({topic="web"} | logfmt [10s])))"#,
        10 * S,
    );
    assert_eq!(
        got,
        vec![
            (r#"{app="api", level="error"}"#.to_string(), 2.0),
            (r#"{app="web", level="info"}"#.to_string(), 2.0),
        ]
    );
}

#[test]
fn sort_and_sort_desc() {
    let per_app = r#"sum by (app) (count_over_time({topic="web"}[10s]))"#;
    assert_eq!(
        instant(&format!("sort({per_app})"), 10 * S),
        by_app(&[("web", 2.0), ("api", 3.0)])
    );
    assert_eq!(
        instant(&format!("sort_desc({per_app})"), 10 * S),
        by_app(&[("api", 3.0), ("web", 2.0)])
    );
}

#[test]
fn unwrap_functions() {
    let q = |f: &str, conv: &str| format!(r#"{f}({{topic="web"}} | logfmt | unwrap {conv} [10s]) by (app)"#);
    assert_close(
        &instant(&q("avg_over_time", "duration(took)"), 10 * S),
        &by_app(&[("api", (0.01 + 0.25 + 2.0) / 3.0), ("web", (1.0 + 0.005) / 2.0)]),
    );
    assert_eq!(
        instant(&q("max_over_time", "status"), 10 * S),
        by_app(&[("api", 503.0), ("web", 404.0)])
    );
    assert_eq!(
        instant(&q("min_over_time", "status"), 10 * S),
        by_app(&[("api", 200.0), ("web", 200.0)])
    );
    assert_eq!(instant(&q("stddev_over_time", "status"), 10 * S)[1].1, 102.0);
    assert_eq!(instant(&q("stdvar_over_time", "status"), 10 * S)[1].1, 10404.0);
    assert_eq!(
        instant(
            r#"quantile_over_time(0.5, {topic="web"} | logfmt | unwrap status [10s]) by (app)"#,
            10 * S
        ),
        by_app(&[("api", 500.0), ("web", 302.0)])
    );
    assert_eq!(
        instant(
            r#"sum by (app) (sum_over_time({topic="web"} | logfmt | unwrap bytes(size) [10s]))"#,
            10 * S
        ),
        by_app(&[("api", 6100.0), ("web", 60.0)])
    );
    assert_close(
        &instant(
            r#"sum by (app) (rate({app="web"} | logfmt | unwrap status [10s]))"#,
            10 * S,
        ),
        &by_app(&[("web", 60.4)]),
    );
}

#[test]
fn unwrapped_label_leaves_the_series() {
    let got = instant(r#"max_over_time({app="web"} | logfmt | unwrap status [10s])"#, 10 * S);
    assert_eq!(got.len(), 2);
    assert!(got.iter().all(|(l, _)| !l.contains("status=")), "{got:?}");
    assert!(got[0].0.contains(r#"level="info""#));
}

#[test]
fn unwrap_conversion_errors_follow_loki() {
    let err = eval_instant(
        &metric(r#"sum_over_time({app="api"} | logfmt | unwrap level [10s])"#),
        10 * S,
        &mut source(),
    )
    .unwrap_err();
    assert!(
        matches!(&err, EvalError::Pipeline { error_type, .. } if error_type == "SampleExtractionErr"),
        "{err}"
    );
    assert_eq!(
        instant(
            r#"sum_over_time({app="api"} | logfmt | unwrap level | __error__="" [10s])"#,
            10 * S
        ),
        vec![]
    );
    // A missing label skips the line rather than failing.
    assert_eq!(
        instant(r#"sum_over_time({app="api"} | logfmt | unwrap nope [10s])"#, 10 * S),
        vec![]
    );
    // Issue 32: the details name the conversion that failed.
    let err = eval_instant(
        &metric(r#"sum_over_time({app="api"} | logfmt | unwrap duration(level) [10s])"#),
        10 * S,
        &mut source(),
    )
    .unwrap_err();
    assert!(
        err.to_string().contains(r#"cannot convert \"info\" to a duration"#),
        "{err}"
    );
}

#[test]
fn parser_errors_fail_metric_queries_unless_filtered() {
    let err = eval_instant(
        &metric(r#"count_over_time({app="api"} | json [10s])"#),
        10 * S,
        &mut source(),
    )
    .unwrap_err();
    match &err {
        EvalError::Pipeline { error_type, series } => {
            assert_eq!(error_type, "JSONParserErr");
            assert!(series.contains(r#"app="api""#), "{series}");
        }
        other => panic!("unexpected {other}"),
    }
    assert!(
        err.to_string()
            .starts_with("pipeline error: 'JSONParserErr' for series:")
    );
    assert_eq!(
        instant(r#"count_over_time({app="api"} | json | __error__="" [10s])"#, 10 * S),
        vec![]
    );
    assert_eq!(
        instant(r#"count_over_time({app="api"} | json | drop __error__ [10s])"#, 10 * S),
        vec![(API_L.to_string(), 3.0)]
    );
}

#[test]
fn absent_over_time() {
    assert_eq!(
        instant(r#"absent_over_time({app="nope", env=~"x.*"}[5s])"#, 5 * S),
        vec![(r#"{app="nope"}"#.to_string(), 1.0)]
    );
    assert_eq!(instant(r#"absent_over_time({app="api"}[5s])"#, 5 * S), vec![]);
}

#[test]
fn grafana_health_check_and_scalars() {
    let v = eval_instant(&metric("vector(1)+vector(1)"), 7 * S, &mut source()).unwrap();
    assert_eq!(
        v,
        Value::Vector(vec![Sample {
            labels: Labels::new(),
            timestamp_ns: 7 * S,
            value: 2.0
        }])
    );
    let scalar = |q: &str| eval_instant(&metric(q), 0, &mut source()).unwrap();
    assert_eq!(scalar("1 + 1"), Value::Scalar(2.0));
    assert_eq!(scalar("2 * 3 + 1"), Value::Scalar(7.0));
    assert_eq!(scalar("2 ^ 3 ^ 2"), Value::Scalar(512.0));
    assert_eq!(scalar("(1 + 2) * -3"), Value::Scalar(-9.0));
    assert_eq!(scalar("7 % 4"), Value::Scalar(3.0));
    assert_eq!(scalar("1 > bool 2"), Value::Scalar(0.0));
    // Issue 32: Loki folds comparisons of scalars to 1 or 0, `bool` or not
    // (its ast_test.go: `1 > 1 > bool 1` is `0`).
    assert_eq!(scalar("1 > 2"), Value::Scalar(0.0));
    assert_eq!(scalar("1 == 1"), Value::Scalar(1.0));
    assert_eq!(scalar("2 >= 1"), Value::Scalar(1.0));
    assert_eq!(scalar("1 > 1 > bool 1"), Value::Scalar(0.0));
    assert_eq!(scalar("1 < 2 != 0"), Value::Scalar(1.0));
    let m = eval_range(&metric("1 + 1"), 0, 2 * S, S, &mut source()).unwrap();
    assert_eq!(
        m,
        vec![Series {
            labels: Labels::new(),
            points: vec![(0, 2.0), (S, 2.0), (2 * S, 2.0)]
        }]
    );
}

#[test]
fn vector_scalar_arithmetic_and_comparison() {
    let per_app = r#"sum by (app) (count_over_time({topic="web"}[10s]))"#;
    assert_eq!(
        instant(&format!("{per_app} * 10"), 10 * S),
        by_app(&[("api", 30.0), ("web", 20.0)])
    );
    assert_eq!(
        instant(&format!("10 - {per_app}"), 10 * S),
        by_app(&[("api", 7.0), ("web", 8.0)])
    );
    assert_eq!(instant(&format!("{per_app} > 2"), 10 * S), by_app(&[("api", 3.0)]));
    assert_eq!(instant(&format!("2 < {per_app}"), 10 * S), by_app(&[("api", 3.0)]));
    assert_eq!(
        instant(&format!("{per_app} > bool 2"), 10 * S),
        by_app(&[("api", 1.0), ("web", 0.0)])
    );
}

#[test]
fn vector_matching() {
    let per_app = r#"sum by (app) (count_over_time({topic="web"}[10s]))"#;
    let per_level = r#"sum by (app, level) (count_over_time({topic="web"} | logfmt [10s]))"#;
    assert_eq!(
        instant(&format!("{per_app} + {per_app}"), 10 * S),
        by_app(&[("api", 6.0), ("web", 4.0)])
    );
    assert_close(
        &instant(&format!("{per_level} / ignoring(level) group_left {per_app}"), 10 * S),
        &[
            (r#"{app="api", level="error"}"#.to_string(), 2.0 / 3.0),
            (r#"{app="api", level="info"}"#.to_string(), 1.0 / 3.0),
            (r#"{app="web", level="info"}"#.to_string(), 1.0),
        ],
    );
    assert_close(
        &instant(&format!("{per_app} / on(app) group_right {per_level}"), 10 * S),
        &[
            (r#"{app="api", level="error"}"#.to_string(), 1.5),
            (r#"{app="api", level="info"}"#.to_string(), 3.0),
            (r#"{app="web", level="info"}"#.to_string(), 1.0),
        ],
    );
    // Different label sets never match one-to-one.
    assert_eq!(instant(&format!("{per_level} / {per_app}"), 10 * S), vec![]);
    let err = eval_instant(
        &metric(&format!("{per_level} / on(app) {per_app}")),
        10 * S,
        &mut source(),
    )
    .unwrap_err();
    assert!(
        err.to_string().contains("many-to-one matching must be explicit"),
        "{err}"
    );
}

#[test]
fn set_operators() {
    let per_app = r#"sum by (app) (count_over_time({topic="web"}[10s]))"#;
    let api_only = r#"sum by (app) (count_over_time({app="api"}[10s]))"#;
    assert_eq!(
        instant(&format!("{per_app} and {api_only}"), 10 * S),
        by_app(&[("api", 3.0)])
    );
    assert_eq!(
        instant(&format!("{per_app} unless {api_only}"), 10 * S),
        by_app(&[("web", 2.0)])
    );
    let got = instant(&format!("{api_only} or vector(0)"), 10 * S);
    assert_eq!(got, vec![("{}".to_string(), 0.0), (r#"{app="api"}"#.to_string(), 3.0)]);
}

#[test]
fn offset_moves_the_window_and_the_scan() {
    let mut src = source();
    let got = instant_on(r#"count_over_time({topic="web"}[2s] offset 2s)"#, 5 * S, &mut src);
    assert_eq!(got, vec![(API_L.to_string(), 1.0), (WEB_L.to_string(), 1.0)]);
    assert_eq!(src.scans, vec![(S + 1, 3 * S + 1)]);
}

#[test]
fn engine_rechecks_the_selector() {
    let mut src = source();
    src.ignore_selector = true;
    assert_eq!(
        instant_on(r#"count_over_time({app="api"}[10s])"#, 10 * S, &mut src),
        vec![(API_L.to_string(), 3.0)]
    );
}

#[test]
fn label_replace_relabels() {
    let got = instant(
        r#"label_replace(sum by (app) (count_over_time({topic="web"}[10s])), "svc", "s-$1", "app", "(a.*)")"#,
        10 * S,
    );
    assert_eq!(
        got,
        vec![
            (r#"{app="api", svc="s-api"}"#.to_string(), 3.0),
            (r#"{app="web"}"#.to_string(), 2.0)
        ]
    );
}

#[test]
fn issue_32_label_replace_to_an_empty_label_changes_nothing() {
    let q = r#"label_replace(sum by (app) (count_over_time({topic="web"}[10s])), "", "x", "app", "(.*)")"#;
    assert_eq!(
        instant(q, 10 * S),
        vec![(r#"{app="api"}"#.to_string(), 3.0), (r#"{app="web"}"#.to_string(), 2.0)]
    );
}

#[test]
fn limits_and_bad_ranges() {
    let m = metric(r#"count_over_time({topic="web"}[10s])"#);
    let opts = EvalOptions {
        max_series: 1,
        ..EvalOptions::default()
    };
    assert!(matches!(
        eval_instant_with(&m, 10 * S, &mut source(), &opts),
        Err(EvalError::TooManySeries { limit: 1 })
    ));
    assert!(matches!(
        eval_range(&m, 0, S, 0, &mut source()),
        Err(EvalError::InvalidRange(_))
    ));
    assert!(matches!(
        eval_range(&m, S, 0, S, &mut source()),
        Err(EvalError::InvalidRange(_))
    ));
    assert!(matches!(
        eval_range(&m, 0, 20_000, 1, &mut source()),
        Err(EvalError::InvalidRange(_))
    ));
    assert!(matches!(
        eval_instant(&m, 0, &mut FailingSource),
        Err(EvalError::Source(_))
    ));
    assert!(matches!(
        eval_range(&m, i64::MIN, i64::MAX, i64::MAX, &mut source()),
        Ok(_) | Err(EvalError::InvalidRange(_))
    ));
}

#[test]
fn many_entries_few_buckets() {
    // 100k entries into 3 steps: the result only depends on the buckets.
    let mut src = MemSource::new();
    for i in 0..100_000i64 {
        src.push(i * 1_000_000, API, "x");
    }
    let m = metric(r#"count_over_time({app="api"}[30s])"#);
    let got = eval_range(&m, 30 * S, 90 * S, 30 * S, &mut src).unwrap();
    assert_eq!(
        got[0].points,
        vec![(30 * S, 30_000.0), (60 * S, 30_000.0), (90 * S, 30_000.0)]
    );
    let rate = eval_range(&metric(r#"rate({app="api"}[1m])"#), 60 * S, 60 * S, S, &mut src).unwrap();
    assert_eq!(rate[0].points, vec![(60 * S, 1000.0)]);
}

#[test]
fn vector_aggregation_per_step_in_range_queries() {
    let m = metric(r#"sum by (level) (count_over_time({topic="web"} | logfmt [2s]))"#);
    let got = eval_range(&m, 2 * S, 5 * S, S, &mut source()).unwrap();
    // (0,2]: L1 info, L2 error; (1,3]: L2 error, L3 info; (2,4]: L3 info,
    // L4 error; (3,5]: L4 error, L5 info.
    assert_eq!(
        got,
        vec![
            Series {
                labels: labels(&[("level", "error")]),
                points: vec![(2 * S, 1.0), (3 * S, 1.0), (4 * S, 1.0), (5 * S, 1.0)],
            },
            Series {
                labels: labels(&[("level", "info")]),
                points: vec![(2 * S, 1.0), (3 * S, 1.0), (4 * S, 1.0), (5 * S, 1.0)],
            },
        ]
    );
    let m = metric(r#"topk(1, sum by (app) (count_over_time({topic="web"}[2s])))"#);
    let got = eval_range(&m, 2 * S, 3 * S, S, &mut source()).unwrap();
    // At 2s api has 2 lines and web none; at 3s both have 1 (tie broken by labels).
    assert_eq!(
        got,
        vec![Series {
            labels: labels(&[("app", "api")]),
            points: vec![(2 * S, 2.0), (3 * S, 1.0)],
        }]
    );
}

#[test]
fn step_larger_than_range_skips_gaps() {
    let mut src = source();
    let m = metric(r#"count_over_time({topic="web"}[1s])"#);
    let got = eval_range(&m, S, 5 * S, 2 * S, &mut src).unwrap();
    // Windows (0,1], (2,3], (4,5]: lines at 1s, 3s and 5s only.
    assert_eq!(
        got,
        vec![
            Series {
                labels: labels(API),
                points: vec![(S, 1.0)],
            },
            Series {
                labels: labels(WEB),
                points: vec![(3 * S, 1.0), (5 * S, 1.0)],
            },
        ]
    );
    assert_eq!(src.scans, vec![(1, 5 * S + 1)]);
}

mod logs;
mod metadata;

/// Issue 28: points (series × steps) and the bytes of a log result are
/// budgets, each refused with its key named before it is spent.
#[test]
fn issue_28_points_and_result_bytes_are_budgets() {
    let mut src = MemSource::new();
    for i in 0..10 {
        src.push(S, &[("topic", "web"), ("id", &i.to_string())], "x");
    }
    let m = metric(r#"sum by (id) (count_over_time({topic="web"}[1h]))"#);
    let opts = EvalOptions {
        max_points: 1000,
        ..EvalOptions::default()
    };
    // 10 series × 101 steps = 1010 points.
    let err = eval_range_with(&m, S, 101 * S, S, &mut src, &opts).unwrap_err();
    assert!(matches!(err, EvalError::TooManyPoints { limit: 1000 }), "{err}");
    assert!(err.to_string().contains("query.max_points"), "{err}");
    let ok = eval_range_with(&m, S, 99 * S, S, &mut src, &opts).unwrap();
    assert_eq!(ok.len(), 10);
    assert!(ok.iter().all(|s| s.points.len() == 99));
    // Every point of a series shares its one label set.
    assert!(ok.iter().all(|s| s.labels.len() == 1));

    let log = log_expr(r#"{topic="web"}"#);
    let mut src = MemSource::new();
    for i in 0..10 {
        src.push(i * S, &[("topic", "web")], &"y".repeat(1000));
    }
    let opts = EvalOptions {
        max_result_bytes: 5000,
        ..EvalOptions::default()
    };
    let err = eval_logs_with(&log, 0, 100 * S, 100, Direction::Backward, &mut src, &opts).unwrap_err();
    assert!(matches!(err, EvalError::ResultTooLarge { limit: 5000 }), "{err}");
    assert!(err.to_string().contains("query.max_result_bytes"), "{err}");
    // Five lines fit; the newest five, as without the budget.
    let got = eval_logs_with(&log, 0, 100 * S, 5, Direction::Backward, &mut src, &opts).unwrap();
    let ts: Vec<i64> = got[0].entries.iter().map(|e| e.timestamp_ns / S).collect();
    assert_eq!(ts, [9, 8, 7, 6, 5]);
}

/// Issue 28: a grouping key is made once per series, not once per point.
#[test]
fn issue_28_group_keys_are_shared_across_steps() {
    let mut src = MemSource::new();
    src.push(S, &[("topic", "web"), ("id", "1"), ("x", "a")], "x");
    let m = metric(r#"sum by (id) (count_over_time({topic="web"}[1h]))"#);
    let out = eval_range(&m, S, 50 * S, S, &mut src).unwrap();
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].points.len(), 50);
    let mut memo = LabelMemo::default();
    let input: Labels = [("id", "1"), ("x", "a")].into_iter().collect();
    let calls = std::cell::Cell::new(0);
    let derive = |l: &Labels| {
        calls.set(calls.get() + 1);
        l.keep_only(&["id".to_owned()])
    };
    let a = memo.get(&input, derive);
    let b = memo.get(&input.clone(), derive);
    assert_eq!(calls.get(), 1, "derived once");
    assert!(a.is_same_set(&b));
}
