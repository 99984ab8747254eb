"""The perception network: ResNet-style encoder, U-Net segmentation decoder, affordance heads.

After Toromanoff et al. (CVPR 2020): the encoder is trained on segmentation and on affordances
(traffic light, distances to hazards, position on the lane), then frozen; the RL policy sees
``features()``. The affordance heads read those same features, so the features must hold what
the heads need. Plain PyTorch, sized for the CPU at 96x160.
"""

from __future__ import annotations

import copy
import dataclasses
import io
import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F  # noqa: N812 (PyTorch's own convention)
from torch.nn.utils.fusion import fuse_conv_bn_eval

from envs.sim.labels import Label
from perception.collect import LIGHT_CLASSES, MAX_DISTANCE

DEFAULT_WEIGHTS = Path(__file__).parent / "weights" / "perception.pt"
"""The shipped weights (``python -m perception.train``; recipe in the README)."""
WEIGHTS_FORMAT = "segdrive-perception"
WEIGHTS_VERSION = 4
_READABLE_VERSIONS = (2, 3, 4)
# Architecture fields that older files predate, with the values those weights were built with.
_V3_ARCHITECTURE: dict[str, Any] = {"heading_ahead": False}
_V2_ARCHITECTURE: dict[str, Any] = {
    "light_channels": 0,
    "input_norm": "imagenet",
    "affordance_features": False,
    **_V3_ARCHITECTURE,
}
NUM_CLASSES = len(Label)
LABEL_NAMES: tuple[str, ...] = tuple(label.name for label in Label)
DISTANCE_KEYS = ("light_distance", "vehicle_gap", "walker_gap")
"""Distance affordances, predicted as a fraction of ``MAX_DISTANCE``."""
LANE_KEYS = ("lateral_offset", "heading_error", "heading_ahead")
"""Lane affordances: offset [m] and heading error [rad] at the car, the route's heading
``perception.collect.HEADING_AHEAD`` ahead [rad] (only with ``PerceptionConfig.heading_ahead``)."""
DISTANCE_BETA = 2.0 / MAX_DISTANCE
"""Smooth-L1 ``beta`` of the distance losses (fractions of ``MAX_DISTANCE``): quadratic only
within 2 m. With the default beta of 1 the whole [0, 1] range was quadratic, a 10 m error cost
0.02 against cross-entropies of ~0.3, and the vehicle-gap head was left at 13 m mean error (it
read a car 3 m ahead as 15-20 m away)."""

# Floor of the per-image contrast [0, 1 units], so a flat black frame is not amplified to noise.
_MIN_STD = 0.02
# ImageNet's per-channel RGB statistics (``input_norm="imagenet"``, the version 2 weights).
_MEAN = (0.485, 0.456, 0.406)
_STD = (0.229, 0.224, 0.225)
INPUT_NORMS = ("image", "imagenet")


