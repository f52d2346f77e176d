// Row gather (embedding lookup): out[r, c] = table[idx[r], c] for `rows` x `cols` outputs;
// an index outside [0, table_rows) writes NaN (the executor's checks report it).
extern "C" __global__ void gather(const void* table, const int* idx, void* y, u64 n, u64 cols, u64 table_rows, int dt, int dy) {
    u64 i = global_index();
    if (i >= n) return;
    u64 r = i / cols, c = i - r * cols;
    int j = idx[r];
    float v = (j >= 0 && (u64)j < table_rows) ? ld(table, dt, (u64)j * cols + c) : __int_as_float(0x7fc00000);
    st(y, dy, i, v);
}

// Values of x [..., C] at the last-axis indices idx [..., K]: out[r, j] = x[r, idx[r, j]].
extern "C" __global__ void take_along(const void* x, const int* idx, void* y, u64 n, u64 c, u64 k, int dx, int dy) {
    u64 i = global_index();
    if (i >= n) return;
    u64 r = i / k;
    int j = idx[i];
    float v = (j >= 0 && (u64)j < c) ? ld(x, dx, r * c + (u64)j) : __int_as_float(0x7fc00000);
    st(y, dy, i, v);
}
