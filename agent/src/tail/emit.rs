//! From framed lines to records: multiline grouping, line filters,
//! parsing, headers and key, then the batcher. One place, so that reading,
//! idle flushes and truncation all treat lines the same way.

use std::time::Instant;

use logpost_shared::batch::HeaderSet;

use super::file_server::Stats;
use super::fingerprint::{FileKey, Head};
use super::framing::{Line, LineFramer};
use super::tracked::TrackedFile;
use crate::config::{AgentConfig, Source};
use crate::pipeline::parse::parse;
use crate::ship::batcher::{Batcher, ShipRequest, Slot, StreamPos};

/// Headers marking pieces of long lines, built once.
#[derive(Debug)]
pub struct Flags {
    pub split: HeaderSet,
    pub truncated: HeaderSet,
}

impl Default for Flags {
    fn default() -> Self {
        let mut split = HeaderSet::new();
        split.push("logpost.split", Some(b"true"));
        let mut truncated = HeaderSet::new();
        truncated.push("logpost.truncated", Some(b"true"));
        Flags { split, truncated }
    }
}

/// What every event of one read shares.
pub struct EmitCtx<'a> {
    pub topic: usize,
    pub source_index: usize,
    pub source: &'a Source,
    pub source_headers: &'a HeaderSet,
    pub flags: &'a Flags,
    pub now_ms: i64,
    pub now: Instant,
}

impl<'a> EmitCtx<'a> {
    /// The context for the files of source `source_index`; `None` for an
    /// index no source has (a reload removed it).
    pub fn for_source(
        cfg: &'a AgentConfig,
        source_headers: &'a [HeaderSet],
        flags: &'a Flags,
        batcher: &mut Batcher,
        source_index: usize,
        now_ms: i64,
        now: Instant,
    ) -> Option<Self> {
        let source = cfg.sources.get(source_index)?;
        Some(EmitCtx {
            topic: batcher.topic_index(&source.topic),
            source_index,
            source,
            source_headers: source_headers.get(source_index)?,
            flags,
            now_ms,
            now,
        })
    }
}

/// Where records go: the batcher, with sealed requests collected.
pub struct Sink<'a> {
    pub batcher: &'a mut Batcher,
    pub stats: &'a mut Stats,
    pub sealed: &'a mut Vec<ShipRequest>,
    /// Parsed fields of the current event, reused.
    pub scratch: &'a mut HeaderSet,
}

/// The stream-side state of a file an event updates.
struct Stream<'f> {
    key: FileKey,
    generation: u32,
    producer_id: i64,
    head: Head,
    path_headers: &'f HeaderSet,
    record_key: Option<&'f [u8]>,
    next_seq: &'f mut i64,
    slot: &'f mut Slot,
    last_record_end: &'f mut u64,
}

/// Runs `drive` (feed or flush) on a file's framer and turns every line
/// it emits into records (through the multiline assembler when configured).
pub fn emit_lines(
    f: &mut TrackedFile,
    ctx: &EmitCtx<'_>,
    sink: &mut Sink<'_>,
    drive: impl FnOnce(&mut LineFramer, &mut dyn FnMut(Line<'_>)),
) {
    let TrackedFile {
        framer,
        multiline,
        key,
        generation,
        producer_id,
        head,
        path_headers,
        record_key,
        next_seq,
        slot,
        last_record_end,
        ..
    } = f;
    let mut stream = Stream {
        key: *key,
        generation: *generation,
        producer_id: *producer_id,
        head: *head,
        path_headers,
        record_key: record_key.as_deref(),
        next_seq,
        slot,
        last_record_end,
    };
    let mut emit = |line: Line<'_>| {
        sink.stats.lines += 1;
        if let Some(s) = sink.stats.per_source.get_mut(ctx.source_index) {
            s.lines += 1;
        }
        sink.stats.lines_split += u64::from(line.split);
        sink.stats.lines_truncated += u64::from(line.truncated);
        match &ctx.source.multiline {
            None => emit_event(
                &mut stream,
                ctx,
                sink,
                line.bytes,
                line.end_pos,
                line.split,
                line.truncated,
            ),
            Some(cfg) => {
                if let Some(e) = multiline.push(cfg, line.bytes, line.end_pos, (line.split, line.truncated), ctx.now) {
                    emit_event(&mut stream, ctx, sink, &e.bytes, e.end_pos, e.split, e.truncated);
                }
            }
        }
    };
    drive(framer, &mut emit);
}

/// Sends a multiline event that has waited its timeout (or, with `force`,
/// any held event: the file is finished).
pub fn flush_multiline(f: &mut TrackedFile, ctx: &EmitCtx<'_>, sink: &mut Sink<'_>, force: bool) {
    let Some(cfg) = &ctx.source.multiline else { return };
    let event = if force {
        f.multiline.flush()
    } else {
        f.multiline.flush_due(cfg, ctx.now)
    };
    let Some(e) = event else { return };
    let TrackedFile {
        key,
        generation,
        producer_id,
        head,
        path_headers,
        record_key,
        next_seq,
        slot,
        last_record_end,
        ..
    } = f;
    let mut stream = Stream {
        key: *key,
        generation: *generation,
        producer_id: *producer_id,
        head: *head,
        path_headers,
        record_key: record_key.as_deref(),
        next_seq,
        slot,
        last_record_end,
    };
    emit_event(&mut stream, ctx, sink, &e.bytes, e.end_pos, e.split, e.truncated);
}

#[allow(clippy::too_many_arguments)]
fn emit_event(
    stream: &mut Stream<'_>,
    ctx: &EmitCtx<'_>,
    sink: &mut Sink<'_>,
    bytes: &[u8],
    end_pos: u64,
    split: bool,
    truncated: bool,
) {
    if !ctx.source.filter.keeps(bytes) {
        sink.stats.events_filtered += 1;
        return;
    }
    let mut timestamp_ms = ctx.now_ms;
    sink.scratch.clear();
    if let Some(p) = &ctx.source.parse {
        let parsed = parse(p, bytes, sink.scratch);
        sink.stats.parse_failures += u64::from(parsed.failed);
        if let Some(ts) = parsed.timestamp_ms {
            timestamp_ms = ts;
        }
    }
    let at = StreamPos {
        file: stream.key,
        generation: stream.generation,
        producer_id: stream.producer_id,
        seq: *stream.next_seq,
        end_pos,
        head: stream.head,
    };
    *stream.next_seq += 1;
    *stream.last_record_end = end_pos;
    let mut headers: [&HeaderSet; 4] = [
        ctx.source_headers,
        stream.path_headers,
        &*sink.scratch,
        &ctx.flags.split,
    ];
    let n = if split {
        4
    } else if truncated {
        headers[3] = &ctx.flags.truncated;
        4
    } else {
        3
    };
    let headers = headers.get(..n).unwrap_or_default();
    if let Some(req) = sink.batcher.append(
        ctx.topic,
        stream.slot,
        at,
        timestamp_ms,
        stream.record_key,
        bytes,
        headers,
        ctx.now,
    ) {
        sink.sealed.push(req);
    }
}
