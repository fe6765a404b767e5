//! `[auth]`: bearer tokens and their scopes, raw and validated.
//!
//! Secrets are read here, at start-up and by `validate`, so that a missing
//! token file stops the collector with its name rather than failing
//! requests later. The tokens themselves never appear in errors or logs;
//! a token is known by its `name`.

use std::path::PathBuf;

use logpost_shared::config::Problems;
use logpost_shared::config::secret::{check_token, read_token_env, read_token_file};
use serde::Deserialize;
use toml::Spanned;

/// What a token may do. `Admin` includes `Read` and `Ingest`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// Send records: agent batches, Loki pushes, stream lookups.
    Ingest,
    /// Read topics, records, labels; consume.
    Read,
    /// Create and delete topics, and anything not classified.
    Admin,
}

impl Scope {
    /// The name used in configs and error messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Ingest => "ingest",
            Scope::Read => "read",
            Scope::Admin => "admin",
        }
    }
}

/// `[auth]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthToml {
    /// Accepted tokens: `[[auth.tokens]]` tables. With none, every request
    /// is served without a token, and `http.listen` must be a loopback
    /// address unless `allow_anonymous_remote` is set.
    #[serde(default)]
    pub tokens: Vec<Spanned<TokenToml>>,
    /// Serve a non-loopback address without tokens. Default false: an
    /// open collector on a network lets anyone read and delete its data.
    #[serde(default)]
    pub allow_anonymous_remote: bool,
}

/// One `[[auth.tokens]]` table: exactly one of `token`, `token_file`, `token_env`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenToml {
    /// Name of the token's holder, for logs and metrics (never the secret).
    pub name: String,
    /// The token itself (prefer `token_file` so the config can be world-readable).
    pub token: Option<String>,
    /// File whose first line is the token.
    pub token_file: Option<PathBuf>,
    /// Environment variable holding the token.
    pub token_env: Option<String>,
    /// Any of `"ingest"`, `"read"`, `"admin"` (admin includes the others).
    pub scopes: Vec<Scope>,
}

/// A validated token.
#[derive(Clone)]
pub struct Token {
    pub name: String,
    pub secret: Vec<u8>,
    pub scopes: Vec<Scope>,
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the secret, even in debug output.
        f.debug_struct("Token")
            .field("name", &self.name)
            .field("scopes", &self.scopes)
            .finish_non_exhaustive()
    }
}

impl Token {
    /// Whether the token grants `needed`.
    pub fn allows(&self, needed: Scope) -> bool {
        self.scopes.iter().any(|&s| s == needed || s == Scope::Admin)
    }
}

/// `[auth]` after validation.
#[derive(Debug, Clone, Default)]
pub struct AuthSettings {
    pub tokens: Vec<Token>,
    pub allow_anonymous_remote: bool,
}

impl AuthSettings {
    /// Whether requests must carry a token.
    pub fn enabled(&self) -> bool {
        !self.tokens.is_empty()
    }
}

/// Validates `[auth]`, reading token files and variables.
pub fn validate_auth(raw: &AuthToml, problems: &mut Problems<'_>) -> AuthSettings {
    let mut tokens = Vec::new();
    let mut names = std::collections::HashSet::new();
    for (i, t) in raw.tokens.iter().enumerate() {
        let key = format!("auth.tokens[{i}]");
        let tt = t.get_ref();
        if !names.insert(tt.name.clone()) {
            problems.at(
                t.span(),
                format!("{key}.name"),
                format!("duplicate token name {:?}", tt.name),
            );
        }
        if tt.scopes.is_empty() {
            problems.at(
                t.span(),
                format!("{key}.scopes"),
                "at least one scope is required (\"ingest\", \"read\", \"admin\")",
            );
        }
        let secret = match (&tt.token, &tt.token_file, &tt.token_env) {
            (Some(s), None, None) => check_token(s).map(|()| s.clone()),
            (None, Some(path), None) => read_token_file(path),
            (None, None, Some(var)) => read_token_env(var),
            _ => Err("give exactly one of `token`, `token_file`, `token_env`".to_owned()),
        };
        match secret {
            Ok(s) => tokens.push(Token {
                name: tt.name.clone(),
                secret: s.into_bytes(),
                scopes: tt.scopes.clone(),
            }),
            Err(e) => problems.at(t.span(), key, e),
        }
    }
    let mut seen = std::collections::HashSet::new();
    if tokens.iter().any(|t| !seen.insert(t.secret.clone())) {
        problems.whole(
            "auth.tokens",
            "two tokens have the same secret; each holder needs its own",
        );
    }
    AuthSettings {
        tokens,
        allow_anonymous_remote: raw.allow_anonymous_remote,
    }
}
