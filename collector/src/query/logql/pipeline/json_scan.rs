//! A small pull reader over JSON bytes, for the `json` and `unpack` stages.
//!
//! Why not a DOM (`serde_json::Value`): the stages must keep numbers as
//! their original text (`1.50` stays `1.50`, as in Loki), visit keys in
//! document order (later duplicates win, as in Loki), skip arrays without
//! building them, and allocate nothing for values they do not keep.
//!
//! It is lenient where Loki's jsonparser is (trailing text after the top
//! object is ignored; skipped containers are only checked for balanced
//! brackets and strings) and never recurses: callers that descend into
//! objects bound their own depth with [`MAX_DEPTH`].

/// How deep the flattening `json` stage descends before giving up. A
/// hostile line of `{"a":{"a":...` must not exhaust the stack.
pub(crate) const MAX_DEPTH: usize = 128;

/// A scalar JSON value, still as raw bytes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Scalar<'a> {
    /// Contents between the quotes, escapes not yet decoded.
    Str(&'a [u8]),
    /// The number's text.
    Num(&'a [u8]),
    Bool(bool),
    Null,
}

/// What the next value is. Scalars are consumed; containers are not.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Next<'a> {
    Scalar(Scalar<'a>),
    Object,
    Array,
}

/// A cursor over JSON bytes.
pub(crate) struct Reader<'a> {
    b: &'a [u8],
    pos: usize,
}

type Res<T> = Result<T, String>;

impl<'a> Reader<'a> {
    pub fn new(b: &'a [u8]) -> Self {
        Reader { b, pos: 0 }
    }

    pub fn pos(&self) -> usize {
        self.pos
    }

