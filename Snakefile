# mplug-repro: raw data -> pretraining -> fine-tuning -> evaluation -> benchmarks -> report.
#   snakemake all --profile slurm                                      (the paper's run, SLURM)
#   snakemake all --profile profiles/smoke --configfile config/smoke.yaml   (CPU smoke run)
# Targets: all, report, table01 ... table12, figures. Rules are thin: each calls one `mplug` verb
# (docs/architecture.md, "CLI contract"); outputs land in data/RUN, results/RUN, reports/RUN and
# logs in logs/RUN/<rule>/. Run from the repository root.
import os
import sys
from pathlib import Path

from snakemake.utils import min_version, validate

min_version("8.0")
sys.path.insert(0, str(Path(workflow.basedir).resolve()))  # `import mplug` without installing


# One config file per run. Snakemake would deep-merge a default `configfile:` with --configfile
# (a smoke run would inherit the paper's models), so the default loads only when none is given.
DEFAULT_CONFIG = os.path.join(workflow.basedir, "config", "config.yaml")  # also with -d DIR
if not workflow.overwrite_configfiles:

    configfile: DEFAULT_CONFIG


if len(workflow.overwrite_configfiles) > 1:
    raise ValueError(
        "pass exactly one --configfile (run configs are not merged): got "
        + ", ".join(map(str, workflow.overwrite_configfiles))
    )
CONFIGFILE = (
    str(workflow.overwrite_configfiles[0]) if workflow.overwrite_configfiles else DEFAULT_CONFIG
)
if os.path.abspath(CONFIGFILE).startswith(os.getcwd() + os.sep):
    CONFIGFILE = os.path.relpath(CONFIGFILE)  # shorter command lines and logs

# mplug's validator first: one short message naming each bad key (path and line); then
# Snakemake's own validation against the same schema file.
from mplug.config import validate_config

validate_config(config, source=CONFIGFILE, text=Path(CONFIGFILE).read_text(encoding="utf-8"))
validate(config, "workflow/schemas/config.schema.yaml")


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/pretrain.smk"
include: "workflow/rules/finetune.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/zeroshot.smk"
include: "workflow/rules/bench.smk"
include: "workflow/rules/report.smk"


onstart:
    check_cluster(getattr(workflow.executor_plugin, "name", None))


localrules:
    all,
    figures,
    plan,
    table01,
    table02,
    table03,
    table04,
    table05,
    table06,
    table07,
    table08,
    table09,
    table10,
    table11,
    table12,


rule all:
    """Everything the config enables: every checkpoint, evaluation, benchmark and the report."""
    default_target: True
    input:
        all_pretrain_outputs(),
        all_finetune_outputs(),
        all_eval_outputs(zeroshot=False),
        all_eval_outputs(zeroshot=True),
        all_bench_outputs(),
        f"reports/{RUN}/report.html",


rule figures:
    """The benchmark results behind Figures 1, 3 and 4."""
    input:
        report_map.figure_files(config),
