// Row kernels, one block of 256 threads per row of C elements (f32 accumulation):
// kind 0 RMSNorm (x / sqrt(mean(x^2) + eps) * w), 1 LayerNorm ((x - mean) / sqrt(var + eps)
// * w + b), 2 softmax (x - max, exp, / sum; w, b unused).
extern "C" __global__ void row_ops(const void* x, const void* w, const void* b, void* y, u64 rows, u64 c, float eps, int kind, int dx, int dw, int dbias, int dy) {
    __shared__ float red[256];
    u64 row = (u64)blockIdx.x + (u64)blockIdx.y * gridDim.x;
    if (row >= rows) return;
    u64 base = row * c;
    if (kind == 2) {
        float m = -3.4028235e38f;
        for (u64 j = threadIdx.x; j < c; j += blockDim.x) m = fmaxf(m, ld(x, dx, base + j));
        m = block_max(m, red);
        float s = 0.0f;
        for (u64 j = threadIdx.x; j < c; j += blockDim.x) s += expf(ld(x, dx, base + j) - m);
        s = block_sum(s, red);
        for (u64 j = threadIdx.x; j < c; j += blockDim.x) st(y, dy, base + j, expf(ld(x, dx, base + j) - m) / s);
        return;
    }
    float mean = 0.0f;
    if (kind == 1) {
        float s = 0.0f;
        for (u64 j = threadIdx.x; j < c; j += blockDim.x) s += ld(x, dx, base + j);
        mean = block_sum(s, red) / (float)c;
    }
    float ss = 0.0f;
    for (u64 j = threadIdx.x; j < c; j += blockDim.x) {
        float v = ld(x, dx, base + j) - mean;
        ss += v * v;
    }
    float inv = rsqrtf(block_sum(ss, red) / (float)c + eps);
    for (u64 j = threadIdx.x; j < c; j += blockDim.x) {
        float v = (ld(x, dx, base + j) - mean) * inv * ld(w, dw, j);
        if (kind == 1) v += ld(b, dbias, j);
        st(y, dy, base + j, v);
    }
}
