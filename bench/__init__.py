"""great-bench: a benchmark for gradient adversarial training (Sinha et al., GREAT)."""
__version__ = "0.1.0"
