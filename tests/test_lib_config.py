"""Tests for leaklab.config (profiles), leaklab.repro (seeds, devices) and leaklab.setup."""
from __future__ import annotations

import dataclasses

import pytest
import torch

import leaklab
from leaklab.config import PROFILES, Profile, get_profile
from leaklab.repro import autocast, get_device, numpy_generator, seed_everything, torch_generator


# --------------------------------------------------------------------------- profiles

@pytest.mark.parametrize("name", ["ci", "full"])
def test_get_profile_by_name_returns_the_preset(name):
    prof = get_profile(name)
    assert isinstance(prof, Profile)
    assert prof is PROFILES[name]
    assert prof.name == name


def test_presets_are_one_table_with_consistent_names_and_sizes():
    assert set(PROFILES) == {"ci", "full"}
    for key, prof in PROFILES.items():
        assert prof.name == key
        for f in ("n_train", "n_attacker", "n_test", "batch_size", "epochs", "n_triggers"):
            assert isinstance(getattr(prof, f), int) and getattr(prof, f) > 0, f
        assert 0.0 <= prof.verify_eps < 1.0
    assert PROFILES["ci"].dataset == "mnist_subset" and PROFILES["ci"].model == "small_cnn"
    assert PROFILES["full"].dataset == "cifar10" and PROFILES["full"].model == "resnet18"
    # the ci split must fit the 5,000-image MNIST subset
    ci = PROFILES["ci"]
    assert ci.n_train + ci.n_attacker + ci.n_test <= 5000


@pytest.mark.parametrize("bad", ["CI", "gpu", "", " ci2"])
def test_unknown_profile_raises_value_error_listing_valid_names(bad):
    with pytest.raises(ValueError) as info:
        get_profile(bad)
    msg = str(info.value)
    assert "ci" in msg and "full" in msg
    assert repr(bad) in msg


@pytest.mark.parametrize("env, expected", [("ci", "ci"), ("full", "full"), ("  full  ", "full")])
def test_env_var_selects_the_profile(monkeypatch, env, expected):
    monkeypatch.setenv("LEAKLAB_PROFILE", env)
    # the hardware points the other way: it must not matter once the variable is set
    monkeypatch.setattr(torch.cuda, "is_available", lambda: expected == "ci")
    assert get_profile().name == expected
    assert get_profile(None).name == expected


def test_unknown_env_var_value_raises_value_error(monkeypatch):
    monkeypatch.setenv("LEAKLAB_PROFILE", "laptop")
    with pytest.raises(ValueError, match="laptop"):
        get_profile()


def test_explicit_name_wins_over_env_var(monkeypatch):
    monkeypatch.setenv("LEAKLAB_PROFILE", "full")
    assert get_profile("ci").name == "ci"


@pytest.mark.parametrize("unset", ["delete", "empty"])
@pytest.mark.parametrize("cuda, expected", [(False, "ci"), (True, "full")])
def test_unset_env_var_chooses_by_hardware(monkeypatch, unset, cuda, expected):
    if unset == "delete":
        monkeypatch.delenv("LEAKLAB_PROFILE", raising=False)
    else:
        monkeypatch.setenv("LEAKLAB_PROFILE", "")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    assert get_profile().name == expected


def test_profile_is_frozen_and_replace_makes_a_copy():
    prof = get_profile("ci")
    with pytest.raises(dataclasses.FrozenInstanceError):
        prof.epochs = 1
    with pytest.raises(dataclasses.FrozenInstanceError):
        prof.name = "mine"
    small = prof.replace(epochs=1, n_train=100)
    assert (small.epochs, small.n_train) == (1, 100)
    assert small is not prof
    assert (prof.epochs, prof.n_train) == (8, 3000)         # the preset itself is untouched
    assert PROFILES["ci"].epochs == 8
    assert small == dataclasses.replace(prof, epochs=1, n_train=100)


# --------------------------------------------------------------------------- repro

def test_seed_everything_makes_global_draws_reproducible():
    import random

    import numpy as np

    seed_everything(123)
    a = (random.random(), np.random.rand(), torch.rand(3))
    seed_everything(123)
    b = (random.random(), np.random.rand(), torch.rand(3))
    assert a[0] == b[0] and a[1] == b[1] and torch.equal(a[2], b[2])


@pytest.mark.parametrize("bad", [-1, 1.5, "0", None])
def test_seed_everything_rejects_bad_seeds(bad):
    with pytest.raises(ValueError):
        seed_everything(bad)


def test_generators_are_private_and_reproducible():
    state = torch.get_rng_state()
    g1, g2 = torch_generator(7), torch_generator(7)
    assert torch.equal(torch.rand(5, generator=g1), torch.rand(5, generator=g2))
    assert not torch.equal(torch.rand(5, generator=torch_generator(7)),
                           torch.rand(5, generator=torch_generator(8)))
    assert torch.equal(torch.get_rng_state(), state)       # the global RNG was not used
    assert numpy_generator(3).random() == numpy_generator(3).random()


def test_get_device(monkeypatch):
    assert get_device("cpu") == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert get_device("auto") == torch.device("cpu")
    assert get_device() == torch.device("cpu")
    with pytest.raises(ValueError, match="CUDA"):
        get_device("cuda")
    with pytest.raises(ValueError, match="CUDA"):
        get_device("cuda:1")
    with pytest.raises(ValueError, match="tpu"):
        get_device("tpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert get_device("auto") == torch.device("cuda")
    assert get_device("cuda:1") == torch.device("cuda:1")


def test_autocast_is_a_no_op_on_cpu():
    lin = torch.nn.Linear(4, 2)
    with autocast(torch.device("cpu")):
        out = lin(torch.ones(1, 4))
    assert out.dtype == torch.float32


def test_setup_prints_one_line_and_returns_profile_and_device(monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    prof, device = leaklab.setup(seed=5, profile="ci")
    out = capsys.readouterr().out.strip().splitlines()
    assert prof is PROFILES["ci"] and device == torch.device("cpu")
    assert len(out) == 1
    assert "profile=ci" in out[0] and "device=cpu" in out[0] and "seed=5" in out[0]
    with pytest.raises(ValueError):
        leaklab.setup(profile="nope")


@pytest.mark.parametrize("env, grader, asked, expect, why", [
    ({}, "", None, "ci", "no GPU found; set PROFILE to choose"),
    ({"LEAKLAB_PROFILE": "full"}, "", None, "full", "from LEAKLAB_PROFILE"),
    ({"LEAKLAB_PROFILE": "full"}, "", "ci", "ci", "chosen in this notebook"),
    ({}, "ci", "full", "ci", "the grader's; this notebook asked for full"),
    ({}, "ci", None, "ci", "the grader's"),
])
def test_setup_says_which_rule_chose_the_profile_and_the_grader_wins(monkeypatch, capsys, env, grader, asked,
                                                                     expect, why):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.delenv("LEAKLAB_PROFILE", raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv(leaklab.GRADER_PROFILE_ENV, grader)
    prof, _ = leaklab.setup(profile=asked)
    assert prof.name == expect and f"profile={expect} ({why})," in capsys.readouterr().out
    with pytest.raises(ValueError, match="valid profiles"):
        leaklab.setup(profile="fulll")                 # a typo is an error, graded or not
