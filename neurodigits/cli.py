"""The `neurodigits` command: predict digit images, read pages of numbers, serve a drawing page, sweep.

Imports stay inside the commands: `predict` on the TFLite export must start without TensorFlow.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from neurodigits import NeuroDigitsError

MODEL_HELP = ("an export folder, a .tflite file, or an MLflow model URI such as models:/neurodigits/3 or "
              "models:/neurodigits@champion (default: models/export)")


def predict(args: argparse.Namespace) -> int:
    """Classify each image; one line (or JSON record) per image, one error line per bad file."""
    from neurodigits.inference import classify, load_classifier  # noqa: PLC0415
    from neurodigits.preprocess import load_digit  # noqa: PLC0415

    classifier = load_classifier(args.model)
    results, failed = [], 0
    for path in args.images:
        try:
            prediction = classify(classifier, load_digit(path, classifier.image_size)[None])[0]
        except NeuroDigitsError as exc:
            print(f"error: {exc}", file=sys.stderr)
            failed += 1
            continue
        if args.json:
            results.append({"file": path, "digit": prediction.label, "probability": prediction.probability,
                            "top": [{"digit": label, "probability": p} for label, p in prediction.top]})
        else:
            top = ", ".join(f"{label} {p:.1%}" for label, p in prediction.top)
            print(f"{path}: {prediction.label} ({prediction.probability:.1%})  top-3: {top}")
    if args.json:
        print(json.dumps(results, indent=2))
    return 1 if failed else 0


def read(args: argparse.Namespace) -> int:
    """Print the text on a page, one line per line of handwriting (words split at wide gaps), then each
    character's confidence."""
    from neurodigits.inference import load_classifier  # noqa: PLC0415
    from neurodigits.page import MAX_PAGE_SIDE, annotate, line_text, read_page, words  # noqa: PLC0415
    from neurodigits.preprocess import read_grayscale  # noqa: PLC0415

    gray = read_grayscale(args.page, max_side=MAX_PAGE_SIDE)
    lines = read_page(gray, load_classifier(args.model))
    if args.json:
        print(json.dumps([{"text": line_text(line), "words": [
            {"text": "".join(d.label for d in word),
             "characters": [{"char": d.label, "probability": d.probability, "box": list(d.box)} for d in word]}
            for word in words(line)]} for line in lines], indent=2))
    else:
        print("\n".join(line_text(line) for line in lines))
        for number, line in enumerate(lines, start=1):
            print(f"line {number}: " + " ".join(f"{d.label}:{d.probability:.0%}" for d in line), file=sys.stderr)
    if args.annotate:
        from neurodigits.io import atomic_path  # noqa: PLC0415

        with atomic_path(args.annotate) as tmp:
            annotate(gray, lines).save(tmp, format="PNG")
    return 0


def serve(args: argparse.Namespace) -> int:
    """Run the drawing page and JSON API with uvicorn until interrupted."""
    import uvicorn  # noqa: PLC0415

    from neurodigits.inference import load_classifier  # noqa: PLC0415
    from neurodigits.server import create_app  # noqa: PLC0415

    app = create_app(load_classifier(args.model), samples_dir=args.samples)
    print(f"serving on http://{args.host}:{args.port}/ (Ctrl-C to stop)", file=sys.stderr)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0


def presets(args: argparse.Namespace) -> int:
    """List the presets of presets.yaml with the command that trains each."""
    from neurodigits.presets import load_presets  # noqa: PLC0415

    for name, preset in load_presets().items():
        print(f"{name}: {preset.description}\n  {preset.command()}")
    return 0


def tune(args: argparse.Namespace) -> int:
    """Sweep the search space of params.yaml's tune section with Ray Tune; print the winner's dvc command."""
    from neurodigits.params import load_params  # noqa: PLC0415
    from neurodigits.presets import load_presets  # noqa: PLC0415

    reference = load_params()
    params = reference
    if args.preset:
        presets = load_presets()
        if args.preset not in presets:
            raise NeuroDigitsError(f"no preset '{args.preset}'; choose one of {', '.join(presets)}")
        params = presets[args.preset].apply(reference)
    from neurodigits.tune import REPORT_FILE, sweep  # noqa: PLC0415 - Ray only once the params are valid

    try:
        report = sweep(params, reference, trials=args.trials, address=args.address)
    except KeyboardInterrupt:
        report = {"status": "KILLED"}
    counts = {}
    for trial in report.get("trials", []):
        counts[trial["status"]] = counts.get(trial["status"], 0) + 1
    print(f"sweep {report['status'].lower()}: " + ", ".join(f"{n} {s.lower()}" for s, n in sorted(counts.items()))
          + f"; every trial in {REPORT_FILE} and in MLflow under run {report.get('sweep_run_id')}", file=sys.stderr)
    if report["status"] == "KILLED":
        return 130
    best = report.get("best")
    if not best:
        raise NeuroDigitsError("no trial finished; see the errors above (each failed trial is in MLflow)")
    metric, metrics = report["metric"], best["metrics"]
    held_out = f", held-out accuracy {metrics['test_accuracy']:.4f}" if "test_accuracy" in metrics else ""
    print(f"best: {best['trial']} {metric} {metrics[metric]:.4f}{held_out} with {json.dumps(best['params'])}\n"
          f"reproduce it as a pipeline run:\n  {best['command']}")
    return 0


def parser() -> argparse.ArgumentParser:
    main_parser = argparse.ArgumentParser(prog="neurodigits", description="Handwritten digit recognition.")
    commands = main_parser.add_subparsers(dest="command", required=True)

    p = commands.add_parser("predict", help="classify images of one digit each (PNG/JPEG, any size, either polarity)")
    p.add_argument("images", nargs="+", metavar="IMAGE")
    p.add_argument("--model", help=MODEL_HELP)
    p.add_argument("--json", action="store_true", help="print a JSON list instead of text")
    p.set_defaults(run=predict)

    p = commands.add_parser("read", help="read the handwritten characters on a page, line by line, word by word")
    p.add_argument("page", metavar="PAGE")
    p.add_argument("--model", help=MODEL_HELP)
    p.add_argument("--annotate", metavar="OUT.png", help="also save the page with boxes and labels drawn")
    p.add_argument("--json", action="store_true", help="print lines, words, characters, confidences and boxes as JSON")
    p.set_defaults(run=read)

    p = commands.add_parser("serve", help="a web page to draw digits on, and a JSON API (POST /api/predict)")
    p.add_argument("--model", help=MODEL_HELP)
    p.add_argument("--host", default="127.0.0.1", help="interface to listen on (default: 127.0.0.1, this machine only)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--samples", type=Path, default=Path("data/user"),
                   help="where teach mode saves labelled samples, a folder per class (default: data/user)")
    p.set_defaults(run=serve)

    p = commands.add_parser("tune", help="hyperparameter sweep over params.yaml's tune.space (Ray Tune, Optuna, "
                                         "ASHA); every trial in MLflow")
    p.add_argument("--trials", type=int, help="number of trials (default: tune.trials)")
    p.add_argument("--address", metavar="HOST:PORT", help="a Ray cluster to run on (default: RAY_ADDRESS, else Ray "
                                                          "in-process on this machine)")
    p.add_argument("--preset", help="sweep around a preset of presets.yaml (e.g. cnn) instead of params.yaml as is")
    p.set_defaults(run=tune)

    p = commands.add_parser("presets", help="list the presets (presets.yaml) and the dvc command that trains each")
    p.set_defaults(run=presets)
    return main_parser


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return args.run(args)
    except NeuroDigitsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
