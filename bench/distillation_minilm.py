"""The MiniLM half of bench/distillation.py: a 3-layer student distilled on unlabeled
English text, scored on held-out sentences it never saw, then int8 on top."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.compression import ratios
from compressors.base import Artifact, Dataset
from compressors.measure.evaluate import EvaluationSettings, evaluate
from compressors.measure.neighbours import neighbour_agreement
from pareto_core.formats import FORMAT_TORCH_EXPORT

MODEL_CACHE = Path(__file__).resolve().parent.parent / ".pareto" / "examples"
SEQ_LEN = 32
TRANSFER_WINDOWS = 6000
MINILM_DISTILL = {
    "student": "minilm-student",
    "objective": "embedding",
    "embedding_loss": "cosine",
    "epochs": 4,
    "batch_size": 32,
    "lr": 6e-4,
    "schedule": "cosine",
    "warmup_steps": 100,
    "holdout_fraction": 0.1,
    # the student's 2nd output (its last hidden state) learns the teacher's, token by token
    "teacher_hidden": "/bert/encoder/layer.5/output/LayerNorm/LayerNormalization_output_0",
    "hidden_weight": 1.0,
}


def transfer_text(held_out: list[str], limit: int, seed: int = 0) -> list[str]:
    """Unlabeled English for the transfer set: word windows (8-28 words, half overlapping)
    over all of `pydoc_data.topics` with every held-out sentence cut out first, so no
    held-out sentence (nor a window containing one) is ever trained on."""
    import random
    from pydoc_data.topics import topics

    rng = random.Random(seed)
    windows: list[str] = []
    for key in sorted(topics):
        text = " ".join(topics[key].split())
        for sentence in held_out:
            text = text.replace(sentence, " \x00 ")
        for part in text.split("\x00"):
            words, start = part.split(), 0
            while start < len(words) - 4:
                size = rng.randint(8, 28)
                windows.append(" ".join(words[start : start + size]))
                start += max(4, size // 2)
    rng.shuffle(windows)
    return windows[:limit]


def minilm(work: Path, settings: EvaluationSettings, log: Any, threads: int = 1) -> dict[str, Any]:
    from bench.steps import apply, onnx_artifact
    from compressors.graph.run import feeds_for, outputs_of
    from examples.models import export_minilm, export_minilm_student, tokenize
    from examples.text import sentence_pool, split_sentences

    teacher = onnx_artifact(export_minilm(MODEL_CACHE / "minilm.onnx").path)
    student_pt2 = export_minilm_student(MODEL_CACHE / "minilm-student-3h.pt2", 3, hidden=True).path
    student = Artifact(student_pt2, FORMAT_TORCH_EXPORT, teacher.signature)
    train, held_out = split_sentences(list(sentence_pool()), test_fraction=0.2, seed=0)
    texts = train + transfer_text(held_out, TRANSFER_WINDOWS)
    transfer = Dataset("minilm-transfer", tokenize(texts, SEQ_LEN))
    held = Dataset("minilm-heldout", tokenize(held_out, SEQ_LEN))
    log(f"minilm: distilling on {len(texts)} texts, {len(held_out)} held-out sentences")
    distilled, report, seconds = apply(
        "distill.knowledge",
        teacher,
        MINILM_DISTILL,
        {"training": transfer},
        work / "distill",
        threads,
        {"minilm-student": student},
    )
    log(f"minilm: distilled in {seconds:.0f} s: {report['training']['heldout_per_epoch']}")
    int8, _, _ = apply(
        "quantize.dynamic", distilled, {"per_channel": True}, {}, work / "int8", settings.threads
    )
    parent_m, (student_m, int8_m) = evaluate(teacher, [distilled, int8], held, settings)
    feeds = feeds_for(teacher.signature, held.inputs, held.num_samples, "held-out")
    embed = {
        n: outputs_of(a.path, feeds, "embedding", threads, 64)
        for n, a in (("teacher", teacher), ("student", distilled), ("int8", int8))
    }
    return {
        "sentences": {"transfer": len(texts), "held_out": len(held_out), "seq_len": SEQ_LEN},
        "config": MINILM_DISTILL,
        "distill_seconds": round(seconds, 1),
        "distill_report": report,
        "student": {
            **ratios(parent_m, student_m, 1),
            **neighbour_agreement(embed["student"], embed["teacher"]),
        },
        "student_int8": {
            **ratios(parent_m, int8_m, 1),
            **neighbour_agreement(embed["int8"], embed["teacher"]),
        },
        "measurements": {"teacher": parent_m, "student": student_m, "student_int8": int8_m},
    }
