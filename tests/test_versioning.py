"""Every input is versioned: the data.path folder is a DVC dependency, and stages run with the project's Python."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import yaml
from conftest import ROOT, VENV_BIN, copy_project, project_env, run
from model_helpers import write_image

from neurodigits.synth import held_out_digits


def write_digits(folder: Path, per_class: int = 6) -> list[Path]:
    """Real held-out digits 0 and 1 as PNG files in class subfolders (the `images` source)."""
    x, y, _ = held_out_digits(28)
    for label in (0, 1):
        (folder / str(label)).mkdir(parents=True)
    return [write_image(folder / str(label) / f"{i}.png", 1 - x[index] / 255.0)
            for label in (0, 1) for i, index in enumerate((y == label).nonzero()[0][:per_class])]


def test_an_edited_image_shows_in_status_reruns_prepare_and_is_pushed(tmp_path: Path):
    project = copy_project(tmp_path / "p", data={"source": "images", "path": "data/raw/digits"})
    images = write_digits(project / "data" / "raw" / "digits")
    run(["dvc", "add", "data/raw/digits"], project)
    run(["git", "add", "-A"], project)
    run(["git", "commit", "-qm", "my digits"], project)
    assert "Running stage 'prepare'" in run(["dvc", "repro", "prepare"], project).stdout
    assert "up to date" in run(["dvc", "status", "prepare"], project).stdout

    write_image(images[0], 1 - held_out_digits(28)[0][-1] / 255.0)  # another digit over the first image
    status = run(["dvc", "status", "prepare"], project).stdout
    assert "changed deps" in status and "data/raw/digits" in status, status
    assert "Running stage 'prepare'" in run(["dvc", "repro", "prepare"], project).stdout
    run(["dvc", "add", "data/raw/digits"], project)  # record the new version of the folder
    pushed = run(["dvc", "push", "data/raw/digits.dvc"], project).stdout
    assert f"{len(images) + 1} files pushed" in pushed, pushed  # the images and the folder's listing


def test_stages_reexec_with_the_project_venv_or_fail_in_one_line(tmp_path: Path):
    """`.venv/bin/dvc repro` without the venv activated: `python` on PATH is another interpreter."""
    project = copy_project(tmp_path / "p")
    other_bin = tmp_path / "bin"
    other_bin.mkdir()
    (other_bin / "python").symlink_to(Path(sys._base_executable))  # the interpreter the venv was made from
    env = {**project_env(), "PATH": f"{other_bin}:/usr/bin:/bin"}
    repro = [f"{VENV_BIN}/dvc", "repro", "prepare"]
    failed = subprocess.run(repro, cwd=project, env=env, capture_output=True, text=True)
    assert failed.returncode != 0 and "ModuleNotFoundError" not in failed.stderr
    assert "is not the project's Python" in failed.stderr and "source .venv/bin/activate" in failed.stderr

    (project / ".venv").symlink_to(Path(VENV_BIN).parent)  # the project's own environment, as `make setup` makes
    done = subprocess.run(repro, cwd=project, env=env, capture_output=True, text=True)
    assert done.returncode == 0 and "prepared mnist-5k" in done.stdout, done.stderr[-3000:]


def imported_files(module: str) -> set[str]:
    """Every project file (stages/, neurodigits/) that importing `module` can run, following imports made
    anywhere in each file (inside functions too) and the packages above each imported module."""
    seen: set[str] = set()
    todo = [module]
    while todo:
        path = ROOT / Path(*todo.pop().split("."))
        path = path / "__init__.py" if path.is_dir() else path.with_suffix(".py")
        if not path.exists() or str(path.relative_to(ROOT)) in seen:
            continue  # a name imported from a module, not a module; or done
        seen.add(str(path.relative_to(ROOT)))
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([alias.name for alias in node.names] if isinstance(node, ast.Import) else
                     [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
                     if isinstance(node, ast.ImportFrom) and node.module else [])
            for name in names:
                parts = name.split(".")
                if parts[0] in ("stages", "neurodigits"):
                    todo += [".".join(parts[:i]) for i in range(1, len(parts) + 1)]
    return seen


def test_every_file_a_stage_runs_is_its_dependency():
    """A code change re-runs each stage whose outputs it can change: no stale result survives an edit.
    (neurodigits/__init__.py holds only the error class and the version string.)"""
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    for name, stage in stages.items():
        deps = [str(dep).rstrip("/") for dep in stage["deps"]]
        needed = imported_files(f"stages.{name}") - {"neurodigits/__init__.py"}
        missing = sorted(f for f in needed if not any(f == dep or f.startswith(dep + "/") for dep in deps))
        assert not missing, f"dvc.yaml: stage {name} runs {missing} without depending on them"
