"""Replay buffer: wrap-around slots computed by hand, sampling support, flag storage, state round trip."""

from __future__ import annotations

import io

import pytest
import torch

from fastdqn.replay import Batch, ReplayBuffer


def transitions(markers, terminated=None, truncated=None):
    """N transitions whose every field encodes its marker m: obs = [m, m, m, m], action = m % 2,
    reward = m, next_obs = obs + 0.5; flags default to False."""
    m = torch.tensor(markers, dtype=torch.float32)
    n = len(markers)
    obs = m[:, None].repeat(1, 4)
    term = torch.zeros(n, dtype=torch.bool) if terminated is None else torch.tensor(terminated)
    trunc = torch.zeros(n, dtype=torch.bool) if truncated is None else torch.tensor(truncated)
    return obs, torch.tensor([k % 2 for k in markers], dtype=torch.int64), m.clone(), obs + 0.5, term, trunc


def slot_markers(buf: ReplayBuffer) -> list[float]:
    """Marker per slot (0 for never-written slots, which hold zeros), checking every field agrees."""
    out = []
    for i in range(buf.capacity):
        m = float(buf.rewards[i])
        assert torch.equal(buf.obs[i], torch.full((4,), m)), (i, buf.obs[i])
        assert torch.equal(buf.next_obs[i], torch.full((4,), m + 0.5 if m else 0.0)), (i, buf.next_obs[i])
        assert int(buf.actions[i]) == int(m) % 2
        out.append(m)
    return out


def test_wrap_around_capacity_5_batches_of_3():
    buf = ReplayBuffer(5, 4)
    assert (buf.pos, buf.size) == (0, 0)
    assert slot_markers(buf) == [0, 0, 0, 0, 0]
    # transitions are numbered 1, 2, 3, ... (0 marks an empty slot)
    # expected slot contents after each add, worked out by hand: write at pos, wrap at 5
    expected = [
        ([1, 2, 3], [1, 2, 3, 0, 0], 3, 3),
        ([4, 5, 6], [6, 2, 3, 4, 5], 1, 5),  # 4 -> slot 3, 5 -> slot 4, 6 wraps to slot 0
        ([7, 8, 9], [6, 7, 8, 9, 5], 4, 5),  # slots 1, 2, 3
        ([10, 11, 12], [11, 12, 8, 9, 10], 2, 5),  # 10 -> slot 4, 11 -> 0, 12 -> 1
        ([13, 14, 15], [11, 12, 13, 14, 15], 0, 5),  # slots 2, 3, 4; pos wraps to exactly 0
        ([16, 17, 18], [16, 17, 18, 14, 15], 3, 5),
    ]
    for batch, slots, pos, size in expected:
        buf.add(*transitions(batch))
        assert slot_markers(buf) == slots, batch
        assert (buf.pos, buf.size) == (pos, size), batch


def test_single_transitions_and_exact_fill():
    buf = ReplayBuffer(3, 4)
    for k, (slots, pos, size) in enumerate([([1, 0, 0], 1, 1), ([1, 2, 0], 2, 2), ([1, 2, 3], 0, 3),
                                            ([4, 2, 3], 1, 3)], start=1):
        buf.add(*transitions([k]))
        assert slot_markers(buf) == slots
        assert (buf.pos, buf.size) == (pos, size)


def test_add_more_than_capacity_keeps_last_rows():
    buf = ReplayBuffer(5, 4)
    buf.add(*transitions(list(range(1, 8))))  # 7 rows into capacity 5: rows 3..7 survive
    assert slot_markers(buf) == [3, 4, 5, 6, 7]
    assert (buf.pos, buf.size) == (0, 5)

    buf = ReplayBuffer(5, 4)
    buf.add(*transitions([1, 2]))  # pos 2
    buf.add(*transitions(list(range(10, 17))))  # 10..16: keep 12..16, written from slot 2 with wrap
    assert slot_markers(buf) == [15, 16, 12, 13, 14]
    assert (buf.pos, buf.size) == (2, 5)  # (2 + 5) % 5: the newest row (16) sits just before pos


