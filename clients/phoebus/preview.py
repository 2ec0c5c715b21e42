"""Static layout previews of the ``.bob`` screens (no Phoebus needed): docs/img/phoebus_*.png.

Draws every widget's box at its position with its text or PV name, so the layout can be
reviewed without a Phoebus installation. It is a sketch of the geometry, not a rendering of
live values::

    python clients/phoebus/preview.py
"""

from __future__ import annotations

import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402

HERE = Path(__file__).resolve().parent
OUT = HERE.parents[1] / "docs" / "img"

STYLE = {  # type -> (face colour, edge colour)
    "group": ("none", "grey"), "label": ("none", "none"), "textupdate": ("#e8e8e8", "#a0a0a0"),
    "textentry": ("white", "#404040"), "combo": ("white", "#404040"), "action_button": ("#d0d8e8", "#405080"),
    "led": ("#30c030", "#206020"), "embedded": ("none", "#c0c0c0"), "progressbar": ("#d0f0d0", "#208020"), "xyplot": ("#f8f8ff", "#404080"),
}


def _text(w: ET.Element) -> str:
    kind = w.get("type")
    if kind in ("label", "action_button"):
        return w.findtext("text") or ""
    if kind == "group":
        return w.findtext("name") or ""
    if kind == "xyplot":
        traces = [t.findtext("y_pv", "").replace("$(P=PICO:)", "") for t in w.iter("trace")]
        return (w.findtext("title") or "") + "\n" + "\n".join(traces)
    pv = (w.findtext("pv_name") or "").replace("$(P=PICO:)", "")
    return "" if kind == "led" else pv


def draw(widgets: list[ET.Element], ax, x0: int = 0, y0: int = 0) -> None:
    for w in widgets:
        kind = w.get("type")
        x, y = x0 + int(w.findtext("x")), y0 + int(w.findtext("y"))
        wd, ht = int(w.findtext("width")), int(w.findtext("height"))
        face, edge = STYLE.get(kind, ("#ffe0e0", "red"))
        ax.add_patch(Rectangle((x, y), wd, ht, facecolor=face, edgecolor=edge, lw=0.8))
        text = _text(w)
        if kind == "group":
            ax.text(x + 4, y + 2, text, fontsize=7, va="top", weight="bold", color="#404040")
            draw(w.findall("widget"), ax, x + 2, y + 20)
        elif kind == "embedded":  # the embedded screen's widgets, macros left as written
            draw(ET.parse(HERE / w.findtext("file")).getroot().findall("widget"), ax, x, y)
        elif text:
            ax.text(x + 3, y + ht / 2 if kind != "xyplot" else y + 12, text, fontsize=5.5 if kind != "label" else 6.5,
                    va="center" if kind != "xyplot" else "top", clip_on=True,
                    weight="bold" if w.find("font") is not None else "normal")


def preview(bob: Path, png: Path) -> None:
    root = ET.parse(bob).getroot()
    width, height = int(root.findtext("width")), int(root.findtext("height"))
    fig = plt.figure(figsize=(width / 100, height / 100), dpi=100)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(0, width)
    ax.set_ylim(height, 0)
    ax.axis("off")
    draw(root.findall("widget"), ax)
    fig.savefig(png)
    plt.close(fig)


def main() -> int:
    OUT.mkdir(parents=True, exist_ok=True)
    for bob in sorted(HERE.glob("*.bob")):
        png = OUT / f"phoebus_{bob.stem}.png"
        preview(bob, png)
        print(f"wrote {png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
