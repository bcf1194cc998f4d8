"""What the benchmarks share: private services, worker processes, generated news, output.

`Services` starts everything a benchmark needs and owns it: a `redis-server` on a free loopback
port, an embedded PostgreSQL + pgvector (`pgserver`) in a fresh temp directory, the loopback
OpenAI-compatible server of `tests.llm_server` (in this process, so its request log can be
read), and `celery worker` processes. Everything is stopped by pid when the block ends, on an
exception, Ctrl-C or SIGTERM. The machine's own Redis (6379) and PostgreSQL (5432) are never
touched: every URL handed to our code points at what this module started.

`make_articles` / `write_feeds` generate realistic news items (60-200 words from topic word lists
and sentence templates, unique titles and links, dated within a window) as RSS files.
Benchmarks print a table, then exactly one JSON line, last (`finish`).

Import order matters: `tasks.app` reads the settings once, at import, so call
`Services.export()` before importing anything from `tasks`, `graphs` or `vectorstore`.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # `python bench/x.py` puts bench/ first, not the project
    sys.path.insert(0, str(ROOT))

PY = sys.executable
SERVICE_VARS = (
    "DATABASE_URL", "CELERY_BROKER_URL", "CELERY_RESULT_BACKEND", "REDIS_URL", "OPENAI_API_KEY",
    "OPENAI_BASE_URL", "EMBEDDING_MODEL", "LLM_MODEL", "AML_DATA_DIR", "EMBED_BATCH_SIZE",
    "LLM_MAX_CONCURRENCY",
)  # fmt: skip


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


@dataclass
class Worker:
    name: str
    queues: str
    pool: str
    concurrency: int
    app: str = "tasks"
    env: dict[str, str] | None = None


class Services:
    """Private Redis, PostgreSQL, LLM server and workers for one benchmark run."""

    def __init__(self, label: str, keep: bool = False) -> None:
        self.label = label
        self.keep = keep
        self.tmp = Path(tempfile.mkdtemp(prefix=f"aml-bench-{label}-"))
        self.env: dict[str, str] = {}
        self.redis_url: str | None = None
        self.pg: Any = None
        self.pg_dir: Path | None = None
        self.llm: Any = None
        self._procs: list[tuple[str, subprocess.Popen]] = []
        self._worker_names: dict[str, str] = {}
        self._handlers: dict[int, Any] = {}

    # lifecycle

    def __enter__(self) -> Services:
        self._handlers = {sig: signal.signal(sig, _raise_interrupt)
                          for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}  # fmt: skip
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.close()
        finally:
            for sig, handler in self._handlers.items():
                signal.signal(sig, handler)

    def close(self) -> None:
        """Stop everything this object started, newest first, by pid."""
        for label, proc in reversed(self._procs):
            stop_process(proc, label)
        self._procs.clear()
        if self.llm is not None:
            self.llm.stop()
            self.llm = None
        if self.pg is not None:
            try:
                self.pg.cleanup()
            except Exception as exc:  # noqa: BLE001 - best effort at exit; say so
                print(f"warning: embedded PostgreSQL did not stop cleanly: {exc}", file=sys.stderr)
            self.pg = None
        if self.keep:
            print(f"kept {self.tmp}", file=sys.stderr)
        else:
            shutil.rmtree(self.tmp, ignore_errors=True)

    # services

    def start_redis(self) -> str:
        exe = shutil.which("redis-server")
        if exe is None:
            raise SystemExit("redis-server not found: apt-get install redis-server")
        port = free_port()
        proc = subprocess.Popen(
            [exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
        self._procs.append(("redis", proc))
        url = f"redis://127.0.0.1:{port}/0"
        import redis

        deadline = time.monotonic() + 10
        while True:
            try:
                redis.Redis.from_url(url, socket_timeout=1).ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise
                time.sleep(0.05)
        self.redis_url = url
        return url

    def start_postgres(self, config: dict[str, str] | None = None) -> str:
        """The embedded PostgreSQL 16 + pgvector in a fresh directory; `config` goes into
        postgresql.auto.conf (ALTER SYSTEM) and the server is restarted to apply it."""
        import pgserver

        self.pg_dir = self.tmp / "pg"
        self.pg = pgserver.get_server(self.pg_dir, cleanup_mode="stop")
        if config:
            for key, value in config.items():
                self.pg.psql(f"ALTER SYSTEM SET {key} = '{value}';")
            self.pg.cleanup()  # stops it (this process holds the only handle)
            self.pg = pgserver.get_server(self.pg_dir, cleanup_mode="stop")
        return self.pg.get_uri()

    def start_llm(self, latency: float = 0.0, max_concurrency: int | None = None) -> Any:
        from tests.llm_server import LLMServer

        self.llm = LLMServer(latency=latency, max_concurrency=max_concurrency).start()
        return self.llm

    def export(self, **extra: str) -> dict[str, str]:
        """Point this process (and the env handed to children) at these services only."""
        env = {k: v for k, v in os.environ.items() if k not in SERVICE_VARS}
        env.update(
            {
                "AML_DATA_DIR": str(self.tmp / "data"),
                "HF_HUB_OFFLINE": "1",
                "TOKENIZERS_PARALLELISM": "false",
                "PYTHONUNBUFFERED": "1",
            }
        )
        if self.redis_url:
            env.update(
                CELERY_BROKER_URL=self.redis_url,
                CELERY_RESULT_BACKEND=self.redis_url,
                REDIS_URL=self.redis_url,
            )
        if self.pg is not None:
            env["DATABASE_URL"] = self.pg.get_uri()
        if self.llm is not None:
            env.update(
                OPENAI_API_KEY="sk-bench-not-a-real-key",
                OPENAI_BASE_URL=self.llm.base_url,
                LLM_MODEL="bench-model",
            )
        env.update(extra)
        for k in SERVICE_VARS:
            os.environ.pop(k, None)
        os.environ.update(env)
        from core.settings import get_settings

        get_settings.cache_clear()
        self.env = env
        return env

    # workers

    def start_workers(self, workers: Iterable[Worker], timeout: float = 90) -> None:
        """Start worker processes together and return when every one answers a ping."""
        workers = list(workers)
        procs = []
        logs = self.tmp / "logs"
        logs.mkdir(exist_ok=True)
        for w in workers:
            node = f"{w.name}-{uuid.uuid4().hex[:4]}"
            cmd = [
                PY, "-m", "celery", "-A", w.app, "worker", "-Q", w.queues, "--pool", w.pool,
                "-c", str(w.concurrency), "-n", f"{node}@%h", "--loglevel", "WARNING",
                "--without-mingle", "--without-gossip",
            ]  # fmt: skip
            out = open(logs / f"{w.name}.log", "ab")  # noqa: SIM115 - the child owns it
            proc = subprocess.Popen(
                cmd, cwd=ROOT, env={**self.env, **(w.env or {})}, stdout=out,
                stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
            out.close()
            self._procs.append((f"worker {w.name}", proc))
            self._worker_names[w.name] = f"{node}@{socket.gethostname()}"
            procs.append((w, proc))
        from tasks.app import app

        deadline = time.monotonic() + timeout
        waiting = {w.name for w in workers}
        while waiting:
            for w, proc in procs:
                if w.name in waiting and proc.poll() is not None:
                    raise RuntimeError(f"worker {w.name} exited: {self.log_tail(w.name)}")
            names = [self._worker_names[n] for n in waiting]
            for reply in app.control.ping(destination=names, timeout=0.5):
                for node in reply:
                    waiting -= {n for n, full in self._worker_names.items() if full == node}
            if waiting and time.monotonic() > deadline:
                raise RuntimeError(f"workers not ready in {timeout:.0f}s: {sorted(waiting)}")

    def log_tail(self, name: str, lines: int = 20) -> str:
        path = self.tmp / "logs" / f"{name}.log"
        if not path.exists():
            return "(no log)"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    def worker_pids(self) -> dict[str, int]:
        return {label: p.pid for label, p in self._procs if label.startswith("worker")}

    def cpu_groups(self) -> dict[str, float]:
        """CPU seconds used so far by each process group this object started (workers with
        their children, Redis, the PostgreSQL server with its backends) and by this process
        (which hosts the LLM server). Differences of two calls give a run's CPU."""
        import psutil

        groups: dict[str, float] = {}
        for label, proc in self._procs:
            groups[label] = _tree_cpu(proc.pid)
        if self.pg is not None:
            try:
                groups["postgres"] = _tree_cpu(self.pg.get_pid())
            except Exception:  # noqa: BLE001 - no pid: the server is down, count nothing
                groups["postgres"] = 0.0
        me = psutil.Process().cpu_times()
        groups["this process (LLM server)"] = me.user + me.system
        return groups


