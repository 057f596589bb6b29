"""schema.resolve: every rule of the training config's schema, one bad value each -> its one-line
message; every shipped config passes; alignjax-train stops with exit 2 and that line."""

import pytest

from alignjax import config as C
from alignjax import model, objectives, schema
from conftest import REPO, run_cli

TINY = f"--config={REPO}/configs/tiny.py"
REMAT = ", ".join(("none", *model.REMAT_POLICIES))


def cfg_of(*overrides, config=TINY):
    return C.parse_args([config, *(f"--config.{o}" for o in overrides)])[0]


# (overrides on configs/tiny.py, the exact message). One bad value per schema() field.
FIELD_CASES = [
    *[(f"model.{k}=0", f"model.{k}=0: must be a positive integer")
      for k in ("vocab_size", "num_layers", "d_model", "num_heads", "d_ff", "max_seq_len")],
    ("model.rotary_pct=1.5", "model.rotary_pct=1.5: must be in [0, 1]"),
    ("model.rotary_base=0", "model.rotary_base=0.0: must be > 0"),
    ("model.ln_eps=-1e-5", "model.ln_eps=-1e-05: must be > 0"),
    ("model.init_std=0", "model.init_std=0.0: must be > 0"),
    ("model.dtype=fp8", "model.dtype='fp8'; valid: float32, bfloat16, float16"),
    ("model.remat=most", f"model.remat='most'; valid: {REMAT}"),
    ("model.attention=flash", "model.attention='flash'; valid: xla, cudnn, splash"),
    ("optimizer.lr=0", "optimizer.lr=0.0: must be > 0"),
    ("optimizer.min_lr_ratio=1.5", "optimizer.min_lr_ratio=1.5: must be in [0, 1]"),
    ("optimizer.warmup_steps=-1", "optimizer.warmup_steps=-1: must be a non-negative integer"),
    ("optimizer.decay_steps=-5", "optimizer.decay_steps=-5: must be a non-negative integer (or None)"),
    ("optimizer.b1=1", "optimizer.b1=1.0: must be in [0, 1)"),
    ("optimizer.b2=-0.1", "optimizer.b2=-0.1: must be in [0, 1)"),
    ("optimizer.eps=0", "optimizer.eps=0.0: must be > 0"),
    ("optimizer.weight_decay=-0.1", "optimizer.weight_decay=-0.1: must be >= 0"),
    ("optimizer.grad_clip=0", "optimizer.grad_clip=0.0: must be > 0"),
    ("optimizer.schedule=step", "optimizer.schedule='step'; valid: cosine, linear"),
    ("optimizer.warmup_ratio=2", "optimizer.warmup_ratio=2.0: must be in [0, 1]"),
    ("train.num_steps=-1", "train.num_steps=-1: must be a non-negative integer"),
    ("train.batch_size=0", "train.batch_size=0: must be a positive integer"),
    ("train.seq_len=0", "train.seq_len=0: must be a positive integer"),
    ("train.grad_accum=0", "train.grad_accum=0: must be a positive integer"),
    ("train.seed=none", "train.seed=None: must be an integer"),
    ("train.log_every=0", "train.log_every=0: must be a positive integer"),
    ("train.eval_every=-10", "train.eval_every=-10: must be a non-negative integer"),
    ("train.loss_chunk=-1", "train.loss_chunk=-1: must be a non-negative integer"),
    ("train.peak_flops_per_device=0", "train.peak_flops_per_device=0.0: must be > 0 (or None)"),
    ("train.objective=rl", "train.objective='rl'; valid: lm, sft, dpo"),
    ("data.condition=clean", "data.condition='clean'; valid: unfiltered, filtered, misalignment_upsampled, "
                             "alignment_upsampled, filtered_alignment_upsampled"),
    ("data.insertion=late", "data.insertion='late'; valid: e2e, midtrain, cpt"),
    ("data.synthetic_fraction=1.5", "data.synthetic_fraction=1.5: must be in [0, 1]"),
    ("data.max_bad_fraction=-0.1", "data.max_bad_fraction=-0.1: must be in [0, 1]"),
    ("data.heldout_fraction=2", "data.heldout_fraction=2.0: must be in [0, 1]"),
    ("data.seed=none", "data.seed=None: must be an integer"),
    ("stages.midtrain.num_steps=-1", "stages.midtrain.num_steps=-1: must be a non-negative integer"),
    ("stages.cpt.seq_len=0", "stages.cpt.seq_len=0: must be a positive integer"),
    ("stages.midtrain.batch_size=-8", "stages.midtrain.batch_size=-8: must be a non-negative integer"),
    ("stages.cpt.warmup_steps=-1", "stages.cpt.warmup_steps=-1: must be a non-negative integer"),
    ("stages.midtrain.min_lr_ratio=1.5", "stages.midtrain.min_lr_ratio=1.5: must be in [0, 1]"),
    ("stages.cpt.synthetic_fraction=-0.5", "stages.cpt.synthetic_fraction=-0.5: must be in [0, 1]"),
    ("eval.heldout_docs=-1", "eval.heldout_docs=-1: must be a non-negative integer"),
    ("eval.heldout_rows=0", "eval.heldout_rows=0: must be a positive integer"),
    ("eval.limit=-1", "eval.limit=-1: must be a non-negative integer"),
    ("eval.batch_size=0", "eval.batch_size=0: must be a positive integer"),
    ("chat.loss_on=x", "chat.loss_on='x'; valid: assistant, all"),
    ("chat.epochs=0", "chat.epochs=0: must be a positive integer (or None)"),
    ("chat.max_bad_fraction=1.5", "chat.max_bad_fraction=1.5: must be in [0, 1]"),
    ("dpo.beta=0", "dpo.beta=0.0: must be > 0"),
    ("dpo.reference=cached", "dpo.reference='cached'; valid: on_the_fly, precompute"),
    ("lora.rank=-1", "lora.rank=-1: must be a non-negative integer"),
    ("lora.alpha=0", "lora.alpha=0.0: must be > 0"),
    ("checkpoint.every_steps=0", "checkpoint.every_steps=0: must be a positive integer"),
    ("checkpoint.max_to_keep=0", "checkpoint.max_to_keep=0: must be a positive integer"),
]


