"""Command line: ``twcmaster run | demo | simulate | decode | check-config | slave-sim |
status``."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys

from twcmaster import __version__
from twcmaster.config import ConfigError, LoadedConfig, load_config

DEFAULT_CONFIG_PATH = "/etc/twcmanager/config.json"
EXIT_CONFIG_ERROR = 2


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "handler"):
        parser.print_help()
        return 2
    try:
        return args.handler(args)
    except KeyboardInterrupt:
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="twcmaster",
        description="Master of a Tesla Wall Connector Gen2 load-sharing bus.",
    )
    parser.add_argument("--version", action="version", version=f"twcmaster {__version__}")
    sub = parser.add_subparsers(metavar="COMMAND")

    run = sub.add_parser("run", help="be the master on the configured RS-485 port")
    _config_option(run)
    run.set_defaults(handler=_cmd_run)

    demo = sub.add_parser("demo", help="the master against simulated TWCs with cars (no hardware)")
    demo.add_argument("--config", help="config file (default: a built-in demo configuration)")
    demo.add_argument("--slaves", type=int, default=2, help="simulated TWCs, 1-6 (default 2)")
    demo.add_argument("--seconds", type=float, help="stop after this long (default: Ctrl+C)")
    demo.add_argument("--protocol", type=int, choices=(1, 2), default=2)
    demo.add_argument("--seed", type=int, help="seed for the simulated cars' comings and goings")
    demo.set_defaults(handler=_cmd_demo)

    simulate = sub.add_parser(
        "simulate",
        help="a day of solar charging in virtual time: the real master vs simulated TWCs",
        description=(
            "Run the real controller, policy and bus master against simulated TWCs with cars, "
            "in virtual time, fed from a CSV profile (timestamp_s,generation_w,consumption_w; "
            "seconds of the day; consumption without the chargers; values hold until the next "
            "row; empty/NaN watts hold the previous value, negative watts count as 0). "
            "Prints energies, the ideal surplus follower's energy, starts, stops and "
            "offer changes."
        ),
    )
    simulate.add_argument("--profile", required=True, metavar="FILE.csv", help="site profile")
    simulate.add_argument(
        "--config",
        help="config file (default: built-in: 1 TWC, 230 V, 1 phase, 6 A floor, 32 A wiring)",
    )
    simulate.add_argument("--json", action="store_true", help="print one JSON object")
    simulate.add_argument(
        "--policy",
        help="force this policy all day (default 'Track Green Energy'; also 'Charge Now', "
        "'Scheduled Charging', 'Non Scheduled Charging', 'Min + Green Energy' (min-green, "
        "evcc's minpv: the floor always, the surplus above it), or 'rules' to follow the "
        "schedule)",
    )
    simulate.add_argument("--slaves", type=int, default=1, help="simulated TWCs, 1-6 (default 1)")
    simulate.add_argument(
        "--protocol", type=int, choices=(1, 2), default=2, help="TWC protocol (default 2)"
    )
    simulate.add_argument(
        "--no-car-api",
        dest="car_api",
        action="store_false",
        help="the cars cannot be started/stopped through their API: protocol 2 cars are then "
        "stopped with a 0 A offer, which a Tesla takes as a power cut",
    )
    simulate.add_argument(
        "--tesla",
        action="store_true",
        help="the real Tesla module (targeting, wake delay, rate limits, budgets; the config's "
        "vehicle.teslaAPI settings if any) starts and stops the cars, against a simulated "
        "Tesla cloud: the summary counts its calls by kind",
    )
    simulate.add_argument(
        "--stale",
        action="append",
        default=[],
        metavar="FROM-TO",
        help="energy readings are stale in this period (e.g. 12:00-12:10); repeatable",
    )
    simulate.add_argument(
        "--console",
        action="store_true",
        help="print the daemon's console lines as it would have printed them, stamped with "
        "the simulated time, before the summary",
    )
    simulate.set_defaults(handler=_cmd_simulate)

    decode = sub.add_parser("decode", help="decode TWC frames given as hex, one JSON per line")
    decode.add_argument("hex", nargs="*", help="frames as hex (framed or not); '-' reads stdin")
    decode.set_defaults(handler=_cmd_decode)

    status = sub.add_parser(
        "status",
        help="the running daemon's state, from its HTTP API (control.HTTP)",
        description="Ask the running daemon's HTTP API (GET /api/v1/snapshot) and print its "
        "state as the console would say it. Exit 1 when no daemon answers.",
    )
    status.add_argument(
        "--url", help="the daemon's API (default: from --config, else http://127.0.0.1:8080)"
    )
    status.add_argument("--config", help="config file: the API's address and token from "
                        "control.HTTP")  # fmt: skip
    status.add_argument("--json", action="store_true", help="print the snapshot JSON")
    status.add_argument("--token", help="bearer token (default: $TWCMASTER_TOKEN, or the config's)")
    status.set_defaults(handler=_cmd_status)

    check = sub.add_parser("check-config", help="validate a config file")
    _config_option(check)
    check.add_argument(
        "--twcmanager-diff",
        action="store_true",
        help="also list, for a TWCManager config, every setting twcmaster ignores (and what "
        "is lost) or reads differently",
    )
    check.set_defaults(handler=_cmd_check_config)

    sim = sub.add_parser("slave-sim", help="simulated slave TWCs on a serial port, for any master")
    where = sim.add_mutually_exclusive_group(required=True)
    where.add_argument("--port", help="device path or pyserial URL (socket://host:port)")
    where.add_argument(
        "--pty",
        nargs="?",
        const="",
        metavar="LINK",
        help="create a pty pair (optionally symlinked at LINK) and print the path to give a master",
    )
    sim.add_argument("--protocol", type=int, choices=(1, 2), default=2)
    sim.add_argument("--count", type=int, default=1, help="number of slaves, 1-6 (default 1)")
    sim.add_argument("--max-amps", type=float, default=32.0, help="each TWC's own max amps")
    sim.add_argument("--voltage", type=float, default=230.0)
    sim.add_argument("--unplugged", action="store_true", help="start with no car plugged in")
    sim.add_argument("--seed", type=int)
    sim.set_defaults(handler=_cmd_slave_sim)
    return parser


def _config_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        default=DEFAULT_CONFIG_PATH,
        help=f"config file (default {DEFAULT_CONFIG_PATH})",
    )


def _load_or_report(path: str) -> LoadedConfig | None:
    """The config, with its warnings printed; None (errors and warnings printed together)
    when it cannot be used."""
    try:
        loaded = load_config(path)
    except ConfigError as exc:
        print(f"twcmaster: {exc}", file=sys.stderr)
        _print_warnings(exc.warnings)
        return None
    _print_warnings(loaded.warnings)
    return loaded


def _print_warnings(warnings) -> None:
    for warning in warnings:
        print(f"twcmaster: warning: {warning}", file=sys.stderr)


# -- commands


def check_config(path: str) -> LoadedConfig | None:
    """``twcmaster check-config``'s report (the errors and warnings, else OK and the serial
    port and interfaces in use); the config, or None when it cannot be used. The container's
    entrypoint calls it too."""
    loaded = _load_or_report(path)
    if loaded is not None:
        print(f"{path}: OK ({len(loaded.warnings)} warning(s))")
        print(f"  Serial port: {loaded.settings.rs485.port}")
        for line in _interfaces_summary(loaded.settings):
            print(f"  {line}")
    return loaded


def _cmd_check_config(args: argparse.Namespace) -> int:
    loaded = check_config(args.config)
    if args.twcmanager_diff:
        _print_twcmanager_diff(args.config)
    return 0 if loaded is not None else EXIT_CONFIG_ERROR


def _print_twcmanager_diff(path: str) -> None:
    """What a TWCManager user's file does differently here (the file must parse)."""
    from twcmaster.config.jsonc import parse_config_text, read_regular_file
    from twcmaster.config.load import CONFIG_MAX_BYTES
    from twcmaster.config.migration import twcmanager_diff

    try:
        data = parse_config_text(
            read_regular_file(path, CONFIG_MAX_BYTES).decode("utf-8"), source=path
        )
    except (ConfigError, OSError, ValueError):
        return  # already reported above
    if not isinstance(data, dict):
        return
    lines = twcmanager_diff(data)
    titles = {
        "different": "Read differently from TWCManager:",
        "ignored": "Ignored (what you lose):",
        "default differs": "Not in the file, so twcmaster's own behaviour applies:",
    }
    print(f"{path}: compared with TWCManager: {len(lines)} difference(s)")
    for kind, title in titles.items():
        chosen = [line for line in lines if line.kind == kind]
        if chosen:
            print(title)
            for line in chosen:
                print(line)


