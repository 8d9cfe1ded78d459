"""`conversation flower`: Flower shows every tenant's messages in task arguments, so it refuses
to listen beyond loopback without FLOWER_BASIC_AUTH, and never puts the secret on a command
line (`ps` shows those); Flower reads it from the environment itself."""
from __future__ import annotations

import pytest

from conversation import cli


@pytest.fixture
def started(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, ...]]:
    calls: list[tuple[str, ...]] = []
    monkeypatch.setattr(cli, "_celery", lambda *args: calls.append(args))
    monkeypatch.delenv("FLOWER_BASIC_AUTH", raising=False)
    return calls


@pytest.mark.parametrize("address", ["0.0.0.0", "::", "", "10.0.0.5", "flower.internal"])
def test_flower_refuses_to_listen_beyond_loopback_without_basic_auth(
        started, address, capsys) -> None:  # noqa: ANN001
    with pytest.raises(SystemExit) as exited:
        cli.main(["flower", "--address", address])
    assert exited.value.code not in (0, None)
    assert "FLOWER_BASIC_AUTH" in str(exited.value.code)
    assert started == []


@pytest.mark.parametrize("address", ["127.0.0.1", "127.0.0.2", "::1", "localhost"])
def test_flower_on_loopback_needs_no_credentials(started, address) -> None:  # noqa: ANN001
    cli.main(["flower", "--address", address])
    assert len(started) == 1 and f"--address={address}" in started[0]


def test_flower_with_basic_auth_listens_anywhere_and_keeps_the_secret_off_argv(
        started, monkeypatch) -> None:  # noqa: ANN001
    monkeypatch.setenv("FLOWER_BASIC_AUTH", "ops:s3cret-Value")
    cli.main(["flower", "--address", "0.0.0.0"])
    assert len(started) == 1
    assert not any("s3cret" in arg for arg in started[0])


@pytest.mark.parametrize("value", ["ops", "ops:", ":pw", "ops:pw,"])
def test_malformed_basic_auth_is_refused(started, monkeypatch, value) -> None:  # noqa: ANN001
    monkeypatch.setenv("FLOWER_BASIC_AUTH", value)
    with pytest.raises(SystemExit) as exited:
        cli.main(["flower", "--address", "0.0.0.0"])
    assert "user:password" in str(exited.value.code)
    assert started == []
