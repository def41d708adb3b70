"""Runs several jpeft command lines in one child process, each as if it were its own `python ...` process.

Starting a program costs seconds of imports (JAX, TensorFlow) before it reads its flags; the tests of what a
program prints for bad input run dozens of them. This script imports those libraries once, then forks once per
command line: each fork runs the program as `__main__` (`python -m <module>` or `python <script>`), with its own
argv, sys.path[0], working directory, fresh absl flags (none are defined before the fork), stdout and stderr
(file descriptors, so C++ logging is captured too) and exit code, including atexit handlers. No JAX backend is
initialised before the fork, so no device threads are copied.

Usage: `python tests/program_runner.py CASES RESULTS`: CASES is a JSON file holding a list of {"args": [...as
after `python`...], "cwd": ..., "wave": <int, optional>}; RESULTS gets a JSON list of {"returncode", "stdout",
"stderr", "seconds", "pid"}, in order. The commands run one after the other, except that those with the same
"wave" run at once (processes racing for a workdir), waves in increasing order. Use it through
`tests.helpers.run_programs`.
"""
import atexit
import json
import os
import runpy
import sys
import tempfile
import time
import traceback

# The libraries every jpeft program imports (JAX, TensorFlow, as jpeft imports them), and no module that defines
# flags (those are the programs).
import jpeft.cli  # noqa: F401  pylint: disable=unused-import
import jpeft.train.trainer  # noqa: F401  pylint: disable=unused-import


def _exit_code(e: SystemExit) -> int:
  """What the interpreter does with an uncaught SystemExit."""
  if e.code is None:
    return 0
  if isinstance(e.code, int):
    return e.code
  print(e.code, file=sys.stderr)
  return 1


def _child(args: list[str], cwd: str) -> int:
  os.chdir(cwd)
  if args[0] == "-m":
    sys.argv, sys.path[0] = [args[1], *args[2:]], cwd
    run = lambda: runpy.run_module(args[1], run_name="__main__", alter_sys=True)
  elif args[0] == "-c":
    sys.argv, sys.path[0] = ["-c", *args[2:]], ""
    run = lambda: exec(compile(args[1], "<string>", "exec"), {"__name__": "__main__"})  # pylint: disable=exec-used
  else:
    script = os.path.abspath(args[0])
    sys.argv, sys.path[0] = [args[0], *args[1:]], os.path.dirname(script)
    run = lambda: runpy.run_path(script, run_name="__main__")
  try:
    run()
    code = 0
  except SystemExit as e:
    code = _exit_code(e)
  except BaseException:  # pylint: disable=broad-except  # the interpreter prints it and exits 1
    traceback.print_exc()
    code = 1
  try:
    atexit._run_exitfuncs()  # pylint: disable=protected-access
  finally:
    sys.stdout.flush()
    sys.stderr.flush()
  return code


def _start(args: list[str], cwd: str):
  """Forks the program; returns its pid and (its stdout file, its stderr file, its start time)."""
  out, err = tempfile.TemporaryFile(), tempfile.TemporaryFile()
  sys.stdout.flush()
  sys.stderr.flush()
  start = time.monotonic()
  pid = os.fork()
  if pid == 0:
    code = 1
    try:
      os.dup2(out.fileno(), 1)
      os.dup2(err.fileno(), 2)
      code = _child(args, cwd)
    finally:
      os._exit(code)  # pylint: disable=protected-access
  return pid, (out, err, start)


def _result(pid: int, status: int, out, err, start: float) -> dict:
  """An ended program's exit code (-N: killed by signal N), output, pid and wall time."""
  seconds = time.monotonic() - start
  with out, err:
    out.seek(0)
    err.seek(0)
    return {"returncode": os.waitstatus_to_exitcode(status), "stdout": out.read().decode(errors="replace"),
            "stderr": err.read().decode(errors="replace"), "seconds": seconds, "pid": pid}


def main() -> None:
  cases_path, results_path = sys.argv[1:]
  with open(cases_path) as f:
    cases = json.load(f)
  results = [None] * len(cases)
  waves = [case.get("wave", i) for i, case in enumerate(cases)]
  for wave in sorted(set(waves)):  # the programs of a wave run at once; the next wave starts when all ended
    running = {}
    for i, case in enumerate(cases):
      if waves[i] == wave:
        pid, program = _start(case["args"], case["cwd"])
        running[pid] = (i, program)
    while running:
      pid, status = os.wait()  # whichever ends first: its wall time ends there
      i, program = running.pop(pid)
      results[i] = _result(pid, status, *program)
  with open(results_path, "w") as f:
    json.dump(results, f)


if __name__ == "__main__":
  main()
