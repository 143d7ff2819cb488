"""The speed suite's parts, one module each (``benchmarks/speed/run_speed.py`` runs them)."""
