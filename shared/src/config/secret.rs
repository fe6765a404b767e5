//! Secrets in configs (bearer tokens): given inline, in a file, or in an
//! environment variable, so that a config can be world-readable while the
//! token is not. Both sides read them the same way.

use std::path::Path;

/// Shortest token accepted. A token is the only thing between the network
/// and the data; 16 characters of a random token are ~95 bits.
pub const MIN_TOKEN_LEN: usize = 16;

/// Reads a token from `path`: the first line, surrounding whitespace removed.
///
/// # Errors
/// The file cannot be read, or holds no usable token (message names the file).
pub fn read_token_file(path: &Path) -> Result<String, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: cannot read token file: {e}", path.display()))?;
    let token = text.lines().next().unwrap_or_default().trim().to_owned();
    check_token(&token).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(token)
}

/// Reads a token from environment variable `name`.
///
/// # Errors
/// The variable is unset or holds no usable token.
pub fn read_token_env(name: &str) -> Result<String, String> {
    let token = std::env::var(name).map_err(|_| format!("environment variable {name} is not set"))?;
    let token = token.trim().to_owned();
    check_token(&token).map_err(|e| format!("environment variable {name}: {e}"))?;
    Ok(token)
}

/// Checks that a token is long enough and can travel in an HTTP header.
///
/// # Errors
/// A message saying what is wrong, without the token itself.
pub fn check_token(token: &str) -> Result<(), String> {
    if token.len() < MIN_TOKEN_LEN {
        return Err(format!(
            "token is {} characters; at least {MIN_TOKEN_LEN} are required (e.g. `openssl rand -hex 32`)",
            token.len()
        ));
    }
    if !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err("token must be printable ASCII without spaces".to_owned());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_or_unprintable_tokens_are_refused() {
        assert!(check_token("0123456789abcdef").is_ok());
        assert!(check_token("short").unwrap_err().contains("at least 16"));
        assert!(check_token("0123456789 abcdef").is_err());
    }

    #[test]
    fn token_file_first_line_trimmed() {
        let dir = std::env::temp_dir().join(format!("logpost-secret-{}", std::process::id()));
        std::fs::create_dir_all(&dir).ok();
        let path = dir.join("t");
        std::fs::write(&path, "  0123456789abcdef0123\nrest\n").ok();
        assert_eq!(read_token_file(&path).as_deref(), Ok("0123456789abcdef0123"));
        let missing = read_token_file(&dir.join("nope")).unwrap_err();
        assert!(missing.contains("cannot read token file"), "{missing}");
        std::fs::remove_dir_all(&dir).ok();
    }
}
