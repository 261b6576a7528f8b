"""CTC decoding of a line model's per-step logits (index 0 the CTC blank, index i classes[i-1]) into text:
greedy, or a prefix beam search guided by a character n-gram language model counted over the training
transcriptions (Hannun et al. 2014, "First-pass large vocabulary continuous speech recognition using
bi-directional recurrent DNNs"; interpolated Kneser-Ney smoothing, Chen & Goodman 1998)."""

from __future__ import annotations

import itertools
import math
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from neurodigits import NeuroDigitsError

LM_FILE = "language_model.txt"  # an export's training transcriptions, one per line: its language model's counts
LINE_START, LINE_END = "\n", "\r"  # before a line's first character, after its last (never in a transcription)
NEGLIGIBLE = -1e30  # log 0
MIN_LOG_PROB = math.log(1e-4)  # symbols less likely than this at a step are not followed by the beam search
CACHED_PROBABILITIES = 200_000  # the language model's answers kept for reuse (about 40 MB at most)


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """Log-probabilities over the last axis, in float64 (numpy alone: `predict` and `read` start without SciPy)."""
    shifted = np.asarray(logits, dtype=np.float64)
    shifted = shifted - shifted.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def ctc_kept(symbols: np.ndarray) -> np.ndarray:
    """Which of a line's per-column best symbols (index 0 the CTC blank) its text keeps: repeats collapsed,
    blanks dropped."""
    return (symbols != 0) & np.concatenate([[True], symbols[1:] != symbols[:-1]])


def ctc_greedy(logits: np.ndarray, classes: list[str]) -> list[tuple[str, float]]:
    """Per-column logits (N, T, characters + 1) -> (text, confidence) per line: the most likely symbol per
    column, repeats collapsed, blanks dropped. Confidence: the lowest probability among the characters read
    (1.0 for an empty line), which flags the one doubtful character."""
    probabilities = np.exp(log_softmax(logits))
    best, best_p = probabilities.argmax(-1), probabilities.max(-1)
    out = []
    for symbols, p in zip(best, best_p):
        keep = ctc_kept(symbols)
        out.append(("".join(classes[i - 1] for i in symbols[keep]), float(p[keep].min()) if keep.any() else 1.0))
    return out


class CharNgrams:
    """A character n-gram language model over lines of text: log P(next symbol | the previous order - 1
    characters) for each class and, last, the end of the line; interpolated Kneser-Ney smoothing, so a
    character sequence never seen in the corpus keeps a share of the probability."""

    def __init__(self, texts: Sequence[str], classes: list[str], order: int, discount: float = 0.75) -> None:
        self.order, self.discount, self.size = order, discount, len(classes) + 1
        index = {c: i for i, c in enumerate(classes)} | {LINE_END: len(classes)}
        grams = Counter()  # every `order` characters in a row, the line padded before and ended
        for text in texts:
            padded = LINE_START * (order - 1) + text + LINE_END
            grams.update(padded[i:i + order] for i in range(len(text) + 1))
        # self.tables[n]: context of n characters -> (total, {next symbol: count}); below the top order, Kneser-
        # Ney's continuation counts (in how many distinct contexts one character longer the n-gram occurs).
        tables: list[dict[str, tuple[int, dict[int, int]]]] = []
        for _ in range(order):  # the longest contexts first
            table: dict[str, dict[int, int]] = defaultdict(dict)
            for gram, count in grams.items():
                table[gram[:-1]][index[gram[-1]]] = count
            tables.append({context: (sum(counts.values()), counts) for context, counts in table.items()})
            grams = Counter(gram[1:] for gram in grams)
        self.tables = tables[::-1]
        self.end = len(classes)  # the symbol of the end of the line
        self._cache: dict[tuple[str, int], float] = {}
        self._seen: dict[str, list[tuple[int, dict[int, int]]]] = {}

    def logprob(self, text: str, symbol: int) -> float:
        """log P(symbol: a class index, or `end` | a line that so far reads `text`)."""
        context = (LINE_START * (self.order - 1) + text)[len(text):]  # the last order - 1 characters
        key = (context, symbol)
        if key not in self._cache:
            if len(self._cache) >= CACHED_PROBABILITIES:  # a beam search over many lines asks millions
                self._cache.clear()
                self._seen.clear()
            if context not in self._seen:  # the counts of its seen suffixes, shortest first
                self._seen[context] = list(itertools.takewhile(
                    lambda entry: entry is not None,
                    (self.tables[n].get(context[len(context) - n:]) for n in range(self.order))))
            p = 1.0 / self.size
            for total, counts in self._seen[context]:
                p = (self.discount * len(counts) * p + max(counts.get(symbol, 0) - self.discount, 0.0)) / total
            self._cache[key] = math.log(p)
        return self._cache[key]


