//! Profiles (KubeSpawner's `profile_list`): the server shapes an operator
//! offers, one of which a user picks with `user_options = {"profile":
//! slug}` (the spawn page's form, or the REST API), and what each changes
//! in the spawner's settings ([`Overrides`]).
//!
//! Users only choose among configured profiles: nothing a user sends ends
//! up in a command line, an image name or a resource limit.
//!
//! Pure data and rules, shared like [`crate::ids`]: the REST API and the
//! spawn page check `user_options` with [`Profiles::choose`], and the
//! leader's controller chooses with it again when it spawns, so both agree.

use std::collections::BTreeMap;

/// One profile: what the spawn page offers, and its overrides.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Profile {
    /// What `user_options.profile` names (KubeSpawner's `slug`).
    pub slug: String,
    pub display_name: String,
    pub description: String,
    /// Chosen when the user names none (else the first profile is).
    pub default: bool,
    pub overrides: Overrides,
}

/// What a profile changes in the spawner's settings; `None`/empty keeps the
/// spawner's own.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Overrides {
    /// Docker spawner: the image (instead of `--docker-image`).
    pub image: Option<String>,
    /// The command (instead of `--spawner-cmd`).
    pub cmd: Option<Vec<String>>,
    /// Arguments appended to the command.
    pub args: Vec<String>,
    /// Environment variables set for the server (never `JUPYTERHUB_*`).
    pub env: BTreeMap<String, String>,
    /// CPUs (JupyterHub's `cpu_limit`): enforced by the Docker spawner;
    /// `CPU_LIMIT` in the server's environment with any spawner.
    pub cpu_limit: Option<f64>,
    /// Bytes (JupyterHub's `mem_limit`): enforced by the Docker spawner;
    /// `MEM_LIMIT` in the server's environment with any spawner.
    pub mem_limit: Option<u64>,
    /// Slurm spawner: what the job asks the scheduler for.
    pub slurm: SlurmOverrides,
}

/// What a profile asks Slurm for (with `cpu_limit` as `--cpus-per-task`
/// and `mem_limit` as `--mem`); `None` keeps the `--slurm-*` flag's value.
/// Each value is one word the configuration check has verified, passed as
/// the value of one sbatch option.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SlurmOverrides {
    pub partition: Option<String>,
    pub account: Option<String>,
    /// Slurm's format: `MINUTES`, `HH:MM:SS`, `DAYS-HH:MM`.
    pub time_limit: Option<String>,
    /// Generic resources, e.g. `gpu:1` or `gpu:a100:2`.
    pub gres: Option<String>,
}

impl SlurmOverrides {
    pub fn is_empty(&self) -> bool {
        self == &SlurmOverrides::default()
    }
}

impl Overrides {
    /// `base` (the spawner's command), replaced by the profile's and
    /// followed by its arguments.
    pub fn command(&self, base: Vec<String>) -> Vec<String> {
        let mut cmd = self.cmd.clone().unwrap_or(base);
        cmd.extend(self.args.iter().cloned());
        cmd
    }

    /// The profile's variables and JupyterHub's `MEM_LIMIT` / `CPU_LIMIT`,
    /// over the server's environment (never over a `JUPYTERHUB_*` one,
    /// which the configuration check refuses anyway).
    pub fn apply_env(&self, env: &mut BTreeMap<String, String>) {
        for (k, v) in &self.env {
            if !k.starts_with("JUPYTERHUB_") {
                env.insert(k.clone(), v.clone());
            }
        }
        if let Some(m) = self.mem_limit {
            env.insert("MEM_LIMIT".into(), m.to_string());
        }
        if let Some(c) = self.cpu_limit {
            env.insert("CPU_LIMIT".into(), c.to_string());
        }
    }
}

/// Why `user_options` choose no profile: JupyterHub answers 400 with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OptionsError {
    #[error("user_options.profile must be a string naming one of the profiles: {0}")]
    NotAString(String),
    #[error("No such profile: {given}. Options include: {allowed}")]
    Unknown { given: String, allowed: String },
    #[error("No such profile: {0}. This hub offers no profiles; start the server without one")]
    NoProfiles(String),
    #[error("user_options.{key} is not for users to set: the hub's profiles set it. Choose one with user_options.profile: {allowed}")]
    Reserved { key: String, allowed: String },
    #[error("user_options.{0} is not for users to set: the operator configures it, and this hub offers no profiles; start the server without it")]
    ReservedNoProfiles(String),
}

