"""pysock bench and pysock load: the load generator (C, driven from
loadgen.py), running the servers under it and measuring them (run.py),
reporting (report.py), and pinning to CPUs (affinity.py)."""
