//! The budgets a query is compiled under: how large one regex's program may
//! be, how many regexes a query may hold, and how large a line (or label
//! set) a template stage may make.
//!
//! Why a module of its own: these bounds are applied where things are
//! built, deep inside the parser and the stage constructors, which know
//! nothing of the collector's config. [`parse_with`](super::parse_with)
//! makes a set of [`Limits`] current on its thread for the duration of one
//! parse ([`Scope`]); the constructors ask [`compile_bytes_regex`],
//! [`compile_regex`] and [`max_line_bytes`] instead of calling the regex
//! crate directly. Outside a parse (tests, stages built by hand) the
//! defaults apply, so nothing is ever compiled unbounded.
//!
//! Why these bounds: the regex crate compiles `\w{200}` (Unicode classes
//! repeated) to about 10 MB of program in a quarter of a second, and a
//! 16 KiB URL holds a thousand such filters; a `line_format` may double
//! its line, and thirty of them in a row ask for 16 GiB.

use std::cell::RefCell;

/// The compile-time budgets of one query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest compiled program (and lazy-DFA cache) of one regex, bytes.
    pub max_regex_bytes: usize,
    /// Most regexes one query may compile.
    pub max_regexes: usize,
    /// Largest line, or set of labels, a template stage may produce.
    pub max_line_bytes: usize,
}

impl Default for Limits {
    /// The collector's `[query]` defaults.
    fn default() -> Self {
        Limits {
            max_regex_bytes: 1 << 20,
            max_regexes: 32,
            max_line_bytes: 8 << 20,
        }
    }
}

/// The budget being spent by the parse running on this thread.
struct Budget {
    limits: Limits,
    regexes: usize,
}

thread_local! {
    static CURRENT: RefCell<Option<Budget>> = const { RefCell::new(None) };
}

/// `limits` in force on this thread until dropped (the previous ones, if
/// any, come back then).
pub(crate) struct Scope {
    previous: Option<Budget>,
}

impl Scope {
    pub(crate) fn enter(limits: Limits) -> Scope {
        let previous = CURRENT.with(|c| c.borrow_mut().replace(Budget { limits, regexes: 0 }));
        Scope { previous }
    }
}

impl Drop for Scope {
    fn drop(&mut self) {
        let previous = self.previous.take();
        CURRENT.with(|c| *c.borrow_mut() = previous);
    }
}

/// The limits in force on this thread.
pub(crate) fn current() -> Limits {
    CURRENT.with(|c| c.borrow().as_ref().map(|b| b.limits).unwrap_or_default())
}

/// The line budget of template stages built now.
pub(crate) fn max_line_bytes() -> usize {
    current().max_line_bytes
}

/// Counts one more regex against the query's budget.
fn count_regex() -> Result<Limits, regex::Error> {
    CURRENT.with(|c| {
        let mut c = c.borrow_mut();
        let Some(budget) = c.as_mut() else {
            return Ok(Limits::default());
        };
        budget.regexes += 1;
        if budget.regexes > budget.limits.max_regexes {
            // Reported through the regex error path, with the query's position.
            return Err(regex::Error::Syntax(format!(
                "error: the query holds more than {} regexes (query.max_regexes)",
                budget.limits.max_regexes
            )));
        }
        Ok(budget.limits)
    })
}

/// Compiles a byte regex (line filters, `regexp`, patterns) within the budget.
///
/// # Errors
/// A bad regex, one past `max_regex_bytes` (`CompiledTooBig`), or one
/// regex too many.
pub(crate) fn compile_bytes_regex(pattern: &str) -> Result<regex::bytes::Regex, regex::Error> {
    let limits = count_regex()?;
    regex::bytes::RegexBuilder::new(pattern)
        .size_limit(limits.max_regex_bytes)
        .dfa_size_limit(limits.max_regex_bytes)
        .build()
}

/// Compiles a string regex (label matchers, `label_replace`) within the budget.
///
/// # Errors
/// As [`compile_bytes_regex`].
pub(crate) fn compile_regex(pattern: &str) -> Result<regex::Regex, regex::Error> {
    let limits = count_regex()?;
    regex::RegexBuilder::new(pattern)
        .size_limit(limits.max_regex_bytes)
        .dfa_size_limit(limits.max_regex_bytes)
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_nest_and_count_regexes() {
        assert_eq!(current(), Limits::default());
        let tight = Limits {
            max_regex_bytes: 64 << 10,
            max_regexes: 2,
            max_line_bytes: 1 << 16,
        };
        {
            let _scope = Scope::enter(tight);
            assert_eq!(max_line_bytes(), 1 << 16);
            assert!(compile_regex("a+").is_ok());
            assert!(compile_bytes_regex("b+").is_ok());
            let third = compile_regex("c+").unwrap_err().to_string();
            assert!(third.contains("more than 2 regexes (query.max_regexes)"), "{third}");
            let big = {
                let _inner = Scope::enter(tight);
                compile_bytes_regex(r"\w{200}").unwrap_err()
            };
            assert!(matches!(big, regex::Error::CompiledTooBig(_)), "{big}");
            assert_eq!(current(), tight, "the outer scope is back");
        }
        assert_eq!(current(), Limits::default());
        assert!(compile_regex("d+").is_ok(), "outside a parse nothing is counted");
    }
}
