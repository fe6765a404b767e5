//! Byte compatibility with an independent Kafka implementation, both ways:
//! we decode batches kafka-python built (fixtures made by
//! `interop/make_fixtures.py`), and kafka-python decodes batches we built
//! (`interop/decode_ours.py`, run live; the test command installs kafka-python).

// Test code: a failed unwrap is a failed test, with its location.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

use logpost_shared::batch::{BatchBuilder, ProducerInfo, check, records_to_owned, set_base_offset};
use logpost_shared::compression::Compression;
use logpost_shared::record::{Header, Record};
use serde_json::Value;

const LIMIT: usize = 64 << 20;

fn here() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests")
}

fn unhex(v: &Value) -> Option<Vec<u8>> {
    let s = v.as_str()?;
    Some(
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("fixture hex"))
            .collect(),
    )
}

fn hex(b: &Option<Vec<u8>>) -> Value {
    match b {
        None => Value::Null,
        Some(b) => Value::String(b.iter().map(|x| format!("{x:02x}")).collect()),
    }
}

fn records_from_json(v: &Value) -> Vec<Record> {
    v.as_array()
        .expect("records array")
        .iter()
        .map(|r| Record {
            timestamp_ms: r["timestamp_ms"].as_i64().unwrap(),
            key: unhex(&r["key"]),
            value: unhex(&r["value"]),
            headers: r["headers"]
                .as_array()
                .unwrap()
                .iter()
                .map(|h| Header {
                    key: h[0].as_str().unwrap().to_owned(),
                    value: unhex(&h[1]),
                })
                .collect(),
        })
        .collect()
}

#[test]
fn we_decode_kafka_python_batches() {
    for name in [
        "kafka_python_none",
        "kafka_python_gzip",
        "kafka_python_gzip_1000",
        "kafka_python_snappy_1000",
        "kafka_python_lz4_1000",
        "kafka_python_zstd_1000",
    ] {
        let dir = here().join("fixtures");
        let frame = std::fs::read(dir.join(format!("{name}.bin"))).unwrap();
        let expected: Value =
            serde_json::from_slice(&std::fs::read(dir.join(format!("{name}.json"))).unwrap()).unwrap();
        let header = check(&frame).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(
            i64::from(header.codec_id()),
            expected["codec"].as_i64().unwrap(),
            "{name}"
        );
        assert_eq!(header.producer.producer_id, expected["producer_id"].as_i64().unwrap());
        assert_eq!(
            i64::from(header.producer.producer_epoch),
            expected["producer_epoch"].as_i64().unwrap()
        );
        assert_eq!(
            i64::from(header.producer.base_sequence),
            expected["base_sequence"].as_i64().unwrap()
        );
        let records = records_to_owned(&frame, LIMIT).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(records, records_from_json(&expected["records"]), "{name}");
    }
}

#[test]
fn kafka_python_decodes_our_batches() {
    let records = vec![
        Record {
            timestamp_ms: 1_700_000_000_000,
            key: Some(b"stream".to_vec()),
            value: Some(b"GET /index.html 200".to_vec()),
            headers: vec![
                Header::new("host", "web-03"),
                Header::new("path", "/var/log/nginx/access.log"),
            ],
        },
        Record {
            timestamp_ms: 1_699_999_999_999,
            key: None,
            value: Some(vec![0, 0xff, 0xfe]),
            headers: vec![],
        },
        Record {
            timestamp_ms: 1_700_000_000_001,
            key: None,
            value: None,
            headers: vec![Header {
                key: "null".into(),
                value: None,
            }],
        },
    ];
    let mut stream = Vec::new();
    let mut expected = Vec::new();
    for (i, compression) in [
        Compression::None,
        Compression::Gzip { level: 1 },
        Compression::Gzip { level: 9 },
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ]
    .into_iter()
    .enumerate()
    {
        let mut builder = BatchBuilder::new();
        builder.set_producer(ProducerInfo {
            producer_id: 9,
            producer_epoch: 1,
            base_sequence: 3 * i as i32,
        });
        for r in &records {
            builder.append_record(r);
        }
        let mut frame = builder.finish(compression).unwrap();
        set_base_offset(&mut frame, 3 * i as i64);
        stream.extend_from_slice(&frame);
        expected.push((3 * i as i64, compression.codec().id()));
    }
    let dir = std::env::temp_dir().join(format!("logpost-interop-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("ours.bin");
    std::fs::write(&file, &stream).unwrap();

    let out = Command::new("python3")
        .arg(here().join("interop/decode_ours.py"))
        .arg(&file)
        .output()
        .expect("python3 is needed for this test; scripts/test installs it with kafka-python");
    assert!(
        out.status.success(),
        "kafka-python could not decode our batches (is kafka-python installed? scripts/test installs it):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let batches: Value = serde_json::from_slice(&out.stdout).unwrap();
    let batches = batches.as_array().unwrap();
    assert_eq!(batches.len(), expected.len());
    for (batch, (base_offset, codec)) in batches.iter().zip(expected) {
        assert_eq!(batch["base_offset"], base_offset);
        assert_eq!(batch["codec"], u64::from(codec));
        assert_eq!(batch["crc_valid"], true);
        assert_eq!(batch["producer_id"], 9);
        let got = batch["records"].as_array().unwrap();
        assert_eq!(got.len(), records.len());
        for (i, (g, r)) in got.iter().zip(&records).enumerate() {
            assert_eq!(g["offset"], base_offset + i as i64);
            assert_eq!(g["timestamp_ms"], r.timestamp_ms);
            assert_eq!(g["key"], hex(&r.key));
            assert_eq!(g["value"], hex(&r.value));
            let headers: Vec<Value> = r
                .headers
                .iter()
                .map(|h| serde_json::json!([h.key, hex(&h.value)]))
                .collect();
            assert_eq!(g["headers"], Value::Array(headers));
        }
    }
    std::fs::remove_dir_all(&dir).ok();
}
