"""Evaluation: the models under attack (``subjects``) scored by the tensor-level harness of
``attacks`` into tidy robustness.csv rows (``evaluate``; the transfer attack in ``transfer``),
the schema of those rows (``schema``), the adversarial examples saved beside them
(``adversarial_store``) and the sanity flags on the model itself (``sanity``)."""
