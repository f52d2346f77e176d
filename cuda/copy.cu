// Strided copy (permute, slice, concat parts, integer casts): output element i (of n, in the
// padded rank-6 `l.dims`) reads input offset `src_off + sum(coord * l.sa)` and is written at
// `dst_off + sum(coord * l.sb)`. Floats go through f32 (casts between float dtypes); `bits`
// moves raw elements of `esize` bytes (exact for integers and same-dtype moves).
extern "C" __global__ void copy(const void* x, void* y, u64 n, Layout6 l, u64 src_off, u64 dst_off, int dx, int dy, int bits, int esize) {
    u64 i = global_index();
    if (i >= n) return;
    u64 rem = i, s = src_off, d = dst_off;
    for (int k = 5; k >= 0; --k) {
        u64 c = rem % l.dims[k];
        rem /= l.dims[k];
        s += c * l.sa[k];
        d += c * l.sb[k];
    }
    if (bits) {
        if (esize == 2) ((u16*)y)[d] = ((const u16*)x)[s];
        else ((u32*)y)[d] = ((const u32*)x)[s];
    } else {
        st(y, dy, d, ld(x, dx, s));
    }
}
