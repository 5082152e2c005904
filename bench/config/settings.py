"""A preset parsed once into typed settings.

``parse(cfg)`` checks every section and key of a preset (after ``--set`` overrides) and
returns a ``Settings``: unknown sections and keys are refused with the nearest valid name
(``unknown key hp.alpah_max; did you mean hp.alpha_max?``), each value by the one
validator of its concept (``bench/config/presets.py``). Valid ``hp`` keys are the union of what
the methods declare (``Method.hyperparameters`` and ``hp_defaults``, plus ``COMMON_HP``)
over the registered defenses and any user class (``module:Class``) the preset names.

Named variants (``[variants]``) are how ablations and hyper-parameter studies enter one
table: ``great-a01 = {defense = "great", hp = {alpha_max = 0.1}}`` is a defense of its own
name, trained into its own run directory, shown as its own row everywhere. Its ``hp`` keys
are checked against the base defense's keys, and every hyper-parameter value against its
kind (``bench.method.hp_kinds``: a number unless the method's default says otherwise).

``Settings`` are the only configuration the library sees. They are frozen, and they keep the
dict they were parsed from only as ``source``: the record a run writes into meta.json.
"""
from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field
from typing import Any, Sequence

from bench.config.checks import (check_hp_kinds, check_hp_values, check_keys, nonnegative_int, optional_positive_int,
                                 positive_int, seed_list)
from bench.config.presets import parse_value
from bench.data import DATASETS, check_augment
from bench.models import MODELS
from bench.splits import DataSettings
from bench.distill.settings import DistillSettings, resolve as resolve_distill
from core.errors import BenchError
from bench.config.epsilon_units import hp_to_pixels
from bench.config.eval_settings import EvalSettings, eval_settings
from bench.method import LR, Method, hp_keys, hp_kinds
from bench.multitask.settings import MultiTaskSettings, settings_from
from core.registry import suggest
from defenses import DEFENSES

VARIANT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
SECTIONS = ("preset", "description", "data", "model", "train", "hp", "defense_hp", "variants", "eval",
            "distill", "multitask")


@dataclass(frozen=True)
class ModelSettings:
    name: str


@dataclass(frozen=True)
class TrainSettings:
    epochs: int
    seeds: tuple[int, ...] = (0,)
    defenses: tuple[str, ...] = ()
    device: str = "auto"
    train_eval_subset: int | None = None


@dataclass(frozen=True)
class Variant:
    """A registered (or user) defense under another name with other hyper-parameters."""

    name: str
    defense: str
    hp: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Settings:
    preset: str
    data: DataSettings
    model: ModelSettings
    train: TrainSettings
    hp: dict[str, Any]
    defense_hp: dict[str, dict[str, Any]]
    variants: dict[str, Variant]
    eval: EvalSettings
    distill: DistillSettings | None
    multitask: MultiTaskSettings | None
    description: str = ""
    # The parsed dict, kept only as the record written to meta.json ("config").
    source: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    def base_defense(self, name: str) -> str:
        """The registered (or ``module:Class``) defense behind a name (itself unless a variant)."""
        return self.variants[name].defense if name in self.variants else name

    def defense_class(self, name: str) -> type[Method]:
        return defense_class(self.base_defense(name))

    def method_hp(self, name: str) -> dict[str, Any]:
        """What ``ctx.hp`` holds for this defense or variant: the class's defaults, ``[hp]``,
        ``[defense_hp.<base>]``, ``[defense_hp.<name>]`` and the variant's own ``hp``; distances
        (``fgsm_eps``, ...) in pixels, converted from ``eval.epsilon_units`` (``bench.config.epsilon_units``)."""
        base = self.base_defense(name)
        cls = defense_class(base)
        hp = {**cls.hp_defaults, **self.hp, **self.defense_hp.get(base, {})}
        if name != base:
            hp.update(self.defense_hp.get(name, {}))
            hp.update(self.variants[name].hp)
        missing = [k for k in cls.hyperparameters if k not in hp]
        if missing:
            raise BenchError(f"defense {name!r} needs hyper-parameters {missing} (set them under [hp])")
        # training radii are in the units of the preset's eval distances (bench.config.epsilon_units)
        return hp_to_pixels(hp, cls, self.eval.epsilon_units, self.data.dataset)

    def defenses_to_train(self) -> list[str]:
        """``train.defenses`` then every declared variant not listed there."""
        return list(dict.fromkeys([*self.train.defenses, *self.variants]))

    def jobs(self) -> list[tuple[str, int]]:
        """The (defense, seed) jobs in the order they run: every seed of ``train.defenses``
        first, then every seed of the variants, so that a study stopped early (or sized to a
        time budget) has its main table complete and only ablations missing."""
        main = list(dict.fromkeys(self.train.defenses))
        extra = [d for d in self.defenses_to_train() if d not in main]
        return [(d, seed) for group in (main, extra) for seed in self.train.seeds for d in group]