/// `user_options` keys that name what only the operator sets: a profile's
/// settings, and the `req_*` options batchspawner users know (`req_partition`,
/// `req_memory`, `req_runtime`, ...). A start that sends one is refused
/// rather than run with the defaults the user did not ask for. `image` is not
/// among them: BinderHub-style launchers send it; it is kept, not used.
const RESERVED: &[&str] = &[
    "cmd",
    "args",
    "env",
    "environment",
    "cpu_limit",
    "cpu_guarantee",
    "mem_limit",
    "mem_guarantee",
    "partition",
    "account",
    "qos",
    "time_limit",
    "gres",
];

fn reserved_key(user_options: &serde_json::Value) -> Option<&str> {
    let map = user_options.as_object()?;
    map.keys()
        .map(String::as_str)
        .find(|k| RESERVED.contains(k) || k.starts_with("req_"))
}

/// The configured profiles, in the order the spawn page shows them.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Profiles {
    list: Vec<Profile>,
}

impl Profiles {
    /// `list` as checked by the configuration loader (unique slugs, at most
    /// one default).
    pub fn new(list: Vec<Profile>) -> Profiles {
        Profiles { list }
    }

    pub fn list(&self) -> &[Profile] {
        &self.list
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// The profile chosen when the user names none: the one marked
    /// `default`, else the first.
    pub fn default_profile(&self) -> Option<&Profile> {
        self.list
            .iter()
            .find(|p| p.default)
            .or_else(|| self.list.first())
    }

    fn allowed(&self) -> String {
        let slugs: Vec<&str> = self.list.iter().map(|p| p.slug.as_str()).collect();
        slugs.join(", ")
    }

    /// The profile `user_options` choose (`{"profile": slug}`; none named:
    /// the default), `None` without profiles. Other keys are the user's and
    /// are kept, never interpreted.
    pub fn choose(
        &self,
        user_options: &serde_json::Value,
    ) -> Result<Option<&Profile>, OptionsError> {
        let named = match user_options.get("profile") {
            None | Some(serde_json::Value::Null) => None,
            Some(serde_json::Value::String(s)) => Some(s.as_str()),
            Some(_) => return Err(OptionsError::NotAString(self.allowed())),
        };
        match named {
            None => Ok(self.default_profile()),
            Some(slug) if self.list.is_empty() => Err(OptionsError::NoProfiles(slug.to_string())),
            Some(slug) => self
                .list
                .iter()
                .find(|p| p.slug == slug)
                .map(Some)
                .ok_or_else(|| OptionsError::Unknown {
                    given: slug.to_string(),
                    allowed: self.allowed(),
                }),
        }
    }

    /// What a user's start may send: [`Profiles::choose`], after refusing
    /// keys that only the operator sets. For the entry points (the REST
    /// API); the controller chooses with `choose` alone, so servers whose
    /// options were stored before keep starting.
    pub fn check(
        &self,
        user_options: &serde_json::Value,
    ) -> Result<Option<&Profile>, OptionsError> {
        if let Some(key) = reserved_key(user_options) {
            return Err(if self.list.is_empty() {
                OptionsError::ReservedNoProfiles(key.to_string())
            } else {
                OptionsError::Reserved {
                    key: key.to_string(),
                    allowed: self.allowed(),
                }
            });
        }
        self.choose(user_options)
    }
}

/// JupyterHub's byte specification (`ByteSpecification`): a number of
/// bytes, or a number with the suffix K, M, G or T (powers of 1024).
pub fn parse_bytes(spec: &str) -> Result<u64, String> {
    let s = spec.trim();
    let bad = || {
        format!("{spec:?} is not a size: give bytes, or a number followed by K, M, G or T (e.g. \"512M\", \"2G\")")
    };
    let (num, unit) = match s.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => {
            let unit: u64 = match c.to_ascii_uppercase() {
                'K' => 1 << 10,
                'M' => 1 << 20,
                'G' => 1 << 30,
                'T' => 1 << 40,
                _ => return Err(bad()),
            };
            (&s[..i], unit)
        }
        _ => (s, 1),
    };
    let n: f64 = num.trim().parse().map_err(|_| bad())?;
    let bytes = n * unit as f64;
    if !bytes.is_finite() || bytes < 1.0 || bytes > u64::MAX as f64 {
        return Err(bad());
    }
    Ok(bytes as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn profile(slug: &str, default: bool) -> Profile {
        Profile {
            slug: slug.into(),
            display_name: slug.to_uppercase(),
            default,
            ..Profile::default()
        }
    }

    #[test]
    fn user_options_choose_a_profile_as_data() {
        let two = Profiles::new(vec![profile("small", false), profile("gpu", true)]);
        let none = Profiles::default();
        let cases: &[(&Profiles, serde_json::Value, &str)] = &[
            (&two, json!(null), "gpu"),
            (&two, json!({}), "gpu"),
            (&two, json!({"profile": "small"}), "small"),
            (&two, json!({"profile": null, "image": "x"}), "gpu"),
            (
                &two,
                json!({"profile": "huge"}),
                "No such profile: huge. Options include: small, gpu",
            ),
            (
                &two,
                json!({"profile": 3}),
                "user_options.profile must be a string naming one of the profiles: small, gpu",
            ),
            (&none, json!({"image": "x"}), "-"),
            (
                &none,
                json!({"profile": "small"}),
                "No such profile: small. This hub offers no profiles; start the server without one",
            ),
        ];
        // A choice as the cases write it: the slug, "-" for none, the error.
        let shown = |r: Result<Option<&Profile>, OptionsError>| match r {
            Ok(Some(p)) => p.slug.clone(),
            Ok(None) => "-".to_string(),
            Err(e) => e.to_string(),
        };
        for (profiles, options, want) in cases {
            assert_eq!(&shown(profiles.choose(options)), want, "{options}");
        }
        // What users may send: keys only the operator sets are refused, the
        // rest (a launcher's own, BinderHub's image) are kept.
        let checked: &[(&Profiles, serde_json::Value, &str)] = &[
            (&two, json!({"profile": "small", "binder_ref_url": "x", "image": "y"}), "small"),
            (
                &two,
                json!({"profile": "small", "partition": "gpu"}),
                "user_options.partition is not for users to set: the hub's profiles set it. Choose one with user_options.profile: small, gpu",
            ),
            (
                &two,
                json!({"req_memory": "4G"}),
                "user_options.req_memory is not for users to set: the hub's profiles set it. Choose one with user_options.profile: small, gpu",
            ),
            (
                &none,
                json!({"mem_limit": "4G"}),
                "user_options.mem_limit is not for users to set: the operator configures it, and this hub offers no profiles; start the server without it",
            ),
            (&none, json!({"size": 8}), "-"),
            (&two, json!({"profile": "huge"}), "No such profile: huge. Options include: small, gpu"),
        ];
        for (profiles, options, want) in checked {
            assert_eq!(&shown(profiles.check(options)), want, "{options}");
        }
        // The controller still starts a server whose stored options hold one.
        assert_eq!(
            two.choose(&json!({"partition": "gpu"}))
                .unwrap()
                .map(|p| p.slug.as_str()),
            Some("gpu")
        );
        // Without a marked default, the first profile is the default.
        let first = Profiles::new(vec![profile("a", false), profile("b", false)]);
        assert_eq!(
            first.choose(&json!({})).unwrap().map(|p| p.slug.as_str()),
            Some("a")
        );
    }

    #[test]
    fn sizes_as_jupyterhub_reads_them() {
        let cases = [
            ("1024", Ok(1024)),
            ("512M", Ok(512 << 20)),
            ("2G", Ok(2 << 30)),
            ("1.5g", Ok(3 << 29)),
            ("1T", Ok(1 << 40)),
            ("10K", Ok(10240)),
            ("", Err(())),
            ("2X", Err(())),
            ("-1G", Err(())),
            ("0", Err(())),
            ("G", Err(())),
            ("1e30T", Err(())),
        ];
        for (spec, want) in cases {
            assert_eq!(parse_bytes(spec).map_err(|_| ()), want, "{spec:?}");
        }
    }

    #[test]
    fn overrides_replace_the_command_and_add_to_the_environment() {
        let o = Overrides {
            cmd: Some(vec!["lab".into()]),
            args: vec!["--debug".into()],
            env: BTreeMap::from([
                ("COURSE".to_string(), "ml".to_string()),
                ("JUPYTERHUB_API_TOKEN".to_string(), "stolen".to_string()),
            ]),
            mem_limit: Some(1 << 30),
            cpu_limit: Some(0.5),
            ..Overrides::default()
        };
        assert_eq!(o.command(vec!["singleuser".into()]), ["lab", "--debug"]);
        assert_eq!(
            Overrides::default().command(vec!["singleuser".into()]),
            ["singleuser"]
        );
        let mut env = BTreeMap::from([("JUPYTERHUB_API_TOKEN".to_string(), "real".to_string())]);
        o.apply_env(&mut env);
        assert_eq!(env["JUPYTERHUB_API_TOKEN"], "real");
        assert_eq!(env["COURSE"], "ml");
        assert_eq!(env["MEM_LIMIT"], "1073741824");
        assert_eq!(env["CPU_LIMIT"], "0.5");
    }
}
