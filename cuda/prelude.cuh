// Prelude of every CUDA family (prepended by src/backend/cuda/nvrtc.rs): tensors are raw
// bytes with a dtype code, 16-bit floats widened and narrowed by integer arithmetic (no CUDA
// headers needed, so NVRTC compiles these with no toolkit installed), f32 arithmetic.
// dtype codes: 0 f32, 1 f16, 2 bf16, 3 i32, 4 u32.
typedef unsigned int u32;
typedef unsigned short u16;
typedef unsigned char u8;
typedef unsigned long long u64;

__device__ __forceinline__ float bits_f32(u32 b) { return __int_as_float((int)b); }
__device__ __forceinline__ u32 f32_bits(float v) { return (u32)__float_as_int(v); }

__device__ __forceinline__ float bf16_to_f32(u16 h) { return bits_f32(((u32)h) << 16); }
__device__ __forceinline__ u16 f32_to_bf16(float v) {
    u32 b = f32_bits(v);
    if ((b & 0x7f800000u) == 0x7f800000u && (b & 0x7fffffu) != 0u) return 0x7fc0u;
    return (u16)((b + 0x7fffu + ((b >> 16) & 1u)) >> 16);
}
__device__ __forceinline__ float f16_to_f32(u16 h) {
    u32 s = ((u32)h & 0x8000u) << 16, e = ((u32)h >> 10) & 0x1fu, m = (u32)h & 0x3ffu;
    if (e == 0u) { float v = (float)m * 5.9604645e-8f; return s ? -v : v; }
    if (e == 31u) return bits_f32(s | 0x7f800000u | (m << 13));
    return bits_f32(s | ((e + 112u) << 23) | (m << 13));
}
__device__ __forceinline__ u16 f32_to_f16(float v) {
    u32 b = f32_bits(v), s = (b >> 16) & 0x8000u, m = b & 0x7fffffu;
    if ((b & 0x7f800000u) == 0x7f800000u) return (u16)(s | 0x7c00u | (m ? 0x200u : 0u));
    int e = (int)((b >> 23) & 0xffu) - 112;
    if (e >= 31) return (u16)(s | 0x7c00u);
    if (e <= 0) {
        if (e < -10) return (u16)s;
        u32 mm = m | 0x800000u, shift = (u32)(14 - e), r = mm >> shift;
        u32 rem = mm & ((1u << shift) - 1u), half = 1u << (shift - 1u);
        if (rem > half || (rem == half && (r & 1u))) r += 1u;
        return (u16)(s | r);
    }
    u32 r = ((u32)e << 10) | (m >> 13), rem = m & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (r & 1u))) r += 1u;
    return (u16)(s | r);
}

// Element i of a tensor of dtype `dt`, as f32.
__device__ __forceinline__ float ld(const void* p, int dt, u64 i) {
    switch (dt) {
        case 0: return ((const float*)p)[i];
        case 1: return f16_to_f32(((const u16*)p)[i]);
        case 2: return bf16_to_f32(((const u16*)p)[i]);
        case 3: return (float)((const int*)p)[i];
        default: return (float)((const u32*)p)[i];
    }
}

// Stores v as element i of a tensor of dtype `dt` (float to int truncates toward zero).
__device__ __forceinline__ void st(void* p, int dt, u64 i, float v) {
    switch (dt) {
        case 0: ((float*)p)[i] = v; break;
        case 1: ((u16*)p)[i] = f32_to_f16(v); break;
        case 2: ((u16*)p)[i] = f32_to_bf16(v); break;
        case 3: ((int*)p)[i] = (int)v; break;
        default: ((u32*)p)[i] = (u32)v; break;
    }
}

// Dims and strides padded to rank 6 (broadcast dims have stride 0).
struct Layout6 { u64 dims[6]; u64 sa[6]; u64 sb[6]; };

