"""The command catalogue, nanomdm-cmdr and nanomdm-tw-enqueue, against a live server."""

import json
import os
import plistlib
import subprocess
import sys
from pathlib import Path

import pytest
import pytest_twisted
from twisted.internet import threads

from nanomdm_tw.mdm.catalogue import (
    BOOLEAN,
    CATALOGUE,
    DATA,
    DEFAULT_DEVICE_QUERIES,
    INTEGER,
    STRING,
    STRINGS,
    CommandArgumentError,
    build_command,
    read_only_request_types,
)
from nanomdm_tw.mdm.messages import decode_command
from nanomdm_tw.tools.cmdr import command_plist
from nanomdm_tw.tools.enqueue import PATH_FORM_LIMIT, Answer, enqueue, merge_answers, path_chunks
from nanomdm_tw.tools.sim import SimulatedDevice, make_identity

from .serving import serve

REPO = Path(__file__).resolve().parent.parent
PROFILE = plistlib.dumps({"PayloadIdentifier": "com.example.wifi", "PayloadType": "Configuration"})
# A value of each kind, as the plist carries it.
SAMPLES = {STRING: "text", INTEGER: 3, BOOLEAN: True, STRINGS: ["Model", "OSVersion"], DATA: PROFILE}


def sample(argument) -> object:
    return "123456" if argument.key == "PIN" else SAMPLES[argument.kind]


def command_fields(plist: bytes) -> dict:
    """The Command dictionary, after our own decoder has accepted the plist."""
    command = decode_command(plist)
    values = plistlib.loads(plist)
    assert values["CommandUUID"] == command.command_uuid
    assert values["Command"]["RequestType"] == command.request_type
    return values["Command"]


# The catalogue.


@pytest.mark.parametrize("request_type", sorted(CATALOGUE))
def test_every_entry_with_every_argument_decodes(request_type: str) -> None:
    spec = CATALOGUE[request_type]
    values = {argument.key: sample(argument) for argument in spec.arguments}

    fields = command_fields(build_command(request_type, values, command_uuid="CMD-1"))

    assert fields.pop("RequestType") == request_type
    if request_type == "ScheduleOSUpdate":
        (fields,) = fields.pop("Updates")
    assert fields == values


@pytest.mark.parametrize("request_type", sorted(CATALOGUE))
def test_every_entry_with_only_what_it_requires_decodes(request_type: str) -> None:
    spec = CATALOGUE[request_type]
    values = {a.key: sample(a) for a in spec.arguments if a.required}

    fields = command_fields(build_command(request_type, values))

    expected_keys = {"RequestType", *values, *(a.key for a in spec.arguments if a.default)}
    if request_type == "ScheduleOSUpdate":
        expected_keys = {"RequestType", "Updates"}
    assert set(fields) == expected_keys


def test_device_information_asks_the_default_queries_unless_chosen() -> None:
    assert command_fields(build_command("DeviceInformation"))["Queries"] == list(
        DEFAULT_DEVICE_QUERIES
    )
    chosen = build_command("DeviceInformation", {"Queries": "Model, OSVersion"})
    assert command_fields(chosen)["Queries"] == ["Model", "OSVersion"]


@pytest.mark.parametrize(
    "request_type, values, message",
    [
        ("RemoveProfile", {}, "RemoveProfile: missing Identifier"),
        ("DeviceLock", {"PIN": "12345"}, "PIN: must be six digits"),
        ("EraseDevice", {"PIN": "abcdef"}, "PIN: must be six digits"),
        ("InstallApplication", {"iTunesStoreID": "many"}, "expected a whole number"),
        ("InstallProfile", {"Payload": b""}, "Payload: expected the non-empty contents"),
        ("RestartDevice", {"NotifyUser": "perhaps"}, "expected true or false"),
        ("ProfileList", {"Identifier": "x"}, "ProfileList takes no Identifier"),
        ("SomethingElse", {"Key": "x"}, "not in the catalogue"),
    ],
)
def test_values_a_command_cannot_carry_are_refused(request_type, values, message) -> None:
    with pytest.raises(CommandArgumentError, match=message):
        build_command(request_type, values)


def test_read_only_commands_ask_and_change_nothing() -> None:
    read_only = read_only_request_types()
    assert {"DeviceInformation", "ProfileList", "CertificateList", "SecurityInfo"} <= set(read_only)
    assert not {"EraseDevice", "DeviceLock", "RestartDevice", "InstallProfile"} & set(read_only)


# nanomdm-cmdr


