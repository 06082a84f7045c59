// Makes the binary self-contained on any machine with the same libtorch: the lib dir
// goes in as an rpath (no LD_LIBRARY_PATH needed), and libtorch_cuda stays linked even
// though no symbol of it is referenced, since its static initialisers register the
// CUDA backend; without it `Cuda::is_available()` is false on a GPU machine. Also
// compiles the few lines of C++ that reach what tch does not (src/precision/).
fn main() {
    let Ok(lib_dir) = std::env::var("DEP_TCH_LIBTORCH_LIB") else {
        panic!(
            "torch-sys did not say where libtorch is (DEP_TCH_LIBTORCH_LIB); run `make libtorch`"
        );
    };
    compile_precision_switches(std::path::Path::new(&lib_dir));
    // Through the link to the real folder, so the binary outlives the clone it was built in.
    let lib_dir = std::fs::canonicalize(&lib_dir)
        .map(|dir| dir.display().to_string())
        .unwrap_or(lib_dir);
    println!("cargo:rustc-link-arg=-Wl,-rpath,{lib_dir}");
    if std::path::Path::new(&lib_dir)
        .join("libtorch_cuda.so")
        .exists()
    {
        println!("cargo:rustc-link-arg=-Wl,--no-as-needed");
        println!("cargo:rustc-link-arg=-ltorch_cuda");
        println!("cargo:rustc-link-arg=-Wl,--as-needed");
    }
}

/// The C++ beside src/precision/mod.rs, built with torch-sys's own flags: its headers, C++17
/// and the C++ ABI of the libtorch build (1 for PyTorch's wheels, as torch-sys assumes).
fn compile_precision_switches(lib_dir: &std::path::Path) {
    const SOURCE: &str = "src/precision/libtorch.cpp";
    println!("cargo:rerun-if-changed={SOURCE}");
    println!("cargo:rerun-if-env-changed=LIBTORCH_CXX11_ABI");
    let include = lib_dir.join("../include");
    let abi = std::env::var("LIBTORCH_CXX11_ABI").unwrap_or_else(|_| "1".into());
    cc::Build::new()
        .cpp(true)
        .file(SOURCE)
        .include(&include)
        .include(include.join("torch/csrc/api/include"))
        .flag("-std=c++17")
        .flag(format!("-D_GLIBCXX_USE_CXX11_ABI={abi}"))
        .flag("-DGLOG_USE_GLOG_EXPORT")
        .warnings(false)
        .compile("cellnets_precision");
}
