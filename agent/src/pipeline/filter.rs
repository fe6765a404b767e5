//! Include and exclude filters: an event is kept if it matches at least one
//! `include` pattern (when any are given) and no `exclude` pattern.

use regex::bytes::RegexSet;

/// Compiled filters of one source.
#[derive(Debug, Clone, Default)]
pub struct LineFilter {
    include: Option<RegexSet>,
    exclude: Option<RegexSet>,
}

impl LineFilter {
    /// Compiles the patterns.
    ///
    /// # Errors
    /// The first bad pattern, as regex reports it.
    pub fn new(include: &[String], exclude: &[String]) -> Result<LineFilter, regex::Error> {
        let set = |p: &[String]| -> Result<Option<RegexSet>, regex::Error> {
            if p.is_empty() {
                Ok(None)
            } else {
                RegexSet::new(p).map(Some)
            }
        };
        Ok(LineFilter {
            include: set(include)?,
            exclude: set(exclude)?,
        })
    }

    /// Whether the filters let `event` through.
    pub fn keeps(&self, event: &[u8]) -> bool {
        self.include.as_ref().is_none_or(|s| s.is_match(event))
            && !self.exclude.as_ref().is_some_and(|s| s.is_match(event))
    }

    /// Whether any filter is configured.
    pub fn is_active(&self) -> bool {
        self.include.is_some() || self.exclude.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn include_and_exclude() {
        let f = LineFilter::new(&["ERROR".into(), "WARN".into()], &["healthcheck".into()]).unwrap();
        assert!(f.keeps(b"x ERROR y"));
        assert!(f.keeps(b"WARN"));
        assert!(!f.keeps(b"INFO"));
        assert!(!f.keeps(b"ERROR healthcheck"));
        let none = LineFilter::new(&[], &[]).unwrap();
        assert!(none.keeps(b"anything") && !none.is_active());
        assert!(LineFilter::new(&["(".into()], &[]).is_err());
    }
}
