"""Render a trained agent's episode into a GIF without a display.

Each native env has a PIL drawing in Gymnasium's picture style (CartPole, Acrobot, MountainCar),
from the Gymnasium env's own ``.state``; MinAtar games play in fastdqn's own env and draw the
10x10 grid, a colour per channel; any other id renders through Gymnasium's
``render_mode="rgb_array"`` (which may need pygame: ``pip install "gymnasium[classic-control]"``)."""

from __future__ import annotations

import math

import numpy as np

from fastdqn.cartpole import LENGTH, X_THRESHOLD

WIDTH, HEIGHT = 600, 400


def draw(state) -> Image.Image:  # noqa: F821
    from PIL import Image, ImageDraw

    x, _, theta, _ = (float(v) for v in state)
    scale = WIDTH / (X_THRESHOLD * 2)
    img = Image.new("RGB", (WIDTH, HEIGHT), "white")
    d = ImageDraw.Draw(img)
    carty = HEIGHT - 100  # image y grows downwards
    cartx = x * scale + WIDTH / 2
    d.line([(0, carty), (WIDTH, carty)], fill="black")
    d.rectangle([cartx - 25, carty - 15, cartx + 25, carty + 15], fill="black")
    axle = (cartx, carty - 7.5)
    polelen, half_w = scale * 2 * LENGTH, 5.0
    corners = [(-half_w, -half_w), (-half_w, polelen - half_w), (half_w, polelen - half_w), (half_w, -half_w)]
    c, s = math.cos(-theta), math.sin(-theta)
    pole = [(axle[0] + px * c - py * s, axle[1] - (px * s + py * c)) for px, py in corners]
    d.polygon(pole, fill=(202, 152, 101))
    d.ellipse([axle[0] - half_w, axle[1] - half_w, axle[0] + half_w, axle[1] + half_w], fill=(129, 132, 203))
    return img


def draw_acrobot(state) -> Image.Image:  # noqa: F821
    from PIL import Image, ImageDraw

    t1, t2 = float(state[0]), float(state[1])
    size, scale = 500, 500 / 4.4
    img = Image.new("RGB", (size, size), "white")
    d = ImageDraw.Draw(img)
    cx, cy = size / 2, size / 2
    p1 = (cx + scale * math.sin(t1), cy + scale * math.cos(t1))  # image y grows downwards: hanging is +y
    p2 = (p1[0] + scale * math.sin(t1 + t2), p1[1] + scale * math.cos(t1 + t2))
    d.line([(0, cy - scale), (size, cy - scale)], fill="black")  # the goal height
    for a, b in ((cx, cy), p1), (p1, p2):
        d.line([a, b], fill=(0, 204, 204), width=int(0.2 * scale))
    for x, y in ((cx, cy), p1):
        d.ellipse([x - 0.1 * scale, y - 0.1 * scale, x + 0.1 * scale, y + 0.1 * scale], fill=(204, 204, 0))
    return img


def draw_mountaincar(state) -> Image.Image:  # noqa: F821
    from PIL import Image, ImageDraw

    pos = float(state[0])
    lo, hi = -1.2, 0.6
    width, height = 600, 400
    scale = width / (hi - lo)

    def height_at(x):
        return math.sin(3 * x) * 0.45 + 0.55

    img = Image.new("RGB", (width, height), "white")
    d = ImageDraw.Draw(img)
    xs = [lo + (hi - lo) * i / 100 for i in range(101)]
    d.line([((x - lo) * scale, height - height_at(x) * scale) for x in xs], fill="black", width=2)
    flag_x = (0.5 - lo) * scale
    flag_y = height - height_at(0.5) * scale
    d.line([(flag_x, flag_y), (flag_x, flag_y - 50)], fill="black")
    d.polygon([(flag_x, flag_y - 50), (flag_x, flag_y - 40), (flag_x + 25, flag_y - 45)], fill=(204, 204, 0))
    ang = math.atan(math.cos(3 * pos) * 0.45 * 3)
    cx, cy = (pos - lo) * scale, height - height_at(pos) * scale
    c, s = math.cos(ang), math.sin(ang)
    body = [(-20, 0), (-20, 20), (20, 20), (20, 0)]
    d.polygon([(cx + x * c - y * s, cy - (x * s + y * c) - 10) for x, y in body], fill="black")
    return img


DRAW = {"CartPole": draw, "Acrobot": draw_acrobot, "MountainCar": draw_mountaincar}

# one colour per channel (a channel drawn later wins a shared cell), on black
PALETTE = [(230, 230, 230), (230, 80, 60), (250, 200, 50), (80, 160, 230), (120, 200, 90), (200, 110, 220),
           (240, 140, 40), (70, 210, 200), (160, 160, 160), (250, 120, 170)]


def draw_grid(frame, cell: int = 32) -> Image.Image:  # noqa: F821
    """A MinAtar observation ``[C, H, W]`` (bool) as a picture: each set cell painted in its
    channel's colour."""
    from PIL import Image

    frame = np.asarray(frame, dtype=bool)
    rgb = np.zeros((*frame.shape[1:], 3), dtype=np.uint8)
    for c in range(frame.shape[0]):
        rgb[frame[c]] = PALETTE[c % len(PALETTE)]
    return Image.fromarray(rgb).resize((frame.shape[2] * cell, frame.shape[1] * cell), Image.NEAREST)


def _play_native_grid(policy, env_id: str, max_steps: int, seed: int):
    """One greedy episode of fastdqn's own batched env (one copy; sticky actions as in training
    and scoring): ``(frames, return)``."""
    import torch

    from fastdqn.envs import make

    env = make(env_id, 1, backend="torch", seed=seed, max_episode_steps=max_steps)
    obs = env.reset()
    frames, total = [draw_grid(obs[0])], 0.0
    for _ in range(max_steps):
        action = torch.as_tensor(np.asarray(policy(obs.float().numpy())), dtype=torch.long).reshape(1)
        r = env.step(action)
        total += float(r.reward[0])
        frames.append(draw_grid(r.final_obs[0]))
        if bool(r.terminated[0] | r.truncated[0]):
            break
        obs = r.obs
    return frames, total


def play_gif(policy, path, env_id: str = "CartPole-v1", max_steps: int = 500, seed: int = 0,
             fps: int = 50) -> tuple[int, float]:
    """Run one greedy episode of Gymnasium's ``env_id`` (the spec's ``gym_id``; MinAtar ids: fastdqn's
    own env, drawn as the grid) and save it as an animated GIF; returns (frames, episode return)."""
    import gymnasium as gym

    from fastdqn.envs import spec

    if env_id.startswith("MinAtar/"):
        frames, total = _play_native_grid(policy, env_id, max_steps, seed)
        frames[0].save(path, save_all=True, append_images=frames[1:], duration=int(1000 / fps), loop=0)
        return len(frames), total
    gym_id = spec(env_id).gym_id
    drawer = DRAW.get(gym_id.split("-")[0]) if spec(env_id).native else None
    env = gym.make(gym_id, max_episode_steps=max_steps, render_mode=None if drawer else "rgb_array")

    def frame():
        if drawer:
            return drawer(env.unwrapped.state)
        from PIL import Image

        return Image.fromarray(env.render())

    obs, _ = env.reset(seed=seed)
    frames, total = [frame()], 0.0
    for _ in range(max_steps):
        action = int(policy(np.asarray(obs, dtype=np.float32)[None])[0])
        obs, reward, terminated, truncated, _ = env.step(action)
        total += reward
        frames.append(frame())
        if terminated or truncated:
            break
    env.close()
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=int(1000 / fps), loop=0, optimize=True)
    return len(frames), total