@dataclass(frozen=True)
class PerceptionConfig:
    """Architecture of a ``PerceptionNet``; stored in weight files and checked on load.

    Attributes:
        channels: Output channels of the stem (stride 2) and of the four encoder stages
            (strides 4, 8, 16, 32; the stem halves the image first, so the costly
            full-resolution stage of a ResNet is skipped). Sized by measurement: (16, 32, 64,
            128) encodes ~1,100-1,700 frames/s at 160x96 on two CPU cores, twice as wide ~400.
        blocks: BasicBlocks per stage.
        decoder_channels: Channels of the decoder levels at strides 16, 8, 4 and 2 (the last
            one joins the stem's map, so thin things -- poles, lane lines -- keep their shape).
        feature_channels: Channels of the 1x1 reduction before pooling into features.
        feature_grid: (rows, cols) the reduced map is average-pooled to; keeps coarse layout
            (where the lane and the light are) that a global pool would lose.
        light_channels: Channels of the small-object branch: a conv on the stride-4 map
            whose responses are *max*-pooled to ``feature_grid`` and appended to the features.
            A traffic light 20-30 m ahead covers one or two pixels at 160x96; average pooling
            at stride 32 dilutes it to nothing, a max keeps it. 0: no branch.
        input_norm: ``image`` standardises every image by its own statistics (see
            ``PerceptionNet.normalize``); ``imagenet`` uses fixed ImageNet statistics.
        affordance_features: Append the affordance heads' predictions (light-state
            probabilities, the distances, the lane affordances) to ``features()``, so the
            policy reads what a driver decides on directly instead of having to re-learn it
            from the pooled maps.
        heading_ahead: Predict the route's heading 10 m ahead as well (weights before
            version 4 have no such output).
        num_classes: Segmentation classes.
    """

    channels: tuple[int, int, int, int] = (16, 32, 64, 128)
    blocks: tuple[int, int, int, int] = (1, 1, 1, 1)
    decoder_channels: tuple[int, int, int, int] = (64, 48, 32, 24)
    feature_channels: int = 64
    feature_grid: tuple[int, int] = (2, 4)
    light_channels: int = 8
    input_norm: str = "image"
    affordance_features: bool = True
    heading_ahead: bool = True
    num_classes: int = NUM_CLASSES

    def __post_init__(self) -> None:
        if self.input_norm not in INPUT_NORMS:
            raise ValueError(f"input_norm must be one of {INPUT_NORMS}, got {self.input_norm!r}")

    @property
    def lane_keys(self) -> tuple[str, ...]:
        """The lane affordances this architecture predicts."""
        return LANE_KEYS if self.heading_ahead else LANE_KEYS[:2]

    @property
    def regressions(self) -> tuple[str, ...]:
        """Outputs of the regression head, in order."""
        return DISTANCE_KEYS + self.lane_keys

    @property
    def affordance_outputs(self) -> int:
        """Light-state probabilities plus regressions: what ``affordance_features`` appends."""
        return len(LIGHT_CLASSES) + len(self.regressions)

    @property
    def feature_dim(self) -> int:
        """Length of the ``features()`` vector."""
        return self.map_feature_dim + (self.affordance_outputs if self.affordance_features else 0)

    @property
    def map_feature_dim(self) -> int:
        """Length of the pooled-map part of the features (what the affordance heads read)."""
        cells = self.feature_grid[0] * self.feature_grid[1]
        return (self.feature_channels + self.light_channels) * cells

    def to_json(self) -> dict[str, Any]:
        """JSON-friendly fields (tuples as lists)."""
        return {
            k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()
        }


FEATURE_DIM = PerceptionConfig().feature_dim
"""Feature size of the default architecture."""


def _conv_bn(cin: int, cout: int, stride: int = 1, kernel: int = 3) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, kernel, stride, kernel // 2, bias=False),
        nn.BatchNorm2d(cout),
    )


