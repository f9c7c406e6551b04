"""Witness paths: the most confident chain of facts behind a derived relation.

clingo decides which signed relations are implied; this best-first search recovers, for each,
the derivation whose product of confidences is highest, searched over (gene, sign) states so
the path's sign product is part of what it matches.
"""

from __future__ import annotations

import heapq
import math
from collections import defaultdict
from collections.abc import Iterable

from level5_discovery.logic.facts import SIGN_TO_INT, Fact

State = tuple[str, int]


def best_paths(facts: Iterable[Fact], start: str) -> dict[State, tuple[Fact, ...]]:
    """Most confident signed walks from `start` to every reachable ``(gene, sign)`` state.

    Args:
        facts: Signed facts (``"+"``/``"-"``) usable as steps.
        start: The cause gene.

    Returns:
        ``{(gene, sign): facts along the best walk}`` where ``sign`` is the product of the step signs;
        ties go to the walk found first, with facts visited in a fixed (sorted) order.
    """
    out_steps: dict[str, list[Fact]] = defaultdict(list)
    for f in sorted(facts, key=lambda f: (f.cause, f.effect, f.sign, f.source, -f.confidence)):
        out_steps[f.cause].append(f)
    # Cost = -log(confidence): minimal cost = maximal product of confidences.
    best: dict[State, float] = {(start, 1): 0.0}
    back: dict[State, tuple[State, Fact]] = {}
    heap: list[tuple[float, int, State]] = [(0.0, 0, (start, 1))]
    counter = 1
    done: set[State] = set()
    while heap:
        cost, _, state = heapq.heappop(heap)
        if state in done:
            continue
        done.add(state)
        gene, sign = state
        for f in out_steps.get(gene, []):
            nxt = (f.effect, sign * SIGN_TO_INT[f.sign])
            new_cost = cost - math.log(max(f.confidence, 1e-9))
            if new_cost < best.get(nxt, math.inf):
                best[nxt] = new_cost
                back[nxt] = (state, f)
                heapq.heappush(heap, (new_cost, counter, nxt))
                counter += 1
    paths: dict[State, tuple[Fact, ...]] = {}
    for state in back:
        steps: list[Fact] = []
        cur = state
        while cur in back:
            cur, f = back[cur]
            steps.append(f)
        paths[state] = tuple(reversed(steps))
    return paths
