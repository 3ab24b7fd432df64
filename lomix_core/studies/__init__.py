"""Many runs: run keys and the cache, executors (here, SLURM, Ray), comparison tables, statistics with one multiplicity policy, runtime estimates and the official-vs-kit table."""