def uses_language_model(decode: dict) -> bool:
    """Whether the decoder that `params.decode` (a mapping) describes reads with a language model."""
    return decode["beam_width"] > 1 and decode["lm_order"] > 0


def _add(a: float, b: float) -> float:
    """log(exp(a) + exp(b))."""
    if a < b:
        a, b = b, a
    return a if b <= NEGLIGIBLE else a + math.log1p(math.exp(b - a))


@dataclass
class Decoder:
    """Reads a line's logits: greedy when beam_width is 1, else a prefix beam search that adds lm_weight x
    the language model's log-probability and insertion_bonus for each character it reads."""

    classes: list[str]
    beam_width: int = 1
    language_model: CharNgrams | None = None
    lm_weight: float = 0.0
    insertion_bonus: float = 0.0

    def __post_init__(self) -> None:
        self._index = {c: i for i, c in enumerate(self.classes)}

    @classmethod
    def from_params(cls, decode: dict, classes: list[str], texts: Sequence[str] | None) -> Decoder:
        """The decoder `params.decode` describes (a mapping), its language model counted over `texts`."""
        lm = CharNgrams(texts, classes, decode["lm_order"]) if texts and uses_language_model(decode) else None
        weight, bonus = (decode["lm_weight"], decode["insertion_bonus"]) if lm else (0.0, 0.0)  # the bonus offsets it
        return cls(classes, decode["beam_width"], lm, weight, bonus)

    @classmethod
    def for_export(cls, folder: Path, metadata: dict) -> Decoder:
        """The decoder an export was evaluated with: its params' decode section and LM_FILE (greedy for an
        export older than the decode params)."""
        classes = [str(c) for c in metadata["classes"]]
        decode = metadata.get("params", {}).get("decode")
        if decode is None:
            return cls(classes)
        lm_file = folder / LM_FILE
        if uses_language_model(decode) and not lm_file.is_file():
            raise NeuroDigitsError(f"{folder}: no {LM_FILE}, the transcriptions its decoder's language model counts "
                                   "(params decode.lm_order); re-export the model with `dvc repro`")
        return cls.from_params(decode, classes, lm_file.read_text(encoding="utf-8").split("\n")
                               if lm_file.is_file() else None)

    def read(self, logits: np.ndarray) -> tuple[str, float]:
        """One line's (T, characters + 1) logits -> (text, confidence). The beam search's confidence is the
        text's share of the probability of the texts left in the beam."""
        if self.beam_width == 1:
            return ctc_greedy(logits[None], self.classes)[0]
        lm, weight, bonus, index = self.language_model, self.lm_weight, self.insertion_bonus, self._index
        beams: dict[str, list[float]] = {"": [0.0, NEGLIGIBLE]}  # text -> log p (ending in a blank, in a character)
        log_p = log_softmax(logits)
        likely = log_p > MIN_LOG_PROB
        blank_only = likely[:, 0] & (likely.sum(axis=1) == 1)
        for row, candidates, only_blank in zip(log_p, likely, blank_only.tolist()):
            if only_blank:  # many steps: every text just ends in a blank now, and their order stays
                blank_step = float(row[0])
                beams = {text: [_add(blank, char) + blank_step, NEGLIGIBLE] for text, (blank, char) in beams.items()}
                continue
            symbols = np.flatnonzero(candidates).tolist()
            steps = row[symbols].tolist()
            extended: dict[str, list[float]] = defaultdict(lambda: [NEGLIGIBLE, NEGLIGIBLE])
            for text, (blank, char) in beams.items():
                total = _add(blank, char)
                last = index[text[-1]] + 1 if text else -1
                for symbol, step in zip(symbols, steps):
                    if symbol == 0:
                        entry = extended[text]
                        entry[0] = _add(entry[0], total + step)
                        continue
                    gain = step + bonus + (weight * lm.logprob(text, symbol - 1) if lm is not None else 0.0)
                    entry = extended[text + self.classes[symbol - 1]]
                    if symbol == last:  # a repeat reads as a new character only after a blank
                        entry[1] = _add(entry[1], blank + gain)
                        same = extended[text]
                        same[1] = _add(same[1], char + step)
                    else:
                        entry[1] = _add(entry[1], total + gain)
            beams = dict(sorted(extended.items(), key=lambda kv: -_add(*kv[1]))[:self.beam_width])
        final = {text: _add(*scores) + (weight * lm.logprob(text, lm.end) if lm is not None else 0.0)
                 for text, scores in beams.items()}
        best = max(final, key=final.get)
        return best, float(1.0 / sum(math.exp(score - final[best]) for score in final.values()))
