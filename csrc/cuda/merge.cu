// CUDA kernels for the ops declared in ../merge.cpp (shapes and semantics
// there). Both kernels are memory bound: one pass, 16-byte (float32) or
// 8-byte (half types) loads per thread and row, grid-stride loops sized to
// the device, launched on the current stream. alphas is read on the device,
// so nothing here waits for the host.
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <cuda_fp16.h>

#include <algorithm>
#include <cstdint>

#include "../merge.h"

namespace avil {

namespace {

constexpr int kThreads = 256;
constexpr int kVec = 4;  // elements per vector load

// Four elements of a delta row as float32: one float4, or one 8-byte load of
// four bfloat16 / float16 values.
__device__ __forceinline__ float4 load4(const float* p) {
  return __ldg(reinterpret_cast<const float4*>(p));
}
__device__ __forceinline__ float4 load4(const __nv_bfloat16* p) {
  const uint2 raw = __ldg(reinterpret_cast<const uint2*>(p));
  const float2 lo = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(&raw.x));
  const float2 hi = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(&raw.y));
  return make_float4(lo.x, lo.y, hi.x, hi.y);
}
__device__ __forceinline__ float4 load4(const __half* p) {
  const uint2 raw = __ldg(reinterpret_cast<const uint2*>(p));
  const float2 lo = __half22float2(*reinterpret_cast<const __half2*>(&raw.x));
  const float2 hi = __half22float2(*reinterpret_cast<const __half2*>(&raw.y));
  return make_float4(lo.x, lo.y, hi.x, hi.y);
}
__device__ __forceinline__ float load1(const float* p) { return __ldg(p); }
__device__ __forceinline__ float load1(const __nv_bfloat16* p) { return __bfloat162float(*p); }
__device__ __forceinline__ float load1(const __half* p) { return __half2float(*p); }

// out[i] = theta[i] + Σ_k alphas[k] * deltas[k, i]. Vector part over the
// first N - N % kVec elements (requires 16-byte aligned rows, checked by the
// launcher), scalar tail or scalar fallback for the rest. out may alias theta.
template <typename D, bool kVectorised>
__global__ void merge_kernel(const float* theta, const D* __restrict__ deltas,
                             const float* __restrict__ alphas, float* out, int64_t K, int64_t N) {
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  const int64_t tid = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  int64_t tail = 0;
  if (kVectorised) {
    const int64_t nvec = N / kVec;
    for (int64_t v = tid; v < nvec; v += stride) {
      const int64_t i = v * kVec;
      float4 acc = *reinterpret_cast<const float4*>(theta + i);
      for (int64_t k = 0; k < K; ++k) {
        const float a = __ldg(alphas + k);
        const float4 d = load4(deltas + k * N + i);
        acc.x = fmaf(a, d.x, acc.x);
        acc.y = fmaf(a, d.y, acc.y);
        acc.z = fmaf(a, d.z, acc.z);
        acc.w = fmaf(a, d.w, acc.w);
      }
      *reinterpret_cast<float4*>(out + i) = acc;
    }
    tail = nvec * kVec;
  }
  for (int64_t i = tail + tid; i < N; i += stride) {
    float acc = theta[i];
    for (int64_t k = 0; k < K; ++k) acc = fmaf(__ldg(alphas + k), load1(deltas + k * N + i), acc);
    out[i] = acc;
  }
}

// Rows handled per sweep of dots: the per-thread sums live in registers, so
// g is read once for every kRows rows of deltas.
constexpr int kRows = 8;

// Sum of v over the block (blockDim.x == kThreads); the result is valid in
// thread 0. Warp shuffles, then one value per warp through shared memory.
__device__ __forceinline__ float block_sum(float v, float* shared) {
  for (int off = 16; off > 0; off >>= 1) v += __shfl_down_sync(0xffffffffu, v, off);
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  __syncthreads();  // shared is reused across calls
  if (lane == 0) shared[warp] = v;
  __syncthreads();
  v = threadIdx.x < kThreads / 32 ? shared[threadIdx.x] : 0.f;
  if (warp == 0)
    for (int off = 16; off > 0; off >>= 1) v += __shfl_down_sync(0xffffffffu, v, off);
  return v;
}

// partial[k, blockIdx.x] = Σ over this block's grid-stride slice of
// deltas[k, i] * g[i], for rows k in [k0, k0 + kRows).
template <typename D, bool kVectorised>
__global__ void dots_partial_kernel(const D* __restrict__ deltas, const float* __restrict__ g,
                                    float* __restrict__ partial, int64_t K, int64_t N,
                                    int64_t k0) {
  __shared__ float shared[kThreads / 32];
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  const int64_t tid = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  const int rows = int(std::min<int64_t>(kRows, K - k0));
  float acc[kRows] = {};
  int64_t tail = 0;
  if (kVectorised) {
    const int64_t nvec = N / kVec;
    for (int64_t v = tid; v < nvec; v += stride) {
      const int64_t i = v * kVec;
      const float4 gv = load4(g + i);
#pragma unroll
      for (int r = 0; r < kRows; ++r) {
        if (r < rows) {
          const float4 d = load4(deltas + (k0 + r) * N + i);
          acc[r] += d.x * gv.x + d.y * gv.y + d.z * gv.z + d.w * gv.w;
        }
      }
    }
    tail = nvec * kVec;
  }
  for (int64_t i = tail + tid; i < N; i += stride) {
    const float gi = __ldg(g + i);
#pragma unroll
    for (int r = 0; r < kRows; ++r)
      if (r < rows) acc[r] += load1(deltas + (k0 + r) * N + i) * gi;
  }
#pragma unroll
  for (int r = 0; r < kRows; ++r) {
    const float s = block_sum(acc[r], shared);  // every thread takes part
    if (r < rows && threadIdx.x == 0) partial[(k0 + r) * gridDim.x + blockIdx.x] = s;
  }
}