def test_sample_covers_only_filled_rows():
    buf = ReplayBuffer(10, 4)
    buf.add(*transitions([7, 11, 13]))
    gen = torch.Generator().manual_seed(0)
    b = buf.sample(1000, gen)
    assert isinstance(b, Batch)
    assert b.obs.shape == (1000, 4) and b.next_obs.shape == (1000, 4)
    assert b.actions.shape == (1000,) and b.actions.dtype == torch.int64
    assert b.rewards.shape == (1000,) and b.rewards.dtype == torch.float32
    assert b.terminated.dtype == torch.bool and b.truncated.dtype == torch.bool
    drawn = set(b.rewards.tolist())
    assert drawn == {7.0, 11.0, 13.0}
    # each sampled row is one whole transition (fields drawn with the same index)
    assert torch.equal(b.obs, b.rewards[:, None].expand(-1, 4))
    assert torch.equal(b.next_obs, b.obs + 0.5)
    assert torch.equal(b.actions, b.rewards.long() % 2)
    # roughly uniform over the three rows (expected 333 each; 6 sigma is ~90)
    counts = [int((b.rewards == m).sum()) for m in (7.0, 11.0, 13.0)]
    assert all(220 < c < 450 for c in counts), counts


def test_sample_after_wrap_draws_every_slot():
    buf = ReplayBuffer(4, 4)
    buf.add(*transitions([1, 2, 3]))
    buf.add(*transitions([4, 5, 6]))  # slots hold 5, 6, 3, 4
    b = buf.sample(2000, torch.Generator().manual_seed(1))
    assert set(b.rewards.tolist()) == {3.0, 4.0, 5.0, 6.0}


def test_sample_is_reproducible_with_generator():
    buf = ReplayBuffer(10, 4)
    buf.add(*transitions(list(range(1, 11))))
    a = buf.sample(50, torch.Generator().manual_seed(5))
    b = buf.sample(50, torch.Generator().manual_seed(5))
    assert torch.equal(a.rewards, b.rewards)


def test_sample_empty_raises():
    with pytest.raises(ValueError):
        ReplayBuffer(4, 4).sample(2)


def test_capacity_must_be_positive():
    with pytest.raises(ValueError):
        ReplayBuffer(0, 4)


def test_terminated_and_truncated_stored_separately():
    buf = ReplayBuffer(6, 4)
    buf.add(*transitions([1, 2, 3, 4], terminated=[True, False, False, True], truncated=[False, True, False, True]))
    assert buf.terminated[:4].tolist() == [True, False, False, True]
    assert buf.truncated[:4].tolist() == [False, True, False, True]
    b = buf.sample(400, torch.Generator().manual_seed(0))
    want_term = {1.0: True, 2.0: False, 3.0: False, 4.0: True}
    want_trunc = {1.0: False, 2.0: True, 3.0: False, 4.0: True}
    for m, te, tr in zip(b.rewards.tolist(), b.terminated.tolist(), b.truncated.tolist()):
        assert te == want_term[m] and tr == want_trunc[m], m


def test_state_dict_round_trip():
    buf = ReplayBuffer(5, 4)
    buf.add(*transitions([1, 2, 3], terminated=[False, True, False], truncated=[True, False, False]))
    buf.add(*transitions([4, 5, 6]))  # wrapped: pos 1, size 5
    raw = io.BytesIO()
    torch.save(buf.state_dict(), raw)  # as the checkpoint stores it (weights-only loadable)
    raw.seek(0)
    state = torch.load(raw, weights_only=True)

    other = ReplayBuffer(5, 4)
    other.load_state_dict(state)
    assert (other.pos, other.size) == (1, 5)
    assert slot_markers(other) == [6, 2, 3, 4, 5]
    assert other.terminated.tolist() == [False, True, False, False, False]
    assert other.truncated.tolist() == [False, False, False, False, False]  # slot 0's truncated 1 was overwritten
    # the restored buffer continues writing where the original would
    buf.add(*transitions([7]))
    other.add(*transitions([7]))
    assert slot_markers(other) == slot_markers(buf) == [6, 7, 3, 4, 5]
    assert other.pos == buf.pos == 2


def test_state_dict_is_a_snapshot_not_a_view_of_later_adds():
    # load into a fresh buffer, then mutate the source: the loaded copy must not change
    buf = ReplayBuffer(3, 4)
    buf.add(*transitions([1, 2]))
    other = ReplayBuffer(3, 4)
    other.load_state_dict(buf.state_dict())
    buf.add(*transitions([3, 4]))
    assert slot_markers(other) == [1, 2, 0]
    assert (other.pos, other.size) == (2, 2)


def test_load_state_dict_shape_mismatch():
    buf = ReplayBuffer(5, 4)
    with pytest.raises(ValueError, match="shape"):
        ReplayBuffer(6, 4).load_state_dict(buf.state_dict())
