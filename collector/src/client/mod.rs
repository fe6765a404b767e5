//! The `logpost` command's subcommands, as library code over an HTTP
//! client, so that the binary stays a thin argument parser.
//!
//! Exit codes (documented in `--help`): 0 success; 1 a query matched
//! nothing; 2 a bad request (bad arguments, bad query, unknown topic);
//! 3 the collector is unreachable or failed.

pub mod cluster;
pub mod consume;
pub mod group_consume;
pub mod labels;
pub mod outage;
pub mod query;
pub mod render;
pub mod topics;

use std::time::Duration;

use serde::de::DeserializeOwned;

/// Default collector address.
pub const DEFAULT_COLLECTOR: &str = "http://127.0.0.1:7070";

/// Why a command failed; maps to an exit code.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot reach the collector at {url}")]
    Unreachable {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("the collector refused the request ({status}): {message}")]
    Refused { status: u16, message: String },
    #[error("the collector failed ({status}): {message}")]
    Failed { status: u16, message: String },
    #[error("unexpected response from the collector")]
    Decode(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("cannot write output")]
    Output(#[source] std::io::Error),
    #[error("{0}")]
    Usage(String),
}

impl ClientError {
    /// The exit code for this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            ClientError::Refused { .. } | ClientError::Usage(_) => 2,
            ClientError::Output(_) => 1,
            _ => 3,
        }
    }
}

/// A connection to one collector.
#[derive(Debug, Clone)]
pub struct Client {
    base: String,
    http: reqwest::Client,
}

/// How to reach a collector beyond its URL: a token, and TLS settings.
#[derive(Debug, Clone, Default)]
pub struct Credentials {
    /// Sent as `Authorization: Bearer <token>`.
    pub token: Option<String>,
    /// PEM CA certificates the collector's certificate must chain to
    /// (instead of the system's roots).
    pub ca_file: Option<std::path::PathBuf>,
    /// A client certificate and key, for collectors that require one.
    pub client_cert: Option<(std::path::PathBuf, std::path::PathBuf)>,
}

impl Client {
    /// A client for the collector at `base` (e.g. `http://127.0.0.1:7070`).
    ///
    /// # Errors
    /// The HTTP client cannot be built.
    pub fn new(base: &str) -> Result<Client, ClientError> {
        Self::with_credentials(base, &Credentials::default())
    }

    /// As [`new`](Self::new), with a token and TLS settings.
    ///
    /// # Errors
    /// A CA or certificate file cannot be read, or the client cannot be built.
    pub fn with_credentials(base: &str, credentials: &Credentials) -> Result<Client, ClientError> {
        logpost_shared::tls::install_default_provider();
        let mut builder = reqwest::Client::builder().connect_timeout(Duration::from_secs(10));
        if let Some(token) = &credentials.token {
            let mut value = reqwest::header::HeaderValue::from_str(&format!("Bearer {token}"))
                .map_err(|_| ClientError::Usage("the token must be printable ASCII".to_owned()))?;
            value.set_sensitive(true);
            let mut headers = reqwest::header::HeaderMap::new();
            headers.insert(reqwest::header::AUTHORIZATION, value);
            builder = builder.default_headers(headers);
        }
        if let Some(ca) = &credentials.ca_file {
            let identity = credentials
                .client_cert
                .as_ref()
                .map(|(c, k)| (c.as_path(), k.as_path()));
            let tls =
                logpost_shared::tls::client_config(ca, identity).map_err(|e| ClientError::Usage(e.to_string()))?;
            builder = builder.tls_backend_preconfigured(tls);
        }
        let http = builder.build().map_err(|e| ClientError::Decode(Box::new(e)))?;
        Ok(Client {
            base: base.trim_end_matches('/').to_owned(),
            http,
        })
    }

    /// `GET {base}{path}` with query parameters; the response after status checks.
    ///
    /// # Errors
    /// Unreachable, or a 4xx/5xx mapped to [`ClientError::Refused`]/[`ClientError::Failed`].
    pub async fn get(&self, path: &str, query: &[(&str, String)]) -> Result<reqwest::Response, ClientError> {
        let url = format!("{}{path}", self.base);
        let mut req = self.http.get(&url);
        if !query.is_empty() {
            let qs: Vec<String> = query.iter().map(|(k, v)| format!("{k}={}", urlencode(v))).collect();
            req = self.http.get(format!("{url}?{}", qs.join("&")));
        }
        let resp = req.send().await.map_err(|source| ClientError::Unreachable {
            url: self.base.clone(),
            source,
        })?;
        check_status(resp).await
    }

    /// `POST` a JSON body and decode the JSON answer.
    ///
    /// # Errors
    /// As [`get`](Self::get).
    pub async fn post_json<B: serde::Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, ClientError> {
        let resp = self
            .http
            .post(format!("{}{path}", self.base))
            .json(body)
            .send()
            .await
            .map_err(|source| ClientError::Unreachable {
                url: self.base.clone(),
                source,
            })?;
        let resp = check_status(resp).await?;
        let bytes = resp.bytes().await.map_err(|source| ClientError::Unreachable {
            url: self.base.clone(),
            source,
        })?;
        serde_json::from_slice(&bytes).map_err(|e| ClientError::Decode(Box::new(e)))
    }

    /// `DELETE`.
    ///
    /// # Errors
    /// As [`get`](Self::get).
    pub async fn delete(&self, path: &str) -> Result<(), ClientError> {
        let resp = self
            .http
            .delete(format!("{}{path}", self.base))
            .send()
            .await
            .map_err(|source| ClientError::Unreachable {
                url: self.base.clone(),
                source,
            })?;
        check_status(resp).await.map(|_| ())
    }

    /// `GET` and decode JSON.
    ///
    /// # Errors
    /// As [`get`](Self::get), or a body that is not the expected JSON.
    pub async fn get_json<T: DeserializeOwned>(&self, path: &str, query: &[(&str, String)]) -> Result<T, ClientError> {
        let resp = self.get(path, query).await?;
        let bytes = resp.bytes().await.map_err(|source| ClientError::Unreachable {
            url: self.base.clone(),
            source,
        })?;
        serde_json::from_slice(&bytes).map_err(|e| ClientError::Decode(Box::new(e)))
    }
}

async fn check_status(resp: reqwest::Response) -> Result<reqwest::Response, ClientError> {
    let status = resp.status();
    if status.is_success() {
        return Ok(resp);
    }
    let body = resp.text().await.unwrap_or_default();
    let message = serde_json::from_str::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_owned))
        .unwrap_or(body);
    if status.is_client_error() {
        Err(ClientError::Refused {
            status: status.as_u16(),
            message,
        })
    } else {
        Err(ClientError::Failed {
            status: status.as_u16(),
            message,
        })
    }
}

/// Percent-encodes a query-string value.
pub fn urlencode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
