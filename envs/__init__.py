"""segdrive environments. Importing this package registers them with Gymnasium:

- ``segdrive/Embedded-v0``: the embedded simulator (no server needed).
- ``segdrive/Carla-v0``: a CARLA server (``host``, ``port``, ``tm_port`` keyword arguments).

Both accept any ``EnvConfig`` field as a keyword argument, e.g.
``gymnasium.make("segdrive/Embedded-v0", vehicles=10, action="discrete")``.
"""

from __future__ import annotations

import gymnasium as gym

_ENTRY = "envs.driving_env:DrivingEnv"

if "segdrive/Embedded-v0" not in gym.registry:
    gym.register("segdrive/Embedded-v0", entry_point=_ENTRY, kwargs={"backend_name": "embedded"})
    gym.register("segdrive/Carla-v0", entry_point=_ENTRY, kwargs={"backend_name": "carla"})
