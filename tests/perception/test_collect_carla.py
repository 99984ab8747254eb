"""Recording perception data on a CARLA server (the in-memory test double), and fine-tuning.

The server is ``tests/envs/backends/fake_carla.FakeSimulator``: its RGB camera paints
(R, G, B) = (frame % 256, 20, 30) and its semantic camera puts label ``column % 29`` in the red
byte, so a shard shows which camera each array came from.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from envs.backends.base import CameraSpec, SimulatorCrashed
from envs.types import VehicleControl
from perception.collect import (
    MANIFEST,
    CarlaOptions,
    CollectConfig,
    CollectError,
    collect,
    shard_name,
)
from perception.collect_cli import main, parse_command_line
from perception.dataset import ShardDataset
from perception.model import PerceptionConfig, PerceptionNet
from perception.train import WEIGHTS, PerceptionTrainConfig, Trainer
from tests.envs.backends.fake_carla import TIMEOUT_MESSAGE, FakeCarlaModule, FakeSimulator
from tests.envs.backends.test_carla_backend import make_backend, spec

FAST = CarlaOptions(host="carla-box", port=2345, tm_port=8005, timeout=0.5, retries=1)
"""Short waits and a single connection attempt: a dead fake server fails at once."""


def _arrays(path: Path) -> dict[str, np.ndarray]:
    with np.load(path) as data:
        return {k: data[k] for k in data.files}


def _serve(sim: FakeSimulator, monkeypatch: pytest.MonkeyPatch) -> None:
    """Make ``import carla`` inside the CARLA backend reach ``sim``."""
    module = FakeCarlaModule()
    module.Client = sim.factory  # type: ignore[attr-defined]  # what carla.Client(host, port) makes
    monkeypatch.setattr("envs.backends.carla_connection.import_carla", lambda: module)


@pytest.fixture()
def sim(monkeypatch: pytest.MonkeyPatch) -> FakeSimulator:
    """A fresh fake server that ``perception.collect --backend carla`` connects to."""
    server = FakeSimulator()
    _serve(server, monkeypatch)
    return server


@pytest.fixture(scope="module")
def carla_config(small_collection: CollectConfig) -> CollectConfig:
    """The embedded ``small_collection`` settings, fewer frames, on CARLA."""
    return dataclasses.replace(small_collection, backend="carla", frames=6, frames_per_shard=3)


@pytest.fixture(scope="module")
def carla_collected(
    carla_config: CollectConfig, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Path, FakeSimulator]]:
    """``carla_config`` collected once on a fake server (tests copy it before changing it)."""
    out = tmp_path_factory.mktemp("carla") / "a"
    server = FakeSimulator()
    with pytest.MonkeyPatch.context() as monkeypatch:
        _serve(server, monkeypatch)
        collect(carla_config, out, progress=False, carla=FAST)
        yield out, server


# ------------------------------------------------------------------------------- the shards
def test_carla_shards_have_the_embedded_format(
    carla_collected: tuple[Path, FakeSimulator], collected: Path
) -> None:
    out, _ = carla_collected
    embedded = _arrays(collected / shard_name(0))
    for index in range(2):
        shard = _arrays(out / shard_name(index))
        assert set(shard) == set(embedded)
        for key, array in shard.items():
            assert array.dtype == embedded[key].dtype, key
            assert array.shape == (3, *embedded[key].shape[1:]), key
        assert (shard["town"] == "Grid01").all() and (shard["weather"] == "ClearNoon").all()
    dataset = ShardDataset(out)  # what perception.train reads
    assert len(dataset) == 6 and dataset[5]["image"].shape == (3, 96, 160)


def test_labels_come_from_the_semantic_camera_and_rgb_from_the_rgb_one(
    carla_collected: tuple[Path, FakeSimulator],
) -> None:
    out, server = carla_collected
    shard = _arrays(out / shard_name(0))
    expected = np.broadcast_to(np.arange(160) % 29, (3, 96, 160))
    np.testing.assert_array_equal(shard["labels"], expected)
    assert (shard["rgb"][..., 1] == 20).all() and (shard["rgb"][..., 2] == 30).all()
    frames = shard["rgb"][:, 0, 0, 0]  # the fake writes the world frame into red
    assert len(set(frames.tolist())) == 3  # three different ticks, not one image repeated
    # The collector asks for no depth, so the server renders only the two cameras it needs.
    cameras = {t for t in server.destroyed if t.startswith("sensor.camera.")}
    assert cameras == {"sensor.camera.rgb", "sensor.camera.semantic_segmentation"}


def test_manifest_names_the_backend_and_the_server_map(
    carla_collected: tuple[Path, FakeSimulator],
) -> None:
    manifest = json.loads((carla_collected[0] / MANIFEST).read_text())
    assert manifest["config"]["backend"] == "carla"
    assert manifest["maps"] == {"Grid01": "Grid01"}
    assert manifest["server_version"] == "0.9.16"
    assert [s["frames"] for s in manifest["shards"]] == [3, 3]


# ---------------------------------------------------------------------- resume and backends
def test_resuming_with_the_other_backend_is_refused(
    carla_collected: tuple[Path, FakeSimulator],
    carla_config: CollectConfig,
    collected: Path,
    small_collection: CollectConfig,
    sim: FakeSimulator,
    tmp_path: Path,
) -> None:
    embedded_copy, carla_copy = tmp_path / "embedded", tmp_path / "carla"
    shutil.copytree(collected, embedded_copy)
    shutil.copytree(carla_collected[0], carla_copy)
    with pytest.raises(ValueError, match=r"recorded with the embedded backend.*--backend embedded"):
        collect(dataclasses.replace(small_collection, backend="carla"), embedded_copy, False, FAST)
    more = dataclasses.replace(carla_config, backend="embedded", frames=9)
    with pytest.raises(ValueError, match=r"recorded with the carla backend.*--backend carla"):
        collect(more, carla_copy, progress=False)
    assert sim.clients == []  # refused before any connection


def test_collections_from_before_the_backend_flag_count_as_embedded(
    collected: Path, small_collection: CollectConfig, tmp_path: Path
) -> None:
    out = tmp_path / "old"
    shutil.copytree(collected, out)
    manifest = json.loads((out / MANIFEST).read_text())
    del manifest["config"]["backend"], manifest["maps"]
    (out / MANIFEST).write_text(json.dumps(manifest))
    before = (out / shard_name(0)).stat().st_mtime_ns
    assert collect(small_collection, out, progress=False)["config"]["backend"] == "embedded"
    assert (out / shard_name(0)).stat().st_mtime_ns == before


# -------------------------------------------------------------------------------- failures
def test_an_unreachable_server_is_a_clear_error(
    sim: FakeSimulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sim.crash()
    argv = ["--out", str(tmp_path / "x"), "--backend", "carla", "--host", "carla-box"]
    argv += ["--port", "2345", "--timeout", "0.5", "--retries", "1", "--towns", "Grid01"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "CARLA server at carla-box:2345 is unreachable" in err
    assert "-carla-rpc-port=2345" in err and "run the same command again" in err
    assert len(sim.clients) == 1  # --retries 1, and no second round for a shard never begun


def test_a_server_dying_mid_collection_keeps_the_written_shards(
    sim: FakeSimulator, carla_config: CollectConfig, tmp_path: Path
) -> None:
    out = tmp_path / "d"
    world = sim.world
    tick = world.tick

    def tick_then_die(seconds: float = 0.0) -> int:
        if (out / shard_name(0)).exists():
            sim.crash()
        return tick(seconds)

    world.tick = tick_then_die  # type: ignore[method-assign]
    with pytest.raises(CollectError, match=r"carla-box:2345 .*the 1 complete shard\(s\)"):
        collect(carla_config, out, progress=False, carla=FAST)
    manifest = json.loads((out / MANIFEST).read_text())
    assert manifest["shards"] == [{"file": shard_name(0), "frames": 3}]
    assert not (out / shard_name(1)).exists()
    kept = (out / shard_name(0)).stat().st_mtime_ns
    sim.restart()  # the server is back: the same call finishes the collection
    collect(carla_config, out, progress=False, carla=FAST)
    assert (out / shard_name(0)).stat().st_mtime_ns == kept
    assert len(ShardDataset(out)) == 6


def test_a_shard_lost_to_a_crash_is_collected_again(
    sim: FakeSimulator,
    carla_config: CollectConfig,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    world = sim.world
    tick = world.tick
    calls = {"n": 0}

    def hang_once(seconds: float = 0.0) -> int:
        calls["n"] += 1
        if calls["n"] == 14:  # shard 0, just after its first frame (tick 10 after 2 in reset)
            raise RuntimeError(TIMEOUT_MESSAGE.format(ms=500))
        return tick(seconds)

    world.tick = hang_once  # type: ignore[method-assign]
    with caplog.at_level(logging.WARNING, logger="perception.collect"):
        manifest = collect(carla_config, tmp_path / "e", progress=False, carla=FAST)
    assert "shard 0 lost" in caplog.text
    assert [s["frames"] for s in manifest["shards"]] == [3, 3]


def test_an_ego_that_cannot_spawn_draws_another_route(
    sim: FakeSimulator,
    carla_config: CollectConfig,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    world = sim.world
    spawn = world.try_spawn_actor
    refused: list[str] = []

    def occupied_once(bp: Any, transform: Any, attach_to: Any = None) -> Any:
        if not refused and bp.get_attribute("role_name").value == "hero":
            refused.append(bp.id)
            return None
        return spawn(bp, transform, attach_to)

    world.try_spawn_actor = occupied_once  # type: ignore[method-assign]
    with caplog.at_level(logging.WARNING, logger="perception.collect"):
        manifest = collect(dataclasses.replace(carla_config, frames=3), tmp_path / "f", False, FAST)
    assert refused and "cannot spawn the ego" in caplog.text
    assert manifest["shards"] == [{"file": shard_name(0), "frames": 3}]


# ------------------------------------------------------------------- the backend's cameras
def test_rgb_and_labels_of_different_frames_are_never_paired(sim: FakeSimulator) -> None:
    backend = make_backend(sim)
    try:
        backend.set_cameras({"front": CameraSpec(width=8, height=4, depth=False)})
        state = backend.reset(spec())
        assert state.cameras["front"].depth is None
        (semantic,) = sim.world.of_type("sensor.camera.semantic_segmentation")
        assert not sim.world.of_type("sensor.camera.depth")
        deliver = semantic.callback

        def one_frame_late(image: Any) -> None:  # as if another client had ticked the world
            deliver(dataclasses.replace(image, frame=image.frame + 1))

        semantic.callback = one_frame_late
        with pytest.raises(SimulatorCrashed, match=r"\(labels\) sent frame \d+ while frame"):
            backend.tick(VehicleControl(throttle=0.5), render=True)
    finally:
        backend.close()


# -------------------------------------------------------------------------------- the CLI
def test_help_explains_every_new_flag(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parse_command_line(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    for flag, words in {
        "--backend {embedded,carla}": "semantic-segmentation camera",
        "--host HOST": "CARLA server host",
        "--port PORT": "CARLA RPC port",
        "--tm-port TM_PORT": "Traffic Manager port",
        "--timeout TIMEOUT": "[s]",
        "--retries RETRIES": "connection attempts",
    }.items():
        assert f"{flag} " in text and words in text, flag


def test_cli_builds_the_server_options_and_rejects_them_without_carla(
    capsys: pytest.CaptureFixture[str],
) -> None:
    config, _, carla = parse_command_line(["--out", "x", "--backend", "carla", "--port", "2003"])
    assert config.backend == "carla"
    assert carla == CarlaOptions(port=2003)
    config, _, carla = parse_command_line(["--out", "x"])
    assert config.backend == "embedded" and carla == CarlaOptions()
    with pytest.raises(SystemExit):
        parse_command_line(["--out", "x", "--port", "2003", "--tm-port", "8001"])
    assert "--port, --tm-port set where the CARLA server is; add --backend carla" in (
        capsys.readouterr().err
    )


# ------------------------------------------------------------------------------ fine-tuning
def test_training_can_start_from_given_weights_and_resume_them(
    carla_collected: tuple[Path, FakeSimulator], small_net: PerceptionConfig, tmp_path: Path
) -> None:
    torch.manual_seed(5)
    start = PerceptionNet(small_net)  # not the default architecture
    start.save_weights(tmp_path / "start.pt")
    data = ShardDataset(carla_collected[0])
    config = PerceptionTrainConfig(epochs=1, batch_size=6, augment=False, checkpoint_every=1)
    run = tmp_path / "run"
    trainer = Trainer(config, data, run, init_weights=tmp_path / "start.pt")
    assert trainer.model.config == start.config  # the file's architecture, not the default
    for name, value in start.state_dict().items():
        torch.testing.assert_close(trainer.model.state_dict()[name], value, msg=name)
    trainer.train(progress=False)  # closes its writer
    # Resuming rebuilds that architecture from the run's own weights.pt.
    resumed = Trainer(config, data, run, resume=True)
    resumed.writer.close()
    assert resumed.model.config == start.config and resumed.step == trainer.step
    trained = PerceptionNet.from_weights(run / WEIGHTS)
    for name, value in trained.state_dict().items():
        torch.testing.assert_close(resumed.model.state_dict()[name], value, msg=name)
