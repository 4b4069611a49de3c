"""keysync doctor: is the event log sound, and do the read models and the reports say what the log says?

Nothing is changed. The doctor holds the run lock (so that no run moves the log while it compares), then:

1. reads every notification of the log, groups the events by aggregate and checks each aggregate's versions run
   1, 2, 3... without a gap; gets each aggregate through the repository (which decodes every event and uses a
   snapshot where there is one) and, for an aggregate with a snapshot, replays it from its events alone as well:
   both must agree;
2. compares each projection's tracked position with the log's last notification id;
3. rebuilds the read models and the reports from the log alone into a scratch store and folder (the same code
   the live projections run), and compares the live tables row by row and the live report files line by line,
   ignoring nothing;
4. verifies the audit chain (keysync audit verify) in the same pass over the log as step 1: every seal's digest
   recomputed from the events it covers. The chain's own aggregate is checked there, seal by seal, rather than
   replayed in step 1.
"""

from __future__ import annotations

import csv
import filecmp
import tempfile
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from itertools import zip_longest
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs
from eventsourcing.application import project_aggregate

from keysync.application.audit_chain import ChainReader, stored_events, verdict
from keysync.application.service import KeySync
from keysync.domain.audit_chain import AUDIT_CHAIN_ID

if TYPE_CHECKING:
    from keysync.projections.runner import Projections

# Problems listed one by one per kind (the rest are counted).
SHOWN_PROBLEMS = 10
# A twin of the live projections over an empty scratch store, writing its reports into the folder given.
ScratchProjections = Callable[["Projections", Path], "Projections"]
Progress = Callable[[str], None]


@attrs.frozen
class Check:
    """One finding: what was checked, whether it is sound, and what was found (for a problem: what to do)."""

    name: str
    ok: bool
    detail: str


@attrs.frozen
class Diagnosis:
    events: int
    checks: list[Check]

    @property
    def problems(self) -> list[Check]:
        return [c for c in self.checks if not c.ok]

    @property
    def healthy(self) -> bool:
        return not self.problems

    def as_dict(self) -> dict[str, Any]:
        return {
            "healthy": self.healthy,
            "events": self.events,
            "problems": len(self.problems),
            "checks": [attrs.asdict(c) for c in self.checks],
        }


