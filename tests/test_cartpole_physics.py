"""One-step physics of fastdqn's CartPole against Gymnasium's own CartPole implementations."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import fastdqn

X_THRESHOLD = 2.4
THETA_THRESHOLD = 12 * 2 * math.pi / 360
N_RANDOM, N_NEAR = 100_000, 10_000  # block sizes of the ``states`` fixture (see conftest.make_states)
BACKENDS = ["torch", "numba"]
DTYPES = [torch.float32, torch.float64]
# (rtol, atol) for values, and the distance from a threshold inside which the terminated flag
# may legitimately differ from Gymnasium's float64 because of rounding: (x_tol, theta_tol).
TOL = {
    torch.float32: dict(rtol=1e-5, atol=1e-5, x_tol=1e-5, theta_tol=1e-6),
    torch.float64: dict(rtol=1e-12, atol=1e-12, x_tol=1e-12, theta_tol=1e-12),
}
NP_DTYPE = {torch.float32: np.float32, torch.float64: np.float64}


def test_state_fixture_layout(states):
    """The block sizes hard-coded here match the ``states`` fixture."""
    assert states.shape == (N_RANDOM + 2 * N_NEAR, 4)
    assert np.all(np.abs(np.abs(states[N_RANDOM : N_RANDOM + N_NEAR, 0]) - X_THRESHOLD) <= 1e-3)
    assert np.all(np.abs(np.abs(states[N_RANDOM + N_NEAR :, 2]) - THETA_THRESHOLD) <= 1e-3)


def _start_states(states: np.ndarray, dtype: torch.dtype) -> np.ndarray:
    """The states both sides start from: rounded to the env dtype, then held in float64."""
    return states.astype(NP_DTYPE[dtype]).astype(np.float64)


def _check_terminated(got, ref_term, ref_next, tol, near_threshold_mask, n_total):
    got = np.asarray(got)
    excluded = near_threshold_mask(ref_next, tol["x_tol"], tol["theta_tol"])
    assert excluded.sum() < 0.01 * n_total, f"{excluded.sum()} states excluded as near-threshold"
    mismatch = (got != ref_term) & ~excluded
    assert not mismatch.any(), f"terminated differs from Gymnasium at rows {np.flatnonzero(mismatch)[:10]}"


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_step_matches_gymnasium_vector_env(backend, dtype, states, actions, gym_reference, near_threshold_mask):
    tol = TOL[dtype]
    start = _start_states(states, dtype)
    ref_next, ref_term = gym_reference(start, actions)

    n = len(states)
    env = fastdqn.CartPole(n, backend=backend, dtype=dtype, seed=0)
    env.state = torch.tensor(start, dtype=dtype)
    assert np.array_equal(env.state.double().numpy(), start)
    result = env.step(torch.tensor(actions))

    assert isinstance(result, fastdqn.StepResult)
    assert result.final_obs.shape == (n, 4) and result.final_obs.dtype == dtype
    assert result.obs.shape == (n, 4) and result.obs.dtype == dtype
    np.testing.assert_allclose(result.final_obs.double().numpy(), ref_next, rtol=tol["rtol"], atol=tol["atol"])
    _check_terminated(result.terminated.numpy(), ref_term, ref_next, tol, near_threshold_mask, n)
    assert result.reward.dtype == torch.float32 and torch.all(result.reward == 1.0)
    assert not result.truncated.any()

    # The test must exercise both outcomes, on the wide block and right at each threshold.
    wide, near_x, near_t = np.split(ref_term, [N_RANDOM, N_RANDOM + N_NEAR])
    for block in (wide, near_x, near_t):
        assert 0.2 < block.mean() < 0.8

    # Envs that did not finish carry the physics result in obs too.
    live = ~result.terminated
    assert torch.equal(result.obs[live], result.final_obs[live])


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_step_matches_gymnasium_single_env(backend, dtype, states, actions, gym_single_reference, near_threshold_mask):
    """2k states (random and near thresholds) against Gymnasium's scalar CartPoleEnv."""
    rows = np.concatenate([np.arange(1000), N_RANDOM + np.arange(500), N_RANDOM + N_NEAR + np.arange(500)])
    tol = TOL[dtype]
    start = _start_states(states[rows], dtype)
    ref_next, ref_term, ref_reward = gym_single_reference(start, actions[rows])

    env = fastdqn.CartPole(len(rows), backend=backend, dtype=dtype, seed=0)
    env.state = torch.tensor(start, dtype=dtype)
    result = env.step(torch.tensor(actions[rows]))
    np.testing.assert_allclose(result.final_obs.double().numpy(), ref_next, rtol=tol["rtol"], atol=tol["atol"])
    _check_terminated(result.terminated.numpy(), ref_term, ref_next, tol, near_threshold_mask, len(rows))
    np.testing.assert_array_equal(result.reward.numpy(), ref_reward)


