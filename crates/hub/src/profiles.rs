//! Profiles from the configuration (KubeSpawner's `profile_list`): read and
//! checked at start-up. `--profiles-file` (or the `--config` file's own
//! `[[profiles]]` tables) with a misconfigured profile is refused with its
//! line and the reason, before anything starts.

use std::collections::BTreeMap;
use std::path::Path;

use crate::tables::TableError;

use quorumhub_spawner::SpawnerKind;
use quorumhub_state::profiles::parse_bytes;
use quorumhub_state::{Overrides, Profile, Profiles};
use serde::Deserialize;

/// Longest slug: a DNS label, as KubeSpawner's slugs are.
const MAX_SLUG: usize = 63;

/// A `[[profiles]]` table as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    display_name: String,
    /// Default: made from `display_name`.
    slug: Option<String>,
    #[serde(default)]
    description: String,
    #[serde(default)]
    default: bool,
    image: Option<String>,
    cmd: Option<Vec<String>>,
    #[serde(default)]
    args: Vec<String>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    cpu_limit: Option<f64>,
    /// Bytes, or JupyterHub's "512M", "2G".
    mem_limit: Option<toml::Value>,
    /// Slurm spawner: `--partition`.
    partition: Option<String>,
    /// Slurm spawner: `--account`.
    account: Option<String>,
    /// Slurm spawner: `--time`, in Slurm's format.
    time_limit: Option<String>,
    /// Slurm spawner: `--gres` (GPUs: "gpu:1").
    gres: Option<String>,
}

#[derive(Deserialize)]
struct File {
    #[serde(default)]
    profiles: Option<Vec<toml::Spanned<Raw>>>,
}

/// The profiles of the TOML file at `path` (its `[[profiles]]` tables;
/// other keys are the replica's flags and are ignored here), each checked
/// for the spawner `kind`; empty if the file has no `profiles` key.
pub fn load(path: &Path, kind: SpawnerKind) -> Result<Profiles, TableError> {
    let (text, file): (String, File) = crate::tables::read(path)?;
    let mut out: Vec<Profile> = Vec::new();
    for spanned in file.profiles.unwrap_or_default() {
        let line = crate::tables::line_of(&text, spanned.span());
        let raw = spanned.into_inner();
        let name = raw.slug.clone().unwrap_or_else(|| raw.display_name.clone());
        let profile =
            check(raw, kind, &out).map_err(crate::tables::refused(path, line, "profile", name))?;
        out.push(profile);
    }
    Ok(Profiles::new(out))
}

/// KubeSpawner's slug of a display name: lower case, runs of anything but
/// letters and digits as one `-`.
fn slugify(display_name: &str) -> String {
    let mut slug = String::new();
    for c in display_name.chars() {
        if c.is_ascii_alphanumeric() {
            slug.push(c.to_ascii_lowercase());
        } else if !slug.ends_with('-') {
            slug.push('-');
        }
    }
    slug.trim_matches('-').chars().take(MAX_SLUG).collect()
}

