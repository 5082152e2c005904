"""Each registered defense's card: the name tables print for it and the paper it comes from.

Written once per defense, here, beside nothing else: the defenses' own modules are hashed into
their runs' identities (``core.method.code_version``), so a label or a citation kept on the
class would mark finished runs stale whenever it was edited. The tables (``display``) and the
RobustBench export (``paper_of``) read these cards; a defense without one (a variant, a user's
``module:Class``) prints under its own name, and a variant cites its base defense's paper.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Paper:
    name: str
    authors: str
    venue: str
    link: str = ""


@dataclass(frozen=True)
class Card:
    display: str   # the GREAT paper's name for the method (a table's row label)
    paper: Paper   # as the GREAT paper cites it


GREAT_PAPER = Paper("Gradient Adversarial Training of Neural Networks",
                    "Ayan Sinha, Zhao Chen, Vijay Badrinarayanan, Andrew Rabinovich", "arXiv, Jun 2018",
                    "https://arxiv.org/abs/1806.08028")
DATAGRAD_PAPER = Paper("Unifying Adversarial Training Algorithms with Data Gradient Regularization",
                       "Alexander G. Ororbia II, Daniel Kifer, C. Lee Giles", "Neural Computation 2017")

CARDS: dict[str, Card] = {
    "baseline": Card("Baseline", Paper("Standard training", "", "")),
    "fgsm-at": Card("Adversarial", Paper("Explaining and Harnessing Adversarial Examples",
                                         "Ian J. Goodfellow, Jonathon Shlens, Christian Szegedy", "ICLR 2015",
                                         "https://arxiv.org/abs/1412.6572")),
    "adv-backprop": Card("Adv. backprop", Paper("Improving Back-Propagation by Adding an Adversarial Gradient",
                                                "Arild Nøkland", "arXiv, Oct 2015",
                                                "https://arxiv.org/abs/1510.04189")),
    "greace": Card("GREACE", GREAT_PAPER),
    "great": Card("GREAT", GREAT_PAPER),
    "great-ce": Card("GRE(AT+CE)", GREAT_PAPER),
    "datagrad-l1": Card("DataGrad-L1", DATAGRAD_PAPER),
    "datagrad-l2": Card("DataGrad-L2", DATAGRAD_PAPER),
    "pgd-at": Card("PGD-AT", Paper("Towards Deep Learning Models Resistant to Adversarial Attacks",
                                   "Aleksander Madry, Aleksandar Makelov, Ludwig Schmidt, Dimitris Tsipras, "
                                   "Adrian Vladu", "ICLR 2018", "https://arxiv.org/abs/1706.06083")),
    "trades": Card("TRADES", Paper("Theoretically Principled Trade-off between Robustness and Accuracy",
                                   "Hongyang Zhang, Yaodong Yu, Jiantao Jiao, Eric P. Xing, Laurent El Ghaoui, "
                                   "Michael I. Jordan", "ICML 2019", "https://arxiv.org/abs/1901.08573")),
}


def display(defense: str) -> str:
    """A defense's row label: its card's name, else the name as it is."""
    card = CARDS.get(defense)
    return card.display if card else defense


def paper_of(base_defense: str, defense: str) -> Paper:
    """The paper behind a defense (by its base defense); a defense without a card cites itself."""
    card = CARDS.get(base_defense)
    return card.paper if card else Paper(str(defense), "", "")
