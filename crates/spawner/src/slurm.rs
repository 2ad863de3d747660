//! The Slurm spawner: each single-user server is a Slurm batch job, placed
//! on a compute node by the cluster's own scheduler.
//!
//! It talks to Slurm through the client commands (`sbatch`, `squeue`,
//! `scancel`, `scontrol`), as batchspawner does, not through `slurmrestd`:
//! the commands are on every submit host of every Slurm release, need only
//! the cluster's `slurm.conf` and munge (which an HPC submit host has
//! already), and their output formats are stable across releases, while
//! slurmrestd's API versions are dropped every few releases and need a JWT
//! setup of their own.
//!
//! How a server is found:
//!
//! - The hub picks the server's port (unique among the cluster's Slurm
//!   servers, from `--slurm-port-range`) and gives it in the job's
//!   environment; the compute node is read back from Slurm (the job's
//!   batch host, resolved to its `NodeAddr`) once the job runs. No
//!   callback from the job: a node needs to reach the hub only as
//!   `jupyterhub-singleuser` does anyway.
//! - Every job is named `qh.{cluster}.{user}.{server}.g{generation}.{attempt}`
//!   ([`quorumhub_state::ids::container_name`], escaped so distinct
//!   servers never share a prefix) and carries its token's id in its
//!   comment. A leader that dies after `sbatch` but before the job id was
//!   recorded leaves a job the next leader finds by that name and adopts
//!   (same job, same token), so a server never gets a second job.
//! - [`SlurmSpawner::reap`] cancels the cluster's jobs that no active spawn
//!   owns (a stopped server's job whose id was never recorded), fenced by
//!   the spawn generation and by how long the leader has seen it unowned.
//! - Names and comments are the jobs' owners' to set, so they are trusted
//!   only so far: a job is adopted only if it runs as the uid the spawn's
//!   jobs run as, and a token id read from a comment is revoked only if it
//!   is an unrecorded server token (the controller's `Revoke` checks).
//!
//! Liveness comes from one `squeue` listing shared by every check for about
//! a second (a tenth of one while spawns wait for their jobs to run), so a
//! leader with hundreds of servers asks the controller once per poll, not
//! once per server. A controller that does not answer makes a
//! server's liveness unknown, never gone.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use quorumhub_state::SpawnerState;
use tokio::io::AsyncWriteExt;

use crate::spawner::{
    Launch, Liveness, Revoke, SpawnerArgs, SpawnerConfigError, SpawnerContext, SpawnerKind,
};
use crate::SpawnError;

/// The Slurm spawner's flags. Profiles override partition, account, time
/// limit, GPUs (gres), CPUs (`cpu_limit`) and memory (`mem_limit`).
#[derive(clap::Args, Clone, Debug)]
pub struct SlurmArgs {
    /// Slurm spawner: the directory of sbatch, squeue, scancel and scontrol
    /// (default: found on the hub's PATH).
    #[arg(long)]
    pub slurm_bin_dir: Option<PathBuf>,
    /// Slurm spawner: the partition of servers whose profile names none
    /// (default: the cluster's default partition).
    #[arg(long)]
    pub slurm_partition: Option<String>,
    /// Slurm spawner: the account jobs are charged to, where the profile
    /// names none (default: the user's default account).
    #[arg(long)]
    pub slurm_account: Option<String>,
    /// Slurm spawner: the time limit of servers whose profile sets none, in
    /// Slurm's format (`MINUTES`, `HH:MM:SS`, `D-HH:MM`; default: the
    /// partition's).
    #[arg(long)]
    pub slurm_time_limit: Option<String>,
    /// Slurm spawner: ports servers listen on, `LOW-HIGH`; each running
    /// server gets one no other server of this cluster has.
    #[arg(long, default_value = "40000-49999")]
    pub slurm_port_range: String,
    /// Slurm spawner: how long from the spawn's start (Slurm not answering
    /// included) until its job runs, before the spawn is given up and the
    /// job cancelled (batchspawner's `start_timeout`).
    #[arg(long, default_value_t = 300)]
    pub slurm_start_timeout_s: u64,
    /// Slurm spawner: how long one Slurm command may take before the
    /// controller counts as not answering.
    #[arg(long, default_value_t = 20)]
    pub slurm_command_timeout_s: u64,
    /// Slurm spawner: the job's output file on the compute node (Slurm's
    /// `--output` patterns: `%j` is the job id, `%u` the user).
    #[arg(long, default_value = "/tmp/quorumhub-%u-%j.log")]
    pub slurm_output: String,
}

impl SlurmArgs {
    pub(crate) fn validate(&self) -> Result<(), SpawnerConfigError> {
        parse_port_range(&self.slurm_port_range).map_err(SpawnerConfigError::Slurm)?;
        if let Some(t) = &self.slurm_time_limit {
            check_time_limit(t)
                .map_err(|e| SpawnerConfigError::Slurm(format!("--slurm-time-limit: {e}")))?;
        }
        for (flag, v) in [
            ("--slurm-partition", &self.slurm_partition),
            ("--slurm-account", &self.slurm_account),
        ] {
            if let Some(v) = v {
                check_word(v).map_err(|e| SpawnerConfigError::Slurm(format!("{flag}: {e}")))?;
            }
        }
        if self.slurm_start_timeout_s == 0 || self.slurm_command_timeout_s == 0 {
            return Err(SpawnerConfigError::Slurm(
                "--slurm-start-timeout-s and --slurm-command-timeout-s must be above 0".into(),
            ));
        }
        if self.slurm_output.is_empty() || self.slurm_output.contains(['\n', '\0']) {
            return Err(SpawnerConfigError::Slurm(
                "--slurm-output must be a path (Slurm's %j and %u allowed)".into(),
            ));
        }
        Ok(())
    }
}

/// `LOW-HIGH`, both above 1023.
pub fn parse_port_range(s: &str) -> Result<(u16, u16), String> {
    let bad = || {
        format!("--slurm-port-range {s:?} must be LOW-HIGH, e.g. 40000-49999, within 1024-65535")
    };
    let (lo, hi) = s.split_once('-').ok_or_else(bad)?;
    let lo: u16 = lo.trim().parse().map_err(|_| bad())?;
    let hi: u16 = hi.trim().parse().map_err(|_| bad())?;
    if lo < 1024 || lo > hi {
        return Err(bad());
    }
    Ok((lo, hi))
}

