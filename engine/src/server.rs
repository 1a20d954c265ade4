//! `herald serve`: connect, start every task, run until shutdown, drain.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use metrics_exporter_prometheus::PrometheusHandle;
use redis::aio::ConnectionManagerConfig;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::dispatch::{self, Dispatcher};
use crate::http::{self, HttpState};
use crate::keys;
use crate::providers::Providers;
use crate::queue::{self, Conn};
use crate::telemetry::{self, names};

/// Open a reconnecting connection. `response_timeout` must exceed any
/// blocking read made on it: redis 1.x times out a read after 500 ms unless
/// told otherwise.
pub async fn connect(cfg: &Config, response_timeout: Duration) -> anyhow::Result<Conn> {
    let client = redis::Client::open(cfg.redis_url.as_str())?;
    let mcfg = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(cfg.redis_connect_timeout))
        .set_response_timeout(Some(response_timeout))
        .set_number_of_retries(2)
        .set_max_delay(Duration::from_secs(2));
    let conn = tokio::time::timeout(
        cfg.redis_connect_timeout + Duration::from_secs(1),
        redis::aio::ConnectionManager::new_with_config(client, mcfg),
    )
    .await
    .map_err(|_| anyhow::anyhow!("connecting to Redis at {} timed out", cfg.redis_url))??;
    Ok(conn)
}

