//! Compiles `proto/raft.proto` (node to node; `proto/agent.proto` is compiled by the
//! `ecsd-protocol` crate) with protox (a pure-Rust protobuf compiler), so no
//! system `protoc` is needed. Output goes to OUT_DIR and is included only by
//! `src/rpc/pb.rs`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    let fds = protox::compile(["proto/raft.proto"], ["proto"])?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(fds)?;
    Ok(())
}
