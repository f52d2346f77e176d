// Activation functions shared by the unary and elementwise families (included before them).

fn gelu_tanh(x: f32) -> f32 {
    // tanh saturates in f32 long before |u| = 15; clamping avoids inf/inf in tanh's expansion.
    let u = clamp(0.7978845608028654 * (x + 0.044715 * x * x * x), -15.0, 15.0);
    return 0.5 * x * (1.0 + tanh(u));
}

// erf by Abramowitz & Stegun 7.1.26 (absolute error below 1.5e-7, under f32 resolution
// of the GELU output); WGSL has no erf.
fn erf_approx(x: f32) -> f32 {
    let a = abs(x);
    let t = 1.0 / (1.0 + 0.3275911 * a);
    let y = 1.0 - (((((1.061405429 * t - 1.453152027) * t) + 1.421413741) * t - 0.284496736) * t + 0.254829592) * t * exp(-a * a);
    return select(y, -y, x < 0.0);
}