    pub fn bytes_from(&self, start: usize) -> &'a [u8] {
        self.b.get(start..self.pos).unwrap_or_default()
    }

    pub fn ws(&mut self) {
        while self.peek().is_some_and(|c| c.is_ascii_whitespace()) {
            self.pos += 1;
        }
    }

    pub fn peek(&self) -> Option<u8> {
        self.b.get(self.pos).copied()
    }

    fn bump(&mut self) -> Option<u8> {
        let c = self.peek()?;
        self.pos += 1;
        Some(c)
    }

    fn err(&self, what: &str) -> String {
        match self.peek() {
            None => format!("unexpected end of JSON input, expecting {what}"),
            Some(c) => format!(
                "unexpected {:?} at offset {}, expecting {what}",
                char::from(c),
                self.pos
            ),
        }
    }

    fn expect(&mut self, c: u8, what: &str) -> Res<()> {
        self.ws();
        if self.peek() == Some(c) {
            self.pos += 1;
            Ok(())
        } else {
            Err(self.err(what))
        }
    }

    /// Consumes `{`.
    pub fn begin_object(&mut self) -> Res<()> {
        self.expect(b'{', "'{'")
    }

    /// The next key of the object being read (`None` after its `}`), with
    /// the reader left at the key's value. `first` tracks the comma rule.
    pub fn next_key(&mut self, first: &mut bool) -> Res<Option<&'a [u8]>> {
        self.ws();
        if self.peek() == Some(b'}') {
            self.pos += 1;
            return Ok(None);
        }
        if !*first {
            self.expect(b',', "',' or '}'")?;
            self.ws();
        }
        *first = false;
        let key = self.string()?;
        self.expect(b':', "':'")?;
        Ok(Some(key))
    }

    /// Consumes `[`.
    pub fn begin_array(&mut self) -> Res<()> {
        self.expect(b'[', "'['")
    }

    /// Whether another element follows in the array being read (consuming
    /// the separating comma, or the closing `]` when it returns false).
    pub fn next_element(&mut self, first: &mut bool) -> Res<bool> {
        self.ws();
        if self.peek() == Some(b']') {
            self.pos += 1;
            return Ok(false);
        }
        if !*first {
            self.expect(b',', "',' or ']'")?;
        }
        *first = false;
        Ok(true)
    }

    /// Classifies the next value, consuming it if it is a scalar.
    pub fn next_value(&mut self) -> Res<Next<'a>> {
        self.ws();
        Ok(match self.peek() {
            Some(b'{') => Next::Object,
            Some(b'[') => Next::Array,
            Some(b'"') => Next::Scalar(Scalar::Str(self.string()?)),
            Some(b't') => self.word(b"true", Scalar::Bool(true))?,
            Some(b'f') => self.word(b"false", Scalar::Bool(false))?,
            Some(b'n') => self.word(b"null", Scalar::Null)?,
            Some(b'-' | b'0'..=b'9') => Next::Scalar(Scalar::Num(self.number()?)),
            _ => return Err(self.err("a value")),
        })
    }

    fn word(&mut self, w: &[u8], v: Scalar<'a>) -> Res<Next<'a>> {
        if self.b.get(self.pos..self.pos + w.len()) == Some(w) {
            self.pos += w.len();
            Ok(Next::Scalar(v))
        } else {
            Err(self.err("a value"))
        }
    }

    fn string(&mut self) -> Res<&'a [u8]> {
        self.ws();
        if self.peek() != Some(b'"') {
            return Err(self.err("a string"));
        }
        self.pos += 1;
        let start = self.pos;
        loop {
            match self.bump() {
                None => return Err("unexpected end of JSON input in string".into()),
                Some(b'\\') => {
                    self.bump();
                }
                Some(b'"') => return Ok(self.b.get(start..self.pos - 1).unwrap_or_default()),
                Some(_) => {}
            }
        }
    }

    fn number(&mut self) -> Res<&'a [u8]> {
        let start = self.pos;
        if self.peek() == Some(b'-') {
            self.pos += 1;
        }
        let digits = |r: &mut Self| {
            let s = r.pos;
            while r.peek().is_some_and(|c| c.is_ascii_digit()) {
                r.pos += 1;
            }
            r.pos > s
        };
        if !digits(self) {
            return Err(self.err("a digit"));
        }
        if self.peek() == Some(b'.') {
            self.pos += 1;
            if !digits(self) {
                return Err(self.err("a digit"));
            }
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.pos += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.pos += 1;
            }
            if !digits(self) {
                return Err(self.err("a digit"));
            }
        }
        Ok(self.b.get(start..self.pos).unwrap_or_default())
    }

    /// Skips one whole value of any kind, without recursion.
    pub fn skip_value(&mut self) -> Res<()> {
        match self.next_value()? {
            Next::Scalar(_) => Ok(()),
            Next::Object | Next::Array => {
                let mut closers: Vec<u8> = Vec::new();
                loop {
                    self.ws();
                    match self.peek() {
                        Some(b'"') => {
                            self.string()?;
                        }
                        Some(c @ (b'{' | b'[')) => {
                            self.pos += 1;
                            closers.push(if c == b'{' { b'}' } else { b']' });
                        }
                        Some(c @ (b'}' | b']')) => {
                            if closers.pop() != Some(c) {
                                return Err(self.err("a matching bracket"));
                            }
                            self.pos += 1;
                            if closers.is_empty() {
                                return Ok(());
                            }
                        }
                        Some(_) => self.pos += 1,
                        None => return Err(self.err("'}' or ']'")),
                    }
                }
            }
        }
    }
}

/// Decodes a JSON string's raw contents; `None` for a bad escape or
/// invalid UTF-8 (Loki then uses the empty string).
pub(crate) fn unescape(raw: &[u8]) -> Option<String> {
    unescape_with(raw, false)
}

