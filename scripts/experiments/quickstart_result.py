#!/usr/bin/env python3
"""docs/results/quickstart.json from a finished quickstart run: one row per stage (status, wall
time, key metric), plus the fine-tuned classifier's top-1/top-5 and ONNX Runtime's largest
difference from burn, stamped (scripts/stamp.py; keys in docs/results/README.md).

    ./scripts/quickstart.sh && python3 scripts/experiments/quickstart_result.py [RUN_DIR]
        [--out FILE] [--command CMD]      (RUN_DIR: runs/quickstart)

Reads RUN_DIR/summary.json (written by `eesmm run`), RUN_DIR/finetune/eval.json,
RUN_DIR/verify/verify.json and, for a stage the run skipped as up to date, the wall time of the
run that made it (RUN_DIR/.eesmm/STAGE.done.json). Refuses a run that did not complete.
"""
import argparse
import datetime
import json
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
import stamp  # noqa: E402  (scripts/stamp.py)

ROOT = pathlib.Path(__file__).resolve().parents[2]


def load(path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        sys.exit(f"quickstart_result.py: {path} not found (has the quickstart finished?)")


def stage_row(run_dir, stage):
    wall_s = stage["wall_s"]
    if wall_s is None and stage["status"] == "skipped":  # up to date: the recorded run's time
        wall_s = load(run_dir / ".eesmm" / f"{stage['name']}.done.json")["wall_s"]
    return {"stage": stage["name"], "kind": stage["kind"], "status": stage["status"],
            "wall_s": None if wall_s is None else round(wall_s, 1), "metric": stage["metric"]}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", nargs="?", default=str(ROOT / "runs" / "quickstart"))
    parser.add_argument("--out", default=str(ROOT / "docs" / "results" / "quickstart.json"))
    parser.add_argument("--command", default="./scripts/quickstart.sh",
                        help="what produced the run (stamped)")
    args = parser.parse_args()
    run_dir = pathlib.Path(args.run_dir)

    summary = load(run_dir / "summary.json")
    unfinished = [s["name"] for s in summary["stages"] if s["status"] not in ("ran", "skipped")]
    if summary["status"] != "completed" or unfinished:
        sys.exit(f"quickstart_result.py: {run_dir}: the run is {summary['status']} "
                 f"(stages not done: {', '.join(unfinished) or 'none'}); nothing written")
    rows = [stage_row(run_dir, stage) for stage in summary["stages"]]
    evaluation = load(run_dir / "finetune" / "eval.json")
    verify = load(run_dir / "verify" / "verify.json")
    result = {
        "top1": evaluation["top1"],
        "top5": evaluation["top5"],
        "eval_images": evaluation["images"],
        "ort_max_abs": max(c["max_abs"] for c in verify["comparisons"]),
        "ort_tolerance": verify["tolerance"],
        "ort_tolerance_kind": verify["tolerance_kind"],
        "ort_passed": verify["passed"],
        "onnx_precision": verify["precision"],
        "wall_s": round(sum(r["wall_s"] or 0.0 for r in rows), 1),
    }
    # The run's date: when `eesmm run` wrote its summary.
    ended = datetime.datetime.fromtimestamp((run_dir / "summary.json").stat().st_mtime,
                                            datetime.timezone.utc)
    stamp.write(args.out, stamp.make(args.command), rows,
                date=ended.strftime("%Y-%m-%dT%H:%M:%SZ"), result=result)
    print(f"{args.out}: top-1 {100 * result['top1']:.2f} %, top-5 {100 * result['top5']:.2f} %, "
          f"ORT max abs {result['ort_max_abs']:.2e}, {result['wall_s']:.1f} s of stages")


if __name__ == "__main__":
    main()
