//! Bounds on everything a client can make a replica write into the Raft
//! log: request bodies, fields and per-user quotas, and the writes a
//! replica lets through to Raft at once. Every limit is a flag
//! ([`Limits`], flattened into the hub's configuration). The transports
//! enforce the body and field limits before anything is proposed
//! (`quorumhub-http`'s `limits`); [`crate::admission`] enforces the write
//! limits.

pub const DEFAULT_MAX_BODY_BYTES: usize = 16 * 1024;
pub const DEFAULT_MAX_USERS_BODY_BYTES: usize = 256 * 1024;
pub const DEFAULT_MAX_USER_OPTIONS_BYTES: usize = 64 * 1024;
pub const DEFAULT_MAX_USER_OPTIONS_DEPTH: usize = 10;
pub const DEFAULT_MAX_GROUP_PROPERTIES_BYTES: usize = 16 * 1024;
pub const DEFAULT_MAX_TOKEN_NOTE_BYTES: usize = 1024;
pub const DEFAULT_MAX_TOKEN_SCOPES: usize = 64;
pub const DEFAULT_MAX_SCOPE_BYTES: usize = 255;
pub const DEFAULT_MAX_TOKENS_PER_USER: usize = 100;
pub const DEFAULT_NAMED_SERVER_LIMIT_PER_USER: usize = 10;
/// JupyterHub's `concurrent_spawn_limit` default.
pub const DEFAULT_CONCURRENT_SPAWN_LIMIT: u32 = 100;
pub const DEFAULT_MAX_SESSIONS_PER_USER: usize = 50;
pub const DEFAULT_MAX_WRITES_IN_FLIGHT: usize = 128;
pub const DEFAULT_MAX_WRITE_QUEUE: usize = 512;
pub const DEFAULT_MAX_USER_WRITES_IN_FLIGHT: usize = 8;

/// Longest lifetime a token may ask for (10 years).
pub const MAX_EXPIRES_IN_S: i64 = 10 * 365 * 86_400;
/// OpenID Connect Core 1.0 §2: `sub` is at most 255 ASCII characters.
pub const MAX_OIDC_SUB_BYTES: usize = 255;

#[derive(clap::Args, Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Largest request body for every endpoint not listed below (bytes);
    /// larger ones are refused with 413.
    #[arg(long, default_value_t = DEFAULT_MAX_BODY_BYTES)]
    pub max_body_bytes: usize,
    /// Largest body of `POST /hub/api/users` (a list of user names).
    #[arg(long, default_value_t = DEFAULT_MAX_USERS_BODY_BYTES)]
    pub max_users_body_bytes: usize,
    /// Largest `user_options` of a server start: the body of
    /// `POST /hub/api/users/{name}/server[s/{server}]`, and its encoding.
    #[arg(long, default_value_t = DEFAULT_MAX_USER_OPTIONS_BYTES)]
    pub max_user_options_bytes: usize,
    /// Deepest nesting of objects and arrays in `user_options`.
    #[arg(long, default_value_t = DEFAULT_MAX_USER_OPTIONS_DEPTH)]
    pub max_user_options_depth: usize,
    /// Largest group `properties` (the body of `PUT .../properties`, and
    /// its encoding).
    #[arg(long, default_value_t = DEFAULT_MAX_GROUP_PROPERTIES_BYTES)]
    pub max_group_properties_bytes: usize,
    /// Longest API token `note` (bytes).
    #[arg(long, default_value_t = DEFAULT_MAX_TOKEN_NOTE_BYTES)]
    pub max_token_note_bytes: usize,
    /// Most scopes one token request may list.
    #[arg(long, default_value_t = DEFAULT_MAX_TOKEN_SCOPES)]
    pub max_token_scopes: usize,
    /// Longest single scope in a token request (bytes).
    #[arg(long, default_value_t = DEFAULT_MAX_SCOPE_BYTES)]
    pub max_scope_bytes: usize,
    /// API tokens a user may hold (unexpired, created through the API or
    /// the token page); one more is refused with 429.
    #[arg(long, default_value_t = DEFAULT_MAX_TOKENS_PER_USER)]
    pub max_tokens_per_user: usize,
    /// Named servers a user may have at once (JupyterHub's
    /// `named_server_limit_per_user`; here at least 1, never unlimited).
    #[arg(long, default_value_t = DEFAULT_NAMED_SERVER_LIMIT_PER_USER)]
    pub named_server_limit_per_user: usize,
    /// Servers that may be starting at once in the whole cluster
    /// (JupyterHub's `concurrent_spawn_limit`, default 100); one more
    /// start is refused with 429 and Retry-After. 0: no limit.
    #[arg(long, default_value_t = DEFAULT_CONCURRENT_SPAWN_LIMIT)]
    pub concurrent_spawn_limit: u32,
    /// Servers that may be active (starting, running or stopping) at once
    /// in the whole cluster (JupyterHub's `active_server_limit`); one more
    /// start is refused with 429. 0 (the default): no limit.
    #[arg(long, default_value_t = 0)]
    pub active_server_limit: u32,
    /// Browser sessions (logins) a user may have; a new login past it ends
    /// the user's oldest session.
    #[arg(long, default_value_t = DEFAULT_MAX_SESSIONS_PER_USER)]
    pub max_sessions_per_user: usize,
    /// Writes this replica has in flight to Raft at once; more wait in a
    /// queue.
    #[arg(long, default_value_t = DEFAULT_MAX_WRITES_IN_FLIGHT)]
    pub max_writes_in_flight: usize,
    /// Writes that may wait for a slot; past that, 503 with Retry-After.
    #[arg(long, default_value_t = DEFAULT_MAX_WRITE_QUEUE)]
    pub max_write_queue: usize,
    /// Writes one user may have in flight (or waiting) at this replica;
    /// past that, 429 with Retry-After.
    #[arg(long, default_value_t = DEFAULT_MAX_USER_WRITES_IN_FLIGHT)]
    pub max_user_writes_in_flight: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            max_users_body_bytes: DEFAULT_MAX_USERS_BODY_BYTES,
            max_user_options_bytes: DEFAULT_MAX_USER_OPTIONS_BYTES,
            max_user_options_depth: DEFAULT_MAX_USER_OPTIONS_DEPTH,
            max_group_properties_bytes: DEFAULT_MAX_GROUP_PROPERTIES_BYTES,
            max_token_note_bytes: DEFAULT_MAX_TOKEN_NOTE_BYTES,
            max_token_scopes: DEFAULT_MAX_TOKEN_SCOPES,
            max_scope_bytes: DEFAULT_MAX_SCOPE_BYTES,
            max_tokens_per_user: DEFAULT_MAX_TOKENS_PER_USER,
            named_server_limit_per_user: DEFAULT_NAMED_SERVER_LIMIT_PER_USER,
            concurrent_spawn_limit: DEFAULT_CONCURRENT_SPAWN_LIMIT,
            active_server_limit: 0,
            max_sessions_per_user: DEFAULT_MAX_SESSIONS_PER_USER,
            max_writes_in_flight: DEFAULT_MAX_WRITES_IN_FLIGHT,
            max_write_queue: DEFAULT_MAX_WRITE_QUEUE,
            max_user_writes_in_flight: DEFAULT_MAX_USER_WRITES_IN_FLIGHT,
        }
    }
}

