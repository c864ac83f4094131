"""What must hold of a history: linearizability, stats, perf, availability.

Depends on nothing else in the project, so it can check histories from anywhere
(Ratchet's own, Jepsen's EDN, Porcupine's etcd logs).
"""
