"""Train the perception network on collected shards.

Segmentation (class-weighted cross-entropy at half resolution) plus the affordance heads,
AdamW with warm-up and cosine decay, photometric augmentation (brightness, contrast, colour) so
that the held-out night and rain presets are not a new world. A run folder holds the resolved
config, TensorBoard events (losses, mIoU, affordance errors, input | prediction | truth
images), ``checkpoint.pt`` (written atomically; ``--resume`` continues at the same batch) and
the final ``weights.pt`` in the shipped format. ``--init-weights`` starts a new run from existing
weights instead of random ones (fine-tuning, e.g. the shipped weights on CARLA recordings).

Usage::

    python -m perception.train --data data/seg_train --val-data data/seg_heldout \\
        --run-dir runs/perception
    python -m perception.train --data data/seg_carla --run-dir runs/perception_carla \\
        --init-weights perception/weights/perception.pt --set lr=5e-4 --set epochs=3
"""

from __future__ import annotations

import argparse
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from numpy.typing import NDArray
from torch import Tensor
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm

from envs.atomic import atomic_path, write_text_atomic
from envs.config import dataclass_from_dict, dataclass_to_dict, load_yaml_mapping, parse_overrides
from perception.dataset import ShardDataset
from perception.metrics import colorize, evaluate_model
from perception.model import NUM_CLASSES, PerceptionNet, perception_loss

logger = logging.getLogger(__name__)

CHECKPOINT = "checkpoint.pt"
WEIGHTS = "weights.pt"
CONFIG = "config.yaml"


@dataclass(frozen=True)
class PerceptionTrainConfig:
    """Training settings (``configs/perception.yaml``).

    Attributes:
        epochs: Passes over the training data.
        batch_size: Frames per gradient step.
        lr: Peak learning rate (after a 5 % warm-up; cosine decay to 2 % of it).
        weight_decay: AdamW weight decay.
        seg_weight: Weight of the segmentation loss against the affordance losses.
        class_weight_power: Segmentation class weights are ``frequency ** -power`` (0: plain
            cross-entropy), normalised to mean 1 over present classes.
        max_class_weight: Upper clip of a class weight (before normalisation).
        augment: Random brightness, contrast and colour gains per frame.
        seed: Seeds the initial weights and the batch order.
        threads: Torch CPU threads (0: torch's default).
        log_every: Steps between scalar logs.
        image_every: Steps between TensorBoard images.
        checkpoint_every: Steps between checkpoints.
        val_frames: Frames of the validation set scored at each epoch end (0: all).
    """

    epochs: int = 8
    batch_size: int = 32
    lr: float = 3e-3
    weight_decay: float = 1e-4
    seg_weight: float = 1.0
    class_weight_power: float = 0.5
    max_class_weight: float = 50.0
    augment: bool = True
    seed: int = 0
    threads: int = 0
    log_every: int = 25
    image_every: int = 500
    checkpoint_every: int = 200
    val_frames: int = 1000

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "log_every", "image_every", "checkpoint_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"bad perception config: {name} must be >= 1")
        if self.lr <= 0:
            raise ValueError("bad perception config: lr must be positive")


def load_config(path: str | Path | None, overrides: Sequence[str] = ()) -> PerceptionTrainConfig:
    """Config from an optional YAML file plus ``key=value`` overrides; unknown keys are errors."""
    values: dict[str, Any] = dict(load_yaml_mapping(path)) if path else {}
    values.update(parse_overrides(list(overrides)))
    return dataclass_from_dict(PerceptionTrainConfig, values, str(path or "perception config"))


def warmup_cosine(step: int, total: int, warmup: float = 0.05) -> float:
    """Learning-rate factor: linear warm-up over ``warmup`` of the run, then cosine to 2 %."""
    ramp = max(1, int(total * warmup))
    if step < ramp:
        return (step + 1) / ramp
    progress = min(1.0, (step - ramp) / max(1, total - ramp))
    return 0.02 + 0.98 * 0.5 * (1.0 + math.cos(math.pi * progress))


def class_weights(labels: NDArray[np.uint8], power: float, max_weight: float) -> Tensor:
    """Inverse-frequency class weights (see ``PerceptionTrainConfig.class_weight_power``)."""
    counts = np.bincount(labels.ravel(), minlength=NUM_CLASSES).astype(np.float64)
    present = counts > 0
    weights = np.zeros(NUM_CLASSES)
    freq = counts[present] / counts.sum()
    weights[present] = np.minimum(freq**-power, max_weight)
    weights[present] /= weights[present].mean()
    return torch.tensor(weights, dtype=torch.float32)


