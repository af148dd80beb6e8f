"""Tests for leaklab.train (fit / evaluate / predict) and leaklab.models, on tiny CPU data."""
from __future__ import annotations

import copy

import pytest
import torch
from sklearn.metrics import accuracy_score
from torch import nn
from torch.utils.data import Dataset, TensorDataset

from leaklab.models import MODELS, build_model, last_layer
from leaklab.train import History, evaluate, fit, predict, progress_enabled

K = 3                  # classes


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """Tiny models gain nothing from intra-op threads and lose a lot when the cores are busy."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(autouse=True)
def _quiet(monkeypatch):
    monkeypatch.setenv("LEAKLAB_PROGRESS", "0")


@pytest.fixture(scope="module")
def data() -> TensorDataset:
    g = torch.Generator().manual_seed(0)
    x = torch.rand(64, 1, 8, 8, generator=g)                     # (64, 1, 8, 8) in [0, 1)
    y = torch.randint(0, K, (64,), generator=g)                  # (64,)
    return TensorDataset(x, y)


def _model(seed: int = 0) -> nn.Module:
    return build_model("small_cnn", 1, K, 8, seed=seed)


def _state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# --------------------------------------------------------------------------- models

def test_build_model_is_seeded_and_leaves_the_global_rng_alone():
    state = torch.get_rng_state()
    a, b, c = _model(0), _model(0), _model(1)
    assert torch.equal(torch.get_rng_state(), state)
    assert _same(_state(a), _state(b))
    assert not _same(_state(a), _state(c))
    torch.manual_seed(0)
    before = torch.rand(3)
    torch.manual_seed(0)
    _model(5)
    assert torch.equal(torch.rand(3), before)                    # the next global draw is unchanged


def test_small_cnn_maps_images_to_logits():
    m = build_model("small_cnn", 1, 10, 28, seed=0)
    assert m(torch.rand(2, 1, 28, 28)).shape == (2, 10)
    m3 = build_model("small_cnn", 3, 4, 32, seed=0)
    assert m3(torch.rand(5, 3, 32, 32)).shape == (5, 4)
    assert all(p.device.type == "cpu" for p in m.parameters())


@pytest.mark.parametrize("name", ["cnn", "resnet50", "", "SMALL_CNN"])
def test_unknown_model_raises_value_error(name):
    with pytest.raises(ValueError) as info:
        build_model(name, 1, 10, 28, seed=0)
    assert "small_cnn" in str(info.value) and "resnet18" in str(info.value)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_last_layer_is_fc(name):
    m = build_model(name, 3, 7, 32, seed=0)
    fc = last_layer(m)
    assert fc is m.fc
    assert isinstance(fc, nn.Linear) and fc.out_features == 7


def test_last_layer_without_fc_raises_value_error():
    with pytest.raises(ValueError, match="fc"):
        last_layer(nn.Sequential(nn.Flatten(), nn.Linear(4, 2)))
    odd = nn.Module()
    odd.fc = nn.Conv2d(1, 1, 1)                                  # named fc but not linear
    with pytest.raises(ValueError):
        last_layer(odd)


# --------------------------------------------------------------------------- fit

def test_fit_is_deterministic_for_a_seed_and_differs_for_another(data):
    runs = []
    for seed in (0, 0, 1):
        m = _model(0)
        hist = fit(m, data, epochs=2, lr=0.05, batch_size=16, seed=seed)
        runs.append((_state(m), hist.loss))
    assert _same(runs[0][0], runs[1][0]) and runs[0][1] == runs[1][1]
    assert not _same(runs[0][0], runs[2][0])                     # another shuffling order


def test_fit_changes_the_weights_and_returns_a_history(data):
    m = _model(0)
    before = _state(m)
    hist = fit(m, data, epochs=3, lr=0.05, batch_size=16)
    assert isinstance(hist, History)
    assert len(hist.loss) == 3 and all(torch.isfinite(torch.tensor(hist.loss)))
    assert hist.metrics == {}
    assert not _same(before, _state(m))
    assert not m.training                                         # left in eval mode


def test_fit_does_not_use_the_global_rng(data):
    state = torch.get_rng_state()
    fit(_model(0), data, epochs=1, lr=0.05, batch_size=16)
    assert torch.equal(torch.get_rng_state(), state)


def test_fit_params_updates_only_those_parameters(data):
    m = _model(0)
    before = _state(m)
    fit(m, data, epochs=2, lr=0.05, batch_size=16, params=last_layer(m).parameters())
    after = _state(m)
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed == {"fc.weight", "fc.bias"}


class _BNNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                                      nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        return self.fc(self.features(x))


def _bn_buffers(m):
    return {k: v.clone() for k, v in m.state_dict().items() if "running" in k or "num_batches" in k}


def test_fit_keeps_the_running_statistics_of_a_frozen_batchnorm(data):
    """FTLL on a BatchNorm network: the frozen body, running statistics included, stays as it was;
    training everything (FTAL) moves them; freezing by requires_grad counts as frozen."""
    torch.manual_seed(0)
    base = _BNNet()
    data = TensorDataset(data.tensors[0][:, :1], data.tensors[1] % 3)
    ftll, ftal, grad_off = copy.deepcopy(base), copy.deepcopy(base), copy.deepcopy(base)
    fit(ftll, data, epochs=2, lr=0.05, batch_size=16, params=last_layer(ftll).parameters())
    fit(ftal, data, epochs=2, lr=0.05, batch_size=16)
    for name, p in grad_off.named_parameters():
        p.requires_grad_(name.startswith("fc."))
    fit(grad_off, data, epochs=2, lr=0.05, batch_size=16)
    before = _bn_buffers(base)
    for m in (ftll, grad_off):
        assert all(torch.equal(before[k], v) for k, v in _bn_buffers(m).items())
        assert not torch.equal(m.fc.weight, base.fc.weight)
    assert not torch.equal(_bn_buffers(ftal)["features.1.running_mean"], before["features.1.running_mean"])
    assert int(_bn_buffers(ftal)["features.1.num_batches_tracked"]) > 0
    assert ftll.features[1].training is False and ftll.training is False     # eval after fit, as always


def test_on_epoch_results_land_in_history_metrics(data):
    seen_training = []

    def on_epoch(model):
        seen_training.append(model.training)
        return {"acc": evaluate(model, data), "seven": torch.tensor(7.0)}

    m = _model(0)
    hist = fit(m, data, epochs=3, lr=0.05, batch_size=16, on_epoch=on_epoch)
    assert set(hist.metrics) == {"acc", "seven"}
    assert len(hist.metrics["acc"]) == 3 and hist.metrics["seven"] == [7.0, 7.0, 7.0]
    assert all(isinstance(v, float) for v in hist.metrics["acc"])
    assert hist.metrics["acc"][-1] == evaluate(m, data)          # last epoch = final model
    assert seen_training == [False, False, False]                # called in eval mode


@pytest.mark.parametrize("epochs", [0, -1])
def test_fit_rejects_no_epochs(data, epochs):
    with pytest.raises(ValueError, match="epochs"):
        fit(_model(0), data, epochs=epochs, lr=0.05)


def test_fit_rejects_an_empty_dataset():
    empty = TensorDataset(torch.empty(0, 1, 8, 8), torch.empty(0, dtype=torch.int64))
    with pytest.raises(ValueError):
        fit(_model(0), empty, epochs=1, lr=0.05)


def test_fit_momentum_argument_takes_effect(data):
    a, b = _model(0), _model(0)
    fit(a, data, epochs=2, lr=0.05, batch_size=16, momentum=0.0)
    fit(b, data, epochs=2, lr=0.05, batch_size=16, momentum=0.9)
    assert not _same(_state(a), _state(b))


# --------------------------------------------------------------------------- predict / evaluate

def test_predict_returns_cpu_logits_and_restores_the_mode(data):
    m = _model(0)
    x = data.tensors[0]
    m.train()
    out = predict(m, x, batch_size=10)                           # several batches, the last one short
    assert out.shape == (64, K) and out.dtype == torch.float32 and out.device.type == "cpu"
    assert m.training                                             # mode restored
    m.eval()
    with torch.no_grad():
        ref = m(x)                                                # (64, K) in one go
    torch.testing.assert_close(out, ref)
    assert not out.requires_grad


def test_evaluate_matches_a_manual_argmax_accuracy(data):
    m = _model(0)
    fit(m, data, epochs=2, lr=0.05, batch_size=16)
    x, y = data.tensors
    with torch.no_grad():
        pred = m.eval()(x).argmax(1)                              # (64,)
    manual = (pred == y).float().mean().item()
    assert evaluate(m, data) == pytest.approx(manual)
    assert evaluate(m, data) == pytest.approx(accuracy_score(y.numpy(), pred.numpy()))
    assert evaluate(m, (x, y)) == pytest.approx(manual)          # a tuple works too
    assert evaluate(m, (x, y.tolist())) == pytest.approx(manual)


class _ListDataset(Dataset):
    """A plain map-style dataset (not a TensorDataset)."""

    def __init__(self, x, y):
        self.x, self.y = x, y

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        return self.x[i], int(self.y[i])


def test_evaluate_and_fit_accept_any_dataset(data):
    x, y = data.tensors
    ds = _ListDataset(x, y)
    m = _model(0)
    assert evaluate(m, ds) == pytest.approx(evaluate(m, data))
    fit(m, ds, epochs=1, lr=0.05, batch_size=16)


def test_evaluate_empty_raises_value_error():
    with pytest.raises(ValueError):
        evaluate(_model(0), (torch.empty(0, 1, 8, 8), torch.empty(0, dtype=torch.int64)))


@pytest.mark.parametrize("value, on", [("0", False), ("false", False), (" NO ", False), ("1", True),
                                       ("", True), ("yes", True)])
def test_progress_enabled_reads_the_env_var(monkeypatch, value, on):
    monkeypatch.setenv("LEAKLAB_PROGRESS", value)
    assert progress_enabled() is on


def test_progress_enabled_by_default(monkeypatch):
    monkeypatch.delenv("LEAKLAB_PROGRESS", raising=False)
    assert progress_enabled()


def test_fit_takes_a_custom_loss_on_soft_labels():
    # Soft labels (0.7, 0.2, 0.1) for every input: with a soft cross-entropy the model learns them as probabilities.
    x = torch.rand(96, 1, 8, 8, generator=torch.Generator().manual_seed(3))
    soft = torch.tensor([0.7, 0.2, 0.1]).expand(96, K).clone()
    def soft_ce(logits, targets):
        return -(targets * torch.log_softmax(logits, -1)).sum(-1).mean()
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, K))
    hist = fit(model, TensorDataset(x, soft), epochs=30, lr=0.1, batch_size=16, loss=soft_ce)
    p = torch.softmax(predict(model, x), 1).mean(0)
    assert torch.allclose(p, soft[0], atol=0.05), p
    assert hist.loss[-1] < hist.loss[0]