// out[k] = Σ_b partial[k, b], one block per row, in a fixed order: the
// result does not depend on scheduling (no atomics).
__global__ void dots_finish_kernel(const float* __restrict__ partial, float* __restrict__ out,
                                   int blocks) {
  __shared__ float shared[kThreads / 32];
  const float* row = partial + int64_t(blockIdx.x) * blocks;
  float s = 0.f;
  for (int b = threadIdx.x; b < blocks; b += blockDim.x) s += row[b];
  s = block_sum(s, shared);
  if (threadIdx.x == 0) out[blockIdx.x] = s;
}

// Enough blocks to fill the device a few times over; the loops stride the rest.
// (Device attributes straight from the runtime: ATen/cuda/CUDAContext.h
// would pull in the cuBLAS/cuSPARSE headers for nothing.)
int grid_for(int64_t work) {
  int device = 0, sms = 0;
  C10_CUDA_CHECK(cudaGetDevice(&device));
  C10_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device));
  const int64_t wanted = (work + kThreads - 1) / kThreads;
  return int(std::max<int64_t>(1, std::min<int64_t>(wanted, int64_t(sms) * 8)));
}

bool aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

// Calls f with a null pointer of the CUDA delta element type.
template <typename F>
void dispatch_delta(const at::Tensor& deltas, F&& f) {
  switch (deltas.scalar_type()) {
    case at::kFloat: f(static_cast<const float*>(nullptr)); break;
    case at::kBFloat16: f(static_cast<const __nv_bfloat16*>(nullptr)); break;
    case at::kHalf: f(static_cast<const __half*>(nullptr)); break;
    default: TORCH_CHECK(false, "unreachable: dtype checked above");
  }
}

void merge_cuda_into(const at::Tensor& theta, const at::Tensor& deltas, const at::Tensor& alphas,
                     const at::Tensor& out) {
  const int64_t K = deltas.size(0), N = deltas.size(1);
  const c10::cuda::CUDAGuard guard(theta.device());
  const auto stream = c10::cuda::getCurrentCUDAStream();
  dispatch_delta(deltas, [&](auto tag) {
    using D = std::remove_const_t<std::remove_pointer_t<decltype(tag)>>;
    const D* d = static_cast<const D*>(deltas.const_data_ptr());
    // Every row starts 16-byte aligned only if the row length allows it.
    const bool vec = N % (16 / sizeof(D)) == 0 && aligned16(d) &&
                     aligned16(theta.const_data_ptr()) && aligned16(out.data_ptr());
    const int grid = grid_for(vec ? N / kVec : N);
    if (vec)
      merge_kernel<D, true><<<grid, kThreads, 0, stream>>>(
          theta.const_data_ptr<float>(), d, alphas.const_data_ptr<float>(),
          out.data_ptr<float>(), K, N);
    else
      merge_kernel<D, false><<<grid, kThreads, 0, stream>>>(
          theta.const_data_ptr<float>(), d, alphas.const_data_ptr<float>(),
          out.data_ptr<float>(), K, N);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
}

at::Tensor dots_cuda(const at::Tensor& deltas, const at::Tensor& g) {
  check_dots(deltas, g);
  const int64_t K = deltas.size(0), N = deltas.size(1);
  const c10::cuda::CUDAGuard guard(g.device());
  const auto stream = c10::cuda::getCurrentCUDAStream();
  at::Tensor out = at::empty({K}, g.options());
  dispatch_delta(deltas, [&](auto tag) {
    using D = std::remove_const_t<std::remove_pointer_t<decltype(tag)>>;
    const D* d = static_cast<const D*>(deltas.const_data_ptr());
    const bool vec = N % (16 / sizeof(D)) == 0 && aligned16(d) && aligned16(g.const_data_ptr());
    const int grid = grid_for(vec ? N / kVec : N);
    at::Tensor partial = at::empty({K, grid}, g.options());  // (K, blocks)
    for (int64_t k0 = 0; k0 < K; k0 += kRows) {
      if (vec)
        dots_partial_kernel<D, true><<<grid, kThreads, 0, stream>>>(
            d, g.const_data_ptr<float>(), partial.data_ptr<float>(), K, N, k0);
      else
        dots_partial_kernel<D, false><<<grid, kThreads, 0, stream>>>(
            d, g.const_data_ptr<float>(), partial.data_ptr<float>(), K, N, k0);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    }
    dots_finish_kernel<<<int(K), kThreads, 0, stream>>>(partial.const_data_ptr<float>(),
                                                        out.data_ptr<float>(), grid);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(avil, CUDA, m) {
  m.impl("merge", &merge_op<merge_cuda_into>);
  m.impl("merge_", &merge__op<merge_cuda_into>);
  m.impl("dots", &dots_cuda);
}

}  // namespace avil
