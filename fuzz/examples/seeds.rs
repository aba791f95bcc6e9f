//! Writes the committed seed corpus: `cargo run --example seeds` in `fuzz/` (any toolchain)
//! replaces `fuzz/seeds/TARGET/*` with what [`xdhcpd_fuzz::seeds::all`] builds.

fn main() -> std::io::Result<()> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("seeds");
    let _ = std::fs::remove_dir_all(&root);
    let mut n = 0;
    for (target, name, bytes) in xdhcpd_fuzz::seeds::all() {
        let dir = root.join(target);
        std::fs::create_dir_all(&dir)?;
        std::fs::write(dir.join(name), bytes)?;
        n += 1;
    }
    println!("{n} seeds written under {}", root.display());
    Ok(())
}
