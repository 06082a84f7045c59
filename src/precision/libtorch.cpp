// The C++ that reaches what tch 0.24 does not; build.rs compiles it. The switches it
// reaches: TF32 for float32 matmuls and convolutions, autocast to bf16 (tch's
// `autocast` only turns on CUDA's, in fp16), and the channels-last memory format (tch
// has no MemoryFormat). Each function that can fail returns 0, or 1 with libtorch's
// message copied into `error`.
#include <ATen/Context.h>
#include <ATen/autocast_mode.h>
#include <ATen/core/Tensor.h>

#include <cstring>
#include <exception>

namespace {
template <typename F>
int guarded(char *error, size_t error_size, F body) {
  try {
    body();
    return 0;
  } catch (const std::exception &e) {
    std::strncpy(error, e.what(), error_size - 1);
    error[error_size - 1] = '\0';
    return 1;
  }
}
}  // namespace

extern "C" {

int cellnets_set_tf32(bool allowed, char *error, size_t error_size) {
  return guarded(error, error_size, [&] {
    at::globalContext().setAllowTF32CuBLAS(allowed);
    at::globalContext().setAllowTF32CuDNN(allowed);
  });
}

// Autocast state is per thread. Casts are not cached: the cache holds a bf16 copy of
// each weight until the outermost autocast region ends, and this region lasts a whole
// run, over which the weights change every step.
int cellnets_set_bf16_autocast(int device_type, bool enabled, char *error,
                               size_t error_size) {
  return guarded(error, error_size, [&] {
    auto device = static_cast<c10::DeviceType>(device_type);
    at::autocast::set_autocast_cache_enabled(false);
    at::autocast::set_autocast_dtype(device, at::kBFloat16);
    at::autocast::set_autocast_enabled(device, enabled);
  });
}

bool cellnets_bf16_autocast_enabled(int device_type) {
  auto device = static_cast<c10::DeviceType>(device_type);
  return at::autocast::is_autocast_enabled(device) &&
         at::autocast::get_autocast_dtype(device) == at::kBFloat16;
}

// Gives a variable channels-last (NHWC) strides in place, as PyTorch's
// `module.to(memory_format=torch.channels_last)` does: every handle on it (the
// VarStore's, the model's) sees the new layout.
int cellnets_set_channels_last(at::Tensor *variable, char *error, size_t error_size) {
  return guarded(error, error_size, [&] {
    variable->set_data(variable->contiguous(at::MemoryFormat::ChannelsLast));
  });
}

bool cellnets_is_channels_last(const at::Tensor *tensor) {
  return tensor->dim() == 4 && tensor->is_contiguous(at::MemoryFormat::ChannelsLast);
}
}