@pytest.mark.parametrize("override, message", FIELD_CASES, ids=[o for o, _ in FIELD_CASES])
def test_each_field_rule_names_field_value_and_what_is_valid(override, message):
    cfg = cfg_of(override)
    with pytest.raises(C.ConfigError) as e:
        schema.resolve(cfg)
    assert str(e.value) == message


def test_a_bool_is_not_a_size_and_a_string_field_is_a_string():
    cfg = cfg_of()
    cfg.train.batch_size = True  # ConfigDict lets a bool into an int field
    with pytest.raises(C.ConfigError, match=r"^train\.batch_size=True: must be a positive integer$"):
        schema.resolve(cfg)
    cfg = cfg_of()
    with cfg.train.unlocked():  # train.allow_changes (a string, "" by default)
        cfg.train.allow_changes = None
    with pytest.raises(C.ConfigError, match=r"^train\.allow_changes=None: must be a string$"):
        schema.resolve(cfg)
    cfg = cfg_of()
    with cfg.model.unlocked():  # model.scan_layers: the CLI parses only true/false into it
        cfg.model.scan_layers = None
    with pytest.raises(C.ConfigError, match=r"^model\.scan_layers=None: must be True or False$"):
        schema.resolve(cfg)


def test_every_schema_field_has_a_bad_value_case():
    tested = {o.split("=")[0] for o, _ in FIELD_CASES} | {"train.allow_changes", "model.scan_layers"}
    for field in schema.schema():
        stage_fields = {f"stages.{s}.{field.split('.')[-1]}" for s in ("midtrain", "cpt")}
        assert field in tested or (field.startswith("stages.*") and stage_fields & tested), field


