//! The prefilter: what a scan can rule out before a query's pipeline runs,
//! by searching bytes instead of decoding records.
//!
//! Why a module of its own: the pipeline's filters find their literals
//! fast, but only per line and after the record's labels are built. Two
//! searches here come first:
//! - over a whole decompressed records section, the *driver*: a regex whose
//!   matches overlap every record whose line can pass (the first positive
//!   line filter with a literal set, `LineFilter::section_pattern`). Only
//!   the records a match touches are decoded; the rest are skipped by
//!   their length prefixes, and a section without a match costs one
//!   search. A match in a key or header may make a record a candidate
//!   that fails later: that costs a check, never a lost line.
//! - per candidate line, the *conditions*: one literal set per filter,
//!   each a set the line must contain a member of.
//!
//! The searches are `regex::bytes` regexes of literal alternations: its
//! literal searchers (memchr, Teddy) run several times faster than an
//! Aho-Corasick automaton over these sets (bench/RESULTS.md, "Queries").

use std::ops::ControlFlow;

use logpost_shared::batch::{BatchError, RecordIter, RecordView};
use regex::bytes::Regex;

use super::logql::Pipeline;

/// All conditions of one query; a line must meet every one.
#[derive(Debug, Default)]
pub struct Prefilter {
    /// One regex per literal set: matches when the bytes contain a member.
    conditions: Vec<Regex>,
    /// The search over whole sections; `None`: every record is a candidate.
    driver: Option<Regex>,
}

/// A regex matching any of `literals`, byte for byte.
fn any_of(literals: &[Vec<u8>]) -> Option<Regex> {
    let alternatives: Option<Vec<String>> = literals
        .iter()
        .map(|l| std::str::from_utf8(l).ok().map(regex::escape))
        .collect();
    // A set the regex engine cannot build only loses pruning.
    Regex::new(&alternatives?.join("|")).ok()
}

impl Prefilter {
    /// The prefilter implied by `pipeline` (empty when it implies nothing).
    pub fn new(pipeline: &Pipeline) -> Self {
        let conditions: Vec<Regex> = pipeline
            .required_literal_sets()
            .iter()
            .filter_map(|set| any_of(set))
            .collect();
        let driver = pipeline
            .section_pattern()
            .and_then(|p| Regex::new(&p).ok())
            .or_else(|| conditions.first().cloned());
        Prefilter { conditions, driver }
    }

    /// Whether it can reject anything.
    pub fn is_empty(&self) -> bool {
        self.conditions.is_empty() && self.driver.is_none()
    }

    /// Whether `line` may pass the pipeline.
    pub fn may_match(&self, line: &[u8]) -> bool {
        self.conditions.iter().all(|c| c.is_match(line))
    }

