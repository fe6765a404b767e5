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