__device__ __forceinline__ u64 global_index() { return (u64)blockIdx.x * blockDim.x + threadIdx.x + (u64)blockIdx.y * gridDim.x * blockDim.x; }

__device__ __forceinline__ float max_of(float a, float b) { return fmaxf(a, b); }
__device__ __forceinline__ double max_of(double a, double b) { return fmax(a, b); }

// Block-wide reductions of one value per thread: every thread of the block calls them (in
// uniform control flow) with shared scratch of blockDim.x slots; all get the result.
template <typename T, bool MAX> __device__ T block_reduce(T v, T* red) {
    red[threadIdx.x] = v;
    __syncthreads();
    for (int s = blockDim.x / 2; s > 0; s >>= 1) {
        if ((int)threadIdx.x < s) {
            T o = red[threadIdx.x + s];
            red[threadIdx.x] = MAX ? max_of(red[threadIdx.x], o) : red[threadIdx.x] + o;
        }
        __syncthreads();
    }
    T r = red[0];
    __syncthreads();
    return r;
}
__device__ __forceinline__ float block_sum(float v, float* red) { return block_reduce<float, false>(v, red); }
__device__ __forceinline__ float block_max(float v, float* red) { return block_reduce<float, true>(v, red); }
__device__ __forceinline__ double block_sum(double v, double* red) { return block_reduce<double, false>(v, red); }

// v rounded to dtype dt (f16 / bf16) and back; f32 unchanged.
__device__ __forceinline__ float round_to(int dt, float v) {
    if (dt == 1) return f16_to_f32(f32_to_f16(v));
    if (dt == 2) return bf16_to_f32(f32_to_bf16(v));
    return v;
}

// silu(g) * u with g and u first rounded to dt (as the graph stores them).
__device__ __forceinline__ float swiglu_rounded(int dt, float g, float u) {
    float gg = round_to(dt, g);
    return gg / (1.0f + expf(-gg)) * round_to(dt, u);
}

// 16 bytes at p (16-byte aligned) read once: through the non-coherent path, not kept in L1.
__device__ __forceinline__ uint4 ld_stream16(const void* p) {
    uint4 v;
    asm volatile("ld.global.nc.L1::no_allocate.v4.u32 {%0, %1, %2, %3}, [%4];"
                 : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
                 : "l"(p));
    return v;
}

// The two 16-bit floats (dtype dt: 1 f16, 2 bf16) of word v as f32, low half first.
__device__ __forceinline__ void unpack_half2(u32 v, int dt, float& lo, float& hi) {
    if (dt == 2) {
        lo = bits_f32(v << 16);
        hi = bits_f32(v & 0xffff0000u);
    } else {
        unsigned short l = (unsigned short)(v & 0xffffu), h = (unsigned short)(v >> 16);
        asm("cvt.f32.f16 %0, %1;" : "=f"(lo) : "h"(l));
        asm("cvt.f32.f16 %0, %1;" : "=f"(hi) : "h"(h));
    }
}

// The eight 16-bit floats of a 16-byte vector as f32.
__device__ __forceinline__ void unpack_half8(uint4 v, int dt, float* out) {
    unpack_half2(v.x, dt, out[0], out[1]);
    unpack_half2(v.y, dt, out[2], out[3]);
    unpack_half2(v.z, dt, out[4], out[5]);
    unpack_half2(v.w, dt, out[6], out[7]);
}

// Tensor cores (sm_80+): c += a b for one m16n8k16 tile, 16-bit inputs (f16 when F16, else
// bf16), f32 accumulators; a, b and c are the PTX fragment layouts (a: 4 words, b: 2, c: 4).
template <bool F16>
__device__ __forceinline__ void mma_16816(float* c, const u32* a, u32 b0, u32 b1) {
    if (F16)
        asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};"
                     : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                     : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
    else
        asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};"
                     : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                     : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// The same with b read from a tile stored n-major (each column's 16 k values contiguous):