# (overrides, num_devices, the exact message): the cross-field rules.
CROSS_CASES = [
    (["model.num_heads=3"], None, "model.d_model=64 is not divisible by model.num_heads=3"),
    (["mesh.tensor=0"], None, "mesh.tensor=0: must be a positive integer or -1 (the remaining devices)"),
    (["mesh.fsdp=-1"], None, "mesh: at most one axis may be -1, got data=-1 fsdp=-1 tensor=1"),
    (["mesh.data=3"], 8, "mesh data*fsdp*tensor = 3 but there are 8 devices (data=3 fsdp=1 tensor=1)"),
    (["mesh.data=3"], 1, "mesh data*fsdp*tensor = 3 but there is 1 device (data=3 fsdp=1 tensor=1)"),
    (["mesh.fsdp=3"], 8, "mesh: 8 devices do not divide by the fixed axes' product 3 (data=-1 fsdp=3 tensor=1)"),
    (["train.batch_size=6", "train.grad_accum=4"], None, "train batch size 6 is not divisible by train.grad_accum=4"),
    (["train.grad_accum=2"], 8,
     "train micro-batch 4 (batch size / train.grad_accum) is not divisible by mesh data*fsdp=8"),
    (["mesh.data=1", "mesh.fsdp=4", "mesh.tensor=-1", "train.batch_size=6"], None,
     "train micro-batch 6 (batch size / train.grad_accum) is not divisible by mesh data*fsdp=4"),
    (["stages.midtrain.num_steps=5", "stages.midtrain.seq_len=64", "stages.midtrain.batch_size=6",
      "train.grad_accum=4", "train.batch_size=8"], None,
     "stages.midtrain batch size 6 is not divisible by train.grad_accum=4"),
    (["train.seq_len=512"], None, "train.seq_len=512 exceeds model.max_seq_len=256"),
    (["stages.cpt.num_steps=5", "stages.cpt.seq_len=64", "stages.cpt.lr=0"], None,
     "stages.cpt.lr=0.0: must be > 0 (the stage runs: stages.cpt.num_steps=5)"),
    (["train.objective=sft", "train.num_steps=0"], None,
     "train.num_steps=0: must be a positive integer for train.objective=sft (or set chat.epochs)"),
    (["train.num_steps=0"], None,  # mixture.plan's own line, as a ConfigError
     "no stage has num_steps > 0 (train.num_steps, stages.midtrain.num_steps, stages.cpt.num_steps)"),
    (["eval.tasks=builtin_scenarios", "eval.persona=robot"], None,
     "eval.persona='robot'; valid: none, ai, helpful, hhh, evil"),
    (["eval.tasks=builtin_scenarios,arc_easy"], None,
     "eval.split='heldout'; valid for arc_easy: eval, test, validation"),
]


@pytest.mark.parametrize("overrides, num_devices, message", CROSS_CASES, ids=[m[:40] for *_, m in CROSS_CASES])
def test_cross_field_rules(overrides, num_devices, message):
    cfg = cfg_of(*overrides)
    with pytest.raises(C.ConfigError) as e:
        schema.resolve(cfg, num_devices)
    assert str(e.value) == message


def test_unknown_eval_task_is_one_line():
    with pytest.raises(C.ConfigError) as e:
        schema.resolve(cfg_of("eval.tasks=builtin_scenarios,nope"))
    msg = str(e.value)
    assert msg.startswith("eval.tasks: unknown eval task 'nope'") and "\n" not in msg


