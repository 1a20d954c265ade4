//! Compiles `proto/` into Rust with protox (a pure-Rust protobuf compiler), so
//! building Herald needs no system `protoc`.
//!
//! Writes to `OUT_DIR`:
//! - `herald.control.v1.rs`: messages, `control_client` and `control_server`;
//! - `herald.control.v1.bin`: the encoded `FileDescriptorSet`, for gRPC
//!   server reflection or any tool that wants the schema at run time.

use std::{env, error::Error, fs, path::PathBuf};

use prost::Message as _;

const PROTO_ROOT: &str = "proto";
const PROTOS: &[&str] = &["proto/herald/control/v1/control.proto"];

fn main() -> Result<(), Box<dyn Error>> {
    // compile_fds never sees file paths, so it cannot emit these itself.
    println!("cargo:rerun-if-changed={PROTO_ROOT}");
    for proto in PROTOS {
        println!("cargo:rerun-if-changed={proto}");
    }

    let fds = protox::compile(PROTOS, [PROTO_ROOT])?;

    let out_dir = PathBuf::from(env::var("OUT_DIR")?);
    fs::write(out_dir.join("herald.control.v1.bin"), fds.encode_to_vec())?;

    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        // Maps come out ordered, so stats print and serialise deterministically.
        .btree_map(".")
        .compile_fds(fds)?;
    Ok(())
}
