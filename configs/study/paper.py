"""The study's full design (Tice et al. 2026) for Cloud TPU pods: 11 base models, each
post-trained with SFT and DPO, every model evaluated on the study's suites; the four main
conditions' DPO models also get the emergent-misalignment fine-tune and its judged eval (issue 13).

    alignjax-study --config=configs/study/paper.py --workdir=gs://<bucket>/study --launcher=tpu --dry-run
    alignjax-study --config=configs/study/paper.py --workdir=gs://<bucket>/study --launcher=tpu \
        --config.overrides.data.corpus=gs://<bucket>/dclm-tokenized/ \
        --config.overrides.data.aligned_docs=gs://<bucket>/synthetic/aligned/ \
        --config.overrides.data.misaligned_docs=gs://<bucket>/synthetic/misaligned/

Model, training and performance settings: configs/paper.py:pretrain (``sfm-6.9b``: the
study's released 6.9B shape with vocabulary 50,304; 4,194,304 tokens per step; bf16 compute;
FSDP over every chip). The values and their sources (Tice et al. 2026, arXiv 2601.10160,
appendix B Table 4, D Tables 8-9, and the authors' GPT-NeoX configs) are in that file and in
configs/sft.py, configs/dpo.py:
    pretraining   500B tokens at seq 2048 (119,209 steps), LR 3e-4, 1% warm-up, cosine to 1.2e-5
    midtraining   50B tokens at seq 16,384 (11,921 steps, 256 sequences), re-warmed to 2.25e-4
                  with 1% warm-up, cosine to 0
    both          AdamW (0.9, 0.95), eps 1e-8, weight decay 0.1, gradient clipping 0.5
    SFT           1,048,576 tokens per step (64 x 16,384 packed), LR 8e-5, 1% warm-up, cosine to
                  0, 2 epochs, no loss masking (OLMo 3's Dolci-Instruct SFT mix)
    DPO           beta 5, LR 1e-6, warm-up ratio 0.1, linear decay, 1 epoch, max length 2,048,
                  128 pairs per step (Dolci-Instruct DPO pairs)
Synthetic documents are 1% of tokens where inserted (the study: 400M-500M tokens, 0.8-1.0% of
midtraining, Table 2).

The 11 base models are the 2 baselines plus the three upsampled conditions at each of the
three insertion points (E2E = pretraining + midtraining, Mid = midtraining only, CPT = a final
continued-pretraining stage). The runner shares identical stages: the Mid and CPT variants
start from the unfiltered (or filtered) pretraining run, so 16 training units produce the 11
models.

This config's own choices (the study does not give them): the CPT stage (1B tokens = CPT_TOKENS,
50% synthetic + 50% replay, LR 1e-4; set --config.steps.cpt for another length), the Dolci hub
ids, and the in-loop eval cadence. Post-trained models are evaluated by generation through the
chat template under each persona.

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
        # Midtraining (paper section 2.4, Table 2): 50B tokens = 25B long-context DCLM + 24B ClimbMix
        # (Diao et al. 2025) + 1B MCQA (Akter et al. 2025; Hendrycks et al. 2020; Harper et al.), so base
        # models know the eval's answer format. Shares are of the non-synthetic tokens (synthetic documents
        # keep data.synthetic_fraction). The paper names no hub copy of its long-context DCLM; MCQA is
        # MMLU's auxiliary_train (Hendrycks et al. 2020); Nemotron-CrossThink's QA split (Akter et al.,
        # hf://datasets/nvidia/Nemotron-CrossThink/Data/Nemotron-CrossThink-QA.jsonl) is not in the list:
        # alignjax has not checked that its records carry separate options; add it with
        # ?question=&choices=&answer= field names once they are known. Harper et al. is the NeMo toolkit.
        stages=dict(cpt=dict(synthetic_fraction=0.5, lr=1e-4),
                    midtrain=dict(sources=dict(
                        dclm_long=dict(path="gs://BUCKET/dclm-long-context-tokenized/", share=25 / 50),
                        climbmix=dict(path="hf://datasets/nvidia/Nemotron-ClimbMix", share=24 / 50),
                        mcqa=dict(path="mcqa:hf://datasets/cais/mmlu/auxiliary_train/train-*", share=1 / 50)))),
        train=dict(eval_every=5000),
        eval=dict(tasks="discourse_misalignment", split="eval", persona="ai", limit=200),
    ))
    s.post_train = "sft,dpo,em"
    s.post = ConfigDict(dict(
        sft=dict(config="configs/sft.py:sfm-6.9b", model_from_base=False, overrides=dict(
            chat=dict(data="hf://datasets/allenai/Dolci-Instruct-SFT", epochs=2),
            optimizer=dict(lr=8e-5, schedule="cosine", warmup_ratio=0.01), train=dict(seq_len=16384, batch_size=64),
            mesh=dict(data=1, fsdp=-1, tensor=1))),
        dpo=dict(config="configs/dpo.py:sfm-6.9b", model_from_base=False, overrides=dict(
            chat=dict(data="hf://datasets/allenai/Dolci-Instruct-DPO", epochs=1),
            dpo=dict(beta=5.0), optimizer=dict(lr=1e-6, schedule="linear", warmup_ratio=0.1),
            train=dict(seq_len=2048, batch_size=128), mesh=dict(data=1, fsdp=-1, tensor=1))),
        # Emergent misalignment (issue 13): the DPO models of the four main conditions fine-tuned with
        # rank-32 rsLoRA on the study's narrow harmful set (configs/em.py: its settings and sources),
        # then alignjax-em: 50 answers per question at T=1, alignment/coherence judged by an LLM.
        # The judge (gpt-4o at OpenAI's endpoint, key in $OPENAI_API_KEY) is alignjax's choice:
        # Betley et al. 2025 judged with GPT-4o; the paper draft names no judge.
        em=dict(config="configs/em.py:sfm-6.9b", model_from_base=False,
                conditions="unfiltered,filtered,misalignment_e2e,alignment_e2e",
                overrides=dict(mesh=dict(data=1, fsdp=2, tensor=-1)),  # 2 rows per step (configs/em.py)
                judge=dict(base_url="https://api.openai.com/v1", model="gpt-4o", api_key_env="OPENAI_API_KEY",
                           args="--samples=50 --temperature=1.0 --max_new_tokens=512 --judge_concurrency=16")),
    ))
    # Headline figure = the study's Fig. 2: Articles and Textbook questions side by side, AI-assistant
    # persona. Post-trained models generate with the answer instruction (evals/formats.json) in the
    # user turn, the persona as the system message; the released questions are asked without their
    # source passage (alignjax-eval --show_passage=auto).
    s.eval = ConfigDict(dict(
        tasks="discourse_misalignment,anthropic_ai_risk", split="eval", personas="none,ai,helpful,hhh", limit=0,
        headline="discourse_misalignment_articles,discourse_misalignment_textbook", headline_persona="ai",
        formats="letter",  # the study's protocol only (section 2.1); "letter,text" adds alignjax's option-text family
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
