//! Diagnostics: what went wrong, where (file:line:col and address) and a hint.
//!
//! Every user-facing error about a spec is a [`Diagnostic`]; operational errors
//! (AWS calls) use `anyhow` with context and are rendered by the CLI.

use serde::Serialize;
use std::fmt;

/// A 1-based position in a source file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct Mark {
    pub line: usize,
    pub col: usize,
}

/// One error about user input.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    pub message: String,
    pub file: Option<String>,
    pub mark: Option<Mark>,
    pub address: Option<String>,
    pub hint: Option<String>,
}

impl Diagnostic {
    pub fn new(message: impl Into<String>) -> Self {
        Diagnostic { message: message.into(), file: None, mark: None, address: None, hint: None }
    }

    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    pub fn at(mut self, file: &str, mark: Mark) -> Self {
        self.file = Some(file.to_string());
        self.mark = Some(mark);
        self
    }

    pub fn address(mut self, address: impl Into<String>) -> Self {
        self.address = Some(address.into());
        self
    }

    /// `file:line:col`, or just the file when the position is unknown.
    pub fn location(&self) -> Option<String> {
        match (&self.file, self.mark) {
            (Some(f), Some(m)) => Some(format!("{f}:{}:{}", m.line, m.col)),
            (Some(f), None) => Some(f.clone()),
            _ => None,
        }
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "error: {}", self.message)?;
        match (self.location(), &self.address) {
            (Some(loc), Some(addr)) => write!(f, "\n  --> {loc} ({addr})")?,
            (Some(loc), None) => write!(f, "\n  --> {loc}")?,
            (None, Some(addr)) => write!(f, "\n  --> {addr}")?,
            (None, None) => {}
        }
        if let Some(h) = &self.hint {
            write!(f, "\nhint: {h}")?;
        }
        Ok(())
    }
}

/// All problems found in one pass, so a user fixes them in one round trip.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            writeln!(f, "{d}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Diagnostics {}

impl From<Diagnostic> for Diagnostics {
    fn from(d: Diagnostic) -> Self {
        Diagnostics(vec![d])
    }
}

/// The candidate closest to `word` by edit distance, if it is close enough to be a typo.
pub fn did_you_mean<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let limit = (word.chars().count() / 3).max(1) + 1;
    candidates
        .into_iter()
        .map(|c| (edit_distance(word, c), c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_close_names_only() {
        assert_eq!(did_you_mean("memroy", ["memory", "timeout"]), Some("memory"));
        assert_eq!(did_you_mean("colour", ["handler", "code"]), None);
    }

    #[test]
    fn renders_location_address_and_hint() {
        let d = Diagnostic::new("memory 64 is out of range")
            .at("slx.yaml", Mark { line: 3, col: 13 })
            .address("function.api")
            .hint("use 128 to 10240");
        assert_eq!(
            d.to_string(),
            "error: memory 64 is out of range\n  --> slx.yaml:3:13 (function.api)\nhint: use 128 to 10240"
        );
    }
}
