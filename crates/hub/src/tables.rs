//! The `[[roles]]`, `[[profiles]]` and `[[services]]` tables of a replica's
//! TOML file, read with the line each starts on, so that a misconfigured
//! one is refused at start-up with its file, line and reason
//! ([`TableError`]). What each table must hold is its own module's
//! ([`crate::roles`], [`crate::profiles`], [`crate::services`]).

use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

/// Why a configuration file's tables cannot be used; each message names
/// the file (and the line) and what to change.
#[derive(Debug, thiserror::Error)]
pub enum TableError {
    #[error("cannot read the configuration file {0}: {1}")]
    Read(PathBuf, std::io::Error),
    #[error("{0}: {1}")]
    Parse(PathBuf, String),
    /// One table, e.g. `hub.toml:4: role "ta": Unknown scope ...`.
    #[error("{file}:{line}: {kind} {name:?}: {why}")]
    Table {
        file: PathBuf,
        line: usize,
        kind: &'static str,
        name: String,
        why: String,
    },
}

/// The file at `path`, parsed as `F` (whose field for the wanted key is an
/// `Option<Vec<toml::Spanned<_>>>`; other keys are the replica's flags),
/// with its text for [`line_of`].
pub(crate) fn read<F: DeserializeOwned>(path: &Path) -> Result<(String, F), TableError> {
    let text = std::fs::read_to_string(path).map_err(|e| TableError::Read(path.into(), e))?;
    let file = toml::from_str(&text).map_err(|e| TableError::Parse(path.into(), e.to_string()))?;
    Ok((text, file))
}

/// The line (from 1) a table whose span is `span` starts on.
pub(crate) fn line_of(text: &str, span: std::ops::Range<usize>) -> usize {
    text[..span.start.min(text.len())].matches('\n').count() + 1
}

/// The refusal of table `name` of `kind` at `line` of `path`.
pub(crate) fn refused<'a>(
    path: &'a Path,
    line: usize,
    kind: &'static str,
    name: String,
) -> impl FnOnce(String) -> TableError + 'a {
    move |why| TableError::Table {
        file: path.into(),
        line,
        kind,
        name,
        why,
    }
}
