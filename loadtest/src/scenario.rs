//! Scenario runner: queue a scenario's messages into Herald's ingest streams,
//! follow their outcomes on `herald:events`, report throughput and latency.
//!
//! A run, top to bottom:
//! 1. note where `herald:events` ends, and start following it from there;
//! 2. start Herald if the scenario asks for it (after the fill when
//!    `start_after_fill`); a mock provider, if asked for, runs from the start;
//! 3. queue every message, paced to `load.rate`;
//! 4. wait up to `wait.timeout_secs` for every message's decision;
//! 5. stop Herald, build the [`Report`].
//!
//! Only the Redis contracts (docs/contracts.md#ingest, docs/contracts.md#outcomes) are used, so the runner works
//! against any Herald build, or against a stand-in in tests.
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use redis::AsyncConnectionConfig;
use redis::aio::MultiplexedConnection;
use tokio::sync::watch;

mod config;
mod follow;
mod herald;
mod messages;
mod report;
mod resp;

pub use config::{
    HeraldSection, LoadSection, MockSection, RedisSection, Scenario, WaitSection, env,
};
pub use follow::{EVENTS_STREAM, Status};
pub use messages::{
    MAX_RECIPIENTS, fnv1a64, id_prefix, partition_of, recipient_number, stream_name,
};
pub use report::{LatencySummary, Report};

use crate::mock::{MockProvider, MockSettings};
use follow::Outcomes;
use herald::HeraldProcess;
use messages::MessageEncoder;

/// The queueing connection waits this long for a pipeline's replies; the
/// redis crate's 500 ms default is too short for 500 XADDs on a busy server.
const QUEUE_RESPONSE_TIMEOUT: Duration = Duration::from_secs(30);

/// The follower's `XREAD BLOCK` holds a request open for a second; the
/// default 500 ms response timeout would fail every idle read.
const FOLLOW_RESPONSE_TIMEOUT: Duration = Duration::from_secs(30);

/// `herald-loadtest run SCENARIO`: loads the file, runs it, prints the
/// report. Fails when a message got no decision or Herald died.
pub async fn run_file(path: &Path) -> anyhow::Result<()> {
    let scenario = Scenario::load(path, |name| std::env::var(name).ok())?;
    let report = run(scenario).await?;
    println!("{report}");
    report.check()
}

/// Runs a scenario, drawing progress on stderr when it is a terminal.
pub async fn run(scenario: Scenario) -> anyhow::Result<Report> {
    run_with(scenario, MultiProgress::new()).await
}

