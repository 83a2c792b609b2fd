// float32-accurate products on TF32 tensor cores ("3xTF32"), shared by the KMeans assignment
// kernel (kmeans_cuda.cu) and the Gram pass (cross_cuda.cu).
//
// Each float operand is split v = hi + lo: hi = v rounded to TF32 (10-bit mantissa), lo = the
// remainder (read by the tensor core to TF32 precision), so v is carried to ~2^-22 relative.
// A product a·b is taken as
// lo_a·hi_b + hi_a·lo_b + hi_a·hi_b on the tensor cores (mma.sync m16n8k8, float accumulators),
// dropping lo_a·lo_b (~2^-22 relative): the error of a float32 fma chain, not TF32's 2^-11. Three
// tensor-core products still run well above the fp32 SIMT rate on sm_80+; cuBLAS offers no such
// mode on sm_90. Fragment layout of m16n8k8 (g = lane / 4, t = lane % 4):
//   A (16 x 8, row-major): a0 (g, t), a1 (g + 8, t), a2 (g, t + 4), a3 (g + 8, t + 4)
//   B (8 x 8, column-major): b0 (t, g), b1 (t + 4, g)
//   C (16 x 8): c0 (g, 2t), c1 (g, 2t + 1), c2 (g + 8, 2t), c3 (g + 8, 2t + 1)
#pragma once

namespace spmdlearn::cuda::tf32x3 {

// hi: v rounded (half away from zero) to TF32's 10 mantissa bits by integer ops; lo = v - hi exactly
// (Sterbenz), passed with all its bits: the tensor core reads a TF32 operand's top 10 mantissa
// bits and ignores the low 13, so lo counts truncated (error <= 2^-11 |lo| <= 2^-22 |v|). Two
// integer ops and one float subtraction: cvt.rna.tf32.f32 twice made the integer pipe the
// busiest in the KMeans kernel (ncu, H200). Finite |v| < 3.4e38 (near FLT_MAX hi would round to
// infinity).
__device__ __forceinline__ void split(float v, unsigned& hi, unsigned& lo) {
  hi = (__float_as_uint(v) + 0x1000u) & 0xffffe000u;
  lo = __float_as_uint(v - __uint_as_float(hi));
}

// c += a b for one m16n8k8 tile in TF32 (fragments as above).
__device__ __forceinline__ void mma(float* c, const unsigned* a, const unsigned* b) {
  asm volatile(
      "mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
      "{%0,%1,%2,%3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}

// c += a b with both operands split (the small terms first).
__device__ __forceinline__ void mma3(float* c, const unsigned* ah, const unsigned* al, const unsigned* bh,
                                     const unsigned* bl) {
  mma(c, al, bh);
  mma(c, ah, bl);
  mma(c, ah, bh);
}

}  // namespace spmdlearn::cuda::tf32x3
