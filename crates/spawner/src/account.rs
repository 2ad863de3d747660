//! Users' own Unix accounts: looking them up (`getpwnam_r`,
//! `getgrouplist`), creating missing ones (`useradd`), and the per-user
//! directory that holds a server's log.
//!
//! As JupyterHub's `LocalProcessSpawner`, a server runs as the system
//! account of its hub user, with that account's groups, home and shell;
//! the hub (root) switches to it between `fork` and `exec`.

use std::ffi::{CStr, CString};
use std::io;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::SpawnError;

/// A system account a server can run as.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Account {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    /// Every group the account is in (its primary group included), as
    /// `initgroups(3)` would set them.
    pub groups: Vec<u32>,
    pub home: PathBuf,
    pub shell: String,
}

impl Account {
    /// The identity a process is switched to.
    pub fn run_as(&self) -> RunAs {
        RunAs {
            uid: self.uid,
            gid: self.gid,
            groups: self.groups.clone(),
        }
    }
}

/// The credentials a spawned process takes before `exec`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunAs {
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups (`setgroups(2)`).
    pub groups: Vec<u32>,
}

/// The account named `name`, or `None` if the system has none (the
/// password database answered, but not with an entry).
pub fn lookup_account(name: &str) -> Result<Option<Account>, SpawnError> {
    let lookup_err = |source: io::Error| SpawnError::AccountLookup {
        account: name.to_owned(),
        source,
    };
    let c_name = CString::new(name).map_err(|_| SpawnError::BadAccountName {
        name: name.to_owned(),
        reason: "it contains a NUL byte".into(),
    })?;
    let mut buf: Vec<libc::c_char> = vec![0; 4096];
    loop {
        // SAFETY: an all-zero passwd is a valid value for getpwnam_r to fill.
        let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
        let mut result: *mut libc::passwd = std::ptr::null_mut();
        // SAFETY: every pointer is valid for the call; `buf` outlives every
        // use of the strings getpwnam_r points into it.
        let rc = unsafe {
            libc::getpwnam_r(
                c_name.as_ptr(),
                &mut pwd,
                buf.as_mut_ptr(),
                buf.len(),
                &mut result,
            )
        };
        if rc == libc::ERANGE && buf.len() < (1 << 20) {
            buf.resize(buf.len() * 2, 0);
            continue;
        }
        if rc != 0 {
            return Err(lookup_err(io::Error::from_raw_os_error(rc)));
        }
        if result.is_null() {
            return Ok(None);
        }
        // SAFETY: getpwnam_r succeeded, so the fields point to NUL-terminated
        // strings inside `buf` (or are null for an empty shell on some
        // systems, checked).
        let text = |p: *const libc::c_char| {
            if p.is_null() {
                String::new()
            } else {
                unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
            }
        };
        let home = PathBuf::from(text(pwd.pw_dir));
        let shell = text(pwd.pw_shell);
        let (uid, gid) = (pwd.pw_uid, pwd.pw_gid);
        let groups = group_list(&c_name, gid).map_err(lookup_err)?;
        return Ok(Some(Account {
            name: name.to_owned(),
            uid,
            gid,
            groups,
            home,
            shell,
        }));
    }
}

/// `getgrouplist(3)`: the groups of `name`, `gid` included.
fn group_list(name: &CStr, gid: libc::gid_t) -> io::Result<Vec<u32>> {
    let mut n: libc::c_int = 32;
    loop {
        let mut groups: Vec<libc::gid_t> = vec![0; usize::try_from(n).unwrap_or(32)];
        let mut count = n;
        // SAFETY: `groups` holds `count` entries; getgrouplist writes at most
        // that many and sets `count` to the number it needs.
        let rc = unsafe { libc::getgrouplist(name.as_ptr(), gid, groups.as_mut_ptr(), &mut count) };
        if rc >= 0 {
            groups.truncate(usize::try_from(count).unwrap_or(0));
            return Ok(groups);
        }
        if count <= n || n >= 65_536 {
            return Err(io::Error::other("getgrouplist failed"));
        }
        n = count;
    }
}

/// Longest account name `useradd` is given.
pub const MAX_ACCOUNT_NAME: usize = 32;

