//! Request dispatch: decodes each API's body, performs what changes state
//! at once (appends are queued, topics created, group membership and
//! commits started), so that pipelined requests take effect in arrival
//! order, and returns a future of the encoded response for whatever has to
//! wait (durability, a rebalance, a long poll, a read).
//!
//! Store work that touches files (validation of produced batches, topic
//! creation, reads) runs on the blocking pool, never on a runtime worker.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use super::Shared;
use crate::kafka::backend::{self, CheckedProduce, Failure};
use crate::kafka::coordinator::CommitRequest;
use crate::kafka::error::{KafkaError, code_of};
use crate::kafka::producer_ids;
use crate::kafka::protocol::metadata::{self, MetadataRequest, MetadataResponse, PartitionMetadata, TopicMetadata};
use crate::kafka::protocol::offsets::{
    self, FetchedOffset, ListOffsetsPartition, ListOffsetsRequest, OffsetCommitRequest, OffsetFetchRequest,
};
use crate::kafka::protocol::produce::{self, PartitionResponse, ProduceRequest};
use crate::kafka::protocol::wire::{DecodeResult, Reader, Writer};
use crate::kafka::protocol::{ApiKey, RequestHeader, ResponseFrame, api_versions, group};

/// A boxed, sendable future.
pub(crate) type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A response still being produced; `None` means "send nothing" (acks=0).
pub(crate) type Pending = BoxFuture<'static, Option<ResponseFrame>>;

/// A response that is already complete.
pub(crate) fn ready(frame: ResponseFrame) -> Pending {
    Box::pin(std::future::ready(Some(frame)))
}

fn respond(correlation_id: i32, encode: impl FnOnce(&mut Writer)) -> Pending {
    let mut w = Writer::new();
    encode(&mut w);
    ready(ResponseFrame::new(correlation_id, w))
}

