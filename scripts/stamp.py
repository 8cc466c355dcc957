#!/usr/bin/env python3
"""The stamp every file in docs/results/ carries: the date, the command, the machine and the
versions behind its rows (docs/results/README.md describes the fields).

    python3 scripts/stamp.py --command "CMD" [--python PATH] [--torch V] [--timm V]
        prints the stamp as JSON
    python3 scripts/stamp.py wrap --command "CMD" --rows ROWS --out OUT.json [--python PATH]
        writes {"stamp": {...}, "rows": [...]} to OUT.json (temporary file + rename); ROWS is a
        JSON array or JSON Lines (one row per line)

--python: an interpreter whose torch and timm versions go into the stamp (absent when it cannot
import them); --torch / --timm give them directly. From Python (scripts/ on sys.path):
`import stamp; s = stamp.make(command); stamp.write(path, s, rows)`; `stamp.read(path)` reads a
stamped file or an old bare array; `stamp.invocation(__file__, sys.argv[1:], ENV_NAMES)` is a
script's own command line.
"""
import argparse
import datetime
import json
import os
import pathlib
import re
import shlex
import shutil
import subprocess
import sys
import tempfile

ROOT = pathlib.Path(__file__).resolve().parents[1]
SIMD = ("avx2", "fma", "avx512f")


def now():
    """The current time, UTC, ISO 8601 to the second: 2026-12-04T05:00:55Z."""
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _read(path):
    try:
        return pathlib.Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


def _run(*cmd):
    """A command's stripped stdout, or None when it fails or is missing."""
    try:
        done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def machine():
    cpuinfo = _read("/proc/cpuinfo")
    cpu = re.search(r"^model name\s*:\s*(.+)$", cpuinfo, re.M)
    if cpu is None:
        cpu = re.search(r"^Model name:\s*(.+)$", _run("lscpu") or "", re.M)
    flags = re.search(r"^flags\s*:\s*(.+)$", cpuinfo, re.M)
    memory = re.search(r"^MemTotal:\s*(\d+) kB", _read("/proc/meminfo"), re.M)
    os_name = re.search(r'^PRETTY_NAME="?([^"\n]*)"?', _read("/etc/os-release"), re.M)
    out = {
        "cpu": cpu.group(1).strip() if cpu else "unknown",
        "cores": os.cpu_count(),
        "memory_gb": round(int(memory.group(1)) / 2**20) if memory else None,
        "os": os_name.group(1) if os_name else sys.platform,
        "simd": [f for f in SIMD if flags and f in flags.group(1).split()],
    }
    if shutil.which("nvidia-smi"):
        gpus = _run("nvidia-smi", "--query-gpu=name", "--format=csv,noheader")
        if gpus:
            out["gpus"] = gpus.splitlines()
    return out


def eesmm_commit():
    """HEAD's short hash, `-dirty` when tracked files differ from it (docs/results/ excepted:
    results are not code, and a resumed run rewrites its own file)."""
    commit = _run("git", "rev-parse", "--short=12", "HEAD")
    if commit is None:
        return "unknown"
    changes = _run("git", "status", "--porcelain", "--untracked-files=no", "--", ".",
                   ":(exclude)docs/results")
    return commit + ("-dirty" if changes else "")


def _match(pattern, text):
    found = re.search(pattern, text, re.M)
    return found.group(1) if found else None


def python_versions(python):
    """torch and timm versions importable by the interpreter `python` (absent ones left out)."""
    code = ("import importlib, json\nout = {}\nfor key, name in (('pytorch', 'torch'), "
            "('timm', 'timm')):\n    try:\n        out[key] = importlib.import_module(name)"
            ".__version__\n    except Exception:\n        pass\nprint(json.dumps(out))")
    text = _run(python, "-c", code)
    return json.loads(text.splitlines()[-1]) if text else {}


def versions(python=None, torch=None, timm=None):
    package = _read(ROOT / "Cargo.toml").split("\n[", 1)[0]  # the [package] table comes first
    out = {
        "eesmm": _match(r'^version\s*=\s*"([^"]+)"', package),
        "eesmm_commit": eesmm_commit(),
        "burn": _match(r'^name = "burn"\nversion = "([^"]+)"', _read(ROOT / "Cargo.lock")),
        "onnxruntime": _match(r"^version=(\S+)", _read(ROOT / "scripts" / "setup_ort.sh")),
    }
    found = python_versions(python) if python else {}
    for key, given in (("pytorch", torch), ("timm", timm)):
        if given or key in found:
            out[key] = given or found[key]
    return out


def invocation(script, args, env=()):
    """The command line of a Python script run now: `NAME=value python3 scripts/... ARGS`, with
    those of the environment variables `env` that are set."""
    assigned = [f"{name}={shlex.quote(os.environ[name])}" for name in env if name in os.environ]
    path = pathlib.Path(script).resolve().relative_to(ROOT)
    return " ".join(assigned + [shlex.join(["python3", str(path), *args])])


def make(command, python=None, torch=None, timm=None, date=None):
    """The stamp of results produced now by `command`."""
    return {
        "date": date or now(),
        "command": command,
        "machine": machine(),
        "versions": versions(python, torch, timm),
    }


def keeping(stamp, previous):
    """`stamp` for a file that also keeps rows of an earlier file stamped `previous` (None: an
    unstamped file): those stamps go, oldest first, into `earlier`."""
    if previous is None:
        before = [{"unstamped": True}]
    else:
        before = previous.get("earlier", []) + [
            {k: v for k, v in previous.items() if k != "earlier"}]
    return dict(stamp, earlier=before)


def write(path, stamp, rows, date=None, **extra):
    """Writes {"stamp", "rows", **extra} to `path` through a temporary file and a rename; the
    stamp's date becomes `date`, or the time of writing."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {"stamp": dict(stamp, date=date or now()), "rows": rows, **extra}
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    umask = os.umask(0)
    os.umask(umask)
    try:
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp's 0600 → an ordinary file's mode
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(json.dumps(data, indent=1, ensure_ascii=False) + "\n")
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def read(path):
    """(stamp, rows) of a results file: a stamped one, or an old bare array (stamp None);
    (None, []) when there is no file."""
    path = pathlib.Path(path)
    if not path.exists():
        return None, []
    data = json.loads(path.read_text(encoding="utf-8"))
    if isinstance(data, list):
        return None, data
    return data.get("stamp"), data["rows"]


def read_rows(path):
    """Rows of a JSON array or of JSON Lines."""
    text = pathlib.Path(path).read_text(encoding="utf-8")
    if text.lstrip().startswith("["):
        return json.loads(text)
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def main(argv):
    wrap = bool(argv) and argv[0] == "wrap"
    parser = argparse.ArgumentParser(prog="stamp.py" + (" wrap" if wrap else ""),
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--command", required=True, help="the command that produced the rows")
    parser.add_argument("--python", help="interpreter whose torch/timm versions are stamped")
    parser.add_argument("--torch", help="PyTorch version (instead of --python's)")
    parser.add_argument("--timm", help="timm version (instead of --python's)")
    if wrap:
        parser.add_argument("--rows", required=True, help="JSON array or JSON Lines of rows")
        parser.add_argument("--out", required=True, help="the stamped JSON file to write")
    args = parser.parse_args(argv[1:] if wrap else argv)
    stamp = make(args.command, args.python, args.torch, args.timm)
    if wrap:
        write(args.out, stamp, read_rows(args.rows))
    else:
        print(json.dumps(stamp, indent=1, ensure_ascii=False))


if __name__ == "__main__":
    main(sys.argv[1:])
