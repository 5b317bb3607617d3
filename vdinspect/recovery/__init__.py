"""Getting lost data back when no walk of the tables and directories leads to it:
``scan`` finds lost partitions and virtual disks stored inside disks, ``carve`` finds
files by their content. Each sub-package keeps to itself (this module stays empty so that
they grow apart).
"""