def _tree_cpu(pid: int) -> float:
    """CPU of a process, its reaped children and its live descendants."""
    import psutil

    try:
        root = psutil.Process(pid)
        t = root.cpu_times()
        total = t.user + t.system + t.children_user + t.children_system
        for child in root.children(recursive=True):
            try:
                c = child.cpu_times()
                total += c.user + c.system
            except psutil.NoSuchProcess:
                pass
        return total
    except psutil.NoSuchProcess:
        return 0.0


def stop_process(proc: subprocess.Popen, label: str = "", timeout: float = 20) -> None:
    """SIGTERM (a Celery worker shuts down warm), then SIGKILL its own process group."""
    if proc.poll() is None:
        try:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            print(f"warning: {label} (pid {proc.pid}) ignored SIGTERM; killing", file=sys.stderr)
        except KeyboardInterrupt:
            pass
    if proc.poll() is None or _group_alive(proc.pid):
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # started with start_new_session: pgid == pid
        except (ProcessLookupError, PermissionError):
            pass
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            pass


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except (ProcessLookupError, PermissionError):
        return False


def truncate_all() -> None:
    """Empty every table of the benchmark database (workers keep their pools)."""
    from vectorstore import connection
    from vectorstore.migrations import app_tables

    with connection() as conn:
        conn.execute(f"TRUNCATE {', '.join(app_tables(conn))} RESTART IDENTITY CASCADE")


