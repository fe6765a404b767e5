//! Issue 5: topic administration through `logpost topics` and the HTTP API.

use logpost_e2e::ingest::{PostError, batch, post};
use logpost_e2e::process::Collector;

fn run(c: &Collector, args: &[&str]) -> (i32, String, String) {
    let out = c.logpost(args);
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn issue_5_topics_create_describe_delete() {
    let tmp = tempfile::tempdir().unwrap();
    let c = Collector::start(
        tmp.path(),
        "[storage]\nauto_create_topics = false\n[topics.preset]\npartitions = 2\n",
    );
    // Topics named in the config exist from the start.
    let (code, out, _) = run(&c, &["topics"]);
    assert_eq!(code, 0);
    assert!(out.contains("preset"), "{out}");

    let (code, out, err) = run(
        &c,
        &["topics", "create", "web", "--partitions", "4", "--retention-age", "3d"],
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("created topic web"), "{out}");
    let (code, out, _) = run(&c, &["topics", "describe", "web", "--json"]);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["partitions"].as_array().unwrap().len(), 4);
    assert_eq!(v["retention_age"], "3d");

    // Records route by key: the same key always lands in the same partition.
    let client = logpost_e2e::http();
    let placed = post(&client, &c.url, "web", batch(&["a".to_owned()], 1)).unwrap();
    assert!(placed[0].partition < 4);

    let (code, _, err) = run(&c, &["topics", "create", "web"]);
    assert_eq!(code, 2, "duplicate create is a refused request");
    assert!(err.contains("already exists"), "{err}");
    for bad in ["../etc", "a/b", "..", &"x".repeat(250), "sp ace"] {
        let (code, _, err) = run(&c, &["topics", "create", bad]);
        assert_eq!(code, 2, "{bad}: {err}");
        assert!(err.contains("(400)"), "{bad}: {err}");
    }
    let (code, _, err) = run(&c, &["topics", "create", "many", "--partitions", "5000"]);
    assert_eq!(code, 2);
    assert!(err.contains("out of range"), "{err}");

    // Auto-creation is off: ingest into an unknown topic is refused.
    match post(&client, &c.url, "nosuch", batch(&["x".to_owned()], 1)) {
        Err(PostError::Status(404, msg)) => assert!(msg.contains("auto_create_topics is off"), "{msg}"),
        other => panic!("expected 404, got {other:?}"),
    }
    // And a hostile topic name in the ingest path is a 400.
    match post(&client, &c.url, "..", batch(&["x".to_owned()], 1)) {
        Err(PostError::Status(400, _)) | Err(PostError::Status(404, _)) => {}
        other => panic!("expected a refusal, got {other:?}"),
    }

    let (code, out, _) = run(&c, &["topics", "delete", "web"]);
    assert_eq!(code, 0);
    assert!(out.contains("deleted topic web"));
    let (code, _, err) = run(&c, &["topics", "describe", "web"]);
    assert_eq!(code, 2);
    assert!(err.contains("does not exist"), "{err}");
    assert!(!tmp.path().join("data/topics/web").exists(), "data left behind");
}
