# Data: real downloads + preprocessing (data.source: real) or the synthetic world (synth).
# Both produce data/RUN/<dataset>/ in the normalised format (mplug/data/README.md).

if SYNTH:

    from mplug.data.synth_weights import WEIGHT_SOURCES

    localrules:
        synth,

    rule synth:
        """The synthetic world: every task's files, vocab.txt and manifest.json."""
        output:
            mcfg.synth_manifest(config),
        log:
            _log("synth", "synth"),
        priority: PRIORITY["synth"]  # the root of the critical path: before the benchmarks
        conda:
            "../../envs/data.yaml"
        threads: threads_of("synth")
        resources:
            **res_fn("synth"),
        params:
            out=lambda wc, output: os.path.dirname(output[0]),
            seed=config["data"]["synth"]["seed"],
            scale=config["data"]["synth"]["scale"],
            mplug=MPLUG,
        shell:
            logged(
                "{params.mplug} data synth --out {params.out:q} --seed {params.seed:q}"
                " --scale {params.scale:q} --quiet"
            )

    rule synth_weights:
        """A weight source (CLIP, BERT, mPLUG) in its official format at the run's model sizes,
        where `mplug data download` would put it: the synthetic world has no download hosts."""
        input:
            mcfg.synth_manifest(config),
        output:
            f"{RESOURCES_DIR}/{{download}}/download.json",
        log:
            _log("synth_weights", "{download}"),
        wildcard_constraints:
            download=_alt(WEIGHT_SOURCES),
        conda:
            "../../envs/train.yaml"
        threads: threads_of("synth")
        resources:
            **res_fn("synth"),
        params:
            config=CONFIGFILE,
            dest=lambda wc, output: root_of(output, RESOURCES_DIR),
            vocab=lambda wc, input: os.path.join(os.path.dirname(input[0]), "vocab.txt"),
            mplug=MPLUG,
        shell:
            logged(
                "{params.mplug} data synth-weights {wildcards.download:q} --config {params.config:q}"
                " --dest {params.dest:q} --vocab {params.vocab:q}"
            )

else:

    rule download:
        """Fetch one source into resources/<name>/ (resumable, checksummed). A cluster job
        (CPU partition, `resources.rules.download`): img2dataset's processes and threads do not
        belong on a shared login node; the partition's nodes need internet access."""
        output:
            f"{RESOURCES_DIR}/{{download}}/download.json",
        log:
            _log("download", "{download}"),
        conda:
            "../../envs/data.yaml"
        threads: threads_of("download")
        resources:
            **res_fn("download"),
        params:
            dest=lambda wc, output: root_of(output, RESOURCES_DIR),
            mplug=MPLUG,
        shell:
            logged("{params.mplug} data download {wildcards.download:q} --dest {params.dest:q}/")

    rule preprocess:
        """Raw downloads -> data/RUN/<dataset>/<split>.jsonl + stats.json (Table 12's counts)."""
        input:
            lambda wc: [
                download_marker(d) for d in config["data"]["datasets"][wc.dataset]["downloads"]
            ],
        output:
            f"data/{RUN}/{{dataset}}/stats.json",
        log:
            _log("preprocess", "{dataset}"),
        wildcard_constraints:
            dataset=_alt(config["data"]["datasets"]),
        conda:
            "../../envs/data.yaml"
        threads: threads_of("preprocess")
        resources:
            **res_fn("preprocess"),
        params:
            src=lambda wc, input: root_of(input, RESOURCES_DIR),
            out=lambda wc, output: root_of(output, DATA_ROOT),
            mplug=MPLUG,
        shell:
            logged(
                "{params.mplug} data preprocess {wildcards.dataset:q} --src {params.src:q}/"
                " --out {params.out:q}/ --no-progress"
            )
