//! `ip("...")` filters: `|= ip("10.0.0.0/8")`, `!= ip("::1")` on lines
//! and `| addr = ip("1.2.3.4-1.2.3.9")` on labels.
//!
//! Why a module of its own: Loki's `ip()` is not a regex; it looks for
//! IPv4 and IPv6 addresses anywhere in the text and tests each against a
//! single address, a CIDR prefix or an inclusive range. This follows Loki's
//! `pkg/logql/log/ip.go` step by step (which bytes start a candidate, which
//! characters extend it, how far a failed candidate is skipped), so a line
//! passes here exactly when it passes there.
//!
//! Address rules are Go's `net/netip`: an IPv4 address never equals or
//! falls inside an IPv6 prefix or range (not even as `::ffff:1.2.3.4`),
//! IPv4 fields have no leading zeros, and a pattern address with a zone
//! (`fe80::1%eth0`) matches nothing in a line (lines carry no zones).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Characters an IPv4 candidate is made of.
const IPV4_CHARS: &[u8] = b"0123456789.";
/// Characters an IPv6 candidate is made of.
const IPV6_CHARS: &[u8] = b"0123456789abcdefABCDEF:.";

/// What a pattern matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum IpMatcher {
    /// One address (`zoned`: the pattern named a zone, so no line address equals it).
    Addr { addr: IpAddr, zoned: bool },
    /// A CIDR prefix: the first `bits` bits of `addr`.
    Prefix { addr: IpAddr, bits: u8 },
    /// An inclusive range of one family, `from <= to`.
    Range { from: IpAddr, to: IpAddr },
}

/// A compiled `ip("...")` pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpPattern {
    matcher: IpMatcher,
    pattern: String,
}

impl IpPattern {
    /// Compiles a pattern: an address, `addr/bits` or `from-to`.
    ///
    /// # Errors
    /// Loki's message, `ip: invalid pattern: "<pattern>"`.
    pub(crate) fn new(pattern: &str) -> Result<Self, String> {
        matcher(pattern)
            .map(|matcher| IpPattern {
                matcher,
                pattern: pattern.to_string(),
            })
            .ok_or_else(|| format!("ip: invalid pattern: {pattern:?}"))
    }

    /// The pattern as written.
    pub fn pattern(&self) -> &str {
        &self.pattern
    }

    /// Whether any address in `text` matches (Loki's `ipFilter.filter`).
    pub(crate) fn found_in(&self, text: &[u8]) -> bool {
        let n = text.len();
        let at = |i: usize| text.get(i).copied().unwrap_or(0);
        let mut i = 0;
        while i < n {
            let charset = if i + 3 < n && ipv4_hint([at(i), at(i + 1), at(i + 2), at(i + 3)]) {
                Some(IPV4_CHARS)
            } else if ipv6_hint([at(i), at(i + 1), at(i + 2), at(i + 3), at(i + 4)]) {
                Some(IPV6_CHARS)
            } else {
                None
            };
            if let Some(charset) = charset {
                let rest = text.get(i..).unwrap_or_default();
                let len = rest.iter().take_while(|b| charset.contains(b)).count();
                let candidate = rest.get(..len).unwrap_or_default();
                if parse_addr(candidate).is_some_and(|(addr, _)| self.contains(addr)) {
                    return true;
                }
                // Loki skips the whole candidate, then one more byte.
                i += len;
            }
            i += 1;
        }
        false
    }

    fn contains(&self, ip: IpAddr) -> bool {
        match self.matcher {
            IpMatcher::Addr { addr, zoned } => !zoned && addr == ip,
            IpMatcher::Prefix { addr, bits } => match (addr, ip) {
                (IpAddr::V4(p), IpAddr::V4(a)) => masked32(p.to_bits(), bits) == masked32(a.to_bits(), bits),
                (IpAddr::V6(p), IpAddr::V6(a)) => masked128(p.to_bits(), bits) == masked128(a.to_bits(), bits),
                _ => false,
            },
            IpMatcher::Range { from, to } => match (from, to, ip) {
                (IpAddr::V4(f), IpAddr::V4(t), IpAddr::V4(a)) => f <= a && a <= t,
                (IpAddr::V6(f), IpAddr::V6(t), IpAddr::V6(a)) => f <= a && a <= t,
                _ => false,
            },
        }
    }
}

fn masked32(v: u32, bits: u8) -> u32 {
    v.checked_shr(32 - u32::from(bits)).unwrap_or(0)
}

fn masked128(v: u128, bits: u8) -> u128 {
    v.checked_shr(128 - u32::from(bits)).unwrap_or(0)
}

/// Loki's `getMatcher`: an address, else a prefix, else a range.
fn matcher(pattern: &str) -> Option<IpMatcher> {
    if let Some((addr, zoned)) = parse_addr(pattern.as_bytes()) {
        return Some(IpMatcher::Addr { addr, zoned });
    }
    if let Some((addr, bits)) = pattern.split_once('/') {
        let (addr, zoned) = parse_addr(addr.as_bytes())?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        // Go: decimal digits only, no leading zero, at most the address size.
        let valid_bits =
            !bits.is_empty() && bits.bytes().all(|b| b.is_ascii_digit()) && (bits == "0" || !bits.starts_with('0'));
        let bits: u8 = bits.parse().ok().filter(|b| valid_bits && *b <= max)?;
        return (!zoned).then_some(IpMatcher::Prefix { addr, bits });
    }
    let (from, to) = pattern.split_once('-')?;
    let (from, _) = parse_addr(from.as_bytes())?;
    let (to, _) = parse_addr(to.as_bytes())?;
    let ordered = match (from, to) {
        (IpAddr::V4(f), IpAddr::V4(t)) => f <= t,
        (IpAddr::V6(f), IpAddr::V6(t)) => f <= t,
        _ => false,
    };
    ordered.then_some(IpMatcher::Range { from, to })
}

