// Rotary embedding of x [T, H, D] by per-token tables cos, sin [T, R/2] (f32), written
// heads-first to [H, T, D]; with has_norm a per-head RMSNorm (weight w [D], mean square in f64
// as the CPU oracle) comes first, its result rounded to x's dtype as the unfused graph stores
// it. One block of 128 threads per (token, head) row; thread p handles pair slot p of
// [0, D/2): slots below R/2 rotate (dimension p with p + R/2, or 2p with 2p + 1 when
// interleaved), the rest pass through (2p and 2p + 1, past R). D is even.
__device__ __forceinline__ float rope_round(int dt, float v) {
    if (dt == 2) return bf16_to_f32(f32_to_bf16(v));
    if (dt == 1) return f16_to_f32(f32_to_f16(v));
    return v;
}

extern "C" __global__ void rope_heads(const void* x, const float* cs, const float* sn, const void* w, void* y, u64 t_, u64 h_, u64 d, u64 half, float eps, int has_norm, int interleaved, int dx, int dw, int dy) {
    __shared__ double red[128];
    u64 row = (u64)blockIdx.x + (u64)blockIdx.y * gridDim.x;
    if (row >= t_ * h_) return;
    u64 t = row / h_, h = row - t * h_, base = row * d, obase = (h * t_ + t) * d;
    double inv = 1.0;
    if (has_norm) {
        double ss = 0.0;
        for (u64 j = threadIdx.x; j < d; j += blockDim.x) {
            double v = (double)ld(x, dx, base + j);
            ss += v * v;
        }
        red[threadIdx.x] = ss;
        __syncthreads();
        for (int s = blockDim.x / 2; s > 0; s >>= 1) {
            if ((int)threadIdx.x < s) red[threadIdx.x] += red[threadIdx.x + s];
            __syncthreads();
        }
        inv = 1.0 / sqrt(red[0] / (double)d + (double)eps);
    }
    for (u64 p = threadIdx.x; p < d / 2; p += blockDim.x) {
        u64 i = 2 * p, j = 2 * p + 1;
        if (p < half && !interleaved) {
            i = p;
            j = p + half;
        }
        float xi = ld(x, dx, base + i), xj = ld(x, dx, base + j);
        if (has_norm) {
            xi = rope_round(dx, (float)((double)xi * inv) * ld(w, dw, i));
            xj = rope_round(dx, (float)((double)xj * inv) * ld(w, dw, j));
        }
        if (p < half) {
            float c = cs[t * half + p], s = sn[t * half + p];
            st(y, dy, obase + i, xi * c - xj * s);
            st(y, dy, obase + j, xj * c + xi * s);
        } else {
            st(y, dy, obase + i, xi);
            st(y, dy, obase + j, xj);
        }
    }
}
