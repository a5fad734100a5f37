// The fused weighted delta merge of αVIL (docs/design.md §4): op schemas and
// the CPU kernels. The CUDA kernels live in cuda/merge.cu, the checks and
// entry points both share in merge.h.
//
//   merge(theta (N,) f32, deltas (K, N) f32|bf16|f16, alphas (K,) f32) -> (N,) f32
//       θ0 + Σ_k α_k δ_k
//   merge_(theta, deltas, alphas) -> ()      the same, written into theta
//   dots(deltas (K, N), g (N,) f32) -> (K,) f32
//       Δ·g, the α-gradient of L(θ0 + Δᵀα) given g = ∇_θ L
//
// All three are memory bound: the kernels read every input element once and
// write every output element once, with float32 arithmetic whatever the type
// of the deltas (half-width deltas halve the bytes read, which is their point).
#include <Python.h>

#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <ATen/core/grad_mode.h>
#include <ATen/core/LegacyTypeDispatch.h>
#include <ATen/ops/empty.h>
#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>
#include <torch/library.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#include "merge.h"

extern "C" {
// The extension is loaded by `import avil._C` only for its static
// initialisers (TORCH_LIBRARY below); the module itself is empty, so no
// pybind and one library for every CPython version (limited API).
PyObject* PyInit__C(void) {
  static struct PyModuleDef module_def = {PyModuleDef_HEAD_INIT, "_C", nullptr, -1, nullptr};
  return PyModule_Create(&module_def);
}
}

namespace avil {

namespace {

// Elements per cache block: the running sum of one block (8 KiB) stays in L1
// while the K rows stream past it, so theta and the output cross the memory
// bus once however large K is.
constexpr int64_t kBlock = 2048;
// Elements per parallel task: big enough that threads stream long runs.
constexpr int64_t kGrain = 1 << 16;

// Plain element loads that GCC vectorises at -O3 (bfloat16 is the top half
// of a float32). float16 goes through the compiler's _Float16 where it has
// one, which becomes vcvtph2ps in the x86-64-v3 copy below, else through
// c10's bit conversion.
inline float load(const float* p, int64_t i) { return p[i]; }
inline float load(const c10::BFloat16* p, int64_t i) {
  uint16_t h;
  std::memcpy(&h, p + i, sizeof(h));
  uint32_t bits = uint32_t(h) << 16;
  float f;
  std::memcpy(&f, &bits, sizeof(f));
  return f;
}
inline float load(const c10::Half* p, int64_t i) {
#ifdef __FLT16_MAX__
  _Float16 h;
  std::memcpy(&h, p + i, sizeof(h));
  return static_cast<float>(h);
#else
  uint16_t h;
  std::memcpy(&h, p + i, sizeof(h));
  return c10::detail::fp16_ieee_to_fp32_value(h);
#endif
}

// x86-64 builds carry a second copy of the hot loops for x86-64-v3 (AVX2,
// FMA, F16C), picked at load time by the CPU: at the baseline (SSE2) the
// float16 conversion and the per-element arithmetic, not memory, limit one
// thread. Other targets compile the baseline loop only.
#if defined(__x86_64__) && defined(__GNUC__) && defined(__linux__)
#define AVIL_HOT __attribute__((target_clones("arch=x86-64-v3", "default")))
#else
#define AVIL_HOT
#endif
#define AVIL_INLINE inline __attribute__((always_inline))

// out[i] = theta[i] + Σ_k alphas[k] * deltas[k, i] for i in [begin, end);
// out may alias theta (merge_): every element is read before it is written.
template <typename D>
AVIL_INLINE void merge_range(const float* theta, const D* deltas, const float* alphas,
                             float* out, int64_t K, int64_t N, int64_t begin, int64_t end) {
  for (int64_t b = begin; b < end; b += kBlock) {
    const int64_t n = std::min(kBlock, end - b);
    const float* t = theta + b;
    float* o = out + b;
    const D* d0 = deltas + b;
    const float a0 = alphas[0];
    for (int64_t i = 0; i < n; ++i) o[i] = t[i] + a0 * load(d0, i);
    // Two rows per sweep: half the L1 round trips of the running sum.
    int64_t k = 1;
    for (; k + 1 < K; k += 2) {
      const D* da = deltas + k * N + b;
      const D* db = deltas + (k + 1) * N + b;
      const float aa = alphas[k], ab = alphas[k + 1];
      for (int64_t i = 0; i < n; ++i) o[i] += aa * load(da, i) + ab * load(db, i);
    }
    if (k < K) {
      const D* da = deltas + k * N + b;
      const float aa = alphas[k];
      for (int64_t i = 0; i < n; ++i) o[i] += aa * load(da, i);
    }
  }
}

// Lanes of the dot-product accumulators: a float reduction only vectorises
// without -ffast-math if the lanes are explicit.
constexpr int64_t kLanes = 16;

// Σ_i x[i] * g[i] over n elements with kLanes float32 partial sums.
template <typename D>
AVIL_INLINE float dot_block(const D* x, const float* g, int64_t n) {
  float acc[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes)
    for (int64_t l = 0; l < kLanes; ++l) acc[l] += load(x, i + l) * g[i + l];
  for (; i < n; ++i) acc[0] += load(x, i) * g[i];
  float s = 0.f;
  for (int64_t l = 0; l < kLanes; ++l) s += acc[l];
  return s;
}

// p[k] = Σ_{i in [begin, end)} deltas[k, i] * g[i], block by block so that
// each block of g is reused from L1 by all K rows.
template <typename D>
AVIL_INLINE void dots_range(const D* deltas, const float* g, float* p, int64_t K, int64_t N,
                            int64_t begin, int64_t end) {
  for (int64_t k = 0; k < K; ++k) p[k] = 0.f;
  for (int64_t i = begin; i < end; i += kBlock) {
    const int64_t n = std::min(kBlock, end - i);
    for (int64_t k = 0; k < K; ++k) p[k] += dot_block(deltas + k * N + i, g + i, n);
  }
}

// One non-template (so cloneable) entry point per delta type.
#define AVIL_RANGES(D, NAME)                                                              \
  AVIL_HOT void merge_range_##NAME(const float* theta, const D* deltas, const float* alphas, \
                                   float* out, int64_t K, int64_t N, int64_t begin,       \
                                   int64_t end) {                                         \
    merge_range(theta, deltas, alphas, out, K, N, begin, end);                            \
  }                                                                                       \
  AVIL_HOT void dots_range_##NAME(const D* deltas, const float* g, float* p, int64_t K,   \
                                  int64_t N, int64_t begin, int64_t end) {                \
    dots_range(deltas, g, p, K, N, begin, end);                                           \
  }                                                                                       \
  void ranges(const float* theta, const D* deltas, const float* alphas, float* out,       \
              int64_t K, int64_t N, int64_t begin, int64_t end) {                         \
    merge_range_##NAME(theta, deltas, alphas, out, K, N, begin, end);                     \
  }                                                                                       \
  void ranges(const D* deltas, const float* g, float* p, int64_t K, int64_t N,            \
              int64_t begin, int64_t end) {                                               \
    dots_range_##NAME(deltas, g, p, K, N, begin, end);                                    \
  }
