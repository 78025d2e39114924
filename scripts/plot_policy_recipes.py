"""The README figure assets/policy_recipes.png: SR and SPL of the policy recipes in the
README Results table (each from `vlnav eval --split val_unseen --episodes 500` of a
`vlnav train` run; the figures are copied from those runs' metrics.json)."""

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

rows = [
    ("distances,\nbest answer", 0.242, 0.199),
    ("+ word\npermutation", 0.234, 0.201),
    ("matched\n(landmark\nmarks)", 0.292, 0.228),
    ("+ good\nanswers", 0.368, 0.273),
    ("+ colour\nmarks, room\nbeyond", 0.308, 0.245),
    ("+ Stop good\n≤ 2 m\n(prev. default)", 0.394, 0.325),
    ("prev. default\nwithout\nroom beyond", 0.348, 0.288),
    ("prev. default,\nlonger\n(800+2×300)", 0.354, 0.292),
    ("prev. default\n+ room where\neach move\nends", 0.344, 0.291),
    ("+ that, and\nnamed\nobjects", 0.392, 0.325),
    ("prev. default\n+ Stop bias 1\n(eval only)", 0.460, 0.327),
    ("+ Stop bias 1,\nalso in\nDAgger (prev.\ndefault)", 0.478, 0.326),
    ("prev. default,\nlonger\n(1000+3×200)", 0.426, 0.303),
    ("longer,\n`here`\nStop line", 0.346, 0.248),
    ("longer,\n3,600\nepisodes", 0.464, 0.330),
    ("prev. default\n+ named\nobjects\n(more: 4)", 0.470, 0.334),
    ("prev. default,\npath moves\nbending\n≤ 25 %", 0.280, 0.230),
    ("+ path\nmoves\n≤ 1 step\n(path\ndefault)", 0.492, 0.384),
    ("path\ndefault,\ngood within\n1 m", 0.450, 0.348),
    ("path\ndefault,\n180 other\nhouses", 0.486, 0.358),
    ("path\ndefault\n+ expected\nregret", 0.458, 0.354),
    ("path\ndefault,\n4 DAgger\nrounds", 0.500, 0.357),
    ("path\ndefault\n+ room where\neach move\nends", 0.494, 0.396),
    ("path\ndefault\n+ Stop head", 0.408, 0.312),
    ("path\ndefault\n+ visited\nmark", 0.474, 0.339),
    ("path\ndefault\n+ 2 para-\nphrases\nper path", 0.472, 0.363),
    ("path\ndefault\n+ visited\n+ room where\neach move\nends", 0.422, 0.355),
    ("path\ndefault\n+ progress\nwords", 0.496, 0.368),
    ("path\ndefault\n+ stop gate\n2 m (eval\nonly)", 0.584, 0.397),
    ("path\ndefault\n+ stop gate\n2 m (also\nin DAgger)", 0.562, 0.371),
    ("path default\n+ room where\neach move\nends + gate\n(eval only)", 0.620, 0.430),
    ("+ stop gate\nalso in\nDAgger", 0.630, 0.433),
    ("the same\nfrom an\nempty folder\n(default)", 0.624, 0.417),
    ("default\nretrained\n(another\nhost)", 0.642, 0.421),
    ("+ the expert\nstops within\n2 m", 0.576, 0.380),
    ("retrained\ndefault,\nStop bias −1\n(eval)", 0.646, 0.450),
    ("+ bias −1\nin DAgger\n+ weight\naverage", 0.640, 0.462),
    ("+ objects\nbeyond two\n(more: 6;\nsession-11\ndefault)", 0.660, 0.484),
    ("+ Stop good\n≤ 2.5 m", 0.634, 0.477),
]
fig, ax = plt.subplots(figsize=(30, 4.8), dpi=110)
x = range(len(rows))
w = 0.38
ax.bar([i - w / 2 for i in x], [r[1] for r in rows], w, label="SR", color="#3b75af")
ax.bar([i + w / 2 for i in x], [r[2] for r in rows], w, label="SPL", color="#ef8636")
ax.axhline(0.60, color="#3b75af", ls="--", lw=1)
ax.axhline(0.50, color="#ef8636", ls="--", lw=1)
ax.text(-0.45, 0.605, "SR target", ha="left", va="bottom", fontsize=8, color="#3b75af")
ax.text(-0.45, 0.505, "SPL target", ha="left", va="bottom", fontsize=8, color="#ef8636")
ax.axhline(0.030, color="grey", ls=":", lw=1)
ax.text(
    -0.45,
    0.036,
    "random agent SR",
    fontsize=8,
    color="grey",
    bbox=dict(facecolor="white", edgecolor="none", pad=1),
    zorder=5,
)
ax.set_xticks(list(x), [r[0] for r in rows], fontsize=8)
ax.set_ylim(0, 0.7)
ax.set_ylabel("500 val_unseen episodes")
ax.set_title(
    "Policy recipes (60 houses, 1,800 episodes, 600 + 2 × 200 steps unless noted; one run each, ±0.03 noise)",
    fontsize=9,
)
ax.legend(loc="upper left", fontsize=8)
fig.tight_layout()
fig.savefig("assets/policy_recipes.png")
