"""The controller: scenario -> run -> history -> verdict, and the ``ratchet`` CLI."""
