use super::*;

fn load(text: &str) -> Result<AgentConfig, ConfigError> {
    AgentConfig::from_source(&SourceText {
        path: "agent.toml".into(),
        text: text.to_owned(),
    })
}

const GOOD: &str = r#"
data_dir = "/tmp/agent"
[collector]
urls = ["http://127.0.0.1:7070"]
[[sources]]
name = "app"
paths = ["/var/log/app/*.log"]
topic = "app"
labels = { env = "prod" }
"#;

#[test]
fn good_config_loads() {
    let c = load(GOOD).unwrap();
    assert_eq!(c.sources.len(), 1);
    assert_eq!(c.sources[0].start_at, StartAt::Beginning);
    assert_eq!(c.batch.compression, Compression::Gzip { level: 1 });
    assert_eq!(c.sources[0].labels["env"], "prod");
}

#[test]
fn unknown_key_names_line_and_key() {
    let text = GOOD.replace("topic = \"app\"", "topic = \"app\"\nexlude = [\"x\"]");
    let err = load(&text).unwrap_err().to_string();
    assert!(
        err.starts_with("agent.toml:9:1: sources[0].exlude: unknown field `exlude`"),
        "{err}"
    );
}

#[test]
fn wrong_type_names_line_and_key() {
    let text = GOOD.replace("topic = \"app\"", "topic = 5");
    let err = load(&text).unwrap_err().to_string();
    assert!(
        err.starts_with("agent.toml:8:9: sources[0].topic: invalid type: integer `5`"),
        "{err}"
    );
}

#[test]
fn missing_key_is_named() {
    let text = GOOD.replace("topic = \"app\"\n", "");
    let err = load(&text).unwrap_err().to_string();
    assert!(err.contains("sources[0]: missing field `topic`"), "{err}");
    assert!(err.starts_with("agent.toml:5:1:"), "{err}");
}

#[test]
fn bad_glob_names_line_and_key() {
    let text = GOOD.replace("/var/log/app/*.log", "/var/log/[a-.log");
    let err = load(&text).unwrap_err().to_string();
    assert!(
        err.starts_with("agent.toml:7:10: sources[0].paths[0]: invalid glob \"/var/log/[a-.log\""),
        "{err}"
    );
}

#[test]
fn all_problems_are_collected() {
    let text = GOOD
        .replace("/var/log/app/*.log", "relative/*.log")
        .replace("topic = \"app\"", "topic = \"../etc\"\nstart_at = \"middle\"");
    let err = load(&text).unwrap_err();
    assert_eq!(err.problems().len(), 3, "{err}");
}

#[test]
fn shipped_example_config_loads() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs/agent.toml");
    let c = AgentConfig::load(&path).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.sources.len(), 3);
    assert!(c.sources[2].multiline.is_some() && c.sources[2].parse.is_some());
    assert!(c.metrics_listen.is_some());
    assert_eq!(c.collector_urls, vec!["http://127.0.0.1:7070".to_owned()]);
}

#[test]
fn codecs_are_chosen_by_name_and_unknown_ones_named() {
    for (name, expected) in [
        ("gzip", Compression::Gzip { level: 1 }),
        ("lz4", Compression::Lz4),
        ("snappy", Compression::Snappy),
        ("none", Compression::None),
    ] {
        let c = load(&format!("{GOOD}[batch]\ncompression = \"{name}\"\n")).unwrap();
        assert_eq!(c.batch.compression, expected, "{name}");
    }
    let err = load(&format!("{GOOD}[batch]\ncompression = \"zstd\"\n"))
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("agent.toml:11:15: batch.compression: zstd is not written by logpost"),
        "{err}"
    );
    let err = load(&format!("{GOOD}[batch]\ncompression = \"brotli\"\n"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("batch.compression: unknown codec \"brotli\""), "{err}");
}

#[test]
fn requests_in_flight_default_to_four_and_are_bounded() {
    assert_eq!(load(GOOD).unwrap().batch.max_in_flight, 4);
    let c = load(&format!("{GOOD}[batch]\nmax_in_flight = 1\n")).unwrap();
    assert_eq!(c.batch.max_in_flight, 1, "one at a time, as before");
    for bad in [0, 9] {
        let err = load(&format!("{GOOD}[batch]\nmax_in_flight = {bad}\n"))
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            format!("agent.toml:11:17: batch.max_in_flight: {bad} is out of range (1 to 8)")
        );
    }
}

#[test]
fn batch_linger() {
    let c = load(GOOD).unwrap();
    assert_eq!(c.batch.linger, Duration::from_millis(100));
    let c = load(&format!("{GOOD}[batch]\nlinger = \"0s\"\n")).unwrap();
    assert_eq!(c.batch.linger, Duration::ZERO, "send as soon as the pipeline is idle");
    let c = load(&format!("{GOOD}[batch]\nmax_wait = \"50ms\"\n")).unwrap();
    assert_eq!(
        c.batch.linger,
        Duration::from_millis(50),
        "the default never exceeds max_wait"
    );
    let err = load(&format!("{GOOD}[batch]\nmax_wait = \"500ms\"\nlinger = \"2s\"\n"))
        .unwrap_err()
        .to_string();
    assert_eq!(
        err,
        "agent.toml:12:10: batch.linger: 2s is longer than batch.max_wait (500ms)"
    );
}