fn check(raw: Raw, kind: SpawnerKind, before: &[Profile]) -> Result<Profile, String> {
    if raw.display_name.trim().is_empty() {
        return Err("display_name must not be empty".into());
    }
    let slug = raw.slug.unwrap_or_else(|| slugify(&raw.display_name));
    if slug.is_empty()
        || slug.len() > MAX_SLUG
        || !slug
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-_.".contains(c))
    {
        return Err(format!(
            "slug {slug:?} must be 1 to {MAX_SLUG} characters of a-z, 0-9, '-', '_' and '.'"
        ));
    }
    if before.iter().any(|p| p.slug == slug) {
        return Err(format!(
            "slug {slug:?} is used twice; give each profile its own slug"
        ));
    }
    if raw.default {
        if let Some(other) = before.iter().find(|p| p.default) {
            return Err(format!(
                "a second default (the first is {:?}); mark one profile `default = true`",
                other.slug
            ));
        }
    }
    if let Some(image) = &raw.image {
        if kind != SpawnerKind::Docker {
            return Err(format!(
                "sets image {image:?}, which only the Docker spawner uses (this replica runs --spawner {}); remove it, or use --spawner docker",
                kind.as_str()
            ));
        }
        if image.trim().is_empty() || image.chars().any(char::is_whitespace) {
            return Err(format!("image {image:?} is not an image reference"));
        }
    }
    if let Some(cmd) = &raw.cmd {
        if cmd.first().is_none_or(|p| p.trim().is_empty()) {
            return Err("cmd must name a program (its first item), or be left out".into());
        }
    }
    for k in raw.env.keys() {
        if k.is_empty() || k.contains(['=', '\0']) {
            return Err(format!("env: {k:?} is not a variable name"));
        }
        if k.starts_with("JUPYTERHUB_") || k.starts_with("QUORUMHUB_") {
            return Err(format!(
                "env: {k} is set by the hub itself and cannot be overridden"
            ));
        }
    }
    if raw.env.values().any(|v| v.contains('\0')) || raw.args.iter().any(|a| a.contains('\0')) {
        return Err("env and args cannot contain NUL characters".into());
    }
    if let Some(c) = raw.cpu_limit {
        if !(c.is_finite() && c > 0.0 && c <= 4096.0) {
            return Err(format!(
                "cpu_limit {c} must be a number of CPUs above 0 (e.g. 0.5, 2)"
            ));
        }
    }
    let mem_limit = match &raw.mem_limit {
        None => None,
        Some(toml::Value::Integer(n)) if *n > 0 => Some(*n as u64),
        Some(toml::Value::String(s)) => {
            Some(parse_bytes(s).map_err(|e| format!("mem_limit: {e}"))?)
        }
        Some(other) => {
            return Err(format!(
                "mem_limit {other} must be bytes, or a size such as \"512M\" or \"2G\""
            ))
        }
    };
    let slurm = quorumhub_state::SlurmOverrides {
        partition: raw.partition,
        account: raw.account,
        time_limit: raw.time_limit,
        gres: raw.gres,
    };
    if !slurm.is_empty() && kind != SpawnerKind::Slurm {
        return Err(format!(
            "sets partition, account, time_limit or gres, which only the Slurm spawner uses (this replica runs --spawner {}); remove them, or use --spawner slurm",
            kind.as_str()
        ));
    }
    for (key, v) in [
        ("partition", &slurm.partition),
        ("account", &slurm.account),
        ("gres", &slurm.gres),
    ] {
        if let Some(v) = v {
            quorumhub_spawner::slurm::check_word(v).map_err(|e| format!("{key}: {e}"))?;
        }
    }
    if let Some(t) = &slurm.time_limit {
        quorumhub_spawner::slurm::check_time_limit(t).map_err(|e| format!("time_limit: {e}"))?;
    }
    // Docker takes the limit as a signed 64-bit number.
    if mem_limit.is_some_and(|m| m > i64::MAX as u64) {
        return Err(
            "mem_limit is larger than any machine's memory; give a size such as \"2G\"".into(),
        );
    }
    Ok(Profile {
        slug,
        display_name: raw.display_name,
        description: raw.description,
        default: raw.default,
        overrides: Overrides {
            image: raw.image,
            cmd: raw.cmd,
            args: raw.args,
            env: raw.env,
            cpu_limit: raw.cpu_limit,
            mem_limit,
            slurm,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load_str(text: &str, kind: SpawnerKind) -> Result<Profiles, String> {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("hub.toml");
        std::fs::write(&path, text).expect("write");
        load(&path, kind).map_err(|e| {
            e.to_string()
                .replace(&path.display().to_string(), "hub.toml")
        })
    }

    #[test]
    fn profiles_files_as_data() {
        use SpawnerKind::{Docker, Process, Slurm};
        let cases: &[(&str, SpawnerKind, &str)] = &[
            ("node_id = 1\n", Process, "none"),
            (
                "[[profiles]]\ndisplay_name = \"Small (1 CPU)\"\ncpu_limit = 1\n[[profiles]]\nslug = \"gpu\"\ndisplay_name = \"GPU\"\ndefault = true\nmem_limit = \"2G\"\nenv = { COURSE = \"ml\" }\ncmd = [\"lab\"]\nargs = [\"--debug\"]\n",
                Process,
                "small-1-cpu cpu=Some(1.0) mem=None; gpu* cpu=None mem=Some(2147483648) cmd=Some([\"lab\"]) args=[\"--debug\"] env={\"COURSE\": \"ml\"}",
            ),
            (
                "[[profiles]]\ndisplay_name = \"A\"\nimage = \"lab:v2\"\nmem_limit = 1048576\n",
                Docker,
                "a cpu=None mem=Some(1048576) image=Some(\"lab:v2\")",
            ),
            (
                "[[profiles]]\ndisplay_name = \"A\"\nimage = \"lab:v2\"\n",
                Process,
                "hub.toml:1: profile \"A\": sets image \"lab:v2\", which only the Docker spawner uses (this replica runs --spawner process); remove it, or use --spawner docker",
            ),
            (
                "[[profiles]]\ndisplay_name = \"A\"\n\n[[profiles]]\ndisplay_name = \"a\"\n",
                Process,
                "hub.toml:4: profile \"a\": slug \"a\" is used twice; give each profile its own slug",
            ),
            (
                "[[profiles]]\ndisplay_name = \"A\"\ndefault = true\n[[profiles]]\ndisplay_name = \"B\"\ndefault = true\n",
                Process,
                "hub.toml:4: profile \"B\": a second default (the first is \"a\"); mark one profile `default = true`",
            ),
            (
                "[[profiles]]\nslug = \"Big One\"\ndisplay_name = \"B\"\n",
                Process,
                "hub.toml:1: profile \"Big One\": slug \"Big One\" must be 1 to 63 characters of a-z, 0-9, '-', '_' and '.'",
            ),
            (
                "[[profiles]]\ndisplay_name = \"B\"\nmem_limit = \"lots\"\n",
                Process,
                "hub.toml:1: profile \"B\": mem_limit: \"lots\" is not a size: give bytes, or a number followed by K, M, G or T (e.g. \"512M\", \"2G\")",
            ),
            (
                "[[profiles]]\ndisplay_name = \"B\"\nmem_limit = \"8388608T\"\n",
                Process,
                "hub.toml:1: profile \"B\": mem_limit is larger than any machine's memory; give a size such as \"2G\"",
            ),
            (
                "[[profiles]]\ndisplay_name = \"B\"\ncpu_limit = 0\n",
                Process,
                "hub.toml:1: profile \"B\": cpu_limit 0 must be a number of CPUs above 0 (e.g. 0.5, 2)",
            ),
            (
                "[[profiles]]\ndisplay_name = \"B\"\nenv = { JUPYTERHUB_API_TOKEN = \"x\" }\n",
                Process,
                "hub.toml:1: profile \"B\": env: JUPYTERHUB_API_TOKEN is set by the hub itself and cannot be overridden",
            ),
            (
                "[[profiles]]\ndisplay_name = \"B\"\ncmd = []\n",
                Process,
                "hub.toml:1: profile \"B\": cmd must name a program (its first item), or be left out",
            ),
            (
                "[[profiles]]\ndisplay_name = \"  \"\n",
                Process,
                "hub.toml:1: profile \"  \": display_name must not be empty",
            ),
            (
                "[[profiles]]\ndisplay_name = \"B\"\ncolour = \"red\"\n",
                Process,
                "hub.toml: TOML parse error at line 3, column 1\n  |\n3 | colour = \"red\"\n  | ^^^^^^\nunknown field `colour`, expected one of `display_name`, `slug`, `description`, `default`, `image`, `cmd`, `args`, `env`, `cpu_limit`, `mem_limit`, `partition`, `account`, `time_limit`, `gres`\n",
            ),
            (
                "[[profiles]]\ndisplay_name = \"GPU\"\npartition = \"gpu\"\ngres = \"gpu:1\"\ntime_limit = \"8:00:00\"\naccount = \"physics\"\ncpu_limit = 1.5\nmem_limit = \"4G\"\n",
                Slurm,
                "gpu cpu=Some(1.5) mem=Some(4294967296) slurm=SlurmOverrides { partition: Some(\"gpu\"), account: Some(\"physics\"), time_limit: Some(\"8:00:00\"), gres: Some(\"gpu:1\") }",
            ),
            (
                "[[profiles]]\ndisplay_name = \"GPU\"\npartition = \"gpu\"\n",
                Process,
                "hub.toml:1: profile \"GPU\": sets partition, account, time_limit or gres, which only the Slurm spawner uses (this replica runs --spawner process); remove them, or use --spawner slurm",
            ),
            (
                "[[profiles]]\ndisplay_name = \"GPU\"\npartition = \"gpu --uid=0\"\n",
                Slurm,
                "hub.toml:1: profile \"GPU\": partition: \"gpu --uid=0\" must be 1 to 200 characters of letters, digits, '_', '.', '-', ':' and ','",
            ),
            (
                "[[profiles]]\ndisplay_name = \"Short\"\ntime_limit = \"1h\"\n",
                Slurm,
                "hub.toml:1: profile \"Short\": time_limit: \"1h\" is not a Slurm time limit: give MINUTES, HH:MM:SS or DAYS-HH[:MM[:SS]] (e.g. \"60\", \"8:00:00\", \"1-00:00\")",
            ),
        ];
        for (text, kind, want) in cases {
            let got = match load_str(text, *kind) {
                Ok(p) if p.is_empty() => "none".to_string(),
                Ok(p) => p
                    .list()
                    .iter()
                    .map(|p| {
                        let o = &p.overrides;
                        let mut s = format!(
                            "{}{} cpu={:?} mem={:?}",
                            p.slug,
                            if p.default { "*" } else { "" },
                            o.cpu_limit,
                            o.mem_limit
                        );
                        if o.image.is_some() {
                            s += &format!(" image={:?}", o.image);
                        }
                        if o.cmd.is_some() || !o.args.is_empty() {
                            s += &format!(" cmd={:?} args={:?}", o.cmd, o.args);
                        }
                        if !o.env.is_empty() {
                            s += &format!(" env={:?}", o.env);
                        }
                        if !o.slurm.is_empty() {
                            s += &format!(" slurm={:?}", o.slurm);
                        }
                        s
                    })
                    .collect::<Vec<_>>()
                    .join("; "),
                Err(e) => e,
            };
            assert_eq!(&got, want, "{text}");
        }
    }
}
