// Row scatter after the base was copied to y: row r of `rows` ([N, C]) replaces (or, with
// `accumulate`, is added to) row idx[r] of y ([R, C]); indices are distinct. An index outside
// [0, R) writes nothing.
extern "C" __global__ void scatter(const void* rows, const int* idx, void* y, u64 n, u64 cols, u64 base_rows, int accumulate, int dr, int dy) {
    u64 i = global_index();
    if (i >= n) return;
    u64 r = i / cols, c = i - r * cols;
    int t = idx[r];
    if (t < 0 || (u64)t >= base_rows) return;
    u64 o = (u64)t * cols + c;
    float v = ld(rows, dr, i);
    if (accumulate) v += ld(y, dy, o);
    st(y, dy, o, v);
}
