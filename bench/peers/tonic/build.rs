fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Honour an explicit PROTOC; otherwise use the vendored one.
    if std::env::var_os("PROTOC").is_none() {
        std::env::set_var("PROTOC", protoc_bin_vendored::protoc_bin_path()?);
    }
    let proto_dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../../proto");
    println!("cargo:rerun-if-changed={proto_dir}/greeter.proto");
    tonic_prost_build::configure()
        .build_client(false)
        .compile_protos(&[format!("{proto_dir}/greeter.proto")], &[proto_dir.to_owned()])?;
    Ok(())
}
