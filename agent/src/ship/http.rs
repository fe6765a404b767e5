//! The HTTP client settings every request to the collector shares: the
//! bearer token (a default header, marked sensitive so it never shows in
//! debug output) and TLS verification against `[collector] ca_file`.
//!
//! Why a module: the shipper, the stream lookup and `validate` each build
//! a client, and all three must authenticate the same way.

use crate::config::CollectorAuth;

/// A reqwest builder carrying `auth`.
///
/// # Errors
/// The token is not a valid header value, or a TLS file cannot be loaded
/// (validation checks both, so this is a file changed since).
pub fn client_builder(auth: &CollectorAuth) -> Result<reqwest::ClientBuilder, String> {
    // reqwest asks for rustls' process default even for http:// URLs.
    logpost_shared::tls::install_default_provider();
    let mut builder = reqwest::Client::builder();
    if let Some(token) = &auth.token {
        let mut value = reqwest::header::HeaderValue::from_str(&format!("Bearer {token}"))
            .map_err(|_| "collector token is not a valid header value".to_owned())?;
        value.set_sensitive(true);
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert(reqwest::header::AUTHORIZATION, value);
        builder = builder.default_headers(headers);
    }
    if let Some(ca) = &auth.ca_file {
        let identity = auth.client_cert.as_ref().map(|(c, k)| (c.as_path(), k.as_path()));
        let tls = logpost_shared::tls::client_config(ca, identity).map_err(|e| e.to_string())?;
        builder = builder.tls_backend_preconfigured(tls);
    }
    Ok(builder)
}
