"""Line models on held-out writers' handwritten lines, side by side with Tesseract 5, and whole pages.

    python benchmarks/lines.py --model lines=models/export [--model lines-baseline=EXPORT ...]
                               [--data ../shared/data/unipen-lines] [--limit 600] [--pages 40]

Train the models first with the presets (`neurodigits presets` prints the commands), e.g.
`dvc exp run <the lines preset's -S ...>`; each export folder is then scored here on the same lines:
- a seeded sample of `--limit` test-split lines (writers never seen in training), each read exactly as
  `read` does (preprocess.line_image, the TFLite LineReader, then the export's decoder: params.decode's beam
  search with the character language model of the training transcriptions): CER, WER, lines read exactly,
  and milliseconds per line (preprocessing and decoding included, one line per call, one thread); a model
  whose decoder is a beam search is also read greedily (`NAME, greedy`): the line model alone;
- Tesseract 5 (Debian `tesseract-ocr`, `--psm 7`: one line of text) on the same original images;
- `--pages` pages of 3-6 of those lines set as a paragraph (synth.text_page: margins, indentation,
  uneven spacing, grey paper, noise), read end to end by `read`'s read_text_page and scored by CER of
  the page's text against the truth (a missed or split line counts as errors), next to the line CER of
  the same lines;
- each model's CER by how densely its lines are written: model steps (CTC time steps) per character of
  the transcription, where CTC's alignment gets tight below two.
The writers are disjoint, the texts are not: most test lines repeat a transcription of the training split
(the collection's prompts). Every reader's CER is also given on the sample's lines whose text no training
line has (`cer_new_text`), the figure for text a model has never been trained on.
Results: a table on stdout, benchmarks/results/lines.json, and one annotated page
(benchmarks/results/lines_page.png).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
import pandas as pd
from rapidfuzz.distance import Levenshtein

from neurodigits.decoding import Decoder
from neurodigits.evaluation import new_text, text_metrics
from neurodigits.inference import LineReader, load_classifier
from neurodigits.io import atomic_path, write_json
from neurodigits.page import annotate, read_text_page
from neurodigits.preprocess import line_image, read_grayscale
from neurodigits.synth import text_page

MAX_WIDTH = 4096  # line_image width cap for every line this benchmark reads
RESULTS = Path(__file__).parent / "results"


def test_lines(folder: Path, limit: int, seed: int) -> pd.DataFrame:
    """A seeded sample of the test split's lines; `new_text` marks those whose text no training line has."""
    labels = pd.read_csv(folder / "labels.csv", keep_default_na=False)
    test = labels[labels["split"] == "test"]
    sample = test.sample(n=min(limit, len(test)), random_state=seed).reset_index(drop=True)
    trained = labels.loc[labels["split"] == "train", "text"].tolist()
    return sample.assign(new_text=new_text(sample["text"].tolist(), trained))


def scores(truth: list[str], texts: list[str], new: np.ndarray) -> dict:
    """CER, WER and lines read exactly, and the CER on the lines of text never seen in training."""
    return {**text_metrics(truth, texts), "cer_new_text": text_metrics(truth, texts, new)["cer"] if new.any() else None}


def read_with_model(reader: LineReader, grays: list[np.ndarray]) -> tuple[list[str], float]:
    """What `read` makes of each line image, and the mean milliseconds per line."""
    started = time.perf_counter()
    texts = [reader.read([line_image(gray, reader.image_size, MAX_WIDTH)])[0][0] for gray in grays]
    return texts, 1000 * (time.perf_counter() - started) / len(grays)


def steps_per_character(reader: LineReader, grays: list[np.ndarray], truth: list[str]) -> np.ndarray:
    """Model steps (the pixel columns of each line `read` makes, over the columns per step) per character."""
    probe = np.zeros((1, reader.image_size, 64), np.float32)
    columns = 64 // reader.predictor.logits(probe).shape[-2]
    widths = np.array([line_image(gray, reader.image_size, MAX_WIDTH).shape[1] for gray in grays])
    return np.ceil(widths / columns) / np.maximum(1, [len(t) for t in truth])


def cer_by_density(truth: list[str], texts: list[str], density: np.ndarray) -> pd.DataFrame:
    """CER of the lines in each band of model steps per character."""
    bands = pd.cut(density, [0, 2, 3, 4, 6, np.inf], right=False,
                   labels=["under 2", "2 to 3", "3 to 4", "4 to 6", "6 or more"])
    rows = [{"steps per character": band, "lines": int(mask.sum()),
             "characters": sum(len(t) for t, m in zip(truth, mask) if m),
             "cer": text_metrics(truth, texts, mask)["cer"] if mask.any() else None}
            for band in bands.categories for mask in [np.asarray(bands == band)]]
    return pd.DataFrame(rows)


