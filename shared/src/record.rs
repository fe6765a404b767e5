//! The data model: one log event.
//!
//! A record is what Kafka calls a record: a timestamp, an optional key, a
//! value and headers. For logpost the value is the log line, byte-exact and
//! not required to be UTF-8, and the headers are its labels (`host`,
//! `source`, `path`, user labels, parsed fields). Kafka allows a null value
//! and null header values; both are kept as `None` so that any batch a Kafka
//! client produced survives a decode/encode round trip unchanged.

/// One header: a label of the record. Kafka requires the key to be UTF-8.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// Header name, for example `host`.
    pub key: String,
    /// Header value; `None` is Kafka's null header value.
    pub value: Option<Vec<u8>>,
}

impl Header {
    /// A header with a present value.
    pub fn new(key: impl Into<String>, value: impl Into<Vec<u8>>) -> Self {
        Self {
            key: key.into(),
            value: Some(value.into()),
        }
    }
}

/// One log event, owned. The hot paths use [`crate::batch::RecordView`] and
/// [`crate::batch::BatchBuilder::append`] instead, which borrow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Milliseconds since the Unix epoch.
    pub timestamp_ms: i64,
    /// Partitioning key; `None` is Kafka's null key.
    pub key: Option<Vec<u8>>,
    /// The log line (without its line terminator); `None` is Kafka's null value.
    pub value: Option<Vec<u8>>,
    /// Labels and parsed fields, in order; names may repeat, as in Kafka.
    pub headers: Vec<Header>,
}

impl Record {
    /// A record holding `line` with no key and no headers.
    pub fn line(timestamp_ms: i64, line: impl Into<Vec<u8>>) -> Self {
        Self {
            timestamp_ms,
            key: None,
            value: Some(line.into()),
            headers: Vec::new(),
        }
    }

    /// The value of the first header named `key`, if any.
    pub fn header(&self, key: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|h| h.key == key)
            .and_then(|h| h.value.as_deref())
    }
}

/// Header that logpost's agent puts on the last record of each batch: how
/// far in its file the stream has got, as `<position> <head length> <head
/// CRC-32C>`. The collector keeps the latest per stream and hands it back
/// when the agent asks where to resume (exactly-once delivery).
pub const CURSOR_HEADER: &str = "logpost.cursor";