def augment(images: Tensor, generator: torch.Generator) -> Tensor:
    """uint8 (B, 3, H, W) -> float [0, 1], photometrically jittered towards unseen weathers.

    Per image: a gamma (above 1 darkens the mid-tones as dusk and night do), a brightness
    gain drawn log-uniformly down to 0.15 (night without its street lights), contrast, a colour
    cast, sensor noise, then 8-bit quantisation, so a darkened frame keeps as few grey levels as
    a real dark frame has. Combined with the model's per-image standardisation this stands in
    for the night presets that the training set must not contain.
    """
    x = images.float() / 255.0
    b = x.shape[0]

    def draw(*shape: int, low: float, high: float) -> Tensor:
        return torch.empty(b, *shape).uniform_(low, high, generator=generator)

    gamma = torch.exp(draw(1, 1, 1, low=math.log(0.7), high=math.log(2.5)))
    brightness = torch.exp(draw(1, 1, 1, low=math.log(0.15), high=math.log(1.4)))
    contrast = draw(1, 1, 1, low=0.6, high=1.3)
    colour = draw(3, 1, 1, low=0.8, high=1.2)
    noise = draw(1, 1, 1, low=0.0, high=0.03)
    x = x.pow(gamma)
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    x = ((x - mean) * contrast + mean) * brightness * colour
    x = x + noise * torch.randn(x.shape, generator=generator)
    return (x.clamp(0.0, 1.0) * 255.0).round() / 255.0


