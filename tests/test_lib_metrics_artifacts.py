"""Tests for leaklab.metrics (against scikit-learn), leaklab.artifacts (against hashlib and
struct) and the input checks of leaklab.plots."""
from __future__ import annotations

import hashlib
import json
import struct

import numpy as np
import pytest
import torch
from sklearn.metrics import accuracy_score

from leaklab.artifacts import (canonical_bytes, load_json, load_weights, save_json, save_weights,
                               sha256_file)
from leaklab.metrics import accuracy, agreement
from leaklab.models import build_model


def _rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


# --------------------------------------------------------------------------- metrics

@pytest.mark.parametrize("n, k, seed", [(1, 2, 0), (7, 3, 1), (100, 10, 2), (1000, 5, 3)])
def test_accuracy_matches_sklearn_on_labels(n, k, seed):
    rng = _rng(seed)
    t, p = rng.integers(0, k, n), rng.integers(0, k, n)
    assert accuracy(t, p) == pytest.approx(accuracy_score(t, p))
    assert accuracy(torch.from_numpy(t), torch.from_numpy(p)) == pytest.approx(accuracy_score(t, p))
    assert accuracy(t.tolist(), p.tolist()) == pytest.approx(accuracy_score(t, p))
    assert isinstance(accuracy(t, p), float)


@pytest.mark.parametrize("n, k, seed", [(5, 2, 0), (64, 10, 1)])
def test_accuracy_takes_argmax_of_scores(n, k, seed):
    rng = _rng(seed)
    t = rng.integers(0, k, n)
    scores = rng.normal(size=(n, k)).astype(np.float32)         # (N, K) logits
    ref = accuracy_score(t, scores.argmax(1))
    assert accuracy(t, scores) == pytest.approx(ref)
    assert accuracy(torch.from_numpy(t), torch.from_numpy(scores).requires_grad_()) == pytest.approx(ref)
    assert accuracy(t, torch.softmax(torch.from_numpy(scores), 1)) == pytest.approx(ref)


def test_accuracy_hand_computed_values():
    assert accuracy([0, 1, 2, 3], [0, 1, 2, 3]) == 1.0
    assert accuracy([0, 1, 2, 3], [3, 2, 1, 0]) == 0.0
    assert accuracy([0, 1, 2, 3], [0, 1, 0, 0]) == 0.5


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_agreement_matches_sklearn_and_is_symmetric(seed):
    rng = _rng(seed)
    a, b = rng.normal(size=(50, 4)), rng.normal(size=(50, 4))    # two models' (N, K) scores
    ref = accuracy_score(a.argmax(1), b.argmax(1))
    assert agreement(a, b) == pytest.approx(ref)
    assert agreement(b, a) == pytest.approx(ref)
    assert agreement(a, b.argmax(1)) == pytest.approx(ref)        # labels and scores mix
    assert agreement(a, a) == 1.0


@pytest.mark.parametrize("fn", [accuracy, agreement])
@pytest.mark.parametrize("a, b", [([0, 1, 2], [0, 1]), ([], []), (np.zeros((2, 2, 2)), [0, 1]),
                                  ([0, 1], np.zeros((3, 4)))])
def test_metrics_reject_mismatched_empty_or_3d_inputs(fn, a, b):
    with pytest.raises(ValueError):
        fn(a, b)


def test_accuracy_column_of_labels_is_not_silently_wrong():
    t = np.array([0, 1, 2, 1])
    try:
        got = accuracy(t.reshape(-1, 1), t)
    except ValueError:
        return
    assert got == pytest.approx(accuracy_score(t.reshape(-1, 1), t))    # 1.0


# --------------------------------------------------------------------------- canonical_bytes

def _digest(value) -> str:
    return hashlib.sha256(canonical_bytes(value)).hexdigest()


def test_canonical_bytes_layout_against_struct():
    x = np.array([[1, -2, 3], [4, 5, -6]], dtype=np.int32)
    expected = b"leaklab/1|<i4|2,3|" + struct.pack("<6i", 1, -2, 3, 4, 5, -6)
    assert canonical_bytes(x) == expected
    assert canonical_bytes(torch.from_numpy(x)) == expected
    f = torch.tensor([0.5, -1.25], dtype=torch.float32)
    assert canonical_bytes(f) == b"leaklab/1|<f4|2|" + struct.pack("<2f", 0.5, -1.25)
    b = torch.tensor([True, False])
    assert canonical_bytes(b) == b"leaklab/1|" + np.dtype(bool).str.encode() + b"|2|\x01\x00"


