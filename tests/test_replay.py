"""Replay buffer: wrap-around slots and sampled indices computed by hand, one ring per agent, flag
storage, state round trip.

A transition is read back through the documented packed row layout
``obs | action | reward | next_obs | terminated | truncated`` of ``ReplayBuffer.data [K, C, 2D+4]``.
"""

from __future__ import annotations

import io

import pytest
import torch

from fastdqn.replay import Batch, ReplayBuffer

D = 4
TWO_32 = 2**32


def transitions(markers, terminated=None, truncated=None):
    """Transitions ``[K, N]`` whose every field encodes its marker m: obs = [m, m, m, m],
    action = m % 2, reward = m, next_obs = obs + 0.5. ``markers`` is one list per agent; flags
    (bool lists, one per agent) default to False."""
    m = torch.tensor(markers, dtype=torch.float32)
    k, n = m.shape
    obs = m[..., None].repeat(1, 1, D)
    term = torch.zeros(k, n, dtype=torch.bool) if terminated is None else torch.tensor(terminated)
    trunc = torch.zeros(k, n, dtype=torch.bool) if truncated is None else torch.tensor(truncated)
    return obs, m.long() % 2, m.clone(), obs + 0.5, term, trunc


def row_fields(row):
    """Decode one packed row by the documented layout."""
    return row[:D], row[D], row[D + 1], row[D + 2:2 * D + 2], row[2 * D + 2], row[2 * D + 3]


def slot_markers(buf: ReplayBuffer, agent: int = 0) -> list[float]:
    """Marker per slot of ``agent``'s ring (0 for never-written slots, which hold zeros), checking
    that every field of the row agrees with it."""
    assert tuple(buf.data.shape) == (buf.agents, buf.capacity, 2 * D + 4)
    out = []
    for i in range(buf.capacity):
        obs, action, reward, next_obs, _, _ = row_fields(buf.data[agent, i])
        m = float(reward)
        assert torch.equal(obs, torch.full((D,), m)), (agent, i, obs)
        assert torch.equal(next_obs, torch.full((D,), m + 0.5 if m else 0.0)), (agent, i, next_obs)
        assert float(action) == int(m) % 2
        out.append(m)
    return out


def pos_size(buf):
    assert buf.pos.shape == () and buf.size.shape == () and buf.pos.dtype == buf.size.dtype == torch.int64
    return int(buf.pos), int(buf.size)


def shifted(slots, by):
    return [m + by if m else 0.0 for m in slots]


def test_wrap_around_capacity_5_batches_of_3_two_agents():
    buf = ReplayBuffer(5, D, agents=2)
    assert pos_size(buf) == (0, 0)
    assert slot_markers(buf, 0) == slot_markers(buf, 1) == [0, 0, 0, 0, 0]
    # transitions are numbered 1, 2, 3, ... for agent 0 and 101, 102, ... for agent 1 (0 marks an
    # empty slot); expected slot contents after each add, worked out by hand: write at pos, wrap at 5
    expected = [
        ([1, 2, 3], [1, 2, 3, 0, 0], 3, 3),
        ([4, 5, 6], [6, 2, 3, 4, 5], 1, 5),  # 4 -> slot 3, 5 -> slot 4, 6 wraps to slot 0
        ([7, 8, 9], [6, 7, 8, 9, 5], 4, 5),  # slots 1, 2, 3
        ([10, 11, 12], [11, 12, 8, 9, 10], 2, 5),  # 10 -> slot 4, 11 -> 0, 12 -> 1
        ([13, 14, 15], [11, 12, 13, 14, 15], 0, 5),  # slots 2, 3, 4; pos wraps to exactly 0
        ([16, 17, 18], [16, 17, 18, 14, 15], 3, 5),
    ]
    for batch, slots, pos, size in expected:
        buf.add(*transitions([batch, [m + 100 for m in batch]]))
        assert slot_markers(buf, 0) == slots, batch
        assert slot_markers(buf, 1) == shifted(slots, 100), batch  # each agent writes only its own ring
        assert pos_size(buf) == (pos, size), batch


def test_single_transitions_and_exact_fill():
    buf = ReplayBuffer(3, D)
    for k, (slots, pos, size) in enumerate([([1, 0, 0], 1, 1), ([1, 2, 0], 2, 2), ([1, 2, 3], 0, 3),
                                            ([4, 2, 3], 1, 3)], start=1):
        buf.add(*transitions([[k]]))
        assert slot_markers(buf) == slots
        assert pos_size(buf) == (pos, size)


