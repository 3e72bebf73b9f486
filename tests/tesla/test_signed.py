"""Signed commands end to end: TeslaClient with ``private_key_file`` (tesla-fleet-api's
VehicleSigned, HMAC personalized signatures) against the fake car's side of the Vehicle
Command Protocol on ``/signed_command`` (``fakesigning.CarSide``)."""

from __future__ import annotations

import asyncio
import base64
import json
from pathlib import Path

import aiohttp
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from tesla_fleet_api.tesla.vehicle.proto.car_server_pb2 import Action
from tesla_fleet_api.tesla.vehicle.proto.signatures_pb2 import SessionInfo
from tesla_fleet_api.tesla.vehicle.proto.universal_message_pb2 import (
    Domain,
    MessageFault_E,
    RoutableMessage,
    SessionInfoRequest,
)

from tests.tesla.fakefleet import FakeCar, FakeFleet
from tests.tesla.fakesigning import public_bytes, session_info_tag, session_key
from tests.tesla.test_client import VIN, connected
from twcmaster.vehicles.tesla import api

SIGNED = f"/api/1/vehicles/{VIN}/signed_command"
REST_COMMANDS = f"/api/1/vehicles/{VIN}/command/*"


def write_key(directory: Path, name: str = "app") -> tuple[Path, ec.EllipticCurvePrivateKey]:
    """The app's key pair, made now (never committed)."""
    key = ec.generate_private_key(ec.SECP256R1())
    path = directory / f"{name}-private-key.pem"
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return path, key


def paired_car(tmp_path: Path, **options) -> tuple[FakeCar, Path, ec.EllipticCurvePrivateKey]:
    key_file, key = write_key(tmp_path)
    car = FakeCar(VIN, "Red", requires_signing=True, **options)
    car.enroll(key.public_key())
    return car, key_file, key


def sent_messages(fleet: FakeFleet) -> list[RoutableMessage]:
    return [
        RoutableMessage.FromString(base64.b64decode(json.loads(r.body)["routable_message"]))
        for r in fleet.requests_to(SIGNED)
    ]


async def post_again(fleet: FakeFleet, message: RoutableMessage) -> RoutableMessage:
    """POST a routable message as an attacker would, bypassing the library."""
    body = {"routable_message": base64.b64encode(message.SerializeToString()).decode()}
    headers = {"Authorization": f"Bearer {fleet.issue_access_token()}"}
    async with aiohttp.ClientSession() as session:
        async with session.post(fleet.url + SIGNED, json=body, headers=headers) as response:
            assert response.status == 200
            document = await response.json()
    return RoutableMessage.FromString(base64.b64decode(document["response"]))


def test_signed_commands_change_the_car_and_never_use_the_rest_paths(tmp_path):
    async def scenario():
        car, key_file, _ = paired_car(tmp_path)
        async with connected(tmp_path, car, private_key_file=str(key_file)) as (
            fleet,
            client,
            calls,
        ):
            assert await client.charge_start(VIN) == ""
            assert car.charging_state == "Charging"
            assert await client.charge_start(VIN) == "is_charging"  # counts as success
            assert await client.set_charging_amps(VIN, 11) == ""
            assert car.charge_current_request == 11
            assert await client.charge_stop(VIN) == ""
            assert car.charging_state == "Stopped"
            car.plugged = False
            with pytest.raises(api.Refused, match="^disconnected$"):
                await client.charge_start(VIN)
            assert fleet.requests_to(REST_COMMANDS) == []
            # One handshake (infotainment only: VCSEC is never asked), then one POST each.
            kinds = [m.WhichOneof("payload") for m in sent_messages(fleet)]
            assert kinds == ["session_info_request"] + ["protobuf_message_as_bytes"] * 5
            assert {m.to_destination.domain for m in sent_messages(fleet)} == {
                Domain.DOMAIN_INFOTAINMENT
            }
            assert calls == [("command", VIN, True)] * 6
            assert car.signing.accepted == ["chargingStartStopAction"] * 2 + [
                "setChargingAmpsAction",
                "chargingStartStopAction",
                "chargingStartStopAction",
            ]
            assert car.refusals == []

    asyncio.run(scenario())


def test_the_session_info_is_authenticated_for_the_client_key(tmp_path):
    """The library does not check the session info tag; this test checks the fake's from the
    client's side of ECDH, so a real client's check would pass too."""

    async def scenario():
        car, _, key = paired_car(tmp_path)
        async with FakeFleet([car]) as fleet:
            challenge = b"c" * 16
            request = RoutableMessage(
                uuid=challenge,
                session_info_request=SessionInfoRequest(public_key=public_bytes(key.public_key())),
            )
            request.to_destination.domain = Domain.DOMAIN_INFOTAINMENT
            answer = await post_again(fleet, request)
            info = SessionInfo.FromString(answer.session_info)
            assert info.publicKey == public_bytes(car.signing_key.public_key())
            k = session_key(key, info.publicKey)  # the client's side of ECDH
            tag = session_info_tag(k, VIN, challenge, answer.session_info)
            assert answer.signature_data.session_info_tag.tag == tag
            assert answer.request_uuid == challenge and len(info.epoch) == 16

    asyncio.run(scenario())


