#!/usr/bin/env python3
"""Execute the mlalora report notebooks headless and export self-contained HTML.

    python3 notebooks_export/export.py --error R.h5 --throughput T.h5 --fma F.h5 --out DIR

Each notebook whose report is given is executed (nbclient, with a per-cell
timeout) with its report path in the environment (MLALORA_ERROR_REPORT,
MLALORA_THROUGHPUT_REPORT, MLALORA_FMA_REPORT; fma.ipynb also gets the
throughput report when one is given) and exported with nbconvert's
HTMLExporter to DIR/<name>.html: plots are embedded as base64 PNG, so the file
needs nothing else to show them. Each file is written to a temporary name and
renamed into place only when complete.

The kernel is always the interpreter running this script (a private kernel
spec in a temporary JUPYTER_PATH), so no installed "python3" kernel spec is
needed and the kernel sees the same h5py / matplotlib.

Exit status: 0 all written; 2 usage or bad input (no report given, a report
missing, unreadable or of the wrong kind); 3 a notebook failed or the output
could not be written (or a Python package is missing).
"""
import argparse
import json
import os
import shutil
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))

# name -> (report option, environment variable, expected report kind)
NOTEBOOKS = [
    ("errors", "error", "MLALORA_ERROR_REPORT", "error-report"),
    ("throughput", "throughput", "MLALORA_THROUGHPUT_REPORT", "throughput-report"),
    ("fma", "fma", "MLALORA_FMA_REPORT", "fma-report"),
]
KERNEL_NAME = "mlalora-export-python"
EXIT_USAGE, EXIT_FAILURE = 2, 3


def die(code, message):
    print(f"export: error: {message}", file=sys.stderr)
    sys.exit(code)


def check_report(path, expected_kind, option):
    """Exit 2 with a clear message unless path is a readable report of the expected kind."""
    import h5py

    if not os.path.exists(path):
        die(EXIT_USAGE, f"--{option} {path}: no such file")
    if not os.path.isfile(path):
        die(EXIT_USAGE, f"--{option} {path}: not a regular file")
    try:
        with h5py.File(path, "r") as f:
            kind = f.attrs.get("kind")
            if isinstance(kind, bytes):
                kind = kind.decode("utf-8", "replace")
            elif kind is not None:
                kind = str(kind)
            has_rows = "rows" in f
    except Exception as e:  # OSError for non-HDF5 / truncated / permission denied
        die(EXIT_USAGE, f"--{option} {path}: cannot read as HDF5: {e}")
    if kind != expected_kind:
        die(EXIT_USAGE, f"--{option} {path}: report kind is {kind!r}, expected {expected_kind!r}")
    if not has_rows:
        print(f"export: warning: {path} has no /rows table; the notebook will say so", file=sys.stderr)


def make_kernel_spec(root):
    """A kernel spec that runs ipykernel under this very interpreter."""
    d = os.path.join(root, "kernels", KERNEL_NAME)
    os.makedirs(d)
    spec = {
        # log_level=ERROR: no "running over TCP without encryption" banner per kernel.
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}",
                 "--IPKernelApp.log_level=ERROR"],
        "display_name": "Python (mlalora export)",
        "language": "python",
    }
    with open(os.path.join(d, "kernel.json"), "w") as f:
        json.dump(spec, f)


def cell_error_text(exc, nb):
    """The error output of the failing cell, or the exception text."""
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            if out.get("output_type") == "error":
                tb = "\n".join(out.get("traceback", []))
                try:
                    from nbconvert.filters import strip_ansi
                    tb = strip_ansi(tb)
                except Exception:
                    pass
                src = cell.get("source", "")
                first = src.splitlines()[0] if src else ""
                return f"cell starting {first!r}:\n{tb}"
    return f"{type(exc).__name__}: {exc}"


