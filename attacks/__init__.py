"""Attack specs and the evaluation loop, on top of torchattacks."""
