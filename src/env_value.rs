//! How a value is written in a Docker Compose `.env` file: the env step writes values so,
//! and redaction knows this form of a secret too (a leaf: both import it).

/// Quotes a value so that Compose reads it back unchanged: bare when it is plain; else in
/// single quotes (literal, `\'` for a quote); else, when it holds a backslash or a line break,
/// in double quotes with `\\`, `\"`, `\n`, `\r`, and `\$` where `$` would start a reference.
/// (docker-compose v1 reads the same values back but three: one with `${` (its python-dotenv
/// 0.21 has no way to write it), one that needs `\$` in double quotes (it keeps the `\`), and
/// one that ends with a backslash (it reads `\\"` as an escaped quote when a later line holds
/// a quote).)
pub(crate) fn quote(value: &str) -> String {
    let plain = value
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "_./:@,+=%-".contains(c));
    if plain {
        return value.to_string();
    }
    if !value.contains(['\\', '\n', '\r']) {
        return format!("'{}'", value.replace('\'', "\\'"));
    }
    format!("\"{}\"", escape_double(value))
}

/// The inside of a double-quoted value: `\\`, `\"`, `\n`, `\r`, and `\$` where `$` would
/// start a reference.
pub(crate) fn escape_double(value: &str) -> String {
    let mut out = String::new();
    let mut chars = value.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '$' if chars
                .peek()
                .is_some_and(|n| matches!(n, '{' | '$' | '_') || n.is_alphabetic()) =>
            {
                out.push_str("\\$")
            }
            c => out.push(c),
        }
    }
    out
}
