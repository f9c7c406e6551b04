"""Graph GA operators (Jensen 2019, as in the GuacaMol and PMO baselines), with an explicit RNG.

Crossover cuts both parents at a non-ring single bond or across a ring and joins a fragment of
each; mutation inserts, appends, deletes or changes an atom, changes a bond order, opens or closes a
ring. The reaction SMARTS and their probabilities are Jensen's. Every child is sanitised, of a
drug-like size (more than 5 heavy atoms, under a size drawn from N(39.15, 3.50)) and free of
macrocycles, ring allenes and double bonds in 3/4-rings.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from typing import Any, TypeVar

import numpy as np
from rdkit import Chem, rdBase
from rdkit.Chem import rdChemReactions

rdBase.DisableLog("rdApp.*")

AVERAGE_SIZE = 39.15
SIZE_STDEV = 3.50
Rng = np.random.Generator
T = TypeVar("T")


@cache
def _smarts(s: str) -> Chem.Mol:
    return Chem.MolFromSmarts(s)


@cache
def _rxn(s: str) -> Any:
    return rdChemReactions.ReactionFromSmarts(s)


def _choice(rng: Rng, items: Sequence[T], p: Sequence[float] | None = None) -> T:
    return items[int(rng.choice(len(items), p=p))]


def mol_ok(mol: Chem.Mol, rng: Rng) -> bool:
    """Sanitisable and of a drug-like size (Jensen's random size cap)."""
    try:
        Chem.SanitizeMol(mol)
    except (ValueError, RuntimeError):
        return False
    target_size = SIZE_STDEV * rng.standard_normal() + AVERAGE_SIZE
    return 5 < mol.GetNumAtoms() < target_size


def ring_ok(mol: Chem.Mol) -> bool:
    """No ring allene, no ring larger than 6, no double bond in a 3- or 4-ring."""
    if not mol.HasSubstructMatch(_smarts("[R]")):
        return True
    ring_allene = mol.HasSubstructMatch(_smarts("[R]=[R]=[R]"))
    max_ring = max(len(r) for r in mol.GetRingInfo().AtomRings())
    small_double = mol.HasSubstructMatch(_smarts("[r3,r4]=[r3,r4]"))
    return not ring_allene and max_ring <= 6 and not small_double


def _fragments(mol: Chem.Mol, bonds: list[int], labels: list[tuple[int, int]]) -> tuple[Chem.Mol, ...] | None:
    frag = Chem.FragmentOnBonds(mol, bonds, addDummies=True, dummyLabels=labels)
    try:
        return tuple(Chem.GetMolFrags(frag, asMols=True, sanitizeFrags=True))
    except (ValueError, RuntimeError):
        return None


def cut(mol: Chem.Mol, rng: Rng) -> tuple[Chem.Mol, ...] | None:
    """Cut one random non-ring single bond."""
    matches = mol.GetSubstructMatches(_smarts("[*]-;!@[*]"))
    if not matches:
        return None
    a, b = _choice(rng, matches)
    return _fragments(mol, [mol.GetBondBetweenAtoms(a, b).GetIdx()], [(1, 1)])


def cut_ring(mol: Chem.Mol, rng: Rng) -> tuple[Chem.Mol, ...] | None:
    """Cut a ring at two bonds (four ring atoms in a row, or around a ring branch point)."""
    for _ in range(10):
        if rng.random() < 0.5:
            matches = mol.GetSubstructMatches(_smarts("[R]@[R]@[R]@[R]"))
            if not matches:
                return None
            m = _choice(rng, matches)
            pairs = ((m[0], m[1]), (m[2], m[3]))
        else:
            matches = mol.GetSubstructMatches(_smarts("[R]@[R;!D2]@[R]"))
            if not matches:
                return None
            m = _choice(rng, matches)
            pairs = ((m[0], m[1]), (m[1], m[2]))
        bonds = [mol.GetBondBetweenAtoms(x, y).GetIdx() for x, y in pairs]
        frags = _fragments(mol, bonds, [(1, 1), (1, 1)])
        if frags is None:
            return None
        if len(frags) == 2:
            return frags
    return None


_RING_JOIN = ("[*:1]~[1*].[1*]~[*:2]>>[*:1]-[*:2]", "[*:1]~[1*].[1*]~[*:2]>>[*:1]=[*:2]")
_RING_CLOSE = ("([*:1]~[1*].[1*]~[*:2])>>[*:1]-[*:2]", "([*:1]~[1*].[1*]~[*:2])>>[*:1]=[*:2]")


def crossover_ring(a: Chem.Mol, b: Chem.Mol, rng: Rng) -> Chem.Mol | None:
    """Join ring fragments of both parents (Jensen's ring crossover)."""
    ring = _smarts("[R]")
    if not a.HasSubstructMatch(ring) and not b.HasSubstructMatch(ring):
        return None
    for _ in range(10):
        fa, fb = cut_ring(a, rng), cut_ring(b, rng)
        if fa is None or fb is None:
            return None
        # Jensen's loop keeps only the last join reaction's products (the '=' join): reproduced as is.
        trial = [_rxn(_RING_JOIN[-1]).RunReactants((x, y))[0] for x in fa for y in fb]
        closed: list[Chem.Mol] = []
        for rs in _RING_CLOSE:
            for prods in trial:
                m = prods[0]
                if mol_ok(m, rng):
                    closed += [p[0] for p in _rxn(rs).RunReactants((m,))]
        children = [m for m in closed if mol_ok(m, rng) and ring_ok(m)]
        if children:
            return _choice(rng, children)
    return None


def crossover_non_ring(a: Chem.Mol, b: Chem.Mol, rng: Rng) -> Chem.Mol | None:
    """Join a fragment of each parent cut at a non-ring single bond."""
    rxn = _rxn("[*:1]-[1*].[1*]-[*:2]>>[*:1]-[*:2]")
    for _ in range(10):
        fa, fb = cut(a, rng), cut(b, rng)
        if fa is None or fb is None:
            return None
        joined: list[Chem.Mol] = [rxn.RunReactants((x, y))[0][0] for x in fa for y in fb]
        children = [m for m in joined if mol_ok(m, rng)]
        if children:
            return _choice(rng, children)
    return None


def crossover(a: Chem.Mol, b: Chem.Mol, rng: Rng) -> Chem.Mol | None:
    """A child of two parents different from both, or None after 10 tries."""
    parents = {Chem.MolToSmiles(a), Chem.MolToSmiles(b)}
    a, b = Chem.Mol(a), Chem.Mol(b)
    try:
        Chem.Kekulize(a, clearAromaticFlags=True)
        Chem.Kekulize(b, clearAromaticFlags=True)
    except (ValueError, RuntimeError):
        pass
    for _ in range(10):
        op = crossover_non_ring if rng.random() <= 0.5 else crossover_ring
        child = op(a, b, rng)
        if child is not None and Chem.MolToSmiles(child) not in parents:
            return child
    return None


def _delete_atom(rng: Rng) -> str:
    choices = (
        "[*:1]~[D1:2]>>[*:1]",
        "[*:1]~[D2:2]~[*:3]>>[*:1]-[*:3]",
        "[*:1]~[D3:2](~[*;!H0:3])~[*:4]>>[*:1]-[*:3]-[*:4]",
        "[*:1]~[D4:2](~[*;!H0:3])(~[*;!H0:4])~[*:5]>>[*:1]-[*:3]-[*:4]-[*:5]",
        "[*:1]~[D4:2](~[*;!H0;!H1:3])(~[*:4])~[*:5]>>[*:1]-[*:3](-[*:4])-[*:5]",
    )
    return str(_choice(rng, choices, [0.25, 0.25, 0.25, 0.1875, 0.0625]))


def _append_atom(rng: Rng) -> str:
    order = _choice(rng, ("single", "double", "triple"), [0.60, 0.35, 0.05])
    if order == "single":
        return "[*;!H0:1]>>[*:1]-" + _choice(rng, ("C", "N", "O", "F", "S", "Cl", "Br"))
    if order == "double":
        return "[*;!H0;!H1:1]>>[*:1]=" + _choice(rng, ("C", "N", "O"))
    return "[*;H3:1]>>[*:1]#" + _choice(rng, ("C", "N"))


def _insert_atom(rng: Rng) -> str:
    order = _choice(rng, ("single", "double", "triple"), [0.60, 0.35, 0.05])
    if order == "single":
        return "[*:1]~[*:2]>>[*:1]X[*:2]".replace("X", _choice(rng, ("C", "N", "O", "S")))
    if order == "double":
        return "[*;!H0:1]~[*:2]>>[*:1]=X-[*:2]".replace("X", _choice(rng, ("C", "N")))
    return "[*;!R;!H1;!H0:1]~[*:2]>>[*:1]#C-[*:2]"


def _change_bond_order(rng: Rng) -> str:
    choices = (
        "[*:1]!-[*:2]>>[*:1]-[*:2]",
        "[*;!H0:1]-[*;!H0:2]>>[*:1]=[*:2]",
        "[*:1]#[*:2]>>[*:1]=[*:2]",
        "[*;!R;!H1;!H0:1]~[*:2]>>[*:1]#[*:2]",
    )
    return str(_choice(rng, choices, [0.45, 0.45, 0.05, 0.05]))


def _delete_cyclic_bond(rng: Rng) -> str:
    return "[*:1]@[*:2]>>([*:1].[*:2])"


def _add_ring(rng: Rng) -> str:
    choices = (
        "[*;!r;!H0:1]~[*;!r:2]~[*;!r;!H0:3]>>[*:1]1~[*:2]~[*:3]1",
        "[*;!r;!H0:1]~[*!r:2]~[*!r:3]~[*;!r;!H0:4]>>[*:1]1~[*:2]~[*:3]~[*:4]1",
        "[*;!r;!H0:1]~[*!r:2]~[*:3]~[*:4]~[*;!r;!H0:5]>>[*:1]1~[*:2]~[*:3]~[*:4]~[*:5]1",
        "[*;!r;!H0:1]~[*!r:2]~[*:3]~[*:4]~[*!r:5]~[*;!r;!H0:6]>>[*:1]1~[*:2]~[*:3]~[*:4]~[*:5]~[*:6]1",
    )
    return str(_choice(rng, choices, [0.05, 0.05, 0.45, 0.45]))


_ELEMENTS = ("#6", "#7", "#8", "#9", "#16", "#17", "#35")
_ELEMENT_P = (0.15, 0.15, 0.14, 0.14, 0.14, 0.14, 0.14)


def _change_atom(mol: Chem.Mol, rng: Rng) -> str:
    present = [e for e in _ELEMENTS if mol.HasSubstructMatch(_smarts(f"[{e}]"))]
    # Jensen redraws until the element is present: drawing from the renormalised present ones is the same law.
    p = np.array([_ELEMENT_P[_ELEMENTS.index(e)] for e in present])
    x = _choice(rng, present, p / p.sum())
    others = [e for e in _ELEMENTS if e != x]
    q = np.array([_ELEMENT_P[_ELEMENTS.index(e)] for e in others])
    y = _choice(rng, others, q / q.sum())
    return f"[{x}:1]>>[{y}:1]"


_MUTATION_P = (0.15, 0.14, 0.14, 0.14, 0.14, 0.14, 0.15)


def mutate(mol: Chem.Mol, mutation_rate: float, rng: Rng) -> Chem.Mol | None:
    """With probability ``mutation_rate`` apply one random Jensen mutation (None if 10 tries fail)."""
    if rng.random() > mutation_rate:
        return mol
    mol = Chem.Mol(mol)
    try:
        Chem.Kekulize(mol, clearAromaticFlags=True)
    except (ValueError, RuntimeError):
        return None
    makers = (
        _insert_atom,
        _change_bond_order,
        _delete_cyclic_bond,
        _add_ring,
        _delete_atom,
        None,
        _append_atom,
    )
    for _ in range(10):
        k = int(rng.choice(len(makers), p=_MUTATION_P))
        maker = makers[k]
        smarts = _change_atom(mol, rng) if maker is None else maker(rng)
        products = _rxn(smarts).RunReactants((mol,))
        children: list[Chem.Mol] = [p[0] for p in products if mol_ok(p[0], rng) and ring_ok(p[0])]
        if children:
            return _choice(rng, children)
    return None


def reproduce(pool: Sequence[Chem.Mol], mutation_rate: float, rng: Rng) -> Chem.Mol | None:
    """Crossover of two parents drawn from the mating pool, then mutation."""
    a = pool[int(rng.integers(len(pool)))]
    b = pool[int(rng.integers(len(pool)))]
    child = crossover(a, b, rng)
    return mutate(child, mutation_rate, rng) if child is not None else None