def _interfaces_summary(config) -> list[str]:
    """What the config turns on beside the bus, one line each (never a secret)."""
    lines = []
    cap = config.max_amps_allowed_from_grid
    if cap is not None:
        sources = ", ".join(spec.name for spec in config.sources) or "none enabled"
        lines.append(
            f"Grid limit: maxAmpsAllowedFromGrid {cap:g} A for the site (house and chargers) "
            f"in every policy, measured by the energy sources ({sources}); "
            f"greenEnergySafeAmps {config.green_energy_safe_amps:g} A while they are stale"
        )
    if config.mqtt_status is not None:
        status = config.mqtt_status
        discovery = f", Home Assistant discovery under {status.discovery_prefix}/" * bool(
            status.ha_discovery
        )
        lines.append(
            f"MQTT status: {status.broker!r}, ratelimit {status.ratelimit_s:g}s{discovery}"
        )
    if config.mqtt_control is not None:
        stop = "allowed" if config.mqtt_control.allow_stop else "ignored"
        lines.append(f"MQTT control: {config.mqtt_control.broker!r} (control/stop {stop})")
    if config.http is not None:
        lines.append(f"HTTP API: {config.http!r}")
    tesla = config.tesla_api
    if tesla is not None:
        signing = "signed in-process" if tesla.private_key_file else "unsigned (or by the proxy)"
        home = "home geofence set" if tesla.has_home else "no home geofence"
        lines.append(
            f"Tesla API: {tesla!r}, commands {signing}, {home}, budget "
            f"{tesla.daily_call_budget} calls / {tesla.daily_wake_budget} wakes per car per day"
        )
    return lines


