"""Tiny causal LM: tokenizer, pretraining, LoRA (only adapters change, round trip), base-model loading."""

from __future__ import annotations

import copy
import math
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch

from level5_discovery.lm.config import LMConfig
from level5_discovery.lm.decode import generate_hypotheses
from level5_discovery.lm.extraction import baseline_hypotheses, extract_relations
from level5_discovery.lm.hypotheses import Hypothesis, parse_hypothesis
from level5_discovery.lm.instructions import gene_contexts, instruction_pairs, stated_relations
from level5_discovery.lm.lora import load_adapter, lora_finetune, save_adapter, target_nll
from level5_discovery.lm.model import build_model, load_base_model, save_model
from level5_discovery.lm.pretrain import perplexity, pretrain
from level5_discovery.lm.tokenizer import train_tokenizer
from shared.errors import ConfigError

GENES = [f"G{i:02d}" for i in range(8)]
TINY = LMConfig(
    vocab_size=400,
    n_layer=1,
    n_head=2,
    n_embd=32,
    n_positions=256,
    pretrain_steps=60,
    pretrain_batch_size=8,
    pretrain_block=64,
    lora_r=4,
    lora_alpha=8,
    lora_steps=40,
    lora_batch_size=4,
    lora_lr=1e-2,
    passage_words=30,
    context_passages=3,
    device="cpu",
    progress=False,
)


@dataclass(frozen=True)
class FakePaper:
    id: str
    title: str
    abstract: str
    relations: tuple[tuple[str, str, str], ...] = ()

    @property
    def text(self) -> str:
        return f"{self.title}. {self.abstract}"


def make_papers(n: int = 60, seed: int = 0) -> list[FakePaper]:
    """Handmade abstracts, each stating one relation in words (and in its `relations` field)."""
    rng = random.Random(seed)
    up, down = ("activates", "up-regulates", "induces"), ("represses", "inhibits", "silences")
    out = []
    for k in range(n):
        a, b = rng.sample(GENES, 2)
        sign = rng.choice("+-")
        verb = rng.choice(up if sign == "+" else down)
        abstract = (
            f"Using RNA-seq in cells, we show that {a} {verb} {b}. The effect was replicated in two lines."
        )
        out.append(FakePaper(f"P{k:05d}", f"Regulation of {b}", abstract, ((a, b, sign),)))
    return out


def tiny_setup(seed: int = 0) -> dict[str, Any]:
    """Tokenizer + pretrained tiny model + instruction pairs on handmade papers (shared by the LM tests)."""
    papers = make_papers()
    tok = train_tokenizer([p.text for p in papers], TINY, extra_tokens=GENES)
    untrained = build_model(TINY, tok, seed=seed)
    model = copy.deepcopy(untrained)
    losses = pretrain(model, tok, [p.text for p in papers[:50]], TINY, seed=seed)["losses"]
    contexts = [c for s in range(2) for c in gene_contexts(papers, GENES, k=3, seed=s)]
    pairs = instruction_pairs(contexts, stated_relations(papers), passage_words=30, max_passages=3)
    return {
        "papers": papers,
        "tok": tok,
        "untrained": untrained,
        "model": model,
        "losses": losses,
        "contexts": contexts,
        "pairs": pairs,
    }


@pytest.fixture(scope="module")
def lm() -> dict[str, Any]:
    return tiny_setup()


def test_gene_names_are_single_tokens(lm: dict[str, Any]) -> None:
    tok = lm["tok"]
    for text in (" G03 activates", '"G03"', "G03,"):
        assert "G03" in tok.convert_ids_to_tokens(tok(text)["input_ids"])
    assert tok.decode(tok('{"cause": "G03"}')["input_ids"]) == '{"cause": "G03"}'


def test_pretraining_lowers_perplexity(lm: dict[str, Any]) -> None:
    held = [p.text for p in lm["papers"][50:]]
    before, after = perplexity(lm["untrained"], lm["tok"], held), perplexity(lm["model"], lm["tok"], held)
    assert after < 0.5 * before
    assert lm["losses"][-1] < lm["losses"][0]


def test_pretraining_is_deterministic(lm: dict[str, Any]) -> None:
    short = TINY.model_copy(update={"pretrain_steps": 8})
    texts = [p.text for p in lm["papers"][:50]]
    runs = [
        pretrain(copy.deepcopy(lm["untrained"]), lm["tok"], texts, short, seed=s)["losses"] for s in (3, 3, 4)
    ]
    assert runs[0] == runs[1] and runs[0] != runs[2]


def test_lora_trains_only_adapters_and_lowers_target_loss(lm: dict[str, Any]) -> None:
    base = copy.deepcopy(lm["model"])
    frozen = {k: v.clone() for k, v in base.state_dict().items()}
    before = target_nll(base, lm["tok"], lm["pairs"])
    peft_model, losses = lora_finetune(base, lm["tok"], lm["pairs"], TINY, seed=0)
    trainable = {n: p for n, p in peft_model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n or "trainable_tokens" in n for n in trainable)
    n_lora = sum(
        p.numel() for n, p in peft_model.named_parameters() if "lora_" in n or "trainable_tokens" in n
    )
    assert peft_model.get_nb_trainable_parameters()[0] == n_lora
    assert any(
        float(p.detach().abs().sum()) > 0 for n, p in trainable.items() if "lora_B" in n
    )  # B starts at 0
    for name, param in peft_model.base_model.model.named_parameters():
        key = name.replace(".base_layer", "")
        if key in frozen:
            assert torch.equal(param.detach(), frozen[key]), name
    after = target_nll(peft_model, lm["tok"], lm["pairs"])
    assert after < 0.6 * before and losses[-1] < losses[0]


