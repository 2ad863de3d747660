//! Start, find and stop local processes that outlive the hub that started
//! them.
//!
//! A process is identified by `(pid, proc_start)`: `proc_start` is the start
//! time the kernel reports in field 22 of `/proc/<pid>/stat` (clock ticks
//! since boot), so a later process that happens to reuse the pid is never
//! mistaken for it, and never signalled.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use tokio::time::Instant;

use crate::account::RunAs;
use crate::SpawnError;

/// Variables a spawned process inherits from the hub; everything else comes
/// from [`ProcessSpec::env`]. The environment is cleared first, so nothing
/// else of the hub's (its secrets, if it was given any by environment)
/// reaches a server.
pub const INHERITED_ENV: &[&str] = &["PATH", "HOME", "LANG"];

/// Variables never handed to a server, whatever [`ProcessSpec::env`] or a
/// container's environment says: the hub's own configuration, which may
/// hold the cluster secret or the admin token.
pub fn is_hub_only_env(key: &str) -> bool {
    key.starts_with("QUORUMHUB_")
}

/// How to start one process.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProcessSpec {
    /// Program and arguments; the program is looked up on the hub's `PATH`.
    pub cmd: Vec<String>,
    /// The complete extra environment, on top of [`INHERITED_ENV`] (which it
    /// overrides).
    pub env: BTreeMap<String, String>,
    /// Working directory; `None` = the hub's.
    pub cwd: Option<PathBuf>,
    /// File that stdout and stderr are appended to (created if missing,
    /// mode 0600, owned by [`ProcessSpec::run_as`] when that is set; a
    /// symbolic link is refused); `None` = `/dev/null`.
    pub log_path: Option<PathBuf>,
    /// The account the process runs as (`setgroups`, `setgid`, `setuid`
    /// before `exec`; the hub must be root); `None` = the hub's own user.
    pub run_as: Option<RunAs>,
}

/// A started process, as it should be recorded to find it again.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Spawned {
    pub pid: u32,
    /// Field 22 of `/proc/<pid>/stat`: start time in clock ticks since boot.
    pub proc_start: u64,
    /// [`host_name`] of the machine it runs on.
    pub host: String,
}

