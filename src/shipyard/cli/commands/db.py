"""``shipyard db``: the store's schema, migrated explicitly or inspected."""

from __future__ import annotations

import typer

from shipyard.cli.context import Context
from shipyard.cli.options import JsonOption
from shipyard.cli.output import Output
from shipyard.core import audit
from shipyard.core.store import open_store, safe_url

app = typer.Typer(
    help="The state store: upgrade its schema, show where it is.", no_args_is_help=True
)


@app.command("upgrade")
def upgrade(json_: JsonOption = False) -> None:
    """Run pending schema migrations (they also run on first use)."""
    out = Output(json_mode=json_)
    ctx = Context()
    store = open_store(ctx.state, migrate=False)
    before, after = store.upgrade()
    if before.current != after.current:
        with store.write() as conn:
            audit.append(
                conn,
                actor=ctx.actor,
                action="store.migrated",
                subject=f"store:{store.dialect}",
                details={"from": before.current, "to": after.current},
            )
    result = {
        "database": safe_url(store.url),
        "from": before.current,
        "to": after.current,
        "changed": before.current != after.current,
    }
    if json_:
        out.json(result)
    elif result["changed"]:
        out.success(
            f"migrated {result['database']} from {before.current or 'empty'} to {after.current}"
        )
    else:
        out.line(f"{result['database']} is up to date (revision {after.current})")


@app.command("status")
def status(json_: JsonOption = False) -> None:
    """Show the database in use and its schema revision."""
    out = Output(json_mode=json_)
    ctx = Context()
    store = open_store(ctx.state, migrate=False)
    revision = store.revision()
    result = {
        "state_dir": str(ctx.state.root),
        "database": safe_url(store.url),
        "backend": store.dialect,
        "revision": revision.current,
        "head": revision.head,
        "up_to_date": revision.up_to_date,
    }
    if json_:
        out.json(result)
        return
    out.table(["", ""], [[k, v] for k, v in result.items()])
