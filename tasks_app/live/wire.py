"""One websocket frame per fragment, written straight to each socket daphne holds.

The hub renders a fragment once per audience and sends the same text to every socket of it.
Through ASGI each of those sends runs daphne's handle_reply, autobahn's sendMessage (UTF-8
encoding, framing, debug-log arguments) and Twisted's transport.write, which buffers the frame,
registers the socket with the event loop for writing, writes it on the loop's next turn and
unregisters it: ~110 µs and three system calls per socket per event, most of the cost of
fanning one event out to 1,000 sockets (py-spy under bench/bench_fanout.py).

Here the frame is built once (RFC 6455 §5.2: FIN + text opcode, unmasked as a server's frames
are, then the payload length) and each socket gets one send(): when its transport has nothing
buffered, the whole frame goes to the kernel at once. What the kernel does not take (a slow
reader) goes through the transport's own buffered write, so order and back-pressure are
Twisted's as before. A socket in any other state (not open, TLS, closing, data already
buffered) or a send that is not daphne's (tests' communicators, other servers) takes the
ordinary ASGI send: `direct_writer` answers None or the writer returns False.
"""

import functools
import struct
from collections.abc import Callable

_FIN_TEXT = 0x81


def text_frame(text: str) -> bytes:
    """The complete server-to-client frame of one text message."""
    payload = text.encode("utf-8")
    length = len(payload)
    if length < 126:
        header = struct.pack("!BB", _FIN_TEXT, length)
    elif length < 1 << 16:
        header = struct.pack("!BBH", _FIN_TEXT, 126, length)
    else:
        header = struct.pack("!BBQ", _FIN_TEXT, 127, length)
    return header + payload


def direct_writer(send) -> Callable[[bytes], bool] | None:
    """A function writing a frame to the socket behind daphne's `send`, or None if it is not one.

    The writer returns False when the socket is not in the plain open state it handles; the
    caller then sends through ASGI as usual.
    """
    if not isinstance(send, functools.partial) or len(send.args) != 1 or send.keywords:
        return None
    try:
        from daphne.server import Server
        from daphne.ws_protocol import WebSocketProtocol
        from twisted.internet import tcp
    except ImportError:
        return None
    server, protocol = getattr(send.func, "__self__", None), send.args[0]
    if not isinstance(server, Server) or not isinstance(protocol, WebSocketProtocol):
        return None
    if getattr(send.func, "__func__", None) is not Server.handle_reply:
        return None

    def write(frame: bytes) -> bool:
        if protocol.state != protocol.STATE_OPEN:
            return False
        connection = server.connections.get(protocol)
        if connection is None or connection.get("disconnected"):
            return True  # gone: daphne's own handle_reply would drop it the same way
        transport = protocol.transport
        if type(transport) is not tcp.Server or transport.TLS or not transport.connected or transport.disconnecting:
            return False
        if transport._tempDataLen or len(transport.dataBuffer) > transport.offset:
            transport.write(frame)  # behind what is already queued, in order
            return True
        try:
            sent = transport.socket.send(frame)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError:
            # A broken connection: the transport's own write finds it and closes it properly.
            sent = 0
        if sent < len(frame):
            transport.write(frame[sent:])
        return True

    return write
