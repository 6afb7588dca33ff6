"""Training: the loop, its records (metrics.csv, summary.json) and checkpoints."""
