"""a4's library parts: faces (both sources), per-person splits, models, metrics, augment."""
from __future__ import annotations

import urllib.error

import numpy as np
import pytest
import torch
from torch.utils.data import TensorDataset

from leaklab import data as D
from leaklab.metrics import identification_rate, ssim
from leaklab.models import build_model
from leaklab.train import fit


def test_att_faces_from_pgm_files(monkeypatch, repo):
    shared = repo.parent / "shared" / "data"
    if not (shared / "att_faces" / "s1" / "1.pgm").exists():
        pytest.skip("no AT&T PGM files beside the checkout")
    monkeypatch.setenv("LEAKLAB_DATA_DIR", str(shared))
    f = D.load_faces()
    assert f.x.shape == (400, 1, 112, 92) and f.x.dtype == torch.float32
    assert 0 <= f.x.min() and f.x.max() <= 1
    assert f.y.tolist() == [p for p in range(40) for _ in range(10)]          # s1..s40, 10 shots each
    from PIL import Image
    raw = np.asarray(Image.open(shared / "att_faces" / "s7" / "3.pgm"), dtype=np.float32) / 255
    assert torch.equal(f.x[6 * 10 + 2, 0], torch.from_numpy(raw))


def test_missing_faces_raise_a_helpful_error(monkeypatch, tmp_path):
    import sklearn.datasets

    def offline(**_):
        raise urllib.error.URLError("no network")
    monkeypatch.setattr(sklearn.datasets, "fetch_olivetti_faces", offline)
    monkeypatch.setenv("LEAKLAB_DATA_DIR", str(tmp_path))
    with pytest.raises(D.DatasetUnavailableError, match="AT&T faces") as err:
        D.load_faces()
    assert str(tmp_path) in str(err.value) and "LEAKLAB_DATA_DIR" in str(err.value)


def test_olivetti_is_used_when_no_pgm_files(monkeypatch, tmp_path):
    import sklearn.datasets
    from sklearn.utils import Bunch

    monkeypatch.setattr(sklearn.datasets, "fetch_olivetti_faces", lambda **_: Bunch(
        images=np.linspace(0, 1, 400 * 64 * 64, dtype=np.float32).reshape(400, 64, 64),
        target=np.repeat(np.arange(40), 10)))
    monkeypatch.setenv("LEAKLAB_DATA_DIR", str(tmp_path))
    f = D.load_faces()
    assert f.x.shape == (400, 1, 64, 64) and f.y.tolist() == [p for p in range(40) for _ in range(10)]


def test_split_per_person_is_disjoint_balanced_and_seeded():
    x = torch.arange(400, dtype=torch.float32).view(400, 1, 1, 1)
    faces = D.ImageData(x, torch.arange(40).repeat_interleave(10), [str(i) for i in range(40)])
    tr, te = D.split_per_person(faces, 7, seed=0)
    assert len(tr) == 280 and len(te) == 120
    assert torch.bincount(tr.tensors[1]).tolist() == [7] * 40
    assert not set(tr.tensors[0].flatten().tolist()) & set(te.tensors[0].flatten().tolist())
    assert torch.equal(D.split_per_person(faces, 7, seed=0)[0].tensors[0], tr.tensors[0])
    assert not torch.equal(D.split_per_person(faces, 7, seed=1)[0].tensors[0], tr.tensors[0])
    with pytest.raises(ValueError, match="n_train"):
        D.split_per_person(faces, 10, seed=0)


def test_standardize():
    x = torch.rand(5, 1, 4, 3) * 3 + 2
    z = D.standardize(x)
    assert torch.allclose(z.flatten(1).mean(1), torch.zeros(5), atol=1e-5)
    assert torch.allclose(z.flatten(1).std(1), torch.ones(5), atol=1e-5)
    assert torch.equal(D.standardize(torch.ones(2, 1, 2, 2)), torch.zeros(2, 1, 2, 2))


@pytest.mark.parametrize("name, options", [("softmax_regression", {}), ("mlp", {"hidden": 17}), ("face_cnn", {})])
def test_face_models_take_rectangular_images(name, options):
    m = build_model(name, 1, 40, (56, 46), seed=0, **options)
    assert m(torch.rand(3, 1, 56, 46)).shape == (3, 40)
    assert m.fc.out_features == 40


def test_identification_rate_matches_a_hand_count():
    scores = torch.tensor([[0.1, 0.7, 0.2, 0.0], [0.5, 0.1, 0.3, 0.1], [0.2, 0.3, 0.4, 0.1]])
    labels = torch.tensor([1, 2, 3])
    assert identification_rate(scores, labels, 1) == pytest.approx(1 / 3)
    assert identification_rate(scores, labels, 2) == pytest.approx(2 / 3)
    with pytest.raises(ValueError):
        identification_rate(scores, labels, 4)


def test_ssim():
    g = torch.Generator().manual_seed(0)
    a = torch.rand(1, 20, 16, generator=g)
    assert ssim(a, a) == pytest.approx(1.0)
    assert ssim(a, torch.rand(1, 20, 16, generator=g)) < 0.5
    with pytest.raises(ValueError, match="same"):
        ssim(a, torch.rand(20, 15))


def test_fit_augment_is_applied_and_deterministic():
    g = torch.Generator().manual_seed(0)
    data = TensorDataset(torch.rand(32, 1, 6, 6, generator=g), torch.randint(0, 3, (32,), generator=g))
    seen = []
    def noise(xb, gen):
        seen.append(len(xb))
        return xb + 0.1 * torch.randn(xb.shape, generator=gen)
    states = []
    for _ in range(2):
        m = build_model("softmax_regression", 1, 3, 6, seed=0)
        fit(m, data, epochs=2, lr=0.1, batch_size=8, seed=3, augment=noise)
        states.append(m.fc.weight.detach().clone())
    assert sum(seen) == 2 * 2 * 32 and torch.equal(states[0], states[1])
