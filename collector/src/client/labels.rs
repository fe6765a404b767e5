//! `logpost labels [NAME]`: label names, or one label's values, through
//! Loki's label API (from the segment summaries, no scan).

use std::io::Write;

use super::{Client, ClientError};

/// Prints label names (or `name`'s values) seen in `[start, end]` (ns), one
/// per line; returns how many.
///
/// # Errors
/// The request failed or output failed.
pub async fn run(
    client: &Client,
    name: Option<&str>,
    start: Option<i64>,
    end: Option<i64>,
    out: &mut impl Write,
) -> Result<usize, ClientError> {
    let path = match name {
        None => "/loki/api/v1/labels".to_owned(),
        Some(n) => format!("/loki/api/v1/label/{}/values", super::urlencode(n)),
    };
    let mut params = Vec::new();
    if let Some(s) = start {
        params.push(("start", s.to_string()));
    }
    if let Some(e) = end {
        params.push(("end", e.to_string()));
    }
    let v: serde_json::Value = client.get_json(&path, &params).await?;
    let items = v
        .get("data")
        .and_then(|d| d.as_array())
        .ok_or_else(|| ClientError::Decode("answer without a data array".into()))?;
    for item in items {
        writeln!(out, "{}", item.as_str().unwrap_or_default()).map_err(ClientError::Output)?;
    }
    out.flush().map_err(ClientError::Output)?;
    Ok(items.len())
}
