"""Grading invariants 1 and 3 for a4 (MI-Face), in one live kernel; invariant 2 is in
test_demo.py through nbgrader. Needs the AT&T faces (LEAKLAB_DATA_DIR, set by the Makefile
when ../shared/data exists); skipped with the reason otherwise."""
from __future__ import annotations

import pytest

from kernel import invariant_tests, targets_passed_by

A4_TESTS = {"a4_p2_cost_visible", "a4_p2_cost_hidden", "a4_p2_mi_face_visible", "a4_p2_mi_face_hidden",
            "a4_p2_mi_face_e2e_hidden", "a4_p4_query_visible", "a4_p4_query_hidden"}


_MI_FACE = '''
def mi_face(f, label, shape, *, alpha, beta, gamma, lam, process=process, gradient=None, aux=None):
    def cost_of(x):
        with torch.no_grad():
            return float(mi_face_cost(f, x, label, aux)[0])
    def grad_of(x):
        if gradient is not None:
            return gradient(x)
        x = x.detach().requires_grad_(True)
        g, = torch.autograd.grad(mi_face_cost(f, x, label, {grad_aux}).sum(), x)
        return g
    x = torch.zeros((1,) + tuple(shape))
    xs, costs = [x], [cost_of(x)]
    for _ in range(alpha):
        x = process(x {step} lam * {direction}).detach()
        c = cost_of(x)
        window = costs[-beta:]
        xs.append(x)
        costs.append(c)
        if {stop} or c {gamma_rule} gamma:
            break
    best = {best}
    return MIFaceResult(xs[best], costs[best], costs)
'''
_RIGHT = dict(step="-", stop="c >= max(window)", best="min(range(len(costs)), key=costs.__getitem__)", grad_aux="aux",
              direction="grad_of(x)", gamma_rule="<=")