# --- Generated news ---------------------------------------------------------------------

_SYL = (
    "mer id ian quil sto vor tal bri den cas lo ra nex ter pha zon gal ven dor ith ar ko sel "
    "tra mi no bel fen gro hal sun ve rin ost mak lu pe dra cor"
).split()
_FIRST = (
    "Priya Jane Tomas Amara Lorna Kenji Sofia Malik Ingrid Diego Hana Oluwaseun Marta Chen "
    "Elif Rafael Noor Anders Beatriz Kwame Yuki Fatima Lars Ines Dmitri Aisha Pablo Greta"
).split()
_LAST = (
    "Natarajan Doe Okafor Vasquez Lindqvist Moreau Haddad Takahashi Kowalski Mensah Ferreira "
    "Brennan Novak Castillo Adeyemi Sorensen Ibrahim Rossi Petrov Yilmaz Schulz Tanaka Osei"
).split()
_PLACES = (
    "Tucson Lyon Osaka Nairobi Porto Leeds Austin Gdansk Valparaiso Hanoi Perth Calgary Bergen "
    "Accra Bilbao Krakow Tampere Durban Medellin Dundee Izmir Cebu Tromso Rosario Kaunas"
).split()
_DAYS = "Monday Tuesday Wednesday Thursday Friday Saturday Sunday".split()
_MONTHS = "January February March April May June July August September October".split()

