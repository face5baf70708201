# Pretraining: 14M, then continued pretraining on 4M (section 5.1) - or, with
# pretrained.source: official, the released checkpoints converted to the same paths.

if not OFFICIAL:

    rule pretrain:
        """DeepSpeed pretraining (ITC+ITM+MLM+PrefixLM); resumes from its last checkpoint."""
        input:
            data=lambda wc: dataset_inputs(config["pretrain"][wc.stage]["datasets"]),
            init=lambda wc: (
                [pretrain_init(wc.model, wc.stage)] if pretrain_init(wc.model, wc.stage) else []
            ),
            weights=lambda wc: init_weight_inputs(wc.model, wc.stage),
            tokenizer=tokenizer_inputs(),
        output:
            model=f"results/{RUN}/{{model}}/pretrain/{{stage}}/model.safetensors",
            summary=f"results/{RUN}/{{model}}/pretrain/{{stage}}/summary.json",
        log:
            _log("pretrain", "{model}", "{stage}"),
        benchmark:
            f"logs/{RUN}/pretrain/{{model}}/{{stage}}.bench.tsv"
        wildcard_constraints:
            model=_alt(MODELS),
            stage=_alt(config["pretrain"]),
        priority: PRIORITY["pretrain"]  # every fine-tune and zero-shot job waits for it
        conda:
            "../../envs/train.yaml"
        threads: threads_of("pretrain", _pretrain_job)
        resources:
            **res_fn("pretrain", _pretrain_job),
        params:
            config=CONFIGFILE,
            data=DATA_ROOT,
            out=lambda wc: ckpt_dir(wc.model, wc.stage),
            init=lambda wc, input: f"--init {shlex.quote(input.init[0])}" if input.init else "",
            launcher=launcher_of("pretrain", _pretrain_job),
            mplug=MPLUG,
            settings=lambda wc: settings_hash(
                [
                    mcfg.train_settings(config, "pretrain", wc.stage, wc.model),
                    mcfg.model_settings(config, wc.model),
                ]
            ),
        shell:
            logged_training(
                "OMP_NUM_THREADS={threads} {params.launcher} {params.mplug} train pretrain"
                " --config {params.config:q} --model {wildcards.model:q} --stage {wildcards.stage:q}"
                " --data {params.data:q} --out {params.out:q} {params.init} --resume latest"
            )

else:

    rule convert_official:
        """A released mPLUG checkpoint (.pth) -> our safetensors, at the pretrain stage's path."""
        input:
            lambda wc: resource_inputs([official_checkpoint(wc.model, wc.stage)]),
        output:
            model=f"results/{RUN}/{{model}}/pretrain/{{stage}}/model.safetensors",
        log:
            _log("convert_official", "{model}", "{stage}"),
        wildcard_constraints:
            model=_alt(MODELS),
            stage=_alt(config["pretrain"]),
        conda:
            "../../envs/train.yaml"
        threads: threads_of("convert_official")
        resources:
            **res_fn("convert_official"),
        params:
            config=CONFIGFILE,
            checkpoint=lambda wc: official_checkpoint(wc.model, wc.stage),
            mplug=MPLUG,
        shell:
            logged(
                "{params.mplug} convert --config {params.config:q} --model {wildcards.model:q}"
                " {params.checkpoint:q} {output.model:q}"
            )
