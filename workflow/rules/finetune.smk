# Fine-tuning jobs (Table 11): captioning CE then SCST; grounding mixed then per dataset; VQA;
# retrieval COCO and Flickr; NLVR2; SNLI-VE. A job starts from its `init` (a pretrain stage or
# another job of the same model).


rule finetune:
    """DeepSpeed fine-tuning of one job; resumes from its last checkpoint."""
    input:
        data=lambda wc: dataset_inputs(config["finetune"][wc.job]["datasets"]),
        init=lambda wc: ckpt(wc.model, config["finetune"][wc.job]["init"]),
        tokenizer=tokenizer_inputs(),
    output:
        model=f"results/{RUN}/{{model}}/finetune/{{job}}/model.safetensors",
        summary=f"results/{RUN}/{{model}}/finetune/{{job}}/summary.json",
    log:
        _log("finetune", "{model}", "{job}"),
    benchmark:
        f"logs/{RUN}/finetune/{{model}}/{{job}}.bench.tsv"
    wildcard_constraints:
        model=_alt(MODELS),
        job=_alt(config["finetune"]),
    conda:
        "../../envs/train.yaml"
    threads: threads_of("finetune", _finetune_job)
    resources:
        **res_fn("finetune", _finetune_job),
    params:
        config=CONFIGFILE,
        task=lambda wc: config["finetune"][wc.job]["task"],
        data=DATA_ROOT,
        out=lambda wc: ckpt_dir(wc.model, wc.job),
        launcher=launcher_of("finetune", _finetune_job),
        mplug=MPLUG,
        seed="",
        settings=lambda wc: settings_hash(
            [
                mcfg.train_settings(config, "finetune", wc.job, wc.model),
                config["finetune"][wc.job]["datasets"],
                mcfg.model_settings(config, wc.model),
            ]
        ),
    shell:
        logged_training(
            "OMP_NUM_THREADS={threads} {params.launcher} {params.mplug} train finetune {params.task:q}"
            " --config {params.config:q} --model {wildcards.model:q} --stage {wildcards.job:q}"
            " --data {params.data:q} --init {input.init:q} --out {params.out:q}"
            " --resume latest{params.seed}"
        )


# evaluate.<job>.seeds: the job's fine-tuning chain once more per other seed, under seed<N>/
use rule finetune as finetune_seed with:
    input:
        data=lambda wc: dataset_inputs(config["finetune"][wc.job]["datasets"]),
        init=seeded_init,
        tokenizer=tokenizer_inputs(),
    output:
        model=f"results/{RUN}/{{model}}/finetune/{{job}}/seed{{seed}}/model.safetensors",
        summary=f"results/{RUN}/{{model}}/finetune/{{job}}/seed{{seed}}/summary.json",
    log:
        _log("finetune", "{model}", "{job}", "seed{seed}"),
    benchmark:
        f"logs/{RUN}/finetune/{{model}}/{{job}}/seed{{seed}}.bench.tsv"
    wildcard_constraints:
        model=_alt(MODELS),
        job=_alt(seeded_finetune_jobs()),
        seed=r"\d+",
    params:
        out=lambda wc: ckpt_dir(wc.model, wc.job, int(wc.seed)),
        seed=lambda wc: f" --seed {int(wc.seed)}",
