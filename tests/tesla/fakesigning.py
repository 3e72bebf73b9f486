"""The car's side of Tesla's Vehicle Command Protocol, as the Fleet API's ``/signed_command``
carries it: a base64 ``RoutableMessage`` in, one out. Test code: it emulates the car so that
tesla-fleet-api's signed commands (``VehicleSigned``, HMAC personalized signatures) can be
run end to end against ``fakefleet.FakeFleet``.

What the car does here, from the protocol's public description:

* Session info request (per domain, infotainment or VCSEC): a key that is not enrolled gets
  ``SessionInfo`` with status ``KEY_NOT_ON_WHITELIST``; an enrolled key gets the domain's
  counter, the car's public key, the epoch and clock_time (s since the epoch began), tagged
  with HMAC-SHA256 under ``HMAC(K, "session info")`` over the metadata (signature type HMAC,
  VIN, the request's uuid as challenge) and the encoded session info. K is the first 16 bytes
  of SHA-1 of the ECDH(car key, client key) shared secret.
* Signed command: the signer must be enrolled (else ``UNKNOWN_KEY_ID``), the epoch current
  (``INCORRECT_EPOCH``), the tag HMAC-SHA256 under ``HMAC(K, "authenticated command")`` over
  the TLV metadata (type, domain, VIN, epoch, expires_at, counter) and the payload
  (``INVALID_SIGNATURE``), not expired nor valid too long (``TIME_EXPIRED``,
  ``TIME_TO_LIVE_TOO_LONG``), its counter above the last one accepted from that key
  (``INVALID_TOKEN_OR_COUNTER``: a replay). Epoch, expiry and counter faults carry fresh
  session info so a client can resynchronise, as the car's do.
* The accepted payload is a CarServer ``Action``: charging start/stop and set charging amps
  are applied; the answer is a ``Response`` with ``ActionStatus`` OK, or ERROR and a reason.

Not emulated: AES-GCM personalized signatures and encrypted responses (the library uses them
only over BLE: ``VehicleSigned._auth_method = "hmac"``), VCSEC commands (only its handshake),
the car's sliding counter window (here a counter must simply increase).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from google.protobuf.message import DecodeError
from tesla_fleet_api.tesla.vehicle.proto.car_server_pb2 import (
    Action,
    ActionStatus,
    Response,
    ResultReason,
)
from tesla_fleet_api.tesla.vehicle.proto.signatures_pb2 import (
    HMAC_Signature_Data,
    Session_Info_Status,
    SessionInfo,
    SignatureData,
    SignatureType,
    Tag,
)
from tesla_fleet_api.tesla.vehicle.proto.universal_message_pb2 import (
    Destination,
    Domain,
    MessageFault_E,
    MessageStatus,
    OperationStatus_E,
    RoutableMessage,
)

EPOCH_BYTES = 16  # the car's session epoch: random, new after every "reboot"
MAX_COMMAND_TTL_S = 60  # a command valid longer than this is refused (the library asks 10 s)
SESSION_DOMAINS = (Domain.DOMAIN_INFOTAINMENT, Domain.DOMAIN_VEHICLE_SECURITY)
# Faults after which the car attaches session info: the client's view of it is stale.
RESYNC_FAULTS = frozenset(
    {
        MessageFault_E.MESSAGEFAULT_ERROR_INCORRECT_EPOCH,
        MessageFault_E.MESSAGEFAULT_ERROR_INVALID_TOKEN_OR_COUNTER,
        MessageFault_E.MESSAGEFAULT_ERROR_TIME_EXPIRED,
    }
)

# What applying an action does: (ok, reason); the car's state is changed by the callback.
ApplyAction = Callable[[Action], tuple[bool, str]]


def public_bytes(key: ec.EllipticCurvePublicKey) -> bytes:
    """The uncompressed X9.62 point: how the protocol names a key (65 bytes)."""
    return key.public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)


def session_key(own: ec.EllipticCurvePrivateKey, peer_public: bytes) -> bytes:
    """K: SHA-1 of the ECDH shared secret, first 16 bytes (the same on both sides)."""
    peer = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), peer_public)
    return hashlib.sha1(own.exchange(ec.ECDH(), peer)).digest()[:16]


def action_name(action: Action) -> str:
    """The vehicle action's field name (``chargingStartStopAction``...), or the action's."""
    kind = action.WhichOneof("action_msg") or ""
    if kind == "vehicleAction":
        return action.vehicleAction.WhichOneof("vehicle_action_msg") or kind
    return kind


def domain_name(domain: int) -> str:
    return Domain.Name(domain) if domain in Domain.values() else f"DOMAIN_{domain}"


def _hmac(key: bytes, data: bytes) -> bytes:
    return hmac.new(key, data, hashlib.sha256).digest()


def _tlv(*items: tuple[int, bytes]) -> bytes:
    """The signed metadata: tag, length, value for each item, then TAG_END."""
    out = bytearray()
    for tag, value in items:
        out += bytes([tag, len(value)]) + value
    return bytes(out + bytes([Tag.TAG_END]))


def session_info_tag(k: bytes, vin: str, challenge: bytes, encoded_info: bytes) -> bytes:
    metadata = _tlv(
        (Tag.TAG_SIGNATURE_TYPE, bytes([SignatureType.SIGNATURE_TYPE_HMAC])),
        (Tag.TAG_PERSONALIZATION, vin.encode()),
        (Tag.TAG_CHALLENGE, challenge),
    )
    return _hmac(_hmac(k, b"session info"), metadata + encoded_info)


def command_tag(k: bytes, vin: str, message: RoutableMessage) -> bytes:
    """The tag a command must carry, recomputed from what arrived."""
    signed = message.signature_data.HMAC_Personalized_data
    metadata = _tlv(
        (Tag.TAG_SIGNATURE_TYPE, bytes([SignatureType.SIGNATURE_TYPE_HMAC_PERSONALIZED])),
        (Tag.TAG_DOMAIN, bytes([message.to_destination.domain])),
        (Tag.TAG_PERSONALIZATION, vin.encode()),
        (Tag.TAG_EPOCH, signed.epoch),
        (Tag.TAG_EXPIRES_AT, struct.pack(">I", signed.expires_at)),
        (Tag.TAG_COUNTER, struct.pack(">I", signed.counter)),
    )
    return _hmac(_hmac(k, b"authenticated command"), metadata + message.protobuf_message_as_bytes)


@dataclass
class DomainSession:
    """One domain's session on the car: shared by all clients, counters kept per key."""

    epoch: bytes = field(default_factory=lambda: secrets.token_bytes(EPOCH_BYTES))
    started_s: float = field(default_factory=time.monotonic)
    counters: dict[bytes, int] = field(default_factory=dict)  # client key → last accepted

    def clock_s(self) -> int:
        return int(time.monotonic() - self.started_s)