# Per topic: organisation suffixes, things, actions, outcomes, concerns, metrics, roles, events.
# fmt: off
_TOPICS: dict[str, dict[str, list[str]]] = {
    "technology": {
        "org": ["Systems", "Labs", "Semiconductor", "Software", "Networks", "Robotics", "Cloud"],
        "thing": ["chip packaging plant", "language model", "data centre", "smartphone line",
                  "cloud platform", "open-source database", "battery cell", "satellite network",
                  "browser engine", "payment app", "quantum processor", "compiler toolchain"],
        "action": ["launch", "delay", "open-source", "redesign", "scale back", "license",
                   "expand", "rebuild"],
        "outcome": ["cut energy use by a third", "reach a million users",
                    "double its processing capacity", "halve latency for customers",
                    "ship to developers worldwide", "replace the ageing legacy system"],
        "concern": ["the software collects more user data than it needs",
                    "the chips depend on a single overseas supplier",
                    "security researchers found flaws in the early release",
                    "smaller developers will be locked out of the platform"],
        "metric": ["cloud revenue", "chip output", "monthly active users", "developer sign-ups"],
        "role": ["chief technology officer", "head of engineering", "lead researcher",
                 "product manager"],
        "event": ["a week-long outage", "a patent dispute", "a security breach",
                  "a failed product launch"],
    },
    "science": {
        "org": ["Institute", "Observatory", "University", "Laboratory", "Research Centre"],
        "thing": ["telescope survey", "genome study", "fusion experiment", "climate model",
                  "fossil excavation", "particle detector", "deep-sea expedition",
                  "vaccine trial", "ice-core project", "exoplanet search"],
        "action": ["publish", "extend", "fund", "replicate", "complete", "pause"],
        "outcome": ["map the galaxy's dark matter", "identify three new species",
                    "explain the warming of the deep ocean", "measure the neutrino mass",
                    "date the settlement to 9,000 years ago", "confirm the earlier findings"],
        "concern": ["the sample size is too small to draw firm conclusions",
                    "the results have not yet been peer reviewed",
                    "funding for the next phase is uncertain",
                    "the instrument calibration may have drifted"],
        "metric": ["research budget", "data volume", "number of observations", "grant funding"],
        "role": ["principal investigator", "professor of physics", "marine biologist",
                 "lead author"],
        "event": ["a record heatwave", "an unexpected solar flare", "a funding freeze",
                  "a failed rocket launch"],
    },
    "business": {
        "org": ["Holdings", "Bank", "Group", "Capital", "Retail", "Motors", "Foods"],
        "thing": ["merger", "store network", "bond issue", "factory", "share buyback",
                  "pricing plan", "supply contract", "electric van fleet", "logistics hub"],
        "action": ["announce", "close", "sell", "restructure", "finance", "cancel", "approve"],
        "outcome": ["lift annual profit", "save 400 jobs", "cut costs by 12 percent",
                    "raise prices for shoppers", "return cash to shareholders",
                    "double exports"],
        "concern": ["the deal gives the company too much market power",
                    "consumers will end up paying higher prices",
                    "the debt load leaves little room for error",
                    "suppliers have not been paid on time"],
        "metric": ["quarterly revenue", "operating profit", "market share", "net debt"],
        "role": ["chief executive", "finance director", "analyst", "chair"],
        "event": ["a profit warning", "a surprise rate rise", "a strike at the port",
                  "a failed takeover bid"],
    },
    "politics": {
        "org": ["Party", "Ministry", "Council", "Assembly", "Electoral Commission"],
        "thing": ["housing bill", "budget", "election reform", "tax plan", "coalition deal",
                  "transport strategy", "pension reform", "climate law", "border policy"],
        "action": ["pass", "block", "amend", "unveil", "delay", "withdraw", "debate"],
        "outcome": ["build 50,000 homes", "lower the voting age to 16", "raise the minimum wage",
                    "cut emissions by 2030", "end the deadlock in parliament",
                    "fund free school meals"],
        "concern": ["the plan has not been costed", "rural voters will be left behind",
                    "the vote was rushed through without scrutiny",
                    "the reform weakens independent oversight"],
        "metric": ["approval rating", "turnout", "budget deficit", "public spending"],
        "role": ["minister", "opposition leader", "spokesperson", "mayor"],
        "event": ["a confidence vote", "a corruption inquiry", "mass protests",
                  "a cabinet reshuffle"],
    },
    "world": {
        "org": ["Federation", "Republic", "Alliance", "Commission", "Peacekeeping Mission"],
        "thing": ["ceasefire", "aid convoy", "trade treaty", "border crossing", "peace talks",
                  "refugee programme", "naval exercise", "embassy reopening"],
        "action": ["agree", "suspend", "extend", "monitor", "reopen", "sign"],
        "outcome": ["let food reach 200,000 people", "end two years of fighting",
                    "reunite separated families", "reduce tariffs on grain",
                    "restore diplomatic ties", "allow observers into the region"],
        "concern": ["neither side has honoured earlier agreements",
                    "aid workers still cannot reach the worst-hit towns",
                    "the deal ignores the demands of local communities",
                    "troop movements continued overnight"],
        "metric": ["number of displaced people", "aid deliveries", "trade volume",
                   "casualty count"],
        "role": ["foreign minister", "envoy", "commander", "aid coordinator"],
        "event": ["overnight shelling", "a flood", "a diplomatic row", "a contested election"],
    },
    "health": {
        "org": ["Hospital", "Pharma", "Clinic", "Health Trust", "Medical School"],
        "thing": ["cancer drug", "vaccination campaign", "mental health service",
                  "screening programme", "maternity unit", "antibiotic trial",
                  "emergency department", "diabetes treatment"],
        "action": ["approve", "expand", "close", "test", "fund", "recall"],
        "outcome": ["cut waiting times by half", "reach 80 percent of children",
                    "reduce hospital admissions", "detect tumours earlier",
                    "save an estimated 3,000 lives a year", "lower the cost per dose"],
        "concern": ["side effects were more common than expected",
                    "nurses are already working unpaid overtime",
                    "the trial excluded older patients",
                    "rural clinics lack the staff to offer it"],
        "metric": ["waiting list", "infection rate", "drug sales", "staff vacancies"],
        "role": ["chief medical officer", "surgeon", "epidemiologist", "nurse manager"],
        "event": ["a measles outbreak", "a nurses' strike", "a drug shortage",
                  "a winter surge in admissions"],
    },
    "sports": {
        "org": ["United", "Rovers", "Athletic", "City FC", "Cycling Team", "Rugby Club"],
        "thing": ["title race", "new stadium", "transfer deal", "coaching staff", "youth academy",
                  "cup run", "season opener", "championship final"],
        "action": ["win", "lose", "sign", "sack", "rebuild", "host"],
        "outcome": ["finish in the top four", "qualify for the continental cup",
                    "sell out every home game", "avoid relegation",
                    "break the club scoring record", "win a first trophy in 20 years"],
        "concern": ["the squad is too thin for a long season",
                    "ticket prices have priced out local fans",
                    "the injury list keeps growing",
                    "the referee's decisions were inconsistent"],
        "metric": ["points tally", "goal difference", "attendance", "wage bill"],
        "role": ["head coach", "captain", "sporting director", "striker"],
        "event": ["a stoppage-time winner", "a penalty shoot-out", "a red card",
                  "a dramatic comeback"],
    },
    "culture": {
        "org": ["Festival", "Gallery", "Records", "Studios", "Theatre", "Book Prize"],
        "thing": ["retrospective", "debut album", "film adaptation", "opera season",
                  "literary prize", "museum extension", "streaming series", "art fair"],
        "action": ["premiere", "cancel", "announce", "restore", "tour", "shortlist"],
        "outcome": ["draw 100,000 visitors", "top the charts in six countries",
                    "bring the archive online", "revive interest in the painter",
                    "sell out in minutes", "reach a younger audience"],
        "concern": ["the ticket prices exclude students",
                    "the adaptation strays far from the novel",
                    "the collection's origins are disputed",
                    "smaller venues are losing their funding"],
        "metric": ["ticket sales", "streaming numbers", "visitor numbers", "arts funding"],
        "role": ["director", "curator", "composer", "critic"],
        "event": ["a sold-out premiere", "a copyright dispute", "a fire at the venue",
                  "a surprise award win"],
    },
}