/// Runs a scenario, drawing progress into `progress` (tests pass a hidden
/// one). The report says what is missing; it is not an error here.
pub async fn run_with(scenario: Scenario, progress: MultiProgress) -> anyhow::Result<Report> {
    scenario.validate()?;
    let run_id = new_run_id();
    let prefix = id_prefix(&run_id);
    let messages = scenario.load.messages;
    tracing::info!(scenario = %scenario.name, run = %run_id, messages, "starting run");

    // 10k+ concurrent sends need as many sockets, in the mock (this process)
    // and in Herald (which inherits the limit). Best effort: a low hard limit
    // shows up as connection errors in the report, not as a failed start.
    if let Err(e) = rlimit::increase_nofile_limit(u64::MAX) {
        tracing::warn!(error = %e, "could not raise the open-file limit");
    }

    // The mock first: nothing else is running yet if its port is taken.
    let mock = match &scenario.mock {
        Some(section) => Some(start_mock(section).await?),
        None => None,
    };

    let client = redis::Client::open(scenario.redis.url.as_str())
        .with_context(|| format!("redis.url: {}", scenario.redis.url))?;
    let queue_conn = connect(&client, QUEUE_RESPONSE_TIMEOUT).await?;
    let mut follow_conn = connect(&client, FOLLOW_RESPONSE_TIMEOUT).await?;

    // 1. Follow from the current end, so earlier runs' events are skipped and
    //    nothing of this run can be written before the follower's start.
    let from = follow::last_event_id(&mut follow_conn)
        .await
        .context("reading herald:events")?;
    let queued_bar = progress.add(bar(messages, "queued"));
    let decided_bar = progress.add(bar(messages, "decided"));
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut follower = tokio::spawn(follow::follow(
        follow_conn,
        client.get_connection_info().clone(),
        from,
        prefix.clone(),
        messages,
        stop_rx,
        decided_bar.clone(),
    ));

    let herald_defaults = [
        ("HERALD_REDIS__URL", scenario.redis.url.clone()),
        (
            "HERALD_QUEUE__PARTITIONS",
            scenario.redis.partitions.to_string(),
        ),
    ];
    let spawn_herald = |after_fill: bool| -> anyhow::Result<Option<HeraldProcess>> {
        match &scenario.herald {
            Some(h) if h.start_after_fill == after_fill => {
                HeraldProcess::spawn(h, &herald_defaults).map(Some)
            }
            _ => Ok(None),
        }
    };
    // 2. Herald now, unless it is to find a full backlog.
    let mut herald = match spawn_herald(false) {
        Ok(herald) => herald,
        Err(e) => {
            follower.abort();
            return Err(e);
        }
    };

    // 3. Queue.
    let mut enqueued_at_ms = vec![0u64; messages as usize];
    let mut encoder = MessageEncoder::new(&run_id, &scenario.load, scenario.redis.partitions);
    let fill = messages::fill(
        &queue_conn,
        &mut encoder,
        &scenario.load,
        scenario.redis.partitions,
        &mut enqueued_at_ms,
        &queued_bar,
    )
    .await;
    let fill = match fill {
        Ok(fill) => fill,
        Err(e) => {
            let _ = stop_tx.send(true);
            follower.abort();
            if let Some(h) = herald.take() {
                h.stop().await;
            }
            return Err(e.context("queueing messages"));
        }
    };
    queued_bar.finish();
    // What the rest of the machine spends while Herald drains.
    let cpu_from = (redis_cpu(&queue_conn).await, herald::cpu_seconds("self"));
    tracing::info!(
        rate = %format!("{:.0}/s", messages as f64 / fill.elapsed.as_secs_f64().max(1e-9)),
        "all messages queued"
    );
    if herald.is_none() {
        herald = match spawn_herald(true) {
            Ok(herald) => herald,
            Err(e) => {
                follower.abort();
                return Err(e);
            }
        };
    }

    // 4. Wait for the decisions, the deadline, or Herald dying.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(scenario.wait.timeout_secs);
    let mut herald_exit = None;
    let finished_early = tokio::select! {
        joined = &mut follower => Some(joined),
        () = tokio::time::sleep_until(deadline) => None,
        exit = async { herald.as_mut().expect("guarded").exited().await }, if herald.is_some() => {
            herald_exit = Some(exit);
            None
        }
    };
    let outcomes = match finished_early {
        Some(joined) => joined,
        None => {
            // Read what is already written, then stop.
            let _ = stop_tx.send(true);
            follower.await
        }
    };
    decided_bar.finish();
    let cpu_to = (redis_cpu(&queue_conn).await, herald::cpu_seconds("self"));
    let delta = |a: Option<f64>, b: Option<f64>| Some(b? - a?);
    let cpu_after_fill = (delta(cpu_from.0, cpu_to.0), delta(cpu_from.1, cpu_to.1));

    // 5. Stop Herald (gracefully, even if following failed) and report.
    let herald_died = herald_exit.is_some();
    if let Some(h) = herald.take() {
        herald_exit = Some(h.stop().await);
    }
    let outcomes: Outcomes = outcomes
        .context("the events follower panicked")?
        .context("following herald:events")?;
    let mut report = Report::build(
        scenario.name.clone(),
        run_id,
        &prefix,
        fill,
        &enqueued_at_ms,
        &outcomes,
    );
    if let Some(mock) = mock {
        report.mock = Some(mock.stats());
        mock.shutdown().await;
    }
    report.cpu_after_fill = Some(cpu_after_fill);
    report.herald_exit = herald_exit;
    report.herald_died = herald_died;
    Ok(report)
}

