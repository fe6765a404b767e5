//! Line filters: `|= "x"`, `!= "x"`, `|~ "re"`, `!~ "re"`, `|> "<_> x <_>"`,
//! `!> "..."`, each optionally with `or` alternatives (`|= "a" or "b"`);
//! `|=` and `!=` also take `ip("...")` alternatives (`|= ip("10.0.0.0/8")`).
//!
//! Why a module of its own: filters are the one stage that runs on every
//! scanned line, so they work on raw bytes (lines may be invalid UTF-8) and
//! use `regex::bytes`, whose literal optimisations make a plain `|= "x"` a
//! SIMD substring search.
//!
//! Semantics of `or`: a positive filter passes when any alternative
//! matches; a negative one (`!=`, `!~`, `!>`) passes when none does, so
//! `!= "a" or "b"` drops lines containing either, as in Loki.

use regex::bytes::Regex;
use regex_syntax::hir::literal::{ExtractKind, Extractor};
use regex_syntax::hir::{Class, Hir, HirKind};

use crate::query::logql::pipeline::ip::IpPattern;
use crate::query::logql::pipeline::pattern::PatternFilter;
use crate::query::logql::selector::is_plain_literal;

/// The operator of a line filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineFilterOp {
    /// `|=`: contains.
    Contains,
    /// `!=`: does not contain.
    NotContains,
    /// `|~`: regex matches somewhere (unanchored).
    Regex,
    /// `!~`: regex matches nowhere.
    NotRegex,
    /// `|>`: the whole line matches the pattern.
    Pattern,
    /// `!>`: the line does not match the pattern.
    NotPattern,
}

impl LineFilterOp {
    fn negated(self) -> bool {
        matches!(
            self,
            LineFilterOp::NotContains | LineFilterOp::NotRegex | LineFilterOp::NotPattern
        )
    }
}

#[derive(Debug, Clone)]
enum Alternative {
    /// A substring, searched with a literal regex (memchr-backed).
    Literal {
        text: Vec<u8>,
        search: Regex,
    },
    Regex(Regex),
    Pattern(PatternFilter),
    /// `ip("...")`: an address, prefix or range anywhere in the line.
    Ip(IpPattern),
}

/// One alternative as written: a quoted string or `ip("...")`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum FilterArg {
    /// A string, read by the operator (text, regex or pattern).
    Text(String),
    /// `ip("...")`.
    Ip(String),
}

impl Alternative {
    fn is_match(&self, line: &[u8]) -> bool {
        match self {
            Alternative::Literal { text, search } => text.is_empty() || search.is_match(line),
            Alternative::Regex(re) => found(re, line),
            Alternative::Pattern(p) => p.is_match(line),
            Alternative::Ip(ip) => ip.found_in(line),
        }
    }
}

/// Whether `re` matches somewhere in `haystack`: `Regex::is_match`'s
/// answer, faster. For a regex the engine searches by an inner literal
/// (`\d+\.\d+\.\d+`, `[0-9]{3}-[0-9]{4}`), `is_match` falls back to its
/// slowest engines (backtracker, PikeVM) whenever a line holds the literal
/// more than once, while `shortest_match` falls back to the lazy DFA:
/// 2.5-4.7x faster on such regexes over corpus lines, equal on the rest
/// (bench/RESULTS.md, "2026-12-01 (late)").
pub fn found(re: &Regex, haystack: &[u8]) -> bool {
    re.shortest_match(haystack).is_some()
}

/// A compiled line filter.
#[derive(Debug, Clone)]
pub struct LineFilter {
    op: LineFilterOp,
    alternatives: Vec<Alternative>,
}

impl LineFilter {
    /// Compiles a filter with its alternatives (at least one).
    ///
    /// # Errors
    /// `(index of the bad alternative, message)` for a bad regex or pattern.
    #[cfg(test)]
    pub(crate) fn new(op: LineFilterOp, values: &[String]) -> Result<Self, (usize, String)> {
        let args: Vec<FilterArg> = values.iter().cloned().map(FilterArg::Text).collect();
        Self::with_args(op, &args)
    }

