# Zero-shot evaluation (section 5.4, Tables 7-10): image captioning on NoCaps and Flickr30K
# retrieval without fine-tuning on the target, and every video task (MSRVTT retrieval and QA,
# MSVD-QA, VATEX captioning). Same CLI as `evaluate`; jobs marked `zeroshot: true`.


rule zeroshot:
    """A pretrained or other-task checkpoint on a task it was not fine-tuned for."""
    input:
        ckpt=lambda wc: ckpt(wc.model, config["evaluate"][wc.job]["checkpoint"]),
        data=lambda wc: dataset_inputs([config["evaluate"][wc.job]["dataset"]]),
        tokenizer=tokenizer_inputs(),
    output:
        f"results/{RUN}/{{model}}/eval/{{job}}/{{split}}/metrics.json",
    log:
        _log("zeroshot", "{model}", "{job}", "{split}"),
    benchmark:
        f"logs/{RUN}/zeroshot/{{model}}/{{job}}/{{split}}.bench.tsv"
    wildcard_constraints:
        model=_alt(MODELS),
        job=_alt(eval_job_names(zeroshot=True)),
        split=r"[A-Za-z0-9][A-Za-z0-9_-]*",
    conda:
        "../../envs/eval.yaml"
    threads: threads_of("zeroshot", _eval_job)
    resources:
        **res_fn("zeroshot", _eval_job),
    params:
        config=CONFIGFILE,
        data=DATA_ROOT,
        settings=lambda wc: settings_hash(mcfg.eval_settings(config, wc.job, wc.model)),
        launcher=launcher_of("zeroshot", _eval_job),
        mplug=MPLUG,
    shell:
        logged(
            "OMP_NUM_THREADS={threads} {params.launcher} {params.mplug} evaluate"
            " --config {params.config:q} --model {wildcards.model:q} --job {wildcards.job:q}"
            " --checkpoint {input.ckpt:q} --data {params.data:q} --split {wildcards.split:q}"
            " --out {output:q}"
        )
