//! Link-time settings for the service binary.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let linux_gnu = std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux")
        && std::env::var("CARGO_CFG_TARGET_ENV").as_deref() == Ok("gnu");
    if linux_gnu {
        // Packed relative relocations (DT_RELR, glibc 2.36+, binutils 2.38+): the
        // position-independent binary's 140k relocations take 50 KB instead of 3.3 MB,
        // and the loader reads every byte of them at start, where they stay resident. An
        // older linker warns and ignores the option.
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
}
