# Evaluation of fine-tuned checkpoints (Tables 1-5 and the fine-tuned rows of 7-9).


rule evaluate:
    """One checkpoint on one split -> metrics JSON with provenance (zero-shot jobs: zeroshot.smk)."""
    input:
        ckpt=lambda wc: ckpt(wc.model, config["evaluate"][wc.job]["checkpoint"]),
        data=lambda wc: dataset_inputs([config["evaluate"][wc.job]["dataset"]]),
        tokenizer=tokenizer_inputs(),
    output:
        f"results/{RUN}/{{model}}/eval/{{job}}/{{split}}/metrics.json",
    log:
        _log("evaluate", "{model}", "{job}", "{split}"),
    benchmark:
        f"logs/{RUN}/evaluate/{{model}}/{{job}}/{{split}}.bench.tsv"
    wildcard_constraints:
        model=_alt(MODELS),
        job=_alt(eval_job_names(zeroshot=False)),
        split=r"[A-Za-z0-9][A-Za-z0-9_-]*",
    conda:
        "../../envs/eval.yaml"
    threads: threads_of("evaluate", _eval_job)
    resources:
        **res_fn("evaluate", _eval_job),
    params:
        config=CONFIGFILE,
        data=DATA_ROOT,
        settings=lambda wc: settings_hash(mcfg.eval_settings(config, wc.job, wc.model)),
        launcher=launcher_of("evaluate", _eval_job),
        mplug=MPLUG,
    shell:
        logged(
            "OMP_NUM_THREADS={threads} {params.launcher} {params.mplug} evaluate"
            " --config {params.config:q} --model {wildcards.model:q} --job {wildcards.job:q}"
            " --checkpoint {input.ckpt:q} --data {params.data:q} --split {wildcards.split:q}"
            " --out {output:q}"
        )


# evaluate.<job>.seeds: the evaluation of each other seed's fine-tuned checkpoint, under seed<N>/
use rule evaluate as evaluate_seed with:
    input:
        ckpt=lambda wc: ckpt(wc.model, config["evaluate"][wc.job]["checkpoint"], int(wc.seed)),
        data=lambda wc: dataset_inputs([config["evaluate"][wc.job]["dataset"]]),
        tokenizer=tokenizer_inputs(),
    output:
        f"results/{RUN}/{{model}}/eval/{{job}}/{{split}}/seed{{seed}}/metrics.json",
    log:
        _log("evaluate", "{model}", "{job}", "{split}", "seed{seed}"),
    benchmark:
        f"logs/{RUN}/evaluate/{{model}}/{{job}}/{{split}}/seed{{seed}}.bench.tsv"
    wildcard_constraints:
        model=_alt(MODELS),
        job=_alt(seeded_eval_jobs()),
        split=r"[A-Za-z0-9][A-Za-z0-9_-]*",
        seed=r"\d+",