class BasicBlock(nn.Module):
    """ResNet's two-conv residual block, with a 1x1 projection when the shape changes."""

    def __init__(self, cin: int, cout: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = _conv_bn(cin, cout, stride)
        self.conv2 = _conv_bn(cout, cout)
        self.shortcut = (
            _conv_bn(cin, cout, stride, kernel=1) if stride != 1 or cin != cout else nn.Identity()
        )

    def forward(self, x: Tensor) -> Tensor:
        """Residual update."""
        out = F.relu(self.conv1(x), inplace=True)
        return F.relu(self.conv2(out) + self.shortcut(x), inplace=True)


class Encoder(nn.Module):
    """Stem (stride 2) and four stages at strides 4, 8, 16, 32; returns every stage's map."""

    def __init__(self, config: PerceptionConfig) -> None:
        super().__init__()
        c = config.channels
        self.stem = nn.Sequential(_conv_bn(3, c[0], stride=2), nn.ReLU(inplace=True))
        stages = []
        cin = c[0]
        for cout, n in zip(c, config.blocks, strict=True):
            layers = [BasicBlock(cin, cout, stride=2)] + [
                BasicBlock(cout, cout) for _ in range(n - 1)
            ]
            stages.append(nn.Sequential(*layers))
            cin = cout
        self.stages = nn.ModuleList(stages)

    def forward(self, x: Tensor) -> list[Tensor]:
        """Feature maps of the stem and the four stages, finest first."""
        x = self.stem(x)
        maps = [x]
        for stage in self.stages:
            x = stage(x)
            maps.append(x)
        return maps


class Decoder(nn.Module):
    """U-Net decoder: upsample, concatenate the skip, convolve; logits at half the input size."""

    def __init__(self, config: PerceptionConfig) -> None:
        super().__init__()
        # skips, coarsest first: stage 3 (stride 16), 2, 1, stem (stride 2)
        skips = (config.channels[2], config.channels[1], config.channels[0], config.channels[0])
        cin = config.channels[3]
        ups = []
        for level, (skip, cout) in enumerate(zip(skips, config.decoder_channels, strict=True)):
            layers = [_conv_bn(cin + skip, cout), nn.ReLU(inplace=True)]
            if level < len(skips) - 1:  # one conv at stride 2, where a conv costs the most
                layers += [_conv_bn(cout, cout), nn.ReLU(inplace=True)]
            ups.append(nn.Sequential(*layers))
            cin = cout
        self.ups = nn.ModuleList(ups)
        self.head = nn.Conv2d(cin, config.num_classes, 1)

    def forward(self, maps: list[Tensor]) -> Tensor:
        """Segmentation logits (B, classes, H/2, W/2) from the encoder's five maps.

        Half resolution: training at full size spends most of its time in the softmax and the
        upsampling; ``PerceptionNet.segment`` upsamples to the image size.
        """
        x = maps[4]
        for up, skip in zip(self.ups, (maps[3], maps[2], maps[1], maps[0]), strict=True):
            x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            x = up(torch.cat([x, skip], dim=1))
        return self.head(x)


def _image_std(x: Tensor) -> Tensor:
    """Standard deviation over each image's pixels and channels, (B, 1, 1, 1), as
    ``x.std(dim=(1, 2, 3), keepdim=True)``.

    Two passes (the mean, then the squared deviations from it) instead of ``torch.std``'s
    one-pass reduction over several dimensions, which took ~1 ms for four 160x96 frames on one
    CPU core, a third of the encoder's time; this takes ~0.15 ms and is as exact (1e-8).
    """
    flat = x.flatten(1)
    deviation = flat - flat.mean(dim=1, keepdim=True)
    var = deviation.square().sum(dim=1) / max(flat.shape[1] - 1, 1)
    return var.sqrt().view(-1, 1, 1, 1)


class PerceptionNet(nn.Module):
    """Encoder + segmentation decoder + affordance heads.

    Args:
        config: Architecture (defaults to the shipped one).
    """

    def __init__(self, config: PerceptionConfig | None = None) -> None:
        super().__init__()
        self.config = config or PerceptionConfig()
        cfg = self.config
        self.encoder = Encoder(cfg)
        self.decoder = Decoder(cfg)
        self.reduce = nn.Sequential(
            _conv_bn(cfg.channels[3], cfg.feature_channels, kernel=1), nn.ReLU(inplace=True)
        )
        self.pool = nn.AdaptiveAvgPool2d(cfg.feature_grid)
        self.light_branch = (
            nn.Sequential(_conv_bn(cfg.channels[0], cfg.light_channels), nn.ReLU(inplace=True))
            if cfg.light_channels
            else None
        )
        self.light_pool = nn.AdaptiveMaxPool2d(cfg.feature_grid)
        self.mean: Tensor
        self.std: Tensor
        self.register_buffer("mean", torch.tensor(_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(_STD).view(1, 3, 1, 1), persistent=False)
        hidden = 256
        self.trunk = nn.Sequential(nn.Linear(cfg.map_feature_dim, hidden), nn.ReLU(inplace=True))
        self.light_head = nn.Linear(hidden, len(LIGHT_CLASSES))
        self.regression_head = nn.Linear(hidden, len(cfg.regressions))

    @property
    def feature_dim(self) -> int:
        """Length of ``features()`` rows."""
        return self.config.feature_dim

    def normalize(self, images: Tensor) -> Tensor:
        """uint8 [0, 255] or float [0, 1] (B, 3, H, W) RGB to per-image standardised float.

        Each image loses its own per-channel mean and is divided by its own contrast (the
        standard deviation over all its pixels), so a night or overcast frame reaches the
        encoder at the contrast of a day one: the held-out night presets are darker versions
        of scenes the training set has, and this removes most of that difference.
        """
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"images must be (B, 3, H, W), got {tuple(images.shape)}")
        x = images.float() / 255.0 if images.dtype == torch.uint8 else images.float()
        if self.config.input_norm == "imagenet":
            return (x - self.mean) / self.std
        mean = x.mean(dim=(2, 3), keepdim=True)
        return (x - mean) / _image_std(x).clamp_min(_MIN_STD)

    def _features(self, maps: list[Tensor]) -> Tensor:
        scene = self.pool(self.reduce(maps[-1]))
        if self.light_branch is None:
            return scene.flatten(1)
        lights = self.light_pool(self.light_branch(maps[1]))
        return torch.cat([scene, lights], dim=1).flatten(1)

    def _heads(self, feats: Tensor) -> tuple[Tensor, Tensor]:
        """Light-state logits (B, 4) and the regressions (B, ``config.regressions``) from the
        pooled features."""
        hidden = self.trunk(feats)
        return self.light_head(hidden), self.regression_head(hidden)

    @staticmethod
    def _affordance_vector(light: Tensor, reg: Tensor) -> Tensor:
        """Light-state probabilities then the regressions, as the policy sees them."""
        return torch.cat([light.softmax(dim=1), reg], dim=1)

    def _policy_features(self, feats: Tensor, light: Tensor, reg: Tensor) -> Tensor:
        if not self.config.affordance_features:
            return feats
        return torch.cat([feats, self._affordance_vector(light, reg)], dim=1)

    def features(self, images: Tensor) -> Tensor:
        """The frozen-encoder output the policy sees: (B, ``feature_dim``)."""
        feats = self._features(self.encoder(self.normalize(images)))
        if not self.config.affordance_features:
            return feats
        return self._policy_features(feats, *self._heads(feats))

    def affordances(self, images: Tensor) -> Tensor:
        """Only the affordance outputs: light-state probabilities then the regressions
        (B, ``config.affordance_outputs``), the last columns of ``features()`` when the
        architecture appends them. What a policy with ``policy_features: affordances`` sees."""
        light, reg = self._heads(self._features(self.encoder(self.normalize(images))))
        return self._affordance_vector(light, reg)

    def frozen(self, channels_last: bool = True) -> PerceptionNet:
        """A copy for inference only: eval mode, no gradients, batch norms folded into convs.

        An eval-mode batch norm is a per-channel affine map, so folding it into the preceding
        convolution's weights and bias gives the same outputs (to float rounding) with one op
        fewer per layer; ``channels_last`` is the faster memory layout of convolutions on the
        CPU (``benchmarks.throughput encoder`` measures both). The copy is never saved: it
        no longer has the batch-norm entries of the weight format.
        """
        model = copy.deepcopy(self).eval().requires_grad_(False)
        for module in model.modules():
            if isinstance(module, nn.Sequential):
                _fold_batch_norms(module)
        if channels_last:
            # Module.to(memory_format=...) is documented but missing from torch's type stubs.
            model = model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        return model

    def segment(self, images: Tensor) -> Tensor:
        """Predicted label ids (B, H, W) at the image size (logits upsampled bilinearly)."""
        logits = self.decoder(self.encoder(self.normalize(images)))
        size = (images.shape[-2], images.shape[-1])
        return F.interpolate(logits, size=size, mode="bilinear", align_corners=False).argmax(1)

    def forward(self, images: Tensor) -> dict[str, Tensor]:
        """All outputs.

        Returns:
            ``segmentation`` (B, classes, H/2, W/2) logits, ``light_state`` (B, 4) logits,
            ``light_distance``/``vehicle_gap``/``walker_gap`` (B,) as fractions of
            ``MAX_DISTANCE``, ``lateral_offset`` (B,) [m], ``heading_error`` (B,) [rad],
            ``heading_ahead`` (B,) [rad] when the architecture has it, ``features``
            (B, ``feature_dim``).
        """
        maps = self.encoder(self.normalize(images))
        feats = self._features(maps)
        light, reg = self._heads(feats)
        out = {
            "segmentation": self.decoder(maps),
            "light_state": light,
            "features": self._policy_features(feats, light, reg),
        }
        for i, key in enumerate(self.config.regressions):
            out[key] = reg[:, i]
        return out

    # ------------------------------------------------------------------------------ weights
    def save_weights(self, path: str | Path) -> None:
        """Write the weights with the architecture and label set they belong to."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(
            {
                "format": WEIGHTS_FORMAT,
                "version": WEIGHTS_VERSION,
                "architecture": self.config.to_json(),
                "labels": list(LABEL_NAMES),
                "state_dict": self.state_dict(),
            },
            path,
        )

    def load_weights(self, path: str | Path) -> None:
        """Load weights saved by ``save_weights``.

        Raises:
            ValueError: naming ``path`` when it is not a weight file of this format, or was
                saved for another architecture or label set.
        """
        payload = _read_weights(Path(path))
        if payload["architecture"] != self.config.to_json():
            raise ValueError(
                f"{path}: weights are for architecture {payload['architecture']}, "
                f"this model is {self.config.to_json()}; build it with "
                "PerceptionNet.from_weights(path)"
            )
        self.load_state_dict(payload["state_dict"])

    @classmethod
    def from_weights(cls, path: str | Path, data: bytes | None = None) -> PerceptionNet:
        """A model with the architecture stored in ``path`` and its weights.

        Args:
            path: The weight file; with ``data``, only the name used in error messages.
            data: The file's contents, when they come from elsewhere (an agent checkpoint).
        """
        payload = _read_weights(Path(path), data)
        arch: dict[str, Any] = {
            k: tuple(v) if isinstance(v, list) else v for k, v in payload["architecture"].items()
        }
        try:
            config = PerceptionConfig(**arch)
        except TypeError as exc:
            raise ValueError(f"{path}: unknown architecture fields ({exc})") from exc
        model = cls(config)
        model.load_state_dict(payload["state_dict"])
        return model


def _fold_batch_norms(sequence: nn.Sequential) -> None:
    """Replace each Conv2d followed by a BatchNorm2d in ``sequence`` by one fused Conv2d."""
    children = list(sequence)
    for i, (conv, norm) in enumerate(itertools.pairwise(children)):
        if isinstance(conv, nn.Conv2d) and isinstance(norm, nn.BatchNorm2d):
            sequence[i] = fuse_conv_bn_eval(conv, norm)
            sequence[i + 1] = nn.Identity()


def _read_weights(path: Path, data: bytes | None = None) -> dict[str, Any]:
    """Load a weight file (or its bytes ``data``) and check its format and label set."""
    if data is None and not path.is_file():
        raise FileNotFoundError(f"{path}: no such weight file")
    try:
        source = path if data is None else io.BytesIO(data)
        payload = torch.load(source, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for foreign or corrupt files
        raise ValueError(f"{path}: not a readable weight file ({exc})") from exc
    if not isinstance(payload, dict) or payload.get("format") != WEIGHTS_FORMAT:
        raise ValueError(f"{path}: not a {WEIGHTS_FORMAT} weight file")
    if payload.get("version") not in _READABLE_VERSIONS:
        raise ValueError(
            f"{path}: weight format version {payload.get('version')}, this code reads "
            f"{', '.join(map(str, _READABLE_VERSIONS))}"
        )
    older: dict[str, Any] = {2: _V2_ARCHITECTURE, 3: _V3_ARCHITECTURE}.get(payload["version"], {})
    payload["architecture"] = {**older, **payload["architecture"]}
    if payload.get("labels") != list(LABEL_NAMES):
        raise ValueError(
            f"{path}: weights were trained on another label set ({payload.get('labels')}); "
            "this code uses CARLA >= 0.9.14 ids (envs.sim.labels.Label)"
        )
    return dict(payload)


def subsample_labels(labels: Tensor, logits: Tensor) -> Tensor:
    """Nearest-neighbour subsampling of (B, H, W) labels to the logits' (B, C, h, w) size."""
    step_y = labels.shape[-2] // logits.shape[-2]
    step_x = labels.shape[-1] // logits.shape[-1]
    return labels[:, step_y // 2 :: step_y, step_x // 2 :: step_x]


def perception_loss(
    outputs: dict[str, Tensor],
    batch: dict[str, Tensor],
    seg_weight: float = 1.0,
    class_weights: Tensor | None = None,
) -> tuple[Tensor, dict[str, float]]:
    """Training loss: segmentation and light cross-entropy plus smooth-L1 regressions (the
    distances nearly L1, ``DISTANCE_BETA``).

    Args:
        outputs: ``PerceptionNet.forward`` output.
        batch: A ``ShardDataset`` batch (``labels``, ``light_state`` and the float affordances).
        seg_weight: Weight of the segmentation term.
        class_weights: Per-class weights of the segmentation cross-entropy.

    Returns:
        The scalar loss and its named terms (floats, for logging).
    """
    terms = {
        "segmentation": F.cross_entropy(
            outputs["segmentation"],
            subsample_labels(batch["labels"], outputs["segmentation"]),
            weight=class_weights,
        ),
        "light_state": F.cross_entropy(outputs["light_state"], batch["light_state"]),
    }
    for key in LANE_KEYS:
        if key in outputs:
            terms[key] = F.smooth_l1_loss(outputs[key], batch[key])
    for key in DISTANCE_KEYS:
        terms[key] = F.smooth_l1_loss(outputs[key], batch[key] / MAX_DISTANCE, beta=DISTANCE_BETA)
    total = seg_weight * terms["segmentation"] + sum(
        (v for k, v in terms.items() if k != "segmentation"), torch.zeros(())
    )
    return total, {k: float(v.detach()) for k, v in terms.items()}
