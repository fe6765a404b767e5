//! "Did you mean ...?" for misspelt function and stage names: the known
//! names, and the nearest one to what was typed.
//!
//! Why a module of its own: the parser reports unknown names in several
//! places (functions, pipeline stages) and each message must list the same
//! names the grammar knows, kept here beside each other.

/// Range aggregations, vector aggregations and other functions the parser
/// knows, supported or not.
pub(super) const FUNCTIONS: &[&str] = &[
    "count_over_time",
    "rate",
    "rate_counter",
    "bytes_over_time",
    "bytes_rate",
    "sum_over_time",
    "avg_over_time",
    "min_over_time",
    "max_over_time",
    "stddev_over_time",
    "stdvar_over_time",
    "quantile_over_time",
    "first_over_time",
    "last_over_time",
    "absent_over_time",
    "sum",
    "avg",
    "count",
    "min",
    "max",
    "stddev",
    "stdvar",
    "topk",
    "bottomk",
    "approx_topk",
    "sort",
    "sort_desc",
    "vector",
    "label_replace",
];

/// Pipeline stages that start with a keyword (label filters start with a
/// label name and a comparison instead).
pub(super) const STAGES: &[&str] = &[
    "json",
    "logfmt",
    "regexp",
    "pattern",
    "unpack",
    "line_format",
    "label_format",
    "drop",
    "keep",
    "decolorize",
];

/// `"; did you mean X?"` for the name in `known` nearest to `typed`
/// (case-insensitively), or `""` when none is near: at most two edits
/// away, an adjacent swap counting as one, and fewer edits than the name
/// has characters.
pub(super) fn did_you_mean(typed: &str, known: &[&str]) -> String {
    let typed = typed.to_ascii_lowercase();
    let best = known
        .iter()
        .map(|k| (edit_distance(&typed, k), *k))
        .filter(|(d, _)| *d <= 2 && *d < typed.chars().count())
        .min_by_key(|(d, _)| *d);
    match best {
        Some((_, name)) => format!("; did you mean {name}?"),
        None => String::new(),
    }
}

/// Optimal string alignment distance: insertions, deletions,
/// substitutions and swaps of adjacent characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    // Rows i-2, i-1 and i of the table, each `b.len() + 1` long.
    let mut before: Vec<usize> = vec![0; b.len() + 1];
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut row: Vec<usize> = vec![0; b.len() + 1];
    for (i, ca) in a.iter().enumerate() {
        row.fill(0);
        if let Some(first) = row.first_mut() {
            *first = i + 1;
        }
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != cb);
            let at = |v: &[usize], k: usize| v.get(k).copied().unwrap_or(usize::MAX / 2);
            let mut d = (at(&prev, j + 1) + 1).min(at(&row, j) + 1).min(at(&prev, j) + cost);
            let swapped = i > 0 && j > 0 && a.get(i - 1) == Some(cb) && b.get(j - 1) == Some(ca);
            if swapped {
                d = d.min(at(&before, j - 1) + 1);
            }
            if let Some(cell) = row.get_mut(j + 1) {
                *cell = d;
            }
        }
        std::mem::swap(&mut before, &mut prev);
        std::mem::swap(&mut prev, &mut row);
    }
    prev.get(b.len()).copied().unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distances() {
        assert_eq!(edit_distance("coutn", "count"), 1);
        assert_eq!(edit_distance("count", "count"), 0);
        assert_eq!(edit_distance("rte", "rate"), 1);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("abc", ""), 3);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }

    #[test]
    fn suggestions() {
        assert_eq!(
            did_you_mean("coutn_over_time", FUNCTIONS),
            "; did you mean count_over_time?"
        );
        assert_eq!(did_you_mean("SUMM", FUNCTIONS), "; did you mean sum?");
        assert_eq!(did_you_mean("jsno", STAGES), "; did you mean json?");
        assert_eq!(did_you_mean("distinct", STAGES), "");
        assert_eq!(did_you_mean("x", FUNCTIONS), "");
    }
}
