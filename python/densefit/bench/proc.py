"""What the measurement scripts (:mod:`.memory`, :mod:`.scaling`, :mod:`.startup`,
:mod:`.threads`) share: fresh child processes that answer in JSON, resident-memory counters
from ``/proc/self/status`` (Linux), and markdown tables."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time

MB = 1 << 20
CHILD = "--child"


def run_child(module: str, *args, env: dict | None = None) -> dict:
    """Run ``python -m module --child args...`` in a fresh interpreter (``env`` added to this
    one's) and return the JSON object it prints on its last line of output."""
    return run_python("-m", module, CHILD, *args, env=env)


def run_python(*args, env: dict | None = None) -> dict:
    """Run ``python args...`` in a fresh interpreter; the JSON object of its last output line."""
    command = [sys.executable, *map(str, args)]
    done = subprocess.run(command, env={**os.environ, **(env or {})}, capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"{' '.join(command)} exited with {done.returncode}:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def answer(result: dict) -> None:
    """A child's reply to :func:`run_child`."""
    print(json.dumps(result), flush=True)


def status() -> dict[str, int]:
    """Memory counters of this process in bytes: ``VmRSS`` (resident), ``RssAnon`` (anonymous:
    heap, numpy arrays), ``RssFile`` (file pages mapped: libraries, memmaps) and ``VmHWM`` (peak
    resident). Empty where ``/proc`` is missing."""
    out = {}
    try:
        with open("/proc/self/status") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key in ("VmRSS", "RssAnon", "RssFile", "VmHWM"):
                    out[key] = int(value.split()[0]) * 1024
    except OSError:
        pass
    return out


class Peak:
    """Peak resident memory while a ``with`` block runs.

    ``vm_hwm``: the kernel's own peak (``VmHWM``), reset on entry by writing 5 to
    ``/proc/self/clear_refs``; exact, whatever holds the GIL (``None`` if the reset is not
    allowed). ``peaks``: the largest ``VmRSS``, ``RssAnon`` and ``RssFile`` seen by a thread
    sampling every ``interval`` seconds (it runs while the computation releases the GIL, as the
    C++ core does). ``before``: the counters on entry.
    """

    def __init__(self, interval: float = 0.002):
        self.interval = interval
        self.before, self.peaks, self.vm_hwm = {}, {}, None
        self._stop = threading.Event()

    def _sample(self):
        while not self._stop.is_set():
            self._record(status())
            self._stop.wait(self.interval)

    def _record(self, counters):
        for key in ("VmRSS", "RssAnon", "RssFile"):
            if key in counters:
                self.peaks[key] = max(self.peaks.get(key, 0), counters[key])

    def __enter__(self):
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
            reset = True
        except OSError:
            reset = False
        self.before = status()
        self._record(self.before)
        self._reset = reset
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        after = status()
        self._record(after)
        if self._reset and "VmHWM" in after:
            self.vm_hwm = after["VmHWM"]
        return False

    @property
    def peak(self) -> int:
        """The best peak known: ``VmHWM`` when it could be reset, else the sampled ``VmRSS``."""
        return self.vm_hwm if self.vm_hwm is not None else self.peaks.get("VmRSS", 0)


def busy_cores(seconds: float = 1.0) -> float | None:
    """How many cores the whole machine kept busy over the next ``seconds`` (``/proc/stat``;
    ``None`` elsewhere): other processes competing with a measurement about to start."""
    def times():
        with open("/proc/stat") as f:
            values = [int(v) for v in f.readline().split()[1:]]
        return sum(values), values[3] + values[4]          # total, idle + iowait
    try:
        total0, idle0 = times()
        time.sleep(seconds)
        total1, idle1 = times()
    except OSError:
        return None
    return (os.cpu_count() or 1) * (1 - (idle1 - idle0) / max(1, total1 - total0))


def conditions() -> str:
    """The cores and how busy other processes kept them just before a measurement starts."""
    busy = busy_cores()
    busy = "?" if busy is None else f"{busy:.1f}"
    return f"Machine: {os.cpu_count()} logical cores; {busy} of them busy with other work in the second before the start."


def table(head: list[str], rows: list[list]) -> list[str]:
    """A markdown table."""
    return ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)] + \
        ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]


def megabytes(n: float) -> str:
    return f"{n / MB:,.1f} MB"