// br = the tile + (n index) * row stride + k0 + 2 * (lane % 4), the b fragment's two words at
// br and br + 8.
template <bool F16>
__device__ __forceinline__ void mma_16816(float* c, const u32* a, const u16* br) {
    mma_16816<F16>(c, a, *(const u32*)br, *(const u32*)(br + 8));
}

// The a fragment of a 16 x 16 tile of a row-major 16-bit tile with row stride ld: ar = the
// tile + (lane / 4) * ld + 2 * (lane % 4) (rows g and g + 8, columns 2t.. and 2t + 8..).
__device__ __forceinline__ void a_fragment(u32* af, const u16* ar, int ld) {
    af[0] = *(const u32*)ar;
    af[1] = *(const u32*)(ar + 8 * ld);
    af[2] = *(const u32*)(ar + 8);
    af[3] = *(const u32*)(ar + 8 * ld + 8);
}

// lo and hi rounded to f16 (F16) or bf16 and packed in one word, lo in the low half.
template <bool F16>
__device__ __forceinline__ u32 pack_half2(float lo, float hi) {
    u32 d;
    if (F16) asm("cvt.rn.f16x2.f32 %0, %1, %2;" : "=r"(d) : "f"(hi), "f"(lo));
    else asm("cvt.rn.bf16x2.f32 %0, %1, %2;" : "=r"(d) : "f"(hi), "f"(lo));
    return d;
}

// Writes one warp's row of NT m16n8 accumulator fragments (the c layout of mma.sync), times
// `scale`, to y [m, n] in f16 (F16) or bf16: rows r0.. r0 + 15, columns c0.. c0 + 8 NT - 1, both
// outputs of a thread in one 4-byte store where they are both there and aligned.
template <bool F16, int NT>
__device__ __forceinline__ void store_fragments(u16* y, u64 m, u64 n, u64 r0, u64 c0, const float (*acc)[4], float scale) {
    const int lane = threadIdx.x & 31, g = lane >> 2, tig = lane & 3, dt = F16 ? 1 : 2;
#pragma unroll
    for (int half = 0; half < 2; ++half) {
        const u64 r = r0 + g + 8 * half;
        if (r >= m) continue;
#pragma unroll
        for (int nt = 0; nt < NT; ++nt) {
            const u64 c = c0 + nt * 8 + tig * 2;
            const float v0 = acc[nt][2 * half] * scale, v1 = acc[nt][2 * half + 1] * scale;
            u16* at = y + r * n + c;
            if (c + 1 < n && ((unsigned long long)at & 3u) == 0u) {
                *(u32*)at = pack_half2<F16>(v0, v1);
                continue;
            }
            if (c < n) st(y, dt, r * n + c, v0);
            if (c + 1 < n) st(y, dt, r * n + c + 1, v1);
        }
    }
}

// f16 -> f32 in one instruction (exact; an integer conversion is ~10 per value). Quantized
// weights' scales are f16.
__device__ __forceinline__ float h2f(u32 h) {
    float f;
    asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"((u16)h));
    return f;
}

// FP8 E4M3 (float8_e4m3fn) byte as f32: normals by re-biasing the exponent, subnormals
// m * 2^-9, 0x7f / 0xff NaN.
__device__ __forceinline__ float e4m3_to_f32(u32 b) {
    u32 e = (b >> 3) & 15u, m = b & 7u;
    float mag = e == 0u ? (float)m * 0.001953125f : __uint_as_float(((b & 0x7fu) << 20) + 0x3c000000u);
    if ((b & 0x7fu) == 0x7fu) mag = __uint_as_float(0x7fc00000u);
    return (b & 0x80u) ? -mag : mag;
}

