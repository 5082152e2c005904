"""Attack algorithms and their specs on top of torchattacks, with a tensor-level harness
(``attacks.harness``); imports only ``core`` and third-party code."""
