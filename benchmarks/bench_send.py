"""Benchmark: sending 10,000 messages into Postfix's smtp-sink on 127.0.0.1, against the anchors.

    make bench                                  # installs what it needs, then runs this
    .venv/bin/python benchmarks/bench_send.py [--count N] [--connections N] [--distant N] [--big N]

Measures, each in a process of its own (so its peak memory is its own):

- Bulk Mailer's engine, the whole pipeline as `bulk-mailer send` runs it: CSV import and
  checks, rendering of subject + HTML + text for each recipient, the journal (committed before
  MAIL FROM and after each reply), a progress event per change (--progress jsonl); no delay,
  no rate limit; on 1 connection and on N;
- the ceiling of Python's smtplib: one pre-built message sent again and again on 1 connection;
- Postfix's C load generator smtp-source on 1 connection;
- nodemailer (what the Electron app used) with its pool of 5 connections, and with a new
  connection per message as that app sent (skipped, with a note, when node is not installed),
  its sockets with TCP_NODELAY, its best case (with its default sockets each message waits for
  a delayed ACK here: that run is shown too, with fewer messages);

then the same through benchmarks/latency_proxy.py, a proxy on 127.0.0.1 that makes the sink look
40 ms away (20 ms each way; --delay-ms): the engine on 1 and 5 connections, nodemailer's pool
of 1 and of 5 (as shipped, and with TCP_NODELAY) and its connection-per-message path (1 and
5 at a time), all with an HTML-only body (--distant messages per run, default 500). It prints
messages per second, peak memory and the ratios to nodemailer's pools in two tables (local
rows with an HTML-only body beside HTML + text), then the time from Send to the first
message accepted, the import time of a 100,000-row CSV, and a 100,000-recipient campaign
through the CLI (rate and peak memory). Every byte goes to 127.0.0.1. When smtp-sink is
missing the server is aiosmtpd in its own process, which is far slower (about 400 messages
a second here) and caps every row: a note says so.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import platform
import shutil
import smtplib
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HERE = Path(__file__).resolve().parent
MESSAGE = json.loads((HERE / "bench_message.json").read_text(encoding="utf-8"))
SMTP_SINK, SMTP_SOURCE = "/usr/sbin/smtp-sink", "/usr/sbin/smtp-source"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def person(i: int) -> dict[str, str]:
    """Row i of the list (benchmarks/bench_nodemailer.js makes the same rows)."""
    return {"email": f"user{i}@example{i % 97}.org", "first_name": f"Jörg {i}" if i % 7 == 0 else f"Ann {i}",
            "code": f"C{i:06d}", "city": "Köln"}


def write_people(path: Path, n: int) -> Path:
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["email", "first_name", "code", "city"])
        for i in range(n):
            p = person(i)
            w.writerow([p["email"], p["first_name"], p["code"], p["city"]])
    return path


class Sink:
    """smtp-sink on 127.0.0.1 (aiosmtpd's sink in its own process when Postfix is missing)."""

    def __init__(self) -> None:
        self.port = free_port()
        if os.access(SMTP_SINK, os.X_OK):
            self.kind = "smtp-sink"
            user = ["-u", "nobody"] if os.geteuid() == 0 else []  # it refuses to run as root
            cmd = [SMTP_SINK, *user, f"127.0.0.1:{self.port}", "1024"]
        else:
            self.kind = "aiosmtpd"
            cmd = [sys.executable, "-m", "aiosmtpd", "-n", "-c", "aiosmtpd.handlers.Sink",
                   "-l", f"127.0.0.1:{self.port}"]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # noqa: S603
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.05)
        raise SystemExit(f"the {self.kind} server did not start")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


@dataclass
class Result:
    label: str
    connections: str
    sent: int
    seconds: float
    rss_mb: float
    first_ms: float | None = None
    note: str = ""

    @property
    def rate(self) -> float:
        return self.sent / self.seconds if self.seconds else 0.0


def run_child(cmd: list[str], env: dict[str, str] | None = None, timeout: float = 900) -> tuple[str, float]:
    """Run a command; (its standard output, its peak resident memory in MB)."""
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, env=env, cwd=ROOT)  # noqa: S603
        out = proc.stdout.read().decode("utf-8", "replace") if proc.stdout else ""
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0:
            err.seek(0)
            raise RuntimeError(f"{cmd[:3]} failed ({proc.returncode}): {err.read().decode()[-2000:]}")
    return out, usage.ru_maxrss / 1024  # kilobytes on Linux


def me(*args: str) -> list[str]:
    return [sys.executable, str(Path(__file__).resolve()), *args]


# -- the children ------------------------------------------------------------------------


