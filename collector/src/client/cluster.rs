//! `logpost cluster`: the cluster's nodes, its controller, and partitions
//! that are under-replicated or without a leader.

use std::io::Write;

use super::{Client, ClientError};
use crate::http::cluster::ClusterJson;

/// Prints the cluster's state as the collector asked sees it.
///
/// # Errors
/// The request failed (404 from a single node) or output failed.
pub async fn status(client: &Client, json: bool, out: &mut impl Write) -> Result<(), ClientError> {
    let c: ClusterJson = client.get_json("/v1/cluster", &[]).await?;
    let e = ClientError::Output;
    if json {
        serde_json::to_writer_pretty(&mut *out, &c).map_err(|err| ClientError::Output(err.into()))?;
        return writeln!(out).map_err(e);
    }
    writeln!(out, "cluster:     {}", c.cluster_id.as_deref().unwrap_or("?")).map_err(e)?;
    let controller = c.controller.map_or("none".to_owned(), |n| format!("node {n}"));
    writeln!(out, "controller:  {controller}").map_err(e)?;
    writeln!(out, "{:>6}  {:<32}  {:<24}  {:>7}", "NODE", "URL", "KAFKA", "LEADS").map_err(e)?;
    for n in &c.nodes {
        let leads = c
            .topics
            .iter()
            .flat_map(|t| &t.partitions)
            .filter(|p| p.leader == n.id)
            .count();
        writeln!(
            out,
            "{:>6}  {:<32}  {:<24}  {leads:>7}",
            n.id,
            n.url,
            n.kafka.as_deref().unwrap_or("-")
        )
        .map_err(e)?;
    }
    if c.under_replicated.is_empty() {
        writeln!(out, "under-replicated partitions: none").map_err(e)?;
    } else {
        writeln!(
            out,
            "under-replicated partitions ({}): {}",
            c.under_replicated.len(),
            c.under_replicated.join(" ")
        )
        .map_err(e)?;
    }
    Ok(())
}
