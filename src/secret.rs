//! A value that must never be printed: app secrets, access tokens, the API bearer token.

use std::fmt;

/// Holds a secret string. `Debug` and `Display` print `<secret>`, so a secret that ends up in
/// a log line, an error message or a `--config.check` report shows nothing. The only way to
/// the value is [`Secret::expose`], which makes every use easy to find.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// Reads a secret file, trimming surrounding whitespace (the trailing newline).
    pub fn from_file(path: &std::path::Path) -> std::io::Result<Self> {
        Ok(Secret(std::fs::read_to_string(path)?.trim().to_string()))
    }

    /// The value itself, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<secret>")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<secret>")
    }
}

impl<'de> serde::Deserialize<'de> for Secret {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Ok(Secret(String::deserialize(deserializer)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Formatting a secret, however it is done, never shows its value.
    #[test]
    fn formatting_hides_the_value() {
        let secret = Secret::new("hunter2");
        assert_eq!(format!("{secret}"), "<secret>");
        assert_eq!(format!("{secret:?}"), "<secret>");
        assert_eq!(format!("{:?}", Some(&secret)), "Some(<secret>)");
        assert_eq!(secret.expose(), "hunter2");
    }

    /// A secret file's trailing newline is not part of the secret.
    #[test]
    fn secret_files_are_trimmed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        std::fs::write(&path, "  s3cr3t\n").unwrap();
        assert_eq!(Secret::from_file(&path).unwrap().expose(), "s3cr3t");
    }
}
