// Rotary embedding of x [T, H, D] by per-token tables cos, sin [T, R/2] (f32). One thread per
// pair slot p in [0, D/2): slots below R/2 rotate (dimension p with p + R/2, or 2p with
// 2p + 1 when interleaved), the rest copy.
extern "C" __global__ void rope(const void* x, const float* cs, const float* sn, void* y, u64 slots, u64 h, u64 d, u64 half, int interleaved, int dx, int dy) {
    u64 id = global_index();
    if (id >= slots) return;
    u64 p = id % (d / 2), th = id / (d / 2), t = th / h, base = th * d;
    if (p < half) {
        u64 i = interleaved ? 2 * p : p, j = interleaved ? 2 * p + 1 : p + half;
        float c = cs[t * half + p], s = sn[t * half + p];
        float xi = ld(x, dx, base + i), xj = ld(x, dx, base + j);
        st(y, dy, base + i, xi * c - xj * s);
        st(y, dy, base + j, xj * c + xi * s);
    } else {
        u64 i = 2 * half + 2 * (p - half);
        st(y, dy, base + i, ld(x, dx, base + i));
        st(y, dy, base + i + 1, ld(x, dx, base + i + 1));
    }
}
