#!/usr/bin/env python3
"""Assembles OUT_DIR/gpu_check.json from what scripts/gpu/gpu_check.sh left in OUT_DIR/parts/.

    python3 scripts/gpu/gpu_check_report.py [--dry-run] OUT_DIR

Every part reports its exit status, budget, wall time (`timed_out` when `timeout` stopped it),
the peak GPU memory nvidia-smi sampled while it ran (MiB, the whole GPU) and, when it failed, the
end of its stderr. `complete` lists every check that did not hold (a part that failed or timed out,
a missing or non-finite images/s, parity over its tolerance, a loss curve short of its steps or
non-finite, a quickstart stage that did not run); the script exits 1 when there is one.
Standard library only, plus numpy for the parity check (it comes with torch).
"""
import glob
import json
import math
import os
import sys

FIXTURES = "tests/fixtures/timm-swin-tiny"
LIMIT_BYTES = 64 * 1024 * 1024
# eesmm's CPU export and forward match timm to 1e-4 (docs/correctness.md); CUDA is held to it.
PARITY_TOL = 1e-4


def read(path, default=""):
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return default


def json_lines(text):
    rows = []
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("{"):
            try:
                rows.append(json.loads(line))
            except ValueError:
                pass
    return rows


def part(parts, name):
    meta = read(os.path.join(parts, name + ".meta"))
    if not meta:
        return None
    info = json.loads(meta)
    info["timed_out"] = info["rc"] in (124, 137)
    samples = [int(v) for v in read(os.path.join(parts, name + ".mem")).split() if v.isdigit()]
    info["peak_gpu_memory_mib"] = max(samples) if samples else None
    if info["rc"] != 0:
        info["stderr_tail"] = read(os.path.join(parts, name + ".err"))[-1500:]
    rows = json_lines(read(os.path.join(parts, name + ".out")))
    if rows:
        info["result"] = rows[0]
    return info


def parity(parts):
    import numpy as np

    result = {"tolerance": PARITY_TOL}
    for name in ("pooled", "logits"):
        path = os.path.join(parts, f"parity_{name}.npy")
        if not os.path.exists(path):
            result[name] = None
            continue
        got = np.load(path).astype(np.float64)
        want = np.load(os.path.join(FIXTURES, f"expected_{name}.npy")).astype(np.float64)
        diff = np.abs(got - want)
        finite = bool(np.isfinite(got).all())
        result[name] = {
            "max_abs": float(diff.max()) if finite else None,
            "relative": float(diff.max() / np.abs(want).max()) if finite else None,
            "finite": finite,
        }
    result["passed"] = all(
        r is not None and r["finite"] and r["max_abs"] <= PARITY_TOL
        for r in (result["pooled"], result["logits"])
    )
    return result


def loss_curve(run_dir):
    # One row per logged step; an epoch's closing row (held-out separation) has no "loss".
    rows = [r for r in json_lines(read(os.path.join(run_dir, "pretrain", "metrics.jsonl"))) if "loss" in r]
    return {
        "steps": len(rows),
        "loss": [[r["step"], r["loss"]] for r in rows],
        "first_loss": rows[0]["loss"] if rows else None,
        "last_loss": rows[-1]["loss"] if rows else None,
        "images_per_s_last": rows[-1].get("images_per_s") if rows else None,
    }


def quickstart(run_dir):
    summary = read(os.path.join(run_dir, "summary.json"))
    if not summary:
        return None
    summary = json.loads(summary)
    return {
        "status": summary.get("status"),
        "stages": [
            {k: s.get(k) for k in ("name", "status", "metric", "wall_s", "note")}
            for s in summary.get("stages", [])
        ],
        "stages_wall_s": sum(s.get("wall_s") or 0 for s in summary.get("stages", [])),
    }


def positive(value):
    return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


# The images/s each benchmark part must report.
RATES = {
    "encoder": ("forward_images_per_s", "forward_backward_images_per_s"),
    "pretrain": ("eesmm_images_per_s", "simmim_images_per_s"),
}


