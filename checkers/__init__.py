"""What must hold of a history: linearizability, stats, perf, availability.

Depends on nothing else in the project, so it can check histories from anywhere
(Ratchet's own, Jepsen's EDN, Porcupine's etcd logs).

Map: ``history`` (records, writer, readers' entry point, pairing), ``edn`` and
``readers`` (foreign formats, EDN writer), ``models/`` (one file per model),
``fastpath`` (O(n log n) unique-values check for registers, cas too), ``search`` (Wing &
Gong / Lowe search with memoization), ``linearizable`` (per-key, parallel,
budgets), ``counterexample`` (minimal sub-history, explained in words),
``stats``/``perf``/``availability`` (evidence), ``compose`` (one verdict:
false > unknown > true), ``check`` (a stored run), ``generate`` (histories
linearizable by construction, for tests and bench/checker.py).
"""