def test_add_more_than_capacity_keeps_last_rows():
    buf = ReplayBuffer(5, D, agents=2)
    rows = list(range(1, 8))
    buf.add(*transitions([rows, [m + 50 for m in rows]]))  # 7 rows into capacity 5: rows 3..7 survive
    assert slot_markers(buf, 0) == [3, 4, 5, 6, 7]
    assert slot_markers(buf, 1) == [53, 54, 55, 56, 57]
    assert pos_size(buf) == (0, 5)

    buf = ReplayBuffer(5, D)
    buf.add(*transitions([[1, 2]]))  # pos 2
    buf.add(*transitions([list(range(10, 17))]))  # 10..16: keep 12..16, written from slot 2 with wrap
    assert slot_markers(buf) == [15, 16, 12, 13, 14]
    assert pos_size(buf) == (2, 5)  # (2 + 5) % 5: the newest row (16) sits just before pos


def test_sample_index_is_bits_times_size_over_2_32_by_hand():
    buf = ReplayBuffer(8, D, agents=2)
    buf.add(*transitions([[1, 2, 3], [101, 102, 103]]))  # size 3: slots 0..2
    # floor(b * 3 / 2**32) by hand: 1431655765 * 3 = 4294967295 < 2**32 -> 0; 1431655766 * 3 =
    # 4294967298 -> 1; 2863311530 * 3 = 8589934590 < 2 * 2**32 = 8589934592 -> 1; 2863311531 -> 2
    bits = torch.tensor([[0, 1431655765, 1431655766, 2863311530, 2863311531, TWO_32 - 1],
                         [TWO_32 - 1, 2863311531, 2863311530, 1431655766, 1431655765, 0]], dtype=torch.int64)
    b = buf.sample(bits)
    assert b.rewards.tolist() == [[1, 1, 2, 2, 3, 3], [103, 103, 102, 102, 101, 101]]

    buf.add(*transitions([[4, 5, 6, 7, 8, 9], [104, 105, 106, 107, 108, 109]]))  # wraps: slots 9 2 3 4 5 6 7 8
    # size 8: index = b >> 29: 0 -> 0, 2**29 - 1 -> 0, 2**29 -> 1, 2**31 -> 4, 3 * 2**30 -> 6, 2**32 - 1 -> 7
    bits = torch.tensor([[0, 2**29 - 1, 2**29, 2**31, 3 * 2**30, TWO_32 - 1],
                         [2**31, 2**29, 0, TWO_32 - 1, 3 * 2**30, 2**29 - 1]], dtype=torch.int64)
    b = buf.sample(bits)
    assert b.rewards.tolist() == [[9, 9, 2, 5, 7, 8], [105, 102, 109, 108, 107, 109]]


def test_sample_fields_shapes_and_dtypes_and_whole_rows():
    buf = ReplayBuffer(10, D, agents=3)
    buf.add(*transitions([[7, 11, 13], [8, 12, 14], [21, 22, 23]]))
    gen = torch.Generator().manual_seed(0)
    bits = torch.randint(0, TWO_32, (3, 3000), generator=gen, dtype=torch.int64)
    b = buf.sample(bits)
    assert isinstance(b, Batch)
    assert b.obs.shape == (3, 3000, D) and b.next_obs.shape == (3, 3000, D)
    assert b.actions.shape == (3, 3000) and b.actions.dtype == torch.int64
    assert b.rewards.shape == (3, 3000) and b.rewards.dtype == torch.float32
    assert b.terminated.shape == b.truncated.shape == (3, 3000)
    assert b.terminated.dtype == b.truncated.dtype == torch.float32
    # only the filled rows of each agent's own ring, roughly uniformly (expected 1000 each; 6 sigma ~ 155)
    for k, markers in enumerate([[7, 11, 13], [8, 12, 14], [21, 22, 23]]):
        assert set(b.rewards[k].tolist()) == set(map(float, markers))
        counts = [int((b.rewards[k] == m).sum()) for m in markers]
        assert all(840 < c < 1160 for c in counts), counts
    # each sampled row is one whole transition (fields drawn with the same index)
    assert torch.equal(b.obs, b.rewards[..., None].expand(-1, -1, D))
    assert torch.equal(b.next_obs, b.obs + 0.5)
    assert torch.equal(b.actions, b.rewards.long() % 2)


