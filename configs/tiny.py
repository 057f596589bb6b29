"""A 2-layer GPT-NeoX for tests and smoke runs (vocab 512 fits the built-in byte tokens)."""

from alignjax.config import default_config


def get_config(arg=None):
    c = default_config()
    c.model.update(dict(num_layers=2, d_model=64, num_heads=4, d_ff=256, vocab_size=512, max_seq_len=256))
    c.train.update(dict(num_steps=20, batch_size=8, seq_len=32, log_every=1))
    c.optimizer.update(dict(lr=1e-3, warmup_steps=2))
    c.checkpoint.update(dict(every_steps=10, max_to_keep=5))
    return c