async fn connect(
    client: &redis::Client,
    timeout: Duration,
) -> anyhow::Result<MultiplexedConnection> {
    let config = AsyncConnectionConfig::new().set_response_timeout(Some(timeout));
    client
        .get_multiplexed_async_connection_with_config(&config)
        .await
        .with_context(|| {
            format!(
                "connecting to redis at {:?}",
                client.get_connection_info().addr()
            )
        })
}

async fn start_mock(section: &MockSection) -> anyhow::Result<MockProvider> {
    let mut settings = MockSettings {
        latency: Duration::from_millis(section.latency_ms),
        error_rate: section.error_rate,
        rate_limit_rate: section.rate_limit_rate,
        server_error_rate: section.server_error_rate,
        drop_rate: section.drop_rate,
        slow_rate: section.slow_rate,
        slow_delay: Duration::from_millis(section.slow_ms),
        status_callbacks: section.status_callbacks,
        callback_delay: Duration::from_millis(section.callback_delay_ms),
        undelivered_rate: section.undelivered_rate,
        // A load run sends far too much to keep every request.
        record: false,
        ..MockSettings::default()
    };
    settings
        .validate()
        .map_err(|e| anyhow::anyhow!("[mock]: {e}"))?;
    if let Some(sid) = &section.account_sid {
        settings.account_sid = sid.clone();
    }
    if let Some(token) = &section.auth_token {
        settings.auth_token = token.clone();
    }
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], section.port));
    let mock = MockProvider::start(addr, settings)
        .await
        .with_context(|| format!("mock.port: starting the mock provider on {addr}"))?;
    tracing::info!(url = %mock.base_url(), "mock provider started");
    Ok(mock)
}

fn bar(len: u64, label: &'static str) -> ProgressBar {
    let style = ProgressStyle::with_template(
        "{prefix:>8} [{bar:40}] {pos}/{len} {per_sec:>14} {elapsed_precise}",
    )
    .expect("the template is valid")
    .progress_chars("=> ");
    ProgressBar::new(len).with_style(style).with_prefix(label)
}

/// Eight random hex digits: unique enough that two runs' ids never meet.
fn new_run_id() -> String {
    format!("{:08x}", rand::random::<u32>())
}

/// Milliseconds since the Unix epoch, the unit of the events' `ts`.
fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Redis's CPU seconds so far (`INFO cpu`: used_cpu_sys + used_cpu_user).
async fn redis_cpu(conn: &redis::aio::MultiplexedConnection) -> Option<f64> {
    let info: String = redis::cmd("INFO")
        .arg("cpu")
        .query_async(&mut conn.clone())
        .await
        .ok()?;
    cpu_of_info(&info)
}

/// used_cpu_sys + used_cpu_user of an `INFO cpu` reply (not the
/// `_children` or `_main_thread` lines).
fn cpu_of_info(info: &str) -> Option<f64> {
    let field = |name: &str| {
        info.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
            .and_then(|v| v.trim().parse::<f64>().ok())
    };
    Some(field("used_cpu_sys")? + field("used_cpu_user")?)
}

#[cfg(test)]
mod tests {
    #[test]
    fn redis_cpu_is_sys_plus_user_of_the_server_only() {
        let info = "# CPU\r\nused_cpu_sys_children:9.0\r\nused_cpu_sys:1.25\r\n\
                    used_cpu_user_children:7.0\r\nused_cpu_user:2.5\r\n\
                    used_cpu_sys_main_thread:1.0\r\n";
        assert_eq!(super::cpu_of_info(info), Some(3.75));
        assert_eq!(super::cpu_of_info("# CPU\r\n"), None);
    }
}
