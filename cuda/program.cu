// The elementwise program interpreter (Op::Elementwise, and a matmul epilogue run over the
// product): a stack program runs once per output element over up to 4 inputs broadcast to
// the output's shape, in f32. One thread per output element.
// code[pc]: opcode in the low byte, argument above it (args[pc] holds a scale's factor).
// Opcodes: 0 load input, 1 unary (0 silu, 1 gelu tanh, 2 gelu erf, 3 exp, 4 neg), 2 scale,
// 3 binary (0 add, 1 sub, 2 mul, 3 div), 4 swiglu, 5 round (0 bf16, 1 f16).
#define PROGRAM_LEN 24
#define PROGRAM_STACK 8

struct Program {
    u64 dims[6];          // output dims, padded to rank 6 with leading 1s
    u64 strides[4][6];    // each input's strides over the output's dims (0 on broadcast dims)
    u32 code[PROGRAM_LEN];
    float args[PROGRAM_LEN];
    int dtypes[4];        // each input's dtype code
    int len;              // instructions
    int dy;               // output dtype code
};
static_assert(sizeof(Program) == 456, "Program must match src/backend/cuda/fused/program.rs");

__device__ __forceinline__ float program_unary(u32 op, float v) {
    switch (op) {
        case 0: return v / (1.0f + expf(-v));
        case 1: {
            float u = fminf(fmaxf(0.7978845608028654f * (v + 0.044715f * v * v * v), -15.0f), 15.0f);
            return 0.5f * v * (1.0f + tanhf(u));
        }
        case 2: return 0.5f * v * (1.0f + erff(v * 0.7071067811865476f));
        case 3: return expf(v);
        default: return -v;
    }
}

__device__ __forceinline__ float program_binary(u32 op, float a, float b) {
    switch (op) {
        case 0: return a + b;
        case 1: return a - b;
        case 2: return a * b;
        default: return a / b;
    }
}

// Input 0 may be the output buffer itself (a matmul epilogue over an f32 product written in
// place): each thread reads its own element before it writes it.
extern "C" __global__ void program(const void* x0, const void* x1, const void* x2, const void* x3, void* y, u64 n, Program p) {
    u64 i = global_index();
    if (i >= n) return;
    const void* xs[4] = {x0, x1, x2, x3};
    u64 offs[4] = {0, 0, 0, 0};
    u64 rem = i;
    for (int d = 5; d >= 0; --d) {
        u64 dim = p.dims[d];
        if (dim > 1) {
            u64 c = rem % dim;
            rem /= dim;
#pragma unroll
            for (int s = 0; s < 4; ++s) offs[s] += c * p.strides[s][d];
        }
    }
    float st_[PROGRAM_STACK];
    int sp = 0;
    for (int pc = 0; pc < p.len; ++pc) {
        u32 w = p.code[pc], arg = w >> 8;
        switch (w & 0xffu) {
            case 0: {
                u32 j = arg & 3u;
                st_[sp++] = ld(xs[j], p.dtypes[j], offs[j]);
                break;
            }
            case 1: st_[sp - 1] = program_unary(arg, st_[sp - 1]); break;
            case 2: st_[sp - 1] = st_[sp - 1] * p.args[pc]; break;
            case 3: sp--; st_[sp - 1] = program_binary(arg, st_[sp - 1], st_[sp]); break;
            case 4: {
                sp--;
                float g = st_[sp - 1];
                st_[sp - 1] = g / (1.0f + expf(-g)) * st_[sp];
                break;
            }
            default:
                st_[sp - 1] = arg == 0u ? bf16_to_f32(f32_to_bf16(st_[sp - 1])) : f16_to_f32(f32_to_f16(st_[sp - 1]));
                break;
        }
    }
    st(y, p.dy, i, st_[0]);
}