# fmt: on
_SENTENCES = [
    "{org} said on {day} that it would {action} the {thing} in {place}, a move it expects to "
    "{outcome}.",
    "The {thing} is expected to {outcome} by {year}, according to {person}, {role} at {org}.",
    '{person}, {role} at {org}, said the decision to {action} the {thing} was "long overdue".',
    "Figures from {org2} put the {metric} at {money}, up {pct} percent from a year earlier.",
    "Critics including {person2} argued that {concern}.",
    "The announcement follows {event} in {place2} last {month}.",
    "{org} declined to comment on the timing but confirmed that {num} staff would be involved.",
    "Officials in {place} said about {num} people would be affected over the next {weeks} weeks.",
    "Supporters say the {thing} could {outcome}, while others warn that {concern}.",
    "It is the {ordinal} time in {weeks} years that {org} has tried to {action} a {thing}.",
    "The {metric} fell {pct} percent in the {quarter} quarter, {org2} said in a filing.",
    "A final decision on the {thing} is due in {month}, {person2} told reporters in {place2}.",
    "Talks between {org} and {org2} are continuing, with a deadline set for {day}.",
    "Earlier this year {org2} tried to {action} a similar {thing} but abandoned the plan.",
    '{person} said the team had learned from {event} and was "ready for what comes next".',
]
_TITLES = [
    "{org} to {action} {thing} in {place}",
    "{org} plans to {outcome}",
    "{place}: {org} moves to {action} {thing}",
    "{person} on why {org} will {action} its {thing}",
    "After {event}, {org} bets on {thing}",
    "{org} and {org2} clash over {thing}",
]
_ORDINALS = ["second", "third", "fourth", "fifth"]


