//! Configuration types both binaries parse, and the error that names the
//! file, line, column and key of every mistake.
//!
//! Each binary's config is two layers (STYLE.md section 7): `*Toml` types
//! that mirror the file, deserialized by [`parse_toml`], and validated types
//! built from them. Validation collects every problem into [`Problems`]
//! rather than stopping at the first.

mod error;
pub mod secret;
mod units;

pub use error::{ConfigError, Problem, Problems, SourceText, parse_toml, read_config};
pub use units::{ByteSize, HumanDuration};

/// A `gzip_level` setting (the agent's `batch.gzip_level`, the
/// collector's `loki.gzip_level`): 1 to 9. Out of range is a problem at
/// its place; the level is clamped so that validation goes on.
pub fn gzip_level(level: &toml::Spanned<u32>, key: &str, problems: &mut Problems<'_>) -> u32 {
    let value = *level.get_ref();
    if !(1..=9).contains(&value) {
        problems.at(level.span(), key, format!("{value} is out of range (1 to 9)"));
    }
    value.clamp(1, 9)
}
