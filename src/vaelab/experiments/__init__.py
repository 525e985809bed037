"""Many runs and their report: the lab (``lab``), the ablation (``ablation``), ``report``."""
