"""Render CartPole frames without a display (PIL), in Gymnasium's picture style, into a GIF."""

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


def play_gif(policy, path, max_steps: int = 500, seed: int = 0, fps: int = 50) -> tuple[int, float]:
    """Run one greedy episode of Gymnasium's CartPole and save it as an animated GIF."""
    import gymnasium as gym

    env = gym.make("CartPole-v1", max_episode_steps=max_steps)
    obs, _ = env.reset(seed=seed)
    frames, total = [draw(env.unwrapped.state)], 0.0
    for _ in range(max_steps):
        action = int(policy(np.asarray(obs, dtype=np.float32)[None])[0])
        obs, reward, terminated, truncated, _ = env.step(action)
        total += reward
        frames.append(draw(env.unwrapped.state))
        if terminated or truncated:
            break
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=int(1000 / fps), loop=0, optimize=True)
    return len(frames), total
