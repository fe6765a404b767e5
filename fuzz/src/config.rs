//! `agent.toml` and `collector.toml` as people write them, through the
//! same `from_source` that `validate` and start-up run. Checks: every
//! problem reported points inside the file (line and column), renders
//! with the file's name, and a config is judged the same way twice.

use std::path::PathBuf;

use logpost_agent::config::AgentConfig;
use logpost_collector::config::CollectorConfig;
use logpost_shared::config::{ConfigError, SourceText};

/// An agent config.
pub fn agent(data: &[u8]) {
    let Some(source) = source_of(data, "agent.toml") else {
        return;
    };
    let first = AgentConfig::from_source(&source).map(drop);
    check_problems(&source, &first);
    let second = AgentConfig::from_source(&source).map(drop);
    assert_eq!(render(&first), render(&second), "judged differently twice");
}

/// A collector config.
pub fn collector(data: &[u8]) {
    let Some(source) = source_of(data, "collector.toml") else {
        return;
    };
    let first = CollectorConfig::from_source(&source).map(drop);
    check_problems(&source, &first);
    let second = CollectorConfig::from_source(&source).map(drop);
    assert_eq!(render(&first), render(&second), "judged differently twice");
}

fn source_of(data: &[u8], name: &str) -> Option<SourceText> {
    Some(SourceText {
        path: PathBuf::from(format!("/fuzz/{name}")),
        text: std::str::from_utf8(data).ok()?.to_owned(),
    })
}

fn render(result: &Result<(), ConfigError>) -> String {
    match result {
        Ok(()) => "ok".to_owned(),
        Err(e) => e.to_string(),
    }
}

fn check_problems(source: &SourceText, result: &Result<(), ConfigError>) {
    let Err(e) = result else { return };
    let lines = source.text.split('\n').count();
    assert!(
        !e.problems().is_empty() || matches!(e, ConfigError::Read { .. }),
        "an error without a problem"
    );
    for p in e.problems() {
        if let Some(line) = p.line {
            assert!((1..=lines).contains(&line), "problem at line {line} of {lines}: {p}");
            let text = source.text.split('\n').nth(line - 1).unwrap_or_default();
            let col = p.column.unwrap_or(1);
            assert!(
                col >= 1 && col <= text.chars().count() + 1,
                "problem at column {col} of {text:?}: {p}"
            );
        }
        assert!(!p.message.is_empty(), "a problem without a message");
    }
    let shown = e.to_string();
    assert!(
        shown.starts_with(&source.path.display().to_string()),
        "error does not name the file: {shown}"
    );
}
