"""Grading invariants 1 and 3 for a1, in one live kernel.

The source notebook (the reference solution) is executed once; every test cell must
pass. Then each plausible wrong answer replaces one function, only the test cells aimed
at it are re-run, and each must now fail. Invariant 2 (the blank release earns 0) is
shown through nbgrader itself in test_pipeline.py.
"""
from __future__ import annotations

from kernel import invariant_tests, targets_passed_by

A1_TESTS = {
    "a1_p1_commitment_visible", "a1_p1_commitment_hidden", "a1_p2_keygen_visible", "a1_p2_keygen_hidden",
    "a1_p3_mark_visible", "a1_p3_mark_hidden", "a1_p4_verify_visible", "a1_p4_verify_hidden",
    "a1_p5_finetune_visible", "a1_p5_finetune_hidden",
}


# Mark as the text specifies it, with one piece to vary (the wrong answers below)
_MARK = '''
def mark(model, mk, train_data, mode, profile, seed=0):
    if mode not in ("FROMSCRATCH", "PRETRAINED"):
        raise ValueError(f"unknown mode {{mode!r}}")
    marked = copy.deepcopy(model)
    reps = {reps}
    data = ConcatDataset([train_data, TensorDataset(mk.triggers.repeat(reps, 1, 1, 1), mk.labels.repeat(reps))])
    if mode == "FROMSCRATCH":
        {reinit}
        epochs, lr = profile.epochs, profile.lr
    else:
        epochs, lr = profile.pretrained_epochs, {lr}
    fit(marked, data, epochs=epochs, lr=lr, batch_size=profile.batch_size, {seed})
    return marked.eval()
'''
_REINIT = """with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            for m in marked.modules():
                if hasattr(m, "reset_parameters"):
                    m.reset_parameters()"""


