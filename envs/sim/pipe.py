"""The process-wide panda3d graphics pipes: OpenGL over EGL with no window system, and the
pure-software ``p3tinydisplay`` for machines without OpenGL.

panda3d's configuration is global, so it is set here once, before the first pipe is made:
headless GL as the display, no audio, no vsync. Every renderer shares its pipe but owns its
engine, buffers and scene graph. ``renderer_kind`` decides which pipe the cameras use.
"""

from __future__ import annotations

import functools
import logging
import os
from typing import Literal

from panda3d.core import GraphicsPipe, GraphicsPipeSelection, load_prc_file_data

logger = logging.getLogger(__name__)

_CONFIG = """
load-display p3headlessgl
window-type offscreen
audio-library-name null
sync-video false
textures-power-2 none
framebuffer-srgb false
notify-level-egldisplay error
notify-level-glgsg error
"""


RENDERER_ENV = "SEGDRIVE_RENDERER"
"""Environment variable choosing the camera renderer: ``gl``, ``software`` or unset (auto)."""

_SOFTWARE_CONFIG = """
audio-library-name null
notify-level-x11display fatal
notify-level-tinydisplay error
"""


@functools.lru_cache(maxsize=1)
def headless_pipe() -> GraphicsPipe:
    """The shared OpenGL pipe (Mesa llvmpipe without a GPU).

    Raises:
        RuntimeError: if OpenGL over EGL is unavailable (install Debian's ``libegl1`` and
            ``libgl1-mesa-dri``, or a GPU driver). ``renderer_kind`` then picks the software
            renderer.
    """
    # Rasterise in the calling thread unless the user chose otherwise: at these image sizes
    # llvmpipe's rasteriser threads cost more in hand-offs than they win, even with cores to
    # spare (2-core machine, not pinned: 160x96 753 vs 488 frames/s, 400x300 ~200 vs ~150),
    # and training runs one renderer per env process, which would oversubscribe the cores.
    os.environ.setdefault("LP_NUM_THREADS", "0")
    load_prc_file_data("segdrive-render", _CONFIG)
    pipe = GraphicsPipeSelection.get_global_ptr().make_module_pipe("p3headlessgl")
    if pipe is None or not pipe.is_valid():
        raise RuntimeError(
            "no OpenGL over EGL for panda3d (p3headlessgl); install libegl1 and libgl1-mesa-dri "
            "(Debian) or a GPU driver."
        )
    return pipe


@functools.lru_cache(maxsize=1)
def software_pipe() -> GraphicsPipe:
    """panda3d's software rasteriser ``p3tinydisplay`` (no OpenGL, no shaders).

    A process that also made the GL pipe keeps GL's ``textures-power-2 none``, which
    p3tinydisplay complains about once per buffer, harmlessly: its textures are powers of two.

    Without an X display the pipe reports itself invalid, yet its offscreen buffers render, so
    validity is not checked here; ``SoftwareRenderer`` fails loudly if no buffer opens.
    """
    load_prc_file_data("segdrive-software", _SOFTWARE_CONFIG)
    pipe = GraphicsPipeSelection.get_global_ptr().make_module_pipe("p3tinydisplay")
    if pipe is None:
        raise RuntimeError("panda3d's p3tinydisplay module is missing: reinstall panda3d")
    return pipe


@functools.lru_cache(maxsize=1)
def renderer_kind() -> Literal["gl", "software"]:
    """Which camera renderer this process uses.

    ``SEGDRIVE_RENDERER=gl`` or ``software`` forces one; unset, OpenGL over EGL is used where it
    works, and otherwise the software renderer with a warning (it is slower, and its depth,
    fog and lamps are approximations: see ``envs.sim.render_software``).
    """
    choice = os.environ.get(RENDERER_ENV, "").strip().lower()
    if choice not in ("", "gl", "software"):
        raise ValueError(f"{RENDERER_ENV}={choice!r}: use 'gl', 'software' or leave it unset")
    if choice == "software":
        return _use_software()
    if choice == "gl":
        headless_pipe()  # raises with install instructions
        return "gl"
    try:
        headless_pipe()
    except RuntimeError as err:
        logger.warning(
            "%s Falling back to panda3d's software renderer p3tinydisplay: slower, with "
            "approximate depth and weather (set %s=software to silence this).",
            err,
            RENDERER_ENV,
        )
        return _use_software()
    return "gl"


def _use_software() -> Literal["software"]:
    if headless_pipe.cache_info().currsize == 0:
        # No GL in this process, whose settings this would override: p3tinydisplay wants
        # power-of-two textures.
        load_prc_file_data("segdrive-software-only", "textures-power-2 down\n")
    return "software"
