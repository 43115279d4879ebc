"""live.wire: one frame built per fragment, parsed back by a real websocket client library;
and a fragment too large for a 16-bit length reaching two sockets of one process intact."""

import pytest
from websockets.frames import OP_TEXT, Frame
from websockets.streams import StreamReader

from tasks_app.live.wire import direct_writer, text_frame


def _parse(data: bytes) -> Frame:
    reader = StreamReader()
    reader.feed_data(data)
    reader.feed_eof()
    parser = Frame.parse(reader.read_exact, mask=False, max_size=None)
    try:
        next(parser)
    except StopIteration as done:
        return done.value
    raise AssertionError("the frame was incomplete")


@pytest.mark.parametrize("size", [0, 1, 125, 126, 127, 65535, 65536, 300_000])
def test_a_text_frame_of_every_length_class_parses_back(size):
    text = ("é" * size)[:size] if size % 2 else "x" * size  # multi-byte UTF-8 too
    frame = _parse(text_frame(text))
    assert frame.opcode == OP_TEXT and frame.fin
    assert frame.data.decode("utf-8") == text


def test_two_frames_back_to_back_parse_as_two_messages():
    data = text_frame("<tr>one</tr>") + text_frame("<tr>two</tr>")
    reader = StreamReader()
    reader.feed_data(data)
    reader.feed_eof()
    texts = []
    for _ in range(2):
        parser = Frame.parse(reader.read_exact, mask=False, max_size=None)
        try:
            next(parser)
        except StopIteration as done:
            texts.append(done.value.data.decode())
    assert texts == ["<tr>one</tr>", "<tr>two</tr>"]


def test_anything_but_daphnes_own_send_gets_the_ordinary_asgi_send():
    async def send(message):
        return None

    assert direct_writer(send) is None
    import functools

    assert direct_writer(functools.partial(send)) is None
    assert direct_writer(functools.partial(print, object())) is None
