//! Bearer-token authentication: one layer in front of every route.
//!
//! Why one layer and a path rule rather than a check per handler: a route
//! added later (Loki queries, consumer endpoints) is covered the day it is
//! added, without anyone remembering to protect it. The rule works on the
//! method and the path prefix:
//!
//! | request                                              | scope    |
//! |------------------------------------------------------|----------|
//! | `GET`/`HEAD` `/health`, `/ready`, `/metrics`          | none     |
//! | `GET`/`HEAD` `/` and `/ui/…` (the web page's files: no data) | none |
//! | `POST /v1/ingest/…`, `POST /v1/streams`, `POST /v1/streams/by-content`, `POST /loki/api/v1/push` | `ingest` |
//! | any other `GET`/`HEAD`                               | `read`   |
//! | `POST /loki/api/v1/…` (Loki queries may be POSTed)   | `read`   |
//! | `POST` under `/v1/groups/`, `/v1/consumers/`, `/v1/fetch` (consumers commit offsets) | `read` |
//! | `GET`/`POST` `/v1/replica/…` (followers fetching from leaders, a query's parts asked of other nodes) | `cluster` |
//! | anything else (topic create/delete, unknown routes)   | `admin`  |
//!
//! Unknown writes need `admin` so that a new mutating route is never open
//! by accident; a new read route needs `read`. `admin` grants everything
//! but `cluster`: a follower's fetch moves the leader's high watermark, so
//! only the nodes' own token may make one. `cluster` grants `ingest` and
//! `read` too (nodes forward writes and reads to each other).
//!
//! Tokens are compared in constant time (`subtle`) against every
//! configured token, so the answer time does not tell how much of a guess
//! was right. 401 means no or an unknown token; 403 a known token without
//! the scope. Bodies are `{"error": "..."}` like every other error.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use subtle::ConstantTimeEq;

use super::AppState;
use super::error::ApiError;
use crate::config::auth::{Scope, Token};

/// The scope a request needs; `None` for the open endpoints.
pub fn required_scope(method: &Method, path: &str) -> Option<Scope> {
    let read_only = method == Method::GET || method == Method::HEAD;
    if read_only
        && (matches!(path, "/" | "/health" | "/ready" | "/metrics") || path.starts_with(super::ui::ASSET_PREFIX))
    {
        return None;
    }
    if path.starts_with("/v1/replica/") {
        return Some(Scope::Cluster);
    }
    if *method == Method::POST
        && (path.starts_with("/v1/ingest/")
            || path == "/v1/streams"
            || path == "/v1/streams/by-content"
            || path == "/loki/api/v1/push")
    {
        return Some(Scope::Ingest);
    }
    if read_only {
        return Some(Scope::Read);
    }
    let consumer_write = ["/v1/groups/", "/v1/consumers/", "/v1/fetch"]
        .iter()
        .any(|p| path.starts_with(p));
    if *method == Method::POST && (path.starts_with("/loki/api/v1/") || consumer_write) {
        return Some(Scope::Read);
    }
    Some(Scope::Admin)
}

/// The token matching `presented`, comparing against every token so that
/// timing does not depend on which one (if any) matched.
pub fn find_token<'t>(tokens: &'t [Token], presented: &[u8]) -> Option<&'t Token> {
    let mut found = None;
    for t in tokens {
        // ct_eq on slices of different lengths returns false at once: only
        // the length of a valid token can leak, not its content.
        if bool::from(t.secret.as_slice().ct_eq(presented)) {
            found = Some(t);
        }
    }
    found
}

/// Why a request was refused, for the answer and the rejection metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denial {
    Missing,
    Unknown,
    Scope(Scope),
}

/// Decides a request: `Ok` to serve it, else why not.
///
/// # Errors
/// The token of an `Authorization: Bearer <token>` value. The scheme is
/// case-insensitive (RFC 9110, section 11.1: `BEARER` and `bearer` too);
/// the token is taken as sent.
fn bearer_token(value: &[u8]) -> Option<&[u8]> {
    let (scheme, token) = value.split_at_checked(7)?;
    scheme.eq_ignore_ascii_case(b"bearer ").then_some(token)
}

