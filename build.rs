//! Generates the Rust code for the protos in `proto/` at build time, with no `protoc` binary.
//!
//! Two generators share one pure-Rust parse of each file:
//! - `protobuf-codegen` 3 writes the message types (`<module>.rs`);
//! - `grpcio-compiler` writes the service stubs (`<module>_grpc.rs`). It only understands
//!   rust-protobuf 2 descriptors, so the parsed `FileDescriptorSet` is encoded to bytes and
//!   decoded again as a protobuf-2 descriptor set: the wire format is the bridge.
//!
//! Everything lands flat in `$OUT_DIR/proto/` with a `mod.rs` that `src/proto.rs` includes;
//! the example service's messages (`examples/echo.proto`) in `$OUT_DIR/examples/`.
//! Both generators name a module after its file's stem, and the two reflection versions are
//! both `reflection.proto`, so each file's modules are renamed to the name given below.

use std::error::Error;
use std::fs;
use std::path::{Path, PathBuf};

use protobuf::Message as _;

/// (module name, path under `proto/`)
const PROTOS: &[(&str, &str)] = &[
    ("greeter", "greeter.proto"),
    ("health", "grpc/health/v1/health.proto"),
    ("reflection_v1", "grpc/reflection/v1/reflection.proto"),
    ("reflection_v1alpha", "grpc/reflection/v1alpha/reflection.proto"),
    // gRPC's interop test protocol. Named after their files: the generated code of test.proto
    // refers to the other two as `super::empty` and `super::messages`.
    ("empty", "grpc/testing/empty.proto"),
    ("messages", "grpc/testing/messages.proto"),
    ("test", "grpc/testing/test.proto"),
    // OTLP's trace export (opentelemetry-proto v1.9.0), named after their files for the same
    // reason.
    ("common", "opentelemetry/proto/common/v1/common.proto"),
    ("resource", "opentelemetry/proto/resource/v1/resource.proto"),
    ("trace", "opentelemetry/proto/trace/v1/trace.proto"),
    ("trace_service", "opentelemetry/proto/collector/trace/v1/trace_service.proto"),
];

fn main() -> Result<(), Box<dyn Error>> {
    println!("cargo:rerun-if-changed=build.rs");
    // `cfg(tls)`: this build can serve and dial TLS, through either TLS feature.
    println!("cargo::rustc-check-cfg=cfg(tls)");
    if std::env::var_os("CARGO_FEATURE_TLS").is_some() || std::env::var_os("CARGO_FEATURE_BORINGSSL").is_some() {
        println!("cargo::rustc-cfg=tls");
    }
    let proto_dir = Path::new("proto");
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?).join("proto");
    fs::create_dir_all(&out_dir)?;

    let mut mod_rs = String::new();
    for (module, proto) in PROTOS {
        let input = proto_dir.join(proto);
        println!("cargo:rerun-if-changed={}", input.display());
        for generated in generate(proto_dir, &input, module, &out_dir)? {
            mod_rs += &format!("pub mod {generated};\n");
        }
    }
    fs::write(out_dir.join("mod.rs"), mod_rs)?;

    // examples/own_service.rs's messages, generated as a program of your own would generate
    // its own: protobuf-codegen, messages only (the server side needs no stubs).
    let example = Path::new("examples/echo.proto");
    println!("cargo:rerun-if-changed={}", example.display());
    let examples_out = PathBuf::from(std::env::var("OUT_DIR")?).join("examples");
    fs::create_dir_all(&examples_out)?;
    protobuf_codegen::Codegen::new().pure().include("examples").input(example).out_dir(&examples_out).run()?;
    Ok(())
}

/// Writes `<module>.rs` (and `<module>_grpc.rs` if the file has services); returns their names.
fn generate(include: &Path, input: &Path, module: &str, out_dir: &Path) -> Result<Vec<String>, Box<dyn Error>> {
    let stem = input.file_stem().unwrap().to_string_lossy().into_owned();
    let scratch = out_dir.join(format!("{module}.tmp"));
    fs::create_dir_all(&scratch)?;

    // 1. Messages.
    protobuf_codegen::Codegen::new().pure().include(include).input(input).out_dir(&scratch).run()?;
    fs::rename(scratch.join(format!("{stem}.rs")), out_dir.join(format!("{module}.rs")))?;
    fs::remove_dir_all(&scratch)?;
    let mut modules = vec![module.to_owned()];

    // 2. Service stubs, from the same parse re-read as protobuf-2 descriptors.
    let parsed = protobuf_parse::Parser::new().pure().include(include).input(input).parse_and_typecheck()?;
    let mut set = protobuf::descriptor::FileDescriptorSet::new();
    set.file = parsed.file_descriptors;
    let set_v2: protobuf2::descriptor::FileDescriptorSet =
        protobuf2::Message::parse_from_bytes(&set.write_to_bytes()?)?;
    let to_generate: Vec<String> = parsed.relative_paths.iter().map(|p| p.to_string()).collect();
    for file in grpcio_compiler::codegen::gen(set_v2.get_file(), &to_generate) {
        let code = String::from_utf8(file.content)?.replace(&format!("super::{stem}::"), &format!("super::{module}::"));
        fs::write(out_dir.join(format!("{module}_grpc.rs")), code)?;
        modules.push(format!("{module}_grpc"));
    }
    Ok(modules)
}