AVIL_RANGES(float, f32)
AVIL_RANGES(c10::BFloat16, bf16)
AVIL_RANGES(c10::Half, f16)
#undef AVIL_RANGES

template <typename D>
void merge_cpu_kernel(const float* theta, const D* deltas, const float* alphas, float* out,
                      int64_t K, int64_t N) {
  at::parallel_for(0, N, kGrain, [&](int64_t begin, int64_t end) {
    ranges(theta, deltas, alphas, out, K, N, begin, end);
  });
}

// out[k] = Σ_i deltas[k, i] * g[i]. N is cut into fixed chunks whose partial
// sums are added in chunk order at the end, so the result does not depend on
// the number of threads.
template <typename D>
void dots_cpu_kernel(const D* deltas, const float* g, float* out, int64_t K, int64_t N) {
  const int64_t chunks = (N + kGrain - 1) / kGrain;
  std::vector<float> partial(chunks * K);  // (chunks, K)
  at::parallel_for(0, chunks, 1, [&](int64_t c0, int64_t c1) {
    for (int64_t c = c0; c < c1; ++c)
      ranges(deltas, g, partial.data() + c * K, K, N, c * kGrain, std::min(N, (c + 1) * kGrain));
  });
  for (int64_t k = 0; k < K; ++k) {
    double s = 0.0;  // chunk sums in double: the only cross-chunk rounding
    for (int64_t c = 0; c < chunks; ++c) s += partial[c * K + k];
    out[k] = static_cast<float>(s);
  }
}

