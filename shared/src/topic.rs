//! Topic names. A topic becomes a directory name on the collector, so a name
//! is checked before it reaches a path: Kafka's rules (ASCII letters, digits,
//! `.`, `_`, `-`; at most 249 characters; not `.` or `..`), which also rule
//! out path separators.

/// Longest topic name, as in Kafka (a partition directory adds `-<n>` to it).
pub const MAX_TOPIC_LEN: usize = 249;

/// Why a topic name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TopicNameError {
    #[error("topic name is empty")]
    Empty,
    #[error("topic name is {len} characters long; the limit is {max}", max = MAX_TOPIC_LEN)]
    TooLong { len: usize },
    #[error("topic name {0:?} is reserved")]
    Reserved(String),
    #[error("topic name {name:?} has {ch:?} at position {pos}; allowed are ASCII letters, digits, '.', '_' and '-'")]
    BadChar { name: String, ch: char, pos: usize },
}

/// Whether `name` is one of the store's own topics (Kafka's convention:
/// `__consumer_offsets`): kept out of queries over every topic, flagged
/// internal in Kafka's Metadata.
pub fn is_internal(name: &str) -> bool {
    name.starts_with("__")
}

/// Checks a topic name.
///
/// # Errors
/// The first rule the name breaks.
pub fn validate_topic_name(name: &str) -> Result<(), TopicNameError> {
    if name.is_empty() {
        return Err(TopicNameError::Empty);
    }
    if name.len() > MAX_TOPIC_LEN {
        return Err(TopicNameError::TooLong { len: name.len() });
    }
    if name == "." || name == ".." {
        return Err(TopicNameError::Reserved(name.to_owned()));
    }
    if let Some((pos, ch)) = name
        .char_indices()
        .find(|&(_, c)| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(TopicNameError::BadChar {
            name: name.chars().take(64).collect(),
            ch,
            pos,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_kafka_style_names() {
        for name in ["logs", "web.access-log_2", "a", &"x".repeat(MAX_TOPIC_LEN)] {
            assert_eq!(validate_topic_name(name), Ok(()), "{name}");
        }
    }

    #[test]
    fn refuses_paths_and_oddities() {
        assert_eq!(validate_topic_name(""), Err(TopicNameError::Empty));
        assert_eq!(validate_topic_name(".."), Err(TopicNameError::Reserved("..".into())));
        assert!(matches!(
            validate_topic_name("../etc"),
            Err(TopicNameError::BadChar { ch: '/', .. })
        ));
        assert!(matches!(
            validate_topic_name("a b"),
            Err(TopicNameError::BadChar { ch: ' ', pos: 1, .. })
        ));
        assert!(matches!(validate_topic_name("é"), Err(TopicNameError::BadChar { .. })));
        assert!(matches!(
            validate_topic_name(&"x".repeat(MAX_TOPIC_LEN + 1)),
            Err(TopicNameError::TooLong { .. })
        ));
    }
}
