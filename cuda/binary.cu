// Broadcasting elementwise ops of two inputs: op 0 add, 1 sub, 2 mul, 3 div, 4 swiglu
// (silu(a) * b, same shapes). `l` holds the output dims and both operands' strides.
extern "C" __global__ void binary(const void* a, const void* b, void* y, u64 n, int op, Layout6 l, int da, int db, int dy) {
    u64 i = global_index();
    if (i >= n) return;
    u64 rem = i, oa = 0, ob = 0;
    for (int d = 5; d >= 0; --d) {
        u64 x = rem % l.dims[d];
        rem /= l.dims[d];
        oa += x * l.sa[d];
        ob += x * l.sb[d];
    }
    float x = ld(a, da, oa), z = ld(b, db, ob), v;
    switch (op) {
        case 0: v = x + z; break;
        case 1: v = x - z; break;
        case 2: v = x * z; break;
        case 3: v = x / z; break;
        default: v = x / (1.0f + expf(-x)) * z; break;
    }
    st(y, dy, i, v);
}
