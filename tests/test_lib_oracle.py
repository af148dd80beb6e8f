"""Tests for leaklab.oracle.PredictionAPI: outputs against torch references, the budget,
input validation, and that the victim model stays out of reach."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from leaklab.oracle import PredictionAPI, QueryBudgetExceeded

SHAPE = (1, 4, 4)      # one input (C, H, W)
K = 5                  # classes


class CountingModel(nn.Module):
    """A linear classifier on (N, 1, 4, 4) that counts its forward calls and examples."""

    def __init__(self, seed: int = 0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.fc = nn.Linear(16, K)
        with torch.no_grad():
            self.fc.weight.copy_(torch.randn(K, 16, generator=g) * 3)
            self.fc.bias.copy_(torch.randn(K, generator=g))
        self.calls = 0
        self.examples = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        self.examples += len(x)
        return self.fc(x.flatten(1))                             # (N, K)


@pytest.fixture
def model() -> CountingModel:
    return CountingModel()


def _x(n: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, *SHAPE, generator=torch.Generator().manual_seed(seed))   # (n, 1, 4, 4) in [0, 1)


def _logits(model: CountingModel, x: torch.Tensor) -> torch.Tensor:
    """Reference logits straight from the layer, without going through forward's counter."""
    with torch.no_grad():
        return model.fc(x.flatten(1))                            # (N, K)


# --------------------------------------------------------------------------- outputs

def test_probs_equal_softmax_of_the_logits(model):
    api = PredictionAPI(model, SHAPE, mode="probs")
    x = _x(12)
    p = api.query(x)
    assert p.shape == (12, K) and p.dtype == torch.float32
    torch.testing.assert_close(p, torch.softmax(_logits(model, x), dim=1))
    torch.testing.assert_close(p.sum(1), torch.ones(12))
    assert torch.equal(api(x), p)                                # __call__ is query


def test_label_equals_argmax(model):
    api = PredictionAPI(model, SHAPE, mode="label")
    x = _x(20)
    y = api.query(x)
    assert y.shape == (20,) and y.dtype == torch.int64
    assert torch.equal(y, _logits(model, x).argmax(1))


@pytest.mark.parametrize("k", [1, 2, 4, K, K + 3])
def test_topk_keeps_exactly_the_k_largest_probabilities(model, k):
    api = PredictionAPI(model, SHAPE, mode="topk", k=k)
    x = _x(16)
    out = api.query(x)
    ref = torch.softmax(_logits(model, x), dim=1).numpy()        # (N, K)
    out = out.numpy()
    kk = min(k, K)
    assert out.shape == (16, K)
    for row, r in zip(out, ref):
        top = set(np.argsort(-r)[:kk].tolist())                  # indices of the kk largest
        assert set(np.flatnonzero(row).tolist()) == top
        np.testing.assert_allclose(row[sorted(top)], r[sorted(top)], rtol=1e-6, atol=1e-7)
        assert (row[[i for i in range(K) if i not in top]] == 0).all()


@pytest.mark.parametrize("mode", ["probs", "topk"])
@pytest.mark.parametrize("decimals", [0, 1, 3])
def test_decimals_rounds_the_probabilities(model, mode, decimals):
    x = _x(10)
    exact = PredictionAPI(CountingModel(), SHAPE, mode=mode, k=2).query(x).double().numpy()
    out = PredictionAPI(model, SHAPE, mode=mode, k=2, decimals=decimals).query(x).double().numpy()
    np.testing.assert_allclose(out, np.round(exact, decimals), atol=1e-6)
    scaled = out * 10**decimals
    np.testing.assert_allclose(scaled, np.round(scaled), atol=1e-4)   # on the decimal grid


def test_numpy_float32_input_is_accepted(model):
    api = PredictionAPI(model, SHAPE, mode="probs")
    x = _x(3)
    torch.testing.assert_close(api.query(x.numpy()), api.query(x))
    assert api.queries_used == 6


def test_the_model_is_put_in_eval_mode():
    net = nn.Sequential(nn.Flatten(), nn.Dropout(0.5), nn.Linear(16, K))
    net.train()
    api = PredictionAPI(net, SHAPE, mode="probs")
    assert not net.training
    x = _x(8)
    assert torch.equal(api.query(x), api.query(x))               # no dropout noise


# --------------------------------------------------------------------------- budget and counting

def test_queries_used_and_remaining_count_examples(model):
    api = PredictionAPI(model, SHAPE, budget=10)
    assert (api.queries_used, api.remaining) == (0, 10)
    api.query(_x(3))
    api.query(_x(1))
    assert (api.queries_used, api.remaining) == (4, 6)
    assert model.examples == 4
    unlimited = PredictionAPI(CountingModel(), SHAPE)
    unlimited.query(_x(7))
    assert (unlimited.queries_used, unlimited.remaining) == (7, None)


