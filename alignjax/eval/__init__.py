"""Evaluation: alignment and capability suites, scoring, metrics and lm-eval-style result files."""