/// Decodes and starts one request.
pub(crate) async fn dispatch(
    shared: &Arc<Shared>,
    api: ApiKey,
    header: &RequestHeader,
    r: &mut Reader,
) -> DecodeResult<Pending> {
    let v = header.api_version;
    let id = header.correlation_id;
    Ok(match api {
        ApiKey::ApiVersions => {
            let req = api_versions::ApiVersionsRequest::decode(r, v)?;
            if let Some(name) = &req.client_software_name {
                tracing::debug!(client = %name, version = ?req.client_software_version, "ApiVersions");
            }
            respond(id, |w| api_versions::encode_response(w, v, None))
        }
        ApiKey::Metadata => handle_metadata(shared, MetadataRequest::decode(r, v)?, id, v).await,
        ApiKey::Produce => handle_produce(shared, ProduceRequest::decode(r, v)?, id, v).await,
        ApiKey::Fetch => {
            let req = crate::kafka::protocol::fetch::FetchRequest::decode(r, v)?;
            super::fetch::handle(shared, req, id, v)
        }
        ApiKey::ListOffsets => handle_list_offsets(shared, ListOffsetsRequest::decode(r, v)?, id, v),
        ApiKey::FindCoordinator => {
            let req = metadata::FindCoordinatorRequest::decode(r, v)?;
            let c = &shared.config;
            let here = (c.node_id, c.advertised_host.clone(), c.advertised_port);
            // Transactions are not implemented, so there is no transaction
            // coordinator. In a cluster a group's coordinator is the leader
            // of its partition of __consumer_offsets.
            let found = if req.key_type != 0 {
                Err(KafkaError::COORDINATOR_NOT_AVAILABLE)
            } else {
                match (shared.app.coordinator.locate(&req.key), &shared.app.cluster) {
                    (Some(found), Some(cluster)) => found.and_then(|node| {
                        let view = cluster.view();
                        let (host, port) = view
                            .nodes
                            .get(&node)
                            .and_then(|n| n.kafka.as_deref()?.rsplit_once(':'))
                            .ok_or(KafkaError::COORDINATOR_NOT_AVAILABLE)?;
                        let port = port.parse().map_err(|_| KafkaError::COORDINATOR_NOT_AVAILABLE)?;
                        Ok((node, host.to_owned(), port))
                    }),
                    _ => Ok(here.clone()),
                }
            };
            let (error, node) = match found {
                Ok(node) => (0, node),
                Err(e) => (e.code(), (-1, String::new(), -1)),
            };
            respond(id, |w| {
                metadata::encode_find_coordinator(w, v, error, (node.0, &node.1, node.2))
            })
        }
        ApiKey::InitProducerId => {
            let req = metadata::InitProducerIdRequest::decode(r, v)?;
            let store = Arc::clone(&shared.app.store);
            Box::pin(async move {
                let result = match req.transactional_id {
                    Some(_) => Err(KafkaError::TRANSACTIONAL_ID_AUTHORIZATION_FAILED),
                    // Taking each partition's lock may wait out an fsync: off the runtime.
                    None => tokio::task::spawn_blocking(move || producer_ids::allocate(&store))
                        .await
                        .unwrap_or(Err(KafkaError::UNKNOWN_SERVER_ERROR)),
                };
                let (pid, epoch) = result.map_or((-1, -1), |pid| (pid, 0));
                let mut w = Writer::new();
                metadata::encode_init_producer_id(&mut w, code_of(&result), pid, epoch);
                Some(ResponseFrame::new(id, w))
            })
        }
        ApiKey::JoinGroup => {
            let req = group::decode_join(r, v, header.client_id.as_deref().unwrap_or(""))?;
            let joined = shared.app.coordinator.join(req);
            Box::pin(async move {
                let res = joined.await;
                let mut w = Writer::new();
                group::encode_join(&mut w, v, &res);
                Some(ResponseFrame::new(id, w))
            })
        }
        ApiKey::SyncGroup => {
            let synced = shared.app.coordinator.sync(group::decode_sync(r, v)?);
            Box::pin(async move {
                let res = synced.await;
                let mut w = Writer::new();
                group::encode_sync(&mut w, v, res.error.map_or(0, KafkaError::code), &res.assignment);
                Some(ResponseFrame::new(id, w))
            })
        }
        ApiKey::Heartbeat => {
            let req = group::decode_heartbeat(r, v)?;
            let result = shared
                .app
                .coordinator
                .heartbeat(&req.group_id, req.generation_id, &req.member_id);
            respond(id, |w| group::encode_error_only(w, v, code_of(&result)))
        }
        ApiKey::LeaveGroup => {
            let (group_id, members) = group::decode_leave(r, v)?;
            let results = shared.app.coordinator.leave(&group_id, &members);
            // Before v3 the single member's error is the response's error.
            let top = if v >= 3 { 0 } else { results.first().map_or(0, code_of) };
            let per_member: Vec<(String, Option<String>, i16)> = members
                .into_iter()
                .zip(&results)
                .map(|((m, i), res)| (m, i, code_of(res)))
                .collect();
            respond(id, |w| group::encode_leave(w, v, top, &per_member))
        }
        ApiKey::OffsetCommit => handle_offset_commit(shared, OffsetCommitRequest::decode(r, v)?, id, v),
        ApiKey::OffsetFetch => {
            let req = OffsetFetchRequest::decode(r, v)?;
            let (found, error) = match shared.app.coordinator.committed(&req.group_id, req.topics.as_deref()) {
                Ok(found) => (found, 0),
                // Each asked partition carries the error too (before v2
                // there is no top-level one).
                Err(e) => {
                    let none = crate::kafka::coordinator::OffsetInfo {
                        offset: -1,
                        leader_epoch: -1,
                        metadata: None,
                    };
                    let asked = req.topics.clone().unwrap_or_default();
                    let found = asked
                        .into_iter()
                        .map(|(t, parts)| (t, parts.into_iter().map(|p| (p, none.clone())).collect()))
                        .collect();
                    (found, e.code())
                }
            };
            let topics: Vec<(String, Vec<FetchedOffset>)> = found
                .into_iter()
                .map(|(t, parts)| {
                    let parts = parts
                        .into_iter()
                        .map(|(partition, info)| FetchedOffset {
                            partition,
                            offset: info.offset,
                            leader_epoch: info.leader_epoch,
                            metadata: info.metadata,
                            error_code: error,
                        })
                        .collect();
                    (t, parts)
                })
                .collect();
            respond(id, |w| offsets::encode_offset_fetch(w, v, &topics, error))
        }
    })
}

