"""Evaluation clips for TensorBoard: camera | predicted segmentation | BEV, as animated GIFs.

TensorBoard shows an animated GIF in its Images tab; writing the summary directly (Pillow
encodes the GIF; it ships with TensorBoard) avoids ``add_video``'s moviepy dependency.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray
from PIL import Image
from tensorboard.compat.proto.summary_pb2 import Summary

from agent.policy_agent import CAMERA_ID, PolicyAgent
from envs.backends.base import SimulatorBackend, WorldState
from envs.routes import RoutePlan
from envs.sim.labels import labels_to_palette
from evaluation.drive import RouteRunner
from evaluation.runner import EvalConfig, Job, make_backend

BEV_PPM = 4.0  # [px/m]


def clip_frame(
    agent: PolicyAgent, backend: SimulatorBackend, state: WorldState, plan: RoutePlan
) -> NDArray[np.uint8] | None:
    """One side-by-side frame of the current state (``None`` without a camera frame)."""
    frame = state.cameras.get(CAMERA_ID)
    if frame is None:
        return None
    with torch.inference_mode():
        image = torch.from_numpy(np.ascontiguousarray(frame.rgb.transpose(2, 0, 1)))[None]
        labels = agent.encoder.segment(image)[0].numpy().astype(np.uint8)
    panels = [frame.rgb, labels_to_palette(labels)]
    world = getattr(backend, "world", None)
    if world is not None:
        from envs.sim.bev import bev, bev_to_rgb

        height = frame.rgb.shape[0]
        panels.append(bev_to_rgb(bev(world, (height, height), BEV_PPM, plan.points[:, :2])))
    return np.hstack(panels)


def rollout_frames(agent: PolicyAgent, job: Job, decisions: int, config: EvalConfig) -> list[Any]:
    """Drive ``job`` with ``agent`` for up to ``decisions`` decisions and film it."""
    frames: list[NDArray[np.uint8]] = []
    ticks = [0]

    def observe(backend: SimulatorBackend, state: WorldState, plan: RoutePlan) -> bool:
        ticks[0] += 1
        if ticks[0] % agent.render_every == 0:
            picture = clip_frame(agent, backend, state, plan)
            if picture is not None:
                frames.append(picture)
        return len(frames) < decisions

    runner = RouteRunner(config, make_backend, lambda job, dt: agent, observe, report=False)
    try:
        runner.run(job)
    finally:
        runner.close()
    return frames


def gif_bytes(frames: list[NDArray[np.uint8]], fps: float) -> bytes:
    """Frames (H, W, 3) uint8 as an animated GIF."""
    images = [Image.fromarray(f) for f in frames]
    out = io.BytesIO()
    images[0].save(
        out,
        format="GIF",
        save_all=True,
        append_images=images[1:],
        duration=int(1000 / fps),
        loop=0,
    )
    return out.getvalue()


def log_gif(writer: Any, tag: str, frames: list[NDArray[np.uint8]], step: int, fps: float) -> None:
    """Write an animated image summary to a TensorBoard ``SummaryWriter``."""
    height, width = frames[0].shape[:2]
    image = Summary.Image(
        height=height, width=width, colorspace=3, encoded_image_string=gif_bytes(frames, fps)
    )
    writer.file_writer.add_summary(Summary(value=[Summary.Value(tag=tag, image=image)]), step)
