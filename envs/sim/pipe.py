"""The process-wide panda3d graphics pipe: OpenGL over EGL with no window system.

panda3d's configuration is global, so it is set here once, before the first pipe is made:
headless GL as the display, no audio, no vsync. Every renderer shares the pipe but owns its
engine, buffers and scene graph.
"""

from __future__ import annotations

import functools
import logging
import os

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


@functools.lru_cache(maxsize=1)
def headless_pipe() -> GraphicsPipe:
    """The shared OpenGL pipe (Mesa llvmpipe without a GPU).

    Raises:
        RuntimeError: if OpenGL over EGL is unavailable. The renderer needs GLSL shaders for its
            single pass (colour, labels and depth), which panda3d's software ``p3tinydisplay``
            lacks, so there is no silent fallback: install Debian's ``libegl1`` and
            ``libgl1-mesa-dri`` (or a GPU driver).
    """
    # Rasterise in the calling thread unless the user chose otherwise: at these image sizes
    # llvmpipe's rasteriser threads cost more in hand-offs than they win, even with cores to
    # spare (2-core machine, not pinned: 160x96 753 vs 488 frames/s, 400x300 ~200 vs ~150),
    # and training runs one renderer per env process, which would oversubscribe the cores.
    os.environ.setdefault("LP_NUM_THREADS", "0")
    load_prc_file_data("segdrive-render", _CONFIG)
    pipe = GraphicsPipeSelection.get_global_ptr().make_module_pipe("p3headlessgl")
    if pipe is None or not pipe.is_valid():
        logger.error("panda3d's p3headlessgl pipe is unavailable; camera rendering is disabled")
        raise RuntimeError(
            "no OpenGL over EGL for panda3d (p3headlessgl); install libegl1 and libgl1-mesa-dri "
            "(Debian) or a GPU driver. The software p3tinydisplay pipe cannot run the camera "
            "shader (labels and depth), so there is no fallback."
        )
    return pipe
