//! Builds the XDP steering program (`dhcp-ebpf`) for the BPF target with aya-build and places
//! the object in OUT_DIR, where `xdp.rs` embeds it. Needs the nightly toolchain with rust-src
//! and bpf-linker (`cargo xtask setup` installs them); `AYA_BUILD_SKIP=1` skips it.

fn main() {
    let here = std::path::PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let root = here.parent().expect("dhcp-user lives in the workspace");
    let ebpf = root.join("dhcp-ebpf");
    // aya-build watches the program's folder; the shared crate changes it too.
    println!("cargo:rerun-if-changed={}", root.join("dhcp-common").display());
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR").expect("set by cargo"));
    let skip = std::env::var("AYA_BUILD_SKIP").is_ok_and(|v| v == "1" || v.eq_ignore_ascii_case("true"));
    if skip && !out.join("dhcp-ebpf").exists() {
        // Keep the crate buildable for tools that skip the eBPF build; loading then fails
        // with a clear error (see xdp.rs).
        std::fs::write(out.join("dhcp-ebpf"), b"").expect("write placeholder object");
    }
    let ebpf = ebpf.to_str().expect("UTF-8 path");
    // aya-build relays every line of the nested cargo's stderr as a build warning; quiet keeps
    // only real problems. (Single-threaded build script: setting the environment is sound.)
    std::env::set_var("CARGO_TERM_QUIET", "true");
    let package = aya_build::Package { name: "dhcp-ebpf", root_dir: ebpf, ..Default::default() };
    if let Err(e) = aya_build::build_ebpf([package], aya_build::Toolchain::default()) {
        panic!("building the XDP program failed: {e:#}\n(run `cargo xtask setup` to install the nightly rust-src component and bpf-linker)");
    }
}
