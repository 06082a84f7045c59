// Makes the binary self-contained on any machine with the same libtorch: the lib dir
// goes in as an rpath (no LD_LIBRARY_PATH needed), and libtorch_cuda stays linked even
// though no symbol of it is referenced, since its static initialisers register the
// CUDA backend; without it `Cuda::is_available()` is false on a GPU machine.
fn main() {
    let Ok(lib_dir) = std::env::var("DEP_TCH_LIBTORCH_LIB") else {
        return;
    };
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
