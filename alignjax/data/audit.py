"""What the model actually trained on: realized tokens per mixture component vs the target.

Counts come from the ``component`` id of every target token of every batch, so they measure
the batches themselves, not what the pipeline meant to produce. They are saved in each
checkpoint step and written to the run's ``data_audit.json`` (``RunDir.audit``).
"""

from __future__ import annotations


import numpy as np

from alignjax.data.mixture import Stage
from alignjax.metrics import write_json


class DataAudit:
    def __init__(self, stages: list[Stage], sources: dict | None = None):
        self.targets = {st.name: {c.name: c.fraction for c in st.components} for st in stages}
        self.tokens = {st.name: {c.name: 0 for c in st.components} for st in stages}
        self.sources = sources or {}  # per stage/component: source spec, sampled doc length, filter rate

    def add(self, stage: str, names: tuple[str, ...], component_ids: np.ndarray) -> None:
        counts = np.bincount(np.asarray(component_ids).ravel(), minlength=len(names))
        for name, n in zip(names, counts):
            self.tokens[stage][name] += int(n)

    def fractions(self, stage: str) -> dict[str, float]:
        total = sum(self.tokens[stage].values())
        return {n: (t / total if total else 0.0) for n, t in self.tokens[stage].items()}

    def metrics(self, stage: str) -> dict[str, float]:
        """Realized and target token share per component of the running stage, for metrics.jsonl."""
        out = {}
        for n, f in self.fractions(stage).items():
            out[f"data/{n}_fraction"], out[f"data/{n}_target"] = f, self.targets[stage][n]
        return out

    def state(self) -> dict:
        return {"tokens": self.tokens}

    def restore(self, state: dict) -> None:
        for stage, counts in state.get("tokens", {}).items():
            if stage in self.tokens:
                self.tokens[stage].update({k: int(v) for k, v in counts.items() if k in self.tokens[stage]})

    def summary(self, totals: dict | None = None) -> dict:
        tokens = totals or self.tokens
        out = {}
        for stage, counts in tokens.items():
            total = sum(counts.values())
            out[stage] = {"tokens": total, "components": {}}
            for name, n in counts.items():
                info = self.sources.get(stage, {}).get(name, {})
                row = {"target_fraction": self.targets[stage][name], "tokens": n,
                       "realized_fraction": n / total if total else None, **info}
                if info.get("corpus_tokens"):  # exposures: passes over the component's documents
                    row["epochs"] = n / info["corpus_tokens"]
                out[stage]["components"][name] = row
        return out

    def write(self, path, totals: dict | None = None) -> None:
        """``path`` (a run's ``RunDir.audit``, local or gs://), replaced whole."""
        write_json(path, self.summary(totals))

    def global_tokens(self) -> dict:
        """Counts summed over processes (each process sees only its own rows)."""
        import jax

        if jax.process_count() == 1:
            return self.tokens
        from jax.experimental import multihost_utils

        flat = [(s, n) for s in self.tokens for n in self.tokens[s]]
        summed = multihost_utils.process_allgather(np.array([self.tokens[s][n] for s, n in flat], np.int64)).sum(0)
        out = {s: {} for s in self.tokens}
        for (s, n), v in zip(flat, summed):
            out[s][n] = int(v)
        return out