/// Run Herald until `shutdown` is cancelled, then drain: stop reading, let
/// in-flight sends finish within `dispatch.shutdown_grace_ms`, record their
/// outcomes, return. Whatever is unfinished stays pending in Redis for
/// another instance.
pub async fn run(
    cfg: Config,
    metrics: Option<PrometheusHandle>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    raise_open_file_limit();
    let providers = Providers::from_config(&cfg)?;
    let mut admin = connect(&cfg, cfg.redis_response_timeout)
        .await
        .map_err(|e| anyhow::anyhow!("redis.url {}: {e}", cfg.redis_url))?;
    queue::ensure_groups(&mut admin, cfg.partitions).await?;

    let http_listener = TcpListener::bind(cfg.http.listen)
        .await
        .map_err(|e| anyhow::anyhow!("http.listen {}: {e}", cfg.http.listen))?;
    let control_listener = TcpListener::bind(cfg.control.listen)
        .await
        .map_err(|e| anyhow::anyhow!("control.listen {}: {e}", cfg.control.listen))?;
    if cfg.control.token.is_empty() {
        tracing::warn!("control.token is empty: the control service refuses every call");
    }
    tracing::info!(
        listen = %http_listener.local_addr()?,
        consumer = %cfg.dispatch.consumer,
        partitions = cfg.partitions,
        shards = cfg.dispatch.shards,
        max_in_flight = cfg.dispatch.max_in_flight,
        "herald started"
    );

    // Work (stops on `stop_reading`) and the HTTP listener (stops last, so
    // /readyz answers 503 while draining).
    let stop_reading = CancellationToken::new();
    // Time-zone tables are parsed now, not on the first message.
    crate::policy::zones::preload();
    let today = jiff::Zoned::now().date();
    match cfg.policy.rules.holidays_through() {
        Some(last) if last < today => tracing::warn!(
            %last,
            "the rule table's state holidays end before today: update the holiday lists (compliance.rules_file)"
        ),
        _ => {}
    }
    // Consent is known before the first message is read: the replica is
    // loaded whole, then follows the audit feed from where the load began.
    let started = std::time::Instant::now();
    let (ledger, feed_from) = crate::consent::ConsentLedger::load(&mut admin).await?;
    let ledger = Arc::new(ledger);
    crate::telemetry::consent_numbers(ledger.replica().len());
    tracing::info!(
        numbers = ledger.replica().len(),
        ms = started.elapsed().as_millis() as u64,
        "consent replica ready"
    );
    let d = Arc::new(Dispatcher::new(
        cfg.clone(),
        providers,
        Arc::clone(&ledger),
        stop_reading.clone(),
    ));
    let shards = d.cfg.dispatch.shards.min(usize::from(d.cfg.partitions));
    let read_timeout = cfg.dispatch.block + cfg.redis_response_timeout;
    let mut read_conns = Vec::with_capacity(shards);
    let mut work_conns = Vec::with_capacity(shards);
    for _ in 0..shards {
        read_conns.push(connect(&cfg, read_timeout).await?);
        work_conns.push(connect(&cfg, cfg.redis_response_timeout).await?);
    }
    // Paused tenants are known before the first message is read.
    d.pauses.refresh(&mut admin).await?;
    let workers = dispatch::spawn_shards(&d, read_conns, work_conns);
    let mover = tokio::spawn(dispatch::run_delayed_mover(Arc::clone(&d), admin.clone()));

    let redis_up = Arc::new(AtomicBool::new(true));
    let http_stop = CancellationToken::new();
    // Fleet-wide carrier lanes lease their tokens from Redis.
    let fleet = d
        .throttle
        .as_ref()
        .map(|(_, t)| t.spawn_fleet(admin.clone(), http_stop.clone()));
    let throttles = {
        let d = Arc::clone(&d);
        let conn = admin.clone();
        let stop = http_stop.clone();
        tokio::spawn(async move {
            if let Some((_, t)) = &d.throttle {
                crate::throttle::live::run_refresher(t, conn, stop).await;
            }
        })
    };
    // Carrier lookups (Twilio Lookup v2, cached in Redis), off the hot path.
    let lookups = match (&d.throttle, &cfg.carrier_lookup) {
        (Some((carriers, _)), Some(l)) => {
            let requests = d.lookups.lock().ok().and_then(|mut r| r.take());
            match requests {
                Some(requests) => {
                    let twilio = herald_adapters::TwilioLookup::new(l.settings.clone())
                        .map_err(|e| anyhow::anyhow!("throttle.lookup_{}: {}", e.key, e.reason))?;
                    let lookup = crate::throttle::lookup::TwilioCarrierLookup::new(
                        twilio,
                        admin.clone(),
                        l.ttl,
                    );
                    Some(tokio::spawn(crate::throttle::carrier::run_lookups(
                        Arc::clone(carriers),
                        lookup,
                        requests,
                        http_stop.clone(),
                    )))
                }
                None => None,
            }
        }
        _ => None,
    };
    let feed = tokio::spawn(Arc::clone(&ledger).follow(
        connect(&cfg, cfg.consent_feed_block + cfg.redis_response_timeout).await?,
        feed_from,
        cfg.consent_feed_block,
        http_stop.clone(),
    ));
    let health = tokio::spawn(health_checker(
        admin.clone(),
        Arc::clone(&redis_up),
        http_stop.clone(),
    ));
    let janitor = tokio::spawn(consumer_janitor(
        admin.clone(),
        cfg.partitions,
        cfg.dispatch.consumer.clone(),
        cfg.dispatch.dead_consumer_idle,
        http_stop.clone(),
    ));
    let lag = tokio::spawn(lag_poller(
        admin.clone(),
        cfg.partitions,
        cfg.lag_poll,
        Arc::clone(&d),
        http_stop.clone(),
    ));
    // `shutdown` (the caller's) flips readiness; `http_stop` ends the
    // listener after the drain, so /readyz answers 503 meanwhile.
    let receipts = Arc::new(crate::delivery::Receipts::new(
        cfg.events_max_len,
        cfg.dispatch.idempotency_ttl.as_millis() as u64,
    ));
    let http_state = Arc::new(HttpState {
        cfg: cfg.http.clone(),
        partitions: cfg.partitions,
        limits: d.limits,
        metrics,
        redis: admin.clone(),
        redis_up,
        shutdown: shutdown.clone(),
        policy: Arc::clone(&cfg.policy),
        consent: Arc::clone(&ledger),
        cap_script: redis::Script::new(crate::policy::caps::CAP_LUA),
        admin_token: cfg.control.token.clone(),
        twilio: cfg
            .providers
            .iter()
            .filter_map(|p| match &p.kind {
                crate::config::ProviderKind::Twilio(t) => {
                    Some((t.account_sid.clone(), t.auth_token.clone()))
                }
                _ => None,
            })
            .collect(),
        twilio_names: cfg
            .providers
            .iter()
            .filter_map(|p| match &p.kind {
                crate::config::ProviderKind::Twilio(t) => {
                    Some((t.account_sid.clone(), p.name.clone()))
                }
                _ => None,
            })
            .collect(),
        receipts: Arc::clone(&receipts),
    });
    let orphans = tokio::spawn({
        let receipts = Arc::clone(&receipts);
        let conn = admin.clone();
        let stop = http_stop.clone();
        async move {
            receipts
                .run_orphans(conn, std::time::Duration::from_secs(1), stop)
                .await
        }
    });
    let http_task = tokio::spawn(http::serve(http_listener, http_state, http_stop.clone()));
    let pauses_task = tokio::spawn(crate::tenants::run_refresher(
        Arc::clone(&d.pauses),
        admin.clone(),
        http_stop.clone(),
    ));
    let control_task = tokio::spawn(crate::control::serve(
        control_listener,
        crate::control::ControlService::new(Arc::clone(&d), admin.clone()),
        cfg.control.token.clone(),
        http_stop.clone(),
    ));

    shutdown.cancelled().await;
    tracing::info!(
        in_flight = d.in_flight(),
        "shutdown: no longer reading; draining in-flight sends"
    );
    stop_reading.cancel();
    let drained = tokio::time::timeout(cfg.dispatch.shutdown_grace, async {
        for w in workers {
            let _ = w.await;
        }
    })
    .await;
    match drained {
        Ok(()) => tracing::info!("drained: every in-flight message recorded"),
        Err(_) => tracing::warn!(
            in_flight = d.in_flight(),
            "shutdown grace elapsed; unfinished messages stay pending for another instance"
        ),
    }
    let _ = mover.await;
    http_stop.cancel();
    let _ = health.await;
    let _ = lag.await;
    let _ = janitor.await;
    let _ = http_task.await;
    let _ = pauses_task.await;
    let _ = feed.await;
    let _ = orphans.await;
    let _ = throttles.await;
    if let Some(l) = lookups {
        let _ = l.await;
    }
    if let Some(mut fleet) = fleet {
        while fleet.join_next().await.is_some() {}
    }
    if let Ok(Err(e)) = control_task.await {
        tracing::warn!(error = %e, "control service stopped with an error");
    }
    Ok(())
}