def test_adapter_round_trip_gives_identical_logits(lm: dict[str, Any], tmp_path: Path) -> None:
    tuned, _ = lora_finetune(
        copy.deepcopy(lm["model"]),
        lm["tok"],
        lm["pairs"][:8],
        TINY.model_copy(update={"lora_steps": 5}),
        seed=1,
    )
    save_adapter(tuned, tmp_path / "adapter")
    reloaded = load_adapter(copy.deepcopy(lm["model"]), tmp_path / "adapter")
    ids = torch.tensor([lm["tok"](lm["pairs"][0].prompt)["input_ids"][:60]])
    with torch.no_grad():
        assert torch.equal(tuned(input_ids=ids).logits, reloaded(input_ids=ids).logits)
        assert not torch.equal(tuned(input_ids=ids).logits, lm["model"](input_ids=ids).logits)


def test_unknown_base_model_is_a_one_line_config_error() -> None:
    with pytest.raises(ConfigError) as err:
        load_base_model("no/such-model-xyz")
    assert str(err.value) == (
        "unknown base model 'no/such-model-xyz': not a local path and not in the Hugging Face cache (offline)"
    )


def test_saved_model_reloads_through_load_base_model(lm: dict[str, Any], tmp_path: Path) -> None:
    save_model(lm["model"], lm["tok"], tmp_path / "base")
    model, tok = load_base_model(str(tmp_path / "base"))
    ctx = lm["contexts"][0]
    assert generate_hypotheses(model, tok, ctx, GENES, n=3) == generate_hypotheses(
        lm["model"], lm["tok"], ctx, GENES, n=3
    )
    assert math.isclose(
        perplexity(model, tok, ["G01 activates G02."]),
        perplexity(lm["model"], lm["tok"], ["G01 activates G02."]),
    )


def test_extract_relations_on_handmade_sentences() -> None:
    ctx = [
        ("P1", "We show that G07 up-regulates G12. Loss of G03 reduced G11 transcript levels."),
        ("P2", "We report inhibition of G05 by G02. Overexpression of G04 lowered G06 expression."),
        ("P3", "G01 expression is repressed by G09. Knockout of G08 increased G10. G13 did not affect G14."),
    ]
    got = {(r.cause, r.effect, r.sign, r.paper_id) for r in extract_relations(ctx)}
    assert got == {
        ("G07", "G12", "+", "P1"),
        ("G03", "G11", "+", "P1"),
        ("G02", "G05", "-", "P2"),
        ("G04", "G06", "-", "P2"),
        ("G09", "G01", "-", "P3"),
        ("G08", "G10", "-", "P3"),
    }
    weak = extract_relations([("P4", "G01 activates G02, though only as a non-significant trend (n = 3).")])
    assert [(r.cause, r.effect, r.sign, r.weak) for r in weak] == [("G01", "G02", "+", True)]
    top = baseline_hypotheses(
        [("P1", "G01 activates G02."), ("P2", "G01 induces G02."), ("P3", "G03 inhibits G04.")]
    )
    assert top == [Hypothesis("G01", "G02", "+", ("P1", "P2"), score=2.0)]


def test_instruction_targets_come_from_stated_relations() -> None:
    papers = [
        FakePaper("P1", "T", "G01 activates G02 in cells.", (("G01", "G02", "+"),)),
        FakePaper("P2", "T", "G01 induces G02 strongly.", (("G01", "G02", "+"),)),
        FakePaper("P3", "T", "G03 represses G04.", (("G03", "G04", "-"),)),
        FakePaper("P4", "T", "Nothing here about G05."),
    ]
    pairs = instruction_pairs([[(p.id, p.text) for p in papers]], stated_relations(papers), max_targets=3)
    assert [p.target for p in pairs] == [
        '{"cause": "G01", "effect": "G02", "sign": "+", "evidence": ["P1", "P2"]}',
        '{"cause": "G03", "effect": "G04", "sign": "-", "evidence": ["P3"]}',
    ]
    assert pairs[0].prompt.startswith("[P1] T. G01 activates G02 in cells.\n") and pairs[0].prompt.endswith(
        "Hypothesis:"
    )


def test_parse_hypothesis_is_strict() -> None:
    good = '{"cause": "G01", "effect": "G02", "sign": "-", "evidence": ["P1"]}'
    assert parse_hypothesis(good) == Hypothesis("G01", "G02", "-", ("P1",))
    assert parse_hypothesis(good, genes=["G01"]) is None
    assert parse_hypothesis(good, evidence_ids=["P9"]) is None
    for bad in (
        good[:-1],
        good + " extra",
        good.replace('"-"', '"0"'),
        good.replace('"G02"', '"G01"'),
        good.replace('["P1"]', "[]"),
        good.replace('"sign"', '"sgn"'),
        "[]",
        "",
    ):
        assert parse_hypothesis(bad) is None, bad