fn topic_metadata(name: String, result: Result<i32, KafkaError>, node_id: i32) -> TopicMetadata {
    let partitions = result
        .map(|n| {
            (0..n)
                .map(|index| PartitionMetadata {
                    error_code: 0,
                    index,
                    leader: node_id,
                    leader_epoch: -1,
                    replicas: vec![node_id],
                    isr: vec![node_id],
                })
                .collect()
        })
        .unwrap_or_default();
    TopicMetadata {
        error_code: code_of(&result),
        name,
        partitions,
    }
}

/// Metadata, creating requested topics when allowed. Runs before the next
/// request is read: a topic it creates exists for a Produce pipelined behind it.
async fn handle_metadata(shared: &Arc<Shared>, req: MetadataRequest, id: i32, v: i16) -> Pending {
    let c = shared.config.clone();
    let store = Arc::clone(&shared.app.store);
    let create = req.allow_auto_topic_creation && c.auto_create_topics;
    let node_id = c.node_id;
    let topics = tokio::task::spawn_blocking(move || match req.topics {
        None => backend::topics(&store)
            .into_iter()
            .map(|(name, n)| topic_metadata(name, Ok(n), node_id))
            .collect(),
        Some(names) => names
            .into_iter()
            .map(|n| {
                let found = backend::topic(&store, &n, create)
                    .map(|t| i32::try_from(t.meta.partitions).unwrap_or(i32::MAX))
                    .map_err(|f| f.error);
                topic_metadata(n, found, node_id)
            })
            .collect(),
    })
    .await
    .unwrap_or_else(|e| {
        tracing::error!(error = %e, "metadata task failed");
        Vec::new()
    });
    let resp = match &shared.app.cluster {
        Some(cluster) => cluster_metadata(cluster, topics, &c.cluster_id),
        None => MetadataResponse {
            brokers: vec![(c.node_id, c.advertised_host.clone(), c.advertised_port)],
            cluster_id: Some(c.cluster_id.clone()),
            controller_id: c.node_id,
            topics,
        },
    };
    respond(id, |w| resp.encode(w, v))
}

/// Metadata in a cluster: every live node with a Kafka listener, and each
/// partition's leader, replicas and in-sync replicas from the cluster's
/// state, so that clients send to leaders and follow them when they move
/// (NOT_LEADER_OR_FOLLOWER makes them ask again). The leader epoch stays
/// -1: clients then do not validate offsets with OffsetForLeaderEpoch,
/// which is not implemented.
fn cluster_metadata(
    cluster: &crate::cluster::Cluster,
    topics: Vec<TopicMetadata>,
    cluster_id: &str,
) -> MetadataResponse {
    let view = cluster.view();
    let brokers = view
        .nodes
        .values()
        .filter_map(|n| {
            let (host, port) = n.kafka.as_deref()?.rsplit_once(':')?;
            Some((n.id, host.to_owned(), port.parse().ok()?))
        })
        .collect();
    let topics = topics
        .into_iter()
        .map(|mut t| {
            for p in &mut t.partitions {
                let state = u32::try_from(p.index).ok().and_then(|i| view.partition(&t.name, i));
                match state {
                    Some(s) => {
                        p.leader = s.value.leader;
                        p.replicas = s.value.replicas.clone();
                        p.isr = s.value.isr.clone();
                        if s.value.leader < 0 {
                            p.error_code = KafkaError::LEADER_NOT_AVAILABLE.code();
                        }
                    }
                    None => {
                        p.leader = -1;
                        p.error_code = KafkaError::LEADER_NOT_AVAILABLE.code();
                    }
                }
            }
            t
        })
        .collect();
    MetadataResponse {
        brokers,
        cluster_id: view.cluster_id.clone().or_else(|| Some(cluster_id.to_owned())),
        controller_id: view.controller_id().unwrap_or(-1),
        topics,
    }
}

/// One partition of a Produce request as it goes through the stages.
type Parts<T> = Vec<(String, Vec<(i32, Result<T, Failure>)>)>;

