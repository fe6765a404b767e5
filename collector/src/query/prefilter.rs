//! The prefilter: what a scan can rule out before a query's pipeline runs,
//! by searching bytes instead of decoding records.
//!
//! Why a module of its own: the pipeline's filters find their literals
//! fast, but only per line and after the record's labels are built. Two
//! searches here come first:
//! - over a whole decompressed records section, the *driver*: a regex whose
//!   matches overlap every record whose line can pass (the line filter
//!   with the longest literals to search for, `Pipeline::section_pattern`). Only
//!   the records a match touches are decoded; the rest are skipped by
//!   their length prefixes, and a section without a match costs one
//!   search. A match in a key or header may make a record a candidate
//!   that fails later: that costs a check, never a lost line.
//! - per candidate line, the *conditions*: one literal set per filter,
//!   each a set the line must contain a member of.
//!
//! The searches are `regex::bytes` regexes: for literal alternations its
//! literal searchers (memchr, Teddy) run several times faster than an
//! Aho-Corasick automaton over these sets (bench/RESULTS.md, "Queries").
//! A filter drives only where it has a literal of 3 bytes or more to
//! search for; without one (`\d+\.\d+\.\d+\.\d+`) a section search is
//! slower than the regex line by line. One that makes most records
//! candidates (`|= "INFO"`) costs up to 2x more than decoding every
//! record, so a scan measures its driver's yield on its first sections
//! and stops using one that does not prune.

use std::ops::ControlFlow;
use std::sync::atomic::{AtomicU64, Ordering};

use logpost_shared::batch::{BatchError, RecordIter, RecordView};
use regex::bytes::Regex;

use super::folded_literal::FoldedLiteral;
use super::logql::{LineFilter, MIN_SECTION_LITERAL, Pipeline};

/// All conditions of one query; a line must meet every one.
#[derive(Debug, Default)]
pub struct Prefilter {
    /// One regex per literal set: matches when the bytes contain a member.
    conditions: Vec<Regex>,
    /// The search over whole sections; `None`: every record is a candidate.
    driver: Option<Driver>,
    /// How the driver has done in this scan so far.
    driver_yield: DriverYield,
    /// The pipeline's leading line filters, run by the scan before it
    /// builds an entry (`Pipeline::leading_line_filters`).
    leading_filters: Vec<LineFilter>,
}

/// The search over whole sections.
#[derive(Debug)]
enum Driver {
    /// A regex (see `Pipeline::section_pattern`) or a literal set.
    Regex(Regex),
    /// Bytes ignoring ASCII case in places (`Pipeline::folded_section_literal`).
    Folded(FoldedLiteral),
}

impl Driver {
    /// Where the first match at or after `from` starts and ends.
    fn find_at(&self, haystack: &[u8], from: usize) -> Option<(usize, usize)> {
        match self {
            Driver::Regex(re) => re.find_at(haystack, from).map(|m| (m.start(), m.end())),
            Driver::Folded(f) => f.find_at(haystack, from).map(|at| (at, at + f.len())),
        }
    }
}

/// Records searched with the driver and candidates it made, over a scan
/// (atomics: a filter may be shared by the threads of one query).
#[derive(Debug, Default)]
struct DriverYield {
    records: AtomicU64,
    candidates: AtomicU64,
}

/// Records a scan's driver is tried on before its yield is judged: a few
/// sections, so one odd section does not decide.
const DRIVER_TRIAL_RECORDS: u64 = 20_000;

impl DriverYield {
    /// Whether the driver still pays: on trial, or making candidates of
    /// at most half the records it searched. (Past that, decoding every
    /// record is cheaper than searching first; once off, it stays off.)
    fn pays(&self) -> bool {
        let records = self.records.load(Ordering::Relaxed);
        records < DRIVER_TRIAL_RECORDS || self.candidates.load(Ordering::Relaxed) * 2 <= records
    }

