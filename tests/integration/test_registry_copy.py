"""The registry view's packed copy: a new process loads the registry rows from it in one read, and only while it
stands where the views do; otherwise it reads the table."""

from __future__ import annotations

import pyarrow.compute as pc

from keysync.application.bootstrap import build, run_settings
from keysync.infrastructure.config import load_config
from keysync.projections.runner import VIEWS
from keysync.projections.views import REGISTRY_COPY
from tests.conftest import Project
from tests.e2e.test_incremental import START, write_all


def by_master(table):
    return table.take(pc.sort_indices(table["master_key"])).to_pylist()


def test_a_new_process_loads_the_registry_from_its_copy_only_where_the_views_stand(tmp_path):
    project = Project(tmp_path)
    write_all(project, START)
    config = load_config(project.config)
    build(config, create_tables=True).run(run_settings(config))
    project.write_system("B", ["NEW-1", "NEW-2"])
    build(config).run(run_settings(config))  # a second run: proposals, and the first run's keys unseen
    application = build(config)  # kept: its store closes with it
    views = application.projections.recorder
    position = views.position(VIEWS)
    from_copy, from_table = views.registry_state(position), views.registry_state()
    assert by_master(from_copy.table) == by_master(from_table.table)
    assert len(from_copy.table) > 2 and (from_copy.sighting, from_copy.marked) == (from_table.sighting, True)
    # A copy left behind (the views moved on without it, as a process of an earlier version moves them) is not read.
    with views.datastore.transaction(commit=True) as c:
        c.execute(f"UPDATE {REGISTRY_COPY} SET rows = ?, position = ?", (_packed_nothing(views), str(position - 1)))
    assert by_master(views.registry_state(position).table) == by_master(from_table.table)
    build(config).run(run_settings(config))  # the next run reads the table, and writes the copy anew
    application = build(config)
    views = application.projections.recorder
    copied = by_master(views.registry_state(views.position(VIEWS)).table)
    assert copied == by_master(views.registry_state().table)
    # Read from the copy indeed: a row taken from the table behind its back is still there.
    with views.datastore.transaction(commit=True) as c:
        c.execute("DELETE FROM registry_view WHERE master_key = ?", (copied[0]["master_key"],))
    assert by_master(views.registry_state(views.position(VIEWS)).table) == copied
    assert len(views.registry_state().table) == len(copied) - 1


def _packed_nothing(views) -> str:
    from keysync.projections.registry_view import registry_table
    from keysync.projections.views import _pack_table

    return _pack_table(registry_table())
