#!/usr/bin/env python3
"""Exec-to-exit figures for scripts/bench-startup.sh.

  bench-startup.py EXEC_MEASURE RUNS CHURN_COUNT SUBJECTS_FILE

EXEC_MEASURE is scripts/lib/exec-measure.c built: it starts each measured
run, so that the peak RSS is the command's and not Python's.

SUBJECTS_FILE holds one subject a line, tab-separated:
  NAME <tab> run <tab> ARG...          a command that boots the guest and exits 0
  NAME <tab> n/a <tab> REASON          a column that cannot be measured, and why

For each subject, measured the same way and interleaved:
  cpu      user + system time of the process and its threads (wait4 rusage)
  wall     spawn to reaped exit, as the parent sees it
  rss      peak resident set (wait4 ru_maxrss)
  churn    microVMs started and stopped per second with 8 in flight
Runs alternate: every round runs each subject once, the order rotated each
round, so drifting load on a shared machine hits all subjects alike. Churn
batches alternate the same way. Prints medians with the interquartile range
and the ratio of each median to the last subject's (the floor).
"""
import os
import statistics
import subprocess
import sys
import time

IN_FLIGHT = 8
CHURN_ROUNDS = 3


def spawn(argv):
    null = os.open(os.devnull, os.O_RDWR)
    try:
        actions = [(os.POSIX_SPAWN_DUP2, null, 0), (os.POSIX_SPAWN_DUP2, null, 1), (os.POSIX_SPAWN_DUP2, null, 2)]
        return os.posix_spawnp(argv[0], argv, os.environ, file_actions=actions)
    finally:
        os.close(null)


def one_run(measure, argv):
    """One run under exec-measure: exit status, wall ms, CPU ms, peak RSS KiB."""
    out = subprocess.run([measure] + argv, stdout=subprocess.PIPE, check=True, text=True).stdout.split()
    code, wall, cpu, rss = (int(x) for x in out)
    return code, wall / 1000, cpu / 1000, rss


def churn(argv, count):
    """Starts `count` VMs, IN_FLIGHT at a time; returns VMs per second and the first failure."""
    started = time.monotonic()
    running, launched, failure = 0, 0, None
    while launched < count or running:
        while running < IN_FLIGHT and launched < count:
            spawn(argv)
            running += 1
            launched += 1
        _, status = os.wait()
        running -= 1
        code = os.waitstatus_to_exitcode(status)
        if code != 0 and failure is None:
            failure = code
    return count / (time.monotonic() - started), failure


def quartiles(values):
    if len(values) < 4:
        return min(values), max(values)
    q = statistics.quantiles(values, n=4)
    return q[0], q[2]


def main(argv):
    measure, runs, churn_count, subjects_file = argv[0], int(argv[1]), int(argv[2]), argv[3]
    subjects = []
    with open(subjects_file) as f:
        for line in f:
            name, kind, *rest = line.rstrip("\n").split("\t")
            subjects.append({"name": name, "argv": rest if kind == "run" else None,
                             "why": rest[0] if kind != "run" else None,
                             "cpu": [], "wall": [], "rss": [], "churn": [], "failed": None})
    live = [s for s in subjects if s["argv"]]
    for s in live:  # warm-up: page cache, KVM module state
        code = one_run(measure, s["argv"])[0]
        if code != 0:
            s["failed"] = f"exit status {code}"
    live = [s for s in live if not s["failed"]]
    for round_ in range(runs):
        for i in range(len(live)):
            s = live[(round_ + i) % len(live)]
            code, wall, cpu, rss = one_run(measure, s["argv"])
            if code != 0:
                s["failed"] = s["failed"] or f"exit status {code}"
                continue
            s["wall"].append(wall)
            s["cpu"].append(cpu)
            s["rss"].append(rss / 1024)
    for round_ in range(CHURN_ROUNDS if churn_count else 0):
        for i in range(len(live)):
            s = live[(round_ + i) % len(live)]
            rate, failure = churn(s["argv"], churn_count)
            if failure is not None:
                s["failed"] = s["failed"] or f"exit status {failure} under churn"
            s["churn"].append(rate)

    floor = subjects[-1]
    rows = [("cpu", "CPU ms, exec to exit", "{:.1f}", "<= 2x floor"),
            ("wall", "wall ms, exec to exit", "{:.1f}", "<= 1.15x floor"),
            ("rss", "max RSS MiB", "{:.1f}", "<= 5 MiB"),
            ("churn", f"churn VMs/s, {IN_FLIGHT} at a time", "{:.1f}", ">= 0.75x floor")]
    width = 30
    header = "figure".ljust(width) + "".join(s["name"].ljust(width) for s in subjects) + "target"
    print(header)
    for key, label, fmt, target in rows:
        cells = []
        for s in subjects:
            values = s[key]
            if s["argv"] is None:
                cells.append("n/a")
            elif not values:
                cells.append("-" if not s["failed"] else f"FAILED ({s['failed']})")
            else:
                median = statistics.median(values)
                low, high = quartiles(values)
                cell = f"{fmt.format(median)} [{fmt.format(low)}-{fmt.format(high)}]"
                if floor[key] and s is not floor:
                    cell += f" {median / statistics.median(floor[key]):.2f}x"
                cells.append(cell)
        print(label.ljust(width) + "".join(c.ljust(width) for c in cells) + target)
    print(f"  medians [interquartile range] and ratio to {floor['name']}; {runs} alternating runs each,"
          f" churn {CHURN_ROUNDS} alternating batches of {churn_count}")
    for s in subjects:
        if s["argv"] is None:
            print(f"  {s['name']}: n/a: {s['why']}")
        elif s["failed"]:
            print(f"  {s['name']}: FAILED: {s['failed']}: {' '.join(s['argv'])}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