def test_sample_after_wrap_draws_every_slot():
    buf = ReplayBuffer(4, D)
    buf.add(*transitions([[1, 2, 3]]))
    buf.add(*transitions([[4, 5, 6]]))  # slots hold 5, 6, 3, 4
    bits = torch.randint(0, TWO_32, (1, 2000), generator=torch.Generator().manual_seed(1), dtype=torch.int64)
    assert set(buf.sample(bits).rewards[0].tolist()) == {3.0, 4.0, 5.0, 6.0}


def test_capacity_and_agents_must_be_positive():
    with pytest.raises(ValueError):
        ReplayBuffer(0, D)
    with pytest.raises(ValueError):
        ReplayBuffer(4, D, agents=0)


def test_terminated_and_truncated_stored_separately():
    buf = ReplayBuffer(6, D, agents=2)
    term = [[True, False, False, True], [False, False, True, True]]
    trunc = [[False, True, False, True], [True, False, False, False]]
    buf.add(*transitions([[1, 2, 3, 4], [5, 6, 7, 8]], terminated=term, truncated=trunc))
    for k in range(2):
        assert buf.data[k, :4, 2 * D + 2].tolist() == [float(x) for x in term[k]]
        assert buf.data[k, :4, 2 * D + 3].tolist() == [float(x) for x in trunc[k]]
    # index j of size 4 from bits j * 2**30: every row, read back through sample
    b = buf.sample(torch.tensor([[0, 2**30, 2**31, 3 * 2**30]] * 2, dtype=torch.int64))
    assert b.rewards.tolist() == [[1, 2, 3, 4], [5, 6, 7, 8]]
    assert b.terminated.tolist() == [[float(x) for x in row] for row in term]
    assert b.truncated.tolist() == [[float(x) for x in row] for row in trunc]


def test_float_flags_are_stored_as_0_1():
    buf = ReplayBuffer(4, D)
    obs, actions, rewards, next_obs, _, _ = transitions([[1, 2]])
    buf.add(obs, actions, rewards, next_obs, torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 1.0]]))
    b = buf.sample(torch.tensor([[0, TWO_32 - 1]], dtype=torch.int64))
    assert b.terminated.tolist() == [[1.0, 0.0]] and b.truncated.tolist() == [[0.0, 1.0]]


def test_state_dict_round_trip():
    buf = ReplayBuffer(5, D, agents=2)
    buf.add(*transitions([[1, 2, 3], [11, 12, 13]], terminated=[[False, True, False]] * 2,
                         truncated=[[True, False, False]] * 2))
    buf.add(*transitions([[4, 5, 6], [14, 15, 16]]))  # wrapped: pos 1, size 5
    raw = io.BytesIO()
    torch.save(buf.state_dict(), raw)  # as the checkpoint stores it (weights-only loadable)
    raw.seek(0)
    state = torch.load(raw, weights_only=True)

    other = ReplayBuffer(5, D, agents=2)
    other.load_state_dict(state)
    assert pos_size(other) == (1, 5)
    assert slot_markers(other, 0) == [6, 2, 3, 4, 5]
    assert slot_markers(other, 1) == [16, 12, 13, 14, 15]
    assert other.data[0, :, 2 * D + 2].tolist() == [0, 1, 0, 0, 0]
    assert other.data[0, :, 2 * D + 3].tolist() == [0, 0, 0, 0, 0]  # slot 0's truncated 1 was overwritten
    # the restored buffer continues writing where the original would
    buf.add(*transitions([[7], [17]]))
    other.add(*transitions([[7], [17]]))
    assert slot_markers(other, 0) == slot_markers(buf, 0) == [6, 7, 3, 4, 5]
    assert slot_markers(other, 1) == slot_markers(buf, 1) == [16, 17, 13, 14, 15]
    assert pos_size(other) == pos_size(buf) == (2, 5)


def test_state_dict_is_a_snapshot_not_a_view_of_later_adds():
    # load into a fresh buffer, then mutate the source: the loaded copy must not change
    buf = ReplayBuffer(3, D)
    buf.add(*transitions([[1, 2]]))
    other = ReplayBuffer(3, D)
    other.load_state_dict(buf.state_dict())
    buf.add(*transitions([[3, 4]]))
    assert slot_markers(other) == [1, 2, 0]
    assert pos_size(other) == (2, 2)


@pytest.mark.parametrize("capacity,agents", [(6, 2), (5, 1)])
def test_load_state_dict_shape_mismatch(capacity, agents):
    buf = ReplayBuffer(5, D, agents=2)
    with pytest.raises(ValueError, match="shape"):
        ReplayBuffer(capacity, D, agents=agents).load_state_dict(buf.state_dict())
