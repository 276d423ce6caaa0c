"""Run every shell command of README.md and of the docs' quickstart as a newcomer would: each block in a fresh
clone of the committed repository, with a fresh virtual environment, from the repository root.

    python3 tools/walk_commands.py              # every block (builds fastconv once per install command)
    python3 tools/walk_commands.py --list       # only print the blocks
    python3 tools/walk_commands.py --skip-ci    # not the blocks .ci/run has just run itself (README's tests)
    python3 tools/walk_commands.py --keep       # keep the clones, venvs and logs (path printed at the end)

A command block is a fenced ```sh block in README.md, or a ``.. code-block:: console`` block of
docs/guide/quickstart.rst (its ``$ `` lines).  The commands of a block run one after the other in one shell
(``set -e``) so that a block reads like what a user types.  Each block gets its own clone and venv because
commands such as ``pip install -e .`` change the checkout that later blocks would see.  Packages come from the
configured package index as for any user (pip's own configuration applies); nothing is installed outside the
throw-away directory.  Exit status 1 when a block fails; its log's last lines are printed.
"""
import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SOURCES = ("README.md", os.path.join("docs", "guide", "quickstart.rst"))
TIMEOUT = 40 * 60      # seconds per block (a build, a default benchmark run or the whole suite fit easily)


def _markdown_blocks(text):
    return [[line for line in b.splitlines() if line.strip() and not line.lstrip().startswith("#")]
            for b in re.findall(r"^```sh\n(.*?)^```", text, re.S | re.M)]


def _console_blocks(text):
    blocks = []
    for m in re.finditer(r"^\.\. code-block:: console\n\n((?:[ \t]+.*\n|\n)+)", text, re.M):
        cmds = [line.strip()[2:] for line in m.group(1).splitlines() if line.strip().startswith("$ ")]
        if cmds:
            blocks.append(cmds)
    return blocks


def blocks(root=ROOT):
    """``[(source file, [command, ...]), ...]`` in document order."""
    out = []
    for rel in SOURCES:
        with open(os.path.join(root, rel), encoding="utf-8") as f:
            text = f.read()
        found = _markdown_blocks(text) if rel.endswith(".md") else _console_blocks(text)
        out += [(rel, [_strip_comment(c) for c in cmds]) for cmds in found]
    return out


def _strip_comment(command):
    """``cmd   # explanation`` -> ``cmd`` (a ``#`` after two spaces starts an explanation, as in the docs)."""
    return re.split(r"\s{2,}#\s", command, maxsplit=1)[0].rstrip()


def _fresh(workdir, n):
    clone = os.path.join(workdir, "clone%d" % n)
    venv = os.path.join(workdir, "venv%d" % n)
    subprocess.run(["git", "clone", "--quiet", ROOT, clone], check=True)
    subprocess.run([sys.executable, "-m", "venv", venv], check=True)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    env["VIRTUAL_ENV"] = venv
    env["PATH"] = os.path.join(venv, "bin") + os.pathsep + env.get("PATH", "")
    env["MPLBACKEND"] = "Agg"
    return clone, env


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--list", action="store_true", help="print the command blocks and exit")
    p.add_argument("--skip-ci", action="store_true", help="skip the blocks whose commands are lines of .ci/run")
    p.add_argument("--keep", action="store_true", help="keep the throw-away directory")
    args = p.parse_args(argv)
    todo = blocks()
    if args.skip_ci:
        with open(os.path.join(ROOT, ".ci", "run")) as f:
            ci = {line.strip() for line in f}
        todo = [(src, cmds) for src, cmds in todo if not set(cmds) <= ci]
    if args.list:
        for src, cmds in todo:
            print("%s:\n    %s" % (src, "\n    ".join(cmds)))
        return 0
    workdir = tempfile.mkdtemp(prefix="fastconv-walk-")
    failed = []
    for n, (src, cmds) in enumerate(todo):
        clone, env = _fresh(workdir, n)
        log = os.path.join(workdir, "block%d.log" % n)
        print("[%d/%d] %s: %s" % (n + 1, len(todo), src, " ; ".join(cmds)), flush=True)
        t0 = time.perf_counter()
        with open(log, "w") as f:
            try:
                res = subprocess.run(["bash", "-c", "set -e\n" + "\n".join(cmds)], cwd=clone, env=env, stdout=f,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, timeout=TIMEOUT)
                code = res.returncode
            except subprocess.TimeoutExpired:
                code = "timeout after %d s" % TIMEOUT
        took = time.perf_counter() - t0
        if code == 0:
            print("    ok (%.0f s)" % took, flush=True)
        else:
            failed.append(src)
            with open(log) as f:
                tail = f.read().splitlines()[-25:]
            print("    FAILED (exit %s, %.0f s); last lines of %s:\n      %s" % (code, took, log, "\n      ".join(tail)),
                  flush=True)
        if not args.keep:
            shutil.rmtree(os.path.join(workdir, "clone%d" % n), ignore_errors=True)
            shutil.rmtree(os.path.join(workdir, "venv%d" % n), ignore_errors=True)
    print("%d of %d command blocks passed" % (len(todo) - len(failed), len(todo)))
    if args.keep or failed:
        print("logs in", workdir)
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