/// Raise this process's open-file soft limit to its hard limit: 10k+
/// concurrent provider connections need 10k+ descriptors (nginx does the same).
pub fn raise_open_file_limit() {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) => tracing::debug!(limit = n, "open-file limit"),
        Err(e) => tracing::warn!(error = %e, "could not raise the open-file limit"),
    }
}

async fn health_checker(mut conn: Conn, up: Arc<AtomicBool>, stop: CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let ok = matches!(
            tokio::time::timeout(
                Duration::from_secs(1),
                redis::cmd("PING").query_async::<String>(&mut conn)
            )
            .await,
            Ok(Ok(_))
        );
        if up.swap(ok, Ordering::Relaxed) != ok {
            if ok {
                tracing::info!("redis reachable again");
            } else {
                tracing::warn!("redis unreachable: /readyz answers 503");
            }
        }
        metrics::gauge!(names::REDIS_UP).set(if ok { 1.0 } else { 0.0 });
    }
}

/// Consumer lag and pending per partition, and the delayed set's size.
async fn lag_poller(
    mut conn: Conn,
    partitions: u16,
    every: Duration,
    d: Arc<Dispatcher>,
    stop: CancellationToken,
) {
    let labels: Vec<String> = (0..partitions).map(|p| p.to_string()).collect();
    let mut tick = tokio::time::interval(every);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        telemetry::in_flight(d.in_flight());
        let mut pipe = redis::pipe();
        for p in 0..partitions {
            pipe.cmd("XINFO").arg("GROUPS").arg(keys::queue(p));
        }
        pipe.cmd("ZCARD").arg(keys::DELAYED);
        let Ok(mut replies) = pipe.query_async::<Vec<redis::Value>>(&mut conn).await else {
            continue;
        };
        if let Some(redis::Value::Int(n)) = replies.pop() {
            metrics::gauge!(names::DELAYED).set(n as f64);
        }
        for (p, reply) in replies.into_iter().enumerate() {
            if let Some((lag, pending)) = queue::group_lag(reply) {
                metrics::gauge!(names::QUEUE_LAG, "partition" => labels[p].clone()).set(lag as f64);
                metrics::gauge!(names::QUEUE_PENDING, "partition" => labels[p].clone())
                    .set(pending as f64);
            }
        }
    }
}

