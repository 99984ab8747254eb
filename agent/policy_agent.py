"""A trained policy as an evaluation-harness agent (``evaluate.py --agent run/best.zip``).

It sees what it saw in training and nothing more: the front camera declared as a leaderboard
sensor (the config's size, mount and field of view), the speedometer, and the route plan the
harness gives every agent (targets and commands, like the leaderboard's global plan). Frames go
through the checkpoint's own encoder, features are stacked and normalised as in training, and
the action repeats for ``action_repeat`` physics ticks exactly as ``DrivingEnv.step`` does.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any, Self

import numpy as np
import torch
from numpy.typing import NDArray
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.vec_env import VecNormalize

from agent.checkpoint import load_model
from agent.features import (
    FEATURES,
    FeatureHistory,
    GapMemory,
    encode,
    gap_column,
    stack_lags,
    vehicle_gaps,
)
from agent.train_config import TrainConfig
from envs.action import ActionAdapter
from envs.backends.base import TrafficLightInfo, WorldState
from envs.observation import ObservationBuilder
from envs.routes import RoutePlan
from envs.sim.roadmap import RoadMap
from envs.types import VehicleControl
from perception.model import PerceptionNet

CAMERA_ID = "front"


class PolicyAgent:
    """Drive with an SB3 policy on encoder features.

    Args:
        model: The trained SB3 model.
        config: Its training config (camera, actions, feature stack).
        encoder: The perception network it was trained with.
        normalizer: The observation statistics of training (``None``: not normalised).
        deterministic: Take the policy's mode instead of sampling.
    """

    def __init__(
        self,
        model: BaseAlgorithm,
        config: TrainConfig,
        encoder: PerceptionNet,
        normalizer: VecNormalize | None = None,
        deterministic: bool = True,
    ) -> None:
        self.model = model
        self.config = config
        self.encoder = encoder
        self.normalizer = normalizer
        self.deterministic = deterministic
        env = config.env
        if config.finetune_encoder:  # the policy encodes stacked frames itself
            env = replace(env, frame_stack=config.feature_stack)
        self.observations = ObservationBuilder(env)
        self.actions = ActionAdapter(config.env)
        self.render_every = config.env.action_repeat
        self._history: FeatureHistory | None = None
        self._lags = stack_lags(config.feature_stack, config.feature_lags)
        self._memory: GapMemory | None = None
        self._gap: int | None = None  # the vehicle-gap column, with gap_memory on
        if config.gap_decisions > 0:
            self._gap = gap_column(encoder, config.policy_features)
        self._plan: RoutePlan | None = None
        self._index = 0
        self._tick = 0
        self._control = VehicleControl()

    @classmethod
    def from_checkpoint(cls, path: str | Path, device: str = "cpu") -> Self:
        """Load a ``train.py`` checkpoint (raises ``CheckpointError`` naming the file)."""
        model, checkpoint = load_model(path, device=device)
        return cls(model, checkpoint.config, checkpoint.encoder, checkpoint.normalizer)

    def sensors(self) -> list[dict[str, Any]]:
        """The training camera and a speedometer."""
        env = self.config.env
        camera = {
            "type": "sensor.camera.rgb",
            "id": CAMERA_ID,
            "x": env.camera_x,
            "y": 0.0,
            "z": env.camera_z,
            "roll": 0.0,
            "pitch": env.camera_pitch,
            "yaw": 0.0,
            "width": env.camera_width,
            "height": env.camera_height,
            "fov": env.camera_fov,
        }
        return [camera, {"type": "sensor.speedometer", "id": "SPEED"}]

    def setup(
        self, plan: RoutePlan, roadmap: RoadMap, lights: tuple[TrafficLightInfo, ...]
    ) -> None:
        """New route: clear the frame and feature history."""
        self._plan = plan
        self.observations.reset(plan)
        self._history = None
        self._memory = None
        self._index = 0
        self._tick = 0
        self._control = VehicleControl()

    def run_step(self, state: WorldState) -> VehicleControl:
        """A new decision every ``action_repeat`` ticks; the last one in between."""
        if self._tick % self.render_every == 0:
            self._control = self.act(state)
        self._tick += 1
        return self._control

    def observe(self, state: WorldState) -> dict[str, NDArray[Any]]:
        """The policy's observation of ``state`` (updates the feature history)."""
        assert self._plan is not None, "setup() first"
        if CAMERA_ID not in state.cameras:
            raise RuntimeError(
                f"no '{CAMERA_ID}' camera frame at a decision tick; the harness must render "
                "every render_every ticks"
            )
        ego = state.ego.transform
        self._index = self._plan.advance(self._index, ego.x, ego.y)
        image = self.observations.image_of(state.cameras[CAMERA_ID])
        obs = self.observations.build(state, image, self._index)
        if self.config.finetune_encoder:
            batch = {k: v[None] for k, v in obs.items()}
            if self.normalizer is not None:
                batch = self.normalizer.normalize_obs(batch)  # type: ignore[assignment]
            return batch
        with torch.inference_mode():
            frame = torch.from_numpy(image[None])
            feats = encode(self.encoder, frame, self.config.policy_features).numpy()[0]
        if self._history is None:
            self._history = FeatureHistory(1, len(feats), self._lags)
            self._history.restart(feats, 0)
        else:
            self._history.push(feats[None])
        out = {k: obs[k][None] for k in self.config.measurements}
        out[FEATURES] = self._history.observe()
        if self._gap is not None:
            remembered = self._remember(vehicle_gaps(feats[None], self._gap), obs["speed"])
            out[FEATURES] = np.concatenate([out[FEATURES], remembered], axis=1)
        if self.normalizer is not None:
            out = self.normalizer.normalize_obs(out)  # type: ignore[assignment]
        return out

    def _remember(
        self, gaps: NDArray[np.float64], speed: NDArray[np.float32]
    ) -> NDArray[np.float32]:
        """Push this decision's gap reading into the memory (begun on the route's first
        frame) and return what the policy sees of it, (1, 1)."""
        if self._memory is None:
            dt = self.config.env.decision_dt
            self._memory = GapMemory(1, self.config.gap_decisions, dt)
            self._memory.restart(gaps, speed)
        else:
            self._memory.push(gaps, speed)
        return self._memory.observe()

    def act(self, state: WorldState) -> VehicleControl:
        """Observe and ask the policy."""
        action, _ = self.model.predict(self.observe(state), deterministic=self.deterministic)
        return self.actions.to_control(action[0])
