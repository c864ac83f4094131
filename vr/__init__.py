"""The system under test: a Viewstamped Replication (VR Revisited) replica, stdlib only.

Shipped as-is to bare nodes that have only ``python3``: nothing here may import
outside the standard library or outside ``vr``.
"""