def test_numpy_integer_scalars_keep_their_dtype():
    assert canonical_bytes(np.int32(-3)) == b"leaklab/1|<i4||" + struct.pack("<i", -3)
    assert canonical_bytes(np.int32(-3)) != canonical_bytes(-3)


@pytest.mark.parametrize("value", [0, 7, -3, 2**40, np.int64(7)])
def test_ints_are_encoded_as_int64(value):
    out = canonical_bytes(value)
    assert out.startswith(b"leaklab/1|<i8|")
    assert out.endswith(struct.pack("<q", int(value)))
    assert _digest(value) == _digest(torch.tensor(int(value), dtype=torch.int64))
    assert _digest(value) == _digest(np.array(int(value), dtype=np.int64))


def test_equal_values_in_any_layout_give_equal_bytes():
    base = torch.arange(24, dtype=torch.float32).reshape(2, 3, 4) / 7       # (2, 3, 4)
    ref = _digest(base)
    transposed = base.transpose(0, 2).contiguous().transpose(0, 2)          # same values, strides differ
    assert not transposed.is_contiguous() and torch.equal(transposed, base)
    assert _digest(transposed) == ref
    sliced = torch.zeros(2, 3, 8)
    sliced[..., ::2] = base
    assert _digest(sliced[..., ::2]) == ref                                 # a strided view
    assert _digest(base.numpy()) == ref                                     # torch and NumPy agree
    assert _digest(np.asfortranarray(base.numpy())) == ref                  # Fortran order
    assert _digest(base.numpy().astype(">f4")) == ref                       # big-endian
    rev = base.numpy()[::-1].copy()[::-1]                                   # negative strides
    assert rev.strides[0] < 0 and _digest(rev) == ref
    assert _digest(base.clone().requires_grad_()) == ref                    # autograd flag ignored


def test_channels_last_memory_format_gives_equal_bytes():
    x = torch.rand(2, 3, 4, 5, generator=torch.Generator().manual_seed(0))  # (N, C, H, W)
    cl = x.contiguous(memory_format=torch.channels_last)
    assert cl.stride() != x.stride()
    assert _digest(cl) == _digest(x)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_device_does_not_change_the_bytes():
    x = torch.rand(3, 5)
    assert canonical_bytes(x.cuda()) == canonical_bytes(x)


def test_big_endian_ints_give_equal_bytes():
    a = np.arange(-5, 5, dtype="<i8")
    assert canonical_bytes(a.astype(">i8")) == canonical_bytes(a)
    assert canonical_bytes(a.astype(">i2")) == canonical_bytes(a.astype("<i2"))


def test_different_dtype_or_shape_gives_different_bytes():
    v = np.arange(6)
    digests = {
        _digest(v.astype(np.int64)), _digest(v.astype(np.int32)), _digest(v.astype(np.uint8)),
        _digest(v.astype(np.float32)), _digest(v.astype(np.float64)),
        _digest(v.reshape(2, 3)), _digest(v.reshape(3, 2)), _digest(v.reshape(6, 1)),
        _digest(v.reshape(1, 6)),
    }
    assert len(digests) == 9
    assert _digest(np.array([1, 2])) != _digest(np.array([2, 1]))            # values matter
    assert _digest(np.zeros((0, 3))) != _digest(np.zeros((3, 0)))            # empty shapes too


def test_scalar_and_one_element_vector_differ():
    assert canonical_bytes(torch.tensor(5)) != canonical_bytes(torch.tensor([5]))
    assert canonical_bytes(5) != canonical_bytes(np.array([5]))


@pytest.mark.parametrize("bad", [True, False, np.bool_(True), 1.0, 0.5, np.float32(1), "5", b"5",
                                 [1, 2], (1,), None, {"a": 1}])
def test_canonical_bytes_rejects_other_types(bad):
    with pytest.raises(TypeError):
        canonical_bytes(bad)


