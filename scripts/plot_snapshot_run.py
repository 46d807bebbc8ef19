#!/usr/bin/env python3
"""Draws the samples of scripts/snapshot_run.py as an SVG: each node's resident memory and
redb file size against the entries committed, with snapshots on and off.

    scripts/plot_snapshot_run.py SAMPLES.csv OUT.svg
"""
import csv
import sys

W, H = 980, 420
PANEL_W, PANEL_H = 400, 300
LEFT, TOP = 70, 50
GAP = 90
COLORS = {"on": "#1f6fb4", "off": "#d1452b"}
DASH = {1: "", 2: "6,3", 3: "2,3"}


def series(rows, field):
    out = {}
    for r in rows:
        if not r["commit"] or not r[field]:
            continue
        key = (r["mode"], int(r["node"]))
        out.setdefault(key, []).append((float(r["commit"]), float(r[field])))
    return out


def nice_max(v):
    """The smallest 1, 2 or 5 times a power of ten at or above `v`."""
    for mag in range(0, 15):
        for step in (1, 2, 5):
            m = step * 10 ** mag
            if m >= v:
                return m
    return v


def panel(x0, title, unit, data, xmax):
    ymax = nice_max(max((y for pts in data.values() for _, y in pts), default=1) * 1.1)
    out = [f'<g transform="translate({x0},{TOP})">',
           f'<text x="{PANEL_W / 2}" y="-18" text-anchor="middle" font-size="15">{title}</text>',
           f'<rect x="0" y="0" width="{PANEL_W}" height="{PANEL_H}" fill="none" stroke="#888"/>']
    for k in range(6):
        y = PANEL_H - PANEL_H * k / 5
        v = ymax * k / 5
        out.append(f'<line x1="0" x2="{PANEL_W}" y1="{y}" y2="{y}" stroke="#eee"/>')
        out.append(f'<text x="-6" y="{y + 4}" text-anchor="end" font-size="11">{v:g}</text>')
        x = PANEL_W * k / 5
        out.append(f'<text x="{x}" y="{PANEL_H + 16}" text-anchor="middle" font-size="11">'
                   f'{xmax * k / 5 / 1000:g}k</text>')
    out.append(f'<text x="{PANEL_W / 2}" y="{PANEL_H + 34}" text-anchor="middle" '
               f'font-size="12">entries committed</text>')
    out.append(f'<text x="-48" y="{PANEL_H / 2}" text-anchor="middle" font-size="12" '
               f'transform="rotate(-90 -48 {PANEL_H / 2})">{unit}</text>')
    for (mode, node), pts in sorted(data.items()):
        pts.sort()
        path = " ".join(f"{PANEL_W * x / xmax:.1f},{PANEL_H - PANEL_H * y / ymax:.1f}"
                        for x, y in pts)
        out.append(f'<polyline points="{path}" fill="none" stroke="{COLORS.get(mode, "#000")}" '
                   f'stroke-width="1.6" stroke-dasharray="{DASH.get(node, "")}"/>')
    out.append("</g>")
    return out


def main():
    rows = list(csv.DictReader(open(sys.argv[1])))
    rss = series(rows, "rss_mb")
    db = series(rows, "db_mb")
    # The last sample may overshoot a round count by a few entries (the leader's no-op).
    xmax = nice_max(0.99 * max((x for pts in rss.values() for x, _ in pts), default=1))
    svg = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" '
           f'font-family="sans-serif">', f'<rect width="{W}" height="{H}" fill="white"/>']
    svg += panel(LEFT, "resident memory per node", "MB", rss, xmax)
    svg += panel(LEFT + PANEL_W + GAP, "redb file size per node", "MB", db, xmax)
    ly = H - 22
    lx = LEFT
    for mode, label in (("on", "snapshots on (default policy)"), ("off", "snapshots off")):
        svg.append(f'<line x1="{lx}" x2="{lx + 30}" y1="{ly}" y2="{ly}" '
                   f'stroke="{COLORS[mode]}" stroke-width="2"/>')
        svg.append(f'<text x="{lx + 36}" y="{ly + 4}" font-size="12">{label}</text>')
        lx += 250
    for node, dash in DASH.items():
        svg.append(f'<line x1="{lx}" x2="{lx + 30}" y1="{ly}" y2="{ly}" stroke="#444" '
                   f'stroke-width="1.6" stroke-dasharray="{dash}"/>')
        svg.append(f'<text x="{lx + 36}" y="{ly + 4}" font-size="12">node {node}</text>')
        lx += 100
    svg.append("</svg>")
    with open(sys.argv[2], "w") as f:
        f.write("\n".join(svg) + "\n")


if __name__ == "__main__":
    main()
