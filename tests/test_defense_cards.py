"""Each registered defense has one card (issue 29): its display name and paper, written once in
bench/defense_cards.py and read by the tables and the RobustBench export."""
from bench.defense_cards import CARDS, display, paper_of
from defenses import DEFENSES


# The README's Gaussian-noise example is registered so a study can carry it, but it is no
# paper's method: it prints under its own name and cites nothing, as before it was registered.
WITHOUT_CARD = {"noise"}


def test_every_registered_defense_has_a_card_and_no_card_names_an_unknown_defense():
    assert set(CARDS) <= set(DEFENSES.names())
    assert set(DEFENSES.names()) - set(CARDS) == WITHOUT_CARD


def test_display_names_are_distinct():
    names = [card.display for card in CARDS.values()]
    assert len(names) == len(set(names))


def test_a_variant_cites_its_base_and_an_unknown_defense_prints_as_itself():
    assert paper_of("great", "great-a01") is CARDS["great"].paper
    assert paper_of("mine:Defense", "mine:Defense").name == "mine:Defense"
    assert display("great-ce") == "GRE(AT+CE)" and display("great-a01") == "great-a01"
