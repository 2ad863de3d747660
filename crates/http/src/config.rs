//! What the HTTP front end is configured with: a part of the replica's
//! configuration, built by the composition root (`quorumhub-hub`), which
//! flattens [`OidcArgs`] and the [`Limits`] into its flags.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use quorumhub_state::Profiles;

use quorumhub_core::limits::Limits;

#[derive(Debug, Clone)]
pub struct HttpConfig {
    /// The URL browsers reach the hub at (through a proxy).
    pub public_url: String,
    /// The Hub API URL handed to single-user servers (resolved).
    pub hub_api_url: String,
    /// The JupyterHub version this hub answers as.
    pub jupyterhub_version: String,
    /// The bootstrap admin user's name.
    pub admin_user: String,
    /// Hex SHA-256 of the bootstrap admin token, if one is configured.
    pub admin_token_hash: Option<String>,
    /// How long a spawn or stop is waited for before answering "pending".
    pub slow_spawn_timeout: Duration,
    pub limits: Limits,
    pub oidc: OidcArgs,
    /// The spawner new servers get (`process`, `docker`), for
    /// `/hub/api/info`.
    pub spawner: String,
    /// `/hub/metrics` needs `read:metrics` (JupyterHub's
    /// `authenticate_prometheus`, on by default).
    pub authenticate_prometheus: bool,
    /// The profiles users choose from (`user_options.profile`, the spawn
    /// page's form); empty: no choice, no form.
    pub profiles: Arc<Profiles>,
}

/// Sign-in with an OpenID Connect provider.
#[derive(clap::Args, Debug, Clone)]
pub struct OidcArgs {
    /// OpenID Connect: the provider's issuer URL, exactly as its discovery
    /// document states it (e.g. `https://login.example.org/realms/x`).
    /// Setting it adds "Sign in with ..." to the login page.
    #[arg(long = "oidc-issuer")]
    pub issuer: Option<String>,
    /// OpenID Connect client id registered at the provider.
    #[arg(long = "oidc-client-id")]
    pub client_id: Option<String>,
    /// OpenID Connect client secret. Prefer --oidc-client-secret-file.
    #[arg(
        long = "oidc-client-secret",
        env = "QUORUMHUB_OIDC_CLIENT_SECRET",
        hide_env_values = true
    )]
    pub client_secret: Option<String>,
    /// File holding the OpenID Connect client secret (mode 0600 or
    /// stricter).
    #[arg(
        long = "oidc-client-secret-file",
        env = "QUORUMHUB_OIDC_CLIENT_SECRET_FILE"
    )]
    pub client_secret_file: Option<PathBuf>,
    /// Scopes to request (`openid` is always included).
    #[arg(
        long = "oidc-scopes",
        value_delimiter = ',',
        default_value = "openid,profile,email"
    )]
    pub scopes: Vec<String>,
    /// ID token claim that becomes the user name (then `sub` if missing).
    #[arg(long = "oidc-username-claim", default_value = "preferred_username")]
    pub username_claim: String,
    /// ID token claim that lists the user's groups.
    #[arg(long = "oidc-groups-claim", default_value = "groups")]
    pub groups_claim: String,
    /// Only these users may sign in (with --oidc-allowed-groups: either).
    #[arg(long = "oidc-allowed-users", value_delimiter = ',')]
    pub allowed_users: Vec<String>,
    /// Only members of these groups may sign in.
    #[arg(long = "oidc-allowed-groups", value_delimiter = ',')]
    pub allowed_groups: Vec<String>,
    /// Members of these groups are admins (set at each sign-in).
    #[arg(long = "oidc-admin-groups", value_delimiter = ',')]
    pub admin_groups: Vec<String>,
    /// Admit everyone the provider signs in (otherwise give
    /// --oidc-allowed-users or --oidc-allowed-groups).
    #[arg(long = "oidc-allow-all")]
    pub allow_all: bool,
    /// The provider's name on the login button.
    #[arg(long = "oidc-display-name", default_value = "OpenID Connect")]
    pub display_name: String,
}
