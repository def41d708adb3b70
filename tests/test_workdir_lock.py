"""The workdir lock: a second process is refused with a message naming the holder; a killed holder frees it."""
import errno
import os
import signal
import subprocess
import sys
import textwrap

import pytest

from jpeft import workdir_lock

_HOLD = textwrap.dedent("""
    import sys, time
    from jpeft import workdir_lock
    with workdir_lock.hold(sys.argv[1]):
      print("locked", flush=True)
      time.sleep(60)
""")


def _start_holder(workdir):
  proc = subprocess.Popen([sys.executable, "-c", _HOLD, workdir], stdout=subprocess.PIPE, text=True)
  assert proc.stdout.readline().strip() == "locked"
  return proc


def test_second_process_is_refused_and_named(tmp_path):
  proc = _start_holder(str(tmp_path))
  try:
    with pytest.raises(workdir_lock.WorkdirLockedError, match=f"pid {proc.pid}.*another --workdir"):
      with workdir_lock.hold(str(tmp_path)):
        pass
  finally:
    proc.kill()
    proc.wait()


def test_kill_9_releases_the_lock(tmp_path):
  proc = _start_holder(str(tmp_path))
  os.kill(proc.pid, signal.SIGKILL)
  proc.wait()
  with workdir_lock.hold(str(tmp_path)) as path:
    assert os.path.exists(path)


def test_same_process_twice_is_refused(tmp_path):
  with workdir_lock.hold(str(tmp_path)):
    with pytest.raises(workdir_lock.WorkdirLockedError):
      with workdir_lock.hold(str(tmp_path)):
        pass
  with workdir_lock.hold(str(tmp_path)):  # released after the block
    pass


def test_sweep_processes_share_the_lock_and_a_run_is_refused_by_them(tmp_path):
  """Sweep processes join the workdir's lock shared (the first finds itself alone); a run, which needs the
  workdir alone, is refused while one is in, and a sweep is refused while a run holds it."""
  first, alone = workdir_lock.join(str(tmp_path))
  second, second_alone = workdir_lock.join(str(tmp_path))
  try:
    assert (alone, second_alone) == (True, False)
    with pytest.raises(workdir_lock.WorkdirLockedError, match=f"pid {os.getpid()}"):
      with workdir_lock.hold(str(tmp_path)):
        pass
  finally:
    os.close(first)
    os.close(second)
  with workdir_lock.hold(str(tmp_path)):
    with pytest.raises(workdir_lock.WorkdirLockedError, match="is in use by another jpeft process"):
      workdir_lock.join(str(tmp_path))


def test_a_file_system_without_flock_is_one_clear_error(tmp_path, monkeypatch):
  def no_flock(fd, operation):
    raise OSError(errno.ENOLCK, "No locks available")
  monkeypatch.setattr(workdir_lock.fcntl, "flock", no_flock)
  with pytest.raises(workdir_lock.WorkdirLockedError,
                     match=r"Cannot lock '.*\.jpeft\.lock' \(No locks available\): the file system does not support "
                           "flock"):
    workdir_lock.join(str(tmp_path))
