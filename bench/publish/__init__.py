"""Publishing: what leaves a results folder for others. The RobustBench model-info export
(``robustbench``), every published number recomputed from the rows' per-example masks
(``published``), and ``great-bench verify``, which checks a claimed worst case from its saved
adversarial examples with one forward pass (``verify``)."""