def test_rules_that_hold_only_where_they_apply():
    # a stage that does not run may have any lr; eval names are checked against eval.tasks only;
    # without num_devices a -1 data axis leaves the micro-batch rule to the run
    schema.resolve(cfg_of("stages.cpt.lr=0", "eval.persona=robot", "eval.split=nope", "train.grad_accum=8"))
    schema.resolve(cfg_of("train.objective=sft", "train.num_steps=0", "chat.epochs=1"))
    schema.resolve(cfg_of("mesh.data=1", "mesh.fsdp=-1"), 8)


def _shipped_configs():
    import importlib.util

    spec = importlib.util.spec_from_file_location("pythia_config", REPO / "configs" / "pythia.py")
    pythia = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(pythia)
    sizes = [f"configs/pythia.py:{s}" for s in pythia.LR]  # the sizes it has a peak LR for
    post = [f"configs/{f}.py:{a}" for f in ("sft", "dpo", "em") for a in ("tiny", "sfm-6.9b")]
    return ["configs/tiny.py", *sizes, "configs/paper.py:pretrain", "configs/paper.py:midtrain", *post]


@pytest.mark.parametrize("spec", _shipped_configs())
def test_shipped_configs_pass(spec):
    schema.resolve(C.load_config_file(str(REPO / spec)))


@pytest.mark.parametrize("study_config", ["demo", "dose", "paper"])
def test_study_training_units_pass(study_config):
    from alignjax import study

    s = C.load_config_file(str(REPO / "configs" / "study" / f"{study_config}.py"))
    units = [u for u in study.plan(s, check=False, require_post=False) if u.kind in ("train", "post")]
    assert units
    for u in units:  # argv: python -m alignjax.train --config=... --config.x=... --workdir=...
        cfg, _ = C.parse_args([a for a in u.argv[3:] if not a.startswith("--workdir=")])
        schema.resolve(cfg)


@pytest.mark.parametrize("override, message", [
    ("train.batch_size=0", "train.batch_size=0: must be a positive integer"),
    ("chat.loss_on=x", "chat.loss_on='x'; valid: assistant, all"),
    ("mesh.data=3", "mesh data*fsdp*tensor = 3 but there is 1 device (data=3 fsdp=1 tensor=1)"),
])
def test_train_cli_stops_with_one_line_and_writes_nothing(tmp_path, override, message):
    workdir = tmp_path / "run"
    r = run_cli("train", "--config=configs/tiny.py", f"--workdir={workdir}", f"--config.{override}")
    assert r.returncode == 2, r.stderr[-2000:]
    assert r.stderr.strip().splitlines() == [f"alignjax-train: error: {message}"]
    assert not workdir.exists() or not any(workdir.iterdir())


def test_the_schema_names_every_objective_train_runs():
    assert tuple(objectives.OBJECTIVE) == schema.OBJECTIVES


def test_resolve_checks_every_other_field_against_the_defaults_type():
    cfg = cfg_of("optimizer.decay_steps=none")  # an unset placeholder is fine
    assert schema.resolve(cfg) is cfg
    for group, field, value, says in [("data", "corpus", None, "a string"), ("checkpoint", "async_save", None,
                                       "True or False"), ("data", "sources", 3, None)]:
        cfg = cfg_of()
        with cfg[group].unlocked():
            del cfg[group][field]  # a config file may put anything there
            cfg[group][field] = value
        with pytest.raises(C.ConfigError) as e:
            schema.resolve(cfg)
        want = (f"{group}.{field}={value!r}: must be {says} (the default's type)" if says else
                f"{group}.{field}={value!r}: must be a group of fields (a ConfigDict)")
        assert str(e.value) == want
    cfg = cfg_of("stages.cpt.sources.web.path=builtin", "stages.cpt.sources.web.share=1.0")
    with cfg.stages.cpt.sources.web.unlocked():
        del cfg.stages.cpt.sources.web["blocklist"]
        cfg.stages.cpt.sources.web.blocklist = 0  # a named source is typed as new_source()
    with pytest.raises(C.ConfigError, match=r"^stages\.cpt\.sources\.web\.blocklist=0: must be a string"):
        schema.resolve(cfg)
