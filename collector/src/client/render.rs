//! How records look on a terminal and in pipes.
//!
//! - `text`: `2024-05-01T12:00:00.123Z {host="web-03", source="app"} line`,
//!   with colour only when stdout is a terminal.
//! - `raw`: each line byte-exact, followed by `\n`: for `grep`, `diff`, `wc`.
//! - `json`: one object per record, as the API sends it.

use std::io::Write;

use crate::query::output::RecordJson;

/// Output format of record-printing commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    /// Timestamp, labels and line, for people.
    Text,
    /// The line only, byte-exact.
    Raw,
    /// One JSON object per record.
    Json,
}

/// Writes one record in `format`.
///
/// # Errors
/// Writing failed (for example a closed pipe).
pub fn write_record(
    out: &mut impl Write,
    format: OutputFormat,
    record: &RecordJson,
    color: bool,
) -> std::io::Result<()> {
    match format {
        OutputFormat::Raw => {
            let line = record.line_bytes().map_err(std::io::Error::other)?;
            out.write_all(&line)?;
            out.write_all(b"\n")
        }
        OutputFormat::Json => {
            serde_json::to_writer(&mut *out, record)?;
            out.write_all(b"\n")
        }
        OutputFormat::Text => {
            let ts = format_timestamp_ms(record.timestamp_ms);
            let labels: Vec<String> = record
                .labels
                .as_ref()
                .unwrap_or(&record.headers)
                .iter()
                .map(|(k, v)| format!("{k}={}", serde_json::to_string(v).unwrap_or_default()))
                .collect();
            let line = record.line_bytes().map_err(std::io::Error::other)?;
            if color {
                write!(out, "\x1b[2m{ts}\x1b[0m \x1b[36m{{{}}}\x1b[0m ", labels.join(", "))?;
            } else {
                write!(out, "{ts} {{{}}} ", labels.join(", "))?;
            }
            out.write_all(&line)?;
            out.write_all(b"\n")
        }
    }
}

/// RFC 3339 with milliseconds, UTC.
pub fn format_timestamp_ms(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let millis = ms.rem_euclid(1000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps() {
        assert_eq!(format_timestamp_ms(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(format_timestamp_ms(1_700_000_000_123), "2023-11-14T22:13:20.123Z");
        assert_eq!(format_timestamp_ms(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(format_timestamp_ms(-1), "1969-12-31T23:59:59.999Z");
    }
}
