"""``shipyard keys``: the ed25519 keys that sign releases."""

from __future__ import annotations

import typer

from shipyard.cli.context import Context
from shipyard.cli.options import JsonOption
from shipyard.cli.output import Output
from shipyard.core import audit
from shipyard.release.keys import KeyInfo, Keyring

app = typer.Typer(help="Signing keys: generate, rotate, list, show.", no_args_is_help=True)


def _keyring(ctx: Context) -> Keyring:
    return Keyring.for_state(ctx.state.ensure())


@app.command("generate")
def generate(json_: JsonOption = False) -> None:
    """Make the signing key pair: private key outside the state directory, public key in it."""
    out = Output(json_mode=json_)
    ctx = Context()
    keyring = _keyring(ctx)
    info = keyring.generate()
    _audit(ctx, "key.generated", info)
    _report(out, keyring, info, "generated")


@app.command("rotate")
def rotate(json_: JsonOption = False) -> None:
    """Make a new active key; old public keys stay to verify old releases."""
    out = Output(json_mode=json_)
    ctx = Context()
    keyring = _keyring(ctx)
    previous = keyring.active()
    info = keyring.rotate()
    _audit(ctx, "key.rotated", info, previous=previous.keyid)
    _report(out, keyring, info, "rotated to")
    if not json_:
        out.warn(
            f"the retired private key is still at {keyring.private_path(previous.keyid)}; "
            "destroy it unless you must sign with it again"
        )


@app.command("list")
def list_keys(json_: JsonOption = False) -> None:
    """List the keys: active and retired."""
    out = Output(json_mode=json_)
    keys = _keyring(Context()).list()
    if json_:
        out.json([k.to_json() for k in keys])
        return
    if not keys:
        out.line("no signing keys; make one with 'shipyard keys generate'")
        return
    out.table(
        ["key id", "status", "created", "retired"],
        [
            [
                k.keyid[:16],
                k.status.value,
                k.created.isoformat(timespec="seconds"),
                k.retired.isoformat(timespec="seconds") if k.retired else "",
            ]
            for k in keys
        ],
    )


@app.command("show")
def show(json_: JsonOption = False) -> None:
    """Print the active public key (PEM), to give to whoever verifies releases."""
    out = Output(json_mode=json_)
    keyring = _keyring(Context())
    info = keyring.active()
    pem = keyring.public_key(info.keyid).pem()
    if json_:
        out.json({**info.to_json(), "public_key": pem})
        return
    out.stdout.write(pem if pem.endswith("\n") else pem + "\n")


def _report(out: Output, keyring: Keyring, info: KeyInfo, verb: str) -> None:
    if out.json_mode:
        out.json(
            {
                **info.to_json(),
                "public_key_file": str(keyring.public_path(info.keyid)),
                "private_key_file": str(keyring.private_path(info.keyid)),
            }
        )
        return
    out.success(f"{verb} key {info.keyid[:16]}")
    out.line(f"  public:  {keyring.public_path(info.keyid)}")
    out.line(f"  private: {keyring.private_path(info.keyid)} (mode 0600; keep it safe)")


def _audit(ctx: Context, action: str, info: KeyInfo, **details: str) -> None:
    with ctx.store.write() as conn:
        audit.append(
            conn,
            actor=ctx.actor,
            action=action,
            subject=f"key:{info.keyid}",
            details={"keyid": info.keyid, **details},
        )