/// The denial, when a token is required and missing, unknown or lacking the scope.
pub fn authorize(tokens: &[Token], method: &Method, path: &str, authorization: Option<&[u8]>) -> Result<(), Denial> {
    if tokens.is_empty() {
        return Ok(());
    }
    let Some(needed) = required_scope(method, path) else {
        return Ok(());
    };
    let presented = authorization.and_then(bearer_token).ok_or(Denial::Missing)?;
    let token = find_token(tokens, presented).ok_or(Denial::Unknown)?;
    if token.allows(needed) {
        Ok(())
    } else {
        Err(Denial::Scope(needed))
    }
}

/// Prefix of the WebSocket subprotocol that carries a token.
pub const WS_TOKEN_PROTOCOL: &str = "logpost.bearer.";

/// `Bearer <token>` from a `logpost.bearer.<base64url>` entry of
/// `Sec-WebSocket-Protocol`, for WebSocket requests (browsers cannot send
/// `Authorization` there). `None` without one or when it does not decode
/// (then the request is refused as having no token).
pub fn ws_protocol_token(headers: &axum::http::HeaderMap) -> Option<Vec<u8>> {
    use base64::Engine as _;
    let upgrade = headers
        .get(header::UPGRADE)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"websocket"));
    if !upgrade {
        return None;
    }
    headers
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .find_map(|p| p.trim().strip_prefix(WS_TOKEN_PROTOCOL))
        .and_then(|b64| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(b64).ok())
        .map(|token| [b"Bearer ".as_slice(), &token].concat())
}

/// The layer: refuses requests without the scope they need.
pub async fn layer(State(app): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    let from_protocol;
    let authorization = match request.headers().get(header::AUTHORIZATION) {
        Some(v) => Some(v.as_bytes()),
        None => {
            from_protocol = ws_protocol_token(request.headers());
            from_protocol.as_deref()
        }
    };
    match authorize(
        &app.config.auth.tokens,
        request.method(),
        request.uri().path(),
        authorization,
    ) {
        Ok(()) => next.run(request).await,
        Err(denial) => {
            let reason = match denial {
                Denial::Missing => "auth_missing",
                Denial::Unknown => "auth_unknown",
                Denial::Scope(_) => "auth_scope",
            };
            crate::metrics::rejected(reason);
            refuse(denial)
        }
    }
}

