// Elementwise ops of one input: op 0 silu, 1 gelu (tanh), 2 gelu (erf), 3 exp, 4 neg,
// 5 scale by f, 6 cast (a load and a store).
extern "C" __global__ void unary(const void* x, void* y, u64 n, int op, float f, int dx, int dy) {
    u64 i = global_index();
    if (i >= n) return;
    float v = ld(x, dx, i);
    switch (op) {
        case 0: v = v / (1.0f + expf(-v)); break;
        case 1: {
            float u = fminf(fmaxf(0.7978845608028654f * (v + 0.044715f * v * v * v), -15.0f), 15.0f);
            v = 0.5f * v * (1.0f + tanhf(u));
            break;
        }
        case 2: v = 0.5f * v * (1.0f + erff(v * 0.7071067811865476f)); break;
        case 3: v = expf(v); break;
        case 4: v = -v; break;
        case 5: v = v * f; break;
        default: break;
    }
    st(y, dy, i, v);
}