# name -> (a wrong definition, the test cells that must catch it)
WRONG = {
    "MI-Face returning the last iterate": (_MI_FACE.format(**{**_RIGHT, "best": "len(costs) - 1"}),
                                           ["a4_p2_mi_face_visible", "a4_p2_mi_face_hidden"]),
    "MI-Face stopping on the wrong comparison (c <= max)": (
        _MI_FACE.format(**{**_RIGHT, "stop": "c <= max(window)"}), ["a4_p2_mi_face_visible", "a4_p2_mi_face_hidden"]),
    "MI-Face stopping only on a strict increase (c > max)": (
        _MI_FACE.format(**{**_RIGHT, "stop": "c > max(window)"}), ["a4_p2_mi_face_hidden"]),
    "MI-Face ascending instead of descending the cost": (
        _MI_FACE.format(**{**_RIGHT, "step": "+"}), ["a4_p2_mi_face_hidden", "a4_p2_mi_face_e2e_hidden"]),
    "Eq. (6) with the wrong sign": ('''
_ref_grad = softmax_regression_gradient
def softmax_regression_gradient(W, b, x, label):
    return -_ref_grad(W, b, x, label)
''', ["a4_p2_cost_visible", "a4_p2_cost_hidden"]),
    "cost from logits instead of probabilities (1 - z_label)": ('''
def mi_face_cost(f, x, label, aux=None):
    p = f(x)
    cost = 1.0 - p.clamp_min(1e-12).log()[:, label]
    return cost if aux is None else cost + aux(x)
''', ["a4_p2_cost_visible", "a4_p2_cost_hidden"]),
    "the cost in float32 (1 - 1e-8 rounds to 1.0)": ('''
def mi_face_cost(f, x, label, aux=None):
    cost = 1.0 - f(x)[:, label]
    return cost if aux is None else cost + aux(x)
''', ["a4_p2_cost_visible"]),
    "finite differences of float32 costs (zero estimate for tiny confidences)": ('''
def fd_gradient(api, x, label, n_dirs, mu, generator):
    u = torch.randn((n_dirs,) + tuple(x.shape[1:]), generator=generator)
    cost = 1.0 - api.query(torch.cat([(x + mu * u).clamp(0, 1), (x - mu * u).clamp(0, 1)]))[:, label]
    slope = (cost[:n_dirs] - cost[n_dirs:]) / (2 * mu)
    return (slope.view(-1, *[1] * (u.dim() - 1)) * u).mean(0, keepdim=True)
''', ["a4_p4_query_hidden"]),
    "one-sided finite differences with n queries, unclipped": ('''
def fd_gradient(api, x, label, n_dirs, mu, generator):
    u = torch.randn((n_dirs,) + tuple(x.shape[1:]), generator=generator)
    c0 = 1.0 - api.query(x)[:, label]
    c = 1.0 - api.query(x + mu * u)[:, label]
    return (((c - c0) / mu).view(-1, *[1] * (u.dim() - 1)) * u).mean(0, keepdim=True)
''', ["a4_p4_query_visible", "a4_p4_query_hidden"]),
    "extraction fitting probabilities instead of log-probabilities": ('''
def extract_softmax_regression(api, shape, num_classes, generator):
    d = int(torch.tensor(shape).prod())
    xq = torch.rand((d + 1,) + tuple(shape), generator=generator)
    p = api.query(xq).double()
    A = torch.cat([xq.flatten(1).double(), torch.ones(d + 1, 1, dtype=torch.float64)], 1)
    theta = torch.linalg.lstsq(A, p[:, 1:] - p[:, :1]).solution
    model = build_model("softmax_regression", shape[0], num_classes, tuple(shape[1:]), seed=0)
    with torch.no_grad():
        model.fc.weight.zero_(); model.fc.bias.zero_()
        model.fc.weight[1:] = theta[:d].T.float()
        model.fc.bias[1:] = theta[d].float()
    return model.eval()
''', ["a4_p4_query_visible", "a4_p4_query_hidden"]),
    # issue 18: half-understood specifications, each written from the paper or found surviving by
    # tests/benchmarks/mutation.py; the hidden tests now check the sentence each one violates
    "MI-Face with the AuxTerm in the reported cost but not in the gradient": (
        _MI_FACE.format(**{**_RIGHT, "grad_aux": "None"}), ["a4_p2_mi_face_hidden"]),
    "MI-Face with a normalised step (x - lam * g / |g|, as other inversion code does)": (
        _MI_FACE.format(**{**_RIGHT, "direction": "(lambda g: g / g.norm().clamp_min(1e-12))(grad_of(x))"}),
        ["a4_p2_mi_face_hidden"]),
    "MI-Face stopping only below gamma (c < gamma)": (
        _MI_FACE.format(**{**_RIGHT, "gamma_rule": "<"}), ["a4_p2_mi_face_hidden"]),
    "Eq. (7) dividing the central difference by mu instead of 2 mu": ('''
def fd_gradient(api, x, label, n_dirs, mu, generator):
    u = torch.randn((n_dirs,) + tuple(x.shape[1:]), generator=generator)
    cost = 1.0 - api.query(torch.cat([(x + mu * u).clamp(0, 1), (x - mu * u).clamp(0, 1)]))[:, label].double()
    slope = (cost[:n_dirs] - cost[n_dirs:]) / mu
    return (slope.view(-1, *[1] * (u.dim() - 1)) * u.double()).mean(0, keepdim=True).to(x.dtype)
''', ["a4_p4_query_hidden"]),
    "perturbed images clipped only at 1 (a black image queries negative pixels)": ('''
def fd_gradient(api, x, label, n_dirs, mu, generator):
    u = torch.randn((n_dirs,) + tuple(x.shape[1:]), generator=generator)
    cost = 1.0 - api.query(torch.cat([(x + mu * u).clamp(max=1), (x - mu * u).clamp(max=1)]))[:, label].double()
    slope = (cost[:n_dirs] - cost[n_dirs:]) / (2 * mu)
    return (slope.view(-1, *[1] * (u.dim() - 1)) * u.double()).mean(0, keepdim=True).to(x.dtype)
''', ["a4_p4_query_hidden"]),
    "extraction with query images drawn without the generator": ('''
_ref_extract = extract_softmax_regression
def extract_softmax_regression(api, shape, num_classes, generator):
    return _ref_extract(api, shape, num_classes, torch.Generator().manual_seed(int(torch.randint(1 << 30, ()))))
''', ["a4_p4_query_hidden"]),
}


def _faces_or_skip():
    from leaklab.data import DatasetUnavailableError, load_faces

    try:
        load_faces()
    except DatasetUnavailableError as err:
        pytest.skip(f"AT&T faces unavailable: {err}")


reference, test_reference_passes_every_test_cell, test_wrong_answer_loses_the_targeted_points = invariant_tests(
    "a4_model_inversion", A4_TESTS, WRONG, precheck=_faces_or_skip)


def test_the_wrong_mi_face_template_is_the_reference_when_unchanged(reference):
    kernel, nb, _ = reference
    passed = targets_passed_by(kernel, nb, _MI_FACE.format(**_RIGHT), ["a4_p2_mi_face_visible", "a4_p2_mi_face_hidden"])
    assert len(passed) == 2, "the template behind the MI-Face wrong answers must pass when nothing is changed"
