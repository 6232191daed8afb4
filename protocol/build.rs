//! Compiles `proto/agent.proto` (at the repository's top, beside `proto/raft.proto`) with protox,
//! a pure-Rust protobuf compiler, so no system `protoc` is needed. Output goes to OUT_DIR and is
//! included only by `src/pb.rs`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=../proto/agent.proto");
    let fds = protox::compile(["agent.proto"], ["../proto"])?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        // Only ecsd serves the agent protocol (feature `server`).
        .server_mod_attribute("ecsd.agent.v1", "#[cfg(feature = \"server\")]")
        .compile_fds(fds)?;
    Ok(())
}
