"""What a trained VAE is: NumPy diagnostics, likelihood bounds, the test evaluation, figures
and the explorer page, from a model in memory or a run folder."""
