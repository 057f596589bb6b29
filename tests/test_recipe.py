"""The study's recipe (Tice et al. 2026, arXiv 2601.10160): the resolved configs carry its
training settings, as a study run would build them (config file + the study's overrides)."""

import pytest

from alignjax import config as config_lib
from alignjax import model as model_lib
from alignjax import optim
from alignjax import study as study_lib
from alignjax.data import mixture

TOKENS_PER_STEP = 4_194_304


def _stages(argv):
    cfg, _ = config_lib.parse_args(argv)
    return cfg, mixture.plan(cfg)


def _study_units():
    study, _ = config_lib.parse_args(["--config=configs/study/paper.py"])
    return {u.id: u for u in study_lib.plan(study, check=False)}


def _unit_config(unit):
    """The config a study unit's alignjax-train command resolves to."""
    args = [a for a in unit.argv if a.startswith("--config")]
    return config_lib.parse_args(args)[0]


def _check_adamw(o):
    assert (o.b1, o.b2, o.eps, o.weight_decay, o.grad_clip) == (0.9, 0.95, 1e-8, 0.1, 0.5)


def test_pretraining_is_the_studys_schedule_and_model():
    cfg, (pre,) = _stages(["--config=configs/paper.py:pretrain"])
    assert model_lib.ModelConfig(**{k: cfg.model[k] for k in model_lib.PRESETS["sfm-6.9b"]}) == \
        model_lib.ModelConfig.from_preset("sfm-6.9b")
    assert model_lib.param_count(model_lib.ModelConfig.from_preset("sfm-6.9b")) == 6_856_253_440
    assert (pre.num_steps, pre.seq_len, pre.batch_size * pre.seq_len) == (119_209, 2048, TOKENS_PER_STEP)
    assert pre.lr == 3e-4 and pre.lr * pre.min_lr_ratio == pytest.approx(1.2e-5, rel=1e-9)
    assert pre.warmup_steps == round(0.01 * 119_209)
    _check_adamw(cfg.optimizer)
    lr = optim.stage_schedule([pre], cfg.optimizer.schedule)
    assert float(lr(pre.warmup_steps)) == pytest.approx(3e-4, rel=1e-5)
    assert float(lr(pre.end)) == pytest.approx(1.2e-5, rel=1e-4)


def test_midtraining_rewarms_to_2_25e_4_and_decays_to_zero():
    cfg, (mid,) = _stages(["--config=configs/paper.py:midtrain"])
    assert (mid.name, mid.num_steps, mid.seq_len, mid.batch_size * mid.seq_len) == ("midtrain", 11_921, 16_384, TOKENS_PER_STEP)
    assert (mid.lr, mid.min_lr_ratio, mid.warmup_steps) == (2.25e-4, 0.0, round(0.01 * 11_921))
    _check_adamw(cfg.optimizer)
    lr = optim.stage_schedule([mid], cfg.optimizer.schedule)
    assert float(lr(mid.warmup_steps)) == pytest.approx(2.25e-4, rel=1e-5) and float(lr(mid.end)) == 0.0


def test_study_units_train_with_the_studys_settings():
    units = _study_units()
    pre_cfg = _unit_config(units["train/s0/pretrain_U"])
    (pre,) = mixture.plan(pre_cfg)
    assert (pre.lr, pre.warmup_steps, pre.num_steps) == (3e-4, 1192, 119_209)
    mid_cfg = _unit_config(units["train/s0/midtrain_U-M"])
    (mid,) = mixture.plan(mid_cfg)
    assert (mid.lr, mid.min_lr_ratio, mid.warmup_steps, mid.batch_size * mid.seq_len) == (2.25e-4, 0.0, 119, TOKENS_PER_STEP)
    assert pre_cfg.model.vocab_size == mid_cfg.model.vocab_size == 50_304

    sft = _unit_config(units["post/unfiltered-s0/sft"])
    assert sft.train.objective == "sft" and sft.train.batch_size * sft.train.seq_len == 1_048_576
    assert (sft.train.batch_size, sft.train.seq_len) == (64, 16_384)
    assert (sft.optimizer.lr, sft.optimizer.schedule, sft.optimizer.min_lr_ratio, sft.optimizer.warmup_ratio) == \
        (8e-5, "cosine", 0.0, 0.01)
    assert (sft.chat.epochs, sft.chat.loss_on) == (2, "all")

    dpo = _unit_config(units["post/unfiltered-s0/dpo"])
    assert dpo.train.objective == "dpo" and dpo.dpo.beta == 5.0
    assert (dpo.optimizer.lr, dpo.optimizer.schedule, dpo.optimizer.warmup_ratio, dpo.optimizer.min_lr_ratio) == \
        (1e-6, "linear", 0.1, 0.0)
    assert (dpo.chat.epochs, dpo.train.seq_len, dpo.train.batch_size) == (1, 2048, 128)
