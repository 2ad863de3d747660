//! The leader makes the replicated roles equal to its configuration
//! (`SetRoles`, log format 7; [`crate::roles`] read and checked them): at
//! once when elected, and every few seconds, so every replica grants the
//! same scopes. A replica started without roles in its configuration
//! leaves the replicated ones as they are (an empty `roles = []` removes
//! them all).

use std::sync::Arc;
use std::time::Duration;

use quorumhub_state::{Command, Role};
use tokio::sync::watch;

use crate::hub::Hub;

const SYNC_EVERY: Duration = Duration::from_secs(2);

/// The leader's half: make the replicated roles `roles` (log format 7).
pub(crate) async fn run(hub: Arc<Hub>, roles: Vec<Role>, stop: watch::Receiver<bool>) {
    let mut turns = crate::leader_turns::LeaderTurns::new(&hub, SYNC_EVERY, stop);
    let mut last_error = String::new();
    while turns.next(&hub).await {
        let (version, current, unknown) = hub.sm.read(|d| {
            let s = &d.state;
            let unknown: Vec<String> = roles
                .iter()
                .flat_map(|r| {
                    r.users
                        .iter()
                        .filter(|u| s.user(u).is_none())
                        .map(move |u| format!("{}: user {u}", r.name))
                        .chain(
                            r.groups
                                .iter()
                                .filter(|g| !s.groups.contains_key(*g))
                                .map(move |g| format!("{}: group {g}", r.name)),
                        )
                })
                .collect();
            (
                s.cluster_version,
                s.roles.values().cloned().collect::<Vec<Role>>(),
                unknown,
            )
        });
        if version < 7 || current == roles {
            continue;
        }
        match hub
            .propose(Command::SetRoles {
                roles: roles.clone(),
            })
            .await
        {
            Ok(quorumhub_state::Response::Done) => {
                tracing::info!(
                    roles = roles.len(),
                    "the configured roles are now replicated"
                );
                if !unknown.is_empty() {
                    tracing::warn!(
                        ?unknown,
                        "roles name users or groups that do not exist (yet); they apply once created"
                    );
                }
                last_error.clear();
            }
            Ok(other) => {
                let e = format!("{other:?}");
                if e != last_error {
                    tracing::error!(answer = %e, "the configured roles were refused; fix the roles file");
                    last_error = e;
                }
            }
            Err(e) => {
                let e = e.to_string();
                if e != last_error {
                    tracing::warn!(error = %e, "could not replicate the configured roles; will retry");
                    last_error = e;
                }
            }
        }
    }
}