@attrs.define
class Doctor:
    keysync: KeySync
    scratch: ScratchProjections

    def examine(self, progress: Progress | None = None) -> Diagnosis:
        """Check the log, the projections' positions, the read models and the reports; change nothing."""
        say = progress or (lambda _phase: None)
        with self.keysync.lock() as claim:
            claim("(keysync doctor)")
            last = self.keysync.store.recorder.max_notification_id() or 0
            say("replaying every aggregate")
            chain = ChainReader(self.keysync.store.mapper)
            checks = list(self._aggregates(last, chain))
            checks += self._positions(last)
            report = chain.report()
            checks.append(Check("audit chain", report.ok, verdict(report)))
            say("rebuilding the read models and the reports from the log")
            with tempfile.TemporaryDirectory(prefix="keysync-doctor-") as folder:
                twin = self.scratch(self.keysync.projections, Path(folder))
                try:
                    written = twin.catch_up()
                except Exception as error:  # a log that cannot be folded: say so, compare nothing against it
                    detail = f"the read models and reports cannot be rebuilt from the log ({_one_line(error)})"
                    return Diagnosis(last, [*checks, Check("rebuild", False, detail)])
                say("comparing")
                checks += self._read_models(twin)
                dry_run = self.keysync.projections.dry_run_shown()
                if dry_run:  # one finding, not one per file: a preview shows what the log does not hold
                    checks.append(Check("reports", False, f"the folder holds dry run {dry_run}'s preview, not what "
                                                          "the log holds: `keysync reports` writes that"))  # fmt: skip
                else:
                    checks += [self._report(path) for path in written]
        return Diagnosis(last, checks)

    # 1. The log and its aggregates -------------------------------------------------------------------------

    def _aggregates(self, last: int, chain: ChainReader) -> Iterator[Check]:
        versions: dict[Any, list[int]] = {}
        for notification in self._notifications(last):
            versions.setdefault(notification.originator_id, []).append(notification.originator_version)
            chain.add(notification)
        events = sum(len(v) for v in versions.values())
        versions.pop(AUDIT_CHAIN_ID, None)  # checked seal by seal by the chain
        kinds: Counter[str] = Counter()
        problems: list[str] = []
        for originator_id, seen in versions.items():
            problem = _version_gap(seen)
            if problem is None:
                kind, problem = self._replay(originator_id, seen[-1])
                kinds[kind] += 1
            if problem is not None:
                problems.append(f"aggregate {originator_id}: {problem}")
        summary = ", ".join(f"{n} {kind}" for kind, n in sorted(kinds.items()))
        if not problems:
            aggregates = f"{len(versions)} aggregates ({summary or 'none'})"
            yield Check("event log", True, f"{events} events, {aggregates}: each replays to its last version")
            return
        for problem in problems[:SHOWN_PROBLEMS]:
            yield Check("event log", False, problem)
        if len(problems) > SHOWN_PROBLEMS:
            yield Check("event log", False, f"... and {len(problems) - SHOWN_PROBLEMS} more aggregates like these")

    def _notifications(self, last: int) -> Iterator[Any]:
        return stored_events(self.keysync.store.recorder, 0, last)

    def _replay(self, originator_id: Any, version: int) -> tuple[str, str | None]:
        """The aggregate's kind, and what is wrong with it (None: nothing)."""
        store = self.keysync.store
        try:
            aggregate = store.repository.get(originator_id)
        except Exception as error:  # whatever it is, the doctor reports it and goes on
            return "unreadable", f"cannot be replayed ({type(error).__name__}: {_one_line(error)})"
        kind = type(aggregate).__name__
        if aggregate.version != version:
            return kind, f"{kind} replays to version {aggregate.version}, but the log holds version {version}"
        if store.snapshots is not None and list(store.snapshots.get(originator_id, desc=True, limit=1)):
            try:
                replayed = project_aggregate(None, store.events.get(originator_id))
            except Exception as error:
                return kind, f"{kind} cannot be replayed without its snapshot ({_one_line(error)})"
            if vars(replayed) != vars(aggregate):
                differing = sorted(k for k in vars(aggregate).keys() | vars(replayed).keys()
                                   if vars(aggregate).get(k) != vars(replayed).get(k))  # fmt: skip
                return kind, f"{kind}: its snapshot disagrees with its events (in {', '.join(differing)})"
        return kind, None

    # 2. Positions --------------------------------------------------------------------------------------------

    def _positions(self, last: int) -> list[Check]:
        checks = []
        for name, position in self.keysync.projections.status()["positions"].items():
            label = f"projection {name}"
            if position == last:
                checks.append(Check(label, True, f"at event {position}, the last in the log"))
            elif position < last:
                checks.append(Check(label, False, f"at event {position}, {last - position} behind the log "
                                                  f"(last event {last}): `keysync reports` catches up"))  # fmt: skip
            else:
                checks.append(Check(label, False, f"at event {position}, past the log's last event {last}: the log "
                                                  "lost events, or the store was restored without its read models; "
                                                  "`keysync rebuild` rebuilds them from the log"))  # fmt: skip
        return checks

    # 3. Read models and reports against a rebuild ------------------------------------------------------------

    def _read_models(self, twin: Projections) -> list[Check]:
        live, rebuilt = self.keysync.projections.recorder, twin.recorder
        return [
            _same_rows("read model registry", "master_key", live.registry_rows(), rebuilt.registry_rows()),
            _same_rows("read model run history", "run_id", live.runs(), rebuilt.runs()),
            _same_rows("read model audit trail", "event_id", live.audit_rows(), rebuilt.audit_rows()),
        ]

    def _report(self, rebuilt: Path) -> Check:
        live = self.keysync.projections.output_dir / rebuilt.name
        name = f"report {rebuilt.name}"
        if not live.is_file():
            return Check(name, False, f"{live} is missing: `keysync reports` writes it again")
        if filecmp.cmp(live, rebuilt, shallow=False):
            return Check(name, True, "matches a rebuild from the log")
        return Check(name, False, _file_difference(live, rebuilt) + ": `keysync rebuild` rewrites it from the log")


