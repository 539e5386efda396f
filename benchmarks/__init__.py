"""ragbuild's benchmarks: `benchmarks/run.py` (make bench) and one module per family."""