def test_gymnasium_references_agree(states, actions, gym_reference, gym_single_reference):
    """The vectorised reference used for 100k states agrees with Gymnasium's scalar env."""
    rows = np.concatenate([np.arange(1000), N_RANDOM + np.arange(500), N_RANDOM + N_NEAR + np.arange(500)])
    vec_next, vec_term = gym_reference(states[rows], actions[rows])
    one_next, one_term, _ = gym_single_reference(states[rows], actions[rows])
    np.testing.assert_allclose(vec_next, one_next, rtol=1e-14, atol=1e-14)
    np.testing.assert_array_equal(vec_term, one_term)


def _hand_step(s, a):
    """Gymnasium's Euler step written out for one state in plain Python floats."""
    x, x_dot, theta, theta_dot = s
    force = 10.0 if a == 1 else -10.0
    total_mass, polemass_length = 1.1, 0.05
    temp = (force + polemass_length * theta_dot**2 * math.sin(theta)) / total_mass
    thetaacc = (9.8 * math.sin(theta) - math.cos(theta) * temp) / (0.5 * (4.0 / 3.0 - 0.1 * math.cos(theta) ** 2 / total_mass))
    xacc = temp - polemass_length * thetaacc * math.cos(theta) / total_mass
    return [x + 0.02 * x_dot, x_dot + 0.02 * xacc, theta + 0.02 * theta_dot, theta_dot + 0.02 * thetaacc]


@pytest.mark.parametrize("backend", BACKENDS)
def test_step_matches_hand_computation(backend):
    cases = [([0.0, 0.0, 0.0, 0.0], 1), ([0.0, 0.0, 0.0, 0.0], 0), ([0.5, -1.0, 0.1, 2.0], 1), ([-1.0, 0.3, -0.15, -1.2], 0)]
    env = fastdqn.CartPole(len(cases), backend=backend, dtype=torch.float64, seed=0)
    env.state = torch.tensor([c[0] for c in cases], dtype=torch.float64)
    result = env.step(torch.tensor([c[1] for c in cases]))
    expected = np.array([_hand_step(*c) for c in cases])
    np.testing.assert_allclose(result.final_obs.numpy(), expected, rtol=1e-13, atol=1e-15)
    # From rest, pushing right accelerates the cart right and tips the pole left (and vice versa).
    assert result.final_obs[0, 1] > 0 and result.final_obs[0, 3] < 0
    assert result.final_obs[1, 1] < 0 and result.final_obs[1, 3] > 0
    assert not result.terminated.any()


def _exact_threshold_cases():
    """States that stay exactly where they are in x and theta (zero velocities), on and just past
    each threshold, with the terminated flag Gymnasium's strict comparisons give."""
    up = math.nextafter(X_THRESHOLD, math.inf)
    tup = math.nextafter(THETA_THRESHOLD, math.inf)
    rows = [
        ([X_THRESHOLD, 0.0, 0.0, 0.0], False),
        ([-X_THRESHOLD, 0.0, 0.0, 0.0], False),
        ([up, 0.0, 0.0, 0.0], True),
        ([-up, 0.0, 0.0, 0.0], True),
        ([math.nextafter(X_THRESHOLD, 0.0), 0.0, 0.0, 0.0], False),
        ([0.0, 0.0, THETA_THRESHOLD, 0.0], False),
        ([0.0, 0.0, -THETA_THRESHOLD, 0.0], False),
        ([0.0, 0.0, tup, 0.0], True),
        ([0.0, 0.0, -tup, 0.0], True),
        ([0.0, 0.0, math.nextafter(THETA_THRESHOLD, 0.0), 0.0], False),
    ]
    return np.array([r[0] for r in rows]), np.array([r[1] for r in rows])