/// Produce: every partition's payload is checked on the blocking pool and
/// queued on the writer threads before this returns, so the next request
/// on the connection is appended after this one (idempotent producers
/// pipeline up to five and count on that order). The response waits for
/// durability; acks=0 gets none.
async fn handle_produce(shared: &Arc<Shared>, req: ProduceRequest, id: i32, v: i16) -> Pending {
    let refuse = if req.transactional_id.is_some() {
        Some(KafkaError::TRANSACTIONAL_ID_AUTHORIZATION_FAILED)
    } else if !matches!(req.acks, -1..=1) {
        Some(KafkaError::INVALID_REQUIRED_ACKS)
    } else {
        None
    };
    let shape: Vec<(String, Vec<i32>)> = req
        .topics
        .iter()
        .map(|(t, parts)| (t.clone(), parts.iter().map(|p| p.index).collect()))
        .collect();
    let respond_at_all = req.acks != 0;
    let checked: Parts<CheckedProduce> = match refuse {
        Some(e) => fail_all(&shape, e),
        None => {
            let store = Arc::clone(&shared.app.store);
            let (max, create) = (shared.config.max_uncompressed_bytes, shared.config.auto_create_topics);
            let topics = req.topics;
            tokio::task::spawn_blocking(move || {
                topics
                    .into_iter()
                    .map(|(name, parts)| {
                        let parts = parts
                            .into_iter()
                            .map(|p| {
                                (
                                    p.index,
                                    backend::check_produce(&store, &name, p.index, p.records, max, create),
                                )
                            })
                            .collect();
                        (name, parts)
                    })
                    .collect()
            })
            .await
            .unwrap_or_else(|e| {
                tracing::error!(error = %e, "produce check task failed");
                fail_all(&shape, KafkaError::UNKNOWN_SERVER_ERROR)
            })
        }
    };
    // Queue in request order; the writers work on them concurrently. In a
    // cluster, only partitions this node leads (with enough replicas in
    // sync for acks=all) are queued; the others get the Kafka error that
    // sends the client to the leader.
    let cluster = shared.app.cluster.clone();
    let acks_all = req.acks == -1;
    let mut queued = Vec::with_capacity(checked.len());
    for (name, parts) in checked {
        let mut out = Vec::with_capacity(parts.len());
        for (index, c) in parts {
            let epoch = match (&c, &cluster) {
                (Ok(c), Some(cluster)) => match cluster.ticket(&c.partition, acks_all) {
                    Ok(epoch) => Ok(Some(epoch)),
                    Err(e) => Err(Failure {
                        error: e.kafka_code(),
                        message: Some(e.to_string()),
                    }),
                },
                _ => Ok(None),
            };
            let q = match (c, epoch) {
                (Ok(c), Ok(epoch)) => backend::submit(&shared.app.writer, c)
                    .await
                    .map(|(p, rx)| (p, rx, epoch)),
                (Err(f), _) | (_, Err(f)) => Err(f),
            };
            out.push((index, q));
        }
        queued.push((name, out));
    }
    let finish = async move {
        let mut topics = Vec::with_capacity(queued.len());
        for (name, parts) in queued {
            let mut responses = Vec::with_capacity(parts.len());
            for (index, q) in parts {
                let result = match q {
                    Ok((partition, rx, epoch)) => {
                        let ok = backend::outcome(&partition, rx).await;
                        match (ok, &cluster, epoch) {
                            (Ok(ok), Some(cluster), Some(epoch)) if acks_all => cluster
                                .acknowledge(&partition, epoch, ok.stored_end)
                                .await
                                .map(|()| ok)
                                .map_err(|e| Failure {
                                    error: e.kafka_code(),
                                    message: Some(e.to_string()),
                                }),
                            (other, ..) => other,
                        }
                    }
                    Err(f) => Err(f),
                };
                if let Err(f) = &result {
                    tracing::debug!(topic = %name, partition = index, error = %f.error, message = ?f.message, "produce refused");
                }
                responses.push(PartitionResponse {
                    index,
                    error_code: result.as_ref().map_or_else(|f| f.error.code(), |_| 0),
                    base_offset: result.as_ref().map_or(-1, |ok| ok.base_offset),
                    log_start_offset: result.as_ref().map_or(-1, |ok| ok.log_start_offset),
                    error_message: result
                        .err()
                        .map(|f| f.message.unwrap_or_else(|| f.error.name().to_owned())),
                });
            }
            topics.push((name, responses));
        }
        let mut w = Writer::new();
        produce::encode_response(&mut w, v, &topics);
        ResponseFrame::new(id, w)
    };
    if respond_at_all {
        Box::pin(async move { Some(finish.await) })
    } else {
        // acks=0: no response, but the request stays in the connection's
        // queue until its appends are done (failures are still logged), so
        // it counts against the requests and bytes in flight: answering
        // nothing must not let a client pipeline without bound.
        Box::pin(async move {
            finish.await;
            None
        })
    }
}

