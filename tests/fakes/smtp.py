"""A fake SMTP server at the wire: enough of RFC 5321 for Django's smtplib backend
(EHLO/HELO, MAIL, RCPT, DATA, RSET, NOOP, QUIT; no STARTTLS, no AUTH), on a thread.

Knobs: `refuse_next(n, code=451)` answers `code` to the DATA of the next n messages (a
mail server that is busy, 4xx, or refuses the message, 5xx); `refuse_recipients(code=550)`
answers `code` to every RCPT (a mailbox that does not exist). `messages` holds what was
accepted: (envelope sender, recipients, raw message text). Hook: `on_data`, called as a
client starts sending a message (kill the sender there). `reset()` clears it all.
"""

from __future__ import annotations

import socketserver
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from email import message_from_string
from email.message import Message


@dataclass
class Accepted:
    sender: str
    recipients: list[str]
    data: str

    @property
    def message(self) -> Message:
        return message_from_string(self.data)


@dataclass
class _State:
    messages: list[Accepted] = field(default_factory=list)
    refusals_left: int = 0
    refusal_code: int = 451
    rcpt_code: int = 0
    on_data: Callable[[], None] | None = None
    refused: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


class _Session(socketserver.StreamRequestHandler):
    server: _Server

    def reply(self, line: str) -> None:
        self.wfile.write(f"{line}\r\n".encode())

    def handle(self) -> None:
        state = self.server.state
        self.reply("220 fake-smtp ESMTP ready")
        sender, recipients = "", list[str]()
        while line := self.rfile.readline():
            command = line.decode(errors="replace").rstrip("\r\n")
            verb = command.split(" ", 1)[0].upper()
            if verb == "EHLO":
                self.reply("250-fake-smtp")
                self.reply("250 8BITMIME")
            elif verb == "HELO":
                self.reply("250 fake-smtp")
            elif verb == "MAIL":
                sender, recipients = command.split(":", 1)[1].strip().split(" ")[0].strip("<>"), list[str]()
                self.reply("250 OK")
            elif verb == "RCPT":
                if state.rcpt_code:
                    self.reply(f"{state.rcpt_code} no such mailbox")
                else:
                    recipients.append(command.split(":", 1)[1].strip().strip("<>"))
                    self.reply("250 OK")
            elif verb == "DATA":
                if state.on_data is not None:
                    state.on_data()
                self.reply("354 end data with <CR><LF>.<CR><LF>")
                lines = []
                while (data := self.rfile.readline()) not in (b".\r\n", b".\n", b""):
                    text = data.decode(errors="replace").rstrip("\r\n")
                    lines.append(text[1:] if text.startswith("..") else text)
                with state.lock:
                    refuse = state.refusals_left > 0
                    if refuse:
                        state.refusals_left -= 1
                        state.refused += 1
                    else:
                        state.messages.append(Accepted(sender, list(recipients), "\n".join(lines)))
                self.reply(f"{state.refusal_code} try again later" if refuse else "250 OK queued")
            elif verb in ("RSET", "NOOP"):
                self.reply("250 OK")
            elif verb == "QUIT":
                self.reply("221 bye")
                return
            else:
                self.reply("502 command not implemented")


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    state: _State


class FakeSMTP:
    def __init__(self) -> None:
        self._server = _Server(("127.0.0.1", 0), _Session)
        self._server.state = _State()
        self.host, self.port = self._server.server_address[:2]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def messages(self) -> list[Accepted]:
        return self._server.state.messages

    @property
    def refused(self) -> int:
        """How many messages were answered with a refusal to DATA."""
        return self._server.state.refused

    def refuse_next(self, count: int, *, code: int = 451) -> None:
        with self._server.state.lock:
            self._server.state.refusals_left, self._server.state.refusal_code = count, code

    def refuse_recipients(self, *, code: int = 550) -> None:
        self._server.state.rcpt_code = code

    @property
    def on_data(self) -> Callable[[], None] | None:
        return self._server.state.on_data

    @on_data.setter
    def on_data(self, hook: Callable[[], None] | None) -> None:
        self._server.state.on_data = hook

    def reset(self) -> None:
        self._server.state = _State()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
