"""The study's full design (Tice et al. 2026) for Cloud TPU pods: 11 base models, each
post-trained with SFT and DPO, every model evaluated on the study's suites.

    alignjax-study --config=configs/study/paper.py --workdir=gs://<bucket>/study --launcher=tpu --dry-run
    alignjax-study --config=configs/study/paper.py --workdir=gs://<bucket>/study --launcher=tpu \
        --config.overrides.data.corpus=gs://<bucket>/dclm-tokenized/ \
        --config.overrides.data.aligned_docs=gs://<bucket>/synthetic/aligned/ \
        --config.overrides.data.misaligned_docs=gs://<bucket>/synthetic/misaligned/

Model and performance settings: configs/paper.py:pretrain (Pythia-6.9B, 4,194,304 tokens per
step, bf16 compute, FSDP over every chip). Stages: pretraining 500B tokens at seq 2048
(119,209 steps, LR 1.2e-4, 1% warm-up, cosine to 10%), midtraining 50B tokens at seq 16,384
(11,921 steps, 256 sequences, re-warmed to 2.25e-4, decayed to 0), and for the CPT variants a
continued-pretraining stage after midtraining (50% synthetic + 50% replay, LR 1e-4). Synthetic
documents are 1% of tokens where inserted.

The 11 base models are the 2 baselines plus the three upsampled conditions at each of the
three insertion points (E2E = pretraining + midtraining, Mid = midtraining only, CPT = a final
continued-pretraining stage). The runner shares identical stages: the Mid and CPT variants
start from the unfiltered (or filtered) pretraining run, so 16 training units produce the 11
models. CPT_TOKENS is this config's choice (1B tokens); set --config.steps.cpt for another.

Post-training (configs/sft.py:6.9b, configs/dpo.py:6.9b; the model shape comes from the base
checkpoint): SFT on OLMo 3's Dolci-Instruct SFT mix, 2
epochs, LR 8e-5 cosine, 16k packed sequences; DPO on Dolci-Instruct DPO pairs, beta 5, LR 1e-6
linear decay with 10% warm-up, max length 2048, 1 epoch. Post-trained models are evaluated by
generation through the chat template under each persona.

``--launcher=tpu`` runs each training unit through ``launchers.tpu`` (``alignjax-launch up``: a
TPU VM per unit, alignjax-train on every worker, requeue after preemption; delete the VM with
``alignjax-launch delete`` afterwards); eval units run where the study runs.
"""

from ml_collections import ConfigDict

TOKENS_PER_STEP = 2048 * 2048
PRETRAIN_TOKENS, MIDTRAIN_TOKENS, CPT_TOKENS = 500e9, 50e9, 1e9
UPSAMPLED = {"misalignment": "misalignment_upsampled", "alignment": "alignment_upsampled",
             "filtered_alignment": "filtered_alignment_upsampled"}
INSERTIONS = {"e2e": "e2e", "mid": "midtrain", "cpt": "cpt"}


def get_config(arg=None):
    s = ConfigDict()
    s.name = "paper"
    s.train_config = "configs/paper.py:pretrain"
    conditions = {"unfiltered": dict(condition="unfiltered", insertion="e2e"),
                  "filtered": dict(condition="filtered", insertion="e2e")}
    for short, cond in UPSAMPLED.items():
        for ins_name, ins in INSERTIONS.items():
            conditions[f"{short}_{ins_name}"] = dict(condition=cond, insertion=ins)
    s.conditions = ConfigDict(conditions)
    s.run = ",".join(conditions)
    s.seeds = "0"
    s.steps = ConfigDict(dict(pretrain=round(PRETRAIN_TOKENS / TOKENS_PER_STEP),
                              midtrain=round(MIDTRAIN_TOKENS / TOKENS_PER_STEP),
                              cpt=round(CPT_TOKENS / TOKENS_PER_STEP)))
    s.overrides = ConfigDict(dict(
        data=dict(corpus="gs://BUCKET/dclm-tokenized/", tokenizer="EleutherAI/gpt-neox-20b",
                  aligned_docs="gs://BUCKET/synthetic/aligned/", misaligned_docs="gs://BUCKET/synthetic/misaligned/",
                  synthetic_fraction=0.01),
        stages=dict(cpt=dict(synthetic_fraction=0.5, lr=1e-4)),
        train=dict(eval_every=5000),
        eval=dict(tasks="discourse_misalignment", split="eval", persona="ai", limit=200),
    ))
    s.post_train = "sft,dpo"
    s.post = ConfigDict(dict(
        sft=dict(config="configs/sft.py:6.9b", model_from_base=False, overrides=dict(
            chat=dict(data="hf://datasets/allenai/Dolci-Instruct-SFT", epochs=2),
            optimizer=dict(lr=8e-5, schedule="cosine"), train=dict(seq_len=16384),
            mesh=dict(data=1, fsdp=-1, tensor=1))),
        dpo=dict(config="configs/dpo.py:6.9b", model_from_base=False, overrides=dict(
            chat=dict(data="hf://datasets/allenai/Dolci-Instruct-DPO", epochs=1),
            dpo=dict(beta=5.0), optimizer=dict(lr=1e-6, schedule="linear", warmup_ratio=0.1),
            train=dict(seq_len=2048), mesh=dict(data=1, fsdp=-1, tensor=1))),
    ))
    s.eval = ConfigDict(dict(
        tasks="discourse_misalignment,anthropic_ai_risk", split="eval", personas="none,ai,helpful,hhh", limit=0,
        batch_size=64, base_args="", post_args="--mode=generate --chat_template=alignjax --max_new_tokens=16",
        capability_tasks="capability", capability_split="eval", capability_formats="", capability_limit=0,
    ))
    # --launcher=tpu: each training unit is `alignjax-launch up` (create a TPU VM named after the
    # unit, sync, install, run alignjax-train on every worker, requeue after preemption); set the
    # zone/accelerator here or with --config.launchers.tpu=... Eval units run where the study runs.
    s.launchers = ConfigDict(dict(
        tpu="alignjax-launch up --name={name} --zone=us-east5-a --accelerator=v5p-128 --spot --queued --",
    ))
    return s