def failed_checks(report):
    """Every check of a full run that did not hold, as sentences (empty: complete)."""
    failed = []
    parts = report["parts"]
    models = report["inputs"].get("models", "").split()
    benchmarks = {
        f"{kind}_{who}_{model}": keys
        for kind, keys in RATES.items() for who in ("eesmm", "torch") for model in models
    }
    for name in ["parity", "pretrain_200", "quickstart", *benchmarks]:
        info = parts.get(name)
        if info is None:
            failed.append(f"part {name} did not run")
        elif info["rc"] != 0:
            failed.append(f"part {name} exited {info['rc']}" + (" (timed out)" if info["timed_out"] else ""))
        elif name in benchmarks:
            result = info.get("result") or {}
            for key in benchmarks[name]:
                if not positive(result.get(key)):
                    failed.append(f"part {name}: {key} is {result.get(key)!r}, not a positive number")
    if not report["parity"]["passed"]:
        failed.append(f"parity over {PARITY_TOL} or not finite: {report['parity']}")
    curve, steps = report["pretrain_200"], int(report["inputs"].get("pretrain_200_steps", 0))
    if curve["steps"] != steps:
        failed.append(f"pretrain_200 logged {curve['steps']} steps, not {steps}")
    if not all(math.isfinite(loss) for _, loss in curve["loss"]):
        failed.append("pretrain_200 has a non-finite loss")
    run = report["quickstart"]
    if run is None or run["status"] != "completed" or any(s["status"] != "ran" for s in run["stages"]):
        failed.append(f"quickstart did not complete every stage: {run}")
    return failed


def inputs(parts):
    values = {}
    for line in read(os.path.join(parts, "inputs.txt")).splitlines():
        key, _, value = line.partition("=")
        values.setdefault(key, [])
        values[key].append(value)
    flat = {k: v[0] if len(v) == 1 else v for k, v in values.items()}
    probe = read(os.path.join(parts, "probe.err")).strip()
    flat["cuda_probe"] = probe.splitlines()[-1] if probe else ("ok" if flat.get("cuda_rc") == "0" else "")
    size = sum(int(flat.get(k, 0)) for k in ("tracked_bytes", "dist_bytes"))
    if not flat.get("binary", "dist/").startswith("dist/"):
        size += int(flat.get("binary_bytes", 0))  # travels besides dist/
    flat["binary_stripped"] = ("not stripped" not in flat["binary_file"]) if "binary_file" in flat else None
    flat["copy_bytes"] = size
    flat["copy_fits_64_mib"] = size <= LIMIT_BYTES if size else None
    missing = []
    if flat.get("binary", "").startswith("missing"):
        missing.append(flat["binary"])
    elif flat.get("cuda_rc") != "0":
        missing.append("a CUDA run of the binary: " + flat["cuda_probe"])
    if flat.get("binary_stripped") is False:
        missing.append("a stripped binary (scripts/gpu/gpu_pack.sh strips it)")
    for plan in ("plan_pretrain_200", "plan_quickstart"):
        if flat.get(plan + "_rc", "0") != "0":
            flat[plan + "_error"] = read(os.path.join(parts, plan + ".err")).strip()[-800:]
            missing.append(f"the {plan[5:]} pipeline's overrides to resolve: {flat[plan + '_error']}")
    for module in ("torch", "timm", "yaml", "numpy"):
        if flat.get(f"python_{module}") == "missing":
            missing.append(f"python module {module}")
    if "data_missing" in flat:
        missing.append(f"data {flat['data_missing']} (scripts/gpu/gpu_pack.sh)")
    if flat.get("copy_fits_64_mib") is False:
        missing.append(f"a copy under 64 MiB ({size / 1e6:.1f} MB)")
    flat["ready"] = not missing and flat.get("script_ok") == "true"
    flat["not_ready_because"] = missing
    return flat


def main():
    args = sys.argv[1:]
    dry_run = args[:1] == ["--dry-run"]
    out = args[-1]
    parts = os.path.join(out, "parts")
    report = {"dry_run": dry_run, "inputs": inputs(parts)}
    if not dry_run:
        report["gpu"] = read(os.path.join(parts, "gpu.txt")).strip()
        names = sorted(os.path.basename(p)[: -len(".meta")] for p in glob.glob(os.path.join(parts, "*.meta")))
        report["parts"] = {name: part(parts, name) for name in names}
        report["wall_s"] = round(sum(p["wall_s"] for p in report["parts"].values()), 2)
        report["parity"] = parity(parts)
        report["pretrain_200"] = loss_curve(os.path.join(out, "pretrain-200"))
        report["quickstart"] = quickstart(os.path.join(out, "quickstart"))
        failed = failed_checks(report)
        report["complete"] = {"passed": not failed, "failed": failed}
    path = os.path.join(out, "gpu_check.json")
    with open(path, "w") as f:
        json.dump(report, f, indent=1)
    print(f"wrote {path}")
    inputs_ = report["inputs"]
    print(f"ready: {inputs_['ready']}" + (f" (missing: {'; '.join(inputs_['not_ready_because'])})" if not inputs_["ready"] else ""))
    if not dry_run:
        complete = report["complete"]
        print(f"complete: {complete['passed']}" + "".join(f"\n  {line}" for line in complete["failed"]))
        sys.exit(0 if complete["passed"] else 1)


if __name__ == "__main__":
    main()
