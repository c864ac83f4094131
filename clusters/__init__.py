"""Where nodes live: a local private network namespace (default), docker, ssh hosts."""