fn refuse(denial: Denial) -> Response {
    let (status, message) = match denial {
        Denial::Missing => (
            StatusCode::UNAUTHORIZED,
            "this collector requires a bearer token (Authorization: Bearer <token>)".to_owned(),
        ),
        Denial::Unknown => (StatusCode::UNAUTHORIZED, "unknown token".to_owned()),
        Denial::Scope(s) => (
            StatusCode::FORBIDDEN,
            format!("this token lacks the {:?} scope this request needs", s.as_str()),
        ),
    };
    let mut response = ApiError::new(status, message).into_response();
    if status == StatusCode::UNAUTHORIZED {
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, header::HeaderValue::from_static("Bearer"));
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(name: &str, secret: &str, scopes: &[Scope]) -> Token {
        Token {
            name: name.to_owned(),
            secret: secret.as_bytes().to_vec(),
            scopes: scopes.to_vec(),
        }
    }

    #[test]
    fn scopes_by_method_and_path_prefix() {
        let cases = [
            (Method::GET, "/health", None),
            (Method::GET, "/metrics", None),
            (Method::GET, "/", None),
            (Method::GET, "/ui/app.js", None),
            (Method::POST, "/", Some(Scope::Admin)),
            (Method::GET, "/uix", Some(Scope::Read)),
            (Method::POST, "/health", Some(Scope::Admin)),
            (Method::POST, "/v1/ingest/app", Some(Scope::Ingest)),
            (Method::POST, "/loki/api/v1/push", Some(Scope::Ingest)),
            (Method::POST, "/v1/streams", Some(Scope::Ingest)),
            (Method::POST, "/v1/streams/by-content", Some(Scope::Ingest)),
            (Method::GET, "/v1/topics", Some(Scope::Read)),
            (Method::GET, "/v1/query", Some(Scope::Read)),
            // Routes that do not exist yet are covered by the prefix rule.
            (Method::GET, "/loki/api/v1/query_range", Some(Scope::Read)),
            (Method::POST, "/loki/api/v1/query_range", Some(Scope::Read)),
            (Method::POST, "/v1/groups/g/commit", Some(Scope::Read)),
            (Method::POST, "/v1/topics", Some(Scope::Admin)),
            (Method::DELETE, "/v1/topics/app", Some(Scope::Admin)),
            (Method::PUT, "/v1/anything", Some(Scope::Admin)),
        ];
        for (method, path, want) in cases {
            assert_eq!(required_scope(&method, path), want, "{method} {path}");
        }
    }

    #[test]
    fn a_websocket_may_carry_its_token_as_a_subprotocol() {
        use axum::http::HeaderMap;
        let mut h = HeaderMap::new();
        // base64url("s3cret/+token") without padding
        h.insert(
            header::SEC_WEBSOCKET_PROTOCOL,
            "logpost, logpost.bearer.czNjcmV0Lyt0b2tlbg".parse().unwrap(),
        );
        assert_eq!(ws_protocol_token(&h), None, "only on a WebSocket upgrade");
        h.insert(header::UPGRADE, "websocket".parse().unwrap());
        assert_eq!(
            ws_protocol_token(&h).as_deref(),
            Some(b"Bearer s3cret/+token".as_slice())
        );
        h.insert(header::SEC_WEBSOCKET_PROTOCOL, "logpost.bearer.!!".parse().unwrap());
        assert_eq!(ws_protocol_token(&h), None, "undecodable: no token");
        h.insert(header::SEC_WEBSOCKET_PROTOCOL, "logpost".parse().unwrap());
        assert_eq!(ws_protocol_token(&h), None);
    }

    #[test]
    fn missing_unknown_and_insufficient_tokens_are_told_apart() {
        let tokens = [
            token("agent", "ingest-token-0123456789", &[Scope::Ingest]),
            token("ops", "admin-token-0123456789", &[Scope::Admin]),
        ];
        let get = Method::GET;
        assert_eq!(authorize(&tokens, &get, "/v1/topics", None), Err(Denial::Missing));
        assert_eq!(
            authorize(&tokens, &get, "/v1/topics", Some(b"Basic abc")),
            Err(Denial::Missing)
        );
        assert_eq!(
            authorize(&tokens, &get, "/v1/topics", Some(b"Bearer nope-nope-nope-nope")),
            Err(Denial::Unknown)
        );
        assert_eq!(
            authorize(&tokens, &get, "/v1/topics", Some(b"Bearer ingest-token-0123456789")),
            Err(Denial::Scope(Scope::Read))
        );
        assert_eq!(
            authorize(
                &tokens,
                &Method::POST,
                "/v1/ingest/x",
                Some(b"Bearer ingest-token-0123456789")
            ),
            Ok(())
        );
        assert_eq!(
            authorize(&tokens, &get, "/v1/topics", Some(b"Bearer admin-token-0123456789")),
            Ok(()),
            "admin includes read"
        );
        // Issue 28: the scheme is case-insensitive (RFC 9110, 11.1).
        for scheme in ["BEARER", "bearer", "bEaReR"] {
            let value = format!("{scheme} admin-token-0123456789");
            assert_eq!(
                authorize(&tokens, &get, "/v1/topics", Some(value.as_bytes())),
                Ok(()),
                "{scheme}"
            );
        }
        assert_eq!(
            authorize(&tokens, &get, "/v1/topics", Some(b"Bearer")),
            Err(Denial::Missing)
        );
        assert_eq!(authorize(&tokens, &get, "/health", None), Ok(()));
        assert_eq!(
            authorize(&[], &Method::DELETE, "/v1/topics/x", None),
            Ok(()),
            "no tokens: open"
        );
    }
}
