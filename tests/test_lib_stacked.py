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