/// Whether `name` may be given to `useradd`: Debian's conservative
/// `NAME_REGEX` plus dots, `[a-z_][a-z0-9_.-]*`, at most 32 characters.
pub fn validate_account_name(name: &str) -> Result<(), SpawnError> {
    let bad = |reason: &str| SpawnError::BadAccountName {
        name: name.to_owned(),
        reason: reason.to_owned(),
    };
    let Some(first) = name.chars().next() else {
        return Err(bad("it is empty"));
    };
    if name.len() > MAX_ACCOUNT_NAME {
        return Err(bad("it is longer than 32 characters"));
    }
    if !(first.is_ascii_lowercase() || first == '_') {
        return Err(bad("it must start with a lower-case letter or '_'"));
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "_.-".contains(c))
    {
        return Err(bad("only a-z, 0-9, '_', '.' and '-' are allowed"));
    }
    Ok(())
}

/// Creates the account `name` with `useradd` (Debian's `passwd` package):
/// a group of the same name, a home directory under the system's default
/// base, made private (0700). `name` is validated first and passed as one
/// argument after `--`, never through a shell.
pub fn create_account(name: &str) -> Result<Account, SpawnError> {
    validate_account_name(name)?;
    let out = Command::new("useradd")
        .args(["--create-home", "--user-group", "--shell", "/bin/sh", "--"])
        .arg(name)
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .output()
        .map_err(|e| SpawnError::CreateAccount {
            name: name.to_owned(),
            detail: format!("cannot run useradd: {e}"),
        })?;
    // 9: the name is taken (another replica may have just created it).
    if !out.status.success() && out.status.code() != Some(9) {
        return Err(SpawnError::CreateAccount {
            name: name.to_owned(),
            detail: format!(
                "useradd exited with {}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        });
    }
    let account = lookup_account(name)?.ok_or_else(|| SpawnError::CreateAccount {
        name: name.to_owned(),
        detail: "useradd succeeded but the account cannot be looked up".into(),
    })?;
    if account.home.is_dir() {
        std::fs::set_permissions(&account.home, std::fs::Permissions::from_mode(0o700)).map_err(
            |e| SpawnError::CreateAccount {
                name: name.to_owned(),
                detail: format!("cannot make {} private: {e}", account.home.display()),
            },
        )?;
    }
    tracing::info!(account = name, uid = account.uid, home = %account.home.display(), "created a system account");
    Ok(account)
}

/// A file name for a hub user or server name: characters outside
/// `A-Za-z0-9_-@` become `%XX`, so no name is `.`, `..` or holds a `/`, and
/// no two names share one ([`quorumhub_state::ids::file_name`]).
pub fn dir_escape(name: &str) -> String {
    quorumhub_state::ids::file_name(name)
}

/// Makes `dir` (its parent must exist) a directory owned by `account` with
/// mode 0700, whether it existed or not. A symbolic link or a file in its
/// place is refused.
pub fn prepare_user_dir(dir: &Path, account: &Account) -> Result<(), SpawnError> {
    let err = |source: io::Error| SpawnError::UserDir {
        path: dir.to_owned(),
        source,
    };
    match std::fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(err(e)),
    }
    let meta = std::fs::symlink_metadata(dir).map_err(err)?;
    if !meta.file_type().is_dir() {
        return Err(err(io::Error::other(
            "it exists and is not a directory (or is a symbolic link); remove it",
        )));
    }
    std::os::unix::fs::lchown(dir, Some(account.uid), Some(account.gid)).map_err(err)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(err)?;
    Ok(())
}

/// The effective uid of this process.
pub fn effective_uid() -> u32 {
    // SAFETY: geteuid(2) cannot fail.
    unsafe { libc::geteuid() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_is_found_and_a_missing_account_is_none() {
        let root = lookup_account("root")
            .expect("lookup")
            .expect("root exists");
        assert_eq!((root.uid, root.gid), (0, 0));
        assert!(root.groups.contains(&0));
        assert_eq!(
            lookup_account("qh-no-such-account-x").expect("lookup"),
            None
        );
        assert!(matches!(
            lookup_account("a\0b"),
            Err(SpawnError::BadAccountName { .. })
        ));
    }

    #[test]
    fn account_names_for_useradd() {
        for ok in [
            "alice",
            "_svc",
            "a.b-c_1",
            "qh-0123456789012345678901234567",
        ] {
            assert!(validate_account_name(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "Alice",
            "-x",
            "1abc",
            "a b",
            "a;rm",
            "a/b",
            "a@b",
            "x123456789012345678901234567890123",
        ] {
            assert!(validate_account_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn escaped_dir_names() {
        assert_eq!(dir_escape("alice"), "alice");
        assert_eq!(dir_escape("a.b@c"), "a%2Eb@c");
        assert_eq!(dir_escape(".."), "%2E%2E");
        assert_eq!(dir_escape("a/b"), "a%2Fb");
        assert_eq!(dir_escape(""), "%");
    }
}
