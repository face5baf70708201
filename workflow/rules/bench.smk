# Throughput benchmarks: Table 6 (train) and Figures 1, 3, 4 (fusion); the harness's own fast
# paths (generate, retrieval). They measure the hardware they run on.


rule bench:
    """`mplug bench NAME` -> results/RUN/bench/NAME.json."""
    output:
        f"results/{RUN}/bench/{{bench}}.json",
    log:
        _log("bench", "{bench}"),
    wildcard_constraints:
        bench=_alt(b for b, e in config["bench"].items() if e["enabled"]),
    conda:
        "../../envs/train.yaml"
    threads: threads_of("bench", _bench_job)
    resources:
        **res_fn("bench", _bench_job),
    params:
        quick=lambda wc: "--quick" if config["bench"][wc.bench].get("quick", False) else "",
        args=lambda wc: " ".join(shlex.quote(a) for a in config["bench"][wc.bench].get("args", [])),
        launcher=launcher_of("bench", _bench_job),
        mplug=MPLUG,
    shell:
        logged(
            "OMP_NUM_THREADS={threads} {params.launcher} {params.mplug} bench {wildcards.bench:q} {params.quick} {params.args}"
            " --json {output:q}"
        )