void merge_cpu_into(const at::Tensor& theta, const at::Tensor& deltas, const at::Tensor& alphas,
                    const at::Tensor& out) {
  const int64_t K = deltas.size(0), N = deltas.size(1);
  const float* t = theta.data_ptr<float>();
  const float* a = alphas.data_ptr<float>();
  float* o = out.data_ptr<float>();
  switch (deltas.scalar_type()) {
    case at::kFloat: merge_cpu_kernel(t, deltas.data_ptr<float>(), a, o, K, N); break;
    case at::kBFloat16: merge_cpu_kernel(t, deltas.data_ptr<c10::BFloat16>(), a, o, K, N); break;
    case at::kHalf: merge_cpu_kernel(t, deltas.data_ptr<c10::Half>(), a, o, K, N); break;
    default: TORCH_CHECK(false, "unreachable: dtype checked above");
  }
}

at::Tensor dots_cpu(const at::Tensor& deltas, const at::Tensor& g) {
  check_dots(deltas, g);
  const int64_t K = deltas.size(0), N = deltas.size(1);
  at::Tensor out = at::empty({K}, g.options());
  const float* gp = g.data_ptr<float>();
  float* o = out.data_ptr<float>();
  switch (deltas.scalar_type()) {
    case at::kFloat: dots_cpu_kernel(deltas.data_ptr<float>(), gp, o, K, N); break;
    case at::kBFloat16: dots_cpu_kernel(deltas.data_ptr<c10::BFloat16>(), gp, o, K, N); break;
    case at::kHalf: dots_cpu_kernel(deltas.data_ptr<c10::Half>(), gp, o, K, N); break;
    default: TORCH_CHECK(false, "unreachable: dtype checked above");
  }
  return out;
}

}  // namespace

TORCH_LIBRARY(avil, m) {
  m.def("merge(Tensor theta, Tensor deltas, Tensor alphas) -> Tensor");
  m.def("merge_(Tensor(a!) theta, Tensor deltas, Tensor alphas) -> ()");
  m.def("dots(Tensor deltas, Tensor g) -> Tensor");
}

// merge_ behaves like an in-place torch op: after writing theta it bumps
// theta's version counter (ADInplaceOrView), so autograd refuses, never
// silently mis-differentiates, a tensor it saved before the merge. torch's
// stock ADInplaceOrView fallback bumps only returned aliases, and merge_
// returns nothing (which keeps it functionalisable under torch.compile), so
// the bump is written out here. merge_ has no derivative (Autograd): with
// gradients on, an input that requires grad is refused, as torch refuses an
// out= op's; merge (out of place) is the differentiable one.
const c10::TypedOperatorHandle<void(at::Tensor&, const at::Tensor&, const at::Tensor&)>& merge__op() {
  static const auto op = c10::Dispatcher::singleton()
                             .findSchemaOrThrow("avil::merge_", "")
                             .typed<void(at::Tensor&, const at::Tensor&, const at::Tensor&)>();
  return op;
}

void merge__autograd(c10::DispatchKeySet keys, at::Tensor& theta, const at::Tensor& deltas,
                     const at::Tensor& alphas) {
  TORCH_CHECK(!(at::GradMode::is_enabled() &&
                (theta.requires_grad() || deltas.requires_grad() || alphas.requires_grad())),
              "avil::merge_: the in-place merge has no derivative, but an input requires grad. "
              "Fix: use avil.ops.merge (out of place, differentiable), or call merge_ under "
              "torch.no_grad()");
  at::AutoDispatchBelowAutograd guard;
  merge__op().redispatch(keys & c10::after_autograd_keyset, theta, deltas, alphas);
}

void merge__ad_inplace_or_view(c10::DispatchKeySet keys, at::Tensor& theta, const at::Tensor& deltas,
                               const at::Tensor& alphas) {
  {
    at::AutoDispatchBelowADInplaceOrView guard;
    merge__op().redispatch(keys & c10::after_ADInplaceOrView_keyset, theta, deltas, alphas);
  }
  theta.unsafeGetTensorImpl()->bump_version();
}

TORCH_LIBRARY_IMPL(avil, Autograd, m) {
  m.impl("merge_", TORCH_FN(merge__autograd));
}

TORCH_LIBRARY_IMPL(avil, ADInplaceOrView, m) {
  m.impl("merge_", TORCH_FN(merge__ad_inplace_or_view));
}

TORCH_LIBRARY_IMPL(avil, CPU, m) {
  m.impl("merge", &merge_op<merge_cpu_into>);
  m.impl("merge_", &merge__op<merge_cpu_into>);
  m.impl("dots", &dots_cpu);
}

}  // namespace avil
