"""Batched training of many small models: the same as training each alone, and independent."""
from __future__ import annotations

import pytest
import torch

from leaklab.models import StackedMLP
from leaklab.train import fit_stacked


def _data(n=40, d=6, k=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, d, generator=g), torch.randint(0, k, (n,), generator=g)


def test_member_is_the_same_function():
    m = StackedMLP(3, 6, 8, 3, seed=0)
    x, _ = _data()
    out = m(x)
    assert out.shape == (3, 40, 3)
    for i in range(3):
        assert torch.allclose(m.member(i)(x), out[i], atol=1e-6)


def test_stacked_training_equals_training_each_model_alone():
    x, y = _data()
    keep = torch.rand(3, 40, generator=torch.Generator().manual_seed(1)) < 0.5
    together = StackedMLP(3, 6, 8, 3, seed=0)
    fit_stacked(together, x, y, keep, epochs=5, lr=1e-2, batch_size=8, seed=2)
    for i in range(3):
        alone = StackedMLP(3, 6, 8, 3, seed=0)                     # same initialisation as model i
        with torch.no_grad():
            for p in alone.parameters():
                p.copy_(p[i:i + 1].expand_as(p))
        single = StackedMLP(1, 6, 8, 3, seed=0)
        with torch.no_grad():
            for ps, pa in zip(single.parameters(), alone.parameters()):
                ps.copy_(pa[:1])
        fit_stacked(single, x, y, keep[i:i + 1], epochs=5, lr=1e-2, batch_size=8, seed=2)
        for ps, pt in zip(single.parameters(), together.parameters()):
            assert torch.allclose(ps[0], pt[i], atol=1e-5)


def test_a_model_never_learns_from_examples_it_does_not_keep():
    x, y = _data()
    keep = torch.zeros(2, 40, dtype=torch.bool)
    keep[0] = True                                                  # model 1 keeps nothing: it must not move
    m = StackedMLP(2, 6, 8, 3, seed=0)
    before = [p[1].clone() for p in m.parameters()]
    first = m.w1[0].detach().clone()
    fit_stacked(m, x, y, keep, epochs=3, lr=1e-2, batch_size=8, seed=0)
    assert all(torch.equal(b, p[1]) for b, p in zip(before, m.parameters()))
    assert not torch.equal(first, m.w1[0].detach()), "model 0 keeps every example and must have trained"


def test_bad_keep_matrices_are_rejected():
    x, y = _data()
    m = StackedMLP(2, 6, 8, 3, seed=0)
    with pytest.raises(ValueError, match="keep"):
        fit_stacked(m, x, y, torch.ones(2, 39, dtype=torch.bool), epochs=1)
    with pytest.raises(ValueError, match="keep"):
        fit_stacked(m, x, y, torch.ones(2, 40), epochs=1)


# --- StackedNet (torch.func), chunks, own batches, augmentation: the `full` profile's machinery on the CPU ---

from torch import nn

from leaklab import get_profile
from leaklab.data import random_crop_flip
from leaklab.models import ResNetGN, StackedNet, build_stacked
from leaklab.train import predict_stacked, train_membership_models


def _images(n=48, k=4, seed=0, size=8):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, size, size, generator=g), torch.randint(0, k, (n,), generator=g)


def _resnets(m=3, chunk=None, seed=0, vectorize=True):
    return build_stacked("resnet_gn", m, (3, 8, 8), 4, seed=seed, chunk=chunk, vectorize=vectorize, depth=8, width=8)


def test_resnet_gn_is_the_cifar_resnet():
    assert sum(p.numel() for p in ResNetGN(3, 10).parameters()) == 272_474      # ResNet-20 with option-B projections
    assert ResNetGN(3, 10, depth=8)(torch.rand(2, 3, 32, 32)).shape == (2, 10)
    with pytest.raises(ValueError, match="6n"):
        ResNetGN(3, 10, depth=21)
    with pytest.raises(ValueError, match="multiple"):
        ResNetGN(3, 10, width=12)


@pytest.mark.parametrize("vectorize", [True, False])
def test_stacked_net_members_are_the_same_functions_shared_and_per_model_inputs(vectorize):
    m = _resnets(vectorize=vectorize)
    x, _ = _images(6)
    out = m(x)
    assert out.shape == (3, 6, 4)
    assert not torch.allclose(out[0], out[1]), "models must be initialised differently"
    per = m(torch.stack([x, x.flip(0), x]), per_model=True)
    for i in range(3):
        net = m.member(i)
        assert isinstance(net, ResNetGN)
        assert torch.allclose(net(x), out[i], atol=1e-5)
    assert torch.allclose(per[1], m.member(1)(x.flip(0)), atol=1e-5)
    assert torch.allclose(m(x, members=slice(1, 3)), out[1:], atol=1e-6)


def test_stacked_net_refuses_batchnorm():
    with pytest.raises(ValueError, match="GroupNorm"):
        StackedNet(lambda: nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)), 2, seed=0)


