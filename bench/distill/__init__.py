"""Knowledge-distillation track (paper section 2.2, Algorithm 2, section 3.2, Table 3).

A student learns from a frozen teacher with one of the registered methods (``DISTILLERS``):
``baseline`` (CE only), ``kd`` (Hinton soft targets), ``great`` (a binary discriminator on
input gradients, reversed into the student) and ``sobolev`` (input gradients matched by
squared error). Every method is a ``bench.method.Method`` trained by ``bench.train.fit``.
"""
from bench.distill.registry import DISTILLERS

# Importing each module registers its method.
from bench.distill import baseline, great, kd, sobolev  # noqa: E402,F401

__all__ = ["DISTILLERS"]