@pytest.mark.parametrize("backend", BACKENDS)
def test_terminated_exactly_at_thresholds_float64(backend, gym_single_reference):
    start, expected = _exact_threshold_cases()
    acts = np.ones(len(start), dtype=np.int64)
    ref_next, ref_term, _ = gym_single_reference(start, acts)
    np.testing.assert_array_equal(ref_term, expected)  # the hand expectation is Gymnasium's
    env = fastdqn.CartPole(len(start), backend=backend, dtype=torch.float64, seed=0)
    env.state = torch.tensor(start)
    result = env.step(torch.tensor(acts))
    np.testing.assert_array_equal(result.terminated.numpy(), expected)
    np.testing.assert_array_equal(result.final_obs.numpy()[:, [0, 2]], start[:, [0, 2]])
    next_state, term = fastdqn.physics(torch.tensor(start), torch.tensor(acts))
    np.testing.assert_array_equal(term.numpy(), expected)


def _float32_threshold_cases():
    """Float32 states on the float32-rounded thresholds (not terminated: the comparisons are
    strict, in float32) and one float32 step beyond them (terminated)."""
    x32, th32 = float(np.float32(X_THRESHOLD)), float(np.float32(THETA_THRESHOLD))
    xup, thup = (float(np.nextafter(np.float32(v), np.float32(np.inf))) for v in (x32, th32))
    rows = [([x32, 0, 0, 0], False), ([-x32, 0, 0, 0], False), ([xup, 0, 0, 0], True), ([-xup, 0, 0, 0], True),
            ([0, 0, th32, 0], False), ([0, 0, -th32, 0], False), ([0, 0, thup, 0], True), ([0, 0, -thup, 0], True)]
    return torch.tensor([r[0] for r in rows], dtype=torch.float32), torch.tensor([r[1] for r in rows])


DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("backend", BACKENDS)
def test_terminated_at_float32_thresholds_on_every_device(backend, device):
    """Float32 envs compare against the thresholds rounded to float32, on every backend and
    device (torch casts the Python constant to the tensor's dtype, on CUDA too: checked on an
    H200, bench/results/gpu_env_check_h200.txt; the numba kernel rounds its constants)."""
    if backend == "numba" and device != "cpu":
        pytest.skip("numba runs on the CPU")
    start, expected = _float32_threshold_cases()
    env = fastdqn.CartPole(len(start), backend=backend, device=device, seed=0)
    env.state = start.to(device)
    result = env.step(torch.zeros(len(start), dtype=torch.int64, device=device))
    assert torch.equal(result.terminated.cpu(), expected)
    assert torch.equal(result.final_obs.cpu()[:, [0, 2]], start[:, [0, 2]])  # zero velocities: x, theta stay put
    _, term = fastdqn.physics(start.to(device), torch.zeros(len(start), dtype=torch.int64, device=device))
    assert torch.equal(term.cpu(), expected)


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
def test_physics_function_matches_gymnasium(dtype, states, actions, gym_reference, near_threshold_mask):
    tol = TOL[dtype]
    start = _start_states(states, dtype)
    ref_next, ref_term = gym_reference(start, actions)
    state_t = torch.tensor(start, dtype=dtype)
    before = state_t.clone()
    next_state, terminated = fastdqn.physics(state_t, torch.tensor(actions))
    assert torch.equal(state_t, before), "physics must not modify its input"
    assert next_state.shape == state_t.shape and next_state.dtype == dtype
    assert terminated.shape == (len(states),) and terminated.dtype == torch.bool
    np.testing.assert_allclose(next_state.double().numpy(), ref_next, rtol=tol["rtol"], atol=tol["atol"])
    _check_terminated(terminated.numpy(), ref_term, ref_next, tol, near_threshold_mask, len(states))


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
def test_physics_function_leading_batch_dims(dtype, states, actions, gym_reference):
    tol = TOL[dtype]
    k = 4
    n = (len(states) // k) // 2  # a [4, n, 4] batch of (different) states
    start = _start_states(states[: k * n], dtype)
    ref_next, ref_term = gym_reference(start, actions[: k * n])

    flat_next, flat_term = fastdqn.physics(torch.tensor(start, dtype=dtype), torch.tensor(actions[: k * n]))
    batched = torch.tensor(start, dtype=dtype).reshape(k, n, 4)
    b_next, b_term = fastdqn.physics(batched, torch.tensor(actions[: k * n]).reshape(k, n))
    assert b_next.shape == (k, n, 4) and b_term.shape == (k, n)
    assert torch.equal(b_next.reshape(k * n, 4), flat_next)
    assert torch.equal(b_term.reshape(k * n), flat_term)
    np.testing.assert_allclose(b_next.reshape(k * n, 4).double().numpy(), ref_next, rtol=tol["rtol"], atol=tol["atol"])
    # a single state without batch dims works as well
    one_next, one_term = fastdqn.physics(torch.tensor(start[0], dtype=dtype), torch.tensor(actions[0]))
    assert one_next.shape == (4,) and one_term.shape == ()
    np.testing.assert_allclose(one_next.double().numpy(), ref_next[0], rtol=tol["rtol"], atol=tol["atol"])


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_step_matches_gymnasium_for_any_angle(backend, dtype, gym_reference):
    """Poles far past upright (several revolutions): sin/cos stay accurate over a wide range."""
    rng = np.random.default_rng(4)
    n = 20_000
    start = rng.uniform(-1.0, 1.0, size=(n, 4))
    start[:, 2] = rng.uniform(-4 * math.pi, 4 * math.pi, n)
    start[:, 3] = rng.uniform(-3.5, 3.5, n)
    start = _start_states(start, dtype)
    acts = rng.integers(0, 2, n)
    ref_next, _ = gym_reference(start, acts)
    env = fastdqn.CartPole(n, backend=backend, dtype=dtype, seed=0)
    env.state = torch.tensor(start, dtype=dtype)
    result = env.step(torch.tensor(acts))
    tol = TOL[dtype]
    np.testing.assert_allclose(result.final_obs.double().numpy(), ref_next, rtol=tol["rtol"], atol=tol["atol"])


def test_physics_function_nonzero_action_pushes_right():
    """Documented for ``physics``: action 0 pushes left, any other value pushes right."""
    start = torch.tensor([[0.1, -0.2, 0.03, 0.4]] * 4, dtype=torch.float64)
    right = np.array(_hand_step(start[0].tolist(), 1))
    left = np.array(_hand_step(start[0].tolist(), 0))
    nxt, _ = fastdqn.physics(start, torch.tensor([0, 1, 2, -1]))
    np.testing.assert_allclose(nxt[0].numpy(), left, rtol=1e-13, atol=1e-15)
    for i in (1, 2, 3):
        np.testing.assert_allclose(nxt[i].numpy(), right, rtol=1e-13, atol=1e-15)
    nxt_bool, _ = fastdqn.physics(start[:2], torch.tensor([False, True]))
    assert torch.equal(nxt_bool, nxt[:2])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
def test_torch_backend_on_cuda_matches_gymnasium(dtype, states, actions, gym_reference, near_threshold_mask):
    tol = TOL[dtype]
    start = _start_states(states, dtype)
    ref_next, ref_term = gym_reference(start, actions)
    env = fastdqn.CartPole(len(states), backend="torch", device="cuda", dtype=dtype, seed=0)
    env.state = torch.tensor(start, dtype=dtype, device="cuda")
    result = env.step(torch.tensor(actions, device="cuda"))
    assert result.final_obs.device.type == "cuda"
    np.testing.assert_allclose(result.final_obs.double().cpu().numpy(), ref_next, rtol=tol["rtol"], atol=tol["atol"])
    _check_terminated(result.terminated.cpu().numpy(), ref_term, ref_next, tol, near_threshold_mask, len(states))
