// Included ahead of torch-sys's C++ glue by .cargo/config.toml (CXXFLAGS and
// CPLUS_INCLUDE_PATH), so that cargo run before libtorch is installed stops with what
// to do, not only with "torch/torch.h: No such file or directory" from deep inside the
// build. torch-sys's build script runs before anything of cellnets', and takes any
// LIBTORCH path on trust, so its compiler is the first place that can tell.
#if defined(__has_include)
#if !__has_include(<torch/torch.h>)
#error "cellnets: no libtorch at LIBTORCH (the .libtorch link in the clone unless LIBTORCH is exported). Run `make libtorch` once (scripts/setup-libtorch.sh: PyTorch 2.11.0 into ~/.cache/cellnets, linked as .libtorch), or export LIBTORCH=<an unpacked libtorch or a torch 2.11.0 package folder>; then run cargo again."
#endif
#endif
