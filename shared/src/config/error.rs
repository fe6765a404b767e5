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

/// Deserializes `source` as TOML, naming line, column and key path on error.
///
/// # Errors
/// [`ConfigError::Invalid`] with one problem: toml stops at the first.
pub fn parse_toml<T: DeserializeOwned>(source: &SourceText) -> Result<T, ConfigError> {
    let fail = |span: Option<Range<usize>>, key: String, message: String| {
        let (line, column) = match span {
            Some(span) => {
                let (l, c) = source.line_col(span.start);
                (Some(l), Some(c))
            }
            None => (None, None),
        };
        ConfigError::Invalid {
            path: source.path.clone(),
            problems: vec![Problem {
                line,
                column,
                key,
                message,
            }],
        }
    };
    let deserializer = toml::Deserializer::parse(&source.text)
        .map_err(|e| fail(e.span(), String::new(), e.message().trim().to_owned()))?;
    serde_path_to_error::deserialize(deserializer).map_err(|e| {
        let key = clean_key_path(&e.path().to_string());
        let inner = e.inner();
        fail(inner.span(), key, inner.message().trim().to_owned())
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
