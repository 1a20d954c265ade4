//! `herald serve`: connect, start every task, run until shutdown, drain.

use std::sync::Arc;
use std::time::Duration;

use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::conn::{Conn, connect};
use crate::consent::guard::LedgerGuard;
use crate::dispatch::{self, Dispatcher};
use crate::error::Error;
use crate::health::Health;
use crate::http::{self, HttpState};
use crate::ingest::stream;
use crate::keys;
use crate::providers::Providers;
use crate::telemetry::{self, names};

/// Run Herald until `shutdown` is cancelled, then drain: stop reading, let
/// in-flight sends finish within `dispatch.shutdown_grace_ms`, record their
/// outcomes, return. Whatever is unfinished stays pending in Redis for
/// another instance.
pub async fn run(
    cfg: Config,
    metrics: Option<PrometheusHandle>,
    shutdown: CancellationToken,
) -> Result<(), Error> {
    raise_open_file_limit();
    let providers = Providers::new(&cfg.providers, cfg.breaker, cfg.dispatch.failover_after)?;
    let mut admin = connect(&cfg.redis, cfg.redis.response_timeout).await?;
    stream::ensure_groups(&mut admin, cfg.queue.partitions)
        .await
        .map_err(|e| Error::redis("create consumer groups", e))?;

    let http_listener = TcpListener::bind(cfg.http.listen)
        .await
        .map_err(|e| Error::host(format!("http.listen {}", cfg.http.listen), e))?;
    let control_listener = TcpListener::bind(cfg.control.listen)
        .await
        .map_err(|e| Error::host(format!("control.listen {}", cfg.control.listen), e))?;
    if cfg.control.token.is_empty() {
        tracing::warn!("control.token is empty: the control service refuses every call");
    }
    tracing::info!(
        listen = %cfg.http.listen,
        consumer = %cfg.dispatch.consumer,
        partitions = cfg.queue.partitions,
        shards = cfg.dispatch.shards,
        max_in_flight = cfg.dispatch.max_in_flight,
        "herald started"
    );

    // Work (stops on `stop_reading`) and the HTTP listener (stops last, so
    // /readyz answers 503 while draining).
    let stop_reading = CancellationToken::new();
    // Time-zone tables are parsed now, not on the first message.
    crate::policy::zones::preload();
    // The live policy: the store's current version (the files seed an
    // empty store), swapped by the watcher below when it changes.
    let policy =
        crate::policy::store::load_or_seed(&mut admin, &cfg.seed, &cfg.policy_context).await?;
    tracing::info!(version = policy.version, "policy loaded");
    let today = jiff::Zoned::now().date();
    match policy.rules.holidays_through() {
        Some(last) if last < today => tracing::warn!(
            %last,
            "the rule table's state holidays end before today: update the holiday lists (compliance.rules_file)"
        ),
        _ => {}
    }
    // Consent is known before the first message is read: the replica is
    // loaded whole, then follows the audit feed from where the load began.
    let started = std::time::Instant::now();
    let (ledger, feed_from) = crate::consent::ConsentLedger::load(&mut admin)
        .await
        .map_err(|e| Error::redis("load consent", e))?;
    let ledger = Arc::new(ledger);
    crate::telemetry::consent_numbers(ledger.replica().len());
    tracing::info!(
        numbers = ledger.replica().len(),
        ms = started.elapsed().as_millis() as u64,
        "consent replica ready"
    );
    // Durable Redis and an intact ledger are known before the first read.
    let health = Arc::new(Health::new());
    let guard = Arc::new(LedgerGuard::start(&mut admin).await?);
    let mut checker = Checker {
        conn: admin.clone(),
        health: Arc::clone(&health),
        guard: Arc::clone(&guard),
        ledger: Arc::clone(&ledger),
        allow_volatile: cfg.redis.allow_volatile,
    };
    checker.check().await;
    if let Err(why) = health.ready() {
        tracing::error!(%why, "not ready: no message is sent until this is fixed");
    }
    let d = Arc::new(Dispatcher::new(dispatch::Parts {
        dispatch: cfg.dispatch.clone(),
        queue: cfg.queue,
        events: cfg.events,
        throttle: cfg.throttle.clone(),
        carrier_lookup: cfg.carrier_lookup.clone(),
        policy: Arc::new(crate::policy::live::LivePolicy::new(policy)),
        providers,
        consent: Arc::clone(&ledger),
        health: Arc::clone(&health),
        shutdown: stop_reading.clone(),
    }));
    let shards = d.dispatch.shards.min(usize::from(d.queue.partitions));
    let read_timeout = cfg.dispatch.block + cfg.redis.response_timeout;
    let mut read_conns = Vec::with_capacity(shards);
    let mut work_conns = Vec::with_capacity(shards);
    for _ in 0..shards {
        read_conns.push(connect(&cfg.redis, read_timeout).await?);
        work_conns.push(connect(&cfg.redis, cfg.redis.response_timeout).await?);
    }
    // Paused tenants are known before the first message is read.
    d.pauses
        .refresh(&mut admin)
        .await
        .map_err(|e| Error::redis("read paused tenants", e))?;
    // Ceased numbers too: no collections text goes out before they are known.
    d.ceased
        .reload(&mut admin)
        .await
        .map_err(|e| Error::redis("read ceased numbers", e))?;
    let workers = dispatch::spawn_shards(&d, read_conns, work_conns);
    let mover = tokio::spawn(crate::ingest::delayed::run_mover(
        admin.clone(),
        cfg.dispatch.delayed_poll,
        cfg.events.dlq_max_len,
        stop_reading.clone(),
    ));
    // One page of sequences a second: 200 sequences (1,400 steps) per
    // script, so a million sequences are walked in about 80 minutes.
    let reconciler = tokio::spawn(crate::sequences::run_reconciler(
        admin.clone(),
        std::time::Duration::from_secs(1),
        cfg.dispatch.idempotency_ttl,
        stop_reading.clone(),
    ));

    let http_stop = CancellationToken::new();
    // Fleet-wide carrier lanes lease their tokens from Redis.
    let fleet = d
        .throttle
        .as_ref()
        .map(|(_, t)| t.spawn_fleet(admin.clone(), http_stop.clone()));
    // Throttle overrides of the version loaded at start, then of each new
    // one as the watcher swaps it in.
    let base_throttle = cfg.throttle.clone();
    if let (Some((_, t)), Some(base)) = (&d.throttle, &base_throttle) {
        let p = d.policy.load();
        crate::throttle::live::apply_changes(t, base, &Default::default(), &p.throttles);
    }
    let throttles = tokio::spawn(crate::policy::store::run_watcher(
        Arc::clone(&d.policy),
        cfg.policy_context.clone(),
        admin.clone(),
        cfg.dispatch.consumer.clone(),
        {
            let d = Arc::clone(&d);
            move |old: &crate::policy::Policy, new: &crate::policy::Policy| {
                if let (Some((_, t)), Some(base)) = (&d.throttle, &base_throttle) {
                    crate::throttle::live::apply_changes(t, base, &old.throttles, &new.throttles);
                }
            }
        },
        http_stop.clone(),
    ));
    // Carrier lookups (Twilio Lookup v2, cached in Redis), off the hot path.
    let lookups =
        match (&d.throttle, &cfg.carrier_lookup) {
            (Some((carriers, _)), Some(l)) => {
                let requests = d.lookups.lock().ok().and_then(|mut r| r.take());
                match requests {
                    Some(requests) => {
                        let twilio = herald_adapters::TwilioLookup::new(l.settings.clone())
                            .map_err(|e| Error::Provider {
                                provider: "twilio lookup".into(),
                                reason: e.to_string(),
                            })?;
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
    let feed = tokio::spawn(
        Arc::clone(&ledger).follow(
            connect(
                &cfg.redis,
                cfg.consent_feed_block + cfg.redis.response_timeout,
            )
            .await?,
            feed_from,
            cfg.consent_feed_block,
            http_stop.clone(),
        ),
    );
    let health_task = tokio::spawn(checker.run(http_stop.clone()));
    let janitor = tokio::spawn(stream::consumer_janitor(
        admin.clone(),
        cfg.queue.partitions,
        cfg.dispatch.consumer.clone(),
        cfg.dispatch.dead_consumer_idle,
        http_stop.clone(),
    ));
    let lag = tokio::spawn(lag_poller(
        admin.clone(),
        cfg.queue.partitions,
        cfg.telemetry.lag_poll,
        Arc::clone(&d),
        http_stop.clone(),
    ));
    // `shutdown` (the caller's) flips readiness; `http_stop` ends the
    // listener after the drain, so /readyz answers 503 meanwhile.
    let receipts = Arc::new(crate::delivery::receipts::Receipts::new(
        cfg.events.max_len,
        cfg.events.dlq_max_len,
        cfg.dispatch.idempotency_ttl.as_millis() as u64,
    ));
    let http_state = Arc::new(HttpState {
        cfg: cfg.http.clone(),
        partitions: cfg.queue.partitions,
        limits: d.limits,
        events_max_len: cfg.events.max_len,
        record_ttl_ms: cfg.dispatch.idempotency_ttl.as_millis() as u64,
        metrics,
        redis: admin.clone(),
        health: Arc::clone(&health),
        shutdown: shutdown.clone(),
        policy: Arc::clone(&d.policy),
        consent: Arc::clone(&ledger),
        cap_script: redis::Script::new(crate::policy::caps::CAP_LUA),
        admin_token: cfg.control.token.clone(),
        twilio: cfg
            .providers
            .iter()
            .filter_map(|p| match &p.kind {
                crate::providers::config::ProviderKind::Twilio(t) => {
                    Some((t.account_sid.clone(), t.auth_token.clone()))
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
    let release = crate::tenants::Release {
        per_second: cfg.control.resume_rate,
        record_ttl_ms: cfg.dispatch.idempotency_ttl.as_millis() as u64,
    };
    let signals_task = tokio::spawn(crate::signals::run(
        admin.clone(),
        cfg.dispatch.consumer.clone(),
        Arc::clone(&d.policy),
        Arc::clone(&d.ceased),
        cfg.queue.partitions,
        cfg.events.dlq_max_len,
        http_stop.clone(),
    ));
    let pauses_task = tokio::spawn(crate::tenants::run_refresher(
        Arc::clone(&d.pauses),
        admin.clone(),
        release,
        http_stop.clone(),
    ));
    let control_task = tokio::spawn(crate::control::serve(
        control_listener,
        crate::control::ControlService::new(
            Arc::clone(&d),
            admin.clone(),
            Arc::clone(&guard),
            release,
            cfg.control.token.clone(),
            cfg.policy_context.clone(),
        ),
        cfg.control.tls.clone(),
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
    let _ = reconciler.await;
    http_stop.cancel();
    let _ = health_task.await;
    let _ = lag.await;
    let _ = janitor.await;
    let _ = http_task.await;
    let _ = pauses_task.await;
    let _ = signals_task.await;
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

/// Every second: is Redis up, is it durable, is the consent ledger
/// intact? The answers go to [`Health`]: `/readyz` says which is not, and
/// the shards stop reading while sending is not safe.
struct Checker {
    conn: Conn,
    health: Arc<Health>,
    guard: Arc<LedgerGuard>,
    ledger: Arc<crate::consent::ConsentLedger>,
    allow_volatile: bool,
}

impl Checker {
    async fn run(mut self, stop: CancellationToken) {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tick.tick() => {}
            }
            self.check().await;
        }
    }

    async fn check(&mut self) {
        let ok = matches!(
            tokio::time::timeout(
                Duration::from_secs(1),
                redis::cmd("PING").query_async::<String>(&mut self.conn)
            )
            .await,
            Ok(Ok(_))
        );
        if self.health.set_redis_up(ok) {
            if ok {
                tracing::info!("redis reachable again");
            } else {
                tracing::warn!("redis unreachable: /readyz answers 503");
            }
        }
        metrics::gauge!(names::REDIS_UP).set(if ok { 1.0 } else { 0.0 });
        if !ok {
            return;
        }
        match crate::conn::durability(&mut self.conn).await {
            Ok(verdict) => {
                let verdict = match verdict {
                    Err(why) if self.allow_volatile => {
                        metrics::gauge!(names::REDIS_VOLATILE).set(1.0);
                        if self.health.set_durable(Ok(())) {
                            tracing::warn!(%why, "REDIS IS NOT DURABLE and redis.allow_volatile = true: a Redis restart can forget consent and send twice; never run production like this");
                        }
                        return self.check_ledger().await;
                    }
                    v => v,
                };
                metrics::gauge!(names::REDIS_VOLATILE).set(if verdict.is_ok() { 0.0 } else { 1.0 });
                if self.health.set_durable(verdict.clone()) {
                    match verdict {
                        Ok(()) => tracing::info!("redis is durable: sending"),
                        Err(why) => {
                            tracing::error!(%why, "redis is not durable: sending stops (set redis.allow_volatile = true for a demo)")
                        }
                    }
                }
            }
            Err(e) => {
                crate::telemetry::redis_error("durability");
                tracing::warn!(error = %e, "checking redis durability failed");
            }
        }
        self.check_ledger().await;
    }

    async fn check_ledger(&mut self) {
        let applied = self.ledger.applied();
        match self.guard.check(&mut self.conn, &applied).await {
            Ok(verdict) => {
                metrics::gauge!(names::LEDGER_SUSPECT).set(if verdict.is_ok() { 0.0 } else { 1.0 });
                if self.health.set_ledger(verdict.clone()) && verdict.is_ok() {
                    tracing::info!("consent ledger confirmed: sending");
                }
            }
            Err(e) => {
                crate::telemetry::redis_error("ledger_check");
                tracing::warn!(error = %e, "checking the consent ledger failed");
            }
        }
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
            if let Some((lag, pending)) = stream::group_lag(reply) {
                metrics::gauge!(names::QUEUE_LAG, "partition" => labels[p].clone()).set(lag as f64);
                metrics::gauge!(names::QUEUE_PENDING, "partition" => labels[p].clone())
                    .set(pending as f64);
            }
        }
    }
}