def argv_for(spec, tmp_path: Path) -> list[str]:
    """Every argument of ``spec`` on a command line, as its help shows it."""
    argv = [spec.request_type]
    for argument in spec.arguments:
        value = sample(argument)
        if argument.kind == BOOLEAN:
            argv.append("--" + argument.name)
        elif argument.kind == STRINGS:
            argv.extend(value)
        elif argument.kind == DATA:
            path = tmp_path / "profile.mobileconfig"
            path.write_bytes(value)
            argv.append(str(path))
        elif argument.required:
            argv.append(str(value))
        else:
            argv.extend(["--" + argument.name, str(value)])
    return argv


@pytest.mark.parametrize("request_type", sorted(CATALOGUE))
def test_cmdr_offers_every_entry_with_its_arguments(request_type: str, tmp_path: Path) -> None:
    spec = CATALOGUE[request_type]
    fields = command_fields(command_plist(argv_for(spec, tmp_path)))
    values = {argument.key: sample(argument) for argument in spec.arguments}
    assert fields == command_fields(build_command(request_type, values))


def test_cmdr_gives_fresh_uuids_or_the_one_asked_for() -> None:
    first, second = (decode_command(command_plist(["ProfileList"])) for _ in range(2))
    assert first.command_uuid != second.command_uuid
    assert decode_command(command_plist(["-u", "MY-UUID", "SecurityInfo"])).command_uuid == "MY-UUID"


def test_cmdr_random_picks_a_read_only_command() -> None:
    offered = []

    def choose(names):
        offered.extend(names)
        return names[-1]

    command = decode_command(command_plist(["-r"], choose=choose))
    assert offered == read_only_request_types()
    assert command.request_type == offered[-1]


def test_cmdr_any_other_request_type() -> None:
    assert decode_command(command_plist(["command", "ActivationLockBypassCode"])).request_type == (
        "ActivationLockBypassCode"
    )


@pytest.mark.parametrize(
    "argv, message",
    [
        ([], "give either -r or one command"),
        (["-r", "ProfileList"], "give either -r or one command"),
        (["DeviceLock", "--pin", "12"], "PIN: must be six digits"),
        (["InstallProfile", "/nonexistent/profile"], "No such file"),
        (["command", "Not a type"], "not a RequestType"),
    ],
)
def test_cmdr_mistakes_are_usage_errors(argv, message, capsys) -> None:
    with pytest.raises(SystemExit) as exit:
        command_plist(argv)
    assert exit.value.code == 2
    assert message in capsys.readouterr().err


# nanomdm-tw-enqueue


def test_path_chunks_stay_within_the_limit_and_keep_every_id() -> None:
    ids = [f"{n:08X}-0000-0000-0000-000000000000" for n in range(1000)]
    chunks = list(path_chunks(ids))
    assert [i for chunk in chunks for i in chunk] == ids
    assert all(len(",".join(chunk)) <= PATH_FORM_LIMIT for chunk in chunks)
    assert len(chunks) > 1


def test_merged_answers_read_like_one_answer() -> None:
    def answer(code, document, sent):
        return Answer(code, json.dumps(document).encode(), sent)

    common = {"no_push": True, "command_uuid": "C", "request_type": "ProfileList"}
    ok = answer(200, common, 2)
    some_failed = answer(207, {"status": {"X": {"command_error": "no such ID"}}, **common}, 2)
    all_failed = answer(500, {"status": {"Y": {"command_error": "no such ID"}}, **common}, 1)

    assert merge_answers([ok, ok]).code == 200
    merged = merge_answers([ok, some_failed, all_failed])
    assert merged.code == 207
    assert json.loads(merged.body) == {
        "status": {"X": {"command_error": "no such ID"}, "Y": {"command_error": "no such ID"}},
        **common,
    }
    other_failed = answer(500, {"status": {"Z": {"command_error": "no such ID"}}, **common}, 1)
    assert merge_answers([all_failed, other_failed]).code == 500
    push_failed = answer(500, {"push_error": "no push certificate", **common}, 2)
    assert merge_answers([ok, push_failed]).code == 500


def run_shell(script: str, **environ: str):
    """A shell pipeline with this source tree's tools, in a thread: the server keeps serving."""
    tools = {
        "CMDR": f"{sys.executable} -m nanomdm_tw.tools.cmdr",
        "ENQUEUE": f"{sys.executable} -m nanomdm_tw.tools.enqueue",
    }
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("NANOMDM_")}
    env = dict(inherited, PYTHONPATH=str(REPO), **tools, **environ)
    return threads.deferToThread(
        subprocess.run, ["sh", "-c", script], env=env, capture_output=True, timeout=120
    )


async def enrolled_device(server) -> SimulatedDevice:
    device = SimulatedDevice.create(server.url, make_identity(server.ca), "device", http=server.http)
    await device.enroll()
    return device


