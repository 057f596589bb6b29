"""Data pipelines: sources -> tokenize -> pack -> batches, as checkpointable Grain iterators."""