@dataclass(frozen=True)
class Refusal:
    """A message the car refused, for tests to look at."""

    domain: str  # Domain name
    fault: str  # MessageFault_E name, or KEY_NOT_ON_WHITELIST for a handshake
    public_key: bytes


@dataclass
class CarSide:
    """The car's end of the protocol: its key, the enrolled ("paired") client keys."""

    vin: str
    signing_key: ec.EllipticCurvePrivateKey = field(
        default_factory=lambda: ec.generate_private_key(ec.SECP256R1())
    )
    enrolled: set[bytes] = field(default_factory=set)  # client public keys (X9.62)
    sessions: dict[int, DomainSession] = field(default_factory=dict)
    refusals: list[Refusal] = field(default_factory=list)
    accepted: list[str] = field(default_factory=list)  # the actions applied, by name

    def enroll(self, key: ec.EllipticCurvePublicKey | bytes) -> None:
        self.enrolled.add(key if isinstance(key, bytes) else public_bytes(key))

    def reboot(self) -> None:
        """New epochs: every client's session is stale (as after the car restarts)."""
        self.sessions.clear()

    def handle(self, request: RoutableMessage, apply: ApplyAction) -> RoutableMessage:
        domain = request.to_destination.domain
        if domain not in SESSION_DOMAINS:
            return self._fault(request, MessageFault_E.MESSAGEFAULT_ERROR_INVALID_DOMAINS)
        if request.HasField("session_info_request"):
            return self._session_info(request, request.session_info_request.public_key)
        if request.HasField("protobuf_message_as_bytes"):
            return self._command(request, apply)
        return self._fault(request, MessageFault_E.MESSAGEFAULT_ERROR_DECODING)

    # -- the handshake --------------------------------------------------------------------

    def _session(self, domain: int) -> DomainSession:
        return self.sessions.setdefault(domain, DomainSession())

    def _session_info(self, request: RoutableMessage, client_key: bytes) -> RoutableMessage:
        answer = self._reply_to(request)
        if client_key not in self.enrolled:
            self._refuse(request, "KEY_NOT_ON_WHITELIST", client_key)
            info = SessionInfo(status=Session_Info_Status.SESSION_INFO_STATUS_KEY_NOT_ON_WHITELIST)
            answer.session_info = info.SerializeToString()
            return answer
        self._attach_session_info(answer, request, client_key)
        return answer

    def _attach_session_info(
        self, answer: RoutableMessage, request: RoutableMessage, client_key: bytes
    ) -> None:
        session = self._session(request.to_destination.domain)
        encoded = SessionInfo(
            counter=session.counters.get(client_key, 0),
            publicKey=public_bytes(self.signing_key.public_key()),
            epoch=session.epoch,
            clock_time=session.clock_s(),
            status=Session_Info_Status.SESSION_INFO_STATUS_OK,
        ).SerializeToString()
        k = session_key(self.signing_key, client_key)
        answer.session_info = encoded
        answer.signature_data.CopyFrom(
            SignatureData(
                session_info_tag=HMAC_Signature_Data(
                    tag=session_info_tag(k, self.vin, request.uuid, encoded)
                )
            )
        )

    # -- commands -----------------------------------------------------------------------

    def _command(self, request: RoutableMessage, apply: ApplyAction) -> RoutableMessage:
        fault = self._verify(request)
        if fault != MessageFault_E.MESSAGEFAULT_ERROR_NONE:
            return self._fault(request, fault)
        try:
            action = Action.FromString(request.protobuf_message_as_bytes)
        except DecodeError:
            return self._fault(request, MessageFault_E.MESSAGEFAULT_ERROR_DECODING)
        ok, reason = apply(action)
        self.accepted.append(action_name(action))
        status = ActionStatus(
            result=OperationStatus_E.OPERATIONSTATUS_OK
            if ok
            else OperationStatus_E.OPERATIONSTATUS_ERROR,
            result_reason=ResultReason(plain_text=reason),
        )
        answer = self._reply_to(request)
        answer.protobuf_message_as_bytes = Response(actionStatus=status).SerializeToString()
        return answer

    def _verify(self, request: RoutableMessage) -> int:
        """The first fault found, or ERROR_NONE; the counter advances only when all pass."""
        signer = request.signature_data.signer_identity.public_key
        if signer not in self.enrolled:
            return MessageFault_E.MESSAGEFAULT_ERROR_UNKNOWN_KEY_ID
        if not request.signature_data.HasField("HMAC_Personalized_data"):
            return MessageFault_E.MESSAGEFAULT_ERROR_INVALID_SIGNATURE  # AES-GCM: not here
        signed = request.signature_data.HMAC_Personalized_data
        session = self._session(request.to_destination.domain)
        if signed.epoch != session.epoch:
            return MessageFault_E.MESSAGEFAULT_ERROR_INCORRECT_EPOCH
        expected = command_tag(session_key(self.signing_key, signer), self.vin, request)
        if not hmac.compare_digest(expected, signed.tag):
            return MessageFault_E.MESSAGEFAULT_ERROR_INVALID_SIGNATURE
        now_s = session.clock_s()
        if signed.expires_at < now_s:
            return MessageFault_E.MESSAGEFAULT_ERROR_TIME_EXPIRED
        if signed.expires_at - now_s > MAX_COMMAND_TTL_S:
            return MessageFault_E.MESSAGEFAULT_ERROR_TIME_TO_LIVE_TOO_LONG
        if signed.counter <= session.counters.get(signer, 0):
            return MessageFault_E.MESSAGEFAULT_ERROR_INVALID_TOKEN_OR_COUNTER
        session.counters[signer] = signed.counter
        return MessageFault_E.MESSAGEFAULT_ERROR_NONE

    # -- answers --------------------------------------------------------------------------

    @staticmethod
    def _reply_to(request: RoutableMessage) -> RoutableMessage:
        return RoutableMessage(
            to_destination=Destination(routing_address=request.from_destination.routing_address),
            from_destination=Destination(domain=request.to_destination.domain),
            request_uuid=request.uuid,
            uuid=secrets.token_bytes(16),
        )

    def _fault(self, request: RoutableMessage, fault: int) -> RoutableMessage:
        signer = request.signature_data.signer_identity.public_key
        self._refuse(request, MessageFault_E.Name(fault), signer)
        answer = self._reply_to(request)
        answer.signedMessageStatus.CopyFrom(
            MessageStatus(
                operation_status=OperationStatus_E.OPERATIONSTATUS_ERROR,
                signed_message_fault=fault,
            )
        )
        if fault in RESYNC_FAULTS and signer in self.enrolled:
            self._attach_session_info(answer, request, signer)
        return answer

    def _refuse(self, request: RoutableMessage, fault: str, key: bytes) -> None:
        domain = domain_name(request.to_destination.domain)
        self.refusals.append(Refusal(domain, fault, key))
