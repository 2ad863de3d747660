//! Secrets read from files (`--cluster-secret-file`, `--admin-token-file`,
//! ...), so that they never sit in a process's environment, where
//! `/proc/<pid>/environ` and every child would see them.

use std::io::Read;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// Largest secret file read; a secret is a line, not a document.
pub const MAX_SECRET_FILE_BYTES: u64 = 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum SecretFileError {
    #[error("cannot read {flag} {path:?}: {source}; check the path and that this process's user can read it")]
    Read {
        flag: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{flag} {path:?} is readable by its group or by others (mode {mode:04o}); make it private: chmod 600 {path:?}")]
    Exposed {
        flag: &'static str,
        path: PathBuf,
        mode: u32,
    },
    #[error("{flag} {path:?} is not a regular file; give the file that holds the secret")]
    NotAFile { flag: &'static str, path: PathBuf },
    #[error(
        "{flag} {path:?} is empty; write the secret into it (e.g. `openssl rand -hex 32 > FILE`)"
    )]
    Empty { flag: &'static str, path: PathBuf },
    #[error(
        "{flag} {path:?} is larger than {MAX_SECRET_FILE_BYTES} bytes; it should hold one secret"
    )]
    TooLarge { flag: &'static str, path: PathBuf },
    #[error("{flag} {path:?} is not UTF-8 text; write the secret as text")]
    NotText { flag: &'static str, path: PathBuf },
    #[error("give either {flag} or {other}, not both")]
    Both {
        flag: &'static str,
        other: &'static str,
    },
}

/// Reads the secret in `path` (named `flag` in errors), trimmed of
/// surrounding whitespace. Refused: a file its group or others may read
/// (mode bits 0o044), a non-regular file, an empty one, or one above
/// [`MAX_SECRET_FILE_BYTES`].
pub fn read_secret_file(flag: &'static str, path: &Path) -> Result<String, SecretFileError> {
    let read_err = |source| SecretFileError::Read {
        flag,
        path: path.to_owned(),
        source,
    };
    let file = std::fs::OpenOptions::new()
        .read(true)
        // A FIFO given by mistake must not hang start-up (it is then
        // refused as not a regular file).
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(read_err)?;
    let meta = file.metadata().map_err(read_err)?;
    if !meta.is_file() {
        return Err(SecretFileError::NotAFile {
            flag,
            path: path.to_owned(),
        });
    }
    let mode = meta.mode() & 0o7777;
    if mode & 0o044 != 0 {
        return Err(SecretFileError::Exposed {
            flag,
            path: path.to_owned(),
            mode,
        });
    }
    if meta.len() > MAX_SECRET_FILE_BYTES {
        return Err(SecretFileError::TooLarge {
            flag,
            path: path.to_owned(),
        });
    }
    let mut bytes = Vec::new();
    file.take(MAX_SECRET_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(read_err)?;
    let text = String::from_utf8(bytes).map_err(|_| SecretFileError::NotText {
        flag,
        path: path.to_owned(),
    })?;
    let secret = text.trim();
    if secret.is_empty() {
        return Err(SecretFileError::Empty {
            flag,
            path: path.to_owned(),
        });
    }
    Ok(secret.to_owned())
}

/// The secrets in a secret file's text, one per line: surrounding
/// whitespace trimmed, empty lines and `#` comments skipped. A credential
/// file may hold several during a rotation: a server accepts all of them,
/// a client presents the first.
pub fn secret_lines(text: &str) -> Vec<&str> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect()
}

/// `value` (from a flag or the environment) or the secret in `file`:
/// giving both is an error, giving neither is `Ok(None)`.
pub fn secret_from(
    value: Option<&str>,
    value_flag: &'static str,
    file: Option<&Path>,
    file_flag: &'static str,
) -> Result<Option<String>, SecretFileError> {
    let value = value.filter(|v| !v.is_empty());
    match (value, file) {
        (Some(_), Some(_)) => Err(SecretFileError::Both {
            flag: file_flag,
            other: value_flag,
        }),
        (Some(v), None) => Ok(Some(v.to_owned())),
        (None, Some(path)) => read_secret_file(file_flag, path).map(Some),
        (None, None) => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn write(dir: &Path, name: &str, text: &str, mode: u32) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).expect("write");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).expect("chmod");
        p
    }

    #[test]
    fn private_file_is_read_and_trimmed() {
        let d = tempfile::tempdir().expect("tempdir");
        let p = write(d.path(), "s", "  secret-0123456789\n", 0o600);
        assert_eq!(
            read_secret_file("--cluster-secret-file", &p).expect("read"),
            "secret-0123456789"
        );
        let p = write(d.path(), "r", "secret-0123456789", 0o400);
        assert!(read_secret_file("--x", &p).is_ok());
    }

    #[test]
    fn exposed_empty_missing_and_odd_files_are_refused() {
        let d = tempfile::tempdir().expect("tempdir");
        for mode in [0o640, 0o604, 0o644] {
            let p = write(d.path(), "g", "secret-0123456789", mode);
            let e = read_secret_file("--admin-token-file", &p).expect_err("exposed");
            assert!(matches!(e, SecretFileError::Exposed { .. }), "{mode:o}");
            assert!(e.to_string().contains("chmod 600"), "{e}");
        }
        let p = write(d.path(), "e", " \n", 0o600);
        assert!(matches!(
            read_secret_file("--x", &p),
            Err(SecretFileError::Empty { .. })
        ));
        assert!(matches!(
            read_secret_file("--x", &d.path().join("missing")),
            Err(SecretFileError::Read { .. })
        ));
        assert!(matches!(
            read_secret_file("--x", d.path()),
            Err(SecretFileError::NotAFile { .. })
        ));
    }

    #[test]
    fn several_secrets_one_per_line() {
        assert_eq!(
            secret_lines("new-0123456789abcdef\n# old one, remove after rotation\n  old-0123456789abcdef \n\n"),
            vec!["new-0123456789abcdef", "old-0123456789abcdef"]
        );
        assert!(secret_lines(" \n# only a comment\n").is_empty());
    }

    #[test]
    fn value_or_file_not_both() {
        let d = tempfile::tempdir().expect("tempdir");
        let p = write(d.path(), "s", "from-file-0123456789", 0o600);
        let got = secret_from(None, "--a", Some(&p), "--a-file").expect("file");
        assert_eq!(got.as_deref(), Some("from-file-0123456789"));
        let got = secret_from(Some("v"), "--a", None, "--a-file").expect("value");
        assert_eq!(got.as_deref(), Some("v"));
        assert!(secret_from(Some(""), "--a", None, "--a-file")
            .expect("empty")
            .is_none());
        assert!(matches!(
            secret_from(Some("v"), "--a", Some(&p), "--a-file"),
            Err(SecretFileError::Both { .. })
        ));
    }
}
