"""Clean, FGSM and iFGSM accuracy of a trained student (beyond the paper's Table 3).

Goes through the attack harness's protocol (``bench.eval.evaluate.evaluate_subject``): eval
mode and fp32, clean predictions once, only clean-correct examples attacked, clean errors
counted as errors (an attack can never turn a misclassified image into a correct one), and
every adversarial batch checked to lie in [0, 1] and within epsilon. FGSM (Goodfellow et
al.) and iFGSM = BIM (Kurakin et al.) with 10 steps of eps/10, untargeted. Models take
[0, 1] images and normalise inside, so epsilon is in pixel units.
"""
from __future__ import annotations

import torch.nn as nn

from bench.eval.evaluate import evaluate_subject
from bench.eval.subjects import EvalSet, Subject
from attacks.registry import parse_spec
from core.checks import check_epsilon
from bench.config.eval_settings import EvalSettings
from bench.data import ImageData, to_float

ATTACK_COLUMNS = {"fgsm_acc": "fgsm:eps={eps}", "ifgsm_acc": "ifgsm:eps={eps},steps=10"}


def robust_accuracy(model: nn.Module, data: ImageData, epsilon: float, batch_size: int = EvalSettings.batch_size,
                    dataset: str = "distill") -> dict[str, float]:
    eps = check_epsilon(epsilon, "eval.epsilon")
    was = model.training
    specs = {column: parse_spec(text.format(eps=eps)) for column, text in ATTACK_COLUMNS.items()}
    subject = Subject(model, "student", 0, dataset, sha256="")
    rows = evaluate_subject(subject, EvalSet(to_float(data.images), data.labels, data.num_classes, dataset),
                            list(specs.values()), batch_size=batch_size)
    by_spec = {row["spec"]: row for row in rows}
    out = {"clean_acc": float(rows[0]["clean_accuracy"]) if rows else 0.0}
    out.update({column: float(by_spec[spec.key()]["accuracy"]) for column, spec in specs.items()})
    model.train(was)
    return out