impl Limits {
    /// JupyterHub's spawn limits, as a spawn request carries them.
    pub fn spawn_limits(&self) -> quorumhub_state::SpawnLimits {
        quorumhub_state::SpawnLimits {
            concurrent: self.concurrent_spawn_limit,
            active: self.active_server_limit,
        }
    }

    /// Every limit but the queue must be at least 1 (0 would refuse
    /// everything, or in JupyterHub's reading mean "unlimited").
    pub fn validate(&self) -> Result<(), String> {
        let positive = [
            ("--max-body-bytes", self.max_body_bytes),
            ("--max-users-body-bytes", self.max_users_body_bytes),
            ("--max-user-options-bytes", self.max_user_options_bytes),
            ("--max-user-options-depth", self.max_user_options_depth),
            (
                "--max-group-properties-bytes",
                self.max_group_properties_bytes,
            ),
            ("--max-token-note-bytes", self.max_token_note_bytes),
            ("--max-token-scopes", self.max_token_scopes),
            ("--max-scope-bytes", self.max_scope_bytes),
            ("--max-tokens-per-user", self.max_tokens_per_user),
            (
                "--named-server-limit-per-user",
                self.named_server_limit_per_user,
            ),
            ("--max-sessions-per-user", self.max_sessions_per_user),
            ("--max-writes-in-flight", self.max_writes_in_flight),
            (
                "--max-user-writes-in-flight",
                self.max_user_writes_in_flight,
            ),
        ];
        for (flag, v) in positive {
            if v == 0 {
                return Err(format!(
                    "{flag} must be at least 1: quorumhub bounds everything a user can store"
                ));
            }
        }
        // Every replica's apply refuses a command above MAX_COMMAND_BYTES
        // (log format 4): no body limit may let one through to the log.
        let ceiling = quorumhub_state::MAX_COMMAND_BYTES - 4096;
        for (flag, v) in [
            ("--max-body-bytes", self.max_body_bytes),
            ("--max-users-body-bytes", self.max_users_body_bytes),
            ("--max-user-options-bytes", self.max_user_options_bytes),
            (
                "--max-group-properties-bytes",
                self.max_group_properties_bytes,
            ),
        ] {
            if v > ceiling {
                return Err(format!(
                    "{flag} ({v}) is above {ceiling}: the replicated state refuses any change \
                     larger than {} bytes",
                    quorumhub_state::MAX_COMMAND_BYTES
                ));
            }
        }
        if self.max_token_note_bytes > self.max_body_bytes {
            return Err(format!(
                "--max-token-note-bytes ({}) cannot exceed --max-body-bytes ({}), the body that carries it",
                self.max_token_note_bytes, self.max_body_bytes
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_validate() {
        assert!(Limits::default().validate().is_ok());
        let zero = Limits {
            named_server_limit_per_user: 0,
            ..Limits::default()
        };
        assert!(zero
            .validate()
            .unwrap_err()
            .contains("--named-server-limit-per-user must be at least 1"));
        let queue = Limits {
            max_write_queue: 0,
            ..Limits::default()
        };
        assert!(queue.validate().is_ok());
        let huge = Limits {
            max_user_options_bytes: quorumhub_state::MAX_COMMAND_BYTES,
            ..Limits::default()
        };
        assert!(huge
            .validate()
            .unwrap_err()
            .contains("--max-user-options-bytes (1048576) is above"));
    }
}
