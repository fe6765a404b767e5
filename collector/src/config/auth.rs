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
    /// A cluster's nodes among themselves: followers' fetches, and the
    /// writes and reads nodes pass to each other.
    Cluster,
}

impl Scope {
    /// The name used in configs and error messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Ingest => "ingest",
            Scope::Read => "read",
            Scope::Admin => "admin",
            Scope::Cluster => "cluster",
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
    /// Any of `"ingest"`, `"read"`, `"admin"` (admin includes ingest and
    /// read), `"cluster"` (a cluster's own nodes; includes ingest and read).
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
        self.scopes.iter().any(|&s| {
            s == needed
                || (s == Scope::Admin && needed != Scope::Cluster)
                || (s == Scope::Cluster && matches!(needed, Scope::Ingest | Scope::Read))
        })
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
                "at least one scope is required (\"ingest\", \"read\", \"admin\", \"cluster\")",
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

#[cfg(test)]
mod tests {
    use crate::config::CollectorConfig;
    use logpost_shared::config::SourceText;

    fn load(text: &str) -> Result<CollectorConfig, String> {
        CollectorConfig::from_source(&SourceText {
            path: "collector.toml".into(),
            text: text.to_owned(),
        })
        .map_err(|e| e.to_string())
    }

    #[test]
    fn tokens_need_one_source_a_scope_and_length() {
        let c = load("data_dir = \"/x\"\n[[auth.tokens]]\nname = \"a\"\ntoken = \"0123456789abcdef\"\nscopes = [\"ingest\", \"read\"]\n")
            .unwrap();
        assert_eq!(c.auth.tokens.len(), 1);
        assert!(
            !format!("{:?}", c.auth).contains("0123456789abcdef"),
            "debug output hides secrets"
        );
        let err = load("data_dir = \"/x\"\n[[auth.tokens]]\nname = \"a\"\ntoken = \"short\"\nscopes = [\"read\"]\n")
            .unwrap_err();
        assert!(err.contains("auth.tokens[0]: token is 5 characters"), "{err}");
        let err = load("data_dir = \"/x\"\n[[auth.tokens]]\nname = \"a\"\nscopes = [\"read\"]\n").unwrap_err();
        assert!(
            err.contains("exactly one of `token`, `token_file`, `token_env`"),
            "{err}"
        );
        let err = load(
            "data_dir = \"/x\"\n[[auth.tokens]]\nname = \"a\"\ntoken_file = \"/nonexistent/t\"\nscopes = [\"read\"]\n",
        )
        .unwrap_err();
        assert!(err.contains("/nonexistent/t: cannot read token file"), "{err}");
        let err = load(
            "data_dir = \"/x\"\n[[auth.tokens]]\nname = \"a\"\ntoken = \"0123456789abcdef\"\nscopes = [\"write\"]\n",
        )
        .unwrap_err();
        assert!(err.contains("unknown variant `write`"), "{err}");
        let err = load("data_dir = \"/x\"\n[[auth.tokens]]\nname = \"a\"\ntoken = \"0123456789abcdef\"\nscopes = []\n")
            .unwrap_err();
        assert!(err.contains("auth.tokens[0].scopes: at least one scope"), "{err}");
    }

    #[test]
    fn non_loopback_without_tokens_is_refused() {
        let err = load("data_dir = \"/x\"\n[http]\nlisten = \"0.0.0.0:7070\"\n").unwrap_err();
        assert!(
            err.contains("collector.toml:3:10: http.listen: 0.0.0.0:7070 is not a loopback address"),
            "{err}"
        );
        assert!(
            load("data_dir = \"/x\"\n[http]\nlisten = \"0.0.0.0:7070\"\n[auth]\nallow_anonymous_remote = true\n")
                .is_ok()
        );
        assert!(load("data_dir = \"/x\"\n[http]\nlisten = \"[::1]:7070\"\n").is_ok());
        let with_token = "data_dir = \"/x\"\n[http]\nlisten = \"0.0.0.0:7070\"\n[[auth.tokens]]\nname = \"a\"\ntoken = \"0123456789abcdef\"\nscopes = [\"admin\"]\n";
        assert!(load(with_token).is_ok());
        let err = load("data_dir = \"/x\"\n[http.tls]\ncert = \"/nonexistent/c.pem\"\nkey = \"/nonexistent/k.pem\"\n")
            .unwrap_err();
        assert!(
            err.contains("http.tls: /nonexistent/c.pem: cannot read certificate"),
            "{err}"
        );
    }
}
