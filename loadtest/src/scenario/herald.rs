//! Running Herald as a child process for the length of a run.
use std::process::Stdio;
use std::time::Duration;

use anyhow::Context;
use tokio::process::{Child, Command};

use super::config::HeraldSection;

/// How long Herald gets to drain and exit after SIGTERM before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(30);

/// A spawned Herald. Dropping it kills the process (a run that fails half
/// way must not leave a daemon behind); [`HeraldProcess::stop`] ends it
/// gracefully.
pub struct HeraldProcess {
    child: Child,
    log: String,
}

impl HeraldProcess {
    /// Spawns `section.command` with this process's environment, plus
    /// `defaults` where neither this environment nor `section.env` sets the
    /// variable, plus `section.env`. stdout and stderr go to `section.log`.
    pub fn spawn(section: &HeraldSection, defaults: &[(&str, String)]) -> anyhow::Result<Self> {
        let log = std::fs::File::create(&section.log)
            .with_context(|| format!("herald.log: creating {}", section.log))?;
        let log_err = log
            .try_clone()
            .context("herald.log: duplicating the log handle")?;
        let mut command = Command::new(&section.command);
        command
            .args(&section.args)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .kill_on_drop(true);
        for (key, value) in defaults {
            if std::env::var_os(key).is_none() && !section.env.contains_key(*key) {
                command.env(key, value);
            }
        }
        command.envs(&section.env);
        let child = command.spawn().with_context(|| {
            format!(
                "herald.command: starting {} {}",
                section.command,
                section.args.join(" ")
            )
        })?;
        tracing::info!(pid = child.id(), log = %section.log, "herald started");
        Ok(Self {
            child,
            log: section.log.clone(),
        })
    }

    /// Waits until Herald exits on its own; describes how it ended.
    pub async fn exited(&mut self) -> String {
        match self.child.wait().await {
            Ok(status) => format!("{status}; log {}", self.log),
            Err(e) => format!("waiting for it failed: {e}; log {}", self.log),
        }
    }

    /// Sends SIGTERM, waits up to 30 s for a graceful exit, then kills.
    /// Returns how it ended.
    pub async fn stop(mut self) -> String {
        if let Ok(Some(status)) = self.child.try_wait() {
            return format!("{status}; log {}", self.log);
        }
        if let Some(pid) = self.child.id() {
            let peak = format!("{}; {}", peak_rss(pid), cpu_time(pid));
            // No signal API without unsafe or an extra crate; kill(1) is on
            // every system this runs on.
            let sent = Command::new("kill")
                .arg("-TERM")
                .arg(pid.to_string())
                .status()
                .await
                .is_ok_and(|s| s.success());
            if sent
                && let Ok(Ok(status)) = tokio::time::timeout(STOP_GRACE, self.child.wait()).await
            {
                return format!("{status} after SIGTERM; {peak}; log {}", self.log);
            }
        }
        let _ = self.child.kill().await;
        format!(
            "killed (did not exit within {}s of SIGTERM); log {}",
            STOP_GRACE.as_secs(),
            self.log
        )
    }
}

/// Herald's CPU time so far: with `start_after_fill` that is the drain's
/// cost, the figure to compare builds by on a machine whose speed drifts.
fn cpu_time(pid: u32) -> String {
    cpu_seconds(&pid.to_string())
        .map_or_else(|| "CPU unknown".to_string(), |s| format!("CPU {s:.2} s"))
}

/// CPU seconds a process (`"self"` or a pid) has used: Linux
/// `/proc/<pid>/stat` utime + stime, in USER_HZ = 100 ticks a second.
pub(super) fn cpu_seconds(pid: &str) -> Option<f64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the `(comm)`, which may itself hold spaces.
    let rest = &s[s.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let utime = f.get(11)?.parse::<u64>().ok()?;
    let stime = f.get(12)?.parse::<u64>().ok()?;
    Some((utime + stime) as f64 / 100.0)
}

/// Herald's peak resident memory (Linux `VmHWM`), read just before it is
/// stopped: the figure the concurrency scenario is judged by.
fn peak_rss(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map_or_else(
            || "peak RSS unknown".to_string(),
            |kb| format!("peak RSS {} MiB", kb / 1024),
        )
}