def test_budget_is_checked_before_the_model_runs(model):
    api = PredictionAPI(model, SHAPE, mode="label", budget=5)
    api.query(_x(4))
    calls = model.calls
    with pytest.raises(QueryBudgetExceeded) as info:
        api.query(_x(2))                                          # 4 + 2 > 5
    assert model.calls == calls                                   # the victim never ran
    assert api.queries_used == 4 and api.remaining == 1           # nothing was counted
    assert "5" in str(info.value)
    api.query(_x(1))                                              # exactly up to the budget is fine
    assert api.queries_used == 5 and api.remaining == 0
    with pytest.raises(QueryBudgetExceeded):
        api.query(_x(1))
    assert model.calls == calls + 1 and api.queries_used == 5


def test_zero_budget_answers_nothing(model):
    api = PredictionAPI(model, SHAPE, budget=0)
    with pytest.raises(QueryBudgetExceeded):
        api.query(_x(1))
    assert model.calls == 0 and api.queries_used == 0


def test_budget_exceeded_is_a_runtime_error():
    assert issubclass(QueryBudgetExceeded, RuntimeError)


# --------------------------------------------------------------------------- validation

def _bad_inputs():
    x = _x(2)
    nan = x.clone()
    nan[0, 0, 0, 0] = float("nan")
    inf = x.clone()
    inf[1, 0, 1, 1] = float("inf")
    return [
        ("float64", x.double(), "float32"),
        ("float64 numpy", x.double().numpy(), "float32"),
        ("int64", (x > 0.5).long(), "float32"),
        ("uint8", (x * 255).to(torch.uint8), "float32"),
        ("wrong shape", torch.rand(2, 1, 5, 5), "(N, 1, 4, 4)"),
        ("wrong channels", torch.rand(2, 3, 4, 4), "(N, 1, 4, 4)"),
        ("flattened", torch.rand(2, 16), "(N, 1, 4, 4)"),
        ("extra dim", torch.rand(2, 1, 1, 4, 4), "(N, 1, 4, 4)"),
        ("unbatched", torch.rand(*SHAPE), "batch"),
        ("above 1", x + 1.0, "[0.0, 1.0]"),
        ("below 0", x - 1.0, "[0.0, 1.0]"),
        ("nan", nan, "finite"),
        ("inf", inf, "finite"),
        ("list", x.tolist(), "float32"),
    ]


@pytest.mark.parametrize("what, bad, expected", _bad_inputs(), ids=[b[0] for b in _bad_inputs()])
def test_bad_input_raises_value_error_naming_the_expectation_and_counts_nothing(model, what, bad, expected):
    api = PredictionAPI(model, SHAPE, mode="probs", budget=100)
    with pytest.raises(ValueError) as info:
        api.query(bad)
    assert expected in str(info.value), str(info.value)
    assert api.queries_used == 0 and api.remaining == 100
    assert model.calls == 0


def test_unbatched_example_message_suggests_a_batch_dimension(model):
    api = PredictionAPI(model, SHAPE)
    with pytest.raises(ValueError, match=r"x\[None\]"):
        api.query(torch.rand(*SHAPE))
    api.query(torch.rand(*SHAPE)[None])                           # the suggested fix works
    assert api.queries_used == 1


def test_custom_input_range_is_enforced(model):
    api = PredictionAPI(model, SHAPE, input_range=(-1.0, 1.0))
    api.query(_x(2) * 2 - 1)
    with pytest.raises(ValueError, match=r"\[-1.0, 1.0\]"):
        api.query(_x(2) * 2 - 1.5)
    assert api.queries_used == 2


def test_empty_batch_is_answered_or_rejected_with_value_error(model):
    api = PredictionAPI(model, SHAPE, mode="probs", budget=3)
    try:
        out = api.query(torch.empty(0, *SHAPE))
    except ValueError:
        pass
    else:
        assert len(out) == 0
    assert api.queries_used == 0


@pytest.mark.parametrize("kwargs", [dict(mode="logits"), dict(budget=-1), dict(k=0),
                                    dict(mode="topk", k=-2), dict(decimals=-1)])
def test_bad_constructor_arguments_raise_value_error(model, kwargs):
    with pytest.raises(ValueError):
        PredictionAPI(model, SHAPE, **kwargs)


# --------------------------------------------------------------------------- no handle on the victim

def test_the_api_exposes_no_model(model):
    api = PredictionAPI(model, SHAPE, budget=10)
    instance_dict = getattr(api, "__dict__", {})
    assert not any(isinstance(v, nn.Module) for v in instance_dict.values())
    names = set(dir(api)) | set(getattr(type(api), "__slots__", ()))
    for name in names:
        try:
            value = getattr(api, name)
        except AttributeError:
            continue
        assert not isinstance(value, nn.Module), f"api.{name} returns the victim model"
    assert not isinstance(api, nn.Module)
    assert "model" not in names
    # the only callable that reaches the model answers logits, not the module
    assert api.queries_used == 0 and model.calls == 0
    assert "CountingModel" not in repr(api)