    /// Compiles a filter whose alternatives may include `ip("...")`.
    ///
    /// # Errors
    /// As [`LineFilter::new`]; also an invalid IP pattern, or `ip()` after
    /// an operator other than `|=` and `!=` (Loki's "ip: invalid operation").
    pub(crate) fn with_args(op: LineFilterOp, args: &[FilterArg]) -> Result<Self, (usize, String)> {
        let mut alternatives = Vec::with_capacity(args.len());
        for (i, arg) in args.iter().enumerate() {
            let v = match arg {
                FilterArg::Text(v) => v,
                FilterArg::Ip(pattern) => {
                    if !matches!(op, LineFilterOp::Contains | LineFilterOp::NotContains) {
                        let msg = "ip: invalid operation: ip() line filters work with |= and != only";
                        return Err((i, msg.to_string()));
                    }
                    alternatives.push(Alternative::Ip(IpPattern::new(pattern).map_err(|e| (i, e))?));
                    continue;
                }
            };
            let alt = match op {
                LineFilterOp::Contains | LineFilterOp::NotContains => literal(v).map_err(|e| (i, e))?,
                LineFilterOp::Regex | LineFilterOp::NotRegex if is_plain_literal(v) => {
                    // Loki simplifies a metacharacter-free regex to a
                    // substring search; doing so also exposes it to
                    // `required_literals`.
                    literal(v).map_err(|e| (i, e))?
                }
                LineFilterOp::Regex | LineFilterOp::NotRegex => Alternative::Regex(
                    crate::query::logql::limits::compile_bytes_regex(v)
                        .map_err(|e| (i, crate::query::logql::parser::regex_error(v, &e)))?,
                ),
                LineFilterOp::Pattern | LineFilterOp::NotPattern => {
                    Alternative::Pattern(PatternFilter::new(v).map_err(|e| (i, e))?)
                }
            };
            alternatives.push(alt);
        }
        Ok(LineFilter { op, alternatives })
    }

    /// The operator.
    pub fn op(&self) -> LineFilterOp {
        self.op
    }

    /// Whether `line` passes the filter.
    pub fn matches(&self, line: &[u8]) -> bool {
        let any = self.alternatives.iter().any(|a| a.is_match(line));
        any != self.op.negated()
    }

    /// The substring every passing line contains, if this filter implies one.
    pub(crate) fn required_literal(&self) -> Option<&[u8]> {
        if self.op.negated() {
            return None;
        }
        match self.alternatives.as_slice() {
            [Alternative::Literal { text, .. }] => Some(text),
            _ => None,
        }
    }
}

/// Most literals a regex may expand to and still serve as a prefilter
/// (`(?i)error` is 32 of them); past it, scanning for them all costs more
/// than it saves.
const MAX_PREFILTER_LITERALS: usize = 64;

impl LineFilter {
    /// Byte strings one of which every passing line contains, when the
    /// filter implies such a set: the alternatives of `|= "a" or "b"`, or
    /// the prefix literals of a `|~` regex (every match starts with one of
    /// them). `None` for negative filters, patterns, and regexes whose
    /// matches have no bounded set of prefixes (`\w+`, `.*`).
    pub(crate) fn required_any_of(&self) -> Option<Vec<Vec<u8>>> {
        if self.op.negated() {
            return None;
        }
        let mut out: Vec<Vec<u8>> = Vec::new();
        for alt in &self.alternatives {
            match alt {
                Alternative::Literal { text, .. } => out.push(text.clone()),
                Alternative::Regex(re) => out.extend(regex_prefixes(re.as_str())?),
                Alternative::Pattern(_) | Alternative::Ip(_) => return None,
            }
        }
        if out.iter().any(Vec::is_empty) || out.len() > MAX_PREFILTER_LITERALS {
            return None;
        }
        out.sort();
        out.dedup();
        Some(out)
    }
}