    /// Calls `f` with every record of a decompressed records section (of
    /// `count` records) that may hold a passing line, in order: all of
    /// them without a driver, else those its matches touch.
    ///
    /// # Errors
    /// A corrupt record (including a length prefix skipped over).
    pub fn for_each_candidate<'a>(
        &self,
        section: &'a [u8],
        count: i32,
        mut f: impl FnMut(RecordView<'a>) -> ControlFlow<()>,
    ) -> Result<ControlFlow<()>, BatchError> {
        let mut records = RecordIter::new(section, count);
        let Some(driver) = &self.driver else {
            for record in records {
                if f(record?).is_break() {
                    return Ok(ControlFlow::Break(()));
                }
            }
            return Ok(ControlFlow::Continue(()));
        };
        let mut from = 0;
        while from < section.len() {
            let Some(hit) = driver.find_at(section, from) else {
                break;
            };
            records.skip_before(hit.start())?;
            // The record holding the match's start, and any the match runs into.
            loop {
                let Some(record) = records.next() else {
                    return Ok(ControlFlow::Continue(()));
                };
                if f(record?).is_break() {
                    return Ok(ControlFlow::Break(()));
                }
                if records.position() >= hit.end() {
                    break;
                }
            }
            from = records.position();
        }
        Ok(ControlFlow::Continue(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::query::logql::{Expr, parse};
    use logpost_shared::batch::{BatchBuilder, HeaderSet, check, records_section};
    use logpost_shared::compression::Compression;

    fn prefilter(q: &str) -> (Prefilter, Pipeline) {
        let Ok(Expr::Log(log)) = parse(q) else {
            panic!("not a log query: {q}")
        };
        (Prefilter::new(&log.pipeline), log.pipeline)
    }

    #[test]
    fn literals_and_regex_prefixes() {
        let (p, _) = prefilter(r#"{topic="a"} |= "error" |~ "(GET|POST) /api""#);
        assert!(p.may_match(b"error in POST /api/x"));
        assert!(!p.may_match(b"error in PUT /api/x"));
        assert!(!p.may_match(b"GET /api ok"));
        assert!(prefilter(r#"{topic="a"} != "x""#).0.is_empty());
        // A line_format before the filter rewrites the line: nothing to require.
        assert!(prefilter(r#"{topic="a"} | line_format "{{.x}}" |= "y""#).0.is_empty());
    }

    /// Lines of varied lengths (so varints vary), some over 127 bytes, with
    /// headers that contain the needles too (false candidates).
    fn section_lines() -> Vec<Vec<u8>> {
        (0..300u32)
            .map(|i| {
                let mut l = format!("line {i} ").into_bytes();
                l.extend(std::iter::repeat_n(b'x', (i as usize * 7) % 200));
                match i % 11 {
                    0 => l.extend_from_slice(b" ERROR: read Timeout"),
                    3 => l.extend_from_slice(b" error, retrying"),
                    5 => l.extend_from_slice(b" timeout then error"),
                    _ => {}
                }
                l
            })
            .collect()
    }

    #[test]
    fn candidates_include_every_passing_line() {
        let lines = section_lines();
        let mut hs = HeaderSet::new();
        hs.push("note", Some(b"error timeout"));
        let mut b = BatchBuilder::new();
        for (i, l) in lines.iter().enumerate() {
            let headers: &[&HeaderSet] = if i % 4 == 0 { &[&hs] } else { &[] };
            let key: &[u8] = if i % 10 == 0 { b"error" } else { b"k" };
            b.append(i as i64, Some(key), Some(l), headers);
        }
        let frame = b.finish(Compression::Gzip { level: 1 }).unwrap();
        let header = check(&frame).unwrap();
        let mut scratch = Vec::new();
        let section = records_section(&frame, &header, 1 << 24, &mut scratch).unwrap();
        for q in [
            r#"{topic="a"} |= "error""#,
            r#"{topic="a"} |~ "(?i)error.*timeout""#,
            r#"{topic="a"} |~ "(?i)timeout" |= "ERROR""#,
            r#"{topic="a"} |= "nothing matches this""#,
            r#"{topic="a"} |= "x" or "line 1""#,
            r#"{topic="a"} |~ "line [0-9]+ x""#,
        ] {
            let (p, pipeline) = prefilter(q);
            let mut candidates = Vec::new();
            let flow = p
                .for_each_candidate(section, header.records_count, |r| {
                    candidates.push(r.offset_delta);
                    ControlFlow::Continue(())
                })
                .unwrap();
            assert!(flow.is_continue());
            assert!(candidates.windows(2).all(|w| w[0] < w[1]), "{q}: in order, once each");
            let passing: Vec<i32> = lines
                .iter()
                .enumerate()
                .filter(|(_, l)| pipeline.process(l, &mut Default::default()).is_some())
                .map(|(i, _)| i as i32)
                .collect();
            for i in &passing {
                assert!(candidates.contains(i), "{q}: line {i} passes but was not a candidate");
            }
            if !passing.is_empty() {
                assert!(candidates.len() < lines.len(), "{q}: the driver pruned nothing");
            }
        }
    }

    #[test]
    fn a_break_stops_the_walk() {
        let mut b = BatchBuilder::new();
        for i in 0..10 {
            b.append(i, None, Some(b"hit"), &[]);
        }
        let frame = b.finish(Compression::None).unwrap();
        let header = check(&frame).unwrap();
        let mut scratch = Vec::new();
        let section = records_section(&frame, &header, 1 << 24, &mut scratch).unwrap();
        let (p, _) = prefilter(r#"{topic="a"} |= "hit""#);
        let mut seen = 0;
        let flow = p
            .for_each_candidate(section, header.records_count, |_| {
                seen += 1;
                if seen == 3 {
                    ControlFlow::Break(())
                } else {
                    ControlFlow::Continue(())
                }
            })
            .unwrap();
        assert!(flow.is_break());
        assert_eq!(seen, 3);
    }
}
