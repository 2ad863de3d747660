//! `quorumhub hub --config FILE`: the file's keys become flags placed before
//! the command-line ones, so clap validates both alike; a single-valued
//! flag on the command line wins over the file, a list flag adds to it.

use std::ffi::OsString;
use std::path::Path;

use anyhow::{bail, Context};

pub fn expand(args: Vec<OsString>) -> anyhow::Result<Vec<OsString>> {
    let Some(hub_at) = subcommand_at(&args).filter(|i| args[*i] == "hub") else {
        return Ok(args);
    };
    let mut out: Vec<OsString> = args[..=hub_at].to_vec();
    let mut rest = Vec::new();
    let mut file = None;
    let mut it = args[hub_at + 1..].iter();
    while let Some(a) = it.next() {
        let s = a.to_string_lossy();
        if s == "--config" {
            file = Some(it.next().context("--config needs a file")?.clone());
        } else if let Some(v) = s.strip_prefix("--config=") {
            file = Some(OsString::from(v));
        } else {
            rest.push(a.clone());
        }
    }
    if let Some(file) = file {
        out.extend(from_file(Path::new(&file))?);
    }
    out.extend(rest);
    Ok(out)
}

/// Index of the subcommand: the first argument that is neither a flag nor
/// the value of the global `--log-format`.
fn subcommand_at(args: &[OsString]) -> Option<usize> {
    let mut i = 1;
    while i < args.len() {
        let a = args[i].to_string_lossy();
        if a == "--log-format" {
            i += 2;
        } else if a.starts_with('-') {
            i += 1;
        } else {
            return Some(i);
        }
    }
    None
}

fn from_file(path: &Path) -> anyhow::Result<Vec<OsString>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read config file {}", path.display()))?;
    let table: toml::Table = text
        .parse()
        .with_context(|| format!("config file {} is not valid TOML", path.display()))?;
    let mut args = Vec::new();
    for (key, value) in table {
        // `[[roles]]`, `[[profiles]]` and `[[services]]` tables are no
        // flag: the hub reads them from this file itself (with their line
        // numbers).
        if key == "roles" || key == "profiles" || key == "services" {
            args.push(OsString::from(format!("--{key}-file")));
            args.push(path.as_os_str().to_owned());
            continue;
        }
        let flag = format!(
            "--{}",
            if key == "peers" {
                "peer".into()
            } else {
                key.replace('_', "-")
            }
        );
        let mut push = |v: String| {
            args.push(OsString::from(&flag));
            args.push(OsString::from(v));
        };
        match value {
            toml::Value::String(s) => push(s),
            toml::Value::Integer(i) => push(i.to_string()),
            toml::Value::Float(f) => push(f.to_string()),
            toml::Value::Boolean(true) => args.push(OsString::from(&flag)),
            toml::Value::Boolean(false) => {}
            // One flag per item (values may contain commas, e.g. a
            // spawner argument). List flags on the command line add to the
            // file's list.
            toml::Value::Array(items) => {
                for item in items {
                    match item {
                        toml::Value::String(s) => push(s),
                        toml::Value::Integer(i) => push(i.to_string()),
                        other => bail!("{}: {key}: unsupported array item {other}", path.display()),
                    }
                }
            }
            other => bail!("{}: {key}: unsupported value {other}", path.display()),
        }
    }
    Ok(args)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_keys_become_flags_before_the_command_line() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("hub.toml");
        std::fs::write(
            &file,
            "node_id = 2\njoin = true\npeers = [\"1=a:1/b:2\", \"2=c:3/d:4\"]\nreadonly = false\n",
        )
        .expect("write");
        let args: Vec<OsString> = [
            "quorumhub",
            "hub",
            "--config",
            file.to_str().expect("utf8"),
            "--node-id",
            "3",
        ]
        .iter()
        .map(OsString::from)
        .collect();
        let got: Vec<String> = expand(args)
            .expect("expands")
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            got,
            vec![
                "quorumhub",
                "hub",
                "--join",
                "--node-id",
                "2",
                "--peer",
                "1=a:1/b:2",
                "--peer",
                "2=c:3/d:4",
                "--node-id",
                "3"
            ]
        );
        // Only the hub subcommand reads a config file; "hub" as a value elsewhere is no subcommand.
        let other: Vec<OsString> = [
            "quorumhub",
            "--log-format",
            "json",
            "ctl",
            "users",
            "add",
            "hub",
        ]
        .iter()
        .map(OsString::from)
        .collect();
        assert_eq!(expand(other.clone()).expect("unchanged"), other);
        std::fs::write(&file, "node_id = [").expect("write");
        let args = ["quorumhub", "hub", "--config", file.to_str().expect("utf8")]
            .iter()
            .map(OsString::from)
            .collect();
        assert!(expand(args).is_err());
    }
}
