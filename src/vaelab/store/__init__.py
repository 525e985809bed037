"""Files on disk: atomic writes and run folders (their config, history, model, data and lock)."""
