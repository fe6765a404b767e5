//! Names on disk, in Kafka's style: a segment is named by its base offset,
//! zero-padded to 20 digits, plus a suffix; temp files end in `.tmp` and are
//! deleted at start-up.
//!
//! ```text
//! <data_dir>/topics/<topic>/topic.json
//! <data_dir>/topics/<topic>/<partition>/00000000000000000000.log
//! ```

use std::path::{Path, PathBuf};

/// Suffix of segment log files.
pub const LOG_SUFFIX: &str = ".log";
/// Suffix of offset index files.
pub const INDEX_SUFFIX: &str = ".index";
/// Suffix of time index files.
pub const TIMEINDEX_SUFFIX: &str = ".timeindex";
/// Suffix of producer state snapshots.
pub const SNAPSHOT_SUFFIX: &str = ".snapshot";
/// The partition's recovery point.
pub const RECOVERY_POINT: &str = "recovery-point.json";
/// Suffix of files being written, never read.
pub const TMP_SUFFIX: &str = ".tmp";
/// Per-topic metadata file.
pub const TOPIC_META: &str = "topic.json";

/// `<data_dir>/topics`.
pub fn topics_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("topics")
}

/// `<data_dir>/topics/<topic>`.
pub fn topic_dir(data_dir: &Path, topic: &str) -> PathBuf {
    topics_dir(data_dir).join(topic)
}

/// `<topic_dir>/<partition>`.
pub fn partition_dir(topic_dir: &Path, partition: u32) -> PathBuf {
    topic_dir.join(partition.to_string())
}

/// `<dir>/<base_offset:020>.log`.
pub fn log_path(dir: &Path, base_offset: i64) -> PathBuf {
    dir.join(format!("{base_offset:020}{LOG_SUFFIX}"))
}

/// `<dir>/<offset:020>.snapshot`.
pub fn snapshot_path(dir: &Path, offset: i64) -> PathBuf {
    dir.join(format!("{offset:020}{SNAPSHOT_SUFFIX}"))
}

/// The base offset in a segment file name, if it is one.
pub fn parse_log_name(name: &str) -> Option<i64> {
    parse_offset_name(name, LOG_SUFFIX)
}

/// The offset in a `<offset:020><suffix>` name, if it is one.
pub fn parse_offset_name(name: &str, suffix: &str) -> Option<i64> {
    let digits = name.strip_suffix(suffix)?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        let p = log_path(Path::new("/d"), 42);
        assert_eq!(p, Path::new("/d/00000000000000000042.log"));
        assert_eq!(parse_log_name("00000000000000000042.log"), Some(42));
        assert_eq!(parse_log_name("42.log"), None);
        assert_eq!(parse_log_name("0000000000000000004x.log"), None);
        assert_eq!(parse_log_name("00000000000000000042.log.tmp"), None);
    }
}
