"""The datasets the example recipes name, written as the `.npz` files Pareto accepts.

`python -m examples.datasets OUT_DIR` writes them; upload each with
`pareto datasets upload OUT_DIR/NAME.npz --name NAME`. One array per model input (saved
under the input's name, first axis = samples) plus `labels` where there are labels:

* digits-calib: 256 training images, no labels (static quantization calibration)
* digits-train: the training split with labels (fine-tuning after pruning)
* digits-eval:  the held-out split with labels (accuracy of parent and variants)
* minilm-eval:  held-out English sentences tokenized to input_ids/attention_mask
  (no labels: quality is fidelity to the fp32 parent)
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

MINILM_SEQ_LEN = 32
MINILM_EVAL_SENTENCES = 200
DIGITS_CALIBRATION_SAMPLES = 256


def example_datasets() -> dict[str, dict[str, np.ndarray]]:
    """name -> arrays, as they go into each .npz."""
    from examples.models import digits_split, tokenize
    from examples.text import english_sentences, split_sentences

    x_train, x_test, y_train, y_test = digits_split(seed=0)
    _, held_out = split_sentences(english_sentences(MINILM_EVAL_SENTENCES * 5, seed=0))
    return {
        "digits-calib": {"pixels": x_train[:DIGITS_CALIBRATION_SAMPLES]},
        "digits-train": {"pixels": x_train, "labels": y_train},
        "digits-eval": {"pixels": x_test, "labels": y_test},
        "minilm-eval": tokenize(held_out[:MINILM_EVAL_SENTENCES], MINILM_SEQ_LEN),
    }


def write_example_datasets(out_dir: Path) -> dict[str, Path]:
    """Write every example dataset as OUT_DIR/NAME.npz; returns name -> path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, arrays in example_datasets().items():
        paths[name] = out_dir / f"{name}.npz"
        np.savez_compressed(paths[name], **arrays)
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", type=Path)
    for name, path in write_example_datasets(parser.parse_args().out_dir).items():
        print(f"{name}: {path}")


if __name__ == "__main__":
    main()