def _name(rng: random.Random) -> str:
    return "".join(rng.choice(_SYL) for _ in range(rng.randint(2, 3))).capitalize()


def _fill(template: str, topic: dict[str, list[str]], rng: random.Random, ctx: dict) -> str:
    values = {
        "org": ctx["org"], "org2": ctx["org2"], "person": ctx["person"],
        "person2": f"{rng.choice(_FIRST)} {rng.choice(_LAST)}", "place": ctx["place"],
        "place2": rng.choice(_PLACES), "day": rng.choice(_DAYS), "month": rng.choice(_MONTHS),
        "year": str(rng.randint(2027, 2032)), "num": f"{rng.randint(12, 9000):,}",
        "pct": f"{rng.uniform(0.5, 38):.1f}", "money": f"${rng.uniform(1.2, 950):.1f} million",
        "weeks": str(rng.randint(2, 12)), "ordinal": rng.choice(_ORDINALS),
        "quarter": rng.choice(["first", "second", "third", "fourth"]),
        "thing": ctx["thing"], "action": rng.choice(topic["action"]),
        "outcome": rng.choice(topic["outcome"]), "concern": rng.choice(topic["concern"]),
        "metric": rng.choice(topic["metric"]), "role": rng.choice(topic["role"]),
        "event": rng.choice(topic["event"]),
    }  # fmt: skip
    return template.format(**values)


def make_articles(
    n: int, *, as_of: datetime, window_hours: float = 24.0, seed: int = 7
) -> list[dict[str, Any]]:
    """`n` distinct news items: title, link, guid, paragraphs, word count, topic, published."""
    rng = random.Random(seed)
    topics = list(_TOPICS)
    items: list[dict[str, Any]] = []
    titles: set[str] = set()
    while len(items) < n:
        i = len(items)
        tname = rng.choice(topics)
        topic = _TOPICS[tname]
        ctx = {
            "org": f"{_name(rng)} {rng.choice(topic['org'])}",
            "org2": f"{_name(rng)} {rng.choice(topic['org'])}",
            "person": f"{rng.choice(_FIRST)} {rng.choice(_LAST)}",
            "place": rng.choice(_PLACES),
            "thing": rng.choice(topic["thing"]),
        }
        title = _fill(rng.choice(_TITLES), topic, rng, ctx)
        title = title[0].upper() + title[1:]
        if title in titles:
            continue
        titles.add(title)
        target = rng.randint(60, 180)  # the last sentence overshoots by up to ~25 words
        sentences: list[str] = []
        words = 0
        order = rng.sample(_SENTENCES, len(_SENTENCES))
        while words < target:
            s = _fill(order[len(sentences) % len(order)], topic, rng, ctx)
            sentences.append(s)
            words += len(s.split())
        paragraphs = [" ".join(sentences[j : j + 3]) for j in range(0, len(sentences), 3)]
        published = as_of - timedelta(seconds=rng.uniform(60, window_hours * 3600 - 60))
        items.append(
            {
                "title": title,
                "link": f"https://{tname}.bench.example/{published:%Y/%m/%d}/story-{i:05d}",
                "guid": f"bench-{seed}-{i:05d}",
                "paragraphs": paragraphs,
                "words": sum(len(p.split()) for p in paragraphs),
                "topic": tname,
                "published": published.replace(microsecond=0),
            }
        )
    return items


