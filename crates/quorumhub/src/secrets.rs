//! Secrets at start-up: `--*-file` flags are read, and secrets given by
//! environment are erased from this process's environment block, so that
//! `/proc/<pid>/environ` (and every child, whatever it is started with)
//! holds none.

use std::ffi::CStr;

use anyhow::Context;

use crate::Cmd;

/// Variables that may carry a secret into any subcommand.
pub const SECRET_ENV: &[&str] = &[
    "QUORUMHUB_CLUSTER_SECRET",
    "QUORUMHUB_ADMIN_TOKEN",
    "QUORUMHUB_OIDC_CLIENT_SECRET",
];

/// Overwrites the values of `keys` in this process's environment block
/// with NUL bytes (so `/proc/self/environ` no longer shows them), then
/// removes the variables. Returns the keys that were set.
///
/// Must run before any other thread exists (it writes to the strings the
/// C library's `environ` points to); `main` calls it first thing after
/// parsing the command line.
pub fn scrub_env(keys: &[&'static str]) -> Vec<&'static str> {
    extern "C" {
        static mut environ: *mut *mut libc::c_char;
    }
    let mut found = Vec::new();
    // SAFETY: single-threaded (see above). `environ` is a NULL-terminated
    // array of NUL-terminated strings; each is either in the initial
    // environment block on the stack or a heap copy made by setenv, both
    // writable, and only bytes before each string's NUL are written.
    unsafe {
        let mut entry = environ;
        while !entry.is_null() && !(*entry).is_null() {
            // The match is decided (and the borrow of the string ended)
            // before anything is written through the pointer.
            let hit = {
                let text = CStr::from_ptr(*entry).to_bytes();
                keys.iter().find_map(|key| {
                    let k = key.as_bytes();
                    (text.len() > k.len() && text.starts_with(k) && text[k.len()] == b'=')
                        .then(|| (*key, text.len() - k.len() - 1, k.len() + 1))
                })
            };
            if let Some((key, len, at)) = hit {
                std::ptr::write_bytes((*entry).add(at), 0, len);
                if !found.contains(&key) {
                    found.push(key);
                }
            }
            entry = entry.add(1);
        }
    }
    for key in keys {
        std::env::remove_var(key);
    }
    found
}

/// Reads the `--cluster-secret-file` (etc.) of the subcommands that take
/// one, replacing the value forms.
pub fn load_files(cmd: &mut Cmd) -> anyhow::Result<()> {
    use quorumhub_proto::secret_file::secret_from;
    let cluster = |value: &mut String, file: &mut Option<std::path::PathBuf>| {
        if let Some(s) = secret_from(
            Some(value.as_str()),
            "--cluster-secret (QUORUMHUB_CLUSTER_SECRET)",
            file.as_deref(),
            "--cluster-secret-file",
        )? {
            *value = s;
        }
        *file = None;
        anyhow::Ok(())
    };
    match cmd {
        Cmd::Hub { hub, .. } => hub.load_secret_files().context("reading secrets")?,
        Cmd::Ctl(args) => cluster(&mut args.cluster_secret, &mut args.cluster_secret_file)?,
        Cmd::Reseed(args) => cluster(&mut args.cluster_secret, &mut args.cluster_secret_file)?,
        Cmd::Proxy(config) => cluster(&mut config.cluster_secret, &mut config.cluster_secret_file)?,
        _ => {}
    }
    Ok(())
}
