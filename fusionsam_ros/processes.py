"""ROS child processes for the demo and the tests: one environment recipe, one wrapper.

``ros_environment`` is what every node, player, evaluator or launch started from Python
gets: its own ROS_DOMAIN_ID, discovery kept on this host (Kilted ignores
ROS_LOCALHOST_ONLY), the Fast DDS profile with the 64 MB shared-memory segment (the
default 512 KB one drops most 640x480 images between processes) and unbuffered, uncoloured
output, so a log file can be waited on. ``LoggedProcess`` runs one command into a log file
and stops it with SIGINT, as Ctrl-C and ``ros2 launch`` do.

A child inherits an ignored SIGINT (a background job of a non-interactive shell, ``nohup``)
and ``ros2 launch`` then never sees one: it only hooks the interpreter's own handler, which
Python does not install when SIGINT is ignored at start. Children here therefore start with
SIGINT at its default, whatever this process does with it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path

from .paths import fastdds_profile_file


def ros_environment(
    domain_id: int, omp_threads: str, base: Mapping[str, str] | None = None
) -> dict[str, str]:
    """``base`` (default: this process's environment) plus the settings above."""
    env = dict(os.environ if base is None else base)
    env.update(
        ROS_DOMAIN_ID=str(domain_id),
        ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST",
        FASTDDS_DEFAULT_PROFILES_FILE=str(fastdds_profile_file()),
        PYTHONUNBUFFERED="1",
        RCUTILS_COLORIZED_OUTPUT="0",
        RCUTILS_LOGGING_BUFFERED_STREAM="0",
        OMP_NUM_THREADS=omp_threads,
    )
    return env


def _default_sigint() -> None:
    """Runs in the child between fork and exec."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


class LoggedProcess:
    """A child process whose combined stdout/stderr goes to ``log_path``."""

    def __init__(
        self,
        cmd: list[str],
        env: Mapping[str, str],
        log_path: Path,
        cwd: Path | None = None,
        name: str | None = None,
    ) -> None:
        self.cmd = cmd
        self.name = name or Path(cmd[0]).name
        self.log_path = log_path
        self.killed = False  # True when stop() had to SIGKILL it
        self._log = open(log_path, "wb")  # noqa: SIM115 - closed in stop()
        ignored = signal.getsignal(signal.SIGINT) is signal.SIG_IGN
        self.proc = subprocess.Popen(
            cmd,
            env=dict(env),
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            preexec_fn=_default_sigint if ignored else None,  # noqa: PLW1509 - one syscall
        )

    @property
    def returncode(self) -> int | None:
        return self.proc.poll()

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def tail(self, lines: int = 15) -> str:
        return "\n".join(self.output().splitlines()[-lines:])

    def wait_for_output(self, text: str, timeout_s: float, interval_s: float = 0.1) -> bool:
        """True once ``text`` is in the log; False on timeout or when the process exited."""
        deadline = time.monotonic() + timeout_s
        while True:
            if text in self.output():
                return True
            if self.proc.poll() is not None:
                return text in self.output()  # it may have written it just before exiting
            if time.monotonic() >= deadline:
                return False
            time.sleep(interval_s)

    def wait(self, timeout_s: float) -> int | None:
        """The exit code, or None if it still runs after ``timeout_s``."""
        try:
            return self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            return None

    def stop(self, timeout_s: float = 15.0) -> int:
        """SIGINT; SIGKILL (and ``killed``) if it is still running after ``timeout_s``."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            if self.wait(timeout_s) is None:
                self.proc.kill()
                self.proc.wait()
                self.killed = True
        self._log.close()
        return self.proc.returncode
