"""TokenKeeper against the loopback fake auth server: rotation of single-use refresh tokens,
refresh ahead of expiry, single flight, the file (0600, atomic, survives a SIGKILL at the
worst moments), sticky login_required, back-off after failures, and no token in any text."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.tesla.fakefleet import TOKEN_PATH, FakeFleet, jwt_shaped
from twcmaster.vehicles.tesla import api, tokens
from twcmaster.vehicles.tesla.tokens import (
    DEFAULT_LIFETIME_S,
    RETRY_AFTER_FAILURE_S,
    TokenKeeper,
    expiry_s,
    jwt_claims,
    recover_interrupted_save,
    write_atomically,
)

CLIENT_ID = "twcmaster-test"
REPO = Path(__file__).resolve().parents[2]


class Clock:
    """A wallclock the test moves; the fake server and the keeper share it."""

    def __init__(self, now_s: float = 1_790_000_000.0) -> None:
        self.now_s = now_s

    def __call__(self) -> float:
        return self.now_s


def make_keeper(fleet: FakeFleet, path: Path, initial: str | None, **options) -> TokenKeeper:
    return TokenKeeper(
        path, auth_url=fleet.auth_url, client_id=CLIENT_ID, initial_refresh_token=initial, **options
    )


def saved(path: Path) -> dict:
    return json.loads(path.read_text())


def token_posts(fleet: FakeFleet) -> int:
    return len(fleet.requests_to(TOKEN_PATH))


def test_jwt_claims_and_expiry_fallbacks():
    token = jwt_shaped({"exp": 1_790_003_600, "ou_code": "NA"})
    assert jwt_claims(token) == {"exp": 1_790_003_600, "ou_code": "NA"}
    assert jwt_claims("not-a-jwt") == {} and jwt_claims("a.!!!.c") == {}
    assert expiry_s(token, 60, 1000.0) == 1_790_003_600  # the JWT wins over expires_in
    assert expiry_s("opaque", 60, 1000.0) == 1060.0
    assert expiry_s("opaque", None, 1000.0) == 1000.0 + DEFAULT_LIFETIME_S


def test_refresh_rotates_the_single_use_token_and_saves_it_first(tmp_path):
    async def scenario():
        async with FakeFleet() as fleet:
            first = fleet.issue_refresh_token()
            keeper = make_keeper(fleet, tmp_path / "tesla.json", first)
            access = await keeper.access_token()
            on_disk = saved(tmp_path / "tesla.json")
            assert on_disk["access_token"] == access
            assert on_disk["refresh_token"] not in ("", first)  # rotated
            assert keeper.region == "EU" and keeper.state == "ok"
            assert await keeper.access_token() == access  # held: no second refresh
            assert fleet.refreshes == 1 and token_posts(fleet) == 1
            # The fake enforces single use, as Tesla does: the old token is dead now.
            stale = make_keeper(fleet, tmp_path / "other.json", first)
            with pytest.raises(api.LoginRequired):
                await stale.access_token()
            await keeper.close()
            await stale.close()

    asyncio.run(scenario())


def test_refreshes_ahead_of_expiry_by_the_jwt_exp(tmp_path):
    clock = Clock()

    async def scenario():
        async with FakeFleet(access_lifetime_s=2 * 3600, wallclock=clock) as fleet:
            keeper = make_keeper(
                fleet, tmp_path / "t.json", fleet.issue_refresh_token(), wallclock=clock
            )
            first = await keeper.access_token()
            clock.now_s += 50 * 60  # 70 min left: more than the hour ahead
            assert await keeper.access_token() == first
            clock.now_s += 15 * 60  # 55 min left: refresh now, not at expiry
            second = await keeper.access_token()
            assert second != first and fleet.refreshes == 2
            assert saved(tmp_path / "t.json")["expires_at"] == clock.now_s + 2 * 3600 // 1
            await keeper.close()

    asyncio.run(scenario())


def test_concurrent_callers_share_one_refresh(tmp_path):
    async def scenario():
        async with FakeFleet() as fleet:
            keeper = make_keeper(fleet, tmp_path / "t.json", fleet.issue_refresh_token())
            tokens = await asyncio.gather(*(keeper.access_token() for _ in range(10)))
            assert len(set(tokens)) == 1 and fleet.refreshes == 1 and token_posts(fleet) == 1
            await keeper.close()

    asyncio.run(scenario())


def test_file_is_private_and_replaced_whole(tmp_path):
    async def scenario():
        async with FakeFleet() as fleet:
            keeper = make_keeper(fleet, tmp_path / "t.json", fleet.issue_refresh_token())
            for _ in range(3):
                keeper.note_rejected()
                await keeper.access_token()
            await keeper.close()

    asyncio.run(scenario())
    path = tmp_path / "t.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert sorted(saved(path)) == ["access_token", "expires_at", "refresh_token", "seed"]
    assert os.listdir(tmp_path) == ["t.json"]  # no temp file left behind


def test_write_atomically_keeps_the_old_file_when_writing_fails(tmp_path, monkeypatch):
    path = tmp_path / "t.json"
    write_atomically(path, '{"old": 1}')

    def broken_replace(*args):
        raise OSError("disk gone")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError):
        write_atomically(path, '{"new": 2}')
    assert saved(path) == {"old": 1} and os.listdir(tmp_path) == ["t.json"]


def test_a_half_written_temp_file_is_dropped_a_whole_one_completes_the_save(tmp_path):
    path = tmp_path / "t.json"
    old = {"access_token": "", "refresh_token": "rt-old", "expires_at": 0}
    write_atomically(path, json.dumps(old))
    (tmp_path / ".t.json.cut.tmp").write_text('{"access_token": "a", "refr')
    assert not recover_interrupted_save(path)
    assert saved(path) == old and os.listdir(tmp_path) == ["t.json"]
    new = {**old, "refresh_token": "rt-new"}
    (tmp_path / ".t.json.whole.tmp").write_text(json.dumps(new))
    assert recover_interrupted_save(path)
    assert saved(path) == new and os.listdir(tmp_path) == ["t.json"]


def test_a_refreshed_pair_that_cannot_be_saved_is_kept_until_it_can(tmp_path, monkeypatch):
    real_write = tokens.write_atomically
    monkeypatch.setattr(tokens, "write_atomically", _disk_full)

    async def scenario():
        async with FakeFleet() as fleet:
            keeper = make_keeper(fleet, tmp_path / "t.json", fleet.issue_refresh_token())
            with pytest.raises(api.Transient, match="cannot write"):
                await keeper.access_token()  # refreshed, not saved: not handed out
            assert keeper.state == "refresh_failed"
            monkeypatch.setattr(tokens, "write_atomically", real_write)
            access = await keeper.access_token()  # saved now, no second refresh
            assert saved(tmp_path / "t.json")["access_token"] == access
            assert fleet.refreshes == 1 and keeper.state == "ok"
            await keeper.close()

    asyncio.run(scenario())


def _disk_full(path, text):
    raise OSError(28, "No space left on device")


def test_a_restart_reads_the_file_not_the_config_token(tmp_path):
    async def scenario():
        async with FakeFleet() as fleet:
            configured = fleet.issue_refresh_token()
            first = make_keeper(fleet, tmp_path / "t.json", configured)
            access = await first.access_token()
            await first.close()
            # Restart with the same (now spent) token still in the config.
            again = make_keeper(fleet, tmp_path / "t.json", configured)
            assert await again.access_token() == access  # from the file, no request
            again.note_rejected()
            await again.access_token()  # refreshes with the file's token: accepted
            assert again.state == "ok" and fleet.refreshes == 2
            await again.close()

    asyncio.run(scenario())


def test_login_required_is_sticky_until_the_file_changes(tmp_path):
    path = tmp_path / "t.json"

    async def scenario():
        async with FakeFleet() as fleet:
            keeper = make_keeper(fleet, path, fleet.issue_refresh_token())
            await keeper.access_token()
            fleet.revoke_refresh_tokens()  # e.g. the user changed the password
            keeper.note_rejected()
            with pytest.raises(api.LoginRequired):
                await keeper.access_token()
            assert keeper.state == "login_required" and "login required" in keeper.describe()
            posts = token_posts(fleet)
            for _ in range(3):
                with pytest.raises(api.LoginRequired):
                    await keeper.access_token()
            assert token_posts(fleet) == posts  # sticky: no request at all
            # The user logs in again and writes the new token.
            fresh = {"access_token": "", "refresh_token": fleet.issue_refresh_token()}
            write_atomically(path, json.dumps({**fresh, "expires_at": 0}))
            bumped_ns = path.stat().st_mtime_ns + 1_000_000_000  # coarse clocks: make sure
            os.utime(path, ns=(bumped_ns, bumped_ns))
            await keeper.access_token()
            assert keeper.state == "ok" and token_posts(fleet) == posts + 1
            await keeper.close()

    asyncio.run(scenario())


def test_no_token_anywhere_asks_for_a_login(tmp_path):
    async def scenario():
        async with FakeFleet() as fleet:
            keeper = make_keeper(fleet, tmp_path / "t.json", None)
            with pytest.raises(api.LoginRequired):
                await keeper.access_token()
            assert keeper.state == "no_token" and token_posts(fleet) == 0
            assert str(tmp_path / "t.json") in keeper.describe()
            await keeper.close()

    asyncio.run(scenario())


def test_transient_failures_back_off_then_retry(tmp_path):
    clock = Clock()

    async def scenario():
        async with FakeFleet(wallclock=clock) as fleet:
            keeper = make_keeper(
                fleet, tmp_path / "t.json", fleet.issue_refresh_token(), wallclock=clock
            )
            fleet.fail_next(TOKEN_PATH, 503, "<html>busy</html>")
            with pytest.raises(api.Transient) as failed:
                await keeper.access_token()
            assert failed.value.billable is False and keeper.state == "refresh_failed"
            for _ in range(5):  # no storm: nothing is sent during the back-off
                with pytest.raises(api.Transient) as waiting:
                    await keeper.access_token()
            assert token_posts(fleet) == 1
            assert 0 < waiting.value.retry_after_s <= RETRY_AFTER_FAILURE_S
            clock.now_s += RETRY_AFTER_FAILURE_S + 1
            await keeper.access_token()
            assert keeper.state == "ok" and token_posts(fleet) == 2
            await keeper.close()

    asyncio.run(scenario())


def test_timeouts_and_refused_connections_are_transient(tmp_path):
    clock = Clock()

    async def scenario():
        async with FakeFleet(wallclock=clock) as fleet:
            rt = fleet.issue_refresh_token()
            keeper = make_keeper(fleet, tmp_path / "t.json", rt, timeout_s=0.2, wallclock=clock)
            fleet.fail_next(TOKEN_PATH, 200, {}, delay_s=0.8)  # hangs past the timeout
            with pytest.raises(api.Transient, match="timeout"):
                await keeper.access_token()
            url = fleet.auth_url
            await keeper.close()
        gone = TokenKeeper(
            tmp_path / "u.json", auth_url=url, client_id=CLIENT_ID, initial_refresh_token=rt
        )
        with pytest.raises(api.Transient, match="no answer"):
            await gone.access_token()
        await gone.close()

    asyncio.run(scenario())


def test_a_still_valid_token_is_used_while_an_early_refresh_fails(tmp_path):
    clock = Clock()

    async def scenario():
        async with FakeFleet(access_lifetime_s=2 * 3600, wallclock=clock) as fleet:
            keeper = make_keeper(
                fleet, tmp_path / "t.json", fleet.issue_refresh_token(), wallclock=clock
            )
            access = await keeper.access_token()
            clock.now_s += 90 * 60  # inside the refresh-ahead hour, not expired
            fleet.fail_next(TOKEN_PATH, 500)
            assert await keeper.access_token() == access
            assert keeper.state == "refresh_failed"
            await keeper.close()

    asyncio.run(scenario())


CANARY = "CANARY-rt-7f3a9c1e5d2b"


def test_no_token_in_logs_reprs_or_errors(tmp_path, caplog, capsys):
    texts: list[str] = []

    async def scenario():
        async with FakeFleet() as fleet:
            fleet.tokens.refresh_live.add(CANARY)
            keeper = make_keeper(fleet, tmp_path / "t.json", CANARY)
            access = await keeper.access_token()  # succeeds: the canary is spent
            texts.extend([repr(keeper), keeper.describe(), repr(keeper._pair)])
            echoes = [
                (401, {"error": "login_required", "error_description": f"bad {CANARY} {access}"}),
                (400, {"error": f"{CANARY}", "error_description": CANARY}),
                (503, f"<html>{CANARY} {access}</html>"),
            ]
            for status, body in echoes:
                again = make_keeper(fleet, tmp_path / f"{status}.json", CANARY)
                fleet.fail_next(TOKEN_PATH, status, body)
                with pytest.raises(api.CarApiError) as failed:
                    await again.access_token()
                texts.extend([str(failed.value), repr(failed.value), repr(again)])
                texts.append(again.describe())
                await again.close()
            await keeper.close()
            return access

    access = asyncio.run(scenario())
    captured = capsys.readouterr()
    texts.extend([caplog.text, captured.out, captured.err])
    for text in texts:
        assert CANARY not in text and access not in text


CRASH_SCRIPT = textwrap.dedent(
    """
    import asyncio, os, signal, sys
    from pathlib import Path
    from twcmaster.vehicles.tesla import tokens

    path, auth_url, crash_at = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
    real_replace, real_fsync = os.replace, os.fsync
    fsyncs = []

    def die():
        os.kill(os.getpid(), signal.SIGKILL)

    def replace(src, dst):
        if crash_at == "before_replace":  # temp file complete and fsynced, not renamed
            die()
        real_replace(src, dst)
        if crash_at == "after_replace":  # renamed, the new token not used yet
            die()

    def fsync(fd):
        if crash_at == "before_fsync" and not fsyncs:  # temp file written, not synced
            die()
        fsyncs.append(fd)
        real_fsync(fd)

    os.replace, os.fsync = replace, fsync

    async def main():
        keeper = tokens.TokenKeeper(path, auth_url=auth_url, client_id="twcmaster-test",
                                    initial_refresh_token=None)
        keeper.note_rejected()  # refresh now, whatever the file says
        await keeper.access_token()
        await keeper.close()
        print(keeper.state)

    asyncio.run(main())
    """
)


@pytest.mark.parametrize("crash_at", ["before_fsync", "before_replace", "after_replace"])
def test_a_sigkill_mid_refresh_leaves_the_old_pair_or_the_new(tmp_path, crash_at):
    script = tmp_path / "refresh_once.py"
    script.write_text(CRASH_SCRIPT)
    path = tmp_path / "tokens" / "t.json"
    path.parent.mkdir()
    env = {**os.environ, "PYTHONPATH": str(REPO)}

    def refresh_in_a_process(point: str) -> subprocess.CompletedProcess:
        command = [sys.executable, str(script), str(path), fleet.auth_url, point]
        return subprocess.run(command, env=env, capture_output=True, text=True, timeout=30)

    with FakeFleet().running() as fleet:
        old = fleet.issue_refresh_token()
        write_atomically(
            path, json.dumps({"access_token": "", "refresh_token": old, "expires_at": 0})
        )
        killed = refresh_in_a_process(crash_at)
        assert killed.returncode == -signal.SIGKILL, killed.stderr
        on_disk = saved(path)  # whole JSON, never a partial write
        (issued,) = fleet.tokens.refresh_live  # the one new token the crashed refresh got
        expected = issued if crash_at == "after_replace" else old
        assert on_disk["refresh_token"] == expected
        # The server has spent the old token either way; the next start finishes the save
        # from the temp file (complete in the kernel even if not fsynced) and carries on.
        resumed = refresh_in_a_process("never")
        assert resumed.returncode == 0, resumed.stderr
        assert resumed.stdout.splitlines()[-1] == "ok"
        assert fleet.refreshes == 2 and saved(path)["refresh_token"] not in (old, issued)
        assert os.listdir(path.parent) == ["t.json"]


def test_a_new_refresh_token_in_the_config_replaces_the_file_after_a_new_login(tmp_path):
    """After login_required the user logs in again and puts the new token in the config (the
    only place TWCManager users know): it wins over the file, which began from the old one;
    the old config token (already spent) never does."""
    path = tmp_path / "t.json"

    async def scenario():
        async with FakeFleet() as fleet:
            first = fleet.issue_refresh_token()
            keeper = make_keeper(fleet, path, first)
            await keeper.access_token()
            await keeper.close()
            # A restart with the same (spent) config token: the file wins.
            again = make_keeper(fleet, path, first)
            await again.access_token()
            assert fleet.refreshes == 1
            await again.close()
            fleet.revoke_refresh_tokens()
            # A restart with a new token in the config: it replaces the file.
            relogged = make_keeper(fleet, path, fleet.issue_refresh_token())
            await relogged.access_token()
            assert relogged.state == "ok" and fleet.refreshes == 2
            await relogged.close()

    asyncio.run(scenario())
