"""The launcher's port check: a listener blocks a port, TIME_WAIT does not."""

import socket

from controlplane.launcher import free_port, port_free


def test_listening_port_is_not_free() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]

        assert not port_free(port)


def test_time_wait_port_is_free() -> None:
    port = free_port()
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as server:
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("127.0.0.1", port))
        server.listen()
        client = socket.create_connection(("127.0.0.1", port))
        accepted, _ = server.accept()
        # The side that closes first keeps the connection in TIME_WAIT on
        # the server's port, as a web server stopped with Ctrl-C does.
        accepted.close()
        client.close()

    assert port_free(port)
