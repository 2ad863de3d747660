fn main() -> Result<(), Box<dyn std::error::Error>> {
    // A fresh machine has no `protoc`: use the vendored one unless the
    // caller points PROTOC somewhere on purpose.
    if std::env::var_os("PROTOC").is_none() {
        std::env::set_var("PROTOC", protoc_bin_vendored::protoc_bin_path()?);
    }
    println!("cargo:rerun-if-changed=../../proto/quorumhub.proto");
    tonic_prost_build::configure()
        .compile_protos(&["../../proto/quorumhub.proto"], &["../../proto"])?;
    Ok(())
}
