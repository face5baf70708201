# Zero-shot evaluation (section 5.4, Tables 7-10): image captioning on NoCaps and Flickr30K
# retrieval without fine-tuning on the target, and every video task (MSRVTT retrieval and QA,
# MSVD-QA, VATEX captioning). The `evaluate` rule on the jobs marked `zeroshot: true`, under
# its own name (logs, benchmarks and `resources.rules.zeroshot`).


use rule evaluate as zeroshot with:
    log:
        _log("zeroshot", "{model}", "{job}", "{split}"),
    benchmark:
        f"logs/{RUN}/zeroshot/{{model}}/{{job}}/{{split}}.bench.tsv"
    wildcard_constraints:
        model=_alt(MODELS),
        job=_alt(eval_job_names(zeroshot=True)),
        split=r"[A-Za-z0-9][A-Za-z0-9_-]*",
    threads: threads_of("zeroshot", _eval_job)
    resources:
        **res_fn("zeroshot", _eval_job),
    params:
        launcher=launcher_of("zeroshot", _eval_job),