def run_one(name, env, out_dir, timeout, workdir):
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError
    from nbconvert import HTMLExporter

    src = os.path.join(HERE, name + ".ipynb")
    try:
        nb = nbformat.read(src, as_version=4)
    except Exception as e:
        die(EXIT_FAILURE, f"{name}: cannot read notebook {src}: {e}")

    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)  # the kernel inherits this process's environment
    t0 = time.time()
    client = NotebookClient(nb, timeout=timeout, kernel_name=KERNEL_NAME, allow_errors=False,
                            resources={"metadata": {"path": workdir}})
    try:
        client.execute()
    except (CellExecutionError, CellTimeoutError, DeadKernelError) as e:
        detail = cell_error_text(e, nb)
        if isinstance(e, CellTimeoutError):
            detail = f"a cell ran past --timeout {timeout}s: {e}"
        die(EXIT_FAILURE, f"notebook {name}.ipynb failed:\n{detail}")
    except Exception as e:
        die(EXIT_FAILURE, f"notebook {name}.ipynb could not be executed: {type(e).__name__}: {e}")
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    # Defensive: an error output that did not raise still fails the export.
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            if out.get("output_type") == "error":
                die(EXIT_FAILURE, f"notebook {name}.ipynb has an error output: {out.get('ename')}: "
                                  f"{out.get('evalue')}")

    for k, cell in enumerate(nb.cells):
        for out in cell.get("outputs", []):
            if out.get("output_type") == "stream" and out.get("name") == "stderr":
                first = (out.get("text") or "").strip().splitlines()[:1]
                print(f"export: warning: {name}.ipynb cell {k} wrote to stderr: {first[0] if first else ''}",
                      file=sys.stderr)

    exporter = HTMLExporter()
    exporter.embed_images = True
    try:
        body, _ = exporter.from_notebook_node(nb, resources={"metadata": {"name": f"mlalora {name}"}})
    except Exception as e:
        die(EXIT_FAILURE, f"notebook {name}.ipynb: HTML export failed: {type(e).__name__}: {e}")
    dest = os.path.join(out_dir, name + ".html")
    tmp = os.path.join(out_dir, f".{name}.html.tmp.{os.getpid()}")
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(body)
        os.replace(tmp, dest)
    except OSError as e:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        die(EXIT_FAILURE, f"writing {dest}: {e}")
    plots = body.count('src="data:image/png;base64')
    print(f"export: {name}: executed in {time.time() - t0:.1f}s, {plots} plot(s)", file=sys.stderr)
    return dest


def main(argv=None):
    ap = argparse.ArgumentParser(
        description="Execute the mlalora report notebooks and export them as self-contained HTML.")
    ap.add_argument("--error", metavar="R.h5", help="error report (mlalora verify) -> errors.html")
    ap.add_argument("--throughput", metavar="T.h5",
                    help="throughput report (mlalora bench) -> throughput.html; also joined in fma.html")
    ap.add_argument("--fma", metavar="F.h5", help="FMA report (mlalora fma) -> fma.html")
    ap.add_argument("--out", metavar="DIR", required=True, help="output folder (created if missing)")
    ap.add_argument("--timeout", type=int, default=600, metavar="S",
                    help="per-cell execution timeout in seconds (default 600)")
    args = ap.parse_args(argv)  # usage errors exit 2

    reports = {"error": args.error, "throughput": args.throughput, "fma": args.fma}
    if not any(reports.values()):
        die(EXIT_USAGE, "give at least one of --error, --throughput, --fma")
    if args.timeout <= 0:
        die(EXIT_USAGE, "--timeout must be positive")

    missing = []
    for mod in ("h5py", "numpy", "matplotlib", "nbformat", "nbclient", "nbconvert", "ipykernel"):
        try:
            __import__(mod)
        except Exception:
            missing.append(mod)
    if missing:
        die(EXIT_FAILURE, f"Python package(s) missing for {sys.executable}: {', '.join(missing)} "
                          f"(scripts/setup.sh installs them)")

    for name, opt, _, kind in NOTEBOOKS:
        if reports[opt]:
            check_report(reports[opt], kind, opt)
    abs_reports = {k: os.path.abspath(v) for k, v in reports.items() if v}

    out_dir = os.path.abspath(args.out)
    try:
        os.makedirs(out_dir, exist_ok=True)
    except OSError as e:
        die(EXIT_FAILURE, f"--out {args.out}: {e}")
    if not os.access(out_dir, os.W_OK):
        die(EXIT_FAILURE, f"--out {args.out}: not writable")

    scratch = tempfile.mkdtemp(prefix="mlalora-export-")
    saved_env = {k: os.environ.get(k) for k in
                 ("JUPYTER_PATH", "IPYTHONDIR", "JUPYTER_PLATFORM_DIRS", "JUPYTER_RUNTIME_DIR", "MPLBACKEND")}
    written = []
    try:
        make_kernel_spec(scratch)
        os.environ["JUPYTER_PATH"] = scratch + (os.pathsep + saved_env["JUPYTER_PATH"]
                                                if saved_env["JUPYTER_PATH"] else "")
        os.environ["IPYTHONDIR"] = os.path.join(scratch, "ipython")  # no user profile / startup files
        os.environ["JUPYTER_PLATFORM_DIRS"] = "1"
        os.environ["JUPYTER_RUNTIME_DIR"] = os.path.join(scratch, "runtime")  # connection files
        os.environ["MPLBACKEND"] = "module://matplotlib_inline.backend_inline"
        for name, opt, var, _ in NOTEBOOKS:
            if not reports[opt]:
                continue
            env = {var: abs_reports[opt]}
            if name == "fma":
                # fma.ipynb joins with the throughput report only when one is given.
                env["MLALORA_THROUGHPUT_REPORT"] = abs_reports.get("throughput", "")
            written.append(run_one(name, env, out_dir, args.timeout, scratch))
    finally:
        for k, v in saved_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        shutil.rmtree(scratch, ignore_errors=True)
    print("written:")
    for p in written:
        print(p)
    return 0


if __name__ == "__main__":
    sys.exit(main())
