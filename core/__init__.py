"""The shared vocabulary every other package builds on: what a system, a client, a cluster,
a generator and a scenario are. It imports nothing of Ratchet's above it."""
