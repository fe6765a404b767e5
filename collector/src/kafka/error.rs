//! Kafka error codes as a value type shared by the store access layer
//! (`backend.rs`), the coordinator and the protocol layer.
//!
//! Why a value type and not a `thiserror` enum: these are wire codes a
//! client interprets (retriable or not, refresh metadata or not); the
//! backend and the coordinator report failures as the code the client must
//! see, so the protocol layer never translates storage errors itself. The
//! human-readable cause travels beside it where the protocol has room
//! (Produce v8's error message) and in the collector's log.

use std::fmt;

/// A non-zero Kafka protocol error code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct KafkaError(pub i16);

macro_rules! codes {
    ($($name:ident = $code:expr),* $(,)?) => {
        impl KafkaError {
            $(
                #[doc = concat!("Kafka error `", stringify!($name), "` (", stringify!($code), ").")]
                pub const $name: KafkaError = KafkaError($code);
            )*

            /// Kafka's name for the code, for logs.
            pub fn name(self) -> &'static str {
                match self.0 {
                    $($code => stringify!($name),)*
                    _ => "UNKNOWN_ERROR_CODE",
                }
            }
        }
    };
}

codes! {
    UNKNOWN_SERVER_ERROR = -1,
    OFFSET_OUT_OF_RANGE = 1,
    CORRUPT_MESSAGE = 2,
    UNKNOWN_TOPIC_OR_PARTITION = 3,
    INVALID_FETCH_SIZE = 4,
    LEADER_NOT_AVAILABLE = 5,
    NOT_LEADER_OR_FOLLOWER = 6,
    REQUEST_TIMED_OUT = 7,
    MESSAGE_TOO_LARGE = 10,
    OFFSET_METADATA_TOO_LARGE = 12,
    COORDINATOR_LOAD_IN_PROGRESS = 14,
    COORDINATOR_NOT_AVAILABLE = 15,
    NOT_COORDINATOR = 16,
    INVALID_TOPIC_EXCEPTION = 17,
    RECORD_LIST_TOO_LARGE = 18,
    NOT_ENOUGH_REPLICAS = 19,
    NOT_ENOUGH_REPLICAS_AFTER_APPEND = 20,
    INVALID_REQUIRED_ACKS = 21,
    INVALID_TIMESTAMP = 32,
    ILLEGAL_GENERATION = 22,
    INCONSISTENT_GROUP_PROTOCOL = 23,
    INVALID_GROUP_ID = 24,
    UNKNOWN_MEMBER_ID = 25,
    INVALID_SESSION_TIMEOUT = 26,
    REBALANCE_IN_PROGRESS = 27,
    INVALID_COMMIT_OFFSET_SIZE = 28,
    UNSUPPORTED_VERSION = 35,
    INVALID_REQUEST = 42,
    POLICY_VIOLATION = 44,
    UNSUPPORTED_FOR_MESSAGE_FORMAT = 43,
    OUT_OF_ORDER_SEQUENCE_NUMBER = 45,
    DUPLICATE_SEQUENCE_NUMBER = 46,
    INVALID_PRODUCER_EPOCH = 47,
    TRANSACTIONAL_ID_AUTHORIZATION_FAILED = 53,
    UNKNOWN_PRODUCER_ID = 59,
    GROUP_ID_NOT_FOUND = 69,
    MEMBER_ID_REQUIRED = 79,
    GROUP_MAX_SIZE_REACHED = 81,
    FENCED_INSTANCE_ID = 82,
    INVALID_RECORD = 87,
    KAFKA_STORAGE_ERROR = 56,
    UNSUPPORTED_COMPRESSION_TYPE = 76,
}

impl KafkaError {
    /// The code as sent on the wire.
    pub fn code(self) -> i16 {
        self.0
    }
}

/// The wire code of a result: 0 for success.
pub fn code_of<T>(r: &Result<T, KafkaError>) -> i16 {
    match r {
        Ok(_) => 0,
        Err(e) => e.0,
    }
}

impl fmt::Display for KafkaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.name(), self.0)
    }
}

impl std::error::Error for KafkaError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_codes() {
        assert_eq!(KafkaError::REBALANCE_IN_PROGRESS.code(), 27);
        assert_eq!(
            KafkaError::OUT_OF_ORDER_SEQUENCE_NUMBER.name(),
            "OUT_OF_ORDER_SEQUENCE_NUMBER"
        );
        assert_eq!(KafkaError(-77).name(), "UNKNOWN_ERROR_CODE");
        assert_eq!(code_of::<()>(&Err(KafkaError::ILLEGAL_GENERATION)), 22);
        assert_eq!(code_of(&Ok(1)), 0);
    }
}
