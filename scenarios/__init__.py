"""The named scenarios, one TOML file each (``ratchet scenarios`` lists them).

A package only so that the files travel as package data: an installed wheel
finds them next to this module exactly as a checkout finds them in its
``scenarios/`` folder, and ``ratchet run NAME`` works from any directory.
"""