/// Fewest bytes in the shortest literal a search over whole sections
/// must be anchored on to pay (a filter's section pattern, or the
/// prefilter's fallback to a literal set): the engine searches one- and
/// two-byte sets (`[0-9]`, `\d+\.`) no faster than it runs the regex line
/// by line, and usually finds them in every record.
pub const MIN_SECTION_LITERAL: usize = 3;

impl LineFilter {
    /// A regex whose matches, searched over any bytes that contain a line
    /// this filter passes (a whole decompressed records section), overlap
    /// that line: the alternatives as one regex. Offered where that search
    /// is sound and can be fast:
    /// - a positive filter without pattern alternatives, whose regexes
    ///   have no look-around assertions (`^`, `$`, `\b`: a line's edges are
    ///   not the section's) and cannot match the empty string;
    /// - whose every match starts or ends with a literal of at least
    ///   `MIN_SECTION_LITERAL` bytes (`literal_strength`), for the engine
    ///   to search for. Without one (`[0-9]{3}-[0-9]{4}`) a section search
    ///   runs at a third of the speed of matching line by line.
    ///
    /// Whether it pays on the data is the prefilter's to find out.
    ///
    /// Why matches overlap every passing line: a line's match `[s, e)` is a
    /// match at `s` of the section too (same bytes, no assertions), so a
    /// leftmost-first search either returns a match covering `s` or one
    /// ending before it, and then searches on from there.
    pub(crate) fn section_pattern(&self) -> Option<String> {
        if self.op.negated() || self.literal_strength() < MIN_SECTION_LITERAL {
            return None;
        }
        // Joined as parsed patterns, not as text: a verbose-mode comment
        // (`(?x)abc#...`) would swallow the text that follows it.
        let mut parts = Vec::with_capacity(self.alternatives.len());
        for alt in &self.alternatives {
            match alt {
                Alternative::Literal { text, .. } => parts.push(Hir::literal(text.as_slice())),
                Alternative::Regex(re) => {
                    let hir = parse_bytes_regex(re.as_str())?;
                    let props = hir.properties();
                    if !props.look_set().is_empty() || props.minimum_len().unwrap_or(0) == 0 {
                        return None;
                    }
                    parts.push(hir);
                }
                Alternative::Pattern(_) | Alternative::Ip(_) => return None,
            }
        }
        Some(Hir::alternation(parts).to_string())
    }

    /// How well a literal search can find this filter's matches: over its
    /// alternatives, the least of (for a literal) its length or (for a
    /// regex) the shortest member of the literal set every match starts
    /// with or of that every match ends with, whichever is longer. 0 when
    /// some alternative has no bounded set at either end (`\w+`) or is a
    /// pattern.
    pub(crate) fn literal_strength(&self) -> usize {
        let shortest = |set: Option<Vec<Vec<u8>>>| {
            set.filter(|s| s.len() <= MAX_PREFILTER_LITERALS)
                .and_then(|s| s.iter().map(Vec::len).min())
                .unwrap_or(0)
        };
        self.alternatives
            .iter()
            .map(|alt| match alt {
                Alternative::Literal { text, .. } => text.len(),
                Alternative::Regex(re) => shortest(regex_literals(re.as_str(), ExtractKind::Prefix))
                    .max(shortest(regex_literals(re.as_str(), ExtractKind::Suffix))),
                Alternative::Pattern(_) | Alternative::Ip(_) => 0,
            })
            .min()
            .unwrap_or(0)
    }
}

impl LineFilter {
    /// The longest run of bytes every line this filter passes contains,
    /// when that run ignores ASCII case somewhere (`|~ "(?i)error.*timeout"`:
    /// "timeout", any case): each byte with whether it matches in either
    /// case. For a positive filter whose one alternative is a regex; other
    /// filters' literals are the regex engine's to search.
    pub(crate) fn required_folded_run(&self) -> Option<Vec<(u8, bool)>> {
        if self.op.negated() {
            return None;
        }
        let [Alternative::Regex(re)] = self.alternatives.as_slice() else {
            return None;
        };
        let mut pieces = Vec::new();
        flatten_required(&parse_bytes_regex(re.as_str())?, &mut pieces);
        let mut best: Vec<(u8, bool)> = Vec::new();
        let mut run: Vec<(u8, bool)> = Vec::new();
        for piece in pieces.into_iter().chain([None]) {
            match piece {
                Some(bytes) => run.extend(bytes),
                None => {
                    if run.len() > best.len() {
                        best = std::mem::take(&mut run);
                    }
                    run.clear();
                }
            }
        }
        best.iter().any(|&(_, fold)| fold).then_some(best)
    }
}