/// A Slurm name (partition, account, gres): letters, digits and `_.-:,`
/// only, so nothing a profile says becomes a second option.
pub fn check_word(s: &str) -> Result<(), String> {
    if s.is_empty()
        || s.len() > 200
        || !s
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.-:,".contains(c))
    {
        return Err(format!(
            "{s:?} must be 1 to 200 characters of letters, digits, '_', '.', '-', ':' and ','"
        ));
    }
    Ok(())
}

/// Slurm's time formats: `M`, `M:S`, `H:M:S`, `D-H`, `D-H:M`, `D-H:M:S`.
pub fn check_time_limit(s: &str) -> Result<(), String> {
    let bad = || {
        format!(
            "{s:?} is not a Slurm time limit: give MINUTES, HH:MM:SS or DAYS-HH[:MM[:SS]] (e.g. \"60\", \"8:00:00\", \"1-00:00\")"
        )
    };
    let (days, rest) = match s.split_once('-') {
        Some((d, r)) => (Some(d), r),
        None => (None, s),
    };
    let numbers = |p: &str| !p.is_empty() && p.len() <= 6 && p.chars().all(|c| c.is_ascii_digit());
    if days.is_some_and(|d| !numbers(d)) {
        return Err(bad());
    }
    let parts: Vec<&str> = rest.split(':').collect();
    if parts.is_empty() || parts.len() > 3 || !parts.iter().all(|p| numbers(p)) {
        return Err(bad());
    }
    if parts.iter().all(|p| p.chars().all(|c| c == '0'))
        && days.is_none_or(|d| d.chars().all(|c| c == '0'))
    {
        return Err(format!(
            "{s:?}: a time limit of zero would end every server at once"
        ));
    }
    Ok(())
}

/// What the spawner asks Slurm for: the flags' defaults, overridden by the
/// server's profile.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct JobRequest {
    pub partition: Option<String>,
    pub account: Option<String>,
    pub time_limit: Option<String>,
    pub gres: Option<String>,
    pub cpus: Option<u32>,
    /// Megabytes (`--mem`).
    pub mem_mb: Option<u64>,
}

/// One job as `squeue` lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobInfo {
    pub id: u32,
    pub name: String,
    /// `PENDING`, `RUNNING`, `TIMEOUT`, ...
    pub state: String,
    /// The batch host (a node name) once the job runs.
    pub batch_host: Option<String>,
    pub comment: String,
    /// Why it is in its state (`Resources`, `TimeLimit`, `None`, ...).
    pub reason: String,
    /// The uid the job runs as (`%U`): who could have set its name and
    /// comment.
    pub uid: Option<u32>,
}

impl JobInfo {
    /// The token id its comment carries.
    pub fn token_id(&self) -> Option<&str> {
        self.comment
            .split(',')
            .find_map(|kv| kv.strip_prefix(COMMENT_TOKEN))
            .filter(|t| !t.is_empty())
    }

    /// The port its comment carries.
    pub fn port(&self) -> Option<u16> {
        self.comment
            .split(',')
            .find_map(|kv| kv.strip_prefix(COMMENT_PORT))
            .and_then(|p| p.parse().ok())
    }
}

const COMMENT_TOKEN: &str = "qh-token=";
const COMMENT_PORT: &str = "qh-port=";

/// A job's state, as the spawner reads it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JobPhase {
    /// Not yet running (pending, being configured, held, suspended).
    Waiting,
    Running,
    /// Ended (for whatever reason Slurm gives).
    Ended,
}

/// Slurm's job state codes.
pub fn job_phase(state: &str) -> JobPhase {
    // A state may carry flags after a space or '+' (e.g. "CANCELLED by 0").
    let base = state
        .split([' ', '+'])
        .next()
        .unwrap_or(state)
        .to_ascii_uppercase();
    match base.as_str() {
        "RUNNING" | "COMPLETING" | "STAGE_OUT" | "SIGNALING" => JobPhase::Running,
        "PENDING" | "CONFIGURING" | "REQUEUED" | "REQUEUE_HOLD" | "REQUEUE_FED" | "RESIZING"
        | "SUSPENDED" | "STOPPED" | "RESV_DEL_HOLD" | "SPECIAL_EXIT" => JobPhase::Waiting,
        "COMPLETED" | "CANCELLED" | "FAILED" | "TIMEOUT" | "NODE_FAIL" | "PREEMPTED"
        | "BOOT_FAIL" | "DEADLINE" | "OUT_OF_MEMORY" | "REVOKED" => JobPhase::Ended,
        // A state this build does not know (a newer Slurm's): never taken
        // as the end of a server.
        _ => JobPhase::Waiting,
    }
}

/// The `squeue -o` format the spawner parses. The spawner's own names never
/// contain a `|` (they are escaped) and the comment is the last field, so
/// its jobs parse whole; a job whose owner put a `|` in its name, or a line
/// break in its comment, can only garble its own line (and the uid, which
/// comes before both, still says whose it is).
pub const SQUEUE_FORMAT: &str = "%i|%T|%B|%r|%U|%j|%k";

/// `squeue -h -o SQUEUE_FORMAT` output; lines it cannot read are skipped
/// (and counted), never guessed at.
pub fn parse_squeue(out: &str) -> (Vec<JobInfo>, usize) {
    let mut jobs = Vec::new();
    let mut skipped = 0;
    for line in out.lines().filter(|l| !l.trim().is_empty()) {
        let f: Vec<&str> = line.splitn(7, '|').collect();
        let parsed = (f.len() == 7)
            .then(|| f[0].trim().parse::<u32>().ok())
            .flatten();
        let Some(id) = parsed else {
            skipped += 1;
            continue;
        };
        let host = f[2].trim();
        jobs.push(JobInfo {
            id,
            state: f[1].trim().to_string(),
            batch_host: (!host.is_empty() && host != "n/a" && host != "(null)")
                .then(|| host.to_string()),
            reason: f[3].trim().to_string(),
            uid: f[4].trim().parse().ok(),
            name: f[5].trim().to_string(),
            comment: f[6].trim().to_string(),
        });
    }
    (jobs, skipped)
}

/// `NodeAddr=` of `scontrol show node -o NAME`.
pub fn parse_node_addr(out: &str) -> Option<String> {
    out.split_whitespace()
        .find_map(|kv| kv.strip_prefix("NodeAddr="))
        .filter(|a| !a.is_empty() && *a != "(null)")
        .map(str::to_string)
}

