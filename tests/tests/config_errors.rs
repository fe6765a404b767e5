//! Issue 3: a bad config fails at start with a message naming the file,
//! the line and the key, and exit code 2.

use std::process::Command;

use logpost_e2e::process::bin;

fn run(binary: &str, config: &str) -> (i32, String) {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("bad.toml");
    std::fs::write(&path, config).unwrap();
    let out = Command::new(bin(binary)).arg("--config").arg(&path).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).replace(&path.display().to_string(), "bad.toml");
    (out.status.code().unwrap_or(-1), stderr)
}

const AGENT: &str = r#"data_dir = "/tmp/never-used"
[collector]
urls = ["http://127.0.0.1:7070"]
[[sources]]
name = "app"
paths = ["/var/log/app/*.log"]
topic = "app"
"#;

#[test]
fn issue_3_agent_config_errors_name_file_line_key() {
    let cases = [
        (
            "unknown key",
            AGENT.replace("topic = \"app\"", "topic = \"app\"\nlabls = {}"),
            "bad.toml:8:1: sources[0].labls: unknown field `labls`",
        ),
        (
            "wrong type",
            AGENT.replace("topic = \"app\"", "topic = 12"),
            "bad.toml:7:9: sources[0].topic: invalid type: integer `12`",
        ),
        (
            "missing key",
            AGENT.replace("topic = \"app\"\n", ""),
            "sources[0]: missing field `topic`",
        ),
        (
            "bad glob",
            AGENT.replace("*.log", "[x-.log"),
            "bad.toml:6:10: sources[0].paths[0]: invalid glob \"/var/log/app/[x-.log\"",
        ),
    ];
    for (what, config, want) in cases {
        let (code, stderr) = run("logpost-agent", &config);
        assert_eq!(code, 2, "{what}: {stderr}");
        assert!(stderr.contains(want), "{what}: {stderr:?} does not contain {want:?}");
    }
    let (code, stderr) = run("logpost-agent", &AGENT.replace("topic = \"app\"\n", ""));
    assert_eq!(code, 2);
    assert!(
        stderr.contains("bad.toml:4:1:"),
        "missing key names the table's line: {stderr}"
    );
}

#[test]
fn issue_3_collector_config_errors_name_file_line_key() {
    let base = "data_dir = \"/tmp/never-used\"\n[storage]\nfsync = \"always\"\n";
    let cases = [
        (
            "unknown key",
            base.replace("fsync =", "fsnyc ="),
            "bad.toml:3:1: storage.fsnyc: unknown field `fsnyc`",
        ),
        (
            "wrong type",
            base.replace("\"always\"", "3"),
            "bad.toml:3:9: storage.fsync: invalid type: integer `3`",
        ),
        ("missing key", "[storage]\n".to_owned(), "missing field `data_dir`"),
        (
            "bad value",
            base.replace("always", "sometimes"),
            "bad.toml:3:9: storage.fsync: unknown policy \"sometimes\"",
        ),
    ];
    for (what, config, want) in cases {
        let (code, stderr) = run("logpost-collector", &config);
        assert_eq!(code, 2, "{what}: {stderr}");
        assert!(stderr.contains(want), "{what}: {stderr:?} does not contain {want:?}");
    }
}
