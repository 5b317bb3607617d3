"""Getting lost data back when no filesystem walk leads to it: carving files by content
(:mod:`vdinspect.recovery.carve`) and searching disks for lost partitions and images."""
