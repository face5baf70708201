# The report (reproduced beside published numbers) and the per-table targets.


rule report:
    """reports/RUN/report.html + tables/tableNN.{html,csv} + figures/*.png."""
    input:
        report_inputs(),
    output:
        f"reports/{RUN}/report.html",
    params:
        config=CONFIGFILE,
        results=f"results/{RUN}",
        data=DATA_ROOT,
        out=lambda wc, output: os.path.dirname(output[0]),
        extra=("--smoke" if SYNTH else "")
        + (f" --tolerance {config['report']['tolerance']}" if "tolerance" in config["report"]
           else ""),
        mplug=MPLUG,
    log:
        _log("report", "report"),
    threads: threads_of("report")
    resources:
        **res_fn("report"),
    conda:
        "../../envs/report.yaml"
    shell:
        ATTEMPT
        + "{params.mplug} report --config {params.config:q} --results {params.results:q}"
        " --data {params.data:q} --out {params.out:q} {params.extra} >> {log:q} 2>&1"


# table01 ... table12: just the results one table needs (render them with the `report` target).
for _n in range(1, 13):

    rule:
        name:
            f"table{_n:02d}"
        input:
            table_inputs(_n),