def read_with_tesseract(files: list[Path]) -> tuple[list[str], float]:
    started = time.perf_counter()
    texts = [subprocess.run(["tesseract", str(f), "stdout", "--psm", "7", "-l", "eng"], capture_output=True,
                            text=True, check=True).stdout.strip() for f in files]
    return texts, 1000 * (time.perf_counter() - started) / len(files)


def read_pages(reader: LineReader, grays: list[np.ndarray], truth: list[str], pages: int,
               rng: np.random.Generator) -> tuple[dict, np.ndarray, list]:
    """CER of whole pages read by `read` vs the line CER of the same lines; the last page and its reading."""
    page_truth, page_read, line_truth, line_read = [], [], [], []
    for _ in range(pages):
        chosen = rng.choice(len(grays), size=int(rng.integers(3, 7)), replace=False)
        ink = [np.round((1 - grays[i]) * 255).astype(np.uint8) for i in chosen]
        page, _ = text_page(ink, rng)
        lines = read_text_page(page, reader)
        page_truth.append("\n".join(truth[i] for i in chosen))
        page_read.append("\n".join(line.text for line in lines))
        line_truth += [truth[i] for i in chosen]
        line_read += [reader.read([line_image(grays[i], reader.image_size, MAX_WIDTH)])[0][0] for i in chosen]
    chars = sum(Levenshtein.distance(t, r) for t, r in zip(page_truth, page_read))
    return ({"page_cer": round(chars / sum(len(t) for t in page_truth), 6),
             "same_lines_cer": text_metrics(line_truth, line_read)["cer"], "pages": pages}, page, lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", action="append", default=[], metavar="NAME=EXPORT",
                        help="a line model's export folder, named for the table (repeatable)")
    parser.add_argument("--data", type=Path, default=Path("../shared/data/unipen-lines"))
    parser.add_argument("--limit", type=int, default=600, help="test lines to read (seeded sample)")
    parser.add_argument("--pages", type=int, default=40)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if not (args.data / "labels.csv").is_file():
        raise SystemExit(f"{args.data}: no labels.csv; this benchmark needs the shared UNIPEN lines (../shared/data)")

    sample = test_lines(args.data, args.limit, args.seed)
    files = [args.data / f for f in sample["file"]]
    grays = [read_grayscale(f) for f in files]
    truth, unseen = sample["text"].tolist(), sample["new_text"].to_numpy()
    print(f"{len(truth)} held-out lines from {sample['writer'].nunique()} writers, {args.data}; "
          f"{unseen.sum()} of them with a text no training line has")
    rows = []
    for name, export in (spec.split("=", 1) for spec in args.model):
        reader = load_classifier(export, num_threads=1)
        if not isinstance(reader, LineReader):
            raise SystemExit(f"{export}: not a line model's export")
        texts, ms = read_with_model(reader, grays)
        pages, page, lines = read_pages(reader, grays, truth, args.pages, np.random.default_rng(args.seed))
        density = cer_by_density(truth, texts, steps_per_character(reader, grays, truth))
        rows.append({"reader": name, **scores(truth, texts, unseen), "ms_per_line": round(ms, 2), **pages,
                     "cer_by_steps_per_character": density.to_dict(orient="records")})
        RESULTS.mkdir(exist_ok=True)
        with atomic_path(RESULTS / "lines_page.png") as tmp:
            annotate(page, ((line.box, line.text, line.confidence) for line in lines)).save(tmp, format="PNG")
        print(f"  {name}: CER {rows[-1]['cer']:.2%}, page CER {pages['page_cer']:.2%}; by model steps per "
              f"character:\n{density.to_markdown(index=False, floatfmt='.4f')}", flush=True)
        if reader.decoder.beam_width > 1:
            reader.decoder = Decoder(reader.classes)
            texts, ms = read_with_model(reader, grays)
            rows.append({"reader": f"{name}, greedy", **scores(truth, texts, unseen), "ms_per_line": round(ms, 2)})
    if shutil.which("tesseract"):
        texts, ms = read_with_tesseract(files)
        version = subprocess.run(["tesseract", "--version"], capture_output=True, text=True).stdout.split("\n")[0]
        rows.append({"reader": f"{version} --psm 7", **scores(truth, texts, unseen), "ms_per_line": round(ms, 2)})
    else:
        print("tesseract not installed (apt-get install tesseract-ocr): its row is left out")
    table = pd.DataFrame(rows).drop(columns="cer_by_steps_per_character", errors="ignore")
    print(table.to_markdown(index=False, floatfmt=".4f"))
    write_json(RESULTS / "lines.json", {"lines": len(truth), "new_text_lines": int(unseen.sum()),
                                        "data": str(args.data), "rows": rows})


if __name__ == "__main__":
    main()
