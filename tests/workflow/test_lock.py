"""The lock is true: requirements/lock.txt pins every package the venv holds, the .in files' choices
hold in it, and the conda environment files (environment.yml, envs/*.yaml) pin the same versions.
Regenerate the lock with `make lock` after editing requirements/*.in."""
from __future__ import annotations

import re
import sysconfig
from importlib import metadata
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[2]
REQ = REPO / "requirements"
ENV_FILES = [REPO / "environment.yml", *sorted((REPO / "envs").glob("*.yaml"))]
PROJECT = "mplug-repro"
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)")


def read_pins(path: Path) -> dict[str, str]:
    """name -> version of every `name==version` line (lock files, .in files)."""
    pins = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        m = _PIN.match(line.strip())
        if m:
            pins[canonicalize_name(m.group(1))] = m.group(2)
    return pins


def read_in(path: Path) -> list[Requirement]:
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if line and not line.startswith("-"):
            out.append(Requirement(line))
    return out


def env_file_pins(path: Path) -> dict[str, str]:
    """The pip section of a conda environment file: name -> pinned version."""
    deps = yaml.safe_load(path.read_text(encoding="utf-8"))["dependencies"]
    pip = next((d["pip"] for d in deps if isinstance(d, dict) and "pip" in d), [])
    pins = {}
    for item in pip:
        item = str(item).split("#", 1)[0].strip()
        if item.startswith("-"):
            continue
        m = _PIN.match(item)
        assert m, f"{path.name}: pip entry {item!r} is not pinned with =="
        pins[canonicalize_name(m.group(1))] = m.group(2)
    return pins


LOCK = read_pins(REQ / "lock.txt")
CLUSTER = read_pins(REQ / "cluster.in")


def test_lock_hashes_every_pin():
    text = (REQ / "lock.txt").read_text(encoding="utf-8")
    blocks = re.split(r"\n(?=[A-Za-z0-9])", text)
    unhashed = [b.split()[0] for b in blocks if _PIN.match(b) and "--hash=sha256:" not in b]
    assert not unhashed, f"lock.txt entries without hashes: {unhashed} (run `make lock`)"


@pytest.mark.parametrize("in_file", ["base.in", "dev.in"])
def test_in_files_hold_in_lock(in_file):
    for req in read_in(REQ / in_file):
        name = canonicalize_name(req.name)
        assert name in LOCK, f"requirements/{in_file}: {req.name} is not in lock.txt (make lock)"
        assert req.specifier.contains(LOCK[name], prereleases=True), (
            f"requirements/{in_file} asks {req}, lock.txt pins {LOCK[name]} (run `make lock`)")


def test_installed_venv_equals_lock():
    # the venv's site-packages only: once imported, setuptools puts its _vendor folder (jaraco.*,
    # zipp, ...) on sys.path, and those copies are part of setuptools, not installed packages
    site = sorted({sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]})
    installed = {canonicalize_name(d.metadata["Name"]): d.version for d in metadata.distributions(path=site)}
    installed.pop(canonicalize_name(PROJECT), None)
    extra = {n: v for n, v in installed.items() if n not in LOCK}
    wrong = {n: (v, LOCK[n]) for n, v in installed.items() if n in LOCK and LOCK[n] != v}
    missing = sorted(set(LOCK) - set(installed))
    assert not extra, f"installed but not in lock.txt: {extra}"
    assert not wrong, f"installed version differs from lock.txt (installed, lock): {wrong}"
    assert not missing, f"in lock.txt but not installed: {missing} (run `make setup`)"


@pytest.mark.parametrize("env_file", ENV_FILES, ids=lambda p: p.name)
def test_conda_env_files_follow_lock(env_file):
    for name, version in env_file_pins(env_file).items():
        source = LOCK if name in LOCK else CLUSTER
        assert name in source, (f"{env_file.name}: {name} is neither in lock.txt nor in "
                                "requirements/cluster.in")
        assert source[name] == version, (f"{env_file.name} pins {name}=={version}, "
                                         f"the lock says {source[name]}")


def test_full_env_has_every_runtime_requirement():
    """environment.yml is the one-environment install on a cluster: all of base.in is in it."""
    pins = env_file_pins(REPO / "environment.yml")
    missing = [r.name for r in read_in(REQ / "base.in") if canonicalize_name(r.name) not in pins]
    assert not missing, f"environment.yml lacks {missing} from requirements/base.in"
