"""The scoring engine: log-likelihoods with lm-evaluation-harness semantics, and KV-cache generation.

    cfg, params, graphdef = load_model(path)          # alignjax checkpoint or HF GPT-NeoX directory
    scorer = Scorer(cfg, params, graphdef, Tokenizer.load(spec), mesh)
    scorer.loglikelihood([(context, continuation), ...])  -> [(loglik, is_greedy), ...]
    scorer.choice_logprobs(contexts, [[" A", " B"], ...]) -> [[(loglik, is_greedy), ...], ...]
    scorer.generate(prompts, max_new_tokens=32, stop=["\\n"]) -> [text, ...]

Log-likelihoods follow lm-eval's ``hf`` backend exactly: trailing whitespace of the context moves
to the continuation, the continuation's tokens are those of ``encode(context + continuation)``
past ``len(encode(context))`` (no EOS, no special tokens), an empty context is replaced by EOS,
the sequence is left-truncated to ``max_len + 1`` tokens, the log-likelihood is the sum of the
continuation tokens' log-softmax and ``is_greedy`` says every one of them is the argmax.

What makes it fast:
- **one row per distinct input**: requests are keyed by the tokens the model reads
  (``(context + continuation)[:-1]``), so every single-token option of a context (" A", " B", ...)
  is read off ONE forward pass of that context, and contexts repeated across requests are run once;
- **unembedding only where needed**: the model runs without its output layer
  (``GPTNeoX.hidden``) and only the positions that score a continuation token are unembedded
  (for Pythia-14m/70m the vocab projection costs more than all the layers together);
- **prefix trees**: the distinct inputs, sorted lexicographically, are packed ``pack_len`` tokens
  to a row as a prefix tree in depth-first order (``_pack``): prompts that share a prefix (the
  persona's system prompt, a scenario under its several wordings, the two answer orders up to
  their options) share its tokens, so its keys and values are computed once; each token attends
  to its ancestors only (``kv_end``) at its depth's rotary position, which is the arithmetic of
  scoring each prompt alone. On the built-in scenarios this halves the tokens the model runs;
  ``pack_len=0`` gives the plain layout (one right-padded row per input, longest first, as
  lm-eval), which the tests compare it with;
- rows are padded on the right to a few bucketed lengths, so a handful of jitted shapes serve a
  whole run; the batch is sharded over the mesh's (data, fsdp) axes and batches are dispatched
  asynchronously; only [B, K] log-probs and greedy flags come back to the host, never [B, T, V]
  logits.

Generation: left-padded batches, a prefill that fills a KV cache, then a jitted one-token decode
step (``GPTNeoX.hidden(cache=...)``); greedy (temperature 0) or sampling; stops at EOS or at a stop
string (cut off as lm-eval's ``until``). ``parse_letter`` reads a multiple-choice answer letter
from a generation.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import json
import logging
import os
import re
from collections.abc import Sequence
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from alignjax import convert, model_state, sharding
from alignjax import checkpoint as ckpt_lib
from alignjax import model as model_lib
from alignjax.data.tokenizer import Tokenizer

log = logging.getLogger("alignjax")


# ----------------------------------------------------------------------------- loading


def _is_hf_dir(path: Path) -> bool:
    if (path / "model.json").exists() or not (path / "config.json").exists():
        return False
    if any(path.glob("*.safetensors")) or any(path.glob("pytorch_model*.bin")):
        return True
    try:
        return json.loads((path / "config.json").read_text()).get("model_type") == "gpt_neox"
    except (ValueError, OSError, AttributeError):
        return False


def load_model(path: str | os.PathLike, mesh=None, dtype: str = "float32"):
    """(ModelConfig, params sharded over ``mesh``, graphdef) from an alignjax checkpoint (an
    export, a training workdir or one step directory) or a Hugging Face GPT-NeoX directory
    (config.json + weights; a hub id too, where the hub is reachable).

    ``dtype`` is the compute dtype. Parameters are float32 (the model's convention) when it is
    float32; for bfloat16/float16 the matrices are stored in that dtype (half the memory, same
    results: the model casts them to it anyway) and the norms stay float32. The default mesh puts
    every device on ``data``."""
    mesh = sharding.make_mesh() if mesh is None else mesh
    p = Path(path)
    hf = _is_hf_dir(p) if p.exists() else True  # not a local path: a hub id for load_hf
    if hf:
        cfg, params = convert.load_hf(path)
    else:
        cfg = ckpt_lib.resolve(path)[0]
        params = None
    cfg = dataclasses.replace(cfg, dtype=dtype, remat="none")
    graphdef, _, shardings = model_state.shardings(cfg, mesh)
    if params is None:
        _, params = model_state.load_params(path, shardings)
    store = jnp.dtype(dtype)

    def cast(x):
        return x.astype(store if x.ndim >= 2 else jnp.float32)

    if isinstance(jax.tree.leaves(params)[0], jax.Array):
        params = jax.jit(lambda t: jax.tree.map(cast, t), out_shardings=shardings)(params)
    else:  # numpy from an HF directory: cast on the host, then place each array
        params = jax.device_put(jax.tree.map(lambda x: np.asarray(x).astype(store if x.ndim >= 2 else np.float32),
                                             params), shardings)
    return cfg, params, graphdef


# ----------------------------------------------------------------------------- helpers


def _bucket(n: int, minimum: int = 16) -> int:
    """Padded length for n tokens: multiples of 16 up to 64, then four steps per octave
    (80, 96, 112, 128, 160, ...), so padding wastes < 25% and few shapes are compiled."""
    if n <= minimum:
        return minimum
    step = max(minimum, 1 << (max(n - 1, 1).bit_length() - 3))
    return -(-n // step) * step


def _pow2(n: int) -> int:
    return 1 << max(n - 1, 0).bit_length()


def _encode_batch(tokenizer, texts: Sequence[str]) -> list[list[int]]:
    """Token ids WITHOUT the EOS that alignjax's Tokenizer.encode appends (lm-eval's tok_encode:
    no special tokens)."""
    hf = getattr(tokenizer, "_hf", None)
    if hf is not None:
        return [e.ids for e in hf.encode_batch_fast(list(texts), add_special_tokens=False)]
    return [ids[:-1].tolist() for ids in tokenizer.encode_batch(texts)]


# ----------------------------------------------------------------------------- jitted functions


# Module-level jits keyed on the (hashable) graphdef: every Scorer of one model shares compilations.


@functools.partial(jax.jit, static_argnums=0)
def _score_rows(graphdef, params, tokens, depth, kv_end, reads, select, targets):
    """tokens [B, T]: each row a prefix tree of prompts in depth-first order (``_pack``), with
    ``depth`` the rotary positions and ``kv_end`` the attention's subtree ends; the P positions
    ``reads`` [B, P] to unembed; for K targets, ``select`` [B, K] (which of the P positions) and
    ``targets`` [B, K] (token) -> (log p(target) [B, K] float32, target is the argmax there
    [B, K]). A right-padded plain row is the tree with one branch (depth = index, kv_end = T)."""
    model = nnx.merge(graphdef, params)
    h = model.hidden(tokens, depth, kv_end=kv_end, reads=reads)  # [B, P, d]
    logits = model.unembed(h).astype(jnp.float32)  # [B, P, V]
    lse, best = jax.nn.logsumexp(logits, -1), jnp.argmax(logits, -1)  # [B, P]
    flat = select * logits.shape[-1] + targets  # index into each row's P x V logits
    logp = jnp.take_along_axis(logits.reshape(logits.shape[0], -1), flat, 1) - jnp.take_along_axis(lse, select, 1)
    return logp, jnp.take_along_axis(best, select, 1) == targets


def _sample(logits, key, temperature, greedy: bool):
    if greedy:
        return jnp.argmax(logits, -1).astype(jnp.int32)
    return jax.random.categorical(key, logits / temperature, -1).astype(jnp.int32)


@functools.partial(jax.jit, static_argnums=(0, 1, 2, 3))
def _prefill(graphdef, cfg, slots, greedy, params, tokens, mask, key, temperature):
    """Left-padded prompts [B, P] (mask 1 on real tokens) -> (first new token, its position,
    kv_mask [B, slots], KV cache)."""
    model = nnx.merge(graphdef, params)
    b, p = tokens.shape
    positions = jnp.maximum(jnp.cumsum(mask, 1) - 1, 0)
    kv_mask = jnp.zeros((b, slots), bool).at[:, :p].set(mask.astype(bool))
    cache = model_lib.init_cache(cfg, b, slots)
    h, cache = model.hidden(tokens, positions, cache=cache, cache_index=0, kv_mask=kv_mask)
    logits = model.unembed(h[:, -1]).astype(jnp.float32)
    return _sample(logits, key, temperature, greedy), positions[:, -1] + 1, kv_mask, cache


@functools.partial(jax.jit, static_argnums=(0, 1), donate_argnums=(5, 6))
def _decode(graphdef, greedy, params, token, position, kv_mask, cache, index, key, temperature):
    """One token per row into cache slot ``index`` -> (next token, next position, kv_mask, cache)."""
    model = nnx.merge(graphdef, params)
    kv_mask = jax.lax.dynamic_update_slice(kv_mask, jnp.ones((kv_mask.shape[0], 1), bool), (0, index))
    h, cache = model.hidden(token[:, None], position[:, None], cache=cache, cache_index=index, kv_mask=kv_mask)
    logits = model.unembed(h[:, 0]).astype(jnp.float32)
    return _sample(logits, key, temperature, greedy), position + 1, kv_mask, cache


# ----------------------------------------------------------------------------- scorer


@dataclasses.dataclass
class _Plan:
    rows: list[tuple[int, ...]]  # distinct model inputs
    gathers: list[list[tuple[int, int]]]  # per row: (position, target token) slots
    refs: list[list[tuple[int, int]]]  # per request: (row, slot) whose log-probs it sums


@dataclasses.dataclass
class _Tree:
    """Prompts packed into one model row as a prefix tree in depth-first order: prompts that share
    a prefix share its nodes (so its keys and values are computed once), and node j's subtree is
    the range j .. ends[j]-1, which is exactly what attends to it (``kv_end``)."""
    tokens: list[int] = dataclasses.field(default_factory=list)
    depth: list[int] = dataclasses.field(default_factory=list)  # rotary position = depth in the tree
    ends: list[int] = dataclasses.field(default_factory=list)
    nodes: dict[int, list[int]] = dataclasses.field(default_factory=dict)  # plan row -> node per position


def _common_prefix(a, b) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


def _pack(rows, order, capacity: int) -> list[_Tree]:
    """Rows in ``order`` -> trees of at most ``capacity`` nodes (a row longer than that gets a tree
    of its own; capacity 0: one row per tree). In lexicographic order a row shares the longest
    prefix of any earlier row with its predecessor, so inserting it is: close the predecessor's
    nodes past that prefix (their subtrees end here), then append the rest as a new branch."""
    trees: list[_Tree] = []
    tree, path, prev = None, [], ()

    def close(keep: int):
        for node in path[keep:]:
            tree.ends[node] = len(tree.tokens)

    for i in order:
        row = rows[i]
        shared = _common_prefix(row, prev) if tree is not None else 0
        if tree is None or len(tree.tokens) + len(row) - shared > capacity:
            if tree is not None:
                close(0)
            tree, path, shared = _Tree(), [], 0
            trees.append(tree)
        close(shared)
        start = len(tree.tokens)
        path = path[:shared] + list(range(start, start + len(row) - shared))
        tree.tokens += row[shared:]
        tree.depth += range(shared, len(row))
        tree.ends += [0] * (len(row) - shared)
        tree.nodes[i] = path
        prev = row
    if tree is not None:
        close(0)
    return trees


# Tokens per packed row (then at least the longest prompt). My choice, by bench/eval.py on CPU.
PACK_LEN = 384
# A packed batch holds as many tokens as ``batch_size`` plain rows of this length (my choice).
ROW_TOKENS = 128


class Scorer:
    """Log-likelihood and generation over one model. ``batch_size`` rows per forward pass
    (rounded up to a multiple of the mesh's data x fsdp size); ``max_len`` the context window
    (default the model's max_seq_len, as lm-eval's HF default). ``stats`` counts requests, rows
    (forward-pass sequences), batches and padded tokens processed."""

    def __init__(self, model_cfg: model_lib.ModelConfig, params, graphdef, tokenizer, mesh=None,
                 batch_size: int = 32, max_len: int | None = None, pack_len: int = PACK_LEN):
        if isinstance(tokenizer, str):
            tokenizer = Tokenizer.load(tokenizer)
        self.cfg, self.params, self.graphdef, self.tokenizer = model_cfg, params, graphdef, tokenizer
        self.mesh = sharding.make_mesh() if mesh is None else mesh
        self.batch_axes = self.mesh.shape["data"] * self.mesh.shape["fsdp"]
        self.batch_size = -(-max(batch_size, 1) // self.batch_axes) * self.batch_axes
        self.max_len = max_len or model_cfg.max_seq_len
        self.pack_len = pack_len
        self.eos_id = tokenizer.eos_id
        self.stats: collections.Counter = collections.Counter()

    @classmethod
    def from_path(cls, path, tokenizer, mesh=None, dtype: str = "float32", **kw) -> "Scorer":
        mesh = sharding.make_mesh() if mesh is None else mesh
        cfg, params, graphdef = load_model(path, mesh, dtype)
        return cls(cfg, params, graphdef, tokenizer, mesh, **kw)

    # ------------------------------------------------------------------ encoding

    def encode_pairs(self, requests: Sequence[tuple[str, str]]) -> list[tuple[list[int], list[int]]]:
        """lm-eval's ``_encode_pair`` for every request (context tokens, continuation tokens);
        an empty context becomes [EOS] (lm-eval's prefix token)."""
        split = []
        for context, continuation in requests:
            n = len(context) - len(context.rstrip())
            split.append((context[:-n], context[-n:] + continuation) if n else (context, continuation))
        texts = sorted({t for c, k in split for t in ((c, c + k) if c else (k,))})
        ids = dict(zip(texts, _encode_batch(self.tokenizer, texts)))
        out = []
        for (context, continuation), (c, k) in zip(requests, split):
            if context == "":
                out.append(([self.eos_id], ids[continuation]))
            else:
                ctx = ids[c]
                out.append((ctx, ids[c + k][len(ctx):]))
        return out

    def _plan(self, pairs) -> _Plan:
        row_of: dict[tuple[int, ...], int] = {}
        rows, gathers, slot_of, refs = [], [], [], []
        for ctx, cont in pairs:
            full = (ctx + cont)[-(self.max_len + 1):]
            n = min(len(cont), len(full) - 1)
            inp = tuple(full[:-1])
            if n <= 0 or not inp:  # nothing to score (empty continuation)
                refs.append([])
                continue
            r = row_of.get(inp)
            if r is None:
                r = row_of[inp] = len(rows)
                rows.append(inp)
                gathers.append([])
                slot_of.append({})
            ref = []
            for pos in range(len(inp) - n, len(inp)):
                key = (pos, full[pos + 1])
                s = slot_of[r].get(key)
                if s is None:
                    s = slot_of[r][key] = len(gathers[r])
                    gathers[r].append(key)
                ref.append((r, s))
            refs.append(ref)
        return _Plan(rows, gathers, refs)

    # ------------------------------------------------------------------ log-likelihood

    def loglikelihood(self, requests: Sequence[tuple[str, str]]) -> list[tuple[float, bool]]:
        """(sum of continuation log-probs, every continuation token is the argmax) per
        (context, continuation), as lm-eval's ``loglikelihood``."""
        return self.loglikelihood_tokens(self.encode_pairs(requests))

    def loglikelihood_tokens(self, pairs: Sequence[tuple[list[int], list[int]]]) -> list[tuple[float, bool]]:
        plan = self._plan(pairs)
        logp, greedy = self._run(plan)
        self.stats["requests"] += len(pairs)
        out = []
        for ref in plan.refs:
            if not ref:
                out.append((0.0, True))
                continue
            out.append((float(sum(float(logp[r][s]) for r, s in ref)), bool(all(greedy[r][s] for r, s in ref))))
        return out

    def choice_logprobs(self, contexts: Sequence[str], choices: Sequence[Sequence[str]]) -> list[list[tuple[float, bool]]]:
        """(log-likelihood, is_greedy) of every choice of every context, equal to
        ``loglikelihood`` over the (context, choice) pairs. When a context's choices are single
        tokens after lm-eval's split (" A", " B", ...) they share one input, so ONE forward pass of
        the context scores them all from its last position; longer choices each get their row."""
        if len(contexts) != len(choices):
            raise ValueError(f"{len(contexts)} contexts but {len(choices)} choice lists")
        flat = [(c, ch) for c, chs in zip(contexts, choices) for ch in chs]
        results = iter(self.loglikelihood(flat))
        return [[next(results) for _ in chs] for chs in choices]

    def _run(self, plan: _Plan):
        """Every row's gathered log-probs and greedy flags, as lists of arrays."""
        if self.pack_len:  # lexicographic order puts prompts that share a prefix next to each other
            order = sorted(range(len(plan.rows)), key=plan.rows.__getitem__)
            trees = _pack(plan.rows, order, max(self.pack_len, max(map(len, plan.rows), default=0)))
            per_batch = max(1, self.batch_size * ROW_TOKENS // self.pack_len)
        else:  # one row per tree, longest first (as lm-eval)
            order = sorted(range(len(plan.rows)), key=lambda i: (-len(plan.rows[i]), plan.rows[i]))
            trees, per_batch = _pack(plan.rows, order, 0), self.batch_size
        trees.sort(key=lambda tree: -len(tree.tokens))
        logp: list = [None] * len(plan.rows)
        greedy: list = [None] * len(plan.rows)
        pending = []
        spec = sharding.batch_sharding(self.mesh, 2)
        with jax.set_mesh(self.mesh):
            for start in range(0, len(trees), per_batch):
                batch = trees[start:start + per_batch]
                b = -(-min(per_batch, _pow2(len(batch))) // self.batch_axes) * self.batch_axes
                t = _bucket(max(len(tree.tokens) for tree in batch))
                # Each distinct node is unembedded once, however many targets read it (all the
                # single-token options of a prompt read its last node).
                reads = [sorted({nodes[pos] for i, nodes in tree.nodes.items() for pos, _ in plan.gathers[i]})
                         for tree in batch]
                n_pos = _pow2(max(len(r) for r in reads))
                k = _pow2(max(sum(len(plan.gathers[i]) for i in tree.nodes) for tree in batch))
                tokens, depth = np.zeros((b, t), np.int32), np.zeros((b, t), np.int32)
                kv_end = np.tile(np.arange(1, t + 1, dtype=np.int32), (b, 1))  # padding sees itself only
                positions, select, targets = (np.zeros((b, n), np.int32) for n in (n_pos, k, k))
                slices = []
                for j, tree in enumerate(batch):
                    n = len(tree.tokens)
                    tokens[j, :n], depth[j, :n], kv_end[j, :n] = tree.tokens, tree.depth, tree.ends
                    positions[j, :len(reads[j])] = reads[j]
                    where = {node: m for m, node in enumerate(reads[j])}
                    m = 0
                    for i, nodes in tree.nodes.items():
                        for pos, tok in plan.gathers[i]:
                            select[j, m], targets[j, m] = where[nodes[pos]], tok
                            m += 1
                        slices.append((i, j, m - len(plan.gathers[i]), m))
                args = [jax.device_put(x, spec) for x in (tokens, depth, kv_end, positions, select, targets)]
                pending.append((slices, _score_rows(self.graphdef, self.params, *args)))  # asynchronous dispatch
                self.stats["batches"] += 1
                self.stats["tokens"] += b * t
        for slices, (lp, gr) in pending:
            lp, gr = np.asarray(lp), np.asarray(gr)
            for i, j, lo, hi in slices:
                logp[i], greedy[i] = lp[j, lo:hi], gr[j, lo:hi]
        self.stats["rows"] += len(plan.rows)
        return logp, greedy

    # ------------------------------------------------------------------ generation

    def generate(self, prompts: Sequence[str], max_new_tokens: int, temperature: float = 0.0, seed: int = 0,
                 stop: Sequence[str] | None = None) -> list[str]:
        """Continuations of ``prompts``: greedy when ``temperature`` is 0, else sampled. Each stops
        at EOS, after ``max_new_tokens`` or at the first stop string (cut off, as lm-eval's
        ``until``)."""
        return [text for text, _ in self._generate(prompts, max_new_tokens, temperature, seed, stop)]

    def generate_tokens(self, prompts: Sequence[str], max_new_tokens: int, temperature: float = 0.0,
                        seed: int = 0) -> list[list[int]]:
        """Generated token ids (up to, not including, EOS)."""
        return [ids for _, ids in self._generate(prompts, max_new_tokens, temperature, seed, None)]

    def _generate(self, prompts, max_new_tokens, temperature, seed, stop):
        if max_new_tokens < 1:
            return [("", []) for _ in prompts]
        stop = [s for s in (stop or []) if s]
        budget = max(self.max_len - max_new_tokens, 1)  # lm-eval: max_length - max_gen_toks
        encoded = [(ids or [self.eos_id])[-budget:] for ids in _encode_batch(self.tokenizer, prompts)]
        order = sorted(range(len(prompts)), key=lambda i: -len(encoded[i]))
        results: list = [None] * len(prompts)
        greedy = temperature <= 0
        temp = jnp.float32(max(temperature, 1e-6))
        base_key = jax.random.key(seed)
        spec = sharding.batch_sharding(self.mesh, 2)
        with jax.set_mesh(self.mesh):
            for n_batch, start in enumerate(range(0, len(order), self.batch_size)):
                idx = order[start:start + self.batch_size]
                b = -(-min(self.batch_size, _pow2(len(idx))) // self.batch_axes) * self.batch_axes
                p = _bucket(max(len(encoded[i]) for i in idx))
                slots = _bucket(p + max_new_tokens)
                tokens = np.full((b, p), self.tokenizer.pad_id, np.int32)
                mask = np.zeros((b, p), np.int32)
                for j, i in enumerate(idx):
                    tokens[j, p - len(encoded[i]):] = encoded[i]
                    mask[j, p - len(encoded[i]):] = 1
                mask[len(idx):, -1] = 1  # filler rows: one real token keeps them well defined
                key = jax.random.fold_in(base_key, n_batch)
                state = _prefill(self.graphdef, self.cfg, slots, greedy, self.params, jax.device_put(tokens, spec),
                                      jax.device_put(mask, spec), jax.random.fold_in(key, 0), temp)
                out = [[] for _ in idx]
                done = [False] * len(idx)
                for step in range(max_new_tokens):
                    token = state[0]
                    if step + 1 < max_new_tokens:  # dispatch the next step before reading this one
                        state = _decode(self.graphdef, greedy, self.params, *state, jnp.int32(p + step),
                                             jax.random.fold_in(key, step + 1), temp)
                    token = np.asarray(token)
                    for j in range(len(idx)):
                        if done[j]:
                            continue
                        if token[j] == self.eos_id:
                            done[j] = True
                            continue
                        out[j].append(int(token[j]))
                        if stop and any(s in self.tokenizer.decode(out[j]) for s in stop):
                            done[j] = True
                    self.stats["generated_tokens"] += len(idx) - sum(done)
                    if all(done):
                        break
                for j, i in enumerate(idx):
                    text = self.tokenizer.decode(out[j])
                    for s in stop:
                        text = text.split(s)[0]
                    results[i] = (text, out[j])
        return results


# ----------------------------------------------------------------------------- answer letters

_LETTER = r"\(?\[?([A-Z])\]?\)?(?![A-Za-z0-9])"
_PATTERNS = [
    # 1. an answer label: "Answer: B", "the answer is (B)", "correct answer would be C"
    re.compile(r"answer\s*(?:is|would be|:|-)?\s*:?\s*" + _LETTER, re.IGNORECASE),
    # 2. an option label: "option A", "choice: C", "I choose B"
    re.compile(r"(?:option|choice|choose|pick|select)\s*(?:is|:|-)?\s*:?\s*" + _LETTER, re.IGNORECASE),
    # 3. the text starts with the letter: "A", "(A)", "A.", "B) because", "[C]", "D: ..."
    re.compile(r"^\s*\(?\[?([A-Z])(?:\]|\)|\.|:|,)?(?![A-Za-z0-9])"),
    # 4. a parenthesised letter anywhere: "... I pick (B)."
    re.compile(r"\(([A-Z])\)"),
]


def parse_letter(text: str, n_options: int) -> int | None:
    """The option index (A=0, B=1, ...) a generation answers, or None. Tried in order, a letter
    counting only when it is one of the first ``n_options``: (1) after "answer" ("Answer: B",
    "the answer is (C)"); (2) after option/choice/choose/pick/select ("option A", "I choose B");
    (3) at the very start ("A", "(B)", "C. ..."); (4) in parentheses anywhere; (5) the only
    distinct standalone capital letter among the options in the text ("I'd go with B").
    Lower-case letters never count (too many false hits), nor does a text whose only hint is
    ambiguous ("it could be A or B").
    Rule 3 reads a leading article as a letter ("A person should ..." -> A)."""
    valid = {chr(ord("A") + i) for i in range(n_options)}
    for pattern in _PATTERNS:
        for m in pattern.finditer(text):
            if m.group(1) in valid:
                return ord(m.group(1)) - ord("A")
    found = {m.group(1) for m in re.finditer(r"(?<![A-Za-z0-9'])([A-Z])(?![A-Za-z0-9'])", text)} & valid
    return ord(found.pop()) - ord("A") if len(found) == 1 else None


def parse_letters(texts: Sequence[str], n_options: int | Sequence[int]) -> tuple[list[int | None], dict]:
    """``parse_letter`` over generations, with extraction statistics
    {"parsed": n, "unparsed": n, "parse_rate": fraction}."""
    ns = [n_options] * len(texts) if isinstance(n_options, int) else list(n_options)
    picks = [parse_letter(t, n) for t, n in zip(texts, ns, strict=True)]
    parsed = sum(p is not None for p in picks)
    return picks, {"parsed": parsed, "unparsed": len(picks) - parsed,
                   "parse_rate": parsed / len(picks) if picks else 0.0}
