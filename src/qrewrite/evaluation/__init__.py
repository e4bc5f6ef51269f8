"""Offline evaluation: metrics, the simulated A/B test, the ablation report."""
