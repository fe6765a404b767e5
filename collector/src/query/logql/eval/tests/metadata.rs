//! Issue 32: structured metadata is the entry's own. The selector never
//! sees it; label filters, parsers and metric series do, with Loki's
//! precedence. The cases are those of Loki's `logqltest` scripts
//! (`label_filters`, `functions`, `parsers`), with their expected values.

use super::*;

/// `{app="m"}` with metadata name=alpha at 12s, 24s, 36s, 48s, 60s and
/// name=beta at 30s, 50s (Loki's label_filters.logqltest).
fn with_metadata() -> MemSource {
    let mut s = MemSource::new();
    for t in [12, 24, 36, 48, 60] {
        s.push_with_metadata(t * S, &[("app", "m")], &[("name", "alpha")], "x");
    }
    for t in [30, 50] {
        s.push_with_metadata(t * S, &[("app", "m")], &[("name", "beta")], "x");
    }
    s
}

#[test]
fn label_filters_read_metadata_and_series_carry_it() {
    let q = r#"count_over_time({app="m"} | name="alpha" [1m])"#;
    assert_eq!(
        instant_on(q, 60 * S + 1, &mut with_metadata()),
        vec![(r#"{app="m", name="alpha"}"#.to_string(), 5.0)]
    );
    let q = r#"count_over_time({app="m"} | name!="alpha" [1m])"#;
    assert_eq!(
        instant_on(q, 60 * S + 1, &mut with_metadata()),
        vec![(r#"{app="m", name="beta"}"#.to_string(), 2.0)]
    );
}

#[test]
fn selectors_never_match_metadata() {
    let q = r#"count_over_time({app="m", name="alpha"}[1m])"#;
    let mut src = with_metadata();
    src.ignore_selector = true;
    assert_eq!(instant_on(q, 60 * S + 1, &mut src), vec![]);
}

#[test]
fn metadata_yields_its_name_to_stream_labels() {
    // functions.logqltest: {app="a", env="prod"} with metadata region="eu" env="canary".
    let mut src = MemSource::new();
    for t in [20, 40, 60] {
        src.push_with_metadata(
            t * S,
            &[("app", "a"), ("env", "prod")],
            &[("region", "eu"), ("env", "canary")],
            "msg",
        );
    }
    assert_eq!(
        instant_on(r#"count_over_time({app="a"} [1m])"#, 60 * S + 1, &mut src),
        vec![(
            r#"{app="a", env="prod", env_extracted="canary", region="eu"}"#.to_string(),
            3.0
        )]
    );
}

#[test]
fn parsed_labels_yield_to_metadata_and_take_extracted() {
    // parsers.logqltest: the base name goes stream > metadata > parsed, the
    // `_extracted` slot parsed > metadata > stream.
    let mut src = MemSource::new();
    for t in [20, 40, 60] {
        src.push_with_metadata(
            t * S,
            &[("app", "a"), ("sl", "s"), ("sm", "s"), ("tri", "s")],
            &[("md", "m"), ("sm", "m"), ("tri", "m")],
            "sl=p md=p tri=p",
        );
    }
    assert_eq!(
        instant_on(r#"count_over_time({app="a"} | logfmt [1m])"#, 60 * S + 1, &mut src),
        vec![(
            r#"{app="a", md="m", md_extracted="p", sl="s", sl_extracted="p", sm="s", sm_extracted="m", tri="s", tri_extracted="p"}"#
                .to_string(),
            3.0
        )]
    );
}

#[test]
fn log_queries_say_which_labels_are_metadata_and_which_parsed() {
    let mut src = MemSource::new();
    src.push_with_metadata(S, &[("app", "a")], &[("trace_id", "t1")], "level=info")
        .push(2 * S, &[("app", "a")], "level=warn");
    let q = log_expr(r#"{app="a"} | logfmt | trace_id="t1" or level="warn""#);
    let got = eval_logs(&q, 0, 10 * S, 10, Direction::Forward, &mut src).unwrap();
    let entries: Vec<(String, Option<String>, Option<String>)> = got
        .iter()
        .flat_map(|s| {
            s.entries.iter().map(|e| {
                (
                    s.labels.to_string(),
                    e.structured_metadata.as_ref().map(Labels::to_string),
                    e.parsed.as_ref().map(Labels::to_string),
                )
            })
        })
        .collect();
    assert_eq!(
        entries,
        vec![
            (
                r#"{app="a", level="info", trace_id="t1"}"#.to_string(),
                Some(r#"{trace_id="t1"}"#.to_string()),
                Some(r#"{level="info"}"#.to_string())
            ),
            (
                r#"{app="a", level="warn"}"#.to_string(),
                None,
                Some(r#"{level="warn"}"#.to_string())
            ),
        ]
    );
}
