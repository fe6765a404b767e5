//! Log queries: direction, ranges, the bounded heap, error labels.

use super::*;

fn lines(streams: &Streams) -> Vec<(String, Vec<(i64, String)>)> {
    streams
        .iter()
        .map(|s| {
            (
                s.labels.to_string(),
                s.entries
                    .iter()
                    .map(|e| (e.timestamp_ns / S, String::from_utf8_lossy(&e.line).into_owned()))
                    .collect(),
            )
        })
        .collect()
}

#[test]
fn logs_backward_returns_newest_grouped_by_stream() {
    let q = log_expr(r#"{topic="web"}"#);
    for reversed in [false, true] {
        let mut src = source();
        src.reversed = reversed;
        let got = eval_logs(&q, 0, 10 * S, 2, Direction::Backward, &mut src).unwrap();
        assert_eq!(
            lines(&got),
            vec![
                (API_L.to_string(), vec![(4, L4.to_string())]),
                (WEB_L.to_string(), vec![(5, L5.to_string())]),
            ]
        );
    }
}

#[test]
fn logs_forward_returns_oldest_in_order() {
    let q = log_expr(r#"{topic="web"}"#);
    let mut src = source();
    src.reversed = true;
    let got = eval_logs(&q, 0, 10 * S, 2, Direction::Forward, &mut src).unwrap();
    assert_eq!(
        lines(&got),
        vec![(API_L.to_string(), vec![(1, L1.to_string()), (2, L2.to_string())])]
    );
}

#[test]
fn logs_range_is_half_open_and_pipeline_applies() {
    let q = log_expr(r#"{app="api"}"#);
    let got = eval_logs(&q, 2 * S, 4 * S, 10, Direction::Backward, &mut source()).unwrap();
    assert_eq!(lines(&got), vec![(API_L.to_string(), vec![(2, L2.to_string())])]);

    let q = log_expr(r#"{topic="web"} | logfmt | level="error" | keep app, status | line_format "{{.status}}""#);
    let got = eval_logs(&q, 0, 10 * S, 10, Direction::Backward, &mut source()).unwrap();
    assert_eq!(
        lines(&got),
        vec![
            (r#"{app="api", status="500"}"#.to_string(), vec![(2, "500".to_string())]),
            (r#"{app="api", status="503"}"#.to_string(), vec![(4, "503".to_string())]),
        ]
    );
    assert!(
        eval_logs(&q, 0, 10 * S, 0, Direction::Backward, &mut source())
            .unwrap()
            .is_empty()
    );
}

#[test]
fn logs_heap_stays_bounded() {
    let mut src = MemSource::new();
    for i in 0..10_000i64 {
        src.push(i, API, &format!("line {i}"));
    }
    let q = log_expr(r#"{app="api"} |= "line""#);
    let got = eval_logs(&q, 0, 20_000, 3, Direction::Backward, &mut src).unwrap();
    let ts: Vec<i64> = got[0].entries.iter().map(|e| e.timestamp_ns).collect();
    assert_eq!(ts, vec![9_999, 9_998, 9_997]);
    let got = eval_logs(&q, 0, 20_000, 3, Direction::Forward, &mut src).unwrap();
    let ts: Vec<i64> = got[0].entries.iter().map(|e| e.timestamp_ns).collect();
    assert_eq!(ts, vec![0, 1, 2]);
}

#[test]
fn logs_keep_error_labels() {
    let q = log_expr(r#"{app="web"} | json"#);
    let got = eval_logs(&q, 0, 10 * S, 10, Direction::Backward, &mut source()).unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].labels.get("__error__"), Some("JSONParserErr"));
    assert_eq!(got[0].entries.len(), 2);
}
