"""train.py: configs, smoke training for every algorithm, checkpoints, resume, determinism."""

from __future__ import annotations

import csv
import multiprocessing
import os
import zipfile
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch
from stable_baselines3.common.logger import Logger
from stable_baselines3.common.vec_env import unwrap_vec_normalize

import train as train_cli
from agent.callbacks import (
    BEST,
    CHECKPOINTS,
    FINAL,
    DrivingMetricsCallback,
    RunCallback,
    actor_parameters,
    read_eval_history,
)
from agent.checkpoint import CheckpointError, load_model, read_checkpoint, save_checkpoint
from agent.policy_agent import PolicyAgent
from agent.train_config import ConfigError, TrainConfig, load_config
from agent.training import (
    RunError,
    _env_factory,
    env_config_for,
    latest_checkpoint,
    make_vec_env,
    train,
)
from envs.criteria import Infraction
from evaluation.agents import AgentError, make_agent
from perception.model import PerceptionConfig, PerceptionNet

REPO = Path(__file__).resolve().parents[2]
SMOKE = REPO / "configs" / "smoke.yaml"
TINY_ENCODER = PerceptionConfig(
    channels=(8, 16, 32, 64), decoder_channels=(8, 8, 8, 8), feature_channels=8
)


@pytest.fixture(scope="module")
def encoder_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("encoder") / "encoder.pt"
    PerceptionNet(TINY_ENCODER).save_weights(path)
    return path


def smoke(encoder: Path, *overrides: str, base: Path = SMOKE) -> TrainConfig:
    """The smoke config on the tiny encoder, with evaluation and video off unless asked."""
    first = [f"encoder_weights={encoder}", "eval_every=0", "video_every=0"]
    return load_config(base, [*first, *overrides])


def tiny_dqn(algo: str, encoder: Path, *overrides: str) -> TrainConfig:
    """configs/<algo>.yaml shrunk to a smoke run."""
    return smoke(
        encoder,
        "n_envs=1",
        "env.towns=[Grid01]",
        "env.vehicles=2",
        "env.walkers=2",
        "env.route_length=[60, 120]",
        "algo_kwargs.learning_starts=16",
        "algo_kwargs.buffer_size=500",
        "algo_kwargs.batch_size=16",
        "algo_kwargs.target_update_interval=32",
        "policy_kwargs.net_arch=[32, 32]",
        *overrides,
        base=REPO / "configs" / f"{algo}.yaml",
    )


def fixed_observation(config: TrainConfig) -> dict[str, np.ndarray]:
    venv = make_vec_env(config)
    try:
        obs = venv.reset()
        assert isinstance(obs, dict)
        return obs
    finally:
        venv.close()


