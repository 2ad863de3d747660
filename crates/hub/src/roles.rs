//! Roles from the configuration (JupyterHub's `load_roles`): read and
//! checked at start-up. `--roles-file` (or the `--config` file's own
//! `[[roles]]` tables) with a misconfigured role is refused with its line
//! and the reason, before anything starts. The leader replicates them
//! ([`crate::role_sync`]).

use std::path::Path;

use crate::tables::TableError;

use quorumhub_state::Role;
use serde::Deserialize;

#[derive(Deserialize)]
struct File {
    #[serde(default)]
    roles: Option<Vec<toml::Spanned<Role>>>,
}

/// The roles of the TOML file at `path` (its `[[roles]]` tables; other
/// keys are the replica's flags and are ignored here), each checked;
/// `None` if the file has no `roles` key.
/// `services`: the names of the configured services, which roles may name.
pub fn load(path: &Path, services: &[String]) -> Result<Option<Vec<Role>>, TableError> {
    let (text, file): (String, File) = crate::tables::read(path)?;
    let Some(roles) = file.roles else {
        return Ok(None);
    };
    let mut out: Vec<Role> = Vec::new();
    for spanned in roles {
        let line = crate::tables::line_of(&text, spanned.span());
        let role = spanned.into_inner();
        check(&role, &out, services).map_err(crate::tables::refused(
            path,
            line,
            "role",
            role.name.clone(),
        ))?;
        out.push(role);
    }
    Ok(Some(normalized(out)))
}

/// One role against JupyterHub's rules and the roles before it.
fn check(role: &Role, before: &[Role], services: &[String]) -> Result<(), String> {
    quorumhub_state::validate_group_name(&role.name)
        .map_err(|why| why.replacen("username", "role name", 1))?;
    if before.iter().any(|r| r.name == role.name) {
        return Err("defined twice; merge the two".into());
    }
    match role.name.as_str() {
        "admin" if !role.scopes.is_empty() => {
            return Err(
                "the admin role's scopes are fixed (every scope); list only its users and groups"
                    .into(),
            )
        }
        "server" | "token" => {
            return Err(format!(
                "the built-in {} role cannot be configured here; define a role of your own",
                role.name
            ))
        }
        _ => {}
    }
    quorumhub_core::scopes::check_role_scopes(&role.scopes)
        .map_err(|e| format!("{e}; see JupyterHub's scope list (docs/api.md, Scopes)"))?;
    for u in &role.users {
        quorumhub_state::validate_username(u).map_err(|why| format!("user {u:?}: {why}"))?;
    }
    for g in &role.groups {
        quorumhub_state::validate_group_name(g)
            .map_err(|why| format!("group {g:?}: {}", why.replacen("username", "group name", 1)))?;
    }
    if let Some(s) = role.services.iter().find(|s| !services.contains(s)) {
        return Err(format!(
            "names the service {s:?}, but no service by that name is configured"
        ));
    }
    Ok(())
}

/// Sorted by name, each list sorted and without repeats: as the state
/// keeps them, so a comparison says whether anything changed.
pub fn normalized(mut roles: Vec<Role>) -> Vec<Role> {
    for r in &mut roles {
        for list in [&mut r.scopes, &mut r.users, &mut r.groups, &mut r.services] {
            list.sort();
            list.dedup();
        }
    }
    roles.sort_by(|a, b| a.name.cmp(&b.name));
    roles
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load_str(text: &str) -> Result<Option<Vec<Role>>, String> {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("hub.toml");
        std::fs::write(&path, text).expect("write");
        load(&path, &["dash".to_string()]).map_err(|e| {
            e.to_string()
                .replace(&path.display().to_string(), "hub.toml")
        })
    }

    #[test]
    fn roles_files_as_data() {
        let cases: &[(&str, &str)] = &[
            ("node_id = 1\n", "none"),
            ("roles = []\n", "[]"),
            (
                "node_id = 1\n[[roles]]\nname = \"ta\"\nscopes = [\"read:users\", \"list:users!group=course\", \"read:users\"]\nusers = [\"bob\", \"alice\"]\n",
                "ta: [\"list:users!group=course\", \"read:users\"] users [\"alice\", \"bob\"] groups []",
            ),
            (
                "[[roles]]\nname = \"admin\"\ngroups = [\"staff\"]\n",
                "admin: [] users [] groups [\"staff\"]",
            ),
            (
                "[[roles]]\nname = \"ok\"\n\n[[roles]]\nname = \"bad\"\nscopes = [\"read:everything\"]\n",
                "hub.toml:4: role \"bad\": Unknown scope \"read:everything\"; see JupyterHub's scope list (docs/api.md, Scopes)",
            ),
            (
                "[[roles]]\nname = \"x\"\nscopes = [\"read:users!colour=red\"]\n",
                "hub.toml:1: role \"x\": Unknown scope \"read:users!colour=red\"; see JupyterHub's scope list (docs/api.md, Scopes)",
            ),
            (
                "[[roles]]\nname = \"x\"\n[[roles]]\nname = \"x\"\n",
                "hub.toml:3: role \"x\": defined twice; merge the two",
            ),
            (
                "[[roles]]\nname = \"admin\"\nscopes = [\"read:users\"]\n",
                "hub.toml:1: role \"admin\": the admin role's scopes are fixed (every scope); list only its users and groups",
            ),
            (
                "[[roles]]\nname = \"server\"\n",
                "hub.toml:1: role \"server\": the built-in server role cannot be configured here; define a role of your own",
            ),
            (
                "[[roles]]\nname = \"culler\"\nservices = [\"idle-culler\"]\n",
                "hub.toml:1: role \"culler\": names the service \"idle-culler\", but no service by that name is configured",
            ),
            (
                "[[roles]]\nname = \"viewer\"\nscopes = [\"list:users\"]\nservices = [\"dash\"]\n",
                "viewer: [\"list:users\"] users [] groups []",
            ),
            (
                "[[roles]]\nname = \"x\"\nusers = [\"a/b\"]\n",
                "hub.toml:1: role \"x\": user \"a/b\": username must not contain '/'",
            ),
            (
                "[[roles]]\nname = \"x\"\ncolour = \"red\"\n",
                "hub.toml: TOML parse error at line 3, column 1\n  |\n3 | colour = \"red\"\n  | ^^^^^^\nunknown field `colour`, expected one of `name`, `description`, `scopes`, `users`, `groups`, `services`\n",
            ),
        ];
        for (text, want) in cases {
            let got = match load_str(text) {
                Ok(None) => "none".to_string(),
                Ok(Some(roles)) if roles.is_empty() => "[]".to_string(),
                Ok(Some(roles)) => roles
                    .iter()
                    .map(|r| {
                        format!(
                            "{}: {:?} users {:?} groups {:?}",
                            r.name, r.scopes, r.users, r.groups
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("; "),
                Err(e) => e,
            };
            assert_eq!(&got, want, "{text}");
        }
    }
}
