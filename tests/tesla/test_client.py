"""TeslaClient against the loopback fake Fleet API: every CarApi call, every error kind, what
on_call is told, the pinned proxy certificate, signed-mode set-up errors, and no token in any
error text or log."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import ipaddress
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from tests.tesla.fakefleet import FakeCar, FakeFleet
from twcmaster.vehicles.tesla import api
from twcmaster.vehicles.tesla.client import TeslaClient
from twcmaster.vehicles.tesla.keys import ClientSetupError
from twcmaster.vehicles.tesla.tokens import TokenKeeper

VIN = "5YJ3E1EA7KF000001"
OTHER_VIN = "LRW3E7FA1MC000002"
VEHICLES = "/api/1/vehicles*"


class Calls(list):
    """What on_call was told: (kind, vin, billable) per HTTP request."""

    def __call__(self, kind: str, vin: str | None, billable: bool) -> None:
        self.append((kind, vin, billable))


@contextlib.asynccontextmanager
async def connected(
    tmp_path: Path, *cars: FakeCar, fleet_options=None, **client_options
) -> AsyncIterator[tuple[FakeFleet, TeslaClient, Calls]]:
    cars = cars or (FakeCar(VIN, "Red"),)
    async with FakeFleet(cars, **(fleet_options or {})) as fleet:
        keeper = TokenKeeper(
            tmp_path / "tokens.json",
            auth_url=fleet.auth_url,
            client_id="twcmaster-test",
            initial_refresh_token=fleet.issue_refresh_token(),
            session=None,
        )
        calls = Calls()
        client_options.setdefault("on_token_rejected", keeper.note_rejected)
        client = TeslaClient(fleet.url, keeper.access_token, on_call=calls, **client_options)
        try:
            yield fleet, client, calls
        finally:
            await client.close()
            await keeper.close()


def test_list_state_and_charge_data(tmp_path):
    async def scenario():
        parked = FakeCar(VIN, "Red", battery_level=61, charge_limit_soc=90, latitude=48.1)
        async with connected(tmp_path, parked, FakeCar(OTHER_VIN, asleep=True)) as (
            fleet,
            client,
            calls,
        ):
            assert await client.list_vehicles() == [
                api.VehicleInfo(VIN, "Red", "online"),
                api.VehicleInfo(OTHER_VIN, "", "asleep"),
            ]
            assert await client.vehicle_state(OTHER_VIN) == "asleep"
            data = await client.charge_data(VIN)
            assert data == api.ChargeData(
                vin=VIN,
                state="online",
                battery_level=61,
                charge_limit_soc=90,
                charging_state="Stopped",
                scheduled_charging_pending=False,
                charge_current_request=16,
                latitude=48.1,
                longitude=13.4,
            )
            asked = fleet.requests_to(f"/api/1/vehicles/{VIN}/vehicle_data")[0].query
            assert "location_data" in asked and "charge_state" in asked
            assert calls == [("data", None, True), ("data", OTHER_VIN, True), ("data", VIN, True)]

    asyncio.run(scenario())


def test_an_asleep_car_is_asleep_until_woken(tmp_path):
    async def scenario():
        car = FakeCar(VIN, asleep=True)
        options = {"wake_delay_s": 0.2}
        async with connected(tmp_path, car, fleet_options=options) as (fleet, client, calls):
            with pytest.raises(api.Asleep) as asleep:
                await client.charge_data(VIN)
            assert asleep.value.billable is True  # Tesla bills a 408
            assert await client.wake_up(VIN) == "asleep"  # on its way up
            await asyncio.sleep(0.25)
            assert await client.vehicle_state(VIN) == "online"
            assert (await client.charge_data(VIN)).battery_level == 55
            assert [kind for kind, _, _ in calls] == ["data", "wake", "data", "data"]

    asyncio.run(scenario())


def test_commands_and_their_reasons(tmp_path):
    async def scenario():
        car = FakeCar(VIN)
        async with connected(tmp_path, car) as (fleet, client, calls):
            assert await client.charge_start(VIN) == ""
            assert car.charging_state == "Charging"
            assert await client.charge_start(VIN) == "is_charging"  # counts as success
            assert await client.set_charging_amps(VIN, 12) == ""
            assert car.charge_current_request == 12
            sent = fleet.requests_to(f"/api/1/vehicles/{VIN}/command/set_charging_amps")[0]
            assert sent.body == '{"charging_amps": 12}'
            assert await client.charge_stop(VIN) == ""
            assert await client.charge_stop(VIN) == "not_charging"  # counts as success
            car.plugged = False
            with pytest.raises(api.Refused, match="^disconnected$") as refused:
                await client.charge_start(VIN)
            assert refused.value.billable is True
            assert calls == [("command", VIN, True)] * 6

    asyncio.run(scenario())


def test_an_expired_token_is_refreshed_and_the_call_retried_once(tmp_path):
    async def scenario():
        async with connected(tmp_path) as (fleet, client, calls):
            await client.vehicle_state(VIN)
            fleet.expire_access_tokens()
            assert await client.vehicle_state(VIN) == "online"
            assert fleet.refreshes == 2 and len(calls) == 3
            # A token the API keeps refusing: one retry, then the error.
            expired = {"response": None, "error": "token expired (401)"}
            fleet.fail_next(VEHICLES, 401, expired, count=5)
            with pytest.raises(api.TokenExpired):
                await client.vehicle_state(VIN)
            assert len(fleet.requests_to(f"/api/1/vehicles/{VIN}")) == 5  # 1, 2, then 2

    asyncio.run(scenario())


def test_login_required_and_forbidden_kinds(tmp_path):
    async def scenario():
        signing_car = FakeCar(OTHER_VIN, requires_signing=True)
        async with connected(tmp_path, FakeCar(VIN), signing_car) as (fleet, client, calls):
            fleet.fail_next(VEHICLES, 401, {"error": "login_required"})
            with pytest.raises(api.LoginRequired):
                await client.list_vehicles()
            with pytest.raises(api.SigningRequired) as unsigned:
                await client.charge_start(OTHER_VIN)
            assert "Vehicle Command Protocol" in str(unsigned.value)
            fleet.fail_next(VEHICLES, 403, {"error": "Unauthorized missing scopes"})
            with pytest.raises(api.Forbidden):
                await client.charge_data(VIN)
            with pytest.raises(api.NotFound):
                await client.vehicle_state("NOSUCHVIN")
            assert all(billable for _, _, billable in calls) and len(calls) == 4

    asyncio.run(scenario())


@pytest.mark.parametrize(
    "headers,wait_s", [({"Retry-After": "17"}, 17.0), ({"RateLimit-Reset": "42"}, 42.0)]
)
def test_rate_limited_says_when_to_retry(tmp_path, headers, wait_s):
    async def scenario():
        async with connected(tmp_path) as (fleet, client, calls):
            fleet.fail_next(VEHICLES, 429, {"error": "rate limited"}, headers)
            with pytest.raises(api.RateLimited) as limited:
                await client.charge_data(VIN)
            assert limited.value.retry_after_s == wait_s and limited.value.billable is True

    asyncio.run(scenario())


@pytest.mark.parametrize(
    "status,body,billable",
    [
        (503, {"response": None, "error": "upstream internal error"}, False),
        (502, "<html>bad gateway</html>", False),
        (500, "not json", False),
        (200, "<html>captive portal</html>", True),  # an answer, billed, but not the API's
    ],
)
def test_server_errors_and_garbage_are_transient(tmp_path, status, body, billable):
    async def scenario():
        async with connected(tmp_path) as (fleet, client, calls):
            fleet.fail_next(VEHICLES, status, body)
            with pytest.raises(api.Transient) as failed:
                await client.vehicle_state(VIN)
            assert failed.value.billable is billable and calls == [("data", VIN, billable)]

    asyncio.run(scenario())


def test_broken_json_is_transient(tmp_path):
    async def scenario():
        async with connected(tmp_path) as (fleet, client, calls):
            fleet.fail_next(VEHICLES, 200, b'{"response": {', {"Content-Type": "application/json"})
            with pytest.raises(api.Transient, match="not JSON"):
                await client.vehicle_state(VIN)
            fleet.fail_next(VEHICLES, 200, {"response": {"no": "state"}})
            with pytest.raises(api.Transient, match="state"):
                await client.vehicle_state(VIN)

    asyncio.run(scenario())


def test_no_answer_in_time_or_at_all_is_transient_and_not_billed(tmp_path):
    async def scenario():
        async with connected(tmp_path, timeout_s=0.3) as (fleet, client, calls):
            await client.vehicle_state(VIN)  # the token refresh is done
            fleet.fail_next(VEHICLES, 200, {}, delay_s=0.8)  # hangs past the timeout
            with pytest.raises(api.Transient, match="no answer within") as late:
                await client.vehicle_state(VIN)
            assert late.value.billable is False and calls[-1] == ("data", VIN, False)
        refused = TeslaClient(fleet.url, _static("t"), on_call=calls)  # the fake is gone
        with pytest.raises(api.Transient, match="no answer") as nothing:
            await refused.charge_start(VIN)
        assert nothing.value.billable is False and calls[-1] == ("command", VIN, False)
        await refused.close()

    asyncio.run(scenario())


def _static(token: str):
    async def access_token() -> str:
        return token

    return access_token


def self_signed(directory: Path, name: str) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1, made now (never committed)."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "tesla-http-proxy")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = directory / f"{name}.crt", directory / f"{name}.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_file, key_file


def test_the_proxy_certificate_is_pinned(tmp_path):
    cert_file, key_file = self_signed(tmp_path, "proxy")
    stranger, _ = self_signed(tmp_path, "stranger")
    served = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    served.load_cert_chain(cert_file, key_file)

    async def scenario():
        async with FakeFleet([FakeCar(VIN)], ssl_context=served) as fleet:
            token = fleet.issue_access_token()
            pinned = TeslaClient(fleet.url, _static(token), proxy_cert=str(cert_file))
            assert await pinned.vehicle_state(VIN) == "online"
            for cert in (None, str(stranger)):  # the system CAs, another certificate
                calls = Calls()
                other = TeslaClient(fleet.url, _static(token), proxy_cert=cert, on_call=calls)
                with pytest.raises(api.Transient) as refused:
                    await other.vehicle_state(VIN)
                assert refused.value.billable is False and calls == [("data", VIN, False)]
                await other.close()
            await pinned.close()

    asyncio.run(scenario())


def test_signed_mode_needs_a_readable_ec_key(tmp_path):
    missing = tmp_path / "private-key.pem"
    with pytest.raises(ClientSetupError, match=str(missing)):
        TeslaClient("https://x", _static("t"), private_key_file=str(missing))
    assert not missing.exists()  # never made up (tesla-fleet-api's get_private_key would)
    missing.write_text("not a key")
    with pytest.raises(ClientSetupError, match="not a PEM key"):
        TeslaClient("https://x", _static("t"), private_key_file=str(missing))
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    missing.write_bytes(
        rsa_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    with pytest.raises(ClientSetupError, match="not an EC"):
        TeslaClient("https://x", _static("t"), private_key_file=str(missing))
    with pytest.raises(ClientSetupError, match="proxy.crt"):
        TeslaClient("https://x", _static("t"), proxy_cert=str(tmp_path / "proxy.crt"))
    _, ec_key = self_signed(tmp_path, "app")

    async def built() -> None:
        client = TeslaClient("https://x", _static("t"), private_key_file=str(ec_key))
        assert client.signed and type(client._commander(VIN)).__name__ == "VehicleSigned"
        assert type(client._car(VIN)).__name__ == "VehicleFleet"  # data stays unsigned
        await client.close()

    asyncio.run(built())


CANARY = "CANARY.at-4e1d8b2a9f7c.sig0"


def test_no_token_in_errors_or_logs(tmp_path, caplog, capsys):
    texts: list[str] = []

    async def scenario():
        async with FakeFleet([FakeCar(VIN)]) as fleet:
            fleet.tokens.access_expiry_s[CANARY] = 4e9  # the fake accepts it
            client = TeslaClient(fleet.url, _static(CANARY))
            echoes = [
                (401, {"error": f"token {CANARY} expired"}),
                (403, {"error": f"token {CANARY} lacks scopes"}),
                (408, {"error": f"{CANARY} asleep"}),
                (429, f"<html>{CANARY}</html>"),
                (503, {"error": f"upstream {CANARY}"}),
                (400, {"error": f"bad request {CANARY}"}),
            ]
            for status, body in echoes:
                fleet.fail_next(VEHICLES, status, body, count=2)
                with pytest.raises(api.CarApiError) as failed:
                    await client.charge_data(VIN)
                texts.extend([str(failed.value), repr(failed.value), repr(client)])
                texts.extend(str(arg) for arg in failed.value.args)
                fleet.clear_failures()
            assert await client.charge_start(VIN) == ""  # and the token works
            await client.close()
            return [r.auth for r in fleet.requests]

    sent = asyncio.run(scenario())
    assert all(auth == f"Bearer {CANARY}" for auth in sent)  # the fake saw it: it was used
    captured = capsys.readouterr()
    texts.extend([caplog.text, captured.out, captured.err])
    assert texts and not [text for text in texts if CANARY in text]


def test_token_errors_pass_through_without_a_request(tmp_path):
    async def scenario():
        async with connected(tmp_path) as (fleet, client, calls):
            fleet.revoke_refresh_tokens()  # the keeper's first refresh is refused
            for _ in range(2):
                with pytest.raises(api.LoginRequired):
                    await client.charge_start(VIN)
            assert calls == [] and fleet.requests_to(VEHICLES) == []

    asyncio.run(scenario())


def test_concurrent_calls_are_counted_each_to_its_own_car(tmp_path):
    async def scenario():
        async with connected(tmp_path, FakeCar(VIN), FakeCar(OTHER_VIN)) as (_, client, calls):
            each = [
                call
                for _ in range(3)
                for call in (client.charge_data(VIN), client.wake_up(OTHER_VIN))
            ]
            await asyncio.gather(client.list_vehicles(), *each)
            assert sorted(calls, key=str) == sorted(
                [("data", None, True)] + [("data", VIN, True), ("wake", OTHER_VIN, True)] * 3,
                key=str,
            )

    asyncio.run(scenario())