/// [`unescape`], optionally also accepting `\'` (logfmt's quoted values
/// follow Go's JSON unquoting, which allows it).
pub(crate) fn unescape_with(raw: &[u8], allow_single_quote: bool) -> Option<String> {
    if !raw.contains(&b'\\') {
        return std::str::from_utf8(raw).ok().map(str::to_string);
    }
    let mut out: Vec<u8> = Vec::with_capacity(raw.len());
    let mut i = 0;
    let hex4 = |at: usize| -> Option<u32> {
        let s = std::str::from_utf8(raw.get(at..at + 4)?).ok()?;
        u32::from_str_radix(s, 16).ok()
    };
    while let Some(&c) = raw.get(i) {
        if c != b'\\' {
            out.push(c);
            i += 1;
            continue;
        }
        let esc = *raw.get(i + 1)?;
        i += 2;
        let ch = match esc {
            b'"' => '"',
            b'\\' => '\\',
            b'/' => '/',
            b'\'' if allow_single_quote => '\'',
            b'b' => '\u{8}',
            b'f' => '\u{c}',
            b'n' => '\n',
            b'r' => '\r',
            b't' => '\t',
            b'u' => {
                let hi = hex4(i)?;
                i += 4;
                if (0xD800..0xDC00).contains(&hi) {
                    // A surrogate pair: `\uD83D\uDE00`.
                    if raw.get(i..i + 2) != Some(b"\\u") {
                        return None;
                    }
                    let lo = hex4(i + 2)?;
                    if !(0xDC00..0xE000).contains(&lo) {
                        return None;
                    }
                    i += 6;
                    char::from_u32(0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00))?
                } else {
                    char::from_u32(hi)?
                }
            }
            _ => return None,
        };
        let mut buf = [0u8; 4];
        out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn walks_an_object_in_order() {
        let mut r = Reader::new(br#" {"a": 1.50, "b" : "x\"y", "c": [1, {"d": "]"}], "e": null, "f": true}"#);
        r.begin_object().unwrap();
        let mut first = true;
        let mut seen = vec![];
        while let Some(k) = r.next_key(&mut first).unwrap() {
            let k = String::from_utf8(k.to_vec()).unwrap();
            match r.next_value().unwrap() {
                Next::Scalar(s) => seen.push((k, format!("{s:?}"))),
                Next::Array | Next::Object => {
                    r.skip_value().unwrap();
                    seen.push((k, "container".into()));
                }
            }
        }
        let keys: Vec<_> = seen.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["a", "b", "c", "e", "f"]);
        assert!(
            seen[0].1.contains("[49, 46, 53, 48]"),
            "number kept as text: {}",
            seen[0].1
        );
    }

    #[test]
    fn errors_do_not_panic() {
        for bad in [
            &b"{"[..],
            b"{\"a\"",
            b"{\"a\":}",
            b"{\"a\":1,}",
            b"{\"a\":[1,2}",
            b"{\"a\":\"x",
            b"[",
            b"-",
            b"{\"a\":-}",
        ] {
            let mut r = Reader::new(bad);
            let mut first = true;
            let res = (|| -> Res<()> {
                r.begin_object()?;
                while r.next_key(&mut first)?.is_some() {
                    r.skip_value()?;
                }
                Ok(())
            })();
            assert!(res.is_err(), "{:?} should fail", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn unescapes() {
        assert_eq!(
            unescape(br#"a\"b\\c\/\n\u00e9\ud83d\ude00"#).as_deref(),
            Some("a\"b\\c/\né😀")
        );
        assert_eq!(unescape(br"\x"), None);
        assert_eq!(unescape(br"\ud83d"), None);
        assert_eq!(unescape(b"\xff"), None);
        assert_eq!(unescape(br"\u12"), None);
    }

    #[test]
    fn arrays() {
        let mut r = Reader::new(b"[10, \"x\", [1]]");
        r.begin_array().unwrap();
        let mut first = true;
        let mut n = 0;
        while r.next_element(&mut first).unwrap() {
            r.skip_value().unwrap();
            n += 1;
        }
        assert_eq!(n, 3);
    }
}