fn fail_all<T>(shape: &[(String, Vec<i32>)], e: KafkaError) -> Parts<T> {
    shape
        .iter()
        .map(|(t, parts)| (t.clone(), parts.iter().map(|&p| (p, Err(Failure::from(e)))).collect()))
        .collect()
}

fn handle_list_offsets(shared: &Arc<Shared>, req: ListOffsetsRequest, id: i32, v: i16) -> Pending {
    let store = Arc::clone(&shared.app.store);
    Box::pin(async move {
        let shape: Vec<(String, Vec<i32>)> = req
            .topics
            .iter()
            .map(|(t, parts)| (t.clone(), parts.iter().map(|p| p.0).collect()))
            .collect();
        // Lookups by time read segments: off the runtime.
        let topics: Vec<(String, Vec<ListOffsetsPartition>)> = tokio::task::spawn_blocking(move || {
            req.topics
                .into_iter()
                .map(|(name, parts)| {
                    let parts = parts
                        .into_iter()
                        .map(|(partition, ts)| {
                            let found = backend::list_offset(&store, &name, partition, ts);
                            let (timestamp, offset) = found.unwrap_or((-1, -1));
                            ListOffsetsPartition {
                                partition,
                                error_code: code_of(&found),
                                timestamp,
                                offset,
                            }
                        })
                        .collect();
                    (name, parts)
                })
                .collect()
        })
        .await
        .unwrap_or_else(|_| {
            shape
                .into_iter()
                .map(|(t, parts)| {
                    let parts = parts
                        .into_iter()
                        .map(|partition| ListOffsetsPartition {
                            partition,
                            error_code: KafkaError::UNKNOWN_SERVER_ERROR.code(),
                            timestamp: -1,
                            offset: -1,
                        })
                        .collect();
                    (t, parts)
                })
                .collect()
        });
        let mut w = Writer::new();
        offsets::encode_list_offsets(&mut w, v, &topics);
        Some(ResponseFrame::new(id, w))
    })
}

fn handle_offset_commit(shared: &Arc<Shared>, req: OffsetCommitRequest, id: i32, v: i16) -> Pending {
    let shape: Vec<(String, Vec<i32>)> = req
        .topics
        .iter()
        .map(|(t, parts)| (t.clone(), parts.iter().map(|p| p.partition).collect()))
        .collect();
    let offsets = req
        .topics
        .into_iter()
        .flat_map(|(t, parts)| {
            parts
                .into_iter()
                .map(move |p| (t.clone(), p.partition, p.offset, p.leader_epoch, p.metadata))
        })
        .collect();
    let commit = shared.app.coordinator.commit(CommitRequest {
        group_id: req.group_id,
        generation_id: req.generation_id,
        member_id: req.member_id,
        offsets,
    });
    Box::pin(async move {
        let mut results = commit.await.into_iter();
        let topics: Vec<(String, Vec<(i32, i16)>)> = shape
            .into_iter()
            .map(|(t, parts)| {
                let parts = parts
                    .into_iter()
                    .map(|p| (p, results.next().map_or(0, |r| code_of(&r))))
                    .collect();
                (t, parts)
            })
            .collect();
        let mut w = Writer::new();
        offsets::encode_offset_commit(&mut w, v, &topics);
        Some(ResponseFrame::new(id, w))
    })
}
