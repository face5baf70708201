# The report (reproduced beside published numbers) and the per-table targets.


rule report:
    """reports/RUN/report.html + tables/tableNN.{html,csv} + figures/*.png."""
    input:
        report_inputs(),
    output:
        f"reports/{RUN}/report.html",
    log:
        _log("report", "report"),
    conda:
        "../../envs/report.yaml"
    threads: threads_of("report")
    resources:
        **res_fn("report"),
    params:
        config=CONFIGFILE,
        results=lambda wc, input: root_of(input, f"results/{RUN}"),
        data=lambda wc, input: root_of(input, DATA_ROOT),
        out=lambda wc, output: os.path.dirname(output[0]),
        extra=("--smoke" if SYNTH else "")
        + (
            f" --tolerance {config['report']['tolerance']}"
            if "tolerance" in config["report"]
            else ""
        ),
        mplug=MPLUG,
    shell:
        logged(
            "{params.mplug} report --config {params.config:q} --results {params.results:q}"
            " --data {params.data:q} --out {params.out:q} {params.extra}"
        )


rule plan:
    """results/RUN/plan.{txt,json}: `mplug plan` of this run before (or during) it: GPU-hours,
    SLURM jobs and disk. It reads what exists (datasets' stats.json, the train bench) and
    requires nothing: rerun it with `-R plan` once those are made."""
    output:
        txt=f"results/{RUN}/plan.txt",
        json=f"results/{RUN}/plan.json",
    log:
        _log("plan", "plan"),
    conda:
        "../../envs/train.yaml"  # the plan builds each model on the meta device (torch)
    params:
        config=CONFIGFILE,
        bench=lambda wc: (
            f"--bench {shlex.quote(mcfg.bench_json(config, 'train'))}"
            if os.path.exists(mcfg.bench_json(config, "train"))
            else ""
        ),
        mplug=MPLUG,
    shell:
        logged(
            "{params.mplug} plan --config {params.config:q} {params.bench}"
            " --json {output.json:q} --out {output.txt:q}"
        )


# table01 ... table12: just the results one table needs (render them with the `report` target).
for _n in range(1, 13):

    rule:
        name:
            f"table{_n:02d}"
        input:
            table_inputs(_n),
