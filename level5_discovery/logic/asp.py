"""Thin helpers around clingo: load the package's ``.lp`` programs and solve stratified ones."""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from importlib import resources

import clingo


@cache
def load_program(name: str) -> str:
    """Text of ``programs/<name>.lp`` shipped inside the package (read once, immutable)."""
    return resources.files("level5_discovery.logic").joinpath("programs", f"{name}.lp").read_text("utf-8")


def solve_unique(
    programs: Sequence[str], facts: str, *, consts: dict[str, int] | None = None
) -> list[clingo.Symbol]:
    """Ground and solve a program that has exactly one answer set; return its shown atoms.

    The derivation and contradiction programs are stratified (no choices), so grounding alone
    decides them and the single answer set is the result.

    Args:
        programs: Names of ``.lp`` programs to load together.
        facts: Extra ASP facts (the knowledge base).
        consts: ``#const`` overrides.

    Returns:
        The shown symbols of the answer set.
    """
    args = ["--models=1", "--warn=none"] + [f"--const={k}={v}" for k, v in (consts or {}).items()]
    ctl = clingo.Control(args)
    for name in programs:
        ctl.add("base", [], load_program(name))
    ctl.add("base", [], facts)
    ctl.ground([("base", [])])
    shown: list[clingo.Symbol] = []

    def on_model(model: clingo.Model) -> None:
        shown.extend(model.symbols(shown=True))

    result = ctl.solve(on_model=on_model)
    if not result.satisfiable:  # cannot happen for these programs: a guard against edits
        raise RuntimeError(f"ASP programs {list(programs)} have no answer set")
    return shown