/// The job script: the server's environment (nothing of the hub's: sbatch
/// runs with a cleared environment), then `exec` of its command. Every
/// value is single-quoted, so no value is ever read as shell.
pub fn job_script(env: &BTreeMap<String, String>, cmd: &[String]) -> String {
    let mut s = String::from("#!/bin/sh\n# A quorumhub single-user server.\n");
    for (k, v) in env {
        if is_shell_name(k) {
            s.push_str(&format!("export {k}={}\n", shell_quote(v)));
        }
    }
    s.push_str("exec");
    for a in cmd {
        s.push(' ');
        s.push_str(&shell_quote(a));
    }
    s.push('\n');
    s
}

fn is_shell_name(k: &str) -> bool {
    let mut chars = k.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// `'v'`, with each `'` as `'\''`.
pub fn shell_quote(v: &str) -> String {
    format!("'{}'", v.replace('\'', r"'\''"))
}

/// `sbatch`'s arguments for one job (the script comes on stdin).
pub fn sbatch_args(
    name: &str,
    comment: &str,
    req: &JobRequest,
    output: &str,
    run_as: Option<(u32, u32)>,
    chdir: &str,
) -> Vec<String> {
    let mut a = vec![
        "--parsable".to_string(),
        format!("--job-name={name}"),
        format!("--comment={comment}"),
        // The job's environment is sbatch's, which the spawner clears to
        // PATH and SLURM_CONF (nothing of the hub's), plus what the script
        // sets. Not NONE: that makes slurmd load the user's login
        // environment with `su -`, which a node without su dies of.
        "--export=ALL".into(),
        // A job that fails is a server that stopped: the user starts
        // another, Slurm must not run this one again behind the hub.
        "--no-requeue".into(),
        "--nodes=1".into(),
        "--ntasks=1".into(),
        format!("--output={output}"),
        format!("--chdir={chdir}"),
    ];
    if let Some((uid, gid)) = run_as {
        a.push(format!("--uid={uid}"));
        a.push(format!("--gid={gid}"));
    }
    if let Some(p) = &req.partition {
        a.push(format!("--partition={p}"));
    }
    if let Some(acc) = &req.account {
        a.push(format!("--account={acc}"));
    }
    if let Some(t) = &req.time_limit {
        a.push(format!("--time={t}"));
    }
    if let Some(g) = &req.gres {
        a.push(format!("--gres={g}"));
    }
    if let Some(c) = req.cpus {
        a.push(format!("--cpus-per-task={c}"));
    }
    if let Some(m) = req.mem_mb {
        a.push(format!("--mem={m}M"));
    }
    a
}

/// How a Slurm command failed.
#[derive(Debug)]
enum CmdError {
    /// The controller did not answer (or the command did not finish):
    /// nothing is known.
    Unreachable(String),
    /// Slurm answered with a refusal: its message.
    Refused(String),
}

impl CmdError {
    fn message(&self) -> &str {
        match self {
            CmdError::Unreachable(m) | CmdError::Refused(m) => m,
        }
    }
}

/// What Slurm's commands print when they cannot reach the controller.
fn is_unreachable(stderr: &str) -> bool {
    const SIGNS: [&str; 6] = [
        "Unable to contact slurm controller",
        "Socket timed out",
        "Zero Bytes were transmitted",
        "Connection refused",
        "Communication connection failure",
        "Munge encode failed",
    ];
    SIGNS.iter().any(|s| stderr.contains(s))
}

/// Why a submission did not happen.
enum Submit {
    /// Slurm did not answer: try again (after looking for the job).
    Retry(String),
    Failed(SpawnError),
}

/// One `squeue` listing.
#[derive(Debug, Default)]
pub struct Jobs {
    pub by_id: HashMap<u32, JobInfo>,
    /// Every line was read, and no job id came twice: a job missing from
    /// `by_id` is known to be gone. Otherwise missing says nothing.
    pub complete: bool,
}

impl Jobs {
    /// From `squeue -h -o SQUEUE_FORMAT` output. A job id listed twice (a
    /// forged line) is left out, and the listing is then incomplete.
    pub fn parse(out: &str) -> Jobs {
        let (jobs, skipped) = parse_squeue(out);
        let mut by_id: HashMap<u32, JobInfo> = HashMap::new();
        let mut twice = HashSet::new();
        for j in jobs {
            match by_id.entry(j.id) {
                std::collections::hash_map::Entry::Occupied(_) => {
                    twice.insert(j.id);
                }
                std::collections::hash_map::Entry::Vacant(v) => {
                    v.insert(j);
                }
            }
        }
        for id in &twice {
            by_id.remove(id);
        }
        Jobs {
            by_id,
            complete: skipped == 0 && twice.is_empty(),
        }
    }
}

/// A cached `squeue` listing, or why there was none (see the module's
/// docs): a Slurm that does not answer is asked once per interval, not
/// once per waiting caller.
struct Listing {
    /// When `squeue` was started.
    at: Instant,
    result: Result<std::sync::Arc<Jobs>, String>,
}

/// How long one `squeue` listing answers liveness checks.
const LISTING_TTL: Duration = Duration::from_millis(1000);

/// How old a listing may be for spawns waiting for their job to run: the
/// waiters of concurrent spawns share one `squeue` per this interval.
const WAITING_TTL: Duration = Duration::from_millis(100);

/// How long this replica must have seen a job of this cluster's owned by no
/// active spawn before [`SlurmSpawner::reap`] cancels it.
pub const REAP_MIN_AGE: Duration = Duration::from_secs(60);

/// How many jobs one reap pass cancels at most.
pub const REAP_MAX_CANCELS: usize = 100;

/// Starts each server as a Slurm batch job.
pub struct SlurmSpawner {
    args: SlurmArgs,
    /// Empty: `quorumhub singleuser` (the binary at this hub's path, which
    /// the compute nodes must have at the same path).
    cmd: Vec<String>,
    cluster_id: String,
    run_as_hub_user: bool,
    system_user_prefix: String,
    ports: (u16, u16),
    listing: tokio::sync::Mutex<Option<Listing>>,
    /// Ports handed out by this replica and not yet seen in a listing.
    reserved: Mutex<HashMap<u16, Instant>>,
    /// When this replica first saw each job that nobody owns.
    orphans: Mutex<HashMap<u32, Instant>>,
    /// Last time a failure to reach Slurm was logged (rate limit).
    last_warned: Mutex<Option<Instant>>,
}

impl SlurmSpawner {
    pub fn new(args: &SpawnerArgs, ctx: &SpawnerContext) -> SlurmSpawner {
        SlurmSpawner {
            args: args.slurm.clone(),
            cmd: args.cmd.clone(),
            cluster_id: ctx.cluster_id.clone(),
            run_as_hub_user: args.process.spawner_run_as_hub_user,
            system_user_prefix: args.process.system_user_prefix.clone(),
            ports: parse_port_range(&args.slurm.slurm_port_range).unwrap_or((40000, 49999)),
            listing: tokio::sync::Mutex::new(None),
            reserved: Mutex::new(HashMap::new()),
            orphans: Mutex::new(HashMap::new()),
            last_warned: Mutex::new(None),
        }
    }

    fn program(&self, name: &str) -> PathBuf {
        match &self.args.slurm_bin_dir {
            Some(d) => d.join(name),
            None => PathBuf::from(name),
        }
    }

    fn command_timeout(&self) -> Duration {
        Duration::from_secs(self.args.slurm_command_timeout_s)
    }

    /// Runs one Slurm command with a clean environment, bounded in time:
    /// no `SBATCH_*` or `SQUEUE_*` of the hub's changes what it does, and
    /// none of the hub's variables reaches a job (`sbatch --export=ALL`
    /// passes on only `PATH` and `SLURM_CONF`).
    async fn run(
        &self,
        program: &str,
        args: &[String],
        stdin: Option<&str>,
    ) -> Result<String, CmdError> {
        let mut cmd = tokio::process::Command::new(self.program(program));
        cmd.args(args)
            .env_clear()
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        for k in ["PATH", "SLURM_CONF"] {
            if let Ok(v) = std::env::var(k) {
                cmd.env(k, v);
            }
        }
        let mut child = cmd.spawn().map_err(|e| {
            CmdError::Unreachable(format!(
                "cannot run {program}: {e}; install Slurm's client commands on every hub replica (Debian: slurm-client) or set --slurm-bin-dir"
            ))
        })?;
        let pipe = child.stdin.take();
        let input = stdin.map(str::to_owned);
        let finished = async move {
            if let (Some(input), Some(mut pipe)) = (input, pipe) {
                // A write error shows up as the command's own failure.
                let _ = pipe.write_all(input.as_bytes()).await;
                drop(pipe);
            }
            child.wait_with_output().await
        };
        let out = match tokio::time::timeout(self.command_timeout(), finished).await {
            Ok(Ok(out)) => out,
            Ok(Err(e)) => return Err(CmdError::Unreachable(format!("{program} failed: {e}"))),
            Err(_) => {
                return Err(CmdError::Unreachable(format!(
                    "{program} did not finish within {:?} (is slurmctld up and reachable?)",
                    self.command_timeout()
                )))
            }
        };
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
        if out.status.success() {
            return Ok(stdout);
        }
        let msg = if stderr.is_empty() {
            format!("{program} exited with {}", out.status)
        } else {
            stderr
        };
        if is_unreachable(&msg) {
            Err(CmdError::Unreachable(msg))
        } else {
            Err(CmdError::Refused(msg))
        }
    }

    fn warn_unreachable(&self, what: &str, e: &CmdError) {
        let mut last = self.last_warned.lock().unwrap_or_else(|p| p.into_inner());
        if last.is_none_or(|t| t.elapsed() > Duration::from_secs(30)) {
            *last = Some(Instant::now());
            tracing::warn!(error = %e.message(), "Slurm does not answer ({what}); servers are left as they are, retrying");
        }
    }

    /// Every job Slurm still knows (running, pending, and recently ended),
    /// from a listing at most `max_age` old (`Duration::ZERO`: a new one).
    async fn jobs(&self, max_age: Duration) -> Result<std::sync::Arc<Jobs>, CmdError> {
        let now = Instant::now();
        self.jobs_since(now.checked_sub(max_age).unwrap_or(now))
            .await
    }

    /// Every job Slurm still knows, from a listing taken after `since`.
    async fn jobs_since(&self, since: Instant) -> Result<std::sync::Arc<Jobs>, CmdError> {
        let mut cached = self.listing.lock().await;
        if let Some(l) = cached.as_ref() {
            if l.at > since {
                return l.result.clone().map_err(CmdError::Unreachable);
            }
        }
        // -a: hidden partitions too (and any the hub's user may not use).
        let args: Vec<String> = ["-h", "-a", "-t", "all", "-o", SQUEUE_FORMAT]
            .iter()
            .map(|s| s.to_string())
            .collect();
        // A listing is as old as the moment it was asked for: what Slurm
        // accepted after that may be missing from it.
        let asked = Instant::now();
        let result = match self.run("squeue", &args, None).await {
            Ok(out) => {
                let jobs = Jobs::parse(&out);
                if !jobs.complete {
                    tracing::warn!(
                        "squeue printed lines the Slurm spawner cannot read, or a job twice; those jobs count as unknown"
                    );
                }
                Ok(std::sync::Arc::new(jobs))
            }
            Err(e) => Err(e.message().to_string()),
        };
        *cached = Some(Listing {
            at: asked,
            result: result.clone(),
        });
        result.map_err(CmdError::Unreachable)
    }

    /// The name prefix of every job of one spawn.
    fn spawn_prefix(&self, user: &str, server: &str, generation: u64) -> String {
        // container_name ends with the escaped attempt; cut it off.
        let full =
            quorumhub_state::ids::container_name(&self.cluster_id, user, server, generation, "x");
        full[..full.len() - 1].to_string()
    }

    /// The name prefix of every job of this cluster.
    fn cluster_prefix(&self) -> String {
        let full = quorumhub_state::ids::container_name(&self.cluster_id, "u", "", 0, "x");
        let cut = full.len() - ".u..g0.x".len();
        format!("{}.", &full[..cut])
    }

    /// A port no job of this cluster's holds or was just given.
    fn pick_port(&self, jobs: &Jobs) -> Result<u16, SpawnError> {
        let used: HashSet<u16> = jobs
            .by_id
            .values()
            .filter(|j| job_phase(&j.state) != JobPhase::Ended)
            .filter_map(JobInfo::port)
            .collect();
        let mut reserved = self.reserved.lock().unwrap_or_else(|p| p.into_inner());
        reserved.retain(|_, at| at.elapsed() < Duration::from_secs(120));
        let (lo, hi) = self.ports;
        let span = u32::from(hi - lo) + 1;
        let start = rand::random::<u32>() % span;
        for i in 0..span {
            let port = lo + ((start + i) % span) as u16;
            if !used.contains(&port) && !reserved.contains_key(&port) {
                reserved.insert(port, Instant::now());
                return Ok(port);
            }
        }
        Err(SpawnError::Slurm(format!(
            "every port of --slurm-port-range {} is taken by a running server; widen the range",
            self.args.slurm_port_range
        )))
    }

    fn request(&self, launch: &Launch) -> JobRequest {
        let o = &launch.overrides;
        JobRequest {
            partition: o
                .slurm
                .partition
                .clone()
                .or_else(|| self.args.slurm_partition.clone()),
            account: o
                .slurm
                .account
                .clone()
                .or_else(|| self.args.slurm_account.clone()),
            time_limit: o
                .slurm
                .time_limit
                .clone()
                .or_else(|| self.args.slurm_time_limit.clone()),
            gres: o.slurm.gres.clone(),
            cpus: o.cpu_limit.map(|c| c.ceil().clamp(1.0, 4096.0) as u32),
            mem_mb: o.mem_limit.map(|b| b.div_ceil(1 << 20).max(1)),
        }
    }

    /// The system account a user's jobs run as (`None`: the hub's own).
    fn account(&self, user: &str) -> Result<Option<crate::Account>, SpawnError> {
        if self.run_as_hub_user {
            return Ok(None);
        }
        let name = format!("{}{user}", self.system_user_prefix);
        crate::account::validate_account_name(&name)?;
        match crate::account::lookup_account(&name)? {
            Some(a) if a.uid == 0 => Err(SpawnError::RootAccount {
                user: user.to_string(),
                account: name,
            }),
            Some(a) => Ok(Some(a)),
            None => Err(SpawnError::NoAccount {
                user: user.to_string(),
                account: name,
                host: crate::host_name(),
            }),
        }
    }

    async fn submit(
        &self,
        launch: &Launch,
        account: Option<&crate::Account>,
        jobs: &Jobs,
    ) -> Result<(u32, u16), Submit> {
        let port = self.pick_port(jobs).map_err(Submit::Failed)?;
        let attempt = launch.attempt();
        let name = quorumhub_state::ids::container_name(
            &self.cluster_id,
            &launch.user,
            &launch.server,
            launch.generation,
            &attempt,
        );
        let token_id: String = launch
            .token_id
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
            .collect();
        let comment = format!("{COMMENT_TOKEN}{token_id},{COMMENT_PORT}{port}");
        let mut server_env = launch.server_env(port);
        server_env.ip = "0.0.0.0".into();
        let mut env = crate::jupyterhub_env(&server_env);
        env.insert("PATH".into(), "/usr/local/bin:/usr/bin:/bin".into());
        if let Some(a) = account {
            env.insert("USER".into(), a.name.clone());
            env.insert("LOGNAME".into(), a.name.clone());
            env.insert("HOME".into(), a.home.display().to_string());
            env.insert("SHELL".into(), a.shell.clone());
        }
        launch.overrides.apply_env(&mut env);
        env.retain(|k, _| !crate::is_hub_only_env(k));
        let base = if self.cmd.is_empty() {
            let exe =
                std::env::current_exe().map_err(|e| Submit::Failed(SpawnError::CurrentExe(e)))?;
            vec![exe.display().to_string(), "singleuser".into()]
        } else {
            self.cmd.clone()
        };
        let cmd = launch.overrides.command(base);
        let script = job_script(&env, &cmd);
        // The home directory where this submit host has it (an HPC centre
        // shares homes); else /tmp, which every node has.
        let chdir = account
            .filter(|a| a.home.is_dir())
            .map(|a| a.home.display().to_string())
            .unwrap_or_else(|| "/tmp".into());
        let args = sbatch_args(
            &name,
            &comment,
            &self.request(launch),
            &self.args.slurm_output,
            account.map(|a| (a.uid, a.gid)),
            &chdir,
        );
        let out = match self.run("sbatch", &args, Some(&script)).await {
            Ok(out) => out,
            Err(CmdError::Unreachable(m)) => {
                self.reserved
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(&port);
                return Err(Submit::Retry(m));
            }
            Err(e) => return Err(Submit::Failed(self.slurm_error("sbatch", e))),
        };
        // --parsable: "ID" or "ID;CLUSTER".
        let id = out
            .trim()
            .split(';')
            .next()
            .and_then(|s| s.trim().parse::<u32>().ok())
            .ok_or_else(|| {
                Submit::Failed(SpawnError::Slurm(format!(
                    "sbatch printed {:?}, not a job id",
                    out.trim()
                )))
            })?;
        tracing::info!(job = id, port, "Slurm job submitted");
        Ok((id, port))
    }

    /// The job of this spawn: one a previous leader submitted (adopted,
    /// with its token; further ones cancelled), or a new one. `Ok(Err(why))`:
    /// Slurm did not answer, try again.
    async fn find_or_submit(
        &self,
        launch: &Launch,
        revoke: &dyn Revoke,
        prefix: &str,
        jobs: &Jobs,
    ) -> Result<Result<(u32, u16, String), String>, SpawnError> {
        let account = self.account(&launch.user)?;
        let uid = account
            .as_ref()
            .map_or_else(crate::account::effective_uid, |a| a.uid);
        // A job of this very spawn that no leader recorded: the previous
        // leader submitted it and died before its job id was committed (or
        // sbatch's answer was lost). Adopt it (its token is still valid)
        // rather than submit another. Only a job that runs as the uid this
        // spawn's jobs run as: anyone may name a job like this one.
        let mut mine: Vec<&JobInfo> = jobs
            .by_id
            .values()
            .filter(|j| {
                j.name.starts_with(prefix)
                    && j.uid == Some(uid)
                    && job_phase(&j.state) != JobPhase::Ended
            })
            .collect();
        mine.sort_by_key(|j| j.id);
        let adopted = mine
            .first()
            .and_then(|j| Some(((*j).clone(), j.token_id()?.to_string(), j.port()?)));
        let keep = adopted.as_ref().map(|(_, t, _)| t.clone());
        for extra in mine.iter().skip(usize::from(adopted.is_some())) {
            tracing::warn!(job = extra.id, "cancelling a second job of the same spawn");
            if let Some(t) = extra.token_id() {
                if t != launch.token_id && Some(t) != keep.as_deref() {
                    revoke.revoke(t).await;
                }
            }
            self.cancel(extra.id, Duration::ZERO).await?;
        }
        if let Some((job, token_id, port)) = adopted {
            if token_id != launch.token_id {
                tracing::info!(
                    job = job.id,
                    "adopting the Slurm job a previous leader submitted for this spawn"
                );
                revoke.revoke(&launch.token_id).await;
            }
            return Ok(Ok((job.id, port, token_id)));
        }
        match self.submit(launch, account.as_ref(), jobs).await {
            Ok((id, port)) => Ok(Ok((id, port, launch.token_id.clone()))),
            Err(Submit::Retry(why)) => Ok(Err(why)),
            Err(Submit::Failed(e)) => Err(e),
        }
    }

    fn slurm_error(&self, what: &str, e: CmdError) -> SpawnError {
        match e {
            CmdError::Refused(m) => SpawnError::Slurm(format!("Slurm refused the job: {m}")),
            CmdError::Unreachable(m) => {
                SpawnError::Slurm(format!("Slurm did not answer {what}: {m}"))
            }
        }
    }

    /// Waits until job `id` runs and returns it, within
    /// `--slurm-start-timeout-s` of `started` (the spawn's start); a
    /// controller that stops answering meanwhile is waited for within the
    /// same bound, and a spawn no longer `wanted` ends the wait.
    async fn wait_running(
        &self,
        id: u32,
        started: Instant,
        wanted: &crate::Wanted,
    ) -> Result<JobInfo, SpawnError> {
        let limit = Duration::from_secs(self.args.slurm_start_timeout_s);
        // Only listings taken after the job id was learnt can tell whether
        // the job is listed.
        let known = Instant::now();
        let mut last;
        loop {
            if !wanted.check() {
                return Err(SpawnError::Slurm(format!(
                    "the server was asked to stop while Slurm job {id} waited to run; the job is cancelled"
                )));
            }
            let now = Instant::now();
            let since = now.checked_sub(WAITING_TTL).unwrap_or(now).max(known);
            match self.jobs_since(since).await {
                Ok(jobs) => match jobs.by_id.get(&id) {
                    Some(j) => match job_phase(&j.state) {
                        JobPhase::Running if j.batch_host.is_some() => return Ok(j.clone()),
                        JobPhase::Ended => {
                            return Err(SpawnError::Slurm(format!(
                                "Slurm job {id} ended before the server started: {}",
                                describe(j)
                            )))
                        }
                        _ => last = format!("{} ({})", j.state, j.reason),
                    },
                    None if jobs.complete => {
                        return Err(SpawnError::Slurm(format!(
                            "Slurm job {id} is not listed by squeue any more (it ended, or was removed)"
                        )))
                    }
                    None => last = "not listed by squeue".into(),
                },
                Err(e) => {
                    self.warn_unreachable("waiting for a job to start", &e);
                    last = e.message().to_string();
                }
            }
            if started.elapsed() >= limit {
                return Err(SpawnError::Slurm(format!(
                    "Slurm job {id} did not start within {limit:?} (last seen: {last}); the job is cancelled. Ask for fewer resources, or raise --slurm-start-timeout-s"
                )));
            }
            // A job usually runs within a second of sbatch: look often
            // first, then once a second for one that waits in the queue.
            let pause = if started.elapsed() < Duration::from_secs(10) {
                WAITING_TTL
            } else {
                Duration::from_secs(1)
            };
            tokio::time::sleep(pause).await;
        }
    }

    /// The address the proxies reach node `node` at: its `NodeAddr`,
    /// resolved to an IP where the hub can (so proxies need no DNS).
    async fn node_address(&self, node: &str) -> String {
        let args = vec![
            "show".to_string(),
            "node".into(),
            "-o".into(),
            node.to_string(),
        ];
        let addr = match self.run("scontrol", &args, None).await {
            Ok(out) => parse_node_addr(&out).unwrap_or_else(|| node.to_string()),
            Err(e) => {
                tracing::warn!(node, error = %e.message(), "cannot read the node's address; using its name");
                node.to_string()
            }
        };
        if addr.parse::<IpAddr>().is_ok() {
            return addr;
        }
        let resolved = match tokio::net::lookup_host((addr.as_str(), 0)).await {
            Ok(mut ips) => ips.next().map(|sa| sa.ip().to_string()),
            Err(_) => None,
        };
        resolved.unwrap_or(addr)
    }

    async fn located(&self, job: &JobInfo, port: u16, token_id: String) -> SpawnerState {
        let node = job.batch_host.clone().unwrap_or_default();
        let addr = self.node_address(&node).await;
        SpawnerState {
            kind: SpawnerKind::Slurm.as_str().into(),
            host: node,
            pid: job.id,
            proc_start: 0,
            port,
            target: format!("http://{}:{port}", crate::fmt_ip_url(&addr)),
            token_id: Some(token_id),
        }
    }

    /// `scancel` job `id` (TERM; KILL after `grace` if it still runs); a job
    /// already ended is fine.
    async fn cancel(&self, id: u32, grace: Duration) -> Result<(), SpawnError> {
        let scancel = |args: Vec<String>| async move {
            match self.run("scancel", &args, None).await {
                Ok(_) => Ok(()),
                Err(CmdError::Refused(m))
                    // "Invalid job id specified", "Job/step already
                    // completing or completed".
                    if m.contains("Invalid job id") || m.contains("already complet") =>
                {
                    Ok(())
                }
                Err(e) => Err(self.slurm_error("scancel", e)),
            }
        };
        // Slurm's own cancel: the job is CANCELLED, its processes get TERM
        // (and KILL after the cluster's KillWait).
        scancel(vec![id.to_string()]).await?;
        if grace.is_zero() {
            return Ok(());
        }
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            tokio::time::sleep(WAITING_TTL * 2).await;
            match self.jobs(WAITING_TTL).await {
                Ok(jobs)
                    if jobs
                        .by_id
                        .get(&id)
                        .map_or(jobs.complete, |j| job_phase(&j.state) == JobPhase::Ended) =>
                {
                    return Ok(())
                }
                _ => {}
            }
        }
        // Still there after our grace: KILL now rather than after KillWait.
        scancel(vec![
            "--signal=KILL".into(),
            "--full".into(),
            id.to_string(),
        ])
        .await
    }
}