/// `hir` as the sequence its every match is made of, in order: `Some`
/// bytes that each match contains there (a literal, or a class that is
/// one ASCII letter in both cases), `None` for anything else (which ends a
/// run of adjacent required bytes). Zero-width items (`\b`, `^`) add
/// nothing: the bytes around them are still adjacent.
fn flatten_required(hir: &Hir, out: &mut Vec<Option<Vec<(u8, bool)>>>) {
    match hir.kind() {
        HirKind::Concat(subs) => subs.iter().for_each(|sub| flatten_required(sub, out)),
        HirKind::Capture(capture) => flatten_required(&capture.sub, out),
        HirKind::Literal(literal) => out.push(Some(literal.0.iter().map(|&b| (b, false)).collect())),
        HirKind::Class(class) => out.push(ascii_letter_in_both_cases(class).map(|b| vec![(b, true)])),
        HirKind::Look(_) | HirKind::Empty => {}
        HirKind::Repetition(_) | HirKind::Alternation(_) => out.push(None),
    }
}

/// The lowercase letter a class is exactly, in both ASCII cases (`(?i)t`
/// is `[Tt]`). Not `(?i)k` or `(?i)s`: Unicode adds the Kelvin sign and
/// the long s, which an ASCII search would miss.
fn ascii_letter_in_both_cases(class: &Class) -> Option<u8> {
    let (a, b) = match class {
        Class::Unicode(c) => match c.ranges() {
            [a, b] if a.start() == a.end() && b.start() == b.end() => {
                (u8::try_from(a.start()).ok()?, u8::try_from(b.start()).ok()?)
            }
            _ => return None,
        },
        Class::Bytes(c) => match c.ranges() {
            [a, b] if a.start() == a.end() && b.start() == b.end() => (a.start(), b.start()),
            _ => return None,
        },
    };
    (a.is_ascii_uppercase() && b == a.to_ascii_lowercase()).then_some(b)
}

/// `pattern` parsed as the filter's `regex::bytes` regex is.
fn parse_bytes_regex(pattern: &str) -> Option<Hir> {
    regex_syntax::ParserBuilder::new()
        .utf8(false)
        .build()
        .parse(pattern)
        .ok()
}

/// The finite set of literals every match of `pattern` starts with.
fn regex_prefixes(pattern: &str) -> Option<Vec<Vec<u8>>> {
    regex_literals(pattern, ExtractKind::Prefix)
}

/// The finite set of literals every match of `pattern` starts (or ends) with.
fn regex_literals(pattern: &str, kind: ExtractKind) -> Option<Vec<Vec<u8>>> {
    let hir = parse_bytes_regex(pattern)?;
    let seq = Extractor::new().kind(kind).extract(&hir);
    let literals = seq.literals()?;
    if literals.is_empty() {
        return None;
    }
    Some(literals.iter().map(|l| l.as_bytes().to_vec()).collect())
}

