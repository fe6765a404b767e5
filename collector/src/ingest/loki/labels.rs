//! Loki's stream label strings: `{app="web", env="prod"}`, Prometheus's
//! series syntax, as Promtail and Alloy send them in protobuf pushes.
//!
//! Why a module of its own: it is a small parser of untrusted text with
//! its own error positions; the push decoder only calls it.

/// Why a label string was refused; `pos` is a byte position in it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LabelError {
    #[error("byte {pos}: expected {expected}")]
    Expected { pos: usize, expected: &'static str },
    #[error("byte {pos}: unknown escape \\{ch} in a label value")]
    BadEscape { pos: usize, ch: char },
    #[error("byte {pos}: label value is not terminated")]
    Unterminated { pos: usize },
}

/// Whether `name` is a Prometheus label name: `[a-zA-Z_][a-zA-Z0-9_]*`.
pub fn is_label_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes.next().is_some_and(|b| b == b'_' || b.is_ascii_alphabetic())
        && bytes.all(|b| b == b'_' || b.is_ascii_alphanumeric())
}

/// Parses `{name="value", ...}` into `(name, value)` pairs, in order.
/// Names follow Prometheus (`[a-zA-Z_][a-zA-Z0-9_]*`); values are quoted
/// with `\\`, `\"`, `\n`, `\t` and `\r` escapes. An empty string or `{}`
/// has no labels.
///
/// # Errors
/// The first problem, with its byte position.
pub fn parse_labels(text: &str) -> Result<Vec<(String, String)>, LabelError> {
    let bytes = text.as_bytes();
    let mut pos = skip_space(bytes, 0);
    let mut labels = Vec::new();
    if pos == bytes.len() {
        return Ok(labels);
    }
    if bytes.get(pos) != Some(&b'{') {
        return Err(LabelError::Expected { pos, expected: "'{'" });
    }
    pos = skip_space(bytes, pos + 1);
    if bytes.get(pos) == Some(&b'}') {
        return finish(bytes, pos + 1, labels);
    }
    loop {
        let start = pos;
        while bytes
            .get(pos)
            .is_some_and(|&b| b == b'_' || b.is_ascii_alphabetic() || (pos > start && b.is_ascii_digit()))
        {
            pos += 1;
        }
        if pos == start {
            return Err(LabelError::Expected {
                pos,
                expected: "a label name",
            });
        }
        let name = text.get(start..pos).unwrap_or_default().to_owned();
        pos = skip_space(bytes, pos);
        if bytes.get(pos) != Some(&b'=') {
            return Err(LabelError::Expected { pos, expected: "'='" });
        }
        pos = skip_space(bytes, pos + 1);
        let (value, next) = quoted(text, pos)?;
        labels.push((name, value));
        pos = skip_space(bytes, next);
        match bytes.get(pos) {
            Some(b',') => {
                pos = skip_space(bytes, pos + 1);
                // Prometheus allows a trailing comma.
                if bytes.get(pos) == Some(&b'}') {
                    return finish(bytes, pos + 1, labels);
                }
            }
            Some(b'}') => return finish(bytes, pos + 1, labels),
            _ => {
                return Err(LabelError::Expected {
                    pos,
                    expected: "',' or '}'",
                });
            }
        }
    }
}

fn finish(bytes: &[u8], pos: usize, labels: Vec<(String, String)>) -> Result<Vec<(String, String)>, LabelError> {
    let end = skip_space(bytes, pos);
    if end != bytes.len() {
        return Err(LabelError::Expected {
            pos: end,
            expected: "the end after '}'",
        });
    }
    Ok(labels)
}

fn skip_space(bytes: &[u8], mut pos: usize) -> usize {
    while bytes.get(pos).is_some_and(u8::is_ascii_whitespace) {
        pos += 1;
    }
    pos
}

/// The quoted value starting at `pos`, and the position after its quote.
fn quoted(text: &str, pos: usize) -> Result<(String, usize), LabelError> {
    let rest = text.get(pos..).unwrap_or_default();
    let mut chars = rest.char_indices();
    if !matches!(chars.next(), Some((_, '"'))) {
        return Err(LabelError::Expected {
            pos,
            expected: "a quoted label value",
        });
    }
    let mut value = String::new();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Ok((value, pos + i + 1)),
            '\\' => match chars.next() {
                Some((_, '\\')) => value.push('\\'),
                Some((_, '"')) => value.push('"'),
                Some((_, 'n')) => value.push('\n'),
                Some((_, 't')) => value.push('\t'),
                Some((_, 'r')) => value.push('\r'),
                Some((j, ch)) => return Err(LabelError::BadEscape { pos: pos + j, ch }),
                None => break,
            },
            c => value.push(c),
        }
    }
    Err(LabelError::Unterminated { pos })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
        v.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect()
    }

    #[test]
    fn parses_promtail_label_strings() {
        assert_eq!(
            parse_labels(r#"{app="web", env="prod"}"#).unwrap(),
            pairs(&[("app", "web"), ("env", "prod")])
        );
        assert_eq!(
            parse_labels(r#" { job = "a\"b\\c\nd" , _x1="" , } "#).unwrap(),
            pairs(&[("job", "a\"b\\c\nd"), ("_x1", "")])
        );
        assert_eq!(parse_labels("{}").unwrap(), vec![]);
        assert_eq!(parse_labels("").unwrap(), vec![]);
        assert_eq!(
            parse_labels(r#"{k="ünïcode ✓"}"#).unwrap(),
            pairs(&[("k", "ünïcode ✓")])
        );
    }

    #[test]
    fn errors_name_the_position() {
        assert_eq!(
            parse_labels(r#"app="web""#),
            Err(LabelError::Expected {
                pos: 0,
                expected: "'{'"
            })
        );
        assert_eq!(
            parse_labels(r#"{1app="web"}"#),
            Err(LabelError::Expected {
                pos: 1,
                expected: "a label name"
            })
        );
        assert_eq!(
            parse_labels(r#"{app=web}"#),
            Err(LabelError::Expected {
                pos: 5,
                expected: "a quoted label value"
            })
        );
        assert_eq!(parse_labels(r#"{app="web"#), Err(LabelError::Unterminated { pos: 5 }));
        assert_eq!(
            parse_labels(r#"{app="w\qb"}"#),
            Err(LabelError::BadEscape { pos: 8, ch: 'q' })
        );
        assert_eq!(
            parse_labels(r#"{a="b"} x"#),
            Err(LabelError::Expected {
                pos: 8,
                expected: "the end after '}'"
            })
        );
        assert_eq!(
            parse_labels(r#"{a="b" c="d"}"#),
            Err(LabelError::Expected {
                pos: 7,
                expected: "',' or '}'"
            })
        );
    }

    #[test]
    fn arbitrary_text_never_panics() {
        let mut x: u64 = 0x1234_5678_9abc_def1;
        for _ in 0..20_000 {
            let len = (x % 24) as usize;
            let s: String = (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    ['{', '}', '"', '\\', '=', ',', ' ', 'a', '_', '1', 'é', 'n'][(x % 12) as usize]
                })
                .collect();
            let _ = parse_labels(&s);
            x = x.wrapping_add(1);
        }
    }
}