/// A job's end as a person reads it: `TIMEOUT (TimeLimit)`.
fn describe(j: &JobInfo) -> String {
    match j.reason.as_str() {
        "" | "None" => j.state.clone(),
        r => format!("{} ({r})", j.state),
    }
}

#[async_trait::async_trait]
impl crate::Spawner for SlurmSpawner {
    fn kind(&self) -> SpawnerKind {
        SpawnerKind::Slurm
    }

    async fn start(
        &self,
        launch: &Launch,
        revoke: &dyn Revoke,
    ) -> Result<SpawnerState, SpawnError> {
        let prefix = self.spawn_prefix(&launch.user, &launch.server, launch.generation);
        let limit = Duration::from_secs(self.args.slurm_start_timeout_s);
        let started = Instant::now();
        let mut pause = Duration::from_millis(500);
        // Until a job of this spawn exists: Slurm not answering is waited
        // for (within --slurm-start-timeout-s), and every try looks for a
        // job of this spawn first, so a submission whose answer was lost is
        // adopted, not repeated.
        let (id, port, token_id) = loop {
            let retry = match self.jobs(Duration::ZERO).await {
                Err(e) => e.message().to_string(),
                Ok(jobs) => match self.find_or_submit(launch, revoke, &prefix, &jobs).await? {
                    Ok(found) => break found,
                    Err(why) => why,
                },
            };
            if started.elapsed() + pause >= limit {
                return Err(SpawnError::Slurm(format!(
                    "Slurm did not answer for {limit:?} ({retry}); the server was not started. Check slurmctld, or raise --slurm-start-timeout-s"
                )));
            }
            self.warn_unreachable("submitting a server", &CmdError::Unreachable(retry));
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_secs(5));
        };
        let job = match self.wait_running(id, started, &launch.wanted).await {
            Ok(job) => job,
            Err(e) => {
                if let Err(c) = self.cancel(id, Duration::ZERO).await {
                    tracing::warn!(job = id, error = %c, "could not cancel the job that did not start");
                }
                // An adopted job's token is not the launch's (which the
                // controller revokes): it goes with its job.
                if token_id != launch.token_id {
                    revoke.revoke(&token_id).await;
                }
                return Err(e);
            }
        };
        // The port's reservation stays until it expires: a concurrent
        // spawn may hold a listing from before this job showed its port.
        Ok(self.located(&job, port, token_id).await)
    }

    async fn liveness(&self, state: &SpawnerState) -> Liveness {
        match self.jobs(LISTING_TTL).await {
            Ok(jobs) => match jobs.by_id.get(&state.pid) {
                Some(j) if job_phase(&j.state) != JobPhase::Ended => Liveness::Running,
                Some(_) => Liveness::Gone,
                // No longer listed (it ended more than MinJobAge ago), if
                // the listing is whole; else nothing is known.
                None if jobs.complete => Liveness::Gone,
                None => Liveness::Unknown,
            },
            Err(e) => {
                self.warn_unreachable("checking a server", &e);
                Liveness::Unknown
            }
        }
    }

    async fn gone_reason(&self, state: &SpawnerState) -> Option<String> {
        let jobs = self.jobs(LISTING_TTL).await.ok()?;
        Some(match jobs.by_id.get(&state.pid) {
            Some(j) => format!("the Slurm job {} ended: {}", j.id, describe(j)),
            None => format!(
                "the Slurm job {} is no longer known to Slurm (it ended)",
                state.pid
            ),
        })
    }

    async fn stop(&self, state: &SpawnerState, grace: Duration) -> Result<(), SpawnError> {
        self.cancel(state.pid, grace).await
    }

    async fn reap(&self, owned: &crate::spawner::Owned, revoke: &dyn Revoke) {
        let jobs = match self.jobs(Duration::ZERO).await {
            Ok(j) => j,
            Err(e) => {
                self.warn_unreachable("looking for jobs nobody owns", &e);
                return;
            }
        };
        let cluster = self.cluster_prefix();
        // Each active spawn's name prefix, made once per pass (not once per
        // job and spawn).
        let claims: Vec<(String, Option<u32>)> = owned
            .iter()
            .map(|o| {
                (
                    self.spawn_prefix(&o.user, &o.server, o.generation),
                    o.recorded_id,
                )
            })
            .collect();
        let mut seen = HashSet::new();
        let mut cancelled = 0;
        for j in jobs.by_id.values() {
            if !j.name.starts_with(&cluster) || job_phase(&j.state) == JobPhase::Ended {
                continue;
            }
            let claimed = claims.iter().any(|(prefix, recorded)| {
                j.name.starts_with(prefix.as_str()) && recorded.is_none_or(|id| id == j.id)
            });
            if claimed {
                continue;
            }
            seen.insert(j.id);
            let first_seen = *self
                .orphans
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .entry(j.id)
                .or_insert_with(Instant::now);
            // At most REAP_MAX_CANCELS a pass: a flood of jobs named like
            // ours (anyone can) costs the reaper bounded time; the rest wait
            // for the next pass.
            if first_seen.elapsed() < REAP_MIN_AGE || cancelled >= REAP_MAX_CANCELS {
                continue;
            }
            cancelled += 1;
            tracing::warn!(job = j.id, name = %j.name, "cancelling a Slurm job that no server owns");
            if let Some(t) = j.token_id() {
                revoke.revoke(t).await;
            }
            if let Err(e) = self.cancel(j.id, Duration::ZERO).await {
                tracing::warn!(job = j.id, error = %e, "could not cancel a job nobody owns");
            }
        }
        self.orphans
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|id, _| seen.contains(id));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_states_as_data() {
        let cases = [
            ("PENDING", JobPhase::Waiting),
            ("CONFIGURING", JobPhase::Waiting),
            ("RUNNING", JobPhase::Running),
            ("COMPLETING", JobPhase::Running),
            ("COMPLETED", JobPhase::Ended),
            ("TIMEOUT", JobPhase::Ended),
            ("NODE_FAIL", JobPhase::Ended),
            ("CANCELLED by 0", JobPhase::Ended),
            ("FAILED", JobPhase::Ended),
            ("OUT_OF_MEMORY", JobPhase::Ended),
            ("PREEMPTED", JobPhase::Ended),
            // A state a newer Slurm adds never ends a server.
            ("SOMETHING_NEW", JobPhase::Waiting),
            ("SUSPENDED", JobPhase::Waiting),
        ];
        for (state, want) in cases {
            assert_eq!(job_phase(state), want, "{state}");
        }
    }

    #[test]
    fn squeue_lines_are_read_or_skipped() {
        let out = "12|RUNNING|c1|None|2001|qh.c.alice..g1.ab|qh-token=t1,qh-port=40001\n\
                   13|PENDING|n/a|Resources|2002|qh.c.bob..g2.cd|qh-token=t2,qh-port=40002\n\
                   garbage\n\
                   14|TIMEOUT|c2|TimeLimit|2003|other|job|(null)\n";
        let (jobs, skipped) = parse_squeue(out);
        assert_eq!(skipped, 1);
        let got: Vec<String> = jobs
            .iter()
            .map(|j| {
                format!(
                    "{} {} {:?} {:?} {} {:?} {:?} {}",
                    j.id,
                    j.state,
                    j.batch_host,
                    j.uid,
                    j.name,
                    j.token_id(),
                    j.port(),
                    describe(j)
                )
            })
            .collect();
        // A '|' in a name garbles only that job's own comment.
        assert_eq!(
            got,
            [
                "12 RUNNING Some(\"c1\") Some(2001) qh.c.alice..g1.ab Some(\"t1\") Some(40001) RUNNING",
                "13 PENDING None Some(2002) qh.c.bob..g2.cd Some(\"t2\") Some(40002) PENDING (Resources)",
                "14 TIMEOUT Some(\"c2\") Some(2003) other None None TIMEOUT (TimeLimit)",
            ]
        );
    }

    #[test]
    fn a_listing_with_unreadable_or_repeated_lines_proves_no_job_gone() {
        let whole = Jobs::parse("12|RUNNING|c1|None|2001|n|c\n13|PENDING|n/a|None|2001|n|c\n");
        assert!(whole.complete);
        assert_eq!(whole.by_id.len(), 2);
        // A comment with a line break forging a second line for job 12.
        let forged = Jobs::parse(
            "12|RUNNING|c1|None|2001|n|c\n13|RUNNING|c1|None|2666|x|evil\n12|COMPLETED|c1|None|2666|x|y\n",
        );
        assert!(!forged.complete);
        assert!(!forged.by_id.contains_key(&12), "a repeated id is left out");
        assert!(forged.by_id.contains_key(&13));
        let garbled = Jobs::parse("12|RUNNING|c1|None|2001|n|c\nnot a job line\n");
        assert!(!garbled.complete);
        assert!(Jobs::parse("").complete, "no jobs at all is a whole answer");
    }

    #[test]
    fn the_job_script_quotes_everything() {
        let env = BTreeMap::from([
            (
                "JUPYTERHUB_API_TOKEN".to_string(),
                "a'b $HOME `id`".to_string(),
            ),
            ("bad name".to_string(), "dropped".to_string()),
        ]);
        let script = job_script(
            &env,
            &["/usr/local/bin/quorumhub".into(), "single user".into()],
        );
        assert_eq!(
            script,
            "#!/bin/sh\n# A quorumhub single-user server.\nexport JUPYTERHUB_API_TOKEN='a'\\''b $HOME `id`'\nexec '/usr/local/bin/quorumhub' 'single user'\n"
        );
    }

    #[test]
    fn sbatch_arguments_come_from_the_request_only() {
        let req = JobRequest {
            partition: Some("gpu".into()),
            account: Some("physics".into()),
            time_limit: Some("1:00:00".into()),
            gres: Some("gpu:1".into()),
            cpus: Some(2),
            mem_mb: Some(2048),
        };
        let args = sbatch_args(
            "qh.c.a..g1.x",
            "qh-token=t,qh-port=40000",
            &req,
            "/tmp/o-%j",
            Some((1001, 1001)),
            "/home/a",
        );
        assert_eq!(
            args.join(" "),
            "--parsable --job-name=qh.c.a..g1.x --comment=qh-token=t,qh-port=40000 --export=ALL --no-requeue --nodes=1 --ntasks=1 --output=/tmp/o-%j --chdir=/home/a --uid=1001 --gid=1001 --partition=gpu --account=physics --time=1:00:00 --gres=gpu:1 --cpus-per-task=2 --mem=2048M"
        );
        let plain = sbatch_args("n", "c", &JobRequest::default(), "o", None, "/tmp");
        assert!(!plain
            .iter()
            .any(|a| a.starts_with("--uid") || a.starts_with("--partition")));
    }

    #[test]
    fn flags_and_profile_values_as_data() {
        for (s, ok) in [
            ("60", true),
            ("1:00:00", true),
            ("1-00:00", true),
            ("2-12", true),
            ("0", false),
            ("0:00:00", false),
            ("1h", false),
            ("", false),
            ("1:2:3:4", false),
            ("--x", false),
        ] {
            assert_eq!(check_time_limit(s).is_ok(), ok, "{s:?}");
        }
        for (s, ok) in [
            ("gpu", true),
            ("gpu:a100:2", true),
            ("a b", false),
            ("x;id", false),
            ("", false),
            ("a=b", false),
            ("--uid", true),
        ] {
            // "--uid" is harmless here: a word is always the value of one
            // `--partition=` style argument, never an option of its own.
            assert_eq!(check_word(s).is_ok(), ok, "{s:?}");
        }
        assert_eq!(parse_port_range("40000-49999"), Ok((40000, 49999)));
        assert!(parse_port_range("80-90").is_err());
        assert!(parse_port_range("5000-4000").is_err());
        assert!(parse_port_range("x").is_err());
    }

    #[test]
    fn node_addresses_are_read_from_scontrol() {
        let out = "NodeName=c1 Arch=x86_64 CoresPerSocket=1 NodeAddr=10.233.0.11 NodeHostName=c1 Version=22.05.8\n";
        assert_eq!(parse_node_addr(out).as_deref(), Some("10.233.0.11"));
        assert_eq!(parse_node_addr("NodeName=c1 NodeAddr=(null)"), None);
    }
}
