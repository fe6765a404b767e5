//! `[collector]`'s credentials: the bearer token (inline, from a file or
//! from the environment) and the TLS files, validated at start so that a
//! missing token file or a bad CA stops the agent with its name instead of
//! failing every request later.

use std::path::PathBuf;

use logpost_shared::config::Problems;

use super::CollectorToml;

/// How the agent authenticates to the collector and verifies it.
#[derive(Clone, Default)]
pub struct CollectorAuth {
    pub token: Option<String>,
    pub ca_file: Option<PathBuf>,
    pub client_cert: Option<(PathBuf, PathBuf)>,
}

impl std::fmt::Debug for CollectorAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The token stays out of debug output and logs.
        f.debug_struct("CollectorAuth")
            .field("token", &self.token.as_ref().map(|_| "<set>"))
            .field("ca_file", &self.ca_file)
            .field("client_cert", &self.client_cert)
            .finish()
    }
}

/// Validates the token and TLS keys of `[collector]`.
pub(super) fn validate_collector_auth(raw: &CollectorToml, p: &mut Problems<'_>) -> CollectorAuth {
    use logpost_shared::config::secret::{check_token, read_token_env, read_token_file};
    let token = match (&raw.token, &raw.token_file, &raw.token_env) {
        (None, None, None) => None,
        (Some(t), None, None) => match check_token(t.get_ref()) {
            Ok(()) => Some(t.get_ref().clone()),
            Err(e) => {
                p.at(t.span(), "collector.token", e);
                None
            }
        },
        (None, Some(f), None) => read_token_file(f.get_ref())
            .map_err(|e| p.at(f.span(), "collector.token_file", e))
            .ok(),
        (None, None, Some(v)) => read_token_env(v.get_ref())
            .map_err(|e| p.at(v.span(), "collector.token_env", e))
            .ok(),
        _ => {
            p.whole("collector", "give at most one of `token`, `token_file`, `token_env`");
            None
        }
    };
    let ca_file = raw.ca_file.as_ref().map(|c| c.get_ref().clone());
    let client_cert = match (&raw.client_cert, &raw.client_key) {
        (Some(c), Some(k)) => Some((c.get_ref().clone(), k.get_ref().clone())),
        (None, None) => None,
        (Some(c), None) => {
            p.at(c.span(), "collector.client_cert", "needs `client_key` too");
            None
        }
        (None, Some(k)) => {
            p.at(k.span(), "collector.client_key", "needs `client_cert` too");
            None
        }
    };
    if let Some(ca) = &raw.ca_file {
        let identity = client_cert.as_ref().map(|(c, k)| (c.as_path(), k.as_path()));
        if let Err(e) = logpost_shared::tls::client_config(ca.get_ref(), identity) {
            p.at(ca.span(), "collector.ca_file", e.to_string());
        }
    } else if let Some(c) = &raw.client_cert {
        p.at(c.span(), "collector.client_cert", "needs `ca_file` too");
    }
    CollectorAuth {
        token,
        ca_file,
        client_cert,
    }
}
