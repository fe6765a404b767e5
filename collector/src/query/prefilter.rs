//! The literal prefilter: byte strings a line must contain for a query's
//! pipeline to keep it, searched before anything else runs.
//!
//! Why a module of its own: the pipeline's filters already find these
//! literals fast, but only per line and after the record's labels are
//! built. Searching a whole decompressed batch first lets the scan drop
//! batches that cannot match without decoding their records, and searching
//! each line before building its labels keeps non-matching lines cheap.
//! A batch's records section also holds headers and keys, so a hit there
//! may be false; that only costs a per-line check, never a lost line.

use aho_corasick::AhoCorasick;
use memchr::memmem;

use super::logql::Pipeline;

/// One "contains one of these" condition.
#[derive(Debug)]
enum AnyOf {
    One(Box<memmem::Finder<'static>>),
    Many(AhoCorasick),
}

impl AnyOf {
    fn is_match(&self, haystack: &[u8]) -> bool {
        match self {
            AnyOf::One(f) => f.find(haystack).is_some(),
            AnyOf::Many(ac) => ac.is_match(haystack),
        }
    }
}

/// All conditions of one query; a line must meet every one.
#[derive(Debug, Default)]
pub struct Prefilter {
    conditions: Vec<AnyOf>,
}

impl Prefilter {
    /// The prefilter implied by `pipeline` (empty when it implies nothing).
    pub fn new(pipeline: &Pipeline) -> Self {
        let mut conditions = Vec::new();
        for set in pipeline.required_literal_sets() {
            match set.as_slice() {
                [one] => conditions.push(AnyOf::One(Box::new(memmem::Finder::new(one).into_owned()))),
                many => {
                    // A set the automaton cannot be built for only loses pruning.
                    if let Ok(ac) = AhoCorasick::new(many) {
                        conditions.push(AnyOf::Many(ac));
                    }
                }
            }
        }
        Prefilter { conditions }
    }

    /// Whether it can reject anything.
    pub fn is_empty(&self) -> bool {
        self.conditions.is_empty()
    }

    /// Whether `bytes` (a line, or a whole batch's records) may hold a match.
    pub fn may_match(&self, bytes: &[u8]) -> bool {
        self.conditions.iter().all(|c| c.is_match(bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::query::logql::{Expr, parse};

    fn prefilter(q: &str) -> Prefilter {
        let Ok(Expr::Log(log)) = parse(q) else {
            panic!("not a log query: {q}")
        };
        Prefilter::new(&log.pipeline)
    }

    #[test]
    fn literals_and_regex_prefixes() {
        let p = prefilter(r#"{topic="a"} |= "error" |~ "(GET|POST) /api""#);
        assert!(p.may_match(b"error in POST /api/x"));
        assert!(!p.may_match(b"error in PUT /api/x"));
        assert!(!p.may_match(b"GET /api ok"));
        assert!(prefilter(r#"{topic="a"} != "x""#).is_empty());
        // A line_format before the filter rewrites the line: nothing to require.
        assert!(prefilter(r#"{topic="a"} | line_format "{{.x}}" |= "y""#).is_empty());
    }
}