def _cmd_decode(args: argparse.Namespace) -> int:
    from twcmaster.decode import decode_all, inputs_from_args

    texts = sys.stdin if args.hex in ([], ["-"]) else inputs_from_args(args.hex)
    for item in decode_all(texts):
        print(json.dumps(item), flush=True)
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    loaded = _load_or_report(args.config)
    if loaded is None:
        return EXIT_CONFIG_ERROR
    if not loaded.settings.rs485.enabled:
        print("twcmaster: interface.RS485.enabled is false: nothing to run", file=sys.stderr)
        return EXIT_CONFIG_ERROR
    return _run_daemon(loaded, port=None, duration_s=None)


def _run_daemon(loaded: LoadedConfig, *, port: str | None, duration_s: float | None) -> int:
    from twcmaster.daemon import build_daemon, run_until_signalled, start_outputs

    console = start_outputs(loaded.settings)

    async def main() -> None:
        daemon = build_daemon(loaded.settings, console, port=port)
        await daemon.run(duration_s)

    run_until_signalled(main())
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from twcmaster.demo import demo_config, run_demo

    if args.config:
        loaded = _load_or_report(args.config)
        if loaded is None:
            return EXIT_CONFIG_ERROR
    else:
        loaded = demo_config()
    if not 1 <= args.slaves <= 6:
        print("twcmaster: --slaves must be 1 to 6", file=sys.stderr)
        return 2
    with contextlib.suppress(KeyboardInterrupt):
        run_demo(
            loaded, slaves=args.slaves, protocol=args.protocol, seconds=args.seconds, seed=args.seed
        )
    return 0


def _cmd_simulate(args: argparse.Namespace) -> int:
    from twcmaster.simulate_command import run_command

    loaded = None
    if args.config:
        loaded = _load_or_report(args.config)
        if loaded is None:
            return EXIT_CONFIG_ERROR
    return run_command(
        args.profile,
        loaded,
        as_json=args.json,
        policy=args.policy,
        slaves=args.slaves,
        protocol=args.protocol,
        car_api=args.car_api,
        tesla=args.tesla,
        stale=args.stale,
        console=args.console,
    )


def _cmd_status(args: argparse.Namespace) -> int:
    from twcmaster.status_command import run_command

    loaded = None
    if args.config:
        loaded = _load_or_report(args.config)
        if loaded is None:
            return EXIT_CONFIG_ERROR
    return run_command(url=args.url, loaded=loaded, token=args.token, as_json=args.json)


def _cmd_slave_sim(args: argparse.Namespace) -> int:
    from twcmaster.logs import configure_logging
    from twcmaster.sim.runner import open_pty_pair, run_slave_sim

    configure_logging(20, "auto", stream=sys.stderr)
    if not 1 <= args.count <= 6:
        print("twcmaster: --count must be 1 to 6", file=sys.stderr)
        return 2
    port = args.port
    if args.pty is not None:
        fd, path = open_pty_pair(args.pty or None)
        port = f"fd:{fd}"  # the simulator serves the pty's master side; the master opens path
        print(f"slave-sim: give the master this port: {args.pty or path}", flush=True)
    from twcmaster.daemon import run_until_signalled

    run_until_signalled(
        run_slave_sim(
            port,
            count=args.count,
            protocol=args.protocol,
            plugged=not args.unplugged,
            max_amps=args.max_amps,
            voltage_v=args.voltage,
            seed=args.seed,
        )
    )
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
