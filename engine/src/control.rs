//! The gRPC control service (`herald.control.v1.Control`), served on
//! `control.listen` behind the admin bearer token (`control.token`; an empty
//! token refuses every call).

use std::sync::Arc;
use std::time::Instant;

use herald_control::v1::control_server::{Control, ControlServer};
use herald_control::v1::{
    GetStatsRequest, GetStatsResponse, ListPausedTenantsRequest, ListPausedTenantsResponse,
    PartitionStats, PauseTenantRequest, PauseTenantResponse, ResumeTenantRequest,
    ResumeTenantResponse, TenantPause,
};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

use crate::dispatch::Dispatcher;
use crate::keys;
use crate::model::valid_tenant;
use crate::outcome::now_ms;
use crate::queue::Conn;
use crate::tenants;

/// The control service of one instance.
pub struct ControlService {
    d: Arc<Dispatcher>,
    conn: Conn,
    started: Instant,
}

impl ControlService {
    pub fn new(d: Arc<Dispatcher>, conn: Conn) -> Self {
        ControlService {
            d,
            conn,
            started: Instant::now(),
        }
    }
}

fn unavailable(e: redis::RedisError) -> Status {
    Status::unavailable(format!("redis: {e}"))
}

fn tenant_arg(t: &str) -> Result<(), Status> {
    if t.is_empty() {
        return Err(Status::invalid_argument("tenant must not be empty"));
    }
    if !valid_tenant(t) {
        return Err(Status::invalid_argument(
            "tenant must be 1–64 characters of letters, digits, `_`, `-`, `.`",
        ));
    }
    Ok(())
}

#[tonic::async_trait]
impl Control for ControlService {
    async fn get_stats(
        &self,
        _req: Request<GetStatsRequest>,
    ) -> Result<Response<GetStatsResponse>, Status> {
        let mut conn = self.conn.clone();
        let mut pipe = redis::pipe();
        for p in 0..self.d.cfg.partitions {
            pipe.cmd("XINFO").arg("GROUPS").arg(keys::queue(p));
        }
        pipe.cmd("ZCARD").arg(keys::DELAYED);
        let mut replies: Vec<redis::Value> =
            pipe.query_async(&mut conn).await.map_err(unavailable)?;
        let delayed = match replies.pop() {
            Some(redis::Value::Int(n)) => Some(n.max(0) as u64),
            _ => None,
        };
        let partitions = replies
            .into_iter()
            .enumerate()
            .map(|(p, reply)| {
                let (lag, pending) = crate::server::group_lag(reply).unwrap_or((-1, 0));
                PartitionStats {
                    partition: p as u32,
                    stream: keys::queue(p as u16),
                    depth: (lag >= 0).then_some(lag as u64),
                    pending: pending.max(0) as u64,
                    lag_ms: None,
                }
            })
            .collect();
        Ok(Response::new(GetStatsResponse {
            instance_id: self.d.cfg.dispatch.consumer.clone(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            uptime_ms: self.started.elapsed().as_millis() as u64,
            messages_by_status: self
                .d
                .counts
                .snapshot()
                .into_iter()
                .map(|(s, n)| (s.to_string(), n))
                .collect(),
            in_flight: self.d.in_flight() as u64,
            max_in_flight: self.d.cfg.dispatch.max_in_flight as u64,
            partitions,
            delayed,
        }))
    }

    async fn pause_tenant(
        &self,
        req: Request<PauseTenantRequest>,
    ) -> Result<Response<PauseTenantResponse>, Status> {
        let req = req.into_inner();
        tenant_arg(&req.tenant)?;
        let mut conn = self.conn.clone();
        let (pause, changed) = self
            .d
            .pauses
            .pause(&mut conn, &req.tenant, &req.reason, now_ms())
            .await
            .map_err(unavailable)?;
        if changed {
            tracing::warn!(tenant = %req.tenant, reason = %req.reason, "tenant paused");
        }
        Ok(Response::new(PauseTenantResponse {
            pause: Some(TenantPause {
                tenant: req.tenant,
                reason: pause.reason,
                paused_at_ms: pause.paused_at_ms,
            }),
            changed,
        }))
    }

    async fn resume_tenant(
        &self,
        req: Request<ResumeTenantRequest>,
    ) -> Result<Response<ResumeTenantResponse>, Status> {
        let req = req.into_inner();
        tenant_arg(&req.tenant)?;
        let mut conn = self.conn.clone();
        let changed = self
            .d
            .pauses
            .resume(&mut conn, &req.tenant)
            .await
            .map_err(unavailable)?;
        if changed {
            tracing::warn!(tenant = %req.tenant, "tenant resumed");
        }
        Ok(Response::new(ResumeTenantResponse { changed }))
    }

    async fn list_paused_tenants(
        &self,
        _req: Request<ListPausedTenantsRequest>,
    ) -> Result<Response<ListPausedTenantsResponse>, Status> {
        let mut conn = self.conn.clone();
        let all = tenants::list(&mut conn).await.map_err(unavailable)?;
        Ok(Response::new(ListPausedTenantsResponse {
            pauses: all
                .into_iter()
                .map(|(tenant, p)| TenantPause {
                    tenant,
                    reason: p.reason,
                    paused_at_ms: p.paused_at_ms,
                })
                .collect(),
        }))
    }
}

/// Serve the control service on `listener` until `stop`.
pub async fn serve(
    listener: TcpListener,
    svc: ControlService,
    token: String,
    stop: CancellationToken,
) -> Result<(), tonic::transport::Error> {
    let incoming = tonic::transport::server::TcpIncoming::from(listener);
    tonic::transport::Server::builder()
        .add_service(ControlServer::with_interceptor(
            svc,
            herald_control::auth::bearer_interceptor(token),
        ))
        .serve_with_incoming_shutdown(incoming, stop.cancelled_owned())
        .await
}
