"""Tests for leaklab.pools: the attacker's query pools (a2)."""
from __future__ import annotations

import pytest
import torch

from leaklab.data import DatasetUnavailableError, load_image_dataset
from leaklab.pools import load_query_pool


def test_digits_pool_is_real_unlabeled_mnist_shaped_data():
    x = load_query_pool("digits")
    assert x.dtype == torch.float32 and x.shape == (1797, 1, 28, 28)
    assert float(x.min()) >= 0 and float(x.max()) <= 1
    assert float(x[:, :, :5].abs().max()) == 0 and float(x[:, :, :, -5:].abs().max()) == 0   # an 18x18 box, centred
    mnist = load_image_dataset("mnist_subset").x
    # not the victim's data: no pool image is (close to) an MNIST image
    d = torch.cdist(x[:200].flatten(1), mnist.flatten(1)).min(1).values
    assert float(d.min()) > 1.0


def test_views_are_reproducible_and_leave_the_global_rng_alone():
    state = torch.get_rng_state()
    a = load_query_pool("digits", views=1, seed=3)
    assert torch.equal(torch.get_rng_state(), state)
    b = load_query_pool("digits", views=1, seed=3)
    c = load_query_pool("digits", views=1, seed=4)
    assert a.shape == (2 * 1797, 1, 28, 28) and torch.equal(a, b) and not torch.equal(a, c)
    assert torch.equal(a[:1797], load_query_pool("digits"))          # originals first
    assert float(a.min()) >= 0 and float(a.max()) <= 1


@pytest.mark.parametrize("name, views", [("imagenet", 0), ("digits", -1)])
def test_bad_arguments_raise_valueerror(name, views):
    with pytest.raises(ValueError, match="pool|views"):
        load_query_pool(name, views)


def test_cifar100_offline_says_where_to_put_it(tmp_path, monkeypatch):
    monkeypatch.setenv("LEAKLAB_DATA_DIR", str(tmp_path))
    import torchvision.datasets

    def no_network(*args, download=False, **kwargs):
        if download:
            raise OSError("no network")
        raise RuntimeError("Dataset not found or corrupted.")
    monkeypatch.setattr(torchvision.datasets, "CIFAR100", no_network)
    with pytest.raises(DatasetUnavailableError, match="cifar-100-python"):
        load_query_pool("cifar100")
