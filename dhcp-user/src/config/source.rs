//! Where each value of a configuration came from, and errors that say so: `FILE:LINE:COLUMN:
//! reason`, or `command line: --flag value: reason` for values given as flags.
//!
//! Positions are the spans the `toml` crate records ([`toml::Spanned`], the parse error's span);
//! this module keeps them by the element's path in the model (`subnets[1].pools[0]`), which is
//! what [`ConfigError`] names. It must never know the file's keys or the model's rules: it only
//! maps paths to places.

use core::fmt;
use core::ops::Range;
use std::collections::BTreeMap;

use toml::Spanned;

use super::ConfigError;

/// A configuration problem and where it is: `FILE:LINE:COLUMN: reason`.
///
/// `line` and `column` count from 1. They are 0 when there is no position to give (the file
/// could not be read, or the value came from a command-line flag, whose name and value then
/// start the reason); the error is then displayed as `FILE: reason`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileError {
    pub file: String,
    pub line: usize,
    pub column: usize,
    pub reason: String,
}

impl fmt::Display for FileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}", self.file, self.reason)
        } else {
            write!(f, "{}:{}:{}: {}", self.file, self.line, self.column, self.reason)
        }
    }
}

impl std::error::Error for FileError {}

/// The `file` of errors about command-line flags.
pub const COMMAND_LINE: &str = "command line";

/// Where a value came from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) enum Loc {
    /// Not given (a default): errors fall back to line 1 of the file.
    #[default]
    Unknown,
    /// Byte range in the file.
    Span(Range<usize>),
    /// A command-line flag with its value, e.g. `--pool 100.64.0.10-100.64.0.20`.
    Flag(String),
}

impl Loc {
    pub(crate) fn of<T>(s: &Spanned<T>) -> Loc {
        Loc::Span(s.span())
    }
}

/// Where each value of a [`ServerConfig`](super::ServerConfig) came from, by its path in the
/// model, to turn errors about values (and the paths of [`ConfigError`]) into positions. Made by
/// [`parse`](super::parse) / [`load`](super::load) with the configuration.
///
/// Paths are those of [`ConfigError`] (`server_id`, `subnets[1]` for a subnet's `subnet` key,
/// `subnets[1].pools[0]`, `subnets[1].reservations[0]` for a reservation's `ip`,
/// `subnets[1].options.raw[0]` for an option's `code`) and a few of the server's own
/// (`server.workers`, `server.interfaces[0]`, `subnets[1].reservations[0].client`).
#[derive(Debug, Clone)]
pub struct SourceMap {
    file: String,
    text: String,
    locs: BTreeMap<String, Loc>,
}

impl SourceMap {
    pub(crate) fn new(file: &str, text: &str) -> SourceMap {
        SourceMap { file: file.to_string(), text: text.to_string(), locs: BTreeMap::new() }
    }

    /// The map of a configuration made from command-line flags alone.
    pub fn command_line() -> SourceMap {
        SourceMap::new(COMMAND_LINE, "")
    }

    /// The file name errors carry (`command line` for flags alone).
    pub fn file(&self) -> &str {
        &self.file
    }

    /// Records where the element at `path` was given.
    pub(crate) fn set(&mut self, path: impl Into<String>, loc: Loc) {
        self.locs.insert(path.into(), loc);
    }

    /// Whether anything was recorded at exactly `path`.
    pub(crate) fn has(&self, path: &str) -> bool {
        self.locs.contains_key(path)
    }

    /// Forgets `path` and everything under it (a subnet replaced by command-line flags).
    pub(crate) fn forget(&mut self, path: &str) {
        self.locs.retain(|k, _| !(k == path || k.strip_prefix(path).is_some_and(|r| r.starts_with(['.', '[']))));
    }

    /// Where the element at `path` was given, else where the nearest element containing it was
    /// (a pool of a subnet given by a flag: the `--subnet` flag).
    pub(crate) fn loc(&self, path: &str) -> Loc {
        let mut at = Some(path);
        while let Some(p) = at {
            if let Some(loc) = self.locs.get(p) {
                return loc.clone();
            }
            at = p.rfind(['.', '[']).map(|i| &p[..i]);
        }
        Loc::Unknown
    }

    /// 1-based line and column (in characters) of a byte offset. The `toml` crate computes these
    /// only inside its error messages, so spans are translated here.
    fn line_column(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        // Spans from the parser fall on character boundaries; step back if one ever does not.
        let offset = (0..=offset).rev().find(|&o| self.text.is_char_boundary(o)).unwrap_or(0);
        let before = &self.text[..offset];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        (line, before[line_start..].chars().count() + 1)
    }

