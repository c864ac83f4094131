"""Disk faults on real node processes: faultfs (FUSE), layout-aimed corruption, dm-flakey tables."""
