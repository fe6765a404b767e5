//! Config errors with their place: `agent.toml:14:11: sources[1].paths[0]: …`.
//!
//! toml's own errors (syntax, unknown key, wrong type, missing key) carry a
//! byte span, and `serde_path_to_error` supplies the key path; checks made
//! after parsing use `toml::Spanned` fields to keep their place.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

/// A config file's text, kept to turn byte spans into lines and columns.
#[derive(Debug, Clone)]
pub struct SourceText {
    pub path: PathBuf,
    pub text: String,
}

impl SourceText {
    /// Line and column (both 1-based) of byte `offset`.
    pub fn line_col(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let before = self.text.get(..offset).unwrap_or_default();
        let line = before.matches('\n').count() + 1;
        let col = before.rfind('\n').map_or(before.chars().count(), |nl| {
            before.get(nl + 1..).unwrap_or_default().chars().count()
        }) + 1;
        (line, col)
    }
}

/// One mistake in a config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// 1-based line, when known.
    pub line: Option<usize>,
    /// 1-based column, when known.
    pub column: Option<usize>,
    /// Key path such as `sources[1].paths[0]`; empty for the whole document.
    pub key: String,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(line) = self.line {
            write!(f, "{line}:")?;
            if let Some(col) = self.column {
                write!(f, "{col}:")?;
            }
            f.write_str(" ")?;
        }
        if !self.key.is_empty() {
            write!(f, "{}: ", self.key)?;
        }
        f.write_str(&self.message)
    }
}

/// Collects validation problems against one source text.
#[derive(Debug)]
pub struct Problems<'s> {
    source: &'s SourceText,
    list: Vec<Problem>,
}

impl<'s> Problems<'s> {
    /// An empty collection for `source`.
    pub fn new(source: &'s SourceText) -> Self {
        Self {
            source,
            list: Vec::new(),
        }
    }

    /// Records a problem at a byte span of the source (from `toml::Spanned`).
    pub fn at(&mut self, span: Range<usize>, key: impl Into<String>, message: impl Into<String>) {
        let (line, col) = self.source.line_col(span.start);
        self.list.push(Problem {
            line: Some(line),
            column: Some(col),
            key: key.into(),
            message: message.into(),
        });
    }

    /// Records a problem without a known place.
    pub fn whole(&mut self, key: impl Into<String>, message: impl Into<String>) {
        self.list.push(Problem {
            line: None,
            column: None,
            key: key.into(),
            message: message.into(),
        });
    }

    /// Whether nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// `Ok(value)` if nothing was recorded, else every problem.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] listing the problems.
    pub fn finish<T>(self, value: T) -> Result<T, ConfigError> {
        if self.list.is_empty() {
            Ok(value)
        } else {
            Err(ConfigError::Invalid {
                path: self.source.path.clone(),
                problems: self.list,
            })
        }
    }
}

/// A config that could not be read or is wrong.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{}: cannot read config: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}", render_invalid(path, problems))]
    Invalid { path: PathBuf, problems: Vec<Problem> },
}

impl ConfigError {
    /// The problems found, empty for a read error.
    pub fn problems(&self) -> &[Problem] {
        match self {
            ConfigError::Read { .. } => &[],
            ConfigError::Invalid { problems, .. } => problems,
        }
    }
}

fn render_invalid(path: &Path, problems: &[Problem]) -> String {
    let mut out = String::new();
    for (i, p) in problems.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        out.push_str(&format!("{}:{p}", path.display()));
    }
    out
}

/// Reads a config file into a [`SourceText`].
///
/// # Errors
/// [`ConfigError::Read`] naming the path.
pub fn read_config(path: &Path) -> Result<SourceText, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    Ok(SourceText {
        path: path.to_owned(),
        text,
    })
}

/// Most unknown keys one load names (each costs a parse of the file).
const MAX_UNKNOWN_KEYS: usize = 32;

/// One failed deserialization: where, which key, what.
struct Failure {
    span: Option<Range<usize>>,
    key: String,
    message: String,
    /// toml's own syntax error (nothing was deserialized).
    syntax: bool,
}

fn deserialize<T: DeserializeOwned>(text: &str) -> Result<T, Failure> {
    let deserializer = toml::Deserializer::parse(text).map_err(|e| Failure {
        span: e.span(),
        key: String::new(),
        message: e.message().trim().to_owned(),
        syntax: true,
    })?;
    serde_path_to_error::deserialize(deserializer).map_err(|e| {
        let inner = e.inner();
        Failure {
            span: inner.span(),
            key: clean_key_path(&e.path().to_string()),
            message: inner.message().trim().to_owned(),
            syntax: false,
        }
    })
}

/// The bytes of the entry (key through value) whose key starts at `offset`.
fn entry_at(table: &toml::de::DeTable<'_>, offset: usize) -> Option<Range<usize>> {
    for (key, value) in table.iter() {
        if key.span().start == offset {
            return Some(key.span().start..value.span().end.max(key.span().end));
        }
        if let Some(found) = value_entry_at(value.get_ref(), offset) {
            return Some(found);
        }
    }
    None
}