@pytest.mark.parametrize("batches", ["shared", "own"])
def test_training_in_chunks_is_the_same_update(batches):
    x, y = _images()
    keep = torch.rand(3, 48, generator=torch.Generator().manual_seed(1)) < 0.5
    outs = []
    for chunk, vectorize in ((None, True), (1, True), (2, True), (2, False)):
        m = _resnets(chunk=chunk, vectorize=vectorize)
        fit_stacked(m, x, y, keep, epochs=2, lr=3e-3, batch_size=8, seed=1, batches=batches, schedule="onecycle",
                    augment=random_crop_flip)
        outs.append(predict_stacked(m, x))
    assert all(torch.allclose(outs[0], o, atol=1e-4) for o in outs[1:])
    assert torch.allclose(predict_stacked(m, x, batch_size=5, chunk=1), outs[3], atol=1e-5)


@pytest.mark.parametrize("batches", ["shared", "own"])
def test_a_model_is_unaffected_by_what_only_other_models_train_on(batches):
    x, y = _images()
    keep = torch.rand(3, 48, generator=torch.Generator().manual_seed(2)) < 0.5
    y2 = y.clone()
    only_others = ~keep[0]
    y2[only_others] = (y2[only_others] + 1) % 4                 # relabel what model 0 never trains on
    a, b = _resnets(), _resnets()
    fit_stacked(a, x, y, keep, epochs=2, lr=3e-3, batch_size=8, seed=3, batches=batches)
    fit_stacked(b, x, y2, keep, epochs=2, lr=3e-3, batch_size=8, seed=3, batches=batches)
    assert torch.allclose(a(x)[0], b(x)[0], atol=1e-5), "model 0's gradients mixed with the other models'"
    assert not torch.allclose(a(x)[1], b(x)[1], atol=1e-3), "model 1 trains on the relabelled examples"


def test_own_batches_reject_a_model_without_examples_and_unknown_options():
    x, y = _images()
    with pytest.raises(ValueError, match="one row"):
        fit_stacked(StackedMLP(3, 192, 8, 4, seed=0), x, y, torch.ones(1, 48, dtype=torch.bool), epochs=1)
    with pytest.raises(ValueError, match="chunk"):
        fit_stacked(StackedMLP(3, 192, 8, 4, seed=0), x, y, torch.ones(3, 48, dtype=torch.bool), epochs=1, chunk=0)
    with pytest.raises(ValueError, match="labels"):
        train_membership_models(get_profile("ci"), x, y + 10, torch.ones(3, 48, dtype=torch.bool), seed=0)
    keep = torch.ones(2, 48, dtype=torch.bool)
    keep[1] = False
    with pytest.raises(ValueError, match="keep at least one"):
        fit_stacked(StackedMLP(2, 192, 8, 4, seed=0), x, y, keep, epochs=1, batches="own")
    with pytest.raises(ValueError, match="batches"):
        fit_stacked(StackedMLP(2, 192, 8, 4, seed=0), x, y, keep, epochs=1, batches="mine")
    with pytest.raises(ValueError, match="schedule"):
        fit_stacked(StackedMLP(2, 192, 8, 4, seed=0), x, y, keep, epochs=1, schedule="cosine")


def test_random_crop_flip_shifts_and_mirrors_each_image():
    x = torch.rand(64, 3, 8, 8)
    same = random_crop_flip(x, torch.Generator().manual_seed(0), padding=0)
    assert all(torch.equal(s, i) or torch.equal(s, i.flip(-1)) for s, i in zip(same, x))
    flipped = sum(torch.equal(s, i.flip(-1)) for s, i in zip(same, x))
    assert 16 <= flipped <= 48, f"{flipped} of 64 flipped; expected about half"
    a = random_crop_flip(x, torch.Generator().manual_seed(1))
    assert a.shape == x.shape and torch.equal(a, random_crop_flip(x, torch.Generator().manual_seed(1)))
    # a crop of the zero-padded image: every row of the output is a (possibly mirrored) window of an input row or zeros
    assert float(a.min()) >= 0 and float(a.max()) <= 1
    with pytest.raises(ValueError, match="N, C, H, W"):
        random_crop_flip(x[0], torch.Generator())


def test_train_membership_models_is_the_ci_recipe_exactly():
    p = get_profile("ci")
    x, y = _images(64, k=10)
    keep = torch.rand(3, 64, generator=torch.Generator().manual_seed(4)) < 0.5
    models, hist = train_membership_models(p, x, y, keep, seed=5, epochs=2)
    ref = StackedMLP(3, 192, p.mia_hidden, 10, seed=5)
    assert p.mia_batches == "own"                      # the target draws its own batches, not its references'
    ref_hist = fit_stacked(ref, x, y, keep, epochs=2, lr=p.mia_lr, batch_size=p.mia_batch, seed=5, batches="own")
    assert isinstance(models, StackedMLP) and hist.loss == ref_hist.loss
    assert torch.equal(models(x), ref(x))


def test_full_profile_trains_stacked_resnets_on_cifar_shaped_inputs():
    p = get_profile("full").replace(mia_epochs=1, mia_batch=16, mia_depth=8, mia_width=8)
    assert p.mia_model == "resnet_gn" and p.n_reference >= 16 and p.mia_batches == "own" and p.mia_augment
    x, y = _images(40, k=10, size=32)
    keep = torch.rand(3, 40, generator=torch.Generator().manual_seed(6)) < 0.5
    models, hist = train_membership_models(p, x, y, keep, seed=0)
    assert isinstance(models, StackedNet) and models.chunk == p.mia_chunk and len(hist.loss) == 1
    assert predict_stacked(models, x).shape == (3, 40, 10)