def write_feeds(folder: Path, items: list[dict[str, Any]], per_feed: int = 50) -> Path:
    """RSS 2.0 files of `per_feed` items each and a feed list naming them; returns the list."""
    folder.mkdir(parents=True, exist_ok=True)
    names = []
    for f, start in enumerate(range(0, len(items), per_feed)):
        chunk = items[start : start + per_feed]
        entries = []
        for it in chunk:
            body = "".join(f"<p>{escape(p)}</p>" for p in it["paragraphs"])
            entries.append(
                "<item>"
                f"<title>{escape(it['title'])}</title><link>{escape(it['link'])}</link>"
                f'<guid isPermaLink="false">{it["guid"]}</guid>'
                f"<pubDate>{format_datetime(it['published'].astimezone(UTC))}</pubDate>"
                f"<content:encoded><![CDATA[{body}]]></content:encoded>"
                "</item>"
            )
        name = f"bench-{f:02d}.xml"
        (folder / name).write_text(
            '<?xml version="1.0" encoding="UTF-8"?>\n<rss version="2.0" '
            'xmlns:content="http://purl.org/rss/1.0/modules/content/"><channel>'
            f"<title>Bench feed {f}</title><link>https://feed{f}.bench.example/</link>"
            "<description>Generated for benchmarks</description><language>en</language>"
            + "\n".join(entries)
            + "</channel></rss>\n",
            encoding="utf-8",
        )
        names.append(name)
    listing = folder / "feeds.txt"
    listing.write_text("# generated by bench/_harness.py\n" + "\n".join(names) + "\n")
    return listing


def article_text(item: dict[str, Any]) -> str:
    """The plain text of a generated item, as feed parsing yields it (paragraphs, newlines)."""
    return "\n\n".join(item["paragraphs"])


def insert_articles(items: list[dict[str, Any]], feed_url: str = "bench://feed") -> list[int]:
    """Store generated items straight into the database (no feed parsing); returns ids."""
    import hashlib

    from vectorstore import articles as store
    from vectorstore import connection
    from vectorstore import feeds as feed_store

    rows = [
        store.NewArticle(
            guid=it["guid"], url=it["link"], canonical_url=it["link"], title=it["title"],
            body=article_text(it),
            content_hash=hashlib.sha256(article_text(it).encode()).hexdigest(),
            published=it["published"], date_source="feed",
        )
        for it in items
    ]  # fmt: skip
    with connection() as conn:
        feed_id = feed_store.upsert_feed(conn, feed_url)
        return store.upsert_articles(conn, feed_id, rows)


# --- Output -----------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    """nproc, CPU model, RAM and load: what the numbers came from."""
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
        mem_kb = next(
            int(line.split()[1])
            for line in Path("/proc/meminfo").read_text().splitlines()
            if line.startswith("MemTotal")
        )
    except (OSError, StopIteration):
        mem_kb = 0
    return {
        "nproc": len(os.sched_getaffinity(0)),
        "cpu": model,
        "ram_gb": round(mem_kb / 1024 / 1024, 1),
        "load": " ".join(f"{x:.2f}" for x in os.getloadavg()),
    }


def table(rows: list[tuple[Any, ...]], headers: tuple[str, ...]) -> str:
    cells = [tuple(str(c) for c in headers)] + [tuple(_fmt(c) for c in r) for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3f}" if abs(value) < 10 else f"{value:.1f}"
    return str(value)


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--keep", action="store_true", help="keep the temp dir (logs) afterwards")
    return p


def run_benchmark(
    label: str, body: Callable[[Services], tuple[str, dict[str, Any]]], keep: bool = False
) -> int:
    """Run `body` with fresh services; print its table, then its JSON line, last."""
    start = time.monotonic()
    status = 0
    try:
        with Services(label, keep=keep) as services:
            report, result = body(services)
    except KeyboardInterrupt:
        print("interrupted: everything started was stopped", file=sys.stderr)
        return 130
    m = machine()
    print(report)
    print(
        f"\nmachine: {m['nproc']} cores, {m['cpu']}, {m['ram_gb']} GB RAM; load after run "
        f"{m['load']}; wall {time.monotonic() - start:.1f}s"
    )
    if result.pop("_failed", False):
        status = 1
    print(json.dumps(result), flush=True)
    return status