# --------------------------------------------------------------------------- files

def test_sha256_file_matches_hashlib(tmp_path):
    p = tmp_path / "blob.bin"
    data = bytes(range(256)) * 5000                               # > 1 MiB: several chunks
    p.write_bytes(data)
    assert sha256_file(p) == hashlib.sha256(data).hexdigest()
    assert sha256_file(str(p)) == hashlib.sha256(data).hexdigest()


def _state(m):
    return {k: v.clone() for k, v in m.state_dict().items()}


def test_save_and_load_weights_round_trip(tmp_path):
    src = build_model("small_cnn", 1, 3, 8, seed=0)
    dst = build_model("small_cnn", 1, 3, 8, seed=1)
    path = tmp_path / "sub" / "victim.safetensors"                  # the folder is created
    digest = save_weights(src, path)
    assert digest == hashlib.sha256(path.read_bytes()).hexdigest()
    sidecar = tmp_path / "sub" / "victim.safetensors.sha256"
    assert sidecar.read_text().strip() == digest
    out = load_weights(dst, path)
    assert out is dst
    a, b = src.state_dict(), dst.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    from safetensors.torch import load_file                          # the file is plain safetensors
    raw = load_file(str(path))
    assert all(torch.equal(raw[k], a[k]) for k in a)


def test_tampered_weights_raise_value_error_and_load_nothing(tmp_path):
    src = build_model("small_cnn", 1, 3, 8, seed=0)
    path = tmp_path / "w.safetensors"
    save_weights(src, path)
    raw = bytearray(path.read_bytes())
    raw[-5] ^= 0x01                                                 # flip one bit of a weight
    path.write_bytes(bytes(raw))
    dst = build_model("small_cnn", 1, 3, 8, seed=1)
    before = _state(dst)
    with pytest.raises(ValueError, match="SHA-256"):
        load_weights(dst, path)
    after = dst.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_load_weights_missing_file_raises_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_weights(build_model("small_cnn", 1, 3, 8, seed=0), tmp_path / "nope.safetensors")


def test_json_round_trip_is_sorted(tmp_path):
    obj = {"b": [1, 2.5], "a": {"z": None, "y": "s"}}
    path = tmp_path / "d" / "m.json"
    save_json(obj, path)
    assert load_json(path) == obj
    text = path.read_text()
    assert text == json.dumps(obj, indent=2, sort_keys=True) + "\n"
    assert text.index('"a"') < text.index('"b"')


# --------------------------------------------------------------------------- plots (input checks)

def test_image_grid_checks_its_inputs():
    plt = pytest.importorskip("matplotlib.pyplot")
    from leaklab.plots import curves, image_grid

    fig = image_grid(torch.rand(5, 1, 6, 6), titles=list("abcde"), ncols=3)
    try:
        assert len(fig.axes) == 6                                   # 2 rows x 3 columns
    finally:
        plt.close(fig)
    with pytest.raises(ValueError):
        image_grid(torch.rand(5, 2, 6, 6))                          # 2 channels
    with pytest.raises(ValueError):
        image_grid(torch.rand(6, 6))                                # not (N, C, H, W)
    with pytest.raises(ValueError):
        image_grid(torch.rand(3, 3, 6, 6), titles=["a"])
    fig = curves({"acc": [0.1, 0.5, 0.9], "fid": [0.2, 0.4, 0.8]}, "epoch", "accuracy (fraction)")
    try:
        assert len(fig.axes[0].lines) == 2
    finally:
        plt.close(fig)


def test_weights_without_their_recorded_hash_need_an_explicit_opt_out(tmp_path):
    src = build_model("small_cnn", 1, 3, 8, seed=0)
    path = tmp_path / "w.safetensors"
    save_weights(src, path)
    (tmp_path / "w.safetensors.sha256").unlink()
    with pytest.raises(FileNotFoundError, match="check_hash=False"):
        load_weights(build_model("small_cnn", 1, 3, 8, seed=1), path)
    out = load_weights(build_model("small_cnn", 1, 3, 8, seed=1), path, check_hash=False)
    assert all(torch.equal(out.state_dict()[k], v) for k, v in src.state_dict().items())