def _version_gap(versions: Sequence[int]) -> str | None:
    """What is wrong with an aggregate's versions in log order (they must be 1, 2, 3...), or None."""
    expected = list(range(1, len(versions) + 1))
    if list(versions) == expected:
        return None
    missing = sorted(set(range(1, max(versions) + 1)) - set(versions))
    if missing:
        return f"versions {_ranges(missing)} are missing from the log (it holds {len(versions)} events)"
    return f"its versions are out of order in the log ({', '.join(map(str, versions[:10]))}...)"


def _ranges(numbers: Sequence[int]) -> str:
    shown = ", ".join(map(str, numbers[:10]))
    return shown + (f" and {len(numbers) - 10} more" if len(numbers) > 10 else "")


def _same_rows(name: str, key: str, live: Iterable[Mapping[str, Any]], rebuilt: Iterable[Mapping[str, Any]]) -> Check:
    here = {row[key]: dict(row) for row in live}
    there = {row[key]: dict(row) for row in rebuilt}
    if here == there:
        return Check(name, True, f"{len(here)} rows, matching a rebuild from the log")
    missing = [k for k in there if k not in here]
    extra = [k for k in here if k not in there]
    differing = [k for k in there if k in here and here[k] != there[k]]
    counts = [f"{len(missing)} missing"] if missing else []
    counts += [f"{len(extra)} not in the log"] if extra else []
    counts += [f"{len(differing)} different"] if differing else []
    if differing:
        k = differing[0]
        column = next(c for c in there[k] if here[k].get(c) != there[k][c])
        example = f"{key} {k!r}: {column} is {here[k].get(column)!r} here, {there[k][column]!r} in the rebuild"
    elif missing:
        example = f"{key} {missing[0]!r} is missing"
    else:
        example = f"{key} {extra[0]!r} is not in the log"
    detail = f"{len(here)} rows against {len(there)} rebuilt: {', '.join(counts)} (e.g. {example})"
    return Check(name, False, f"{detail}: `keysync rebuild` rebuilds it from the log")


def _file_difference(live: Path, rebuilt: Path) -> str:
    """How a live report differs from its rebuild, row by row: how many lines differ and the first difference."""
    try:
        with (
            live.open(encoding="utf-8", errors="replace", newline="") as here,
            rebuilt.open(encoding="utf-8", newline="") as there,
        ):
            mine, theirs = csv.reader(here), csv.reader(there)
            header: list[str] = []
            differing, first = 0, ""
            for row, (a, b) in enumerate(zip_longest(mine, theirs), start=1):
                if row == 1 and b is not None:
                    header = b
                if a == b:
                    continue
                differing += 1
                if not first:
                    first = _row_difference(row, mine.line_num, header, a, b)
    except csv.Error as error:
        return f"not readable as CSV ({error})"
    if not differing:
        return "the same rows as a rebuild from the log, but not the same bytes (quoting or line ends)"
    return f"{differing} row(s) differ from a rebuild from the log; the first: {first}"


def _row_difference(row: int, line: int, header: list[str], a: list[str] | None, b: list[str] | None) -> str:
    if a is None:
        return f"row {row} of the rebuild is missing here (the file ends at line {line})"
    if b is None:
        return f"line {line} is not in the rebuild"
    for i, (x, y) in enumerate(zip_longest(a, b)):
        if x != y:
            column = header[i] if i < len(header) else f"column {i + 1}"
            return f"line {line}, {column}: {x!r} here, {y!r} in the rebuild"
    return f"line {line}"  # unreachable: the rows differ somewhere


def _one_line(error: BaseException) -> str:
    """An error on one line, with its root cause (the part that says what is wrong), shortened in the middle."""
    text = str(error)
    root = error
    while root.__cause__ is not None:
        root = root.__cause__
    if root is not error and str(root) not in text:
        text = f"{text}: {root}"
    text = " ".join(text.split())
    return text if len(text) <= 300 else f"{text[:180]} ... {text[-115:]}"
