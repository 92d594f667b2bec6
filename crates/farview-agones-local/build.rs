//! Generates the SDK service's server side from the `sdk.proto` that ships with the `agones`
//! crate (copied under `proto/`, Apache-2.0, with the imports it needs).

fn main() {
    println!("cargo:rerun-if-changed=proto");
    if let Err(e) = tonic_build::configure()
        .build_client(false)
        .build_server(true)
        .compile_protos(
            &["proto/sdk/sdk.proto"],
            &["proto/sdk", "proto/googleapis", "proto/grpc-gateway"],
        )
    {
        // Build scripts report by exiting; protoc is the usual cause.
        eprintln!(
            "cannot compile Agones' sdk.proto ({e}); protoc comes from Debian's protobuf-compiler"
        );
        std::process::exit(1);
    }
}
