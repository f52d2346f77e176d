//! Chat template rendering (minijinja) and image placeholder expansion.