/// Starts `spec` in a new session (so a new process group whose id is its
/// pid), detached from the hub: it keeps running when the hub exits, and no
/// signal sent to the hub's group reaches it. Stdin is `/dev/null`.
///
/// The environment is the hub's `PATH`, `HOME` and `LANG` plus `spec.env`,
/// without any `QUORUMHUB_*` variable ([`is_hub_only_env`]). With
/// `spec.run_as`, the child takes that account's groups, gid and uid (in
/// that order) before `exec`, and the spawn fails if it cannot.
/// The hub still reaps the process when it exits (a small background thread
/// per process waits for it), so no zombies pile up.
pub fn spawn_process(spec: &ProcessSpec) -> Result<Spawned, SpawnError> {
    let Some((program, args)) = spec.cmd.split_first() else {
        return Err(SpawnError::EmptyCommand);
    };
    if program.is_empty() {
        return Err(SpawnError::EmptyCommand);
    }
    let mut cmd = Command::new(program);
    cmd.args(args).env_clear();
    for key in INHERITED_ENV {
        if let Some(v) = std::env::var_os(key) {
            cmd.env(key, v);
        }
    }
    cmd.envs(spec.env.iter().filter(|(k, _)| !is_hub_only_env(k)));
    if let Some(cwd) = &spec.cwd {
        if !cwd.is_dir() {
            return Err(SpawnError::Cwd { path: cwd.clone() });
        }
        cmd.current_dir(cwd);
    }
    cmd.stdin(Stdio::null());
    match &spec.log_path {
        Some(path) => {
            let log =
                open_log(path, spec.run_as.as_ref()).map_err(|source| SpawnError::LogFile {
                    path: path.clone(),
                    source,
                })?;
            let err = log.try_clone().map_err(|source| SpawnError::LogFile {
                path: path.clone(),
                source,
            })?;
            cmd.stdout(log).stderr(err);
        }
        None => {
            cmd.stdout(Stdio::null()).stderr(Stdio::null());
        }
    }
    let run_as = spec.run_as.clone();
    // SAFETY: setsid(2), setgroups(2), setgid(2), setuid(2) and getuid(2)
    // are async-signal-safe and only read memory allocated before the fork
    // (`run_as`). setsid cannot fail in a freshly forked child, which is
    // never a process group leader, but the error is reported if it does.
    unsafe {
        cmd.pre_exec(move || {
            if libc::setsid() == -1 {
                return Err(io::Error::last_os_error());
            }
            if let Some(who) = &run_as {
                // Groups first, then the gid, then the uid: each needs the
                // privilege the next step gives up.
                if libc::setgroups(who.groups.len(), who.groups.as_ptr()) == -1
                    || libc::setgid(who.gid) == -1
                    || libc::setuid(who.uid) == -1
                {
                    return Err(io::Error::last_os_error());
                }
                // Root gives up every uid with setuid; make sure.
                if libc::getuid() != who.uid
                    || libc::geteuid() != who.uid
                    || libc::getegid() != who.gid
                {
                    return Err(io::Error::from_raw_os_error(libc::EPERM));
                }
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().map_err(|source| match &spec.run_as {
        Some(who) => SpawnError::SpawnAs {
            program: program.clone(),
            uid: who.uid,
            source,
        },
        None => SpawnError::Spawn {
            program: program.clone(),
            source,
        },
    })?;
    let pid = child.id();
    // Read before the reaper starts: until the child is waited for, its
    // /proc entry exists even if it has already exited.
    let stat = match read_stat(pid) {
        Ok(stat) => stat,
        Err(source) => {
            // Untrackable: do not leave it running.
            let _ = child.kill();
            let _ = child.wait();
            return Err(SpawnError::ProcStat { pid, source });
        }
    };
    let reaper = std::thread::Builder::new()
        .name(format!("reap-{pid}"))
        .stack_size(64 * 1024)
        .spawn(move || match child.wait() {
            Ok(status) => tracing::info!(pid, %status, "spawned process exited"),
            Err(e) => tracing::warn!(pid, error = %e, "cannot wait for spawned process"),
        });
    if let Err(e) = reaper {
        tracing::warn!(pid, error = %e, "cannot start a thread to reap the process; it will be a zombie after it exits");
    }
    tracing::info!(pid, program = %program, "spawned process");
    Ok(Spawned {
        pid,
        proc_start: stat.start_time,
        host: host_name(),
    })
}

fn open_log(path: &std::path::Path, owner: Option<&RunAs>) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)?;
    if let Some(who) = owner {
        std::os::unix::fs::fchown(&file, Some(who.uid), Some(who.gid))?;
        file.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
    }
    Ok(file)
}

/// Whether process `pid` is running and is the one that started at
/// `proc_start` (not a later process reusing the pid). Zombies (exited, not
/// yet reaped) count as not alive. Works for any process the hub's user can
/// see, not only its own children.
pub fn is_alive(pid: u32, proc_start: u64) -> bool {
    let Ok(pid_t) = libc::pid_t::try_from(pid) else {
        return false;
    };
    if pid_t <= 0 {
        return false;
    }
    match read_stat(pid) {
        Ok(stat) if stat.start_time == proc_start && !stat.is_dead() => {}
        _ => return false,
    }
    // SAFETY: signal 0 only checks that the process exists.
    let rc = unsafe { libc::kill(pid_t, 0) };
    rc == 0 || io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// Stops the process `(pid, proc_start)` and its process group: SIGTERM to
/// the group, then SIGKILL to the group if the process or any other live
/// member of its group is still there after `grace`. `Ok` as soon as they
/// are gone, and at once if the process is already gone (or the pid now
/// belongs to a different process, which is never signalled). A process
/// that does not lead its own group (not started by [`spawn_process`]) is
/// signalled alone.
///
/// The process need not be a child of this hub (adoption after fail-over).
pub async fn stop_process(pid: u32, proc_start: u64, grace: Duration) -> Result<(), SpawnError> {
    let stat = match read_stat(pid) {
        Ok(stat) if is_alive(pid, proc_start) => stat,
        _ => {
            tracing::debug!(pid, "stop: process already gone");
            return Ok(());
        }
    };
    let target = Target::of(pid, &stat)?;
    tracing::info!(
        pid,
        grace_ms = grace.as_millis() as u64,
        ?target,
        "stopping with SIGTERM"
    );
    match target.signal(libc::SIGTERM) {
        Ok(()) => {}
        // Exited (and was reaped) since the check.
        Err(SpawnError::Signal { source, .. }) if source.raw_os_error() == Some(libc::ESRCH) => {
            return Ok(())
        }
        Err(e) => return Err(e),
    }
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if target.gone(proc_start) {
            return Ok(());
        }
        tokio::time::sleep(POLL).await;
    }
    if target.gone(proc_start) {
        return Ok(());
    }
    tracing::warn!(
        pid,
        ?target,
        "still running {grace:?} after SIGTERM; sending SIGKILL"
    );
    // It may be gone between the check and here.
    match target.signal(libc::SIGKILL) {
        Ok(()) => {}
        Err(SpawnError::Signal { source, .. }) if source.raw_os_error() == Some(libc::ESRCH) => {}
        Err(e) => return Err(e),
    }
    let deadline = Instant::now() + AFTER_KILL;
    loop {
        // After SIGKILL only the process itself is waited for: members of
        // its group may stay zombies until whoever adopted them reaps them.
        if !is_alive(pid, proc_start) {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(SpawnError::StillRunning {
                pid,
                waited: grace + AFTER_KILL,
            });
        }
        tokio::time::sleep(POLL).await;
    }
}

const POLL: Duration = Duration::from_millis(50);
const AFTER_KILL: Duration = Duration::from_secs(5);

/// What [`stop_process`] signals.
#[derive(Clone, Copy, Debug)]
enum Target {
    /// The process leads its group (id = its pid): signal the whole group.
    Group { pid: u32, pgid: libc::pid_t },
    /// The process is in someone else's group: signal it alone.
    Process { pid: u32, raw: libc::pid_t },
}

impl Target {
    fn of(pid: u32, stat: &Stat) -> Result<Self, SpawnError> {
        let raw = libc::pid_t::try_from(pid).map_err(|_| SpawnError::Signal {
            pid,
            source: io::Error::from_raw_os_error(libc::ESRCH),
        })?;
        Ok(if stat.pgrp == i64::from(raw) {
            Target::Group { pid, pgid: raw }
        } else {
            Target::Process { pid, raw }
        })
    }

    /// Sends `sig`. Only called after `is_alive(pid, proc_start)` held, or
    /// while members of the group are left after its leader exited: in both
    /// cases the id cannot have been reused, since Linux does not hand out a
    /// pid that is still in use as a process or process group id.
    fn signal(self, sig: libc::c_int) -> Result<(), SpawnError> {
        let (pid, raw) = match self {
            Target::Group { pid, pgid } => (pid, -pgid),
            Target::Process { pid, raw } => (pid, raw),
        };
        // SAFETY: plain kill(2); a negative id means a process group.
        if unsafe { libc::kill(raw, sig) } == 0 {
            return Ok(());
        }
        Err(SpawnError::Signal {
            pid,
            source: io::Error::last_os_error(),
        })
    }

    /// True once the process is gone and, for a group, no live (non-zombie)
    /// member is left in it.
    fn gone(self, proc_start: u64) -> bool {
        match self {
            Target::Process { pid, .. } => !is_alive(pid, proc_start),
            Target::Group { pid, pgid } => {
                if is_alive(pid, proc_start) {
                    return false;
                }
                // SAFETY: signal 0 only checks whether the group has members.
                if unsafe { libc::kill(-pgid, 0) } != 0 {
                    return true;
                }
                // Members (maybe zombies only) remain; look for live ones.
                !live_group_members(pgid)
            }
        }
    }
}

fn live_group_members(pgid: libc::pid_t) -> bool {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return false;
    };
    dir.filter_map(Result::ok)
        .filter_map(|d| d.file_name().to_str().and_then(|n| n.parse::<u32>().ok()))
        .filter_map(|p| read_stat(p).ok())
        .any(|s| i64::from(pgid) == s.pgrp && !s.is_dead())
}

/// The fields of `/proc/<pid>/stat` this crate uses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Stat {
    /// Field 3: `R`, `S`, `D`, `Z`, `X`, ...
    pub state: char,
    /// Field 5.
    pub pgrp: i64,
    /// Field 22, clock ticks since boot.
    pub start_time: u64,
}

