"""Faults and their inverses: partition, pause, kill, clock, disk, and schedules of them."""
