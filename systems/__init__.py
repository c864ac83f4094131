"""Systems under test, each as an adapter to :class:`core.system.System` (one package per system)."""