/// An address as Go's `netip.ParseAddr` reads it, and whether it had a
/// zone (`%eth0`, IPv6 only). IPv4-mapped IPv6 stays IPv6.
fn parse_addr(text: &[u8]) -> Option<(IpAddr, bool)> {
    let text = std::str::from_utf8(text).ok()?;
    if text.contains(':') {
        let (addr, zoned) = match text.split_once('%') {
            Some((_, "")) => return None,
            Some((addr, _)) => (addr, true),
            None => (text, false),
        };
        return addr.parse::<Ipv6Addr>().ok().map(|a| (IpAddr::V6(a), zoned));
    }
    // Rust refuses leading zeros in IPv4 fields, as Go does.
    text.parse::<Ipv4Addr>().ok().map(|a| (IpAddr::V4(a), false))
}

/// A digit, then a dot within the next three bytes.
fn ipv4_hint(p: [u8; 4]) -> bool {
    p[0].is_ascii_digit() && (p[1] == b'.' || p[2] == b'.' || p[3] == b'.')
}

/// `::h`, or one to four hex digits and a colon.
fn ipv6_hint(p: [u8; 5]) -> bool {
    let hex = |b: u8| b.is_ascii_hexdigit();
    (p[0] == b':' && p[1] == b':' && hex(p[2]))
        || (hex(p[0]) && p[1] == b':')
        || (hex(p[0]) && hex(p[1]) && p[2] == b':')
        || (hex(p[0]) && hex(p[1]) && hex(p[2]) && p[3] == b':')
        || (hex(p[0]) && hex(p[1]) && hex(p[2]) && hex(p[3]) && p[4] == b':')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(pattern: &str, text: &str) -> bool {
        IpPattern::new(pattern).unwrap().found_in(text.as_bytes())
    }

    // Cases of Loki's pkg/logql/log/ip_test.go, with its expected answers.
    #[test]
    fn single_addresses_in_lines() {
        assert!(found("192.168.0.1", "vpn connection from 192.168.0.1 accepted"));
        assert!(!found("192.168.0.1", "vpn connection from 192.168.0.10 accepted"));
        assert!(!found("192.168.0.1", "vpn connection from 192.168.0.15"));
        assert!(found("192.168.0.1", "192.168.0.1"));
        assert!(found("::1", "remote ::1 said hello"));
        assert!(found("::1", "::1"));
        assert!(!found("::1", "remote ::11 said hello"));
        assert!(found("2001:db8::68", "from 2001:db8::68, port 22"));
        assert!(!found("192.168.0.1", ""));
        assert!(!found("10.0.0.1", "10.0.0.1.5 is not an address"));
    }

    #[test]
    fn cidr_and_ranges() {
        assert!(found("192.168.0.0/16", "host 192.168.200.3 up"));
        assert!(!found("192.168.0.0/16", "host 192.169.0.3 up"));
        assert!(found("1.2.3.4/24", "1.2.3.250"), "the prefix is masked");
        assert!(found("0.0.0.0/0", "any 8.8.8.8"));
        assert!(found("10.0.0.1-10.0.0.9", "a 10.0.0.5 b"));
        assert!(!found("10.0.0.1-10.0.0.9", "a 10.0.0.10 b"));
        assert!(found("2001:db8::/32", "addr=2001:db8:1::7"));
        assert!(found("::1-::5", "peer ::3 left"));
    }

    #[test]
    fn families_never_mix() {
        assert!(!found("1.2.3.4", "::ffff:1.2.3.4"));
        assert!(!found("::ffff:0:0/96", "1.2.3.4"));
        assert!(!found("1.0.0.0/8", "::ffff:1.2.3.4 only"));
        assert!(IpPattern::new("1.2.3.4-::5").is_err());
    }

    #[test]
    fn bad_patterns_say_which() {
        for p in [
            "",
            "1.2.3",
            "01.2.3.4",
            "1.2.3.4/33",
            "1.2.3.4/",
            "1.2.3.4/024",
            "1.2.3.9-1.2.3.1",
            "1.2.3.4 - 1.2.3.5",
            "fe80::1%",
            "x",
        ] {
            let e = IpPattern::new(p).unwrap_err();
            assert_eq!(e, format!("ip: invalid pattern: {p:?}"));
        }
    }

    #[test]
    fn zoned_pattern_addresses_match_no_line() {
        assert!(IpPattern::new("fe80::1%eth0").is_ok());
        assert!(!found("fe80::1%eth0", "fe80::1 and fe80::1%eth0"));
        assert!(found("fe80::1-fe80::9", "x fe80::2 y"));
    }

    #[test]
    fn short_tails_and_invalid_bytes_never_panic() {
        for text in ["1", "1.", "1.2", "::", "a:", "\u{ff}", "1.2.3.4\u{0}"] {
            let _ = found("1.2.3.4", text);
        }
        assert!(IpPattern::new("1.2.3.4").unwrap().found_in(b"\xff1.2.3.4\xfe"));
    }
}
