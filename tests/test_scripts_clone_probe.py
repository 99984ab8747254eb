"""scripts/clone_probe.py: input sets, and a tiny probe end to end."""

from __future__ import annotations

import json

import numpy as np
import pytest

from scripts.clone_probe import INPUT_SETS, inputs, main


def _data(n: int = 5, features: int = 12, affordances: int = 4) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    widths = {"speed": 1, "targets": 6, "arcs": 6, "command": 6, "features": features, "action": 2}
    data = {k: rng.random((n, w), dtype=np.float32) for k, w in widths.items()}
    data["affordance_columns"] = np.array(affordances)
    return data


def test_input_sets_take_the_columns_they_name() -> None:
    data = _data()
    widths = {name: inputs(data, name).shape[1] for name in INPUT_SETS}
    assert widths == {
        "measurements": 13,
        "measurements+arcs": 19,
        "affordances": 17,
        "affordances+arcs": 23,
        "all": 25,
        "all+arcs": 31,
    }
    np.testing.assert_array_equal(inputs(data, "affordances")[:, 13:], data["features"][:, -4:])


def test_a_tiny_probe_prints_errors_per_input_set(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--steps", "40", "--heldout-steps", "30", "--fits", "1", "--epochs", "1"]
    assert main([*argv, "--inputs", "affordances", "all+arcs", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out["results"]) == {"affordances", "all+arcs"}
    for result in out["results"].values():
        assert result["train_mse"] >= 0.0 and np.isfinite(result["accel_mse"])
    assert out["results"]["all+arcs"]["inputs"] > out["results"]["affordances"]["inputs"]
