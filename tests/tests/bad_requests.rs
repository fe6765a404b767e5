//! Issue 3: bad request bodies get a 4xx naming the problem, the collector
//! keeps serving, and nothing stored changes.

use logpost_e2e::process::Collector;
use logpost_shared::batch::BatchBuilder;
use logpost_shared::compression::Compression;

const CT: &str = "application/vnd.kafka.record-batch.v2";

fn batch(lines: &[&str]) -> Vec<u8> {
    let mut b = BatchBuilder::new();
    for l in lines {
        b.append(1_700_000_000_000, Some(b"k"), Some(l.as_bytes()), &[]);
    }
    b.finish(Compression::Gzip { level: 1 }).unwrap()
}

/// `frame` with its codec bits set to `codec` and its CRC-32C made valid
/// again: a well-framed batch whose records section the codec must judge.
fn with_codec(mut frame: Vec<u8>, codec: u8) -> Vec<u8> {
    frame[22] = (frame[22] & !7) | codec;
    let crc = crc32c::crc32c(&frame[21..]);
    frame[17..21].copy_from_slice(&crc.to_be_bytes());
    frame
}

/// A batch of one record whose value is `value` bytes of zeros, in `compression`.
fn zeros(value: usize, compression: Compression) -> Vec<u8> {
    let mut b = BatchBuilder::new();
    b.append(1_700_000_000_000, None, Some(&vec![0; value]), &[]);
    b.finish(compression).unwrap()
}

fn post(c: &Collector, content_type: &str, body: Vec<u8>) -> (u16, String) {
    let resp = logpost_e2e::http()
        .post(format!("{}/v1/ingest/bad", c.url))
        .header("content-type", content_type)
        .body(body)
        .send()
        .unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().unwrap();
    // Error bodies are {"error": "..."}: compare the message itself.
    let message = serde_json::from_str::<serde_json::Value>(&text)
        .ok()
        .and_then(|v| v["error"].as_str().map(str::to_owned))
        .unwrap_or(text);
    (status, message)
}

fn state(c: &Collector) -> (String, Vec<Vec<u8>>) {
    let topics = c.logpost(&["topics", "--json"]);
    assert!(topics.status.success());
    (String::from_utf8(topics.stdout).unwrap(), c.lines("bad"))
}

#[test]
fn issue_3_bad_bodies_get_4xx_and_change_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let c = Collector::start(
        tmp.path(),
        "[http]\nmax_body_bytes = \"64KiB\"\nmax_uncompressed_bytes = \"1MiB\"\n",
    );
    let (status, body) = post(&c, CT, batch(&["kept 1", "kept 2"]));
    assert_eq!(status, 200, "{body}");
    let before = state(&c);
    assert_eq!(before.1, vec![b"kept 1".to_vec(), b"kept 2".to_vec()]);

    let mut corrupt = batch(&["evil"]);
    let last = corrupt.len() - 1;
    corrupt[last] ^= 0x55;
    let good = batch(&["line"]);
    let mut truncated = good.clone();
    truncated.truncate(good.len() - 5);
    let mut second_bad = batch(&["fine"]);
    second_bad.extend_from_slice(&corrupt);
    let big: Vec<u8> = (0..100_000u32).flat_map(|i| i.to_le_bytes()).collect();

    let cases: Vec<(&str, &str, Vec<u8>, u16, &str)> = vec![
        ("corrupt batch", CT, corrupt, 400, "CRC mismatch"),
        ("truncated body", CT, truncated, 400, "body ends inside batch 0"),
        (
            "not a batch",
            CT,
            b"GET / HTTP/1.1 this is just text, not a record batch".to_vec(),
            400,
            "batch 0 at byte 0",
        ),
        ("second batch bad", CT, second_bad, 400, "batch 1 at byte"),
        ("empty body", CT, Vec::new(), 400, "request body is empty"),
        ("oversized body", CT, big, 413, "exceeds the limit of 65536 bytes"),
        (
            "wrong content type",
            "text/plain",
            good.clone(),
            415,
            "content type \"text/plain\" is not supported",
        ),
        ("no content type", "", good.clone(), 415, "content type"),
        (
            "codec id past Kafka's five",
            CT,
            with_codec(good.clone(), 5),
            400,
            "unsupported compression codec 5",
        ),
        // gzip bytes labelled lz4, snappy, zstd: each decoder names itself.
        (
            "gzip labelled lz4",
            CT,
            with_codec(good.clone(), 3),
            400,
            "corrupt lz4 data",
        ),
        (
            "gzip labelled snappy",
            CT,
            with_codec(good.clone(), 2),
            400,
            "corrupt snappy data",
        ),
        ("gzip labelled zstd", CT, with_codec(good, 4), 400, "corrupt zstd data"),
    ];
    let mut cases = cases;
    // Bombs: just over 1 MiB (the limit) of zeros packs into under 64 KiB
    // (the body limit) in every codec, snappy (about 21x at best) included.
    for compression in [
        Compression::Gzip { level: 9 },
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ] {
        let bomb = zeros((1 << 20) + 4096, compression);
        assert!(bomb.len() < 64 << 10, "{compression:?}: {} bytes", bomb.len());
        cases.push(("bomb", CT, bomb, 413, "limit of 1048576 bytes"));
    }
    for (what, ct, body, want_status, want_text) in cases {
        let (status, text) = post(&c, ct, body);
        assert_eq!(status, want_status, "{what}: {text}");
        assert!(
            text.contains(want_text),
            "{what}: message {text:?} does not contain {want_text:?}"
        );
        assert_eq!(state(&c), before, "{what}: stored data changed");
    }
    // Still serving.
    let (status, _) = post(&c, CT, batch(&["after"]));
    assert_eq!(status, 200);
    assert_eq!(c.lines("bad").len(), 3);
}