def defense_class(name: str) -> type[Method]:
    cls = DEFENSES.get(name)
    if not (isinstance(cls, type) and issubclass(cls, Method)):
        raise BenchError(f"defense {name!r} is not a subclass of defenses.base.Defense")
    return cls


def parse_variant_arg(text: str) -> tuple[str, dict[str, Any]]:
    """``NAME=DEFENSE[:key=value,...]`` (``--variant``) -> (name, ``{defense, hp}``).

    ``great-a01=great:alpha_max=0.1`` or, for a user's class, ``mine=my_mod:MyDefense:lam=0.5``.
    """
    name, sep, spec = text.partition("=")
    if not sep or not name.strip() or not spec.strip():
        raise BenchError(f"--variant {text!r} must look like NAME=DEFENSE[:key=value,...], "
                         "e.g. great-a01=great:alpha_max=0.1")
    head, _, tail = spec.rpartition(":")
    base, params = (head, tail) if head and "=" in tail else (spec, "")
    hp: dict[str, Any] = {}
    for item in filter(None, (s.strip() for s in params.split(","))):
        k, eq, v = item.partition("=")
        if not eq or not k.strip():
            raise BenchError(f"--variant {text!r}: {item!r} must look like key=value")
        hp[k.strip()] = parse_value(v.strip())
    return name.strip(), {"defense": base.strip(), "hp": hp}


def apply_options(cfg: dict[str, Any], *, variants: Sequence[str] = (), defense: str | None = None,
                  epochs: int | None = None, seeds: Sequence[int] | None = None,
                  device: str | None = None) -> dict[str, Any]:
    """A preset dict with the command line's options written in (a copy; ``parse`` checks it):
    ``--variant`` declarations, ``train``'s one defense, epochs, seeds and device."""
    cfg = copy.deepcopy(cfg)
    for text in variants:
        name, table = parse_variant_arg(text)
        cfg.setdefault("variants", {})[name] = table
    train = cfg.setdefault("train", {})
    if not isinstance(train, dict):
        raise BenchError("config lacks the [train] section")
    for key, value in (("defenses", None if defense is None else [defense]), ("epochs", epochs),
                       ("seeds", None if seeds is None else list(seeds)), ("device", device)):
        if value is not None:
            train[key] = value
    return cfg


def _variants(raw: Any) -> dict[str, Variant]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise BenchError("[variants] must be a table: NAME = {defense = \"great\", hp = {alpha_max = 0.1}}")
    out = {}
    for name, v in raw.items():
        where = f"variants.{name}"
        if not isinstance(v, dict):
            raise BenchError(f"{where} must be a table such as {{defense = \"great\", hp = {{alpha_max = 0.1}}}}")
        check_keys(v, ("defense", "hp"), where)
        if name in DEFENSES:
            raise BenchError(f"{where}: {name!r} is already a registered defense; give the variant another name")
        if not VARIANT_NAME.fullmatch(name):
            raise BenchError(f"{where}: a variant name is letters, digits, '-', '_' and '.' (it names a folder "
                             "and a table row), e.g. great-a01")
        base = v.get("defense")
        if not isinstance(base, str) or not base:
            raise BenchError(f"{where}.defense is missing: name the defense it varies (see `great-bench list`)")
        if base in raw:
            raise BenchError(f"{where}.defense = {base!r} is a variant; a variant varies a defense, not a variant")
        cls = defense_class(base)
        hp = v.get("hp", {})
        if not isinstance(hp, dict):
            raise BenchError(f"{where}.hp must be a table of hyper-parameters")
        check_keys(hp, sorted(hp_keys(cls)), f"{where}.hp", f"keys of defense {base!r}")
        check_hp_kinds(hp, hp_kinds(cls), f"{where}.hp")
        check_hp_values(hp, f"{where}.hp")
        out[name] = Variant(name, base, dict(hp))
    return out


