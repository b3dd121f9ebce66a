"""Plot a GRPO run's curves from the trainer's own logs: training reward and accuracy per step, held-out accuracy.

    python -m falcon_h1r.training.plot_grpo --run runs/tiny-grpo --output grpo_curves.png \
        --heldout 0=eval_sft.json --heldout 300=eval_grpo.json

The training curves come from the newest checkpoint's ``trainer_state.json`` (TRL logs every step's mean reward
and mean accuracy reward); held-out points are `evaluate_tiny` results (greedy, and sampled when present) at the
given steps.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def log_history(run: Path) -> list[dict]:
    checkpoints = sorted(run.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    if not checkpoints:
        raise FileNotFoundError(f"{run} has no checkpoint-*/trainer_state.json. Fix: point --run at a GRPO output_dir")
    return json.loads((checkpoints[-1] / "trainer_state.json").read_text())["log_history"]


def moving_average(values: list[float], k: int) -> list[float]:
    out, total = [], 0.0
    for i, v in enumerate(values):
        total += v - (values[i - k] if i >= k else 0.0)
        out.append(total / min(i + 1, k))
    return out


def plot(run: Path, heldout: dict[int, dict], output: Path, smooth: int = 20) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [e for e in log_history(run) if "reward" in e]
    steps = [e["step"] for e in rows]
    accuracy_key = next(k for k in rows[0] if k.startswith("rewards/math_accuracy") and k.endswith("/mean"))
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for key, label, colour in (("reward", "training reward (weighted sum)", "tab:blue"),
                               (accuracy_key, "training accuracy (T 0.85 samples)", "tab:orange")):  # fmt: skip
        values = [e[key] for e in rows]
        ax.plot(steps, values, color=colour, alpha=0.2, lw=0.8)
        ax.plot(steps, moving_average(values, smooth), color=colour, lw=2, label=f"{label}, mean of {smooth} steps")
    if heldout:
        xs = sorted(heldout)
        ax.plot(xs, [heldout[x]["greedy"]["all"] for x in xs], "o-", color="tab:green", lw=2,
                label="held-out greedy accuracy (500)")  # fmt: skip
        sampled = [x for x in xs if "sampled_mean" in heldout[x]]
        if sampled:
            ax.plot(sampled, [heldout[x]["sampled_mean"]["all"] for x in sampled], "s--", color="tab:red",
                    label="held-out sampled accuracy (T 0.6)")  # fmt: skip
    ax.set_xlabel("GRPO step")
    ax.set_ylabel("reward / accuracy")
    ax.set_title(f"GRPO: {run.name}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(output, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True, help="the GRPO output_dir (with checkpoint-*/trainer_state.json)")
    parser.add_argument("--output", required=True, help="PNG to write")
    parser.add_argument("--heldout", action="append", default=[], metavar="STEP=EVAL.json", help="repeatable")
    parser.add_argument("--smooth", type=int, default=20)
    args = parser.parse_args(argv)
    heldout = {}
    for item in args.heldout:
        step, _, path = item.partition("=")
        heldout[int(step)] = json.loads(Path(path).read_text())
    plot(Path(args.run), heldout, Path(args.output), args.smooth)
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