    /// An error at `loc`.
    pub(crate) fn error(&self, loc: &Loc, reason: impl Into<String>) -> FileError {
        let reason = reason.into();
        match loc {
            Loc::Span(r) => {
                let (line, column) = self.line_column(r.start);
                FileError { file: self.file.clone(), line, column, reason }
            }
            Loc::Flag(flag) => {
                FileError { file: COMMAND_LINE.to_string(), line: 0, column: 0, reason: format!("{flag}: {reason}") }
            }
            // A configuration from flags alone has no line 1 to point at.
            Loc::Unknown if self.text.is_empty() && self.file == COMMAND_LINE => {
                FileError { file: self.file.clone(), line: 0, column: 0, reason }
            }
            Loc::Unknown => FileError { file: self.file.clone(), line: 1, column: 1, reason },
        }
    }

    /// An error at the element `path` names (see [`SourceMap::loc`]).
    pub(crate) fn error_at(&self, path: &str, reason: impl Into<String>) -> FileError {
        self.error(&self.loc(path), reason)
    }

    /// Where a [`ConfigError`] path points.
    fn loc_of_error(&self, path: &str, reason: &str) -> Loc {
        // The subnet-level timing check names the three times in its reason: point at whichever
        // of them the subnet sets.
        if path.starts_with("subnets[") && !path.contains('.') && reason.contains("renewal_time") {
            let time = ["renewal_time", "rebinding_time", "lease_time"]
                .iter()
                .find_map(|key| self.locs.get(&format!("{path}.{key}")));
            if let Some(loc) = time {
                return loc.clone();
            }
        }
        self.loc(path)
    }

    /// A short description of where `loc` is, seen from an error located at `from`.
    pub(crate) fn describe(&self, loc: &Loc, from: &Loc) -> Option<String> {
        match loc {
            Loc::Span(r) => {
                let (line, _) = self.line_column(r.start);
                Some(if matches!(from, Loc::Span(_)) {
                    format!("line {line}")
                } else {
                    format!("{}:{line}", self.file)
                })
            }
            Loc::Flag(flag) => Some(flag.clone()),
            Loc::Unknown => None,
        }
    }

    /// `reason` with each path it mentions (`overlaps subnets[0].pools[0]`) followed by where that
    /// element was given.
    fn annotate(&self, reason: &str, from: &Loc) -> String {
        let mut out = String::with_capacity(reason.len() + 16);
        let mut rest = reason;
        while let Some(pos) = rest.find("subnets[") {
            out.push_str(&rest[..pos]);
            let tail = &rest[pos..];
            let end = tail
                .find(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '[' | ']')))
                .unwrap_or(tail.len());
            let path = tail[..end].trim_end_matches('.');
            out.push_str(path);
            if let Some(w) = self.describe(&self.loc(path), from) {
                out.push_str(&format!(" ({w})"));
            }
            rest = &tail[path.len()..];
        }
        out.push_str(rest);
        out
    }

    /// A [`ConfigError`] at the position of the element its path names.
    pub fn config_error(&self, e: &ConfigError) -> FileError {
        let loc = self.loc_of_error(&e.path, &e.reason);
        let reason = self.annotate(&e.reason, &loc);
        // The position says which element; the engine's path only helps when there is none.
        match loc {
            Loc::Unknown => self.error(&loc, format!("{}: {reason}", e.path)),
            _ => self.error(&loc, reason),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_fall_back_to_the_element_containing_them() {
        let mut map = SourceMap::new("t.toml", "a = 1\nb = \"é\" x\n");
        map.set("subnets[1]", Loc::Span(6..7));
        map.set("subnets[1].pools[0]", Loc::Span(15..16));
        map.set("subnets[10]", Loc::Flag("--subnet 100.64.0.0/24".into()));
        assert_eq!(map.loc("subnets[1].pools[0]"), Loc::Span(15..16));
        assert_eq!(map.loc("subnets[1].pools[3]"), Loc::Span(6..7));
        assert_eq!(map.loc("subnets[2].pools[0]"), Loc::Unknown);
        // Columns count characters, not bytes.
        let e = map.error_at("subnets[1].pools[0]", "why");
        assert_eq!((e.line, e.column), (2, 9), "{e}");

        map.forget("subnets[1]");
        assert_eq!(
            (map.has("subnets[1]"), map.has("subnets[1].pools[0]"), map.has("subnets[10]")),
            (false, false, true)
        );
    }
}
