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


# table01 ... table12: just the results one table needs (render them with the `report` target).
for _n in range(1, 13):

    rule:
        name:
            f"table{_n:02d}"
        input:
            table_inputs(_n),