/// Remove dead consumers from the group. Consumer names are unique per
/// process, so every restart leaves one behind; once XAUTOCLAIM has taken
/// its pending entries it holds nothing and only clutters XINFO. A consumer
/// with pending entries is never removed (that would drop them from the
/// pending list), whatever its idle time.
async fn consumer_janitor(
    mut conn: Conn,
    partitions: u16,
    ours: String,
    idle: Duration,
    stop: CancellationToken,
) {
    let idle_ms = idle.as_millis() as i64;
    let every = (idle / 2).clamp(Duration::from_millis(100), Duration::from_secs(60));
    let mut tick = tokio::time::interval(every);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        for p in 0..partitions {
            let stream = keys::queue(p);
            let Ok(reply) = redis::cmd("XINFO")
                .arg("CONSUMERS")
                .arg(&stream)
                .arg(keys::GROUP)
                .query_async::<redis::Value>(&mut conn)
                .await
            else {
                continue;
            };
            for name in dead_consumers(reply, &ours, idle_ms) {
                let removed: redis::RedisResult<i64> = redis::cmd("XGROUP")
                    .arg("DELCONSUMER")
                    .arg(&stream)
                    .arg(keys::GROUP)
                    .arg(&name)
                    .query_async(&mut conn)
                    .await;
                if removed == Ok(0) {
                    tracing::info!(consumer = %name, partition = p, "removed a dead consumer");
                }
            }
        }
    }
}

/// Names of consumers with nothing pending, idle past the threshold.
fn dead_consumers(reply: redis::Value, ours: &str, idle_ms: i64) -> Vec<String> {
    let mut dead = Vec::new();
    for record in queue::info_records(reply) {
        let (mut name, mut pending, mut idle) = (None, None, None);
        for (key, v) in record {
            match (key.as_str(), v) {
                ("name", redis::Value::BulkString(b)) => {
                    name = Some(String::from_utf8_lossy(&b).into_owned())
                }
                ("pending", redis::Value::Int(n)) => pending = Some(n),
                ("idle", redis::Value::Int(n)) => idle = Some(n),
                _ => {}
            }
        }
        if let (Some(name), Some(0), Some(idle)) = (name, pending, idle)
            && idle > idle_ms
            && name != ours
        {
            dead.push(name);
        }
    }
    dead
}

#[cfg(test)]
mod tests {
    use super::*;
    use redis::Value;

    fn consumer(name: &str, pending: i64, idle: i64) -> Value {
        Value::Array(vec![
            Value::BulkString(b"name".to_vec()),
            Value::BulkString(name.as_bytes().to_vec()),
            Value::BulkString(b"pending".to_vec()),
            Value::Int(pending),
            Value::BulkString(b"idle".to_vec()),
            Value::Int(idle),
        ])
    }

    #[test]
    fn only_idle_consumers_with_nothing_pending_are_dead() {
        let hour = 3_600_000;
        let reply = Value::Array(vec![
            consumer("gone", 0, hour + 1),
            consumer("gone-but-holding", 3, hour * 10),
            consumer("recent", 0, hour - 1),
            consumer("me", 0, hour * 10),
        ]);
        assert_eq!(dead_consumers(reply, "me", hour), vec!["gone".to_string()]);
        assert!(dead_consumers(Value::Nil, "me", hour).is_empty());
    }
}
