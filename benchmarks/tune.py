"""Sweep benchmark: a fixed 8-trial sweep of the CNN preset (presets.yaml) with `neurodigits tune` on a Ray
cluster of 1 node vs 2 nodes on this machine (1 CPU each, loopback): trials per hour, the overhead per trial
(Ray + MLflow: from Tune starting a trial to its last result, minus the time inside training.fit) as a share of
trial time, and the best-of-sweep held-out accuracy next to the hand-tuned CNN preset.

    python benchmarks/tune.py               # the preset as it is: 40 epochs per trial
    python benchmarks/tune.py --epochs 4    # reduced, when the machine is busy

ASHA is off here (grace period = epochs) so both cluster sizes do the same work; the seeded Optuna sampler
proposes the same 8 configurations in both runs. Writes benchmarks/results/tune.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import yaml  # noqa: E402

from neurodigits.data import load_dataset, prepare, save_prepared  # noqa: E402
from neurodigits.io import write_json  # noqa: E402
from neurodigits.params import load_params  # noqa: E402
from neurodigits.presets import load_presets  # noqa: E402
from neurodigits.raycluster import loopback_cluster  # noqa: E402

SPACE = {"train.learning_rate": "loguniform(3e-4, 3e-3)", "model.dropout": "uniform(0.2, 0.5)",
         "model.dense_units": "choice([64, 128, 256])", "train.batch_size": "choice([32, 64])"}
HAND_TUNED = 0.990  # the cnn preset's held-out accuracy, README "Measured results" (benchmarks/run.py)


def sweep_on(nodes: int, project: Path) -> dict:
    """`neurodigits tune --preset cnn` on a fresh loopback cluster of `nodes` 1-CPU nodes; its tune.json."""
    with loopback_cluster(nodes=nodes, cpus=1) as cluster:
        started = time.perf_counter()
        result = subprocess.run([str(Path(sys.executable).parent / "neurodigits"), "tune", "--preset", "cnn",
                                 "--address", cluster.address], cwd=project, env=cluster.env, capture_output=True,
                                text=True)
        wall = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"neurodigits tune failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    report = json.loads((project / "reports" / "tune.json").read_text())
    trials = report["trials"]
    busy = sum(t["seconds"] for t in trials)
    training = sum(t["metrics"]["train_seconds"] for t in trials)
    return {"nodes": nodes, "wall_seconds": round(wall, 1), "trials": len(trials),
            "trials_per_hour": round(len(trials) / wall * 3600, 1),
            "trial_seconds_mean": round(busy / len(trials), 2),
            "overhead_seconds_per_trial": round((busy - training) / len(trials), 2),
            "overhead_share": round(1 - training / busy, 4),
            "best_val_accuracy": report["best"]["metrics"]["val_accuracy"],
            "best_test_accuracy": report["best"]["metrics"].get("test_accuracy"),
            "best_command": report["best"]["command"], "configs": [t["params"] for t in trials]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, help="epochs per trial (default: the cnn preset's train.epochs)")
    parser.add_argument("--trials", type=int, default=8)
    args = parser.parse_args()

    params = load_presets()["cnn"].apply(load_params(ROOT / "params.yaml"))
    epochs = args.epochs or params.train.epochs
    results = []
    with tempfile.TemporaryDirectory(prefix="nd-tune-bench-") as tmp:
        project = Path(tmp)
        raw = yaml.safe_load((ROOT / "params.yaml").read_text())
        raw["train"]["epochs"] = epochs
        raw["tune"] |= {"space": SPACE, "trials": args.trials, "grace_period": epochs, "seed": 42}
        (project / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
        save_prepared(prepare(load_dataset(params.data), params.data), project / "data" / "prepared")
        for nodes in (1, 2):
            os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{project / f'mlflow-{nodes}.db'}"
            results.append(sweep_on(nodes, project))
            print(json.dumps({k: v for k, v in results[-1].items() if k != "configs"}), flush=True)

    one, two = results
    load = os.getloadavg()
    summary = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "epochs": epochs, "trials": args.trials,
               "load_average": [round(x, 2) for x in load], "cpus": os.cpu_count(), "runs": results,
               "speedup_2_nodes": round(two["trials_per_hour"] / one["trials_per_hour"], 2),
               "same_configs": one["configs"] == two["configs"], "hand_tuned_cnn_test_accuracy": HAND_TUNED}
    write_json(ROOT / "benchmarks" / "results" / "tune.json", summary)
    print(f"\nCNN preset sweep, {args.trials} trials x {epochs} epochs, ASHA off; load average "
          f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f} on {os.cpu_count()} cores")
    print("| nodes (1 CPU each) | wall | trials/hour | mean trial | overhead per trial (Ray + MLflow) | best val acc "
          "| best held-out acc |")
    print("|---|---|---|---|---|---|---|")
    for r in results:
        overhead = f"{r['overhead_seconds_per_trial']:.1f} s ({r['overhead_share']:.1%})"
        cells = [r["nodes"], f"{r['wall_seconds']:.0f} s", f"{r['trials_per_hour']:.0f}",
                 f"{r['trial_seconds_mean']:.1f} s", overhead, f"{r['best_val_accuracy']:.4f}", r["best_test_accuracy"]]
        print("| " + " | ".join(str(cell) for cell in cells) + " |")
    print(f"2 nodes / 1 node: {summary['speedup_2_nodes']:.2f}x trials per hour; same 8 configurations in both: "
          f"{summary['same_configs']}; hand-tuned cnn preset: {HAND_TUNED} held-out (README)")
    print(f"winner as a pipeline run: {two['best_command']}")


if __name__ == "__main__":
    main()
