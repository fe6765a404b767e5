//! TLS settings made into rustls configs, for the collector's listener and
//! for the clients (agent, `logpost`) that verify it.
//!
//! Why here: the agent and the collector crate must build the same kind of
//! client config (a CA file, optionally a client certificate) and agree on
//! the crypto provider. Every config is built with the **ring** provider
//! explicitly: it compiles in seconds (aws-lc needs cmake and minutes), and
//! an explicit provider means no process-wide default has to be installed
//! before a config is built. [`install_default_provider`] exists only for
//! clients built without one of these configs (reqwest asks for a default).
//!
//! Errors name the file and what was wrong with it; this module reads PEM
//! files but opens no sockets.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::RootCertStore;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;

/// Why a TLS config could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{}: cannot read {what}: {message}", path.display())]
    Read {
        path: PathBuf,
        what: &'static str,
        message: String,
    },
    #[error("{}: no {what} found (expected PEM)", path.display())]
    Empty { path: PathBuf, what: &'static str },
    #[error("{}: {what} rejected: {source}", path.display())]
    Rejected {
        path: PathBuf,
        what: &'static str,
        #[source]
        source: rustls::Error,
    },
    #[error("{}: client CA rejected: {message}", path.display())]
    ClientCa { path: PathBuf, message: String },
}

/// The provider every config uses.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Makes ring the process-wide default provider (idempotent). reqwest
/// built without a provider of its own asks for the default even for plain
/// `http://` clients, so every binary calls this before building one.
pub fn install_default_provider() {
    // Err means a default is installed already: fine either way.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Reads every certificate in a PEM file.
///
/// # Errors
/// The file cannot be read or holds no certificate.
pub fn load_certs(path: &Path, what: &'static str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let read_err = |message: String| TlsError::Read {
        path: path.to_owned(),
        what,
        message,
    };
    let bytes = std::fs::read(path).map_err(|e| read_err(e.to_string()))?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| read_err(e.to_string()))?;
    if certs.is_empty() {
        return Err(TlsError::Empty {
            path: path.to_owned(),
            what,
        });
    }
    Ok(certs)
}

/// Reads the first private key (PKCS#8, PKCS#1 or SEC1) of a PEM file.
///
/// # Errors
/// The file cannot be read or holds no key.
pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let bytes = std::fs::read(path).map_err(|e| TlsError::Read {
        path: path.to_owned(),
        what: "private key",
        message: e.to_string(),
    })?;
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => TlsError::Empty {
            path: path.to_owned(),
            what: "private key",
        },
        other => TlsError::Read {
            path: path.to_owned(),
            what: "private key",
            message: other.to_string(),
        },
    })
}

fn roots(path: &Path, what: &'static str) -> Result<RootCertStore, TlsError> {
    let mut store = RootCertStore::empty();
    for cert in load_certs(path, what)? {
        store.add(cert).map_err(|source| TlsError::Rejected {
            path: path.to_owned(),
            what,
            source,
        })?;
    }
    Ok(store)
}

/// A server config from a certificate chain and key; with `client_ca`,
/// clients must present a certificate signed by it.
///
/// # Errors
/// A file cannot be read, or the key does not fit the certificate.
pub fn server_config(cert: &Path, key: &Path, client_ca: Option<&Path>) -> Result<rustls::ServerConfig, TlsError> {
    let chain = load_certs(cert, "certificate")?;
    let key_der = load_key(key)?;
    let builder = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|source| TlsError::Rejected {
            path: cert.to_owned(),
            what: "certificate",
            source,
        })?;
    let builder = match client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots(ca, "client CA")?), provider())
                .build()
                .map_err(|e| TlsError::ClientCa {
                    path: ca.to_owned(),
                    message: e.to_string(),
                })?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder
        .with_single_cert(chain, key_der)
        .map_err(|source| TlsError::Rejected {
            path: key.to_owned(),
            what: "private key",
            source,
        })?;
    // HTTP/1.1 only: the collector serves HTTP/1 (http/serve.rs).
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// A client config trusting the certificates in `ca` only (not the
/// system's), optionally presenting a client certificate.
///
/// # Errors
/// A file cannot be read or a certificate is rejected.
pub fn client_config(ca: &Path, identity: Option<(&Path, &Path)>) -> Result<rustls::ClientConfig, TlsError> {
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|source| TlsError::Rejected {
            path: ca.to_owned(),
            what: "CA certificate",
            source,
        })?
        .with_root_certificates(roots(ca, "CA certificate")?);
    match identity {
        None => Ok(builder.with_no_client_auth()),
        Some((cert, key)) => builder
            .with_client_auth_cert(load_certs(cert, "client certificate")?, load_key(key)?)
            .map_err(|source| TlsError::Rejected {
                path: key.to_owned(),
                what: "client key",
                source,
            }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_and_empty_files_are_named() {
        let err = load_certs(Path::new("/nonexistent/ca.pem"), "CA certificate").unwrap_err();
        assert!(
            err.to_string()
                .starts_with("/nonexistent/ca.pem: cannot read CA certificate"),
            "{err}"
        );
        let dir = std::env::temp_dir().join(format!("logpost-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).ok();
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "not a pem\n").ok();
        let err = load_certs(&empty, "certificate").unwrap_err();
        assert!(err.to_string().contains("no certificate found"), "{err}");
        let err = load_key(&empty).unwrap_err();
        assert!(err.to_string().contains("no private key found"), "{err}");
        std::fs::remove_dir_all(&dir).ok();
    }
}
