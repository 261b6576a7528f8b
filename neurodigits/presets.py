"""Presets: named params overrides, kept once in presets.yaml at the project root."""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from neurodigits import NeuroDigitsError
from neurodigits.params import Params, parse_params

PRESETS_FILE = Path(__file__).resolve().parents[1] / "presets.yaml"


@dataclass(frozen=True)
class Preset:
    name: str
    description: str
    params: dict[str, dict[str, Any]]  # section -> key -> value, as in params.yaml

    def overrides(self) -> list[str]:
        """`section.key=value` strings in YAML syntax, as `dvc exp run -S` takes them."""
        return [f"{section}.{key}={_yaml_value(value)}" for section, values in self.params.items()
                for key, value in values.items()]

    def command(self) -> str:
        """The `dvc exp run` command that trains this preset."""
        return "dvc exp run " + " ".join(f"-S {shlex.quote(override)}" for override in self.overrides())

    def apply(self, base: Params | None = None) -> Params:
        """`base` (default: all defaults) with this preset's overrides, validated."""
        raw = (base or Params()).model_dump()
        for section, values in self.params.items():
            raw.setdefault(section, {}).update(values)
        return parse_params(raw, f"presets.yaml: {self.name}")


def _yaml_value(value: Any) -> str:
    return yaml.safe_dump(value, default_flow_style=True, width=1 << 16).strip().removesuffix("\n...")


def load_presets(path: str | Path | None = None) -> dict[str, Preset]:
    """Every preset in presets.yaml, each validated against the params schema."""
    path = Path(path or PRESETS_FILE)
    raw = yaml.safe_load(path.read_text()) or {}
    presets = {}
    for name, entry in raw.items():
        if not isinstance(entry, dict) or not isinstance(entry.get("params"), dict):
            raise NeuroDigitsError(f"{path}: preset '{name}' needs a 'params' mapping of params.yaml sections")
        presets[name] = Preset(name, str(entry.get("description", "")), entry["params"])
        presets[name].apply()
    return presets


README_START, README_END = "<!-- presets:start -->", "<!-- presets:end -->"


def readme_table(presets: dict[str, Preset]) -> str:
    """The README's preset table (between its presets markers), made from presets.yaml."""
    rows = ["| preset | command | what it trains |", "|---|---|---|",
            "| reference MLP (default) | `dvc repro` | params.yaml as it is: Dense 25 ReLU → Dense 15 ReLU → "
            "Dense 10 linear; Adam(0.001), 40 epochs, batch 32 |"]
    rows += [f"| `{p.name}` | `{p.command()}` | {p.description} |" for p in presets.values()]
    return "\n".join(rows)


def update_readme(readme: Path, presets: dict[str, Preset]) -> bool:
    """Rewrite the preset table in `readme`; True if it changed."""
    text = readme.read_text()
    head, rest = text.split(README_START, 1)
    _, tail = rest.split(README_END, 1)
    updated = f"{head}{README_START}\n{readme_table(presets)}\n{README_END}{tail}"
    if updated != text:
        readme.write_text(updated)
    return updated != text


if __name__ == "__main__":  # python -m neurodigits.presets: refresh README.md's preset table
    print("README.md updated" if update_readme(PRESETS_FILE.parent / "README.md", load_presets())
          else "README.md already up to date")