def test_a_key_not_paired_with_the_car_is_forbidden_with_a_clear_message(tmp_path):
    async def scenario():
        car, _, _ = paired_car(tmp_path)
        stranger_file, stranger = write_key(tmp_path, "stranger")
        async with connected(tmp_path, car, private_key_file=str(stranger_file)) as (
            fleet,
            client,
            calls,
        ):
            for command in (client.charge_start(VIN), client.set_charging_amps(VIN, 8)):
                with pytest.raises(api.Forbidden, match="does not know this key") as refused:
                    await command
                assert refused.value.billable is True
            assert car.charging_state == "Stopped" and car.charge_current_request == 16
            assert [r.fault for r in car.refusals] == ["KEY_NOT_ON_WHITELIST"] * 2
            assert {r.public_key for r in car.refusals} == {public_bytes(stranger.public_key())}
            assert calls == [("command", VIN, True)] * 2  # the handshakes alone
            assert fleet.requests_to(REST_COMMANDS) == []

    asyncio.run(scenario())


def test_a_key_removed_after_the_handshake_is_refused_by_key_id(tmp_path):
    async def scenario():
        car, key_file, key = paired_car(tmp_path)
        async with connected(tmp_path, car, private_key_file=str(key_file)) as (_, client, _):
            assert await client.charge_start(VIN) == ""
            car.enrolled_keys.discard(public_bytes(key.public_key()))  # removed in the car
            with pytest.raises(api.Forbidden, match="does not know this key"):
                await client.charge_stop(VIN)
            assert car.charging_state == "Charging"
            assert [r.fault for r in car.refusals] == ["MESSAGEFAULT_ERROR_UNKNOWN_KEY_ID"]

    asyncio.run(scenario())


def test_replayed_and_tampered_commands_are_refused(tmp_path):
    async def scenario():
        car, key_file, _ = paired_car(tmp_path)
        async with connected(tmp_path, car, private_key_file=str(key_file)) as (
            fleet,
            client,
            _,
        ):
            await client.charge_start(VIN)
            await client.set_charging_amps(VIN, 10)
            await client.charge_stop(VIN)
            start, amps = sent_messages(fleet)[1:3]

            replayed = await post_again(fleet, start)
            assert replayed.signedMessageStatus.signed_message_fault == (
                MessageFault_E.MESSAGEFAULT_ERROR_INVALID_TOKEN_OR_COUNTER
            )
            assert replayed.session_info  # so an honest client can resynchronise
            assert car.charging_state == "Stopped"

            action = Action.FromString(amps.protobuf_message_as_bytes)
            action.vehicleAction.setChargingAmpsAction.charging_amps = 32
            amps.protobuf_message_as_bytes = action.SerializeToString()
            amps.signature_data.HMAC_Personalized_data.counter += 100  # a fresh counter too
            tampered = await post_again(fleet, amps)
            assert tampered.signedMessageStatus.signed_message_fault == (
                MessageFault_E.MESSAGEFAULT_ERROR_INVALID_SIGNATURE
            )
            assert car.charge_current_request == 10
            assert [r.fault for r in car.refusals] == [
                "MESSAGEFAULT_ERROR_INVALID_TOKEN_OR_COUNTER",
                "MESSAGEFAULT_ERROR_INVALID_SIGNATURE",
            ]
            # The client's own session is untouched: its next command still passes.
            assert await client.charge_start(VIN) == ""

    asyncio.run(scenario())


def test_after_the_car_restarts_the_library_resynchronises_and_retries(tmp_path):
    async def scenario():
        car, key_file, _ = paired_car(tmp_path)
        async with connected(tmp_path, car, private_key_file=str(key_file)) as (
            fleet,
            client,
            calls,
        ):
            await client.set_charging_amps(VIN, 9)
            car.signing.reboot()  # a new epoch: the client's session is stale
            assert await client.set_charging_amps(VIN, 7) == ""
            assert car.charge_current_request == 7
            assert [r.fault for r in car.refusals] == ["MESSAGEFAULT_ERROR_INCORRECT_EPOCH"]
            assert calls == [("command", VIN, True)] * 4  # handshake, 9 A, stale, retried 7 A

    asyncio.run(scenario())


def test_a_sleeping_car_answers_signed_commands_408(tmp_path):
    async def scenario():
        car, key_file, _ = paired_car(tmp_path, asleep=True)
        async with connected(tmp_path, car, private_key_file=str(key_file)) as (_, client, _):
            with pytest.raises(api.Asleep):
                await client.charge_start(VIN)

    asyncio.run(scenario())


def test_an_unsigned_client_still_gets_signing_required(tmp_path):
    async def scenario():
        car, _, _ = paired_car(tmp_path)
        async with connected(tmp_path, car) as (fleet, client, _):
            with pytest.raises(api.SigningRequired):
                await client.charge_start(VIN)
            assert fleet.requests_to(SIGNED) == [] and car.refusals == []

    asyncio.run(scenario())