fn literal(text: &str) -> Result<Alternative, String> {
    let search = Regex::new(&regex::escape(text)).map_err(|e| e.to_string())?;
    Ok(Alternative::Literal {
        text: text.as_bytes().to_vec(),
        search,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(op: LineFilterOp, vals: &[&str]) -> LineFilter {
        LineFilter::new(op, &vals.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap()
    }

    #[test]
    fn folded_runs() {
        let run = |op, v: &str| {
            f(op, &[v]).required_folded_run().map(|r| {
                r.iter()
                    .map(|&(b, fold)| {
                        if fold {
                            b as char
                        } else {
                            (b as char).to_ascii_uppercase()
                        }
                    })
                    .collect::<String>()
            })
        };
        // Folding bytes print lowercase, exact ones uppercase.
        assert_eq!(
            run(LineFilterOp::Regex, "(?i)error.*timeout").as_deref(),
            Some("timeout")
        );
        assert_eq!(
            run(LineFilterOp::Regex, "(?i)(time)out=\\d+").as_deref(),
            Some("timeout=")
        );
        assert_eq!(
            run(LineFilterOp::Regex, "(?i)\\bread time(?-i:OUT)").as_deref(),
            Some("read timeOUT")
        );
        // The Kelvin sign folds to k: the run stops there.
        assert_eq!(
            run(LineFilterOp::Regex, "(?i)lock-timeout").as_deref(),
            Some("-timeout")
        );
        // Alternations and repetitions end a run.
        assert_eq!(run(LineFilterOp::Regex, "(?i)(ab|cd)ef").as_deref(), Some("ef"));
        assert_eq!(run(LineFilterOp::Regex, "(?i)xy?z").as_deref(), Some("x"));
        // Case-sensitive literals are the regex engine's; so are negations.
        assert_eq!(run(LineFilterOp::Regex, "error.*timeout"), None);
        assert_eq!(run(LineFilterOp::NotRegex, "(?i)timeout"), None);
        assert_eq!(
            f(LineFilterOp::Regex, &["(?i)timeout", "(?i)error"]).required_folded_run(),
            None,
            "alternatives"
        );
    }

    #[test]
    fn prefilter_sets() {
        assert_eq!(
            f(LineFilterOp::Contains, &["a", "bc"]).required_any_of(),
            Some(vec![b"a".to_vec(), b"bc".to_vec()])
        );
        assert_eq!(f(LineFilterOp::NotContains, &["a"]).required_any_of(), None);
        assert_eq!(
            f(LineFilterOp::Regex, &["error.*timeout"]).required_any_of(),
            Some(vec![b"error".to_vec()])
        );
        assert_eq!(
            f(LineFilterOp::Regex, &["(GET|POST) /api"]).required_any_of(),
            Some(vec![b"GET /api".to_vec(), b"POST /api".to_vec()])
        );
        let ci = f(LineFilterOp::Regex, &["(?i)err"]).required_any_of().unwrap();
        assert_eq!(ci.len(), 8, "{ci:?}");
        assert!(ci.contains(&b"ErR".to_vec()));
        assert_eq!(f(LineFilterOp::Regex, &[r"\w+ failed"]).required_any_of(), None);
        assert_eq!(f(LineFilterOp::Regex, &["a|.*"]).required_any_of(), None);
        assert_eq!(f(LineFilterOp::Pattern, &["<_> x"]).required_any_of(), None);
        // Every line the filter passes contains one of the literals.
        let filter = f(LineFilterOp::Regex, &["(?i)fail|(?-i:refused)"]);
        let set = filter.required_any_of().unwrap();
        for line in ["connection FAILED", "x refused y", "Fail", "nothing"] {
            if filter.matches(line.as_bytes()) {
                assert!(
                    set.iter()
                        .any(|l| line.as_bytes().windows(l.len()).any(|w| w == &l[..])),
                    "{line}"
                );
            }
        }
    }

    #[test]
    fn section_patterns() {
        let sp = |op, vals: &[&str]| f(op, vals).section_pattern();
        // What a section search with the filter's pattern finds in `hay`.
        let finds = |op, vals: &[&str], hay: &str| {
            let pattern = sp(op, vals).expect("a section pattern");
            Regex::new(&pattern).unwrap().is_match(hay.as_bytes())
        };
        assert!(finds(LineFilterOp::Contains, &["a.b"], "xa.by") && !finds(LineFilterOp::Contains, &["a.b"], "axb"));
        assert!(finds(LineFilterOp::Contains, &["xyz", "abc"], "-abc-"));
        assert!(finds(
            LineFilterOp::Regex,
            &["(?i)error.*timeout"],
            "ERROR: read TimeOut"
        ));
        // A literal at the end serves too: the engine searches for it and looks back.
        assert!(finds(LineFilterOp::Regex, &[r"\w+ failed"], "job failed"));
        // Alternatives are joined as parsed: a verbose-mode comment in one
        // does not swallow the next (as joining the texts did).
        let verbose = ["(?x)abc#c", "x\ny+z"];
        assert!(
            finds(LineFilterOp::Regex, &verbose, "abc"),
            "{:?}",
            sp(LineFilterOp::Regex, &verbose)
        );
        assert!(finds(LineFilterOp::Regex, &verbose, "x\nyyz") && !finds(LineFilterOp::Regex, &verbose, "abyz"));
        assert!(
            finds(LineFilterOp::Regex, &["(?i)abc", "XYZ"], "ABC")
                && !finds(LineFilterOp::Regex, &["(?i)abc", "XYZ"], "xyz")
        );
        assert!(finds(LineFilterOp::Regex, &["caf\u{e9}s+"], "cafés"));
        // Assertions see a line's edges, which a section search does not.
        assert_eq!(sp(LineFilterOp::Regex, &["^error"]), None);
        assert_eq!(sp(LineFilterOp::Regex, &[r"\berror\b"]), None);
        assert_eq!(sp(LineFilterOp::Regex, &["error$"]), None);
        // No literal of three bytes at either end: line by line is faster.
        assert_eq!(sp(LineFilterOp::Regex, &["[0-9]{3}-[0-9]{4}"]), None);
        assert_eq!(sp(LineFilterOp::Regex, &[r"\d+\.\d+\.\d+\.\d+:\d+"]), None);
        assert_eq!(
            sp(LineFilterOp::Contains, &["xyz", "ab"]),
            None,
            "the weakest alternative decides"
        );
        assert_eq!(sp(LineFilterOp::Regex, &["xyz", "a*"]), None);
        assert_eq!(sp(LineFilterOp::Contains, &[""]), None);
        assert_eq!(sp(LineFilterOp::NotContains, &["xyz"]), None);
        assert_eq!(sp(LineFilterOp::Pattern, &["<_> xyz"]), None);
    }

    #[test]
    fn found_answers_as_is_match() {
        let patterns = [
            r"\d+\.\d+\.\d+\.\d+:\d+",
            "[0-9]{3}-[0-9]{4}",
            r"\w+ failed",
            "(?i)err.*time",
            "^a|b$",
            "x*",
        ];
        let lines: Vec<Vec<u8>> = (0..3_000u32)
            .map(|i| {
                let mut l = format!("{}.{}.{} {}-{} ", i % 7, i % 300, i, i % 1000, i * 13 % 100_000).into_bytes();
                if i % 5 == 0 {
                    l.extend_from_slice(b"10.0.0.1:80 conn failed ");
                }
                if i % 9 == 0 {
                    l.extend_from_slice(b"ERR \xff time");
                }
                l
            })
            .collect();
        for p in patterns {
            let re = Regex::new(p).unwrap();
            for l in &lines {
                assert_eq!(found(&re, l), re.is_match(l), "{p} on {:?}", String::from_utf8_lossy(l));
            }
        }
    }

    #[test]
    fn contains_and_not() {
        assert!(f(LineFilterOp::Contains, &["err"]).matches(b"an error"));
        assert!(!f(LineFilterOp::Contains, &["err"]).matches(b"fine"));
        assert!(f(LineFilterOp::NotContains, &["err"]).matches(b"fine"));
        assert!(f(LineFilterOp::Contains, &[""]).matches(b"anything"));
        assert!(!f(LineFilterOp::NotContains, &[""]).matches(b"anything"));
    }

    #[test]
    fn works_on_invalid_utf8() {
        let line = b"\xff\xfe level=error \xc3";
        assert!(f(LineFilterOp::Contains, &["level=error"]).matches(line));
        assert!(f(LineFilterOp::Regex, &["lev.l=e"]).matches(line));
    }

    #[test]
    fn regexes_are_unanchored_and_case_flag_works() {
        assert!(f(LineFilterOp::Regex, &["(?i)ERROR"]).matches(b"an error here"));
        assert!(f(LineFilterOp::NotRegex, &["^x"]).matches(b"an error"));
        assert!(!f(LineFilterOp::NotRegex, &["e.r"]).matches(b"an error"));
    }

    #[test]
    fn or_alternatives() {
        let pos = f(LineFilterOp::Contains, &["a", "b"]);
        assert!(pos.matches(b"xbx") && pos.matches(b"xax") && !pos.matches(b"xcx"));
        let neg = f(LineFilterOp::NotContains, &["a", "b"]);
        assert!(!neg.matches(b"xbx") && neg.matches(b"xcx"));
        let re = f(LineFilterOp::Regex, &["^a", "z$"]);
        assert!(re.matches(b"abc") && re.matches(b"xyz") && !re.matches(b"bab"));
    }

    #[test]
    fn bad_regex_reports_its_alternative() {
        let err = LineFilter::new(LineFilterOp::Regex, &["ok".into(), "(".into()]).unwrap_err();
        assert_eq!(err.0, 1);
    }

    #[test]
    fn required_literal_only_for_positive_single_literals() {
        assert_eq!(f(LineFilterOp::Contains, &["x"]).required_literal(), Some(&b"x"[..]));
        assert_eq!(
            f(LineFilterOp::Regex, &["plain text"]).required_literal(),
            Some(&b"plain text"[..])
        );
        assert_eq!(f(LineFilterOp::Regex, &["a.b"]).required_literal(), None);
        assert_eq!(f(LineFilterOp::Contains, &["a", "b"]).required_literal(), None);
        assert_eq!(f(LineFilterOp::NotContains, &["x"]).required_literal(), None);
    }

    #[test]
    fn pattern_filters_match_whole_lines() {
        let p = f(LineFilterOp::Pattern, &["<_> GET /api<_> 500 <_>"]);
        assert!(p.matches(b"1.2.3.4 GET /api/v1 500 12ms"));
        assert!(!p.matches(b"1.2.3.4 GET /api/v1 200 12ms"));
        let n = f(LineFilterOp::NotPattern, &["<_> 500 <_>"]);
        assert!(n.matches(b"x 200 y"));
    }

    #[test]
    fn ip_alternatives() {
        let args = |v: &[(&str, bool)]| -> Vec<FilterArg> {
            v.iter()
                .map(|&(s, ip)| {
                    if ip {
                        FilterArg::Ip(s.into())
                    } else {
                        FilterArg::Text(s.into())
                    }
                })
                .collect()
        };
        let with = |op, v: &[(&str, bool)]| LineFilter::with_args(op, &args(v));
        let pos = with(LineFilterOp::Contains, &[("10.0.0.0/8", true), ("foo", false)]).unwrap();
        assert!(pos.matches(b"from 10.1.1.1") && pos.matches(b"foo") && !pos.matches(b"from 11.1.1.1"));
        assert_eq!(pos.required_any_of(), None);
        assert_eq!(pos.section_pattern(), None);
        let neg = with(LineFilterOp::NotContains, &[("127.0.0.1", true), ("foo", false)]).unwrap();
        assert!(neg.matches(b"from 127.0.0.2") && !neg.matches(b"127.0.0.1") && !neg.matches(b"foo"));
        // Loki: ip() runs with |= and != only; a bad pattern names itself.
        let e = with(LineFilterOp::Regex, &[("x", false), ("127.0.0.1", true)]).unwrap_err();
        assert_eq!(e.0, 1);
        assert!(e.1.starts_with("ip: invalid operation"), "{}", e.1);
        let e = with(LineFilterOp::Contains, &[("1.2.3", true)]).unwrap_err();
        assert_eq!(e, (0, "ip: invalid pattern: \"1.2.3\"".to_string()));
    }
}