# name -> (a wrong definition, the test cells that must catch it)
WRONG = {
    "commitment without a nonce": ('''
def commit(value, nonce=None):
    nonce = b"\\0" * 16 if nonce is None else nonce
    return hashlib.sha256(nonce + canonical_bytes(value)).hexdigest(), nonce
''', ["a1_p1_commitment_visible", "a1_p1_commitment_hidden"]),
    "commitment over the value only (nonce ignored)": ('''
def commit(value, nonce=None):
    nonce = secrets.token_bytes(16) if nonce is None else nonce
    return hashlib.sha256(canonical_bytes(value)).hexdigest(), nonce
''', ["a1_p1_commitment_visible", "a1_p1_commitment_hidden"]),
    "commitment that takes a nonce of any length from 16 bytes (r || enc(x) ambiguous)": ('''
def commit(value, nonce=None):
    nonce = secrets.token_bytes(16) if nonce is None else nonce
    if len(nonce) < 16:
        raise ValueError("the nonce needs at least 16 bytes")
    return hashlib.sha256(nonce + canonical_bytes(value)).hexdigest(), nonce
''', ["a1_p1_commitment_hidden"]),
    "KeyGen whose labels may equal f(t)": ('''
def keygen(n, f, num_classes, shape, generator):
    triggers = abstract_images(n, shape, generator)
    labels = torch.randint(0, num_classes, (n,), generator=generator)
    img = [commit(t) for t in triggers]
    lab = [commit(int(y)) for y in labels]
    return (MarkingKey(triggers, labels, [r for _, r in img], [r for _, r in lab]),
            VerificationKey([c for c, _ in img], [c for c, _ in lab]))
''', ["a1_p2_keygen_hidden"]),
    "Mark that trains the given model in place": ('''
_ref_mark = mark
def mark(model, mk, train_data, mode, profile, seed=0):
    out = _ref_mark(model, mk, train_data, mode, profile, seed)
    model.load_state_dict(out.state_dict())
    return model
''', ["a1_p3_mark_visible"]),
    "Mark that forgets the trigger set": ('''
def mark(model, mk, train_data, mode, profile, seed=0):
    marked = copy.deepcopy(model)
    fit(marked, train_data, epochs=profile.pretrained_epochs, lr=profile.lr / 2,
        batch_size=profile.batch_size, seed=seed)
    return marked.eval()
''', ["a1_p3_mark_visible", "a1_p3_mark_hidden"]),
    "Verify that skips the commitment check": ('''
def verify(mk, vk, api, f, eps):
    if (mk.labels == f(mk.triggers)).any():
        return 0
    wrong = int((api.query(mk.triggers) != mk.labels).sum())
    return int(wrong <= eps * len(mk.triggers))
''', ["a1_p4_verify_hidden"]),
    "Verify that skips step 1 (T_L(t) != f(t))": ('''
def verify(mk, vk, api, f, eps):
    for i in range(len(mk.triggers)):
        if not (open_commitment(vk.image_commitments[i], mk.triggers[i], mk.image_nonces[i])
                and open_commitment(vk.label_commitments[i], int(mk.labels[i]), mk.label_nonces[i])):
            return 0
    wrong = int((api.query(mk.triggers) != mk.labels).sum())
    return int(wrong <= eps * len(mk.triggers))
''', ["a1_p4_verify_hidden"]),
    "Verify with an off-by-one tolerance (< instead of <=)": ('''
_ref_verify = verify
def verify(mk, vk, api, f, eps):
    if _ref_verify(mk, vk, api, f, 1.0) == 0:
        return 0
    wrong = int((api.query(mk.triggers) != mk.labels).sum())
    return int(wrong < eps * len(mk.triggers))
''', ["a1_p4_verify_hidden"]),
    "Verify that compares wrong <= eps * |T| in floating point": ('''
def verify(mk, vk, api, f, eps):
    n = len(mk.triggers)
    if (torch.as_tensor(mk.labels) == torch.as_tensor(f(mk.triggers))).any():
        return 0
    if len(vk.image_commitments) != n or len(vk.label_commitments) != n:
        return 0
    for i in range(n):
        if not (open_commitment(vk.image_commitments[i], mk.triggers[i], mk.image_nonces[i])
                and open_commitment(vk.label_commitments[i], int(mk.labels[i]), mk.label_nonces[i])):
            return 0
    wrong = int((api.query(mk.triggers) != mk.labels).sum())
    return int(wrong <= eps * n)
''', ["a1_p4_verify_hidden"]),
    "FTLL that fine-tunes every layer": ('''
def fine_tune_attack(model, data, mode, epochs, lr, batch_size=64, seed=0, on_epoch=None):
    attacked = copy.deepcopy(model)
    hist = fit(attacked, data, epochs=epochs, lr=lr, batch_size=batch_size, seed=seed, on_epoch=on_epoch)
    return attacked, hist
''', ["a1_p5_finetune_visible", "a1_p5_finetune_hidden"]),
    "only FTLL and FTAL (RTLL/RTAL rejected)": ('''
def fine_tune_attack(model, data, mode, epochs, lr, batch_size=64, seed=0, on_epoch=None):
    if mode not in ("FTLL", "FTAL"):
        raise ValueError(mode)
    attacked = copy.deepcopy(model)
    params = last_layer(attacked).parameters() if mode == "FTLL" else attacked.parameters()
    hist = fit(attacked, data, epochs=epochs, lr=lr, batch_size=batch_size, seed=seed, params=params, on_epoch=on_epoch)
    return attacked.eval(), hist
''', ["a1_p5_finetune_visible", "a1_p5_finetune_hidden"]),
    "RTLL/RTAL that do not re-initialise the last layer": ('''
def fine_tune_attack(model, data, mode, epochs, lr, batch_size=64, seed=0, on_epoch=None):
    if mode not in ("FTLL", "FTAL", "RTLL", "RTAL"):
        raise ValueError(mode)
    attacked = copy.deepcopy(model)
    params = last_layer(attacked).parameters() if mode.endswith("LL") else attacked.parameters()
    hist = fit(attacked, data, epochs=epochs, lr=lr, batch_size=batch_size, seed=seed, params=params, on_epoch=on_epoch)
    return attacked.eval(), hist
''', ["a1_p5_finetune_visible", "a1_p5_finetune_hidden"]),
    "an unseeded re-initialisation": ('''
def fine_tune_attack(model, data, mode, epochs, lr, batch_size=64, seed=0, on_epoch=None):
    if mode not in ("FTLL", "FTAL", "RTLL", "RTAL"):
        raise ValueError(mode)
    attacked = copy.deepcopy(model)
    if mode.startswith("RT"):
        last_layer(attacked).reset_parameters()
    params = last_layer(attacked).parameters() if mode.endswith("LL") else attacked.parameters()
    hist = fit(attacked, data, epochs=epochs, lr=lr, batch_size=batch_size, seed=seed, params=params, on_epoch=on_epoch)
    return attacked.eval(), hist
''', ["a1_p5_finetune_hidden"]),
    "FTLL in a hand-written loop that lets BatchNorm statistics move": ('''
def fine_tune_attack(model, data, mode, epochs, lr, batch_size=64, seed=0, on_epoch=None):
    from leaklab.train import History
    if mode not in ("FTLL", "FTAL", "RTLL", "RTAL"):
        raise ValueError(mode)
    attacked = copy.deepcopy(model)
    if mode.startswith("RT"):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            last_layer(attacked).reset_parameters()
    for q in attacked.parameters():
        q.requires_grad_(mode.endswith("AL"))
    for q in last_layer(attacked).parameters():
        q.requires_grad_(True)
    opt = torch.optim.SGD([q for q in attacked.parameters() if q.requires_grad], lr=lr, momentum=0.9)
    loader = torch.utils.data.DataLoader(data, batch_size=batch_size, shuffle=True,
                                         generator=torch.Generator().manual_seed(seed))
    hist = History()
    for _ in range(epochs):
        attacked.train()
        total, n = 0.0, 0
        for xb, yb in loader:
            loss = nn.functional.cross_entropy(attacked(xb), yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
            total, n = total + loss.item() * len(yb), n + len(yb)
        hist.loss.append(total / n)
        if on_epoch is not None:
            attacked.eval()
            for k, v in on_epoch(attacked).items():
                hist.metrics.setdefault(k, []).append(float(v))
    return attacked.eval(), hist
''', ["a1_p5_finetune_hidden"]),
    # issue 18: half-understood specifications, each written from the paper or found surviving by
    # tests/benchmarks/mutation.py; the hidden tests now check the sentence each one violates
    "FROMSCRATCH that keeps the given weights (no re-initialisation)": (_MARK.format(reinit="pass", lr="profile.lr / 2",
                                                                         reps="profile.trigger_repeats", seed="seed=seed"),
                                                                   ["a1_p3_mark_hidden"]),
    "PRETRAINED at the full learning rate": (_MARK.format(reinit=_REINIT, lr="profile.lr", reps="profile.trigger_repeats",
                                                          seed="seed=seed"), ["a1_p3_mark_hidden"]),
    "Mark with one copy of the trigger set (trigger_repeats ignored)": (
        _MARK.format(reinit=_REINIT, lr="profile.lr / 2", reps="1", seed="seed=seed"), ["a1_p3_mark_hidden"]),
    "Mark whose shuffling ignores the seed (fit's default)": (
        _MARK.format(reinit=_REINIT, lr="profile.lr / 2", reps="profile.trigger_repeats", seed="seed=0"),
        ["a1_p3_mark_hidden"]),
    "Verify that opens the commitments pairwise with zip (a key of another length passes)": ('''
def verify(mk, vk, api, f, eps):
    if (torch.as_tensor(mk.labels) == torch.as_tensor(f(mk.triggers))).any():
        return 0
    for c_img, c_lab, t, y, r_img, r_lab in zip(vk.image_commitments, vk.label_commitments, mk.triggers, mk.labels,
                                                mk.image_nonces, mk.label_nonces):
        if not (open_commitment(c_img, t, r_img) and open_commitment(c_lab, int(y), r_lab)):
            return 0
    wrong = int((api.query(mk.triggers) != mk.labels).sum())
    return int(wrong <= math.floor(Fraction(str(eps)) * len(mk.triggers)))
''', ["a1_p4_verify_hidden"]),
    "fine_tune_attack that leaves batch_size to fit's default": ('''
_ref_fta = fine_tune_attack
def fine_tune_attack(model, data, mode, epochs, lr, batch_size=64, seed=0, on_epoch=None):
    return _ref_fta(model, data, mode, epochs, lr, 64, seed, on_epoch)
''', ["a1_p5_finetune_hidden"]),
}


reference, test_reference_passes_every_test_cell, test_wrong_answer_loses_the_targeted_points = invariant_tests(
    "a1_watermarking", A1_TESTS, WRONG)


def test_the_mark_template_is_the_reference_when_unchanged(reference):
    kernel, nb, _ = reference
    right = _MARK.format(reinit=_REINIT, lr="profile.lr / 2", reps="profile.trigger_repeats", seed="seed=seed")
    passed = targets_passed_by(kernel, nb, right, ["a1_p3_mark_visible", "a1_p3_mark_hidden"])
    assert len(passed) == 2, "the template behind the Mark wrong answers must pass when nothing is changed"
