//! Herald's gRPC control plane (docs/contracts.md#http-and-grpc): the `herald.control.v1`
//! contract, the code generated from it, admin-token authentication shared by
//! the server (in `herald-engine`) and its clients, and the `heraldctl` logic.
//!
//! Serving it, in the engine:
//!
//! ```no_run
//! use herald_control::v1::control_server::{Control, ControlServer};
//!
//! # async fn serve<S: Control>(service: S, token: String) -> Result<(), tonic::transport::Error> {
//! tonic::transport::Server::builder()
//!     .add_service(ControlServer::with_interceptor(
//!         service,
//!         herald_control::auth::bearer_interceptor(token),
//!     ))
//!     .serve("127.0.0.1:50051".parse().unwrap())
//!     .await
//! # }
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod auth;
pub mod cli;

/// Code generated from `proto/herald/control/v1/control.proto`.
///
/// - messages: `herald_control::v1::GetStatsResponse`, `TenantPause`, …
/// - server: [`v1::control_server::Control`] (the trait the engine implements)
///   and [`v1::control_server::ControlServer`];
/// - client: [`v1::control_client::ControlClient`].
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod v1 {
    tonic::include_proto!("herald.control.v1");

    /// The encoded `FileDescriptorSet` of this package, for gRPC server
    /// reflection (so `grpcurl` works without the `.proto` file).
    pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("herald.control.v1");
}

/// The gRPC metadata key that carries the admin token, as
/// `authorization: Bearer <token>` (RFC 6750 §2.1 syntax).
pub const TOKEN_METADATA: &str = "authorization";
