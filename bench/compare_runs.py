"""Do two ``fastconv bench --json`` runs name the same fastest algorithm where their leads are real?

    fastconv bench --json a.json && fastconv bench --json b.json
    python bench/compare_runs.py a.json b.json

For every layer and op measured in both runs: each run's fastest algorithm, its lead over the runner-up
(runner-up time / fastest time) and whether the run called that lead real or noise.  Outcomes:

* ``agree (real)``: the same fastest algorithm, and at least one run called the lead real;
* ``CONFLICT``: both runs called their lead real, for different algorithms (exit status 1);
* ``real vs noise``: one run called a lead real, the other found no real lead and another fastest algorithm --
  the machine's state changed between the runs more than the first run's noise showed;
* ``agree (noise)`` / ``differ (noise)``: neither run called its lead real; they may well disagree.
"""
import argparse
import json
import sys

__all__ = ["compare", "main"]


def _summary(path):
    with open(path) as f:
        result = json.load(f)
    if "summary" not in result:
        raise SystemExit("%s: not a fastconv bench --json result with verdicts" % path)
    return {(s["layer"], s["op"]): s for s in result["summary"] if "runner_up" in s}, result


def compare(a, b):
    """Rows ``[layer, op, fastest a, lead a, fastest b, lead b, outcome]`` and the counts of each outcome."""
    rows, counts = [], {"agree (real)": 0, "CONFLICT": 0, "real vs noise": 0, "agree (noise)": 0,
                        "differ (noise)": 0}
    for key in a:
        if key not in b:
            continue
        sa, sb = a[key], b[key]
        real = [sa["lead"], sb["lead"]].count("real")
        same = sa["fastest"] == sb["fastest"]
        if same:
            outcome = "agree (real)" if real else "agree (noise)"
        else:
            outcome = ("differ (noise)", "real vs noise", "CONFLICT")[real]
        counts[outcome] += 1
        rows.append([key[0], key[1], "%s %.2f %s" % (sa["fastest"], sa["runner_up_over_fastest"], sa["lead"]),
                     "%s %.2f %s" % (sb["fastest"], sb["runner_up_over_fastest"], sb["lead"]), outcome])
    return rows, counts


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("first")
    p.add_argument("second")
    args = p.parse_args(argv)
    a, ra = _summary(args.first)
    b, rb = _summary(args.second)
    rows, counts = compare(a, b)
    widths = [max(len(r[i]) for r in rows + [["layer", "op", "run 1", "run 2", "outcome"]]) for i in range(5)]
    for r in [["layer", "op", "run 1: fastest, runner-up/fastest, lead", "run 2", "outcome"]] + rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
    for name, r in (("run 1", ra), ("run 2", rb)):
        print("%s: load %s, noise median %.0f %%" % (name, " ".join("%.1f" % x for x in r["load"]["before"]),
                                                      100 * r["noise"]["median_spread"]))
    print(", ".join("%s: %d" % kv for kv in counts.items()))
    return 1 if counts["CONFLICT"] else 0


if __name__ == "__main__":
    sys.exit(main())