fn value_entry_at(value: &toml::de::DeValue<'_>, offset: usize) -> Option<Range<usize>> {
    match value {
        toml::de::DeValue::Table(t) => entry_at(t, offset),
        toml::de::DeValue::Array(a) => a.iter().find_map(|v| value_entry_at(v.get_ref(), offset)),
        _ => None,
    }
}

/// Deserializes `source` as TOML, naming line, column and key path on error.
///
/// serde stops at the first unknown key; so that a file with several is
/// fixed in one go (what `validate` promises), each unknown key found is
/// blanked out of a copy of the text and the copy read again, naming the
/// next problem, until one that is not an unknown key (or none) is left.
///
/// # Errors
/// [`ConfigError::Invalid`]: every unknown key, then at most one other problem.
pub fn parse_toml<T: DeserializeOwned>(source: &SourceText) -> Result<T, ConfigError> {
    let first = match deserialize(&source.text) {
        Ok(value) => return Ok(value),
        Err(f) => f,
    };
    let problem = |f: &Failure| {
        let (line, column) = match &f.span {
            Some(span) => {
                let (l, c) = source.line_col(span.start);
                (Some(l), Some(c))
            }
            None => (None, None),
        };
        Problem {
            line,
            column,
            key: f.key.clone(),
            message: f.message.clone(),
        }
    };
    let mut problems = vec![problem(&first)];
    let mut text = source.text.clone();
    let mut last = first;
    for _ in 0..MAX_UNKNOWN_KEYS {
        if last.syntax || !last.message.starts_with("unknown field") {
            break;
        }
        let Some(start) = last.span.as_ref().map(|s| s.start) else {
            break;
        };
        let entry = match toml::de::DeTable::parse(&text) {
            Ok(table) => entry_at(table.get_ref(), start),
            Err(_) => None,
        };
        let Some(entry) = entry else { break };
        // Spaces, byte for byte, keep every other byte where it was (the
        // places named); the entry starts and ends at char boundaries.
        let mut bytes = text.into_bytes();
        for b in bytes.get_mut(entry).unwrap_or_default() {
            if *b != b'\n' {
                *b = b' ';
            }
        }
        let Ok(blanked) = String::from_utf8(bytes) else { break };
        text = blanked;
        match deserialize::<T>(&text) {
            Ok(_) => break,
            // A blanking that broke the syntax would name a problem the
            // file does not have, and the same problem again is no
            // progress: stop at what was found.
            Err(f) if f.syntax || (f.key == last.key && f.message == last.message) => break,
            Err(f) => {
                problems.push(problem(&f));
                last = f;
            }
        }
    }
    Err(ConfigError::Invalid {
        path: source.path.clone(),
        problems,
    })
}

/// `serde_path_to_error` paths pass through `toml::Spanned`'s private field
/// names; users should see `sources[0].topic`, not its internals.
fn clean_key_path(path: &str) -> String {
    if path == "." {
        return String::new();
    }
    path.split('.')
        .filter(|seg| !seg.starts_with("$__"))
        .collect::<Vec<_>>()
        .join(".")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Root {
        name: String,
        #[serde(default)]
        inner: Option<Inner>,
        #[serde(default)]
        items: Vec<Inner>,
    }

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Inner {
        #[serde(default)]
        size: u32,
    }

    fn errors(text: &str) -> Vec<String> {
        let source = SourceText {
            path: "x.toml".into(),
            text: text.to_owned(),
        };
        match parse_toml::<Root>(&source) {
            Ok(r) => panic!("{r:?} was accepted"),
            Err(e) => e.to_string().lines().map(str::to_owned).collect(),
        }
    }

    /// Issue 28: serde stops at the first unknown key, so `validate`
    /// named one mistake a run; every unknown key is named now, each at
    /// its place, then the first other problem.
    #[test]
    fn issue_28_every_unknown_key_is_named() {
        let got = errors(
            "name = \"a\"\nnmae = [\n  \"\u{fc}\",\n]\n[inner]\nsise = 1\n[[items]]\nsize = 2\n[[items]]\nszie = 3\n",
        );
        assert_eq!(got.len(), 3, "{got:#?}");
        for want in [
            "x.toml:2:1: nmae: unknown field `nmae`",
            "x.toml:6:1: inner.sise: unknown field `sise`",
            "x.toml:10:1: items[1].szie: unknown field `szie`",
        ] {
            assert!(got.iter().any(|e| e.starts_with(want)), "{want} not in {got:#?}");
        }
        // A misspelt required key: the misspelling, then what is missing.
        let got = errors("nmae = \"a\"\n");
        assert_eq!(got.len(), 2, "{got:#?}");
        assert!(got[0].starts_with("x.toml:1:1: nmae: unknown field `nmae`"), "{got:#?}");
        assert!(got[1].contains("missing field `name`"), "{got:#?}");
        // A syntax error is one problem, as before.
        assert_eq!(errors("name = \n").len(), 1);
    }
}
