//! fleetscale-server.
