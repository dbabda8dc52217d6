//! fleetscale-store.
