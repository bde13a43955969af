"""Packed evaluation of a generation: several individuals a task, their samples stacked (CPU, digits, formulas §5).

With the CPU's ``loop`` forward each sample runs the kernels it runs alone, so a packed
individual's accuracies, median and sparsities are compared with ``==``. The fused
``vmap`` forward (CUDA's default) sums the convolutions in another order (about 1e-7 per
logit), which may flip a near-tied prediction: its accuracies agree to one sample.
"""

from __future__ import annotations

import pytest

from tuneprune.data import load_dataset
from tuneprune.evolution.generation import evaluate_all, remote_evaluator
from tuneprune.evolution.space import EvolveResources
from tuneprune.evolution.worker import EvalSettings, Individual, dense_payload, evaluate_individual, evaluate_pack
from tuneprune.stochastic import TargetConfig

GROUPS = {"early": ["features.3"], "late": ["features.7"]}
RATES: dict[str, list[tuple[float, ...]]] = {
    "one": [(0.5,), (0.9,), (0.97,), (0.7,)],
    "groups": [(0.5, 0.9), (0.95, 0.3), (0.8, 0.8), (0.6, 0.99)],
}
SIGMAS = [1e-3, 1e-2, 1e-4, 0.0]


@pytest.fixture(scope="module")
def dense(dense_digits):
    """The dense model as the object store holds it and its validation split."""
    result = dense_digits[1]
    data = load_dataset(result.config)
    payload = dense_payload(result.model, result.config.model, result.num_classes, result.in_channels)
    return payload, {"x": data.x_val, "y": data.y_val}


def settings(groups: dict | None = None, fail: frozenset = frozenset()) -> EvalSettings:
    return EvalSettings(samples=3, target=TargetConfig(), groups=groups or {}, batch_size=50, fail=fail)


def population(rates: list[tuple[float, ...]]) -> list[Individual]:
    return [Individual(1, i, sigma, r, seed=100 + i) for i, (sigma, r) in enumerate(zip(SIGMAS, rates, strict=True))]


@pytest.mark.parametrize("kind", ["one", "groups"])
def test_packed_evaluation_equals_each_individual_alone(dense, kind, single_thread):
    payload, val = dense
    evaluation = settings(GROUPS if kind == "groups" else None)
    batch = population(RATES[kind])
    alone = [evaluate_individual(payload, val, individual, evaluation) for individual in batch]
    assert evaluate_pack(payload, val, batch, evaluation) == alone
    assert len({r["accuracy"] for r in alone}) > 1
    assert len({r["sparsity"] for r in alone}) == len(alone)
    assert all(len(set(r["accuracies"])) > 1 for r in alone[:2])  # the samples differ


def test_fused_forward_agrees_to_a_sample(dense, single_thread):
    payload, val = dense
    batch = population(RATES["one"])
    alone = [evaluate_individual(payload, val, individual, settings()) for individual in batch]
    fused = evaluate_pack(payload, val, batch, settings(), forward_mode="vmap")
    one_sample = 1 / len(val["y"]) + 1e-12
    for f, a in zip(fused, alone, strict=True):
        assert all(abs(p - q) <= one_sample for p, q in zip(f["accuracies"], a["accuracies"], strict=True))
        assert (f["sparsity"], f["pruned_layers_sparsity"]) == (a["sparsity"], a["pruned_layers_sparsity"])


@pytest.mark.ray
def test_packs_give_the_rows_of_one_task_each_and_fail_alone(ray_session, dense, single_thread):
    """Packs of 3 over 5 individuals (a pack of 3, one of 2) with individual 1 failing: the pack of 3 falls back to
    one task each; every row, the failed one's error included, is the unpacked run's."""
    payload, val = dense
    batch = [*population(RATES["one"]), Individual(1, 4, 5e-3, (0.8,), seed=104)]
    failing = settings(fail=frozenset({(1, 1)}))
    payload_ref, val_ref = ray_session.put(payload), ray_session.put(val)

    def rows(pack: int) -> list[dict]:
        evaluator = remote_evaluator(
            EvolveResources(pack=pack), max_retries=1, payload_ref=payload_ref, val_ref=val_ref
        )
        return evaluate_all(evaluator, batch, failing, ["rate"])

    evaluator = remote_evaluator(EvolveResources(pack=2), max_retries=0, payload_ref=payload_ref, val_ref=val_ref)
    alone = [evaluate_individual(payload, val, individual, settings()) for individual in batch]
    assert ray_session.get(evaluator.packed.remote(payload_ref, val_ref, batch[3:], failing)) == alone[3:]

    packed = rows(3)
    assert [r["status"] for r in packed] == ["ok", "failed", "ok", "ok", "ok"]
    assert packed[1]["error"] == "InjectedFailure: injected failure of individual 1 in generation 1"
    assert packed[1]["accuracies"] == []
    assert packed[1]["accuracy"] == 0.0
    assert [r["accuracies"] for r in packed if r["status"] == "ok"] == [
        r["accuracies"] for i, r in enumerate(alone) if i != 1
    ]
    assert packed == rows(1)