class Trainer:
    """One training run in ``run_dir`` (fresh or resumed)."""

    def __init__(
        self,
        config: PerceptionTrainConfig,
        data: ShardDataset,
        run_dir: Path,
        val_data: ShardDataset | None = None,
        resume: bool = False,
        init_weights: Path | None = None,
    ) -> None:
        self.config = config
        self.data = data
        self.val_data = val_data
        self.run_dir = run_dir
        torch.manual_seed(config.seed)
        self.model = self._initial_model(resume, init_weights)
        self.steps_per_epoch = math.ceil(len(data) / config.batch_size)
        self.total_steps = self.steps_per_epoch * config.epochs
        self.optimizer = torch.optim.AdamW(
            self.model.parameters(), lr=config.lr, weight_decay=config.weight_decay
        )
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda step: warmup_cosine(step, self.total_steps)
        )
        self.step = 0
        self.weights = class_weights(
            data.arrays()["labels"][:: max(1, len(data) // 2000)],
            config.class_weight_power,
            config.max_class_weight,
        )
        checkpoint = run_dir / CHECKPOINT
        if resume:
            self._load(checkpoint)
        elif checkpoint.exists():
            raise FileExistsError(
                f"{run_dir}: already holds a run; pass --resume to continue it, "
                "or choose another --run-dir"
            )
        run_dir.mkdir(parents=True, exist_ok=True)
        write_text_atomic(run_dir / CONFIG, yaml.safe_dump(dataclass_to_dict(config)))
        self.writer = SummaryWriter(str(run_dir))

    def _initial_model(self, resume: bool, init_weights: Path | None) -> PerceptionNet:
        """The network before training: a resumed run's own, the given weights, or random.

        A resumed run rebuilds the architecture its ``weights.pt`` (saved with every
        checkpoint) records, which need not be the default one when the run began from
        ``init_weights``; the checkpoint then restores the parameters.
        """
        own = self.run_dir / WEIGHTS
        if resume:
            if init_weights is not None:
                logger.info("--resume continues %s; --init-weights is not used", self.run_dir)
            return PerceptionNet.from_weights(own) if own.is_file() else PerceptionNet()
        if init_weights is not None:
            logger.info("starting from the weights in %s", init_weights)
            return PerceptionNet.from_weights(init_weights)
        return PerceptionNet()

    def _load(self, path: Path) -> None:
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no checkpoint to resume from")
        try:
            state = torch.load(path, map_location="cpu", weights_only=False)
            self.model.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
            self.scheduler.load_state_dict(state["scheduler"])
            self.step = int(state["step"])
        except Exception as exc:
            raise ValueError(
                f"{path}: not a usable perception checkpoint ({exc}); "
                "start a new run in another --run-dir"
            ) from exc

    def save_checkpoint(self) -> None:
        """Atomically write the full training state and the current weights."""
        state = {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "step": self.step,
        }
        with atomic_path(self.run_dir / CHECKPOINT) as tmp:
            torch.save(state, tmp)
        with atomic_path(self.run_dir / WEIGHTS) as tmp:
            self.model.save_weights(tmp)

    def _order(self, epoch: int) -> NDArray[np.int64]:
        """Batch order of ``epoch``: a function of (seed, epoch) only, so resume is exact."""
        return np.random.default_rng([self.config.seed, epoch]).permutation(len(self.data))

    def train(self, progress: bool = True) -> dict[str, Any]:
        """Run until the configured number of epochs; returns the last validation figures."""
        cfg = self.config
        generator = torch.Generator().manual_seed(cfg.seed * 1_000_003 + self.step)
        bar = tqdm(total=self.total_steps, initial=self.step, disable=not progress, unit="step")
        result: dict[str, Any] = {}
        started, started_step = time.perf_counter(), self.step
        self.model.train()
        while self.step < self.total_steps:
            epoch, offset = divmod(self.step, self.steps_per_epoch)
            order = self._order(epoch)
            for b in range(offset, self.steps_per_epoch):
                batch = self.data.batch(order[b * cfg.batch_size : (b + 1) * cfg.batch_size])
                images = augment(batch["image"], generator) if cfg.augment else batch["image"]
                out = self.model(images)
                loss, terms = perception_loss(
                    out, batch, seg_weight=cfg.seg_weight, class_weights=self.weights
                )
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                self.optimizer.step()
                self.scheduler.step()
                self.step += 1
                bar.update(1)
                if self.step % cfg.log_every == 0:
                    frames = (self.step - started_step) * cfg.batch_size
                    rate = frames / (time.perf_counter() - started)
                    self._log_scalars(loss, terms, rate)
                    bar.set_postfix(loss=f"{loss.item():.3f}", fps=f"{rate:.0f}")
                if self.step % cfg.image_every == 0:
                    self._log_images(images, out["segmentation"], batch["labels"])
                if self.step % cfg.checkpoint_every == 0 or self.step == self.total_steps:
                    self.save_checkpoint()
            if self.val_data is not None:
                result = evaluate_model(self.model, self.val_data, cfg.val_frames)
                self.writer.add_scalar("val/miou", result["miou"], self.step)
                self.writer.add_scalar("val/light_accuracy", result["light_accuracy"], self.step)
                logger.info(
                    "epoch %d: val mIoU %.3f, light accuracy %.3f",
                    epoch + 1,
                    result["miou"],
                    result["light_accuracy"],
                )
        bar.close()
        self.save_checkpoint()
        self.writer.close()
        return result

    def _log_scalars(self, loss: Tensor, terms: dict[str, float], rate: float) -> None:
        self.writer.add_scalar("train/loss", loss.item(), self.step)
        for key, value in terms.items():
            self.writer.add_scalar(f"train/{key}", value, self.step)
        self.writer.add_scalar("train/lr", self.scheduler.get_last_lr()[0], self.step)
        self.writer.add_scalar("train/frames_per_s", rate, self.step)

    def _log_images(self, images: Tensor, logits: Tensor, labels: Tensor) -> None:
        """input | prediction | ground truth for the first four frames of the batch."""
        k = min(4, images.shape[0])
        rgb = images[:k]
        rgb = (rgb * 255).to(torch.uint8) if rgb.is_floating_point() else rgb
        pred = torch.nn.functional.interpolate(
            logits[:k].detach(), size=labels.shape[-2:], mode="nearest"
        ).argmax(1)
        grid = torch.cat([rgb, colorize(pred), colorize(labels[:k])], dim=3)
        self.writer.add_images("train/input_prediction_truth", grid, self.step)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line flags."""
    parser = argparse.ArgumentParser(
        description="Train the perception network (segmentation + affordances) on collected "
        "shards.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--data", type=Path, required=True, help="perception.collect output")
    parser.add_argument(
        "--val-data", type=Path, help="a second collection scored (mIoU) after every epoch"
    )
    parser.add_argument("--config", type=Path, help="YAML config (configs/perception.yaml)")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config key (repeatable)",
    )
    parser.add_argument("--run-dir", type=Path, default=Path("runs/perception"))
    parser.add_argument("--resume", action="store_true", help="continue the run in --run-dir")
    parser.add_argument(
        "--init-weights",
        type=Path,
        help="start a new run from these weights (a weights.pt, or the shipped "
        "perception/weights/perception.pt) instead of random ones, with their architecture: "
        "fine-tuning, e.g. on CARLA recordings; not used with --resume",
    )
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    """Command-line entry point."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    config = load_config(args.config, args.overrides)
    if config.threads:
        torch.set_num_threads(config.threads)
    data = ShardDataset(args.data)
    val = ShardDataset(args.val_data) if args.val_data else None
    trainer = Trainer(
        config, data, args.run_dir, val, resume=args.resume, init_weights=args.init_weights
    )
    result = trainer.train(progress=not args.no_progress)
    logger.info("weights: %s", args.run_dir / WEIGHTS)
    if result:
        logger.info("validation mIoU %.3f", result["miou"])


if __name__ == "__main__":
    main()
