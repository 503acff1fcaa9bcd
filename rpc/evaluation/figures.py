"""Figure galleries: one PNG row per image with the image, each stage's map, the RS-CAM, masks and ground truth.

A map panel shows the strongest foreground channel as a heat overlay on the image (the paper's Figure 5 style);
a mask panel uses the VOC colormap with uncertain (255) pixels in white. A legend strip under each row names the
colours: the classes its masks show, white = uncertain (255: neither CRF pass is sure, ignored in training), and
the heat ramp of the maps from 0 to 1.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from rpc.data.index import DatasetIndex
from rpc.data.maps import as_dirs, find_map, load_cams
from rpc.data.palette import IGNORE_INDEX, read_mask, voc_colormap
from rpc.utils.io import atomic_path

TITLE_HEIGHT = 14


def heat_colors(x: np.ndarray) -> np.ndarray:
    """Values in [0, 1] ``(H, W)`` -> ``(H, W, 3)`` uint8 on a blue-cyan-yellow-red ramp."""
    x = np.clip(x, 0.0, 1.0)[..., None]
    stops = np.array([[0, 0, 128], [0, 200, 255], [255, 230, 0], [220, 0, 0]], np.float32)
    pos = x * (len(stops) - 1)
    lo = np.clip(np.floor(pos).astype(int), 0, len(stops) - 2)[..., 0]
    frac = pos[..., 0] - lo
    return (stops[lo] * (1 - frac[..., None]) + stops[lo + 1] * frac[..., None]).astype(np.uint8)


def map_panel(image: np.ndarray, cams: np.ndarray) -> np.ndarray:
    """Overlay of the foreground maximum of ``cams (K, H, W)`` (channel 0 = background) on ``image``."""
    fg = cams[1:].max(0) if cams.shape[0] > 1 else np.zeros(cams.shape[1:], np.float32)
    return (0.5 * image + 0.5 * heat_colors(fg)).astype(np.uint8)


def mask_panel(mask: np.ndarray) -> np.ndarray:
    colors = voc_colormap(256)
    colors[IGNORE_INDEX] = 255
    return colors[mask]


LEGEND_HEIGHT = 14
SWATCH = 10


def legend_entries(masks: list[np.ndarray], classes: list[str], with_maps: bool) -> list[tuple[str, object]]:
    """``(label, colour)`` for the legend: each class the masks show (VOC colours), ``uncertain (255)`` in white if
    a mask has it, and the maps' heat ramp (colour = ``"ramp"``)."""
    colors = voc_colormap(256)
    present = sorted({int(v) for m in masks for v in np.unique(m)})
    entries = [(classes[v] if v < len(classes) else str(v), tuple(int(c) for c in colors[v]))
               for v in present if v != IGNORE_INDEX]  # fmt: skip
    if IGNORE_INDEX in present:
        entries.append(("uncertain (255, white)", (255, 255, 255)))
    if with_maps:
        entries.append(("map 0..1", "ramp"))
    return entries


def _draw_legend(draw: ImageDraw.ImageDraw, y: int, entries) -> None:
    x = 2
    for label, colour in entries:
        if colour == "ramp":
            ramp = heat_colors(np.linspace(0, 1, 3 * SWATCH)[None])[0]
            for i, rgb in enumerate(ramp):
                draw.line([(x + i, y + 2), (x + i, y + 2 + SWATCH)], fill=tuple(int(c) for c in rgb))
            x += 3 * SWATCH
        else:
            draw.rectangle([x, y + 2, x + SWATCH, y + 2 + SWATCH], fill=colour, outline="black")
            x += SWATCH
        draw.text((x + 3, y + 1), label, fill="black")
        x += 3 + int(draw.textlength(label)) + 8


def compose_row(panels: list[tuple[str, np.ndarray]], legend=None) -> Image.Image:
    """Panels ``(title, (H, W, 3) uint8)`` of one size, side by side with a title strip above each and, given
    ``legend`` entries (:func:`legend_entries`), a legend strip below."""
    h, w = panels[0][1].shape[:2]
    extra = LEGEND_HEIGHT if legend else 0
    row = Image.new("RGB", (w * len(panels), h + TITLE_HEIGHT + extra), "white")
    draw = ImageDraw.Draw(row)
    for i, (title, rgb) in enumerate(panels):
        row.paste(Image.fromarray(rgb), (i * w, TITLE_HEIGHT))
        draw.text((i * w + 2, 1), title, fill="black")
    if legend:
        _draw_legend(draw, h + TITLE_HEIGHT, legend)
    return row


def make_figures(
    dataset_dir: str | os.PathLike,
    names: list[str],
    out_dir: str | os.PathLike,
    cam_dirs=None,
    mask_dirs: dict[str, str | os.PathLike] | None = None,
    ground_truth: bool = True,
) -> list[Path]:
    """Write ``out_dir/<name>.png`` per image: image | stage maps (if stored) | RS-CAM | masks | ground truth.
    ``mask_dirs`` maps a column title to a folder of ``<name>.png`` (pseudo masks, predictions)."""
    index = DatasetIndex.load(dataset_dir)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name in names:
        image = index.read_image(name)
        panels, masks = [("image", image)], []
        if cam_dirs:
            _, cams, stages = load_cams(find_map(as_dirs(cam_dirs), name), stages=True)
            if stages is not None and len(stages) > 1:
                panels += [(f"stage {k + 1}", map_panel(image, s)) for k, s in enumerate(stages)]
            panels.append(("RS-CAM" if stages is not None and len(stages) > 1 else "map", map_panel(image, cams)))
        for title, d in (mask_dirs or {}).items():
            masks.append(read_mask(Path(d) / f"{name}.png", index.num_classes))
            panels.append((title, mask_panel(masks[-1])))
        if ground_truth:
            masks.append(index.read_mask(name))
            panels.append(("ground truth", mask_panel(masks[-1])))
        path = out_dir / f"{name}.png"
        legend = legend_entries(masks, list(index.classes), with_maps=bool(cam_dirs))
        with atomic_path(path) as tmp:
            compose_row(panels, legend).save(tmp, format="PNG")
        written.append(path)
    return written