class _FirstSent(io.TextIOBase):
    """Standard output for --progress jsonl: notes when the first 'sent' event comes."""

    def __init__(self, started: float) -> None:
        self.started, self.first, self.events = started, None, 0

    def write(self, text: str) -> int:
        self.events += text.count("\n")
        if self.first is None and '"status": "sent"' in text:
            self.first = time.perf_counter() - self.started
        return len(text)


def child_engine(port: str, people: str, connections: str, workdir: str, body: str = "both") -> None:
    sys.path.insert(0, str(ROOT))
    from backend import app, cli  # noqa: F401 - the core loaded before the clock starts, as before
    # (the CLI loads it when a command runs; its import time is in the start-up figures of
    # docs/performance.md, not in these rates)

    work = Path(workdir)
    (work / "body.html").write_text(MESSAGE["html"], encoding="utf-8")
    (work / "body.txt").write_text(MESSAGE["text"], encoding="utf-8")
    text = ["--text-file", str(work / "body.txt")] if body == "both" else []
    args = ["send", "--host", "127.0.0.1", "--port", port, "--security", "none", "--from", "Me <me@example.com>",
            "--to-file", people, "--subject", MESSAGE["subject"], "--html-file", str(work / "body.html"),
            *text, "--delay-ms", "0", "--progress", "jsonl",
            "--connections", connections, "--max-per-second", "0"]
    err = io.StringIO()
    started = time.perf_counter()  # Send: the command starts (after Python itself started)
    out = _FirstSent(started)
    code = cli.main(args, stdin=io.StringIO(), out=out, err=err)
    seconds = time.perf_counter() - started
    done = [line for line in err.getvalue().splitlines() if line.startswith("Done:")]
    print(json.dumps({"code": code, "seconds": seconds, "first_ms": (out.first or 0) * 1000,
                      "events": out.events, "done": done[-1] if done else err.getvalue()[-500:]}))


def child_smtplib(port: str, count: str) -> None:
    sys.path.insert(0, str(ROOT))
    from backend import compose
    from backend.recipients import Recipient

    template = compose.Template(MESSAGE["subject"], html=MESSAGE["html"], text=MESSAGE["text"])
    data = compose.render(template, Recipient("user1@example1.org", person(1), 2),
                          compose.parse_sender("Me <me@example.com>")).as_bytes()
    n = int(count)
    smtp = smtplib.SMTP("127.0.0.1", int(port))
    smtp.ehlo()
    started = time.perf_counter()
    for i in range(n):
        smtp.sendmail("me@example.com", [f"user{i}@example{i % 97}.org"], data)
    seconds = time.perf_counter() - started
    smtp.quit()
    print(json.dumps({"seconds": seconds, "size": len(data)}))


def child_import(people: str) -> None:
    sys.path.insert(0, str(ROOT))
    from backend.recipients import load_file

    started = time.perf_counter()
    imported = load_file(people)
    print(json.dumps({"seconds": time.perf_counter() - started, "valid": len(imported.recipients)}))


CHILDREN = {"engine": child_engine, "smtplib": child_smtplib, "import": child_import}


# -- the runs ----------------------------------------------------------------------------


def engine(port: int, people: Path, n: int, connections: int, label: str, body: str = "both") -> Result:
    with tempfile.TemporaryDirectory(prefix="bm-bench-") as home:
        env = {**os.environ, "BULK_MAILER_HOME": home}
        out, rss = run_child(me("engine", str(port), str(people), str(connections), home, body), env)
    got = json.loads(out.splitlines()[-1])
    if got["code"] != 0:
        raise RuntimeError(f"the engine did not send everything: {got['done']}")
    label += ", HTML only" if body == "html" else ", HTML + text"
    return Result(label, str(connections), n, got["seconds"], rss, got["first_ms"],
                  f"{got['events']:,} events; {got['done']}")


def smtplib_ceiling(sink: Sink, n: int) -> Result:
    out, rss = run_child(me("smtplib", str(sink.port), str(n)))
    got = json.loads(out.splitlines()[-1])
    return Result("Python smtplib, one pre-built message", "1", n, got["seconds"], rss,
                  note=f"{got['size']:,}-byte message, no rendering, no journal")


def smtp_source(sink: Sink, n: int, size: int) -> Result | str:
    if not os.access(SMTP_SOURCE, os.X_OK):
        return "smtp-source: not installed (apt package postfix); skipped"
    started = time.perf_counter()
    _, rss = run_child([SMTP_SOURCE, "-s", "1", "-d", "-m", str(n), "-l", str(size), "-f", "me@example.com",
                        "-t", "user@example.org", f"127.0.0.1:{sink.port}"])
    return Result("Postfix smtp-source (C)", "1", n, time.perf_counter() - started, rss,
                  note=f"{size:,}-byte message of filler")


