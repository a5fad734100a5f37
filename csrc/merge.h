// What the CPU kernels (merge.cpp) and the CUDA kernels (cuda/merge.cu) of the
// fused delta merge share (docs/design.md §4): the input checks and the merge
// ops' entry points. avil/ops.py repeats the checks, with the same messages,
// for the pure-PyTorch reference and the fake kernels torch.compile traces
// with. Checks are on metadata only: nothing here synchronises with a device.
#pragma once

#include <ATen/core/Tensor.h>
#include <ATen/ops/empty_like.h>
#include <c10/util/Exception.h>

#include <cstdint>

namespace avil {

inline void check_deltas(const at::Tensor& deltas, const char* op) {
  TORCH_CHECK(deltas.dim() == 2, op, ": deltas must be (K, N), got shape ", deltas.sizes());
  TORCH_CHECK(deltas.size(0) > 0, op, ": deltas is empty (K = 0): there is nothing to merge");
  const auto dt = deltas.scalar_type();
  TORCH_CHECK(dt == at::kFloat || dt == at::kBFloat16 || dt == at::kHalf, op,
              ": deltas must be float32, bfloat16 or float16, got ", dt);
  TORCH_CHECK(deltas.is_contiguous(), op, ": deltas must be contiguous (one flat row per task)");
}

// A float32 vector t whose length must equal deltas' dimension n_name (K or N).
inline void check_vector(const at::Tensor& t, const char* name, int64_t n, const char* n_name,
                         const at::Tensor& deltas, const char* op) {
  TORCH_CHECK(t.dim() == 1, op, ": ", name, " must be 1-D, got shape ", t.sizes());
  TORCH_CHECK(t.size(0) == n, op, ": ", name, " has ", t.size(0), " elements but deltas has ",
              n_name, " = ", n);
  TORCH_CHECK(t.scalar_type() == at::kFloat, op, ": ", name, " must be float32, got ",
              t.scalar_type());
  TORCH_CHECK(t.device() == deltas.device(), op, ": ", name, " is on ", t.device(),
              " but deltas is on ", deltas.device());
  TORCH_CHECK(t.is_contiguous(), op, ": ", name, " must be contiguous");
}

// merge / merge_: theta (N,), deltas (K, N), alphas (K,).
inline void check_merge(const at::Tensor& theta, const at::Tensor& deltas, const at::Tensor& alphas,
                        const char* op) {
  check_deltas(deltas, op);
  check_vector(theta, "theta", deltas.size(1), "N", deltas, op);
  check_vector(alphas, "alphas", deltas.size(0), "K", deltas, op);
}

// dots: deltas (K, N), g (N,).
inline void check_dots(const at::Tensor& deltas, const at::Tensor& g) {
  check_deltas(deltas, "avil::dots");
  check_vector(g, "g", deltas.size(1), "N", deltas, "avil::dots");
}

// A backend's kernel out = theta + Δᵀα (out may be theta itself).
using MergeInto = void (*)(const at::Tensor& theta, const at::Tensor& deltas, const at::Tensor& alphas,
                           const at::Tensor& out);

// avil::merge on a backend: checked, into a new tensor.
template <MergeInto into>
at::Tensor merge_op(const at::Tensor& theta, const at::Tensor& deltas, const at::Tensor& alphas) {
  check_merge(theta, deltas, alphas, "avil::merge");
  at::Tensor out = at::empty_like(theta);
  into(theta, deltas, alphas, out);
  return out;
}

// avil::merge_ on a backend: checked, into theta.
template <MergeInto into>
void merge__op(at::Tensor& theta, const at::Tensor& deltas, const at::Tensor& alphas) {
  check_merge(theta, deltas, alphas, "avil::merge_");
  into(theta, deltas, alphas, theta);
}

}  // namespace avil