    fn add(&self, records: u64, candidates: u64) {
        self.records.fetch_add(records, Ordering::Relaxed);
        self.candidates.fetch_add(candidates, Ordering::Relaxed);
    }
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
        let conditions: Vec<(Vec<Vec<u8>>, Regex)> = pipeline
            .required_literal_sets()
            .into_iter()
            .filter_map(|set| {
                let search = any_of(&set)?;
                Some((set, search))
            })
            .collect();
        // Else a condition's literals, where they are long enough to prune
        // (`^error` has no section pattern, but every passing line holds "error").
        let folded = pipeline
            .folded_section_literal()
            .and_then(|run| FoldedLiteral::new(&run))
            .map(Driver::Folded);
        let driver = folded.or_else(|| {
            pipeline
                .section_pattern()
                .and_then(|p| Regex::new(&p).ok())
                .or_else(|| {
                    conditions
                        .iter()
                        .find(|(set, _)| set.iter().all(|l| l.len() >= MIN_SECTION_LITERAL))
                        .map(|(_, search)| search.clone())
                })
                .map(Driver::Regex)
        });
        let conditions = conditions.into_iter().map(|(_, search)| search).collect();
        Prefilter {
            conditions,
            driver,
            driver_yield: DriverYield::default(),
            leading_filters: pipeline.leading_line_filters().cloned().collect(),
        }
    }

    /// Whether the next section is searched with a driver (there is one,
    /// and it has pruned so far).
    pub fn drives(&self) -> bool {
        self.driver.is_some() && self.driver_yield.pays()
    }

    /// Whether it can reject anything.
    pub fn is_empty(&self) -> bool {
        self.conditions.is_empty() && self.driver.is_none()
    }

    /// Whether `line` may pass the pipeline.
    pub fn may_match(&self, line: &[u8]) -> bool {
        self.conditions.iter().all(|c| c.is_match(line))
    }

    /// Whether `line` passes the pipeline's leading line filters: exact,
    /// where `may_match` is a quick necessary condition.
    pub fn passes_leading_filters(&self, line: &[u8]) -> bool {
        self.leading_filters.iter().all(|f| f.matches(line))
    }

    /// Calls `f` with every record of a decompressed records section (of
    /// `count` records) that may hold a passing line, in order: all of
    /// them without a driver (or one that stopped paying), else those its
    /// matches touch.
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
        let Some(driver) = self.driver.as_ref().filter(|_| self.driver_yield.pays()) else {
            for record in records {
                if f(record?).is_break() {
                    return Ok(ControlFlow::Break(()));
                }
            }
            return Ok(ControlFlow::Continue(()));
        };
        let mut candidates = 0u64;
        let flow = Self::drive(driver, section, &mut records, &mut candidates, f);
        self.driver_yield.add(u64::try_from(count).unwrap_or(0), candidates);
        flow
    }

    /// The driver's walk: the records its matches in `section` touch.
    fn drive<'a>(
        driver: &Driver,
        section: &'a [u8],
        records: &mut RecordIter<'a>,
        candidates: &mut u64,
        mut f: impl FnMut(RecordView<'a>) -> ControlFlow<()>,
    ) -> Result<ControlFlow<()>, BatchError> {
        let mut from = 0;
        while from < section.len() {
            let Some((hit_start, hit_end)) = driver.find_at(section, from) else {
                break;
            };
            records.skip_before(hit_start)?;
            // The record holding the match's start, and any the match runs into.
            loop {
                let Some(record) = records.next() else {
                    return Ok(ControlFlow::Continue(()));
                };
                *candidates += 1;
                if f(record?).is_break() {
                    return Ok(ControlFlow::Break(()));
                }
                if RecordIter::position(records) >= hit_end {
                    break;
                }
            }
            from = RecordIter::position(records);
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
    fn the_driver_is_the_filter_with_the_longest_literals() {
        let driver = |q| {
            prefilter(q).0.driver.map(|d| match d {
                Driver::Regex(re) => re.as_str().to_owned(),
                Driver::Folded(f) => format!("folded {f:?}"),
            })
        };
        assert_eq!(
            driver(r#"{topic="a"} |~ "[0-9]+ x" |= "error""#).as_deref(),
            Some("(?:error)")
        );
        assert_eq!(
            driver(r#"{topic="a"} |= "ab" |= "xyz" |= "cd""#).as_deref(),
            Some("(?:xyz)")
        );
        // `^x` offers no section pattern (an assertion): the next filter drives.
        let sound = prefilter(r#"{topic="a"} |~ "^x" |~ "[0-9]+ x""#).0.driver.unwrap();
        assert!(
            sound.find_at(b"12 x", 0).is_some() && sound.find_at(b"x y", 0).is_none(),
            "{sound:?}"
        );
        // No sound section pattern: the first condition's literals drive,
        // if long enough to prune.
        assert_eq!(driver(r#"{topic="a"} |~ "^xyz" != "y""#).as_deref(), Some("xyz"));
        assert_eq!(driver(r#"{topic="a"} |~ "^xy" != "y""#), None);
        assert_eq!(driver(r#"{topic="a"} |~ "^[a-z]\\d" != "y""#), None);
        assert_eq!(driver(r#"{topic="a"} | line_format "{{.x}}" |~ "[0-9]+ x""#), None);
    }

    #[test]
    fn a_case_insensitive_literal_drives_when_no_shorter_than_the_rest() {
        let folded = |q| match prefilter(q).0.driver {
            Some(Driver::Folded(f)) => Some(f.len()),
            _ => None,
        };
        assert_eq!(folded(r#"{topic="a"} |~ "(?i)error.*timeout""#), Some(7));
        // Anchors do not matter to a plain substring search.
        assert_eq!(folded(r#"{topic="a"} |~ "(?i)^error: read""#), Some(11));
        assert_eq!(
            folded(r#"{topic="a"} |~ "(?i)err" |= "Exception""#),
            None,
            "9 bytes beat 3"
        );
        assert_eq!(folded(r#"{topic="a"} |~ "(?i)er""#), None, "too short to prune");
        assert_eq!(folded(r#"{topic="a"} | line_format "{{.x}}" |~ "(?i)timeout""#), None);
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
            r#"{topic="a"} |~ "(?i)^line \\d+ x+ error""#,
            r#"{topic="a"} |~ "(?i)read t(?-i:imeout)""#,
            r#"{topic="a"} |= "nothing matches this""#,
            r#"{topic="a"} |= "xxx" or "line 1""#,
            r#"{topic="a"} |~ "line [0-9]+ x""#,
            r#"{topic="a"} |~ "[0-9]+ x{150}""#,
            r#"{topic="a"} |~ "\\d[05] x""#,
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

    /// A section of `n` records, every `every`-th holding "needle".
    fn needles(n: i64, every: i64) -> (Vec<u8>, i32) {
        let mut b = BatchBuilder::new();
        for i in 0..n {
            let line = if i % every == 0 {
                format!("{i} a needle")
            } else {
                format!("{i} hay")
            };
            b.append(i, None, Some(line.as_bytes()), &[]);
        }
        let frame = b.finish(Compression::None).unwrap();
        let header = check(&frame).unwrap();
        let mut scratch = Vec::new();
        let section = records_section(&frame, &header, 1 << 24, &mut scratch)
            .unwrap()
            .to_vec();
        (section, header.records_count)
    }

    /// The records a prefilter offers from one section.
    fn candidates(p: &Prefilter, section: &[u8], count: i32) -> usize {
        let mut n = 0;
        let flow = p.for_each_candidate(section, count, |_| {
            n += 1;
            ControlFlow::Continue(())
        });
        assert!(flow.unwrap().is_continue());
        n
    }

    #[test]
    fn a_driver_that_does_not_prune_is_dropped_after_its_trial() {
        let (section, count) = needles(4_000, 100);
        let (p, _) = prefilter(r#"{topic="a"} |~ "nee+dle|hay""#);
        let mut sections = 0;
        while p.drives() {
            assert_eq!(candidates(&p, &section, count), 4_000, "on trial, the driver picks");
            sections += 1;
            assert!(sections < 100, "never dropped");
        }
        assert_eq!(sections, 5, "tried on the first 20,000 records");
        // Without it every record is offered, and the lines are checked later.
        assert_eq!(candidates(&p, &section, count), 4_000);

        let (p, _) = prefilter(r#"{topic="a"} |~ "nee+dle""#);
        for _ in 0..20 {
            assert_eq!(candidates(&p, &section, count), 40);
        }
        assert!(p.drives(), "a driver that prunes stays");
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
