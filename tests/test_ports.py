"""Ports for servers: drawn outside the range the kernel gives outgoing connections."""

from __future__ import annotations

import socket
from pathlib import Path

from coordinator.infra.embedded import free_port as embedded_free_port
from coordinator.infra.ports import ephemeral_range, free_port


def test_a_port_is_never_one_an_outgoing_connection_could_be_given() -> None:
    low, high = ephemeral_range()
    ports = [free_port() for _ in range(300)]
    assert all(not low <= port <= high for port in ports)
    assert all(port >= 10_000 for port in ports)


def test_ports_given_one_after_another_differ_and_are_free() -> None:
    ports = [free_port() for _ in range(100)]
    assert len(set(ports)) == len(ports)
    for port in ports[:10]:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", port))


def test_no_room_outside_the_range_falls_back_to_the_kernels_choice() -> None:
    port = free_port(ephemeral=(1_024, 65_535))
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))


def test_the_range_is_read_from_the_kernel_or_defaults(tmp_path: Path) -> None:
    setting = tmp_path / "ip_local_port_range"
    setting.write_text("40000\t50000\n")
    assert ephemeral_range(setting) == (40_000, 50_000)
    setting.write_text("garbage")
    assert ephemeral_range(setting) == (32_768, 60_999)
    assert ephemeral_range(tmp_path / "missing") == (32_768, 60_999)


def test_the_embedded_servers_take_the_same_ports() -> None:
    assert embedded_free_port is free_port