@pytest_twisted.ensureDeferred
async def test_cmdr_piped_into_enqueue_reaches_the_device(tmp_path: Path) -> None:
    async with serve(tmp_path) as server:
        device = await enrolled_device(server)
        profile = tmp_path / "wifi.mobileconfig"
        profile.write_bytes(PROFILE)
        env = {"NANOMDM_URL": server.url, "NANOMDM_API_KEY": server.api_key}

        lock = await run_shell(
            f'$CMDR -u LOCK-1 DeviceLock --message "Call IT" --pin 123456'
            f" | $ENQUEUE --nopush {device.id}", **env,
        )  # fmt: skip
        install = await run_shell(
            f"$CMDR -u PROFILE-1 InstallProfile {profile} | $ENQUEUE --nopush {device.id}", **env
        )
        commands = await device.run_queue()

        assert lock.returncode == 0, lock.stderr
        assert json.loads(lock.stdout) == {
            "no_push": True, "command_uuid": "LOCK-1", "request_type": "DeviceLock",
        }  # fmt: skip
        assert install.returncode == 0, install.stderr
        assert [c["CommandUUID"] for c in commands] == ["LOCK-1", "PROFILE-1"]
        assert commands[0]["Command"] == {
            "RequestType": "DeviceLock", "Message": "Call IT", "PIN": "123456",
        }  # fmt: skip
        assert commands[1]["Command"]["Payload"] == PROFILE


@pytest_twisted.ensureDeferred
async def test_many_ids_in_one_run_partial_failure_is_207_and_exit_1(tmp_path: Path) -> None:
    async with serve(tmp_path) as server:
        devices = [await enrolled_device(server) for _ in range(3)]
        unknown = [f"UNKNOWN-{n:05d}-0000-0000-0000-000000000000" for n in range(400)]
        ids_file = tmp_path / "ids.txt"
        ids_file.write_text("\n".join(unknown[:200] + [d.id for d in devices] + unknown[200:]))

        ran = await run_shell(
            f"$CMDR -u MANY-1 SecurityInfo | $ENQUEUE --nopush --ids-file {ids_file}"
            f" --url {server.url} --api-key {server.api_key}"
        )
        queues = [await d.run_queue() for d in devices]

        assert ran.returncode == 1
        assert b"HTTP 207" in ran.stderr
        answer = json.loads(ran.stdout)
        assert sorted(answer["status"]) == sorted(unknown)
        assert answer["command_uuid"] == "MANY-1"
        assert [[c["CommandUUID"] for c in queue] for queue in queues] == [["MANY-1"]] * 3


@pytest.mark.parametrize("form", ["auto", "path"])
@pytest_twisted.ensureDeferred
async def test_enqueue_forms_deliver_alike(tmp_path: Path, form: str) -> None:
    async with serve(tmp_path) as server:
        devices = [await enrolled_device(server) for _ in range(2)]
        padding = [f"PAD-{n:05d}-{'0' * 40}" for n in range(200)]  # beyond one URL's worth
        ids = [devices[0].id, *padding, devices[1].id]
        command = build_command("ProfileList", command_uuid="FORM-" + form)

        answer = await enqueue(server.http, server.url, server.api_key, ids, command, True, form)

        assert answer.code == 207
        assert sorted(json.loads(answer.body)["status"]) == sorted(padding)
        for device in devices:
            assert [c["CommandUUID"] for c in await device.run_queue()] == ["FORM-" + form]


@pytest_twisted.ensureDeferred
async def test_enqueue_refusals_exit_non_zero(tmp_path: Path) -> None:
    async with serve(tmp_path) as server:
        device = await enrolled_device(server)
        wrong_key = await run_shell(
            f"$CMDR ProfileList | $ENQUEUE --nopush --url {server.url} {device.id}",
            NANOMDM_API_KEY="wrong",
        )
        not_a_command = await run_shell(
            f"echo junk | $ENQUEUE --url {server.url} {device.id}", NANOMDM_API_KEY="k"
        )
        no_key = await run_shell(f"$CMDR ProfileList | $ENQUEUE --url {server.url} {device.id}")
        unreachable = await run_shell(
            f"$CMDR ProfileList | $ENQUEUE --url http://127.0.0.1:1 {device.id}",
            NANOMDM_API_KEY="k",
        )

        assert wrong_key.returncode == 1
        assert b"HTTP 401" in wrong_key.stderr
        assert not_a_command.returncode == 2
        assert b"stdin: command is not a valid plist" in not_a_command.stderr
        assert no_key.returncode == 2
        assert b"no API key" in no_key.stderr
        assert unreachable.returncode == 1
        assert (await device.idle()).plist is None

