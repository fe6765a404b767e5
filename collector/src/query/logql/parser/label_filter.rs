//! Parsing of label filters: `status >= 500`, `level =~ "err.*"`,
//! `took > 1.5s`, `size < 20KiB`, combined with `or`, `and`, `,` and
//! juxtaposition (the last three mean "and"), left to right as Loki
//! documents, and parentheses.

use super::{Parser, is_comparison, is_kw, regex_error};
use crate::query::logql::error::ParseError;
use crate::query::logql::lexer::{Tok, Token};
use crate::query::logql::pipeline::{CmpOp, IpPattern, LabelFilter};
use crate::query::logql::selector::{MatchOp, Matcher};

impl Parser<'_> {
    /// Whether the token at `n` starts a label filter: `name <op>`, or `(`
    /// when `paren` (after `and`/`or`/`,` but not for juxtaposition).
    pub(super) fn starts_label_filter(&mut self, n: usize, paren: bool) -> Result<bool, ParseError> {
        Ok(match self.peek_nth(n)?.tok {
            Tok::LParen => paren,
            Tok::Ident(_) => is_comparison(&self.peek_nth(n + 1)?.tok),
            _ => false,
        })
    }

    /// A chain of predicates joined by `and`, `,`, juxtaposition (all
    /// "and") or `or`, evaluated strictly left to right: Loki documents
    /// `a or b and c` as `(a or b) and c`. Parentheses regroup.
    pub(super) fn label_filter(&mut self) -> Result<LabelFilter, ParseError> {
        let start = self.peek()?.start;
        self.enter(start)?;
        let mut lhs = self.label_filter_atom()?;
        loop {
            let t = self.peek()?;
            let or = is_kw(&t, "or");
            let joined = if (or || is_kw(&t, "and") || t.tok == Tok::Comma) && self.starts_label_filter(1, true)? {
                self.next()?;
                true
            } else {
                self.starts_label_filter(0, false)?
            };
            if !joined {
                break;
            }
            self.spend(t.start)?;
            let rhs = Box::new(self.label_filter_atom()?);
            lhs = if or {
                LabelFilter::Or(Box::new(lhs), rhs)
            } else {
                LabelFilter::And(Box::new(lhs), rhs)
            };
        }
        self.leave();
        Ok(lhs)
    }

    /// A label filter that is a whole stage (`| addr = ip("...")`, or after
    /// `unwrap`): an invalid `ip()` pattern there is an error, as Loki
    /// refuses to run it (inside `and`/`or` Loki lets it pass nothing).
    pub(super) fn stage_label_filter(&mut self) -> Result<LabelFilter, ParseError> {
        let start = self.peek()?.start;
        let filter = self.label_filter()?;
        if let LabelFilter::Ip {
            pattern,
            compiled: None,
            ..
        } = &filter
        {
            let message = IpPattern::new(pattern).err().unwrap_or_default();
            return Err(self.error(start, message));
        }
        Ok(filter)
    }

    /// `name = ip("...")` or `name != ip("...")` once `name` and the
    /// operator are read.
    fn ip_label_filter(&mut self, name: String, op: &Token) -> Result<LabelFilter, ParseError> {
        let negated = match op.tok {
            Tok::Eq => false,
            Tok::Neq => true,
            _ => {
                let text = self.src.get(op.start..op.end).unwrap_or("");
                return Err(self.error(op.start, format!("ip() label filters take = or != only, not {text:?}")));
            }
        };
        self.next()?;
        self.next()?;
        let (pattern, _) = self.expect_str("a quoted address, CIDR prefix or range")?;
        self.expect(&Tok::RParen, "\")\"")?;
        let compiled = IpPattern::new(&pattern).ok();
        Ok(LabelFilter::Ip {
            name,
            negated,
            pattern,
            compiled,
        })
    }

    fn label_filter_atom(&mut self) -> Result<LabelFilter, ParseError> {
        if self.peek()?.tok == Tok::LParen {
            self.next()?;
            let inner = self.label_filter()?;
            self.expect(&Tok::RParen, "\")\"")?;
            return Ok(inner);
        }
        let (name, _) = self.expect_label_name("a label name")?;
        let op_t = self.next()?;
        let v = self.peek()?;
        if is_kw(&v, "ip") && self.peek_nth(1)?.tok == Tok::LParen {
            return self.ip_label_filter(name, &op_t);
        }
        if let Tok::Str(s) = &v.tok {
            let op = match op_t.tok {
                Tok::Eq | Tok::EqEq => MatchOp::Eq,
                _ => Self::match_op(&op_t.tok)
                    .ok_or_else(|| self.unexpected(&v, "a number, duration or byte size after a comparison"))?,
            };
            self.next()?;
            return Matcher::new(name, op, s.as_str())
                .map(LabelFilter::Matcher)
                .map_err(|e| self.error(v.start, regex_error(s, &e)));
        }
        let op = match op_t.tok {
            Tok::Eq | Tok::EqEq => CmpOp::Eq,
            Tok::Neq => CmpOp::Neq,
            Tok::Gt => CmpOp::Gt,
            Tok::Gte => CmpOp::Gte,
            Tok::Lt => CmpOp::Lt,
            Tok::Lte => CmpOp::Lte,
            Tok::Re | Tok::Nre => return Err(self.unexpected(&v, "a quoted regex")),
            _ => return Err(self.unexpected(&op_t, "a comparison operator")),
        };
        let negative = match v.tok {
            Tok::Sub => true,
            Tok::Add => false,
            _ => return self.typed_filter(name, op, false),
        };
        self.next()?;
        self.typed_filter(name, op, negative)
    }

    fn typed_filter(&mut self, name: String, op: CmpOp, negative: bool) -> Result<LabelFilter, ParseError> {
        let vt = self.next()?;
        let sign = |x: f64| if negative { -x } else { x };
        Ok(match vt.tok {
            Tok::Number(n) => LabelFilter::Number {
                name,
                op,
                value: sign(n),
            },
            Tok::Duration(d) => LabelFilter::Duration {
                name,
                op,
                value_ns: if negative { d.saturating_neg() } else { d },
            },
            Tok::Bytes(b) if !negative => LabelFilter::Bytes { name, op, value: b },
            Tok::Hex(ref text) => return Err(self.hex_error(&vt, text)),
            _ => return Err(self.unexpected(&vt, "a number, duration, byte size or quoted string")),
        })
    }
}