def parse(cfg: dict[str, Any]) -> Settings:
    """Every section and key of a preset, checked; raises BenchError naming what is wrong."""
    check_keys(cfg, SECTIONS, "", "sections")
    for section in ("data", "model", "train"):
        if not isinstance(cfg.get(section), dict):
            raise BenchError(f"config lacks the [{section}] section")
    d = cfg["data"]
    check_keys(d, DataSettings.__dataclass_fields__, "data")
    DATASETS.get(str(d.get("dataset")))
    if d.get("augment") is not None:
        check_augment(d["augment"])
    data = DataSettings(str(d["dataset"]), positive_int(d.get("batch_size"), "data.batch_size"),
                        optional_positive_int(d.get("train_subset"), "data.train_subset"),
                        optional_positive_int(d.get("test_subset"), "data.test_subset"),
                        nonnegative_int(d.get("subset_seed", DataSettings.subset_seed), "data.subset_seed"), d.get("augment"),
                        optional_positive_int(d.get("val_subset"), "data.val_subset"))
    check_keys(cfg["model"], ModelSettings.__dataclass_fields__, "model")
    if not isinstance(cfg["model"].get("name"), str):
        raise BenchError("model.name is missing: name a model from `great-bench list`")
    if ":" not in cfg["model"]["name"]:  # a user's module:factory is imported when the model is built
        MODELS.get(cfg["model"]["name"])  # a typo fails here, with a suggestion, not inside each job
    t = cfg["train"]
    check_keys(t, TrainSettings.__dataclass_fields__, "train")
    defenses = t.get("defenses", [])
    if not isinstance(defenses, list) or not all(isinstance(x, str) for x in defenses):
        raise BenchError(f"train.defenses = {defenses!r} is invalid: a list of defense names")
    train = TrainSettings(positive_int(t.get("epochs"), "train.epochs"),
                          seed_list(t.get("seeds", list(TrainSettings.seeds)), "train.seeds"),
                          tuple(defenses), str(t.get("device", TrainSettings.device)),
                          optional_positive_int(t.get("train_eval_subset"), "train.train_eval_subset"))
    variants = _variants(cfg.get("variants"))
    for name in defenses:
        if name not in variants:
            defense_class(name)  # unknown name -> the registry's error with a suggestion
    # Valid hp keys: what every registered defense, and every user class named here, reads.
    classes = {n: defense_class(n) for n in DEFENSES.names()}
    classes.update({n: defense_class(n) for n in [*defenses, *(v.defense for v in variants.values())]
                    if n not in variants})
    hp = dict(_table(cfg.get("hp", {}), "[hp]"))
    check_keys(hp, sorted(set().union(*map(hp_keys, classes.values()))), "hp", "hyper-parameters")
    check_hp_kinds(hp, _union_kinds(classes.values()), "hp")
    check_hp_values(hp, "hp")
    dhp = _table(cfg.get("defense_hp", {}), "[defense_hp]")
    for name, sub in dhp.items():
        _table(sub, f"defense_hp.{name}")
        if name not in classes and name not in variants:
            hint = suggest(name, [*classes, *variants])
            raise BenchError(f"unknown section defense_hp.{name}{hint}; it names a defense or variant")
        cls = classes[name] if name in classes else classes[variants[name].defense]
        check_keys(sub, sorted(hp_keys(cls)), f"defense_hp.{name}", f"keys of defense {name!r}")
        check_hp_kinds(sub, hp_kinds(cls), f"defense_hp.{name}")
        check_hp_values(sub, f"defense_hp.{name}")
    ev = eval_settings(cfg)
    distill = resolve_distill(cfg["distill"], data, ev) if "distill" in cfg else None
    multitask = settings_from(cfg, data, train.epochs, train.seeds, hp.get("lr", LR)) if "multitask" in cfg else None
    return Settings(str(cfg.get("preset", "custom")), data, ModelSettings(cfg["model"]["name"]), train, hp,
                    {k: dict(v) for k, v in dhp.items()}, variants, ev, distill, multitask,
                    str(cfg.get("description", "")), copy.deepcopy(cfg))


def _table(value: Any, where: str) -> dict[str, Any]:
    """``value`` when it is a table (a TOML section or inline table), else a clear error."""
    if not isinstance(value, dict):
        raise BenchError(f"{where} = {value!r} is invalid: expected a table of hyper-parameters, "
                         "e.g. {alpha_max = 1.0}")
    return value


def _union_kinds(classes) -> dict[str, tuple[str, ...]]:
    """Per ``[hp]`` key, every kind the classes reading it expect (any of them is accepted)."""
    out: dict[str, tuple[str, ...]] = {}
    for cls in classes:
        for k, kind in hp_kinds(cls).items():
            out[k] = tuple(dict.fromkeys([*out.get(k, ()), kind]))
    return out