def nodemailer(port: int, n: int, mode: str, sockets: str = "nodelay", connections: int = 5,
               body: str = "both") -> Result | str:
    node = shutil.which("node")
    if node is None:
        return f"nodemailer {mode}: node is not installed; skipped"
    if not (ROOT / "bench" / "node_modules" / "nodemailer").is_dir():
        return f"nodemailer {mode}: not installed under bench/ (make bench installs it); skipped"
    out, rss = run_child([node, str(HERE / "bench_nodemailer.js"), str(port), str(n), mode, str(connections),
                          sockets, body])
    got = json.loads(out.splitlines()[-1])
    if mode == "pool":
        label = f"nodemailer, pool of {connections}"
        label += ", as shipped" if sockets != "nodelay" else ", TCP_NODELAY"
    else:
        label = "nodemailer, a connection per message" + (f" ({connections} at a time)" if connections > 1 else "")
    label += ", HTML only" if body == "html" else ", HTML + text"
    return Result(label, str(connections), got["sent"], got["seconds"], rss, got["first_ms"],
                  f"renders subject and bodies per message; no journal; {n:,} messages")


class Proxy:
    """benchmarks/latency_proxy.py in its own process: the sink, DELAY ms away each way."""

    def __init__(self, target: int, delay_ms: float) -> None:
        self.port = free_port()
        self.proc = subprocess.Popen(  # noqa: S603
            [sys.executable, str(HERE / "latency_proxy.py"), str(self.port), str(target), str(delay_ms)],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        if self.proc.stdout is None or self.proc.stdout.readline().strip() != "ready":
            raise SystemExit("the latency proxy did not start")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


def machine() -> str:
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    node = subprocess.run(["node", "--version"], capture_output=True, text=True).stdout.strip() \
        if shutil.which("node") else "no node"  # noqa: S603, S607
    return (f"{os.cpu_count()} cores ({model}), {mem:.0f} GB RAM, {platform.system()} {platform.release()}, "
            f"Python {platform.python_version()}, node {node}")


def ratio(r: Result, anchor: Result | None) -> str:
    if anchor is None or not anchor.rate:
        return "n/a"
    x = r.rate / anchor.rate
    return f"{x:.2f}x" if x < 0.1 else f"{x:.1f}x"


def table(results: list[Result], columns: dict[str, Callable[[Result], Result | None]]) -> str:
    """One row per result, and a ratio column for each anchor: column name -> the anchor of a row."""
    lines = ["| sender | connections | msg/s | " + " | ".join(f"vs {a}" for a in columns) + " | peak RSS |",
             "| --- | ---: | ---: | " + " | ".join("---:" for _ in columns) + " | ---: |"]
    for r in results:
        cells = [ratio(r, anchor(r)) for anchor in columns.values()]
        lines.append(f"| {r.label} | {r.connections} | {r.rate:,.1f} | " + " | ".join(cells)
                     + f" | {r.rss_mb:.0f} MB |")
    return "\n".join(lines)


def run_steps(steps: list, results: list[Result], notes: list[str]) -> None:
    for step in steps:
        got = step()
        if isinstance(got, str):
            notes.append(got)
            print(f"  {got}", flush=True)
        else:
            results.append(got)
            print(f"  {got.label} ({got.connections}): {got.rate:,.1f} msg/s, {got.rss_mb:.0f} MB "
                  f"[{got.note}]", flush=True)


def find(results: list[Result], label: str) -> Result | None:
    return next((r for r in results if r.label == label), None)


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] in CHILDREN:
        CHILDREN[sys.argv[1]](*sys.argv[2:])
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=10_000, help="messages per local run (default 10,000)")
    parser.add_argument("--connections", type=int, default=4, help="N for the engine's pooled run (default 4)")
    parser.add_argument("--distant", type=int, default=500,
                        help="messages per run through the latency proxy (default 500; 0: skip those rows)")
    parser.add_argument("--delay-ms", type=float, default=20.0, help="the proxy's delay each way (default 20)")
    parser.add_argument("--big", type=int, default=100_000,
                        help="recipients of the large CLI campaign and the import timing (0: skip)")
    args = parser.parse_args()
    n, d = args.count, args.distant

    sink = Sink()
    notes: list[str] = []
    if sink.kind != "smtp-sink":
        notes.append("smtp-sink is not installed (apt package postfix): the server is aiosmtpd, about "
                     "400 messages a second here, which caps every row; run `make bench` as root to install it")
    print(f"Machine: {machine()}")
    print(f"Server: {sink.kind} on 127.0.0.1:{sink.port}; {n:,} messages per local run, {d:,} per distant run\n",
          flush=True)
    local: list[Result] = []
    distant: list[Result] = []
    big = imported = None
    with tempfile.TemporaryDirectory(prefix="bm-bench-") as tmp:
        people = write_people(Path(tmp) / "people.csv", n)
        try:
            port, c = sink.port, args.connections
            print("Local sink (127.0.0.1):", flush=True)
            run_steps([
                lambda: engine(port, people, n, 1, "Bulk Mailer engine, whole pipeline", "html"),
                lambda: engine(port, people, n, 1, "Bulk Mailer engine, whole pipeline"),
                lambda: engine(port, people, n, c, "Bulk Mailer engine, whole pipeline", "html"),
                lambda: engine(port, people, n, c, "Bulk Mailer engine, whole pipeline"),
                lambda: smtplib_ceiling(sink, n),
                lambda: smtp_source(sink, n, 2048),
                lambda: nodemailer(port, n, "pool", body="html"),
                lambda: nodemailer(port, n, "pool"),
                lambda: nodemailer(port, n, "per-message", connections=1),
                # As shipped, its sockets wait ~40 ms a message here (see bench_nodemailer.js): fewer.
                lambda: nodemailer(port, min(n, 1000), "pool", "default", body="html"),
            ], local, notes)
            if d:
                proxy = Proxy(port, args.delay_ms)
                try:
                    pp = proxy.port
                    few = min(d, 200)  # a new connection per message costs ~5 round trips: fewer
                    distant_people = write_people(Path(tmp) / "distant.csv", d)
                    print(f"\nDistant server (the sink behind a {args.delay_ms:g} ms each way proxy):", flush=True)
                    run_steps([
                        lambda: engine(pp, distant_people, d, 1, "Bulk Mailer engine", "html"),
                        lambda: engine(pp, distant_people, d, 5, "Bulk Mailer engine", "html"),
                        lambda: nodemailer(pp, d, "pool", "default", connections=1, body="html"),
                        lambda: nodemailer(pp, d, "pool", "default", connections=5, body="html"),
                        lambda: nodemailer(pp, d, "pool", connections=1, body="html"),
                        lambda: nodemailer(pp, d, "pool", connections=5, body="html"),
                        lambda: nodemailer(pp, few, "per-message", "default", connections=1, body="html"),
                        lambda: nodemailer(pp, few, "per-message", "default", connections=5, body="html"),
                    ], distant, notes)
                finally:
                    proxy.stop()
            if args.big:
                big_people = write_people(Path(tmp) / "big.csv", args.big)
                out, _ = run_child(me("import", str(big_people)))
                imported = json.loads(out.splitlines()[-1])
                print(f"  import of {args.big:,} rows: {imported['seconds']:.2f} s", flush=True)
                big = engine(port, big_people, args.big, c, f"{args.big:,}-recipient campaign (CLI)")
                print(f"  {big.label}: {big.rate:,.0f} msg/s, {big.rss_mb:.0f} MB", flush=True)
        finally:
            sink.stop()

    print("\nLocal sink:\n")
    shipped5 = find(local, "nodemailer, pool of 5, as shipped, HTML only")
    tuned5 = find(local, "nodemailer, pool of 5, TCP_NODELAY, HTML + text")
    print(table(local, {"nodemailer pool of 5, as shipped": lambda r: shipped5,
                        "nodemailer pool of 5, TCP_NODELAY": lambda r: tuned5}) + "\n")
    if distant:
        def pool_of(r: Result, sockets: str) -> Result | None:
            return find(distant, f"nodemailer, pool of {r.connections}, {sockets}, HTML only")

        print(f"Distant server ({2 * args.delay_ms:g} ms round trip), HTML only:\n")
        print(table(distant, {"nodemailer pool, same connections, as shipped": lambda r: pool_of(r, "as shipped"),
                              "nodemailer pool, same connections, TCP_NODELAY": lambda r: pool_of(r, "TCP_NODELAY")})
              + "\n")
    for r in local:
        if r.first_ms is not None and r.label.startswith("Bulk Mailer"):
            print(f"Time to first message after Send ({r.label}, {r.connections} connection"
                  f"{'s' if r.connections != '1' else ''}): {r.first_ms:.0f} ms")
    if imported is not None:
        print(f"Import of a {args.big:,}-row CSV: {imported['seconds']:.2f} s ({imported['valid']:,} valid)")
    if big is not None:
        print(f"{big.label}, {big.connections} connections: {big.rate:,.0f} msg/s over {big.seconds:.1f} s, "
              f"peak memory {big.rss_mb:.0f} MB")
    for note in notes:
        print(f"Note: {note}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
