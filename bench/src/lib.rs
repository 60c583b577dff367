//! payrail criterion benchmarks live in `benches/`.
