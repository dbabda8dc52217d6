//! fleetscale binary.
fn main() {}
