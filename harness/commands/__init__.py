"""One module per ``ratchet`` subcommand; each exposes ``register(subparsers)``."""