impl Stat {
    fn is_dead(&self) -> bool {
        matches!(self.state, 'Z' | 'X' | 'x')
    }
}

pub(crate) fn read_stat(pid: u32) -> io::Result<Stat> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    parse_stat(&text).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("unexpected /proc/{pid}/stat format"),
        )
    })
}

/// Parses `pid (comm) state ppid pgrp ... starttime ...`; `comm` may contain
/// spaces and parentheses, so fields are counted from the last `)`.
pub(crate) fn parse_stat(text: &str) -> Option<Stat> {
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // fields[0] is field 3 (state), so field N is fields[N - 3].
    let state = fields.first()?.chars().next()?;
    let pgrp = fields.get(5 - 3)?.parse().ok()?;
    let start_time = fields.get(22 - 3)?.parse().ok()?;
    Some(Stat {
        state,
        pgrp,
        start_time,
    })
}

/// A free TCP port on 127.0.0.1 (bound, read and released; another process
/// could take it before it is used).
pub fn pick_free_port() -> io::Result<u16> {
    let listener = std::net::TcpListener::bind(("127.0.0.1", 0))?;
    Ok(listener.local_addr()?.port())
}

/// This machine's host name (`gethostname(2)`), or `localhost` if it has none.
pub fn host_name() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname NUL-terminates
    // unless truncated, which the search for NUL below tolerates.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc == 0 {
        let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
        let name = String::from_utf8_lossy(&buf[..end]).trim().to_owned();
        if !name.is_empty() {
            return name;
        }
    }
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_owned())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_awkward_comm() {
        let line = "4242 (we ird) (x) S 1 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 10 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0\n";
        assert_eq!(
            parse_stat(line),
            Some(Stat {
                state: 'S',
                pgrp: 4242,
                start_time: 987654
            })
        );
        assert_eq!(parse_stat("1 (x) Z"), None);
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn reads_own_stat() {
        let me = read_stat(std::process::id()).expect("own /proc stat");
        assert!(me.start_time > 0);
        assert!(is_alive(std::process::id(), me.start_time));
        assert!(!is_alive(std::process::id(), me.start_time + 1));
        assert!(!is_alive(0, me.start_time));
        assert!(!is_alive(u32::MAX, me.start_time));
    }

    #[test]
    fn free_port_and_host_name() {
        let port = pick_free_port().expect("a free port");
        assert_ne!(port, 0);
        assert!(!host_name().is_empty());
    }

    #[test]
    fn empty_command_is_refused() {
        let spec = ProcessSpec::default();
        assert!(matches!(
            spawn_process(&spec),
            Err(SpawnError::EmptyCommand)
        ));
    }
}