# ----------------------------------------------------------------------------- config
def test_shipped_configs_load() -> None:
    for name in ("ppo", "ppo_finetune", "dqn", "qrdqn", "ppo_carla", "smoke"):
        config = load_config(REPO / "configs" / f"{name}.yaml")
        assert config.env.frame_stack == 1  # stacking happens on features
    assert load_config(REPO / "configs" / "qrdqn.yaml").algo == "qrdqn"
    assert load_config(REPO / "configs" / "ppo_carla.yaml").env.backend == "carla"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["n_env=2"], r"unknown key\(s\) \['n_env'\]"),
        (["env.vehicle=3"], r"env: unknown key\(s\) \['vehicle'\]"),
        (["algo_kwargs.learnin_rate=1"], r"unknown key\(s\) \['learnin_rate'\] for ppo"),
        (["algo=dqn"], "needs discrete actions"),
        (["algo=a2c"], "not one of ppo, dqn, qrdqn"),
        (["total_steps=0"], "total_steps must be >= 1"),
        (["foo.bar=1"], "only env, algo_kwargs, policy_kwargs take dotted keys"),
        (["env.weathers=[Sunny]"], "unknown weather"),
        (["policy_features=pixels"], "policy_features: 'pixels'; use one of"),
        (["measurements=[speed, arc]"], r"measurements: unknown \['arc'\]"),
        (["action_std=-0.1"], "action_std must be >= 0"),
        (["feature_lags=[5, 1]"], r"feature_lags must be >= 0 and hold 0"),
        (["feature_lags=[5, 0, 5]"], "feature_lags has repeats"),
        (["feature_lags=[4, 0]", "finetune_encoder=true"], "feature_lags needs the frozen"),
        (["gap_memory=-1"], "gap_memory must be >= 0 seconds"),
        (["gap_memory=.nan"], "gap_memory must be >= 0 seconds"),
        (["gap_memory=soon"], "gap_memory must be a number, got 'soon'"),
        (["total_steps=lots"], "total_steps must be an integer, got 'lots'"),
        (["total_steps=2.5"], "total_steps must be an integer, got 2.5"),
        (["gap_memory=1", "finetune_encoder=true"], "gap_memory needs the frozen"),
        (["critic_warmup=-1"], "critic_warmup must be >= 0"),
        (["algo=dqn", "env.action=discrete", "critic_warmup=64"], "critic_warmup needs ppo"),
        (["algo=dqn", "env.action=discrete", "action_std=0.1"], "action_std needs ppo with"),
    ],
)
def test_bad_config_names_the_problem(overrides: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(SMOKE, overrides)


def test_scientific_notation_in_set_is_a_number() -> None:
    """Regression: YAML 1.1 reads ``1e-4`` (no dot) as a string; the README's own example
    ``--set algo_kwargs.learning_rate=1e-4`` then failed when the model was built."""
    config = load_config(REPO / "configs" / "ppo.yaml", ["algo_kwargs.learning_rate=1e-4"])
    assert config.algo_kwargs["learning_rate"] == pytest.approx(1e-4)
    assert load_config(None, ["env.target_speed=8e0"]).env.target_speed == 8.0


def test_cli_reports_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert train_cli.main(["--config", str(SMOKE), "--set", "bogus=1"]) == 2
    assert "unknown key(s) ['bogus']" in capsys.readouterr().err
    assert train_cli.main(["--config", str(tmp_path / "nope.yaml")]) == 2
    assert "no such config file" in capsys.readouterr().err
    assert train_cli.main(["--resume", str(tmp_path / "empty")]) == 2
    assert "no such config file" in capsys.readouterr().err


def test_set_takes_several_pairs_and_repeats() -> None:
    args = train_cli.parse_args(["--set", "n_envs=2", "env.vehicles=3", "--set", "seed=4"])
    assert args.overrides == ["n_envs=2", "env.vehicles=3", "seed=4"]


# --------------------------------------------------------------------------- metrics
def test_driving_metrics_callback_logs_episode_scores() -> None:
    callback = DrivingMetricsCallback()
    sb3_logger = Logger(folder=None, output_formats=[])
    env = SimpleNamespace(num_envs=1)
    callback.model = SimpleNamespace(logger=sb3_logger, get_env=lambda: env)  # type: ignore[assignment]
    callback._on_training_start()
    running = {"reward_terms": {"speed": 0.5}, "speed": 4.0}
    crash = Infraction("collisions_vehicle", 20, 1.0, 0.0, 0.0, "hit a car")
    end = {
        "reward_terms": {"speed": 0.25},
        "speed": 2.0,
        "route_completion": 40.0,
        "route_infractions": [crash],
        "infractions_total": {"collisions_vehicle": 1},
        "distance": 500.0,
        "status": "running",
    }
    callback.locals = {"infos": [running], "dones": np.array([False])}
    callback._on_step()
    callback.locals = {"infos": [end], "dones": np.array([True])}
    callback._on_step()
    values = sb3_logger.name_to_value
    assert values["driving/route_completion"] == pytest.approx(40.0)
    assert values["driving/driving_score"] == pytest.approx(40.0 * 0.6)  # vehicle: x0.60
    assert values["driving/collisions_vehicle_per_km"] == pytest.approx(2.0)
    # every leaderboard key is logged (a misspelt "agent_blocked" was always 0)
    assert values["driving/vehicle_blocked_per_km"] == 0.0
    assert "driving/agent_blocked_per_km" not in values
    assert values["driving/mean_speed"] == pytest.approx(3.0)
    assert values["reward_terms/speed"] == pytest.approx(0.75)


# --------------------------------------------------------------------------- training
@pytest.mark.parametrize("algo", ["ppo", "dqn", "qrdqn"])
def test_smoke_training_writes_events_and_a_checkpoint_that_predicts_identically(
    algo: str, encoder_file: Path, tmp_path: Path
) -> None:
    extra = ["total_steps=128", "checkpoint_every=64"]  # PPO collects 64-step rollouts
    if algo == "ppo":
        extra += ["eval_every=128", "video_every=128", "eval_route_ids=['0']"]
        config = smoke(encoder_file, *extra)
    else:
        config = tiny_dqn(algo, encoder_file, *extra)
    model = train(config, tmp_path / "run", progress=False)
    run = tmp_path / "run"
    assert (run / "config.yaml").exists() and (run / FINAL).exists()
    assert sorted(p.name for p in (run / CHECKPOINTS).glob("step_*.zip")) == [
        "step_000000064.zip",
        "step_000000128.zip",
    ]
    events = list(run.glob("events.out.tfevents.*"))
    assert events
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    accumulator = EventAccumulator(str(events[0]), size_guidance={"images": 0})
    accumulator.Reload()
    scalars = set(accumulator.Tags()["scalars"])
    if algo == "ppo":
        assert {"eval/driving_score", "eval/route_completion", "train/loss"} <= scalars
        assert "eval/video" in accumulator.Tags()["images"]
        assert (run / CHECKPOINTS / BEST).exists()
        assert [r["steps"] for r in read_eval_history(run)] == [128.0]
    loaded, extras = load_model(run / FINAL)
    assert extras.num_timesteps == loaded.num_timesteps == model.num_timesteps == 128
    obs = fixed_observation(config)
    norm = extras.normalizer
    assert norm is not None
    obs = norm.normalize_obs(obs)  # type: ignore[assignment]
    expected, _ = model.predict(obs, deterministic=True)
    got, _ = loaded.predict(obs, deterministic=True)
    np.testing.assert_array_equal(got, expected)


def test_seeded_runs_are_identical(encoder_file: Path, tmp_path: Path) -> None:
    config = smoke(encoder_file, "total_steps=64")
    first = train(config, tmp_path / "a", progress=False)
    second = train(config, tmp_path / "b", progress=False)
    for (name, a), (_, b) in zip(
        first.policy.state_dict().items(), second.policy.state_dict().items(), strict=True
    ):
        torch.testing.assert_close(a, b, msg=name)
    obs = fixed_observation(config)
    np.testing.assert_array_equal(
        first.predict(obs, deterministic=True)[0], second.predict(obs, deterministic=True)[0]
    )


def test_resume_continues_after_an_interruption(
    encoder_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = smoke(encoder_file, "total_steps=128", "checkpoint_every=32")
    run = tmp_path / "run"
    original = RunCallback._on_step

    def dies_at_step_80(self: RunCallback) -> bool:
        if self.num_timesteps >= 80:
            raise KeyboardInterrupt
        return original(self)

    monkeypatch.setattr(RunCallback, "_on_step", dies_at_step_80)
    with pytest.raises(KeyboardInterrupt):
        train(config, run, progress=False)
    monkeypatch.setattr(RunCallback, "_on_step", original)
    # a kill in the middle of a save leaves only a hidden temporary file behind
    (run / CHECKPOINTS / ".step_000000096.zip.abc.tmp").write_bytes(b"half a zip")
    latest = latest_checkpoint(run)
    assert latest is not None and latest.name == "step_000000064.zip"
    with pytest.raises(RunError, match="already holds a run"):
        train(config, run, progress=False)
    with pytest.raises(RunError, match="config differs"):
        train(smoke(encoder_file, "total_steps=256", "checkpoint_every=32"), run, resume=True)
    # a run started before a key existed (here dagger_rounds, at its default) still resumes
    saved = run / "config.yaml"
    old_keys = [line for line in saved.read_text().splitlines() if "dagger_rounds" not in line]
    saved.write_text("\n".join(old_keys) + "\n")
    rows_before = (run / "progress.csv").read_text().count("\n")
    resumed = train(config, run, resume=True, progress=False)
    assert resumed.num_timesteps == 128
    assert (run / "progress.csv").read_text().count("\n") > rows_before  # appended
    assert read_checkpoint(run / FINAL).num_timesteps == 128
    with pytest.raises(RunError, match="no checkpoint there"):
        train(config, tmp_path / "fresh", resume=True)


# ------------------------------------------------------------------------- checkpoints
def test_bad_checkpoints_give_clear_errors(tmp_path: Path) -> None:
    missing = tmp_path / "missing.zip"
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        read_checkpoint(missing)
    garbage = tmp_path / "garbage.zip"
    garbage.write_bytes(b"not a zip at all")
    with pytest.raises(CheckpointError, match=r"garbage\.zip: unreadable"):
        read_checkpoint(garbage)
    foreign = tmp_path / "foreign.zip"
    with zipfile.ZipFile(foreign, "w") as archive:
        archive.writestr("data", "{}")
    with pytest.raises(CheckpointError, match="not a segdrive agent checkpoint"):
        read_checkpoint(foreign)
    with pytest.raises(AgentError, match=r"garbage\.zip"):
        make_agent(str(garbage))


def test_policy_agent_drives_in_the_harness(encoder_file: Path, tmp_path: Path) -> None:
    config = smoke(encoder_file, "total_steps=64")
    train(config, tmp_path / "run", progress=False)
    before = sorted((tmp_path / "run").iterdir())
    agent = make_agent(str(tmp_path / "run" / FINAL))
    assert isinstance(agent, PolicyAgent)
    # loading writes nothing beside the checkpoint (it may sit in a read-only install)
    assert sorted((tmp_path / "run").iterdir()) == before
    sensors: list[dict[str, Any]] = agent.sensors()
    assert sensors[0]["width"] == config.env.camera_width
    drive_40_ticks(tmp_path / "run" / FINAL, tmp_path / "eval")


def drive_40_ticks(checkpoint: Path, out: Path) -> None:
    """Run ``checkpoint`` in the evaluation harness for 40 ticks of training route 0."""
    from evaluation.drive import RouteRunner
    from evaluation.runner import EvalConfig, make_backend, plan_jobs

    eval_config = EvalConfig(
        agent=str(checkpoint),
        routes=REPO / "routes" / "train.xml",
        route_ids=("0",),
        traffic="none",
        out=out / "results.json",
    )
    ticks = []

    def stop_after_40(backend: Any, state: Any, plan: Any) -> bool:
        ticks.append(state.time)
        return len(ticks) < 40

    runner = RouteRunner(eval_config, make_backend, observer=stop_after_40)
    try:
        record = runner.run(plan_jobs(eval_config)[0])
    finally:
        runner.close()
    assert len(ticks) == 40
    assert record["status"] not in ("Failed - Agent crashed", "Failed - Agent couldn't be set up")


def test_a_policy_on_the_affordances_and_arcs_trains_and_drives(
    encoder_file: Path, tmp_path: Path
) -> None:
    config = smoke(
        encoder_file,
        "total_steps=64",
        "policy_features=affordances",
        "measurements=[speed, targets, arcs, command]",
    )
    model = train(config, tmp_path / "run", progress=False)
    per_frame = PerceptionNet(TINY_ENCODER).config.affordance_outputs
    assert model.observation_space["features"].shape == (per_frame * config.feature_stack,)
    assert model.observation_space["arcs"].shape == (2 * config.env.num_targets,)
    agent = make_agent(str(tmp_path / "run" / FINAL))
    assert isinstance(agent, PolicyAgent) and agent.config.policy_features == "affordances"
    drive_40_ticks(tmp_path / "run" / FINAL, tmp_path / "eval")


def test_lagged_features_train_and_drive(encoder_file: Path, tmp_path: Path) -> None:
    config = smoke(
        encoder_file, "total_steps=64", "policy_features=affordances", "feature_lags=[6, 2, 0]"
    )
    model = train(config, tmp_path / "run", progress=False)
    per_frame = PerceptionNet(TINY_ENCODER).config.affordance_outputs
    assert model.observation_space["features"].shape == (per_frame * 3,)
    agent = make_agent(str(tmp_path / "run" / FINAL))
    assert isinstance(agent, PolicyAgent) and agent.config.feature_lags == (6, 2, 0)
    drive_40_ticks(tmp_path / "run" / FINAL, tmp_path / "eval")


def test_gap_memory_trains_and_drives(encoder_file: Path, tmp_path: Path) -> None:
    config = smoke(encoder_file, "total_steps=64", "policy_features=affordances", "gap_memory=0.3")
    assert config.gap_decisions == round(0.3 / config.env.decision_dt)
    model = train(config, tmp_path / "run", progress=False)
    per_frame = PerceptionNet(TINY_ENCODER).config.affordance_outputs
    assert model.observation_space["features"].shape == (per_frame * config.feature_stack + 1,)
    agent = make_agent(str(tmp_path / "run" / FINAL))
    assert isinstance(agent, PolicyAgent) and agent.config.gap_memory == 0.3
    drive_40_ticks(tmp_path / "run" / FINAL, tmp_path / "eval")


def test_behaviour_cloning_fits_the_autopilot(encoder_file: Path) -> None:
    from agent.training import build_model
    from agent.warmstart import behaviour_clone, collect_demonstrations

    config = smoke(encoder_file, "env.vehicles=0", "env.walkers=0")
    venv = make_vec_env(config)
    try:
        model = build_model(config, venv, "cpu")
        observations, actions, returns = collect_demonstrations(
            venv, 96, steer_noise=0.1, gamma=0.99, progress=False, pedal_noise=0.3
        )
        assert actions.shape == (96, 2) and returns.shape == (96,)
        assert np.all(np.abs(actions) <= 1.0) and actions[:, 1].max() > 0.0  # it drives off
        obs = {k: v.astype(np.float32) for k, v in observations.items()}
        moving, moving_actions, _ = collect_demonstrations(
            venv, 32, steer_noise=0.1, gamma=0.99, progress=False, standing_keep=0.0
        )
        standing = np.abs(moving["speed"].reshape(-1)) < 0.5
        assert standing.any() and not standing.all()  # the start from rest is kept...
        assert np.all(moving_actions[standing, 1] > 0.0)  # ...and only where the expert drives off
        first = behaviour_clone(model, obs, actions, returns, epochs=1)
        last = behaviour_clone(model, obs, actions, returns, epochs=30)
        assert last["action_mse"] < 0.5 * first["action_mse"]
        # A heavier steering weight buys a closer steering fit from the same budget.
        errors = []
        for weight in (1.0, 10.0):
            fresh = build_model(config, venv, "cpu")
            behaviour_clone(fresh, obs, actions, returns, epochs=5, steer_weight=weight)
            with torch.no_grad():
                mean = fresh.policy.get_distribution(
                    {k: torch.as_tensor(v) for k, v in obs.items()}
                ).distribution.mean  # type: ignore[union-attr]
            errors.append(float(((mean[:, 0] - torch.as_tensor(actions[:, 0])) ** 2).mean()))
        assert errors[1] < errors[0], errors
    finally:
        venv.close()
    with pytest.raises(ConfigError, match="bc_steer_weight must be > 0"):
        smoke(encoder_file, "bc_steer_weight=0")
    with pytest.raises(ConfigError, match=r"bc_brake_share must be in \[0, 1\), got 1.0"):
        smoke(encoder_file, "bc_brake_share=1.0")
    with pytest.raises(ConfigError, match="needs ppo with continuous actions"):
        tiny_dqn("dqn", encoder_file, "bc_steps=10")


def test_dagger_rounds_let_the_learner_drive_and_keep_the_expert_labels(
    encoder_file: Path, tmp_path: Path
) -> None:
    from agent.warmstart import collect_demonstrations

    config = smoke(encoder_file, "env.vehicles=0", "env.walkers=0")
    venv = make_vec_env(config)
    try:
        n = venv.num_envs

        def brake(obs: dict) -> np.ndarray:
            return np.tile(np.array([0.0, -1.0], dtype=np.float32), (n, 1))

        observations, actions, _ = collect_demonstrations(
            venv, 40, steer_noise=0.0, gamma=0.99, progress=False, driver=brake, expert_share=0.0
        )
        assert np.all(np.abs(observations["speed"]) < 0.5)  # the learner held the car still
        assert np.all(actions[:, 1] > 0.0)  # while the expert asked to drive off every step
    finally:
        venv.close()
    with pytest.raises(ConfigError, match="dagger_rounds needs bc_steps"):
        smoke(encoder_file, "dagger_rounds=1")
    run = tmp_path / "run"
    rounds = ["bc_steps=32", "bc_epochs=1", "dagger_rounds=2", "dagger_steps=16", "total_steps=64"]
    train(smoke(encoder_file, *rounds), run, progress=False)
    saved = sorted(p.name for p in (run / CHECKPOINTS).glob("*.zip"))
    assert {"warmstart.zip", "dagger_1.zip", "dagger_2.zip"} <= set(saved)
    loaded, extras = load_model(run / CHECKPOINTS / "dagger_2.zip")
    assert extras.normalizer is not None and loaded.num_timesteps == 0
    # The RL phase updates the statistics, unless they are frozen at the clone's.
    for update, changed in (("true", True), ("false", False)):
        frozen = tmp_path / f"update_{update}"
        train(smoke(encoder_file, *rounds, f"normalize_update={update}"), frozen, progress=False)
        _, clone = load_model(frozen / CHECKPOINTS / "dagger_2.zip")
        _, final = load_model(frozen / FINAL)
        assert clone.normalizer is not None and final.normalizer is not None
        same = np.array_equal(
            clone.normalizer.obs_rms["speed"].var, final.normalizer.obs_rms["speed"].var
        )
        assert same != changed, update


def test_a_run_killed_in_the_warm_start_resumes_after_its_last_stage(
    encoder_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import agent.warmstart as warmstart

    rounds = ["bc_steps=32", "bc_epochs=1", "dagger_rounds=2", "dagger_steps=16", "total_steps=64"]
    config = smoke(encoder_file, *rounds)
    run = tmp_path / "run"
    collect = warmstart.collect_demonstrations
    calls: list[bool] = []  # per collection: whether the learner drove (a DAgger round)
    sizes: list[int] = []

    def dies_in_round_2(*args: Any, **kwargs: Any) -> Any:
        calls.append(kwargs.get("driver") is not None)
        if len(calls) == 3:
            raise KeyboardInterrupt
        data = collect(*args, **kwargs)
        sizes.append(len(data[1]))
        return data

    monkeypatch.setattr(warmstart, "collect_demonstrations", dies_in_round_2)
    with pytest.raises(KeyboardInterrupt):
        train(config, run, progress=False)
    assert {p.name for p in (run / CHECKPOINTS).iterdir()} == {
        "warmstart.zip",
        "warmstart.demos.npz",
        "dagger_1.zip",
        "dagger_1.demos.npz",
    }
    saved = warmstart.load_demonstrations(
        [run / CHECKPOINTS / "warmstart.demos.npz", run / CHECKPOINTS / "dagger_1.demos.npz"]
    )
    assert len(saved[1]) == sum(sizes)  # both stages' samples
    cloned: list[int] = []
    clone = warmstart._clone

    def counts(model: Any, venv: Any, data: Any, *args: Any, **kwargs: Any) -> Any:
        cloned.append(len(data[1]))
        return clone(model, venv, data, *args, **kwargs)

    monkeypatch.setattr(warmstart, "_clone", counts)
    calls.clear()
    resumed = train(config, run, resume=True, progress=False)
    assert calls == [True]  # only round 2 ran, with the learner at the wheel
    assert cloned == [sum(sizes)]  # on the saved stages' samples and round 2's
    assert resumed.num_timesteps == 64
    names = {p.name for p in (run / CHECKPOINTS).iterdir()}
    assert "dagger_2.zip" in names and not any(n.endswith(".npz") for n in names)
    assert (run / FINAL).exists()
    broken = tmp_path / "broken"
    with pytest.raises(KeyboardInterrupt):
        calls.clear()
        monkeypatch.setattr(warmstart, "collect_demonstrations", dies_in_round_2)
        train(config, broken, progress=False)
    (broken / CHECKPOINTS / "dagger_1.demos.npz").write_bytes(b"half a file")
    with pytest.raises(RunError, match=r"dagger_1\.demos\.npz: unreadable"):
        train(config, broken, resume=True, progress=False)


def test_each_carla_env_gets_its_own_server_ports() -> None:
    """Regression: every training env connected to the same CARLA port and Traffic Manager."""
    config = load_config(REPO / "configs" / "ppo_carla.yaml", ["n_envs=3", "env.port=2010"])
    ports = [(env_config_for(config, i).port, env_config_for(config, i).tm_port) for i in range(3)]
    assert ports == [(2010, 8000), (2013, 8001), (2016, 8002)]
    embedded = load_config(REPO / "configs" / "ppo.yaml", ["n_envs=2"])
    assert env_config_for(embedded, 1).port == embedded.env.port


def _scheduling_of_a_made_env(make: Any, out: Any) -> None:
    make()
    out.put(os.sched_getscheduler(0))


@pytest.mark.skipif(not hasattr(os, "SCHED_BATCH"), reason="Linux scheduling policy")
def test_env_subprocesses_do_not_preempt_the_trainer(monkeypatch: pytest.MonkeyPatch) -> None:
    """Env processes run under SCHED_BATCH (``batch_scheduling``): woken by an action, they no
    longer preempt the training process before it has sent the other envs theirs. A single
    env runs in the training process, which keeps its policy."""
    import gymnasium as gym

    from agent import training

    monkeypatch.setattr(training, "DrivingEnv", lambda config: gym.make("CartPole-v1"))
    config = load_config(SMOKE, ["n_envs=2"])
    context = multiprocessing.get_context("fork")  # keeps the monkeypatch; no GL is touched
    out = context.Queue()
    child = context.Process(target=_scheduling_of_a_made_env, args=(_env_factory(config, 0), out))
    child.start()
    assert out.get(timeout=60) == os.SCHED_BATCH
    child.join()
    before = os.sched_getscheduler(0)
    _env_factory(load_config(SMOKE, ["n_envs=1"]), 0)()
    assert os.sched_getscheduler(0) == before


def test_carla_envs_take_the_configs_timeout_and_retries() -> None:
    from envs.driving_env import DrivingEnv

    config = load_config(REPO / "configs" / "ppo_carla.yaml", ["env.timeout=30", "env.retries=6"])
    env = DrivingEnv(env_config_for(config, 1))
    backend = env._make_backend()  # connects on first use, not here
    conn = backend._conn  # type: ignore[attr-defined]
    assert (conn.port, conn.timeout, conn.retries) == (2003, 30.0, 6)
    with pytest.raises(ConfigError, match="timeout must be > 0"):
        load_config(REPO / "configs" / "ppo_carla.yaml", ["env.timeout=0"])


def test_init_from_starts_a_fresh_run_from_a_checkpoints_policy(
    encoder_file: Path, tmp_path: Path
) -> None:
    from agent.training import _initial_model

    first = smoke(encoder_file, "total_steps=64")
    train(first, tmp_path / "a", progress=False)
    start = tmp_path / "a" / FINAL
    config = smoke(
        encoder_file, f"init_from={start}", "algo_kwargs.learning_rate=1e-5", "total_steps=64"
    )
    venv = make_vec_env(config)
    try:
        model = _initial_model(config, venv, "cpu")
        loaded, extras = load_model(start)
        assert model.num_timesteps == 0 and extras.num_timesteps == 64
        assert model.learning_rate == 1e-5  # this config's settings
        for (name, a), (_, b) in zip(
            model.policy.state_dict().items(), loaded.policy.state_dict().items(), strict=True
        ):
            torch.testing.assert_close(a, b, msg=name)
        norm = unwrap_vec_normalize(venv)
        assert norm is not None and extras.normalizer is not None
        np.testing.assert_array_equal(
            norm.obs_rms["speed"].mean, extras.normalizer.obs_rms["speed"].mean
        )
        with pytest.raises(RunError, match="no such checkpoint"):
            _initial_model(smoke(encoder_file, f"init_from={tmp_path / 'none.zip'}"), venv, "cpu")
        other = smoke(encoder_file, f"init_from={start}", "measurements=[speed, command]")
        with pytest.raises(RunError, match="saw measurements"):
            _initial_model(other, venv, "cpu")
        other = smoke(encoder_file, f"init_from={start}", "policy_features=affordances")
        with pytest.raises(RunError, match="saw policy_features all"):
            _initial_model(other, venv, "cpu")
        other = smoke(encoder_file, f"init_from={start}", "feature_lags=[8, 0]")
        with pytest.raises(RunError, match=r"decisions \[1, 0\] back, this config gives \[8, 0\]"):
            _initial_model(other, venv, "cpu")
        other = smoke(encoder_file, f"init_from={start}", "gap_memory=1")
        with pytest.raises(RunError, match=r"remembered 0.0 s of vehicle gaps, this config 1.0 s"):
            _initial_model(other, venv, "cpu")
    finally:
        venv.close()
    model = train(config, tmp_path / "b", progress=False)  # no warm start, PPO from there
    assert model.num_timesteps == 64


def test_an_init_from_run_takes_its_own_seed(encoder_file: Path, tmp_path: Path) -> None:
    """Regression: SB3's ``load`` re-seeded the model and the envs with the checkpoint's seed,
    so runs from one ``init_from`` with seeds 0 and 1 trained bit-identical policies."""
    from agent.training import _initial_model

    train(smoke(encoder_file, "total_steps=64"), tmp_path / "a", progress=False)
    start = f"init_from={tmp_path / 'a' / FINAL}"
    runs = {}
    for seed in (0, 1):
        config = smoke(encoder_file, start, f"seed={seed}", "total_steps=64")
        venv = make_vec_env(config)
        try:
            assert _initial_model(config, venv, "cpu").seed == seed
        finally:
            venv.close()
        runs[seed] = actor_vector(train(config, tmp_path / f"seed{seed}", progress=False).policy)
    again = smoke(encoder_file, start, "seed=1", "total_steps=64")
    repeat = actor_vector(train(again, tmp_path / "seed1b", progress=False).policy)
    torch.testing.assert_close(repeat, runs[1])  # a seed still reproduces its run
    assert not torch.equal(runs[0], runs[1])


def test_action_std_is_set_on_an_init_from_policy(encoder_file: Path, tmp_path: Path) -> None:
    first = smoke(encoder_file, "total_steps=64")
    train(first, tmp_path / "a", progress=False)
    config = smoke(
        encoder_file,
        f"init_from={tmp_path / 'a' / FINAL}",
        "action_std=0.05",
        "algo_kwargs.learning_rate=0.0",  # the RL phase leaves the parameters as they start
        "total_steps=64",
    )
    model = train(config, tmp_path / "b", progress=False)
    torch.testing.assert_close(model.policy.log_std.exp(), torch.full((2,), 0.05))
    saved, _ = load_model(tmp_path / "b" / FINAL)
    torch.testing.assert_close(saved.policy.log_std.exp(), torch.full((2,), 0.05))


def test_critic_warmup_trains_only_the_value_function_at_first(
    encoder_file: Path, tmp_path: Path
) -> None:
    train(smoke(encoder_file, "total_steps=64"), tmp_path / "a", progress=False)
    start = dict(load_model(tmp_path / "a" / FINAL)[0].policy.named_parameters())

    def changed(total: int, run: str) -> set[str]:
        config = smoke(
            encoder_file,
            f"init_from={tmp_path / 'a' / FINAL}",
            "critic_warmup=64",
            f"total_steps={total}",  # n_steps 64: one update per 64 steps
        )
        model = train(config, tmp_path / run, progress=False)
        after = model.policy.named_parameters()
        return {name for name, p in after if not torch.equal(p.detach(), start[name].detach())}

    warm = changed(64, "b")  # the only update falls in the warm-up
    assert warm and all(name.startswith(("value_net", "mlp_extractor.value_net")) for name in warm)
    later = changed(128, "c")  # the second one trains the actor too
    assert {"action_net.weight", "log_std"} <= later


def actor_vector(policy: Any) -> torch.Tensor:
    """The actor's parameters (policy network, action head, log std) as one vector."""
    return torch.cat([p.detach().flatten() for p in actor_parameters(policy)])


def test_anchor_keeps_the_policy_near_where_it_started(encoder_file: Path, tmp_path: Path) -> None:
    train(smoke(encoder_file, "total_steps=64"), tmp_path / "a", progress=False)
    start = actor_vector(load_model(tmp_path / "a" / FINAL)[0].policy)

    def drift(run: str, *overrides: str) -> float:
        config = smoke(
            encoder_file,
            f"init_from={tmp_path / 'a' / FINAL}",
            "algo_kwargs.learning_rate=1e-3",
            "algo_kwargs.n_epochs=4",
            "total_steps=128",
            *overrides,
        )
        model = train(config, tmp_path / run, progress=False)
        assert type(model).__name__ == ("AnchoredPPO" if overrides else "PPO")
        assert model.ent_coef == 0.0
        saved, _ = load_model(tmp_path / run / FINAL)
        assert saved.ent_coef == 0.0  # the loss trick does not leak into the checkpoint
        return float((actor_vector(model.policy) - start).abs().sum())

    free = drift("free")
    anchored = drift("anchored", "anchor_coef=1000.0")
    assert anchored < 0.5 * free
    with open(tmp_path / "anchored" / "progress.csv") as f:
        assert "train/anchor_kl" in f.readline()


def test_the_anchor_has_the_action_std_the_rl_phase_starts_with(
    encoder_file: Path, tmp_path: Path
) -> None:
    """Regression: the anchor kept its checkpoint's std (0.2) while the policy started at
    ``action_std``, so the KL was ~5 from the first update and pulled the spread back up."""
    train(smoke(encoder_file, "total_steps=64"), tmp_path / "a", progress=False)
    config = smoke(
        encoder_file,
        f"init_from={tmp_path / 'a' / FINAL}",
        "action_std=0.05",
        "anchor_coef=1.0",
        "algo_kwargs.learning_rate=0.0",
        "total_steps=128",  # SB3 logs an update's scalars at the next rollout's end
    )
    train(config, tmp_path / "b", progress=False)
    with open(tmp_path / "b" / "progress.csv") as f:
        row = next(r for r in csv.DictReader(f) if r.get("train/anchor_kl"))
    assert float(row["train/anchor_kl"]) == pytest.approx(0.0, abs=1e-9)


def test_a_loaded_normalizer_goes_into_a_new_checkpoint(encoder_file: Path, tmp_path: Path) -> None:
    """Regression: an unpickled VecNormalize lacks what SB3's pickling deletes, so saving a
    loaded checkpoint's normalizer again raised ``KeyError: 'class_attributes'``."""
    config = smoke(encoder_file, "total_steps=64")
    train(config, tmp_path / "a", progress=False)
    model, extras = load_model(tmp_path / "a" / FINAL)
    again = save_checkpoint(tmp_path / "again.zip", model, config, encoder_file, extras.normalizer)
    reread = read_checkpoint(again).normalizer
    assert reread is not None and extras.normalizer is not None
    np.testing.assert_array_equal(
        reread.obs_rms["speed"].var, extras.normalizer.obs_rms["speed"].var
    )


def test_the_periodic_evaluation_sees_the_same_traffic_whatever_the_training_seed(
    tmp_path: Path,
) -> None:
    """Regression: the evaluation took the training seed, so one policy scored 38.8, 25.3 and
    9.1 in runs of seeds 1, 0 and 2 before any training; now ``eval_seed`` fixes it."""
    seeds = {
        RunCallback._eval_config(
            SimpleNamespace(config=load_config(SMOKE, [f"seed={seed}"]), run_dir=tmp_path)  # type: ignore[arg-type]
        ).seed
        for seed in (0, 1, 2)
    }
    assert seeds == {0}
    changed = load_config(SMOKE, ["seed=3", "eval_seed=7"])
    config = RunCallback._eval_config(SimpleNamespace(config=changed, run_dir=tmp_path))  # type: ignore[arg-type]
    assert config.seed == 7
