"""Coverage-guided fuzzing of the source readers with atheris (optional: ``pip install atheris``).

It checks the property of tests/integration/test_reader_fuzz.py (only SourceUnavailable may leave the reader,
naming the file in one line; every line is accounted for) on inputs that libFuzzer mutates towards new code
paths, which random generation alone rarely reaches. The test suite does not need atheris; this is for longer
hunts:

    .venv/bin/python bench/fuzz_readers.py csv -max_total_time=300
    .venv/bin/python bench/fuzz_readers.py json -max_total_time=300 corpus_json/

Arguments after the kind go to libFuzzer (a corpus folder, -runs=N, -max_len=N...); without a corpus folder it
starts from a few valid exports in a temporary one. A failing input is written to crash-<hash> in the current
folder; replay it with ``... fuzz_readers.py csv crash-<hash>``.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

try:
    import atheris
except ImportError:
    sys.exit("atheris is not installed: .venv/bin/python -m pip install atheris")

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # for tests.integration.test_reader_fuzz

# Libraries first, uninstrumented: only KeySync's own code should guide the fuzzer (and instrumenting numpy or
# pandas would slow every run down).
import hypothesis  # noqa: F401
import numpy  # noqa: F401
import pandas  # noqa: F401
import pyarrow.compute
import pyarrow.csv
import pyarrow.json  # noqa: F401
import pytest  # noqa: F401

with atheris.instrument_imports(include=["keysync"]):
    # read_source imports the format modules when first called: import them here, to instrument them too.
    from keysync.infrastructure import csv_source, json_source  # noqa: F401
    from tests.integration.test_reader_fuzz import check_csv, check_json


HEADER = b"source_system,source_key,entity_type,location_ref,last_seen_at"
SEEDS = {
    "csv": [
        HEADER + b"\nB,K-1,customer,WH-01,2026-01-31T10:00:00Z\nB,K-2,,,\n",
        b'\xef\xbb\xbfsource_key,x\r\n"K,1","a""b"\r\n"K\n2",\r',
        b"last_seen_at,source_key\n2026-01-31,K-1\n\nnope,K-2",
    ],
    "json": [
        b'{"source_key": "K-1", "source_system": "B"}\n{"source_key": "K-2", "last_seen_at": "2026-01-31"}\n',
        b'[{"source_key": "K-1"}, {"source_key": null}, [1]]',
        b'{"source_key": "K\\u0000"}\r\n\n{"entity_type": 1}\r',
    ],
}


def main() -> None:
    if len(sys.argv) < 2 or sys.argv[1] not in ("csv", "json"):
        sys.exit(__doc__)
    kind, args = sys.argv[1], sys.argv[2:]
    if not [arg for arg in args if not arg.startswith("-")]:  # no corpus given: start from a few valid exports
        corpus = Path(tempfile.mkdtemp(prefix=f"keysync-fuzz-{kind}-"))
        for i, seed in enumerate(SEEDS[kind]):
            (corpus / f"seed-{i}").write_bytes(seed)
        args.append(str(corpus))
    atheris.Setup([sys.argv[0], *args], check_csv if kind == "csv" else check_json)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
