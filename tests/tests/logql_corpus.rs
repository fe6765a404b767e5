//! Issue 6: every selector, line filter, parser and metric form against
//! the corpus loaded as eight sources (label `source`), through the real
//! `logpost query` command (log queries) and Loki's instant query API
//! (metric queries); each answer is compared with a computation over the
//! same files made here with plain string and regex code.

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use logpost_e2e::corpus::{LINE_SPACING_MS, Loaded, load};
use logpost_e2e::process::Collector;
use serde_json::Value;

fn now_ms() -> i64 {
    i64::try_from(SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis()).unwrap()
}

/// (source, line) of every record a log query returns, sorted.
fn query(c: &Collector, q: &str) -> Vec<(String, String)> {
    let out = c.logpost(&["query", q, "--limit", "0", "--output", "json"]);
    assert!(
        matches!(out.status.code(), Some(0 | 1)),
        "{q}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut got: Vec<(String, String)> = out
        .stdout
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| {
            let v: Value = serde_json::from_slice(l).unwrap();
            (
                v["headers"]["source"].as_str().unwrap().to_owned(),
                v["line"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    got.sort();
    got
}

fn expect(files: &[Loaded], keep: impl Fn(&str, &str) -> Option<String>) -> Vec<(String, String)> {
    let mut want: Vec<(String, String)> = files
        .iter()
        .flat_map(|f| f.lines.iter().map(move |(_, l)| (f.source.clone(), l.clone())))
        .filter_map(|(s, l)| keep(&s, &l).map(|out| (s, out)))
        .collect();
    want.sort();
    want
}

/// An instant metric query at `time_ms`: series labels → value.
fn instant(c: &Collector, q: &str, time_ms: i64) -> BTreeMap<String, f64> {
    let enc: String = q
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    let url = format!("{}/loki/api/v1/query?query={enc}&time={}", c.url, time_ms * 1_000_000);
    let resp = reqwest::blocking::Client::new().get(url).send().unwrap();
    let status = resp.status().as_u16();
    let body = resp.text().unwrap();
    assert_eq!(status, 200, "{q}: {body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["data"]["resultType"], "vector", "{q}: {v}");
    v["data"]["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let labels: Vec<String> = s["metric"]
                .as_object()
                .unwrap()
                .iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap()))
                .collect();
            (
                labels.join(","),
                s["value"][1].as_str().unwrap().parse::<f64>().unwrap(),
            )
        })
        .collect()
}

/// What a case keeps of (source, line): the line it should print, if any.
type Keep = Box<dyn Fn(&str, &str) -> Option<String>>;

#[test]
fn issue_6_every_logql_form_against_the_corpus() {
    let tmp = tempfile::tempdir().unwrap();
    let c = Collector::start(tmp.path(), "");
    let base_ms = (now_ms() - 20 * 60_000) / 1000 * 1000;
    let files = load(&c.url, "corpus", base_ms);
    let longest = files.iter().map(|f| f.lines.len() as i64).max().unwrap();
    let at = base_ms + longest * LINE_SPACING_MS + 1000;

    // Selectors, line filters, chains, parsers, line_format.
    let digits4 = |l: &str| l.as_bytes().windows(4).any(|w| w.iter().all(u8::is_ascii_digit));
    let cases: Vec<(&str, Keep)> = vec![
        ("corpus", Box::new(|_, l| Some(l.to_owned()))),
        (
            r#"{topic="corpus", source="OpenSSH"}"#,
            Box::new(|s, l| (s == "OpenSSH").then(|| l.to_owned())),
        ),
        (
            r#"{topic="corpus", source!="OpenSSH"}"#,
            Box::new(|s, l| (s != "OpenSSH").then(|| l.to_owned())),
        ),
        (
            r#"{topic="corpus", source=~"HDFS|Spark"}"#,
            Box::new(|s, l| (s == "HDFS" || s == "Spark").then(|| l.to_owned())),
        ),
        (
            r#"{topic="corpus", source!~"H.*"}"#,
            Box::new(|s, l| (!s.starts_with('H')).then(|| l.to_owned())),
        ),
        (
            r#"corpus |= "error""#,
            Box::new(|_, l| l.contains("error").then(|| l.to_owned())),
        ),
        (
            r#"corpus != "INFO""#,
            Box::new(|_, l| (!l.contains("INFO")).then(|| l.to_owned())),
        ),
        (
            r#"corpus |~ "(?i)fail(ed|ure)""#,
            Box::new(|_, l| {
                let l2 = l.to_lowercase();
                (l2.contains("failed") || l2.contains("failure")).then(|| l.to_owned())
            }),
        ),
        (
            r#"corpus !~ "[0-9]{4}""#,
            Box::new(move |_, l| (!digits4(l)).then(|| l.to_owned())),
        ),
        (
            r#"corpus |= `Failed` != "invalid user" |= "root""#,
            Box::new(|_, l| {
                (l.contains("Failed") && !l.contains("invalid user") && l.contains("root")).then(|| l.to_owned())
            }),
        ),
        (
            r#"{topic="corpus", source="OpenSSH"} | regexp "from (?P<ip>[0-9.]+) port" | ip="173.234.31.186""#,
            Box::new(|s, l| (s == "OpenSSH" && l.contains("from 173.234.31.186 port")).then(|| l.to_owned())),
        ),
        (
            r#"{topic="corpus", source="OpenSSH"} | pattern "<_> sshd[<pid>]: <_>" | pid="24200""#,
            Box::new(|s, l| (s == "OpenSSH" && l.contains(" sshd[24200]: ")).then(|| l.to_owned())),
        ),
        (
            r#"{topic="corpus", source="HDFS"} |= "Receiving" | line_format "got {{.source}}""#,
            Box::new(|s, l| (s == "HDFS" && l.contains("Receiving")).then(|| "got HDFS".to_owned())),
        ),
        (
            r#"{topic="corpus", source="Linux"} | json | __error__="JSONParserErr""#,
            Box::new(|s, l| (s == "Linux").then(|| l.to_owned())),
        ),
    ];
    for (q, keep) in &cases {
        let want = expect(&files, keep);
        assert!(!want.is_empty(), "{q}: the case must select something");
        let got = query(&c, q);
        assert_eq!(got.len(), want.len(), "{q}");
        assert!(got == want, "{q}: same count, different lines");
    }

    // Metric forms at one instant whose 1h window holds every line.
    let count = |pred: &dyn Fn(&str, &str) -> bool| -> BTreeMap<String, f64> {
        let mut m = BTreeMap::new();
        for f in &files {
            let n = f.lines.iter().filter(|(_, l)| pred(&f.source, l)).count() as f64;
            if n > 0.0 {
                m.insert(f.source.clone(), n);
            }
        }
        m
    };
    let by_source = |m: &BTreeMap<String, f64>| -> BTreeMap<String, f64> {
        m.iter().map(|(k, v)| (format!("source={k}"), *v)).collect()
    };
    let errors = count(&|_, l| l.contains("error"));
    assert_eq!(
        instant(
            &c,
            r#"sum by (source) (count_over_time({topic="corpus"} |= "error" [1h]))"#,
            at
        ),
        by_source(&errors)
    );
    let total: f64 = files.iter().map(|f| f.lines.len() as f64).sum();
    assert_eq!(
        instant(&c, r#"sum(count_over_time({topic="corpus"}[1h]))"#, at),
        BTreeMap::from([(String::new(), total)])
    );
    let bytes: BTreeMap<String, f64> = files
        .iter()
        .map(|f| (f.source.clone(), f.lines.iter().map(|(_, l)| l.len() as f64).sum()))
        .collect();
    assert_eq!(
        instant(&c, r#"sum by (source) (bytes_over_time({topic="corpus"}[1h]))"#, at),
        by_source(&bytes)
    );
    let hdfs = files.iter().find(|f| f.source == "HDFS").unwrap().lines.len() as f64;
    let rate = instant(&c, r#"sum(rate({topic="corpus", source="HDFS"}[1h]))"#, at);
    assert!((rate[""] - hdfs / 3600.0).abs() < 1e-9, "{rate:?}");
    let sum_bytes_rate = instant(&c, r#"sum(bytes_rate({topic="corpus"}[1h]))"#, at);
    assert!((sum_bytes_rate[""] - bytes.values().sum::<f64>() / 3600.0).abs() < 1e-6);
    let per: Vec<f64> = errors.values().copied().collect();
    let agg = |op: &str| {
        instant(
            &c,
            &format!(r#"{op}(sum by (source) (count_over_time({{topic="corpus"}} |= "error" [1h])))"#),
            at,
        )[""]
    };
    assert_eq!(agg("max"), per.iter().copied().fold(f64::MIN, f64::max));
    assert_eq!(agg("min"), per.iter().copied().fold(f64::MAX, f64::min));
    assert_eq!(agg("count"), per.len() as f64);
    assert!((agg("avg") - per.iter().sum::<f64>() / per.len() as f64).abs() < 1e-9);
    let top = instant(
        &c,
        r#"topk(2, sum by (source) (count_over_time({topic="corpus"} |= "error" [1h])))"#,
        at,
    );
    let mut sorted = per.clone();
    sorted.sort_by(|a, b| b.total_cmp(a));
    let mut top_values: Vec<f64> = top.values().copied().collect();
    top_values.sort_by(|a, b| b.total_cmp(a));
    assert_eq!(top_values, sorted[..2.min(sorted.len())].to_vec());
    let without = instant(
        &c,
        r#"sum without (topic) (count_over_time({topic="corpus", source="Spark"}[1h]))"#,
        at,
    );
    let spark = files.iter().find(|f| f.source == "Spark").unwrap().lines.len() as f64;
    assert_eq!(without, BTreeMap::from([("source=Spark".to_owned(), spark)]));
    assert_eq!(
        instant(&c, "vector(3) * 2 + vector(1)", at),
        BTreeMap::from([(String::new(), 7.0)])
    );
}