// FP4 E2M1 code (low 4 bits) as f32: 0, 0.5, then (1 + m / 2) * 2^(e - 1); sign in bit 3.
__device__ __forceinline__ float e2m1_to_f32(u32 c) {
    u32 e = (c >> 1) & 3u;
    float m = (float)(c & 1u);
    float mag = e == 0u ? m * 0.5f : (2.0f + m) * (float)(1u << e) * 0.25f;
    return (c & 8u) ? -mag : mag;
}

// Quantized weight formats (src/quant/mod.rs) by kernel id: 8 int8 and 4 int4 codes with f16
// scales, QF_FP8 E4M3 codes with f32 scales, QF_NVFP4 E2M1 codes with E4M3 scale bytes (and a
// global scale per weight, applied by the kernels to each output), QF_Q4Z unsigned int4 codes
// with u32 group words (f16 scale in the low half, zero point in bits 16..24).
#define QF_Q4Z 5
#define QF_FP8 9
#define QF_NVFP4 10
template <int F> struct QFmt {
    static constexpr int BITS = (F == 4 || F == QF_Q4Z || F == QF_NVFP4) ? 4 : 8;
    static constexpr unsigned PER = 32 / BITS;
};

// Codes per 32-bit word of format id fmt.
__device__ __forceinline__ u64 qper(int fmt) { return (fmt == 4 || fmt == QF_Q4Z || fmt == QF_NVFP4) ? 8 : 4; }

// Bytes of one scale of format id fmt.
__device__ __forceinline__ u64 qscale_bytes(int fmt) {
    return (fmt == QF_FP8 || fmt == QF_Q4Z) ? 4 : fmt == QF_NVFP4 ? 1 : 2;
}

// Calls CALL(F) with the format id fmt as a constant.
#define QDISPATCH(fmt, CALL)                 \
    switch (fmt) {                           \
        case 8: CALL(8); break;              \
        case QF_Q4Z: CALL(QF_Q4Z); break;     \
        case QF_FP8: CALL(QF_FP8); break;     \
        case QF_NVFP4: CALL(QF_NVFP4); break; \
        default: CALL(4); break;             \
    }

// Code j of a word of quantized weights as its value (QF_Q4Z: before its zero point).
template <int F> __device__ __forceinline__ float qcode(u32 w, int j) {
    if (F == QF_NVFP4) return e2m1_to_f32(w >> (4 * j));
    if (F == QF_FP8) return e4m3_to_f32((w >> (8 * j)) & 255u);
    if (F == 8) return (float)(((int)(w << (24 - 8 * j))) >> 24);
    if (F == QF_Q4Z) return (float)((w >> (4 * j)) & 15u);
    return (float)((int)((w >> (4 * j)) & 15u) - 8);
}

// Group i of a quantized weight: its scale and its zero point (0 but for QF_Q4Z); a weight is
// (qcode - z) * s.
struct QGroup {
    float s, z;
};
template <int F> __device__ __forceinline__ QGroup qgroup(const void* s, u64 i) {
    if (F == QF_FP8) return {((const float*)s)[i], 0.0f};
    if (F == QF_NVFP4) return {e4m3_to_f32(((const u8*)s)[i]), 0.0f};
    if (F == QF_Q4Z) {
        u32 w = ((const u32*)s)[i];
        return {h2f(w & 0xffffu), (float)((w >> 16) & 255u)};
    }
    return {h2f(((const u16*)s)[i]), 0.0f};
}

// The weights of a code word of format F, (code - zero) * scale, rounded to f16 (F16) or bf16
// and stored to dst (4-byte aligned) two per 32-bit word: a tensor-core tile's decode.
template <int F, bool F16> __device__ __forceinline__ void qdecode16(u16* dst, u32 word, QGroup q) {
#pragma unroll
    for (u32 j = 0; j < QFmt<F>::PER; j += 2) {
        const float lo = (qcode<F>(word, (int)j) - q.z) * q.s, hi = (qcode<F>(word, (int)j + 1) - q.z) * q.s;
        *(u32*)(dst + j) = pack_half2<F16>(lo, hi);
    }
}
