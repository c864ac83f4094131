"""Simulation doubles for the replica: seeded storage, network and cluster (stdlib only)."""
