"""Independent reconstructions for the training-loop tests: what a run's files must say, rebuilt
from the documented config rules and from the transitions stored in the checkpoint's replay.

The replay is saved as ``engine.replay.data [K, C, 12]``: one ring per agent, each row one
transition ``obs(4) | action | reward | next_obs(4) | terminated | truncated``. While the ring has
not wrapped, row ``t * num_envs + i`` is env i's transition at vector step t (0-based).
"""

from __future__ import annotations

import csv

import pytest

OBS, ACTION, REWARD, NEXT_OBS, TERMINATED, TRUNCATED = slice(0, 4), 4, 5, slice(6, 10), 10, 11


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def expected_updates(cfg, env_steps):
    """Updates after ``env_steps`` (per agent), from the config's documented rule: a training round
    of ``gradient_steps`` updates every ``train_frequency`` vector steps once ``learning_starts``
    env steps are collected (vector step t has collected t * num_envs env steps)."""
    n = cfg.num_envs
    return sum(cfg.gradient_steps for t in range(1, env_steps // n + 1)
               if t * n >= cfg.learning_starts and t % cfg.train_frequency == 0)


def linear_epsilon(start, end, span, step):
    """The linear schedule by hand: start -> end over ``span`` env steps, then end (span 0: end)."""
    if span <= 0:
        return end
    return start + min(1.0, step / span) * (end - start)


def episodes_from_replay(data, num_envs, rows):
    """Every finished episode in one agent's stored transitions ``data [C, 12]`` (first ``rows``
    rows, no wrap): a sorted list of (env step at which it ended, return = sum of its rewards),
    and the reward summed so far by each env's episode still running at the end."""
    data = data[:rows].double()
    t_steps = rows // num_envs
    assert t_steps * num_envs == rows
    reward = data[:, REWARD].view(t_steps, num_envs).tolist()
    done = ((data[:, TERMINATED] + data[:, TRUNCATED]) > 0).view(t_steps, num_envs).tolist()
    episodes, running = [], [0.0] * num_envs
    for t in range(t_steps):
        for i in range(num_envs):
            running[i] += reward[t][i]
            if done[t][i]:
                episodes.append(((t + 1) * num_envs, running[i]))
                running[i] = 0.0
    return sorted(episodes), running


def check_metrics_rows_against_episodes(rows, episodes, env_steps):
    """One agent's metrics rows (in file order) against the episodes rebuilt from the replay: each
    row counts the episodes that ended after the previous row's env step and up to its own, and
    their mean return (written to 2 decimals; empty when there are none)."""
    assert rows, "no metrics rows"
    steps = [int(r["env_step"]) for r in rows]
    assert steps == sorted(steps), steps
    assert steps[-1] == env_steps
    prev, counted = 0, 0
    for r, s in zip(rows, steps):
        mine = [ret for end, ret in episodes if prev < end <= s]
        assert int(r["episodes"]) == len(mine), (s, r, mine)
        if mine:
            assert float(r["mean_return"]) == pytest.approx(sum(mine) / len(mine), abs=0.005 + 1e-9), (s, r)
        else:
            assert r["mean_return"] == "", (s, r)
        counted += len(mine)
        prev = s
    assert counted == len(episodes)  # every episode of the replay was logged, once


def rows_by_agent(rows):
    out = {}
    for r in rows:
        out.setdefault(int(r["agent"]), []).append(r)
    return out
