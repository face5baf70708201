"""Project-wide fixtures. `smoke_run`: the smoke DAG, run once per session, shared by every test
that needs a finished uninterrupted run (tests/e2e, tests/reliability/test_dag_kill_resume.py).

The DAG runs as a user runs it (`snakemake all --profile profiles/smoke --configfile
config/smoke.yaml`) with this checkout's Snakefile and profile, but in a fresh working directory
(`-d`), so data/, results/, reports/, logs/ and .snakemake/ of the checkout are never touched.
Set MPLUG_SMOKE_RUN=DIR to reuse a finished run in DIR (its own `snakemake` is then a no-op
check that nothing is left to do) while iterating on these tests.

Under pytest-xdist (`make test` runs `-n 2`), the modules that need the smoke DAG form ONE work
unit, scheduled first (it is the longest), so one worker runs the DAG once and then the tests
that read it, while the other worker runs the rest module by module (a module's tests share a
worker, so module-scoped fixtures are built once).
"""
from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = Path(sys.executable).with_name("snakemake")
SMOKE_CONFIG = REPO / "config" / "smoke.yaml"
SMOKE_TIMEOUT_S = 40 * 60


def smoke_command(workdir: Path, *targets: str, config: Path = SMOKE_CONFIG) -> list[str]:
    """The smoke DAG's command for `targets` (default `all`) in `workdir`."""
    return [str(SNAKEMAKE), *(targets or ("all",)), "--profile", str(REPO / "profiles" / "smoke"),
            "-s", str(REPO / "Snakefile"), "-d", str(workdir), "--configfile", str(config)]


def smoke_env() -> dict:
    env = dict(os.environ)
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    return env


SMOKE_GROUP = "smoke_dag"
# the test modules that read the smoke DAG (checked below: a test elsewhere that asks for
# `smoke_run` stops the session, since its worker would run the DAG a second time)
SMOKE_MODULES = ("tests/e2e/test_smoke_dag.py", "tests/reliability/test_dag_kill_resume.py",
                 "tests/slurm/test_slurm_dag.py")
MINIATURE_MODULE = "tests/e2e/test_miniature_dag.py"  # the paper run in miniature: its own DAG


def _reads_smoke(item) -> bool:
    return "smoke_run" in getattr(item, "fixturenames", ())


def pytest_collection_modifyitems(config, items):
    stray = [it.nodeid for it in items
             if _reads_smoke(it) and it.nodeid.split("::", 1)[0] not in SMOKE_MODULES]
    if stray:
        raise pytest.UsageError(f"{stray[0]} uses smoke_run: add its module to SMOKE_MODULES in "
                                "tests/conftest.py (one pytest-xdist worker runs those)")
    # the DAGs first: they bound the wall time (make test keeps this order: --no-loadscope-reorder),
    # so the smoke DAG's worker and the other one (the miniature's DAG) start with them
    smoke = [it for it in items if _reads_smoke(it)]
    mini = [it for it in items if it.nodeid.startswith(MINIATURE_MODULE) and it not in smoke]
    items[:] = smoke + mini + [it for it in items if it not in smoke and it not in mini]


try:
    import xdist.scheduler
except ImportError:  # plain pytest: no workers, nothing to schedule
    pass
else:
    @pytest.hookimpl(optionalhook=True)  # known only while the xdist plugin is loaded
    def pytest_xdist_make_scheduler(config, log):
        """Work units for the workers: SMOKE_MODULES together (one worker runs the DAG once and
        the tests that read it), every other module by itself (its module-scoped fixtures are
        built once). xdist's own `loadgroup` cannot do this under pytest 9 (it renames
        `item._nodeid`, which pytest 9 no longer reads)."""

        class SmokeGroupScheduling(xdist.scheduler.LoadScopeScheduling):
            def _split_scope(self, nodeid: str) -> str:
                path = nodeid.split("::", 1)[0]
                return SMOKE_GROUP if path in SMOKE_MODULES else path

        return SmokeGroupScheduling(config, log)


@dataclass
class SmokeRun:
    """A finished smoke DAG: where it ran and how it ended."""

    workdir: Path
    returncode: int
    output: str

    @property
    def results(self) -> Path:
        return self.workdir / "results" / "smoke"

    @property
    def report(self) -> Path:
        return self.workdir / "reports" / "smoke"

    @property
    def logs(self) -> Path:
        return self.workdir / "logs" / "smoke"

    command = staticmethod(smoke_command)  # for tests that build reduced targets elsewhere
    env = staticmethod(smoke_env)

    def check(self) -> None:
        assert self.returncode == 0, f"the smoke DAG failed:\n{self.output[-5000:]}"


@pytest.fixture(scope="session")
def dag_command():
    """(smoke_command, smoke_env): how the smoke DAG is run, for other DAGs run the same way."""
    return smoke_command, smoke_env


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory) -> SmokeRun:
    reuse = os.environ.get("MPLUG_SMOKE_RUN")
    workdir = Path(reuse) if reuse else tmp_path_factory.mktemp("smoke_run")
    res = subprocess.run(smoke_command(workdir), cwd=REPO, env=smoke_env(), capture_output=True,
                         text=True, timeout=SMOKE_TIMEOUT_S)
    return SmokeRun(workdir, res.returncode, res.stdout + res.stderr)
