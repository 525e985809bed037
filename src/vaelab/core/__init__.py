"""The VAE itself: KL divergences, likelihoods, objectives, layers, KL-weight schedules, the
models, and the settings that change the numbers (``TrainConfig``). Nothing here trains,
writes files or spans processes; everything else builds on it."""
