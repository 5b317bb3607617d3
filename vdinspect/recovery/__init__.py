"""Recovery: finding what a walk of the tables and directories cannot reach.

``scan`` finds lost partitions and virtual disks stored inside disks; each sub-package
keeps to itself (this module stays empty so that they grow apart).
"""
